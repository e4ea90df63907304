//! The CA files the daemon writes from the `ControllerConfig` (SPEC §12), as a pure mapping:
//! which files hold which bundle, which go away, which registry directories are stale.
//!
//! | bundle                                   | file on the node                                                       |
//! |------------------------------------------|------------------------------------------------------------------------|
//! | `kubeAPIServerServingCAData`             | `/etc/kubernetes/kubelet-ca.crt`                                       |
//! | `cloudProviderCAData`                    | `/etc/kubernetes/static-pod-resources/configmaps/cloud-config/ca-bundle.pem` |
//! | `additionalTrustBundle`                  | `/etc/pki/ca-trust/source/anchors/openshift-config-user-ca-bundle.crt` |
//! | `imageRegistryBundleData[].file` / `imageRegistryBundleUserData[].file` | `/etc/docker/certs.d/<file, ".." → ":">/ca.crt` |
//!
//! Choices:
//! - a bundle whose PEM does not parse ([`crate::controller::certs::parse_bundle`]) is not
//!   written (the file on the node is left as it is) and is reported by name; the others are
//!   written.
//! - an absent or empty `cloudProviderCAData` or `additionalTrustBundle` removes its file (a CA
//!   taken out of the cluster's bundle stops being trusted); `kubeAPIServerServingCAData` is
//!   required by the CRD and always written when it parses.
//! - a registry bundle's `file` must name one directory once `..` is turned into `:` (not empty,
//!   no `/`, no NUL, not `.` or `..`); otherwise it is reported naming the field, and skipped.
//!   When a registry is in both lists the user's bundle wins (it is written last upstream).
//! - every directory under `/etc/docker/certs.d/` that no registry bundle names is stale and
//!   removed, as upstream does (the directory is the cluster's).

use std::collections::BTreeMap;

use crate::cluster::controllerconfig::ControllerConfigSpec;
use crate::controller::certs::{BundleError, parse_bundle};

/// The kubelet's CA for the API server.
pub const KUBELET_CA: &str = "/etc/kubernetes/kubelet-ca.crt";
/// The cloud provider's CA bundle.
pub const CLOUD_CA: &str =
    "/etc/kubernetes/static-pod-resources/configmaps/cloud-config/ca-bundle.pem";
/// The user's CA bundle, in the system trust store's sources.
pub const USER_CA: &str = "/etc/pki/ca-trust/source/anchors/openshift-config-user-ca-bundle.crt";
/// The directory of per-registry CA directories.
pub const REGISTRY_CA_DIR: &str = "/etc/docker/certs.d";

/// Why a bundle is not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// Its PEM does not parse.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A registry bundle's `file` does not name one directory.
    #[error("{field}: {file:?} {reason}")]
    RegistryName {
        field: String,
        file: String,
        reason: &'static str,
    },
}

/// One CA file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    /// Absolute path on the node.
    pub path: String,
    /// The bundle's name (`KubeAPIServerServingCAData`, or the registry bundle's `file`).
    pub bundle: String,
    pub data: Vec<u8>,
}

/// What the `ControllerConfig` asks of the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaPlan {
    /// Files to write (atomically), in path order.
    pub write: Vec<CaFile>,
    /// Files to remove when present.
    pub remove: Vec<String>,
    /// The registry directory names (under [`REGISTRY_CA_DIR`]) the plan writes; any other is
    /// stale ([`stale_registry_dirs`]).
    pub registries: Vec<String>,
    /// Bundles not written, and why.
    pub errors: Vec<CaError>,
}

/// The registry directory of a registry bundle's `file`: `host..port` is `host:port`.
pub fn registry_dir(file: &str) -> Result<String, &'static str> {
    let dir = file.replace("..", ":");
    if dir.is_empty() {
        return Err("is empty");
    }
    if dir.contains('/') || dir.contains('\0') {
        return Err("must be one directory name (no '/' or NUL)");
    }
    if dir == "." || dir.chars().all(|c| c == ':') {
        return Err("is not a registry name");
    }
    Ok(dir)
}

