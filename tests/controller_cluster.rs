//! The controller against the test API server (tests/support/), with real daemons: each
//! simulated node is the `machine-config-daemon start` binary in cluster mode (`--no-systemd`,
//! a tempdir root, drains handed to the controller), and the controller runs in-process (pools,
//! drains, policy status). Every write the server
//! takes is in its history, so "at every moment" is checked by replaying it.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use machine_config_daemon::cluster::Options;
use machine_config_daemon::cluster::node::{CURRENT_CONFIG, DESIRED_CONFIG, REASON, STATE};
use machine_config_daemon::controller::{self, ControllerOptions, lease::LeaseTimings};
use serde_json::{Value, json};
use support::{
    EVENTS, LEASES, MACHINECONFIGPOOLS, MACHINECONFIGS, NODES, TestApiServer, eventually,
};

const BIN: &str = env!("CARGO_BIN_EXE_machine-config-daemon");
const WAIT: Duration = Duration::from_secs(60);
const FILE: &str = "/etc/mco-test-file";

/// A worker MachineConfig writing `FILE` with `contents`.
fn worker_config(name: &str, contents: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"machineconfiguration.openshift.io/role": "worker"}},
        "spec": {"config": {
            "ignition": {"version": "3.4.0"},
            "storage": {"files": [{
                "path": FILE, "mode": 420,
                "contents": {"source": format!("data:,{contents}")},
            }]},
        }},
    })
}

fn worker_pool(max_unavailable: Value) -> Value {
    json!({
        "metadata": {"name": "worker", "generation": 1},
        "spec": {
            "machineConfigSelector": {"matchLabels": {"machineconfiguration.openshift.io/role": "worker"}},
            "nodeSelector": {"matchLabels": {"node-role.kubernetes.io/worker": ""}},
            "maxUnavailable": max_unavailable,
        },
    })
}

/// The test API server, the controller and one daemon per node.
struct Cluster {
    server: TestApiServer,
    dir: tempfile::TempDir,
    daemons: BTreeMap<String, Child>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    controller: Option<tokio::task::JoinHandle<Result<(), controller::ControllerError>>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.daemons.values_mut() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for child in self.daemons.values_mut() {
            let _ = child.wait();
        }
    }
}

impl Cluster {
    /// `nodes`: (name, zone, creation time) — Ready worker nodes with no annotation.
    async fn new(pool: Value, configs: &[Value], nodes: &[(&str, &str, &str)]) -> Cluster {
        let server = TestApiServer::start().await;
        server.bookmarks_every(Duration::from_millis(200));
        server.put(MACHINECONFIGPOOLS, pool);
        for c in configs {
            server.put(MACHINECONFIGS, c.clone());
        }
        for (name, zone, created) in nodes {
            let mut n = support::node(name, json!({}));
            n["metadata"]["labels"] = json!({"node-role.kubernetes.io/worker": ""});
            if !zone.is_empty() {
                n["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!(zone);
            }
            n["metadata"]["creationTimestamp"] = json!(created);
            server.put(NODES, n);
        }
        let dir = tempfile::tempdir().unwrap();
        server.write_kubeconfig(dir.path());
        Cluster {
            server,
            dir,
            daemons: BTreeMap::new(),
            stop: None,
            controller: None,
        }
    }

    fn start_controller(&mut self, identity: &str) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let opts = ControllerOptions {
            identity: identity.into(),
            namespace: "machine-config-daemon".into(),
            lease: LeaseTimings::default(),
            requests: Options::fast(),
            drain: machine_config_daemon::controller::drain::DrainControllerOptions {
                api: Options::fast(),
                ..Default::default()
            },
            metrics: None,
        };
        let client = self.server.client();
        self.controller = Some(tokio::spawn(controller::run(client, opts, async move {
            let _ = rx.await;
        })));
        self.stop = Some(tx);
    }

    fn root(&self, node: &str) -> PathBuf {
        self.dir.path().join(node)
    }

    fn start_daemon(&mut self, node: &str) {
        let root = self.root(node);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        let log = std::fs::File::create(self.dir.path().join(format!("{node}.log"))).unwrap();
        let child = Command::new(BIN)
            .arg("start")
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
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
        self.daemons.insert(node.to_string(), child);
    }

