//! The policy status (SPEC §3): the controller fills the status of `MachineConfiguration/cluster`
//! that the daemons read.
//!
//! On every change of the object ([`run`], one watch by name) the controller computes the status
//! it should have ([`desired_status`], a pure function) and writes it through the status
//! subresource only when it differs from the stored one:
//! - `spec.nodeDisruptionPolicy` is validated with the model's rules (`model::policy`: every
//!   violation, with its field path). A valid policy is merged over the cluster defaults
//!   ([`crate::model::policy::effective`]) into `status.nodeDisruptionPolicyStatus.clusterPolicies`.
//! - An invalid one is **never applied**: `clusterPolicies` keeps its last good value (the
//!   defaults when there was none), and the condition [`CONDITION_TYPE`] says why: status `True`,
//!   reason [`REASON_INVALID`], a message naming each offending field and the rule it breaks.
//!   A valid policy sets it `False`, reason [`REASON_VALID`].
//! - `status.observedGeneration` is set to `metadata.generation` in both cases: the daemons wait
//!   for it before they trust `clusterPolicies`, and an invalid spec must not leave them waiting
//!   (they keep the last good policy, which is what "never applied" means for them).
//!
//! Other writers' conditions and status fields are left as they are. The write is a JSON merge
//! patch of the status carrying `metadata.resourceVersion`: a concurrent change answers 409, and
//! the watch brings the newer object, from which the status is computed again.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::ControllerError;
use crate::cluster::crd::{Condition, ConditionStatus};
use crate::cluster::named::{ByVersion, NamedWatch, Seen};
use crate::cluster::policy::{MACHINE_CONFIGURATION_NAME, machine_configuration_resource};
use crate::cluster::retry::{is_code, with_retries};
use crate::cluster::{Client, ClusterError, Options};
use crate::model::policy::parse::{SPEC_FIELD, STATUS_FIELD};
use crate::model::policy::validate::{Rules, policy_from_value};
use crate::model::policy::{Policy, defaults, effective};

/// The condition this controller owns.
pub const CONDITION_TYPE: &str = "NodeDisruptionPolicyDegraded";
/// Reason of the condition when the spec's policy is valid and in effect.
pub const REASON_VALID: &str = "AsExpected";
/// Reason of the condition when the spec's policy is invalid (and not applied).
pub const REASON_INVALID: &str = "InvalidNodeDisruptionPolicy";
/// The longest condition message the API accepts.
const MAX_MESSAGE: usize = 32768;

/// Timing of the policy status controller.
#[derive(Debug, Clone, Default)]
pub struct PolicyStatusOptions {
    /// Retries and backoff of single requests and of the watch.
    pub api: Options,
}

