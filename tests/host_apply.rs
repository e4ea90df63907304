//! Applying configs to tempdir roots: files, modes, owners, backups, removals, symlink attacks,
//! units, ssh keys and password.

mod host_common;
use host_common::*;
use machine_config_daemon::host::{self, ApplyOptions, HostError, Root};
use machine_config_daemon::model::{Dropin, MachineConfig, Owner, Unit};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn apply(root: &Path, m: &MachineConfig) -> Result<host::ApplyReport, HostError> {
    host::update(&Root::open(root).unwrap(), m, &ApplyOptions::default())
}

fn force(root: &Path, m: &MachineConfig) {
    let o = ApplyOptions {
        force: true,
        ..ApplyOptions::default()
    };
    host::update(&Root::open(root).unwrap(), m, &o).unwrap();
}

#[test]
fn writes_files_with_modes_and_owners() {
    let t = make_root();
    let r = t.path();
    let m = mc(
        "a",
        vec![
            file("/etc/chrony.conf", "pool x\n", 0o644),
            file("/etc/deep/new/dir/script.sh", "#!/bin/sh\n", 0o755),
            owned(
                "/etc/named.conf",
                "n\n",
                Owner::Name("chrony".into()),
                Owner::Name("wheel".into()),
            ),
            owned("/var/lib/ids", "i\n", Owner::Id(4242), Owner::Id(4343)),
        ],
    );
    apply(r, &m).unwrap();
    assert_eq!(read(r, "/etc/chrony.conf"), "pool x\n");
    assert_eq!(mode_of(r, "/etc/chrony.conf"), 0o100644);
    assert_eq!(mode_of(r, "/etc/deep/new/dir/script.sh"), 0o100755);
    assert_eq!(mode_of(r, "/etc/deep/new/dir"), 0o40755);
    let md = std::fs::metadata(r.join("etc/named.conf")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (994, 10, 0o640));
    let md = std::fs::metadata(r.join("var/lib/ids")).unwrap();
    assert_eq!((md.uid(), md.gid()), (4242, 4343));
    // New paths got stamps, and the current config is stored.
    assert!(exists(
        r,
        "/etc/machine-config-daemon/noorig/etc/chrony.conf.mcdnoorig"
    ));
    let cur = host::state::read_current(&Root::open(r).unwrap())
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(cur.name, "a");
    assert_eq!(cur.spec.config.files, m.spec.config.files);
    // No journal or staging left.
    assert!(!exists(r, "/etc/machine-config-daemon/journal"));
    assert!(!exists(r, "/etc/machine-config-daemon/staging"));
}

#[test]
fn unknown_owner_name_is_an_error_naming_the_file() {
    let t = make_root();
    let m = mc(
        "a",
        vec![owned(
            "/etc/x",
            "x",
            Owner::Name("nobody-here".into()),
            Owner::Id(0),
        )],
    );
    let e = apply(t.path(), &m).unwrap_err().to_string();
    assert_eq!(
        e,
        "/etc/x: unknown user \"nobody-here\" (not in the node's /etc/passwd)"
    );
    let m = mc(
        "a",
        vec![owned(
            "/etc/x",
            "x",
            Owner::Id(0),
            Owner::Name("nogroup".into()),
        )],
    );
    let e = apply(t.path(), &m).unwrap_err().to_string();
    assert!(e.starts_with("/etc/x: unknown group \"nogroup\""), "{e}");
    assert!(!exists(t.path(), "/etc/x"));
}

#[test]
fn backs_up_os_files_and_restores_them_on_removal() {
    let t = make_root();
    let r = t.path();
    std::fs::write(r.join("etc/chrony.conf"), "os version\n").unwrap();
    let before = snapshot(r);
    apply(
        r,
        &mc(
            "a",
            vec![
                file("/etc/chrony.conf", "ours 1\n", 0o600),
                file("/etc/new.conf", "n\n", 0o644),
            ],
        ),
    )
    .unwrap();
    let orig = "/etc/machine-config-daemon/orig/etc/chrony.conf.mcdorig";
    assert_eq!(read(r, orig), "os version\n");
    assert_eq!(mode_of(r, orig), 0o100644);
    // A second change never overwrites the backup.
    apply(
        r,
        &mc(
            "b",
            vec![
                file("/etc/chrony.conf", "ours 2\n", 0o644),
                file("/etc/new.conf", "n\n", 0o644),
            ],
        ),
    )
    .unwrap();
    assert_eq!(read(r, orig), "os version\n");
    assert_eq!(read(r, "/etc/chrony.conf"), "ours 2\n");
    // Removal: the backup is restored and deleted; the stamped file and its stamp are deleted.
    apply(r, &mc("c", vec![])).unwrap();
    assert_eq!(read(r, "/etc/chrony.conf"), "os version\n");
    assert!(!exists(r, orig));
    assert!(!exists(r, "/etc/new.conf"));
    assert!(!exists(
        r,
        "/etc/machine-config-daemon/noorig/etc/new.conf.mcdnoorig"
    ));
    let mut after = snapshot(r);
    // Only the state dir (and its now-empty backup trees) and currentconfig remain as additions.
    after.retain(|k, _| !k.starts_with("etc/machine-config-daemon"));
    assert_eq!(before, after, "{}", diff(&before, &after));
}

