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
//! - what follows a change of CA files is the node disruption policy's, matched per path as for
//!   a MachineConfig's files ([`ca_actions`], through [`crate::plan::actions::decide`]): with the
//!   defaults, the user CA bundle restarts `coreos-update-ca-trust.service` then `crio.service`.
//!   A CA file is never a reason to drain or reboot: a path no policy entry matches (the
//!   kubelet CA, the cloud CA and the registry CAs with the defaults: the kubelet and CRI-O read
//!   them when they use them) runs no action, and a `Reboot`, `Drain` or `Special` of a matched
//!   entry is left out and said so in the notes.
//! - the drift record of a CA file ([`ca_record`]) is that of a MachineConfig file written with
//!   the same bytes, mode 0644 and owner root: drift detection treats both alike.
//! - standalone mode reads the ControllerConfig from a file ([`read_controller_config`]): the
//!   object as the API server would return it, YAML or JSON, bounded like a config.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::cluster::controllerconfig::{
    CONTROLLER_CONFIG_NAME, ControllerConfig, ControllerConfigSpec,
};
use crate::controller::certs::{BundleError, parse_bundle};
use crate::host::exec::PostAction;
use crate::host::manifest::{Kind, Record};
use crate::model::policy::{Action, Policy};
use crate::plan::diff::{ChangeKind, Diff, FileChange};

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

/// The drift record of a CA file holding `data` (as [`apply_ca_plan`] writes it).
pub fn ca_record(data: &[u8]) -> Record {
    use sha2::{Digest, Sha256};
    Record {
        kind: Kind::File,
        sha256: Sha256::digest(data).into(),
        size: data.len() as u64,
        mode: CA_FILE_MODE,
        uid: 0,
        gid: 0,
    }
}

impl CaApplied {
    /// Every CA path written or removed (a removed registry directory counts as its `ca.crt`),
    /// in that order, with how it changed.
    pub fn changed(&self) -> Vec<(String, ChangeKind)> {
        let written = self
            .written
            .iter()
            .map(|p| (p.clone(), ChangeKind::Changed));
        let removed = self
            .removed
            .iter()
            .map(|p| (p.clone(), ChangeKind::Removed));
        let registries = self
            .removed_registries
            .iter()
            .map(|d| (format!("{REGISTRY_CA_DIR}/{d}/ca.crt"), ChangeKind::Removed));
        written.chain(removed).chain(registries).collect()
    }

    /// Nothing changed on the node.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty() && self.removed.is_empty() && self.removed_registries.is_empty()
    }
}

/// The first wait before the post actions of a change of CA files run again after one failed.
pub const CA_RETRY_FIRST: Duration = Duration::from_secs(10);
/// The longest wait between two runs of failed CA post actions (the wait doubles up to it).
pub const CA_RETRY_MAX: Duration = Duration::from_secs(300);

/// The post actions of a change of CA files that failed, kept to run again after `delay`.
///
/// The files stay written whatever an action does, so an action that failed (a trust store that
/// did not restart) would otherwise leave the node trusting the old bundle in that service until
/// the bundles change again. The daemon runs the failed action and those after it again, after
/// [`CA_RETRY_FIRST`], then after twice the last wait, up to [`CA_RETRY_MAX`], until they
/// succeed. A new change of the CA files runs the pending actions first, then its own (each
/// once), and starts the waits over. They are in the status (`pendingActions`), which outlives
/// the daemon's process but not a reboot (it is under `/run`): a daemon that starts again runs
/// them at once ([`CaRetry::restored`]); after a reboot every service has started anew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRetry {
    /// The action that failed and the ones after it, in order.
    pub actions: Vec<PostAction>,
    /// The failure, as the status and the journal say it (`restart crio.service: …`: a
    /// [`crate::host::systemd::SystemdError`] starts with the operation and the unit).
    pub failure: String,
    /// The wait before the next run.
    pub delay: Duration,
}

impl CaRetry {
    /// What to run again after `actions` ran in order and `failed` (one of them) failed with
    /// `error`; `last`: the wait before this run, when it was itself a retry.
    pub fn after(
        actions: &[PostAction],
        failed: &PostAction,
        error: &dyn std::fmt::Display,
        last: Option<Duration>,
    ) -> CaRetry {
        let rest = match actions.iter().position(|a| a == failed) {
            Some(i) => actions[i..].to_vec(),
            None => vec![failed.clone()],
        };
        CaRetry {
            actions: rest,
            failure: error.to_string(),
            delay: last.map_or(CA_RETRY_FIRST, |d| (d * 2).min(CA_RETRY_MAX)),
        }
    }

