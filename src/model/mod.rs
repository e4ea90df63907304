//! What users and the cluster write: MachineConfigs (normalised Ignition), the node disruption
//! policy, and rendering. Pure data and pure functions; no I/O beyond parsing bytes given to it.

pub mod config;
pub mod policy;

pub use config::*;
