//! The record of a reboot the daemon asked for: `reboot-pending` in the state directory
//! (`/etc/machine-config-daemon` under the root by default), written just before the reboot with the config and the boot id. On the
//! next start a different boot id means the reboot happened: the daemon validates the disk
//! against that config and reports the result; the same boot id means it has not happened yet.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The record's file name in the state directory.
pub const REBOOT_RECORD: &str = "reboot-pending";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootRecord {
    pub config: String,
    pub boot_id: String,
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
