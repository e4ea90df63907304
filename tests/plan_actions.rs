//! Choosing actions (SPEC §3 points 1–8) through the public `plan::plan` entry.

use machine_config_daemon::model::policy::{
    Action, FilePolicy, Policy, SshKeyPolicy, UnitPolicy, defaults, effective,
    parse_machine_configuration,
};
use machine_config_daemon::model::{Dropin, File, MachineConfig, Unit, User};
use machine_config_daemon::plan::{ChangeKind, Plan, PlanOptions, Subject, plan};

fn file(path: &str, contents: &str) -> File {
    File {
        path: path.into(),
        contents: Some(contents.as_bytes().to_vec()),
        overwrite: Some(true),
        ..File::default()
    }
}

fn unit(name: &str, contents: &str) -> Unit {
    Unit {
        name: name.into(),
        contents: Some(contents.into()),
        enabled: Some(true),
        ..Unit::default()
    }
}

fn core(keys: &[&str]) -> User {
    User {
        name: "core".into(),
        ssh_authorized_keys: keys.iter().map(|k| k.to_string()).collect(),
        ..User::default()
    }
}

fn mc(name: &str, files: Vec<File>, units: Vec<Unit>) -> MachineConfig {
    let mut m = MachineConfig {
        name: name.into(),
        ..MachineConfig::default()
    };
    m.spec.config.files = files;
    m.spec.config.units = units;
    m.spec.config.users = vec![core(&["ssh-ed25519 AAAA old"])];
    m
}

fn seed_policy(name: &str) -> Policy {
    let path = format!("tests/fixtures/plan/policies/{name}");
    parse_machine_configuration(&std::fs::read(&path).unwrap(), &path)
        .unwrap()
        .effective_policy()
}

fn run(old: &MachineConfig, new: &MachineConfig, policy: &Policy) -> Plan {
    plan(old, new, policy, &PlanOptions::default())
}

/// A base config with a few files and units every case starts from.
fn base() -> MachineConfig {
    mc(
        "rendered-worker-a",
        vec![
            file("/etc/chrony.conf", "server a"),
            file("/etc/containers/policy.json", "{}"),
            file("/etc/containers/registries.d/a.yaml", "a"),
            file("/etc/crio/policies/p.json", "{}"),
            file(
                "/etc/containers/registries.conf",
                "unqualified-search-registries = []",
            ),
            file("/etc/pki/tls/certs/ca-bundle.crt", "ca"),
            file("/etc/motd", "hi"),
            file("/var/run/x", "x"),
        ],
        vec![
            unit("auditd.service", "[Service]"),
            unit("crio.service", "[Service]"),
        ],
    )
}

fn with_file(mut m: MachineConfig, path: &str, contents: &str) -> MachineConfig {
    m.name = "rendered-worker-b".into();
    m.spec.config.files.retain(|f| f.path != path);
    m.spec.config.files.push(file(path, contents));
    m
}

#[test]
fn seed_examples_give_the_documented_actions() {
    let crio_sequence = vec![
        Action::Drain,
        Action::reload("crio.service"),
        Action::DaemonReload,
        Action::restart("crio.service"),
    ];
    let old = base();
    let ssh_change = {
        let mut m = base();
        m.name = "b".into();
        m.spec.config.users = vec![core(&["ssh-ed25519 AAAA new"])];
        m
    };
    let unit_change = {
        let mut m = base();
        m.name = "b".into();
        m.spec.config.units[0] = unit("auditd.service", "[Service]\nX=1");
        m
    };
    // (policy file, new config, expected actions, expected drain)
    let cases: Vec<(&str, MachineConfig, Vec<Action>, bool)> = vec![
        (
            "sshkey.yaml",
            ssh_change.clone(),
            crio_sequence.clone(),
            true,
        ),
        ("default-status.yaml", ssh_change, vec![Action::None], false),
        (
            "files.yaml",
            with_file(base(), "/etc/chrony.conf", "server b"),
            vec![Action::reload("chronyd.service")],
            false,
        ),
        (
            "files.yaml",
            with_file(base(), "/var/run/y", "new"),
            vec![Action::None],
            false,
        ),
        ("units.yaml", unit_change.clone(), crio_sequence, true),
        (
            "default-status.yaml",
            unit_change,
            vec![Action::Reboot],
            true,
        ),
        (
            "registries.yaml",
            with_file(
                base(),
                "/etc/containers/registries.conf",
                "unqualified-search-registries = ['x']",
            ),
            vec![Action::None],
            false,
        ),
    ];
    for (policy, new, expected, drain) in cases {
        let p = run(&old, &new, &seed_policy(policy));
        assert_eq!(p.actions, expected, "{policy}: {:#?}", p.changes);
        assert_eq!(p.drain, drain, "{policy}: drain");
        assert_eq!(p.reboot, expected == [Action::Reboot], "{policy}: reboot");
        assert_eq!(p.unreconcilable, None, "{policy}");
    }
}

