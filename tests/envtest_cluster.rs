//! Cluster mode of `start` against a real kube-apiserver and etcd with the upstream CRDs
//! (tests/envtest/): bootstrap and a desiredConfig change with the MachineConfigNode status
//! accepted by upstream's schema, drift, an invalid and a missing config, the controller drain
//! hand-off, self-drain under a PodDisruptionBudget, and a node without a (valid)
//! desiredConfig. Skipped, saying so, where the envtest bundle is absent (failed under `CI`).
//! No kubelet, scheduler or controllers run: the tests write pod and budget status themselves.

mod envtest;

use envtest::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use machine_config_daemon::cluster::drain::DRAIN_PREFLIGHT;
use serde_json::{Value, json};

const FILE: &str = "/etc/mco-test-file";

fn single() -> Value {
    json!("SingleReplica")
}

/// The upstream v1 types the daemon writes.
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

fn condition<'a>(mcn: &'a Value, type_: &str) -> &'a Value {
    mcn["status"]["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("condition {type_} in {mcn:#}"))
}

/// Nothing the daemon wrote to its MachineConfigNode was refused or failed.
fn assert_mcn_writes_accepted(c: &EnvCluster) {
    let log = c.log();
    for bad in [
        "MachineConfigNode refused",
        "refused the MachineConfigNode",
        "cannot write the MachineConfigNode",
    ] {
        assert!(!log.contains(bad), "{bad}:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_and_update_with_a_machine_config_node_upstream_accepts() {
    let Some(mut c) = EnvCluster::new(
        "bootstrap_and_update",
        "et-boot",
        json!({DESIRED_CONFIG: "et-boot-1", TOPOLOGY: single()}),
    )
    .await
    else {
        return;
    };
    put_machine_config(&c.client, machine_config("et-boot-1", FILE, "one")).await;
    put_machine_config(&c.client, machine_config("et-boot-2", FILE, "two")).await;
    c.start_daemon(&[]);
    c.wait_state("Done", Some("et-boot-1")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("one"));
    assert_eq!(c.annotation(REASON).await.as_deref(), Some(""));

    c.annotate(json!({DESIRED_CONFIG: "et-boot-2"})).await;
    c.wait_state("Done", Some("et-boot-2")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("two"));
    let ok = wait_mcn(&c, |m| {
        m["status"]["configVersion"]["current"] == "et-boot-2"
            && m["status"]["configVersion"]["desired"] == "et-boot-2"
            && m["spec"]["configVersion"]["desired"] == "et-boot-2"
            && m["status"]["conditions"]
                .as_array()
                .and_then(|l| l.iter().find(|c| c["type"] == "Updated"))
                .is_some_and(|u| u["status"] == "True")
    })
    .await;
    assert_eq!(ok["spec"]["node"]["name"], "et-boot");
    assert_eq!(ok["spec"]["pool"]["name"], "worker");
    // Stored by the real server, so upstream's schema accepted every condition; each is an
    // upstream v1 type with a reason, a message and a time.
    let conditions = ok["status"]["conditions"].as_array().unwrap();
    assert!(conditions.len() >= 10, "{conditions:#?}");
    for cond in conditions {
        let t = cond["type"].as_str().unwrap();
        assert!(UPSTREAM_V1.contains(&t), "{t}");
        assert!(!cond["reason"].as_str().unwrap().is_empty(), "{cond}");
        assert!(!cond["message"].as_str().unwrap().is_empty(), "{cond}");
        assert!(cond["lastTransitionTime"].is_string(), "{cond}");
    }
    assert_eq!(condition(&ok, "UpdateComplete")["status"], "True");
    assert_eq!(condition(&ok, "NodeDegraded")["status"], "False");
    assert_mcn_writes_accepted(&c);
    c.wait_event("NodeDone", |e| {
        e["reason"] == "NodeDone" && e["reportingController"] == "machineconfigdaemon"
    })
    .await;
    assert!(c.alive());
}

/// Waits until the MachineConfigNode satisfies `cond` and returns it.
async fn wait_mcn(c: &EnvCluster, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = c.mcn().await;
        if let Some(m) = m.as_ref().filter(|m| cond(m)) {
            return m.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "MachineConfigNode: {m:#?}\nlog:\n{}",
            c.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_degrades_with_an_event_and_restoring_recovers() {
    let Some(mut c) = EnvCluster::new(
        "drift",
        "et-drift",
        json!({DESIRED_CONFIG: "et-drift-1", TOPOLOGY: single()}),
    )
    .await
    else {
        return;
    };
    put_machine_config(&c.client, machine_config("et-drift-1", FILE, "one")).await;
    c.start_daemon(&[]);
    c.wait_state("Done", Some("et-drift-1")).await;
    c.write_file(FILE, "edited by hand");
    c.wait_state("Degraded", None).await;
    assert_eq!(
        c.annotation(REASON).await.as_deref(),
        Some(format!("content mismatch for file {FILE:?}").as_str())
    );
    c.wait_event("ConfigDriftDetected", |e| {
        e["reason"] == "ConfigDriftDetected"
            && e["type"] == "Warning"
            && e["note"]
                .as_str()
                .is_some_and(|n| n.contains("content mismatch"))
    })
    .await;
    assert_eq!(c.file(FILE).as_deref(), Some("edited by hand"));
    let mcn = wait_mcn(&c, |m| {
        m["status"]["conditions"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["type"] == "NodeDegraded"))
            .is_some_and(|d| d["status"] == "True")
    })
    .await;
    assert!(
        condition(&mcn, "NodeDegraded")["message"]
            .as_str()
            .unwrap()
            .contains("content mismatch")
    );

    c.write_file(FILE, "one");
    c.wait_state("Done", Some("et-drift-1")).await;
    assert_eq!(c.annotation(REASON).await.as_deref(), Some(""));
    assert_mcn_writes_accepted(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_degrades_and_a_missing_one_is_applied_once_created() {
    let Some(mut c) = EnvCluster::new(
        "invalid_and_missing",
        "et-inval",
        json!({DESIRED_CONFIG: "et-inval-1", TOPOLOGY: single()}),
    )
    .await
    else {
        return;
    };
    put_machine_config(&c.client, machine_config("et-inval-1", FILE, "one")).await;
    let mut bad = machine_config("et-inval-bad", "etc/relative", "x");
    bad["spec"]["config"]["storage"]["files"][0]["path"] = json!("etc/relative");
    put_machine_config(&c.client, bad).await;
    let _ = machine_configs(&c.client)
        .delete("et-inval-3", &DeleteParams::default())
        .await;
    c.start_daemon(&[]);
    c.wait_state("Done", Some("et-inval-1")).await;

    c.annotate(json!({DESIRED_CONFIG: "et-inval-bad"})).await;
    c.wait_state("Degraded", None).await;
    let reason = c.annotation(REASON).await.unwrap();
    assert!(
        reason.contains("et-inval-bad") && reason.contains("etc/relative"),
        "{reason}"
    );
    assert_eq!(
        c.annotation(CURRENT_CONFIG).await.as_deref(),
        Some("et-inval-1")
    );
    assert_eq!(c.file(FILE).as_deref(), Some("one"));

    c.annotate(json!({DESIRED_CONFIG: "et-inval-3"})).await;
    c.wait_node("reason: et-inval-3 not found", |n| {
        n.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REASON))
            .is_some_and(|r| r.contains("et-inval-3") && r.contains("not found"))
    })
    .await;
    put_machine_config(&c.client, machine_config("et-inval-3", FILE, "three")).await;
    c.wait_state("Done", Some("et-inval-3")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("three"));
    assert_mcn_writes_accepted(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_drain_handoff() {
    let Some(mut c) = EnvCluster::new(
        "controller_drain",
        "et-ctl",
        json!({DESIRED_CONFIG: "et-ctl-1"}),
    )
    .await
    else {
        return;
    };
    put_machine_config(&c.client, machine_config("et-ctl-1", FILE, "one")).await;
    put_machine_config(&c.client, machine_config("et-ctl-2", FILE, "two")).await;
    c.start_daemon(&[]);
    c.wait_state("Done", Some("et-ctl-1")).await;

    c.annotate(json!({DESIRED_CONFIG: "et-ctl-2"})).await;
    let n = c
        .wait_node("desiredDrain=drain-et-ctl-2", |n| {
            n.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESIRED_DRAIN))
                .is_some_and(|d| d == "drain-et-ctl-2")
        })
        .await;
    assert_eq!(
        n.metadata
            .annotations
            .unwrap()
            .get(STATE)
            .map(String::as_str),
        Some("Working")
    );
    // The daemon waits for the controller: nothing written yet.
    assert_eq!(c.file(FILE).as_deref(), Some("one"));
    // The controller's pre-flight waits on a budget: the daemon's reason says so.
    let waits = "node et-ctl (drain-et-ctl-2): drain waits for PodDisruptionBudgets (node not \
                 cordoned): pod a/p (PodDisruptionBudget a/b allows 0 disruptions, 1 needed)";
    c.annotate(json!({DRAIN_PREFLIGHT: waits})).await;
    c.wait_node("the pre-flight verdict as the reason", |n| {
        let a = n.metadata.annotations.clone().unwrap_or_default();
        a.get(STATE).map(String::as_str) == Some("Working")
            && a.get(REASON).map(String::as_str) == Some(waits)
    })
    .await;
    let mcn = wait_mcn(&c, |m| {
        m["status"]["conditions"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["type"] == "Drained"))
            .is_some_and(|d| d["message"] == waits)
    })
    .await;
    assert_eq!(condition(&mcn, "Drained")["reason"], "DrainBlocked");
    c.annotate(json!({DRAIN_PREFLIGHT: null, LAST_APPLIED_DRAIN: "drain-et-ctl-2"}))
        .await;
    c.wait_node("desiredDrain=uncordon-et-ctl-2", |n| {
        n.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESIRED_DRAIN))
            .is_some_and(|d| d == "uncordon-et-ctl-2")
    })
    .await;
    assert_eq!(c.file(FILE).as_deref(), Some("two"));
    c.annotate(json!({LAST_APPLIED_DRAIN: "uncordon-et-ctl-2"}))
        .await;
    c.wait_state("Done", Some("et-ctl-2")).await;
    let mcn = wait_mcn(&c, |m| {
        m["status"]["configVersion"]["current"] == "et-ctl-2"
            && m["status"]["conditions"]
                .as_array()
                .and_then(|l| l.iter().find(|c| c["type"] == "Uncordoned"))
                .is_some_and(|u| u["status"] == "True")
    })
    .await;
    assert_eq!(condition(&mcn, "Drained")["status"], "True");
    assert_eq!(condition(&mcn, "Cordoned")["status"], "True");
    assert_mcn_writes_accepted(&c);
}

/// A running, ready pod `ns/app` (labels `app: guarded`) on the node, and the budget `ns/guard`
/// over it allowing no disruption; returns the budgets' API and a closure making the status for
/// `allowed` disruptions (the test plays the disruption controller and the kubelet).
async fn guarded_pod(
    c: &EnvCluster,
    ns: &str,
    node: &str,
) -> (Api<PodDisruptionBudget>, impl Fn(i32) -> Value + use<>) {
    let pods = c.pods(ns);
    let _ = pods
        .delete("app", &DeleteParams::default().grace_period(0))
        .await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "app", "namespace": ns, "labels": {"app": "guarded"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "example"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // The kubelet's part: the pod runs and is ready (so the budget guards it).
    pods.patch_status(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), ns);
    let _ = pdbs.delete("guard", &DeleteParams::default()).await;
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "guard", "namespace": ns},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
    }))
    .unwrap();
    let pdb = pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let generation = pdb.metadata.generation.unwrap();
    let budget = move |allowed: i32| {
        json!({"status": {"observedGeneration": generation, "disruptionsAllowed": allowed,
            "currentHealthy": 1, "desiredHealthy": 1 - allowed, "expectedPods": 1}})
    };
    pdbs.patch_status("guard", &PatchParams::default(), &Patch::Merge(budget(0)))
        .await
        .unwrap();
    (pdbs, budget)
}

