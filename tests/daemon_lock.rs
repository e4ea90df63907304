//! One daemon per node: the lock on the state directory, held by `start` and `apply`, seen by
//! `status`; `force` on a root without state; an empty desired-config directory. The real
//! binary against tempdir roots; every wait is bounded and sleeps on inotify or a pipe.

mod daemon_common;
use daemon_common::*;
use machine_config_daemon::daemon::state::NodeState;
use std::io::BufRead;
use std::process::{Command, Output, Stdio};

fn config(name: &str, body: &str) -> machine_config_daemon::model::MachineConfig {
    mc(name, vec![file("/etc/app.conf", body)])
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

/// [`run`] for a command that should exit at once: killed (and the test failed) if it is
/// still running after [`DEADLINE`].
fn run_exiting(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out,
        Err(_) => {
            // SAFETY: kill(2) on our own child, not yet reaped (the thread still waits on it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{args:?} still running after {DEADLINE:?}");
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn held_by(pid: i32) -> String {
    format!(
        "error: another machine-config-daemon (pid {pid}) holds /etc/machine-config-daemon/lock\n"
    )
}

fn root_arg(node: &Node) -> &str {
    node.root.to_str().unwrap()
}

#[test]
fn a_second_start_on_the_same_root_fails_at_once() {
    let node = Node::new();
    node.set_desired(&config("rendered-worker-a", "a\n"));
    let first = Daemon::start(&node, StartOpts::default());
    first.wait_done("rendered-worker-a");
    assert_eq!(
        node.read("/etc/machine-config-daemon/lock"),
        format!("{}\n", first.pid())
    );

    let second = run_exiting(&[
        "start",
        "--root",
        root_arg(&node),
        "--desired-config",
        node.desired.to_str().unwrap(),
        "--no-systemd",
        "--metrics-address",
        "none",
    ]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second.stderr));
    assert_eq!(text(&second.stderr), held_by(first.pid()));
    // The first one is still the holder, and still running.
    assert_eq!(
        node.read("/etc/machine-config-daemon/lock"),
        format!("{}\n", first.pid())
    );
    let status = run(&["status", "--root", root_arg(&node)]);
    assert!(
        text(&status.stdout).contains(&format!("daemon: running (pid {})", first.pid())),
        "{}",
        text(&status.stdout)
    );
}

#[test]
fn apply_fails_while_the_daemon_runs_and_apply_wait_waits_for_it() {
    let node = Node::new();
    node.set_desired(&config("rendered-worker-a", "a\n"));
    let mut daemon = Daemon::start(&node, StartOpts::default());
    daemon.wait_done("rendered-worker-a");
    let b = node.dir.path().join("b.json");
    std::fs::write(&b, config_bytes(&config("rendered-worker-b", "b\n"))).unwrap();
    let apply_args = [
        "apply",
        "--root",
        root_arg(&node),
        "--config",
        b.to_str().unwrap(),
        "--no-systemd",
    ];

    let out = run(&apply_args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(text(&out.stderr), held_by(daemon.pid()));
    assert_eq!(node.read("/etc/app.conf"), "a\n");
    assert_eq!(
        node.current_config_name().as_deref(),
        Some("rendered-worker-a")
    );

    // A dry run takes no lock.
    let dry = run(&[&apply_args[..], &["--dry-run"]].concat());
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));

    // --wait: says whom it waits for, then applies once the daemon has stopped.
    let mut waiting = Command::new(BIN)
        .args(apply_args)
        .arg("--wait")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(waiting.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line,
        format!(
            "waiting for /etc/machine-config-daemon/lock, held by machine-config-daemon pid {}\n",
            daemon.pid()
        )
    );
    assert_eq!(node.read("/etc/app.conf"), "a\n");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(DEADLINE).is_some(), "{}", daemon.log());
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(node.read("/etc/app.conf"), "b\n");
    assert_eq!(
        node.current_config_name().as_deref(),
        Some("rendered-worker-b")
    );
}