#[test]
fn default_policy_table_per_path() {
    let policy = defaults();
    let crio_reload = vec![Action::reload("crio.service")];
    let cases: Vec<(&str, Vec<Action>, Option<&str>)> = vec![
        (
            "/var/lib/kubelet/config.json",
            vec![Action::None],
            Some("/var/lib/kubelet/config.json"),
        ),
        (
            "/etc/containers/policy.json",
            crio_reload.clone(),
            Some("/etc/containers/policy.json"),
        ),
        (
            "/etc/containers/registries.d/mirror.yaml",
            crio_reload.clone(),
            Some("/etc/containers/registries.d"),
        ),
        (
            "/etc/crio/policies/x/y.json",
            crio_reload.clone(),
            Some("/etc/crio/policies"),
        ),
        (
            "/etc/nmstate/openshift/applied",
            vec![Action::None],
            Some("/etc/nmstate/openshift"),
        ),
        (
            "/etc/kubernetes/credential-providers/ecr.yaml",
            vec![Action::restart("kubelet.service")],
            Some("/etc/kubernetes/credential-providers"),
        ),
        (
            "/usr/local/bin/load-registry-image.sh",
            vec![Action::restart("iri-registry.service")],
            Some("/usr/local/bin/load-registry-image.sh"),
        ),
        // A sibling with a common string prefix is not under the directory.
        (
            "/etc/containers/registries.d.bak",
            vec![Action::Reboot],
            None,
        ),
        (
            "/etc/containers/policy.json.d/x",
            vec![Action::Reboot],
            None,
        ),
        ("/etc/motd", vec![Action::Reboot], None),
    ];
    for (path, expected, matched) in cases {
        let p = run(&base(), &with_file(base(), path, "new contents"), &policy);
        assert_eq!(p.changes.len(), 1, "{path}");
        assert_eq!(p.changes[0].matched.as_deref(), matched, "{path}");
        assert_eq!(p.actions, expected, "{path}");
    }
}

#[test]
fn longest_prefix_wins() {
    let policy = effective(&Policy {
        files: vec![
            FilePolicy {
                path: "/etc".into(),
                actions: vec![Action::Drain],
            },
            FilePolicy {
                path: "/etc/pki".into(),
                actions: vec![Action::restart("update-ca.service")],
            },
        ],
        ..Policy::default()
    });
    let cases = vec![
        (
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/pki",
            Action::restart("update-ca.service"),
        ),
        ("/etc/motd", "/etc", Action::Drain),
        ("/etc/pkix", "/etc", Action::Drain),
        // A more specific default still beats the user's /etc and /etc/pki.
        (
            "/etc/pki/ca-trust/source/anchors/iri-root-ca.crt",
            "/etc/pki/ca-trust/source/anchors/iri-root-ca.crt",
            Action::restart("coreos-update-ca-trust.service"),
        ),
    ];
    for (path, matched, action) in cases {
        let p = run(&base(), &with_file(base(), path, "changed"), &policy);
        assert_eq!(p.changes[0].matched.as_deref(), Some(matched), "{path}");
        assert_eq!(p.actions, vec![action], "{path}");
    }
    // The order of the policy entries does not matter.
    let reversed = Policy {
        files: policy.files.iter().rev().cloned().collect(),
        ..policy
    };
    let p = run(
        &base(),
        &with_file(base(), "/etc/pki/tls/certs/ca-bundle.crt", "changed"),
        &reversed,
    );
    assert_eq!(p.changes[0].matched.as_deref(), Some("/etc/pki"));
}

