//! The update step of the daemon: [`Daemon::apply`] runs the update flow with drift detection
//! paused, keeps the status (and, in cluster mode, the cluster) in step with its phases, and
//! uncordons after a rebootless update that drained. While the drain waits in its pre-flight
//! (PodDisruptionBudgets that keep it from starting), what it reports arrives on a channel in
//! the same `select!` as the update and becomes the `Working` reason and the `Drained`
//! condition's message (reason `DrainBlocked`), written at once ([`report_drain`]).

use super::{Daemon, LocalNode, Mode, dash};
use crate::cluster::drain::DrainProgress;
use crate::cluster::events::EventReason;
use crate::daemon::cluster::Snapshot;
use crate::daemon::cluster::failure_event;
use crate::daemon::source::Wanted;
use crate::daemon::state::NodeState;
use crate::daemon::status::{ConditionStatus, DETAILS, PHASES};
use crate::daemon::update::{self, Applied, Node, UpdateError, UpdateInput};
use crate::host::exec::Outcome;
use crate::host::systemd::Operation;
use crate::host::systemd::ServiceManager;
use crate::host::{self, HostError, Root};
use std::time::{Instant, SystemTime};

impl Daemon {
    /// The update flow, with drift detection paused and the status kept in step.
    /// `digest`: the stored digest of the wanted config, when the caller has it.
    pub(super) async fn apply(&mut self, wanted: Wanted, force: bool, digest: Option<[u8; 32]>) {
        let started = Instant::now();
        let now = SystemTime::now();
        // The stored current config is read and parsed on another core while the disk is
        // validated against the current manifest (the full validation before an update: a
        // drifted node is not updated over its drift, unless forced, which rewrites everything).
        let reading = {
            let root =
                Root::open(&self.opts.root).and_then(|r| r.with_state_dir(&self.opts.state_dir));
            tokio::task::spawn_blocking(move || {
                // Thin: the update only compares it with the new config.
                root.and_then(|r| host::state::read_current_thin(&r))
            })
        };
        self.check_drift(None);
        let stored = reading.await.unwrap_or_else(|e| {
            Err(HostError::State {
                path: "currentconfig".into(),
                reason: format!("reading task failed: {e}"),
            })
        });
        let old = match stored.and_then(|s| self.set_current(s)) {
            Ok((o, rebuilt)) => {
                if rebuilt {
                    // The manifest checked above was not the stored config's.
                    self.clear_drift();
                    self.check_drift(None);
                }
                o
            }
            Err(e) => {
                self.problem = Some((NodeState::Degraded, e.to_string()));
                self.settle();
                return;
            }
        };
        if force {
            // Everything is rewritten: nothing to heal on its own.
            self.to_heal.clear();
        } else {
            self.heal_pending().await;
        }
        // A revert goes ahead over drift: it rewrites what it changes back.
        if !force && !self.reverting && !self.drift.is_empty() {
            tracing::error!(config = %wanted.config.name, "not updating to {}: the node has drifted from its current config", wanted.config.name);
            self.problem = None;
            self.settle();
            return;
        }
        // The watches stay: their events queue up while the update runs (detection is paused,
        // nothing reads them) and are looked at against the new config afterwards.
        let new_name = wanted.config.name.clone();
        self.transition(NodeState::Working, "");
        self.with_status(|s| {
            s.desired_config = new_name.clone();
            s.last_outcome = None;
            for c in PHASES.iter().chain(DETAILS.iter()) {
                if *c != "NodeDegraded" {
                    s.set_condition(
                        c,
                        ConditionStatus::Unknown,
                        "Updating",
                        &format!("updating to {new_name}"),
                        now,
                    );
                }
            }
            s.set_condition(
                "Updated",
                ConditionStatus::False,
                "Updating",
                &format!("{} -> {}", dash(&self.current_name), new_name),
                now,
            );
        });
        let input = UpdateInput {
            old,
            new: wanted.config,
            policy: wanted.policy,
            force,
            state_dir: Some(self.opts.state_dir.clone()),
            os: self.os.clone(),
            reboot_mode: self.opts.reboot_mode,
            soft_reboot: self.soft_reboot_support().await,
            keep_changes: false,
        };
        // Only for the status (and try mode), and gone before the update plans again: two plans
        // of a large change are not held at once.
        let (plan, os_plan) = update::plan_for(&input);
        // Try mode: journaled as on trial before the transaction can commit.
        let reboot = plan.as_ref().is_some_and(|p| p.reboot)
            || os_plan.as_ref().is_ok_and(|o| !o.steps.is_empty());
        drop(os_plan);
        self.trial_starting(input.old.as_ref(), &input.new, force, reboot);
        let last_plan = plan.and_then(status_plan);
        self.with_status(|s| s.last_plan = last_plan);
        self.write_status();
        tracing::info!(from = %self.current_name, config = %new_name, force, "update started: {} -> {new_name}{}", dash(&self.current_name), if force { " (force file)" } else { "" });
        self.queue(
            EventReason::ConfigDriftMonitorStopped,
            format!("Config Drift Monitor stopped for the update to {new_name}"),
        );
        self.report().await;

        let local = LocalNode {
            status: self.status.clone(),
            status_file: self.status_file.clone(),
            record: self.reboot_record(),
            userspace_started: self.userspace_started,
        };
        let (progress, mut drain_progress) = tokio::sync::mpsc::unbounded_channel();
        let node: Box<dyn Node> = match &self.mode {
            Mode::Cluster(c) => Box::new(c.update_node(local, progress)),
            Mode::Standalone => Box::new(local),
        };
        let systemd = self.systemd.as_ref().map(|s| s as &dyn ServiceManager);
        let result = {
            let fut = update::update(&self.opts.root, input, systemd, node.as_ref());
            tokio::pin!(fut);
            // The watchdog is fed (and start-up extended) while an update runs: OS steps (an
            // image pull, a kernel install) take minutes, and the update's own waits are bounded.
            let every = crate::daemon::notify::watchdog_interval()
                .unwrap_or(std::time::Duration::from_secs(20));
            let mut watchdog = tokio::time::interval(every);
            loop {
                tokio::select! {
                    r = &mut fut => break r,
                    Some(p) = drain_progress.recv() => {
                        report_drain(&self.status, &self.status_file, &mut self.mode, &new_name, p).await;
                    }
                    _ = watchdog.tick() => crate::daemon::notify::still_working(every),
                    _ = self.sigterm.recv() => {
                        tracing::warn!("SIGTERM during an update: exiting once it has finished");
                        self.stop = true;
                    }
                    _ = self.sigint.recv() => {
                        tracing::warn!("SIGINT during an update: exiting once it has finished");
                        self.stop = true;
                    }
                }
            }
        };
        if force {
            self.remove_force_file();
        }
        let took = started.elapsed();
        let drained = matches!(&result, Ok(a) if a.steps.iter().any(|s| s.what == "drain" && s.outcome == Outcome::Done));
        // The current config: the new one on success (as written, no need to read it back),
        // else whatever the rollback left stored.
        let mut before = std::mem::take(&mut self.manifest);
        let (current, full_check) = match result {
            Ok(applied) => {
                let config = applied.config.clone();
                self.applied(&new_name, applied, took);
                (self.adopt(&config, digest), force)
            }
            Err(e) => {
                self.failed(&new_name, e, took);
                self.manifest = std::mem::take(&mut before);
                (self.load_current().map(drop), true)
            }
        };
        if let Err(e) = current {
            self.problem = Some((NodeState::Degraded, e.to_string()));
        }
        self.trial_ended(self.problem.is_none());
        // Watch first, then check: a change made in between is seen by one or the other.
        if let Err(e) = self.arm_drift() {
            self.problem = Some((NodeState::Degraded, e.to_string()));
        }
        // Reported drift did not hold the update back and the update left those paths alone
        // unless it changed them: they are checked again against the new config.
        let reported: Vec<String> = self.reported.keys().cloned().collect();
        self.clear_drift();
        if full_check {
            self.check_drift(None);
        } else {
            // Every path was valid (or its drift reported) before the update and has been
            // watched since, except the paths the update added or changed (possibly in
            // directories that were not there to watch): those are checked now, with the
            // reported ones; any other change is in the queued events.
            let mut paths = self.manifest.changed_since(&before);
            paths.extend(reported);
            paths.sort_unstable();
            paths.dedup();
            self.check_drift(Some(paths));
        }
        // The CA files: their drift was cleared with the rest; bring them back where the update
        // overwrote one (the ControllerConfig is their authority), then check them again (not
        // before: a file about to be put back is no drift).
        if !self.rebooting {
            self.apply_certs().await;
        }
        self.check_drift(Some(self.ca.keys().cloned().collect()));
        if drained && !self.rebooting {
            self.uncordon(&new_name).await;
        }
        if self.rebooting {
            // Working until the node is back: the next start validates and reports.
            self.write_status();
        } else {
            self.settle();
            if self.with_status(|s| s.state) == NodeState::Done {
                let note = format!(
                    "Setting node {}, currentConfig {new_name} to Done",
                    self.opts.node_name
                );
                self.queue(EventReason::NodeDone, note);
            }
        }
        self.trim_at = Some(tokio::time::Instant::now() + super::TRIM_DELAY);
    }

