//! Try mode (`start --confirm-timeout`, the daemon configuration file's `tryMode`) with the real
//! `machine-config-daemon start --no-systemd` on tempdir roots and real health check scripts:
//! a passing check confirms, a failing one reverts the files and degrades the node with the
//! check's output (and the rejected config is not applied again), a hanging check is killed at
//! its timeout, a `kill -9` while pending resumes after the restart, bad values are refused.

mod daemon_common;
use daemon_common::*;
use machine_config_daemon::daemon::state::NodeState;
use machine_config_daemon::model::MachineConfig;
use std::process::Command;

fn config_a() -> MachineConfig {
    mc(
        "rendered-worker-a",
        vec![file("/etc/app.conf", "mode=old\n")],
    )
}

fn config_b() -> MachineConfig {
    mc(
        "rendered-worker-b",
        vec![
            file("/etc/app.conf", "mode=new\n"),
            file("/etc/app.d/extra.conf", "extra\n"),
        ],
    )
}

fn config_c() -> MachineConfig {
    mc("rendered-worker-c", vec![file("/etc/app.conf", "mode=c\n")])
}

/// Installs an executable health check `name` with this shell body beneath the node's root.
fn health_check(node: &Node, name: &str, body: &str) {
    let dir = node.path("/etc/machine-config-daemon/health.d");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    chmod(&p, 0o755);
}

/// A check that fails (with output on both streams) until `<node dir>/ok` exists.
fn gated_check(node: &Node) {
    health_check(
        node,
        "10-app",
        "test -e \"$MCD_ROOT/../ok\" && exit 0\necho \"app is down\"\necho \"see app.log\" >&2\nexit 1",
    );
}

fn ok(node: &Node) {
    std::fs::write(node.dir.path().join("ok"), "").unwrap();
}

/// A node on config A, the daemon started with `args` (and the metrics on a free port).
fn on_a(node: &Node, args: &[&str]) -> (Daemon, String) {
    node.set_desired(&config_a());
    let d = Daemon::start(
        node,
        StartOpts {
            metrics: Some("127.0.0.1:0".into()),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..StartOpts::default()
        },
    );
    let addr = d.metrics_address();
    // The first apply is never on trial (nothing to go back to).
    d.wait_done("rendered-worker-a");
    (d, addr)
}

