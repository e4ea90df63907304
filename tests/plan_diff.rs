//! The comparison of two MachineConfigs (what counts as a change, sorting, scale).

use machine_config_daemon::model::{Dropin, File, MachineConfig, Owner, Unit, User};
use machine_config_daemon::plan::ChangeKind;
use machine_config_daemon::plan::diff::{Diff, FileChange, OsField};

/// The diff, checked to be the same when the old config is read thin (its files' contents as
/// digests, as an update reads the stored config), and when both are.
fn diff(old: &MachineConfig, new: &MachineConfig) -> Diff {
    let d = machine_config_daemon::plan::diff::diff(old, new);
    let mut thin_old = old.clone();
    thin_old.thin_contents(&[]);
    assert!(old.spec.config.files.is_empty() || thin_old.is_thin());
    assert_eq!(
        machine_config_daemon::plan::diff::diff(&thin_old, new),
        d,
        "the diff from the thin old config"
    );
    let mut thin_new = new.clone();
    thin_new.thin_contents(&[]);
    assert_eq!(
        machine_config_daemon::plan::diff::diff(&thin_old, &thin_new),
        d,
        "the diff of two thin configs"
    );
    d
}

fn file(path: &str, contents: &str) -> File {
    File {
        path: path.into(),
        contents: Some(contents.as_bytes().to_vec()),
        overwrite: Some(true),
        ..File::default()
    }
}

fn with_files(files: Vec<File>) -> MachineConfig {
    let mut m = MachineConfig::default();
    m.spec.config.files = files;
    m
}

fn with_units(units: Vec<Unit>) -> MachineConfig {
    let mut m = MachineConfig::default();
    m.spec.config.units = units;
    m
}

#[test]
fn file_fields_that_make_a_change() {
    let base = file("/etc/a", "x");
    let cases: Vec<(&str, File, bool)> = vec![
        (
            "contents",
            File {
                contents: Some(b"y".to_vec()),
                ..base.clone()
            },
            true,
        ),
        (
            "mode",
            File {
                mode: Some(0o600),
                ..base.clone()
            },
            true,
        ),
        (
            "user",
            File {
                user: Some(Owner::Name("core".into())),
                ..base.clone()
            },
            true,
        ),
        (
            "group",
            File {
                group: Some(Owner::Id(1000)),
                ..base.clone()
            },
            true,
        ),
        (
            "overwrite",
            File {
                overwrite: Some(false),
                ..base.clone()
            },
            true,
        ),
        (
            "default mode spelled out",
            File {
                mode: Some(0o644),
                ..base.clone()
            },
            false,
        ),
        ("identical", base.clone(), false),
    ];
    for (case, new, changed) in cases {
        let d = diff(&with_files(vec![base.clone()]), &with_files(vec![new]));
        let expected = if changed {
            vec![FileChange {
                path: "/etc/a".into(),
                change: ChangeKind::Changed,
            }]
        } else {
            vec![]
        };
        assert_eq!(d.files, expected, "{case}");
    }
    // Unset contents and empty contents are the same empty file.
    let empty = File {
        contents: None,
        ..base.clone()
    };
    let d = diff(
        &with_files(vec![empty]),
        &with_files(vec![File {
            contents: Some(vec![]),
            ..base
        }]),
    );
    assert!(d.files.is_empty());
}

#[test]
fn files_added_changed_removed_sorted_by_path() {
    let old = with_files(vec![
        file("/etc/z", "1"),
        file("/etc/b", "1"),
        file("/etc/m", "1"),
    ]);
    let new = with_files(vec![
        file("/etc/a", "1"),
        file("/etc/m", "2"),
        file("/etc/z", "1"),
    ]);
    let d = diff(&old, &new);
    let got: Vec<(&str, ChangeKind)> = d
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.change))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/etc/a", ChangeKind::Added),
            ("/etc/b", ChangeKind::Removed),
            ("/etc/m", ChangeKind::Changed)
        ]
    );
}

#[test]
fn the_last_entry_of_a_duplicated_path_wins() {
    let old = with_files(vec![file("/etc/a", "1")]);
    let new = with_files(vec![file("/etc/a", "2"), file("/etc/a", "1")]);
    assert!(diff(&old, &new).files.is_empty());
}

