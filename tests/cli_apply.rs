//! The `apply` command, run as the built binary against tempdir roots.

mod host_common;
use host_common::*;
use machine_config_daemon::model::{MachineConfig, machine_config_to_json};
use std::path::Path;
use std::process::Command;

fn write_mc(dir: &Path, m: &MachineConfig) -> std::path::PathBuf {
    let p = dir.join(format!("{}.json", m.name));
    std::fs::write(
        &p,
        serde_json::to_vec_pretty(&machine_config_to_json(m)).unwrap(),
    )
    .unwrap();
    p
}

fn apply(root: &Path, cfg: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .arg("apply")
        .arg("--root")
        .arg(root)
        .arg("--config")
        .arg(cfg)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn first_apply_then_change_with_and_without_systemd() {
    let t = make_root();
    let d = tempfile::tempdir().unwrap();
    let a = write_mc(
        d.path(),
        &mc(
            "rendered-worker-a",
            vec![file("/etc/chrony.conf", "pool a\n", 0o644)],
        ),
    );
    let (code, out, err) = apply(t.path(), &a, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("first apply of rendered-worker-a"), "{out}");
    assert!(out.contains("done: write /etc/chrony.conf"), "{out}");
    assert_eq!(read(t.path(), "/etc/chrony.conf"), "pool a\n");

    let b = write_mc(
        d.path(),
        &mc(
            "rendered-worker-b",
            vec![file("/etc/chrony.conf", "pool b\n", 0o644)],
        ),
    );
    let before = snapshot(t.path());
    let (code, _, err) = apply(t.path(), &b, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect to the system bus"), "{err}");
    assert_eq!(before, snapshot(t.path()));

    let (code, out, err) = apply(t.path(), &b, &["--no-systemd"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("plan: rendered-worker-a -> rendered-worker-b"),
        "{out}"
    );
    assert!(
        out.contains("skipped: reboot (no systemd (--no-systemd))"),
        "{out}"
    );
    assert!(!out.contains("done: reboot"), "{out}");
    assert_eq!(read(t.path(), "/etc/chrony.conf"), "pool b\n");

    // JSON output.
    let (code, out, _) = apply(t.path(), &b, &["--no-systemd", "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["config"], "rendered-worker-b");
    assert_eq!(v["steps"], serde_json::json!([]));
}

#[test]
fn dry_run_prints_diffs_and_hides_private_files() {
    let t = make_root();
    let d = tempfile::tempdir().unwrap();
    let a = write_mc(
        d.path(),
        &mc("a", vec![file("/etc/x.conf", "one\ntwo\n", 0o644)]),
    );
    assert_eq!(apply(t.path(), &a, &[]).0, 0);
    let b = write_mc(
        d.path(),
        &mc(
            "b",
            vec![
                file("/etc/x.conf", "one\nthree\n", 0o644),
                file("/etc/secret", "hunter2\n", 0o600),
            ],
        ),
    );
    let before = snapshot(t.path());
    let (code, out, err) = apply(t.path(), &b, &["--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(before, snapshot(t.path()));
    assert!(out.contains("would: write /etc/x.conf"), "{out}");
    assert!(
        out.contains("--- a/etc/x.conf\n+++ b/etc/x.conf\n@@ -1,2 +1,2 @@\n one\n-two\n+three\n"),
        "{out}"
    );
    assert!(
        out.contains("(contents hidden: mode 0600 gives no read access to group or others)"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn exit_codes_for_bad_input_and_refused_paths() {
    let t = make_root();
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    assert_eq!(apply(t.path(), &bad, &[]).0, 2);
    let out = write_mc(d.path(), &mc("out", vec![file("/usr/bin/x", "x", 0o755)]));
    let (code, _, err) = apply(t.path(), &out, &["--no-systemd"]);
    assert_eq!(code, 3, "{err}");
    assert!(!exists(t.path(), "/usr/bin/x"));
}