/// The spec's policy, validated: the effective policy, or every violation as one message.
pub fn evaluate(spec_policy: &Value) -> Result<Policy, String> {
    let mut errors = Vec::new();
    let policy = policy_from_value(spec_policy, SPEC_FIELD, Rules::SPEC, &mut errors);
    if errors.is_empty() {
        Ok(effective(&policy))
    } else {
        Err(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// The status `MachineConfiguration/cluster` should have: `current` (the stored status, `null`
/// when none) with `observedGeneration`, `nodeDisruptionPolicyStatus.clusterPolicies` and the
/// condition [`CONDITION_TYPE`] computed from `generation` and `spec_policy`
/// (`spec.nodeDisruptionPolicy`, `null` when absent). `now` (RFC 3339) becomes the condition's
/// `lastTransitionTime` when its status changes.
pub fn desired_status(
    generation: Option<i64>,
    spec_policy: &Value,
    current: &Value,
    now: &str,
) -> Value {
    let mut status = match current {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    let last_good = || -> Policy {
        let stored = current.pointer("/nodeDisruptionPolicyStatus/clusterPolicies");
        let mut errors = Vec::new();
        match stored {
            Some(v) if !v.is_null() => {
                let p = policy_from_value(v, STATUS_FIELD, Rules::STATUS, &mut errors);
                if errors.is_empty() { p } else { defaults() }
            }
            _ => defaults(),
        }
    };
    let (policy, condition_status, reason, message) = match evaluate(spec_policy) {
        Ok(policy) => (
            policy,
            ConditionStatus::False,
            REASON_VALID,
            "the node disruption policy is valid and in effect".to_string(),
        ),
        Err(errors) => {
            let mut message = format!(
                "the node disruption policy is invalid and not applied (the last valid one stays in effect): {errors}"
            );
            if message.len() > MAX_MESSAGE {
                let mut end = MAX_MESSAGE;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            (last_good(), ConditionStatus::True, REASON_INVALID, message)
        }
    };
    if let Some(g) = generation {
        status["observedGeneration"] = json!(g);
    }
    status["nodeDisruptionPolicyStatus"]["clusterPolicies"] =
        serde_json::to_value(&policy).expect("policy to JSON");

    let mut conditions: Vec<Value> = current
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let old = conditions.iter().position(|c| c["type"] == CONDITION_TYPE);
    let transition = match old.map(|i| &conditions[i]) {
        Some(c)
            if c["status"] == json!(condition_status) && c["lastTransitionTime"].is_string() =>
        {
            c["lastTransitionTime"].as_str().unwrap_or(now).to_string()
        }
        _ => now.to_string(),
    };
    let condition = serde_json::to_value(Condition {
        type_: CONDITION_TYPE.into(),
        status: condition_status,
        last_transition_time: transition,
        reason: reason.into(),
        message,
        observed_generation: generation,
    })
    .expect("condition to JSON");
    match old {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
    status["conditions"] = Value::Array(conditions);
    status
}

/// Runs the policy status controller until its watch ends.
pub async fn run(client: Client, opts: PolicyStatusOptions) -> Result<(), ControllerError> {
    let api: Api<DynamicObject> = Api::all_with(client, &machine_configuration_resource());
    let mut watch = NamedWatch::new(
        api.clone(),
        MACHINE_CONFIGURATION_NAME,
        &opts.api,
        "MachineConfiguration cluster",
        |o| Some(ByVersion(o)),
    );
    tracing::info!("policy status controller started");
    while watch.rx.changed().await.is_ok() {
        let obj = match &*watch.rx.borrow_and_update() {
            Seen::Present(o) => o.0.clone(),
            // Not listed yet, absent, or not served: nothing to fill.
            Seen::Pending | Seen::Missing => continue,
        };
        if let Err(e) = reconcile(&api, &obj, &opts).await {
            // A newer version of the object (409) comes through the watch; anything else is
            // logged, and the next change of the object tries again.
            tracing::warn!(error = %e, "cannot write the MachineConfiguration status");
        }
    }
    Err(ControllerError::WatchEnded("MachineConfiguration cluster"))
}

async fn reconcile(
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
    opts: &PolicyStatusOptions,
) -> Result<(), ClusterError> {
    let generation = obj.metadata.generation;
    let spec_policy = obj
        .data
        .pointer("/spec/nodeDisruptionPolicy")
        .cloned()
        .unwrap_or(Value::Null);
    let current = obj.data.get("status").cloned().unwrap_or(Value::Null);
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let desired = desired_status(generation, &spec_policy, &current, &now);
    if desired == current {
        tracing::debug!(?generation, "MachineConfiguration status up to date");
        return Ok(());
    }
    let body = json!({
        "metadata": {"resourceVersion": obj.metadata.resource_version},
        "status": {
            "observedGeneration": desired["observedGeneration"],
            "nodeDisruptionPolicyStatus": desired["nodeDisruptionPolicyStatus"],
            "conditions": desired["conditions"],
        },
    });
    let params = PatchParams::default();
    let patch = Patch::Merge(&body);
    let what = format!("MachineConfiguration {MACHINE_CONFIGURATION_NAME}: write status");
    match with_retries(&opts.api, &what, || {
        api.patch_status(MACHINE_CONFIGURATION_NAME, &params, &patch)
    })
    .await
    {
        Ok(_) => {
            let valid = desired["conditions"]
                .as_array()
                .and_then(|l| l.iter().find(|c| c["type"] == CONDITION_TYPE))
                .map(|c| c["reason"] == REASON_VALID);
            tracing::info!(?generation, ?valid, "MachineConfiguration status written");
            Ok(())
        }
        Err(ClusterError::Api { source, .. }) if is_code(&source, 409) => {
            tracing::debug!("MachineConfiguration changed meanwhile; the watch brings it");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