#[test]
fn never_deletes_cluster_ca_bundles() {
    let t = make_root();
    let r = t.path();
    let ca = "/etc/kubernetes/kubelet-ca.crt";
    apply(r, &mc("a", vec![file(ca, "CA\n", 0o644)])).unwrap();
    apply(r, &mc("b", vec![])).unwrap();
    assert_eq!(read(r, ca), "CA\n");
    let rep = apply(r, &mc("c", vec![file("/etc/other", "o", 0o644)])).unwrap();
    assert!(rep.kept.is_empty());
}

#[test]
fn rewrites_only_changed_files_unless_forced() {
    let t = make_root();
    let r = t.path();
    let a = mc(
        "a",
        vec![file("/etc/one", "1", 0o644), file("/etc/two", "2", 0o644)],
    );
    apply(r, &a).unwrap();
    let ino = |p: &str| std::fs::symlink_metadata(r.join(p)).unwrap().ino();
    let (i1, i2) = (ino("etc/one"), ino("etc/two"));
    let b = mc(
        "b",
        vec![file("/etc/one", "1", 0o644), file("/etc/two", "2b", 0o644)],
    );
    let rep = apply(r, &b).unwrap();
    assert_eq!(
        rep.steps,
        vec![
            "write /etc/two",
            "store /etc/machine-config-daemon/currentconfig"
        ]
    );
    assert_eq!(ino("etc/one"), i1);
    assert_ne!(ino("etc/two"), i2);
    // Mode-only and owner-only changes are changes too.
    let c = mc(
        "c",
        vec![
            file("/etc/one", "1", 0o600),
            owned("/etc/two", "2b", Owner::Id(5), Owner::Id(0)),
        ],
    );
    let rep = apply(r, &c).unwrap();
    assert_eq!(rep.steps.len(), 3, "{:?}", rep.steps);
    // Same config again: nothing to do.
    assert!(apply(r, &c).unwrap().steps.is_empty());
    // Force rewrites everything.
    let i1 = ino("etc/one");
    force(r, &c);
    assert_ne!(ino("etc/one"), i1);
}

#[test]
fn reordered_added_and_removed_paths_are_matched_by_path() {
    let t = make_root();
    let r = t.path();
    let f = |p: &str, c: &str| file(p, c, 0o644);
    let a = mc(
        "a",
        vec![
            f("/etc/p1", "1"),
            f("/etc/p2", "2"),
            f("/etc/p3", "3"),
            f("/etc/p4", "4"),
            f("/etc/p5", "5"),
        ],
    );
    apply(r, &a).unwrap();
    let ino = |p: &str| std::fs::symlink_metadata(r.join(p)).unwrap().ino();
    let before: Vec<u64> = ["etc/p1", "etc/p2", "etc/p4", "etc/p5"]
        .iter()
        .map(|p| ino(p))
        .collect();
    // p3 removed, p6 added in the middle, p5 moved to the front, p4 changed, the rest as it was.
    let b = mc(
        "b",
        vec![
            f("/etc/p5", "5"),
            f("/etc/p1", "1"),
            f("/etc/p6", "6"),
            f("/etc/p2", "2"),
            f("/etc/p4", "4b"),
        ],
    );
    let rep = apply(r, &b).unwrap();
    assert_eq!(
        rep.steps,
        vec![
            "write /etc/p4",
            "stamp /etc/machine-config-daemon/noorig/etc/p6.mcdnoorig",
            "write /etc/p6",
            "remove /etc/p3 and /etc/machine-config-daemon/noorig/etc/p3.mcdnoorig",
            "store /etc/machine-config-daemon/currentconfig"
        ]
    );
    let after: Vec<u64> = ["etc/p1", "etc/p2", "etc/p4", "etc/p5"]
        .iter()
        .map(|p| ino(p))
        .collect();
    assert_eq!(
        (after[0], after[1], after[3]),
        (before[0], before[1], before[3])
    );
    assert_ne!(after[2], before[2]);
    assert_eq!(std::fs::read_to_string(r.join("etc/p4")).unwrap(), "4b");
    assert!(!r.join("etc/p3").exists());
    // And back: every path found again, whatever the order.
    let rep = apply(r, &a).unwrap();
    assert_eq!(
        rep.steps,
        vec![
            "stamp /etc/machine-config-daemon/noorig/etc/p3.mcdnoorig",
            "write /etc/p3",
            "write /etc/p4",
            "remove /etc/p6 and /etc/machine-config-daemon/noorig/etc/p6.mcdnoorig",
            "store /etc/machine-config-daemon/currentconfig"
        ]
    );
    for (p, c) in [
        ("p1", "1"),
        ("p2", "2"),
        ("p3", "3"),
        ("p4", "4"),
        ("p5", "5"),
    ] {
        assert_eq!(std::fs::read_to_string(r.join("etc").join(p)).unwrap(), c);
    }
    assert!(!r.join("etc/p6").exists());
}

