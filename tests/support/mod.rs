//! A test API server: a real HTTP/1.1 server on 127.0.0.1 that behaves like kube-apiserver for
//! the endpoints the daemon uses, so the real `kube` client can be exercised over the wire.
//!
//! Objects are JSON values keyed by collection (`api/v1/nodes`, `apis/GROUP/VERSION/PLURAL`) and
//! `(namespace, name)`; every write takes the next value of one global resourceVersion counter
//! and is recorded in a history that watches replay. Supported: GET, LIST and WATCH (field
//! selectors on `metadata.name`, `spec.nodeName`; bookmarks; `timeoutSeconds`; 410 for a
//! resourceVersion older than [`TestApiServer::compact`], always served to a watch that was open
//! at the compaction and is re-established from where it was), POST, PUT, PATCH (merge, strategic
//! treated as merge, JSON patch) with 409 on a stale `metadata.resourceVersion`, `/status`
//! subresources, `pods/NAME/eviction` (201, scriptable 429, 404). Faults: 500 for the next N
//! requests, 409 for the next N writes (to any object or to one), 410 for the next N resumed watches, a chosen status
//! (400, 403, 404, 422) for chosen requests, dropping every open watch. Every request is
//! counted.
//!
//! Which server covers what: this one is for what a real API server cannot do on demand —
//! injected 500s, 409s, 410s and refusals at an exact request, dropped watches, and exact
//! request counts. What the real one decides (schema validation of the upstream CRDs, RBAC of
//! the packaged ServiceAccount, eviction and PodDisruptionBudgets, a real restart) is tested
//! against a real kube-apiserver and etcd (`envtest`, tests/envtest/, `tests/envtest_*.rs`).
#![allow(dead_code)]

mod http;
pub mod json;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

pub const NODES: &str = "api/v1/nodes";
pub const PODS: &str = "api/v1/pods";
pub const EVENTS: &str = "apis/events.k8s.io/v1/events";
pub const MACHINECONFIGS: &str = "apis/machineconfiguration.openshift.io/v1/machineconfigs";
pub const MACHINECONFIGPOOLS: &str = "apis/machineconfiguration.openshift.io/v1/machineconfigpools";
pub const MACHINECONFIGNODES: &str = "apis/machineconfiguration.openshift.io/v1/machineconfignodes";
pub const CONTROLLERCONFIGS: &str = "apis/machineconfiguration.openshift.io/v1/controllerconfigs";
pub const MACHINECONFIGURATIONS: &str = "apis/operator.openshift.io/v1/machineconfigurations";
pub const LEASES: &str = "apis/coordination.k8s.io/v1/leases";

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete.
    pub verb: &'static str,
}

/// Requests with this verb whose path contains `path_part` are answered with `code`.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub verb: &'static str,
    pub path_part: String,
    pub code: u16,
}

/// A change, as sent to watches.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub rv: u64,
    pub collection: String,
    pub kind: &'static str, // ADDED, MODIFIED, DELETED
    pub object: Value,
}

#[derive(Default)]
pub(crate) struct Store {
    pub rv: u64,
    pub objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    pub history: Vec<Change>,
    /// Watches starting before this resourceVersion get 410 Gone.
    pub compacted: u64,
    /// 410 Gone answers served so far.
    pub gone: usize,
    /// BOOKMARK events sent so far, on every watch.
    pub bookmarks: usize,
    /// Remaining 429 answers per pod (namespace, name).
    pub eviction_blocks: HashMap<(String, String), u32>,
    pub requests: Vec<Request>,
    pub fail_next: u32,
    /// The next this many watches that resume from a resourceVersion get 410 Gone.
    pub gone_next_watches: u32,
    /// Requests answered with an error status for as long as the entry stays.
    pub refusals: Vec<Refusal>,
    pub conflict_next_writes: u32,
    /// Only writes whose path contains this are conflicted (empty: every write).
    pub conflict_path: String,
    pub uid: u64,
}

pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub changes: broadcast::Sender<Change>,
    /// Bumped to end every open watch.
    pub drop_watches: watch::Sender<u64>,
    pub bookmark_interval: Mutex<Option<Duration>>,
    pub eviction_delete_delay: Mutex<Duration>,
}

