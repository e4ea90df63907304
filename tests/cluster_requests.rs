//! Request budget: what one update costs, and that an idle daemon makes no requests beyond its
//! open watches (docs/cluster.md quotes the numbers printed here; run with `--nocapture`).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use machine_config_daemon::cluster::Options;
use machine_config_daemon::cluster::drain::{DrainMode, DrainOptions, drain, uncordon};
use machine_config_daemon::cluster::events::{EventReason, NodeEvents};
use machine_config_daemon::cluster::machineconfig::fetch_machine_config;
use machine_config_daemon::cluster::mcn::{
    Condition, ConditionStatus as S, ConditionType as T, MachineConfigNodes,
};
use machine_config_daemon::cluster::node::{
    CURRENT_CONFIG, DESIRED_CONFIG, DESIRED_DRAIN, KubeNode, LAST_APPLIED_DRAIN, NodeState, STATE,
};
use machine_config_daemon::cluster::policy::PolicyWatch;
use serde_json::json;
use support::{MACHINECONFIGS, MACHINECONFIGURATIONS, NODES, TestApiServer, eventually, node};

fn by_verb(server: &TestApiServer, skip: usize) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for r in server.requests().into_iter().skip(skip) {
        *m.entry(r.verb).or_default() += 1;
    }
    m
}

#[tokio::test]
async fn one_update_and_idle_request_counts() {
    let server = TestApiServer::start().await;
    server.bookmarks_every(Duration::from_millis(100));
    server.put(NODES, node("worker-0", json!({
        CURRENT_CONFIG: "rendered-worker-1", DESIRED_CONFIG: "rendered-worker-1", STATE: "Done",
    })));
    server.put(MACHINECONFIGS, json!({"metadata": {"name": "rendered-worker-2"}, "spec": {"config": {"ignition": {"version": "3.4.0"}}}}));
    server.put(MACHINECONFIGURATIONS, json!({"metadata": {"name": "cluster", "generation": 1}, "spec": {},
        "status": {"observedGeneration": 1, "nodeDisruptionPolicyStatus": {"clusterPolicies": {}}}}));

    // Start-up: the two watches, the MachineConfigNode.
    let client = server.client();
    let opts = Options::fast();
    let kn = KubeNode::new(client.clone(), "worker-0", opts.clone());
    let view = kn.wait_synced().await.unwrap();
    let policy = PolicyWatch::new(client.clone(), opts.clone());
    policy.current().await.unwrap();
    let mcn = MachineConfigNodes::new(client.clone(), "worker-0", opts.clone());
    mcn.ensure("worker", "rendered-worker-1").await.unwrap();
    let events = NodeEvents::new(
        client.clone(),
        "worker-0",
        view.uid.as_deref(),
        opts.clone(),
    );
    let startup = by_verb(&server, 0);
    println!("start-up requests: {startup:?}");

    // Idle: nothing changes while 20 bookmarks reach each of the two watches (one every
    // 100 ms): the watches stay open and nothing else is asked.
    let before = server.requests().len();
    let bookmarks = server.bookmarks_sent();
    assert!(
        eventually(Duration::from_secs(30), || server.bookmarks_sent()
            >= bookmarks + 40)
        .await,
        "bookmarks flow: {} sent",
        server.bookmarks_sent() - bookmarks
    );
    let idle = by_verb(&server, before);
    println!("idle requests over 40 bookmarks: {idle:?}");
    assert!(idle.is_empty(), "idle daemon made requests: {idle:?}");

    // One update with a controller drain, reported the way the update flow reports it.
    let before = server.requests().len();
    server.merge(
        NODES,
        "",
        "worker-0",
        json!({"metadata": {"annotations": {DESIRED_CONFIG: "rendered-worker-2"}}}),
    );
    assert!(
        eventually(Duration::from_secs(5), || kn
            .view()
            .is_some_and(|v| v.needs_update()))
        .await
    );
    let controller = async {
        for round in 0..2 {
            let mut want = None;
            let asked = eventually(Duration::from_secs(5), || {
                want = server.get(NODES, "worker-0").unwrap()["metadata"]["annotations"]
                    [DESIRED_DRAIN]
                    .as_str()
                    .map(String::from);
                want.is_some()
                    && server.get(NODES, "worker-0").unwrap()["metadata"]["annotations"]
                        [LAST_APPLIED_DRAIN]
                        .as_str()
                        != want.as_deref()
            })
            .await;
            assert!(
                asked,
                "drain request {round} (drain, then uncordon) never came: {:?}",
                server.get(NODES, "worker-0")
            );
            server.merge(
                NODES,
                "",
                "worker-0",
                json!({"metadata": {"annotations": {LAST_APPLIED_DRAIN: want}}}),
            );
        }
    };
    let update = async {
        let drain_opts = DrainOptions {
            mode: DrainMode::Controller,
            timeout: Duration::from_secs(5),
            ..Default::default()
        };
        kn.set_state(NodeState::Working, "").await.unwrap();
        fetch_machine_config(&client, "rendered-worker-2", &opts)
            .await
            .unwrap();
        policy.current().await.unwrap();
        mcn.ensure("worker", "rendered-worker-2").await.unwrap();
        mcn.set_conditions(&[
            Condition::new(
                T::UpdatePrepared,
                S::True,
                "UpdatePrepared",
                "plan computed",
            ),
            Condition::new(
                T::AppliedFilesAndOS,
                S::True,
                "AppliedFilesAndOS",
                "files written",
            ),
        ])
        .await
        .unwrap();
        mcn.set_validated_desired("rendered-worker-2")
            .await
            .unwrap();
        drain(&kn, "rendered-worker-2", &drain_opts, &|_| {})
            .await
            .unwrap();
        mcn.set_conditions(&[
            Condition::new(T::Drained, S::True, "Drained", ""),
            Condition::new(
                T::UpdateExecuted,
                S::True,
                "UpdateExecuted",
                "files written",
            ),
            Condition::new(
                T::UpdatePostActionComplete,
                S::True,
                "UpdatePostActionComplete",
                "reloaded",
            ),
        ])
        .await
        .unwrap();
        uncordon(&kn, "rendered-worker-2", &drain_opts)
            .await
            .unwrap();
        kn.report(NodeState::Done, "", Some("rendered-worker-2"))
            .await
            .unwrap();
        mcn.set_conditions(&[
            Condition::new(T::Uncordoned, S::True, "Uncordoned", ""),
            Condition::new(T::UpdateComplete, S::True, "UpdateComplete", ""),
            Condition::new(T::Updated, S::True, "Updated", ""),
        ])
        .await
        .unwrap();
        mcn.set_current("rendered-worker-2").await.unwrap();
        events
            .publish(
                EventReason::NodeDone,
                "Setting node worker-0, currentConfig rendered-worker-2 to Done",
            )
            .await
            .unwrap();
    };
    tokio::join!(controller, update);
    let update = by_verb(&server, before);
    let total: usize = update.values().sum();
    println!("one update (controller drain) requests: {update:?} total {total}");
    assert_eq!(update.get("list"), None, "no lists during an update");
    assert_eq!(update.get("watch"), None, "no new watches during an update");
    assert!(total <= 16, "{total} requests for one update");
}
