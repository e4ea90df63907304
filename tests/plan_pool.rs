//! `plan --kubeconfig FILE --pool NAME --add NEW.yaml --remove NAME`: the real binary against
//! the test API server. The pool is rendered with the change, each node's plan comes from its
//! current config under the cluster's policy (`MachineConfiguration/cluster`), the rollout
//! batches follow zone then age within `maxUnavailable`, a node whose drain would wait on a
//! PodDisruptionBudget now says so, and nothing is written.

mod support;

use std::process::Command;

use machine_config_daemon::controller::render::render_pool;
use serde_json::{Value, json};
use support::{
    MACHINECONFIGPOOLS, MACHINECONFIGS, MACHINECONFIGURATIONS, NODES, PODS, TestApiServer,
};

const ROLE: &str = "machineconfiguration.openshift.io/role";

fn mc(name: &str, path: &str, data: &str) -> Value {
    json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": {"name": name, "labels": {ROLE: "worker"}},
        "spec": {"config": {"ignition": {"version": "3.4.0"}, "storage": {"files": [
            {"path": path, "mode": 420, "contents": {"source": format!("data:,{data}")}}
        ]}}},
    })
}

fn worker(name: &str, zone: Option<&str>, created: &str, config: &str) -> Value {
    let mut labels = json!({"node-role.kubernetes.io/worker": ""});
    if let Some(z) = zone {
        labels["topology.kubernetes.io/zone"] = json!(z);
    }
    json!({
        "metadata": {"name": name, "labels": labels, "creationTimestamp": created,
            "annotations": {
                "machineconfiguration.openshift.io/currentConfig": config,
                "machineconfiguration.openshift.io/desiredConfig": config,
                "machineconfiguration.openshift.io/state": "Done"}},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_a_pool_is_previewed_per_node_with_the_schedule_and_nothing_written() {
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = server.write_kubeconfig(dir.path());
    let base = mc("00-worker", "/etc/base.conf", "base");
    let old_extra = mc("50-old", "/etc/old.conf", "old");
    let rendered = render_pool("worker", &[&base, &old_extra]).unwrap();
    let mut rendered_obj = rendered.object.clone();
    rendered_obj["metadata"]["ownerReferences"] =
        json!([{"kind": "MachineConfigPool", "name": "worker", "apiVersion": "v1", "uid": "u"}]);
    server.put(MACHINECONFIGS, base.clone());
    server.put(MACHINECONFIGS, old_extra);
    server.put(MACHINECONFIGS, rendered_obj);
    server.put(
        MACHINECONFIGPOOLS,
        json!({
            "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
            "metadata": {"name": "worker"},
            "spec": {
                "machineConfigSelector": {"matchLabels": {ROLE: "worker"}},
                "nodeSelector": {"matchLabels": {"node-role.kubernetes.io/worker": ""}},
                "maxUnavailable": 2,
                "configuration": {"name": rendered.name},
            },
            "status": {"configuration": {"name": rendered.name}},
        }),
    );
    // The cluster's policy: /etc/motd needs nothing; any other file a reboot (the default).
    server.put(
        MACHINECONFIGURATIONS,
        json!({
            "apiVersion": "operator.openshift.io/v1", "kind": "MachineConfiguration",
            "metadata": {"name": "cluster"},
            "spec": {"nodeDisruptionPolicy": {"files": [
                {"path": "/etc/motd", "actions": [{"type": "None"}]}]}},
        }),
    );
    for (n, zone, created) in [
        ("w0", Some("b"), "2026-01-01T00:00:50Z"),
        ("w1", Some("a"), "2026-01-01T00:01:40Z"),
        ("w2", Some("a"), "2026-01-01T00:03:20Z"),
        ("w3", None, "2026-01-01T00:05:00Z"),
    ] {
        server.put(NODES, worker(n, zone, created, &rendered.name));
    }
    // A pod on w1 under a budget that allows no disruption now; one on w2 under none.
    let mut web = support::pod("apps", "web-0", "w1", Some("ReplicaSet"));
    web["metadata"]["labels"] = json!({"app": "web"});
    web["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    server.put(PODS, web);
    server.put(
        PODS,
        support::pod("apps", "cache-0", "w2", Some("ReplicaSet")),
    );
    server.put(
        "apis/policy/v1/poddisruptionbudgets",
        json!({"metadata": {"name": "web", "namespace": "apps"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1}}),
    );
    let motd = dir.path().join("motd.yaml");
    std::fs::write(
        &motd,
        serde_json::to_string(&mc("60-motd", "/etc/motd", "hello")).unwrap(),
    )
    .unwrap();
    let writes_before = server
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count();

    // The test server runs on the other worker thread while this one waits for the binary.
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
            .args(["plan", "--pool", "worker", "--kubeconfig"])
            .arg(&kc)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--add", motd.to_str().unwrap(), "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["from"], json!(rendered.name));
    assert_ne!(p["to"], p["from"]);
    assert_eq!(p["sources"], json!(["00-worker", "50-old", "60-motd"]));
    let summaries: Vec<(String, String)> = p["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_string(),
                n["summary"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // /etc/motd under the cluster's policy: nothing to do on any node.
    assert_eq!(
        summaries,
        [
            ("w0".to_string(), "None".to_string()),
            ("w1".into(), "None".into()),
            ("w2".into(), "None".into()),
            ("w3".into(), "None".into())
        ]
    );
    // No zone sorts first, then zone a oldest first, then zone b; two at a time.
    assert_eq!(p["batches"], json!([["w3", "w1"], ["w2", "w0"]]));
    assert_eq!(p["maxUnavailable"], 2);

    // Removing a source instead: its file goes, which the policy does not cover: drain and
    // reboot. Text output names the change and the batches.
    let out = run(&["--remove", "50-old"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sources: 00-worker\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("w3 ") && l.ends_with("Drain, Reboot")),
        "{text}"
    );
    assert!(text.contains("/etc/old.conf"), "{text}");
    // The drain pre-flight as the cluster is now: w1's drain would wait on its budget.
    assert!(
        text.contains(
            "  - w1: drain would wait for PodDisruptionBudgets now: pod apps/web-0 \
             (PodDisruptionBudget apps/web allows 0 disruptions, 1 needed)\n"
        ),
        "{text}"
    );
    assert_eq!(text.matches("drain would wait").count(), 1, "{text}");
    let out = run(&["--remove", "50-old", "-o", "json"]);
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    let w1 = p["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "w1")
        .unwrap();
    assert!(
        w1["drainPreflight"]
            .as_str()
            .is_some_and(|m| m.contains("apps/web")),
        "{w1:#}"
    );
    assert!(text.contains("  1. w3, w1\n  2. w2, w0\n"), "{text}");

    // Bad input: exit 2, naming what is wrong.
    let bad = (
        run(&["--remove", "nope"]),
        Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
            .args(["plan", "--pool", "infra", "--kubeconfig"])
            .arg(&kc)
            .output()
            .unwrap(),
    );
    assert_eq!(bad.0.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.0.stderr).contains("--remove nope"));
    assert_eq!(bad.1.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.1.stderr).contains("no MachineConfigPool \"infra\""));

    // Read-only: not one write reached the server.
    let writes_after = server
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count();
    assert_eq!(writes_after, writes_before);
}