fn record(node: &Node) -> Option<serde_json::Value> {
    let bytes = std::fs::read(node.path("/etc/machine-config-daemon/try-pending")).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn a_passing_check_confirms_the_update() {
    let node = Node::new();
    health_check(&node, "10-ok", "echo fine");
    let (d, addr) = on_a(&node, &["--confirm-timeout", "10m"]);
    node.set_desired(&config_b());
    let st = d.wait_done("rendered-worker-b");
    assert_eq!(node.read("/etc/app.conf"), "mode=new\n");
    let log = d.wait_log("try mode: rendered-worker-b confirmed", 1);
    assert!(
        log.contains("try mode: rendered-worker-b on trial: the checks must pass within 10m or it is reverted to rendered-worker-a"),
        "{log}"
    );
    // Without systemd its check is skipped, and said so, never passed.
    assert!(
        log.contains("health check systemd: skipped (no systemd (--no-systemd))"),
        "{log}"
    );
    assert!(log.contains("health check health.d/10-ok: passed"), "{log}");
    let t = st.try_mode.expect("try mode in the status");
    assert_eq!(t.confirm_timeout, "10m");
    assert_eq!(t.checks, "systemd (skipped: --no-systemd), 1 in health.d");
    assert!(t.trial.is_none(), "{t:?}");
    assert_eq!(
        st.last_outcome.as_deref(),
        Some("applied rendered-worker-b; confirmed by the health checks")
    );
    assert!(
        record(&node).is_none(),
        "the journal is gone once confirmed"
    );
    assert_eq!(metric(&addr, "mcd_try_confirmations_total"), Some(1.0));
    assert_eq!(metric(&addr, "mcd_try_reverts_total"), Some(0.0));
}

#[test]
fn a_failing_check_reverts_the_files_and_degrades_with_its_output() {
    let node = Node::new();
    gated_check(&node);
    let (d, addr) = on_a(&node, &["--confirm-timeout", "1s"]);
    node.set_desired(&config_b());
    let reason = d.wait_degraded();
    assert_eq!(
        reason,
        "try mode: rendered-worker-b reverted to rendered-worker-a: health.d/10-app: exit status: 1: app is down\nsee app.log; not applied again until the desired config changes"
    );
    // The files are back, the one the update added is gone, the stored config is A.
    assert_eq!(node.read("/etc/app.conf"), "mode=old\n");
    assert!(!node.exists("/etc/app.d/extra.conf"));
    assert_eq!(
        node.current_config_name().as_deref(),
        Some("rendered-worker-a")
    );
    let st = node.status().unwrap();
    assert_eq!(st.current_config, "rendered-worker-a");
    assert_eq!(st.desired_config, "rendered-worker-b");
    let t = st.try_mode.unwrap();
    assert_eq!(t.trial.as_ref().unwrap().to, "rendered-worker-b");
    assert!(
        t.last_checks
            .iter()
            .any(|c| c == "health.d/10-app: failed: exit status: 1: app is down\nsee app.log"),
        "{t:?}"
    );
    assert_eq!(metric(&addr, "mcd_try_reverts_total"), Some(1.0));
    // `status` says so.
    let text = node.status_text();
    assert!(
        text.contains(
            "try mode: confirm within 1s (checks: systemd (skipped: --no-systemd), 1 in health.d)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "  try mode: rendered-worker-b reverted to rendered-worker-a: health.d/10-app"
        ),
        "{text}"
    );

    // The same desired config again: not re-applied.
    node.set_desired(&config_b());
    d.wait_log(
        "try mode: rendered-worker-b was reverted: not applying it again",
        1,
    );
    assert_eq!(node.read("/etc/app.conf"), "mode=old\n");
    assert_eq!(d.wait_degraded(), reason);

    // Another desired config is applied (on trial), and confirmed once the check passes.
    ok(&node);
    node.set_desired(&config_c());
    d.wait_done("rendered-worker-c");
    assert_eq!(node.read("/etc/app.conf"), "mode=c\n");
    assert!(record(&node).is_none());
}

#[test]
fn a_hanging_check_is_killed_at_its_timeout() {
    let node = Node::new();
    let pid_file = node.dir.path().join("sleeper.pid");
    health_check(
        &node,
        "20-hang",
        &format!(
            "echo started\nsleep 1000 &\necho $! > {}\nwait",
            pid_file.display()
        ),
    );
    node.set_daemon_config("tryMode:\n  confirmTimeout: 1s\n  checkTimeout: 300ms\n");
    let (d, _) = on_a(&node, &[]);
    node.set_desired(&config_b());
    let reason = d.wait_degraded();
    assert!(
        reason.contains("health.d/20-hang: timed out after 300ms, killed: started"),
        "{reason}"
    );
    assert_eq!(node.read("/etc/app.conf"), "mode=old\n");
    // The whole process group went: the shell's child too.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // It may linger as a zombie of init for a moment, never as a sleeping process.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = state
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z'));
    assert!(!running, "the check's child still runs: {state}");
}

/// A check runs beside the event loop, not in it: while one hangs (its timeout far off), the
/// daemon still answers a signal at once.
#[test]
fn a_running_check_does_not_hold_the_daemon() {
    let node = Node::new();
    let started = node.dir.path().join("started");
    health_check(
        &node,
        "20-slow",
        &format!("touch {}\nexec sleep 1000", started.display()),
    );
    node.set_daemon_config("tryMode:\n  confirmTimeout: 1h\n  checkTimeout: 30m\n");
    let (mut d, _) = on_a(&node, &[]);
    node.set_desired(&config_b());
    d.wait_log("try mode: rendered-worker-b", 1);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started.exists() {
        assert!(std::time::Instant::now() < end, "the check never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    d.signal(libc::SIGTERM);
    // The check would hold a daemon that ran it inline for 30 minutes.
    let status = d.wait_exit(std::time::Duration::from_secs(60));
    assert!(
        status.is_some(),
        "the daemon did not stop while a check ran"
    );
    d.wait_log("SIGTERM: stopping", 1);
}

#[test]
fn a_crash_while_pending_resumes_after_the_restart() {
    let node = Node::new();
    gated_check(&node);
    node.set_daemon_config("tryMode:\n  confirmTimeout: 1h\n  checkInterval: 200ms\n");
    let (mut d, _) = on_a(&node, &[]);
    node.set_desired(&config_b());
    let st = d.wait("pending confirmation", |s| {
        s.state == NodeState::Working && s.reason.contains("pending confirmation")
    });
    assert_eq!(st.current_config, "rendered-worker-b");
    d.wait_log("health check health.d/10-app: failed", 1);
    let before = record(&node).expect("the journal");
    assert_eq!(before["phase"], "Checking");
    assert_eq!(before["from"], "rendered-worker-a");
    assert_eq!(before["to"], "rendered-worker-b");
    d.signal(libc::SIGKILL);
    d.wait_exit(DEADLINE).unwrap();
    drop(d);

    let d = Daemon::start(&node, StartOpts::default());
    let log = d.wait_log("try mode: resuming", 1);
    assert!(
        log.contains("try mode: resuming: try mode: rendered-worker-b pending confirmation"),
        "{log}"
    );
    // Still on trial with the same deadline (the time left, not a new hour).
    let st = d.wait("pending after the restart", |s| {
        s.state == NodeState::Working && s.reason.contains("pending confirmation")
    });
    assert_eq!(st.current_config, "rendered-worker-b");
    assert_eq!(record(&node).unwrap()["deadlineMs"], before["deadlineMs"]);
    ok(&node);
    d.wait_done("rendered-worker-b");
    assert!(record(&node).is_none());
    assert_eq!(node.read("/etc/app.conf"), "mode=new\n");
}

#[test]
fn bad_values_are_refused_with_exit_2_naming_the_field() {
    let node = Node::new();
    node.set_desired(&config_a());
    let before = node.snapshot();
    let start = |extra: &[&str]| {
        Command::new(BIN)
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
            .args(extra)
            .output()
            .unwrap()
    };
    let out = start(&["--confirm-timeout", "0s"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--confirm-timeout 0s: expected a duration from 1s to 24h"),
        "{err}"
    );
    let out = start(&["--confirm-timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2));

    let cfg = node.dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "tryMode:\n  confirmTimeout: soon\n  checkInterval: 2h\n  confirm: 5m\n",
    )
    .unwrap();
    let out = start(&["--daemon-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let origin = cfg.display();
    for line in [
        format!("error: {origin}: tryMode.confirmTimeout: \"soon\": expected number at 0"),
        format!(
            "error: {origin}: tryMode.checkInterval: \"2h\": expected a duration from 100ms to 1h"
        ),
        format!(
            "error: {origin}: tryMode.confirm: unknown field (expected confirmTimeout, checkInterval or checkTimeout)"
        ),
    ] {
        assert!(err.lines().any(|l| l == line), "{line}\nin:\n{err}");
    }
    assert_eq!(node.snapshot(), before, "nothing changed");
}

#[test]
fn plan_shows_try_mode() {
    let node = Node::new();
    health_check(&node, "10-a", "true");
    health_check(&node, "20-b", "true");
    let dir = node.dir.path();
    std::fs::write(dir.join("a.json"), config_bytes(&config_a())).unwrap();
    std::fs::write(dir.join("b.json"), config_bytes(&config_b())).unwrap();
    let plan = |extra: &[&str]| {
        let out = Command::new(BIN)
            .arg("plan")
            .arg("--from")
            .arg(dir.join("a.json"))
            .arg("--to")
            .arg(dir.join("b.json"))
            .arg("--root")
            .arg(&node.root)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let text = plan(&["--confirm-timeout", "5m"]);
    assert!(
        text.contains(
            "try mode: confirm within 5m (checks: systemd, 2 in health.d), else revert to rendered-worker-a"
        ),
        "{text}"
    );
    // Off: no line.
    assert!(!plan(&[]).contains("try mode"));
    // From the daemon configuration file beneath the root, in JSON.
    node.set_daemon_config("tryMode:\n  confirmTimeout: 90s\n");
    let v: serde_json::Value = serde_json::from_str(&plan(&["-o", "json"])).unwrap();
    assert_eq!(v["tryMode"]["confirmTimeout"], "1m 30s");
    assert_eq!(v["tryMode"]["checks"], "systemd, 2 in health.d");
    assert_eq!(v["tryMode"]["revertTo"], "rendered-worker-a");
}
