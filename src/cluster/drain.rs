//! Draining this node before a disruptive update (SPEC §9), in one of two modes:
//!
//! - [`DrainMode::Controller`] (upstream's contract): write `desiredDrain=drain-<config>` and
//!   wait, on the node watch, for the controller to answer `lastAppliedDrain=drain-<config>`;
//!   `uncordon-<config>` the same way after. A value that already matches is done.
//! - [`DrainMode::SelfDrain`] (ours, for clusters without that controller): cordon through
//!   `spec.unschedulable`, list the pods bound to this node (`spec.nodeName=NAME`), evict all but
//!   DaemonSet pods, mirror (static) pods and completed pods with the Eviction API, retry every
//!   `eviction_retry` while a PodDisruptionBudget answers 429, and wait on a watch of the node's
//!   pods until the evicted ones are gone. Past `timeout` the error names the blocking pods.
//!
//! Single-node clusters (`controlPlaneTopology: SingleReplica`) skip the drain in both modes.
//!
//! **Pre-flight** (on unless `preflight` is off, `--drain-preflight=false`): before the
//! self-drain cordons, [`Preflight`] follows the node's pods and the PodDisruptionBudgets of
//! their namespaces (one watch of the node's pods, one watch of budgets per namespace, no
//! polling) and computes [`crate::cluster::preflight::verdict`] after each change. While it says
//! blocked, the node is not cordoned, stays schedulable, and the caller hears the message (the
//! daemon reports it as its `Working` reason); once clear, the drain cordons and evicts as
//! before. A node already cordoned (a drain begun earlier) skips the pre-flight. The drain
//! timeout covers the wait: past it the error ([`ClusterError::DrainPreflightTimeout`]) names
//! the pods and budgets, and the node was never cordoned. A budget that changes between the
//! pre-flight and the evictions (another drain took the last disruption) is met by the 429
//! retry as without the pre-flight. With `preflight` off, the drain cordons at once (upstream's
//! behaviour).
//!
//! The eviction itself ([`classify`], [`evict_node_pods`]) is shared with the drain controller
//! (`controller::drain`), which answers the hand-off of the first mode: one implementation of
//! kubectl-drain's rules for both.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, ListParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::time::Instant;

use super::preflight::{self, Verdict};

use super::node::{KubeNode, NodeView};
use super::retry::{WatchBackoff, is_code, is_transient, with_retries};
use super::{Client, ClusterError, Options};

/// Node annotation the drain controller writes while its pre-flight keeps it from cordoning:
/// the pods and PodDisruptionBudgets that block (removed once the drain goes on).
pub const DRAIN_PREFLIGHT: &str = "machineconfiguration.openshift.io/drainPreflight";

/// Annotation marking a mirror (static) pod.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Who drains the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainMode {
    /// Hand the drain to the machine-config controller by annotation.
    Controller,
    /// Cordon and evict here.
    SelfDrain,
}

/// Drain settings.
#[derive(Debug, Clone)]
pub struct DrainOptions {
    pub mode: DrainMode,
    /// Longest wait for the whole drain (or for the controller's answer).
    pub timeout: Duration,
    /// Delay between eviction attempts of a pod a PodDisruptionBudget protects.
    pub eviction_retry: Duration,
    /// Self-drain: check the PodDisruptionBudgets before cordoning, and wait (uncordoned) while
    /// they block the drain.
    pub preflight: bool,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            mode: DrainMode::Controller,
            timeout: Duration::from_secs(3600),
            eviction_retry: Duration::from_secs(5),
            preflight: true,
        }
    }
}

/// What a drain tells its caller while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainProgress {
    /// The pre-flight found pods the budgets keep from being evicted: the node is not
    /// cordoned; the message names the pods and budgets.
    Blocked(String),
    /// The drain goes ahead (after having been blocked).
    Proceeding,
}

/// What a drain did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Single-node cluster: nothing drained.
    SkippedSingleNode,
    /// The controller had already applied this drain.
    AlreadyDone,
    /// The controller drained the node.
    DrainedByController,
    /// This daemon drained the node: the pods evicted (`namespace/name`) and warnings about
    /// pods whose eviction loses data or is not recreated.
    Drained {
        evicted: Vec<String>,
        warnings: Vec<String>,
    },
}