    fn logs(&self) -> String {
        self.daemons
            .keys()
            .map(|n| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{n}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "--- {n}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn pool(&self) -> Value {
        self.server.get(MACHINECONFIGPOOLS, "worker").unwrap()
    }

    fn target(&self) -> Option<String> {
        self.pool()["spec"]["configuration"]["name"]
            .as_str()
            .map(String::from)
    }

    fn annotation(&self, node: &str, key: &str) -> Option<String> {
        self.server.get(NODES, node).unwrap()["metadata"]["annotations"][key]
            .as_str()
            .map(String::from)
    }

    fn condition(&self, type_: &str) -> (String, String) {
        let pool = self.pool();
        let c = pool["status"]["conditions"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["type"] == type_).cloned())
            .unwrap_or_default();
        (
            c["status"].as_str().unwrap_or_default().into(),
            c["message"].as_str().unwrap_or_default().into(),
        )
    }

    /// Waits until the pool's spec names a config other than `not` and returns it.
    async fn wait_new_target(&self, not: Option<&str>) -> String {
        let ok = eventually(WAIT, || {
            self.target().is_some_and(|t| Some(t.as_str()) != not)
        })
        .await;
        assert!(ok, "no new target: {}", self.pool());
        self.target().unwrap()
    }

    /// Waits until every node runs `config` and the pool says Updated on it.
    async fn wait_updated(&self, config: &str) {
        let ok = eventually(WAIT, || {
            let pool = self.pool();
            self.daemons.keys().all(|n| {
                self.annotation(n, CURRENT_CONFIG).as_deref() == Some(config)
                    && self.annotation(n, STATE).as_deref() == Some("Done")
            }) && pool["status"]["configuration"]["name"] == config
                && self.condition("Updated").0 == "True"
        })
        .await;
        assert!(
            ok,
            "pool not updated on {config}: {}\nnodes: {:?}\n{}",
            self.pool()["status"],
            self.daemons
                .keys()
                .map(|n| (
                    n,
                    self.annotation(n, CURRENT_CONFIG),
                    self.annotation(n, DESIRED_CONFIG),
                    self.annotation(n, STATE),
                    self.annotation(n, REASON)
                ))
                .collect::<Vec<_>>(),
            self.logs()
        );
    }

    fn set_file_source(&self, name: &str, contents: &str) {
        self.server
            .put(MACHINECONFIGS, worker_config(name, contents));
    }

    async fn stop_controller(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.controller.take() {
            h.await.unwrap().unwrap();
        }
    }
}

