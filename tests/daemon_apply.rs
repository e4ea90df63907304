//! `machine-config-daemon start` (standalone, `--no-systemd`) applying desired configs: the first
//! start, changes of the desired config (by rename and in place), a `None`-policy change, invalid
//! desired configs, an unreconcilable change, and a restart on an up-to-date node. The real
//! binary runs against tempdir roots; every wait is bounded and sleeps on inotify.

mod daemon_common;
use daemon_common::*;
use machine_config_daemon::daemon::state::NodeState;

fn config_a() -> machine_config_daemon::model::MachineConfig {
    mc(
        "rendered-worker-a",
        vec![
            file("/etc/app.conf", "version=a\n"),
            file("/etc/x", "x\n"),
            file("/etc/nested/dir/deep.conf", "deep\n"),
        ],
    )
}

fn config_b() -> machine_config_daemon::model::MachineConfig {
    mc(
        "rendered-worker-b",
        vec![
            file("/etc/app.conf", "version=b\n"),
            file("/etc/x", "x\n"),
            file("/etc/nested/dir/deep.conf", "deep\n"),
        ],
    )
}

#[test]
fn first_start_applies_the_desired_config() {
    let node = Node::new();
    node.set_desired(&config_a());
    let d = Daemon::start(&node, StartOpts::default());
    let st = d.wait_done("rendered-worker-a");
    assert_eq!(st.desired_config, "rendered-worker-a");
    assert_eq!(st.reason, "");
    assert_eq!(node.read("/etc/app.conf"), "version=a\n");
    assert_eq!(node.read("/etc/nested/dir/deep.conf"), "deep\n");
    assert_eq!(node.mode("/etc/x") & 0o7777, 0o644);
    assert_eq!(
        node.current_config_name().as_deref(),
        Some("rendered-worker-a")
    );
    let outcome = st.last_outcome.unwrap_or_default();
    assert!(
        outcome.starts_with("applied rendered-worker-a"),
        "{outcome}"
    );
}

#[test]
fn desired_config_replaced_by_rename_is_applied() {
    let node = Node::new();
    node.set_desired(&config_a());
    let d = Daemon::start(&node, StartOpts::default());
    d.wait_done("rendered-worker-a");
    node.set_desired(&config_b());
    let st = d.wait_done("rendered-worker-b");
    assert_eq!(st.desired_config, "rendered-worker-b");
    assert_eq!(node.read("/etc/app.conf"), "version=b\n");
    assert_eq!(
        node.current_config_name().as_deref(),
        Some("rendered-worker-b")
    );
    // No policy: a file change means a reboot, recorded as skipped without systemd.
    let outcome = st.last_outcome.unwrap_or_default();
    assert!(outcome.contains("reboot (no systemd"), "{outcome}");
}

#[test]
fn desired_config_written_in_place_is_applied() {
    let node = Node::new();
    node.set_desired(&config_a());
    let d = Daemon::start(&node, StartOpts::default());
    d.wait_done("rendered-worker-a");
    node.set_desired_in_place(&config_b());
    d.wait_done("rendered-worker-b");
    assert_eq!(node.read("/etc/app.conf"), "version=b\n");
    assert_eq!(
        node.current_config_name().as_deref(),
        Some("rendered-worker-b")
    );
}

#[test]
fn none_policy_change_is_applied_without_reboot() {
    let node = Node::new();
    node.set_policy_none(&["/etc/app.conf"]);
    node.set_desired(&config_a());
    let d = Daemon::start(
        &node,
        StartOpts {
            policy: true,
            ..Default::default()
        },
    );
    d.wait_done("rendered-worker-a");
    node.set_desired(&config_b());
    let st = d.wait_done("rendered-worker-b");
    assert_eq!(node.read("/etc/app.conf"), "version=b\n");
    let outcome = st.last_outcome.clone().unwrap_or_default();
    assert!(
        outcome.starts_with("applied rendered-worker-b"),
        "{outcome}"
    );
    assert!(!outcome.contains("reboot"), "{outcome}");
    let plan = st.last_plan.expect("the plan of the update is recorded");
    assert!(
        !plan.to_string().contains("Reboot"),
        "the plan has no reboot: {plan}"
    );
    assert!(st.post_config_action.is_none());

    // A change the policy does not cover still asks for a reboot (skipped without systemd).
    let mut c = config_b();
    c.name = "rendered-worker-c".into();
    c.spec.config.files[1] = file("/etc/x", "x changed\n");
    node.set_desired(&c);
    let st = d.wait_done("rendered-worker-c");
    let outcome = st.last_outcome.unwrap_or_default();
    assert!(outcome.contains("reboot (no systemd"), "{outcome}");
}

