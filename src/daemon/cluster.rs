//! Cluster mode of `start` (SPEC §8–§10): the same daemon and update flow as standalone mode,
//! with the API server as the source of the desired config and the place the state goes.
//!
//! [`ClusterCtx`] is what [`super::run`] holds in cluster mode (its [`super::run::Mode`]):
//!
//! - **Source.** The node's `desiredConfig` annotation, seen through one watch of the daemon's
//!   own Node (its receiver sits in the daemon's `select!` where standalone mode has the inotify
//!   topic of the desired-config file); the MachineConfig of that name is fetched by GET and
//!   parsed like a file; the policy comes from the `MachineConfiguration/cluster` watch.
//! - **Reporting.** [`ClusterCtx::report`] brings the cluster in line with the daemon's status:
//!   the `state`/`reason`/`currentConfig` annotations (one patch, only when they differ from
//!   what was last written), the MachineConfigNode conditions (mirrored from the status
//!   conditions; unchanged ones send nothing), `status.configVersion` once the desired config
//!   is validated, and the queued events. The daemon calls it once per handled event, so a
//!   burst of state changes costs one round of writes, and an idle daemon writes nothing.
//! - **CA bundles.** The `ControllerConfig/machine-config-controller` watch
//!   ([`super::controllerconfig`]), whose receiver sits in the same `select!`: its CA files are
//!   written between updates ([`super::certs`]).
//! - **Update hooks.** [`ClusterNode`] is the update flow's [`Node`]: drain through
//!   [`crate::cluster::drain`] (controller hand-off or self-drain; single-node clusters skip;
//!   what the drain pre-flight waits for goes back to the daemon on a channel, to be reported),
//!   and before a reboot the local reboot record, `post-config-action: Rebooting` and a
//!   `Reboot` event.
//!
//! Failures to talk to the API server never stop the daemon: requests retry with backoff
//! inside [`crate::cluster`]; what still fails (the desired config cannot be fetched, a report
//! cannot be written) is retried later on a timer with exponential backoff (1 s to 5 min),
//! armed only while something is pending.
//!
//! A permanent refusal ([`ClusterError::is_permanent`]: 400, 403, 404 of an update, 422) is
//! not retried on the timer: it is logged once (the fetch of the desired config also makes the
//! node `Degraded` with the error as its reason) and the same write is tried again only when
//! its inputs change (another desired config, state, or set of conditions). The
//! MachineConfigNode is created only once the desired config has a name upstream's schema
//! accepts (a DNS-1123 subdomain): a node without a `desiredConfig`, or with an invalid one,
//! gets none until it has a valid one.

use super::run::LocalNode;
use super::source::Wanted;
use super::state::NodeState;
use super::status::{Condition, ConditionStatus};
use super::update::{Node, UpdateError};
use crate::cluster::drain::{self, DrainOptions, DrainOutcome, DrainProgress};
use crate::cluster::events::{EventReason, NodeEvents};
use crate::cluster::machineconfig::fetch_machine_config_bytes;
use crate::cluster::mcn::{self, MachineConfigNodes};
use crate::cluster::node::{self as knode, KubeNode, NodeView, Observed};
use crate::cluster::policy::{ClusterPolicy, PolicyWatch};
use crate::cluster::{self, Client, ClusterError};
use crate::host::exec::Outcome;
use crate::host::systemd::{Operation, SystemdError};
use crate::model::{self, policy};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Shortest and longest delay before retrying what failed (fetch, report).
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// How to reach the cluster and drain.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// A kubeconfig file; None: in-cluster credentials (then `KUBECONFIG`, `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    pub drain: DrainOptions,
    /// Request retries and waits of the API client.
    pub api: cluster::Options,
}

/// The annotations as last written (or as found at start).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Annotations {
    state: String,
    reason: String,
    current: Option<String>,
}

/// What [`ClusterCtx::report`] mirrors: the parts of the status the cluster sees.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    pub state: NodeState,
    pub reason: String,
    pub current_config: String,
    pub conditions: Vec<Condition>,
}

