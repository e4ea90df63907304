//! The systemd client: every post action of an update (SPEC §5 steps 6 and 10) that needs the
//! service manager, spoken over systemd's D-Bus API instead of shelling out to `systemctl`.
//!
//! This module owns:
//! - [`ServiceManager`], the small trait the update flow calls (reload, restart, daemon-reload,
//!   enable/disable/preset/mask/unmask unit files, reboot, unit properties), so the flow can be
//!   tested with a double;
//! - [`SystemdClient`] (in `dbus.rs`), its one real implementation on the system bus;
//! - [`SystemdError`], errors that say which operation on which unit failed and why, with a hint
//!   from the unit's state (`restart crio.service: no such unit`,
//!   `reload chronyd.service: unit has no ExecReload`).
//!
//! Every job is awaited: the client subscribes to `JobRemoved` before it asks for the job, then
//! waits (with a per-job timeout, no polling) for the signal carrying the job path of the reply
//! and maps the job's result. The proof that this works on a real systemd as PID 1 is in
//! `vm-tests/` (scenarios `10-systemd-*`), running `tests/systemd_dbus.rs` inside a container.

mod dbus;

pub use dbus::{Bus, SystemdClient, SystemdOptions};

use std::fmt;
use std::time::Duration;

/// Default time allowed for one systemd job (reload, restart, daemon-reload) to finish.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What the update flow asks of the service manager. All methods wait until systemd has finished
/// the work (or report why it did not); none of them polls.
#[async_trait::async_trait]
pub trait ServiceManager: Send + Sync {
    /// `ReloadUnit(unit, "replace")`; refuses a unit that cannot reload (no `ExecReload`).
    async fn reload_unit(&self, unit: &str) -> Result<(), SystemdError>;
    /// `RestartUnit(unit, "replace")`.
    async fn restart_unit(&self, unit: &str) -> Result<(), SystemdError>;
    /// The manager's `Reload` (daemon-reload): returns once systemd has re-read all unit files.
    async fn daemon_reload(&self) -> Result<(), SystemdError>;
    /// Enables the unit files (persistent, in /etc), then daemon-reloads.
    async fn enable_unit_files(&self, units: &[String]) -> Result<(), SystemdError>;
    /// Disables the unit files, then daemon-reloads.
    async fn disable_unit_files(&self, units: &[String]) -> Result<(), SystemdError>;
    /// Applies the preset policy to the unit files, then daemon-reloads.
    async fn preset_unit_files(&self, units: &[String]) -> Result<(), SystemdError>;
    /// Masks the unit files (symlink to /dev/null in /etc), then daemon-reloads.
    async fn mask_unit_files(&self, units: &[String]) -> Result<(), SystemdError>;
    /// Unmasks the unit files, then daemon-reloads.
    async fn unmask_unit_files(&self, units: &[String]) -> Result<(), SystemdError>;
    /// Asks systemd to reboot the node. Returns once the reboot job is queued; the caller should
    /// then expect to be stopped.
    async fn reboot(&self) -> Result<(), SystemdError>;
    /// Asks systemd for a soft reboot (userspace only, systemd 254 and later). Returns once the
    /// job is queued; the caller should then expect to be stopped. By default refused: a
    /// service manager that cannot soft-reboot never gets a soft reboot decided for it (see
    /// [`ServiceManager::version`]).
    async fn soft_reboot(&self) -> Result<(), SystemdError> {
        Err(SystemdError::Refused {
            op: Operation::SoftReboot,
            unit: SOFT_REBOOT_TARGET.into(),
            detail: "this service manager cannot soft-reboot".into(),
        })
    }
    /// The manager's version (its `Version` property, e.g. `254.26-1~bpo12+1`).
    async fn version(&self) -> Result<String, SystemdError> {
        Err(SystemdError::Refused {
            op: Operation::Properties,
            unit: String::new(),
            detail: "this service manager has no version".into(),
        })
    }
    /// When this userspace started (µs, monotonic: when [`USERSPACE_MARK_UNIT`] became active):
    /// a soft reboot starts a new userspace on the same kernel, so this changes where the boot
    /// id does not. None when the manager does not say.
    async fn userspace_started(&self) -> Option<u64> {
        None
    }
    /// The manager's `SystemState` (`running`, `starting`, `degraded`, …) and, when it is
    /// `degraded`, the failed units (`ListUnitsFiltered(["failed"])`).
    async fn system_state(&self) -> Result<SystemState, SystemdError> {
        Err(SystemdError::Refused {
            op: Operation::Properties,
            unit: String::new(),
            detail: "this service manager has no system state".into(),
        })
    }
    /// The unit's state, for diagnostics, hints and tests.
    async fn unit_properties(&self, unit: &str) -> Result<UnitProperties, SystemdError>;
}