    /// Whether this node can soft-reboot; asked of systemd only when `--reboot-mode` is not
    /// `full` (the default stays as the upstream daemon: no question, a full reboot).
    async fn soft_reboot_support(&self) -> crate::plan::ladder::SoftRebootSupport {
        if self.opts.reboot_mode == crate::plan::ladder::RebootMode::Full {
            return crate::plan::ladder::SoftRebootSupport::Unknown;
        }
        let systemd = self.systemd.as_ref().map(|s| s as &dyn ServiceManager);
        let support = crate::daemon::reboot::soft_reboot_support(systemd, &self.opts.root).await;
        // The next start tells a soft reboot from a restart by when its userspace started: not
        // knowing when this one did, it could not, and would wait for a reboot forever.
        if systemd.is_some()
            && self.userspace_started.is_none()
            && matches!(
                support,
                crate::plan::ladder::SoftRebootSupport::Supported(_)
            )
        {
            return crate::plan::ladder::SoftRebootSupport::Unsupported(format!(
                "when this userspace started is unknown ({} not active), so a soft reboot could not be told from a restart",
                crate::host::systemd::USERSPACE_MARK_UNIT
            ));
        }
        support
    }

    /// Cluster mode, after a rebootless update that drained: make the node schedulable again.
    async fn uncordon(&mut self, config: &str) {
        let Some(c) = self.mode.cluster() else {
            return;
        };
        let now = SystemTime::now();
        match c.uncordon(config).await {
            Ok(()) => self.with_status(|s| {
                s.set_condition(
                    "Uncordoned",
                    ConditionStatus::True,
                    "Uncordoned",
                    &format!("node schedulable again after {config}"),
                    now,
                )
            }),
            Err(e) => {
                self.with_status(|s| {
                    s.set_condition("Uncordoned", ConditionStatus::False, "Failed", &e, now)
                });
                self.problem = Some((NodeState::Degraded, e));
            }
        }
    }