#[test]
fn root_and_unclean_policy_paths_match_as_directories() {
    let policy = Policy {
        files: vec![
            FilePolicy {
                path: "/".into(),
                actions: vec![Action::Drain],
            },
            FilePolicy {
                path: "/etc/ssh/".into(),
                actions: vec![Action::reload("sshd.service")],
            },
        ],
        ..Policy::default()
    };
    let p = run(
        &base(),
        &with_file(base(), "/etc/ssh/sshd_config", "x"),
        &policy,
    );
    assert_eq!(p.actions, vec![Action::reload("sshd.service")]);
    let p = run(&base(), &with_file(base(), "/var/anything", "x"), &policy);
    assert_eq!(p.actions, vec![Action::Drain]);
}

#[test]
fn removed_files_are_matched_too() {
    let old = base();
    let mut new = base();
    new.name = "b".into();
    new.spec
        .config
        .files
        .retain(|f| f.path != "/etc/containers/policy.json");
    let p = run(&old, &new, &defaults());
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].change, ChangeKind::Removed);
    assert_eq!(
        p.changes[0].matched.as_deref(),
        Some("/etc/containers/policy.json")
    );
    assert_eq!(p.actions, vec![Action::reload("crio.service")]);

    new.spec.config.files.retain(|f| f.path != "/etc/motd");
    let p = run(&old, &new, &defaults());
    assert_eq!(
        p.actions,
        vec![Action::Reboot],
        "removing an unmatched file reboots"
    );
}

#[test]
fn unmatched_file_or_unit_reboots() {
    let policy = seed_policy("files.yaml");
    // A matched change alongside an unmatched one still reboots.
    let new = with_file(
        with_file(base(), "/etc/chrony.conf", "server b"),
        "/etc/motd",
        "bye",
    );
    let p = run(&base(), &new, &policy);
    assert_eq!(p.actions, vec![Action::Reboot]);
    assert!(p.drain && p.reboot);
    let motd = p
        .changes
        .iter()
        .find(|c| c.path.as_deref() == Some("/etc/motd"))
        .unwrap();
    assert_eq!(motd.matched, None);
    assert_eq!(motd.actions, vec![Action::Reboot]);
    assert!(
        motd.reason.contains("no policy path matches"),
        "{}",
        motd.reason
    );

    let mut new = base();
    new.name = "b".into();
    new.spec.config.units.push(unit("new.service", "[Service]"));
    let p = run(&base(), &new, &policy);
    assert_eq!(p.changes[0].kind, Subject::Unit);
    assert_eq!(p.changes[0].change, ChangeKind::Added);
    assert_eq!(p.changes[0].matched, None);
    assert_eq!(p.actions, vec![Action::Reboot]);
}

