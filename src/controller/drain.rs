//! The drain controller (SPEC §9): answers the daemons' drain hand-off.
//!
//! A daemon in `--drain-mode=controller` writes `desiredDrain` on its Node and waits for
//! `lastAppliedDrain` to match. For each Node whose `desiredDrain` differs from
//! `lastAppliedDrain` ([`decide`]):
//! - `drain-<config>`: cordon (`spec.unschedulable`), evict the node's pods with the same rules
//!   and code as the daemon's self-drain ([`crate::cluster::drain::evict_node_pods`]: DaemonSet,
//!   mirror and completed pods skipped, a 429 from a PodDisruptionBudget tried again every
//!   `eviction_retry`, then wait until the evicted pods are gone), then set `lastAppliedDrain` to
//!   the same value;
//! - `uncordon-<config>`: uncordon, then set `lastAppliedDrain`;
//! - anything else is not a request this controller understands: logged once, never answered.
//!
//! Drains of different nodes run concurrently, one task per node (the pool controller limits
//! how many nodes are in flight); a new request for a node replaces the task of the old one.
//!
//! **Blocked drains.** After `report_after` (1 h) without success the controller publishes a
//! Warning event `DrainBlocked` regarding the Node, naming the blocking pods, and writes the same
//! message to the Node annotation [`DRAIN_BLOCKED`] (`machineconfiguration.openshift.io/drainBlocked`),
//! which the pool controller reads ([`drain_blocked`]) to put in the pool's `Degraded` message;
//! then it keeps retrying (and reports again after each further `report_after`). The annotation
//! is removed in the same write that sets `lastAppliedDrain`. An annotation rather than a value
//! in memory: the pool controller may run in another process (or replica), and the message
//! survives a restart of either.
//!
//! **Pre-flight** (on unless `preflight` is off, `controller --drain-preflight=false`): before
//! cordoning, the controller checks the node's pods against their PodDisruptionBudgets
//! ([`crate::cluster::drain::Preflight`], the daemon's self-drain check: watches of the node's
//! pods and of the budgets of their namespaces, no polling). While they keep a pod from being
//! evicted, the node is not cordoned (it stays schedulable), the Node carries the annotation
//! [`DRAIN_PREFLIGHT`] naming the pods and budgets (the daemon, waiting for
//! `lastAppliedDrain`, reports it as its `Working` reason), and a Normal event
//! `DrainPreflightBlocked` says the same once per verdict; a change of pods or budgets is looked
//! at again, and once clear the annotation is removed and the drain goes on as above. A wait
//! longer than `report_after` is a blocked drain like any other (`DrainBlocked`, the pool
//! `Degraded`). A node already cordoned (a drain begun before a restart) skips the pre-flight.
//! A budget that changes between pre-flight and evictions meets the 429 retry. An annotation
//! rather than a pool condition: a budget at zero for a while is normal in a rolling update, not
//! a degradation, and the daemon of the node reads its own Node anyway.
//!
//! **Single-node clusters** skip the drain (nowhere to move the pods): cordon and eviction are
//! skipped and `lastAppliedDrain` is set at once. A cluster is single-node when the Node carries
//! `machineconfiguration.openshift.io/controlPlaneTopology=SingleReplica` (what the daemon reads,
//! set by OpenShift or by hand) or, on plain Kubernetes, when the controller's list of Nodes holds
//! exactly one Node. An uncordon is always performed (it disrupts nothing).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ControllerError;
use crate::cluster::drain::{DRAIN_PREFLIGHT, Preflight, evict_node_pods, log_staged};
use crate::cluster::node::{CONTROL_PLANE_TOPOLOGY, DESIRED_DRAIN, LAST_APPLIED_DRAIN};
use crate::cluster::retry::{PacedWatch, with_retries};
use crate::cluster::{Client, ClusterError, Options};

/// The Node annotation naming what blocks a drain past `report_after` (removed once drained).
pub const DRAIN_BLOCKED: &str = "machineconfiguration.openshift.io/drainBlocked";
/// `reportingController` of the controller's events.
pub const REPORTING_CONTROLLER: &str = "machineconfigcontroller";

/// Timing of the drain controller. The defaults are the production values; tests shrink them.
#[derive(Debug, Clone)]
pub struct DrainControllerOptions {
    /// Retries and backoff of single requests and of the Node watch.
    pub api: Options,
    /// Delay between eviction attempts of a pod a PodDisruptionBudget protects (and between
    /// attempts of a drain that failed otherwise).
    pub eviction_retry: Duration,
    /// How long a drain may take before it is reported as blocked (and then again after each
    /// further period).
    pub report_after: Duration,
    /// Check the PodDisruptionBudgets before cordoning, and wait (uncordoned) while they block.
    pub preflight: bool,
}

