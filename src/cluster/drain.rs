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
//! The eviction itself ([`classify`], [`evict_node_pods`]) is shared with the drain controller
//! (`controller::drain`), which answers the hand-off of the first mode: one implementation of
//! kubectl-drain's rules for both.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::time::Instant;

use super::node::{KubeNode, NodeView};
use super::retry::{WatchBackoff, is_code, is_transient, with_retries};
use super::{Client, ClusterError, Options};

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
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            mode: DrainMode::Controller,
            timeout: Duration::from_secs(3600),
            eviction_retry: Duration::from_secs(5),
        }
    }
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

/// Drains the node before applying `config`.
pub async fn drain(
    node: &KubeNode,
    config: &str,
    opts: &DrainOptions,
) -> Result<DrainOutcome, ClusterError> {
    let view = node.wait_synced().await?;
    if view.single_replica {
        tracing::info!(node = node.name(), "single-node cluster: drain skipped");
        return Ok(DrainOutcome::SkippedSingleNode);
    }
    match opts.mode {
        DrainMode::Controller => {
            let want = format!("drain-{config}");
            if hand_off(node, &view, &want, opts.timeout).await? {
                Ok(DrainOutcome::AlreadyDone)
            } else {
                Ok(DrainOutcome::DrainedByController)
            }
        }
        DrainMode::SelfDrain => self_drain(node, &view, opts).await,
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
            hand_off(node, &view, &format!("uncordon-{config}"), opts.timeout).await?;
        }
        DrainMode::SelfDrain => node.set_unschedulable(false).await?,
    }
    Ok(())
}

/// Sets `desiredDrain=want` and waits for `lastAppliedDrain=want`. True when it already matched.
async fn hand_off(
    node: &KubeNode,
    view: &NodeView,
    want: &str,
    timeout: Duration,
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
    node.wait_until(&what, timeout, |v| {
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
) -> Result<DrainOutcome, ClusterError> {
    if !view.unschedulable {
        node.set_unschedulable(true).await?;
    }
    let evicted = evict_node_pods(
        node.client(),
        node.options(),
        node.name(),
        opts.eviction_retry,
        opts.timeout,
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
