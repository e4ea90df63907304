//! Cluster mode of `start`, end to end: the real binary with `--kubeconfig` pointing at the test
//! API server (tests/support/), a tempdir root and `--no-systemd`. The daemon learns its desired
//! config from its Node's annotations and reports there, on its MachineConfigNode and in events.
//! Run with `--nocapture` for the request counts and the RSS that docs/cluster.md quotes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use machine_config_daemon::cluster::node::{
    CONTROL_PLANE_TOPOLOGY, CURRENT_CONFIG, DESIRED_CONFIG, DESIRED_DRAIN, LAST_APPLIED_DRAIN,
    REASON, STATE,
};
use serde_json::{Value, json};
use support::{
    CONTROLLERCONFIGS, EVENTS, MACHINECONFIGNODES, MACHINECONFIGS, MACHINECONFIGURATIONS, NODES,
    PODS, TestApiServer, eventually, node, pod,
};

const BIN: &str = env!("CARGO_BIN_EXE_machine-config-daemon");
const NODE: &str = "worker-0";
const WAIT: Duration = Duration::from_secs(20);
const PDBS: &str = "apis/policy/v1/poddisruptionbudgets";
const FILE: &str = "/etc/mco-test-file";

/// A MachineConfig writing `FILE` with `contents` (0644).
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

/// The test API server, a node root and the daemon process (SIGTERM and reaped on drop).
struct Cluster {
    server: TestApiServer,
    dir: tempfile::TempDir,
    root: PathBuf,
    daemon: Option<Child>,
    /// [`Cluster::settled`]: (requests, bookmarks) when the requests last changed.
    quiet: std::cell::Cell<Option<(usize, usize)>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }
}

impl Cluster {
    /// A server holding node `NODE` with `annotations`, and the given MachineConfigs.
    async fn new(annotations: Value, configs: &[Value]) -> Cluster {
        let server = TestApiServer::start().await;
        server.bookmarks_every(Duration::from_millis(100));
        server.put(NODES, node(NODE, annotations));
        for c in configs {
            server.put(MACHINECONFIGS, c.clone());
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\ncore:x:1000:1000:core:/home/core:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\ncore:x:1000:\n").unwrap();
        Cluster {
            server,
            dir,
            root,
            daemon: None,
            quiet: std::cell::Cell::new(None),
        }
    }

    fn start_daemon(&mut self) {
        self.start_daemon_with(&[]);
    }

    /// Starts the daemon with `extra` arguments after the usual ones.
    fn start_daemon_with(&mut self, extra: &[&str]) {
        let kubeconfig = self.server.write_kubeconfig(self.dir.path());
        let log = std::fs::File::create(self.log_path()).unwrap();
        // MCD_TEST_BIN: another build of the binary (the release one, to measure its RSS).
        let bin = std::env::var("MCD_TEST_BIN").unwrap_or_else(|_| BIN.to_string());
        let child = Command::new(bin)
            .arg("start")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--root")
            .arg(&self.root)
            .args(["--no-systemd", "--metrics-address", "none"])
            .args(["--node-name", NODE, "--drain-timeout", "30s"])
            .args(extra)
            .env_remove("NODE_NAME")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.daemon.as_ref().unwrap().id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.daemon.as_mut().unwrap().try_wait(), Ok(None))
    }

    fn annotation(&self, key: &str) -> Option<String> {
        self.server.get(NODES, NODE).unwrap()["metadata"]["annotations"][key]
            .as_str()
            .map(String::from)
    }

    fn annotate(&self, annotations: Value) {
        self.server.merge(
            NODES,
            "",
            NODE,
            json!({"metadata": {"annotations": annotations}}),
        );
    }

    /// Waits until the node is `state` (and, for `Done`, on `current`).
    async fn wait_state(&mut self, state: &str, current: Option<&str>) {
        let ok = eventually(WAIT, || {
            self.annotation(STATE).as_deref() == Some(state)
                && (current.is_none() || self.annotation(CURRENT_CONFIG).as_deref() == current)
        })
        .await;
        assert!(
            ok,
            "node not {state} on {current:?}: state {:?} reason {:?} current {:?}\n{}",
            self.annotation(STATE),
            self.annotation(REASON),
            self.annotation(CURRENT_CONFIG),
            self.log()
        );
    }

