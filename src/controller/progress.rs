//! A pool's rollout as `rollout status` shows it: a pure function of the pool and its nodes.
//!
//! [`progress`] gives one line of figures (updated / updating / degraded out of the machine
//! count, the nodes in flight with their state) and a verdict:
//! - [`Verdict::Done`]: the pool's `Updated` condition is `True`, its `status.configuration` is
//!   its `spec.configuration` and the controller has seen the pool's latest generation
//!   (`status.observedGeneration` ≥ `metadata.generation`): every node runs the pool's config.
//! - [`Verdict::Failed`]: a node of the pool is `Degraded` or `Unreconcilable` (its reason is
//!   given), or the pool is `Degraded` (render failure, a node in two pools, a blocked drain;
//!   the condition's message is given). A rollout that cannot finish by itself stops the wait
//!   at once rather than at the timeout.
//! - [`Verdict::Waiting`] otherwise (also while the pool is paused: the line says so).
//!
//! The nodes are those the pool's `nodeSelector` matches; the figures are the controller's
//! (`status`), the nodes in flight are read from the nodes themselves, so the line moves as
//! soon as a daemon reports, before the controller's next status write.

use crate::cluster::mcp::MachineConfigPool;

use super::pool::{NodeInfo, selector_matches};

/// Whether the wait is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Waiting,
    Done,
    /// Why the rollout cannot finish by itself.
    Failed(String),
}

/// One observation of a pool's rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The figures and the nodes in flight, one line.
    pub line: String,
    pub verdict: Verdict,
}

/// The rollout of `pool` over `nodes` (every node of the cluster; those the pool's selector
/// does not match are ignored).
pub fn progress(pool: &MachineConfigPool, nodes: &[NodeInfo]) -> Progress {
    let name = pool.metadata.name.as_deref().unwrap_or_default();
    let spec_config = pool
        .spec
        .configuration
        .as_ref()
        .map(|c| c.name.as_str())
        .unwrap_or_default();
    let status = pool.status.clone().unwrap_or_default();
    let cond = |t: &str| status.conditions.iter().find(|c| c.type_ == t);
    let is_true = |t: &str| cond(t).is_some_and(|c| c.status == "True");
    let members: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| selector_matches(pool.spec.node_selector.as_ref(), &n.labels))
        .collect();
    let in_flight: Vec<String> = members
        .iter()
        .filter(|n| {
            n.desired.is_some() && n.desired != n.current
                || matches!(n.state.as_deref(), Some("Working"))
        })
        .map(|n| format!("{} {}", n.name, n.state.as_deref().unwrap_or("-")))
        .collect();
    let mut line = format!(
        "pool {name}: {} of {} updated, {} updating, {} degraded",
        status.updated_machine_count,
        status.machine_count,
        in_flight.len(),
        status.degraded_machine_count,
    );
    if !spec_config.is_empty() {
        line.push_str(&format!(" (config {spec_config})"));
    }
    if pool.spec.paused {
        line.push_str("; paused");
    }
    if !in_flight.is_empty() {
        line.push_str(&format!("; in flight: {}", in_flight.join(", ")));
    }

    let degraded: Vec<String> = members
        .iter()
        .filter(|n| n.is_degraded())
        .map(|n| {
            format!(
                "node {} is {}: {}",
                n.name,
                n.state.as_deref().unwrap_or_default(),
                n.reason
            )
        })
        .collect();
    let verdict = if !degraded.is_empty() {
        Verdict::Failed(degraded.join("; "))
    } else if is_true("Degraded") {
        let c = cond("Degraded").expect("a true condition exists");
        Verdict::Failed(format!("pool {name} is degraded: {}", c.message))
    } else if is_true("Updated")
        && !spec_config.is_empty()
        && status.configuration.as_ref().map(|c| c.name.as_str()) == Some(spec_config)
        && status.observed_generation >= pool.metadata.generation.unwrap_or(0)
    {
        Verdict::Done
    } else {
        Verdict::Waiting
    };
    Progress { line, verdict }
}
