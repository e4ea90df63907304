//! The post actions of an update and what became of each. They are carried out over D-Bus by
//! the update flow (`crate::daemon::update`); without systemd they are reported as skipped,
//! never as done.

/// A post action of a plan (SPEC §5 step 10), in execution order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", content = "unit")]
pub enum PostAction {
    DaemonReload,
    Reload(String),
    Restart(String),
    Reboot,
}

impl std::fmt::Display for PostAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostAction::DaemonReload => write!(f, "daemon-reload"),
            PostAction::Reload(u) => write!(f, "reload {u}"),
            PostAction::Restart(u) => write!(f, "restart {u}"),
            PostAction::Reboot => write!(f, "reboot"),
        }
    }
}

/// What became of an operation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "outcome", content = "reason")]
pub enum Outcome {
    Done,
    Skipped(String),
}
