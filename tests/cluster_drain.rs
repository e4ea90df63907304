//! Drain in both modes (SPEC §9).

mod support;

use std::time::Duration;

use machine_config_daemon::cluster::drain::{
    DrainMode, DrainOptions, DrainOutcome, DrainProgress, drain, uncordon,
};
use machine_config_daemon::cluster::node::{
    CONTROL_PLANE_TOPOLOGY, DESIRED_DRAIN, KubeNode, LAST_APPLIED_DRAIN,
};
use machine_config_daemon::cluster::{ClusterError, Options};
use serde_json::json;
use support::{NODES, PODS, TestApiServer, eventually, node, pod};

const WAIT: Duration = Duration::from_secs(10);

fn controller_opts() -> DrainOptions {
    DrainOptions {
        mode: DrainMode::Controller,
        timeout: WAIT,
        eviction_retry: Duration::from_millis(50),
        preflight: true,
    }
}

fn self_opts() -> DrainOptions {
    DrainOptions {
        mode: DrainMode::SelfDrain,
        ..controller_opts()
    }
}

fn annotation(server: &TestApiServer, key: &str) -> Option<String> {
    server.get(NODES, "worker-0")?["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

async fn setup(annotations: serde_json::Value) -> (TestApiServer, KubeNode) {
    let server = TestApiServer::start().await;
    server.put(NODES, node("worker-0", annotations));
    let kn = KubeNode::new(server.client(), "worker-0", Options::fast());
    kn.wait_synced().await.unwrap();
    (server, kn)
}

/// Plays the machine-config controller: answers every desiredDrain after `delay`.
async fn fake_controller(server: &TestApiServer, rounds: usize, delay: Duration) {
    for _ in 0..rounds {
        let mut want = None;
        assert!(
            eventually(WAIT, || {
                want = annotation(server, DESIRED_DRAIN);
                want.is_some() && want != annotation(server, LAST_APPLIED_DRAIN)
            })
            .await
        );
        tokio::time::sleep(delay).await;
        server.merge(
            NODES,
            "",
            "worker-0",
            json!({"metadata": {"annotations": {LAST_APPLIED_DRAIN: want}}}),
        );
    }
}

#[tokio::test]
async fn controller_drain_hand_off_then_uncordon() {
    let (server, kn) = setup(json!({})).await;
    let opts = controller_opts();
    let (outcome, ()) = tokio::join!(
        drain(&kn, "rendered-worker-2", &opts, &|_| {}),
        fake_controller(&server, 1, Duration::from_millis(200))
    );
    assert_eq!(outcome.unwrap(), DrainOutcome::DrainedByController);
    assert_eq!(
        annotation(&server, DESIRED_DRAIN).as_deref(),
        Some("drain-rendered-worker-2")
    );
    assert_eq!(
        annotation(&server, LAST_APPLIED_DRAIN).as_deref(),
        Some("drain-rendered-worker-2")
    );

    let (done, ()) = tokio::join!(
        uncordon(&kn, "rendered-worker-2", &opts),
        fake_controller(&server, 1, Duration::from_millis(50))
    );
    done.unwrap();
    assert_eq!(
        annotation(&server, DESIRED_DRAIN).as_deref(),
        Some("uncordon-rendered-worker-2")
    );
    assert_eq!(
        annotation(&server, LAST_APPLIED_DRAIN).as_deref(),
        Some("uncordon-rendered-worker-2")
    );
    // Waiting was on the watch: no polling GETs of the node.
    assert_eq!(server.count("get"), 0);
}

#[tokio::test]
async fn controller_drain_already_applied_is_done_without_writes() {
    let (server, kn) = setup(json!({
        DESIRED_DRAIN: "drain-rendered-worker-2", LAST_APPLIED_DRAIN: "drain-rendered-worker-2",
    }))
    .await;
    let outcome = drain(&kn, "rendered-worker-2", &controller_opts(), &|_| {})
        .await
        .unwrap();
    assert_eq!(outcome, DrainOutcome::AlreadyDone);
    assert_eq!(server.count("patch"), 0);
}

#[tokio::test]
async fn controller_drain_times_out_when_nobody_answers() {
    let (_server, kn) = setup(json!({})).await;
    let opts = DrainOptions {
        timeout: Duration::from_millis(300),
        ..controller_opts()
    };
    let err = drain(&kn, "rendered-worker-2", &opts, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::Timeout { .. }));
    assert!(
        err.to_string()
            .contains("lastAppliedDrain=drain-rendered-worker-2 on node \"worker-0\"")
            || err
                .to_string()
                .contains("lastAppliedDrain=drain-rendered-worker-2 on node worker-0"),
        "{err}"
    );
}

#[tokio::test]
async fn single_node_cluster_skips_drain() {
    let (server, kn) = setup(json!({CONTROL_PLANE_TOPOLOGY: "SingleReplica"})).await;
    for opts in [controller_opts(), self_opts()] {
        let outcome = drain(&kn, "rendered-worker-2", &opts, &|_| {})
            .await
            .unwrap();
        assert_eq!(outcome, DrainOutcome::SkippedSingleNode);
    }
    assert_eq!(server.count("patch") + server.count("create"), 0);
}

fn populate(server: &TestApiServer) {
    server.put(
        PODS,
        pod("kube-system", "ds-agent", "worker-0", Some("DaemonSet")),
    );
    let mut mirror = pod("kube-system", "etcd-worker-0", "worker-0", None);
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
    server.put(PODS, mirror);
    let mut done = pod("batch", "job-1", "worker-0", Some("Job"));
    done["status"]["phase"] = json!("Succeeded");
    server.put(PODS, done);
    server.put(PODS, pod("apps", "web", "worker-0", Some("ReplicaSet")));
    server.put(PODS, pod("apps", "bare", "worker-0", None));
    let mut cache = pod("apps", "cache", "worker-0", Some("ReplicaSet"));
    cache["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    server.put(PODS, cache);
    server.put(
        PODS,
        pod("apps", "elsewhere", "worker-1", Some("ReplicaSet")),
    );
}

#[tokio::test]
async fn self_drain_evicts_the_right_pods_through_a_pdb() {
    let (server, kn) = setup(json!({})).await;
    populate(&server);
    server.block_eviction("apps", "web", 2);
    server.eviction_delete_delay(Duration::from_millis(200));

    let outcome = drain(&kn, "rendered-worker-2", &self_opts(), &|_| {})
        .await
        .unwrap();
    let DrainOutcome::Drained { evicted, warnings } = outcome else {
        panic!("expected a self-drain, got {outcome:?}");
    };
    assert_eq!(evicted, ["apps/bare", "apps/cache", "apps/web"]);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("apps/cache") && w.contains("emptyDir"))
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("apps/bare") && w.contains("without controller"))
    );

    // The node is cordoned, evicted pods are gone, the others are untouched.
    assert_eq!(
        server.get(NODES, "worker-0").unwrap()["spec"]["unschedulable"],
        true
    );
    let mut left: Vec<String> = server
        .list(PODS)
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "apps/elsewhere",
            "batch/job-1",
            "kube-system/ds-agent",
            "kube-system/etcd-worker-0"
        ]
    );
    assert_eq!(
        server.count_on("create", "/pods/web/eviction"),
        3,
        "429, 429, 201"
    );
    assert_eq!(server.count_on("create", "/eviction"), 5);

    uncordon(&kn, "rendered-worker-2", &self_opts())
        .await
        .unwrap();
    assert!(server.get(NODES, "worker-0").unwrap()["spec"]["unschedulable"].is_null());
}