/// The daemon's connection to its cluster.
pub(super) struct ClusterCtx {
    client: Client,
    node: Arc<KubeNode>,
    events: Arc<NodeEvents>,
    policy: PolicyWatch,
    mcn: MachineConfigNodes,
    /// The MachineConfigNode exists (ensured); None: not yet; Some(false): not served.
    mcn_ready: Option<bool>,
    /// (pool, desired) the MachineConfigNode could not be created or updated with, for good.
    mcn_refused: Option<(String, String)>,
    /// The MachineConfigNode status write refused for good (what it would have written).
    status_refused: Option<String>,
    /// The node annotations refused for good.
    node_refused: Option<Annotations>,
    /// The last fetch of the desired config was refused for good: no retry on the timer.
    fetch_refused: bool,
    opts: ClusterOptions,
    pool: String,
    /// The node watch: the daemon sleeps on `changed()`.
    pub(super) rx: watch::Receiver<Observed>,
    /// The ControllerConfig watch (the CA bundles): the daemon sleeps on it too.
    pub(super) cc: super::controllerconfig::ControllerConfigWatch,
    written: Annotations,
    outbox: Vec<(EventReason, String)>,
    /// The desiredConfig the last sync was for (a node change with the same one is no news).
    pub(super) synced: Option<String>,
    /// Getting the desired config failed: sync again when the retry timer fires.
    pub(super) sync_pending: bool,
    /// When to retry what failed; None: nothing pending.
    pub(super) retry_at: Option<Instant>,
    backoff: Duration,
}

impl ClusterCtx {
    /// Connects, starts the node and policy watches and waits until the node has been seen.
    pub(super) async fn connect(
        opts: ClusterOptions,
        node_name: &str,
        pool: &str,
    ) -> Result<Self, ClusterError> {
        let client = cluster::connect(opts.kubeconfig.as_deref()).await?;
        let node = Arc::new(KubeNode::new(client.clone(), node_name, opts.api.clone()));
        let policy = PolicyWatch::new(client.clone(), opts.api.clone());
        let cc = super::controllerconfig::watch(client.clone(), opts.api.clone());
        let mut rx = node.subscribe();
        let mut warned = false;
        let view = loop {
            let seen = rx
                .wait_for(|o| !matches!(o, Observed::Pending))
                .await
                .map_err(|_| ClusterError::WatchStopped(format!("node {node_name}")))?
                .clone();
            match seen {
                Observed::Present(v) => break *v,
                _ if !warned => {
                    tracing::warn!(
                        node = node_name,
                        "node not found; waiting for it to be registered"
                    );
                    warned = true;
                }
                _ => {}
            }
            rx.changed()
                .await
                .map_err(|_| ClusterError::WatchStopped(format!("node {node_name}")))?;
        };
        rx.borrow_and_update();
        tracing::info!(
            node = node_name,
            desired = view.desired_config.as_deref().unwrap_or("-"),
            current = view.current_config.as_deref().unwrap_or("-"),
            state = view.state.as_deref().unwrap_or("-"),
            "connected to the cluster"
        );
        let events = Arc::new(NodeEvents::new(
            client.clone(),
            node_name,
            view.uid.as_deref(),
            opts.api.clone(),
        ));
        let mcn = MachineConfigNodes::new(client.clone(), node_name, opts.api.clone());
        Ok(ClusterCtx {
            client,
            node,
            events,
            policy,
            mcn,
            mcn_ready: None,
            mcn_refused: None,
            status_refused: None,
            node_refused: None,
            fetch_refused: false,
            pool: pool.to_string(),
            rx,
            cc,
            written: Annotations {
                state: view.state.clone().unwrap_or_default(),
                reason: view.reason.clone().unwrap_or_default(),
                current: view.current_config.clone(),
            },
            outbox: Vec::new(),
            synced: None,
            sync_pending: false,
            retry_at: None,
            backoff: RETRY_MIN,
            opts,
        })
    }

    /// The node as last seen.
    pub(super) fn view(&self) -> Option<NodeView> {
        self.node.view()
    }

    /// First boot: the node runs `config` (provisioned with it): `currentConfig` is set (and
    /// `desiredConfig`, when the node has none).
    pub(super) async fn set_initial_config(&mut self, config: &str) -> Result<(), ClusterError> {
        let desired = self.desired().is_none();
        self.node.set_initial_config(config, desired).await?;
        self.written.current = Some(config.to_string());
        Ok(())
    }

