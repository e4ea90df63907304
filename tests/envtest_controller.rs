//! The controller's parts against a real kube-apiserver and etcd with the upstream CRDs
//! (tests/envtest/): the policy status of `MachineConfiguration/cluster` (written, accepted by
//! upstream's schema, `observedGeneration` following the spec, an invalid spec reported and not
//! applied, read back by the daemon's policy watch), and the drain controller with what only a
//! real server does: eviction of a pod that is already terminating (it stays until the kubelet —
//! here the test — removes it) and a pod recreated under the same name with a new uid, and the
//! drain pre-flight against a PodDisruptionBudget (no cordon while it allows no disruption).
//! Skipped, saying so, where the envtest bundle is absent (failed under `CI`).

mod envtest;

use std::time::Duration;

use envtest::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use machine_config_daemon::cluster::drain::DRAIN_PREFLIGHT;
use machine_config_daemon::cluster::policy::{ClusterPolicy, PolicyWatch};
use machine_config_daemon::controller::drain::{self, DRAIN_BLOCKED, DrainControllerOptions};
use machine_config_daemon::controller::policy::{
    self as policy_status, CONDITION_TYPE, PolicyStatusOptions, REASON_INVALID, REASON_VALID,
};
use machine_config_daemon::model::policy::{Action, FilePolicy, Policy, effective};
use serde_json::{Value, json};

struct Task(
    tokio::task::JoinHandle<Result<(), machine_config_daemon::controller::ControllerError>>,
);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn machine_configurations(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &gvk(
            "operator.openshift.io",
            "v1",
            "MachineConfiguration",
            "machineconfigurations",
        ),
    )
}

/// Waits (on a watch) until `MachineConfiguration/cluster` satisfies `cond`.
async fn wait_mc(api: &Api<DynamicObject>, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let waited = tokio::time::timeout(
        WAIT,
        await_condition(api.clone(), "cluster", |o: Option<&DynamicObject>| {
            o.is_some_and(|o| cond(&serde_json::to_value(o).unwrap()))
        }),
    )
    .await;
    let latest = api.get("cluster").await.unwrap();
    assert!(
        matches!(waited, Ok(Ok(Some(_)))),
        "{what}: not seen; latest: {:#}",
        serde_json::to_value(&latest).unwrap()
    );
    serde_json::to_value(latest).unwrap()
}

fn our_condition(obj: &Value) -> Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == CONDITION_TYPE))
        .cloned()
        .unwrap_or(Value::Null)
}

fn observed(obj: &Value) -> bool {
    obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
}

fn chrony() -> Value {
    json!({"files": [{"path": "/etc/chrony.conf",
        "actions": [{"type": "Reload", "reload": {"serviceName": "chronyd.service"}}]}]})
}

