//! The controller (cluster only, SPEC §9 and §11): the parts that answer the daemons.
//!
//! | module     | watches                              | writes                                        |
//! |------------|--------------------------------------|-----------------------------------------------|
//! | [`drain`]  | every Node                           | `spec.unschedulable`, evictions, `lastAppliedDrain`, `drainBlocked`, events |
//! | [`policy`] | `MachineConfiguration/cluster`       | its `status` (effective policy, observedGeneration, condition) |
//!
//! Each part has a `run(client, opts)` that lives on watches (no polling) until the process
//! ends, and pure functions for its decisions, table-tested without a server.

pub mod drain;
pub mod policy;

use crate::cluster::ClusterError;

/// Errors of the controller's parts.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A request to the API server failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A watch ended: the process is shutting down.
    #[error("the watch of {0} stopped")]
    WatchStopped(String),
}
