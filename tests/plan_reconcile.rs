//! What may be changed and what is refused (SPEC §4).

use machine_config_daemon::model::policy::defaults;
use machine_config_daemon::model::{
    Directory, Dropin, File, Group, Link, MachineConfig, Unit, User,
};
use machine_config_daemon::plan::diff::diff;
use machine_config_daemon::plan::reconcile::{check, config_problems, invalid_items, not_applied};
use machine_config_daemon::plan::{PlanOptions, plan};
use serde_json::json;

fn file(path: &str) -> File {
    File {
        path: path.into(),
        contents: Some(b"x".to_vec()),
        overwrite: Some(true),
        ..File::default()
    }
}

fn core(keys: &[&str]) -> User {
    User {
        name: "core".into(),
        ssh_authorized_keys: keys.iter().map(|k| k.to_string()).collect(),
        ..User::default()
    }
}

fn base() -> MachineConfig {
    let mut m = MachineConfig {
        name: "rendered-worker-old".into(),
        ..MachineConfig::default()
    };
    m.spec.config.files = vec![file("/etc/a")];
    m.spec.config.users = vec![core(&["k1"])];
    m.spec.config.links = vec![Link {
        path: "/etc/l".into(),
        target: Some("/etc/a".into()),
        ..Link::default()
    }];
    m.spec.config.disks = Some(json!([{"device": "/dev/sda"}]));
    m
}

fn changed(f: impl Fn(&mut MachineConfig)) -> MachineConfig {
    let mut m = base();
    m.name = "rendered-worker-new".into();
    f(&mut m);
    m
}

/// The refusal of the change from `base()` to `new`, if any.
fn refusal(new: &MachineConfig) -> Option<String> {
    let old = base();
    check(&old, new, &diff(&old, new))
        .err()
        .map(|e| e.to_string())
}

