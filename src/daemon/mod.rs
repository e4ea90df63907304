//! The long-running daemon: the update flow, the node state machine, drift detection, the force
//! file, signals, sd-notify and metrics.

pub mod metrics;
pub mod notify;
pub mod state;
pub mod status;

/// The force file (SPEC §7), as a path on the node.
pub const FORCE_FILE: &str = "/run/machine-config-daemon-force";
