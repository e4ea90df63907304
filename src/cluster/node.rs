//! This node's `Node` object: the watch that tells the daemon its desired config, and the
//! annotation writes that report its state (SPEC §8).
//!
//! [`KubeNode`] owns one kube-runtime watcher restricted to `metadata.name=NAME` (bookmarks on,
//! exponential backoff on errors) and publishes what it sees as a [`NodeView`] on a
//! `tokio::sync::watch` channel. Writes are JSON merge patches of the daemon's own annotations
//! only, carrying `metadata.resourceVersion` so a concurrent writer causes a 409, which is
//! answered by re-reading the node and patching again. Other annotations are never sent, so never
//! touched.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::retry::{PacedWatch, is_code, with_retries};
use super::{ANNOTATION_PREFIX, Client, ClusterError, Options};

/// `machineconfiguration.openshift.io/currentConfig`
pub const CURRENT_CONFIG: &str = "machineconfiguration.openshift.io/currentConfig";
/// `machineconfiguration.openshift.io/desiredConfig`
pub const DESIRED_CONFIG: &str = "machineconfiguration.openshift.io/desiredConfig";
/// `machineconfiguration.openshift.io/state`
pub const STATE: &str = "machineconfiguration.openshift.io/state";
/// `machineconfiguration.openshift.io/reason`
pub const REASON: &str = "machineconfiguration.openshift.io/reason";
/// `machineconfiguration.openshift.io/post-config-action`
pub const POST_CONFIG_ACTION: &str = "machineconfiguration.openshift.io/post-config-action";
/// `machineconfiguration.openshift.io/desiredDrain`
pub const DESIRED_DRAIN: &str = "machineconfiguration.openshift.io/desiredDrain";
/// `machineconfiguration.openshift.io/lastAppliedDrain`
pub const LAST_APPLIED_DRAIN: &str = "machineconfiguration.openshift.io/lastAppliedDrain";
/// `machineconfiguration.openshift.io/controlPlaneTopology`
pub const CONTROL_PLANE_TOPOLOGY: &str = "machineconfiguration.openshift.io/controlPlaneTopology";

/// The node states of SPEC §8 (one type for the daemon and the annotations), the longest
/// `reason` in characters, and the clipping of a reason to it.
pub use crate::daemon::state::{MAX_REASON as MAX_REASON_CHARS, NodeState, clip_reason};

/// What the daemon needs to know about its Node, as last seen by the watch. Changes of other
/// fields (kubelet status updates) leave it equal, so they do not wake the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeView {
    pub name: String,
    pub uid: Option<String>,
    pub current_config: Option<String>,
    pub desired_config: Option<String>,
    pub state: Option<String>,
    pub reason: Option<String>,
    pub post_config_action: Option<String>,
    pub desired_drain: Option<String>,
    pub last_applied_drain: Option<String>,
    /// What the drain controller's pre-flight waits for (`drainPreflight`), if it waits.
    pub drain_preflight: Option<String>,
    /// `controlPlaneTopology: SingleReplica`: a single-node cluster, drains are skipped.
    pub single_replica: bool,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
}

impl NodeView {
    /// Builds the view of a Node object.
    pub fn from_node(node: &Node) -> Self {
        let ann = node.metadata.annotations.clone().unwrap_or_default();
        let get = |k: &str| ann.get(k).cloned();
        NodeView {
            name: node.metadata.name.clone().unwrap_or_default(),
            uid: node.metadata.uid.clone(),
            current_config: get(CURRENT_CONFIG),
            desired_config: get(DESIRED_CONFIG),
            state: get(STATE),
            reason: get(REASON),
            post_config_action: get(POST_CONFIG_ACTION),
            desired_drain: get(DESIRED_DRAIN),
            last_applied_drain: get(LAST_APPLIED_DRAIN),
            drain_preflight: get(super::drain::DRAIN_PREFLIGHT),
            single_replica: get(CONTROL_PLANE_TOPOLOGY).as_deref() == Some("SingleReplica"),
            unschedulable: node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
        }
    }

    /// True when the daemon has work: a desired config different from the current one, or a
    /// state other than `Done`.
    pub fn needs_update(&self) -> bool {
        self.desired_config.is_some()
            && (self.desired_config != self.current_config || self.state.as_deref() != Some("Done"))
    }
}

/// What the node watch has seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The initial list has not completed yet.
    Pending,
    /// The node does not exist (not yet registered, or deleted).
    Missing,
    /// The node as last seen.
    Present(Box<NodeView>),
}

/// The daemon's handle on its own Node. Dropping it stops the watch.
pub struct KubeNode {
    client: Client,
    api: Api<Node>,
    name: String,
    opts: Options,
    rx: watch::Receiver<Observed>,
    /// Most recent resourceVersion seen (watch or own write); a stale one only costs a 409.
    rv_hint: Arc<Mutex<Option<String>>>,
    task: JoinHandle<()>,
}