    /// Try mode's `node` check: a GET of the Node answers within `timeout` (the API server is
    /// reachable) and its `Ready` condition is `True` (the kubelet reports healthy).
    pub(super) fn node_ready(
        &self,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let name = self.view().map(|v| v.name).unwrap_or_default();
        let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(self.client.clone());
        async move {
            let node = tokio::time::timeout(timeout, api.get(&name))
                .await
                .map_err(|_| {
                    format!(
                        "the API server did not answer within {}",
                        humantime::format_duration(timeout)
                    )
                })?
                .map_err(|e| format!("the API server: GET node {name}: {e}"))?;
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"));
            match ready {
                Some(c) if c.status == "True" => Ok(()),
                Some(c) => Err(format!(
                    "node {name} not Ready ({}): {}",
                    c.reason.unwrap_or_default(),
                    c.message.unwrap_or_default()
                )),
                None => Err(format!("node {name} has no Ready condition")),
            }
        }
    }

    /// The node's `desiredConfig` annotation.
    pub(super) fn desired(&self) -> Option<String> {
        match &*self.rx.borrow() {
            Observed::Present(v) => v.desired_config.clone(),
            _ => None,
        }
    }

    /// Fetches and parses MachineConfig `name`, and reads the policy. The error is the reason
    /// the node reports.
    /// A permanent refusal (400, 403, 422) is not retried on the timer (see
    /// [`ClusterCtx::retry_later`]); a new desiredConfig fetches again.
    pub(super) async fn fetch(&mut self, name: &str) -> Result<Wanted, String> {
        self.ensure_mcn(name).await;
        self.fetch_refused = false;
        let bytes = fetch_machine_config_bytes(&self.client, name, &self.opts.api)
            .await
            .map_err(|e| {
                if e.is_permanent(false) {
                    tracing::error!(config = name, error = %e, "the API server refused the fetch of the desired config; not retrying until desiredConfig changes");
                    self.fetch_refused = true;
                }
                e.to_string()
            })?;
        let origin = format!("MachineConfig {name}");
        let mut loaded =
            model::parse_machine_configs(&bytes, &origin).map_err(|e| e.to_string())?;
        for w in &loaded.warnings {
            tracing::warn!(config = name, "{w}");
        }
        if loaded.configs.len() != 1 {
            return Err(format!(
                "{origin}: expected one MachineConfig, found {}",
                loaded.configs.len()
            ));
        }
        let config = loaded.configs.remove(0);
        let policy = self.policy().await?;
        Ok(Wanted { config, policy })
    }

    /// The effective node disruption policy of the cluster.
    pub(super) async fn policy(&self) -> Result<policy::Policy, String> {
        match self.policy.current().await {
            Ok(ClusterPolicy::Effective { policy, stale }) => {
                if stale {
                    tracing::warn!(
                        "using a node disruption policy the operator has not updated yet"
                    );
                }
                Ok(policy)
            }
            Ok(ClusterPolicy::Spec(spec)) => spec_policy(spec),
            Ok(ClusterPolicy::Defaults) => Ok(policy::defaults()),
            Err(e) => Err(format!("node disruption policy: {e}")),
        }
    }

    /// Makes sure the MachineConfigNode exists with `desired` in its spec. A cluster without
    /// the resource (404) gets no MachineConfigNode reporting; a permanent refusal (an invalid
    /// name, 400, 403, 422) is logged once and tried again only with another pool or desired
    /// config; other failures retry later. Returns false when it should be retried later.
    async fn ensure_mcn(&mut self, desired: &str) -> bool {
        if self.mcn_ready == Some(false) {
            return true;
        }
        let inputs = (self.pool.clone(), desired.to_string());
        if self.mcn_refused.as_ref() == Some(&inputs) {
            return true;
        }
        match self.mcn.ensure(&self.pool, desired).await {
            Ok(()) => {
                self.mcn_ready = Some(true);
                self.mcn_refused = None;
                true
            }
            Err(e @ ClusterError::Invalid { .. }) => {
                tracing::info!(error = %e, "no MachineConfigNode until the node has a valid desired config");
                self.mcn_refused = Some(inputs);
                true
            }
            Err(e) if e.is_permanent(true) => {
                tracing::error!(error = %e, pool = %self.pool, desired, "MachineConfigNode refused; not retrying until the pool or the desired config changes");
                self.mcn_refused = Some(inputs);
                true
            }
            Err(e) if e.status_code() == Some(404) => {
                tracing::warn!(error = %e, "machineconfignodes not served: no MachineConfigNode reporting");
                self.mcn_ready = Some(false);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the MachineConfigNode; retrying later");
                false
            }
        }
    }

