//! The node's state machine (SPEC §8): `Done`, `Working`, `Degraded`, `Unreconcilable`.
//!
//! Every transition goes through [`NodeStatus::transition`], which refuses transitions that
//! make no sense (an update cannot end unless one started), stamps the time and keeps the
//! MachineConfigNode-style conditions in step. The state is reported by the standalone status
//! file and, in cluster mode, by node annotations; both read it from here.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The node state, as the `machineconfiguration.openshift.io/state` annotation writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeState {
    Done,
    Working,
    Degraded,
    Unreconcilable,
}

impl NodeState {
    /// All states, in the order metrics list them.
    pub const ALL: [NodeState; 4] = [
        NodeState::Done,
        NodeState::Working,
        NodeState::Degraded,
        NodeState::Unreconcilable,
    ];

    /// The exact annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Done => "Done",
            NodeState::Working => "Working",
            NodeState::Degraded => "Degraded",
            NodeState::Unreconcilable => "Unreconcilable",
        }
    }

    /// Whether moving from `self` to `to` is allowed:
    /// - an update (`Working`) starts from any state but `Working` (one update at a time);
    /// - `Unreconcilable` is the verdict of an update's check, so only `Working` leads there;
    /// - `Done` follows an update, or a check that found the disk right again after `Degraded`
    ///   (drift restored); an `Unreconcilable` node becomes `Done` only through an update;
    /// - `Degraded` can be entered from anywhere (drift, failed update, failed validation), and
    ///   again from `Degraded` with a new reason.
    pub fn can_go_to(self, to: NodeState) -> bool {
        use NodeState::*;
        match (self, to) {
            (Working, Working) => false,
            (_, Working) => true,
            (Working, Unreconcilable) => true,
            (_, Unreconcilable) => false,
            (Working | Degraded | Done, Done) => true,
            (Unreconcilable, Done) => false,
            (_, Degraded) => true,
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maximum length of the reason, as the annotation allows.
pub const MAX_REASON: usize = 2000;

/// `reason` cut to [`MAX_REASON`] characters (never splitting a character).
pub fn clip_reason(reason: &str) -> &str {
    match reason.char_indices().nth(MAX_REASON) {
        Some((i, _)) => &reason[..i],
        None => reason,
    }
}