#[test]
fn invalid_yaml_degrades_writes_nothing_and_fixing_it_applies() {
    let node = Node::new();
    node.set_desired(&config_a());
    let mut d = Daemon::start(&node, StartOpts::default());
    d.wait_done("rendered-worker-a");
    let before = node.snapshot();

    node.set_desired_raw(b"apiVersion: machineconfiguration.openshift.io/v1\nkind: [unclosed\n");
    let reason = d.wait_degraded();
    assert!(
        reason.contains("desired config") && reason.contains("desired.json"),
        "{reason}"
    );
    assert_eq!(before, node.snapshot(), "nothing may be written");
    let st = node.status().unwrap();
    assert_eq!(st.current_config, "rendered-worker-a");
    assert!(d.is_running(), "the daemon keeps running");

    node.set_desired(&config_b());
    d.wait_done("rendered-worker-b");
    assert_eq!(node.read("/etc/app.conf"), "version=b\n");
}

#[test]
fn bad_data_url_on_first_start_degrades_writes_nothing_and_fixing_it_applies() {
    let node = Node::new();
    let bad = r#"apiVersion: machineconfiguration.openshift.io/v1
kind: MachineConfig
metadata:
  name: rendered-worker-bad
spec:
  config:
    ignition:
      version: 3.4.0
    storage:
      files:
        - path: /etc/app.conf
          mode: 420
          contents:
            source: "data:;base64,@@@not-base64@@@"
"#;
    node.set_desired_raw(bad.as_bytes());
    let before = node.snapshot();
    let mut d = Daemon::start(&node, StartOpts::default());
    let reason = d.wait_degraded();
    assert!(reason.contains("desired config"), "{reason}");
    assert!(
        reason.contains("/etc/app.conf") || reason.contains("data"),
        "{reason}"
    );
    assert_eq!(before, node.snapshot(), "nothing may be written");
    assert!(!node.exists("/etc/app.conf"));
    assert!(node.current_config_name().is_none());
    assert!(d.is_running(), "the daemon keeps running");

    node.set_desired(&config_a());
    d.wait_done("rendered-worker-a");
    assert_eq!(node.read("/etc/app.conf"), "version=a\n");
}

#[test]
fn unreconcilable_change_is_refused_and_nothing_changes() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/configs");
    let node = Node::new();
    node.set_desired_raw(&std::fs::read(examples.join("base.yaml")).unwrap());
    let mut d = Daemon::start(&node, StartOpts::default());
    d.wait_done("example-base");
    let before = node.snapshot();

    node.set_desired_raw(&std::fs::read(examples.join("unreconcilable.yaml")).unwrap());
    let st = d.wait("Unreconcilable", |s| s.state == NodeState::Unreconcilable);
    assert!(
        st.reason.starts_with("can't reconcile config"),
        "{}",
        st.reason
    );
    assert_eq!(st.current_config, "example-base");
    assert_eq!(before, node.snapshot(), "nothing may change");
    assert_eq!(node.current_config_name().as_deref(), Some("example-base"));
    assert!(d.is_running());

    // Going back to the current config ends it.
    node.set_desired_raw(&std::fs::read(examples.join("base.yaml")).unwrap());
    d.wait_done("example-base");
    assert_eq!(before, node.snapshot());
}

#[test]
fn restart_on_an_up_to_date_node_rewrites_nothing() {
    let node = Node::new();
    node.set_desired(&config_a());
    let paths = [
        "/etc/app.conf",
        "/etc/x",
        "/etc/nested/dir/deep.conf",
        "/etc/machine-config-daemon/currentconfig",
    ];
    {
        let d = Daemon::start(&node, StartOpts::default());
        d.wait_done("rendered-worker-a");
    }
    let stamps = node.stamps(&paths);
    let snap = node.snapshot();
    // A fresh status file shows the new run's verdict (not the old run's).
    std::fs::remove_file(node.root.join(STATUS)).unwrap();
    let d = Daemon::start(&node, StartOpts::default());
    let st = d.wait_done("rendered-worker-a");
    assert_eq!(st.desired_config, "rendered-worker-a");
    assert_eq!(stamps, node.stamps(&paths), "no file may be rewritten");
    assert_eq!(snap, node.snapshot());
    assert_eq!(d.log().matches("update started").count(), 1, "{}", d.log());
}
