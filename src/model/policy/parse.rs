//! Reading a `MachineConfiguration` document (`operator.openshift.io/v1`) from JSON or YAML.
//!
//! The format is detected by content: a document whose first non-blank character is `{` is JSON,
//! anything else is YAML. Only the node disruption policy is taken from the document
//! (`spec.nodeDisruptionPolicy` and, if present, `status.nodeDisruptionPolicyStatus.clusterPolicies`);
//! other fields (`logLevel`, `managementState`, ...) are ignored.

use super::validate::{Rules, policy_from_value};
use super::{Policy, PolicyError, PolicyErrors};
use serde_json::Value;

/// The API version of `MachineConfiguration` objects.
pub const API_VERSION: &str = "operator.openshift.io/v1";
/// The kind of `MachineConfiguration` objects.
pub const KIND: &str = "MachineConfiguration";
/// Field path of the user policy.
pub const SPEC_FIELD: &str = "spec.nodeDisruptionPolicy";
/// Field path of the effective policy in the status.
pub const STATUS_FIELD: &str = "status.nodeDisruptionPolicyStatus.clusterPolicies";

/// The parts of a `MachineConfiguration` this project uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MachineConfiguration {
    /// `metadata.name` (the cluster's object is named `cluster`), if given.
    pub name: Option<String>,
    /// `spec.nodeDisruptionPolicy`, validated (empty when absent).
    pub policy: Policy,
    /// `status.nodeDisruptionPolicyStatus.clusterPolicies`, validated, when present.
    pub status: Option<Policy>,
}

impl MachineConfiguration {
    /// The effective policy of this object: the defaults with its user policy merged over them.
    pub fn effective_policy(&self) -> Policy {
        super::effective(&self.policy)
    }
}

/// Parses and validates a `MachineConfiguration` document. Every violation is reported, each
/// naming `origin` (a file name, `-`, `MachineConfiguration/cluster`) and, for an entry, its
/// field path: `policy.yaml: spec.nodeDisruptionPolicy.files[2].actions[0]: ...`.
pub fn parse_machine_configuration(
    bytes: &[u8],
    origin: &str,
) -> Result<MachineConfiguration, PolicyErrors> {
    parse(bytes)
        .map_err(|errors| PolicyErrors(errors.into_iter().map(|e| e.with_origin(origin)).collect()))
}

fn parse(bytes: &[u8]) -> Result<MachineConfiguration, Vec<PolicyError>> {
    let doc = parse_document(bytes).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let Value::Object(top) = &doc else {
        return Err(vec![PolicyError::new(
            "",
            "expected a MachineConfiguration object (a mapping)",
        )]);
    };
    match top.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => errors.push(PolicyError::new(
            "apiVersion",
            format!("expected {API_VERSION:?}, found {other:?}"),
        )),
        None => errors.push(PolicyError::new(
            "apiVersion",
            format!("expected {API_VERSION:?}"),
        )),
    }
    match top.get("kind").and_then(Value::as_str) {
        Some(KIND) => {}
        Some(other) => errors.push(PolicyError::new(
            "kind",
            format!("expected {KIND:?}, found {other:?}"),
        )),
        None => errors.push(PolicyError::new("kind", format!("expected {KIND:?}"))),
    }
    let name = top
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);

    let spec = top
        .get("spec")
        .and_then(|s| s.get("nodeDisruptionPolicy"))
        .unwrap_or(&Value::Null);
    let policy = policy_from_value(spec, SPEC_FIELD, Rules::SPEC, &mut errors);

    let status = top
        .get("status")
        .and_then(|s| s.get("nodeDisruptionPolicyStatus"))
        .and_then(|s| s.get("clusterPolicies"))
        .filter(|v| !v.is_null())
        .map(|v| policy_from_value(v, STATUS_FIELD, Rules::STATUS, &mut errors));

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(MachineConfiguration {
        name,
        policy,
        status,
    })
}

/// Reads JSON or YAML (by content) into a generic value ([`crate::model::document`]).
fn parse_document(bytes: &[u8]) -> Result<Value, PolicyError> {
    crate::model::document::parse_json_or_yaml(bytes)
        .map_err(|e| PolicyError::new("", e))?
        .ok_or_else(|| PolicyError::new("", "empty document"))
}
