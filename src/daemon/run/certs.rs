//! The daemon's side of the ControllerConfig (SPEC §12): [`Daemon::on_controller_config`] takes
//! a new spec (cluster watch, or standalone mode's file) and [`Daemon::apply_certs`] brings the
//! node's CA files to it.
//!
//! Choices:
//! - **Never during an update.** The CA files are written from the daemon's one event loop,
//!   like an update, so the two never run at once (and `apply` cannot run beside the daemon:
//!   the node's lock). A change of the bundles during an update is taken after it; the CA files
//!   are also brought back after every update (a MachineConfig that writes one of these paths
//!   is overruled: the ControllerConfig is the authority for them).
//! - **No drain, no reboot, no pool.** Independent of the config update flow and of pool pauses:
//!   the files are written, then the node disruption policy's actions for the paths that
//!   changed run ([`super::super::certs::ca_actions`]). A failed action is logged, reported as a
//!   `FailedServiceRestart`/`FailedServiceReload` event and in the status (`certificates`);
//!   the files stay written (they are what the cluster trusts) and the node state is not
//!   changed by it. The failed action and those after it run again later, with a doubling wait
//!   ([`crate::daemon::certs::CaRetry`]; the status says when, `retryAt`), until they succeed.
//! - **Drift.** Every CA file written is a managed path with a record like a MachineConfig
//!   file's: an edit behind the daemon's back is drift with the same reason wording, and the
//!   node stays `Degraded` until the file is restored, the bundle changes (rewritten), the
//!   force file is used, or the daemon restarts (it writes the bundles again when it sees them).
//!   A bundle the daemon writes anew is checked right after the write: rotation is not drift.
//! - **Missing.** No ControllerConfig (or none served, or no standalone file): the CA files are
//!   left as they are, and those written before stay checked.

use super::{Daemon, Mode};
use crate::cluster::events::EventReason;
use crate::daemon::certs::{
    CaRetry, REGISTRY_CA_DIR, apply_ca_plan, ca_actions, ca_plan, ca_record,
    read_controller_config, with_pending,
};
use crate::daemon::cluster::action_failure_event;
use crate::daemon::controllerconfig::Seen;
use crate::daemon::status::{CertificatesStatus, rfc3339};
use crate::daemon::update::run_post_actions;
use crate::host::exec::{Outcome, PostAction};
use crate::host::systemd::ServiceManager;
use std::time::SystemTime;

impl Daemon {
    /// Where the bundles come from, as the status says it.
    fn ca_source(&self) -> String {
        match (&self.mode, &self.opts.controller_config) {
            (Mode::Cluster(_), _) => format!(
                "ControllerConfig/{}",
                crate::cluster::controllerconfig::CONTROLLER_CONFIG_NAME
            ),
            (Mode::Standalone, Some(p)) => p.display().to_string(),
            (Mode::Standalone, None) => String::new(),
        }
    }

    /// The ControllerConfig changed (or is read for the first time): write its CA files.
    pub(super) async fn on_controller_config(&mut self) {
        let seen = match &mut self.mode {
            Mode::Cluster(c) => c.cc.rx.borrow_and_update().clone(),
            Mode::Standalone => {
                let Some(path) = self.opts.controller_config.clone() else {
                    return;
                };
                match read_controller_config(&path, self.opts.source.limits.config_bytes) {
                    Ok(Some(spec)) => Seen::Present(Box::new(spec)),
                    Ok(None) => Seen::Missing,
                    Err(e) => {
                        tracing::error!(path = %path.display(), "{e}; the CA files are left as they are");
                        let source = self.ca_source();
                        self.with_status(|s| {
                            let c = s.certificates.get_or_insert_with(Default::default);
                            c.source = source;
                            c.errors = vec![e.to_string()];
                        });
                        self.write_status();
                        return;
                    }
                }
            }
        };
        match seen {
            Seen::Pending => {}
            Seen::Missing => {
                tracing::info!(source = %self.ca_source(), "no ControllerConfig: the CA files are left as they are");
            }
            Seen::Present(spec) => {
                self.ca_spec = Some(*spec);
                self.apply_certs().await;
                self.settle();
            }
        }
    }

