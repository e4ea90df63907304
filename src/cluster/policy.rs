//! The node disruption policy from the cluster: the `MachineConfiguration` named `cluster`
//! (`operator.openshift.io/v1`, cluster-scoped), watched by name (SPEC §3).
//!
//! Which policy applies ([`PolicyWatch::current`]):
//! - the object is absent (or its CRD is not installed): [`ClusterPolicy::Defaults`];
//! - it has no status from an operator (no `status.observedGeneration` and no cluster policies):
//!   [`ClusterPolicy::Spec`], the user's `spec.nodeDisruptionPolicy`, which the caller validates
//!   and merges over the defaults (model::policy);
//! - otherwise the operator's merged `status.nodeDisruptionPolicyStatus.clusterPolicies`, once
//!   `status.observedGeneration == metadata.generation` — waited for at most
//!   [`Options::policy_wait`]; after that the status is used anyway and marked `stale`.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::named::{self, NamedWatch};
use super::{Client, ClusterError, Options};
use crate::model::policy::Policy;

/// Name of the cluster's `MachineConfiguration`.
pub const MACHINE_CONFIGURATION_NAME: &str = "cluster";

/// The `machineconfigurations` resource of `operator.openshift.io/v1`.
pub fn machine_configuration_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("operator.openshift.io", "v1", "MachineConfiguration"),
        "machineconfigurations",
    )
}

/// The policy source the daemon should use.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterPolicy {
    /// The operator's effective policy. `stale` when the operator had not observed the latest
    /// generation within the wait.
    Effective { policy: Policy, stale: bool },
    /// No operator: `spec.nodeDisruptionPolicy` as written (`{}` when absent), to be validated
    /// and merged over the defaults by the caller.
    Spec(Value),
    /// No `MachineConfiguration` named `cluster`: the cluster defaults.
    Defaults,
}

/// What the watch has seen of the object (as JSON).
pub type Seen = named::Seen<Value>;

/// A watch of `machineconfigurations/cluster` ([`named::NamedWatch`]). Dropping it stops the
/// watch.
pub struct PolicyWatch {
    watch: NamedWatch<Value>,
    opts: Options,
}

impl PolicyWatch {
    /// Starts the watch. Must be called inside a Tokio runtime.
    pub fn new(client: Client, opts: Options) -> Self {
        let api: Api<DynamicObject> = Api::all_with(client, &machine_configuration_resource());
        let watch = NamedWatch::new(
            api,
            MACHINE_CONFIGURATION_NAME,
            &opts,
            "MachineConfiguration cluster",
            |o| match serde_json::to_value(&o) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot serialise MachineConfiguration");
                    None
                }
            },
        );
        PolicyWatch { watch, opts }
    }

    /// A receiver woken on every change of the object (to re-plan with a new policy).
    pub fn subscribe(&self) -> watch::Receiver<Seen> {
        self.watch.rx.clone()
    }

    /// The policy to use now; may wait up to [`Options::policy_wait`] (see the module doc).
    pub async fn current(&self) -> Result<ClusterPolicy, ClusterError> {
        let deadline = Instant::now() + self.opts.policy_wait;
        let mut rx = self.watch.rx.clone();
        let first = wait_for(&mut rx, deadline, |s| !matches!(s, Seen::Pending)).await?;
        let obj = match first {
            Some(Seen::Present(obj)) => obj,
            Some(_) => return Ok(ClusterPolicy::Defaults),
            None => {
                tracing::warn!(
                    wait = ?self.opts.policy_wait,
                    "MachineConfiguration/cluster not listed in time; using cluster defaults"
                );
                return Ok(ClusterPolicy::Defaults);
            }
        };
        if !has_operator_status(&obj) {
            return Ok(ClusterPolicy::Spec(spec_policy(&obj)));
        }
        let observed = wait_for(
            &mut rx,
            deadline,
            |s| matches!(s, Seen::Present(o) if generation_observed(o)),
        )
        .await?;
        let (obj, stale) = match observed {
            Some(Seen::Present(o)) => (o, false),
            Some(_) => return Ok(ClusterPolicy::Defaults),
            None => {
                let latest = rx.borrow().clone();
                match latest {
                    Seen::Present(o) => {
                        tracing::warn!(
                            wait = ?self.opts.policy_wait,
                            generation = ?o.pointer("/metadata/generation"),
                            observed = ?o.pointer("/status/observedGeneration"),
                            "operator has not observed the latest MachineConfiguration; using its last status"
                        );
                        (o, true)
                    }
                    _ => return Ok(ClusterPolicy::Defaults),
                }
            }
        };
        match obj.pointer("/status/nodeDisruptionPolicyStatus/clusterPolicies") {
            Some(p) => {
                let policy: Policy =
                    serde_json::from_value(p.clone()).map_err(|e| ClusterError::Invalid {
                        what: "MachineConfiguration/cluster status.nodeDisruptionPolicyStatus.clusterPolicies".into(),
                        detail: e.to_string(),
                    })?;
                Ok(ClusterPolicy::Effective { policy, stale })
            }
            None => Ok(ClusterPolicy::Spec(spec_policy(&obj))),
        }
    }
}

/// Waits until `pred` holds or `deadline` passes (`Ok(None)`).
async fn wait_for(
    rx: &mut watch::Receiver<Seen>,
    deadline: Instant,
    pred: impl Fn(&Seen) -> bool,
) -> Result<Option<Seen>, ClusterError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(remaining.max(Duration::ZERO), rx.wait_for(pred)).await {
        Ok(Ok(seen)) => Ok(Some(seen.clone())),
        Ok(Err(_)) => Err(ClusterError::WatchStopped(
            "MachineConfiguration/cluster".into(),
        )),
        Err(_) => Ok(None),
    }
}

fn has_operator_status(obj: &Value) -> bool {
    obj.pointer("/status/observedGeneration").is_some()
        || obj
            .pointer("/status/nodeDisruptionPolicyStatus/clusterPolicies")
            .is_some()
}

fn generation_observed(obj: &Value) -> bool {
    let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
    let observed = obj
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    generation.is_none() || generation == observed
}

fn spec_policy(obj: &Value) -> Value {
    obj.pointer("/spec/nodeDisruptionPolicy")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()))
}