    /// Queues an event for the next [`ClusterCtx::report`].
    pub(super) fn queue(&mut self, reason: EventReason, note: impl Into<String>) {
        self.outbox.push((reason, note.into()));
    }

    /// Writes what changed since the last report: annotations, MachineConfigNode, events.
    /// Something that could not be written is retried on the retry timer.
    pub(super) async fn report(&mut self, s: &Snapshot) {
        let mut ok = true;
        let done = s.state == NodeState::Done;
        let current = (done && !s.current_config.is_empty()).then(|| s.current_config.clone());
        let reason = knode::clip_reason(&s.reason).to_string();
        let want = Annotations {
            state: s.state.as_str().to_string(),
            reason: if done { String::new() } else { reason.clone() },
            current: current.clone().or_else(|| self.written.current.clone()),
        };
        if want != self.written && self.node_refused.as_ref() != Some(&want) {
            match self.node.report(s.state, &reason, current.as_deref()).await {
                Ok(()) => {
                    self.written = want;
                    self.node_refused = None;
                }
                Err(e) if e.is_permanent(true) => {
                    tracing::error!(error = %e, state = %s.state, "the API server refused the node state; not retrying until it changes");
                    self.node_refused = Some(want);
                }
                Err(e) => {
                    tracing::warn!(error = %e, state = %s.state, "cannot report the node state");
                    ok = false;
                }
            }
        }
        if self.mcn_ready != Some(true) {
            let desired = self.desired().unwrap_or_else(|| s.current_config.clone());
            if !self.ensure_mcn(&desired).await {
                ok = false;
            }
        }
        if self.mcn_ready == Some(true) && !self.mirror_conditions(s, done).await {
            ok = false;
        }
        for (reason, note) in std::mem::take(&mut self.outbox) {
            if let Err(e) = self.events.publish(reason, &note).await {
                // Events are informative: a lost one is logged, not retried.
                tracing::warn!(error = %e, reason = reason.as_str(), "cannot publish an event");
            }
        }
        if ok {
            if !self.sync_pending {
                self.retry_at = None;
                self.backoff = RETRY_MIN;
            }
        } else {
            self.retry_later();
        }
    }

    /// The status conditions as MachineConfigNode conditions, and `configVersion` once the node
    /// is `Done` on its desired config (the update is validated).
    /// False when it should be retried later; a permanent refusal is logged once and tried
    /// again only when what would be written changes.
    async fn mirror_conditions(&mut self, s: &Snapshot, done: bool) -> bool {
        let conditions: Vec<mcn::Condition> = s
            .conditions
            .iter()
            .filter_map(|c| {
                Some(mcn::Condition::new(
                    mcn::ConditionType::parse(&c.type_)?,
                    match c.status {
                        ConditionStatus::True => mcn::ConditionStatus::True,
                        ConditionStatus::False => mcn::ConditionStatus::False,
                        ConditionStatus::Unknown => mcn::ConditionStatus::Unknown,
                    },
                    &c.reason,
                    &c.message,
                ))
            })
            .collect();
        let validated = done
            && !s.current_config.is_empty()
            && self.desired().as_deref() == Some(&s.current_config);
        let key = format!("{conditions:?} {validated} {}", s.current_config);
        if self.status_refused.as_ref() == Some(&key) {
            return true;
        }
        let mut result = self.mcn.set_conditions(&conditions).await;
        if result.is_ok() && validated {
            result = self.mcn.set_validated_desired(&s.current_config).await;
            if result.is_ok() {
                result = self.mcn.set_current(&s.current_config).await;
            }
        }
        match result {
            Ok(()) => {
                self.status_refused = None;
                true
            }
            Err(e) if e.is_permanent(true) => {
                tracing::error!(error = %e, "the API server refused the MachineConfigNode status; not retrying until it changes");
                self.status_refused = Some(key);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the MachineConfigNode status");
                false
            }
        }
    }

