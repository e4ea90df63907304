//! A pool's `status` from its nodes (SPEC §11, seed §5.1.5): a pure function.
//!
//! Counts, over the pool's nodes:
//! - `machineCount`: every node, cordoned or not.
//! - `updatedMachineCount`: runs the pool's config and is `Done` with it (a cordoned node on
//!   the config counts).
//! - `readyMachineCount`: updated, `Ready` and not cordoned (upstream's definition: ready *on
//!   the pool's config*).
//! - `unavailableMachineCount`: [`NodeInfo::is_unavailable`] (cordoned, not Ready, Working,
//!   Degraded, Unreconcilable, or told to run a config it does not run yet).
//! - `degradedMachineCount`: `Degraded` or `Unreconcilable`.
//!
//! Conditions:
//! - `Updated`: every node is updated and ready, none unavailable. Then `status.configuration`
//!   becomes the pool's config; until then it stays the config the pool updates from (the
//!   CONFIG column).
//! - `Updating`: not updated and not paused (a cordoned node on the config makes it `True`).
//! - `NodeDegraded`: reason `N nodes are reporting degraded status on sync`, message
//!   `Node NAME is reporting: "REASON"` per node, joined by `, `.
//! - `RenderDegraded`: reason `RenderFailed`, the render error as message.
//! - `Degraded`: any of the two above, a node matched by two pools (reason
//!   `MultiplePoolsMatchNode`), or a node whose drain the drain controller reports blocked past
//!   its limit (reason `DrainBlocked`, message `Node NAME: ` and the drain controller's words,
//!   which name the pods); its reason is the first cause's, its message theirs joined by `; `.
//!
//! A condition keeps its `lastTransitionTime` while its status stays.
//!
//! `certExpirys`: the list the certificate controller ([`super::certificates`]) publishes from
//! the `ControllerConfig`; until it has published one (its first list of the object not done
//! yet, or no permission to read it), the pool keeps the list it has. One writer of the pool's
//! status: the certificate controller never writes it, it hands the list to this function.

use crate::cluster::mcp::{CertExpiry, MachineConfigPoolStatus, PoolCondition, PoolConfiguration};

use super::pool::NodeInfo;

/// What the status is computed from, besides the nodes.
#[derive(Debug, Clone, Default)]
pub struct StatusInput<'a> {
    /// `metadata.generation`.
    pub generation: i64,
    /// `spec.configuration` (the config the nodes should run).
    pub target: Option<&'a PoolConfiguration>,
    pub paused: bool,
    /// The error of the last render, if it failed.
    pub render_error: Option<&'a str>,
    /// Nodes this pool matches that another pool matches too, with the pools matching each.
    pub conflicts: &'a [(String, Vec<String>)],
    /// The status as it is now (kept: `status.configuration`, transition times).
    pub previous: Option<&'a MachineConfigPoolStatus>,
    /// RFC 3339 time of this computation (for changed conditions).
    pub now: &'a str,
    /// `status.certExpirys` to report; None keeps the previous list (see the module doc).
    pub cert_expirys: Option<&'a [CertExpiry]>,
}

/// The pool's status (see the module doc).
pub fn pool_status(input: &StatusInput, nodes: &[&NodeInfo]) -> MachineConfigPoolStatus {
    let target = input.target.map(|c| c.name.as_str()).unwrap_or_default();
    let count = |f: &dyn Fn(&NodeInfo) -> bool| nodes.iter().filter(|n| f(n)).count() as i32;
    let updated = |n: &NodeInfo| !target.is_empty() && n.runs(target);
    let machine_count = nodes.len() as i32;
    let updated_count = count(&updated);
    let ready_count = count(&|n| updated(n) && n.ready && !n.unschedulable);
    let unavailable_count = count(&|n| n.is_unavailable());
    let degraded: Vec<&NodeInfo> = nodes.iter().copied().filter(|n| n.is_degraded()).collect();
    let all_updated = !target.is_empty()
        && updated_count == machine_count
        && ready_count == machine_count
        && unavailable_count == 0;

    let previous = input.previous;
    let configuration = if all_updated {
        input.target.cloned()
    } else {
        previous.and_then(|p| p.configuration.clone())
    };

    let mut conditions = Vec::new();
    let mut add = |type_: &str, on: bool, reason: String, message: String| {
        let status = if on { "True" } else { "False" };
        let since = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| input.now.to_string());
        conditions.push(PoolCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            last_transition_time: Some(since),
            reason,
            message,
        });
    };
    let (updated_msg, updating_msg) = if all_updated {
        (
            format!("All nodes are updated with {target}"),
            String::new(),
        )
    } else if target.is_empty() {
        (String::new(), String::new())
    } else {
        (String::new(), format!("All nodes are updating to {target}"))
    };
    add("Updated", all_updated, String::new(), updated_msg);
    add(
        "Updating",
        !all_updated && !input.paused && !target.is_empty(),
        String::new(),
        if input.paused {
            String::new()
        } else {
            updating_msg
        },
    );

    let node_degraded_msg = degraded
        .iter()
        .map(|n| format!("Node {} is reporting: {:?}", n.name, n.reason))
        .collect::<Vec<_>>()
        .join(", ");
    let node_degraded_reason = if degraded.is_empty() {
        String::new()
    } else {
        format!(
            "{} nodes are reporting degraded status on sync",
            degraded.len()
        )
    };
    add(
        "NodeDegraded",
        !degraded.is_empty(),
        node_degraded_reason.clone(),
        node_degraded_msg.clone(),
    );
    let render_error = input.render_error.unwrap_or_default();
    add(
        "RenderDegraded",
        input.render_error.is_some(),
        if input.render_error.is_some() {
            "RenderFailed".into()
        } else {
            String::new()
        },
        render_error.to_string(),
    );
    let conflict_msg = input
        .conflicts
        .iter()
        .map(|(node, pools)| {
            format!(
                "Node {node} belongs to more than one pool: {}",
                pools.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut causes: Vec<(String, String)> = Vec::new();
    if !degraded.is_empty() {
        causes.push((node_degraded_reason, node_degraded_msg));
    }
    if input.render_error.is_some() {
        causes.push(("RenderFailed".into(), render_error.to_string()));
    }
    if !input.conflicts.is_empty() {
        causes.push(("MultiplePoolsMatchNode".into(), conflict_msg));
    }
    let blocked: Vec<String> = nodes
        .iter()
        .filter_map(|n| Some(format!("Node {}: {}", n.name, n.drain_blocked.as_deref()?)))
        .collect();
    if !blocked.is_empty() {
        causes.push(("DrainBlocked".into(), blocked.join(", ")));
    }
    let reason = causes.first().map(|c| c.0.clone()).unwrap_or_default();
    let message = causes
        .iter()
        .map(|c| c.1.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    add("Degraded", !causes.is_empty(), reason, message);

    MachineConfigPoolStatus {
        observed_generation: input.generation,
        configuration,
        machine_count,
        updated_machine_count: updated_count,
        ready_machine_count: ready_count,
        unavailable_machine_count: unavailable_count,
        degraded_machine_count: degraded.len() as i32,
        conditions,
        cert_expirys: match input.cert_expirys {
            Some(list) => list.to_vec(),
            None => previous.map(|p| p.cert_expirys.clone()).unwrap_or_default(),
        },
    }
}

/// The condition `type_` of `status`, `True`?
pub fn condition_true(status: &MachineConfigPoolStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}
