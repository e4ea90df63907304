//! What `machine-config-daemon start` logs (its stderr, as `journalctl` would show it): an
//! update names the files it changed (their number above 20, each at debug level);
//! `RUST_LOG=debug` shows each decision; a broken desired config or policy is named once, on
//! every line of the message.

mod daemon_common;
use daemon_common::*;

fn config(name: &str, files: &[(&str, &str)]) -> machine_config_daemon::model::MachineConfig {
    mc(name, files.iter().map(|(p, c)| file(p, c)).collect())
}

/// The log lines that mention `needle`.
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn an_update_logs_each_file_it_changed_and_only_those() {
    let node = Node::new();
    node.set_desired(&config(
        "rendered-worker-a",
        &[("/etc/app.conf", "a\n"), ("/etc/same.conf", "same\n")],
    ));
    let d = Daemon::start(&node, StartOpts::default());
    d.wait_done("rendered-worker-a");
    node.set_desired(&config(
        "rendered-worker-b",
        &[("/etc/app.conf", "b\n"), ("/etc/same.conf", "same\n")],
    ));
    d.wait_done("rendered-worker-b");
    let log = d.log();
    let written = lines_with(&log, "/etc/app.conf written for rendered-worker-b");
    assert_eq!(written.len(), 1, "{log}");
    assert!(written[0].contains(" INFO "), "{}", written[0]);
    assert!(
        lines_with(&log, "/etc/same.conf written for rendered-worker-b").is_empty(),
        "an unchanged file is not logged as changed:\n{log}"
    );
    // The first update wrote both.
    assert_eq!(
        lines_with(&log, ".conf written for rendered-worker-a").len(),
        2,
        "{log}"
    );

    // A file the config no longer manages is removed, and the log says so.
    node.set_desired(&config("rendered-worker-c", &[("/etc/app.conf", "b\n")]));
    d.wait_done("rendered-worker-c");
    assert!(!node.exists("/etc/same.conf"));
    let log = d.log();
    assert_eq!(
        lines_with(&log, "/etc/same.conf removed for rendered-worker-c").len(),
        1,
        "{log}"
    );
}

fn many(name: &str, n: usize) -> machine_config_daemon::model::MachineConfig {
    mc(
        name,
        (0..n)
            .map(|i| file(&format!("/etc/many/f{i:02}.conf"), &format!("{name} {i}\n")))
            .collect(),
    )
}

#[test]
fn more_than_20_changed_files_are_counted_at_info_and_listed_at_debug() {
    // At the threshold: each path at info.
    let node = Node::new();
    node.set_desired(&many("rendered-worker-twenty", 20));
    let d = Daemon::start(&node, StartOpts::default());
    d.wait_done("rendered-worker-twenty");
    // (The log lines can reach the file after the status: waited for.)
    let log = d.wait_log(".conf written for rendered-worker-twenty", 20);
    assert_eq!(
        lines_with(&log, ".conf written for rendered-worker-twenty").len(),
        20
    );

    // Above it: the count at info, no path.
    let node = Node::new();
    node.set_desired(&many("rendered-worker-many", 25));
    let d = Daemon::start(&node, StartOpts::default());
    d.wait_done("rendered-worker-many");
    let log = d.wait_log("25 paths changed for rendered-worker-many", 1);
    assert!(
        log.contains("25 paths changed for rendered-worker-many"),
        "{log}"
    );
    assert!(
        lines_with(&log, ".conf written for rendered-worker-many").is_empty(),
        "{log}"
    );

    // With RUST_LOG=debug, every path too.
    let node = Node::new();
    node.set_desired(&many("rendered-worker-many", 25));
    let d = Daemon::start(
        &node,
        StartOpts {
            env: vec![("RUST_LOG", "debug")],
            ..StartOpts::default()
        },
    );
    d.wait_done("rendered-worker-many");
    let log = d.wait_log(".conf written for rendered-worker-many", 25);
    let listed = lines_with(&log, ".conf written for rendered-worker-many");
    assert_eq!(listed.len(), 25, "{log}");
    assert!(listed.iter().all(|l| l.contains(" DEBUG ")), "{log}");
    assert!(log.contains("/etc/many/f24.conf written"), "{log}");
}

