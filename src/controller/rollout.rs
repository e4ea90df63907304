//! Which nodes of a pool to move to its config next (SPEC §11, seed §5.1.2): pure functions of
//! the pool and its nodes.
//!
//! - **Order**: by the `topology.kubernetes.io/zone` label, alphabetically (nodes without one
//!   sort as the empty zone, first), then the oldest node first (`creationTimestamp`), then by
//!   name. [`order`].
//! - **Budget**: `maxUnavailable` is an integer or a percentage of the pool's node count,
//!   rounded down, at least 1; absent means 1 ([`max_unavailable`]). Nodes already unavailable
//!   ([`NodeInfo::is_unavailable`]: cordoned, not Ready, Working, Degraded, Unreconcilable, or
//!   told to run a config it does not run yet) use it up first.
//! - **Stops**: a paused pool moves no node; a pool with a `Degraded` or `Unreconcilable` node
//!   moves no further node until it recovers.
//! - **New nodes**: a node with no `currentConfig` and no `desiredConfig` (a plain Kubernetes
//!   node joining, or one whose daemon never ran) is given a config at once, outside the budget
//!   (it runs nothing to disrupt yet) and even while the pool is degraded: the pool's config, or
//!   while paused the config the pool is on (`status.configuration`), so pausing never brings a
//!   new config onto any node.
//!
//! A node already unavailable may be moved without using budget (it is counted already); the
//! others, in order, while the budget lasts.
//!
//! [`schedule`] plays the same decisions forward (every moved node assumed to finish) to give
//! the batches a whole rollout would take; `plan --pool` prints it.

use crate::cluster::mcp::IntOrString;

use super::pool::NodeInfo;

/// What a pool asks of its rollout.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RolloutSpec<'a> {
    /// The config the pool's nodes should run (`spec.configuration.name`).
    pub target: Option<&'a str>,
    /// The config the pool runs (`status.configuration.name`): new nodes get it while paused.
    pub current: Option<&'a str>,
    pub paused: bool,
    pub max_unavailable: Option<&'a IntOrString>,
}

/// Why a pool moves no (further) node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// `spec.paused`.
    Paused,
    /// These nodes are `Degraded` or `Unreconcilable`.
    Degraded(Vec<String>),
    /// No rendered config yet.
    NoConfig,
    /// `maxUnavailable` is not a number or a percentage.
    InvalidMaxUnavailable(String),
}

/// The nodes to give a `desiredConfig` now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    /// (node, config) in rollout order.
    pub set: Vec<(String, String)>,
    /// Why the rollout is held, if it is (new nodes may still be in `set`).
    pub hold: Option<Hold>,
}

/// `maxUnavailable` for a pool of `nodes` nodes: an integer, or a percentage rounded down; at
/// least 1. Absent: 1.
pub fn max_unavailable(value: Option<&IntOrString>, nodes: usize) -> Result<usize, String> {
    let n = match value {
        None => 1,
        Some(IntOrString::Int(i)) if *i >= 0 => *i as usize,
        Some(IntOrString::Int(i)) => {
            return Err(format!("spec.maxUnavailable: {i} is negative"));
        }
        Some(IntOrString::String(s)) => {
            let pct = s
                .strip_suffix('%')
                .and_then(|p| p.parse::<u64>().ok())
                .filter(|p| *p <= 100)
                .ok_or_else(|| {
                    format!(
                        "spec.maxUnavailable: {s:?} is not an integer or a percentage (0%-100%)"
                    )
                })?;
            (pct as usize).saturating_mul(nodes) / 100
        }
    };
    Ok(n.max(1))
}

/// `nodes` in rollout order (see the module doc).
pub fn order<'a>(nodes: &[&'a NodeInfo]) -> Vec<&'a NodeInfo> {
    let mut v: Vec<&NodeInfo> = nodes.to_vec();
    v.sort_by(|a, b| {
        a.zone()
            .cmp(b.zone())
            .then(a.created.cmp(&b.created))
            .then_with(|| a.name.cmp(&b.name))
    });
    v
}

/// A node that has never been given a config.
fn is_new(n: &NodeInfo) -> bool {
    n.current.is_none() && n.desired.is_none()
}

/// The next step of the rollout of a pool whose nodes are `nodes` (see the module doc).
pub fn next_step(spec: &RolloutSpec, nodes: &[&NodeInfo]) -> Step {
    let mut step = Step::default();
    let Some(target) = spec.target else {
        step.hold = Some(Hold::NoConfig);
        return step;
    };
    let ordered = order(nodes);
    let new_config = if spec.paused {
        spec.current.unwrap_or(target)
    } else {
        target
    };
    for n in ordered.iter().filter(|n| is_new(n)) {
        step.set.push((n.name.clone(), new_config.to_string()));
    }
    if spec.paused {
        step.hold = Some(Hold::Paused);
        return step;
    }
    let degraded: Vec<String> = ordered
        .iter()
        .filter(|n| n.is_degraded())
        .map(|n| n.name.clone())
        .collect();
    if !degraded.is_empty() {
        step.hold = Some(Hold::Degraded(degraded));
        return step;
    }
    let max = match max_unavailable(spec.max_unavailable, nodes.len()) {
        Ok(m) => m,
        Err(e) => {
            step.hold = Some(Hold::InvalidMaxUnavailable(e));
            return step;
        }
    };
    let unavailable = ordered
        .iter()
        .filter(|n| n.is_unavailable() && !is_new(n))
        .count();
    let mut budget = max.saturating_sub(unavailable);
    for n in ordered
        .iter()
        .filter(|n| !is_new(n) && n.desired.as_deref() != Some(target))
    {
        if n.is_unavailable() {
            step.set.push((n.name.clone(), target.to_string()));
        } else if budget > 0 {
            budget -= 1;
            step.set.push((n.name.clone(), target.to_string()));
        }
    }
    step
}

/// The batches of a whole rollout: each the nodes [`next_step`] moves once the previous batch
/// has finished (each moved node assumed to reach `Done` on the target, available again).
/// Stops where the rollout would hold (paused, degraded) or when every node has the target.
pub fn schedule(spec: &RolloutSpec, nodes: &[&NodeInfo]) -> Vec<Vec<String>> {
    let mut sim: Vec<NodeInfo> = nodes.iter().map(|n| (*n).clone()).collect();
    let mut batches = Vec::new();
    loop {
        let refs: Vec<&NodeInfo> = sim.iter().collect();
        let step = next_step(spec, &refs);
        if step.set.is_empty() {
            return batches;
        }
        batches.push(step.set.iter().map(|(n, _)| n.clone()).collect());
        for (name, config) in &step.set {
            if let Some(n) = sim.iter_mut().find(|n| &n.name == name) {
                n.current = Some(config.clone());
                n.desired = Some(config.clone());
                n.state = Some("Done".into());
                n.unschedulable = false;
                n.ready = true;
            }
        }
    }
}