    fn applied(&mut self, name: &str, applied: Applied, took: std::time::Duration) {
        let now = SystemTime::now();
        self.problem = None;
        self.metrics.update_done(name, "", took, now);
        let skipped: Vec<String> = applied
            .steps
            .iter()
            .filter_map(|s| match &s.outcome {
                Outcome::Skipped(why) => Some(format!("{} ({why})", s.what)),
                Outcome::Done => None,
            })
            .collect();
        let reboot_pending = applied.reboot && self.systemd.is_some();
        let kind = applied.reboot_kind.as_ref();
        self.rebooting = reboot_pending;
        // OS changes staged and no reboot to take the node into them: the config is not
        // applied until the node boots (the next start validates that boot).
        // An earlier update's staged OS changes still wait for a boot as well (this update
        // changed no OS field, so they are this config's too).
        let staged = applied.os_staged
            || crate::host::os::Pending::read(&self.root)
                .ok()
                .flatten()
                .is_some_and(|p| p.phase == crate::host::os::Phase::Staged);
        self.os_pending = (staged && !reboot_pending).then(|| name.to_string());
        // Another config is applied: a failed boot of the old one is history.
        if self.os_failed.take().is_some() && !applied.os_staged {
            let _ = crate::host::os::Pending::clear(&self.root);
        }
        let cluster = matches!(self.mode, Mode::Cluster(_));
        let drain = applied
            .steps
            .iter()
            .find(|s| s.what == "drain")
            .map(|s| s.outcome.clone());
        if applied.reboot && !reboot_pending {
            self.queue(
                EventReason::SkipReboot,
                "Reboot skipped: no systemd (--no-systemd)",
            );
        } else if !applied.reboot {
            self.queue(
                EventReason::SkipReboot,
                "Config changes do not require reboot",
            );
        }
        let not_applied = applied.not_applied.clone();
        if applied.plan.is_none() {
            self.with_status(|s| s.not_applied = not_applied);
        }
        let crio = applied
            .steps
            .iter()
            .any(|s| s.what == "reload crio.service");
        self.with_status(|s| {
            let t = ConditionStatus::True;
            s.set_condition(
                "UpdatePrepared",
                t,
                "Prepared",
                &format!("the update to {name} is reconcilable and planned"),
                now,
            );
            s.set_condition(
                "AppliedFilesAndOS",
                t,
                "Applied",
                &format!("{} steps applied for {name}", applied.report.steps.len()),
                now,
            );
            s.set_condition(
                "UpdateExecuted",
                t,
                "Executed",
                &format!("files and units of {name} written"),
                now,
            );
            if cluster {
                let f = ConditionStatus::False;
                let (st, reason, msg) = match &drain {
                    Some(Outcome::Done) => (t, "Drained", "cordoned and drained"),
                    Some(Outcome::Skipped(why)) => (f, "Skipped", why.as_str()),
                    None => (f, "NotNeeded", "the change needs no drain"),
                };
                s.set_condition("Cordoned", st, reason, msg, now);
                s.set_condition("Drained", st, reason, msg, now);
                if st == f {
                    s.set_condition("Uncordoned", f, reason, msg, now);
                }
            } else {
                for c in ["Cordoned", "Drained", "Uncordoned"] {
                    s.set_condition(
                        c,
                        ConditionStatus::False,
                        "Standalone",
                        "standalone mode: no cluster",
                        now,
                    );
                }
            }
            let mut post = Vec::new();
            if crio {
                post.push("crio.service reloaded".to_string());
            }
            if !skipped.is_empty() {
                post.push(format!("skipped: {}", skipped.join("; ")));
            }
            if post.is_empty() {
                post.push("post-update actions done".into());
            }
            s.set_condition("UpdatePostActionComplete", t, "Done", &post.join("; "), now);
            if reboot_pending {
                s.set_condition(
                    "RebootedNode",
                    ConditionStatus::Unknown,
                    "Rebooting",
                    &format!("rebooting into {name}{}", kind_words(kind)),
                    now,
                );
                s.last_outcome = Some(format!("applied {name}; rebooting{}", kind_words(kind)));
            } else if self.os_pending.is_some() {
                s.set_condition(
                    "RebootedNode",
                    ConditionStatus::False,
                    "RebootPending",
                    "no systemd (--no-systemd): reboot the node to boot into the staged OS changes",
                    now,
                );
                s.set_condition(
                    "UpdateComplete",
                    ConditionStatus::False,
                    "RebootPending",
                    &format!(
                        "the OS changes of {name} are staged; the node has not booted into them yet"
                    ),
                    now,
                );
                s.last_outcome = Some(format!(
                    "applied the files of {name}; OS changes staged, reboot pending; skipped: {}",
                    skipped.join("; ")
                ));
            } else {
                if applied.reboot {
                    s.set_condition(
                        "RebootedNode",
                        ConditionStatus::False,
                        "Skipped",
                        &format!("no systemd (--no-systemd){}", kind_words(kind)),
                        now,
                    );
                }
                s.set_condition(
                    "UpdateComplete",
                    t,
                    "Complete",
                    &format!("update to {name} complete"),
                    now,
                );
                s.set_condition("Resumed", t, "Resumed", &format!("running {name}"), now);
                s.set_condition("Updated", t, "Updated", name, now);
                s.last_outcome = Some(if skipped.is_empty() {
                    format!("applied {name}")
                } else {
                    format!("applied {name}; skipped: {}", skipped.join("; "))
                });
            }
        });
        tracing::info!(config = %name, took_ms = took.as_millis() as u64, reboot = applied.reboot, "update applied: {name} in {} ms{}", took.as_millis(), if applied.reboot { ", reboot" } else { "" });
    }

