//! A real kube-apiserver and etcd for the cluster tests: `../shared/envtest` (relative to the
//! repository; `up.sh --crds` loads the upstream openshift/api CRDs of MachineConfig,
//! MachineConfigPool, MachineConfigNode, ControllerConfig and MachineConfiguration).
//!
//! Which server covers what: this one decides what only a real API server can — the upstream
//! CRD schemas (a MachineConfigNode status the daemon writes is accepted or refused by
//! upstream's validation), RBAC (the packaged ServiceAccount's token), the Eviction API with
//! real PodDisruptionBudgets, watches and resourceVersions of a real etcd, and a real restart.
//! The hand-written server in tests/support/ covers what a real one cannot do on demand:
//! injected 500s, 409s, 410s and refusals at an exact request, dropped watches, exact request
//! counts.
//!
//! One envtest per test binary (started on first use, stopped by `up.sh --watch` once the
//! binary exits); tests in one binary share it, so each uses its own node, config and namespace
//! names. Where the bundle is absent the tests print that they were skipped and pass — except
//! when the `CI` environment variable is set: a CI run without the real API server fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_machine-config-daemon");
/// The longest any wait of these tests lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

pub const CURRENT_CONFIG: &str = "machineconfiguration.openshift.io/currentConfig";
pub const DESIRED_CONFIG: &str = "machineconfiguration.openshift.io/desiredConfig";
pub const STATE: &str = "machineconfiguration.openshift.io/state";
pub const REASON: &str = "machineconfiguration.openshift.io/reason";
pub const DESIRED_DRAIN: &str = "machineconfiguration.openshift.io/desiredDrain";
pub const LAST_APPLIED_DRAIN: &str = "machineconfiguration.openshift.io/lastAppliedDrain";
pub const TOPOLOGY: &str = "machineconfiguration.openshift.io/controlPlaneTopology";

/// A running envtest.
pub struct Envtest {
    pub dir: String,
    /// admin.kubeconfig (`system:masters`).
    pub kubeconfig: String,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// The CA of the API server's certificate.
    pub ca: String,
    /// etcd's client URL (`http://127.0.0.1:PORT`).
    pub etcd: String,
}

/// The bundle: `CARGO_MANIFEST_DIR/../shared/envtest`.
pub fn bundle() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/envtest")
}

/// The envtest of this test binary, started on first use; None (after printing why) when the
/// bundle is absent. With `CI` set, an absent bundle panics.
pub fn envtest(test: &str) -> Option<&'static Envtest> {
    static ENV: OnceLock<Option<Envtest>> = OnceLock::new();
    skipped(test, ENV.get_or_init(|| start(true)).as_ref())
}

/// [`envtest`] without the upstream CRDs (the test installs its own).
pub fn envtest_without_crds(test: &str) -> Option<&'static Envtest> {
    static ENV: OnceLock<Option<Envtest>> = OnceLock::new();
    skipped(test, ENV.get_or_init(|| start(false)).as_ref())
}

fn skipped(test: &str, env: Option<&'static Envtest>) -> Option<&'static Envtest> {
    if env.is_none() {
        eprintln!(
            "{test}: SKIPPED: no real API server ({} not present)",
            bundle().display()
        );
    }
    env
}

fn start(crds: bool) -> Option<Envtest> {
    let up = bundle().join("up.sh");
    if !up.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the real API server bundle {} is missing",
            bundle().display()
        );
        return None;
    }
    let out = Command::new("bash")
        .arg(&up)
        .args(crds.then_some("--crds"))
        .args(["--watch", &std::process::id().to_string()])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "envtest up.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("DIR")
        .to_string();
    let env = std::fs::read_to_string(format!("{dir}/env")).expect("DIR/env");
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{k} in {dir}/env"))
            .trim_matches('\'')
            .to_string()
    };
    Some(Envtest {
        kubeconfig: var("KUBECONFIG"),
        server: var("MCD_ENVTEST_SERVER"),
        ca: var("MCD_ENVTEST_CA"),
        etcd: var("MCD_ENVTEST_ETCD"),
        dir,
    })
}

