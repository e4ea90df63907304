//! This node: everything that touches the host's filesystem.
//!
//! - [`root`]: rooted, safe file operations (resolution beneath a root directory, never through a
//!   symlink leading out of the allowed trees, atomic writes).
//! - [`owners`]: user and group names resolved from the *root's* `/etc/passwd` and `/etc/group`.
//! - [`manifest`]: what a config puts on disk, one small record per managed path.
//! - [`ondisk`]: on-disk validation (whole config or one path), shared with drift detection.
//! - [`backup`]: the `orig/` backups and `noorig/` stamps of SPEC §5 step 5.
//! - [`units`]: the enablement operations (enable/disable/preset) the systemd executor performs.
//! - [`users`]: the `core` user's ssh keys file and password hash.
//! - [`state`]: the stored current config.
//! - [`lock`]: one daemon per node (an exclusive lock on the state directory).
//! - [`txn`]: an update as one transaction: journal, pre-images, fail points, rollback, recovery.
//! - [`os`]: the OS backend (rpm-ostree, package hosts): the OS half of a config.
//! - [`exec`]: post actions ([`exec::PostAction`]) and their outcomes.
//! - [`systemd`]: the systemd D-Bus client (jobs awaited, clear errors).

pub mod backup;
pub mod exec;
pub mod lock;
pub mod manifest;
pub mod ondisk;
pub mod os;
pub mod owners;
pub mod root;
pub mod state;
pub mod systemd;
pub mod txn;
pub mod units;
pub mod users;

pub use manifest::{Kind, Manifest, Record};
pub use ondisk::Mismatch;
pub use root::Root;
pub use txn::{ApplyOptions, ApplyReport, apply, recover, update};

/// Errors of host operations. Each names the path (or step) it concerns.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The config (or one of its paths) may not be applied here; nothing was changed.
    #[error("{path}: {reason}")]
    Refused { path: String, reason: String },
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A user or group name could not be resolved on the node.
    #[error("{path}: {reason}")]
    Owner { path: String, reason: String },
    /// The journal or the stored current config could not be read.
    #[error("{path}: {reason}")]
    State { path: String, reason: String },
    /// A step of an update failed; everything was rolled back to the old config.
    #[error("step {step} failed (rolled back to the old config): {source}")]
    RolledBack {
        step: String,
        #[source]
        source: Box<HostError>,
    },
    /// A step failed and the rollback failed too: the journal is kept for the next recovery.
    #[error("step {step} failed: {source}; rollback failed too: {rollback} (the journal is kept)")]
    RollbackFailed {
        step: String,
        source: Box<HostError>,
        rollback: Box<HostError>,
    },
}

impl HostError {
    pub(crate) fn io(op: &'static str, path: &str, source: impl Into<std::io::Error>) -> Self {
        HostError::Io {
            op,
            path: path.to_string(),
            source: source.into(),
        }
    }

    pub(crate) fn refused(path: &str, reason: impl Into<String>) -> Self {
        HostError::Refused {
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}

/// Evaluates a fail point (compiled only with the `failpoints` feature). A `return` action makes
/// the operation fail like a full disk (ENOSPC).
macro_rules! failpoint {
    ($name:expr) => {
        fail::fail_point!($name, |_| {
            Err($crate::host::HostError::io(
                "fail point",
                $name,
                std::io::Error::from_raw_os_error(28),
            ))
        })
    };
}
pub(crate) use failpoint;

/// Every fail point of an update, in the order they are reached.
pub const FAIL_POINTS: &[&str] = &[
    "host::after_journal",
    "host::after_staging",
    "host::before_op",
    "host::write::data",
    "host::write::before_rename",
    "host::after_op",
    "host::after_currentconfig",
    "host::after_commit",
    "host::rollback::restore",
    "host::rollback::after_journal",
];
