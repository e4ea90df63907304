//! The new config of an update read **spooled**: its files' decoded contents written to an
//! unnamed scratch file as they are read, only their digests held, and read back one file at a
//! time as they are written, checked against the digest the plan was made with.

mod host_common;
use host_common::*;
use machine_config_daemon::host::{self, ApplyOptions, HostError, Root, txn::BATCH_MIN};
use machine_config_daemon::model::load::{self, Limits};
use machine_config_daemon::model::{MachineConfig, Spool};
use std::path::Path;

fn files(n: usize, tag: &str) -> MachineConfig {
    mc(
        &format!("rendered-worker-{tag}"),
        (0..n)
            .map(|i| {
                file(
                    &format!("/etc/spool/f{i:03}.conf"),
                    &format!("{tag} {i}\n"),
                    0o644,
                )
            })
            .collect(),
    )
}

/// `m` as `apply` reads it: written to a JSON file and loaded spooled (the file and the spool
/// outside the root; the spool, unnamed, outlives its directory).
fn spooled(m: &MachineConfig) -> MachineConfig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{}.json", m.name));
    std::fs::write(&path, host::state::encode(m)).unwrap();
    let spool = Spool::new_in(dir.path()).unwrap();
    let (c, _) = load::load_config_arg_spooled(
        &path,
        "worker",
        &Limits::default(),
        spool,
        host::state::KEPT_WHOLE,
    )
    .unwrap();
    c
}

fn update(root: &Path, m: &MachineConfig) -> Result<host::ApplyReport, HostError> {
    host::update(&Root::open(root).unwrap(), m, &ApplyOptions::default())
}

#[test]
fn a_spooled_config_holds_digests_only_and_reads_back_its_contents() {
    let mut m = files(3, "a");
    m.spec.config.files.push(file(
        host::state::KEPT_WHOLE[0],
        "unqualified-search-registries = []\n",
        0o644,
    ));
    let s = spooled(&m);
    for (f, w) in s.spec.config.files.iter().zip(&m.spec.config.files) {
        let kept = host::state::KEPT_WHOLE.contains(&f.path.as_str());
        assert_eq!(f.is_spooled(), !kept, "{}", f.path);
        assert_eq!(f.contents.is_some(), kept, "{}", f.path);
        assert!(!f.is_thin());
        assert_eq!(&f.contents_bytes().unwrap()[..], w.data());
        assert!(f.same_contents(w));
    }
    assert!(!s.is_thin());
    // Emitted (the stored config) exactly as the whole config is.
    let mut out = Vec::new();
    host::state::write_encoded(&s, &mut out).unwrap();
    assert_eq!(out, host::state::encode(&m));
}

/// Below and from the batch size: each file written on its own, then as one batch.
#[test]
fn spooled_updates_write_the_same_as_whole_ones() {
    for n in [3, BATCH_MIN + 1] {
        let (t, w) = (make_root(), make_root());
        let a = files(n, "a");
        let mut b = files(n, "b");
        b.spec.config.files.pop();
        for (root, m) in [(t.path(), spooled(&a)), (w.path(), a.clone())] {
            update(root, &m).unwrap();
        }
        assert_eq!(
            diff(&snapshot(t.path()), &snapshot(w.path())),
            "",
            "{n} files"
        );
        for (root, m) in [(t.path(), spooled(&b)), (w.path(), b.clone())] {
            update(root, &m).unwrap();
        }
        assert_eq!(
            diff(&snapshot(t.path()), &snapshot(w.path())),
            "",
            "{n} files"
        );
        assert_eq!(read(t.path(), "/etc/spool/f001.conf"), "b 1\n");
        let stored = host::state::read_current(&Root::open(t.path()).unwrap())
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(stored.spec.config.files, b.spec.config.files);
    }
}

/// Contents that no longer match the digest the update was planned with (the spool changed
/// under it) fail the update at the write, and everything is rolled back: the node stays
/// entirely on the old config.
#[test]
fn spooled_contents_that_changed_since_the_plan_roll_the_update_back() {
    for n in [3, BATCH_MIN + 1] {
        let t = make_root();
        let r = t.path();
        update(r, &files(n, "a")).unwrap();
        let before = snapshot(r);
        let mut b = spooled(&files(n, "b"));
        // The third file's place in the spool now holds the second file's contents (same
        // length).
        let first = b.spec.config.files[1].digest.as_ref().unwrap().clone();
        let d = b.spec.config.files[2].digest.as_mut().unwrap();
        assert_eq!(d.len, first.len);
        d.spooled.as_mut().unwrap().offset = first.spooled.unwrap().offset;
        let e = update(r, &b).unwrap_err();
        assert!(matches!(e, HostError::RolledBack { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("/etc/spool/f002.conf") && msg.contains("do not match their digest"),
            "{msg}"
        );
        assert_eq!(diff(&before, &snapshot(r)), "", "{n} files");
    }
}

/// YAML takes the general road (loaded whole, then spooled); a directory is rendered, which
/// merges contents, so it is held whole.
#[test]
fn yaml_is_spooled_and_a_rendered_directory_is_whole() {
    let t = make_root();
    let yaml = t.path().join("c.yaml");
    std::fs::write(
        &yaml,
        "apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfig\nmetadata:\n  name: ycfg\nspec:\n  config:\n    ignition:\n      version: 3.4.0\n    storage:\n      files:\n      - path: /etc/y.conf\n        contents:\n          source: data:,hello%0A\n",
    )
    .unwrap();
    let spool = Spool::new_in(t.path()).unwrap();
    let keep = host::state::KEPT_WHOLE;
    let (c, _) =
        load::load_config_arg_spooled(&yaml, "worker", &Limits::default(), spool, keep).unwrap();
    let f = &c.spec.config.files[0];
    assert!(f.is_spooled());
    assert_eq!(&f.contents_bytes().unwrap()[..], b"hello\n");

    let dir = t.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&yaml, dir.join("c.yaml")).unwrap();
    let spool = Spool::new_in(t.path()).unwrap();
    let (c, _) =
        load::load_config_arg_spooled(&dir, "worker", &Limits::default(), spool, keep).unwrap();
    let f = &c.spec.config.files[0];
    assert!(!f.is_spooled());
    assert_eq!(f.data(), b"hello\n");
    assert!(c.name.starts_with("rendered-worker-"));
}
