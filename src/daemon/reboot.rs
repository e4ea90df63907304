//! The record of a reboot the daemon asked for: `/etc/machine-config-daemon/reboot-pending`
//! (under the root), written just before the reboot with the config and the boot id. On the
//! next start a different boot id means the reboot happened: the daemon validates the disk
//! against that config and reports the result; the same boot id means it has not happened yet.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The record's path, relative to the root.
pub const REBOOT_RECORD: &str = "etc/machine-config-daemon/reboot-pending";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootRecord {
    pub config: String,
    pub boot_id: String,
}

fn path(root: &Path) -> PathBuf {
    root.join(REBOOT_RECORD)
}

impl RebootRecord {
    /// Writes the record atomically (and durably: the reboot follows).
    pub fn write(&self, root: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let p = path(root);
        let dir = p.parent().unwrap_or(root);
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut tmp, self)?;
        tmp.write_all(b"\n")?;
        tmp.as_file().sync_all()?;
        tmp.persist(&p).map_err(|e| e.error)?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// The record, if any (an unreadable record is logged and ignored).
    pub fn read(root: &Path) -> Option<RebootRecord> {
        let bytes = std::fs::read(path(root)).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable reboot record");
                None
            }
        }
    }

    pub fn remove(root: &Path) {
        let _ = std::fs::remove_file(path(root));
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