fn stored_name(root: &Path) -> String {
    host::state::read_current(&Root::open(root).unwrap())
        .unwrap()
        .unwrap()
        .0
        .name
}

#[test]
fn the_stored_config_is_written_over_the_previous_one_kept_as_scratch() {
    let t = make_root();
    let r = t.path();
    let ino = |p: &str| std::fs::symlink_metadata(r.join(p)).unwrap().ino();
    let cc = "etc/machine-config-daemon/currentconfig";
    let big = "x".repeat(64 * 1024);
    apply(r, &mc("a", vec![file("/etc/f", &big, 0o644)])).unwrap();
    assert!(
        !r.join(SCRATCH).exists(),
        "nothing to keep after a first apply"
    );
    let ino_a = ino(cc);
    apply(r, &mc("b", vec![file("/etc/f", "b", 0o644)])).unwrap();
    assert_eq!(stored_name(r), "b");
    // a's stored config is the scratch now, whole.
    assert_eq!(ino(SCRATCH), ino_a);
    let kept = std::fs::read(r.join(SCRATCH)).unwrap();
    assert_eq!(host::state::decode(&kept).unwrap().name, "a");
    let ino_b = ino(cc);
    // c is written into a's old file, cut to its own (much shorter) length.
    apply(r, &mc("c", vec![file("/etc/f", "c", 0o644)])).unwrap();
    assert_eq!(ino(cc), ino_a);
    assert_eq!(ino(SCRATCH), ino_b);
    assert_eq!(stored_name(r), "c");
    let md = std::fs::metadata(r.join(cc)).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o644, 0, 0));
    // A change under the same name is stored at its step, through the scratch file as well.
    apply(r, &mc("c", vec![file("/etc/f", "c2", 0o644)])).unwrap();
    assert_eq!(ino(cc), ino_b);
    let (stored, _) = host::state::read_current(&Root::open(r).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.spec.config.files[0].contents.as_deref(),
        Some(&b"c2"[..])
    );
    assert_eq!(std::fs::read_to_string(r.join("etc/f")).unwrap(), "c2");
}

#[test]
fn a_scratch_file_with_other_links_or_a_symlink_is_replaced_not_written_through() {
    let t = make_root();
    let r = t.path();
    apply(r, &mc("a", vec![file("/etc/f", "a", 0o644)])).unwrap();
    apply(r, &mc("b", vec![file("/etc/f", "b", 0o644)])).unwrap();
    std::fs::write(r.join("etc/precious"), "precious\n").unwrap();
    std::fs::remove_file(r.join(SCRATCH)).unwrap();
    std::fs::hard_link(r.join("etc/precious"), r.join(SCRATCH)).unwrap();
    apply(r, &mc("c", vec![file("/etc/f", "c", 0o644)])).unwrap();
    assert_eq!(stored_name(r), "c");
    assert_eq!(
        std::fs::read_to_string(r.join("etc/precious")).unwrap(),
        "precious\n"
    );
    std::fs::remove_file(r.join(SCRATCH)).unwrap();
    std::os::unix::fs::symlink("/etc/precious", r.join(SCRATCH)).unwrap();
    apply(r, &mc("d", vec![file("/etc/f", "d", 0o644)])).unwrap();
    assert_eq!(stored_name(r), "d");
    assert_eq!(
        std::fs::read_to_string(r.join("etc/precious")).unwrap(),
        "precious\n"
    );
    assert!(
        std::fs::symlink_metadata(r.join(SCRATCH))
            .unwrap()
            .is_file()
    );
}