    fn file(&self, node_path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(node_path.trim_start_matches('/'))).ok()
    }

    fn write_file(&self, node_path: &str, contents: &str) {
        std::fs::write(self.root.join(node_path.trim_start_matches('/')), contents).unwrap();
    }

    fn event_reasons(&self) -> Vec<String> {
        self.server
            .list(EVENTS)
            .iter()
            .filter_map(|e| e["reason"].as_str().map(String::from))
            .collect()
    }

    /// Waits until the tail of what the daemon was doing (reports, events) is over: no request
    /// while its watches received 10 bookmarks (one every 100 ms on each watch). Returns the
    /// number of requests so far.
    async fn settled(&self) -> usize {
        let ok = eventually(WAIT, || {
            let (requests, bookmarks) =
                (self.server.requests().len(), self.server.bookmarks_sent());
            let quiet = self.quiet.get();
            self.quiet.set(match quiet {
                Some((r, b)) if r == requests && bookmarks >= b + 10 => return true,
                Some((r, b)) if r == requests => Some((r, b)),
                _ => Some((requests, bookmarks)),
            });
            false
        })
        .await;
        self.quiet.set(None);
        assert!(
            ok,
            "the daemon never stopped making requests:\n{}",
            self.log()
        );
        self.server.requests().len()
    }

    /// The requests the daemon makes, once settled, while its watches receive 40 bookmarks
    /// (about 2 s): an idle daemon makes none.
    async fn idle_requests(&self) -> BTreeMap<String, usize> {
        let before = self.settled().await;
        let bookmarks = self.server.bookmarks_sent();
        assert!(
            eventually(WAIT, || self.server.bookmarks_sent() >= bookmarks + 40).await,
            "bookmarks flow"
        );
        self.requests_by_verb(before)
    }

    fn requests_by_verb(&self, skip: usize) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for r in self.server.requests().into_iter().skip(skip) {
            let resource = r
                .path
                .split('/')
                .nth_back(0)
                .unwrap_or_default()
                .to_string();
            *m.entry(format!("{} {}", r.verb, resource)).or_default() += 1;
        }
        m
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn single_node() -> (&'static str, &'static str) {
    (CONTROL_PLANE_TOPOLOGY, "SingleReplica")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_config_change_is_applied_reported_and_idle_is_quiet() {
    let (topology, single) = single_node();
    let mut c = Cluster::new(
        json!({DESIRED_CONFIG: "rendered-worker-1", topology: single}),
        &[
            machine_config("rendered-worker-1", "one"),
            machine_config("rendered-worker-2", "two"),
        ],
    )
    .await;
    c.start_daemon();
    c.wait_state("Done", Some("rendered-worker-1")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("one"));
    assert_eq!(c.annotation(REASON).as_deref(), Some(""));
    let startup = c.requests_by_verb(0);
    println!("start-up and first apply: {startup:?}");

    // Idle: nothing but the open watches.
    let idle = c.idle_requests().await;
    println!("idle requests over 40 bookmarks: {idle:?}");
    assert!(idle.is_empty(), "idle daemon made requests: {idle:?}");

    // One update.
    let before = c.server.requests().len();
    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-2"}));
    c.wait_state("Done", Some("rendered-worker-2")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("two"));
    // The MachineConfigNode's validated desired config follows once Done.
    let ok = eventually(WAIT, || {
        c.server.get(MACHINECONFIGNODES, NODE).is_some_and(|m| {
            m["status"]["configVersion"]["desired"] == "rendered-worker-2"
                && m["spec"]["configVersion"]["desired"] == "rendered-worker-2"
        })
    })
    .await;
    assert!(ok, "{:?}", c.server.get(MACHINECONFIGNODES, NODE));
    c.settled().await;
    let update = c.requests_by_verb(before);
    println!(
        "one update (single node, no drain): {update:?} = {}",
        update.values().sum::<usize>()
    );
    let mcn = c.server.get(MACHINECONFIGNODES, NODE).unwrap();
    let conditions: BTreeMap<String, String> = mcn["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(conditions["Updated"], "True", "{conditions:?}");
    assert_eq!(conditions["UpdateComplete"], "True", "{conditions:?}");
    assert_eq!(conditions["NodeDegraded"], "False", "{conditions:?}");
    let reasons = c.event_reasons();
    for r in [
        "NodeDone",
        "ConfigDriftMonitorStarted",
        "ConfigDriftMonitorStopped",
    ] {
        assert!(reasons.iter().any(|e| e == r), "{r} missing: {reasons:?}");
    }
    // The drift monitor starts with a config, never against none.
    let notes: Vec<String> = c
        .server
        .list(EVENTS)
        .iter()
        .filter(|e| e["reason"] == "ConfigDriftMonitorStarted")
        .filter_map(|e| {
            e["message"]
                .as_str()
                .or(e["note"].as_str())
                .map(String::from)
        })
        .collect();
    assert!(
        !notes.is_empty()
            && notes.iter().all(|n| n
                .starts_with("Config Drift Monitor started, watching against rendered-worker-")),
        "{notes:?}"
    );

    // Idle again after the update; memory.
    let idle = c.idle_requests().await;
    assert!(idle.is_empty(), "idle daemon made requests: {idle:?}");
    println!("VmRSS after Done and idle: {} KiB", vm_rss_kib(c.pid()));
    assert!(c.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_drain_handoff() {
    let mut c = Cluster::new(
        json!({DESIRED_CONFIG: "rendered-worker-1"}),
        &[
            machine_config("rendered-worker-1", "one"),
            machine_config("rendered-worker-2", "two"),
        ],
    )
    .await;
    c.start_daemon();
    // The first apply writes everything and needs no drain.
    c.wait_state("Done", Some("rendered-worker-1")).await;

    let before = c.server.requests().len();
    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-2"}));
    let asked = eventually(WAIT, || {
        c.annotation(DESIRED_DRAIN).as_deref() == Some("drain-rendered-worker-2")
    })
    .await;
    assert!(asked, "no drain request\n{}", c.log());
    assert_eq!(c.annotation(STATE).as_deref(), Some("Working"));
    // Nothing is written until the controller has drained: the daemon waits for it, its
    // requests settle, and the file is still the old one.
    c.settled().await;
    assert_eq!(c.file(FILE).as_deref(), Some("one"));
    c.annotate(json!({LAST_APPLIED_DRAIN: "drain-rendered-worker-2"}));
    let uncordon = eventually(WAIT, || {
        c.annotation(DESIRED_DRAIN).as_deref() == Some("uncordon-rendered-worker-2")
    })
    .await;
    assert!(uncordon, "no uncordon request\n{}", c.log());
    assert_eq!(c.file(FILE).as_deref(), Some("two"));
    c.annotate(json!({LAST_APPLIED_DRAIN: "uncordon-rendered-worker-2"}));
    c.wait_state("Done", Some("rendered-worker-2")).await;
    c.settled().await;
    let update = c.requests_by_verb(before);
    println!(
        "one update with a controller drain: {update:?} = {}",
        update.values().sum::<usize>()
    );
    let mcn = c.server.get(MACHINECONFIGNODES, NODE).unwrap();
    let drained = mcn["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Drained")
        .unwrap()
        .clone();
    assert_eq!(drained["status"], "True", "{drained}");
    // --no-systemd: the reboot the change needs is skipped, and said so.
    assert!(c.event_reasons().iter().any(|r| r == "SkipReboot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_machine_config_degrades_then_a_valid_one_recovers() {
    let (topology, single) = single_node();
    let bad = json!({
        "metadata": {"name": "rendered-bad"},
        "spec": {"config": {
            "ignition": {"version": "3.4.0"},
            "storage": {"files": [{"path": "etc/relative", "contents": {"source": "data:,x"}}]},
        }},
    });
    let mut c = Cluster::new(
        json!({DESIRED_CONFIG: "rendered-worker-1", topology: single}),
        &[machine_config("rendered-worker-1", "one"), bad],
    )
    .await;
    c.start_daemon();
    c.wait_state("Done", Some("rendered-worker-1")).await;

    c.annotate(json!({DESIRED_CONFIG: "rendered-bad"}));
    c.wait_state("Degraded", None).await;
    let reason = c.annotation(REASON).unwrap();
    assert!(
        reason.contains("rendered-bad") && reason.contains("etc/relative"),
        "{reason}"
    );
    // The node stays on its current config.
    assert_eq!(
        c.annotation(CURRENT_CONFIG).as_deref(),
        Some("rendered-worker-1")
    );
    assert!(c.file("/etc/relative").is_none());
    assert_eq!(c.file(FILE).as_deref(), Some("one"));

    // A MachineConfig that does not exist yet: Degraded, then applied once it appears.
    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-3"}));
    let ok = eventually(WAIT, || {
        c.annotation(REASON)
            .is_some_and(|r| r.contains("rendered-worker-3") && r.contains("not found"))
    })
    .await;
    assert!(ok, "{:?}\n{}", c.annotation(REASON), c.log());
    c.server
        .put(MACHINECONFIGS, machine_config("rendered-worker-3", "three"));
    c.wait_state("Done", Some("rendered-worker-3")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("three"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_degrades_with_an_event_and_restoring_recovers() {
    let (topology, single) = single_node();
    let mut c = Cluster::new(
        json!({DESIRED_CONFIG: "rendered-worker-1", topology: single}),
        &[machine_config("rendered-worker-1", "one")],
    )
    .await;
    c.start_daemon();
    c.wait_state("Done", Some("rendered-worker-1")).await;

    c.write_file(FILE, "edited by hand");
    c.wait_state("Degraded", None).await;
    assert_eq!(
        c.annotation(REASON).as_deref(),
        Some(format!("content mismatch for file {FILE:?}").as_str())
    );
    let event = eventually(WAIT, || {
        c.server.list(EVENTS).iter().any(|e| {
            e["reason"] == "ConfigDriftDetected"
                && e["type"] == "Warning"
                && e["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("content mismatch"))
        })
    })
    .await;
    assert!(event, "{:?}", c.server.list(EVENTS));
    // The daemon does not overwrite the file.
    assert_eq!(c.file(FILE).as_deref(), Some("edited by hand"));

    c.write_file(FILE, "one");
    c.wait_state("Done", Some("rendered-worker-1")).await;
    assert_eq!(c.annotation(REASON).as_deref(), Some(""));
}

/// The drift rules of a daemon configuration file in cluster mode: a healed path gives a
/// Normal `ConfigDriftHealed` event and the node stays Done (the policy's action for it comes
/// from MachineConfiguration/cluster); a reported one a Warning `ConfigDriftDetected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_rules_heal_and_report_with_events() {
    let (topology, single) = single_node();
    let mut config = machine_config("rendered-worker-1", "one");
    config["spec"]["config"]["storage"]["files"]
        .as_array_mut()
        .unwrap()
        .push(json!({"path": "/etc/motd", "mode": 420, "contents": {"source": "data:,hello"}}));
    let mut c = Cluster::new(
        json!({DESIRED_CONFIG: "rendered-worker-1", topology: single}),
        &[config],
    )
    .await;
    c.server.put(
        MACHINECONFIGURATIONS,
        json!({
            "metadata": {"name": "cluster"},
            "spec": {"nodeDisruptionPolicy": {"files": [
                {"path": FILE, "actions": [{"type": "Restart", "restart": {"serviceName": "mco-test.service"}}]}
            ]}},
        }),
    );
    let rules = c.dir.path().join("config.yaml");
    std::fs::write(
        &rules,
        format!(
            "drift:\n  rules:\n    - paths: [{FILE:?}]\n      action: heal\n    - paths: [\"/etc/motd\"]\n      action: report\n"
        ),
    )
    .unwrap();
    c.start_daemon_with(&["--daemon-config", rules.to_str().unwrap()]);
    c.wait_state("Done", Some("rendered-worker-1")).await;

    c.write_file(FILE, "edited by hand");
    let healed = eventually(WAIT, || {
        c.server.list(EVENTS).iter().any(|e| {
            e["reason"] == "ConfigDriftHealed"
                && e["type"] == "Normal"
                && e["note"].as_str().is_some_and(|n| {
                    n.starts_with(&format!("{FILE} rewritten from rendered-worker-1"))
                        && n.contains("restart mco-test.service (skipped")
                })
        })
    })
    .await;
    assert!(healed, "{:?}\n{}", c.server.list(EVENTS), c.log());
    assert_eq!(c.file(FILE).as_deref(), Some("one"));

    c.write_file("/etc/motd", "edited by hand");
    let reported = eventually(WAIT, || {
        c.server.list(EVENTS).iter().any(|e| {
            e["reason"] == "ConfigDriftDetected"
                && e["type"] == "Warning"
                && e["note"].as_str()
                    == Some("content mismatch for file \"/etc/motd\" (drift action report: the node stays Done)")
        })
    })
    .await;
    assert!(reported, "{:?}", c.server.list(EVENTS));
    assert_eq!(c.file("/etc/motd").as_deref(), Some("edited by hand"));
    c.settled().await;
    assert_eq!(c.annotation(STATE).as_deref(), Some("Done"));
    assert_eq!(c.annotation(REASON).as_deref(), Some(""));
    assert!(!c.log().contains("-> Degraded"), "{}", c.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_dropped_watches_lose_no_update() {
    let (topology, single) = single_node();
    let mut c = Cluster::new(
        json!({DESIRED_CONFIG: "rendered-worker-1", topology: single}),
        &[
            machine_config("rendered-worker-1", "one"),
            machine_config("rendered-worker-2", "two"),
            machine_config("rendered-worker-3", "three"),
        ],
    )
    .await;
    c.start_daemon();
    c.wait_state("Done", Some("rendered-worker-1")).await;

    // The watch is cut and the server fails the next requests (the re-watch, the GET...);
    // the desired config changes meanwhile.
    c.server.fail_next(3);
    c.server.drop_watches();
    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-2"}));
    c.wait_state("Done", Some("rendered-worker-2")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("two"));
    assert!(c.alive(), "{}", c.log());

    // 500s on the requests of an update itself (GET of the config, reports).
    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-3"}));
    c.server.fail_next(4);
    c.wait_state("Done", Some("rendered-worker-3")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("three"));

    // Again, with the history compacted (410 on re-watch, as after an API server restart with
    // etcd compacted meanwhile): a fresh list, at once.
    let node_lists = c.server.count_on("list", NODES);
    c.server.compact();
    c.server.drop_watches();
    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-1"}));
    c.wait_state("Done", Some("rendered-worker-1")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("one"));
    assert!(
        c.log().contains("watch expired (410 Gone): relisting now"),
        "{}",
        c.log()
    );
    assert!(c.alive(), "{}", c.log());
    assert!(c.server.gone_served() >= 1, "{:#?}", c.server.requests());
    assert_eq!(
        c.server.count_on("list", NODES),
        node_lists + 1,
        "the node watch re-listed once after its 410: {:#?}",
        c.server.requests()
    );
}

/// The API server refuses the MachineConfigNode for good (422, as upstream's schema refuses an
/// invalid object): the refusal is logged once and the create is tried again only for another
/// desired config; the update itself is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_machine_config_node_is_tried_again_only_when_inputs_change() {
    let (topology, single) = single_node();
    let mut c = Cluster::new(
        json!({DESIRED_CONFIG: "rendered-worker-1", topology: single}),
        &[
            machine_config("rendered-worker-1", "one"),
            machine_config("rendered-worker-2", "two"),
        ],
    )
    .await;
    c.server.refuse("create", "machineconfignodes", 422);
    c.start_daemon();
    c.wait_state("Done", Some("rendered-worker-1")).await;
    assert_eq!(c.server.count_on("create", "machineconfignodes"), 1);

    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-2"}));
    c.wait_state("Done", Some("rendered-worker-2")).await;
    assert_eq!(c.server.count_on("create", "machineconfignodes"), 2);
    assert_eq!(
        c.log().matches("MachineConfigNode refused").count(),
        2,
        "{}",
        c.log()
    );

    // Once the server accepts it, the next desired config creates it.
    c.server.stop_refusing();
    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-1"}));
    c.wait_state("Done", Some("rendered-worker-1")).await;
    let ok = eventually(WAIT, || {
        c.server
            .get(MACHINECONFIGNODES, NODE)
            .is_some_and(|m| m["spec"]["configVersion"]["desired"] == "rendered-worker-1")
    })
    .await;
    assert!(ok, "{}", c.log());
    assert!(c.alive());
}

/// A plain Kubernetes node (no desiredConfig) and a desiredConfig that is not a valid name get
/// no MachineConfigNode (upstream's schema requires a DNS-1123 name); a valid one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_machine_config_node_without_a_valid_desired_config() {
    let (topology, single) = single_node();
    let mut c = Cluster::new(
        json!({topology: single}),
        &[machine_config("rendered-worker-1", "one")],
    )
    .await;
    c.start_daemon();
    c.wait_state("Done", None).await;
    assert_eq!(c.server.count_on("create", "machineconfignodes"), 0);

    c.annotate(json!({DESIRED_CONFIG: "Bad_Name"}));
    c.wait_state("Degraded", None).await;
    let reason = c.annotation(REASON).unwrap_or_default();
    assert!(reason.contains("Bad_Name"), "{reason}");
    assert_eq!(
        c.server.count_on("create", "machineconfignodes"),
        0,
        "{}",
        c.log()
    );

    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-1"}));
    c.wait_state("Done", Some("rendered-worker-1")).await;
    let mcn = c.server.get(MACHINECONFIGNODES, NODE).expect("created");
    assert_eq!(mcn["spec"]["configVersion"]["desired"], "rendered-worker-1");
    assert_eq!(c.server.count_on("create", "machineconfignodes"), 1);
}

/// The API server refuses the fetch of the desired config for good (403): the node is
/// `Degraded` with the error, no retry is armed (the daemon logs "retrying later" when it arms
/// one, before it reports), and a new desiredConfig is fetched at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_fetch_is_not_retried_until_desired_config_changes() {
    let (topology, single) = single_node();
    let mut c = Cluster::new(
        json!({DESIRED_CONFIG: "rendered-worker-1", topology: single}),
        &[
            machine_config("rendered-worker-1", "one"),
            machine_config("rendered-worker-2", "two"),
            machine_config("rendered-worker-3", "three"),
        ],
    )
    .await;
    c.server
        .refuse("get", "machineconfigs/rendered-worker-2", 403);
    c.start_daemon();
    c.wait_state("Done", Some("rendered-worker-1")).await;

    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-2"}));
    c.wait_state("Degraded", None).await;
    let reason = c.annotation(REASON).unwrap_or_default();
    assert!(
        reason.contains("rendered-worker-2") && reason.contains("Forbidden"),
        "{reason}"
    );
    assert!(!c.log().contains(": retrying later"), "{}", c.log());
    assert_eq!(
        c.log()
            .matches("refused the fetch of the desired config")
            .count(),
        1
    );

    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-3"}));
    c.wait_state("Done", Some("rendered-worker-3")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("three"));
    assert_eq!(
        c.server.count_on("get", "machineconfigs/rendered-worker-2"),
        1
    );
}

/// What kube-apiserver's RBAC authorizer checks for a resource request: `(apiGroup,
/// resource[/subresource], verb)`, derived from the request as its request-info resolver does:
/// a GET on a name is `get`, on a collection `list`, with `watch=true` `watch`; POST `create`,
/// PUT `update`, PATCH `patch`, DELETE `delete` (`deletecollection` on a collection); a
/// subresource (`pods/NAME/eviction`, `machineconfignodes/NAME/status`) is `resource/sub`.
fn rbac_attributes(r: &support::Request) -> (String, String, String) {
    let segments: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not a resource request: {r:?}"),
    };
    // Namespaced: namespaces/NS/RESOURCE/... (namespaces/NS alone is the namespace itself).
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => panic!("unexpected resource path: {r:?}"),
    };
    let watch = r
        .query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (r.method.as_str(), named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => panic!("unexpected method: {r:?}"),
    };
    (group.to_string(), resource, verb.to_string())
}

/// `(apiGroup, resource, verb)` granted by the packaged ClusterRole (packaging/kubernetes/).
fn packaged_grants() -> BTreeSet<(String, String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/kubernetes/02-rbac.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let role = text
        .split("\n---\n")
        .map(|part| serde_saphyr::from_str::<Value>(part).unwrap())
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "machine-config-daemon")
        .expect("ClusterRole machine-config-daemon in 02-rbac.yaml");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let mut grants = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    assert!(
                        !(g.contains('*') || r.contains('*') || v.contains('*')),
                        "wildcard in {rule}"
                    );
                    grants.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    grants
}

/// Least privilege, from what the daemon really does: it runs every path that touches the API —
/// start-up (node, policy and MachineConfig), an update with a self-drain (cordon, pod list,
/// eviction, the watch for the pod to go, uncordon), a write to its Node that conflicts (so it
/// reads the node again), its MachineConfigNode created, then updated, its status written, and
/// drift twice (an event created, then patched as a series) — and the packaged ClusterRole
/// must grant exactly the `(apiGroup, resource, verb)` of the requests it made: every grant
/// used, every request granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaged_role_grants_exactly_the_requests_the_daemon_makes() {
    let mut c = Cluster::new(
        json!({DESIRED_CONFIG: "rendered-worker-1"}),
        &[
            machine_config("rendered-worker-1", "one"),
            machine_config("rendered-worker-2", "two"),
        ],
    )
    .await;
    c.server
        .put(PODS, pod("apps", "app", NODE, Some("ReplicaSet")));
    // A PodDisruptionBudget over every pod of the namespace, allowing no disruption: the drain
    // pre-flight lists and watches the budgets.
    c.server.put(
        PDBS,
        json!({"metadata": {"name": "all", "namespace": "apps"}, "spec": {"selector": {}},
            "status": {"disruptionsAllowed": 0}}),
    );
    // The pod stays until the test deletes it (as the kubelet would), once the daemon waits
    // for it to go.
    c.server.eviction_delete_delay(Duration::from_secs(3600));
    c.start_daemon_with(&["--drain-mode", "self"]);
    c.wait_state("Done", Some("rendered-worker-1")).await;

    // A concurrent writer: the daemon's next write to its Node conflicts.
    c.server.conflict_next_writes_on("/nodes/", 1);
    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-2"}));
    let preflight = eventually(WAIT, || {
        c.server.count_on("watch", "/poddisruptionbudgets") >= 1
    })
    .await;
    assert!(preflight, "no watch of the budgets\n{}", c.log());
    c.server.merge(
        PDBS,
        "apps",
        "all",
        json!({"status": {"disruptionsAllowed": 1}}),
    );
    let waiting = eventually(WAIT, || {
        c.server.count_on("create", "/pods/app/eviction") == 1
            && c.server.count_on("watch", PODS) >= 1
    })
    .await;
    assert!(waiting, "no eviction and watch of the pod\n{}", c.log());
    c.server.delete(PODS, "apps", "app");
    c.wait_state("Done", Some("rendered-worker-2")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("two"));
    assert_eq!(
        c.server.get(NODES, NODE).unwrap()["spec"]["unschedulable"],
        Value::Null,
        "uncordoned"
    );

    // Drift twice: the same event, created then patched as a series.
    for _ in 0..2 {
        c.write_file(FILE, "edited by hand");
        c.wait_state("Degraded", None).await;
        c.write_file(FILE, "two");
        c.wait_state("Done", Some("rendered-worker-2")).await;
    }
    let series = eventually(WAIT, || c.server.count_on("patch", "/events/") >= 1).await;
    assert!(series, "no event patched as a series\n{}", c.log());
    c.settled().await;

    let requests = c.server.requests();
    let used: BTreeSet<_> = requests.iter().map(rbac_attributes).collect();
    let granted = packaged_grants();
    let unused: Vec<_> = granted.difference(&used).collect();
    let refused: Vec<_> = used.difference(&granted).collect();
    assert!(
        unused.is_empty() && refused.is_empty(),
        "granted but never used: {unused:?}\nused but not granted: {refused:?}\nrequests:\n{}",
        requests
            .iter()
            .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(c.alive(), "{}", c.log());
}

/// A self-signed CA certificate, PEM; `expired`: valid 2001–2002 only.
fn ca_pem(cn: &str, expired: bool) -> String {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    if expired {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    }
    p.self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem()
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The ControllerConfig `machine-config-controller` with these bundles.
fn controller_config(kube: &str, user: &str, registries: Value) -> Value {
    json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "ControllerConfig",
        "metadata": {"name": "machine-config-controller"},
        "spec": {
            "kubeAPIServerServingCAData": b64(kube),
            "rootCAData": b64(&ca_pem("root-ca", false)),
            "additionalTrustBundle": b64(user),
            "imageRegistryBundleData": registries,
        },
    })
}

const KUBELET_CA: &str = "/etc/kubernetes/kubelet-ca.crt";
const USER_CA: &str = "/etc/pki/ca-trust/source/anchors/openshift-config-user-ca-bundle.crt";
const REGISTRY_CA: &str = "/etc/docker/certs.d/image-registry.svc:5000/ca.crt";

/// The ControllerConfig's CA bundles, from the watch: written on the node without drain or
/// reboot (a bundle of two certificates, one expired), a garbage bundle reported by a Warning
/// event naming it while the others are written, a stale registry directory removed, a rotation
/// rewritten without reboot and not taken for drift, and an edit of a CA file is drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_config_ca_bundles_written_rotated_and_drift_checked() {
    let (topology, single) = single_node();
    let mut c = Cluster::new(
        json!({DESIRED_CONFIG: "rendered-worker-1", topology: single}),
        &[machine_config("rendered-worker-1", "one")],
    )
    .await;
    let stale = c.root.join("etc/docker/certs.d/old.example");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("ca.crt"), "old").unwrap();
    let kube = format!(
        "{}{}",
        ca_pem("kube-apiserver-lb-signer", false),
        ca_pem("kube-csr-signer", true)
    );
    let (user, reg) = (ca_pem("user-ca", false), ca_pem("registry-ca", false));
    let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
    c.server.put(
        CONTROLLERCONFIGS,
        controller_config(
            &kube,
            &user,
            json!([
                {"file": "image-registry.svc..5000", "data": b64(&reg)},
                {"file": "garbage.example", "data": b64(garbage)},
            ]),
        ),
    );
    c.start_daemon();
    c.wait_state("Done", Some("rendered-worker-1")).await;
    let written = eventually(WAIT, || {
        c.file(KUBELET_CA).as_deref() == Some(kube.as_str())
            && c.file(USER_CA).as_deref() == Some(user.as_str())
            && c.file(REGISTRY_CA).as_deref() == Some(reg.as_str())
            && !stale.exists()
    })
    .await;
    assert!(written, "CA files not written\n{}", c.log());
    assert!(!c.root.join("etc/docker/certs.d/garbage.example").exists());
    let reported = eventually(WAIT, || {
        c.server.list(EVENTS).iter().any(|e| {
            e["reason"] == "InvalidCertificateBundle"
                && e["type"] == "Warning"
                && e["note"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("CA bundle garbage.example: certificate 0"))
        })
    })
    .await;
    assert!(reported, "{:?}\n{}", c.server.list(EVENTS), c.log());
    // The user bundle's policy actions (no systemd here: skipped, and said so in the status).
    let status = machine_config_daemon::daemon::status::Status::read(
        &c.root.join("run/machine-config-daemon/status.json"),
    )
    .unwrap();
    let certs = status.certificates.expect("certificates in the status");
    assert_eq!(certs.source, "ControllerConfig/machine-config-controller");
    assert_eq!(
        certs.actions,
        [
            "restart coreos-update-ca-trust.service: skipped (no systemd (--no-systemd))",
            "restart crio.service: skipped (no systemd (--no-systemd))",
        ]
    );

    // Rotation: a new kubelet CA, rewritten; the node stays Done, no drift, no reboot.
    let rotated = ca_pem("kube-apiserver-lb-signer-2", false);
    c.server.put(
        CONTROLLERCONFIGS,
        controller_config(
            &rotated,
            &user,
            json!([{"file": "image-registry.svc..5000", "data": b64(&reg)}]),
        ),
    );
    let rewritten = eventually(WAIT, || {
        c.file(KUBELET_CA).as_deref() == Some(rotated.as_str())
    })
    .await;
    assert!(rewritten, "rotation not written\n{}", c.log());
    c.settled().await;
    assert_eq!(c.annotation(STATE).as_deref(), Some("Done"));
    let reasons = c.event_reasons();
    assert!(
        !reasons
            .iter()
            .any(|r| r == "ConfigDriftDetected" || r == "Reboot"),
        "{reasons:?}"
    );

    // An edit behind the daemon's back is drift; restoring the file recovers.
    c.write_file(KUBELET_CA, "edited by hand");
    c.wait_state("Degraded", None).await;
    assert_eq!(
        c.annotation(REASON).as_deref(),
        Some(format!("content mismatch for file {KUBELET_CA:?}").as_str())
    );
    c.write_file(KUBELET_CA, &rotated);
    c.wait_state("Done", Some("rendered-worker-1")).await;
    assert!(c.alive(), "{}", c.log());
}

/// The CA files are never written while an update is in progress: a ControllerConfig that comes
/// while the daemon waits for the controller's drain is written once the update has finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_config_waits_for_the_update_in_progress() {
    let mut c = Cluster::new(
        json!({DESIRED_CONFIG: "rendered-worker-1"}),
        &[
            machine_config("rendered-worker-1", "one"),
            machine_config("rendered-worker-2", "two"),
        ],
    )
    .await;
    c.start_daemon();
    c.wait_state("Done", Some("rendered-worker-1")).await;
    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-2"}));
    let asked = eventually(WAIT, || {
        c.annotation(DESIRED_DRAIN).as_deref() == Some("drain-rendered-worker-2")
    })
    .await;
    assert!(asked, "no drain request\n{}", c.log());

    let kube = ca_pem("kube-apiserver-lb-signer", false);
    c.server.put(
        CONTROLLERCONFIGS,
        controller_config(&kube, &ca_pem("user-ca", false), json!([])),
    );
    // The watch delivers it (the daemon's requests settle) while the update waits for the
    // drain: nothing is written yet.
    c.settled().await;
    assert_eq!(c.annotation(STATE).as_deref(), Some("Working"));
    assert_eq!(c.file(KUBELET_CA), None);

    c.annotate(json!({LAST_APPLIED_DRAIN: "drain-rendered-worker-2"}));
    let uncordon = eventually(WAIT, || {
        c.annotation(DESIRED_DRAIN).as_deref() == Some("uncordon-rendered-worker-2")
    })
    .await;
    assert!(uncordon, "no uncordon request\n{}", c.log());
    c.annotate(json!({LAST_APPLIED_DRAIN: "uncordon-rendered-worker-2"}));
    c.wait_state("Done", Some("rendered-worker-2")).await;
    // (The log line follows the write.)
    let written = eventually(WAIT, || {
        c.file(KUBELET_CA).as_deref() == Some(kube.as_str())
            && c.log()
                .contains("CA file /etc/kubernetes/kubelet-ca.crt written")
    })
    .await;
    assert!(written, "CA file not written after the update\n{}", c.log());
    // Written once the update was over (uncordoned).
    let log = c.log();
    let update_done = log.find("uncordoned").expect("uncordon logged");
    let ca = log
        .find("CA file /etc/kubernetes/kubelet-ca.crt written")
        .expect("CA write logged");
    assert!(update_done < ca, "{log}");
}

/// Try mode in cluster mode: the built-in `node` check reads the Node's `Ready` condition (a GET
/// the API server answers); a NotReady node reverts the update, the reason goes to the node's
/// annotations and the MachineConfigNode, with a `TryModeReverted` event; Ready again, an update
/// is confirmed (`TryModeConfirmed`).
#[tokio::test(flavor = "multi_thread")]
async fn try_mode_checks_the_node_ready_and_reports_a_revert() {
    let (topology, single) = single_node();
    let mut c = Cluster::new(
        json!({DESIRED_CONFIG: "rendered-worker-1", topology: single}),
        &[
            machine_config("rendered-worker-1", "one"),
            machine_config("rendered-worker-2", "two"),
            machine_config("rendered-worker-3", "three"),
        ],
    )
    .await;
    c.start_daemon_with(&["--confirm-timeout", "1s"]);
    c.wait_state("Done", Some("rendered-worker-1")).await;

    c.server.merge(
        NODES,
        "",
        NODE,
        json!({"status": {"conditions": [{"type": "Ready", "status": "False",
            "reason": "KubeletNotReady", "message": "PLEG is not healthy"}]}}),
    );
    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-2"}));
    c.wait_state("Degraded", Some("rendered-worker-1")).await;
    let reason = c.annotation(REASON).unwrap();
    assert!(
        reason.starts_with("try mode: rendered-worker-2 reverted to rendered-worker-1: ")
            && reason
                .contains("node: node worker-0 not Ready (KubeletNotReady): PLEG is not healthy"),
        "{reason}"
    );
    assert_eq!(c.file(FILE).as_deref(), Some("one"));
    let ok = eventually(WAIT, || {
        c.server.get(MACHINECONFIGNODES, NODE).is_some_and(|m| {
            m["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "NodeDegraded"
                        && c["status"] == "True"
                        && c["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("reverted"))
                })
            })
        })
    })
    .await;
    assert!(ok, "{:?}", c.server.get(MACHINECONFIGNODES, NODE));
    assert!(
        eventually(WAIT, || c
            .event_reasons()
            .iter()
            .any(|r| r == "TryModeReverted"))
        .await,
        "{:?}",
        c.event_reasons()
    );

    // Ready again and another desired config: on trial, confirmed.
    c.server.merge(
        NODES,
        "",
        NODE,
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    c.annotate(json!({DESIRED_CONFIG: "rendered-worker-3"}));
    c.wait_state("Done", Some("rendered-worker-3")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("three"));
    assert!(
        eventually(WAIT, || c
            .event_reasons()
            .iter()
            .any(|r| r == "TryModeConfirmed"))
        .await,
        "{:?}",
        c.event_reasons()
    );
}
