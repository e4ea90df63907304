//! Crash and error injection (needs `--features failpoints`): the process is aborted at every
//! fail point of an update in turn, recovery runs, and the root must be byte-identical to the old
//! or the new config (backups, stamps and state included). Error injection (ENOSPC-like) must
//! roll back to the old config and name the failed step.
#![cfg(feature = "failpoints")]

mod host_common;
use host_common::*;
use machine_config_daemon::host::{self, ApplyOptions, FAIL_POINTS, HostError, Root};
use machine_config_daemon::model::{MachineConfig, Unit};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn old_config() -> MachineConfig {
    with_core(
        with_units(
            mc(
                "rendered-worker-old",
                vec![
                    file("/etc/a", "a old\n", 0o644),
                    file("/etc/b", "b old\n", 0o600),
                    file("/etc/keep", "same\n", 0o644),
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

/// A root with the old config applied over an OS file the new config will manage.
fn old_root(big: bool) -> tempfile::TempDir {
    let t = make_root();
    std::fs::write(t.path().join("etc/c"), "c from the OS\n").unwrap();
    host::update(
        &Root::open(t.path()).unwrap(),
        &configs(big).0,
        &ApplyOptions::default(),
    )
    .unwrap();
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

/// The child: applies the new config to MCD_CHILD_ROOT and aborts at the configured hit.
#[test]
fn child_apply() {
    let Ok(root) = std::env::var("MCD_CHILD_ROOT") else {
        return;
    };
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

fn run_child(root: &Path, big: bool, at: &str, hit: usize, fail_spec: Option<&str>) -> bool {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_apply", "--nocapture", "--test-threads=1"])
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

fn crash_everywhere(big: bool, fail_spec: Option<&str>, points: &[&str]) -> (usize, usize, usize) {
    let _s = fail::FailScenario::setup();
    let base = old_root(big);
    let new_config = || configs(big).1;
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
    let (mut crashes, mut to_old, mut to_new) = (0, 0, 0);
    // Every hit of a fail point up to 40; a batched update passes most of its points well
    // over a hundred times, each time alike: there, the first ten and then every tenth.
    let hits: Vec<usize> = if big {
        (1..=10).chain((20..=500).step_by(10)).collect()
    } else {
        (1..=40).collect()
    };
    for at in points {
        for &hit in &hits {
            let t = copy_root(base.path());
            if !run_child(t.path(), big, at, hit, fail_spec) {
                break;
            }
            crashes += 1;
            let root = Root::open(t.path()).unwrap();
            host::recover(&root).unwrap();
            let got = snapshot(t.path());
            if got == old {
                to_old += 1;
            } else if got == new {
                to_new += 1;
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
    }
    (crashes, to_old, to_new)
}

/// Crashes at every update fail point (not the rollback's); returns how many crashes there were,
/// after checking that some ended old and some new.
fn crash_at_every_update_point(big: bool) -> usize {
    let points: Vec<&str> = FAIL_POINTS
        .iter()
        .copied()
        .filter(|p| *p != "host::rollback::restore")
        .collect();
    let (crashes, to_old, to_new) = crash_everywhere(big, None, &points);
    eprintln!("{crashes} crashes: {to_old} rolled back to old, {to_new} kept new");
    assert!(to_old > 0 && to_new > 0);
    crashes
}

#[test]
fn crash_at_every_fail_point_leaves_old_or_new() {
    let crashes = crash_at_every_update_point(false);
    assert!(crashes > 30, "{crashes}");
}

#[test]
fn crash_at_every_fail_point_of_a_batched_update_leaves_old_or_new() {
    let crashes = crash_at_every_update_point(true);
    // Staging (before_op, write::data), renames (write::before_rename, after_op): over 20
    // crashes each.
    assert!(crashes > 80, "{crashes}");
}

#[test]
fn crash_during_rollback_still_recovers() {
    let (crashes, to_old, _) = crash_everywhere(
        false,
        Some("host::after_op=5*off->1*return"),
        &["host::rollback::restore"],
    );
    assert!(crashes >= 5, "{crashes}");
    assert_eq!(to_old, crashes);
}

#[test]
fn enospc_like_failures_roll_back_and_name_the_step() {
    let _s = fail::FailScenario::setup();
    let base = old_root(false);
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
