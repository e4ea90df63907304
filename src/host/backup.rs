//! Backups of what the OS owned before we managed a path (SPEC §5 step 5).
//!
//! - Before the first change of a managed path: if it exists, it is copied (a symlink stays a
//!   symlink) to `/etc/machine-config-daemon/orig/<path>.mcdorig` with its mode and owner; if it
//!   does not exist, a stamp `/etc/machine-config-daemon/noorig/<path>.mcdnoorig` is left. An
//!   existing backup or stamp is never overwritten.
//! - "The OS owns it" needs no package database: a path is the OS's when it is not managed by the
//!   previous current config and has neither backup nor stamp. A path we managed before already
//!   has its backup or stamp from its first write.
//! - When a later config stops managing the path: backup → the original is restored and the
//!   backup deleted; stamp → the file and the stamp are deleted; neither → the file is deleted.
//! - Paths in [`NEVER_DELETE`] are left in place when a config stops managing them.

/// Paths never deleted when a config stops managing them: the CA bundles and credentials the
/// cluster itself keeps up to date (deleting them would cut the node off from the cluster).
pub const NEVER_DELETE: &[&str] = &[
    "/etc/pki/ca-trust/source/anchors/openshift-config-user-ca-bundle.crt",
    "/etc/kubernetes/kubelet-ca.crt",
    "/etc/kubernetes/ca.crt",
    "/etc/kubernetes/static-pod-resources/configmaps/cloud-config/ca-bundle.pem",
    "/var/lib/kubelet/config.json",
];

/// The backup path of `path`.
pub fn orig_path(root: &super::Root, path: &str) -> String {
    format!("{}/orig{path}.mcdorig", root.state_dir())
}

/// The stamp path of `path`.
pub fn noorig_path(root: &super::Root, path: &str) -> String {
    format!("{}/noorig{path}.mcdnoorig", root.state_dir())
}

/// Whether `path` is on the never-delete list.
pub fn never_delete(path: &str) -> bool {
    NEVER_DELETE.contains(&path)
}
