//! The OS half at start-up: what the pending OS change ([`crate::host::os::Pending`]) says
//! about the last update, and what to do about it.
//!
//! - `Staging`: the process died while staging. The OS change is undone (`rpm-ostree cleanup
//!   -p`, or the package host's inverse) and the files are put back to the config the node ran
//!   before; the desired config is then applied again as any other.
//! - `Staged`, this boot: the node has not rebooted into it yet. On an image-based host whose
//!   `rpm-ostree status` no longer shows a staged deployment, the change is staged again. With
//!   systemd the reboot is resumed; without, the node stays `Working` with "reboot pending".
//! - `Staged`, another boot: the node rebooted. What it booted is checked against the config
//!   (kernel arguments in `/proc/cmdline`, kernel type, image, packages). A match completes the
//!   update. A mismatch re-stages the change once and reboots again (a boot that did not take the
//!   staged deployment, e.g. an interrupted reboot); a second mismatch makes the node `Degraded`
//!   with the exact reason, and the record stays `Failed` so that a restart says so too, until
//!   another config is applied.

use super::Daemon;
use crate::daemon::reboot::boot_id;
use crate::daemon::state::NodeState;
use crate::daemon::update;
use crate::host::os::{self as hostos, Pending, Phase};
use crate::host::systemd::ServiceManager;
use crate::plan::os::check_booted;
use std::sync::Arc;

/// How many times one OS change is staged before the node is `Degraded`.
const MAX_ATTEMPTS: u32 = 2;