/// The CA files of a `ControllerConfig` spec (see the module docs).
pub fn ca_plan(spec: &ControllerConfigSpec) -> CaPlan {
    let mut plan = CaPlan::default();
    let mut write: BTreeMap<String, CaFile> = BTreeMap::new();
    let mut add = |plan: &mut CaPlan, path: String, bundle: &str, data: &[u8]| match parse_bundle(
        bundle, data,
    ) {
        Ok(_) => {
            write.insert(
                path.clone(),
                CaFile {
                    path,
                    bundle: bundle.to_string(),
                    data: data.to_vec(),
                },
            );
        }
        Err(e) => plan.errors.push(e.into()),
    };
    add(
        &mut plan,
        KUBELET_CA.to_string(),
        "KubeAPIServerServingCAData",
        &spec.kube_api_server_serving_ca_data.0,
    );
    for (path, bundle, data) in [
        (
            CLOUD_CA,
            "CloudProviderCAData",
            &spec.cloud_provider_ca_data,
        ),
        (
            USER_CA,
            "AdditionalTrustBundle",
            &spec.additional_trust_bundle,
        ),
    ] {
        match data {
            Some(d) if !d.0.is_empty() => add(&mut plan, path.to_string(), bundle, &d.0),
            _ => plan.remove.push(path.to_string()),
        }
    }
    let lists = [
        (
            "spec.imageRegistryBundleData",
            &spec.image_registry_bundle_data,
        ),
        (
            "spec.imageRegistryBundleUserData",
            &spec.image_registry_bundle_user_data,
        ),
    ];
    for (field, list) in lists {
        for (i, b) in list.iter().enumerate() {
            match registry_dir(&b.file) {
                Ok(dir) => {
                    let path = format!("{REGISTRY_CA_DIR}/{dir}/ca.crt");
                    let before = plan.errors.len();
                    add(&mut plan, path, &b.file, &b.data.0);
                    if plan.errors.len() == before && !plan.registries.contains(&dir) {
                        plan.registries.push(dir);
                    }
                }
                Err(reason) => plan.errors.push(CaError::RegistryName {
                    field: format!("{field}[{i}].file"),
                    file: b.file.clone(),
                    reason,
                }),
            }
        }
    }
    plan.registries.sort();
    plan.write = write.into_values().collect();
    plan
}

/// The directories under [`REGISTRY_CA_DIR`] (`present`, names) the plan does not keep, sorted.
/// A registry whose bundle does not parse keeps its directory (its old CA stays).
pub fn stale_registry_dirs(
    present: &[String],
    plan: &CaPlan,
    spec: &ControllerConfigSpec,
) -> Vec<String> {
    let named: Vec<String> = spec
        .image_registry_bundle_data
        .iter()
        .chain(&spec.image_registry_bundle_user_data)
        .filter_map(|b| registry_dir(&b.file).ok())
        .collect();
    let mut stale: Vec<String> = present
        .iter()
        .filter(|d| !plan.registries.contains(d) && !named.contains(d))
        .cloned()
        .collect();
    stale.sort();
    stale
}

/// What [`apply_ca_plan`] changed on the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaApplied {
    /// Files written (their contents, mode or owner differed), in the plan's order.
    pub written: Vec<String>,
    /// Files removed.
    pub removed: Vec<String>,
    /// Stale registry directories removed (names under [`REGISTRY_CA_DIR`]).
    pub removed_registries: Vec<String>,
}

/// Mode and owner of every CA file: 0644 root:root.
pub const CA_FILE_MODE: u32 = 0o644;

/// Brings the node's CA files to the plan through the rooted file operations: each file whose
/// contents, mode or owner differ is written atomically (temp file, fsync, rename), files the
/// plan removes are removed, and the stale registry directories (with their files) go. A file
/// already as the plan wants it is not touched, so applying the same plan twice writes nothing.
/// No drain, no reboot: what follows a write (the policy's action for the path) is the
/// caller's.
pub fn apply_ca_plan(
    root: &crate::host::Root,
    plan: &CaPlan,
    spec: &ControllerConfigSpec,
) -> Result<CaApplied, crate::host::HostError> {
    use crate::host::root::{Entry, Tree};
    let mut applied = CaApplied::default();
    for f in &plan.write {
        let same = matches!(
            root.read(&f.path, Tree::Etc)?,
            Entry::File { ref data, mode, uid: 0, gid: 0 } if *data == f.data && mode & 0o7777 == CA_FILE_MODE
        );
        if !same {
            root.write_file(&f.path, Tree::Etc, &f.data, CA_FILE_MODE, 0, 0)?;
            applied.written.push(f.path.clone());
        }
    }
    for path in &plan.remove {
        if !matches!(root.read(path, Tree::Etc)?, Entry::Absent) {
            root.remove(path, Tree::Etc)?;
            applied.removed.push(path.clone());
        }
    }
    let present = root.list_dir(REGISTRY_CA_DIR)?;
    for dir in stale_registry_dirs(&present, plan, spec) {
        remove_tree(root, &format!("{REGISTRY_CA_DIR}/{dir}"))?;
        applied.removed_registries.push(dir);
    }
    Ok(applied)
}

/// Removes a directory and what it holds (symlinks are removed, never followed).
fn remove_tree(root: &crate::host::Root, path: &str) -> Result<(), crate::host::HostError> {
    use crate::host::root::{Probe, Tree};
    match root.probe(path, Tree::Etc)? {
        Probe::Absent => Ok(()),
        Probe::Other => {
            for name in root.list_dir(path)? {
                remove_tree(root, &format!("{path}/{name}"))?;
            }
            root.remove_dir(path, Tree::Etc)
        }
        _ => root.remove(path, Tree::Etc),
    }
}
