//! The standalone status: what `machine-config-daemon status` prints, written by the daemon to
//! `<root>/run/machine-config-daemon/status.json` (atomically) after every change of state.
//!
//! It carries the same facts cluster mode reports through node annotations and the
//! MachineConfigNode: current and desired config, state and reason, the last plan and its
//! outcome, and MachineConfigNode-style conditions with their transition times.

use super::state::{NodeState, clip_reason};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The status file, relative to the root.
pub const STATUS_FILE: &str = "run/machine-config-daemon/status.json";

/// The path of the status file under `root`.
pub fn status_path(root: &Path) -> PathBuf {
    root.join(STATUS_FILE)
}

/// Condition types, in the order the table shows them: the upstream MachineConfigNode v1 types
/// (`machineconfiguration.openshift.io/v1`; the v1alpha1 names `UpdateCompatible`,
/// `UpdateFilesAndOS` and `ReloadedCRIO` are not written). The first six are the phases of an
/// update; the rest are its finer steps. Every condition is written with a non-empty reason
/// (upstream's pattern `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`), a message a person can read
/// and its transition time, as the upstream schema requires.
pub const PHASES: [&str; 6] = [
    "Updated",
    "UpdatePrepared",
    "UpdateExecuted",
    "UpdatePostActionComplete",
    "UpdateComplete",
    "Resumed",
];
/// The finer conditions (shown with `--wide`).
pub const DETAILS: [&str; 6] = [
    "AppliedFilesAndOS",
    "Cordoned",
    "Drained",
    "RebootedNode",
    "Uncordoned",
    "NodeDegraded",
];

/// `True`, `False` or `Unknown`, as Kubernetes conditions write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One MachineConfigNode-style condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// RFC 3339, seconds.
    pub last_transition_time: String,
    pub reason: String,
    pub message: String,
}

/// The whole status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The node's name (host name in standalone mode).
    pub node: String,
    pub pool: String,
    /// The host: OS, version, and how its OS half is changed (rpm-ostree, grubby, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    pub current_config: String,
    pub desired_config: String,
    pub state: NodeState,
    /// Empty when `Done`.
    pub reason: String,
    /// `Rebooting` while a reboot the daemon asked for is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_config_action: Option<String>,
    /// The last plan (the `plan` command's JSON), if an update ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_plan: Option<serde_json::Value>,
    /// What became of the last plan: `applied`, `applied, reboot pending`, `failed: …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<String>,
    /// The last reboot the daemon asked for and saw happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reboot: Option<LastReboot>,
    /// What the current config asks for that this daemon did not apply (install-time
    /// sections, reported by the first apply), one line per field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_applied: Vec<String>,
    pub conditions: Vec<Condition>,
    /// The drift rules in effect (the daemon configuration file's; absent in older statuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::daemon::drift::Summary>,
    /// Drift found on paths whose rule says `report`: the node stays `Done`; one reason per
    /// path, until the path matches again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift_reported: Vec<String>,
    /// The CA files of the ControllerConfig, as last written (none yet: no ControllerConfig
    /// seen since the daemon started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificatesStatus>,
    /// Try mode, when it is on ([`crate::daemon::confirm`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub try_mode: Option<TryModeStatus>,
    /// When this status was written (RFC 3339).
    pub updated: String,
}

/// Try mode's settings and the update on trial, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TryModeStatus {
    /// `5m`.
    pub confirm_timeout: String,
    /// `systemd, 2 in health.d`.
    pub checks: String,
    /// The journal record of the update on trial (or of the rejected config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<crate::daemon::confirm::Record>,
    /// The trial in words (what `status` prints).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// The last result of the checks (every check, `name: outcome`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_checks: Vec<String>,
}

/// What the daemon last did with the ControllerConfig's CA bundles.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificatesStatus {
    /// Where the bundles came from (`ControllerConfig/machine-config-controller`, or the file).
    pub source: String,
    /// The CA files the daemon manages (drift-checked), in path order.
    pub files: Vec<String>,
    /// What the last change of the bundles wrote, removed, and ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub written: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// The policy's actions and what became of each (`restart crio.service: done`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// Bundles not written, and other failures, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// When the bundles were last applied (RFC 3339).
    pub updated: String,
    /// When the post actions that failed run again (RFC 3339; absent: none waits).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub retry_at: String,
    /// The actions that run then: the one that failed and those after it, in order. A daemon
    /// that starts again runs them at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_actions: Vec<String>,
}

