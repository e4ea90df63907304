//! The conditions the daemon reports (standalone status file and `status --wide`) are the
//! upstream MachineConfigNode v1 types, each with a reason upstream's schema accepts, a message
//! a person can read and a transition time: after a first apply, after an update, after an
//! update that is refused (unreconcilable) and after a desired config that cannot be read.

mod daemon_common;
use daemon_common::*;
use machine_config_daemon::daemon::state::NodeState;
use machine_config_daemon::daemon::status::{ConditionStatus, Status};
use std::process::Command;

/// The upstream v1 types this daemon writes (`PinnedImageSets*` are not its business).
const UPSTREAM_V1: [&str; 12] = [
    "UpdatePrepared",
    "UpdateExecuted",
    "UpdatePostActionComplete",
    "UpdateComplete",
    "Updated",
    "Resumed",
    "Drained",
    "AppliedFilesAndOS",
    "Cordoned",
    "Uncordoned",
    "RebootedNode",
    "NodeDegraded",
];

/// Upstream's `reason` pattern, `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`.
fn valid_reason(r: &str) -> bool {
    let b = r.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b':');
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter().all(inner)
        && (b.len() == 1 || b[b.len() - 1].is_ascii_alphanumeric() || b[b.len() - 1] == b'_')
}

fn check_conditions(st: &Status, when: &str) {
    assert!(!st.conditions.is_empty(), "{when}: no conditions");
    for c in &st.conditions {
        assert!(
            UPSTREAM_V1.contains(&c.type_.as_str()),
            "{when}: {} is not an upstream v1 MachineConfigNode condition type",
            c.type_
        );
        assert!(valid_reason(&c.reason), "{when}: {c:?}: reason");
        assert!(!c.message.trim().is_empty(), "{when}: {c:?}: empty message");
        assert!(
            humantime::parse_rfc3339(&c.last_transition_time).is_ok(),
            "{when}: {c:?}: lastTransitionTime"
        );
    }
}

fn condition(st: &Status, type_: &str) -> ConditionStatus {
    st.condition(type_)
}

fn a() -> machine_config_daemon::model::MachineConfig {
    mc("rendered-worker-a", vec![file("/etc/app.conf", "a\n")])
}

fn b() -> machine_config_daemon::model::MachineConfig {
    mc("rendered-worker-b", vec![file("/etc/app.conf", "b\n")])
}

#[test]
fn conditions_are_upstream_v1_with_reason_message_and_time() {
    let node = Node::new();
    node.set_desired(&a());
    let d = Daemon::start(&node, StartOpts::default());
    let st = d.wait_done("rendered-worker-a");
    check_conditions(&st, "first apply");
    for t in [
        "Updated",
        "UpdatePrepared",
        "UpdateExecuted",
        "AppliedFilesAndOS",
        "UpdatePostActionComplete",
        "UpdateComplete",
        "Resumed",
    ] {
        assert_eq!(condition(&st, t), ConditionStatus::True, "{t}: {st:#?}");
    }
    assert_eq!(condition(&st, "NodeDegraded"), ConditionStatus::False);

    node.set_desired(&b());
    let st = d.wait_done("rendered-worker-b");
    check_conditions(&st, "update");
    assert_eq!(condition(&st, "Updated"), ConditionStatus::True);

    // A desired config that cannot be read: Degraded, conditions still complete.
    node.set_desired_raw(b"kind: [unclosed\n");
    d.wait_degraded();
    let st = node.status().unwrap();
    check_conditions(&st, "degraded");
}

#[test]
fn a_refused_update_reports_update_prepared_false() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/configs");
    let node = Node::new();
    node.set_desired_raw(&std::fs::read(examples.join("base.yaml")).unwrap());
    let d = Daemon::start(&node, StartOpts::default());
    d.wait_done("example-base");
    node.set_desired_raw(&std::fs::read(examples.join("unreconcilable.yaml")).unwrap());
    let st = d.wait("Unreconcilable", |s| s.state == NodeState::Unreconcilable);
    check_conditions(&st, "unreconcilable");
    assert_eq!(condition(&st, "UpdatePrepared"), ConditionStatus::False);
    assert_eq!(condition(&st, "UpdateComplete"), ConditionStatus::False);
    assert_eq!(condition(&st, "NodeDegraded"), ConditionStatus::True);
}

#[test]
fn status_wide_shows_the_upstream_columns() {
    let node = Node::new();
    node.set_desired(&a());
    let d = Daemon::start(&node, StartOpts::default());
    d.wait_done("rendered-worker-a");
    let out = Command::new(BIN)
        .args(["status", "--wide", "--root"])
        .arg(&node.root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    // The names of the upstream CRD's printer columns, in upcase.
    assert_eq!(
        head,
        [
            "NAME",
            "POOLNAME",
            "DESIREDCONFIG",
            "CURRENTCONFIG",
            "UPDATED",
            "UPDATEPREPARED",
            "UPDATEEXECUTED",
            "UPDATEPOSTACTIONCOMPLETE",
            "UPDATECOMPLETE",
            "RESUMED",
            "UPDATEDFILESANDOS",
            "CORDONEDNODE",
            "DRAINEDNODE",
            "REBOOTEDNODE",
            "UNCORDONEDNODE",
            "NODEDEGRADED",
            "STATE",
            "REASON",
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    // Every update phase and AppliedFilesAndOS are True after the apply.
    assert_eq!(&row[4..11], ["True"; 7], "{text}");
    assert_eq!(row[15], "False", "NodeDegraded: {text}");
    assert_eq!(row[16], "Done", "{text}");
}
