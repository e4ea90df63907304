//! The pool reconciler: three reflectors (Nodes, MachineConfigs, MachineConfigPools) feed one
//! loop that runs [`super::decide::decide`] over everything and sends its writes.
//!
//! - **Watches only**: the loop sleeps on a `Notify` that any watch event wakes; a pass over a
//!   settled cluster decides no write, so an idle cluster costs nothing but the watches. Events
//!   arriving while a pass runs wake it once more when it ends (they are coalesced).
//! - **What is cached**: Nodes without `managedFields`, with only the controller's annotations
//!   (`machineconfiguration.openshift.io/…`), and of their status only the `Ready` condition
//!   (images, addresses, node info and volumes are dropped on the way in); rendered
//!   MachineConfigs without their spec (only their names and owners are needed); pools whole.
//! - **Certificates**: each pool's `status.certExpirys` is the list the certificate controller
//!   ([`super::certificates`]) publishes on a `watch` channel; a new list wakes a pass like a
//!   watch event, and the pass writes it with the rest of the status (this loop is the pool
//!   status's only writer).
//! - **Writes**: a rendered config is created owned by its pool; `spec.configuration` and the
//!   pool's `status` are merge patches (status through its subresource; an empty `certExpirys`
//!   is sent as `null`, which removes the field); a node's
//!   `desiredConfig` is a merge patch of that one annotation carrying the cached
//!   `resourceVersion`: on a 409 the node is read again and, if it still needs the config and is
//!   not degraded, patched again (up to `Options::conflict_attempts`).
//! - **Its own status writes, not yet in the cache**: a pass can start (another watch, a new
//!   certificate list) before the watch has brought back the status this loop just wrote, and
//!   would write it again. This loop is the pools' one status writer, so a cached status that is
//!   one it wrote or replaced lately (the last [`WRITTEN_KEPT`] of those, per pool) is taken as
//!   the last one it wrote. A status it never saw (another leader's, an edit) is taken as it is.
//!   The status, not the `resourceVersion`, tells: versions can only be compared for equality,
//!   so an edit of the pool made just before a status write but seen after it (a label, carrying
//!   the status before the write) cannot be told by its version from one made after, and would
//!   be taken as the newer status and written over again; its status is one this loop replaced.
//! - **Events** (`machineconfigcontroller`, on the pool): `SetDesiredConfig` per node moved,
//!   `RenderFailed` when a render starts failing, `RenderedConfigCreated`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::Notify;

use crate::cluster::crd::MachineConfig;
use crate::cluster::mcp::{CertExpiry, MachineConfigPool, MachineConfigPoolStatus};
use crate::cluster::node::DESIRED_CONFIG;
use crate::cluster::retry::{is_code, with_retries};
use crate::cluster::{ANNOTATION_PREFIX, Client, ClusterError, Options};

use super::ControllerError;
use super::decide::{CachedConfig, RenderCache, World, Writes, decide};
use super::pool::NodeInfo;
use super::render::{ConfigInfo, RENDERED_PREFIX, owned_by};

/// How many statuses per pool (written, or replaced by a write) the loop recognises in a
/// stale cache.
pub const WRITTEN_KEPT: usize = 6;

/// `reportingController` of the controller's events.
pub const REPORTING_CONTROLLER: &str = "machineconfigcontroller";

/// Drops what the controller never reads from a Node (see the module doc).
pub fn strip_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    if let Some(a) = node.metadata.annotations.as_mut() {
        a.retain(|k, _| k.starts_with(ANNOTATION_PREFIX));
    }
    let ready: Option<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready").cloned());
    node.status = Some(NodeStatus {
        conditions: ready.map(|r| vec![r]),
        ..Default::default()
    });
}

/// Drops the spec of a rendered MachineConfig and every config's `managedFields`.
pub fn strip_config(mc: &mut MachineConfig) {
    mc.metadata.managed_fields = None;
    let owned = mc
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.kind == "MachineConfigPool"));
    if owned
        || mc
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .starts_with(RENDERED_PREFIX)
    {
        mc.spec = Default::default();
    }
}