impl Default for DrainControllerOptions {
    fn default() -> Self {
        DrainControllerOptions {
            api: Options::default(),
            eviction_retry: Duration::from_secs(5),
            report_after: Duration::from_secs(3600),
            preflight: true,
        }
    }
}

/// What the controller needs to know about a Node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DrainView {
    pub uid: Option<String>,
    pub desired_drain: Option<String>,
    pub last_applied_drain: Option<String>,
    /// `controlPlaneTopology: SingleReplica`.
    pub single_replica: bool,
}

impl DrainView {
    /// The view of a Node object.
    pub fn from_node(node: &Node) -> Self {
        let ann = node.metadata.annotations.as_ref();
        let get = |k: &str| ann.and_then(|a| a.get(k)).cloned();
        DrainView {
            uid: node.metadata.uid.clone(),
            desired_drain: get(DESIRED_DRAIN),
            last_applied_drain: get(LAST_APPLIED_DRAIN),
            single_replica: get(CONTROL_PLANE_TOPOLOGY).as_deref() == Some("SingleReplica"),
        }
    }
}

/// What to do for one Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainDecision {
    /// Nothing asked, or already answered.
    Idle,
    /// Cordon, evict, then `lastAppliedDrain=value`.
    Drain { value: String },
    /// Single-node cluster: `lastAppliedDrain=value` without cordon or eviction.
    SkipSingleNode { value: String },
    /// Uncordon, then `lastAppliedDrain=value`.
    Uncordon { value: String },
    /// A `desiredDrain` that is neither `drain-<config>` nor `uncordon-<config>`.
    Invalid { value: String },
}

impl DrainDecision {
    /// The request this decision answers (None when idle).
    pub fn value(&self) -> Option<&str> {
        match self {
            DrainDecision::Idle => None,
            DrainDecision::Drain { value }
            | DrainDecision::SkipSingleNode { value }
            | DrainDecision::Uncordon { value }
            | DrainDecision::Invalid { value } => Some(value),
        }
    }
}

/// The decision for a Node, in a cluster of `nodes` Nodes.
pub fn decide(view: &DrainView, nodes: usize) -> DrainDecision {
    let Some(want) = view.desired_drain.clone() else {
        return DrainDecision::Idle;
    };
    if view.last_applied_drain.as_deref() == Some(want.as_str()) {
        return DrainDecision::Idle;
    }
    let config = |prefix: &str| want.strip_prefix(prefix).filter(|c| !c.is_empty());
    if config("drain-").is_some() {
        if view.single_replica || nodes == 1 {
            DrainDecision::SkipSingleNode { value: want }
        } else {
            DrainDecision::Drain { value: want }
        }
    } else if config("uncordon-").is_some() {
        DrainDecision::Uncordon { value: want }
    } else {
        DrainDecision::Invalid { value: want }
    }
}

/// The message of a blocked drain, as the event and [`DRAIN_BLOCKED`] carry it.
pub fn blocked_message(node: &str, value: &str, after: Duration, pods: &[String]) -> String {
    let after = humantime::format_duration(Duration::from_secs(after.as_secs().max(1)));
    if pods.is_empty() {
        format!("drain of node {node} ({value}) not complete after {after}")
    } else {
        format!(
            "drain of node {node} ({value}) not complete after {after}; pods blocking: {}",
            pods.join(", ")
        )
    }
}

/// The blocked-drain message of a Node, if its drain is blocked (for the pool's status).
pub fn drain_blocked(node: &Node) -> Option<&str> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRAIN_BLOCKED))
        .map(String::as_str)
        .filter(|m| !m.is_empty())
}

struct Context {
    client: Client,
    opts: DrainControllerOptions,
}