#[test]
fn a_killed_holder_leaves_the_lock_free() {
    let node = Node::new();
    node.set_desired(&config("rendered-worker-a", "a\n"));
    let mut daemon = Daemon::start(&node, StartOpts::default());
    daemon.wait_done("rendered-worker-a");
    let pid = daemon.pid();
    daemon.signal(libc::SIGKILL);
    assert!(daemon.wait_exit(DEADLINE).is_some());
    // The file still names the dead holder; the lock itself went with it.
    assert_eq!(
        node.read("/etc/machine-config-daemon/lock"),
        format!("{pid}\n")
    );
    let status = run(&["status", "--root", root_arg(&node), "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        v["daemon"],
        serde_json::json!({"running": false, "pid": null})
    );
    assert_eq!(v["state"], "Done", "the last status written, said as such");

    let b = node.dir.path().join("b.json");
    std::fs::write(&b, config_bytes(&config("rendered-worker-b", "b\n"))).unwrap();
    let out = run(&[
        "apply",
        "--root",
        root_arg(&node),
        "--config",
        b.to_str().unwrap(),
        "--no-systemd",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(node.read("/etc/app.conf"), "b\n");

    // And a new daemon starts.
    node.set_desired(&config("rendered-worker-c", "c\n"));
    let again = Daemon::start(&node, StartOpts::default());
    again.wait_done("rendered-worker-c");
}

#[test]
fn status_says_whether_a_daemon_runs_and_when_it_wrote() {
    let node = Node::new();
    node.set_desired(&config("rendered-worker-a", "a\n"));
    let mut daemon = Daemon::start(&node, StartOpts::default());
    daemon.wait_done("rendered-worker-a");
    let out = run(&["status", "--root", root_arg(&node), "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["daemon"],
        serde_json::json!({"running": true, "pid": daemon.pid()})
    );
    let written = v["statusWritten"].as_str().unwrap().to_string();
    let mtime = std::fs::metadata(node.root.join(STATUS))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        written,
        humantime::format_rfc3339_seconds(mtime).to_string()
    );
    let out = run(&["status", "--root", root_arg(&node)]);
    let t = text(&out.stdout);
    assert!(t.contains(&format!("status written: {written} (")), "{t}");

    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(DEADLINE).is_some());
    let out = run(&["status", "--root", root_arg(&node)]);
    let t = text(&out.stdout);
    assert!(
        t.contains("daemon: not running (the status below is the last one written)"),
        "{t}"
    );
}

#[test]
fn status_wait_for_returns_once_the_daemon_has_written_the_state() {
    let node = Node::new();
    node.set_desired(&config("rendered-worker-a", "a\n"));
    let daemon = Daemon::start(&node, StartOpts::default());
    let r = root_arg(&node);
    // From the start (the daemon may not have written anything yet).
    let out = run(&[
        "status",
        "--root",
        r,
        "--wait-for",
        "Done",
        "--current-config",
        "rendered-worker-a",
        "--timeout",
        "10s",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stderr),
        daemon.log()
    );
    std::fs::write(node.path("/etc/app.conf"), "oops\n").unwrap();
    let out = run(&[
        "status",
        "--root",
        r,
        "--wait-for",
        "degraded",
        "--timeout",
        "10s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains("Degraded") && t.contains("content mismatch for file \"/etc/app.conf\""),
        "{t}"
    );
    // A state that does not come: the last status, then exit code 1.
    let out = run(&[
        "status",
        "--root",
        r,
        "--wait-for",
        "Unreconcilable",
        "--timeout",
        "100ms",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "Degraded");
    assert_eq!(
        text(&out.stderr),
        "error: timed out after 100ms: the node is Degraded on rendered-worker-a, not Unreconcilable\n"
    );
}

#[test]
fn force_refuses_a_root_without_state_and_creates_nothing() {
    let base = tempfile::tempdir().unwrap();
    let deep = base.path().join("nonexistent/deeper/root");
    let out = run(&["force", "--root", deep.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).starts_with("error: open root "),
        "{}",
        text(&out.stderr)
    );
    assert!(!base.path().join("nonexistent").exists());

    // A root, but the daemon never ran there.
    let out = run(&["force", "--root", base.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains(
            "no machine-config-daemon state directory /etc/machine-config-daemon under this root"
        ),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);

    std::fs::create_dir_all(base.path().join("etc/machine-config-daemon")).unwrap();
    let out = run(&["force", "--root", base.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        base.path()
            .join("run/machine-config-daemon-force")
            .is_file()
    );
}

#[test]
fn an_empty_desired_directory_is_done_on_no_config() {
    let mut node = Node::new();
    node.desired = node.dir.path().join("desired.d");
    std::fs::create_dir(&node.desired).unwrap();
    let daemon = Daemon::start(&node, StartOpts::default());
    // The first status the daemon writes.
    let st = daemon.wait("a first status", |_| true);
    assert_eq!(st.state, NodeState::Done, "{st:#?}\n{}", daemon.log());
    assert_eq!(st.current_config, "");
    assert_eq!(st.reason, "");
    assert_eq!(st.desired_config, "");
    assert!(!node.exists("/etc/machine-config-daemon/currentconfig"));
    assert!(
        daemon.log().contains("nothing to apply"),
        "{}",
        daemon.log()
    );

    // A MachineConfig put there later is rendered and applied.
    replace(
        &node.desired.join("50-app.json"),
        &config_bytes(&config("50-app", "a\n")),
    );
    let st = daemon.wait("Done on a rendered config", |s| {
        s.state == NodeState::Done && s.current_config.starts_with("rendered-worker-")
    });
    assert_eq!(node.read("/etc/app.conf"), "a\n", "{st:#?}");
}
