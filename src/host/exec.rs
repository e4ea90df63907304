//! How post actions and unit operations reach systemd: the [`Executor`] trait. The systemd
//! D-Bus client implements it; [`Skip`] (`--no-systemd`) reports everything as skipped, never
//! as done.

use super::HostError;
use super::units::UnitOp;

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

/// Performs unit operations and post actions. The first error stops the sequence.
pub trait Executor {
    fn unit_op(&mut self, op: &UnitOp) -> Result<Outcome, HostError>;
    fn post_action(&mut self, action: &PostAction) -> Result<Outcome, HostError>;
}

/// The executor without systemd: every operation is skipped with a reason.
pub struct Skip(pub String);

impl Executor for Skip {
    fn unit_op(&mut self, _op: &UnitOp) -> Result<Outcome, HostError> {
        Ok(Outcome::Skipped(self.0.clone()))
    }
    fn post_action(&mut self, _action: &PostAction) -> Result<Outcome, HostError> {
        Ok(Outcome::Skipped(self.0.clone()))
    }
}
