//! Crash and error injection (needs `--features failpoints`): the process is aborted at every
//! hit of every fail point of an update in turn (the old config's update, the node's first
//! apply, a batched update, and the rollbacks of each kind), recovery runs, and the root must be
//! byte-identical to the old or the new config (backups, stamps and state included): the old one
//! for every crash before the commit point, the new one after it. How often each fail point is
//! passed is pinned per update. Error injection (ENOSPC-like) must roll back to the old config
//! and name the failed step.
#![cfg(feature = "failpoints")]

mod host_common;
use host_common::*;
use machine_config_daemon::host::{self, ApplyOptions, FAIL_POINTS, HostError, Root};
use machine_config_daemon::model::{File, MachineConfig, Unit};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A file whose contents are not UTF-8. The old and new contents of `/etc/bin` differ in one
/// byte that lossy UTF-8 decoding maps to the same character: only a byte comparison tells them
/// apart.
fn binary(path: &str, contents: &[u8]) -> File {
    File {
        contents: Some(contents.to_vec()),
        ..file(path, "", 0o644)
    }
}

fn old_config() -> MachineConfig {
    with_core(
        with_units(
            mc(
                "rendered-worker-old",
                vec![
                    file("/etc/a", "a old\n", 0o644),
                    file("/etc/b", "b old\n", 0o600),
                    file("/etc/keep", "same\n", 0o644),
                    binary("/etc/bin", b"\xffold\n"),
                ],
            ),
            vec![Unit {
                name: "old.service".into(),
                contents: Some("[Unit]\n".into()),
                ..Unit::default()
            }],
        ),
        &["ssh-ed25519 OLD"],
        Some("$6$old"),
    )
}

fn new_config() -> MachineConfig {
    with_core(
        with_units(
            mc(
                "rendered-worker-new",
                vec![
                    file("/etc/a", "a new\n", 0o640),
                    file("/etc/c", "c ours\n", 0o644),
                    file("/etc/keep", "same\n", 0o644),
                    file("/etc/brand/new/dir/f", "f\n", 0o755),
                    binary("/etc/bin", b"\xfeold\n"),
                ],
            ),
            vec![Unit {
                name: "masked.service".into(),
                mask: Some(true),
                ..Unit::default()
            }],
        ),
        &["ssh-ed25519 NEW", "ssh-rsa NEW2"],
        Some("$6$new"),
    )
}

/// With `big`, both configs also manage many files (10 in the old one, changed in the new one,
/// which adds more), so that the update writes them as one batch.
fn configs(big: bool) -> (MachineConfig, MachineConfig) {
    let (mut old, mut new) = (old_config(), new_config());
    if big {
        let many = |n: usize, v: &'static str| {
            (0..n).map(move |i| file(&format!("/etc/many/f{i:02}"), &format!("{v} {i}\n"), 0o644))
        };
        old.spec.config.files.extend(many(10, "old"));
        new.spec
            .config
            .files
            .extend(many(host::txn::BATCH_MIN + 6, "new"));
    }
    (old, new)
}

/// A root with the old config applied over an OS file the new config will manage; with
/// `first`, the OS file alone: the update is the node's very first apply.
fn start_root(big: bool, first: bool) -> tempfile::TempDir {
    let t = make_root();
    std::fs::write(t.path().join("etc/c"), "c from the OS\n").unwrap();
    if !first {
        host::update(
            &Root::open(t.path()).unwrap(),
            &configs(big).0,
            &ApplyOptions::default(),
        )
        .unwrap();
    }
    t
}

fn copy_root(from: &Path) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(t.path())
        .status()
        .unwrap();
    assert!(ok.success());
    t
}

/// The child process of the crash tests (not a test by itself): applies the new config to
/// MCD_CHILD_ROOT and aborts at the configured hit of the configured fail point.
#[test]
#[ignore = "the child process of the crash tests, run by them"]
fn child_apply() {
    let root = std::env::var("MCD_CHILD_ROOT")
        .expect("MCD_CHILD_ROOT: the crash tests run this with the root to crash an update in");
    let _s = fail::FailScenario::setup();
    if let Ok(spec) = std::env::var("MCD_FAIL") {
        let (name, action) = spec.split_once('=').unwrap();
        fail::cfg(name, action).unwrap();
    }
    let name = std::env::var("MCD_CRASH_AT").unwrap();
    let hit: usize = std::env::var("MCD_CRASH_HIT").unwrap().parse().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    fail::cfg_callback(&name, move || {
        if n.fetch_add(1, Ordering::SeqCst) + 1 == hit {
            std::process::abort();
        }
    })
    .unwrap();
    let big = std::env::var_os("MCD_CHILD_BIG").is_some();
    let _ = host::update(
        &Root::open(Path::new(&root)).unwrap(),
        &configs(big).1,
        &ApplyOptions::default(),
    );
}

