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
//!
//! The `MachineConfig` CRD (`10-crd-machineconfig.yaml`, [`machine_config_crd_yaml`]) is
//! generated the same way from [`MachineConfigSpec`]; like upstream's it keeps the Ignition config
//! open (`x-kubernetes-preserve-unknown-fields`): the daemon's own parser
//! (`model::parse_machine_configs`) validates it field by field when it fetches a config.

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

/// `spec` of a MachineConfig (the fields upstream's CRD has).
// Each `printcolumn(...)` repeats `type_`: not a duplicate, though clippy reads it as one.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "machineconfiguration.openshift.io",
    version = "v1",
    kind = "MachineConfig",
    plural = "machineconfigs",
    singular = "machineconfig",
    shortname = "mc",
    doc = "A (rendered) machine config: an Ignition config and the node's OS settings.",
    printcolumn(
        name = "GeneratedByController",
        type_ = "string",
        json_path = ".metadata.annotations.machineconfiguration\\.openshift\\.io/generated-by-controller-version"
    ),
    printcolumn(
        name = "IgnitionVersion",
        type_ = "string",
        json_path = ".spec.config.ignition.version"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MachineConfigSpec {
    /// An Ignition v3 config (validated by the daemon's parser).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    #[schemars(schema_with = "open_object")]
    pub config: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub kernel_arguments: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub extensions: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kernel_type: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fips: bool,
    #[serde(
        default,
        rename = "osImageURL",
        skip_serializing_if = "String::is_empty"
    )]
    pub os_image_url: String,
    #[serde(
        default,
        rename = "baseOSExtensionsContainerImage",
        skip_serializing_if = "String::is_empty"
    )]
    pub base_os_extensions_container_image: String,
}

/// An object whose fields the API server keeps as they are.
fn open_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// The packaged MachineConfigNode CRD. The derive marks every `Option` field `nullable`;
/// upstream's schema has no nullable field here (an absent field is written by leaving it out),
/// so the marks are removed.
pub fn machine_config_node_crd() -> serde_json::Value {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(MachineConfigNode::crd()).expect("CRD to JSON");
    remove_key(&mut crd, "nullable");
    crd
}

/// The packaged MachineConfig CRD. Upstream's does not require `spec` (the derive does).
pub fn machine_config_crd() -> serde_json::Value {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(MachineConfig::crd()).expect("CRD to JSON");
    for v in crd["spec"]["versions"].as_array_mut().expect("versions") {
        if let Some(root) = v["schema"]["openAPIV3Schema"].as_object_mut() {
            root.remove("required");
        }
    }
    crd
}

pub(crate) fn remove_key(v: &mut serde_json::Value, key: &str) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove(key);
            m.values_mut().for_each(|x| remove_key(x, key));
        }
        serde_json::Value::Array(l) => l.iter_mut().for_each(|x| remove_key(x, key)),
        _ => {}
    }
}

/// The packaged MachineConfigNode CRD as YAML, with its header comment.
pub fn machine_config_node_crd_yaml() -> String {
    crd_yaml(
        machine_config_node_crd(),
        "# One per node, named after it: where the daemon reports the phases of an update.\n",
    )
}

/// The packaged MachineConfig CRD as YAML, with its header comment.
pub fn machine_config_crd_yaml() -> String {
    crd_yaml(
        machine_config_crd(),
        "# A rendered config: the Ignition config the daemon applies, and OS settings.\n",
    )
}

pub(crate) fn crd_yaml(crd: serde_json::Value, what: &str) -> String {
    let yaml = serde_saphyr::to_string(&crd).expect("CRD to YAML");
    format!(
        "# Generated from src/cluster/crd.rs (MCD_BLESS=1 cargo test --test crds rewrites it).\n\
         {what}# For clusters without the Machine Config Operator.\n{yaml}"
    )
}