/// Drains the node before applying `config`; `progress` hears what the drain waits for.
pub async fn drain(
    node: &KubeNode,
    config: &str,
    opts: &DrainOptions,
    progress: &(dyn Fn(DrainProgress) + Send + Sync),
) -> Result<DrainOutcome, ClusterError> {
    let view = node.wait_synced().await?;
    if view.single_replica {
        tracing::info!(node = node.name(), "single-node cluster: drain skipped");
        return Ok(DrainOutcome::SkippedSingleNode);
    }
    match opts.mode {
        DrainMode::Controller => {
            let want = format!("drain-{config}");
            if hand_off(node, &view, &want, opts.timeout, progress).await? {
                Ok(DrainOutcome::AlreadyDone)
            } else {
                Ok(DrainOutcome::DrainedByController)
            }
        }
        DrainMode::SelfDrain => self_drain(node, &view, opts, progress).await,
    }
}

/// Makes the node schedulable again after `config` is applied (or after boot).
pub async fn uncordon(
    node: &KubeNode,
    config: &str,
    opts: &DrainOptions,
) -> Result<(), ClusterError> {
    let view = node.wait_synced().await?;
    if view.single_replica {
        return Ok(());
    }
    match opts.mode {
        DrainMode::Controller => {
            hand_off(
                node,
                &view,
                &format!("uncordon-{config}"),
                opts.timeout,
                &|_| {},
            )
            .await?;
        }
        DrainMode::SelfDrain => node.set_unschedulable(false).await?,
    }
    Ok(())
}

/// Sets `desiredDrain=want` and waits for `lastAppliedDrain=want`. True when it already matched.
/// While waiting, the controller's pre-flight verdict ([`DRAIN_PREFLIGHT`]) goes to `progress`.
async fn hand_off(
    node: &KubeNode,
    view: &NodeView,
    want: &str,
    timeout: Duration,
    progress: &(dyn Fn(DrainProgress) + Send + Sync),
) -> Result<bool, ClusterError> {
    if view.last_applied_drain.as_deref() == Some(want) {
        tracing::info!(node = node.name(), drain = want, "drain already applied");
        return Ok(true);
    }
    if view.desired_drain.as_deref() != Some(want) {
        node.set_desired_drain(want).await?;
    }
    tracing::info!(
        node = node.name(),
        drain = want,
        ?timeout,
        "waiting for the controller"
    );
    let what = format!(
        "lastAppliedDrain={want} on node {} (is the machine-config controller running?)",
        node.name()
    );
    let forwarded: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    node.wait_until(&what, timeout, |v| {
        let mut last = forwarded.lock().unwrap_or_else(|p| p.into_inner());
        if *last != v.drain_preflight {
            match &v.drain_preflight {
                Some(m) => progress(DrainProgress::Blocked(m.clone())),
                None => progress(DrainProgress::Proceeding),
            }
            last.clone_from(&v.drain_preflight);
        }
        v.last_applied_drain.as_deref() == Some(want)
    })
    .await?;
    tracing::info!(
        node = node.name(),
        drain = want,
        "controller applied the drain"
    );
    Ok(false)
}

/// What a drain does with one pod (kubectl drain's rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Left alone, with the reason: a DaemonSet pod (its controller would put it back), a
    /// mirror (static) pod (the kubelet owns it), a completed pod (nothing runs).
    Skip(&'static str),
    /// Evicted; with a warning when the eviction loses data (emptyDir) or the pod has no
    /// controller to recreate it.
    Evict { warning: Option<String> },
}

/// What a drain does with `pod`.
pub fn classify(pod: &Pod) -> Disposition {
    let meta = &pod.metadata;
    let id = pod_id(pod);
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    if owners.iter().any(|o| o.kind == "DaemonSet") {
        return Disposition::Skip("DaemonSet pod");
    }
    if meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION))
    {
        return Disposition::Skip("mirror pod");
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded") | Some("Failed")) {
        return Disposition::Skip("completed pod");
    }
    let empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| v.iter().any(|v| v.empty_dir.is_some()));
    let controlled = owners.iter().any(|o| o.controller == Some(true));
    let warning = match (empty_dir, controlled) {
        (true, _) => Some(format!(
            "{id}: evicting a pod with emptyDir; its local data is lost"
        )),
        (false, false) => Some(format!(
            "{id}: evicting a pod without controller; it will not be recreated"
        )),
        _ => None,
    };
    Disposition::Evict { warning }
}