#[test]
fn refused_changes() {
    let cases: Vec<(&str, MachineConfig, &str)> = vec![
        (
            "disks",
            changed(|m| m.spec.config.disks = Some(json!([{"device": "/dev/sdb"}]))),
            "storage.disks changed",
        ),
        (
            "filesystems",
            changed(|m| m.spec.config.filesystems = Some(json!([{"path": "/var"}]))),
            "storage.filesystems changed",
        ),
        (
            "raid",
            changed(|m| m.spec.config.raid = Some(json!([{"name": "md0"}]))),
            "storage.raid changed",
        ),
        (
            "luks",
            changed(|m| m.spec.config.luks = Some(json!([{"name": "root"}]))),
            "storage.luks changed",
        ),
        (
            "directories",
            changed(|m| {
                m.spec.config.directories.push(Directory {
                    path: "/etc/d".into(),
                    ..Directory::default()
                })
            }),
            "storage.directories changed",
        ),
        (
            "ignition kargs",
            changed(|m| {
                m.spec.config.ignition_kernel_arguments = Some(json!({"shouldExist": ["x"]}))
            }),
            "kernelArguments (the Ignition section) changed",
        ),
        (
            "link added",
            changed(|m| {
                m.spec.config.links.push(Link {
                    path: "/etc/l2".into(),
                    target: Some("/x".into()),
                    ..Link::default()
                })
            }),
            "adding link /etc/l2",
        ),
        (
            "link changed",
            changed(|m| m.spec.config.links[0].target = Some("/etc/b".into())),
            "changing link /etc/l",
        ),
        (
            "append",
            changed(|m| {
                m.spec.config.files.push(File {
                    has_append: true,
                    ..file("/etc/b")
                })
            }),
            "/etc/b: append is not supported",
        ),
        (
            "groups",
            changed(|m| {
                m.spec.config.groups.push(Group {
                    name: "wheel".into(),
                    ..Group::default()
                })
            }),
            "passwd.groups changed",
        ),
        (
            "other user",
            changed(|m| {
                m.spec.config.users.push(User {
                    name: "bob".into(),
                    ..User::default()
                })
            }),
            "user \"bob\" added",
        ),
        (
            "core other field",
            changed(|m| {
                m.spec.config.users[0]
                    .other_fields
                    .insert("uid".into(), json!(1000));
                m.spec.config.users[0].ssh_authorized_keys.push("k2".into());
            }),
            "not uid",
        ),
        (
            "core removed",
            changed(|m| m.spec.config.users.clear()),
            "user core may not be removed",
        ),
        (
            "force file",
            changed(|m| {
                m.spec
                    .config
                    .files
                    .push(file("/run/machine-config-daemon-force"))
            }),
            "is the force file",
        ),
        (
            "fips",
            changed(|m| m.spec.fips = true),
            "fips changed from false to true",
        ),
        (
            "outside /etc and /var",
            changed(|m| m.spec.config.files.push(file("/usr/bin/tool"))),
            "/usr/bin/tool is outside the writable trees",
        ),
        (
            "/etcfoo is not /etc",
            changed(|m| m.spec.config.files.push(file("/etcfoo/x"))),
            "outside the writable trees",
        ),
        (
            "dot-dot",
            changed(|m| m.spec.config.files.push(file("/etc/../usr/bin/x"))),
            "must not contain ..",
        ),
        (
            "relative",
            changed(|m| m.spec.config.files.push(file("etc/x"))),
            "must be an absolute path",
        ),
        (
            "file removed from /etc",
            {
                let mut o = base();
                o.spec.config.files.clear();
                o.name = "n".into();
                o
            },
            "",
        ),
        (
            "kernel-devel with realtime",
            changed(|m| {
                m.spec.kernel_type = Some("realtime".into());
                m.spec.extensions = vec!["kernel-devel".into()];
            }),
            "kernel-devel is not supported with kernelType realtime",
        ),
        (
            "unit name traversal",
            changed(|m| {
                m.spec.config.units.push(Unit {
                    name: "../../usr/lib/x.service".into(),
                    ..Unit::default()
                })
            }),
            "is not a valid unit file name",
        ),
        (
            "dropin name traversal",
            changed(|m| {
                m.spec.config.units.push(Unit {
                    name: "a.service".into(),
                    dropins: vec![Dropin {
                        name: "../x.conf".into(),
                        contents: Some("x".into()),
                    }],
                    ..Unit::default()
                })
            }),
            "is not a valid dropin file name",
        ),
    ];
    for (case, new, fragment) in cases {
        let got = refusal(&new);
        if fragment.is_empty() {
            // Removing /etc/a (inside /etc) is fine.
            assert_eq!(got, None, "{case}");
            continue;
        }
        let got = got.unwrap_or_else(|| panic!("{case}: expected a refusal"));
        assert!(
            got.starts_with(&format!(
                "can't reconcile config rendered-worker-old with {}: ",
                new.name
            )),
            "{case}: {got}"
        );
        assert!(got.contains(fragment), "{case}: {got:?} lacks {fragment:?}");
    }
}

