//! The cluster's default node disruption policy (SPEC §3, "Cluster defaults") and the merge of a
//! user policy over it, which gives the effective policy (the status' `clusterPolicies`).

use super::{Action, FilePolicy, Policy, SshKeyPolicy, UnitPolicy};

/// The cluster defaults, in SPEC §3's order.
pub fn defaults() -> Policy {
    let file = |path: &str, actions: Vec<Action>| FilePolicy {
        path: path.to_string(),
        actions,
    };
    let crio_reload = || vec![Action::reload("crio.service")];
    Policy {
        files: vec![
            file("/var/lib/kubelet/config.json", vec![Action::None]),
            file(
                "/etc/machine-config-daemon/no-reboot/containers-gpg.pub",
                crio_reload(),
            ),
            file("/etc/containers/policy.json", crio_reload()),
            file("/etc/containers/registries.conf", vec![Action::Special]),
            file("/etc/containers/registries.d", crio_reload()),
            file("/etc/crio/policies", crio_reload()),
            file("/etc/nmstate/openshift", vec![Action::None]),
            file(
                "/etc/pki/ca-trust/source/anchors/openshift-config-user-ca-bundle.crt",
                vec![
                    Action::restart("coreos-update-ca-trust.service"),
                    Action::restart("crio.service"),
                ],
            ),
            file(
                "/etc/kubernetes/credential-providers",
                vec![Action::restart("kubelet.service")],
            ),
            file(
                "/etc/systemd/system/kubelet.service.d/40-kubelet-crio-image-credential-provider.conf",
                vec![Action::DaemonReload, Action::restart("kubelet.service")],
            ),
            file(
                "/etc/iri-registry",
                vec![Action::restart("iri-registry.service")],
            ),
            file(
                "/usr/local/bin/load-registry-image.sh",
                vec![Action::restart("iri-registry.service")],
            ),
            file(
                "/etc/pki/ca-trust/source/anchors/iri-root-ca.crt",
                vec![Action::restart("coreos-update-ca-trust.service")],
            ),
        ],
        units: vec![UnitPolicy {
            name: "iri-registry.service".to_string(),
            actions: vec![
                Action::DaemonReload,
                Action::restart("iri-registry.service"),
            ],
        }],
        sshkey: SshKeyPolicy {
            actions: vec![Action::None],
        },
    }
}

/// The effective policy: [`defaults`] with `user` merged over it. A user entry with the same
/// exact path (or unit name) as a default replaces it in place; other user entries are appended
/// in the user's order; a non-empty user `sshkey` replaces the default one.
pub fn effective(user: &Policy) -> Policy {
    let mut merged = defaults();
    for entry in &user.files {
        match merged.files.iter_mut().find(|d| d.path == entry.path) {
            Some(slot) => *slot = entry.clone(),
            None => merged.files.push(entry.clone()),
        }
    }
    for entry in &user.units {
        match merged.units.iter_mut().find(|d| d.name == entry.name) {
            Some(slot) => *slot = entry.clone(),
            None => merged.units.push(entry.clone()),
        }
    }
    if !user.sshkey.actions.is_empty() {
        merged.sshkey = user.sshkey.clone();
    }
    merged
}