/// `namespace/name` of a pod.
pub fn pod_id(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

async fn self_drain(
    node: &KubeNode,
    view: &NodeView,
    opts: &DrainOptions,
    progress: &(dyn Fn(DrainProgress) + Send + Sync),
) -> Result<DrainOutcome, ClusterError> {
    let started = Instant::now();
    let deadline = started + opts.timeout;
    if opts.preflight && !view.unschedulable {
        let mut pf = Preflight::new(node.client(), node.options(), node.name());
        let mut blocked = false;
        loop {
            let verdict = match tokio::time::timeout_at(deadline, pf.next()).await {
                Ok(v) => v?,
                Err(_) => {
                    return Err(ClusterError::DrainPreflightTimeout {
                        node: node.name().to_string(),
                        after: opts.timeout,
                        message: pf.last().map(Verdict::message).unwrap_or_default(),
                    });
                }
            };
            if verdict.can_drain() {
                log_staged(node.name(), &verdict);
                if blocked {
                    tracing::info!(node = node.name(), waited = ?started.elapsed(), "drain pre-flight clear: draining");
                    progress(DrainProgress::Proceeding);
                }
                break;
            }
            let message = verdict.message();
            tracing::info!(
                node = node.name(),
                blocked = verdict.blocked.len(),
                "{message}"
            );
            progress(DrainProgress::Blocked(message));
            blocked = true;
        }
    }
    if !view.unschedulable {
        node.set_unschedulable(true).await?;
    }
    let evicted = evict_node_pods(
        node.client(),
        node.options(),
        node.name(),
        opts.eviction_retry,
        deadline.saturating_duration_since(Instant::now()),
    )
    .await?;
    Ok(DrainOutcome::Drained {
        evicted: evicted.evicted,
        warnings: evicted.warnings,
    })
}

/// What [`evict_node_pods`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evicted {
    /// The pods evicted (`namespace/name`), sorted.
    pub evicted: Vec<String>,
    /// Warnings about pods whose eviction loses data or that are not recreated.
    pub warnings: Vec<String>,
}

/// Evicts the pods bound to `node` that [`classify`] selects, with the Eviction API: a pod a
/// PodDisruptionBudget protects (429) or a transient failure is tried again every
/// `eviction_retry`, a pod already gone (404) is done. Then waits, on a watch of the node's
/// pods, until every evicted pod is gone (a pod recreated under the same name has a new uid and
/// counts as gone). Past `timeout` the error ([`ClusterError::DrainTimeout`]) names the pods
/// still blocking. The caller cordons the node first.
pub async fn evict_node_pods(
    client: &Client,
    opts: &Options,
    name: &str,
    eviction_retry: Duration,
    timeout: Duration,
) -> Result<Evicted, ClusterError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let pods_api: Api<Pod> = Api::all(client.clone());
    let selector = format!("spec.nodeName={name}");
    let list_params = ListParams::default().fields(&selector);
    let listed = with_retries(opts, &format!("list pods on {name}"), || {
        pods_api.list(&list_params)
    })
    .await?;

    let mut pending: BTreeMap<String, Pod> = BTreeMap::new();
    let mut warnings = Vec::new();
    for pod in listed.items {
        match classify(&pod) {
            Disposition::Skip(why) => tracing::debug!(pod = %pod_id(&pod), why, "not evicted"),
            Disposition::Evict { warning } => {
                if let Some(w) = warning {
                    tracing::warn!(node = name, "{w}");
                    warnings.push(w);
                }
                pending.insert(pod_id(&pod), pod);
            }
        }
    }

    // Evict, retrying pods a PodDisruptionBudget protects.
    let mut evicted: BTreeMap<String, Option<String>> = BTreeMap::new(); // id -> uid
    loop {
        let mut blocked = BTreeMap::new();
        for (id, pod) in std::mem::take(&mut pending) {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            match api.evict(&pod_name, &EvictParams::default()).await {
                Ok(_) => {
                    tracing::info!(node = name, pod = %id, "pod evicted");
                    evicted.insert(id, pod.metadata.uid.clone());
                }
                Err(e) if is_code(&e, 404) => {
                    tracing::debug!(pod = %id, "pod already gone");
                }
                Err(e) if is_code(&e, 429) || is_transient(&e) => {
                    tracing::info!(node = name, pod = %id, error = %e, "eviction refused for now; will retry");
                    blocked.insert(id, pod);
                }
                Err(e) => return Err(ClusterError::api(format!("evict pod {id}"), e)),
            }
        }
        if blocked.is_empty() {
            break;
        }
        if Instant::now() + eviction_retry > deadline {
            return Err(ClusterError::DrainTimeout {
                node: name.to_string(),
                after: timeout,
                pods: blocked.into_keys().collect(),
            });
        }
        pending = blocked;
        tokio::time::sleep(eviction_retry).await;
    }

    wait_gone(
        name, opts, &pods_api, &selector, &evicted, deadline, timeout,
    )
    .await?;
    tracing::info!(node = name, evicted = evicted.len(), elapsed = ?started.elapsed(), "node drained");
    Ok(Evicted {
        evicted: evicted.into_keys().collect(),
        warnings,
    })
}