/// What [`ServiceManager::system_state`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemState {
    pub state: String,
    /// The failed units (read only when the state is `degraded`).
    pub failed: Vec<String>,
}

/// The unit whose activation marks the start of a userspace (see
/// [`ServiceManager::userspace_started`]).
pub const USERSPACE_MARK_UNIT: &str = "basic.target";

/// The target a soft reboot starts.
pub const SOFT_REBOOT_TARGET: &str = "soft-reboot.target";

/// The operation that failed, as it appears at the start of an error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Reload,
    Restart,
    DaemonReload,
    Enable,
    Disable,
    Preset,
    Mask,
    Unmask,
    Reboot,
    SoftReboot,
    Properties,
    Connect,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Reload => "reload",
            Operation::Restart => "restart",
            Operation::DaemonReload => "daemon-reload",
            Operation::Enable => "enable",
            Operation::Disable => "disable",
            Operation::Preset => "preset",
            Operation::Mask => "mask",
            Operation::Unmask => "unmask",
            Operation::Reboot => "reboot",
            Operation::SoftReboot => "soft-reboot",
            Operation::Properties => "show",
            Operation::Connect => "connect",
        })
    }
}

/// The `result` of a finished systemd job (`JobRemoved`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobResult {
    Done,
    Failed,
    Timeout,
    Dependency,
    Canceled,
    Skipped,
    /// Any other word systemd uses (`invalid`, `unsupported`, `once`, `frozen`, …).
    Other(String),
}

impl JobResult {
    /// Parses the result word of a `JobRemoved` signal.
    pub fn parse(word: &str) -> JobResult {
        match word {
            "done" => JobResult::Done,
            "failed" => JobResult::Failed,
            "timeout" => JobResult::Timeout,
            "dependency" => JobResult::Dependency,
            "canceled" => JobResult::Canceled,
            "skipped" => JobResult::Skipped,
            other => JobResult::Other(other.to_string()),
        }
    }
}

impl fmt::Display for JobResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobResult::Done => "done",
            JobResult::Failed => "failed",
            JobResult::Timeout => "timeout",
            JobResult::Dependency => "dependency",
            JobResult::Canceled => "canceled",
            JobResult::Skipped => "skipped",
            JobResult::Other(word) => word,
        })
    }
}

/// A unit's state as systemd reports it (`systemctl show -p …`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitProperties {
    /// `loaded`, `not-found`, `masked`, `error`, …
    pub load_state: String,
    /// `active`, `inactive`, `failed`, `activating`, …
    pub active_state: String,
    /// Type-specific: `running`, `exited`, `dead`, `failed`, …
    pub sub_state: String,
    /// Services only: `success`, `exit-code`, `signal`, `timeout`, …; empty for other types.
    pub result: String,
    /// Services only: the main process, 0 when none.
    pub main_pid: u32,
    /// The unit file changed on disk since systemd last read it.
    pub need_daemon_reload: bool,
    /// The unit supports reload (a service has `ExecReload`).
    pub can_reload: bool,
}

