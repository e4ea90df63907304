//! The Rust types of the `MachineConfigNode` (`machineconfiguration.openshift.io/v1`) the daemon
//! writes, and the packaged CRD generated from them (kube's `CustomResource` derive with
//! `schemars`; `x-kubernetes-validations` through `KubeSchema`).
//!
//! The schema is as strict as upstream's (openshift/api) for every field this project uses:
//! the object's name equals `spec.node.name`; node, pool and config names are lowercase RFC 1123
//! subdomains of at most 253 characters; conditions carry `type`, `status`, `reason`, `message`
//! and `lastTransitionTime` with upstream's patterns and limits, at most 20 of them, keyed by
//! `type`; `status.observedGeneration` never decreases. Upstream's fields this daemon never
//! writes (pinned image sets, internal release images, irreconcilable changes) are left out, so a
//! cluster with the packaged CRD refuses them.
//!
//! `packaging/kubernetes/12-crd-machineconfignode.yaml` is [`machine_config_node_crd_yaml`]'s
//! output, checked in; `tests/crds.rs` fails when it is stale (`MCD_BLESS=1` rewrites it) and
//! compares the schema with upstream's CRD. [`super::mcn`] builds what it sends from these types.

use kube::CustomResource;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Upstream's message on the name rules.
const DNS1123_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character.";
/// Upstream's CEL rule for a DNS-1123 subdomain.
const DNS1123_RULE: &str = "!format.dns1123Subdomain().validate(self).hasValue()";

/// `spec` of a MachineConfigNode.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "machineconfiguration.openshift.io",
    version = "v1",
    kind = "MachineConfigNode",
    plural = "machineconfignodes",
    singular = "machineconfignode",
    shortname = "mcn",
    status = "MachineConfigNodeStatus",
    doc = "One per node, named after it: where the machine-config daemon reports the phases of an update.",
    validation = Rule::new("self.metadata.name == self.spec.node.name").message("spec.node.name should match metadata.name"),
    printcolumn(name = "PoolName", type_ = "string", json_path = ".spec.pool.name"),
    printcolumn(name = "DesiredConfig", type_ = "string", json_path = ".spec.configVersion.desired"),
    printcolumn(name = "CurrentConfig", type_ = "string", json_path = ".status.configVersion.current"),
    printcolumn(name = "Updated", type_ = "string", json_path = ".status.conditions[?(@.type==\"Updated\")].status"),
    printcolumn(name = "UpdatePrepared", type_ = "string", json_path = ".status.conditions[?(@.type==\"UpdatePrepared\")].status", priority = 1),
    printcolumn(name = "UpdateExecuted", type_ = "string", json_path = ".status.conditions[?(@.type==\"UpdateExecuted\")].status", priority = 1),
    printcolumn(name = "UpdatePostActionComplete", type_ = "string", json_path = ".status.conditions[?(@.type==\"UpdatePostActionComplete\")].status", priority = 1),
    printcolumn(name = "UpdateComplete", type_ = "string", json_path = ".status.conditions[?(@.type==\"UpdateComplete\")].status", priority = 1),
    printcolumn(name = "Resumed", type_ = "string", json_path = ".status.conditions[?(@.type==\"Resumed\")].status", priority = 1),
    printcolumn(name = "UpdatedFilesAndOS", type_ = "string", json_path = ".status.conditions[?(@.type==\"AppliedFilesAndOS\")].status", priority = 1),
    printcolumn(name = "CordonedNode", type_ = "string", json_path = ".status.conditions[?(@.type==\"Cordoned\")].status", priority = 1),
    printcolumn(name = "DrainedNode", type_ = "string", json_path = ".status.conditions[?(@.type==\"Drained\")].status", priority = 1),
    printcolumn(name = "RebootedNode", type_ = "string", json_path = ".status.conditions[?(@.type==\"RebootedNode\")].status", priority = 1),
    printcolumn(name = "UncordonedNode", type_ = "string", json_path = ".status.conditions[?(@.type==\"Uncordoned\")].status", priority = 1)
)]
#[serde(rename_all = "camelCase")]
pub struct MachineConfigNodeSpec {
    /// The node this object describes.
    pub node: MCOObjectReference,
    /// The pool the node belongs to.
    pub pool: MCOObjectReference,
    /// The config the node is told to run.
    pub config_version: MachineConfigNodeSpecMachineConfigVersion,
}

/// A reference by name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MCOObjectReference {
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(DNS1123_RULE).message(DNS1123_MESSAGE))]
    pub name: String,
}

/// `spec.configVersion`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MachineConfigNodeSpecMachineConfigVersion {
    /// The rendered MachineConfig the node should run.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(DNS1123_RULE).message(DNS1123_MESSAGE))]
    pub desired: String,
}

/// `status` of a MachineConfigNode.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MachineConfigNodeStatus {
    /// The phases of the last update, one condition per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The generation of the object the status was written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("format" = "int64"))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("observedGeneration must not decrease"))]
    pub observed_generation: Option<i64>,
    /// The validated desired config and the config the node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<MachineConfigNodeStatusMachineConfigVersion>,
}

/// `status.configVersion`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MachineConfigNodeStatusMachineConfigVersion {
    /// The config the node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(DNS1123_RULE).message(DNS1123_MESSAGE))]
    pub current: Option<String>,
    /// The desired config, once the update to it is validated.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(DNS1123_RULE).message(DNS1123_MESSAGE))]
    pub desired: String,
}

/// A condition, as Kubernetes' `metav1.Condition` (upstream's schema for it).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    #[schemars(
        length(max = 316),
        regex(
            pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
        )
    )]
    pub type_: String,
    pub status: ConditionStatus,
    /// RFC 3339.
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    #[schemars(
        length(min = 1, max = 1024),
        regex(pattern = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    )]
    pub reason: String,
    #[schemars(length(max = 32768))]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("format" = "int64"))]
    pub observed_generation: Option<i64>,
}

/// `True`, `False` or `Unknown`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// The packaged CRD as YAML, with its header comment.
pub fn machine_config_node_crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(MachineConfigNode::crd()).expect("CRD to JSON");
    let yaml = serde_saphyr::to_string(&crd).expect("CRD to YAML");
    format!(
        "# Generated from src/cluster/crd.rs (MCD_BLESS=1 cargo test --test crds rewrites it).\n\
         # One per node, named after it: where the daemon reports the phases of an update.\n\
         # For clusters without the Machine Config Operator.\n{yaml}"
    )
}