#[test]
fn debug_level_logs_each_decision() {
    let node = Node::new();
    node.set_policy_none(&["/etc/app.conf"]);
    node.set_desired(&config("rendered-worker-a", &[("/etc/app.conf", "a\n")]));
    let d = Daemon::start(
        &node,
        StartOpts {
            policy: true,
            env: vec![("RUST_LOG", "debug")],
            ..StartOpts::default()
        },
    );
    d.wait_done("rendered-worker-a");
    node.set_desired(&config("rendered-worker-b", &[("/etc/app.conf", "b\n")]));
    d.wait_done("rendered-worker-b");
    // The status file can be written before the log lines reach the file (a loaded machine):
    // wait for the last of them.
    let log = d.wait_log(
        "drift check of 1 managed paths against rendered-worker-b: 0 drifted",
        1,
    );
    let policy = node.policy.display().to_string();
    let desired = node.desired.display().to_string();
    for expected in [
        format!("policy read from {policy}"),
        format!("desired config read from {desired}: rendered-worker-b"),
        "the desired config differs from the current one: updating".to_string(),
        "plan rendered-worker-a -> rendered-worker-b: actions None".to_string(),
        "plan: file /etc/app.conf changed".to_string(),
        "drift check of 1 managed paths against rendered-worker-b: 0 drifted".to_string(),
    ] {
        let found = lines_with(&log, &expected);
        assert!(
            found.iter().any(|l| l.contains(" DEBUG ")),
            "no debug line with {expected:?}:\n{log}"
        );
    }
    // The plan line names the policy entry that matched.
    let plan = lines_with(&log, "plan: file /etc/app.conf changed");
    assert!(plan[0].contains("/etc/app.conf"), "{}", plan[0]);
    assert!(plan[0].contains("matched"), "{}", plan[0]);

    // At the default level, none of them.
    let node = Node::new();
    node.set_desired(&config("rendered-worker-a", &[("/etc/app.conf", "a\n")]));
    let d = Daemon::start(&node, StartOpts::default());
    d.wait_done("rendered-worker-a");
    assert!(!d.log().contains(" DEBUG "), "{}", d.log());
}

#[test]
fn a_broken_desired_config_is_named_once() {
    let node = Node::new();
    node.set_desired_raw(b"apiVersion: machineconfiguration.openshift.io/v1\nkind: [unclosed\n");
    let d = Daemon::start(&node, StartOpts::default());
    let reason = d.wait_degraded();
    let desired = node.desired.display().to_string();
    assert_eq!(reason.matches(&desired).count(), 1, "{reason}");
    assert!(
        reason.starts_with(&format!("desired config {desired}: ")),
        "{reason}"
    );
    let log = d.log();
    let line = lines_with(&log, "desired config");
    assert!(!line.is_empty(), "{log}");
    assert_eq!(
        line[0]
            .split(" desired=")
            .next()
            .unwrap()
            .matches(&desired)
            .count(),
        1,
        "the message names the file once: {}",
        line[0]
    );
}

#[test]
fn every_line_of_a_policy_error_names_the_policy_file() {
    let node = Node::new();
    replace(
        &node.policy,
        b"apiVersion: operator.openshift.io/v1\nkind: MachineConfiguration\nspec:\n  nodeDisruptionPolicy:\n    files:\n      - path: etc/relative\n        actions: [{type: None}]\n      - path: /etc/x\n        actions: [{type: Reload}]\n",
    );
    node.set_desired(&config("rendered-worker-a", &[("/etc/app.conf", "a\n")]));
    let d = Daemon::start(
        &node,
        StartOpts {
            policy: true,
            ..StartOpts::default()
        },
    );
    let reason = d.wait_degraded();
    let policy = node.policy.display().to_string();
    let lines: Vec<&str> = reason.lines().collect();
    assert_eq!(lines.len(), 2, "{reason}");
    assert!(
        lines[0].starts_with(&format!(
            "policy {policy}: spec.nodeDisruptionPolicy.files[0].path: "
        )),
        "{reason}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{policy}: spec.nodeDisruptionPolicy.files[1].actions[0]: "
        )),
        "{reason}"
    );

    // `validate --policy` says the same.
    let out = std::process::Command::new(BIN)
        .arg("validate")
        .arg("--policy")
        .arg(&node.policy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let named = stderr.lines().filter(|l| l.contains(&policy)).count();
    assert_eq!(named, 2, "{stderr}");
}