/// The unit's state at the time of a failure, rendered as a hint after the error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hint(pub Option<Box<UnitProperties>>);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => Ok(()),
            Some(p) => {
                write!(f, "; unit is {}/{}", p.active_state, p.sub_state)?;
                if !p.result.is_empty() {
                    write!(f, ", result {}", p.result)?;
                }
                Ok(())
            }
        }
    }
}

/// Why a systemd operation failed. Messages start with the operation and the unit.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("{op}: cannot connect to the system bus at {address}: {source}")]
    NoBus {
        op: Operation,
        address: String,
        #[source]
        source: zbus::Error,
    },
    #[error("{op}: systemd is not reachable on the system bus (is PID 1 systemd?): {detail}")]
    NotSystemd { op: Operation, detail: String },
    #[error("{op} {unit}: no such unit")]
    NoSuchUnit { op: Operation, unit: String },
    #[error("{op} {unit}: unit is masked")]
    Masked { op: Operation, unit: String },
    #[error("reload {unit}: unit has no ExecReload")]
    CannotReload { unit: String },
    #[error("{op} {unit}: job {result}{hint} (see `journalctl -u {unit}`)")]
    JobFailed {
        op: Operation,
        unit: String,
        result: JobResult,
        hint: Hint,
    },
    #[error("{op} {unit}: job did not finish within {timeout:?}{hint}")]
    JobTimeout {
        op: Operation,
        unit: String,
        timeout: Duration,
        hint: Hint,
    },
    #[error("daemon-reload: systemd did not finish reloading within {timeout:?}")]
    ReloadTimeout { timeout: Duration },
    #[error("{op} {units}: {message}")]
    UnitFiles {
        op: Operation,
        units: String,
        message: String,
    },
    #[error("{op} {unit}: {detail}")]
    Refused {
        op: Operation,
        unit: String,
        /// The D-Bus error name and message systemd gave.
        detail: String,
    },
    #[error("{op} {unit}: D-Bus: {source}")]
    DBus {
        op: Operation,
        unit: String,
        #[source]
        source: zbus::Error,
    },
}

impl SystemdError {
    /// Maps an error reply of systemd to a clear error. `unit` is the unit the call was about
    /// (empty for manager-wide calls).
    pub fn from_dbus(op: Operation, unit: &str, err: zbus::Error) -> SystemdError {
        let unit = unit.to_string();
        let Some((name, message)) = error_name(&err) else {
            return SystemdError::DBus {
                op,
                unit,
                source: err,
            };
        };
        match name.as_str() {
            "org.freedesktop.systemd1.NoSuchUnit" | "org.freedesktop.systemd1.LoadFailed" => {
                SystemdError::NoSuchUnit { op, unit }
            }
            "org.freedesktop.systemd1.UnitMasked" => SystemdError::Masked { op, unit },
            "org.freedesktop.systemd1.JobTypeNotApplicable" if op == Operation::Reload => {
                SystemdError::CannotReload { unit }
            }
            "org.freedesktop.DBus.Error.ServiceUnknown"
            | "org.freedesktop.DBus.Error.NameHasNoOwner" => SystemdError::NotSystemd {
                op,
                detail: format!("{name}: {message}"),
            },
            _ => SystemdError::Refused {
                op,
                unit,
                detail: format!("{name}: {message}"),
            },
        }
    }

    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        match self {
            SystemdError::NoBus { op, .. }
            | SystemdError::NotSystemd { op, .. }
            | SystemdError::NoSuchUnit { op, .. }
            | SystemdError::Masked { op, .. }
            | SystemdError::JobFailed { op, .. }
            | SystemdError::JobTimeout { op, .. }
            | SystemdError::UnitFiles { op, .. }
            | SystemdError::Refused { op, .. }
            | SystemdError::DBus { op, .. } => *op,
            SystemdError::CannotReload { .. } => Operation::Reload,
            SystemdError::ReloadTimeout { .. } => Operation::DaemonReload,
        }
    }

    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SystemdError::NoBus { .. } | SystemdError::NotSystemd { .. }
        )
    }
}

