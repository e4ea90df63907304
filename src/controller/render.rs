//! Rendering per pool (SPEC §2, §11): which MachineConfigs a pool renders, the rendered object
//! the controller creates, and which old rendered configs it deletes. Pure functions; the merge
//! itself is the `render` command's ([`crate::model::render::render`]).
//!
//! - **Selection**: the MachineConfigs matched by the pool's `spec.machineConfigSelector`, never
//!   a rendered config: one owned by a MachineConfigPool (`ownerReferences`) or named
//!   `rendered-…` is skipped even if its labels match.
//! - **The rendered object**: named `rendered-<pool>-<hash>` (the hash of the merged content,
//!   so the same sources give the same name), owned by the pool (`ownerReferences`, controller),
//!   annotated `machineconfiguration.openshift.io/generated-by-controller-version`, and with
//!   **no labels**: no pool's selector ever picks it as a source.
//! - **Garbage collection**: a rendered config of a pool that no pool (`spec` or `status`
//!   configuration) and no node (`currentConfig`, `desiredConfig`) references is deleted, except
//!   the [`KEEP_UNREFERENCED`] newest of each pool, kept for rollback (deleting a source
//!   MachineConfig brings the previous rendered config back under the same name).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::cluster::mcp::{MachineConfigPool, ObjectReference, PoolConfiguration};
use crate::model;

use super::pool::{pool_name, selector_matches};

/// Unreferenced rendered configs kept per pool, newest first, for rollback.
pub const KEEP_UNREFERENCED: usize = 3;
/// The annotation naming the controller version that made a rendered config.
pub const GENERATED_BY: &str = "machineconfiguration.openshift.io/generated-by-controller-version";
/// The prefix of every rendered config's name.
pub const RENDERED_PREFIX: &str = "rendered-";

/// What the controller needs of a MachineConfig to select it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Owned by a MachineConfigPool, or named `rendered-…`.
    pub rendered: bool,
    /// `metadata.creationTimestamp`, seconds since the epoch.
    pub created: i64,
}

impl ConfigInfo {
    /// From a MachineConfig object as JSON.
    pub fn from_json(mc: &Value) -> ConfigInfo {
        let meta = &mc["metadata"];
        let name = meta["name"].as_str().unwrap_or_default().to_string();
        let owned = meta["ownerReferences"]
            .as_array()
            .is_some_and(|o| o.iter().any(|r| r["kind"] == "MachineConfigPool"));
        ConfigInfo {
            rendered: owned || name.starts_with(RENDERED_PREFIX),
            labels: serde_json::from_value(meta["labels"].clone()).unwrap_or_default(),
            created: meta["creationTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                .map_or(0, |t| t.as_second()),
            name,
        }
    }
}

/// The names of the MachineConfigs `pool` renders, sorted.
pub fn select<'a>(pool: &MachineConfigPool, configs: &[&'a ConfigInfo]) -> Vec<&'a str> {
    let mut names: Vec<&str> = configs
        .iter()
        .filter(|c| !c.rendered)
        .filter(|c| selector_matches(pool.spec.machine_config_selector.as_ref(), &c.labels))
        .map(|c| c.name.as_str())
        .collect();
    names.sort_unstable();
    names
}

/// A pool's render: the rendered config's name and object, and its sources in merge order.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub name: String,
    /// The MachineConfig to create (no `ownerReferences` yet: see [`owned_by`]).
    pub object: Value,
    pub configuration: PoolConfiguration,
}

/// Renders `pool` from its source MachineConfig objects (JSON, as the API returns them) with
/// the `render` command's merge. An error says which config and why.
pub fn render_pool(pool: &str, sources: &[&Value]) -> Result<Rendered, String> {
    if sources.is_empty() {
        return Err(format!(
            "no MachineConfig matches the machineConfigSelector of pool {pool}"
        ));
    }
    let mut configs = Vec::with_capacity(sources.len());
    for src in sources {
        let name = src["metadata"]["name"].as_str().unwrap_or_default();
        configs.push(parse_object(src, &format!("MachineConfig {name}"))?);
    }
    let rendered =
        model::render::render(pool, &configs).map_err(|e| format!("pool {pool}: {e}"))?;
    let mut object = model::machine_config_to_json(&rendered);
    object["apiVersion"] = json!("machineconfiguration.openshift.io/v1");
    object["kind"] = json!("MachineConfig");
    object["metadata"] = json!({
        "name": rendered.name,
        "annotations": {GENERATED_BY: env!("CARGO_PKG_VERSION")},
    });
    let source = model::render::order(pool, &configs)
        .iter()
        .map(|mc| ObjectReference {
            api_version: "machineconfiguration.openshift.io/v1".into(),
            kind: "MachineConfig".into(),
            name: mc.name.clone(),
        })
        .collect();
    Ok(Rendered {
        configuration: PoolConfiguration {
            name: rendered.name.clone(),
            source,
            ..Default::default()
        },
        name: rendered.name,
        object,
    })
}

/// A MachineConfig object (as the API returns it) through the model's parser; an error names
/// `origin` and every problem, field by field.
pub fn parse_object(object: &Value, origin: &str) -> Result<model::MachineConfig, String> {
    let bytes = serde_json::to_vec(object).map_err(|e| format!("{origin}: {e}"))?;
    model::load::parse_machine_configs(&bytes, origin)
        .map_err(|e| e.errors().join("; "))?
        .configs
        .into_iter()
        .next()
        .ok_or_else(|| format!("{origin}: no MachineConfig in it"))
}

/// `object` with an owner reference to `pool` (the controller).
pub fn owned_by(mut object: Value, pool: &MachineConfigPool) -> Value {
    object["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfigPool",
        "name": pool_name(pool),
        "uid": pool.metadata.uid.clone().unwrap_or_default(),
        "controller": true,
    }]);
    object
}

/// The rendered configs to delete: rendered configs of a known pool (`rendered-<pool>-…`) not
/// in `referenced`, but for the [`KEEP_UNREFERENCED`] newest of each pool.
pub fn garbage(
    pools: &[&str],
    configs: &[&ConfigInfo],
    referenced: &BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for pool in pools {
        let prefix = format!("{RENDERED_PREFIX}{pool}-");
        let mut unreferenced: Vec<&ConfigInfo> = configs
            .iter()
            .copied()
            .filter(|c| c.rendered && c.name.starts_with(&prefix))
            // `rendered-a-…` must not match pool `a` when it is pool `a-b`'s.
            .filter(|c| !c.name[prefix.len()..].contains('-'))
            .filter(|c| !referenced.contains(&c.name))
            .collect();
        unreferenced.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
        out.extend(
            unreferenced
                .iter()
                .skip(KEEP_UNREFERENCED)
                .map(|c| c.name.clone()),
        );
    }
    out.sort();
    out
}