#[test]
fn combination_rules() {
    let entry = |path: &str, actions: Vec<Action>| FilePolicy {
        path: path.into(),
        actions,
    };
    let policy = Policy {
        files: vec![
            entry("/etc/a", vec![Action::None]),
            entry("/etc/b", vec![Action::None]),
            entry("/etc/c", vec![Action::reload("crio.service")]),
            entry(
                "/etc/d",
                vec![Action::Drain, Action::restart("crio.service")],
            ),
            entry("/etc/e", vec![Action::Reboot]),
            entry(
                "/etc/f",
                vec![Action::DaemonReload, Action::reload("crio.service")],
            ),
        ],
        ..Policy::default()
    };
    let cases: Vec<(&[&str], Vec<Action>)> = vec![
        (&["/etc/a"], vec![Action::None]),
        (&["/etc/a", "/etc/b"], vec![Action::None]),
        (&["/etc/a", "/etc/c"], vec![Action::reload("crio.service")]),
        (
            &["/etc/c", "/etc/d"],
            vec![
                Action::reload("crio.service"),
                Action::Drain,
                Action::restart("crio.service"),
            ],
        ),
        (&["/etc/a", "/etc/c", "/etc/e"], vec![Action::Reboot]),
        // Sorted by path whatever the order in the config; identical actions once, first kept.
        (
            &["/etc/f", "/etc/c"],
            vec![Action::reload("crio.service"), Action::DaemonReload],
        ),
    ];
    for (paths, expected) in cases {
        let mut new = base();
        new.name = "b".into();
        for p in paths {
            new.spec.config.files.push(file(p, "x"));
        }
        let p = run(&base(), &new, &policy);
        assert_eq!(p.actions, expected, "{paths:?}");
        assert_eq!(
            p.drain,
            expected.contains(&Action::Reboot) || expected.contains(&Action::Drain),
            "{paths:?}"
        );
    }
}

#[test]
fn three_crio_files_reload_crio_once() {
    let new = with_file(
        with_file(
            with_file(base(), "/etc/containers/policy.json", "{\"default\":[]}"),
            "/etc/containers/registries.d/b.yaml",
            "b",
        ),
        "/etc/crio/policies/p.json",
        "{\"x\":1}",
    );
    let p = run(&base(), &new, &defaults());
    assert_eq!(p.changes.len(), 3);
    assert!(
        p.changes
            .iter()
            .all(|c| c.actions == vec![Action::reload("crio.service")])
    );
    assert_eq!(p.actions, vec![Action::reload("crio.service")]);
    assert!(!p.drain && !p.reboot);
}

#[test]
fn no_change_is_none() {
    let p = run(&base(), &base(), &defaults());
    assert_eq!(p.actions, vec![Action::None]);
    assert!(p.changes.is_empty());
    assert!(!p.drain && !p.reboot);
    // Spelling differences that do not change the node are not changes.
    let mut same = base();
    same.spec.config.files[0].mode = Some(0o644);
    same.spec.config.files.reverse();
    same.spec.kernel_type = Some("default".into());
    assert_eq!(run(&base(), &same, &defaults()).actions, vec![Action::None]);
}