#[test]
fn replaces_a_symlink_at_a_managed_path_and_keeps_it_as_backup() {
    let t = make_root();
    let r = t.path();
    std::fs::write(r.join("etc/victim"), "secret\n").unwrap();
    std::os::unix::fs::symlink("/etc/victim", r.join("etc/managed")).unwrap();
    apply(r, &mc("a", vec![file("/etc/managed", "mine\n", 0o644)])).unwrap();
    assert_eq!(read(r, "/etc/victim"), "secret\n");
    assert_eq!(mode_of(r, "/etc/managed") & 0o170000, 0o100000);
    let b = r.join("etc/machine-config-daemon/orig/etc/managed.mcdorig");
    assert_eq!(std::fs::read_link(&b).unwrap(), Path::new("/etc/victim"));
    apply(r, &mc("b", vec![])).unwrap();
    assert_eq!(
        std::fs::read_link(r.join("etc/managed")).unwrap(),
        Path::new("/etc/victim")
    );
}

#[test]
fn refuses_symlinked_parents_leading_out() {
    let t = make_root();
    let r = t.path();
    std::fs::create_dir_all(r.join("usr/lib/foo")).unwrap();
    std::os::unix::fs::symlink("/usr/lib/foo", r.join("etc/foo")).unwrap();
    let before = snapshot(r);
    let m = mc(
        "a",
        vec![
            file("/etc/ok", "x", 0o644),
            file("/etc/foo/bar", "x", 0o644),
        ],
    );
    let e = apply(r, &m).unwrap_err().to_string();
    assert_eq!(
        e,
        "/etc/foo/bar: /etc/foo is a symlink to /usr/lib/foo, outside /etc and /var"
    );
    assert_eq!(before, snapshot(r), "nothing may be written");
    // Relative links climbing out of the root are clamped at the root and refused too.
    std::fs::remove_file(r.join("etc/foo")).unwrap();
    std::os::unix::fs::symlink("../../../../../../tmp", r.join("etc/foo")).unwrap();
    let e = apply(r, &m).unwrap_err().to_string();
    assert!(
        e.contains("/etc/foo is a symlink to ../../../../../../tmp, outside /etc and /var"),
        "{e}"
    );
    // A link that stays inside /etc and /var is followed.
    std::fs::remove_file(r.join("etc/foo")).unwrap();
    std::fs::create_dir_all(r.join("var/foo")).unwrap();
    std::os::unix::fs::symlink("../var/foo", r.join("etc/foo")).unwrap();
    apply(r, &m).unwrap();
    assert_eq!(read(r, "/var/foo/bar"), "x");
}

#[test]
fn refuses_paths_outside_etc_and_var() {
    let t = make_root();
    let r = t.path();
    let before = snapshot(r);
    for (p, want) in [
        (
            "/usr/bin/evil",
            "/usr/bin/evil: only paths under /etc and /var may be written",
        ),
        (
            "/etc/../usr/bin/evil",
            "/etc/../usr/bin/evil: path is not clean (empty, `.` or `..` component)",
        ),
        (
            "/etc//x",
            "/etc//x: path is not clean (empty, `.` or `..` component)",
        ),
        ("etc/x", "etc/x: path is not absolute"),
        (
            "/etc/machine-config-daemon/currentconfig",
            "/etc/machine-config-daemon/currentconfig: reserved for the daemon's own state",
        ),
        (
            "/etc/machine-config-daemon/.currentconfig.mcdtmp",
            "/etc/machine-config-daemon/.currentconfig.mcdtmp: reserved for the daemon's own state",
        ),
        ("/opt/tool", "/opt/tool: /opt is outside /etc and /var"),
    ] {
        if p == "/opt/tool" {
            std::fs::create_dir_all(r.join("opt")).unwrap();
        }
        let m = mc(
            "a",
            vec![file("/etc/fine", "x", 0o644), file(p, "x", 0o644)],
        );
        assert_eq!(apply(r, &m).unwrap_err().to_string(), want);
        std::fs::remove_dir_all(r.join("opt")).ok();
    }
    assert_eq!(before, snapshot(r));
    // The documented exception: /opt and /usr/local as links into /var.
    std::fs::create_dir_all(r.join("var/opt")).unwrap();
    std::fs::create_dir_all(r.join("var/usrlocal")).unwrap();
    std::fs::create_dir_all(r.join("usr")).unwrap();
    std::os::unix::fs::symlink("var/opt", r.join("opt")).unwrap();
    std::os::unix::fs::symlink("../var/usrlocal", r.join("usr/local")).unwrap();
    let m = mc(
        "a",
        vec![
            file("/opt/tool", "t", 0o755),
            file("/usr/local/bin/load.sh", "l", 0o755),
        ],
    );
    apply(r, &m).unwrap();
    assert_eq!(read(r, "/var/opt/tool"), "t");
    assert_eq!(read(r, "/var/usrlocal/bin/load.sh"), "l");
}

