//! The drain controller (src/controller/drain.rs) against the test API server: it answers
//! `desiredDrain` with the daemon's eviction rules, retries 429s, reports a blocked drain, skips
//! drains on a single-node cluster, drains nodes concurrently, and completes the hand-off with a
//! real daemon in `--drain-mode=controller`.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use machine_config_daemon::cluster::node::{
    CONTROL_PLANE_TOPOLOGY, CURRENT_CONFIG, DESIRED_CONFIG, DESIRED_DRAIN, LAST_APPLIED_DRAIN,
    STATE,
};
use machine_config_daemon::controller::drain::{DRAIN_BLOCKED, DrainControllerOptions, run};
use serde_json::{Value, json};
use support::{EVENTS, MACHINECONFIGS, NODES, PODS, TestApiServer, eventually, node, pod};

const WAIT: Duration = Duration::from_secs(20);

fn opts(report_after: Duration) -> DrainControllerOptions {
    DrainControllerOptions {
        api: machine_config_daemon::cluster::Options::fast(),
        eviction_retry: Duration::from_millis(50),
        report_after,
        preflight: true,
    }
}

/// The server with `nodes`, and the controller running on it (stopped when the handle drops).
async fn start(nodes: &[&str], opts: DrainControllerOptions) -> (TestApiServer, Controller) {
    let server = TestApiServer::start().await;
    for n in nodes {
        server.put(NODES, node(n, json!({})));
    }
    let task = tokio::spawn(run(server.client(), opts));
    (server, Controller(task))
}

struct Controller(
    tokio::task::JoinHandle<Result<(), machine_config_daemon::controller::ControllerError>>,
);

