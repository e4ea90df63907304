//! machine-config-daemon: applies rendered MachineConfigs to a node with the least disruption the
//! node disruption policy allows.
//!
//! The crate is split along the flow of an update (see README): [`model`] parses what users and
//! the cluster write, [`plan`] decides, [`host`] changes the node.

pub mod cluster;
pub mod controller;
pub mod daemon;
pub mod host;
pub mod model;
pub mod plan;
pub mod server;
pub mod watch;
