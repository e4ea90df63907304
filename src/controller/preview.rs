//! Preview of a change to a pool before it rolls out (`plan --kubeconfig FILE --pool NAME --add
//! NEW.yaml --remove NAME`): a pure function of what the cluster holds.
//!
//! 1. The pool's sources as they would be: the cluster's MachineConfigs, minus `--remove`, plus
//!    `--add` (an added config replaces one of the same name), selected by the pool's
//!    `machineConfigSelector` exactly as the controller selects them ([`super::render::select`]),
//!    rendered with the controller's render ([`super::render::render_pool`]). A removed name
//!    that does not exist, or an added config the pool would not select, is an error: the
//!    preview would otherwise show a change that is not the one asked for.
//! 2. Each node of the pool (the controller's membership, [`super::pool::membership`]) planned
//!    from its `currentConfig` to the new render with the cluster's effective policy, through
//!    the same planner the daemon uses ([`crate::plan::plan`]). A node with no `currentConfig`
//!    gets the config as its first apply (planned by the daemon against what it booted, so
//!    only named here); a node whose current config cannot be read says so.
//! 3. The rollout schedule the controller would follow ([`super::rollout::schedule`]): batches
//!    in zone-then-age order within `maxUnavailable`, or why it would not move (paused, a
//!    degraded node).
//!
//! Read-only: the caller fetches, this computes, nothing is written.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::cluster::mcp::MachineConfigPool;
use crate::model::{MachineConfig, policy::Policy};
use crate::plan::{self, Plan, PlanOptions};

use super::pool::{NodeInfo, membership, pool_name};
use super::render::{ConfigInfo, parse_object, render_pool, select};
use super::rollout::{self, Hold, RolloutSpec};

/// One node's part of the preview.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePreview {
    pub node: String,
    pub zone: String,
    /// `currentConfig`, if any.
    pub current: Option<String>,
    /// One word for the table: `None`, the actions (`Reload crio.service`), `Drain, Reboot`,
    /// `Unchanged`, `FirstApply`, `Refused` or `Unknown`.
    pub summary: String,
    /// The plan from the current config (absent for a first apply or an unreadable config).
    pub plan: Option<Plan>,
    /// Why there is no plan, or why the change is refused.
    pub note: Option<String>,
    /// For a node whose plan drains: what the drain pre-flight says now, when the budgets
    /// would keep the drain from starting ([`crate::cluster::preflight::Verdict::message`]),
    /// or why it could not be checked. Filled by the caller (it needs pods and budgets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_preflight: Option<String>,
}

/// The preview of a change to a pool.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub pool: String,
    /// The pool's rendered config now (`spec.configuration.name`).
    pub from: Option<String>,
    /// The rendered config the change would make.
    pub to: String,
    /// Its sources, in merge order.
    pub sources: Vec<String>,
    pub max_unavailable: usize,
    pub nodes: Vec<NodePreview>,
    /// The batches the controller would move, in order.
    pub batches: Vec<Vec<String>>,
    /// Why the rollout would not move (or stop early), if it would not.
    pub hold: Option<String>,
}

/// What the preview is computed from (all fetched by the caller).
pub struct PreviewInput<'a> {
    pub pool: &'a MachineConfigPool,
    /// Every pool of the cluster (for membership; `pool` among them).
    pub pools: &'a [&'a MachineConfigPool],
    /// Every MachineConfig of the cluster, as the API returns them.
    pub configs: &'a [Value],
    pub add: &'a [Value],
    pub remove: &'a [String],
    /// Every node of the cluster.
    pub nodes: &'a [NodeInfo],
    /// The parsed config of each `currentConfig` name that could be read; the error otherwise.
    pub current: &'a BTreeMap<String, Result<MachineConfig, String>>,
    pub policy: &'a Policy,
    pub options: &'a PlanOptions,
}