/// Self-drain with `--drain-preflight=false` (upstream's behaviour): the node is cordoned
/// first; a PodDisruptionBudget with no disruption allowed blocks the eviction (429, the daemon
/// retries), one that allows it lets the pod go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_drain_without_preflight_cordons_then_waits_for_the_budget() {
    let Some(mut c) = EnvCluster::new(
        "self_drain",
        "et-self",
        json!({DESIRED_CONFIG: "et-self-1"}),
    )
    .await
    else {
        return;
    };
    let ns = "et-self-drain";
    namespace(&c.client, ns).await;
    put_machine_config(&c.client, machine_config("et-self-1", FILE, "one")).await;
    put_machine_config(&c.client, machine_config("et-self-2", FILE, "two")).await;
    let (pdbs, budget) = guarded_pod(&c, ns, "et-self").await;
    let pods = c.pods(ns);

    c.start_daemon(&[
        "--drain-mode",
        "self",
        "--drain-timeout",
        "5m",
        "--drain-preflight=false",
    ]);
    c.wait_state("Done", Some("et-self-1")).await;
    c.annotate(json!({DESIRED_CONFIG: "et-self-2"})).await;
    c.wait_log("eviction refused for now").await;
    let node = c.nodes().get("et-self").await.unwrap();
    assert_eq!(node.spec.unwrap().unschedulable, Some(true), "cordoned");
    let p = pods.get("app").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_none(), "the budget holds");
    assert_eq!(c.file(FILE).as_deref(), Some("one"));

    // The budget allows one disruption: the eviction goes through; the kubelet finishes it.
    pdbs.patch_status("guard", &PatchParams::default(), &Patch::Merge(budget(1)))
        .await
        .unwrap();
    let evicted = wait_for_async(|| async {
        pods.get_opt("app")
            .await
            .unwrap()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(evicted, "pod not evicted\n{}", c.log());
    let _ = pods
        .delete("app", &DeleteParams::default().grace_period(0))
        .await;
    c.wait_state("Done", Some("et-self-2")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("two"));
    let node = c.nodes().get("et-self").await.unwrap();
    assert_ne!(node.spec.unwrap().unschedulable, Some(true), "uncordoned");
    let mcn = wait_mcn(&c, |m| {
        m["status"]["configVersion"]["current"] == "et-self-2"
    })
    .await;
    assert_eq!(condition(&mcn, "Drained")["status"], "True");
    assert_mcn_writes_accepted(&c);
}

/// Self-drain with the pre-flight (the default): a pod under a budget that allows no
/// disruption keeps the node uncordoned and schedulable, `Working` with a reason (and the
/// MachineConfigNode's `Drained` message) naming the pod and the budget; once the budget allows
/// the disruption the same daemon cordons, evicts (admitted at the first attempt) and applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_drain_preflight_keeps_the_node_schedulable_until_the_budget_allows() {
    let Some(mut c) = EnvCluster::new(
        "self_drain_preflight",
        "et-pf",
        json!({DESIRED_CONFIG: "et-pf-1"}),
    )
    .await
    else {
        return;
    };
    let ns = "et-pf-drain";
    namespace(&c.client, ns).await;
    put_machine_config(&c.client, machine_config("et-pf-1", FILE, "one")).await;
    put_machine_config(&c.client, machine_config("et-pf-2", FILE, "two")).await;
    let (pdbs, budget) = guarded_pod(&c, ns, "et-pf").await;
    let pods = c.pods(ns);

    c.start_daemon(&["--drain-mode", "self", "--drain-timeout", "5m"]);
    c.wait_state("Done", Some("et-pf-1")).await;
    c.annotate(json!({DESIRED_CONFIG: "et-pf-2"})).await;
    let blocking =
        format!("pod {ns}/app (PodDisruptionBudget {ns}/guard allows 0 disruptions, 1 needed)");
    let node = c
        .wait_node("Working, the pre-flight's reason", |n| {
            let a = n.metadata.annotations.clone().unwrap_or_default();
            a.get(STATE).map(String::as_str) == Some("Working")
                && a.get(REASON).is_some_and(|r| r.contains(&blocking))
        })
        .await;
    assert_ne!(
        node.spec.as_ref().and_then(|s| s.unschedulable),
        Some(true),
        "not cordoned while the budget blocks"
    );
    let mcn = wait_mcn(&c, |m| {
        m["status"]["conditions"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["type"] == "Drained"))
            .is_some_and(|d| d["message"].as_str().is_some_and(|t| t.contains(&blocking)))
    })
    .await;
    assert_eq!(condition(&mcn, "Drained")["reason"], "DrainBlocked");
    let p = pods.get("app").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_none(), "not evicted");
    assert_eq!(c.file(FILE).as_deref(), Some("one"));
    assert!(!c.log().contains("eviction refused"), "{}", c.log());

    // The budget allows one disruption: the same daemon goes on (cordon, eviction).
    pdbs.patch_status("guard", &PatchParams::default(), &Patch::Merge(budget(1)))
        .await
        .unwrap();
    let evicted = wait_for_async(|| async {
        pods.get_opt("app")
            .await
            .unwrap()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(evicted, "pod not evicted\n{}", c.log());
    let node = c.nodes().get("et-pf").await.unwrap();
    assert_eq!(
        node.spec.unwrap().unschedulable,
        Some(true),
        "cordoned for the eviction"
    );
    let _ = pods
        .delete("app", &DeleteParams::default().grace_period(0))
        .await;
    let node = c.wait_state("Done", Some("et-pf-2")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("two"));
    assert_ne!(node.spec.unwrap().unschedulable, Some(true), "uncordoned");
    assert_eq!(c.annotation(REASON).await.unwrap_or_default(), "");
    assert!(
        !c.log().contains("eviction refused"),
        "the eviction was admitted at once\n{}",
        c.log()
    );
    assert_mcn_writes_accepted(&c);
    assert!(c.alive());
}

async fn wait_for_async<F, Fut>(mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// A plain node (no desiredConfig) and an invalid desiredConfig name get no MachineConfigNode
/// and no refused request; a valid name creates it, accepted by upstream's schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_config_node_only_with_a_valid_desired_config() {
    let Some(mut c) = EnvCluster::new("plain_node", "et-plain", json!({TOPOLOGY: single()})).await
    else {
        return;
    };
    put_machine_config(&c.client, machine_config("et-plain-1", FILE, "one")).await;
    c.start_daemon(&[]);
    c.wait_state("Done", None).await;
    assert!(c.mcn().await.is_none());

    c.annotate(json!({DESIRED_CONFIG: "Bad_Name"})).await;
    c.wait_state("Degraded", None).await;
    assert!(c.mcn().await.is_none());

    c.annotate(json!({DESIRED_CONFIG: "et-plain-1"})).await;
    c.wait_state("Done", Some("et-plain-1")).await;
    let mcn = wait_mcn(&c, |m| {
        m["status"]["configVersion"]["current"] == "et-plain-1"
    })
    .await;
    assert_eq!(mcn["spec"]["configVersion"]["desired"], "et-plain-1");
    assert_mcn_writes_accepted(&c);
    assert_eq!(
        c.log().matches("no MachineConfigNode until").count(),
        2,
        "once per invalid input:\n{}",
        c.log()
    );
}