#[test]
fn clean_path_check_agrees_with_the_component_split() {
    use machine_config_daemon::host::root::{check_clean, components};
    for p in [
        "/etc/x",
        "/etc/x/",
        "/etc//x",
        "//etc",
        "/",
        "",
        "etc/x",
        "/etc/.",
        "/etc/..",
        "/./etc",
        "/../etc",
        "/etc/.x",
        "/etc/..x/y",
        "/etc/x..",
        "/etc/x\0y",
        "/\0",
        "/etc/a/b/c.d/e",
    ] {
        let a = check_clean(p).map_err(|e| e.to_string());
        let b = components(p).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(a, b, "{p:?}");
    }
}

#[test]
fn units_dropins_masks() {
    let t = make_root();
    let r = t.path();
    std::fs::create_dir_all(r.join("etc/systemd/system/crio.service.d")).unwrap();
    std::fs::write(
        r.join("etc/systemd/system/crio.service.d/10-os.conf"),
        "[Service]\n",
    )
    .unwrap();
    let unit =
        |name: &str, contents: Option<&str>, enabled: Option<bool>, mask: Option<bool>| Unit {
            name: name.into(),
            contents: contents.map(str::to_string),
            enabled,
            mask,
            dropins: vec![],
        };
    let mut crio = unit("crio.service", None, None, None);
    crio.dropins = vec![
        Dropin {
            name: "10-os.conf".into(),
            contents: Some(String::new()),
        },
        Dropin {
            name: "20-ours.conf".into(),
            contents: Some("[Service]\nX=1\n".into()),
        },
    ];
    let a = with_units(
        mc("a", vec![]),
        vec![
            unit("hello.service", Some("[Unit]\n"), Some(true), None),
            unit("bad.service", None, None, Some(true)),
            crio,
        ],
    );
    let rep = apply(r, &a).unwrap();
    assert_eq!(read(r, "/etc/systemd/system/hello.service"), "[Unit]\n");
    assert_eq!(mode_of(r, "/etc/systemd/system/hello.service"), 0o100644);
    assert_eq!(
        std::fs::read_link(r.join("etc/systemd/system/bad.service")).unwrap(),
        Path::new("/dev/null")
    );
    assert!(!exists(r, "/etc/systemd/system/crio.service.d/10-os.conf"));
    assert_eq!(
        read(r, "/etc/systemd/system/crio.service.d/20-ours.conf"),
        "[Service]\nX=1\n"
    );
    let ops: Vec<String> = rep
        .unit_ops
        .after_files
        .iter()
        .map(|o| o.to_string())
        .collect();
    assert_eq!(ops, vec!["preset crio.service", "enable hello.service"]);
    // Unmask, drop hello.service: the removed unit is preset first, the OS dropin comes back.
    let b = with_units(
        mc("b", vec![]),
        vec![unit("bad.service", None, None, Some(false))],
    );
    let rep = apply(r, &b).unwrap();
    assert!(!exists(r, "/etc/systemd/system/bad.service"));
    assert!(!exists(r, "/etc/systemd/system/hello.service"));
    assert_eq!(
        read(r, "/etc/systemd/system/crio.service.d/10-os.conf"),
        "[Service]\n"
    );
    assert!(!exists(
        r,
        "/etc/systemd/system/crio.service.d/20-ours.conf"
    ));
    let before: Vec<String> = rep
        .unit_ops
        .before_files
        .iter()
        .map(|o| o.to_string())
        .collect();
    assert_eq!(before, vec!["preset crio.service", "preset hello.service"]);
}