/// Runs the child on `root`; true when it aborted (the fail point was reached `hit` times).
fn run_child(root: &Path, big: bool, at: &str, hit: usize, fail_spec: Option<&str>) -> bool {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "child_apply",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("MCD_CHILD_ROOT", root)
    .env("MCD_CRASH_AT", at)
    .env("MCD_CRASH_HIT", hit.to_string())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    if let Some(f) = fail_spec {
        c.env("MCD_FAIL", f);
    }
    if big {
        c.env("MCD_CHILD_BIG", "1");
    }
    let st = c.status().unwrap();
    match st.signal() {
        Some(6) => true,
        None if st.success() => false,
        _ => panic!("child at {at}#{hit} ended with {st:?}"),
    }
}

/// An update to crash: from which root, with which injected failure (`name=actions`, as
/// `fail::cfg` takes them).
struct Case {
    big: bool,
    first: bool,
    fail_spec: Option<&'static str>,
}

/// How often the update of `case` passes each of `points`, counted in this process.
fn hits_per_point(case: &Case, base: &Path, points: &[&str]) -> BTreeMap<String, usize> {
    let t = copy_root(base);
    if let Some((name, action)) = case.fail_spec.and_then(|f| f.split_once('=')) {
        assert!(!points.contains(&name), "{name} both fails and counts");
        fail::cfg(name, action).unwrap();
    }
    let counters: Vec<(String, Arc<AtomicUsize>)> = points
        .iter()
        .map(|p| {
            let n = Arc::new(AtomicUsize::new(0));
            let m = n.clone();
            fail::cfg_callback(*p, move || {
                m.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
            (p.to_string(), n)
        })
        .collect();
    let result = host::update(
        &Root::open(t.path()).unwrap(),
        &configs(case.big).1,
        &ApplyOptions::default(),
    );
    for p in points {
        fail::remove(p);
    }
    if let Some((name, _)) = case.fail_spec.and_then(|f| f.split_once('=')) {
        fail::remove(name);
        assert!(
            matches!(result, Err(HostError::RolledBack { .. })),
            "{result:?}"
        );
    } else {
        result.unwrap();
    }
    counters
        .into_iter()
        .map(|(p, n)| (p, n.load(Ordering::SeqCst)))
        .collect()
}

/// What a crash at one point left, once recovered.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    /// Crashes at that point (every hit, or a sample of them for a batched update).
    crashes: usize,
    to_old: usize,
    to_new: usize,
}

/// Crashes the update of `case` at every hit of each of `points` (for a batched update, which
/// passes some points hundreds of times alike: the first ten hits, every tenth, and the last),
/// recovers, and checks that the root is byte for byte the old or the new one and that the
/// update can then be redone. Checks that each point is passed exactly `expected` times (in the
/// child too: one hit more runs to the end without a crash) and returns what the crashes left,
/// per point.
fn crash_everywhere(case: &Case, expected: &[(&str, usize)]) -> BTreeMap<String, Outcome> {
    let _s = fail::FailScenario::setup();
    let base = start_root(case.big, case.first);
    let new_config = || configs(case.big).1;
    let old = snapshot(base.path());
    let new_root = copy_root(base.path());
    host::update(
        &Root::open(new_root.path()).unwrap(),
        &new_config(),
        &ApplyOptions::default(),
    )
    .unwrap();
    let new = snapshot(new_root.path());
    assert_ne!(old, new);
    let points: Vec<&str> = expected.iter().map(|(p, _)| *p).collect();
    let counted = hits_per_point(case, base.path(), &points);
    let want: BTreeMap<String, usize> = expected.iter().map(|(p, n)| (p.to_string(), *n)).collect();
    assert_eq!(counted, want, "hits per fail point");

    let mut outcomes = BTreeMap::new();
    for &(at, count) in expected {
        let hits: BTreeSet<usize> = if case.big {
            (1..=count.min(10))
                .chain((20..count).step_by(10))
                .chain([count])
                .collect()
        } else {
            (1..=count).collect()
        };
        let mut outcome = Outcome::default();
        for hit in hits {
            let t = copy_root(base.path());
            assert!(
                run_child(t.path(), case.big, at, hit, case.fail_spec),
                "the child passed {at} fewer than {hit} times"
            );
            outcome.crashes += 1;
            let root = Root::open(t.path()).unwrap();
            host::recover(&root).unwrap();
            let got = snapshot(t.path());
            if got == old {
                outcome.to_old += 1;
            } else if got == new {
                outcome.to_new += 1;
            } else {
                panic!(
                    "after a crash at {at}#{hit}: neither old nor new:\nvs old:\n{}\nvs new:\n{}",
                    diff(&old, &got),
                    diff(&new, &got)
                );
            }
            // And the update can then be redone.
            host::update(&root, &new_config(), &ApplyOptions::default()).unwrap();
            assert_eq!(
                snapshot(t.path()),
                new,
                "re-apply after a crash at {at}#{hit}"
            );
        }
        let t = copy_root(base.path());
        assert!(
            !run_child(t.path(), case.big, at, count + 1, case.fail_spec),
            "the child passed {at} more than {count} times"
        );
        outcomes.insert(at.to_string(), outcome);
    }
    outcomes
}

/// The update's own fail points (not the rollback's), in order.
fn update_points() -> Vec<&'static str> {
    FAIL_POINTS
        .iter()
        .copied()
        .filter(|p| !p.starts_with("host::rollback::"))
        .collect()
}