    fn failed(&mut self, name: &str, e: UpdateError, took: std::time::Duration) {
        let now = SystemTime::now();
        let reason = e.to_string();
        tracing::error!(config = %name, "update failed: {reason}");
        self.metrics.update_done(name, &reason, took, now);
        if e.systemd()
            .is_some_and(|s| matches!(s.operation(), Operation::Reboot | Operation::SoftReboot))
        {
            self.metrics.reboot_failed();
        }
        if let Some(event) = failure_event(&e) {
            self.queue(event, reason.clone());
        }
        let state = match e {
            UpdateError::Unreconcilable(_) => NodeState::Unreconcilable,
            _ => NodeState::Degraded,
        };
        self.with_status(|s| {
            if state == NodeState::Unreconcilable {
                s.set_condition(
                    "UpdatePrepared",
                    ConditionStatus::False,
                    "Unreconcilable",
                    &reason,
                    now,
                );
            }
            s.set_condition(
                "UpdateComplete",
                ConditionStatus::False,
                "Failed",
                &reason,
                now,
            );
            s.last_outcome = Some(format!("failed: {reason}"));
        });
        self.problem = Some((state, reason));
    }
}

/// While the update waits in the drain pre-flight: the reason (and the `Drained` condition's
/// message) name the pods and budgets, the state stays `Working`; cleared once the drain goes
/// ahead. Written to the status file and, in cluster mode, to the Node and MachineConfigNode.
/// (Fields, not the daemon: the running update borrows the rest of it.)
async fn report_drain(
    status: &std::sync::Mutex<crate::daemon::status::Status>,
    status_file: &std::path::Path,
    mode: &mut Mode,
    new_name: &str,
    progress: DrainProgress,
) {
    let now = SystemTime::now();
    let snap = {
        let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
        let (reason, cond_reason, message) = match &progress {
            DrainProgress::Blocked(m) => (m.clone(), "DrainBlocked", m.clone()),
            DrainProgress::Proceeding => {
                (String::new(), "Updating", format!("updating to {new_name}"))
            }
        };
        s.set_state(NodeState::Working, &reason);
        s.updated = crate::daemon::status::rfc3339(now);
        s.set_condition(
            "Drained",
            ConditionStatus::Unknown,
            cond_reason,
            &message,
            now,
        );
        if let Err(e) = s.write(status_file) {
            tracing::error!(error = %e, path = %status_file.display(), "cannot write the status");
        }
        Snapshot {
            state: s.state,
            reason: s.reason.clone(),
            current_config: s.current_config.clone(),
            conditions: s.conditions.clone(),
        }
    };
    if let Mode::Cluster(c) = mode {
        c.report(&snap).await;
    }
}

