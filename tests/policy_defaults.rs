//! The cluster defaults and the merge of a user policy over them (SPEC §3, "Cluster defaults").

use machine_config_daemon::model::policy::{
    Action, FilePolicy, Policy, SshKeyPolicy, UnitPolicy, defaults, effective,
    parse_machine_configuration,
};

#[test]
fn default_table_is_exactly_the_spec_in_order() {
    let crio_reload = vec![Action::reload("crio.service")];
    let expected: Vec<(&str, Vec<Action>)> = vec![
        ("/var/lib/kubelet/config.json", vec![Action::None]),
        (
            "/etc/machine-config-daemon/no-reboot/containers-gpg.pub",
            crio_reload.clone(),
        ),
        ("/etc/containers/policy.json", crio_reload.clone()),
        ("/etc/containers/registries.conf", vec![Action::Special]),
        ("/etc/containers/registries.d", crio_reload.clone()),
        ("/etc/crio/policies", crio_reload.clone()),
        ("/etc/nmstate/openshift", vec![Action::None]),
        (
            "/etc/pki/ca-trust/source/anchors/openshift-config-user-ca-bundle.crt",
            vec![
                Action::restart("coreos-update-ca-trust.service"),
                Action::restart("crio.service"),
            ],
        ),
        (
            "/etc/kubernetes/credential-providers",
            vec![Action::restart("kubelet.service")],
        ),
        (
            "/etc/systemd/system/kubelet.service.d/40-kubelet-crio-image-credential-provider.conf",
            vec![Action::DaemonReload, Action::restart("kubelet.service")],
        ),
        (
            "/etc/iri-registry",
            vec![Action::restart("iri-registry.service")],
        ),
        (
            "/usr/local/bin/load-registry-image.sh",
            vec![Action::restart("iri-registry.service")],
        ),
        (
            "/etc/pki/ca-trust/source/anchors/iri-root-ca.crt",
            vec![Action::restart("coreos-update-ca-trust.service")],
        ),
    ];
    let d = defaults();
    let got: Vec<(&str, Vec<Action>)> = d
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.actions.clone()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        d.units,
        vec![UnitPolicy {
            name: "iri-registry.service".into(),
            actions: vec![
                Action::DaemonReload,
                Action::restart("iri-registry.service")
            ],
        }]
    );
    assert_eq!(d.sshkey.actions, vec![Action::None]);
    assert!(d.validate_status("defaults").is_ok());
}

#[test]
fn seed_default_status_agrees_with_our_defaults() {
    // The documents' status lists an older default set: every entry it shares with ours must be
    // identical, and the only extra one is the retired internal registry pull secret.
    let bytes = std::fs::read("tests/fixtures/plan/policies/default-status.yaml").unwrap();
    let mc = parse_machine_configuration(&bytes, "default-status.yaml").unwrap();
    assert_eq!(
        mc.policy,
        Policy::default(),
        "no user policy in the example"
    );
    let status = mc.status.clone().expect("status.clusterPolicies");
    assert_eq!(status.files.len(), 8);
    assert_eq!(status.sshkey.actions, vec![Action::None]);
    let ours = defaults();
    let mut extra = Vec::new();
    for entry in &status.files {
        match ours.files.iter().find(|d| d.path == entry.path) {
            Some(d) => assert_eq!(d, entry, "{}", entry.path),
            None => extra.push(entry.path.as_str()),
        }
    }
    assert_eq!(extra, vec!["/etc/mco/internal-registry-pull-secret.json"]);
    // With no user policy, the effective policy is our defaults.
    assert_eq!(mc.effective_policy(), ours);
}

#[test]
fn merge_replaces_in_place_and_appends() {
    let user = Policy {
        files: vec![
            FilePolicy {
                path: "/etc/chrony.conf".into(),
                actions: vec![Action::reload("chronyd.service")],
            },
            FilePolicy {
                path: "/etc/containers/registries.conf".into(),
                actions: vec![Action::None],
            },
            FilePolicy {
                path: "/var/run".into(),
                actions: vec![Action::None],
            },
        ],
        units: vec![
            UnitPolicy {
                name: "auditd.service".into(),
                actions: vec![Action::Drain],
            },
            UnitPolicy {
                name: "iri-registry.service".into(),
                actions: vec![Action::None],
            },
        ],
        sshkey: SshKeyPolicy::default(),
    };
    let merged = effective(&user);
    let d = defaults();
    assert_eq!(merged.files.len(), d.files.len() + 2);
    // registries.conf keeps its position (4th) with the user's actions.
    assert_eq!(merged.files[3], user.files[1]);
    // Appended in the user's order after the defaults.
    assert_eq!(
        &merged.files[d.files.len()..],
        &[user.files[0].clone(), user.files[2].clone()]
    );
    // Everything else untouched.
    for (i, f) in d.files.iter().enumerate().filter(|(i, _)| *i != 3) {
        assert_eq!(&merged.files[i], f);
    }
    assert_eq!(
        merged.units,
        vec![user.units[1].clone(), user.units[0].clone()]
    );
    // An empty user sshkey keeps the default; a non-empty one replaces it.
    assert_eq!(merged.sshkey.actions, vec![Action::None]);
    let with_ssh = Policy {
        sshkey: SshKeyPolicy {
            actions: vec![Action::Drain],
        },
        ..user
    };
    assert_eq!(effective(&with_ssh).sshkey.actions, vec![Action::Drain]);
}

#[test]
fn merge_is_by_exact_path_not_prefix() {
    // A user entry for a parent directory of a default is a new entry, not a replacement.
    let user = Policy {
        files: vec![FilePolicy {
            path: "/etc/containers".into(),
            actions: vec![Action::Drain],
        }],
        ..Policy::default()
    };
    let merged = effective(&user);
    assert_eq!(merged.files.len(), defaults().files.len() + 1);
    assert_eq!(merged.files.last(), Some(&user.files[0]));
    assert!(
        merged
            .files
            .iter()
            .any(|f| f.path == "/etc/containers/policy.json")
    );
}