/// Every crash before the commit point (removing the journal) is rolled back to the old config;
/// a crash after it keeps the new one.
fn assert_old_until_commit(outcomes: &BTreeMap<String, Outcome>) {
    for (at, o) in outcomes {
        let want = if at == "host::after_commit" {
            Outcome {
                to_new: o.crashes,
                ..*o
            }
        } else {
            Outcome {
                to_old: o.crashes,
                ..*o
            }
        };
        assert_eq!(*o, want, "after crashes at {at}");
    }
}

// How often each fail point is passed, per update (hits are per point: a point that stopped
// being reached, or is reached a different number of times, fails the test; when the steps of
// an update change on purpose, these change with them).

/// The small update: 13 steps (backups, stamps, writes, removals, the unit mask, keys, the
/// password, the stored config), 11 of them writing a file through a temp file.
const HITS_SMALL: [(&str, usize); 8] = [
    ("host::after_journal", 1),
    ("host::after_staging", 1),
    ("host::before_op", 13),
    ("host::write::data", 11),
    ("host::write::before_rename", 11),
    ("host::after_op", 13),
    ("host::after_currentconfig", 1),
    ("host::after_commit", 1),
];
/// The same update as the node's first: every path is new (16 steps, each a write).
const HITS_FIRST: [(&str, usize); 8] = [
    ("host::after_journal", 1),
    ("host::after_staging", 1),
    ("host::before_op", 16),
    ("host::write::data", 16),
    ("host::write::before_rename", 16),
    ("host::after_op", 16),
    ("host::after_currentconfig", 1),
    ("host::after_commit", 1),
];
/// The batched update: 143 steps, most of them staged, synced and renamed as one batch; its
/// 62 stamps are created at their paths (empty files: no temp file, no rename).
const HITS_BIG: [(&str, usize); 8] = [
    ("host::after_journal", 1),
    ("host::after_staging", 1),
    ("host::before_op", 143),
    ("host::write::data", 79),
    ("host::write::before_rename", 80),
    ("host::after_op", 143),
    ("host::after_currentconfig", 1),
    ("host::after_commit", 1),
];
/// Rollbacks restore every pre-image the journal holds, then drop the journal.
const HITS_ROLLBACK: [(&str, usize); 2] = [
    ("host::rollback::restore", 15),
    ("host::rollback::after_journal", 1),
];
const HITS_ROLLBACK_BIG: [(&str, usize); 2] = [
    ("host::rollback::restore", 145),
    ("host::rollback::after_journal", 1),
];
const HITS_ROLLBACK_FIRST: [(&str, usize); 2] = [
    ("host::rollback::restore", 16),
    ("host::rollback::after_journal", 1),
];

