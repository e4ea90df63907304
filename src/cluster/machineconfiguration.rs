//! The Rust types of the `MachineConfiguration` (`operator.openshift.io/v1`, cluster-scoped; the
//! cluster's object is named `cluster`) and the packaged CRD generated from them.
//!
//! The policy parts reuse the model's types ([`Policy`], [`crate::model::policy::Action`]): the
//! node disruption policy is read and written in exactly the shape `model::policy` parses,
//! validates and merges. Their schema is written here (an action is an internally tagged enum in
//! Rust, a flat object with a `type` enum and CEL rules in the API), with upstream's (openshift/api)
//! names, enums, limits, list types and rules.
//!
//! **What the packaged CRD includes.** `spec`: `nodeDisruptionPolicy` (files, units, sshkey; at
//! most 50 files and 50 units, keyed by path and name, 1–10 actions, `Reboot` and `None`
//! standalone, `reload`/`restart` required with their type and forbidden otherwise, service
//! names checked as upstream does) and upstream's generic operator fields, which users and tools
//! commonly set: `managementState`, `logLevel`, `operatorLogLevel` (default `Normal`),
//! `forceRedeploymentReason`, `failedRevisionLimit`, `succeededRevisionLimit`,
//! `observedConfig`, `unsupportedConfigOverrides`. `status`: `observedGeneration`, `conditions`
//! (Kubernetes conditions, keyed by type) and `nodeDisruptionPolicyStatus.clusterPolicies` (the
//! effective policy: `Special` allowed, at most 100 files and units).
//!
//! **What it leaves out.** Upstream's boot image fields (`spec.managedBootImages`,
//! `spec.bootImageSkewEnforcement`, `status.managedBootImagesStatus`,
//! `status.bootImageSkewEnforcementStatus`, the four root rules about them) and
//! `spec.irreconcilableValidationOverrides`: they drive OpenShift's machine API and its
//! irreconcilable-change overrides, which do not exist on the clusters this CRD is for. The API
//! server prunes them from stored objects (a client asking for strict field validation, as
//! `kubectl apply` does by default, gets them refused as unknown fields), so a typo in a field
//! this project reads is never silently kept. On a cluster with the Machine Config Operator its
//! own CRD applies, and nothing here is installed.
//!
//! `packaging/kubernetes/11-crd-machineconfiguration.yaml` is [`machine_configuration_crd_yaml`]'s
//! output, checked in; `tests/crds.rs` fails when it is stale (`MCD_BLESS=1` rewrites it) and
//! compares it with upstream's CRD field by field.

use kube::CustomResource;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::crd::Condition;
use crate::model::policy::Policy;

/// Name of the cluster's `MachineConfiguration`.
pub use super::policy::MACHINE_CONFIGURATION_NAME;

/// `spec` of a MachineConfiguration.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "operator.openshift.io",
    version = "v1",
    kind = "MachineConfiguration",
    plural = "machineconfigurations",
    singular = "machineconfiguration",
    status = "MachineConfigurationStatus",
    doc = "The machine config operator's configuration; the node disruption policy of the one named cluster."
)]
#[serde(rename_all = "camelCase")]
pub struct MachineConfigurationSpec {
    /// `Managed`, `Unmanaged`, `Force` or `Removed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Managed|Unmanaged|Force|Removed)$"))]
    pub management_state: Option<String>,
    /// Log verbosity of the operands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "log_level")]
    pub log_level: Option<String>,
    /// Log verbosity of the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "log_level")]
    pub operator_log_level: Option<String>,
    /// Forces a redeployment of the operands when changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_redeployment_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32"))]
    pub failed_revision_limit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32"))]
    pub succeeded_revision_limit: Option<i32>,
    /// Sparse config observed from the cluster (operator-internal, kept as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nullable_open_object")]
    pub observed_config: Option<Value>,
    /// Overrides the operator does not support (kept as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nullable_open_object")]
    pub unsupported_config_overrides: Option<Value>,
    /// The user's node disruption policy, merged over the cluster defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "spec_policy")]
    pub node_disruption_policy: Option<Policy>,
}

/// `status` of a MachineConfiguration.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MachineConfigurationStatus {
    /// The generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub observed_generation: Option<i64>,
    /// Conditions, one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The effective node disruption policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_disruption_policy_status: Option<NodeDisruptionPolicyStatus>,
}

/// `status.nodeDisruptionPolicyStatus`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeDisruptionPolicyStatus {
    /// The cluster defaults with the user's policy merged over them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_policy")]
    pub cluster_policies: Option<Policy>,
}

/// Upstream's CEL rules and messages on a service or unit name.
const SERVICE_SUFFIX_RULE: &str = r"self.matches('\\.(service|socket|device|mount|automount|swap|target|path|timer|snapshot|slice|scope)$')";
const SERVICE_SUFFIX_MESSAGE: &str = r#"Invalid ${SERVICETYPE} in service name. Expected format is ${NAME}${SERVICETYPE}, where ${SERVICETYPE} must be one of ".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target", ".path", ".timer",".snapshot", ".slice" or ".scope"."#;
const SERVICE_NAME_RULE: &str = r"self.matches('^[a-zA-Z0-9:._\\\\-]+\\..')";
const SERVICE_NAME_MESSAGE: &str = r#"Invalid ${NAME} in service name. Expected format is ${NAME}${SERVICETYPE}, where {NAME} must be atleast 1 character long and can only consist of alphabets, digits, ":", "-", "_", ".", and "\""#;

