//! The daemon's Node: watch, annotation writes, conflicts, faults (SPEC §8).

mod support;

use std::time::Duration;

use machine_config_daemon::cluster::Options;
use machine_config_daemon::cluster::node::{
    CURRENT_CONFIG, DESIRED_CONFIG, KubeNode, MAX_REASON_CHARS, NodeState, POST_CONFIG_ACTION,
    REASON, STATE,
};
use serde_json::{Value, json};
use support::{NODES, TestApiServer, eventually, node};

const WAIT: Duration = Duration::from_secs(10);

fn annotation(server: &TestApiServer, key: &str) -> Option<String> {
    server.get(NODES, "worker-0")?["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

async fn setup(annotations: Value) -> (TestApiServer, KubeNode) {
    let server = TestApiServer::start().await;
    server.put(NODES, node("worker-0", annotations));
    let kn = KubeNode::new(server.client(), "worker-0", Options::fast());
    kn.wait_synced().await.expect("node seen");
    (server, kn)
}

#[tokio::test]
async fn watch_reports_desired_config_and_needs_update() {
    let (server, kn) = setup(json!({
        CURRENT_CONFIG: "rendered-worker-1", DESIRED_CONFIG: "rendered-worker-1", STATE: "Done",
    }))
    .await;
    let view = kn.view().unwrap();
    assert_eq!(view.current_config.as_deref(), Some("rendered-worker-1"));
    assert!(!view.needs_update());

    let mut rx = kn.subscribe();
    server.merge(
        NODES,
        "",
        "worker-0",
        json!({"metadata": {"annotations": {DESIRED_CONFIG: "rendered-worker-2"}}}),
    );
    let seen = tokio::time::timeout(
        WAIT,
        rx.wait_for(|_| kn.view().is_some_and(|v| v.needs_update())),
    )
    .await
    .expect("watch delivers the change");
    drop(seen);
    assert_eq!(
        kn.view().unwrap().desired_config.as_deref(),
        Some("rendered-worker-2")
    );
}

#[tokio::test]
async fn annotations_written_without_touching_others() {
    let (server, kn) = setup(json!({
        "example.com/owner": "team-a", DESIRED_CONFIG: "rendered-worker-2", STATE: "Done",
    }))
    .await;
    kn.set_state(NodeState::Working, "applying rendered-worker-2")
        .await
        .unwrap();
    assert_eq!(annotation(&server, STATE).as_deref(), Some("Working"));
    assert_eq!(
        annotation(&server, REASON).as_deref(),
        Some("applying rendered-worker-2")
    );

    kn.set_post_config_action(Some("Rebooting")).await.unwrap();
    assert_eq!(
        annotation(&server, POST_CONFIG_ACTION).as_deref(),
        Some("Rebooting")
    );
    kn.set_post_config_action(None).await.unwrap();
    assert_eq!(annotation(&server, POST_CONFIG_ACTION), None);

    kn.report(
        NodeState::Done,
        "ignored when Done",
        Some("rendered-worker-2"),
    )
    .await
    .unwrap();
    assert_eq!(annotation(&server, STATE).as_deref(), Some("Done"));
    assert_eq!(
        annotation(&server, REASON).as_deref(),
        Some(""),
        "reason is empty when Done"
    );
    assert_eq!(
        annotation(&server, CURRENT_CONFIG).as_deref(),
        Some("rendered-worker-2")
    );
    // Other writers' annotations and the desired config are untouched.
    assert_eq!(
        annotation(&server, "example.com/owner").as_deref(),
        Some("team-a")
    );
    assert_eq!(
        annotation(&server, DESIRED_CONFIG).as_deref(),
        Some("rendered-worker-2")
    );
    // Every write was a merge patch carrying a resourceVersion, and only our keys.
    for r in server.requests().iter().filter(|r| r.verb == "patch") {
        assert_eq!(r.path, "/api/v1/nodes/worker-0");
    }
}

#[tokio::test]
async fn conflict_is_retried_after_rereading() {
    let (server, kn) = setup(json!({DESIRED_CONFIG: "rendered-worker-2"})).await;
    server.conflict_next_writes(2);
    kn.set_current_config("rendered-worker-2").await.unwrap();
    assert_eq!(
        annotation(&server, CURRENT_CONFIG).as_deref(),
        Some("rendered-worker-2")
    );
    assert_eq!(
        server.count_on("patch", "/nodes/worker-0"),
        3,
        "two 409s then success"
    );
    assert!(
        server.count_on("get", "/nodes/worker-0") >= 2,
        "re-read after each conflict"
    );
}

#[tokio::test]
async fn concurrent_writer_causes_real_conflict_and_both_writes_survive() {
    let (server, kn) = setup(json!({DESIRED_CONFIG: "rendered-worker-2"})).await;
    // Another controller writes between our read and our write: our resourceVersion is stale.
    kn.set_state(NodeState::Working, "").await.unwrap();
    server.merge(
        NODES,
        "",
        "worker-0",
        json!({"metadata": {"annotations": {"example.com/other": "x"}}}),
    );
    server.merge(
        NODES,
        "",
        "worker-0",
        json!({"metadata": {"annotations": {"example.com/other": "y"}}}),
    );
    kn.set_state(NodeState::Degraded, "boom").await.unwrap();
    assert_eq!(annotation(&server, STATE).as_deref(), Some("Degraded"));
    assert_eq!(
        annotation(&server, "example.com/other").as_deref(),
        Some("y")
    );
}

#[tokio::test]
async fn reason_is_clipped_to_2000_characters() {
    let (server, kn) = setup(json!({})).await;
    let long = "é".repeat(MAX_REASON_CHARS + 500);
    kn.set_state(NodeState::Degraded, &long).await.unwrap();
    let reason = annotation(&server, REASON).unwrap();
    assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
    assert!(long.starts_with(&reason));
}

#[tokio::test]
async fn survives_500s_and_dropped_watches_without_losing_an_update() {
    let (server, kn) = setup(json!({DESIRED_CONFIG: "rendered-worker-1"})).await;
    // Writes through a burst of 500s.
    server.fail_next(3);
    kn.set_state(NodeState::Working, "").await.unwrap();
    assert_eq!(annotation(&server, STATE).as_deref(), Some("Working"));

    // Watches dropped while the API server fails for a while; a change made meanwhile arrives.
    server.fail_next(4);
    server.drop_watches();
    server.merge(
        NODES,
        "",
        "worker-0",
        json!({"metadata": {"annotations": {DESIRED_CONFIG: "rendered-worker-3"}}}),
    );
    assert!(
        eventually(WAIT, || kn.view().and_then(|v| v.desired_config).as_deref()
            == Some("rendered-worker-3"))
        .await,
        "the change made while the watch was down is seen"
    );
    assert!(server.count("watch") >= 2, "the watch was re-established");
}

#[tokio::test]
async fn missing_node_is_a_clear_error() {
    let server = TestApiServer::start().await;
    let kn = KubeNode::new(server.client(), "ghost", Options::fast());
    let err = kn.wait_synced().await.unwrap_err();
    assert_eq!(err.to_string(), "node \"ghost\" not found");
}

#[tokio::test]
async fn watch_relists_after_410_gone() {
    let (server, kn) = setup(json!({DESIRED_CONFIG: "rendered-worker-1"})).await;
    let lists = server.count("list");
    // The API server forgot the history our resourceVersion points into, then the watch drops:
    // the re-watch from the old resourceVersion is answered 410, and only a fresh LIST recovers.
    server.merge(
        NODES,
        "",
        "worker-0",
        json!({"metadata": {"labels": {"a": "b"}}}),
    );
    server.compact();
    server.drop_watches();
    server.merge(
        NODES,
        "",
        "worker-0",
        json!({"metadata": {"annotations": {DESIRED_CONFIG: "rendered-worker-4"}}}),
    );
    assert!(
        eventually(WAIT, || kn.view().and_then(|v| v.desired_config).as_deref()
            == Some("rendered-worker-4"))
        .await
    );
    assert_eq!(server.gone_served(), 1, "{:#?}", server.requests());
    assert_eq!(
        server.count("list"),
        lists + 1,
        "one re-list after the 410: {:#?}",
        server.requests()
    );
    // In that order: the watch from the old resourceVersion (answered 410), then the LIST.
    let verbs: Vec<&str> = server.requests().iter().map(|r| r.verb).collect();
    let relist = verbs.iter().rposition(|v| *v == "list").unwrap();
    assert_eq!(verbs[relist - 1], "watch", "{verbs:?}");
}

/// A watch resumed after an API server restart gets `410 Gone`: the node is relisted at once,
/// not after the watch backoff (an hour here: a relist that waited for it would miss the
/// deadline), and exactly once.
#[tokio::test]
async fn resumed_watch_gone_relists_at_once() {
    let server = TestApiServer::start().await;
    server.put(
        NODES,
        node("worker-0", json!({DESIRED_CONFIG: "rendered-worker-1"})),
    );
    let opts = Options {
        backoff_base: Duration::from_secs(3600),
        backoff_max: Duration::from_secs(3600),
        ..Options::fast()
    };
    let kn = KubeNode::new(server.client(), "worker-0", opts);
    kn.wait_synced().await.expect("node seen");
    let lists = server.count_on("list", "nodes");
    let watches = server.count_on("watch", "nodes");
    server.gone_next_watches(1);
    server.drop_watches();
    server.merge(
        NODES,
        "",
        "worker-0",
        json!({"metadata": {"annotations": {DESIRED_CONFIG: "rendered-worker-4"}}}),
    );
    assert!(
        eventually(WAIT, || kn.view().and_then(|v| v.desired_config).as_deref()
            == Some("rendered-worker-4"))
        .await,
        "the change after the 410 was not seen: {:?}",
        server.requests()
    );
    assert_eq!(server.count_on("list", "nodes"), lists + 1, "one relist");
    // The resumed watch (answered 410), then the watch after the relist (which may come a
    // moment after the relisted node is seen: waited for).
    assert!(
        eventually(WAIT, || server.count_on("watch", "nodes") >= watches + 2).await,
        "no watch after the relist: {:?}",
        server.requests()
    );
}