    /// Arms the retry timer with the next backoff delay; not after a fetch of the desired
    /// config that was refused for good (then only a new desiredConfig fetches again).
    pub(super) fn retry_later(&mut self) {
        if std::mem::take(&mut self.fetch_refused) {
            self.sync_pending = false;
            return;
        }
        let at = Instant::now() + self.backoff;
        self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
        tracing::info!(after = ?self.backoff, "retrying later");
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
    }

    /// The update flow's [`Node`] for this cluster; what the drain waits for goes to `progress`
    /// (the daemon reports it while the update runs).
    pub(super) fn update_node(
        &self,
        local: LocalNode,
        progress: tokio::sync::mpsc::UnboundedSender<DrainProgress>,
    ) -> ClusterNode {
        ClusterNode {
            node: self.node.clone(),
            events: self.events.clone(),
            drain: self.opts.drain.clone(),
            local,
            progress,
        }
    }

    /// Makes the node schedulable again after `config` (a failure is an event and the error).
    pub(super) async fn uncordon(&mut self, config: &str) -> Result<(), String> {
        match drain::uncordon(&self.node, config, &self.opts.drain).await {
            Ok(()) => {
                tracing::info!(config, "uncordoned");
                Ok(())
            }
            Err(e) => {
                let reason = format!("uncordon after {config}: {e}");
                self.queue(EventReason::FailedToUncordon, reason.clone());
                Err(reason)
            }
        }
    }

    /// After the reboot into `config`: clears `post-config-action`.
    pub(super) async fn rebooted(&mut self) {
        if self.view().is_some_and(|v| v.post_config_action.is_some())
            && let Err(e) = self.node.set_post_config_action(None).await
        {
            tracing::warn!(error = %e, "cannot clear post-config-action");
        }
    }
}

/// The update flow's hooks in cluster mode.
pub(super) struct ClusterNode {
    node: Arc<KubeNode>,
    events: Arc<NodeEvents>,
    drain: DrainOptions,
    local: LocalNode,
    progress: tokio::sync::mpsc::UnboundedSender<DrainProgress>,
}

