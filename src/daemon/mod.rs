//! The long-running daemon: the update flow, the node state machine, drift detection, the force
//! file, signals, sd-notify and metrics.
//!
//! - [`update`]: the update flow shared by `apply` and `start` (SPEC §5).
//! - [`run`]: `start`: start-up, the event loop, drift, force file (both modes).
//! - [`certs`]: the CA files of the `ControllerConfig` (pure).
//! - [`drift`]: the daemon configuration file's drift rules (degrade, report, heal) and the
//!   pure decisions made from them.
//! - [`certs`]: the CA files of the `ControllerConfig` (the mapping is pure; writing and the
//!   policy's actions are driven by [`run`]); [`controllerconfig`]: cluster mode's watch of it.
//! - [`confirm`]: try mode: the confirmation state machine (pure) and its journal record;
//!   [`health`]: the health checks that confirm an update on trial.
//! - [`cluster`]: cluster mode of `start`: the node watch as source, reporting to the API server.
//! - [`firstboot`]: cluster mode's first start on a machine the machine config server provisioned.
//! - [`source`]: the desired config and policy files of standalone mode.
//! - [`state`]: the node state machine; [`status`]: the standalone status file.
//! - [`reboot`]: the record of a requested reboot, checked after boot.
//! - [`metrics`], [`notify`]: Prometheus metrics and sd-notify.

pub mod certs;
pub mod cluster;
pub mod confirm;
pub mod controllerconfig;
pub mod drift;
pub mod firstboot;
pub mod health;
pub mod metrics;
pub mod notify;
pub mod reboot;
pub mod run;
pub mod source;
pub mod state;
pub mod status;
pub mod update;

/// The force file (SPEC §7), as a path on the node.
pub const FORCE_FILE: &str = crate::host::manifest::FORCE_FILE;

/// Gives freed heap memory back to the system after an update: the configs of an update are
/// large and short-lived, and the daemon then idles for a long time.
pub fn trim_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