#[test]
fn crash_at_every_fail_point_leaves_old_or_new() {
    let case = Case {
        big: false,
        first: false,
        fail_spec: None,
    };
    let outcomes = crash_everywhere(&case, &HITS_SMALL);
    eprintln!("{outcomes:?}");
    assert_eq!(
        update_points(),
        HITS_SMALL.iter().map(|(p, _)| *p).collect::<Vec<_>>()
    );
    assert_old_until_commit(&outcomes);
}

#[test]
fn crash_at_every_fail_point_of_the_first_apply_leaves_nothing_or_new() {
    let case = Case {
        big: false,
        first: true,
        fail_spec: None,
    };
    let outcomes = crash_everywhere(&case, &HITS_FIRST);
    eprintln!("{outcomes:?}");
    assert_old_until_commit(&outcomes);
}

#[test]
fn crash_at_every_fail_point_of_a_batched_update_leaves_old_or_new() {
    let case = Case {
        big: true,
        first: false,
        fail_spec: None,
    };
    let outcomes = crash_everywhere(&case, &HITS_BIG);
    eprintln!("{outcomes:?}");
    assert_old_until_commit(&outcomes);
}

#[test]
fn crash_during_rollback_still_recovers() {
    let case = Case {
        big: false,
        first: false,
        fail_spec: Some("host::after_op=5*off->1*return"),
    };
    let outcomes = crash_everywhere(&case, &HITS_ROLLBACK);
    eprintln!("{outcomes:?}");
    assert_old_until_commit(&outcomes);
}

#[test]
fn crash_during_the_rollback_of_a_batched_update_still_recovers() {
    let case = Case {
        big: true,
        first: false,
        fail_spec: Some("host::after_op=5*off->1*return"),
    };
    let outcomes = crash_everywhere(&case, &HITS_ROLLBACK_BIG);
    eprintln!("{outcomes:?}");
    assert_old_until_commit(&outcomes);
}

#[test]
fn crash_during_the_rollback_of_a_first_apply_still_recovers() {
    let case = Case {
        big: false,
        first: true,
        fail_spec: Some("host::after_op=5*off->1*return"),
    };
    let outcomes = crash_everywhere(&case, &HITS_ROLLBACK_FIRST);
    eprintln!("{outcomes:?}");
    assert_old_until_commit(&outcomes);
}

#[test]
fn enospc_like_failures_roll_back_and_name_the_step() {
    let _s = fail::FailScenario::setup();
    let base = start_root(false, false);
    let old = snapshot(base.path());
    let mut rolled_back = 0;
    for k in 0..30 {
        let t = copy_root(base.path());
        fail::cfg("host::write::data", &format!("{k}*off->1*return")).unwrap();
        let r = host::update(
            &Root::open(t.path()).unwrap(),
            &new_config(),
            &ApplyOptions::default(),
        );
        fail::remove("host::write::data");
        match r {
            Ok(_) => break,
            Err(HostError::RolledBack { step, source }) => {
                rolled_back += 1;
                let msg = HostError::RolledBack {
                    step: step.clone(),
                    source,
                }
                .to_string();
                assert!(
                    msg.starts_with(&format!(
                        "step {step} failed (rolled back to the old config): "
                    )),
                    "{msg}"
                );
                assert!(
                    msg.ends_with("No space left on device (os error 28)"),
                    "{msg}"
                );
            }
            // The journal itself could not be written: nothing was changed. It is the first
            // write of the update's thread; the stored config's temp file, written ahead on
            // another thread (whose failure is reported at its step, rolled back), may come
            // before it.
            Err(e) => assert!(k <= 1, "{k}: {e}"),
        }
        assert_eq!(snapshot(t.path()), old, "after failing write #{k}");
    }
    assert!(rolled_back >= 5, "{rolled_back}");
    // The first step's failure is reported with its name.
    let t = copy_root(base.path());
    fail::cfg("host::before_op", "1*return").unwrap();
    let e = host::update(
        &Root::open(t.path()).unwrap(),
        &new_config(),
        &ApplyOptions::default(),
    )
    .unwrap_err();
    fail::remove("host::before_op");
    assert!(e.to_string().starts_with("step write /etc/a failed"), "{e}");
}