/// The D-Bus error name and message of an error reply (zbus turns the standard
/// `org.freedesktop.DBus.Error.*` names into [`zbus::fdo::Error`], others stay method errors).
fn error_name(err: &zbus::Error) -> Option<(String, String)> {
    use zbus::DBusError;
    match err {
        zbus::Error::MethodError(name, message, _) => Some((
            name.as_str().to_string(),
            message.clone().unwrap_or_default(),
        )),
        zbus::Error::FDO(e) => Some((
            e.name().as_str().to_string(),
            e.description().unwrap_or_default().to_string(),
        )),
        _ => None,
    }
}

/// The outcome of an awaited job: `done` is success, every other result is an error.
pub fn job_outcome(
    op: Operation,
    unit: &str,
    result: JobResult,
    hint: Hint,
) -> Result<(), SystemdError> {
    if result == JobResult::Done {
        return Ok(());
    }
    Err(SystemdError::JobFailed {
        op,
        unit: unit.to_string(),
        result,
        hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(active: &str, sub: &str, result: &str) -> UnitProperties {
        UnitProperties {
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: sub.into(),
            result: result.into(),
            ..Default::default()
        }
    }

    #[test]
    fn job_results_round_trip() {
        for word in [
            "done",
            "failed",
            "timeout",
            "dependency",
            "canceled",
            "skipped",
            "invalid",
        ] {
            assert_eq!(JobResult::parse(word).to_string(), word);
        }
        assert_eq!(
            JobResult::parse("invalid"),
            JobResult::Other("invalid".into())
        );
    }

    #[test]
    fn job_outcomes_name_unit_operation_result_and_hint() {
        assert!(job_outcome(Operation::Restart, "a.service", JobResult::Done, Hint(None)).is_ok());
        let cases = [
            (
                JobResult::Failed,
                Some(props("failed", "failed", "exit-code")),
                "restart fail.service: job failed; unit is failed/failed, result exit-code (see `journalctl -u fail.service`)",
            ),
            (
                JobResult::Timeout,
                Some(props("failed", "failed", "timeout")),
                "restart fail.service: job timeout; unit is failed/failed, result timeout (see `journalctl -u fail.service`)",
            ),
            (
                JobResult::Dependency,
                Some(props("inactive", "dead", "success")),
                "restart fail.service: job dependency; unit is inactive/dead, result success (see `journalctl -u fail.service`)",
            ),
            (
                JobResult::Canceled,
                None,
                "restart fail.service: job canceled (see `journalctl -u fail.service`)",
            ),
            (
                JobResult::Skipped,
                Some(props("inactive", "dead", "")),
                "restart fail.service: job skipped; unit is inactive/dead (see `journalctl -u fail.service`)",
            ),
        ];
        for (result, hint, want) in cases {
            let err = job_outcome(
                Operation::Restart,
                "fail.service",
                result,
                Hint(hint.map(Box::new)),
            )
            .expect_err("not done");
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn fixed_messages() {
        let e = SystemdError::CannotReload {
            unit: "chronyd.service".into(),
        };
        assert_eq!(
            e.to_string(),
            "reload chronyd.service: unit has no ExecReload"
        );
        let e = SystemdError::NoSuchUnit {
            op: Operation::Restart,
            unit: "crio.service".into(),
        };
        assert_eq!(e.to_string(), "restart crio.service: no such unit");
        let e = SystemdError::ReloadTimeout {
            timeout: Duration::from_secs(300),
        };
        assert_eq!(
            e.to_string(),
            "daemon-reload: systemd did not finish reloading within 300s"
        );
    }

    #[test]
    fn non_method_errors_stay_dbus_errors() {
        let e = SystemdError::from_dbus(
            Operation::Restart,
            "crio.service",
            zbus::Error::Failure("broken pipe".into()),
        );
        assert!(matches!(e, SystemdError::DBus { .. }), "{e:?}");
        assert!(e.to_string().starts_with("restart crio.service: D-Bus: "));
        assert!(!e.is_unreachable());
    }
}