#[test]
fn always_reboot_fields() {
    let set = |f: &dyn Fn(&mut MachineConfig)| {
        let mut m = base();
        m.name = "b".into();
        f(&mut m);
        m
    };
    let mut old = base();
    old.spec.kernel_arguments = vec!["a=1".into(), "b=2".into()];
    old.spec.extensions = vec!["usbguard".into(), "kerberos".into()];
    let cases: Vec<(&str, MachineConfig, Option<Subject>)> = vec![
        (
            "kargs reordered",
            set(&|m| {
                m.spec.kernel_arguments = vec!["b=2".into(), "a=1".into()];
                m.spec.extensions = old.spec.extensions.clone();
            }),
            Some(Subject::KernelArguments),
        ),
        (
            "kargs added",
            set(&|m| {
                m.spec.kernel_arguments = vec!["a=1".into(), "b=2".into(), "c".into()];
                m.spec.extensions = old.spec.extensions.clone();
            }),
            Some(Subject::KernelArguments),
        ),
        (
            "kernelType",
            set(&|m| {
                m.spec.kernel_arguments = old.spec.kernel_arguments.clone();
                m.spec.extensions = old.spec.extensions.clone();
                m.spec.kernel_type = Some("realtime".into());
            }),
            Some(Subject::KernelType),
        ),
        (
            "extensions",
            set(&|m| {
                m.spec.kernel_arguments = old.spec.kernel_arguments.clone();
                m.spec.extensions = vec!["usbguard".into()];
            }),
            Some(Subject::Extensions),
        ),
        (
            "osImageURL",
            set(&|m| {
                m.spec.kernel_arguments = old.spec.kernel_arguments.clone();
                m.spec.extensions = old.spec.extensions.clone();
                m.spec.os_image_url = "quay.io/os@sha256:1111111111111111111111111111111111111111111111111111111111111111".into();
            }),
            Some(Subject::OsImageUrl),
        ),
        // Not changes: same kargs, extensions reordered.
        (
            "extensions reordered",
            set(&|m| {
                m.spec.kernel_arguments = old.spec.kernel_arguments.clone();
                m.spec.extensions = vec!["kerberos".into(), "usbguard".into()];
            }),
            None,
        ),
    ];
    // A policy that would otherwise say None for everything.
    let policy = Policy {
        files: vec![FilePolicy {
            path: "/".into(),
            actions: vec![Action::None],
        }],
        ..Policy::default()
    };
    for (case, new, subject) in cases {
        let p = run(&old, &new, &policy);
        match subject {
            Some(s) => {
                assert_eq!(p.actions, vec![Action::Reboot], "{case}");
                assert_eq!(p.changes.len(), 1, "{case}");
                assert_eq!(p.changes[0].kind, s, "{case}");
                assert!(
                    p.changes[0].reason.contains("always requires a reboot"),
                    "{case}"
                );
            }
            None => assert_eq!(p.actions, vec![Action::None], "{case}"),
        }
    }
    // Empty and absent kernel arguments are the same.
    let mut a = base();
    a.spec.kernel_arguments = vec![];
    assert_eq!(run(&base(), &a, &policy).actions, vec![Action::None]);
}

#[test]
fn force_file_reboots_even_without_changes() {
    let p = plan(
        &base(),
        &base(),
        &defaults(),
        &PlanOptions {
            force: true,
            ..Default::default()
        },
    );
    assert_eq!(p.actions, vec![Action::Reboot]);
    assert!(p.drain && p.reboot);
    assert!(p.notes.iter().any(|n| n.contains("force file present")));
}

#[test]
fn sshkey_and_password_changes_use_the_sshkey_entry() {
    let policy = effective(&Policy {
        sshkey: SshKeyPolicy {
            actions: vec![Action::reload("sshd.service")],
        },
        ..Policy::default()
    });
    let mut keys = base();
    keys.spec.config.users = vec![core(&["ssh-ed25519 AAAA new"])];
    let mut password = base();
    password.spec.config.users[0].password_hash = Some("$6$x".into());
    let mut both = base();
    both.spec.config.users = vec![core(&["ssh-ed25519 AAAA new"])];
    both.spec.config.users[0].password_hash = Some("$6$x".into());
    let mut none_left = base();
    none_left.spec.config.users = vec![core(&[])];
    for (new, reason) in [
        (keys, "ssh keys of core changed; matches policy sshkey"),
        (
            password,
            "password hash of core changed; matches policy sshkey",
        ),
        (
            both,
            "ssh keys and password hash of core changed; matches policy sshkey",
        ),
        (none_left, "ssh keys of core changed; matches policy sshkey"),
    ] {
        let p = run(&base(), &new, &policy);
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].kind, Subject::SshKey);
        assert_eq!(p.changes[0].matched.as_deref(), Some("sshkey"));
        assert_eq!(p.changes[0].reason, reason);
        assert_eq!(p.actions, vec![Action::reload("sshd.service")]);
        // A note only when core is left without any key.
        let warned = p
            .notes
            .iter()
            .any(|n| n == "core will have no ssh authorized key after this change");
        assert_eq!(
            warned,
            new.spec.config.users[0].ssh_authorized_keys.is_empty()
        );
    }
    // Changes are ordered files, units, sshkey.
    let mut all = with_file(base(), "/etc/containers/policy.json", "{1}");
    all.spec.config.units[1] = Unit {
        enabled: Some(false),
        ..all.spec.config.units[1].clone()
    };
    all.spec.config.users = vec![core(&["k2"])];
    let policy = effective(&Policy {
        units: vec![UnitPolicy {
            name: "crio.service".into(),
            actions: vec![Action::restart("crio.service")],
        }],
        sshkey: SshKeyPolicy {
            actions: vec![Action::reload("sshd.service")],
        },
        ..Policy::default()
    });
    let p = run(&base(), &all, &policy);
    let kinds: Vec<Subject> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![Subject::File, Subject::Unit, Subject::SshKey]);
    assert_eq!(
        p.actions,
        vec![
            Action::reload("crio.service"),
            Action::restart("crio.service"),
            Action::reload("sshd.service")
        ]
    );
}

