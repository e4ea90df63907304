//! The controller (SPEC §11; `machine-config-daemon controller`): renders each
//! MachineConfigPool's MachineConfigs into a `rendered-<pool>-<hash>` config, rolls the pool's
//! nodes onto it a few at a time, and reports the pool's status.
//!
//! | module        | owns                                                                  |
//! |---------------|-----------------------------------------------------------------------|
//! | [`pool`]      | the node view, label selectors, pool membership (pure)                |
//! | [`render`]    | source selection, the rendered object, garbage collection (pure)      |
//! | [`rollout`]   | which nodes next: order, `maxUnavailable`, holds; the schedule (pure) |
//! | [`status`]    | the pool's counts and conditions (pure)                               |
//! | [`decide`]    | one whole pass over every pool: caches in, writes out (pure)          |
//! | [`reconcile`] | the reflectors and the loop that sends [`decide`]'s writes           |
//! | [`lease`]     | leader election on a `coordination.k8s.io/v1` Lease                   |
//! | [`preview`]   | `plan --pool`: a change to a pool previewed per node, and its schedule |
//! | [`progress`]  | a pool's rollout as `rollout status` shows it (pure)                 |
//! | [`drain`]     | the drain controller: answers `desiredDrain` (SPEC §9)                |
//! | [`policy`]    | `MachineConfiguration/cluster` status: the effective policy           |
//! | [`certs`]     | the CA bundles' certificates, expiries and warnings (pure)            |
//! | [`certificates`] | `ControllerConfig` status, pools' `certExpirys`, expiry warnings   |
//! | [`metrics`]   | `/metrics` (`mcc_certificate_expiry_seconds`) and `/healthz`          |
//!
//! Every part lives on watches (no polling) and runs under the same Lease.
//!
//! Choices (each module says more): unavailable = cordoned, not Ready, Working, Degraded,
//! Unreconcilable, or `desiredConfig` ≠ `currentConfig` ([`pool::NodeInfo::is_unavailable`]);
//! the [`render::KEEP_UNREFERENCED`] newest unreferenced rendered configs of each pool are kept
//! for rollback; the Lease lasts 15 s, is renewed every 2 s and lost after 10 s without renewal
//! ([`lease::LeaseTimings`]).
//!
//! The decisions are pure functions with table tests (tests/controller_*.rs); `plan --pool`
//! and `rollout status` can reuse [`rollout::schedule`] and [`status::pool_status`].

pub mod certificates;
pub mod certs;
pub mod decide;
pub mod drain;
pub mod lease;
pub mod metrics;
pub mod policy;
pub mod pool;
pub mod preview;
pub mod progress;
pub mod reconcile;
pub mod render;
pub mod rollout;
pub mod status;

use crate::cluster::{Client, ClusterError, Options};

/// Errors of the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A request failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Something the controller built or read had an unexpected shape.
    #[error("{0}")]
    Invalid(String),
    /// A watch stream ended (it never should while the process runs).
    #[error("the watch of {0} ended")]
    WatchEnded(&'static str),
    /// The leader Lease was lost: the process must stop reconciling.
    #[error("lost the leader lease {namespace}/{name}")]
    LeaseLost { namespace: String, name: String },
}

/// How the controller process runs.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// The leader election identity (the pod's name).
    pub identity: String,
    /// The Lease's namespace.
    pub namespace: String,
    pub lease: lease::LeaseTimings,
    pub requests: Options,
    /// The drain controller's timings (eviction retry, when a blocked drain is reported).
    pub drain: drain::DrainControllerOptions,
    /// Where the certificate controller reports the certificates for `/metrics` (None: nowhere).
    pub metrics: Option<std::sync::Arc<metrics::ControllerMetrics>>,
}

/// The controller process: waits for the Lease, then runs every controller until one fails or
/// the Lease is lost (an error either way: the process exits and is restarted), or `shutdown`
/// resolves (the Lease is given up, `Ok`).
pub async fn run(
    client: Client,
    opts: ControllerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ControllerError> {
    tokio::pin!(shutdown);
    let mut leader = tokio::select! {
        l = lease::acquire(client.clone(), &opts.namespace, &opts.identity, opts.lease) => l?,
        _ = &mut shutdown => return Ok(()),
    };
    let (cert_expirys, cert_expirys_rx) = tokio::sync::watch::channel(None);
    let pools = reconcile::run(
        client.clone(),
        opts.requests.clone(),
        &opts.identity,
        cert_expirys_rx,
    );
    let certificates = certificates::run(
        client.clone(),
        opts.requests.clone(),
        &opts.identity,
        cert_expirys,
        opts.metrics.clone(),
    );
    let drains = drain::run(client.clone(), opts.drain.clone());
    let policy_status = policy::run(
        client.clone(),
        policy::PolicyStatusOptions {
            api: opts.requests.clone(),
        },
    );
    let result = tokio::select! {
        r = pools => r,
        r = drains => r,
        r = policy_status => r,
        r = certificates => r,
        _ = leader.lost() => Err(ControllerError::LeaseLost {
            namespace: opts.namespace.clone(),
            name: lease::LEASE_NAME.into(),
        }),
        _ = &mut shutdown => Ok(()),
    };
    leader.release().await;
    result
}