impl Drop for KubeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeNode {
    /// Starts watching node `node_name`. Must be called inside a Tokio runtime.
    pub fn new(client: Client, node_name: &str, opts: Options) -> Self {
        let api: Api<Node> = Api::all(client.clone());
        let (tx, rx) = watch::channel(Observed::Pending);
        let rv_hint = Arc::new(Mutex::new(None));
        let task = tokio::spawn(watch_node(
            api.clone(),
            node_name.to_string(),
            tx,
            rv_hint.clone(),
            opts.clone(),
        ));
        KubeNode {
            client,
            api,
            name: node_name.to_string(),
            opts,
            rx,
            rv_hint,
            task,
        }
    }

    /// The client this handle talks through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The options this handle was built with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// A receiver of every change the watch sees; `changed().await` sleeps until then.
    pub fn subscribe(&self) -> watch::Receiver<Observed> {
        self.rx.clone()
    }

    /// The node as last seen, if the watch has seen it.
    pub fn view(&self) -> Option<NodeView> {
        match &*self.rx.borrow() {
            Observed::Present(v) => Some((**v).clone()),
            _ => None,
        }
    }

    /// Waits for the watch's first complete list; an absent node is an error.
    pub async fn wait_synced(&self) -> Result<NodeView, ClusterError> {
        let mut rx = self.rx.clone();
        let seen = rx
            .wait_for(|o| !matches!(o, Observed::Pending))
            .await
            .map_err(|_| ClusterError::WatchStopped(format!("node {}", self.name)))?
            .clone();
        match seen {
            Observed::Present(v) => Ok(*v),
            _ => Err(ClusterError::NodeNotFound {
                node: self.name.clone(),
            }),
        }
    }

