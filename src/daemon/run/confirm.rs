//! Try mode's wiring ([`crate::daemon::confirm`] holds the state machine and the choices): the
//! journal record in the state directory, the check timer of the event loop, the revert, and
//! what the status, the cluster, the events and the metrics say.
//!
//! While an update is on trial the node is `Working` (the reason says until when and what the
//! last check said), so in cluster mode the controller does not move on to the next node; the
//! checks run at once, then every `checkInterval` until they all pass or the deadline passes
//! (a timer in the event loop, bounded by the deadline; nothing polls in between). A round of
//! checks runs in a task of its own, the checks one after another, each bounded by
//! `checkTimeout`; the event loop goes on meanwhile (drift, signals, the watchdog) and takes the
//! report when it comes. A report for a trial that ended or changed meanwhile is dropped.

use super::Daemon;
use crate::cluster::events::EventReason;
use crate::daemon::confirm::{self, Effect, Event, Phase, Record};
use crate::daemon::source::Wanted;
use crate::daemon::state::NodeState;
use crate::daemon::status::TryModeStatus;
use crate::host::root::Tree;
use crate::host::systemd::ServiceManager;
use crate::host::{HostError, Root};
use crate::model::MachineConfig;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Reads the journal record (None: nothing on trial).
pub(super) fn read_record(root: &Root) -> Result<Option<Record>, HostError> {
    crate::host::state::read_json_record(root, confirm::RECORD, "the try mode record")
}