#[async_trait::async_trait]
impl Node for ClusterNode {
    async fn drain(&self, config: &str) -> Result<Outcome, String> {
        let progress = |p: DrainProgress| {
            // The daemon is gone only when it stops, and then nobody reads the report.
            let _ = self.progress.send(p);
        };
        match drain::drain(&self.node, config, &self.drain, &progress).await {
            Ok(DrainOutcome::SkippedSingleNode) => {
                Ok(Outcome::Skipped("single-node cluster".into()))
            }
            Ok(DrainOutcome::AlreadyDone | DrainOutcome::DrainedByController) => Ok(Outcome::Done),
            Ok(DrainOutcome::Drained { evicted, warnings }) => {
                for w in warnings {
                    tracing::warn!(config, "{w}");
                }
                tracing::info!(config, evicted = evicted.len(), "drained");
                Ok(Outcome::Done)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    async fn before_reboot(
        &self,
        config: &str,
        kind: &crate::plan::ladder::RebootDecision,
    ) -> Result<(), String> {
        self.local.before_reboot(config, kind).await?;
        if let Err(e) = self.node.set_post_config_action(Some("Rebooting")).await {
            tracing::warn!(error = %e, "cannot set post-config-action");
        }
        let note = format!("Node will reboot into config {config}");
        if let Err(e) = self.events.publish(EventReason::Reboot, &note).await {
            tracing::warn!(error = %e, "cannot publish the Reboot event");
        }
        Ok(())
    }
}

/// The event a failed update is reported with, beyond the Degraded state.
pub(super) fn failure_event(e: &UpdateError) -> Option<EventReason> {
    if matches!(e, UpdateError::Drain(_)) {
        return Some(EventReason::FailedToDrain);
    }
    action_failure_event(e.systemd()?)
}

/// The event a failed reload or restart is reported with (an update's, a drift heal's, the CA
/// files'); None for other operations and for a systemd that could not be reached at all.
pub(super) fn action_failure_event(e: &SystemdError) -> Option<EventReason> {
    let op = match e {
        SystemdError::CannotReload { .. } => Operation::Reload,
        SystemdError::JobFailed { op, .. }
        | SystemdError::JobTimeout { op, .. }
        | SystemdError::NoSuchUnit { op, .. }
        | SystemdError::Masked { op, .. }
        | SystemdError::Refused { op, .. }
        | SystemdError::DBus { op, .. } => *op,
        _ => return None,
    };
    match op {
        Operation::Reload => Some(EventReason::FailedServiceReload),
        Operation::Restart => Some(EventReason::FailedServiceRestart),
        _ => None,
    }
}

/// `spec.nodeDisruptionPolicy` of a MachineConfiguration without operator status: validated
/// like a policy file, and merged over the defaults.
fn spec_policy(spec: serde_json::Value) -> Result<policy::Policy, String> {
    let doc = serde_json::json!({
        "apiVersion": policy::parse::API_VERSION,
        "kind": policy::parse::KIND,
        "metadata": {"name": cluster::policy::MACHINE_CONFIGURATION_NAME},
        "spec": {"nodeDisruptionPolicy": spec},
    });
    let bytes = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    policy::parse_machine_configuration(&bytes, "MachineConfiguration/cluster")
        .map(|mc| mc.effective_policy())
        // Every violation names MachineConfiguration/cluster.
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::systemd::JobResult;

    /// The status shows exactly the upstream v1 MachineConfigNode types, each once.
    #[test]
    fn status_conditions_are_the_upstream_v1_types() {
        use super::super::status::{DETAILS, PHASES};
        let shown: Vec<&str> = PHASES.iter().chain(DETAILS.iter()).copied().collect();
        let mut sorted = shown.clone();
        sorted.sort_unstable();
        let mut upstream = vec![
            "UpdatePrepared",
            "UpdateExecuted",
            "UpdatePostActionComplete",
            "UpdateComplete",
            "Updated",
            "Resumed",
            "Drained",
            "AppliedFilesAndOS",
            "Cordoned",
            "Uncordoned",
            "RebootedNode",
            "NodeDegraded",
        ];
        upstream.sort_unstable();
        assert_eq!(sorted, upstream);
        for c in shown {
            assert_eq!(mcn::ConditionType::parse(c).map(|t| t.as_str()), Some(c));
        }
        for old in ["UpdateCompatible", "UpdateFilesAndOS", "ReloadedCRIO"] {
            assert_eq!(mcn::ConditionType::parse(old), None, "{old}");
        }
    }

    #[test]
    fn systemd_failures_map_to_upstream_event_reasons() {
        let e = UpdateError::Action {
            source: SystemdError::CannotReload {
                unit: "a.service".into(),
            },
            old: "old".into(),
        };
        assert_eq!(failure_event(&e), Some(EventReason::FailedServiceReload));
        let e = UpdateError::FirstApply(SystemdError::JobFailed {
            op: Operation::Restart,
            unit: "a.service".into(),
            result: JobResult::Failed,
            hint: Default::default(),
        });
        assert_eq!(failure_event(&e), Some(EventReason::FailedServiceRestart));
        assert_eq!(
            failure_event(&UpdateError::Drain("x".into())),
            Some(EventReason::FailedToDrain)
        );
        assert_eq!(
            failure_event(&UpdateError::Unreconcilable("x".into())),
            None
        );
    }

    #[test]
    fn spec_policy_is_validated_and_merged() {
        let p = spec_policy(serde_json::json!({})).unwrap();
        assert_eq!(p, policy::defaults());
        let err = spec_policy(
            serde_json::json!({"files": [{"path": "relative", "actions": [{"type": "None"}]}]}),
        )
        .unwrap_err();
        assert!(err.contains("MachineConfiguration/cluster"), "{err}");
    }
}