#[test]
fn daemon_reload_is_inserted_before_restarting_a_redefined_unit() {
    let restart_crio = effective(&Policy {
        units: vec![UnitPolicy {
            name: "crio.service".into(),
            actions: vec![Action::restart("crio.service")],
        }],
        ..Policy::default()
    });
    let changed = |f: &dyn Fn(&mut Unit)| {
        let mut m = base();
        m.name = "b".into();
        f(&mut m.spec.config.units[1]);
        m
    };
    // (case, new config, expected actions)
    let cases: Vec<(&str, MachineConfig, Vec<Action>)> = vec![
        (
            "unit contents",
            changed(&|u| u.contents = Some("[Service]\nNice=1".into())),
            vec![Action::DaemonReload, Action::restart("crio.service")],
        ),
        (
            "dropin added",
            changed(&|u| {
                u.dropins.push(Dropin {
                    name: "10-x.conf".into(),
                    contents: Some("[Service]".into()),
                })
            }),
            vec![Action::DaemonReload, Action::restart("crio.service")],
        ),
        (
            "only enabled changed: no definition change",
            changed(&|u| u.enabled = Some(false)),
            vec![Action::restart("crio.service")],
        ),
    ];
    for (case, new, expected) in cases {
        let p = run(&base(), &new, &restart_crio);
        assert_eq!(p.actions, expected, "{case}");
        let noted = p
            .notes
            .iter()
            .any(|n| n.contains("DaemonReload added before Restart crio.service"));
        assert_eq!(
            noted,
            expected.contains(&Action::DaemonReload),
            "{case}: {:?}",
            p.notes
        );
    }

    // A dropin written through storage.files counts as a redefinition of its unit; a policy
    // DaemonReload after the restart is moved before it rather than run twice.
    let policy = effective(&Policy {
        files: vec![FilePolicy {
            path: "/etc/systemd/system/kubelet.service.d".into(),
            actions: vec![Action::restart("kubelet.service"), Action::DaemonReload],
        }],
        ..Policy::default()
    });
    let new = with_file(
        base(),
        "/etc/systemd/system/kubelet.service.d/20-x.conf",
        "[Service]",
    );
    let p = run(&base(), &new, &policy);
    assert_eq!(
        p.actions,
        vec![Action::DaemonReload, Action::restart("kubelet.service")]
    );

    // The default kubelet credential-provider dropin already daemon-reloads first: no note.
    let new = with_file(
        base(),
        "/etc/systemd/system/kubelet.service.d/40-kubelet-crio-image-credential-provider.conf",
        "[Service]",
    );
    let p = run(&base(), &new, &defaults());
    assert_eq!(
        p.actions,
        vec![Action::DaemonReload, Action::restart("kubelet.service")]
    );
    assert!(!p.notes.iter().any(|n| n.contains("DaemonReload added")));
}