/// Writes the record atomically (None: removes it and the saved previous config).
fn write_record(root: &Root, r: Option<&Record>) -> Result<(), HostError> {
    let path = root.state_path(confirm::RECORD);
    match r {
        Some(r) => {
            let mut bytes = serde_json::to_vec_pretty(r).map_err(|e| HostError::State {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            bytes.push(b'\n');
            root.write_file(&path, Tree::Etc, &bytes, 0o600, 0, 0)
        }
        None => {
            root.remove(&path, Tree::Etc)?;
            root.remove(&root.state_path(confirm::PREVIOUS), Tree::Etc)
        }
    }
}

fn save_previous(root: &Root, config: &MachineConfig) -> Result<(), HostError> {
    let bytes = crate::host::state::encode(config);
    root.write_file(
        &root.state_path(confirm::PREVIOUS),
        Tree::Etc,
        &bytes,
        0o600,
        0,
        0,
    )
}

fn read_previous(root: &Root) -> Result<Option<MachineConfig>, HostError> {
    match root.read(&root.state_path(confirm::PREVIOUS), Tree::Etc)? {
        crate::host::root::Entry::File { data, .. } => crate::host::state::decode(&data).map(Some),
        _ => Ok(None),
    }
}

impl Daemon {
    fn try_mode(&self) -> confirm::TryMode {
        self.opts.drift.try_mode
    }

    /// Steps the state machine, journals the new record, and handles the effects that need no
    /// update; true when a revert is due (the caller runs [`Daemon::revert`]).
    pub(super) fn trial_event(&mut self, event: Event) -> bool {
        let (next, effects) = confirm::step(self.trial.as_ref(), &event);
        if next != self.trial {
            if let Err(e) = write_record(&self.root, next.as_ref()) {
                tracing::error!(error = %e, "cannot write the try mode record: {e}");
                self.problem = Some((NodeState::Degraded, format!("try mode: {e}")));
            }
            self.trial = next;
        }
        let mut revert = false;
        for effect in effects {
            match effect {
                Effect::Check => self.check_at = Some(tokio::time::Instant::now()),
                Effect::Revert => revert = true,
                Effect::Confirmed { config } => {
                    self.check_at = None;
                    tracing::info!(config = %config, "try mode: {config} confirmed: every health check passed");
                    self.metrics.try_confirmed();
                    self.with_status(|s| {
                        s.last_outcome =
                            Some(format!("applied {config}; confirmed by the health checks"))
                    });
                    self.queue(
                        EventReason::TryModeConfirmed,
                        format!("{config} confirmed by the health checks"),
                    );
                }
                Effect::Reverted => {
                    self.check_at = None;
                    if let Some(r) = &self.trial {
                        let (to, from, reason) = (r.to.clone(), r.from.clone(), r.reason.clone());
                        tracing::error!(config = %to, from = %from, reason = %reason, "try mode: reverted {to} to {from}: {reason}");
                        self.metrics.try_reverted();
                        self.with_status(|s| {
                            s.last_outcome = Some(format!("reverted {to} to {from}: {reason}"))
                        });
                        self.queue(
                            EventReason::TryModeReverted,
                            format!("{to} reverted to {from}: {reason}"),
                        );
                    }
                }
                Effect::Forgotten { config } => {
                    tracing::info!(config = %config, "try mode: {config} is no longer the desired config: forgotten");
                }
            }
        }
        self.show_trial();
        revert
    }

    /// The try mode part of the status.
    pub(super) fn show_trial(&mut self) {
        let t = self.try_mode();
        let Some(timeout) = t.confirm_timeout.filter(|_| t.enabled()) else {
            return;
        };
        let checks = crate::daemon::health::describe(
            &self.opts.root,
            self.systemd.is_none(),
            self.mode.cluster().is_some(),
        );
        let trial = self.trial.clone();
        let summary = trial
            .as_ref()
            .map(|r| r.describe(now_ms()))
            .unwrap_or_default();
        let last_checks = self.last_checks.clone();
        self.with_status(|s| {
            s.try_mode = Some(TryModeStatus {
                confirm_timeout: humantime::format_duration(timeout).to_string(),
                checks,
                trial,
                summary,
                last_checks,
            })
        });
    }

    /// What the trial makes of the node's state (after a problem and drift, which come first).
    pub(super) fn trial_state(&self) -> Option<(NodeState, String)> {
        let r = self.trial.as_ref()?;
        let words = r.describe(now_ms());
        Some(match r.phase {
            // A revert is an update: Working until it is done (a failed one is a problem).
            Phase::Applying | Phase::AwaitingReboot | Phase::Checking | Phase::Reverting => {
                (NodeState::Working, words)
            }
            Phase::Rejected => (NodeState::Degraded, words),
        })
    }

    /// At start, after the reboot was finished: what the record says about the last update.
    pub(super) async fn resume_trial(&mut self, rebooted: bool) {
        match read_record(&self.root) {
            Ok(r) => self.trial = r,
            Err(e) => {
                self.problem = Some((NodeState::Degraded, e.to_string()));
                return;
            }
        }
        let Some(r) = self.trial.clone() else {
            self.show_trial();
            return;
        };
        if !self.try_mode().enabled() && r.phase != Phase::Rejected {
            tracing::warn!(config = %r.to, "try mode is off now: {} is no longer on trial", r.to);
            if let Err(e) = write_record(&self.root, None) {
                tracing::error!(error = %e, "cannot remove the try mode record: {e}");
            }
            self.trial = None;
            return;
        }
        tracing::info!(config = %r.to, from = %r.from, phase = ?r.phase, "try mode: resuming: {}", r.describe(now_ms()));
        if r.phase == Phase::Rejected && rebooted {
            // The revert's reboot: say what it was (the reboot's own outcome says "applied").
            self.with_status(|s| {
                s.last_outcome = Some(format!(
                    "reverted {} to {}: {}; rebooted",
                    r.to, r.from, r.reason
                ))
            });
        }
        // Rebooted: the reboot the daemon asked for happened, or the node booted since.
        let rebooted =
            rebooted || (!r.boot_id.is_empty() && r.boot_id != crate::daemon::reboot::boot_id());
        let current = (!self.current_name.is_empty()).then(|| self.current_name.clone());
        if self.trial_event(Event::Started {
            current,
            rebooted,
            now_ms: now_ms(),
        }) {
            self.revert().await;
        }
    }

    /// Before an update commits: journal it as on trial (try mode on, not a first apply, not
    /// forced, not a revert, another config by name). `old` is the current config.
    pub(super) fn trial_starting(
        &mut self,
        old: Option<&MachineConfig>,
        new: &MachineConfig,
        force: bool,
        reboot: bool,
    ) {
        let Some(timeout) = self.try_mode().confirm_timeout else {
            return;
        };
        let Some(old) = old else {
            tracing::info!(config = %new.name, "try mode: the first apply is not on trial (there is no previous config)");
            return;
        };
        if force || self.reverting {
            return;
        }
        if old.name == new.name {
            tracing::warn!(config = %new.name, "try mode: the new config has the current config's name: not on trial");
            return;
        }
        let event = Event::Starting {
            from: old.name.clone(),
            to: new.name.clone(),
            reboot,
            timeout_ms: timeout.as_millis() as u64,
        };
        let (next, _) = confirm::step(self.trial.as_ref(), &event);
        // The config to go back to, whole, unless a pending trial already saved an older one.
        if next.as_ref().is_some_and(|n| n.from == old.name) {
            let saved = if old.is_thin() {
                crate::host::state::read_current(&self.root)
                    .and_then(|c| {
                        c.map(|c| c.0).ok_or_else(|| HostError::State {
                            path: crate::host::state::CURRENT_CONFIG.into(),
                            reason: "no current config".into(),
                        })
                    })
                    .and_then(|c| save_previous(&self.root, &c))
            } else {
                save_previous(&self.root, old)
            };
            if let Err(e) = saved {
                tracing::error!(error = %e, "try mode: cannot save {}: the update is not on trial: {e}", old.name);
                return;
            }
        }
        tracing::info!(config = %new.name, from = %old.name, timeout = %humantime::format_duration(timeout), "try mode: {} on trial: the checks must pass within {} or it is reverted to {}", new.name, humantime::format_duration(timeout), next.as_ref().map_or("", |n| n.from.as_str()));
        self.trial_event(event);
    }

    /// After the update: committed or rolled back.
    pub(super) fn trial_ended(&mut self, ok: bool) {
        if self
            .trial
            .as_ref()
            .is_none_or(|r| r.phase != Phase::Applying)
        {
            return;
        }
        let event = if ok {
            // Staged OS changes without systemd to reboot: the trial waits for the boot too.
            Event::Committed {
                reboot: self.rebooting || self.os_pending.is_some(),
                now_ms: now_ms(),
            }
        } else {
            Event::UpdateFailed {
                current: self.current_name.clone(),
                now_ms: now_ms(),
            }
        };
        self.trial_event(event);
        if let Some(r) = self
            .trial
            .as_mut()
            .filter(|r| r.phase == Phase::AwaitingReboot)
        {
            r.boot_id = crate::daemon::reboot::boot_id();
            let r = r.clone();
            if let Err(e) = write_record(&self.root, Some(&r)) {
                tracing::error!(error = %e, "cannot write the try mode record: {e}");
            }
        }
    }

    /// The check timer fired: start a round of checks in a task of its own (a script may run
    /// up to its timeout; the event loop goes on meanwhile: drift, signals, the watchdog).
    /// [`Self::on_checks_done`] takes the report.
    pub(super) async fn on_check_timer(&mut self) {
        self.check_at = None;
        let Some(r) = self.trial.clone().filter(|r| r.phase == Phase::Checking) else {
            return;
        };
        let t = self.try_mode();
        let systemd = self.systemd.as_ref().map(|s| s as &dyn ServiceManager);
        let systemd = crate::daemon::health::systemd_check(systemd).await;
        let node = self.mode.cluster().map(|c| c.node_ready(t.check_timeout));
        let root = self.opts.root.clone();
        let task = tokio::spawn(crate::daemon::health::run_all(
            root,
            systemd,
            node,
            t.check_timeout,
        ));
        self.checks = Some((r.to, task));
    }

    /// A round of checks ended: step, and set the timer again (or revert). A report for a trial
    /// that has ended or changed meanwhile is dropped.
    pub(super) async fn on_checks_done(
        &mut self,
        to: String,
        report: Option<crate::daemon::health::Report>,
    ) {
        let Some(r) = self
            .trial
            .clone()
            .filter(|r| r.phase == Phase::Checking && r.to == to)
        else {
            return;
        };
        let t = self.try_mode();
        let Some(report) = report else {
            tracing::error!(config = %to, "try mode: the checks' task failed; checking again");
            self.check_at = Some(tokio::time::Instant::now() + t.check_interval);
            return;
        };
        self.last_checks = report
            .results
            .iter()
            .map(|c| match &c.outcome {
                crate::daemon::health::Outcome::Passed => format!("{}: passed", c.name),
                crate::daemon::health::Outcome::Failed(w) => format!("{}: failed: {w}", c.name),
                crate::daemon::health::Outcome::Skipped(w) => {
                    format!("{}: skipped ({w})", c.name)
                }
            })
            .collect();
        let now = now_ms();
        let revert = self.trial_event(Event::Checked {
            result: report.verdict(),
            now_ms: now,
        });
        if revert {
            self.revert().await;
            return;
        }
        if let Some(deadline) = self.trial.as_ref().and_then(|r| r.deadline_ms) {
            // The next round: an interval on, and one last at the deadline.
            let left = Duration::from_millis(deadline.saturating_sub(now));
            self.check_at = Some(tokio::time::Instant::now() + t.check_interval.min(left));
            tracing::debug!(config = %r.to, "try mode: checks again in {}", humantime::format_duration(t.check_interval.min(left)));
        }
        self.settle();
    }

    /// The checks did not pass in time: the update flow with the configs swapped, then
    /// `Degraded` with the reason (the record says `Rejected`).
    pub(super) async fn revert(&mut self) {
        let Some(r) = self.trial.clone().filter(|r| r.phase == Phase::Reverting) else {
            return;
        };
        tracing::warn!(config = %r.to, from = %r.from, "try mode: reverting {} to {}: {}", r.to, r.from, r.reason);
        let previous = match read_previous(&self.root) {
            Ok(Some(p)) if p.name == r.from => p,
            Ok(other) => {
                let why = match other {
                    Some(p) => format!("the saved config is {}, not {}", p.name, r.from),
                    None => "the previous config was not saved".into(),
                };
                self.problem = Some((
                    NodeState::Degraded,
                    format!("try mode: cannot revert {} to {}: {why}", r.to, r.from),
                ));
                self.settle();
                return;
            }
            Err(e) => {
                self.problem = Some((
                    NodeState::Degraded,
                    format!("try mode: cannot revert {} to {}: {e}", r.to, r.from),
                ));
                self.settle();
                return;
            }
        };
        let policy = self.read_policy().await;
        self.reverting = true;
        self.apply(
            Wanted {
                config: previous,
                policy,
            },
            false,
            None,
        )
        .await;
        self.reverting = false;
        // The desired config is still the rejected one.
        let to = r.to.clone();
        self.with_status(|s| s.desired_config = to);
        self.trial_event(Event::RevertEnded {
            current: self.current_name.clone(),
        });
        if self.rebooting {
            self.write_status();
        } else {
            self.settle();
        }
    }
}