/// Waits, on a watch of the node's pods, until none of `evicted` (id → uid) exists any more.
async fn wait_gone(
    node: &str,
    opts: &Options,
    pods_api: &Api<Pod>,
    selector: &str,
    evicted: &BTreeMap<String, Option<String>>,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), ClusterError> {
    if evicted.is_empty() {
        return Ok(());
    }
    let still_there = |present: &BTreeSet<(String, Option<String>)>| -> Vec<String> {
        evicted
            .iter()
            .filter(|(id, uid)| present.contains(&((*id).clone(), (*uid).clone())))
            .map(|(id, _)| id.clone())
            .collect()
    };
    let mut stream = watcher(
        pods_api.clone(),
        watcher::Config::default().fields(selector),
    )
    .backoff(WatchBackoff::new(opts))
    .boxed();
    let mut present: BTreeSet<(String, Option<String>)> = BTreeSet::new();
    let mut listing: BTreeSet<(String, Option<String>)> = BTreeSet::new();
    let mut synced = false;
    loop {
        if synced && still_there(&present).is_empty() {
            return Ok(());
        }
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let event = match next {
            Err(_) => {
                return Err(ClusterError::DrainTimeout {
                    node: node.to_string(),
                    after: timeout,
                    pods: still_there(&present),
                });
            }
            Ok(None) => {
                return Err(ClusterError::WatchStopped(format!("pods on {node}")));
            }
            Ok(Some(e)) => e,
        };
        let key = |p: &Pod| (pod_id(p), p.metadata.uid.clone());
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(p)) => {
                listing.insert(key(&p));
            }
            Ok(watcher::Event::InitDone) => {
                present = std::mem::take(&mut listing);
                synced = true;
            }
            Ok(watcher::Event::Apply(p)) => {
                present.insert(key(&p));
            }
            Ok(watcher::Event::Delete(p)) => {
                present.remove(&key(&p));
            }
            Err(e) => tracing::warn!(node, error = %e, "pod watch error; retrying"),
        }
    }
}

/// Logs budgets that allow fewer disruptions than the node needs (the drain evicts in rounds).
pub fn log_staged(node: &str, verdict: &Verdict) {
    for s in &verdict.staged {
        tracing::info!(
            node,
            pod = %s.pod,
            budget = %s.budget,
            allowed = s.allowed,
            needed = s.needed,
            "the budget allows fewer disruptions than the node needs: evicting in rounds"
        );
    }
}

/// One event of the pre-flight's watches.
enum Seen {
    Pods(Box<Result<watcher::Event<Pod>, watcher::Error>>),
    Budgets(
        String,
        Box<Result<watcher::Event<PodDisruptionBudget>, watcher::Error>>,
    ),
}

/// Objects of one watch, in a kube-runtime reflector store (the reflector in the watch's
/// stream keeps it: a relist replaces it whole once complete), and whether it has listed.
struct Mirror<K: kube::runtime::reflector::Lookup + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: reflector::Store<K>,
    synced: bool,
}

impl<K> Mirror<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    /// The store, and the writer for the reflector of its watch.
    fn new() -> (Self, reflector::store::Writer<K>) {
        let (store, writer) = reflector::store();
        (
            Mirror {
                store,
                synced: false,
            },
            writer,
        )
    }

    /// Notes an event (the reflector has applied it already); true when the objects may have
    /// changed.
    fn seen(&mut self, event: &watcher::Event<K>) -> bool {
        match event {
            watcher::Event::Init | watcher::Event::InitApply(_) => false,
            watcher::Event::InitDone => {
                self.synced = true;
                true
            }
            watcher::Event::Apply(_) | watcher::Event::Delete(_) => true,
        }
    }

    fn items(&self) -> impl Iterator<Item = K> {
        self.store.state().into_iter().map(|k| (*k).clone())
    }
}

