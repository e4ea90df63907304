//! One full pass of the pool controller as a pure function: from what the caches hold (pools,
//! nodes, MachineConfigs) to the writes to make. The reconciler ([`super::reconcile`]) feeds it
//! and sends the writes; the benchmark times it.
//!
//! Renders are cached by their inputs (the sources' names and resourceVersions), so a pass
//! that follows a node change renders nothing. Writes are only those that change something:
//! a pass over a settled cluster returns none.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::cluster::mcp::{
    CertExpiry, MachineConfigPool, MachineConfigPoolStatus, PoolConfiguration,
};

use super::pool::{NodeInfo, membership, pool_name};
use super::render::{ConfigInfo, Rendered, garbage, render_pool, select};
use super::rollout::{Hold, RolloutSpec, next_step};
use super::status::{StatusInput, pool_status};

/// A MachineConfig as cached: what selection needs, the object for rendering.
#[derive(Debug, Clone)]
pub struct CachedConfig {
    pub info: ConfigInfo,
    pub resource_version: String,
    pub object: Value,
}

/// What one pass sees.
pub struct World<'a> {
    pub pools: &'a [&'a MachineConfigPool],
    pub nodes: &'a [&'a NodeInfo],
    pub configs: &'a [&'a CachedConfig],
    /// RFC 3339, for condition transitions.
    pub now: &'a str,
    /// Every pool's `status.certExpirys`; None keeps each pool's (see [`super::status`]).
    pub cert_expirys: Option<&'a [CertExpiry]>,
}

/// The writes a pass decides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Writes {
    /// Rendered MachineConfigs to create: (pool, object without owner).
    pub create: Vec<(String, Value)>,
    /// `spec.configuration` to set: (pool, configuration).
    pub pool_spec: Vec<(String, PoolConfiguration)>,
    /// `desiredConfig` to set: (pool, node, config), in rollout order per pool.
    pub desired: Vec<(String, String, String)>,
    /// New `status`: (pool, status).
    pub pool_status: Vec<(String, MachineConfigPoolStatus)>,
    /// Rendered MachineConfigs to delete.
    pub delete: Vec<String>,
    /// Pools whose render failed, with the error (for an event when it is new).
    pub render_errors: Vec<(String, String)>,
    /// Pools whose rollout is held, and why.
    pub holds: Vec<(String, Hold)>,
}

/// The inputs of a render: each source's name and resourceVersion.
type RenderKey = Vec<(String, String)>;

/// The render of each pool, keyed by its inputs.
#[derive(Debug, Default)]
pub struct RenderCache {
    entries: HashMap<String, (RenderKey, Result<Rendered, String>)>,
}

impl RenderCache {
    fn render(&mut self, pool: &str, sources: &[&CachedConfig]) -> &Result<Rendered, String> {
        let key: Vec<(String, String)> = sources
            .iter()
            .map(|c| (c.info.name.clone(), c.resource_version.clone()))
            .collect();
        let stale = self.entries.get(pool).is_none_or(|(k, _)| *k != key);
        if stale {
            let objects: Vec<&Value> = sources.iter().map(|c| &c.object).collect();
            let result = render_pool(pool, &objects);
            self.entries.insert(pool.to_string(), (key, result));
        }
        &self.entries[pool].1
    }
}

/// One pass over every pool (see the module doc).
pub fn decide(world: &World, cache: &mut RenderCache) -> Writes {
    let mut w = Writes::default();
    let members = membership(world.pools, world.nodes);
    let by_name: HashMap<&str, &NodeInfo> =
        world.nodes.iter().map(|n| (n.name.as_str(), *n)).collect();
    let infos: Vec<&ConfigInfo> = world.configs.iter().map(|c| &c.info).collect();
    let config_by_name: BTreeMap<&str, &CachedConfig> = world
        .configs
        .iter()
        .map(|c| (c.info.name.as_str(), *c))
        .collect();
    let mut referenced: BTreeSet<String> = BTreeSet::new();

    for pool in world.pools {
        let name = pool_name(pool);
        let sources: Vec<&CachedConfig> = select(pool, &infos)
            .iter()
            .map(|n| config_by_name[n])
            .collect();
        let (target, render_error) = match cache.render(name, &sources) {
            Ok(r) => {
                if !config_by_name.contains_key(r.name.as_str()) {
                    w.create.push((name.to_string(), r.object.clone()));
                }
                if pool.spec.configuration.as_ref() != Some(&r.configuration) {
                    w.pool_spec
                        .push((name.to_string(), r.configuration.clone()));
                }
                (Some(r.configuration.clone()), None)
            }
            Err(e) => {
                w.render_errors.push((name.to_string(), e.clone()));
                (pool.spec.configuration.clone(), Some(e.clone()))
            }
        };
        let nodes: Vec<&NodeInfo> = members
            .of(name)
            .iter()
            .filter_map(|n| by_name.get(n.as_str()).copied())
            .collect();
        let previous = pool.status.as_ref();
        let current = previous
            .and_then(|s| s.configuration.as_ref())
            .map(|c| c.name.as_str());
        let spec = RolloutSpec {
            target: target.as_ref().map(|c| c.name.as_str()),
            current,
            paused: pool.spec.paused,
            max_unavailable: pool.spec.max_unavailable.as_ref(),
        };
        let step = next_step(&spec, &nodes);
        for (node, config) in step.set {
            w.desired.push((name.to_string(), node, config));
        }
        if let Some(hold) = step.hold {
            w.holds.push((name.to_string(), hold));
        }
        let conflicts = members
            .conflicts
            .get(name)
            .map_or(&[][..], |c| c.as_slice());
        let status = pool_status(
            &StatusInput {
                generation: pool.metadata.generation.unwrap_or(0),
                target: target.as_ref(),
                paused: pool.spec.paused,
                render_error: render_error.as_deref(),
                conflicts,
                previous,
                now: world.now,
                cert_expirys: world.cert_expirys,
            },
            &nodes,
        );
        if previous != Some(&status) {
            w.pool_status.push((name.to_string(), status));
        }
    }

    // Garbage: what no pool and no node references (the configs just decided count too).
    for pool in world.pools {
        let status = pool.status.as_ref().and_then(|s| s.configuration.as_ref());
        for c in [pool.spec.configuration.as_ref(), status]
            .into_iter()
            .flatten()
        {
            referenced.insert(c.name.clone());
        }
    }
    for n in world.nodes {
        for c in [&n.current, &n.desired].into_iter().flatten() {
            referenced.insert(c.clone());
        }
    }
    referenced.extend(w.pool_spec.iter().map(|(_, c)| c.name.clone()));
    referenced.extend(w.desired.iter().map(|(_, _, c)| c.clone()));
    let pools: Vec<&str> = world.pools.iter().map(|p| pool_name(p)).collect();
    w.delete = garbage(&pools, &infos, &referenced);
    w
}