/// A user other than core that goes, or changes, is named with what happened to it.
#[test]
fn other_users_removed_or_changed_are_named() {
    let bob = |key: &str| User {
        name: "bob".into(),
        ssh_authorized_keys: vec![key.into()],
        ..User::default()
    };
    let with_bob = changed(|m| m.spec.config.users.push(bob("k1")));
    let refused = |new: &MachineConfig| {
        check(&with_bob, new, &diff(&with_bob, new))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let removed = refused(&base());
    assert!(
        removed.contains("passwd.users: user \"bob\" removed;"),
        "{removed}"
    );
    let edited = refused(&changed(|m| m.spec.config.users.push(bob("k2"))));
    assert!(
        edited.contains("passwd.users: user \"bob\" changed;"),
        "{edited}"
    );
}

#[test]
fn accepted_changes() {
    let cases: Vec<(&str, MachineConfig)> = vec![
        (
            "file in /etc",
            changed(|m| m.spec.config.files.push(file("/etc/b"))),
        ),
        (
            "file in /var",
            changed(|m| m.spec.config.files.push(file("/var/lib/x"))),
        ),
        (
            "file in /opt (checked further by the host)",
            changed(|m| m.spec.config.files.push(file("/opt/x"))),
        ),
        (
            "file in /usr/local (checked further by the host)",
            changed(|m| m.spec.config.files.push(file("/usr/local/bin/x"))),
        ),
        (
            "core keys",
            changed(|m| m.spec.config.users[0].ssh_authorized_keys = vec!["k2".into()]),
        ),
        (
            "core password",
            changed(|m| m.spec.config.users[0].password_hash = Some("$6$".into())),
        ),
        (
            "core keys emptied (explicit)",
            changed(|m| m.spec.config.users[0].ssh_authorized_keys.clear()),
        ),
        ("link removed", changed(|m| m.spec.config.links.clear())),
        ("disks spelled as empty vs absent", {
            let mut o = base();
            o.spec.config.disks = None;
            o.spec.config.raid = Some(json!([]));
            o
        }),
        (
            "units",
            changed(|m| {
                m.spec.config.units.push(Unit {
                    name: "a.service".into(),
                    contents: Some("[Unit]".into()),
                    ..Unit::default()
                })
            }),
        ),
        (
            "kernel type and kargs (reboot, not refused)",
            changed(|m| {
                m.spec.kernel_type = Some("realtime".into());
                m.spec.kernel_arguments = vec!["x".into()];
            }),
        ),
    ];
    for (case, new) in cases {
        let mut old = base();
        if case.starts_with("disks spelled") {
            old.spec.config.disks = None;
        }
        let got = check(&old, &new, &diff(&old, &new))
            .err()
            .map(|e| e.to_string());
        assert_eq!(got, None, "{case}");
    }
}

#[test]
fn all_reasons_are_reported_and_the_plan_carries_them() {
    let new = changed(|m| {
        m.spec.fips = true;
        m.spec.config.files.push(file("/usr/bin/x"));
    });
    let p = plan(&base(), &new, &defaults(), &PlanOptions::default());
    let reason = p.unreconcilable.expect("refused");
    assert!(
        reason.contains("fips changed") && reason.contains("/usr/bin/x"),
        "{reason}"
    );
    // The plan is still computed, so a user sees what the change would have needed.
    assert!(p.reboot);
    assert!(!p.changes.is_empty());
}

#[test]
fn unchanged_install_time_content_is_not_refused() {
    // A file outside the writable trees that both configs carry unchanged does not block an update.
    let mut old = base();
    old.spec.config.files.push(file("/usr/lib/legacy"));
    let mut new = old.clone();
    new.spec.config.files[0].contents = Some(b"y".to_vec());
    assert_eq!(check(&old, &new, &diff(&old, &new)), Ok(()));
    // But validating that config alone reports it.
    let problems = config_problems(&new);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("/usr/lib/legacy is outside the writable trees"));
    // Removing it would delete outside the writable trees: refused.
    let mut removed = old.clone();
    removed
        .spec
        .config
        .files
        .retain(|f| f.path != "/usr/lib/legacy");
    let err = check(&old, &removed, &diff(&old, &removed)).unwrap_err();
    assert_eq!(err.reasons.len(), 1);
    assert!(
        err.reasons[0].contains("/usr/lib/legacy is outside"),
        "{err}"
    );
}

/// An install-time section written empty (`{}`, `[]`, `null`) is the same as none: no change
/// refused, nothing noted as not applied.
#[test]
fn empty_install_time_sections_are_none() {
    let old = base();
    for empty in [json!({}), json!([]), serde_json::Value::Null] {
        let new = changed(|m| m.spec.config.ignition_kernel_arguments = Some(empty.clone()));
        assert_eq!(check(&old, &new, &diff(&old, &new)), Ok(()), "{empty}");
        let mut alone = MachineConfig::default();
        alone.spec.config.ignition_kernel_arguments = Some(empty.clone());
        assert_eq!(not_applied(&alone), Vec::<String>::new(), "{empty}");
    }
    let new = changed(|m| {
        m.spec.config.ignition_kernel_arguments = Some(json!({"shouldExist": ["quiet"]}))
    });
    assert!(
        refusal(&new).is_some_and(|r| r.contains("kernelArguments (the Ignition section) changed")),
        "{:?}",
        refusal(&new)
    );
}