/// A service or unit name.
fn service_name() -> Value {
    json!({
        "type": "string",
        "maxLength": 255,
        "x-kubernetes-validations": [
            {"rule": SERVICE_SUFFIX_RULE, "message": SERVICE_SUFFIX_MESSAGE},
            {"rule": SERVICE_NAME_RULE, "message": SERVICE_NAME_MESSAGE},
        ],
    })
}

/// `{serviceName}` of a Reload or Restart.
fn service_ref(what: &str) -> Value {
    json!({
        "type": "object",
        "description": format!("The service to {what}."),
        "required": ["serviceName"],
        "properties": {"serviceName": service_name()},
    })
}

/// An entry's `actions` list; `special`: the status' `Special` type is allowed.
fn actions(special: bool) -> Value {
    let mut types = vec![
        "Reboot",
        "Drain",
        "Reload",
        "Restart",
        "DaemonReload",
        "None",
    ];
    if special {
        types.push("Special");
    }
    json!({
        "type": "array",
        "maxItems": 10,
        "x-kubernetes-list-type": "atomic",
        "x-kubernetes-validations": [
            {"rule": "self.exists(x, x.type=='Reboot') ? size(self) == 1 : true",
             "message": "Reboot action can only be specified standalone, as it will override any other actions"},
            {"rule": "self.exists(x, x.type=='None') ? size(self) == 1 : true",
             "message": "None action can only be specified standalone, as it will override any other actions"},
        ],
        "items": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"type": "string", "enum": types},
                "reload": service_ref("reload"),
                "restart": service_ref("restart"),
            },
            "x-kubernetes-validations": [
                {"rule": "has(self.type) && self.type == 'Reload' ? has(self.reload) : !has(self.reload)",
                 "message": "reload is required when type is Reload, and forbidden otherwise"},
                {"rule": "has(self.type) && self.type == 'Restart' ? has(self.restart) : !has(self.restart)",
                 "message": "restart is required when type is Restart, and forbidden otherwise"},
            ],
        },
    })
}

/// A node disruption policy: the spec's (`special` false: at most 50 entries, no `Special`) or
/// the status' (at most 100 entries, `Special` allowed).
fn policy(special: bool) -> Value {
    let max = if special { 100 } else { 50 };
    json!({
        "type": "object",
        "properties": {
            "files": {
                "type": "array",
                "maxItems": max,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["path"],
                "items": {
                    "type": "object",
                    "required": ["actions", "path"],
                    "properties": {
                        "actions": actions(special),
                        "path": {"type": "string", "description": "A file path, or a directory (a prefix of the paths it covers)."},
                    },
                },
            },
            "sshkey": {
                "type": "object",
                "required": ["actions"],
                "properties": {"actions": actions(special)},
            },
            "units": {
                "type": "array",
                "maxItems": max,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "required": ["actions", "name"],
                    "properties": {
                        "actions": actions(special),
                        "name": service_name(),
                    },
                },
            },
        },
    })
}

fn to_schema(v: Value) -> schemars::Schema {
    schemars::Schema::try_from(v).expect("a schema object")
}

fn spec_policy(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    to_schema(policy(false))
}

fn status_policy(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    to_schema(policy(true))
}

fn log_level(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    to_schema(json!({
        "type": "string",
        "default": "Normal",
        "enum": ["", "Normal", "Debug", "Trace", "TraceAll"],
    }))
}

fn nullable_open_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    to_schema(json!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    }))
}

/// The packaged MachineConfiguration CRD. The derive marks every `Option` field `nullable`;
/// upstream's schema has that mark only on its two open objects, so it is removed elsewhere.
pub fn machine_configuration_crd() -> Value {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(MachineConfiguration::crd()).expect("CRD to JSON");
    for v in crd["spec"]["versions"].as_array_mut().expect("versions") {
        let spec = &mut v["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let open = ["observedConfig", "unsupportedConfigOverrides"];
        super::crd::remove_key(spec, "nullable");
        super::crd::remove_key(
            &mut v["schema"]["openAPIV3Schema"]["properties"]["status"],
            "nullable",
        );
        let spec = &mut v["schema"]["openAPIV3Schema"]["properties"]["spec"];
        for field in open {
            spec["properties"][field]["nullable"] = json!(true);
        }
    }
    crd
}

/// The packaged MachineConfiguration CRD as YAML, with its header comment.
pub fn machine_configuration_crd_yaml() -> String {
    let yaml = serde_saphyr::to_string(&machine_configuration_crd()).expect("CRD to YAML");
    format!(
        "# Generated from src/cluster/machineconfiguration.rs (MCD_BLESS=1 cargo test --test crds \
         rewrites it).\n# The operator's configuration object: the daemon reads the node disruption \
         policy of the one\n# named \"cluster\", the controller writes its status. For clusters \
         without the Machine Config\n# Operator.\n{yaml}"
    )
}