#[test]
fn core_ssh_keys_and_password() {
    let t = make_root();
    let r = t.path();
    let a = with_core(
        mc("a", vec![]),
        &["ssh-ed25519 AAAA one", "ssh-rsa BBBB two"],
        Some("$6$salt$hash"),
    );
    apply(r, &a).unwrap();
    let p = "/home/core/.ssh/authorized_keys.d/ignition";
    assert_eq!(read(r, p), "ssh-ed25519 AAAA one\nssh-rsa BBBB two\n");
    let md = std::fs::metadata(r.join(p.trim_start_matches('/'))).unwrap();
    assert_eq!((md.mode(), md.uid(), md.gid()), (0o100600, 1000, 1000));
    for d in ["home/core/.ssh", "home/core/.ssh/authorized_keys.d"] {
        let md = std::fs::metadata(r.join(d)).unwrap();
        assert_eq!((md.mode() & 0o7777, md.uid()), (0o700, 1000), "{d}");
    }
    assert_eq!(
        read(r, "/etc/shadow"),
        "root:*:19000:0:99999:7:::\ncore:$6$salt$hash:19000:0:99999:7:::\n"
    );
    assert_eq!(mode_of(r, "/etc/shadow"), 0o100600);
    // Keys removed: the file goes (it was stamped), the hash becomes `*`.
    apply(r, &mc("b", vec![])).unwrap();
    assert!(!exists(r, p));
    assert!(read(r, "/etc/shadow").contains("\ncore:*:19000"));
}

#[test]
fn ssh_keys_never_written_through_a_symlink() {
    let t = make_root();
    let r = t.path();
    std::fs::create_dir_all(r.join("home/core")).unwrap();
    std::fs::create_dir_all(r.join("etc/evil")).unwrap();
    std::os::unix::fs::symlink("/etc/evil", r.join("home/core/.ssh")).unwrap();
    let e = apply(r, &with_core(mc("a", vec![]), &["k"], None))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/home/core/.ssh/authorized_keys.d/ignition: /home/core/.ssh is a symlink to /etc/evil, outside /home and /var/home"
    );
    assert_eq!(std::fs::read_dir(r.join("etc/evil")).unwrap().count(), 0);
}

#[test]
fn dry_run_changes_nothing() {
    let t = make_root();
    let r = t.path();
    std::fs::write(r.join("etc/chrony.conf"), "old\n").unwrap();
    let before = snapshot(r);
    let o = ApplyOptions {
        dry_run: true,
        ..ApplyOptions::default()
    };
    let rep = host::update(
        &Root::open(r).unwrap(),
        &mc("a", vec![file("/etc/chrony.conf", "new\n", 0o644)]),
        &o,
    )
    .unwrap();
    assert_eq!(before, snapshot(r));
    assert_eq!(rep.writes.len(), 1);
    assert_eq!(rep.writes[0].old.as_deref(), Some(&b"old\n"[..]));
}

#[test]
fn drifted_unchanged_file_is_left_to_drift_detection() {
    // The rule of src/host/txn.rs: a path the new config does not change is not examined; a
    // changed path is compared with the disk. Drift is reported by validation and repaired by
    // the force file, not by an unrelated update.
    let t = make_root();
    let r = t.path();
    let a = mc(
        "a",
        vec![file("/etc/one", "1", 0o644), file("/etc/two", "2", 0o644)],
    );
    apply(r, &a).unwrap();
    std::fs::write(r.join("etc/one"), "drifted").unwrap();
    let b = mc(
        "b",
        vec![file("/etc/one", "1", 0o644), file("/etc/two", "2b", 0o644)],
    );
    let rep = apply(r, &b).unwrap();
    assert_eq!(
        rep.steps,
        vec![
            "write /etc/two",
            "store /etc/machine-config-daemon/currentconfig"
        ]
    );
    assert_eq!(read(r, "/etc/one"), "drifted");
    let root = Root::open(r).unwrap();
    let owners = host::owners::Owners::load(&root).unwrap();
    let man = host::Manifest::build(&b, &owners).unwrap();
    assert_eq!(
        man.check_all(&root).unwrap_err().to_string(),
        "content mismatch for file \"/etc/one\""
    );
    force(r, &b);
    assert_eq!(read(r, "/etc/one"), "1");
    man.check_all(&root).unwrap();
}