/// The running server. Dropping it stops accepting connections.
pub struct TestApiServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `Kind` and `apiVersion` of a collection.
pub(crate) fn kind_of(collection: &str) -> (&'static str, String) {
    let resource = collection.rsplit('/').next().unwrap_or_default();
    let kind = match resource {
        "nodes" => "Node",
        "pods" => "Pod",
        "events" => "Event",
        "machineconfigs" => "MachineConfig",
        "machineconfignodes" => "MachineConfigNode",
        "machineconfigpools" => "MachineConfigPool",
        "machineconfigurations" => "MachineConfiguration",
        "controllerconfigs" => "ControllerConfig",
        "leases" => "Lease",
        "namespaces" => "Namespace",
        "poddisruptionbudgets" => "PodDisruptionBudget",
        _ => "Unknown",
    };
    let gv = collection
        .rsplit_once('/')
        .map(|(gv, _)| gv)
        .unwrap_or_default();
    let api_version = gv
        .strip_prefix("api/")
        .or_else(|| gv.strip_prefix("apis/"))
        .unwrap_or(gv)
        .to_string();
    (kind, api_version)
}

impl Shared {
    /// Stores `obj` (create or replace) with a new resourceVersion and tells the watches.
    pub(crate) fn write(&self, collection: &str, mut obj: Value, kind: &'static str) -> Value {
        let mut s = self.store.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        let (k, av) = kind_of(collection);
        obj["kind"] = json!(k);
        obj["apiVersion"] = json!(av);
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if obj["metadata"]["uid"].is_null() {
            s.uid += 1;
            obj["metadata"]["uid"] = json!(format!("uid-{}", s.uid));
        }
        if obj["metadata"]["creationTimestamp"].is_null() {
            obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        let key = key_of(&obj);
        let map = s.objects.entry(collection.to_string()).or_default();
        if kind == "DELETED" {
            map.remove(&key);
        } else {
            map.insert(key, obj.clone());
        }
        let change = Change {
            rv,
            collection: collection.to_string(),
            kind,
            object: obj.clone(),
        };
        s.history.push(change.clone());
        drop(s);
        let _ = self.changes.send(change);
        obj
    }

    pub(crate) fn get(&self, collection: &str, ns: &str, name: &str) -> Option<Value> {
        let s = self.store.lock().unwrap();
        s.objects
            .get(collection)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
    }
}

pub(crate) fn key_of(obj: &Value) -> (String, String) {
    let m = &obj["metadata"];
    (
        m["namespace"].as_str().unwrap_or_default().to_string(),
        m["name"].as_str().unwrap_or_default().to_string(),
    )
}

impl TestApiServer {
    /// Starts the server on 127.0.0.1 with an OS-chosen port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (changes, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changes,
            drop_watches: watch::channel(0).0,
            bookmark_interval: Mutex::new(None),
            eviction_delete_delay: Mutex::new(Duration::ZERO),
        });
        let task = tokio::spawn(http::serve(listener, shared.clone()));
        TestApiServer { addr, shared, task }
    }

    /// A `kube` client talking plain HTTP to this server.
    pub fn client(&self) -> kube::Client {
        let url: ::http::Uri = format!("http://{}", self.addr).parse().unwrap();
        let mut config = kube::Config::new(url);
        config.read_timeout = Some(Duration::from_secs(30));
        machine_config_daemon::cluster::client_from_config(config).unwrap()
    }

    /// Writes `DIR/kubeconfig` pointing at this server (plain HTTP, no credentials) for the
    /// binary's `--kubeconfig`, and returns its path.
    pub fn write_kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://{}\n\
                 contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
                 current-context: test\nusers:\n- name: test\n  user: {{}}\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }

    /// Creates or replaces an object (as an administrator or a controller would).
    pub fn put(&self, collection: &str, obj: Value) -> Value {
        let existing = self.get_in(collection, key_of(&obj).0.as_str(), key_of(&obj).1.as_str());
        let kind = if existing.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let mut obj = obj;
        if let Some(old) = existing {
            obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
        }
        self.shared.write(collection, obj, kind)
    }

    /// Merge-patches an existing object.
    pub fn merge(&self, collection: &str, ns: &str, name: &str, patch: Value) -> Value {
        let mut obj = self.get_in(collection, ns, name).expect("object to patch");
        json::merge_patch(&mut obj, &patch);
        self.shared.write(collection, obj, "MODIFIED")
    }

    /// Deletes an object.
    pub fn delete(&self, collection: &str, ns: &str, name: &str) {
        if let Some(obj) = self.get_in(collection, ns, name) {
            self.shared.write(collection, obj, "DELETED");
        }
    }

    /// A cluster-scoped object.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.shared.get(collection, "", name)
    }

    pub fn get_in(&self, collection: &str, ns: &str, name: &str) -> Option<Value> {
        self.shared.get(collection, ns, name)
    }

    /// Every object of a collection.
    pub fn list(&self, collection: &str) -> Vec<Value> {
        let s = self.shared.store.lock().unwrap();
        s.objects
            .get(collection)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Answer 500 to the next `n` requests.
    pub fn fail_next(&self, n: u32) {
        self.shared.store.lock().unwrap().fail_next = n;
    }

    /// The next `n` watches that resume from a resourceVersion get `410 Gone` (an ERROR event,
    /// as kube-apiserver answers a resourceVersion older than its history), deterministically.
    pub fn gone_next_watches(&self, n: u32) {
        self.shared.store.lock().unwrap().gone_next_watches = n;
    }

    /// From now on, answer requests with `verb` whose path contains `path_part` with `code`
    /// (400, 403, 404, 422: what a real server's validation or RBAC would answer).
    pub fn refuse(&self, verb: &'static str, path_part: &str, code: u16) {
        self.shared.store.lock().unwrap().refusals.push(Refusal {
            verb,
            path_part: path_part.to_string(),
            code,
        });
    }

    /// Ends every [`TestApiServer::refuse`].
    pub fn stop_refusing(&self) {
        self.shared.store.lock().unwrap().refusals.clear();
    }

    /// Answer 409 to the next `n` PATCH/PUT requests.
    pub fn conflict_next_writes(&self, n: u32) {
        self.conflict_next_writes_on("", n);
    }

    /// Answer 409 to the next `n` PATCH/PUT requests whose path contains `path_part` (as a
    /// concurrent writer of that object would cause).
    pub fn conflict_next_writes_on(&self, path_part: &str, n: u32) {
        let mut s = self.shared.store.lock().unwrap();
        s.conflict_next_writes = n;
        s.conflict_path = path_part.to_string();
    }

    /// End every open watch (as an API server restart or a load balancer would).
    pub fn drop_watches(&self) {
        self.shared.drop_watches.send_modify(|g| *g += 1);
    }

    /// Forget history: watches from an older resourceVersion get 410 Gone. The revision moves
    /// on by one (as another client's write would), so every resourceVersion a client holds
    /// now is older than the compaction, whatever it has seen: re-establishing a
    /// watch opened before this call is answered 410, deterministically; a fresh LIST gives a
    /// resourceVersion to watch from.
    pub fn compact(&self) {
        let mut s = self.shared.store.lock().unwrap();
        s.rv += 1;
        s.compacted = s.rv;
        s.history.clear();
    }

    /// 410 Gone answers served so far (watches from a compacted resourceVersion).
    pub fn gone_served(&self) -> usize {
        self.shared.store.lock().unwrap().gone
    }

    /// Send a BOOKMARK on open watches that asked for them, every `every`.
    pub fn bookmarks_every(&self, every: Duration) {
        *self.shared.bookmark_interval.lock().unwrap() = Some(every);
    }

    /// BOOKMARK events sent so far, on every watch.
    pub fn bookmarks_sent(&self) -> usize {
        self.shared.store.lock().unwrap().bookmarks
    }

    /// A PodDisruptionBudget refuses the next `times` evictions of this pod with 429.
    pub fn block_eviction(&self, ns: &str, name: &str, times: u32) {
        let mut s = self.shared.store.lock().unwrap();
        s.eviction_blocks
            .insert((ns.to_string(), name.to_string()), times);
    }

    /// Evicted pods disappear after this delay (graceful termination).
    pub fn eviction_delete_delay(&self, delay: Duration) {
        *self.shared.eviction_delete_delay.lock().unwrap() = delay;
    }

    /// Every write so far to `collection` (after any [`TestApiServer::compact`]), in order: the
    /// objects as stored, each with its change type.
    pub fn history(&self, collection: &str) -> Vec<(&'static str, Value)> {
        let s = self.shared.store.lock().unwrap();
        s.history
            .iter()
            .filter(|c| c.collection == collection)
            .map(|c| (c.kind, c.object.clone()))
            .collect()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.store.lock().unwrap().requests.clone()
    }

    /// Requests so far with this verb (`watch`, `get`, `patch`, ...).
    pub fn count(&self, verb: &str) -> usize {
        self.requests().iter().filter(|r| r.verb == verb).count()
    }

    /// Requests so far with this verb whose path contains `path_part`.
    pub fn count_on(&self, verb: &str, path_part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.verb == verb && r.path.contains(path_part))
            .count()
    }
}

/// A Node object with annotations.
pub fn node(name: &str, annotations: Value) -> Value {
    json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })
}

/// A running pod on `node`; `owner` is a controller kind (`ReplicaSet`, `DaemonSet`) or None.
pub fn pod(ns: &str, name: &str, node: &str, owner: Option<&str>) -> Value {
    let mut p = json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "example"}]},
        "status": {"phase": "Running"},
    });
    if let Some(kind) = owner {
        p["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": kind, "name": format!("{name}-owner"),
            "uid": format!("{name}-owner-uid"), "controller": true,
        }]);
    }
    p
}

/// Polls `cond` every 10 ms for up to `timeout` (test side only).
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}