#[test]
fn unit_fields_that_make_a_change() {
    let dropin = |name: &str, c: Option<&str>| Dropin {
        name: name.into(),
        contents: c.map(str::to_string),
    };
    let base = Unit {
        name: "a.service".into(),
        contents: Some("[Service]".into()),
        enabled: Some(true),
        mask: None,
        dropins: vec![
            dropin("10-a.conf", Some("x")),
            dropin("20-b.conf", Some("y")),
        ],
    };
    // (case, new unit, changed, definition changed)
    let cases: Vec<(&str, Unit, bool, bool)> = vec![
        (
            "contents",
            Unit {
                contents: Some("[Service]\nX=1".into()),
                ..base.clone()
            },
            true,
            true,
        ),
        (
            "enabled",
            Unit {
                enabled: Some(false),
                ..base.clone()
            },
            true,
            false,
        ),
        (
            "mask",
            Unit {
                mask: Some(true),
                ..base.clone()
            },
            true,
            false,
        ),
        (
            "dropin contents",
            Unit {
                dropins: vec![
                    dropin("10-a.conf", Some("z")),
                    dropin("20-b.conf", Some("y")),
                ],
                ..base.clone()
            },
            true,
            true,
        ),
        (
            "dropin removed",
            Unit {
                dropins: vec![dropin("10-a.conf", Some("x"))],
                ..base.clone()
            },
            true,
            true,
        ),
        (
            "dropins reordered",
            Unit {
                dropins: vec![
                    dropin("20-b.conf", Some("y")),
                    dropin("10-a.conf", Some("x")),
                ],
                ..base.clone()
            },
            false,
            false,
        ),
        (
            "empty dropin == absent",
            Unit {
                dropins: vec![
                    dropin("10-a.conf", Some("x")),
                    dropin("20-b.conf", Some("y")),
                    dropin("30-c.conf", Some("")),
                ],
                ..base.clone()
            },
            false,
            false,
        ),
    ];
    for (case, new, changed, redefined) in cases {
        let d = diff(&with_units(vec![base.clone()]), &with_units(vec![new]));
        assert_eq!(d.units.len(), usize::from(changed), "{case}");
        if changed {
            assert_eq!(d.units[0].change, ChangeKind::Changed, "{case}");
            assert_eq!(d.units[0].definition_changed, redefined, "{case}");
        }
    }
}

/// A unit that comes or goes redefines units when it has contents or dropins, and not when it
/// only says whether it is enabled.
#[test]
fn added_and_removed_units_redefine_by_their_definition() {
    let dropin = |name: &str, c: Option<&str>| Dropin {
        name: name.into(),
        contents: c.map(str::to_string),
    };
    let unit = |contents: Option<&str>, dropins: Vec<Dropin>| Unit {
        name: "b.service".into(),
        contents: contents.map(str::to_string),
        enabled: Some(true),
        mask: None,
        dropins,
    };
    let cases: Vec<(&str, Unit, bool)> = vec![
        ("contents only", unit(Some("[Service]"), vec![]), true),
        (
            "dropins only",
            unit(None, vec![dropin("10-a.conf", Some("x"))]),
            true,
        ),
        (
            "both",
            unit(Some("[Service]"), vec![dropin("10-a.conf", Some("x"))]),
            true,
        ),
        ("enablement only", unit(None, vec![]), false),
    ];
    for (case, u, redefined) in cases {
        let added = diff(&with_units(vec![]), &with_units(vec![u.clone()]));
        assert_eq!(added.units.len(), 1, "{case}");
        assert_eq!(added.units[0].change, ChangeKind::Added, "{case}");
        assert_eq!(
            added.units[0].definition_changed, redefined,
            "added, {case}"
        );
        let removed = diff(&with_units(vec![u]), &with_units(vec![]));
        assert_eq!(removed.units[0].change, ChangeKind::Removed, "{case}");
        assert_eq!(
            removed.units[0].definition_changed, redefined,
            "removed, {case}"
        );
    }
}

