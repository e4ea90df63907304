//! The `ControllerConfig` (`machineconfiguration.openshift.io/v1`, cluster-scoped, upstream's
//! name `machine-config-controller`) that holds the cluster's CA bundles (SPEC §12), and the
//! packaged CRD generated from these types.
//!
//! Field names and schema are upstream's (openshift/api) for the fields kept: the CA bundles
//! `kubeAPIServerServingCAData`, `rootCAData`, `cloudProviderCAData`, `additionalTrustBundle`,
//! the image registry bundles `imageRegistryBundleData` / `imageRegistryBundleUserData` (each a
//! file name and PEM data), and `status.controllerCertificates` / `status.observedGeneration`.
//! The bundles are `format: byte` (base64 in the object). Upstream's other spec fields (DNS,
//! infrastructure, proxy, images, pull secrets, …) are left out: a cluster with the packaged CRD
//! prunes them, and of upstream's required spec fields only `kubeAPIServerServingCAData` and
//! `rootCAData` are required here (`tests/crds.rs` checks the subset).
//!
//! `packaging/kubernetes/14-crd-controllerconfig.yaml` is [`controller_config_crd_yaml`]'s output,
//! checked in (`MCD_BLESS=1 cargo test --test crds` rewrites it).

use k8s_openapi::ByteString;
use kube::CustomResource;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The object's name the daemon and the controller use (upstream's).
pub const CONTROLLER_CONFIG_NAME: &str = "machine-config-controller";

/// `spec` of a ControllerConfig: the CA bundles, PEM.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "machineconfiguration.openshift.io",
    version = "v1",
    kind = "ControllerConfig",
    plural = "controllerconfigs",
    singular = "controllerconfig",
    status = "ControllerConfigStatus",
    doc = "The cluster's CA bundles the daemon writes on every node, and their certificates."
)]
pub struct ControllerConfigSpec {
    /// The kubelet's CA for the API server's serving certificate
    /// (`/etc/kubernetes/kubelet-ca.crt`).
    #[serde(rename = "kubeAPIServerServingCAData")]
    #[schemars(schema_with = "byte_string")]
    pub kube_api_server_serving_ca_data: ByteString,
    /// The root CA.
    #[serde(rename = "rootCAData")]
    #[schemars(schema_with = "byte_string")]
    pub root_ca_data: ByteString,
    /// The cloud provider's CA bundle.
    #[serde(
        rename = "cloudProviderCAData",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "byte_string")]
    pub cloud_provider_ca_data: Option<ByteString>,
    /// The user's CA bundle, added to the node's trust store
    /// (`/etc/pki/ca-trust/source/anchors/openshift-config-user-ca-bundle.crt`).
    #[serde(
        rename = "additionalTrustBundle",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "byte_string")]
    pub additional_trust_bundle: Option<ByteString>,
    /// Image registry CAs (`/etc/docker/certs.d/<registry>/ca.crt`).
    #[serde(
        rename = "imageRegistryBundleData",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub image_registry_bundle_data: Vec<ImageRegistryBundle>,
    /// Image registry CAs the user provided, written as `imageRegistryBundleData`.
    #[serde(
        rename = "imageRegistryBundleUserData",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub image_registry_bundle_user_data: Vec<ImageRegistryBundle>,
}

/// One image registry's CA bundle. `file` is the registry's host with `..` for the port's `:`
/// (`image-registry.openshift-image-registry.svc..5000`), as upstream writes it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ImageRegistryBundle {
    pub file: String,
    #[schemars(schema_with = "byte_string")]
    pub data: ByteString,
}

/// `status` of a ControllerConfig.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ControllerConfigStatus {
    /// The generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    #[schemars(extend("format" = "int64"))]
    pub observed_generation: i64,
    /// Every certificate of the bundles, in the bundles' order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub controller_certificates: Vec<ControllerCertificate>,
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// One certificate of a bundle, as `status.controllerCertificates` lists it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ControllerCertificate {
    /// The bundle (`KubeAPIServerServingCAData`, …, or a registry bundle's file name).
    pub bundle_file: String,
    /// The issuer, as Go's `pkix.Name.String()` prints it (`CN=…,OU=…`).
    pub signer: String,
    /// The subject, in the same form.
    pub subject: String,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("format" = "date-time"))]
    pub not_before: String,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("format" = "date-time"))]
    pub not_after: String,
}

/// Base64 bytes (`format: byte`).
fn byte_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "byte"})
}

/// The packaged ControllerConfig CRD. The derive marks every `Option` field `nullable`; upstream
/// marks `cloudProviderCAData` and `additionalTrustBundle`, which are the only `Option`s here.
/// The status subresource is on, as upstream's.
pub fn controller_config_crd() -> serde_json::Value {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(ControllerConfig::crd()).expect("CRD to JSON");
    super::crd::remove_key(&mut crd, "nullable");
    for v in crd["spec"]["versions"].as_array_mut().expect("versions") {
        let spec = &mut v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        for nullable in ["cloudProviderCAData", "additionalTrustBundle"] {
            spec[nullable]["nullable"] = serde_json::Value::Bool(true);
        }
    }
    crd
}

/// The packaged ControllerConfig CRD as YAML, with its header comment.
pub fn controller_config_crd_yaml() -> String {
    super::crd::crd_yaml(
        controller_config_crd(),
        "# The cluster's CA bundles, written on every node, and their certificates.\n",
    )
}
