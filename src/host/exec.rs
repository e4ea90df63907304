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

impl std::str::FromStr for PostAction {
    type Err = String;

    /// The form [`PostAction`]'s `Display` writes (`restart crio.service`, `daemon-reload`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(' ') {
            None if s == "daemon-reload" => Ok(PostAction::DaemonReload),
            None if s == "reboot" => Ok(PostAction::Reboot),
            Some(("reload", u)) if !u.is_empty() && !u.contains(' ') => {
                Ok(PostAction::Reload(u.to_string()))
            }
            Some(("restart", u)) if !u.is_empty() && !u.contains(' ') => {
                Ok(PostAction::Restart(u.to_string()))
            }
            _ => Err(format!(
                "{s:?} is not a post action (daemon-reload, reload UNIT, restart UNIT, reboot)"
            )),
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