const MASKED_WITH_CONTENTS: &str = "systemd.units: masked.service: mask: true with contents; a masked unit is a link to /dev/null, so the contents would never be written";

/// Items no config may hold whatever the node runs (what `validate`, `plan` and `apply` refuse
/// as bad input), each named: a file in the daemon's state directory (not a sibling of it), a
/// masked unit with contents (not one with empty contents).
#[test]
fn invalid_items_name_each_item() {
    assert_eq!(invalid_items(&base()), Vec::<String>::new());
    let bad = changed(|m| {
        m.spec
            .config
            .files
            .push(file("/etc/machine-config-daemon/currentconfig"));
        m.spec
            .config
            .files
            .push(file("/etc/machine-config-daemon.d/x"));
        m.spec.config.units.push(Unit {
            name: "masked.service".into(),
            mask: Some(true),
            contents: Some("[Unit]\n".into()),
            ..Unit::default()
        });
        m.spec.config.units.push(Unit {
            name: "quiet.service".into(),
            mask: Some(true),
            contents: Some(String::new()),
            ..Unit::default()
        });
    });
    assert_eq!(
        invalid_items(&bad),
        [
            "storage.files: /etc/machine-config-daemon/currentconfig is in the daemon's own state directory /etc/machine-config-daemon, which a config may not write",
            MASKED_WITH_CONTENTS,
        ]
    );
    assert!(
        config_problems(&bad)
            .iter()
            .any(|p| p == MASKED_WITH_CONTENTS),
        "{:?}",
        config_problems(&bad)
    );
}

/// Unit and dropin names that are not file names are refused, each named; names that only
/// look odd are file names.
#[test]
fn unit_and_dropin_names_must_be_file_names() {
    for bad in ["", "a/b.service", ".", ".."] {
        let m = changed(|m| {
            m.spec.config.units.push(Unit {
                name: bad.into(),
                ..Unit::default()
            })
        });
        assert_eq!(
            config_problems(&m),
            [format!(
                "systemd.units: {bad:?} is not a valid unit file name"
            )],
            "unit {bad:?}"
        );
        let m = changed(|m| {
            m.spec.config.units.push(Unit {
                name: "a.service".into(),
                dropins: vec![Dropin {
                    name: bad.into(),
                    contents: Some("[Service]\n".into()),
                }],
                ..Unit::default()
            })
        });
        assert_eq!(
            config_problems(&m),
            [format!(
                "systemd.units: a.service: {bad:?} is not a valid dropin file name"
            )],
            "dropin {bad:?}"
        );
    }
    for good in ["...", ".hidden.service", "10-x.conf"] {
        let m = changed(|m| {
            m.spec.config.units.push(Unit {
                name: good.into(),
                dropins: vec![Dropin {
                    name: good.into(),
                    contents: Some("[Service]\n".into()),
                }],
                ..Unit::default()
            })
        });
        assert_eq!(config_problems(&m), Vec::<String>::new(), "{good:?}");
    }
}

/// What a config asks for that belongs to provisioning, one line per field: users other than
/// `core`, and `core`'s fields other than its ssh keys and password.
#[test]
fn not_applied_names_each_install_time_field() {
    let mut m = MachineConfig::default();
    assert_eq!(not_applied(&m), Vec::<String>::new());
    let mut core_with_uid = core(&["k1"]);
    core_with_uid.other_fields.insert("uid".into(), json!(1000));
    m.spec.config.users = vec![
        core(&["k1"]),
        User {
            name: "alice".into(),
            ..User::default()
        },
        core_with_uid,
    ];
    assert_eq!(
        not_applied(&m),
        [
            "passwd.users[alice]: install-time only, not applied by machine-config-daemon",
            "passwd.users[core].uid: install-time only, not applied by machine-config-daemon",
        ]
    );
}
