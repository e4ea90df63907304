//! The long-running daemon: the update flow, the node state machine, drift detection, the force
//! file, signals, sd-notify and metrics.

pub mod metrics;
pub mod notify;
pub mod state;
pub mod status;
