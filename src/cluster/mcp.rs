//! The `MachineConfigPool` (`machineconfiguration.openshift.io/v1`, cluster-scoped, short name
//! `mcp`) the controller reads and reports on, and the packaged CRD generated from these types
//! (SPEC §11).
//!
//! Field names are upstream's (openshift/api); `tests/crds.rs` compares the schema with upstream's
//! CRD field by field. Upstream fields this project never reads or writes (pinned image sets, OS
//! image streams, pool synchronisers) are left out. `status.certExpirys` is written by the
//! controller from the `ControllerConfig`'s CA bundles (SPEC §12, `controller::certificates`). Printer columns are
//! upstream's, which `kubectl get mcp` prints as the seed's `oc get machineconfigpool` does
//! (NAME, CONFIG, UPDATED, UPDATING, DEGRADED, MACHINECOUNT, READYMACHINECOUNT,
//! UPDATEDMACHINECOUNT, DEGRADEDMACHINECOUNT, AGE).
//!
//! `packaging/kubernetes/13-crd-machineconfigpool.yaml` is [`machine_config_pool_crd_yaml`]'s
//! output, checked in (`MCD_BLESS=1 cargo test --test crds` rewrites it).

use std::collections::BTreeMap;

use kube::CustomResource;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// `spec` of a MachineConfigPool.
// Each `printcolumn(...)` repeats `type_`: not a duplicate, though clippy reads it as one.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "machineconfiguration.openshift.io",
    version = "v1",
    kind = "MachineConfigPool",
    plural = "machineconfigpools",
    singular = "machineconfigpool",
    shortname = "mcp",
    status = "MachineConfigPoolStatus",
    doc = "A set of nodes and the MachineConfigs rendered for them.",
    printcolumn(
        name = "Config",
        type_ = "string",
        json_path = ".status.configuration.name"
    ),
    printcolumn(
        name = "Updated",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Updated\")].status",
        description = "When all the machines in the pool are updated to the correct machine config."
    ),
    printcolumn(
        name = "Updating",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Updating\")].status",
        description = "When at least one of machine is not either not updated or is in the process of updating to the desired machine config."
    ),
    printcolumn(
        name = "Degraded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Degraded\")].status",
        description = "When progress is blocked on updating one or more nodes or the pool configuration is failing."
    ),
    printcolumn(
        name = "MachineCount",
        type_ = "number",
        json_path = ".status.machineCount",
        description = "Total number of machines in the machine config pool"
    ),
    printcolumn(
        name = "ReadyMachineCount",
        type_ = "number",
        json_path = ".status.readyMachineCount",
        description = "Total number of ready machines targeted by the pool"
    ),
    printcolumn(
        name = "UpdatedMachineCount",
        type_ = "number",
        json_path = ".status.updatedMachineCount",
        description = "Total number of machines targeted by the pool that have the CurrentMachineConfig as their config"
    ),
    printcolumn(
        name = "DegradedMachineCount",
        type_ = "number",
        json_path = ".status.degradedMachineCount",
        description = "Total number of machines marked degraded (or unreconcilable)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MachineConfigPoolSpec {
    /// Which MachineConfigs make the pool's rendered config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_config_selector: Option<LabelSelector>,
    /// Which nodes are in the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// A paused pool renders but updates no node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// How many nodes may be unavailable at once: an integer or a percentage (`"20%"`).
    /// Absent: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub max_unavailable: Option<IntOrString>,
    /// The rendered config the pool's nodes should run (set by the controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<PoolConfiguration>,
}

/// An integer or a string (a percentage), as Kubernetes' `IntOrString`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": true
    })
}

/// A label selector (`metav1.LabelSelector`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// One requirement of a [`LabelSelector`]: `In`, `NotIn`, `Exists`, `DoesNotExist`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub values: Vec<String>,
}

/// `spec.configuration` / `status.configuration`: the rendered config and its sources.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PoolConfiguration {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The MachineConfigs merged into it, in merge order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub source: Vec<ObjectReference>,
}

/// A reference to an object (`corev1.ObjectReference`, the fields used here).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `status` of a MachineConfigPool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MachineConfigPoolStatus {
    /// The generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    #[schemars(extend("format" = "int64"))]
    pub observed_generation: i64,
    /// The config the pool's nodes run: while it updates, the one it updates from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<PoolConfiguration>,
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub machine_count: i32,
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub updated_machine_count: i32,
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub ready_machine_count: i32,
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub unavailable_machine_count: i32,
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub degraded_machine_count: i32,
    /// `Updated`, `Updating`, `Degraded`, `NodeDegraded`, `RenderDegraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub conditions: Vec<PoolCondition>,
    /// Every certificate of the `ControllerConfig`'s CA bundles, with its expiry (the same list
    /// in every pool). Absent when there is none; the controller's status patch clears it with
    /// `null` (a merge patch would keep an absent list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub cert_expirys: Vec<CertExpiry>,
}

/// One certificate of the `ControllerConfig`'s CA bundles, as a pool's `status.certExpirys`
/// lists it (upstream's `CertExpiry`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct CertExpiry {
    /// The bundle (`KubeAPIServerServingCAData`, …, or a registry bundle's file name).
    pub bundle: String,
    /// The certificate's subject, as Go's `pkix.Name.String()` prints it (`CN=…,OU=…`).
    pub subject: String,
    /// The certificate's `notAfter`, RFC 3339 in UTC (`2034-10-23T13:13:02Z`); optional, as
    /// upstream's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub expiry: Option<String>,
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// A pool condition (upstream's `MachineConfigPoolCondition`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PoolCondition {
    #[serde(rename = "type", default)]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: String,
    /// RFC 3339.
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: Option<String>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

/// The packaged MachineConfigPool CRD. Upstream requires `spec` (as the derive does); the
/// status subresource is on (the controller writes `status` through it).
///
/// The derive marks every `Option` field `nullable`; upstream's schema marks only a condition's
/// `lastTransitionTime`, so the marks are moved there. kube's structural-schema pass empties the
/// `anyOf` branches of `maxUnavailable`; they are put back as upstream has them.
pub fn machine_config_pool_crd() -> serde_json::Value {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(MachineConfigPool::crd()).expect("CRD to JSON");
    super::crd::remove_key(&mut crd, "nullable");
    for v in crd["spec"]["versions"].as_array_mut().expect("versions") {
        let time = &mut v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
            ["items"]["properties"]["lastTransitionTime"];
        time["nullable"] = serde_json::Value::Bool(true);
        let max = &mut v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["maxUnavailable"]
            ["anyOf"];
        *max = serde_json::json!([{"type": "integer"}, {"type": "string"}]);
    }
    crd
}

/// The packaged MachineConfigPool CRD as YAML, with its header comment.
pub fn machine_config_pool_crd_yaml() -> String {
    super::crd::crd_yaml(
        machine_config_pool_crd(),
        "# A pool of nodes, the MachineConfigs rendered for it, and its rollout status.\n",
    )
}