#[test]
fn core_ssh_keys_and_password() {
    let user = |name: &str, keys: &[&str], hash: Option<&str>| User {
        name: name.into(),
        ssh_authorized_keys: keys.iter().map(|k| k.to_string()).collect(),
        password_hash: hash.map(str::to_string),
        ..User::default()
    };
    let cfg = |users: Vec<User>| {
        let mut m = MachineConfig::default();
        m.spec.config.users = users;
        m
    };
    let old = cfg(vec![user("core", &["k1"], None)]);
    // (case, new config, expected (change, keys changed, password changed))
    type Expected = Option<(ChangeKind, bool, bool)>;
    let cases: Vec<(&str, MachineConfig, Expected)> = vec![
        ("same", cfg(vec![user("core", &["k1"], None)]), None),
        (
            "key added",
            cfg(vec![user("core", &["k1", "k2"], None)]),
            Some((ChangeKind::Changed, true, false)),
        ),
        (
            "password",
            cfg(vec![user("core", &["k1"], Some("$6$"))]),
            Some((ChangeKind::Changed, false, true)),
        ),
        (
            "core removed",
            cfg(vec![]),
            Some((ChangeKind::Removed, true, false)),
        ),
        (
            "other user only",
            cfg(vec![user("core", &["k1"], None), user("bob", &["x"], None)]),
            None,
        ),
    ];
    for (case, new, expected) in cases {
        let got = diff(&old, &new)
            .sshkey
            .map(|s| (s.change, s.keys_changed, s.password_changed));
        assert_eq!(got, expected, "{case}");
    }
    let added = diff(&cfg(vec![]), &old).sshkey.unwrap();
    assert_eq!(added.change, ChangeKind::Added);
}

#[test]
fn os_fields() {
    let mut old = MachineConfig::default();
    old.spec.kernel_arguments = vec!["a".into(), "b".into()];
    old.spec.kernel_type = None;
    let mut new = old.clone();
    new.spec.kernel_arguments = vec!["b".into(), "a".into()];
    new.spec.kernel_type = Some("64k-pages".into());
    new.spec.fips = true;
    new.spec.os_image_url =
        "quay.io/x@sha256:2222222222222222222222222222222222222222222222222222222222222222".into();
    new.spec.extensions = vec!["usbguard".into()];
    let d = diff(&old, &new);
    let fields: Vec<OsField> = d.os.iter().map(|o| o.field).collect();
    assert_eq!(
        fields,
        vec![
            OsField::KernelArguments,
            OsField::KernelType,
            OsField::Extensions,
            OsField::Fips,
            OsField::OsImageUrl
        ]
    );
    assert_eq!(d.os[1].old, serde_json::json!("default"));
    assert_eq!(d.os[1].new, serde_json::json!("64k-pages"));
}

/// 10,000 files, listed in opposite orders: every one is a change, sorted by path. (How fast:
/// `cargo bench --bench plan`.)
#[test]
fn ten_thousand_files_diff_sorted() {
    let n = 10_000;
    let old = with_files(
        (0..n)
            .map(|i| file(&format!("/etc/d{}/f{i}", i % 97), "old"))
            .collect(),
    );
    let new = with_files(
        (0..n)
            .rev()
            .map(|i| file(&format!("/etc/d{}/f{i}", i % 97), "new"))
            .collect(),
    );
    let d = diff(&old, &new);
    assert_eq!(d.files.len(), n);
    assert!(d.files.windows(2).all(|w| w[0].path < w[1].path));
}

/// `is_empty`: nothing differs between a config and itself; any one change makes it non-empty.
#[test]
fn a_diff_is_empty_only_without_changes() {
    let a = with_files(vec![file("/etc/a", "one")]);
    assert!(diff(&a, &a).is_empty());
    assert!(diff(&MachineConfig::default(), &MachineConfig::default()).is_empty());
    let b = with_files(vec![file("/etc/a", "two")]);
    assert!(!diff(&a, &b).is_empty());
}

/// Each OS field is named as in the MachineConfig spec (plans and refusals show these names).
#[test]
fn os_fields_are_named_as_in_the_spec() {
    let names: Vec<&str> = [
        OsField::KernelArguments,
        OsField::KernelType,
        OsField::Extensions,
        OsField::Fips,
        OsField::OsImageUrl,
    ]
    .into_iter()
    .map(OsField::as_str)
    .collect();
    assert_eq!(
        names,
        [
            "kernelArguments",
            "kernelType",
            "extensions",
            "fips",
            "osImageURL"
        ]
    );
}