impl Envtest {
    /// An administrator's client (one per test: one runtime per test).
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }

    /// A kubeconfig at `path` that authenticates with a bearer `token`.
    pub fn token_kubeconfig(&self, path: &Path, token: &str) {
        use base64::Engine;
        let ca = std::fs::read(&self.ca).unwrap();
        let ca = base64::engine::general_purpose::STANDARD.encode(ca);
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    \
                 server: {}\n    certificate-authority-data: {ca}\ncontexts:\n- name: envtest\n  \
                 context:\n    cluster: envtest\n    user: sa\ncurrent-context: envtest\nusers:\n\
                 - name: sa\n  user:\n    token: {token}\n",
                self.server
            ),
        )
        .unwrap();
    }

    /// The pid of the running kube-apiserver.
    pub fn apiserver_pid(&self) -> i32 {
        std::fs::read_to_string(format!("{}/kube-apiserver.pid", self.dir))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Kills the kube-apiserver (SIGKILL: a graceful stop holds open watches for 60 s) and
    /// starts it again with the same command line (same port, same etcd: every object survives,
    /// watches break, the watch cache starts over). With `compact`, etcd's history is compacted
    /// while the server is down (as the API server's periodic compaction does), so a watch
    /// resumed from a resourceVersion seen before gets `410 Gone`. The new pid goes to
    /// DIR/kube-apiserver.pid, where down.sh finds it. Returns once /readyz answers.
    pub async fn restart_apiserver(&self, compact: bool) {
        let pid = self.apiserver_pid();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8(a.to_vec()).unwrap())
            .collect();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Not our child (up.sh started it): wait for /proc/PID to go.
        let gone = wait_for(Duration::from_secs(30), || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.split_whitespace().nth(2) == Some("Z"))
                .unwrap_or(true)
        })
        .await;
        assert!(gone, "kube-apiserver {pid} did not stop");
        if compact {
            self.compact_etcd();
        }
        let log_path = format!("{}/kube-apiserver.log", self.dir);
        let client = self.client().await;
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last: String;
        let mut child = self.spawn_apiserver(&argv, &log_path);
        loop {
            let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
            let r = tokio::time::timeout(Duration::from_secs(2), client.request_text(req)).await;
            match r {
                Ok(Ok(t)) if t == "ok" => break,
                other => last = format!("{other:?}"),
            }
            let exited = child.try_wait().unwrap();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail = log.rsplit("=== restart").next().unwrap_or_default();
            // While no server listened, a client reconnecting to the port from an ephemeral
            // port can have connected to itself (TCP self-connect) and so hold the port for a
            // moment: start again.
            if exited.is_some()
                && tail.contains("address already in use")
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
                child = self.spawn_apiserver(&argv, &log_path);
                continue;
            }
            if exited.is_some() || tokio::time::Instant::now() >= deadline {
                let lines: Vec<&str> = tail.lines().rev().take(30).collect();
                panic!(
                    "kube-apiserver not ready after the restart (exited: {exited:?}; last \
                     answer: {last})\n{}",
                    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The process outlives this handle: down.sh stops it by the pid file.
        std::mem::forget(child);
    }

    /// Starts kube-apiserver with `argv`, output appended to `log_path` after a marker line;
    /// its pid goes to DIR/kube-apiserver.pid.
    fn spawn_apiserver(&self, argv: &[String], log_path: &str) -> Child {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(log_path)
            .unwrap();
        writeln!(log, "=== restart").unwrap();
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        std::fs::write(
            format!("{}/kube-apiserver.pid", self.dir),
            child.id().to_string(),
        )
        .unwrap();
        child
    }
}

