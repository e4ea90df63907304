//! The server's view of the cluster: two reflectors (watch-fed caches), one of the
//! `MachineConfigPool`s and one of the `MachineConfig`s (`machineconfiguration.openshift.io/v1`,
//! both cluster-scoped). A request never reaches the API server: it is answered from these
//! caches, and a pool whose rendered config changes is served the new one as soon as the watch
//! delivers it.
//!
//! Pools are read as [`DynamicObject`]s (only `spec.configuration.name`,
//! `status.configuration.name` and `status.updatedMachineCount` are looked at), so the server
//! does not depend on the controller's types.
//!
//! **Which rendered config a joining machine gets** ([`pool_config`]), upstream's rule: once at
//! least one node of the pool runs the pool's target (`status.updatedMachineCount > 0`), the
//! target `spec.configuration.name` (a new node would otherwise be provisioned with the old
//! config only to be updated at once, and a broken old config could never be left); before
//! that, the config the pool's nodes run, `status.configuration.name`. A pool without status
//! (new, or no controller has reported yet) gets `spec.configuration.name`. Neither set: the
//! pool has no rendered config yet (503).
//!
//! A rendered MachineConfig is parsed (the model's parser, every check) and turned into the
//! served Ignition once per resourceVersion; each requested spec version of it is produced once
//! and kept, so a burst of joining machines costs one conversion.

use super::ignition::{self, Accept, Negotiated};
use crate::cluster::machineconfig::machine_config_resource;
use crate::cluster::{Client, ClusterError};
use crate::model;
use futures::StreamExt as _;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The `machineconfigpools` resource.
pub fn pool_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "machineconfiguration.openshift.io",
            "v1",
            "MachineConfigPool",
        ),
        "machineconfigpools",
    )
}

/// The rendered config a machine joining `pool` (a MachineConfigPool as JSON) gets; see the
/// module docs.
pub fn pool_config(pool: &Value) -> Option<String> {
    let name = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let spec = name(&pool["spec"]["configuration"]["name"]);
    let status = name(&pool["status"]["configuration"]["name"]);
    let updated = pool["status"]["updatedMachineCount"].as_u64().unwrap_or(0);
    if updated > 0 && spec.is_some() {
        return spec;
    }
    status.or(spec)
}

/// What a request for a pool finds.
#[derive(Debug)]
pub enum Lookup {
    /// The caches have not been filled yet (503).
    Starting,
    /// No such pool (404).
    NoPool,
    /// The pool names no rendered config yet (503).
    NoConfig,
    /// The pool names a rendered config the cache does not hold (yet) (503).
    Missing(String),
    /// The rendered config cannot be parsed (500).
    Invalid { config: String, error: String },
    /// The config, ready to be served.
    Ready(Arc<Served>),
}

/// One rendered config as served: its name, the Ignition config and its conversions.
#[derive(Debug)]
pub struct Served {
    pub name: String,
    resource_version: String,
    config: Value,
    /// Serialised answers by requested candidates (`describe` of the versions tried).
    answers: Mutex<HashMap<Vec<&'static str>, Answer>>,
}

/// A finished answer for one set of candidate versions.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The body and its version.
    Config {
        version: &'static str,
        body: hyper::body::Bytes,
    },
    /// 406 with this body.
    NotAcceptable(String),
}

impl Served {
    /// The answer for `accept`: a config is negotiated and serialised once per set of candidate
    /// versions; a refusal is worded each time (it names what this client asked for).
    pub fn answer(&self, accept: &Accept) -> Answer {
        let key = accept.candidates();
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = answers.get(&key) {
            return a.clone();
        }
        match ignition::negotiate(&self.config, accept) {
            Negotiated::Serve { version, config } => {
                let a = Answer::Config {
                    version,
                    body: serde_json::to_vec(&config).expect("JSON").into(),
                };
                answers.insert(key, a.clone());
                a
            }
            Negotiated::NotAcceptable(body) => Answer::NotAcceptable(body),
        }
    }
}

/// The caches. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    pools: Store<DynamicObject>,
    configs: Store<DynamicObject>,
    pool_ar: ApiResource,
    config_ar: ApiResource,
    /// Parsed rendered configs by name (with the resourceVersion they were parsed from).
    built: Arc<Mutex<HashMap<String, Arc<Served>>>>,
}