/// Waits (bounded) for an event `reason` about `node` whose note mentions `note` (events are
/// published after the annotations the tests wait for).
async fn wait_event(client: &kube::Client, reason: &str, node: &str, note: &str) {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let listed = events.list(&Default::default()).await.unwrap();
        let found = listed.items.iter().any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(node)
                && e.note.as_deref().is_some_and(|n| n.contains(note))
        });
        if found {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {reason} event about {node}: {listed:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_status_follows_the_spec_and_never_applies_an_invalid_one() {
    let Some(env) = envtest("policy_status") else {
        return;
    };
    let client = env.client().await;
    let api = machine_configurations(&client);
    let _ = api.delete("cluster", &Default::default()).await;
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "operator.openshift.io/v1", "kind": "MachineConfiguration",
        "metadata": {"name": "cluster"},
        "spec": {"managementState": "Managed", "nodeDisruptionPolicy": chrony()},
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let opts = PolicyStatusOptions {
        api: machine_config_daemon::cluster::Options::fast(),
    };
    let _task = Task(tokio::spawn(policy_status::run(client.clone(), opts)));

    // Valid: the merged policy, observed, condition False.
    let merged = effective(&Policy {
        files: vec![FilePolicy {
            path: "/etc/chrony.conf".into(),
            actions: vec![Action::reload("chronyd.service")],
        }],
        ..Policy::default()
    });
    let first = wait_mc(&api, "status of generation 1", |o| {
        observed(o) && our_condition(o)["reason"] == REASON_VALID
    })
    .await;
    assert_eq!(
        first["status"]["nodeDisruptionPolicyStatus"]["clusterPolicies"],
        serde_json::to_value(&merged).unwrap()
    );
    assert_eq!(our_condition(&first)["status"], "False");

    // The daemon's policy watch reads it as the effective policy.
    let watch = PolicyWatch::new(
        client.clone(),
        machine_config_daemon::cluster::Options::fast(),
    );
    assert_eq!(
        watch.current().await.unwrap(),
        ClusterPolicy::Effective {
            policy: merged.clone(),
            stale: false
        }
    );

    // Invalid by this project's rules (upstream's schema accepts a relative path): observed,
    // reported, not applied.
    let bad = json!({"spec": {"nodeDisruptionPolicy": {"files": [
        {"path": "etc/chrony.conf", "actions": [{"type": "None"}]}]}}});
    api.patch("cluster", &PatchParams::default(), &Patch::Merge(&bad))
        .await
        .unwrap();
    let second = wait_mc(&api, "status of the invalid generation", |o| {
        observed(o) && our_condition(o)["reason"] == REASON_INVALID
    })
    .await;
    assert_eq!(second["metadata"]["generation"], 2);
    let c = our_condition(&second);
    assert_eq!(c["status"], "True");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("spec.nodeDisruptionPolicy.files[0].path") && message.contains("absolute"),
        "{message}"
    );
    assert_eq!(
        second["status"]["nodeDisruptionPolicyStatus"],
        first["status"]["nodeDisruptionPolicyStatus"],
        "the last valid policy stays"
    );
    let daemon_view = watch.current().await.unwrap();
    assert_eq!(
        daemon_view,
        ClusterPolicy::Effective {
            policy: merged,
            stale: false
        }
    );

    // Valid again: applied.
    let good = json!({"spec": {"nodeDisruptionPolicy": {"files": [
        {"path": "/etc/chrony.conf", "actions": [{"type": "None"}]}]}}});
    api.patch("cluster", &PatchParams::default(), &Patch::Merge(&good))
        .await
        .unwrap();
    let third = wait_mc(&api, "status of generation 3", |o| {
        observed(o) && our_condition(o)["reason"] == REASON_VALID
    })
    .await;
    let files = third["status"]["nodeDisruptionPolicyStatus"]["clusterPolicies"]["files"]
        .as_array()
        .unwrap();
    let entry = files
        .iter()
        .find(|f| f["path"] == "/etc/chrony.conf")
        .unwrap();
    assert_eq!(entry["actions"], json!([{"type": "None"}]));
    assert_ne!(
        our_condition(&third)["lastTransitionTime"],
        Value::Null,
        "transition recorded"
    );
}

async fn create_node(client: &kube::Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let _ = nodes.delete(name, &Default::default()).await;
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
}

/// A running pod on `node` owned by a ReplicaSet (no real owner: no garbage collector here).
async fn running_pod(pods: &Api<Pod>, ns: &str, name: &str, node: &str, app: &str) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}, "ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": "rs", "uid": "00000000-0000-0000-0000-000000000001",
            "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "example"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap()
}

/// Waits (on a watch) until node `name` satisfies `cond`.
async fn wait_node(
    client: &kube::Client,
    name: &str,
    what: &str,
    cond: impl Fn(&Node) -> bool,
) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    let waited = tokio::time::timeout(
        WAIT,
        await_condition(nodes.clone(), name, |n: Option<&Node>| n.is_some_and(&cond)),
    )
    .await;
    let latest = nodes.get(name).await.unwrap();
    assert!(
        matches!(waited, Ok(Ok(Some(_)))),
        "{name}: {what} not seen: {latest:#?}"
    );
    latest
}

fn annotation<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Waits (on a watch) until pod `name` is terminating (evicted).
async fn wait_terminating(pods: &Api<Pod>, name: &str) {
    let evicted = tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), name, |p: Option<&Pod>| {
            p.is_some_and(|p| p.metadata.deletion_timestamp.is_some())
        }),
    )
    .await;
    assert!(matches!(evicted, Ok(Ok(_))), "{name} not evicted");
}