    /// Waits (at most `timeout`) until the watched node satisfies `pred`.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&NodeView) -> bool,
    ) -> Result<NodeView, ClusterError> {
        let mut rx = self.rx.clone();
        let wait = rx.wait_for(|o| matches!(o, Observed::Present(v) if pred(v)));
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(seen)) => match &*seen {
                Observed::Present(v) => Ok((**v).clone()),
                _ => unreachable!("wait_for returned a value that fails its predicate"),
            },
            Ok(Err(_)) => Err(ClusterError::WatchStopped(format!("node {}", self.name))),
            Err(_) => Err(ClusterError::Timeout {
                what: what.to_string(),
                after: timeout,
            }),
        }
    }

    /// Sets `state` and `reason` in one patch. The reason is clipped to 2000 characters and
    /// written empty when the state is `Done`.
    pub async fn set_state(&self, state: NodeState, reason: &str) -> Result<(), ClusterError> {
        self.patch_annotations(state_annotations(state, reason))
            .await
    }

    /// Sets `currentConfig`.
    pub async fn set_current_config(&self, config: &str) -> Result<(), ClusterError> {
        let mut changes = BTreeMap::new();
        changes.insert(CURRENT_CONFIG, Some(config.to_string()));
        self.patch_annotations(changes).await
    }

    /// First boot: sets `currentConfig` to `config`, and `desiredConfig` too when `desired` (the
    /// node has none yet), in one patch.
    pub async fn set_initial_config(
        &self,
        config: &str,
        desired: bool,
    ) -> Result<(), ClusterError> {
        let mut changes = BTreeMap::new();
        changes.insert(CURRENT_CONFIG, Some(config.to_string()));
        if desired {
            changes.insert(DESIRED_CONFIG, Some(config.to_string()));
        }
        self.patch_annotations(changes).await
    }

    /// Sets `post-config-action` (`Some("Rebooting")` before a reboot) or removes it (`None`).
    pub async fn set_post_config_action(&self, action: Option<&str>) -> Result<(), ClusterError> {
        let mut changes = BTreeMap::new();
        changes.insert(POST_CONFIG_ACTION, action.map(str::to_string));
        self.patch_annotations(changes).await
    }

    /// Sets `state`, `reason` and (when given) `currentConfig` in a single patch: the usual
    /// end of an update (`Done` with the new config).
    pub async fn report(
        &self,
        state: NodeState,
        reason: &str,
        current_config: Option<&str>,
    ) -> Result<(), ClusterError> {
        let mut changes = state_annotations(state, reason);
        if let Some(c) = current_config {
            changes.insert(CURRENT_CONFIG, Some(c.to_string()));
        }
        self.patch_annotations(changes).await
    }

    /// Sets `desiredDrain` (controller drain hand-off).
    pub(crate) async fn set_desired_drain(&self, value: &str) -> Result<(), ClusterError> {
        let mut changes = BTreeMap::new();
        changes.insert(DESIRED_DRAIN, Some(value.to_string()));
        self.patch_annotations(changes).await
    }

    /// Cordons (`true`) or uncordons (`false`) the node through `spec.unschedulable`.
    pub async fn set_unschedulable(&self, unschedulable: bool) -> Result<(), ClusterError> {
        let body = json!({"spec": {"unschedulable": if unschedulable { json!(true) } else { Value::Null }}});
        let what = format!("node {}: set spec.unschedulable={unschedulable}", self.name);
        let params = PatchParams::default();
        let patch = Patch::Merge(&body);
        let node = with_retries(&self.opts, &what, || {
            self.api.patch(&self.name, &params, &patch)
        })
        .await?;
        self.remember_rv(&node);
        tracing::info!(node = %self.name, unschedulable, "node cordon state written");
        Ok(())
    }

    /// Writes `changes` (annotation → value, `None` removes) with a merge patch carrying the
    /// resourceVersion; on 409 re-reads the node and tries again.
    async fn patch_annotations(
        &self,
        changes: BTreeMap<&'static str, Option<String>>,
    ) -> Result<(), ClusterError> {
        debug_assert!(changes.keys().all(|k| k.starts_with(ANNOTATION_PREFIX)));
        let keys: Vec<&str> = changes.keys().copied().collect();
        let what = format!("node {}: annotate {}", self.name, keys.join(","));
        let annotations: Map<String, Value> = changes
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone().map_or(Value::Null, Value::String)))
            .collect();
        let mut rv = self.rv_hint.lock().expect("rv lock").clone();
        for attempt in 0..self.opts.conflict_attempts {
            if rv.is_none() {
                let node = with_retries(&self.opts, &what, || self.api.get(&self.name)).await?;
                rv = node.metadata.resource_version.clone();
            }
            let mut metadata = json!({ "annotations": annotations });
            if let Some(rv) = &rv {
                metadata["resourceVersion"] = json!(rv);
            }
            let body = json!({ "metadata": metadata });
            let params = PatchParams::default();
            let patch = Patch::Merge(&body);
            let result = with_retries(&self.opts, &what, || {
                self.api.patch(&self.name, &params, &patch)
            })
            .await;
            match result {
                Ok(node) => {
                    self.remember_rv(&node);
                    tracing::info!(node = %self.name, annotations = ?changes, "node annotations written");
                    return Ok(());
                }
                Err(ClusterError::Api { source, .. }) if is_code(&source, 409) => {
                    tracing::debug!(node = %self.name, attempt, "annotation patch conflicted, re-reading");
                    rv = None;
                }
                Err(ClusterError::Api { source, .. }) if is_code(&source, 404) => {
                    return Err(ClusterError::NodeNotFound {
                        node: self.name.clone(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClusterError::Conflict {
            what,
            attempts: self.opts.conflict_attempts,
        })
    }

    fn remember_rv(&self, node: &Node) {
        *self.rv_hint.lock().expect("rv lock") = node.metadata.resource_version.clone();
    }
}

fn state_annotations(state: NodeState, reason: &str) -> BTreeMap<&'static str, Option<String>> {
    let reason = if state == NodeState::Done {
        ""
    } else {
        clip_reason(reason)
    };
    let mut changes = BTreeMap::new();
    changes.insert(STATE, Some(state.as_str().to_string()));
    changes.insert(REASON, Some(reason.to_string()));
    changes
}

/// The watch task: publishes every change of the node until the handle is dropped.
async fn watch_node(
    api: Api<Node>,
    name: String,
    tx: watch::Sender<Observed>,
    rv_hint: Arc<Mutex<Option<String>>>,
    opts: Options,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = PacedWatch::new(api, config, &opts, &format!("node {name}"));
    let mut listing: Option<Node> = None;
    while let Some(event) = stream.next().await {
        let seen = match event {
            Ok(watcher::Event::Init) => {
                listing = None;
                continue;
            }
            Ok(watcher::Event::InitApply(n)) => {
                listing = Some(n);
                continue;
            }
            Ok(watcher::Event::InitDone) => listing.take(),
            Ok(watcher::Event::Apply(n)) => Some(n),
            Ok(watcher::Event::Delete(_)) => None,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "node watch error; retrying with backoff");
                continue;
            }
        };
        let observed = match seen {
            Some(n) => {
                *rv_hint.lock().expect("rv lock") = n.metadata.resource_version.clone();
                Observed::Present(Box::new(NodeView::from_node(&n)))
            }
            None => Observed::Missing,
        };
        tracing::debug!(node = %name, ?observed, "node watch event");
        tx.send_if_modified(|cur| {
            if *cur == observed {
                false
            } else {
                *cur = observed;
                true
            }
        });
    }
}