#[test]
fn a_custom_state_directory_holds_the_state_and_backups() {
    let t = make_root();
    let r = t.path();
    std::fs::write(r.join("etc/motd"), "original\n").unwrap();
    let root = || {
        Root::open(r)
            .unwrap()
            .with_state_dir("/var/lib/mcd-state")
            .unwrap()
    };
    let a = mc(
        "a",
        vec![
            file("/etc/motd", "managed\n", 0o644),
            file("/etc/new.conf", "n\n", 0o644),
        ],
    );
    host::update(&root(), &a, &ApplyOptions::default()).unwrap();
    assert!(exists(r, "/var/lib/mcd-state/currentconfig"));
    assert_eq!(
        read(r, "/var/lib/mcd-state/orig/etc/motd.mcdorig"),
        "original\n"
    );
    assert!(exists(
        r,
        "/var/lib/mcd-state/noorig/etc/new.conf.mcdnoorig"
    ));
    assert!(!exists(r, "/etc/machine-config-daemon"));
    let cur = host::state::read_current(&root()).unwrap().unwrap().0;
    assert_eq!(cur.name, "a");
    // Without the option the state is not there.
    assert!(
        host::state::read_current(&Root::open(r).unwrap())
            .unwrap()
            .is_none()
    );
    // Removing the file restores the original from the custom directory's backup.
    host::update(&root(), &mc("b", vec![]), &ApplyOptions::default()).unwrap();
    assert_eq!(read(r, "/etc/motd"), "original\n");
    assert!(!exists(r, "/etc/new.conf"));
    // A config may not write into the state directory, and the directory must be in /etc or /var.
    let bad = mc(
        "c",
        vec![file("/var/lib/mcd-state/currentconfig", "x", 0o644)],
    );
    let e = host::update(&root(), &bad, &ApplyOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("reserved for the daemon's own state"),
        "{e}"
    );
    let Err(e) = Root::open(r).unwrap().with_state_dir("/usr/lib/mcd") else {
        panic!("a state directory in /usr was accepted")
    };
    assert!(e.to_string().contains("must be under /etc or /var"), "{e}");
}

#[test]
fn a_unit_also_given_as_a_file_is_written_from_the_unit_and_steps_are_in_path_order() {
    let t = make_root();
    let r = t.path();
    let m = with_units(
        mc(
            "a",
            vec![
                file("/etc/z.conf", "z\n", 0o644),
                file("/etc/systemd/system/app.service", "from files\n", 0o600),
                file("/etc/a.conf", "a\n", 0o644),
            ],
        ),
        vec![Unit {
            name: "app.service".into(),
            contents: Some("[Service]\nExecStart=/bin/true\n".into()),
            ..Unit::default()
        }],
    );
    let rep = apply(r, &m).unwrap();
    // The systemd section wins: its contents, and a unit's mode.
    assert_eq!(
        read(r, "/etc/systemd/system/app.service"),
        "[Service]\nExecStart=/bin/true\n"
    );
    assert_eq!(mode_of(r, "/etc/systemd/system/app.service"), 0o100644);
    let writes: Vec<&String> = rep
        .steps
        .iter()
        .filter(|s| s.starts_with("write "))
        .collect();
    assert_eq!(
        writes,
        [
            "write /etc/a.conf",
            "write /etc/systemd/system/app.service",
            "write /etc/z.conf"
        ]
    );
    // Nothing to do the second time: the path is compared with the unit, not the file entry.
    assert!(apply(r, &m).unwrap().steps.is_empty());
}

#[test]
fn the_stored_config_is_read_back_with_the_digest_of_its_bytes() {
    use sha2::Digest as _;
    let t = make_root();
    let r = t.path();
    let m = mc("a", vec![file("/etc/f", "one\n", 0o644)]);
    apply(r, &m).unwrap();
    let path = r.join("etc/machine-config-daemon/currentconfig");
    let read = || {
        host::state::read_current(&Root::open(r).unwrap())
            .unwrap()
            .unwrap()
    };
    let (stored, digest) = read();
    assert_eq!(
        (&stored.name, &stored.spec.config.files),
        (&m.name, &m.spec.config.files)
    );
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(digest, <[u8; 32]>::from(sha2::Sha256::digest(&bytes)));
    // Every byte counts, blanks after the document included.
    std::fs::write(&path, [&bytes[..], b"\n\n"].concat()).unwrap();
    let (again, digest2) = read();
    assert_eq!(again.spec.config.files, m.spec.config.files);
    assert_ne!(digest2, digest);
    assert_eq!(
        digest2,
        <[u8; 32]>::from(sha2::Sha256::digest(std::fs::read(&path).unwrap()))
    );
}