async fn request_drain(client: &kube::Client, node: &str, value: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {DESIRED_DRAIN: value}}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_terminating_pods_and_takes_a_recreated_pod_as_gone() {
    let Some(env) = envtest("drain_controller") else {
        return;
    };
    let client = env.client().await;
    let ns = "et-drain-controller";
    namespace(&client, ns).await;
    for n in ["et-dc-a", "et-dc-b", "et-dc-c"] {
        create_node(&client, n).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for p in ["web-0", "guarded", "stuck"] {
        let _ = pods
            .delete(p, &DeleteParams::default().grace_period(0))
            .await;
    }
    let opts = DrainControllerOptions {
        api: machine_config_daemon::cluster::Options::fast(),
        eviction_retry: Duration::from_millis(100),
        report_after: Duration::from_secs(2),
        // The evictions themselves (cordon first, 429s retried): upstream's behaviour.
        preflight: false,
    };
    // The controller's client as the process makes it (kube's own retry layer off: the drain
    // paces its 429s itself).
    let kc = kube::config::Kubeconfig::read_from(&env.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let controller_client = machine_config_daemon::cluster::client_from_config(cfg).unwrap();
    let _task = Task(tokio::spawn(drain::run(controller_client, opts)));

    // A pod recreated under the same name (as a StatefulSet does) before the drain looks for
    // it: the evicted pod (its uid) is gone, so the drain is complete. "guarded" is held by a
    // PodDisruptionBudget (429) while web-0 is evicted, deleted and recreated, so the drain's
    // wait for the evicted pods starts after the new web-0 exists.
    let old = running_pod(&pods, ns, "web-0", "et-dc-a", "web").await;
    running_pod(&pods, ns, "guarded", "et-dc-a", "guarded").await;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let _ = pdbs.delete("guard", &DeleteParams::default()).await;
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "guard", "namespace": ns},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
    }))
    .unwrap();
    let generation = pdbs
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    let budget = |allowed: i32| {
        json!({"status": {"observedGeneration": generation, "disruptionsAllowed": allowed,
            "currentHealthy": 1, "desiredHealthy": 1 - allowed, "expectedPods": 1}})
    };
    pdbs.patch_status("guard", &PatchParams::default(), &Patch::Merge(budget(0)))
        .await
        .unwrap();
    request_drain(&client, "et-dc-a", "drain-et-1").await;
    wait_terminating(&pods, "web-0").await;
    let node = wait_node(&client, "et-dc-a", "cordon", |n| {
        n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
    })
    .await;
    assert_eq!(
        annotation(&node, LAST_APPLIED_DRAIN),
        None,
        "waits for the pods"
    );
    // The kubelet's part: web-0 is gone; its controller makes a new one, same name.
    pods.delete("web-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let new = running_pod(&pods, ns, "web-0", "et-dc-a", "web").await;
    assert_ne!(new.metadata.uid, old.metadata.uid);
    // The budget allows the other eviction; the kubelet finishes it.
    pdbs.patch_status("guard", &PatchParams::default(), &Patch::Merge(budget(1)))
        .await
        .unwrap();
    wait_terminating(&pods, "guarded").await;
    pods.delete("guarded", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_node(&client, "et-dc-a", "lastAppliedDrain=drain-et-1", |n| {
        annotation(n, LAST_APPLIED_DRAIN) == Some("drain-et-1")
    })
    .await;
    let still = pods.get("web-0").await.unwrap();
    assert_eq!(still.metadata.uid, new.metadata.uid);
    assert!(
        still.metadata.deletion_timestamp.is_none(),
        "the new pod is not evicted"
    );

    // A pod already terminating when the drain starts: the drain waits for it to be gone,
    // reports it as blocking after report_after, and completes once it is gone.
    running_pod(&pods, ns, "stuck", "et-dc-b", "stuck").await;
    pods.delete("stuck", &DeleteParams::default())
        .await
        .unwrap();
    let p = pods.get("stuck").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_some(), "terminating");
    request_drain(&client, "et-dc-b", "drain-et-1").await;
    let node = wait_node(&client, "et-dc-b", "blocked-drain report", |n| {
        annotation(n, DRAIN_BLOCKED).is_some()
    })
    .await;
    let message = annotation(&node, DRAIN_BLOCKED).unwrap();
    assert!(
        message.contains(&format!("pods blocking: {ns}/stuck")),
        "{message}"
    );
    assert_eq!(annotation(&node, LAST_APPLIED_DRAIN), None);
    wait_event(&client, "DrainBlocked", "et-dc-b", "stuck").await;
    pods.delete("stuck", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let node = wait_node(&client, "et-dc-b", "lastAppliedDrain=drain-et-1", |n| {
        annotation(n, LAST_APPLIED_DRAIN) == Some("drain-et-1")
    })
    .await;
    assert_eq!(annotation(&node, DRAIN_BLOCKED), None, "report cleared");

    // Uncordon.
    request_drain(&client, "et-dc-b", "uncordon-et-1").await;
    let node = wait_node(&client, "et-dc-b", "uncordoned", |n| {
        annotation(n, LAST_APPLIED_DRAIN) == Some("uncordon-et-1")
    })
    .await;
    assert_ne!(node.spec.and_then(|s| s.unschedulable), Some(true));
}

/// A budget `ns/name` over `app: <app>` pods, its status written as the disruption controller
/// would (none runs here); returns a closure making the status for `allowed` disruptions.
async fn budget(
    client: &kube::Client,
    ns: &str,
    name: &str,
    app: &str,
) -> (Api<PodDisruptionBudget>, impl Fn(i32) -> Value) {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let _ = pdbs.delete(name, &DeleteParams::default()).await;
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}},
    }))
    .unwrap();
    let generation = pdbs
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    let status = move |allowed: i32| {
        json!({"status": {"observedGeneration": generation, "disruptionsAllowed": allowed,
            "currentHealthy": 1, "desiredHealthy": 1 - allowed, "expectedPods": 1}})
    };
    (pdbs, status)
}