#[tokio::test]
async fn self_drain_timeout_names_the_blocking_pod() {
    let (server, kn) = setup(json!({})).await;
    populate(&server);
    server.block_eviction("apps", "web", u32::MAX);
    // The next retry would come after the deadline: the drain gives up at once, after one
    // attempt (retries are spaced by the retry delay, never sooner).
    let opts = DrainOptions {
        timeout: Duration::from_millis(400),
        eviction_retry: Duration::from_secs(3600),
        ..self_opts()
    };
    let err = tokio::time::timeout(WAIT, drain(&kn, "rendered-worker-2", &opts, &|_| {}))
        .await
        .expect("the drain gives up rather than sleeping past its deadline")
        .unwrap_err();
    match &err {
        ClusterError::DrainTimeout { pods, .. } => assert_eq!(pods, &["apps/web"]),
        other => panic!("expected a drain timeout, got {other}"),
    }
    assert!(err.to_string().contains("pods blocking: apps/web"), "{err}");
    assert_eq!(server.count_on("create", "/pods/web/eviction"), 1);
}

#[tokio::test]
async fn self_drain_treats_a_vanished_pod_as_gone() {
    let (server, kn) = setup(json!({})).await;
    server.put(PODS, pod("apps", "web", "worker-0", Some("ReplicaSet")));
    server.block_eviction("apps", "web", 1);
    let drained = async { drain(&kn, "rendered-worker-2", &self_opts(), &|_| {}).await };
    let remover = async {
        assert!(
            eventually(WAIT, || server.count_on("create", "/pods/web/eviction")
                >= 1)
            .await
        );
        server.delete(PODS, "apps", "web");
    };
    let (outcome, ()) = tokio::join!(drained, remover);
    // The second attempt got 404: the pod is gone, nothing left to evict.
    assert_eq!(
        outcome.unwrap(),
        DrainOutcome::Drained {
            evicted: vec![],
            warnings: vec![]
        }
    );
}