/// The pool controller's state between passes.
pub struct PoolController {
    client: Client,
    opts: Options,
    reporter: Reporter,
    renders: RenderCache,
    /// MachineConfigs converted for [`decide`], by name, with the resourceVersion converted.
    configs: HashMap<String, Arc<CachedConfig>>,
    /// The render error last reported per pool (an event only when it changes).
    render_errors: BTreeMap<String, String>,
    /// Per pool, the last statuses written, each after the status it replaced (None: none),
    /// oldest first (see the module doc).
    written: HashMap<String, std::collections::VecDeque<Option<MachineConfigPoolStatus>>>,
}

impl PoolController {
    pub fn new(client: Client, opts: Options, instance: &str) -> Self {
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.into(),
            instance: Some(instance.to_string()),
        };
        PoolController {
            reporter,
            client,
            opts,
            renders: RenderCache::default(),
            configs: HashMap::new(),
            render_errors: BTreeMap::new(),
            written: HashMap::new(),
        }
    }

    /// One pass: decide from the stores, then write.
    pub async fn pass(
        &mut self,
        pools: &Store<MachineConfigPool>,
        nodes: &Store<Node>,
        configs: &Store<MachineConfig>,
        cert_expirys: Option<&[CertExpiry]>,
    ) -> Result<Writes, ControllerError> {
        let cached = pools.state();
        let pools: Vec<Arc<MachineConfigPool>> = cached
            .iter()
            .cloned()
            .map(|p| {
                let name = super::pool::pool_name(&p).to_string();
                let written = self.written.get(&name);
                match written.and_then(|w| w.back()) {
                    Some(last)
                        if p.status != *last && written.is_some_and(|w| w.contains(&p.status)) =>
                    {
                        let mut fresh = (*p).clone();
                        fresh.status = last.clone();
                        Arc::new(fresh)
                    }
                    _ => p,
                }
            })
            .collect();
        let nodes: Vec<NodeInfo> = nodes
            .state()
            .iter()
            .map(|n| NodeInfo::from_node(n))
            .collect();
        let mut fresh = HashMap::new();
        for mc in configs.state() {
            let name = mc.metadata.name.clone().unwrap_or_default();
            let rv = mc.metadata.resource_version.clone().unwrap_or_default();
            let cached = match self.configs.remove(&name) {
                Some(c) if c.resource_version == rv => c,
                _ => {
                    let object = serde_json::to_value(&*mc).unwrap_or_default();
                    Arc::new(CachedConfig {
                        info: ConfigInfo::from_json(&object),
                        resource_version: rv,
                        object,
                    })
                }
            };
            fresh.insert(name, cached);
        }
        self.configs = fresh;
        let pool_refs: Vec<&MachineConfigPool> = pools.iter().map(|p| p.as_ref()).collect();
        let node_refs: Vec<&NodeInfo> = nodes.iter().collect();
        let config_refs: Vec<&CachedConfig> = self.configs.values().map(|c| c.as_ref()).collect();
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let writes = decide(
            &World {
                pools: &pool_refs,
                nodes: &node_refs,
                configs: &config_refs,
                now: &now,
                cert_expirys,
            },
            &mut self.renders,
        );
        let by_pool: HashMap<&str, &MachineConfigPool> = pool_refs
            .iter()
            .map(|p| (super::pool::pool_name(p), *p))
            .collect();
        let by_node: HashMap<&str, &NodeInfo> =
            nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let cached: HashMap<&str, &MachineConfigPool> = cached
            .iter()
            .map(|p| (super::pool::pool_name(p), p.as_ref()))
            .collect();
        self.write(&writes, &by_pool, &cached, &by_node).await?;
        Ok(writes)
    }

    async fn write(
        &mut self,
        w: &Writes,
        pools: &HashMap<&str, &MachineConfigPool>,
        cached: &HashMap<&str, &MachineConfigPool>,
        nodes: &HashMap<&str, &NodeInfo>,
    ) -> Result<(), ControllerError> {
        let mc_api: Api<MachineConfig> = Api::all(self.client.clone());
        let pool_api: Api<MachineConfigPool> = Api::all(self.client.clone());
        let (post, pp, dp) = (
            PostParams::default(),
            PatchParams::default(),
            DeleteParams::default(),
        );
        for (pool, error) in &w.render_errors {
            if self.render_errors.get(pool) != Some(error) {
                tracing::warn!(
                    pool,
                    error,
                    "render failed; the pool keeps its last good config"
                );
                self.event(
                    pools[pool.as_str()],
                    EventType::Warning,
                    "RenderFailed",
                    error,
                )
                .await;
                self.render_errors.insert(pool.clone(), error.clone());
            }
        }
        self.render_errors
            .retain(|p, _| w.render_errors.iter().any(|(q, _)| q == p));
        for (pool, object) in &w.create {
            let owner = pools[pool.as_str()];
            let mc: MachineConfig = serde_json::from_value(owned_by(object.clone(), owner))
                .map_err(|e| ControllerError::Invalid(format!("rendered config: {e}")))?;
            let name = mc.metadata.name.clone().unwrap_or_default();
            let what = format!("create MachineConfig {name}");
            match with_retries(&self.opts, &what, || mc_api.create(&post, &mc)).await {
                Ok(_) => {
                    tracing::info!(pool, config = name, "rendered config created");
                    self.event(owner, EventType::Normal, "RenderedConfigCreated", &name)
                        .await;
                }
                Err(e) if e.status_code() == Some(409) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (pool, conf) in &w.pool_spec {
            let patch = Patch::Merge(json!({"spec": {"configuration": conf}}));
            let what = format!("set spec.configuration of MachineConfigPool {pool}");
            with_retries(&self.opts, &what, || pool_api.patch(pool, &pp, &patch)).await?;
            tracing::info!(pool, config = conf.name, "pool config set");
        }
        for (pool, node, config) in &w.desired {
            if self.set_desired(nodes[node.as_str()], config).await? {
                tracing::info!(pool, node, config, "desiredConfig set");
                let note = format!("Targeted node {node} to MachineConfig {config}");
                self.event(
                    pools[pool.as_str()],
                    EventType::Normal,
                    "SetDesiredConfig",
                    &note,
                )
                .await;
            }
        }
        for (pool, status) in &w.pool_status {
            let mut body = json!({"status": status});
            if status.cert_expirys.is_empty() {
                body["status"]["certExpirys"] = serde_json::Value::Null;
            }
            let patch = Patch::Merge(body);
            let what = format!("update status of MachineConfigPool {pool}");
            with_retries(&self.opts, &what, || {
                pool_api.patch_status(pool, &pp, &patch)
            })
            .await?;
            // The status the cache held (what this write replaces) and the one written.
            let written = self.written.entry(pool.clone()).or_default();
            let replaced = cached.get(pool.as_str()).and_then(|p| p.status.clone());
            for s in [replaced, Some(status.clone())] {
                if written.len() == WRITTEN_KEPT {
                    written.pop_front();
                }
                written.push_back(s);
            }
        }
        for name in &w.delete {
            let what = format!("delete MachineConfig {name}");
            match with_retries(&self.opts, &what, || mc_api.delete(name, &dp)).await {
                Ok(_) => tracing::info!(config = name, "unreferenced rendered config deleted"),
                Err(e) if e.status_code() == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Sets `desiredConfig` of `node` to `config` (see the module doc). False when the node,
    /// read again after a conflict, no longer needs it.
    async fn set_desired(&self, node: &NodeInfo, config: &str) -> Result<bool, ControllerError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let name = node.name.as_str();
        let what = format!("set {DESIRED_CONFIG} of node {name}");
        let mut rv = None::<String>;
        let pp = PatchParams::default();
        for _ in 0..self.opts.conflict_attempts.max(1) {
            let mut patch = json!({"metadata": {"annotations": {DESIRED_CONFIG: config}}});
            if let Some(rv) = &rv {
                patch["metadata"]["resourceVersion"] = json!(rv);
            }
            let patch = Patch::Merge(patch);
            match with_retries(&self.opts, &what, || api.patch(name, &pp, &patch)).await {
                Ok(_) => return Ok(true),
                Err(ClusterError::Api { source, .. }) if is_code(&source, 409) => {
                    let fresh = with_retries(&self.opts, &what, || api.get(name)).await?;
                    let info = NodeInfo::from_node(&fresh);
                    if info.desired.as_deref() == Some(config) || info.is_degraded() {
                        return Ok(false);
                    }
                    rv = fresh.metadata.resource_version;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClusterError::Conflict {
            what,
            attempts: self.opts.conflict_attempts,
        }
        .into())
    }

    async fn event(&self, pool: &MachineConfigPool, type_: EventType, reason: &str, note: &str) {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("machineconfiguration.openshift.io/v1".into()),
            kind: Some("MachineConfigPool".into()),
            name: pool.metadata.name.clone(),
            uid: pool.metadata.uid.clone(),
            ..Default::default()
        };
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        // A fresh recorder per event: kube's recorder folds events of one reason into a series
        // that keeps the first note, and each of these notes says something new.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        // An event is best effort: its failure never stops the rollout.
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(reason, error = %e, "event not published");
        }
    }
}

/// The list of certificates every pool reports, as the certificate controller publishes it
/// (None until it has one).
pub type CertExpirys = tokio::sync::watch::Receiver<Option<Vec<CertExpiry>>>;

/// Runs the pool controller until a watch ends for good or a write fails permanently.
pub async fn run(
    client: Client,
    opts: Options,
    instance: &str,
    mut certs: CertExpirys,
) -> Result<(), ControllerError> {
    let notify = Arc::new(Notify::new());
    let n = notify.clone();
    let mut cert_changes = certs.clone();
    let cert_watch = async move {
        // A closed channel (no certificate controller) wakes nothing more.
        while cert_changes.changed().await.is_ok() {
            n.notify_one();
        }
        std::future::pending::<()>().await
    };
    let (pools, pool_writer) = reflector::store::<MachineConfigPool>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let (configs, config_writer) = reflector::store::<MachineConfig>();
    let cfg = watcher::Config::default().any_semantic();
    let n = notify.clone();
    let pool_watch = watcher(Api::<MachineConfigPool>::all(client.clone()), cfg.clone())
        .default_backoff()
        .modify(|p| p.metadata.managed_fields = None)
        .reflect(pool_writer)
        .for_each(move |_| {
            n.notify_one();
            std::future::ready(())
        });
    let n = notify.clone();
    let node_watch = watcher(Api::<Node>::all(client.clone()), cfg.clone())
        .default_backoff()
        .modify(strip_node)
        .reflect(node_writer)
        .for_each(move |_| {
            n.notify_one();
            std::future::ready(())
        });
    let n = notify.clone();
    let config_watch = watcher(Api::<MachineConfig>::all(client.clone()), cfg)
        .default_backoff()
        .modify(strip_config)
        .reflect(config_writer)
        .for_each(move |_| {
            n.notify_one();
            std::future::ready(())
        });
    let mut controller = PoolController::new(client, opts, instance);
    let passes = async {
        for store in [
            pools.wait_until_ready().await,
            nodes.wait_until_ready().await,
            configs.wait_until_ready().await,
        ] {
            store.map_err(|e| ControllerError::Invalid(format!("cache: {e}")))?;
        }
        tracing::info!("caches synced; reconciling pools");
        loop {
            notify.notified().await;
            let cert_expirys = certs.borrow_and_update().clone();
            if let Err(e) = controller
                .pass(&pools, &nodes, &configs, cert_expirys.as_deref())
                .await
            {
                // A failed write is tried again on the next pass; a pass is due now.
                tracing::warn!(error = %e, "pool reconcile failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                notify.notify_one();
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), ControllerError>(())
    };
    tokio::select! {
        r = passes => r,
        _ = pool_watch => Err(ControllerError::WatchEnded("machineconfigpools")),
        _ = node_watch => Err(ControllerError::WatchEnded("nodes")),
        _ = config_watch => Err(ControllerError::WatchEnded("machineconfigs")),
        _ = cert_watch => Err(ControllerError::WatchEnded("certificates")),
    }
}
