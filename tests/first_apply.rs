//! The first apply checks what every update checks, and says what it does not apply:
//! install-time sections are accepted and reported one line per field (command output, status,
//! log), never silently dropped; the same item rules refuse the same configs in `validate`,
//! `plan` and `apply` (bad input, exit code 2).

mod daemon_common;
use daemon_common::*;
use serde_json::json;
use std::process::{Command, Output};

fn mcd(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("MCD_PROC_CMDLINE", "/nonexistent")
        .output()
        .unwrap()
}

fn config(name: &str, ignition: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": {"name": name},
        "spec": {"config": ignition},
    }))
    .unwrap()
}

fn provisioning() -> serde_json::Value {
    json!({
        "ignition": {"version": "3.4.0"},
        "storage": {
            "disks": [{"device": "/dev/vdb", "wipeTable": true}],
            "links": [{"path": "/etc/localtime", "target": "/usr/share/zoneinfo/UTC"}],
            "files": [{"path": "/etc/app.conf", "contents": {"source": "data:,a%0A"}}]
        },
        "passwd": {
            "users": [{"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 AAAA k"]}, {"name": "alice", "uid": 1001}],
            "groups": [{"name": "admins"}]
        }
    })
}

const NOTES: [&str; 4] = [
    "storage.disks: install-time only, not applied by machine-config-daemon",
    "storage.links: install-time only, not applied by machine-config-daemon",
    "passwd.groups: install-time only, not applied by machine-config-daemon",
    "passwd.users[alice]: install-time only, not applied by machine-config-daemon",
];

#[test]
fn install_time_sections_are_reported_not_dropped() {
    let n = Node::new();
    let path = n.dir.path().join("p.json");
    std::fs::write(&path, config("p", provisioning())).unwrap();
    let root = n.root.to_str().unwrap();
    let p = path.to_str().unwrap();

    let dry = mcd(&[
        "apply",
        "--no-systemd",
        "--dry-run",
        "--root",
        root,
        "--config",
        p,
    ]);
    assert!(dry.status.success(), "{dry:?}");
    let out = String::from_utf8_lossy(&dry.stdout);
    for note in NOTES {
        assert!(
            out.contains(&format!("not applied: {note}\n")),
            "{note}\n{out}"
        );
    }

    let o = mcd(&["apply", "--no-systemd", "--root", root, "--config", p]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    for note in NOTES {
        assert!(
            out.contains(&format!("not applied: {note}\n")),
            "{note}\n{out}"
        );
    }
    assert_eq!(n.read("/etc/app.conf"), "a\n");
    assert!(!n.exists("/etc/localtime"));

    // The daemon's first apply puts them in the status.
    let n2 = Node::new();
    n2.set_desired_raw(&config("p", provisioning()));
    let d = Daemon::start(&n2, StartOpts::default());
    let st = d.wait_done("p");
    assert_eq!(st.not_applied, NOTES.to_vec());
    assert!(d.log().contains(NOTES[3]), "{}", d.log());
    let st = mcd(&["status", "--root", n2.root.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&st.stdout);
    for note in NOTES {
        assert!(
            out.contains(&format!("not applied: {note}\n")),
            "{note}\n{out}"
        );
    }
    assert!(out.contains("host: "), "{out}");
}

#[test]
fn the_same_item_rules_in_validate_plan_and_apply() {
    let n = Node::new();
    let base = n.dir.path().join("base.json");
    std::fs::write(
        &base,
        config("base", json!({"ignition": {"version": "3.4.0"}})),
    )
    .unwrap();
    let cases = [
        (
            json!({"ignition": {"version": "3.4.0"}, "storage": {"files": [
                {"path": "/etc/machine-config-daemon/currentconfig", "contents": {"source": "data:,x"}}]}}),
            "is in the daemon's own state directory /etc/machine-config-daemon",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "systemd": {"units": [
                {"name": "x.service", "mask": true, "contents": "[Service]\nExecStart=/bin/true\n"}]}}),
            "x.service: mask: true with contents",
        ),
    ];
    let root = n.root.to_str().unwrap();
    for (ign, why) in cases {
        let path = n.dir.path().join("bad.json");
        std::fs::write(&path, config("bad", ign)).unwrap();
        let p = path.to_str().unwrap();
        let b = base.to_str().unwrap();
        for (args, code) in [
            (vec!["validate", "--config", p], 2),
            (vec!["plan", "--from", b, "--to", p], 2),
            (
                vec!["apply", "--no-systemd", "--root", root, "--config", p],
                2,
            ),
            (
                vec![
                    "apply",
                    "--no-systemd",
                    "--dry-run",
                    "--root",
                    root,
                    "--config",
                    p,
                ],
                2,
            ),
        ] {
            let o = mcd(&args);
            // `plan` prints the refused plan with its reason on stdout.
            let err = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
            assert!(err.contains(why), "{args:?}: {err}");
        }
        assert!(n.current_config_name().is_none(), "nothing applied");
    }
}