/// `: full reboot (why)` / `: soft reboot (why)` after a message about a reboot.
/// The most changes the status lists of a plan (`lastPlan.changes`); beyond them,
/// `lastPlan.changesOmitted` says how many were left out. An update of every file of a large
/// config would otherwise put megabytes in a status that is rewritten at each phase (and
/// hold them as JSON), where its count and first paths say what it did; the update's log
/// names every path it changed.
pub const STATUS_PLAN_CHANGES: usize = 200;

/// The plan as the status keeps it (see [`STATUS_PLAN_CHANGES`]).
fn status_plan(mut plan: crate::plan::Plan) -> Option<serde_json::Value> {
    let total = plan.changes.len();
    plan.changes.truncate(STATUS_PLAN_CHANGES);
    plan.diff = Default::default();
    let mut v = serde_json::to_value(&plan).ok()?;
    if total > STATUS_PLAN_CHANGES
        && let Some(o) = v.as_object_mut()
    {
        o.insert(
            "changesOmitted".into(),
            (total - STATUS_PLAN_CHANGES).into(),
        );
    }
    Some(v)
}

fn kind_words(kind: Option<&crate::plan::ladder::RebootDecision>) -> String {
    kind.map(|k| format!(": {} reboot ({})", k.kind, k.reason))
        .unwrap_or_default()
}
