//! The effects of the drift rules ([`crate::daemon::drift`] decides): sorting drifted paths by
//! their rule's action, and healing.
//!
//! A heal: the path is checked again (it may have been restored meanwhile); the policy's
//! actions for it are decided ([`drift::heal_plan`]: never a reboot or a drain); the budget is
//! asked ([`drift::HealBudget`]); the path is rewritten from the stored current config by the
//! update's transaction ([`crate::host::txn::heal`]: journal, pre-image, atomic write) and
//! checked; then the post actions run over D-Bus (skipped, and logged so, with
//! `--no-systemd`). A path that is not healed (refused by the policy, budget exhausted, the
//! rewrite failed) degrades the node with the mismatch followed by `; not healed: <why>`. A
//! post action that fails after the rewrite degrades the node with `; healed, but <action>
//! failed: <error>`, until the next full check finds the path clean.

use super::{CMDLINE, Daemon};
use crate::cluster::events::EventReason;
use crate::daemon::cluster::action_failure_event;
use crate::daemon::drift::{self, Budget, DriftAction, HealPlan};
use crate::daemon::update::{post_actions_of, run_post_actions};
use crate::host::exec::Outcome;
use crate::host::systemd::ServiceManager;
use crate::model::MachineConfig;
use crate::model::policy::Action;
use std::time::{Instant, SystemTime};

impl Daemon {
    /// Sorts newly drifted paths (path, mismatch) by their rule's action: `degrade` into the
    /// drift that degrades the node, `report` into the reported drift, `heal` into the queue
    /// of [`Daemon::heal_pending`]. A path already known with the same mismatch is left as it
    /// is. True when anything new was found.
    pub(super) fn drift_found(&mut self, bad: Vec<(String, String)>) -> bool {
        let mut found = false;
        for (p, reason) in bad {
            let known = self.drift.get(&p) == Some(&reason)
                || self.unhealed.get(&p) == Some(&reason)
                || self.reported.get(&p) == Some(&reason)
                || self.to_heal.iter().any(|(q, r)| *q == p && *r == reason);
            if known {
                continue;
            }
            found = true;
            // The kernel arguments cannot be rewritten: they always degrade. Nor are the CA
            // files healed from a MachineConfig: the ControllerConfig's bundles are their
            // authority (written again on its next change or at start), so their drift degrades.
            let verdict = if p == CMDLINE || self.ca.contains_key(&p) {
                drift::Verdict {
                    action: DriftAction::Degrade,
                    rule: None,
                }
            } else {
                self.opts.drift.action_for(&p)
            };
            self.metrics.drift_action(verdict.action);
            self.unhealed.remove(&p);
            self.drift.remove(&p);
            self.reported.remove(&p);
            self.to_heal.retain(|(q, _)| *q != p);
            let config = self.current_name.clone();
            match verdict.action {
                DriftAction::Degrade => {
                    tracing::error!(path = %p, config = %config, "configuration drift: {reason}");
                    self.queue(EventReason::ConfigDriftDetected, reason.clone());
                    self.drift.insert(p, reason);
                }
                DriftAction::Report => {
                    tracing::warn!(path = %p, config = %config, drift_action = "report", "configuration drift (reported; the node stays Done): {reason}");
                    self.queue(
                        EventReason::ConfigDriftDetected,
                        format!("{reason} (drift action report: the node stays Done)"),
                    );
                    self.reported.insert(p, reason);
                }
                DriftAction::Heal => {
                    tracing::warn!(path = %p, config = %config, drift_action = "heal", "configuration drift: {reason}; healing it");
                    self.queue(
                        EventReason::ConfigDriftDetected,
                        format!("{reason} (drift action heal: rewriting it from {config})"),
                    );
                    self.to_heal.push((p, reason));
                }
            }
        }
        let reported: Vec<String> = self.reported.values().cloned().collect();
        self.with_status(|s| s.drift_reported = reported);
        found
    }

    /// Forgets every drifted path (a new config is current: the next check finds them anew).
    pub(super) fn clear_drift(&mut self) {
        self.drift.clear();
        self.heal_failed.clear();
        self.unhealed.clear();
        self.reported.clear();
        self.to_heal.clear();
        self.with_status(|s| s.drift_reported.clear());
    }

