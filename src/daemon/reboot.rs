//! The record of a reboot the daemon asked for: `reboot-pending` in the state directory
//! (`/etc/machine-config-daemon` under the root by default), written just before the reboot
//! with the config, the boot id, the kind of reboot (`full` or `soft`, see
//! [`crate::plan::ladder`]; a record without one is `full`) and, for a soft reboot, when the
//! userspace that asked for it started (when `basic.target` became active, see
//! [`crate::host::systemd::ServiceManager::userspace_started`]).
//!
//! On the next start [`happened`] tells whether the reboot took place: a different boot id means
//! the kernel restarted (a full reboot, whatever was asked); the same boot id with a record of
//! a soft reboot and a userspace that started since means a soft reboot (which keeps the
//! kernel, hence the boot id); otherwise it has not happened yet (the daemon merely restarted).
//! After a reboot the daemon validates the disk against the config and reports the result.

use crate::host::systemd::ServiceManager;
use crate::plan::ladder::{RebootKind, SOFT_REBOOT_SINCE, SoftRebootSupport};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The record's file name in the state directory.
pub const REBOOT_RECORD: &str = "reboot-pending";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootRecord {
    pub config: String,
    pub boot_id: String,
    /// The kind of reboot asked for (`full` in records written before soft reboots existed).
    #[serde(default = "full")]
    pub kind: RebootKind,
    /// Why that kind (the ladder's reason).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// When the userspace that asked for the reboot started (µs, monotonic; see
    /// [`userspace_started`]); None when unknown.
    #[serde(
        default,
        rename = "userspaceStarted",
        skip_serializing_if = "Option::is_none"
    )]
    pub userspace_started: Option<u64>,
}

fn full() -> RebootKind {
    RebootKind::Full
}

impl RebootRecord {
    /// A record of a full reboot into `config` from the boot `boot_id`.
    pub fn full(config: &str, boot_id: &str) -> RebootRecord {
        RebootRecord {
            config: config.to_string(),
            boot_id: boot_id.to_string(),
            kind: RebootKind::Full,
            reason: String::new(),
            userspace_started: None,
        }
    }
}

/// Whether the reboot of `rec` has happened, and which kind did, given this boot's id and when
/// this userspace started (see the module docs). Pure.
pub fn happened(rec: &RebootRecord, boot_id: &str, userspace: Option<u64>) -> Option<RebootKind> {
    if rec.boot_id != boot_id {
        return Some(RebootKind::Full);
    }
    match (rec.kind, rec.userspace_started, userspace) {
        (RebootKind::Soft, Some(then), Some(now)) if then != now => Some(RebootKind::Soft),
        _ => None,
    }
}

/// The record's path: `state_dir` is a path on the node, beneath `root`.
pub fn record_path(root: &Path, state_dir: &str) -> PathBuf {
    root.join(state_dir.trim_start_matches('/'))
        .join(REBOOT_RECORD)
}

impl RebootRecord {
    /// Writes the record atomically (and durably: the reboot follows).
    pub fn write(&self, p: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let dir = p.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        let mut bytes = serde_json::to_vec(self)?;
        bytes.push(b'\n');
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(p).map_err(|e| e.error)?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// The record, if any (an unreadable record is logged and ignored).
    pub fn read(p: &Path) -> Option<RebootRecord> {
        let bytes = std::fs::read(p).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable reboot record");
                None
            }
        }
    }

    pub fn remove(p: &Path) {
        let _ = std::fs::remove_file(p);
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`; the file `MCD_BOOT_ID` names instead, for
/// tests that play a reboot).
pub fn boot_id() -> String {
    let path = std::env::var_os("MCD_BOOT_ID")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "/proc/sys/kernel/random/boot_id".into());
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// When this userspace started: when systemd's `basic.target` became active, or the number in
/// the file `MCD_USERSPACE_STARTED` names (tests that play a soft reboot without systemd).
pub async fn userspace_started(systemd: Option<&dyn ServiceManager>) -> Option<u64> {
    if let Some(path) = std::env::var_os("MCD_USERSPACE_STARTED").filter(|v| !v.is_empty()) {
        return std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
    }
    systemd?.userspace_started().await
}

/// Where `soft-reboot.target` is looked for beneath a root (systemd's unit directories).
const UNIT_DIRS: &[&str] = &[
    "etc/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];

/// Whether the systemd installed beneath `root` can soft-reboot: its `soft-reboot.target`
/// exists (systemd 254 and later ship it).
pub fn soft_reboot_unit(root: &Path) -> SoftRebootSupport {
    let target = crate::host::systemd::SOFT_REBOOT_TARGET;
    match UNIT_DIRS
        .iter()
        .map(|d| root.join(d).join(target))
        .find(|p| p.exists())
    {
        Some(_) => SoftRebootSupport::Supported(format!("{target} present")),
        None => SoftRebootSupport::Unsupported(format!(
            "no {target} beneath {} (systemd {SOFT_REBOOT_SINCE} or later ships it)",
            root.display()
        )),
    }
}

/// Whether the node's systemd can soft-reboot: the running manager's `Version` (254 or later)
/// when systemd is used, else (`--no-systemd`) [`soft_reboot_unit`].
pub async fn soft_reboot_support(
    systemd: Option<&dyn ServiceManager>,
    root: &Path,
) -> SoftRebootSupport {
    let Some(sm) = systemd else {
        return soft_reboot_unit(root);
    };
    match sm.version().await {
        Ok(v) => SoftRebootSupport::from_version(&v),
        Err(e) => SoftRebootSupport::Unsupported(format!("the systemd version is unknown: {e}")),
    }
}