impl Envtest {
    /// Compacts etcd's history up to its current revision (through etcd's JSON gateway).
    pub fn compact_etcd(&self) {
        let curl = |path: &str, body: &str| -> Value {
            let out = Command::new("curl")
                .args(["-fsS", "-X", "POST", "-d", body])
                .arg(format!("{}{path}", self.etcd))
                .output()
                .expect("curl");
            assert!(out.status.success(), "etcd {path}: {out:?}");
            serde_json::from_slice(&out.stdout).unwrap()
        };
        // Any key: the answer's header carries the store's revision.
        let range = curl("/v3/kv/range", r#"{"key": "AA=="}"#);
        let revision = range["header"]["revision"].as_str().unwrap().to_string();
        curl(
            "/v3/kv/compaction",
            &format!(r#"{{"revision": "{revision}", "physical": true}}"#),
        );
    }
}

/// Polls `cond` every 50 ms for up to `timeout` (test side only, for what has no watch).
pub async fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

pub fn gvk(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub fn machine_configs(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &gvk(
            "machineconfiguration.openshift.io",
            "v1",
            "MachineConfig",
            "machineconfigs",
        ),
    )
}

pub fn machine_config_nodes(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &gvk(
            "machineconfiguration.openshift.io",
            "v1",
            "MachineConfigNode",
            "machineconfignodes",
        ),
    )
}

/// A MachineConfig writing `file` with `contents` (0644).
pub fn machine_config(name: &str, file: &str, contents: &str) -> Value {
    json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": {"name": name},
        "spec": {"config": {
            "ignition": {"version": "3.4.0"},
            "storage": {"files": [{
                "path": file, "mode": 420,
                "contents": {"source": format!("data:,{contents}")},
            }]},
        }},
    })
}