    /// The retry a daemon that starts finds in its last status: the pending actions (as the
    /// status writes them; one that does not read as an action is left out and logged) and the
    /// failure among `errors` that names the first; None when none is pending.
    pub fn restored(pending: &[String], errors: &[String]) -> Option<CaRetry> {
        let actions: Vec<PostAction> = pending
            .iter()
            .filter_map(|a| {
                a.parse()
                    .map_err(|e: String| {
                        tracing::warn!("status certificates.pendingActions: {e}; left out")
                    })
                    .ok()
            })
            .collect();
        let first = actions.first()?.to_string();
        let failure = errors
            .iter()
            .find(|e| e.starts_with(&format!("{first}: ")))
            .cloned()
            .unwrap_or_else(|| format!("{first}: failed before the daemon started again"));
        Some(CaRetry {
            actions,
            failure,
            delay: CA_RETRY_FIRST,
        })
    }
}

/// The actions a change of CA files runs while `pending` (actions that failed before) wait to
/// run again: the pending ones first, then the change's own that are not among them, in order.
pub fn with_pending(pending: Option<CaRetry>, actions: Vec<PostAction>) -> Vec<PostAction> {
    let Some(p) = pending else {
        return actions;
    };
    let mut out = p.actions;
    for a in actions {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// What the node disruption policy asks after CA files changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaActions {
    /// The actions to run, in order, each once.
    pub actions: Vec<PostAction>,
    /// Per changed path, the policy path it matched (None: no entry, no action).
    pub matched: Vec<(String, Option<String>)>,
    /// What was left out, and why.
    pub notes: Vec<String>,
}

/// The policy's actions for the CA paths that `changed` (see the module docs): the policy
/// matching and combination of [`crate::plan::actions`], without the drain and the reboot.
pub fn ca_actions(policy: &Policy, changed: &[(String, ChangeKind)]) -> CaActions {
    let diff = Diff {
        files: changed
            .iter()
            .map(|(path, change)| FileChange {
                path: path.clone(),
                change: *change,
            })
            .collect(),
        ..Diff::default()
    };
    let none = crate::model::MachineConfig::default();
    let decision = crate::plan::actions::decide(
        &diff,
        &none,
        &none,
        policy,
        &crate::plan::PlanOptions::default(),
    );
    let mut out = CaActions::default();
    let mut wanted: Vec<Action> = Vec::new();
    for c in &decision.changes {
        let path = c.path.clone().unwrap_or_default();
        match &c.matched {
            None => out.notes.push(format!(
                "{path}: no policy path matches: no action (a CA file never reboots the node)"
            )),
            Some(entry) => {
                for a in &c.actions {
                    match a {
                        Action::Reboot | Action::Drain | Action::Special => {
                            out.notes.push(format!(
                                "{path}: {} of policy path {entry} left out: CA files are written without drain or reboot",
                                a.type_name()
                            ))
                        }
                        a => wanted.push(a.clone()),
                    }
                }
            }
        }
        out.matched.push((path, c.matched.clone()));
    }
    for a in crate::plan::actions::combine(wanted.iter()) {
        let p = match a {
            Action::Reload { reload } => PostAction::Reload(reload.service_name),
            Action::Restart { restart } => PostAction::Restart(restart.service_name),
            Action::DaemonReload => PostAction::DaemonReload,
            _ => continue,
        };
        if !out.actions.contains(&p) {
            out.actions.push(p);
        }
    }
    out
}

/// Why standalone mode's ControllerConfig file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("controller config {path}: {reason}")]
pub struct ControllerConfigFileError {
    pub path: String,
    pub reason: String,
}

/// Standalone mode's ControllerConfig: the object in `path` (YAML or JSON), at most `limit`
/// bytes, read from a regular file only. `Ok(None)`: the file does not exist (no CA bundles to
/// write). The object must be a `machineconfiguration.openshift.io/v1` `ControllerConfig`
/// (any name is taken; the cluster's is [`CONTROLLER_CONFIG_NAME`]); errors name the field.
pub fn read_controller_config(
    path: &Path,
    limit: u64,
) -> Result<Option<ControllerConfigSpec>, ControllerConfigFileError> {
    let err = |reason: String| ControllerConfigFileError {
        path: path.display().to_string(),
        reason,
    };
    if std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Ok(None);
    }
    let bytes = crate::model::load::read_input(path, limit).map_err(err)?;
    let value = crate::model::document::parse_json_or_yaml(&bytes)
        .map_err(err)?
        .unwrap_or(serde_json::Value::Null);
    let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
    if field("apiVersion") != Some("machineconfiguration.openshift.io/v1") {
        return Err(err(format!(
            "apiVersion: expected machineconfiguration.openshift.io/v1, got {}",
            field("apiVersion").unwrap_or("nothing")
        )));
    }
    if field("kind") != Some("ControllerConfig") {
        return Err(err(format!(
            "kind: expected ControllerConfig, got {}",
            field("kind").unwrap_or("nothing")
        )));
    }
    let cc: ControllerConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        err(format!("{at}: {}", e.inner()))
    })?;
    if cc
        .metadata
        .name
        .as_deref()
        .is_some_and(|n| n != CONTROLLER_CONFIG_NAME)
    {
        tracing::debug!(path = %path.display(), name = ?cc.metadata.name, "controller config file holds another name than {CONTROLLER_CONFIG_NAME}; used all the same");
    }
    Ok(Some(cc.spec))
}