impl Cache {
    /// Starts both reflectors (tasks on the current runtime). Watch failures are retried with
    /// kube's default backoff and logged.
    pub fn start(client: Client) -> Cache {
        let pool_ar = pool_resource();
        let config_ar = machine_config_resource();
        let pools = reflect(client.clone(), pool_ar.clone(), "machineconfigpools");
        let configs = reflect(client, config_ar.clone(), "machineconfigs");
        Cache {
            pools,
            configs,
            pool_ar,
            config_ar,
            built: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Waits until both caches hold a first complete list.
    pub async fn wait_ready(&self) -> Result<(), ClusterError> {
        let stopped = |what: &str| ClusterError::WatchStopped(what.to_string());
        self.pools
            .wait_until_ready()
            .await
            .map_err(|_| stopped("machineconfigpools"))?;
        self.configs
            .wait_until_ready()
            .await
            .map_err(|_| stopped("machineconfigs"))
    }

    /// Both caches hold a first complete list.
    pub fn is_ready(&self) -> bool {
        use futures::FutureExt as _;
        self.pools.wait_until_ready().now_or_never().is_some()
            && self.configs.wait_until_ready().now_or_never().is_some()
    }

    /// What a machine joining `pool` gets.
    pub fn lookup(&self, pool: &str) -> Lookup {
        if !self.is_ready() {
            return Lookup::Starting;
        }
        let Some(p) = self
            .pools
            .get(&ObjectRef::new_with(pool, self.pool_ar.clone()))
        else {
            return Lookup::NoPool;
        };
        let Some(name) = pool_config(&p.data) else {
            return Lookup::NoConfig;
        };
        let Some(mc) = self
            .configs
            .get(&ObjectRef::new_with(&name, self.config_ar.clone()))
        else {
            return Lookup::Missing(name);
        };
        let rv = mc.metadata.resource_version.clone().unwrap_or_default();
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = built.get(&name)
            && s.resource_version == rv
        {
            return Lookup::Ready(s.clone());
        }
        match build(&mc, &name) {
            Ok(config) => {
                let s = Arc::new(Served {
                    name: name.clone(),
                    resource_version: rv,
                    config,
                    answers: Mutex::new(HashMap::new()),
                });
                // Only configs some pool names are kept: older ones are dropped here.
                let named: std::collections::HashSet<String> = self
                    .pools
                    .state()
                    .iter()
                    .filter_map(|p| pool_config(&p.data))
                    .collect();
                built.retain(|k, _| named.contains(k));
                built.insert(name, s.clone());
                Lookup::Ready(s)
            }
            Err(error) => Lookup::Invalid {
                config: name,
                error,
            },
        }
    }
}

/// The served Ignition for a MachineConfig object, through the model's parser.
fn build(mc: &DynamicObject, name: &str) -> Result<Value, String> {
    let bytes = serde_json::to_vec(mc).map_err(|e| e.to_string())?;
    let origin = format!("MachineConfig {name}");
    let mut loaded = model::parse_machine_configs(&bytes, &origin).map_err(|e| e.to_string())?;
    if loaded.configs.len() != 1 {
        return Err(format!(
            "{origin}: expected one MachineConfig, found {}",
            loaded.configs.len()
        ));
    }
    let config = loaded.configs.remove(0);
    tracing::info!(
        config = name,
        files = config.spec.config.files.len(),
        "rendered config cached"
    );
    Ok(ignition::served_config(&config))
}

/// A reflector of every object of `ar`, driven by a task.
fn reflect(client: Client, ar: ApiResource, what: &'static str) -> Store<DynamicObject> {
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let writer = reflector::store::Writer::new(ar);
    let reader = writer.as_reader();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(obj) => {
                    tracing::debug!(
                        resource = what,
                        name = obj.metadata.name.as_deref().unwrap_or("-"),
                        "cache updated"
                    )
                }
                Err(e) => tracing::warn!(resource = what, error = %e, "watch failed; retrying"),
            }
        }
    });
    reader
}

#[cfg(test)]
mod tests {
    use super::pool_config;
    use serde_json::json;

    #[test]
    fn the_config_a_joining_machine_gets() {
        let cases = [
            (json!({}), None),
            (
                json!({"spec": {"configuration": {"name": "rendered-a"}}}),
                Some("rendered-a"),
            ),
            (
                json!({"spec": {"configuration": {"name": "rendered-b"}},
                       "status": {"configuration": {"name": "rendered-a"}, "updatedMachineCount": 0}}),
                Some("rendered-a"),
            ),
            (
                json!({"spec": {"configuration": {"name": "rendered-b"}},
                       "status": {"configuration": {"name": "rendered-a"}, "updatedMachineCount": 1}}),
                Some("rendered-b"),
            ),
            (
                json!({"spec": {"configuration": {"name": ""}},
                       "status": {"configuration": {"name": "rendered-a"}, "updatedMachineCount": 3}}),
                Some("rendered-a"),
            ),
        ];
        for (pool, want) in cases {
            assert_eq!(pool_config(&pool).as_deref(), want, "{pool}");
        }
    }
}
