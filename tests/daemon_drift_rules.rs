//! The drift rules of the daemon configuration file (`degrade`, `report`, `heal`), with the real
//! `machine-config-daemon start --no-systemd` on tempdir roots and real inotify: what an
//! operator sees (status, files, log, metrics) for each action, the heal budget, and a bad file
//! refused before anything happens.

mod daemon_common;
use daemon_common::*;
use machine_config_daemon::daemon::state::NodeState;
use machine_config_daemon::model::{Dropin, MachineConfig, Unit};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// Not valid UTF-8, and no final newline: the heal must restore these bytes exactly.
const CHRONY: &[u8] = b"server ntp1.example.com iburst\n\xff\xfe binary tail";
const DROPIN: &str = "[Service]\nEnvironment=OPTIONS=-x\n";
const DROPIN_PATH: &str = "/etc/systemd/system/chronyd.service.d/10-options.conf";

fn config() -> MachineConfig {
    let mut m = mc(
        "rendered-worker-a",
        vec![
            file_bytes("/etc/chrony.conf", CHRONY.to_vec(), 0o640),
            file("/etc/motd", "welcome\n"),
            file("/etc/x", "x\n"),
        ],
    );
    m.spec.config.units.push(Unit {
        name: "chronyd.service".into(),
        dropins: vec![Dropin {
            name: "10-options.conf".into(),
            contents: Some(DROPIN.into()),
        }],
        ..Unit::default()
    });
    m
}

/// chrony.conf reloads chronyd; the chronyd unit restarts it; /etc/x matches nothing (reboot).
const POLICY: &str = "apiVersion: operator.openshift.io/v1
kind: MachineConfiguration
metadata:
  name: cluster
spec:
  nodeDisruptionPolicy:
    files:
      - path: /etc/chrony.conf
        actions:
          - type: Reload
            reload:
              serviceName: chronyd.service
      - path: /etc/motd
        actions:
          - type: None
    units:
      - name: chronyd.service
        actions:
          - type: Restart
            restart:
              serviceName: chronyd.service
";