    /// Brings the CA files to the last ControllerConfig seen (nothing before one is seen): the
    /// bundles that parse are written where they differ, stale files and registry directories
    /// removed, the drift records and watches follow, and the policy's actions run for the paths
    /// that changed. The caller settles the state.
    pub(super) async fn apply_certs(&mut self) {
        let Some(spec) = self.ca_spec.clone() else {
            return;
        };
        let source = self.ca_source();
        let plan = ca_plan(&spec);
        let mut errors: Vec<String> = Vec::new();
        for e in &plan.errors {
            tracing::error!(source = %source, "{e}; not written, the other bundles are");
            errors.push(e.to_string());
            self.queue(
                EventReason::InvalidCertificateBundle,
                format!("{e}; not written, the other bundles are"),
            );
        }
        let applied = match apply_ca_plan(&self.root, &plan, &spec) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(source = %source, error = %e, "cannot write the CA files: {e}");
                errors.push(format!("cannot write the CA files: {e}"));
                errors.extend(self.ca_retry.as_ref().map(|(_, r)| r.failure.clone()));
                self.record_certs(source, None, errors, Vec::new());
                return;
            }
        };
        for f in &plan.write {
            self.ca.insert(f.path.clone(), ca_record(&f.data));
        }
        for p in &plan.remove {
            self.ca.remove(p);
        }
        for d in &applied.removed_registries {
            let dir = format!("{REGISTRY_CA_DIR}/{d}/");
            self.ca.retain(|p, _| !p.starts_with(&dir));
        }
        // Watch first, then check (what changes in between is seen by one or the other); the
        // paths that went are checked too, which clears any drift they had.
        if let Err(e) = self.watch_managed() {
            self.problem = Some((crate::daemon::state::NodeState::Degraded, e.to_string()));
        }
        let changed = applied.changed();
        let mut check: Vec<String> = self.ca.keys().cloned().collect();
        check.extend(changed.iter().map(|(p, _)| p.clone()));
        self.check_drift(Some(check));
        if changed.is_empty() {
            tracing::debug!(source = %source, files = self.ca.len(), "CA bundles unchanged: nothing written");
            errors.extend(self.ca_retry.as_ref().map(|(_, r)| r.failure.clone()));
            self.record_certs(source, None, errors, Vec::new());
            return;
        }
        for (path, change) in &changed {
            tracing::info!(path = %path, change = change.as_str(), source = %source, "CA file {path} {} from {source}", match change {
                crate::plan::diff::ChangeKind::Removed => "removed",
                _ => "written",
            });
        }
        let policy = self.read_policy().await;
        let planned = ca_actions(&policy, &changed);
        for (path, matched) in &planned.matched {
            tracing::debug!(path = %path, matched = matched.as_deref(), "CA file {path}: policy path {}", matched.as_deref().unwrap_or("-"));
        }
        for n in &planned.notes {
            tracing::info!("{n}");
        }
        let todo = with_pending(self.ca_retry.take().map(|(_, r)| r), planned.actions);
        let (actions, failure) = self.run_ca_actions(&todo, None).await;
        errors.extend(failure);
        self.record_certs(source, Some(applied), errors, actions);
    }

    /// Runs the post actions of a change of CA files (`last`: the wait before this run, when it
    /// is a retry), logs each, and on a failure queues its event and sets the retry: what each
    /// action became, for the status, and the failure.
    async fn run_ca_actions(
        &mut self,
        todo: &[PostAction],
        last: Option<std::time::Duration>,
    ) -> (Vec<String>, Option<String>) {
        let systemd = self.systemd.as_ref().map(|s| s as &dyn ServiceManager);
        let (steps, failed) = run_post_actions(systemd, todo).await;
        let mut actions: Vec<String> = steps
            .iter()
            .map(|s| match &s.outcome {
                Outcome::Done => format!("{}: done", s.what),
                Outcome::Skipped(why) => format!("{}: skipped ({why})", s.what),
            })
            .collect();
        for s in &steps {
            tracing::info!(action = %s.what, outcome = ?s.outcome, "post action {} for the CA files: {}", s.what, match &s.outcome { Outcome::Done => "done".to_string(), Outcome::Skipped(w) => format!("skipped ({w})") });
        }
        let Some((action, e)) = failed else {
            return (actions, None);
        };
        let retry = CaRetry::after(todo, &action, &e, last);
        tracing::error!(action = %action, error = %e, retry_in_s = retry.delay.as_secs(), "post action {action} for the CA files failed: {e}; run again in {} s", retry.delay.as_secs());
        actions.push(format!("{action}: failed: {e}"));
        if let Some(r) = action_failure_event(&e) {
            self.queue(r, format!("after writing the CA files: {e}"));
        }
        let failure = retry.failure.clone();
        self.ca_retry = Some((tokio::time::Instant::now() + retry.delay, retry));
        (actions, Some(failure))
    }

    /// The wait of a failed CA post action is over: it runs again, with those after it.
    pub(super) async fn on_ca_retry(&mut self) {
        let Some((_, retry)) = self.ca_retry.take() else {
            return;
        };
        tracing::info!(actions = retry.actions.len(), failed_before = %retry.failure, "running the CA files' post actions again (failed before: {})", retry.failure);
        let (actions, failure) = self.run_ca_actions(&retry.actions, Some(retry.delay)).await;
        if failure.is_none() {
            tracing::info!("the CA files' post actions are done on retry");
        }
        let (retry_at, pending) = self.ca_retry_status();
        self.with_status(|s| {
            let c = s.certificates.get_or_insert_with(Default::default);
            c.errors.retain(|e| *e != retry.failure);
            c.errors.extend(failure);
            c.actions = actions;
            c.retry_at = retry_at;
            c.pending_actions = pending;
        });
        self.write_status();
    }

    /// When the failed CA post actions run again (RFC 3339; empty: none waits), and which.
    fn ca_retry_status(&self) -> (String, Vec<String>) {
        self.ca_retry
            .as_ref()
            .map_or_else(Default::default, |(at, r)| {
                let left = at.saturating_duration_since(tokio::time::Instant::now());
                let actions = r.actions.iter().map(|a| a.to_string()).collect();
                (rfc3339(SystemTime::now() + left), actions)
            })
    }

    /// Puts what the CA files became into the status (`applied`: None when nothing changed,
    /// which keeps what the last change did).
    fn record_certs(
        &mut self,
        source: String,
        applied: Option<crate::daemon::certs::CaApplied>,
        errors: Vec<String>,
        actions: Vec<String>,
    ) {
        let files: Vec<String> = self.ca.keys().cloned().collect();
        let now = rfc3339(SystemTime::now());
        let (retry_at, pending) = self.ca_retry_status();
        self.with_status(|s| {
            let c = s.certificates.get_or_insert_with(|| CertificatesStatus {
                updated: now.clone(),
                ..Default::default()
            });
            c.source = source;
            c.files = files;
            c.errors = errors;
            c.retry_at = retry_at;
            c.pending_actions = pending;
            if let Some(a) = applied {
                c.written = a.written;
                c.removed = a.removed;
                c.removed.extend(
                    a.removed_registries
                        .iter()
                        .map(|d| format!("{REGISTRY_CA_DIR}/{d}")),
                );
                c.actions = actions;
                c.updated = now;
            }
        });
        self.write_status();
    }
}