#[test]
fn special_reloads_crio_and_drains_when_unsafe() {
    let new = with_file(
        base(),
        "/etc/containers/registries.conf",
        "[[registry]]\nlocation = \"x\"",
    );
    let p = run(&base(), &new, &defaults());
    assert_eq!(p.actions, vec![Action::Special]);
    assert!(!p.reboot);
    // A registry added without digest-only pulls is unsafe: drain, and the notes say why.
    assert!(p.drain);
    assert!(
        p.notes.iter().any(|n| n.contains("reloading crio.service")),
        "{:?}",
        p.notes
    );
    assert!(
        p.notes.iter().any(|n| n.contains(
            r#"registry "x": added without mirror-by-digest-only and without digest-only mirrors"#
        )),
        "{:?}",
        p.notes
    );
    // A registry added with mirror-by-digest-only is safe: the crio reload alone, no drain.
    let safe = with_file(
        base(),
        "/etc/containers/registries.conf",
        "[[registry]]\nlocation = \"x\"\nmirror-by-digest-only = true\n\
         [[registry.mirror]]\nlocation = \"m\"",
    );
    let p = run(&base(), &safe, &defaults());
    assert_eq!(p.actions, vec![Action::Special]);
    assert!(!p.drain, "{:?}", p.notes);
    // Special alongside a crio reload: both kept, in path order (policy.json < registries.conf).
    let both = with_file(new, "/etc/containers/policy.json", "{2}");
    let p = run(&base(), &both, &defaults());
    assert_eq!(
        p.actions,
        vec![Action::reload("crio.service"), Action::Special]
    );
}

#[test]
fn plans_are_deterministic() {
    let mut old = base();
    let mut new = base();
    new.name = "b".into();
    for i in 0..200 {
        old.spec.config.files.push(file(
            &format!("/etc/containers/registries.d/{i:03}.yaml"),
            "a",
        ));
        new.spec.config.files.push(file(
            &format!("/etc/containers/registries.d/{i:03}.yaml"),
            "b",
        ));
        new.spec
            .config
            .files
            .push(file(&format!("/etc/crio/policies/{i}.json"), "n"));
    }
    let policy = defaults();
    let first = serde_json::to_string(&run(&old, &new, &policy)).unwrap();
    // Same configs with their lists shuffled (reversed, rotated) give byte-identical output.
    for k in 0..3 {
        let mut shuffled = new.clone();
        shuffled.spec.config.files.rotate_left(k * 37 % 400);
        shuffled.spec.config.files.reverse();
        let mut old2 = old.clone();
        old2.spec.config.files.rotate_right(k * 11 % 200);
        assert_eq!(
            serde_json::to_string(&run(&old2, &shuffled, &policy)).unwrap(),
            first
        );
    }
    let p = run(&old, &new, &policy);
    let paths: Vec<&str> = p.changes.iter().filter_map(|c| c.path.as_deref()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert_eq!(p.actions, vec![Action::reload("crio.service")]);
}

#[test]
fn plan_json_shape() {
    let new = with_file(base(), "/etc/chrony.conf", "server b");
    let p = run(&base(), &new, &seed_policy("files.yaml"));
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "from": "rendered-worker-a",
            "to": "rendered-worker-b",
            "actions": [{"type": "Reload", "reload": {"serviceName": "chronyd.service"}}],
            "drain": false,
            "reboot": false,
            "changes": [{
                "kind": "file",
                "path": "/etc/chrony.conf",
                "change": "changed",
                "matched": "/etc/chrony.conf",
                "actions": [{"type": "Reload", "reload": {"serviceName": "chronyd.service"}}],
                "reason": "matches policy path /etc/chrony.conf",
            }],
            "osSteps": [],
            "host": "rpm-ostree",
            "notes": [],
            "unreconcilable": null,
        })
    );
    // The diff is exposed to the executor.
    assert_eq!(p.diff.files.len(), 1);
    assert_eq!(p.diff.files[0].path, "/etc/chrony.conf");
}