const RULES: &str = "drift:
  rules:
    - paths: [\"/etc/chrony.conf\", \"/etc/systemd/system/*.service.d/*\"]
      action: heal
    - paths: [\"/etc/motd\"]
      action: report
    - paths: [\"/etc/x*\"]
      action: degrade
  heal:
    maxHeals: 2
    window: 1h
";

/// A node on `config()` with the policy and `rules` at the default daemon configuration path
/// (found there without a flag), Done; the metrics on a free port.
fn running(rules: &str) -> (Node, Daemon, String) {
    let node = Node::new();
    node.set_desired(&config());
    std::fs::write(&node.policy, POLICY).unwrap();
    node.set_daemon_config(rules);
    let d = Daemon::start(
        &node,
        StartOpts {
            policy: true,
            metrics: Some("127.0.0.1:0".into()),
            ..StartOpts::default()
        },
    );
    let addr = d.metrics_address();
    d.wait_done("rendered-worker-a");
    (node, d, addr)
}

/// Edits a managed file by hand (in place, as `>>` or an editor without rename does).
fn edit(node: &Node, p: &str, contents: &[u8]) {
    std::fs::write(node.path(p), contents).unwrap();
}

fn mode(node: &Node, p: &str) -> u32 {
    std::fs::metadata(node.path(p))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn report_keeps_the_node_done_and_lists_the_drift() {
    let (node, d, addr) = running(RULES);
    edit(&node, "/etc/motd", b"edited by hand\n");
    let st = d.wait("the reported drift", |s| !s.drift_reported.is_empty());
    assert_eq!(st.state, NodeState::Done);
    assert_eq!(st.reason, "");
    assert_eq!(
        st.drift_reported,
        ["content mismatch for file \"/etc/motd\""]
    );
    // Reported, not touched.
    assert_eq!(node.read("/etc/motd"), "edited by hand\n");
    assert!(
        d.log()
            .contains("configuration drift (reported; the node stays Done): content mismatch for file \"/etc/motd\""),
        "{}",
        d.log()
    );
    assert_eq!(
        metric(&addr, "mcd_drift_total{action=\"report\"}"),
        Some(1.0)
    );
    assert!(metric(&addr, "mcd_config_drift").unwrap() > 0.0);
    // `status` shows it, and the rules.
    let text = node.status_text();
    assert!(
        text.contains(
            "drift reported (the node stays Done): content mismatch for file \"/etc/motd\""
        ),
        "{text}"
    );
    assert!(text.contains("  /etc/motd -> report"), "{text}");
    assert!(text.contains("  any other path -> degrade"), "{text}");
    assert!(
        text.contains("  heal: at most 2 heals of one path within 1h, then degrade"),
        "{text}"
    );

    // Restored: the report goes away.
    edit(&node, "/etc/motd", b"welcome\n");
    let st = d.wait("no reported drift", |s| s.drift_reported.is_empty());
    assert_eq!(st.state, NodeState::Done);

    // A path a `degrade` rule matches: upstream's behaviour and exact reason.
    edit(&node, "/etc/x", b"y\n");
    assert_eq!(d.wait_degraded(), "content mismatch for file \"/etc/x\"");
    assert_eq!(
        metric(&addr, "mcd_drift_total{action=\"degrade\"}"),
        Some(1.0)
    );
}

#[test]
fn heal_rewrites_the_file_byte_exact_and_runs_the_policy_action() {
    let (node, d, addr) = running(RULES);
    edit(&node, "/etc/chrony.conf", b"server evil.example.com\n");
    chmod(&node.path("/etc/chrony.conf"), 0o666);
    let log = d.wait_log("drift healed: /etc/chrony.conf", 1);
    assert_eq!(
        std::fs::read(node.path("/etc/chrony.conf")).unwrap(),
        CHRONY
    );
    assert_eq!(mode(&node, "/etc/chrony.conf"), 0o640);
    // The policy's action for the path, skipped (and said so) without systemd.
    assert!(
        log.contains("heal of /etc/chrony.conf: post action reload chronyd.service: skipped (no systemd (--no-systemd))"),
        "{log}"
    );
    // Written through the update's transaction, logged like an update's writes.
    assert!(
        log.contains("/etc/chrony.conf written for rendered-worker-a"),
        "{log}"
    );

    // A dropin, matched by a glob, deleted: recreated, then the unit's policy entry, with the
    // daemon-reload its definition change needs first.
    std::fs::remove_file(node.path(DROPIN_PATH)).unwrap();
    let log = d.wait_log(&format!("drift healed: {DROPIN_PATH}"), 1);
    assert_eq!(node.read(DROPIN_PATH), DROPIN);
    let dr = log
        .find(&format!(
            "heal of {DROPIN_PATH}: post action daemon-reload: skipped"
        ))
        .expect("daemon-reload");
    let rs = log
        .find(&format!(
            "heal of {DROPIN_PATH}: post action restart chronyd.service: skipped"
        ))
        .expect("restart");
    assert!(dr < rs, "{log}");

    // The daemon's own writes are not drift: a later change (reported) is seen after their
    // events, and by then nothing was healed again.
    edit(&node, "/etc/motd", b"later\n");
    let st = d.wait("the reported drift", |s| !s.drift_reported.is_empty());
    assert_eq!(st.state, NodeState::Done);
    let log = d.log();
    assert_eq!(log.matches("drift healed:").count(), 2, "{log}");
    assert!(!log.contains("-> Degraded"), "never degraded:\n{log}");
    assert_eq!(
        metric(&addr, "mcd_drift_heals_total{result=\"healed\"}"),
        Some(2.0)
    );
    assert_eq!(metric(&addr, "mcd_drift_total{action=\"heal\"}"), Some(2.0));
}

#[test]
fn heal_budget_exhausted_degrades_naming_the_path_and_the_count() {
    let (node, d, addr) = running(RULES);
    for i in 1..=2 {
        edit(&node, "/etc/chrony.conf", format!("edit {i}\n").as_bytes());
        d.wait_log("drift healed: /etc/chrony.conf", i);
        assert_eq!(
            std::fs::read(node.path("/etc/chrony.conf")).unwrap(),
            CHRONY
        );
    }
    // The third within the hour: not healed.
    edit(&node, "/etc/chrony.conf", b"edit 3\n");
    let reason = d.wait_degraded();
    assert_eq!(
        reason,
        "content mismatch for file \"/etc/chrony.conf\"; not healed: \"/etc/chrony.conf\" was healed 2 times within 1h, the most drift.heal.maxHeals allows"
    );
    assert_eq!(node.read("/etc/chrony.conf"), "edit 3\n");
    assert_eq!(
        metric(&addr, "mcd_drift_heals_total{result=\"exhausted\"}"),
        Some(1.0)
    );
    // An administrator restores it: Done again.
    std::fs::write(node.path("/etc/chrony.conf"), CHRONY).unwrap();
    d.wait_done("rendered-worker-a");
}

#[test]
fn heal_that_the_policy_would_reboot_for_degrades_instead() {
    // /etc/x matches no policy entry: an update would reboot for it, so it is not healed.
    let rules = "drift:\n  rules:\n    - paths: [\"/etc/*\"]\n      action: heal\n";
    let (node, d, addr) = running(rules);
    edit(&node, "/etc/x", b"y\n");
    let reason = d.wait_degraded();
    assert!(
        reason.starts_with("content mismatch for file \"/etc/x\"; not healed: the node disruption policy asks for a reboot for /etc/x"),
        "{reason}"
    );
    assert_eq!(node.read("/etc/x"), "y\n");
    assert_eq!(
        metric(&addr, "mcd_drift_heals_total{result=\"refused\"}"),
        Some(1.0)
    );
}

#[test]
fn without_a_daemon_config_drift_degrades_with_the_spec_reason() {
    let node = Node::new();
    node.set_desired(&config());
    let d = Daemon::start(&node, StartOpts::default());
    d.wait_done("rendered-worker-a");
    let st = node.status().unwrap();
    let rules = st.drift.expect("the rules in effect");
    assert!(rules.rules.is_empty() && rules.source.is_none());
    edit(&node, "/etc/chrony.conf", b"edited\n");
    assert_eq!(
        d.wait_degraded(),
        "content mismatch for file \"/etc/chrony.conf\""
    );
    assert_eq!(node.read("/etc/chrony.conf"), "edited\n");
}

#[test]
fn bad_daemon_config_is_refused_with_exit_2_naming_the_field() {
    let node = Node::new();
    node.set_desired(&config());
    let cfg = node.dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "drift:\n  rules:\n    - paths: [\"/etc/[x\"]\n      action: heal\n    - paths: [\"/etc/y\"]\n      action: fix\n  heal:\n    maxHeals: 0\n    window: 1h\n  extra: true\n",
    )
    .unwrap();
    let before = node.snapshot();
    let out = Command::new(BIN)
        .args([
            "start",
            "--no-systemd",
            "--metrics-address",
            "none",
            "--root",
        ])
        .arg(&node.root)
        .arg("--desired-config")
        .arg(&node.desired)
        .arg("--daemon-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let origin = cfg.display();
    for line in [
        format!(
            "error: {origin}: drift.rules[0].paths[0]: invalid glob \"/etc/[x\": unclosed character class; missing ']'"
        ),
        format!(
            "error: {origin}: drift.rules[1].action: unknown action \"fix\" (expected degrade, report or heal)"
        ),
        format!("error: {origin}: drift.heal.maxHeals: 0: expected a whole number from 1 to 1000"),
        format!("error: {origin}: drift.extra: unknown field (expected rules or heal)"),
    ] {
        assert!(err.lines().any(|l| l == line), "{line}\nin:\n{err}");
    }
    assert_eq!(node.snapshot(), before, "nothing changed");

    // `validate` reads it the same way.
    let out = Command::new(BIN)
        .args(["validate", "--daemon-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr), err);

    // A file larger than the bound.
    std::fs::write(&cfg, vec![b'#'; 2 << 20]).unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--daemon-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("larger than 1024 KiB"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A FIFO in its place (no writer): refused at once, not waited on.
    std::fs::remove_file(&cfg).unwrap();
    let c = std::ffi::CString::new(cfg.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let out = Command::new(BIN)
        .args(["validate", "--daemon-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a regular file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plan_and_validate_show_what_drift_would_do() {
    let node = Node::new();
    let dir = node.dir.path();
    let (old, new) = (dir.join("old.json"), dir.join("new.json"));
    std::fs::write(&old, config_bytes(&mc("rendered-worker-0", vec![]))).unwrap();
    std::fs::write(&new, config_bytes(&config())).unwrap();
    std::fs::write(&node.policy, POLICY).unwrap();
    let rules = dir.join("config.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let plan = |extra: &[&str]| {
        let out = Command::new(BIN)
            .arg("plan")
            .arg("--from")
            .arg(&old)
            .arg("--to")
            .arg(&new)
            .arg("--policy")
            .arg(&node.policy)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = plan(&["--daemon-config", rules.to_str().unwrap()]);
    let section = &text[text.find("\ndrift rules").expect(&text)..];
    let want = format!(
        "
drift rules ({}):
  /etc/chrony.conf, /etc/systemd/system/*.service.d/* -> heal
  /etc/motd -> report
  /etc/x* -> degrade
  any other path -> degrade
  heal: at most 2 heals of one path within 1h, then degrade
drift of the managed paths of the new config:
  /etc/chrony.conf: heal: rewrite, then Reload chronyd.service
  /etc/motd: report
  /etc/x: degrade
  {DROPIN_PATH}: heal: rewrite, then DaemonReload, Restart chronyd.service
",
        rules.display()
    );
    assert_eq!(section, want);
    // Without a daemon configuration, no drift section.
    assert!(!plan(&[]).contains("drift"));
    // With --root, the root's daemon configuration file is found.
    let cfg = node.set_daemon_config(RULES);
    let text = plan(&["--root", node.root.to_str().unwrap()]);
    assert!(
        text.contains(&format!("\ndrift rules ({}):\n", cfg.display())),
        "{text}"
    );
    assert!(text.contains("  /etc/motd: report\n"), "{text}");
    // JSON: the same under `drift`.
    let json: serde_json::Value = serde_json::from_str(&plan(&[
        "--daemon-config",
        rules.to_str().unwrap(),
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(json["drift"]["default"], "degrade");
    assert_eq!(json["drift"]["heal"]["maxHeals"], 2);
    assert_eq!(
        json["drift"]["paths"][0],
        serde_json::json!({"path": "/etc/chrony.conf", "action": "heal", "rule": 0,
            "then": [{"type": "Reload", "reload": {"serviceName": "chronyd.service"}}]})
    );

    let out = Command::new(BIN)
        .args(["validate", "-o", "text", "--daemon-config"])
        .arg(&rules)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!(
            "{}: valid daemon configuration\n",
            rules.display()
        )),
        "{text}"
    );
    assert!(text.contains("  /etc/motd -> report\n"), "{text}");
}

#[test]
fn reported_drift_does_not_hold_back_an_update_and_is_reported_after_it() {
    let (node, d, _) = running(RULES);
    edit(&node, "/etc/motd", b"edited by hand\n");
    d.wait("the reported drift", |s| !s.drift_reported.is_empty());
    // A new config changing another path: applied over the reported drift.
    let mut next = config();
    next.name = "rendered-worker-b".into();
    next.spec.config.files[0] = file_bytes("/etc/chrony.conf", b"server ntp2\n".to_vec(), 0o640);
    node.set_desired(&next);
    let st = d.wait_done("rendered-worker-b");
    assert_eq!(node.read("/etc/chrony.conf"), "server ntp2\n");
    // The reported path was left alone, and is still reported against the new config.
    assert_eq!(node.read("/etc/motd"), "edited by hand\n");
    assert_eq!(
        st.drift_reported,
        ["content mismatch for file \"/etc/motd\""]
    );
}

#[test]
fn heal_that_cannot_rewrite_the_path_degrades_saying_why() {
    let rules = "drift:\n  rules:\n    - paths: [\"/etc/motd\"]\n      action: heal\n";
    let (node, d, addr) = running(rules);
    // A directory where the file should be: the transaction refuses to replace it. The two are
    // swapped in one step (RENAME_EXCHANGE), so the daemon never sees the path missing, which
    // it would heal before the directory appeared.
    let aside = node.path("/etc/motd.aside");
    std::fs::create_dir(&aside).unwrap();
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        &aside,
        rustix::fs::CWD,
        node.path("/etc/motd"),
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .unwrap();
    std::fs::remove_file(&aside).unwrap();
    let reason = d.wait_degraded();
    assert!(
        reason.starts_with(
            "mode mismatch for file: \"/etc/motd\"; expected: -rw-r--r--/420/0644; received: d"
        ) && reason.contains(
            "; not healed: rewriting it failed: /etc/motd: is a directory or a special file"
        ),
        "{reason}"
    );
    assert!(node.path("/etc/motd").is_dir());
    assert_eq!(
        metric(&addr, "mcd_drift_heals_total{result=\"failed\"}"),
        Some(1.0)
    );
    // Removed by hand: the next drift (missing) is healed.
    std::fs::remove_dir(node.path("/etc/motd")).unwrap();
    d.wait_log("drift healed: /etc/motd", 1);
    assert_eq!(node.read("/etc/motd"), "welcome\n");
    d.wait_done("rendered-worker-a");
}
