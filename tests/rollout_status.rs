//! `rollout status --pool NAME`: the real binary against the test API server. It prints a line
//! per change (stdout is not a terminal here), exits 0 once the pool is Updated on its config,
//! 1 as soon as a node of the pool degrades or the timeout passes, 2 for a pool that does not
//! exist; and the pure progress function behind it, case by case.

mod support;

use std::process::Stdio;
use std::time::Duration;

use machine_config_daemon::cluster::mcp::MachineConfigPool;
use machine_config_daemon::controller::pool::NodeInfo;
use machine_config_daemon::controller::progress::{Verdict, progress};
use serde_json::{Value, json};
use support::{MACHINECONFIGPOOLS, NODES, TestApiServer, node};
use tokio::io::{AsyncBufReadExt, BufReader};

const CURRENT: &str = "machineconfiguration.openshift.io/currentConfig";
const DESIRED: &str = "machineconfiguration.openshift.io/desiredConfig";
const STATE: &str = "machineconfiguration.openshift.io/state";
const REASON: &str = "machineconfiguration.openshift.io/reason";

fn pool_json(generation: i64, observed: i64, status_config: &str, updated: bool) -> Value {
    json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfigPool",
        "metadata": {"name": "worker", "generation": generation},
        "spec": {
            "nodeSelector": {"matchLabels": {"node-role.kubernetes.io/worker": ""}},
            "configuration": {"name": "rendered-worker-b"},
        },
        "status": {
            "observedGeneration": observed,
            "configuration": {"name": status_config},
            "machineCount": 2,
            "updatedMachineCount": if updated { 2 } else { 1 },
            "degradedMachineCount": 0,
            "conditions": [
                {"type": "Updated", "status": if updated { "True" } else { "False" }},
                {"type": "Degraded", "status": "False"},
            ],
        },
    })
}

fn worker(name: &str, current: &str, desired: &str, state: &str) -> Value {
    let mut n = node(
        name,
        json!({CURRENT: current, DESIRED: desired, STATE: state}),
    );
    n["metadata"]["labels"] = json!({"node-role.kubernetes.io/worker": ""});
    n
}

fn info(v: &Value) -> NodeInfo {
    NodeInfo::from_node(&serde_json::from_value(v.clone()).unwrap())
}

fn mcp(v: Value) -> MachineConfigPool {
    serde_json::from_value(v).unwrap()
}

#[test]
fn progress_waits_names_the_nodes_in_flight_and_decides() {
    let done = worker("w0", "rendered-worker-b", "rendered-worker-b", "Done");
    let working = worker("w1", "rendered-worker-a", "rendered-worker-b", "Working");
    let mut other = worker("m0", "rendered-master-a", "rendered-master-b", "Working");
    other["metadata"]["labels"] = json!({"node-role.kubernetes.io/master": ""});
    let nodes = [info(&done), info(&working), info(&other)];

    // Mid-rollout: one node in flight (the master node is not the pool's).
    let p = progress(&mcp(pool_json(2, 2, "rendered-worker-a", false)), &nodes);
    assert_eq!(
        p.line,
        "pool worker: 1 of 2 updated, 1 updating, 0 degraded (config rendered-worker-b); \
         in flight: w1 Working"
    );
    assert_eq!(p.verdict, Verdict::Waiting);

    // Updated, but the controller has not seen the latest generation yet: still waiting.
    let nodes = [info(&done), info(&done)];
    let p = progress(&mcp(pool_json(3, 2, "rendered-worker-b", true)), &nodes);
    assert_eq!(p.verdict, Verdict::Waiting);
    // Updated on the config the spec names, generation seen: done.
    let p = progress(&mcp(pool_json(3, 3, "rendered-worker-b", true)), &nodes);
    assert_eq!(p.verdict, Verdict::Done);
    // Updated on an older config (status not yet moved): waiting.
    let p = progress(&mcp(pool_json(3, 3, "rendered-worker-a", true)), &nodes);
    assert_eq!(p.verdict, Verdict::Waiting);

    // A degraded node of the pool fails the wait at once, with its reason.
    let mut bad = worker("w1", "rendered-worker-a", "rendered-worker-b", "Degraded");
    bad["metadata"]["annotations"][REASON] = json!("content mismatch for file \"/etc/x\"");
    let p = progress(
        &mcp(pool_json(2, 2, "rendered-worker-a", false)),
        &[info(&done), info(&bad)],
    );
    assert_eq!(
        p.verdict,
        Verdict::Failed("node w1 is Degraded: content mismatch for file \"/etc/x\"".into())
    );

    // A degraded pool (a render failure) fails it too, with the condition's message.
    let mut pool = pool_json(2, 2, "rendered-worker-a", false);
    pool["status"]["conditions"][1] =
        json!({"type": "Degraded", "status": "True", "message": "render failed: boom"});
    let p = progress(&mcp(pool), &[info(&done), info(&done)]);
    assert_eq!(
        p.verdict,
        Verdict::Failed("pool worker is degraded: render failed: boom".into())
    );
}

fn command(kubeconfig: &std::path::Path, pool: &str, timeout: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"));
    c.args(["rollout", "status", "--pool", pool, "--timeout", timeout])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

#[tokio::test]
async fn follows_a_rollout_to_the_end_and_stops_at_a_degraded_node() {
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = server.write_kubeconfig(dir.path());
    server.put(
        NODES,
        worker("w0", "rendered-worker-b", "rendered-worker-b", "Done"),
    );
    server.put(
        NODES,
        worker("w1", "rendered-worker-a", "rendered-worker-b", "Working"),
    );
    server.put(
        MACHINECONFIGPOOLS,
        pool_json(2, 2, "rendered-worker-a", false),
    );

    // No such pool: bad input.
    let out = command(&kc, "nope", "1m").output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no MachineConfigPool \"nope\""));

    // Waiting: the first line is printed; then the node finishes and the pool is Updated.
    let mut child = command(&kc, "worker", "1m").spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    assert_eq!(
        first,
        "pool worker: 1 of 2 updated, 1 updating, 0 degraded (config rendered-worker-b); \
         in flight: w1 Working"
    );
    server.merge(
        NODES,
        "",
        "w1",
        json!({"metadata": {"annotations": {CURRENT: "rendered-worker-b", STATE: "Done"}}}),
    );
    let second = lines.next_line().await.unwrap().unwrap();
    assert_eq!(
        second,
        "pool worker: 1 of 2 updated, 0 updating, 0 degraded (config rendered-worker-b)"
    );
    server.put(
        MACHINECONFIGPOOLS,
        pool_json(2, 2, "rendered-worker-b", true),
    );
    let mut rest = Vec::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        rest.push(l);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert_eq!(rest.last().unwrap(), "pool \"worker\" is updated");

    // A new rollout in which a node degrades: exit 1 at once, naming the node and its reason.
    server.put(
        MACHINECONFIGPOOLS,
        pool_json(3, 3, "rendered-worker-b", false),
    );
    let child = command(&kc, "worker", "1h").spawn().unwrap();
    server.merge(
        NODES,
        "",
        "w1",
        json!({"metadata": {"annotations": {
            DESIRED: "rendered-worker-c", STATE: "Degraded", REASON: "unit foo.service failed"}}}),
    );
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("node w1 is Degraded: unit foo.service failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Nothing moves: the timeout ends the wait with exit 1 and says so.
    server.merge(
        NODES,
        "",
        "w1",
        json!({"metadata": {"annotations": {STATE: "Working", REASON: ""}}}),
    );
    let out = command(&kc, "worker", "300ms").output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out after 300ms"));
}