impl Daemon {
    pub(super) async fn resume_os(&mut self) {
        let pending = match Pending::read(&self.root) {
            Ok(p) => p,
            Err(e) => {
                self.problem = Some((NodeState::Degraded, e.to_string()));
                return;
            }
        };
        let Some(mut p) = pending else { return };
        let sd = Some(self.opts.state_dir.clone());
        let root = self.opts.root.clone();
        let os = Arc::new(self.os.clone());
        match p.phase {
            Phase::Staging => {
                tracing::warn!(config = %p.config, "an OS change to {} was interrupted while staging: undoing it", p.config);
                // What to roll the files back to, read before the undo clears the record.
                let previous = match hostos::read_previous(&self.root) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the config to roll back to: {e}");
                        None
                    }
                };
                let current = match crate::host::state::read_current(&self.root) {
                    Ok(c) => c.map(|c| c.0),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the current config: {e}");
                        None
                    }
                };
                if let Err(e) = update::undo_os(&root, sd.clone(), os, p.clone()).await {
                    self.problem = Some((
                        NodeState::Degraded,
                        format!("undoing the interrupted OS change of {}: {e}", p.config),
                    ));
                    return;
                }
                // Files back to the config the node ran (they were written before staging).
                if let (Some(prev), Some(current)) = (previous, current)
                    && current.name == p.config
                {
                    let systemd = self.systemd.as_ref().map(|s| s as &dyn ServiceManager);
                    let name = prev.name.clone();
                    match update::rollback(&root, sd, Arc::new(current), Arc::new(prev), systemd)
                        .await
                    {
                        Ok(()) => {
                            tracing::warn!(config = %name, "rolled back to {name} after the interrupted OS change")
                        }
                        Err(e) => {
                            self.problem = Some((
                                NodeState::Degraded,
                                format!(
                                    "rolling back to {name} after an interrupted OS change failed: {e}"
                                ),
                            ));
                        }
                    }
                    if let Err(e) = self.load_current() {
                        self.problem = Some((NodeState::Degraded, e.to_string()));
                    }
                }
                let _ = Pending::clear(&self.root);
            }
            Phase::Staged if p.boot_id == boot_id() => {
                tracing::warn!(config = %p.config, "the OS changes of {} are staged; the node has not rebooted into them", p.config);
                // An image-based host shows the staged deployment; if it is gone (dropped by
                // hand, or by another tool), the change is staged again before the reboot.
                if let Ok(false) = self.os.staged() {
                    tracing::warn!(config = %p.config, "no staged deployment for {}: staging it again", p.config);
                    let restage = async {
                        p.phase = Phase::Staging;
                        p.write(&self.root).map_err(|e| e.to_string())?;
                        update::stage_os(&root, sd.clone(), os.clone(), &mut p).await
                    };
                    if let Err(e) = restage.await {
                        self.os_failed(p, format!("staging the OS changes again failed: {e}"));
                        return;
                    }
                }
                self.os_pending = Some(p.config.clone());
                self.resume_reboot(&p.config).await;
            }
            Phase::Staged => {
                let booted = self.os.booted();
                match check_booted(&p.expect, &booted) {
                    Ok(()) => {
                        tracing::info!(config = %p.config, "booted into the OS changes of {}: validated", p.config);
                        if let Err(e) = Pending::clear(&self.root) {
                            tracing::error!(error = %e, "cannot remove the pending OS change: {e}");
                        }
                    }
                    Err(reason) if p.attempts < MAX_ATTEMPTS => {
                        tracing::error!(config = %p.config, attempt = p.attempts, "the boot does not match the OS changes of {}: {reason}; staging them again", p.config);
                        p.attempts += 1;
                        p.boot_id = boot_id();
                        p.phase = Phase::Staging;
                        let restage = async {
                            os.undo(&p.undo, &self.root).map_err(|e| e.to_string())?;
                            p.write(&self.root).map_err(|e| e.to_string())?;
                            update::stage_os(&root, sd.clone(), os.clone(), &mut p).await
                        };
                        match restage.await {
                            Ok(()) => {
                                self.os_pending = Some(p.config.clone());
                                self.resume_reboot(&p.config).await;
                            }
                            Err(e) => self.os_failed(
                                p,
                                format!("{reason}; staging the OS changes again failed: {e}"),
                            ),
                        }
                    }
                    Err(reason) => self.os_failed(p, reason),
                }
            }
            Phase::Failed if p.config == self.current_name => {
                self.os_failed = Some(p.reason.clone());
            }
            Phase::Failed => {
                let _ = Pending::clear(&self.root);
            }
        }
    }

    fn os_failed(&mut self, mut p: Pending, reason: String) {
        tracing::error!(config = %p.config, "the node did not boot into the OS changes of {}: {reason}", p.config);
        p.phase = Phase::Failed;
        p.reason = reason.clone();
        if let Err(e) = p.write(&self.root) {
            tracing::error!(error = %e, "cannot record the failed OS change: {e}");
        }
        self.os_pending = None;
        self.os_failed = Some(reason);
    }

    /// Reboots into staged OS changes (systemd), or leaves the node waiting for a reboot.
    async fn resume_reboot(&mut self, config: &str) {
        let Some(sm) = self.systemd.as_ref() else {
            return;
        };
        let local = super::LocalNode {
            status: self.status.clone(),
            status_file: self.status_file.clone(),
            record: self.reboot_record(),
            userspace_started: self.userspace_started,
        };
        use crate::daemon::update::Node;
        // Staged OS changes are entered by a boot of the kernel only.
        let kind = crate::plan::ladder::RebootDecision {
            kind: crate::plan::ladder::RebootKind::Full,
            reason: "OS changes are staged: only a boot enters them".into(),
        };
        if let Err(e) = local.before_reboot(config, &kind).await {
            tracing::warn!(error = %e, "cannot record the coming reboot: {e}");
        }
        tracing::info!(config = %config, "rebooting into the staged OS changes of {config}");
        match sm.reboot().await {
            Ok(()) => self.rebooting = true,
            Err(e) => {
                self.metrics.reboot_failed();
                self.problem = Some((
                    NodeState::Degraded,
                    format!("reboot into the staged OS changes of {config}: {e}"),
                ));
            }
        }
    }
}