/// Pre-flight (the default): a pod under a budget that allows no disruption keeps the
/// controller from cordoning; the Node says which pod and budget (annotation and event), and
/// the drain goes on by itself once the budget allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_preflight_waits_uncordoned_until_the_budget_allows() {
    // An API server of its own: the drain controller of the test above (pre-flight off) would
    // answer this node's request too.
    let Some(env) = envtest_without_crds("drain_preflight") else {
        return;
    };
    let client = env.client().await;
    let ns = "et-drain-preflight";
    namespace(&client, ns).await;
    for n in ["et-pf-a", "et-pf-b"] {
        create_node(&client, n).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let _ = pods
        .delete("db-0", &DeleteParams::default().grace_period(0))
        .await;
    running_pod(&pods, ns, "db-0", "et-pf-a", "db").await;
    let (pdbs, status) = budget(&client, ns, "db-budget", "db").await;
    pdbs.patch_status(
        "db-budget",
        &PatchParams::default(),
        &Patch::Merge(status(0)),
    )
    .await
    .unwrap();

    let opts = DrainControllerOptions {
        api: machine_config_daemon::cluster::Options::fast(),
        eviction_retry: Duration::from_millis(100),
        report_after: Duration::from_secs(3600),
        ..Default::default()
    };
    assert!(opts.preflight, "on by default");
    let kc = kube::config::Kubeconfig::read_from(&env.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let controller_client = machine_config_daemon::cluster::client_from_config(cfg).unwrap();
    let _task = Task(tokio::spawn(drain::run(controller_client, opts)));

    request_drain(&client, "et-pf-a", "drain-et-pf-1").await;
    let node = wait_node(&client, "et-pf-a", "pre-flight report", |n| {
        annotation(n, DRAIN_PREFLIGHT).is_some()
    })
    .await;
    let message = annotation(&node, DRAIN_PREFLIGHT).unwrap();
    assert!(
        message.contains(&format!(
            "pod {ns}/db-0 (PodDisruptionBudget {ns}/db-budget allows 0 disruptions, 1 needed)"
        )),
        "{message}"
    );
    assert_ne!(
        node.spec.as_ref().and_then(|s| s.unschedulable),
        Some(true),
        "not cordoned while the budget blocks"
    );
    assert_eq!(annotation(&node, LAST_APPLIED_DRAIN), None);
    assert_eq!(annotation(&node, DRAIN_BLOCKED), None, "not a degradation");
    let p = pods.get("db-0").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_none(), "not evicted");
    wait_event(&client, "DrainPreflightBlocked", "et-pf-a", "db-budget").await;

    // The budget allows one disruption: cordon, eviction, then the answer; no restart.
    pdbs.patch_status(
        "db-budget",
        &PatchParams::default(),
        &Patch::Merge(status(1)),
    )
    .await
    .unwrap();
    wait_terminating(&pods, "db-0").await;
    let node = nodes_get(&client, "et-pf-a").await;
    assert_eq!(
        node.spec.as_ref().and_then(|s| s.unschedulable),
        Some(true),
        "cordoned before the eviction"
    );
    pods.delete("db-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let node = wait_node(&client, "et-pf-a", "lastAppliedDrain=drain-et-pf-1", |n| {
        annotation(n, LAST_APPLIED_DRAIN) == Some("drain-et-pf-1")
    })
    .await;
    assert_eq!(annotation(&node, DRAIN_PREFLIGHT), None, "report cleared");
}

async fn nodes_get(client: &kube::Client, name: &str) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.get(name).await.unwrap()
}