const PDBS: &str = "apis/policy/v1/poddisruptionbudgets";

/// [`populate`], with `apps/web` labelled `app: web` under the budget `apps/web-budget`
/// allowing `allowed` disruptions.
fn populate_guarded(server: &TestApiServer, allowed: i32) {
    populate(server);
    let mut web = pod("apps", "web", "worker-0", Some("ReplicaSet"));
    web["metadata"]["labels"] = json!({"app": "web"});
    server.put(PODS, web);
    server.put(
        PDBS,
        json!({"metadata": {"name": "web-budget", "namespace": "apps"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": allowed}}),
    );
}

/// What a drain reported through its progress callback.
#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<DrainProgress>>);

impl Heard {
    fn callback(&self) -> impl Fn(DrainProgress) + Send + Sync + '_ {
        |p| self.0.lock().unwrap().push(p)
    }
    fn all(&self) -> Vec<DrainProgress> {
        self.0.lock().unwrap().clone()
    }
}

const BLOCKING: &str = "drain waits for PodDisruptionBudgets (node not cordoned): pod apps/web \
                        (PodDisruptionBudget apps/web-budget allows 0 disruptions, 1 needed)";

#[tokio::test]
async fn self_drain_preflight_times_out_uncordoned_naming_pod_and_budget() {
    let (server, kn) = setup(json!({})).await;
    populate_guarded(&server, 0);
    let opts = DrainOptions {
        timeout: Duration::from_millis(500),
        ..self_opts()
    };
    let heard = Heard::default();
    let err = tokio::time::timeout(
        WAIT,
        drain(&kn, "rendered-worker-2", &opts, &heard.callback()),
    )
    .await
    .expect("the pre-flight gives up at the drain timeout")
    .unwrap_err();
    match &err {
        ClusterError::DrainPreflightTimeout { message, .. } => assert_eq!(message, BLOCKING),
        other => panic!("expected a pre-flight timeout, got {other}"),
    }
    assert_eq!(heard.all(), [DrainProgress::Blocked(BLOCKING.into())]);
    assert!(server.get(NODES, "worker-0").unwrap()["spec"]["unschedulable"].is_null());
    assert_eq!(server.count_on("create", "/eviction"), 0);
    assert_eq!(server.count("patch"), 0, "nothing written to the node");
}

#[tokio::test]
async fn self_drain_preflight_goes_on_when_the_budget_allows() {
    let (server, kn) = setup(json!({})).await;
    populate_guarded(&server, 0);
    let heard = Heard::default();
    let callback = heard.callback();
    let opts = self_opts();
    let drained = drain(&kn, "rendered-worker-2", &opts, &callback);
    let budget = async {
        assert!(eventually(WAIT, || !heard.all().is_empty()).await);
        assert!(server.get(NODES, "worker-0").unwrap()["spec"]["unschedulable"].is_null());
        server.merge(
            PDBS,
            "apps",
            "web-budget",
            json!({"status": {"disruptionsAllowed": 1}}),
        );
    };
    let (outcome, ()) = tokio::join!(drained, budget);
    let DrainOutcome::Drained { evicted, .. } = outcome.unwrap() else {
        panic!("expected a self-drain");
    };
    assert_eq!(evicted, ["apps/bare", "apps/cache", "apps/web"]);
    assert_eq!(
        heard.all(),
        [
            DrainProgress::Blocked(BLOCKING.into()),
            DrainProgress::Proceeding
        ]
    );
    assert_eq!(
        server.get(NODES, "worker-0").unwrap()["spec"]["unschedulable"],
        json!(true)
    );
}

/// A node already cordoned (a drain begun before a restart) goes straight to the evictions.
#[tokio::test]
async fn self_drain_of_a_cordoned_node_skips_the_preflight() {
    let (server, kn) = setup(json!({})).await;
    populate_guarded(&server, 0);
    server.merge(
        NODES,
        "",
        "worker-0",
        json!({"spec": {"unschedulable": true}}),
    );
    eventually(WAIT, || kn.view().is_some_and(|v| v.unschedulable)).await;
    let heard = Heard::default();
    let outcome = drain(&kn, "rendered-worker-2", &self_opts(), &heard.callback())
        .await
        .unwrap();
    assert!(matches!(outcome, DrainOutcome::Drained { .. }));
    assert_eq!(heard.all(), []);
    assert_eq!(server.count_on("watch", "/poddisruptionbudgets"), 0);
}