/// Creates (or replaces) a cluster-scoped MachineConfig.
pub async fn put_machine_config(client: &kube::Client, mc: Value) {
    let api = machine_configs(client);
    let name = mc["metadata"]["name"].as_str().unwrap().to_string();
    let _ = api.delete(&name, &DeleteParams::default()).await;
    let obj: DynamicObject = serde_json::from_value(mc).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

/// The test's own cluster: a node, a root, the daemon process (SIGTERM and reaped on drop).
pub struct EnvCluster {
    pub env: &'static Envtest,
    pub client: kube::Client,
    pub node: String,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub daemon: Option<Child>,
}

impl Drop for EnvCluster {
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

impl EnvCluster {
    /// Node `node` (recreated) with `annotations`, and a node root; None when skipped.
    pub async fn new(test: &str, node: &str, annotations: Value) -> Option<EnvCluster> {
        let env = envtest(test)?;
        let client = env.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        let _ = nodes.delete(node, &DeleteParams::default()).await;
        let obj: Node = serde_json::from_value(json!({
            "metadata": {"name": node, "annotations": annotations},
            "spec": {},
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &obj).await.unwrap();
        let _ = machine_config_nodes(&client)
            .delete(node, &DeleteParams::default())
            .await;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\ncore:x:1000:1000:core:/home/core:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\ncore:x:1000:\n").unwrap();
        Some(EnvCluster {
            env,
            client,
            node: node.to_string(),
            dir,
            root,
            daemon: None,
        })
    }

    /// Starts the daemon with the admin kubeconfig and `extra` arguments.
    pub fn start_daemon(&mut self, extra: &[&str]) {
        let kc = self.env.kubeconfig.clone();
        self.start_daemon_with(Path::new(&kc), extra);
    }

    /// Starts the daemon with `kubeconfig` and `extra` arguments.
    pub fn start_daemon_with(&mut self, kubeconfig: &Path, extra: &[&str]) {
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new(BIN)
            .arg("start")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--root")
            .arg(&self.root)
            .args(["--no-systemd", "--metrics-address", "none"])
            .args(["--node-name", &self.node])
            .args(extra)
            .env_remove("NODE_NAME")
            .env_remove("KUBECONFIG")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.daemon.as_mut().unwrap().try_wait(), Ok(None))
    }

    pub fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    pub async fn annotation(&self, key: &str) -> Option<String> {
        let n = self.nodes().get(&self.node).await.unwrap();
        n.metadata.annotations?.get(key).cloned()
    }

    pub async fn annotate(&self, annotations: Value) {
        self.nodes()
            .patch(
                &self.node,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
            )
            .await
            .unwrap();
    }

    /// Waits (on a watch of the node) until `cond` holds for its annotations.
    pub async fn wait_node(&self, what: &str, cond: impl Fn(&Node) -> bool) -> Node {
        let wait = await_condition(self.nodes(), &self.node, move |n: Option<&Node>| {
            n.is_some_and(&cond)
        });
        match tokio::time::timeout(WAIT, wait).await {
            Ok(Ok(Some(n))) => n,
            other => {
                let n = self.nodes().get(&self.node).await.ok();
                panic!(
                    "{what}: not reached ({other:?})\nannotations: {:#?}\nlog:\n{}",
                    n.and_then(|n| n.metadata.annotations),
                    self.log()
                )
            }
        }
    }

    /// Waits until the node is `state` (and, when given, on `current`).
    pub async fn wait_state(&self, state: &str, current: Option<&str>) -> Node {
        let state = state.to_string();
        let current = current.map(str::to_string);
        self.wait_node(&format!("state {state} on {current:?}"), move |n| {
            let a = n.metadata.annotations.clone().unwrap_or_default();
            a.get(STATE) == Some(&state)
                && (current.is_none() || a.get(CURRENT_CONFIG) == current.as_ref())
        })
        .await
    }

    /// Waits until the daemon's log contains `text`.
    pub async fn wait_log(&self, text: &str) {
        let ok = wait_for(WAIT, || self.log().contains(text)).await;
        assert!(ok, "log line {text:?} not seen:\n{}", self.log());
    }

    pub fn file(&self, node_path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(node_path.trim_start_matches('/'))).ok()
    }

    pub fn write_file(&self, node_path: &str, contents: &str) {
        std::fs::write(self.root.join(node_path.trim_start_matches('/')), contents).unwrap();
    }

    /// This node's MachineConfigNode, if any.
    pub async fn mcn(&self) -> Option<Value> {
        machine_config_nodes(&self.client)
            .get_opt(&self.node)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o).unwrap())
    }

    /// Events (events.k8s.io/v1, every namespace) regarding this node.
    pub async fn events(&self) -> Vec<Value> {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::all(self.client.clone());
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&self.node))
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }

    /// Waits until an event regarding this node satisfies `cond`.
    pub async fn wait_event(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let events = self.events().await;
            if let Some(e) = events.iter().find(|e| cond(e)) {
                return e.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "event {what} not seen: {events:#?}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }
}

/// Creates namespace `ns` (if missing).
pub async fn namespace(client: &kube::Client, ns: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    if api.get_opt(ns).await.unwrap().is_none() {
        let obj = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap();
    }
}

/// Creates every object of a multi-document YAML file as the administrator (kinds resolved by
/// discovery); `dry_run` asks the server to validate without storing.
pub async fn apply_yaml(client: &kube::Client, path: &Path, dry_run: bool) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let mut created = Vec::new();
    for doc in text.split("\n---") {
        let v: Value = match serde_saphyr::from_str(doc) {
            Ok(v) => v,
            Err(e) => panic!("{}: {e}", path.display()),
        };
        if v.is_null() {
            continue;
        }
        let (group, version) = match v["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, ver)) => (g.to_string(), ver.to_string()),
            None => (String::new(), v["apiVersion"].as_str().unwrap().to_string()),
        };
        let kind = v["kind"].as_str().unwrap();
        let gvk = GroupVersionKind::gvk(&group, &version, kind);
        let (ar, caps) = discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("{}: {gvk:?} not served", path.display()));
        let api: Api<DynamicObject> = match (caps.scope, v["metadata"]["namespace"].as_str()) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(client.clone(), ns, &ar)
            }
            _ => Api::all_with(client.clone(), &ar),
        };
        let obj: DynamicObject = serde_json::from_value(v.clone()).unwrap();
        let pp = PostParams {
            dry_run,
            ..Default::default()
        };
        let name = v["metadata"]["name"].as_str().unwrap().to_string();
        match api.create(&pp, &obj).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("{}: {kind} {name}: {e}", path.display()),
        }
        created.push(format!("{kind}/{name}"));
    }
    created
}