/// Unavailable as a user would count it: cordoned, not Ready, not Done, or not yet on its
/// desired config.
fn unavailable(node: &Value) -> bool {
    let a = &node["metadata"]["annotations"];
    let ready = node["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    node["spec"]["unschedulable"] == true
        || !ready
        || a[STATE] != "Done"
        || a[DESIRED_CONFIG] != a[CURRENT_CONFIG]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_roll_out_two_at_a_time_by_zone_then_age() {
    // Zones and ages out of order; expected order: zone-a oldest first, then zone-b, zone-c.
    let nodes = [
        ("n-b-young", "zone-b", "2026-01-05T00:00:00Z"),
        ("n-a-young", "zone-a", "2026-01-04T00:00:00Z"),
        ("n-c-old", "zone-c", "2026-01-01T00:00:00Z"),
        ("n-a-old", "zone-a", "2026-01-03T00:00:00Z"),
        ("n-b-old", "zone-b", "2026-01-02T00:00:00Z"),
        ("n-c-young", "zone-c", "2026-01-06T00:00:00Z"),
    ];
    let expected = [
        "n-a-old",
        "n-a-young",
        "n-b-old",
        "n-b-young",
        "n-c-old",
        "n-c-young",
    ];
    let mut c = Cluster::new(
        worker_pool(json!(2)),
        &[worker_config("00-worker", "one")],
        &nodes,
    )
    .await;
    c.start_controller("controller-0");
    for (n, _, _) in &nodes {
        c.start_daemon(n);
    }

    // Render: the rendered config is created, owned by the pool, without a role label, and
    // referenced by the pool; new nodes get it and apply it as their first config.
    let first = c.wait_new_target(None).await;
    assert!(first.starts_with("rendered-worker-"), "{first}");
    let rendered = c.server.get(MACHINECONFIGS, &first).unwrap();
    let pool = c.pool();
    assert_eq!(
        rendered["metadata"]["ownerReferences"][0]["kind"],
        "MachineConfigPool"
    );
    assert_eq!(
        rendered["metadata"]["ownerReferences"][0]["uid"],
        pool["metadata"]["uid"]
    );
    assert!(rendered["metadata"]["labels"].is_null(), "{rendered}");
    assert_eq!(
        pool["spec"]["configuration"]["source"][0]["name"],
        "00-worker"
    );
    c.wait_updated(&first).await;
    for (n, _, _) in &nodes {
        let file = std::fs::read_to_string(c.root(n).join("etc/mco-test-file")).unwrap();
        assert_eq!(file, "one");
    }

    // A change of the source: a new rendered config, rolled out two at a time.
    let from = c.server.history(NODES).len();
    c.set_file_source("00-worker", "two");
    let second = c.wait_new_target(Some(&first)).await;
    c.wait_updated(&second).await;

    // Replay every node write of the rollout.
    let mut state: BTreeMap<String, Value> = c
        .server
        .history(NODES)
        .iter()
        .take(from)
        .map(|(_, n)| {
            (
                n["metadata"]["name"].as_str().unwrap().to_string(),
                n.clone(),
            )
        })
        .collect();
    let mut most = 0;
    let mut order: Vec<String> = Vec::new();
    for (_, n) in c.server.history(NODES).into_iter().skip(from) {
        let name = n["metadata"]["name"].as_str().unwrap().to_string();
        if n["metadata"]["annotations"][DESIRED_CONFIG] == second.as_str() && !order.contains(&name)
        {
            order.push(name.clone());
        }
        state.insert(name, n);
        let now = state.values().filter(|n| unavailable(n)).count();
        assert!(now <= 2, "{now} nodes unavailable at once: {state:#?}");
        most = most.max(now);
    }
    assert_eq!(most, 2, "the rollout never used its budget of 2");
    assert_eq!(order, expected);

    // While it updated, CONFIG was the config it updated from (every status written with the
    // new target but the last, which says Updated).
    let statuses: Vec<Value> = c
        .server
        .history(MACHINECONFIGPOOLS)
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| p["spec"]["configuration"]["name"] == second.as_str())
        .map(|p| p["status"].clone())
        .collect();
    let updating = |s: &Value| {
        s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Updating" && c["status"] == "True")
    };
    assert!(statuses.iter().any(updating));
    for s in statuses.iter().filter(|s| updating(s)) {
        assert_eq!(s["configuration"]["name"], first.as_str(), "{s}");
    }

    // Final counts, and the previous rendered config kept for rollback.
    let status = &c.pool()["status"];
    for (field, n) in [
        ("machineCount", 6),
        ("updatedMachineCount", 6),
        ("readyMachineCount", 6),
        ("unavailableMachineCount", 0),
        ("degradedMachineCount", 0),
    ] {
        assert_eq!(status[field], n, "{field}: {status}");
    }
    assert!(c.server.get(MACHINECONFIGS, &first).is_some());
    // Every node's drain was handed to the controller and answered: cordoned by it, then
    // uncordoned, `lastAppliedDrain` matching the daemon's last request.
    for n in expected {
        let node = c.server.get(NODES, n).unwrap();
        let a = &node["metadata"]["annotations"];
        let desired = a["machineconfiguration.openshift.io/desiredDrain"].as_str();
        assert_eq!(
            desired,
            Some(format!("uncordon-{second}").as_str()),
            "{n}: {a}"
        );
        assert_eq!(
            a["machineconfiguration.openshift.io/lastAppliedDrain"].as_str(),
            desired,
            "{n}"
        );
        assert!(
            c.server
                .history(NODES)
                .iter()
                .any(|(_, o)| o["metadata"]["name"] == *n && o["spec"]["unschedulable"] == true),
            "{n} was never cordoned"
        );
        assert_ne!(node["spec"]["unschedulable"], true, "{n} left cordoned");
    }
    // Events on the pool: one SetDesiredConfig per node moved, naming it and the config.
    let events = c.server.list(EVENTS);
    for n in expected {
        let note = format!("Targeted node {n} to MachineConfig {second}");
        assert!(
            events.iter().any(|e| e["reason"] == "SetDesiredConfig"
                && e["regarding"]["kind"] == "MachineConfigPool"
                && e["note"] == note.as_str()),
            "no event {note:?}"
        );
    }
    c.stop_controller().await;
}

/// Three daemons converged on the first config; returns the cluster and that config.
async fn three_nodes(max: Value) -> (Cluster, String) {
    let nodes = [
        ("n0", "", "2026-01-01T00:00:00Z"),
        ("n1", "", "2026-01-02T00:00:00Z"),
        ("n2", "", "2026-01-03T00:00:00Z"),
    ];
    let mut c = Cluster::new(
        worker_pool(max),
        &[worker_config("00-worker", "one")],
        &nodes,
    )
    .await;
    c.start_controller("controller-0");
    for (n, _, _) in &nodes {
        c.start_daemon(n);
    }
    let first = c.wait_new_target(None).await;
    c.wait_updated(&first).await;
    (c, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_node_stops_the_rollout_until_it_recovers() {
    let (c, first) = three_nodes(json!(1)).await;
    // Drift on n1: its daemon reports Degraded.
    std::fs::write(c.root("n1").join("etc/mco-test-file"), "edited").unwrap();
    let degraded = eventually(WAIT, || c.condition("NodeDegraded").0 == "True").await;
    assert!(degraded, "{}\n{}", c.pool()["status"], c.logs());
    assert_eq!(
        c.condition("NodeDegraded").1,
        "Node n1 is reporting: \"content mismatch for file \\\"/etc/mco-test-file\\\"\""
    );
    assert_eq!(c.condition("Degraded").0, "True");
    assert_eq!(c.pool()["status"]["degradedMachineCount"], 1);

    // A new config renders, but no node is moved while n1 is degraded. The status written for
    // the new target comes from the same pass that decided (nothing) for the nodes.
    c.set_file_source("00-worker", "two");
    let second = c.wait_new_target(Some(&first)).await;
    let seen = eventually(WAIT, || c.condition("Updating").1.contains(second.as_str())).await;
    assert!(seen, "{}", c.pool()["status"]);
    for n in ["n0", "n1", "n2"] {
        assert_eq!(
            c.annotation(n, DESIRED_CONFIG).as_deref(),
            Some(first.as_str()),
            "{n}"
        );
    }

    // Recovery: the file is restored, n1 is Done again, the rollout runs to the end.
    std::fs::write(c.root("n1").join("etc/mco-test-file"), "one").unwrap();
    c.wait_updated(&second).await;
    assert_eq!(c.condition("NodeDegraded").0, "False");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_pool_moves_no_node_until_unpaused() {
    let (c, first) = three_nodes(json!("100%")).await;
    // (As the API server would, the spec change bumps the generation.)
    let generation = c.pool()["metadata"]["generation"].as_i64().unwrap();
    c.server.merge(
        MACHINECONFIGPOOLS,
        "",
        "worker",
        json!({"metadata": {"generation": generation + 1}, "spec": {"paused": true}}),
    );
    // The controller has seen the pause before the source changes.
    let observed = eventually(WAIT, || {
        let pool = c.pool();
        pool["status"]["observedGeneration"] == pool["metadata"]["generation"]
    })
    .await;
    assert!(observed, "{}", c.pool());
    c.set_file_source("00-worker", "two");
    let second = c.wait_new_target(Some(&first)).await;
    // Paused: the pool knows its new config, is not Updated and not Updating, and no node has
    // been told about it.
    let seen = eventually(WAIT, || {
        let status = c.pool()["status"].clone();
        c.condition("Updated").0 == "False"
            && c.condition("Updating").0 == "False"
            && status["observedGeneration"] == c.pool()["metadata"]["generation"]
    })
    .await;
    assert!(seen, "{}", c.pool()["status"]);
    for n in ["n0", "n1", "n2"] {
        assert_eq!(
            c.annotation(n, DESIRED_CONFIG).as_deref(),
            Some(first.as_str()),
            "{n}"
        );
    }
    c.server.merge(
        MACHINECONFIGPOOLS,
        "",
        "worker",
        json!({"spec": {"paused": false}}),
    );
    c.wait_updated(&second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_does_not_render_keeps_the_last_good_one() {
    let mut c = Cluster::new(
        worker_pool(json!(1)),
        &[worker_config("00-worker", "one")],
        &[],
    )
    .await;
    c.start_controller("controller-0");
    let good = c.wait_new_target(None).await;
    let mut bad = worker_config("50-realtime", "x");
    bad["spec"]["kernelType"] = json!("realtime");
    bad["spec"]["extensions"] = json!(["kernel-devel"]);
    c.server.put(MACHINECONFIGS, bad);
    let failed = eventually(WAIT, || c.condition("RenderDegraded").0 == "True").await;
    assert!(failed, "{}", c.pool()["status"]);
    let message = c.condition("RenderDegraded").1;
    assert!(
        message.contains("50-realtime") && message.contains("kernel-devel"),
        "{message}"
    );
    assert_eq!(c.condition("Degraded").0, "True");
    assert_eq!(c.target().as_deref(), Some(good.as_str()));
    assert!(
        c.server
            .list(EVENTS)
            .iter()
            .any(|e| e["reason"] == "RenderFailed")
    );
    // Fixed: renders again.
    c.server.delete(MACHINECONFIGS, "", "50-realtime");
    let ok = eventually(WAIT, || c.condition("RenderDegraded").0 == "False").await;
    assert!(ok, "{}", c.pool()["status"]);
    assert_eq!(c.target().as_deref(), Some(good.as_str()));
    c.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leader_and_a_clean_handover() {
    let mut c = Cluster::new(
        worker_pool(json!(1)),
        &[worker_config("00-worker", "one")],
        &[],
    )
    .await;
    c.start_controller("controller-0");
    c.wait_new_target(None).await;
    let holder = |c: &Cluster| {
        c.server
            .get_in(LEASES, "machine-config-daemon", "machine-config-controller")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
    };
    assert_eq!(holder(&c).as_deref(), Some("controller-0"));
    // A second replica waits.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let opts = ControllerOptions {
        identity: "controller-1".into(),
        namespace: "machine-config-daemon".into(),
        lease: LeaseTimings {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_millis(100),
        },
        requests: Options::fast(),
        drain: machine_config_daemon::controller::drain::DrainControllerOptions {
            api: Options::fast(),
            ..Default::default()
        },
        metrics: None,
    };
    let second = tokio::spawn(controller::run(c.server.client(), opts, async move {
        let _ = rx.await;
    }));
    let configs_before = c.server.count_on("create", "machineconfigs");
    // The first gives the Lease up on shutdown; the second takes it and reconciles: a new
    // source is rendered by it.
    c.stop_controller().await;
    let took = eventually(WAIT, || holder(&c).as_deref() == Some("controller-1")).await;
    assert!(took, "{:?}", holder(&c));
    c.set_file_source("00-worker", "two");
    let created = eventually(WAIT, || {
        c.server.count_on("create", "machineconfigs") > configs_before
    })
    .await;
    assert!(created);
    tx.send(()).unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(holder(&c), None);
}

/// A self-signed CA `CN=cn,OU=openshift` ending `days` from now (whole seconds), PEM base64.
fn ca_b64(cn: &str, days: i64) -> String {
    use base64::Engine;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let now =
        time::OffsetDateTime::from_unix_timestamp(k8s_openapi::jiff::Timestamp::now().as_second())
            .unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, "openshift");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(days);
    let pem = p.self_signed(&KeyPair::generate().unwrap()).unwrap().pem();
    base64::engine::general_purpose::STANDARD.encode(pem)
}

/// The certificate reports are written when they change and only then: passes caused by
/// changes that leave the certificates as they are (a label on the ControllerConfig, a label
/// on the pool) write neither status, and the expiring certificate's Warning event is posted
/// once. One writer of the pool's status: every pool status write is the reconciler's patch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reports_are_written_once_per_change() {
    const CONTROLLERCONFIGS: &str = "apis/machineconfiguration.openshift.io/v1/controllerconfigs";
    const CC_STATUS: &str = "controllerconfigs/machine-config-controller/status";
    const POOL_STATUS: &str = "machineconfigpools/worker/status";
    let mut c = Cluster::new(
        worker_pool(json!(1)),
        &[worker_config("00-worker", "one")],
        &[],
    )
    .await;
    let (kube, soon) = (ca_b64("kube-ca", 3650), ca_b64("root-ca", 5));
    c.server.put(
        CONTROLLERCONFIGS,
        json!({"metadata": {"name": "machine-config-controller", "generation": 1},
               "spec": {"kubeAPIServerServingCAData": kube, "rootCAData": soon}}),
    );
    c.start_controller("controller-0");
    let server = &c.server;
    let reported = |n: usize| {
        let cc = server
            .get(CONTROLLERCONFIGS, "machine-config-controller")
            .unwrap();
        let pool = server.get(MACHINECONFIGPOOLS, "worker").unwrap();
        cc["status"]["controllerCertificates"]
            .as_array()
            .is_some_and(|l| l.len() == n)
            && pool["status"]["certExpirys"]
                .as_array()
                .is_some_and(|l| l.len() == n)
            // The pool settled: its generation observed, Updated on its config (no node).
            && pool["status"]["observedGeneration"] == pool["metadata"]["generation"]
            && pool["status"]["configuration"]["name"].is_string()
            && pool["status"]["configuration"]["name"] == pool["spec"]["configuration"]["name"]
    };
    assert!(
        eventually(WAIT, || reported(2)).await,
        "{:#?}",
        server.requests()
    );
    let (cc0, pool0) = (
        server.count_on("patch", CC_STATUS),
        server.count_on("patch", POOL_STATUS),
    );
    assert_eq!(cc0, 1);

    // Changes that leave the certificates as they are.
    server.merge(
        CONTROLLERCONFIGS,
        "",
        "machine-config-controller",
        json!({"metadata": {"labels": {"example": "a"}}}),
    );
    server.merge(
        MACHINECONFIGPOOLS,
        "",
        "worker",
        json!({"metadata": {"labels": {"example": "a"}}}),
    );
    // Then one that adds a registry bundle: the watches are in order, so once it is reported
    // the passes for the changes above are done.
    server.merge(
        CONTROLLERCONFIGS,
        "",
        "machine-config-controller",
        json!({"spec": {"imageRegistryBundleData": [{"file": "registry.example.com", "data": ca_b64("registry-ca", 365)}]}}),
    );
    assert!(
        eventually(WAIT, || reported(3)).await,
        "{:#?}",
        server.requests()
    );
    assert_eq!(server.count_on("patch", CC_STATUS), cc0 + 1);
    assert_eq!(
        server.count_on("patch", POOL_STATUS),
        pool0 + 1,
        "the pool's writes: {:#?}",
        server
            .history(MACHINECONFIGPOOLS)
            .iter()
            .map(|(v, p)| format!(
                "{v} rv={} gen={} og={} certs={} config={} updated-since={} labels={}",
                p["metadata"]["resourceVersion"],
                p["metadata"]["generation"],
                p["status"]["observedGeneration"],
                p["status"]["certExpirys"].as_array().map_or(0, Vec::len),
                p["status"]["configuration"]["name"],
                p["status"]["conditions"][0]["lastTransitionTime"],
                p["metadata"]["labels"]
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(server.count_on("update", POOL_STATUS), 0);
    let warnings: Vec<Value> = server
        .list(EVENTS)
        .into_iter()
        .filter(|e| e["reason"] == "CertificateExpiring")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0]["type"], "Warning");
    assert_eq!(warnings[0]["regarding"]["kind"], "ControllerConfig");
    assert!(
        warnings[0]["note"]
            .as_str()
            .unwrap()
            .starts_with("certificate CN=root-ca,OU=openshift in bundle RootCAData expires at "),
        "{warnings:#?}"
    );
}
