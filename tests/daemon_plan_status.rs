//! The plan an update followed, as the status keeps it (`lastPlan`): whole for an ordinary
//! change; for a change of thousands of files, its first changes and the count of the others
//! (`changesOmitted`), so that a status rewritten at each phase stays small.

mod daemon_common;
use daemon_common::*;
use machine_config_daemon::daemon::run::STATUS_PLAN_CHANGES;

fn config(name: &str, n: usize, tag: &str) -> machine_config_daemon::model::MachineConfig {
    mc(
        name,
        (0..n)
            .map(|i| file(&format!("/etc/many/f{i:04}.conf"), &format!("{tag} {i}\n")))
            .collect(),
    )
}

#[test]
fn a_large_plan_is_kept_with_its_first_changes_and_the_count_of_the_others() {
    let node = Node::new();
    let n = STATUS_PLAN_CHANGES + 30;
    node.set_desired(&config("rendered-worker-a", n, "a"));
    let d = Daemon::start(&node, StartOpts::default());
    d.wait_done("rendered-worker-a");

    // A small change: the whole plan.
    let mut b = config("rendered-worker-b", n, "a");
    b.spec.config.files[7] = file("/etc/many/f0007.conf", "b 7\n");
    node.set_desired(&b);
    let st = d.wait_done("rendered-worker-b");
    let plan = st.last_plan.expect("the plan of the update is recorded");
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{plan}");
    assert_eq!(changes[0]["path"], "/etc/many/f0007.conf");
    assert!(plan.get("changesOmitted").is_none(), "{plan}");

    // Every file: the first ones, in the plan's order, and how many more.
    node.set_desired(&config("rendered-worker-c", n, "c"));
    let st = d.wait_done("rendered-worker-c");
    let plan = st.last_plan.expect("the plan of the update is recorded");
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), STATUS_PLAN_CHANGES);
    assert_eq!(changes[0]["path"], "/etc/many/f0000.conf");
    assert_eq!(plan["changesOmitted"], 30, "{}", plan["changesOmitted"]);
    assert_eq!(plan["to"], "rendered-worker-c");
    assert_eq!(node.read("/etc/many/f0229.conf"), "c 229\n");
}
