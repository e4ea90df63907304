//! SIGTERM during an update (SPEC §5: deferred until the update ends): the update completes, the
//! process exits 0, and a second SIGTERM during the update is logged, not obeyed. The update is
//! held at a fail point until the test releases it ([`Hold`]), so the binary must be built with
//! `--features failpoints`.
#![cfg(feature = "failpoints")]

mod daemon_common;
use daemon_common::*;
use machine_config_daemon::daemon::state::NodeState;

#[test]
fn sigterm_during_an_update_waits_for_it_then_exits_0() {
    let node = Node::new();
    node.set_desired(&mc(
        "rendered-worker-a",
        vec![file("/etc/app.conf", "version=a\n"), file("/etc/x", "x\n")],
    ));
    // The first update runs straight through; the second is held after its journal until
    // both signals have been handled.
    let hold = Hold::new(&node, "host::after_journal");
    let mut d = Daemon::start(
        &node,
        StartOpts {
            env: vec![hold.env()],
            ..Default::default()
        },
    );
    d.wait_done("rendered-worker-a");

    hold.arm();
    node.set_desired(&mc(
        "rendered-worker-b",
        vec![file("/etc/app.conf", "version=b\n"), file("/etc/y", "y\n")],
    ));
    d.wait("Working on rendered-worker-b", |s| {
        s.state == NodeState::Working && s.desired_config == "rendered-worker-b"
    });
    let held = hold.held();
    d.signal(libc::SIGTERM);
    d.wait_log("SIGTERM during an update", 1);
    assert!(d.is_running(), "the first SIGTERM must wait for the update");
    d.signal(libc::SIGTERM);
    d.wait_log("SIGTERM during an update", 2);
    assert!(
        d.is_running(),
        "the second SIGTERM must not cut the update short"
    );
    assert_eq!(node.read("/etc/app.conf"), "version=a\n", "still held");
    drop(held);

    let status = d
        .wait_exit(DEADLINE)
        .expect("the daemon exits after the update");
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert_eq!(node.read("/etc/app.conf"), "version=b\n");
    assert_eq!(node.read("/etc/y"), "y\n");
    assert!(
        !node.exists("/etc/x"),
        "the file the new config drops is gone"
    );
    assert_eq!(
        node.current_config_name().as_deref(),
        Some("rendered-worker-b")
    );
    let st = node.status().unwrap();
    assert_eq!(st.state, NodeState::Done);
    assert_eq!(st.current_config, "rendered-worker-b");
    let log = d.log();
    assert_eq!(
        log.matches("SIGTERM during an update").count(),
        2,
        "both signals are logged:\n{log}"
    );
    assert!(log.contains("update applied: rendered-worker-b"), "{log}");
    // Nothing left to recover: the journal is gone.
    assert!(!log.contains("rolled back"), "{log}");
}