    /// Heals the paths waiting for it, then settles the state. Nothing while a reboot is
    /// pending (the node is about to be validated anew).
    pub(super) async fn heal_pending(&mut self) {
        if self.to_heal.is_empty() || self.rebooting {
            return;
        }
        let pending = std::mem::take(&mut self.to_heal);
        let current = match crate::host::state::read_current(&self.root) {
            Ok(Some((mc, _))) => mc,
            Ok(None) => {
                for (p, reason) in pending {
                    self.not_healed(p, reason, "there is no current config", "failed");
                }
                self.settle();
                return;
            }
            Err(e) => {
                for (p, reason) in pending {
                    let why = format!("cannot read the current config: {e}");
                    self.not_healed(p, reason, &why, "failed");
                }
                self.settle();
                return;
            }
        };
        let policy = self.read_policy().await;
        for (p, _) in pending {
            // Restored (or changed again) since it was found: look at what is there now.
            let reason = match self.manifest.check_path(&self.root, &p) {
                Ok(()) => {
                    tracing::info!(path = %p, "drift cleared: {p} matches the config again");
                    continue;
                }
                Err(m) => m.to_string(),
            };
            match drift::heal_plan(&current, &policy, &p) {
                HealPlan::Refuse(why) => self.not_healed(p, reason, &why, "refused"),
                HealPlan::Heal { actions, matched } => {
                    match self.heal_budget.try_heal(&p, Instant::now()) {
                        Budget::Exhausted { count } => {
                            let why = format!(
                                "{p:?} was healed {count} times within {}, the most drift.heal.maxHeals allows",
                                humantime::format_duration(self.opts.drift.heal.window)
                            );
                            self.not_healed(p, reason, &why, "exhausted");
                        }
                        Budget::Heal { nth } => {
                            self.heal_one(&current, p, reason, &actions, matched, nth)
                                .await
                        }
                    }
                }
            }
        }
        let reported: Vec<String> = self.reported.values().cloned().collect();
        self.with_status(|s| s.drift_reported = reported);
        self.settle();
    }

    /// The path stays drifted and degrades the node, saying why it was not healed.
    fn not_healed(&mut self, path: String, reason: String, why: &str, result: &str) {
        let full = format!("{reason}; not healed: {why}");
        tracing::error!(path = %path, config = %self.current_name, heal = result, "configuration drift: {full}");
        self.metrics.drift_heal(result);
        self.metrics.drift_detected(SystemTime::now());
        self.queue(EventReason::ConfigDriftDetected, full.clone());
        self.unhealed.insert(path.clone(), reason);
        self.drift.insert(path, full);
    }

    /// Rewrites `path` from `config`, checks it, runs the post actions of `actions`.
    async fn heal_one(
        &mut self,
        config: &MachineConfig,
        path: String,
        reason: String,
        actions: &[Action],
        matched: Option<String>,
        nth: u32,
    ) {
        if let Err(e) = crate::host::txn::heal(&self.root, config, &[path.as_str()]) {
            self.not_healed(path, reason, &format!("rewriting it failed: {e}"), "failed");
            return;
        }
        if let Err(m) = self.manifest.check_path(&self.root, &path) {
            let why = format!("it still differs after the rewrite: {m}");
            self.not_healed(path, reason, &why, "failed");
            return;
        }
        let post = post_actions_of(actions);
        let systemd = self.systemd.as_ref().map(|s| s as &dyn ServiceManager);
        let (steps, failed) = run_post_actions(systemd, &post).await;
        let mut ran = Vec::new();
        for s in &steps {
            let a = &s.what;
            match &s.outcome {
                Outcome::Done => {
                    tracing::info!(path = %path, action = %a, "heal of {path}: post action {a}: done");
                    ran.push(a.clone());
                }
                Outcome::Skipped(why) => {
                    tracing::info!(path = %path, action = %a, "heal of {path}: post action {a}: skipped ({why})");
                    ran.push(format!("{a} (skipped: {why})"));
                }
            }
        }
        if let Some((a, e)) = failed {
            tracing::error!(path = %path, action = %a, error = %e, "heal of {path}: post action {a} failed: {e}");
            if let Some(event) = action_failure_event(&e) {
                self.queue(event, format!("heal of {path}: {a} failed: {e}"));
            }
            self.metrics.drift_heal("failed");
            let full = format!("{reason}; healed, but {a} failed: {e}");
            self.heal_failed.insert(path, full);
            return;
        }
        self.heal_failed.remove(&path);
        let ran = if ran.is_empty() {
            "no action".to_string()
        } else {
            ran.join(", ")
        };
        let by = matched.map_or(String::new(), |m| format!(" (policy entry {m})"));
        let max = self.opts.drift.heal.max_heals;
        let window = humantime::format_duration(self.opts.drift.heal.window);
        tracing::info!(path = %path, config = %config.name, heal = nth, "drift healed: {path} rewritten from {} (heal {nth} of at most {max} within {window}); then {ran}{by}", config.name);
        self.metrics.drift_heal("healed");
        self.queue(
            EventReason::ConfigDriftHealed,
            format!(
                "{path} rewritten from {} after drift ({reason}); then {ran}{by}",
                config.name
            ),
        );
    }
}