/// A request being answered.
struct Active {
    value: String,
    task: Option<JoinHandle<()>>,
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Runs the drain controller until the Node watch ends. `client` comes from
/// [`crate::cluster::connect`] (or [`crate::cluster::client_from_config`]): kube's own retry
/// layer off, so that each 429 of the Eviction API reaches the drain, which paces its retries.
pub async fn run(client: Client, opts: DrainControllerOptions) -> Result<(), ControllerError> {
    let api: Api<Node> = Api::all(client.clone());
    let mut stream = PacedWatch::new(api, watcher::Config::default(), &opts.api, "nodes");
    let ctx = Arc::new(Context { client, opts });
    let mut nodes: BTreeMap<String, DrainView> = BTreeMap::new();
    let mut listing: BTreeMap<String, DrainView> = BTreeMap::new();
    let mut active: HashMap<String, Active> = HashMap::new();
    let mut synced = false;
    tracing::info!("drain controller started");
    while let Some(event) = stream.next().await {
        let before = nodes.len();
        let changed: Vec<String> = match event {
            Ok(watcher::Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(n)) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                listing.insert(name, DrainView::from_node(&n));
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                nodes = std::mem::take(&mut listing);
                synced = true;
                let mut all: Vec<String> = nodes.keys().cloned().collect();
                all.extend(active.keys().filter(|k| !nodes.contains_key(*k)).cloned());
                all
            }
            Ok(watcher::Event::Apply(n)) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                let view = DrainView::from_node(&n);
                if nodes.get(&name) == Some(&view) {
                    continue;
                }
                nodes.insert(name.clone(), view);
                vec![name]
            }
            Ok(watcher::Event::Delete(n)) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                nodes.remove(&name);
                vec![name]
            }
            Err(e) => {
                tracing::warn!(error = %e, "node watch error; retrying with backoff");
                continue;
            }
        };
        if !synced {
            continue;
        }
        // Crossing between one Node and more changes what a drain means for every Node.
        let changed = if (before == 1) != (nodes.len() == 1) {
            nodes.keys().cloned().collect()
        } else {
            changed
        };
        for name in changed {
            let decision = nodes
                .get(&name)
                .map_or(DrainDecision::Idle, |v| decide(v, nodes.len()));
            let Some(value) = decision.value() else {
                active.remove(&name);
                continue;
            };
            if active.get(&name).is_some_and(|a| a.value == value) {
                continue;
            }
            let value = value.to_string();
            let task = match &decision {
                DrainDecision::Invalid { .. } => {
                    tracing::warn!(node = %name, desired_drain = %value, "desiredDrain is neither drain-<config> nor uncordon-<config>; not answered");
                    None
                }
                _ => {
                    let uid = nodes.get(&name).and_then(|v| v.uid.clone());
                    Some(tokio::spawn(answer(
                        ctx.clone(),
                        name.clone(),
                        uid,
                        decision.clone(),
                    )))
                }
            };
            // Replacing the entry aborts the task of an older request.
            active.insert(name, Active { value, task });
        }
    }
    Err(ControllerError::WatchEnded("nodes"))
}

/// Answers one request, retrying until it succeeds (or the task is aborted by a newer one).
async fn answer(ctx: Arc<Context>, node: String, uid: Option<String>, decision: DrainDecision) {
    let started = Instant::now();
    let value = decision.value().unwrap_or_default().to_string();
    tracing::info!(node = %node, request = %value, "answering drain request");
    loop {
        match attempt(&ctx, &node, uid.as_deref(), &decision, started).await {
            Ok(()) => {
                tracing::info!(node = %node, request = %value, elapsed = ?started.elapsed(), "drain request answered");
                return;
            }
            Err(e) => {
                tracing::warn!(node = %node, request = %value, error = %e, "drain request failed; retrying");
                if started.elapsed() >= ctx.opts.report_after {
                    let msg = format!(
                        "{}: {e}",
                        blocked_message(&node, &value, started.elapsed(), &[])
                    );
                    report_blocked(&ctx, &node, uid.as_deref(), &msg).await;
                }
                tokio::time::sleep(ctx.opts.eviction_retry).await;
            }
        }
    }
}