/// The `kind` and `change` words of the table output (`as_str`) are the JSON output's.
#[test]
fn kind_and_change_words_are_the_json_ones() {
    let subjects = [
        (Subject::File, "file"),
        (Subject::Unit, "unit"),
        (Subject::SshKey, "sshkey"),
        (Subject::KernelArguments, "kernelArguments"),
        (Subject::KernelType, "kernelType"),
        (Subject::Extensions, "extensions"),
        (Subject::Fips, "fips"),
        (Subject::OsImageUrl, "osImageURL"),
    ];
    for (s, word) in subjects {
        assert_eq!(s.as_str(), word);
        assert_eq!(serde_json::to_value(s).unwrap(), word);
    }
    let changes = [
        (ChangeKind::Added, "added"),
        (ChangeKind::Changed, "changed"),
        (ChangeKind::Removed, "removed"),
    ];
    for (c, word) in changes {
        assert_eq!(c.as_str(), word);
        assert_eq!(serde_json::to_value(c).unwrap(), word);
    }
}

/// A unit file written through `storage.files` (not `systemd.units`) redefines its unit too: a
/// restart of it is preceded by a DaemonReload.
#[test]
fn unit_file_in_storage_files_redefines_the_unit() {
    let policy = effective(&Policy {
        files: vec![FilePolicy {
            path: "/etc/systemd/system/crio.service".into(),
            actions: vec![Action::restart("crio.service")],
        }],
        ..Policy::default()
    });
    let new = with_file(
        base(),
        "/etc/systemd/system/crio.service",
        "[Service]\nExecStart=/usr/bin/crio\n",
    );
    let p = run(&base(), &new, &policy);
    assert_eq!(
        p.actions,
        vec![Action::DaemonReload, Action::restart("crio.service")]
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("DaemonReload added before Restart crio.service")),
        "{:?}",
        p.notes
    );
}

/// Only a unit file or a file directly in `<unit>.d/` redefines a unit: a file deeper down, or
/// in a directory whose name only looks alike, does not (no DaemonReload is added).
#[test]
fn only_unit_files_and_direct_dropins_redefine_a_unit() {
    let policy = |path: &str| {
        effective(&Policy {
            files: vec![FilePolicy {
                path: path.into(),
                actions: vec![Action::restart("crio.service")],
            }],
            ..Policy::default()
        })
    };
    for (path, redefines) in [
        ("/etc/systemd/system/crio.service.d/10-x.conf", true),
        ("/etc/systemd/system/crio.service.d/sub/10-x.conf", false),
        ("/etc/systemd/system/crio.service.x/10-x.conf", false),
    ] {
        let new = with_file(base(), path, "[Service]\n");
        let p = run(&base(), &new, &policy(path));
        let want = if redefines {
            vec![Action::DaemonReload, Action::restart("crio.service")]
        } else {
            vec![Action::restart("crio.service")]
        };
        assert_eq!(p.actions, want, "{path}");
    }
}

/// Policy paths are matched after lexical cleaning (`//`, `.`, `..`, a trailing `/`), and a
/// clean path is taken as it is.
#[test]
fn policy_paths_are_cleaned_before_matching() {
    use machine_config_daemon::plan::actions::clean_path;
    for (raw, clean) in [
        ("/etc/crio/policies/", "/etc/crio/policies"),
        ("/etc//crio/./policies", "/etc/crio/policies"),
        ("/etc/crio/x/../policies", "/etc/crio/policies"),
        ("/etc/crio/policies", "/etc/crio/policies"),
        ("/", "/"),
        // Paths made only of empty, `.` or `..` components are not clean either.
        ("//", "/"),
        ("/.", "/"),
        ("/..", "/"),
        ("/./.", "/"),
        ("/../..", "/"),
    ] {
        assert_eq!(clean_path(raw), clean, "{raw}");
    }
    let policy = effective(&Policy {
        files: vec![FilePolicy {
            path: "/etc//app/./conf.d/".into(),
            actions: vec![Action::restart("app.service")],
        }],
        ..Policy::default()
    });
    let new = with_file(base(), "/etc/app/conf.d/x.conf", "x");
    let p = run(&base(), &new, &policy);
    assert_eq!(p.changes[0].matched.as_deref(), Some("/etc//app/./conf.d/"));
    assert_eq!(p.actions, vec![Action::restart("app.service")]);
}