/// A reboot the daemon asked for, once it has happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastReboot {
    /// The kind that happened: `soft` (same kernel) or `full` (the kernel restarted).
    pub kind: crate::plan::ladder::RebootKind,
    /// The kind asked for (a soft reboot asked for can end up full, e.g. a power cut).
    pub asked: crate::plan::ladder::RebootKind,
    /// Why that kind was asked for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The config the node rebooted into.
    pub config: String,
    /// When the daemon saw it (RFC 3339).
    pub time: String,
}

/// RFC 3339 time, seconds precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Status {
    /// A status for a node that has not done anything yet.
    pub fn new(node: &str, pool: &str, now: SystemTime) -> Self {
        Status {
            node: node.to_string(),
            pool: pool.to_string(),
            host: String::new(),
            current_config: String::new(),
            desired_config: String::new(),
            state: NodeState::Done,
            reason: String::new(),
            post_config_action: None,
            last_plan: None,
            last_outcome: None,
            last_reboot: None,
            not_applied: Vec::new(),
            conditions: Vec::new(),
            drift: None,
            drift_reported: Vec::new(),
            certificates: None,
            try_mode: None,
            updated: rfc3339(now),
        }
    }

    /// Sets a condition; its transition time changes only when its status does.
    pub fn set_condition(
        &mut self,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: &str,
        now: SystemTime,
    ) {
        let time = rfc3339(now);
        match self.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = time;
                }
                c.status = status;
                c.reason = reason.to_string();
                c.message = message.to_string();
            }
            None => self.conditions.push(Condition {
                type_: type_.to_string(),
                status,
                last_transition_time: time,
                reason: reason.to_string(),
                message: message.to_string(),
            }),
        }
    }

    /// The status of a condition (`Unknown` when never set).
    pub fn condition(&self, type_: &str) -> ConditionStatus {
        self.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.status)
            .unwrap_or(ConditionStatus::Unknown)
    }

    /// Sets state and reason (clipped to 2000 characters; empty when `Done`).
    pub fn set_state(&mut self, state: NodeState, reason: &str) {
        self.state = state;
        self.reason = if state == NodeState::Done {
            String::new()
        } else {
            clip_reason(reason).to_string()
        };
    }

    /// Writes the status to `path` atomically (temporary file, fsync, rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        // Serialised in memory first: straight to the file would be a write(2) per token.
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Reads a status file.
    pub fn read(path: &Path) -> Result<Status, StatusReadError> {
        let bytes = std::fs::read(path).map_err(|source| StatusReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| StatusReadError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The table `status` prints, in the manner of `oc get machineconfignodes`.
    pub fn table(&self, wide: bool) -> String {
        let mut head: Vec<String> = ["NAME", "POOLNAME", "DESIREDCONFIG", "CURRENTCONFIG"]
            .map(String::from)
            .to_vec();
        let mut row = vec![
            self.node.clone(),
            self.pool.clone(),
            dash(&self.desired_config),
            dash(&self.current_config),
        ];
        let mut columns: Vec<&str> = PHASES.to_vec();
        if wide {
            columns.extend(DETAILS);
        }
        for c in columns {
            head.push(column_name(c));
            row.push(format!("{:?}", self.condition(c)));
        }
        head.push("STATE".into());
        row.push(self.state.to_string());
        head.push("REASON".into());
        row.push(self.reason.replace('\n', " "));
        let widths: Vec<usize> = head
            .iter()
            .zip(&row)
            .map(|(h, r)| h.len().max(r.chars().count()))
            .collect();
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    s.push_str(c);
                } else {
                    s.push_str(&format!("{c:<w$}   "));
                }
            }
            s.trim_end().to_string()
        };
        format!("{}\n{}\n", line(&head), line(&row))
    }
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// Column names as `oc get machineconfignodes -o wide` prints them (the upstream CRD's printer
/// columns: `AppliedFilesAndOS` is the column `UpdatedFilesAndOS`).
fn column_name(condition: &str) -> String {
    match condition {
        "AppliedFilesAndOS" => "UPDATEDFILESANDOS".into(),
        "Cordoned" => "CORDONEDNODE".into(),
        "Drained" => "DRAINEDNODE".into(),
        "Uncordoned" => "UNCORDONEDNODE".into(),
        other => other.to_uppercase(),
    }
}

/// Errors reading the status file.
#[derive(Debug, thiserror::Error)]
pub enum StatusReadError {
    #[error("cannot read status {}: {source} (is the daemon running with this --root?)", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse status {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}