/// Computes the preview; an error names the input at fault.
pub fn preview(input: &PreviewInput) -> Result<Preview, String> {
    let name = pool_name(input.pool).to_string();
    let mut by_name: BTreeMap<String, Value> = BTreeMap::new();
    for c in input.configs {
        if let Some(n) = c["metadata"]["name"].as_str() {
            by_name.insert(n.to_string(), c.clone());
        }
    }
    for r in input.remove {
        if by_name.remove(r).is_none() {
            return Err(format!(
                "--remove {r}: no MachineConfig {r:?} in the cluster"
            ));
        }
    }
    for a in input.add {
        let Some(n) = a["metadata"]["name"].as_str().filter(|n| !n.is_empty()) else {
            return Err("--add: a MachineConfig without metadata.name".into());
        };
        let info = ConfigInfo::from_json(a);
        if select(input.pool, &[&info]).is_empty() {
            return Err(format!(
                "--add {n}: pool {name} would not use it (its labels do not match the pool's \
                 machineConfigSelector, or it is a rendered config)"
            ));
        }
        by_name.insert(n.to_string(), a.clone());
    }
    let infos: Vec<ConfigInfo> = by_name.values().map(ConfigInfo::from_json).collect();
    let refs: Vec<&ConfigInfo> = infos.iter().collect();
    let selected = select(input.pool, &refs);
    let sources: Vec<&Value> = selected.iter().map(|n| &by_name[*n]).collect();
    let rendered = render_pool(&name, &sources)?;
    let new = parse_object(&rendered.object, &rendered.name)?;

    let node_refs: Vec<&NodeInfo> = input.nodes.iter().collect();
    let members = membership(input.pools, &node_refs);
    let mine: Vec<&NodeInfo> = input
        .nodes
        .iter()
        .filter(|n| members.of(&name).contains(&n.name))
        .collect();
    let mut nodes = Vec::new();
    for n in &mine {
        let (summary, plan, note) = match n.current.as_deref() {
            None => (
                "FirstApply".to_string(),
                None,
                Some("no currentConfig: the daemon applies the config as its first apply".into()),
            ),
            Some(cur) if cur == rendered.name => ("Unchanged".to_string(), None, None),
            Some(cur) => match input.current.get(cur) {
                Some(Ok(old)) => {
                    let p = plan::plan(old, &new, input.policy, input.options);
                    let (summary, note) = match &p.unreconcilable {
                        Some(why) => ("Refused".to_string(), Some(why.clone())),
                        None => (summarise(&p), None),
                    };
                    (summary, Some(p), note)
                }
                Some(Err(e)) => ("Unknown".to_string(), None, Some(e.clone())),
                None => (
                    "Unknown".to_string(),
                    None,
                    Some(format!("MachineConfig {cur} was not read")),
                ),
            },
        };
        nodes.push(NodePreview {
            node: n.name.clone(),
            zone: n.zone().to_string(),
            current: n.current.clone(),
            summary,
            plan,
            note,
            drain_preflight: None,
        });
    }

    let max = rollout::max_unavailable(input.pool.spec.max_unavailable.as_ref(), mine.len())?;
    let spec = RolloutSpec {
        target: Some(&rendered.name),
        current: input
            .pool
            .status
            .as_ref()
            .and_then(|s| s.configuration.as_ref())
            .map(|c| c.name.as_str()),
        paused: input.pool.spec.paused,
        max_unavailable: input.pool.spec.max_unavailable.as_ref(),
    };
    let batches = rollout::schedule(&spec, &mine);
    let moved: usize = batches.iter().map(Vec::len).sum();
    let waiting = mine
        .iter()
        .filter(|n| n.current.as_deref() != Some(rendered.name.as_str()))
        .count();
    let hold = if moved < waiting {
        let step = rollout::next_step(&spec, &mine);
        Some(match step.hold {
            Some(Hold::Paused) => "the pool is paused: no node would be moved".to_string(),
            Some(Hold::Degraded(names)) => format!(
                "degraded nodes hold the rollout until they recover: {}",
                names.join(", ")
            ),
            Some(Hold::NoConfig) => "the pool has no rendered config".to_string(),
            Some(Hold::InvalidMaxUnavailable(e)) => e,
            None => format!("{} node(s) would not be moved", waiting - moved),
        })
    } else {
        None
    };
    Ok(Preview {
        pool: name,
        from: input
            .pool
            .spec
            .configuration
            .as_ref()
            .map(|c| c.name.clone()),
        to: rendered.name,
        sources: rendered
            .configuration
            .source
            .iter()
            .map(|s| s.name.clone())
            .collect(),
        max_unavailable: max,
        nodes,
        batches,
        hold,
    })
}

/// The table word of a plan: `Drain, ` before the actions when it drains.
fn summarise(p: &Plan) -> String {
    let actions = p
        .actions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if p.drain {
        format!("Drain, {actions}")
    } else {
        actions
    }
}