async fn attempt(
    ctx: &Context,
    node: &str,
    uid: Option<&str>,
    decision: &DrainDecision,
    started: Instant,
) -> Result<(), ClusterError> {
    match decision {
        DrainDecision::Drain { value } => {
            if ctx.opts.preflight {
                preflight(ctx, node, uid, value, started).await?;
            }
            set_unschedulable(ctx, node, true).await?;
            loop {
                let result = evict_node_pods(
                    &ctx.client,
                    &ctx.opts.api,
                    node,
                    ctx.opts.eviction_retry,
                    ctx.opts.report_after,
                )
                .await;
                match result {
                    Ok(_) => break,
                    Err(ClusterError::DrainTimeout { pods, .. }) => {
                        let msg = blocked_message(node, value, started.elapsed(), &pods);
                        report_blocked(ctx, node, uid, &msg).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            set_last_applied(ctx, node, value).await
        }
        DrainDecision::SkipSingleNode { value } => {
            tracing::info!(
                node,
                request = %value,
                "single-node cluster: drain skipped"
            );
            set_last_applied(ctx, node, value).await
        }
        DrainDecision::Uncordon { value } => {
            set_unschedulable(ctx, node, false).await?;
            set_last_applied(ctx, node, value).await
        }
        DrainDecision::Idle | DrainDecision::Invalid { .. } => Ok(()),
    }
}

/// Waits until the drain pre-flight is clear, reporting while it is not (see the module
/// docs). Skipped when the node is already cordoned.
async fn preflight(
    ctx: &Context,
    node: &str,
    uid: Option<&str>,
    value: &str,
    started: Instant,
) -> Result<(), ClusterError> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let current =
        with_retries(&ctx.opts.api, &format!("get node {node}"), || api.get(node)).await?;
    if current.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        tracing::info!(node, "already cordoned: drain pre-flight skipped");
        return Ok(());
    }
    // A leftover annotation (a restart while blocked) is removed too once clear.
    let mut reported = current
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DRAIN_PREFLIGHT));
    let mut pf = Preflight::new(&ctx.client, &ctx.opts.api, node);
    let mut next_report = started + ctx.opts.report_after;
    loop {
        let verdict = match tokio::time::timeout_at(next_report, pf.next()).await {
            Ok(v) => v?,
            Err(_) => {
                let message = pf.last().map(|v| v.message()).unwrap_or_default();
                let msg = format!(
                    "{}: {message}",
                    blocked_message(node, value, started.elapsed(), &[])
                );
                report_blocked(ctx, node, uid, &msg).await;
                next_report = Instant::now() + ctx.opts.report_after;
                continue;
            }
        };
        if verdict.can_drain() {
            log_staged(node, &verdict);
            if reported {
                patch_node(
                    ctx,
                    node,
                    json!({"metadata": {"annotations": {DRAIN_PREFLIGHT: null}}}),
                    &format!("remove {DRAIN_PREFLIGHT}"),
                )
                .await?;
            }
            return Ok(());
        }
        let message = format!("node {node} ({value}): {}", verdict.message());
        tracing::info!(node, request = %value, "{message}");
        let clipped = crate::cluster::node::clip_reason(&message).to_string();
        patch_node(
            ctx,
            node,
            json!({"metadata": {"annotations": {DRAIN_PREFLIGHT: clipped}}}),
            &format!("annotate {DRAIN_PREFLIGHT}"),
        )
        .await?;
        reported = true;
        publish(
            ctx,
            node,
            uid,
            EventType::Normal,
            "DrainPreflightBlocked",
            &message,
        )
        .await;
    }
}

async fn patch_node(
    ctx: &Context,
    node: &str,
    body: Value,
    what: &str,
) -> Result<(), ClusterError> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let params = PatchParams::default();
    let patch = Patch::Merge(&body);
    with_retries(&ctx.opts.api, &format!("node {node}: {what}"), || {
        api.patch(node, &params, &patch)
    })
    .await?;
    Ok(())
}

async fn set_unschedulable(ctx: &Context, node: &str, on: bool) -> Result<(), ClusterError> {
    let value = if on { json!(true) } else { Value::Null };
    patch_node(
        ctx,
        node,
        json!({"spec": {"unschedulable": value}}),
        &format!("set spec.unschedulable={on}"),
    )
    .await?;
    tracing::info!(node, unschedulable = on, "node cordon state written");
    Ok(())
}

async fn set_last_applied(ctx: &Context, node: &str, value: &str) -> Result<(), ClusterError> {
    patch_node(
        ctx,
        node,
        json!({"metadata": {"annotations": {LAST_APPLIED_DRAIN: value, DRAIN_BLOCKED: null, DRAIN_PREFLIGHT: null}}}),
        &format!("annotate {LAST_APPLIED_DRAIN}={value}"),
    )
    .await
}

/// Publishes the `DrainBlocked` event and writes [`DRAIN_BLOCKED`]; failures are logged (the
/// drain goes on).
async fn report_blocked(ctx: &Context, node: &str, uid: Option<&str>, message: &str) {
    tracing::warn!(node, message, "drain blocked");
    let clipped = crate::cluster::node::clip_reason(message).to_string();
    if let Err(e) = patch_node(
        ctx,
        node,
        json!({"metadata": {"annotations": {DRAIN_BLOCKED: clipped}}}),
        &format!("annotate {DRAIN_BLOCKED}"),
    )
    .await
    {
        tracing::warn!(node, error = %e, "cannot write the blocked-drain annotation");
    }
    publish(ctx, node, uid, EventType::Warning, "DrainBlocked", message).await;
}

/// Publishes an event regarding the Node; a failure is logged.
async fn publish(
    ctx: &Context,
    node: &str,
    uid: Option<&str>,
    type_: EventType,
    reason: &str,
    message: &str,
) {
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.to_string()),
        uid: uid.map(str::to_string),
        ..Default::default()
    };
    let recorder = Recorder::new(
        ctx.client.clone(),
        Reporter {
            controller: REPORTING_CONTROLLER.into(),
            instance: None,
        },
    );
    let mut note = message.to_string();
    if note.len() > 1024 {
        let mut end = 1024;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Drain".into(),
        secondary: None,
    };
    if let Err(e) = with_retries(&ctx.opts.api, &format!("event {reason}"), || {
        recorder.publish(&event, &reference)
    })
    .await
    {
        tracing::warn!(node, error = %e, reason, "cannot publish an event");
    }
}