/// The drain pre-flight of one node, driven by watches: the node's pods (field selector
/// `spec.nodeName`) and the PodDisruptionBudgets of each namespace one of its evictable pods is
/// in (a watch per namespace, added as pods of new namespaces appear; the daemon watches
/// nothing cluster-wide). Nothing polls: a watch that fails restarts with backoff and relists.
pub struct Preflight {
    client: Client,
    opts: Options,
    node: String,
    streams: SelectAll<BoxStream<'static, Seen>>,
    pods: Mirror<Pod>,
    budgets: BTreeMap<String, Mirror<PodDisruptionBudget>>,
    last: Option<Verdict>,
}

impl Preflight {
    /// Starts the watch of the node's pods (the budget watches follow from them).
    pub fn new(client: &Client, opts: &Options, node: &str) -> Self {
        let pods: Api<Pod> = Api::all(client.clone());
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let mut streams = SelectAll::new();
        let (mirror, writer) = Mirror::new();
        streams.push(
            watcher(pods, config)
                .backoff(WatchBackoff::new(opts))
                .reflect(writer)
                .map(|e| Seen::Pods(Box::new(e)))
                .boxed(),
        );
        Preflight {
            client: client.clone(),
            opts: opts.clone(),
            node: node.to_string(),
            streams,
            pods: mirror,
            budgets: BTreeMap::new(),
            last: None,
        }
    }

    /// The verdict last returned.
    pub fn last(&self) -> Option<&Verdict> {
        self.last.as_ref()
    }

    /// The verdict once every watch has listed, then each time it changes (a change of pods or
    /// budgets that leaves it the same is not returned).
    pub async fn next(&mut self) -> Result<Verdict, ClusterError> {
        loop {
            let Some(seen) = self.streams.next().await else {
                return Err(ClusterError::WatchStopped(format!(
                    "pods and PodDisruptionBudgets of node {}",
                    self.node
                )));
            };
            let changed = match seen {
                Seen::Pods(e) => match *e {
                    Ok(e) => self.pods.seen(&e),
                    Err(e) => self.watch_error(&e),
                },
                Seen::Budgets(ns, e) => match *e {
                    Ok(e) => self.budgets.get_mut(&ns).is_some_and(|m| m.seen(&e)),
                    Err(e) => self.watch_error(&e),
                },
            };
            if !changed || !self.pods.synced {
                continue;
            }
            self.watch_namespaces();
            if !self.budgets.values().all(|m| m.synced) {
                continue;
            }
            let pods: Vec<Pod> = self.pods.items().collect();
            let pdbs: Vec<PodDisruptionBudget> =
                self.budgets.values().flat_map(Mirror::items).collect();
            let verdict = preflight::verdict(&pods, &pdbs);
            if self.last.as_ref() != Some(&verdict) {
                self.last = Some(verdict.clone());
                return Ok(verdict);
            }
        }
    }

    fn watch_error(&self, e: &watcher::Error) -> bool {
        tracing::warn!(node = %self.node, error = %e, "pre-flight watch error; retrying");
        false
    }

    /// Starts a budget watch for each namespace of an evictable pod not watched yet.
    fn watch_namespaces(&mut self) {
        let namespaces: BTreeSet<String> = self
            .pods
            .items()
            .filter(|p| matches!(classify(p), Disposition::Evict { .. }))
            .filter_map(|p| p.metadata.namespace.clone())
            .collect();
        for ns in namespaces {
            if self.budgets.contains_key(&ns) {
                continue;
            }
            let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &ns);
            let tag = ns.clone();
            let (mirror, writer) = Mirror::new();
            self.streams.push(
                watcher(api, watcher::Config::default())
                    .backoff(WatchBackoff::new(&self.opts))
                    .reflect(writer)
                    .map(move |e| Seen::Budgets(tag.clone(), Box::new(e)))
                    .boxed(),
            );
            self.budgets.insert(ns, mirror);
        }
    }
}
