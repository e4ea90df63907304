//! Cluster mode: the daemon's Kubernetes contract (SPEC §8–§10).
//!
//! This module owns every conversation with the API server and nothing else; the update flow
//! (`daemon`) decides *what* to do and calls in here to learn the desired config and to report.
//! Each submodule owns one object kind:
//!
//! | module            | object                                          | requests                     |
//! |-------------------|-------------------------------------------------|------------------------------|
//! | [`node`]          | this node's `Node` (annotations, cordon)        | one watch; PATCH on change   |
//! | [`machineconfig`] | `MachineConfig` by name                         | one GET per desired config   |
//! | [`policy`]        | `MachineConfiguration` `cluster` (the policy)   | one watch                    |
//! | [`machineconfiguration`] | its Rust types and packaged CRD          | none                         |
//! | [`controllerconfig`] | `ControllerConfig`: types and packaged CRD  | none                         |
//! | [`events`]        | `events.k8s.io/v1` Events about the node        | one POST (or PATCH) per event|
//! | [`mcn`]           | this node's `MachineConfigNode`                 | PATCH status on change       |
//! | [`drain`]         | drain, by controller hand-off or by itself      | see [`drain`]                |
//! | [`preflight`]     | the drain pre-flight's verdict (pure)           | none                         |
//!
//! Scale: the daemon never lists or watches anything cluster-wide. It watches its own Node (field
//! selector `metadata.name=NAME`) and the single `MachineConfiguration` named `cluster`, GETs a
//! MachineConfig by name when the desired config changes, and (self-drain only) lists the pods of
//! its node and, during the drain's pre-flight, watches them and the PodDisruptionBudgets of
//! their namespaces. When nothing changes it makes no request beyond renewing those two watches.
//! See docs/cluster.md for measured request counts.
//!
//! Typical use by the daemon:
//! ```no_run
//! # async fn demo() -> Result<(), machine_config_daemon::cluster::ClusterError> {
//! use machine_config_daemon::cluster::{self, node::{KubeNode, NodeState}, Options};
//! let client = cluster::connect(None).await?;
//! let node = KubeNode::new(client.clone(), "worker-0", Options::default());
//! let view = node.wait_synced().await?;
//! if let Some(desired) = view.desired_config.as_deref() {
//!     let mc = cluster::machineconfig::fetch_machine_config(&client, desired, &Options::default()).await?;
//!     // ... parse `mc` with the model parser, run the update flow ...
//!     node.report(NodeState::Done, "", Some(desired)).await?;
//! }
//! # Ok(()) }
//! ```

pub mod controllerconfig;
pub mod crd;
pub mod drain;
pub mod events;
pub mod machineconfig;
pub mod machineconfiguration;
pub mod mcn;
pub mod mcp;
pub mod named;
pub mod node;
pub mod policy;
pub mod preflight;
pub(crate) mod retry;

use std::path::Path;
use std::time::Duration;

pub use kube::Client;

/// Prefix of every annotation the daemon reads or writes on its Node.
pub const ANNOTATION_PREFIX: &str = "machineconfiguration.openshift.io/";

/// Errors of the cluster side. Every variant says which object and what failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A request failed (after retries for transient failures).
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// No kubeconfig or in-cluster credentials.
    #[error("cannot build a Kubernetes client: {0}")]
    Config(String),
    /// The named MachineConfig does not exist.
    #[error(
        "MachineConfig {name:?} not found (machineconfiguration.openshift.io/v1 machineconfigs)"
    )]
    MachineConfigNotFound { name: String },
    /// The daemon's Node does not exist.
    #[error("node {node:?} not found")]
    NodeNotFound { node: String },
    /// A write kept conflicting with concurrent writers.
    #[error("{what}: still conflicting after {attempts} attempts")]
    Conflict { what: String, attempts: u32 },
    /// An object had an unexpected shape.
    #[error("{what}: {detail}")]
    Invalid { what: String, detail: String },
    /// Waiting for something the cluster should do took too long.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    /// Self-drain could not evict every pod within the drain timeout.
    #[error("drain of node {node:?} timed out after {after:?}; pods blocking: {}", pods.join(", "))]
    DrainTimeout {
        node: String,
        after: Duration,
        pods: Vec<String>,
    },
    /// The drain pre-flight still found pods PodDisruptionBudgets keep from being evicted when
    /// the drain timeout passed; the node was never cordoned.
    #[error("drain of node {node:?} not started after {after:?}: {message}")]
    DrainPreflightTimeout {
        node: String,
        after: Duration,
        message: String,
    },
    /// A watch task ended (the daemon is shutting down).
    #[error("the watch of {0} stopped")]
    WatchStopped(String),
}

impl ClusterError {
    pub(crate) fn api(what: impl Into<String>, source: kube::Error) -> Self {
        ClusterError::Api {
            what: what.into(),
            source: Box::new(source),
        }
    }
    /// True for a refusal that sending the same request again cannot change: 400 (bad
    /// request), 403 (forbidden), 422 (invalid), a 404 of an update (`update`: the object to
    /// change is gone; a 404 of a GET is an object that may still appear), and
    /// [`ClusterError::Invalid`] (refused before sending). The daemon reports these once and
    /// tries again only when what it would send changes.
    pub fn is_permanent(&self, update: bool) -> bool {
        match self {
            ClusterError::Invalid { .. } => true,
            ClusterError::NodeNotFound { .. } => update,
            _ => match self.status_code() {
                Some(400 | 403 | 422) => true,
                Some(404) => update,
                _ => false,
            },
        }
    }

    /// HTTP status code of an API error, if this is one.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            ClusterError::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => Some(s.code),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Timing knobs. The defaults are the production values; tests shrink them.
#[derive(Debug, Clone)]
pub struct Options {
    /// Attempts for a request that fails transiently (5xx, 429 outside eviction, connection).
    pub request_attempts: u32,
    /// First retry delay; doubled each time up to `backoff_max`.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Attempts for an optimistic-concurrency write that keeps getting 409.
    pub conflict_attempts: u32,
    /// How long to wait for the operator to observe the `MachineConfiguration` generation.
    pub policy_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            request_attempts: 8,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            conflict_attempts: 10,
            policy_wait: Duration::from_secs(60),
        }
    }
}

impl Options {
    /// Fast values for tests against a local API server.
    pub fn fast() -> Self {
        Options {
            request_attempts: 8,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            conflict_attempts: 10,
            policy_wait: Duration::from_secs(2),
        }
    }
}

/// A client from `kubeconfig` when given, else in-cluster credentials (the DaemonSet), else the
/// default kubeconfig (`KUBECONFIG`, `~/.kube/config`).
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ClusterError::Config(e.to_string()))?,
    };
    client_from_config(config)
}

/// A client from `config`, with kube's own retry layer turned off: this module retries itself
/// ([`Options`]), and self-drain must see each 429 of the Eviction API to pace its retries and
/// honour the drain timeout (kube's layer would retry a 429 up to 15 times with growing delays).
pub fn client_from_config(mut config: kube::Config) -> Result<Client, ClusterError> {
    config.default_retry = false;
    Client::try_from(config).map_err(|e| ClusterError::Config(e.to_string()))
}