/// An update reads the stored config thin: every file's contents become their digest as they
/// are decoded, but the registries configuration's, whose old entries the plan compares.
#[test]
fn the_stored_config_reads_thin_but_for_the_registries_configuration() {
    let t = make_root();
    let root = Root::open(t.path()).unwrap();
    let registries = "unqualified-search-registries = [\"quay.io\"]\n";
    let whole = mc(
        "rendered-worker-1",
        vec![
            file("/etc/containers/registries.conf", registries, 0o644),
            file("/etc/a.conf", "a 1\n", 0o644),
            file("/etc/empty.conf", "", 0o600),
        ],
    );
    host::update(&root, &whole, &ApplyOptions::default()).unwrap();
    let (thin, digest) = host::state::read_current_thin(&root).unwrap().unwrap();
    let (back, digest_whole) = host::state::read_current(&root).unwrap().unwrap();
    assert_eq!(back.spec.config.files, whole.spec.config.files);
    assert_eq!(
        digest, digest_whole,
        "the stored bytes' digest does not depend on thinning"
    );
    let files = &thin.spec.config.files;
    assert_eq!(files[0].contents.as_deref(), Some(registries.as_bytes()));
    assert!(!files[0].is_thin());
    for (f, w) in files[1..].iter().zip(&whole.spec.config.files[1..]) {
        assert!(f.is_thin() && f.contents.is_none(), "{f:?}");
        assert!(f.same_contents(w) && w.same_contents(f));
        assert_eq!(f.content_digest().len, w.data().len() as u64);
        let mut other = w.clone();
        other.contents = Some(b"a 2\n".to_vec());
        assert!(!f.same_contents(&other));
    }
    // Everything but the contents is read as it was stored.
    let mut thinned = back.clone();
    thinned.thin_contents(host::state::KEPT_WHOLE);
    assert_eq!(thin, thinned);
}

/// A config read thin is never applied: it would empty every file.
#[test]
fn a_thin_config_is_refused_as_the_new_one() {
    let t = make_root();
    let root = Root::open(t.path()).unwrap();
    let whole = mc(
        "rendered-worker-1",
        vec![file("/etc/a.conf", "a 1\n", 0o644)],
    );
    host::update(&root, &whole, &ApplyOptions::default()).unwrap();
    let before = snapshot(t.path());
    let (thin, _) = host::state::read_current_thin(&root).unwrap().unwrap();
    let mut next = thin.clone();
    next.name = "rendered-worker-2".into();
    let err = host::apply(&root, Some(&thin), &next, &ApplyOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rendered-worker-2: a config read thin (contents as digests) cannot be applied"
    );
    assert_eq!(before, snapshot(t.path()));
}

/// A config large enough to be written as one batch, staged and synced on several threads:
/// 600 files in 30 new directories at two depths, with their modes.
fn big(name: &str, marker: &str) -> MachineConfig {
    let files = (0..600)
        .map(|i| {
            file(
                &format!("/etc/big/d{:02}/sub/f{i:04}.conf", i / 20),
                &format!("{marker} {i}\n"),
                if i % 3 == 0 { 0o600 } else { 0o644 },
            )
        })
        .collect();
    mc(name, files)
}

#[test]
fn a_large_batch_writes_every_file_and_its_stamp() {
    let t = make_root();
    let r = t.path();
    apply(r, &big("a", "one")).unwrap();
    for i in 0..600 {
        let p = format!("/etc/big/d{:02}/sub/f{i:04}.conf", i / 20);
        assert_eq!(read(r, &p), format!("one {i}\n"), "{p}");
        let want = if i % 3 == 0 { 0o100600 } else { 0o100644 };
        assert_eq!(mode_of(r, &p), want, "{p}");
        assert!(exists(
            r,
            &format!("/etc/machine-config-daemon/noorig{p}.mcdnoorig")
        ));
        assert!(!exists(
            r,
            &format!("/etc/big/d{:02}/sub/.f{i:04}.conf.mcdtmp", i / 20)
        ));
    }
    // Then every file changed, again as a batch.
    apply(r, &big("b", "two")).unwrap();
    assert_eq!(read(r, "/etc/big/d29/sub/f0599.conf"), "two 599\n");
    assert_eq!(read(r, "/etc/big/d00/sub/f0000.conf"), "two 0\n");
}

#[test]
fn a_file_of_a_large_batch_that_cannot_be_staged_rolls_the_whole_batch_back() {
    let t = make_root();
    let r = t.path();
    apply(r, &big("a", "one")).unwrap();
    // A non-empty directory where a new file's temp file goes, in the middle of the batch:
    // its staging fails while other threads stage the rest. (A new file: the rollback has no
    // old contents to write back through that temp path.)
    let blocker = r.join("etc/big/d17/sub/.new.conf.mcdtmp");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("x"), "x").unwrap();
    let before = snapshot(r);
    let mut next = big("b", "two");
    next.spec
        .config
        .files
        .push(file("/etc/big/d17/sub/new.conf", "new\n", 0o644));
    // New directories too, which the rollback must remove.
    next.spec
        .config
        .files
        .push(file("/etc/big/new/deeper/g.conf", "g\n", 0o644));
    let e = apply(r, &next).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("step write /etc/big/d17/sub/new.conf failed (rolled back"),
        "{e}"
    );
    let after = snapshot(r);
    assert!(before == after, "{e:?}\n{}", diff(&before, &after));
}