impl Drop for Controller {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn annotation(server: &TestApiServer, node: &str, key: &str) -> Option<String> {
    server.get(NODES, node)?["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

fn annotate(server: &TestApiServer, node: &str, annotations: Value) {
    server.merge(
        NODES,
        "",
        node,
        json!({"metadata": {"annotations": annotations}}),
    );
}

fn cordoned(server: &TestApiServer, node: &str) -> bool {
    server.get(NODES, node).unwrap()["spec"]["unschedulable"] == true
}

async fn wait_applied(server: &TestApiServer, node: &str, value: &str) {
    let ok = eventually(WAIT, || {
        annotation(server, node, LAST_APPLIED_DRAIN).as_deref() == Some(value)
    })
    .await;
    assert!(
        ok,
        "{node}: lastAppliedDrain={value} not set: {:#?}",
        server.get(NODES, node)
    );
}

fn pods_left(server: &TestApiServer) -> Vec<String> {
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
    left
}

/// Pods of every kind on worker-0, and one on worker-1.
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
    server.put(
        PODS,
        pod("apps", "elsewhere", "worker-1", Some("ReplicaSet")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_then_uncordon_are_answered_with_the_daemons_rules() {
    let (server, _c) = start(&["worker-0", "worker-1"], opts(WAIT)).await;
    populate(&server);
    server.block_eviction("apps", "web", 2);

    annotate(
        &server,
        "worker-0",
        json!({DESIRED_DRAIN: "drain-rendered-worker-2"}),
    );
    wait_applied(&server, "worker-0", "drain-rendered-worker-2").await;
    assert!(cordoned(&server, "worker-0"));
    assert!(!cordoned(&server, "worker-1"));
    // DaemonSet, mirror and completed pods stay; the others were evicted and are gone.
    assert_eq!(
        pods_left(&server),
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
    assert_eq!(server.count_on("create", "/eviction"), 4);
    assert_eq!(annotation(&server, "worker-0", DRAIN_BLOCKED), None);

    annotate(
        &server,
        "worker-0",
        json!({DESIRED_DRAIN: "uncordon-rendered-worker-2"}),
    );
    wait_applied(&server, "worker-0", "uncordon-rendered-worker-2").await;
    assert!(!cordoned(&server, "worker-0"));
    assert_eq!(server.count_on("create", "/eviction"), 4, "no new eviction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_drain_is_reported_and_retried_until_it_succeeds() {
    let (server, _c) = start(&["worker-0", "worker-1"], opts(Duration::from_millis(300))).await;
    populate(&server);
    server.block_eviction("apps", "web", u32::MAX);

    annotate(
        &server,
        "worker-0",
        json!({DESIRED_DRAIN: "drain-rendered-worker-2"}),
    );
    let reported = eventually(WAIT, || {
        annotation(&server, "worker-0", DRAIN_BLOCKED).is_some()
    })
    .await;
    assert!(reported, "no report: {:#?}", server.get(NODES, "worker-0"));
    let message = annotation(&server, "worker-0", DRAIN_BLOCKED).unwrap();
    assert!(
        message.contains("drain of node worker-0 (drain-rendered-worker-2) not complete after")
            && message.ends_with("pods blocking: apps/web"),
        "{message}"
    );
    let event = eventually(WAIT, || {
        server.list(EVENTS).iter().any(|e| {
            e["reason"] == "DrainBlocked"
                && e["type"] == "Warning"
                && e["regarding"]["name"] == "worker-0"
                && e["note"].as_str().unwrap_or_default().contains("apps/web")
        })
    })
    .await;
    assert!(event, "no DrainBlocked event: {:#?}", server.list(EVENTS));
    assert_eq!(annotation(&server, "worker-0", LAST_APPLIED_DRAIN), None);
    assert!(cordoned(&server, "worker-0"));

    // It keeps retrying: once the budget allows it, the drain completes and the report goes.
    let attempts = server.count_on("create", "/pods/web/eviction");
    server.block_eviction("apps", "web", 0);
    wait_applied(&server, "worker-0", "drain-rendered-worker-2").await;
    assert!(server.count_on("create", "/pods/web/eviction") > attempts);
    assert_eq!(annotation(&server, "worker-0", DRAIN_BLOCKED), None);
    assert!(!pods_left(&server).contains(&"apps/web".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_of_different_nodes_run_concurrently() {
    let (server, _c) = start(&["worker-0", "worker-1", "worker-2"], opts(WAIT)).await;
    populate(&server);
    server.block_eviction("apps", "web", u32::MAX);
    annotate(
        &server,
        "worker-0",
        json!({DESIRED_DRAIN: "drain-rendered-worker-2"}),
    );
    assert!(
        eventually(WAIT, || server.count_on("create", "/pods/web/eviction")
            >= 1)
        .await
    );
    // worker-0 is stuck on its budget; worker-1 is drained meanwhile.
    annotate(
        &server,
        "worker-1",
        json!({DESIRED_DRAIN: "drain-rendered-worker-2"}),
    );
    wait_applied(&server, "worker-1", "drain-rendered-worker-2").await;
    assert!(!pods_left(&server).contains(&"apps/elsewhere".to_string()));
    assert_eq!(annotation(&server, "worker-0", LAST_APPLIED_DRAIN), None);
    // A newer request replaces the stuck one: uncordon is answered at once.
    annotate(
        &server,
        "worker-0",
        json!({DESIRED_DRAIN: "uncordon-rendered-worker-2"}),
    );
    wait_applied(&server, "worker-0", "uncordon-rendered-worker-2").await;
    assert!(!cordoned(&server, "worker-0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_cluster_skips_the_drain() {
    // One Node in the cluster.
    let (server, _c) = start(&["worker-0"], opts(WAIT)).await;
    populate(&server);
    annotate(
        &server,
        "worker-0",
        json!({DESIRED_DRAIN: "drain-rendered-worker-2"}),
    );
    wait_applied(&server, "worker-0", "drain-rendered-worker-2").await;
    assert!(!cordoned(&server, "worker-0"));
    assert_eq!(server.count_on("create", "/eviction"), 0);

    // controlPlaneTopology: SingleReplica, whatever the Node count.
    let (server, _c) = start(&["worker-0", "worker-1"], opts(WAIT)).await;
    populate(&server);
    annotate(
        &server,
        "worker-0",
        json!({CONTROL_PLANE_TOPOLOGY: "SingleReplica", DESIRED_DRAIN: "drain-rendered-worker-2"}),
    );
    wait_applied(&server, "worker-0", "drain-rendered-worker-2").await;
    assert!(!cordoned(&server, "worker-0"));
    assert_eq!(server.count_on("create", "/eviction"), 0);
    // The other node is drained as usual.
    annotate(
        &server,
        "worker-1",
        json!({DESIRED_DRAIN: "drain-rendered-worker-2"}),
    );
    wait_applied(&server, "worker-1", "drain-rendered-worker-2").await;
    assert!(cordoned(&server, "worker-1"));
}

// ---- the hand-off with a real daemon ----

const BIN: &str = env!("CARGO_BIN_EXE_machine-config-daemon");
const FILE: &str = "/etc/mco-test-file";

fn machine_config(name: &str, contents: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"config": {
            "ignition": {"version": "3.4.0"},
            "storage": {"files": [{
                "path": FILE, "mode": 420,
                "contents": {"source": format!("data:,{contents}")},
            }]},
        }},
    })
}

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(server: &TestApiServer, node: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\ncore:x:1000:1000:core:/home/core:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\ncore:x:1000:\n").unwrap();
        let kubeconfig = server.write_kubeconfig(dir.path());
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        let child = Command::new(BIN)
            .arg("start")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--root")
            .arg(&root)
            .args(["--no-systemd", "--metrics-address", "none"])
            .args(["--node-name", node, "--drain-mode", "controller"])
            .env_remove("NODE_NAME")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon { child, dir, root }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn file(&self) -> Option<String> {
        std::fs::read_to_string(self.root.join(FILE.trim_start_matches('/'))).ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_in_controller_drain_mode_is_drained_and_uncordoned_by_the_controller() {
    let (server, _c) = start(&["worker-0", "worker-1"], opts(WAIT)).await;
    server.put(MACHINECONFIGS, machine_config("rendered-worker-1", "one"));
    server.put(MACHINECONFIGS, machine_config("rendered-worker-2", "two"));
    annotate(
        &server,
        "worker-0",
        json!({DESIRED_CONFIG: "rendered-worker-1"}),
    );
    populate(&server);
    let daemon = Daemon::start(&server, "worker-0");
    let done = |config: &'static str| {
        let server = &server;
        move || {
            annotation(server, "worker-0", STATE).as_deref() == Some("Done")
                && annotation(server, "worker-0", CURRENT_CONFIG).as_deref() == Some(config)
        }
    };
    assert!(
        eventually(WAIT, done("rendered-worker-1")).await,
        "{}",
        daemon.log()
    );
    assert_eq!(
        server.count_on("create", "/eviction"),
        0,
        "first apply: no drain"
    );

    // A change the default policy reboots for: the daemon asks for a drain, the controller
    // drains, the daemon applies and asks for the uncordon, the controller uncordons.
    annotate(
        &server,
        "worker-0",
        json!({DESIRED_CONFIG: "rendered-worker-2"}),
    );
    assert!(
        eventually(WAIT, done("rendered-worker-2")).await,
        "{}",
        daemon.log()
    );
    assert_eq!(daemon.file().as_deref(), Some("two"));
    assert_eq!(
        annotation(&server, "worker-0", LAST_APPLIED_DRAIN).as_deref(),
        Some("uncordon-rendered-worker-2")
    );
    assert!(!cordoned(&server, "worker-0"));
    assert_eq!(
        pods_left(&server),
        [
            "apps/elsewhere",
            "batch/job-1",
            "kube-system/ds-agent",
            "kube-system/etcd-worker-0"
        ]
    );
    assert!(
        daemon.log().contains("controller applied the drain"),
        "{}",
        daemon.log()
    );
}
