//! What the controller knows of a node and of a pool, and pool membership (SPEC §11): pure
//! functions of data, no I/O.
//!
//! A node belongs to the pools whose `spec.nodeSelector` matches its labels. `worker` is the
//! pool every node may fall back to: a node matched by `worker` and one other pool belongs to
//! the other pool. A node matched by two pools other than `worker` belongs to none: it is
//! reported on each of them ([`Membership::conflicts`]) and never updated. A pool without a
//! `nodeSelector` has no node; an empty selector (`{}`) matches every node, as in Kubernetes.

use std::collections::BTreeMap;

use crate::cluster::mcp::{LabelSelector, MachineConfigPool};
use crate::cluster::node::{CURRENT_CONFIG, DESIRED_CONFIG, REASON, STATE};

/// The pool custom pools fall back from.
pub const WORKER_POOL: &str = "worker";
/// The zone label nodes are ordered by.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// What the controller needs of a Node (everything else is dropped on the way in).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `metadata.creationTimestamp`, seconds since the epoch (0 when absent).
    pub created: i64,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    pub current: Option<String>,
    pub desired: Option<String>,
    /// `state` annotation: `Done`, `Working`, `Degraded`, `Unreconcilable`.
    pub state: Option<String>,
    pub reason: String,
    /// The drain controller's report of a drain blocked past its limit (the `drainBlocked`
    /// annotation, [`super::drain::DRAIN_BLOCKED`]): the pods that keep it from finishing.
    pub drain_blocked: Option<String>,
}

impl NodeInfo {
    /// The view of a Node object.
    pub fn from_node(node: &k8s_openapi::api::core::v1::Node) -> NodeInfo {
        let meta = &node.metadata;
        let ann = |k: &str| {
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        NodeInfo {
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            created: meta
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.as_second()),
            unschedulable: node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
            ready,
            current: ann(CURRENT_CONFIG),
            desired: ann(DESIRED_CONFIG),
            state: ann(STATE),
            reason: ann(REASON).unwrap_or_default(),
            drain_blocked: ann(super::drain::DRAIN_BLOCKED),
        }
    }

    /// `Degraded` or `Unreconcilable`.
    pub fn is_degraded(&self) -> bool {
        matches!(self.state.as_deref(), Some("Degraded" | "Unreconcilable"))
    }

    /// Not available for workloads or in the middle of an update: cordoned, not `Ready`,
    /// `Working`, `Degraded`, `Unreconcilable`, or told to run a config it does not run yet.
    /// These count against the pool's `maxUnavailable`.
    pub fn is_unavailable(&self) -> bool {
        self.unschedulable
            || !self.ready
            || self.is_degraded()
            || self.state.as_deref() == Some("Working")
            || (self.desired.is_some() && self.desired != self.current)
    }

    /// Runs `config` and is done with it.
    pub fn runs(&self, config: &str) -> bool {
        self.current.as_deref() == Some(config)
            && self.desired.as_deref() == Some(config)
            && self.state.as_deref() == Some("Done")
    }

    /// The zone label, empty when absent.
    pub fn zone(&self) -> &str {
        self.labels.get(ZONE_LABEL).map_or("", String::as_str)
    }
}

/// Whether `selector` matches `labels`. `None` matches nothing; an empty selector everything.
/// An unknown operator matches nothing (the API server refuses such a selector anyway).
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(sel) = selector else {
        return false;
    };
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|e| {
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| e.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !e.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Which pool each node belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Pool name → the names of its nodes (sorted).
    pub members: BTreeMap<String, Vec<String>>,
    /// Pool name → the nodes it matches that another non-`worker` pool matches too, each with
    /// the pools matching it. Such a node is in no pool.
    pub conflicts: BTreeMap<String, Vec<(String, Vec<String>)>>,
}

impl Membership {
    /// The nodes of `pool`.
    pub fn of(&self, pool: &str) -> &[String] {
        self.members.get(pool).map_or(&[], Vec::as_slice)
    }
}

/// Assigns each node to its pool (see the module doc).
pub fn membership(pools: &[&MachineConfigPool], nodes: &[&NodeInfo]) -> Membership {
    let mut m = Membership::default();
    for p in pools {
        m.members.insert(pool_name(p).to_string(), Vec::new());
    }
    for node in nodes {
        let mut matching: Vec<&str> = pools
            .iter()
            .filter(|p| selector_matches(p.spec.node_selector.as_ref(), &node.labels))
            .map(|p| pool_name(p))
            .collect();
        matching.sort_unstable();
        if matching.len() > 1 {
            matching.retain(|p| *p != WORKER_POOL);
        }
        match matching.as_slice() {
            [] => {}
            [one] => m
                .members
                .entry(one.to_string())
                .or_default()
                .push(node.name.clone()),
            many => {
                let all: Vec<String> = many.iter().map(|s| s.to_string()).collect();
                for p in many {
                    m.conflicts
                        .entry(p.to_string())
                        .or_default()
                        .push((node.name.clone(), all.clone()));
                }
            }
        }
    }
    for v in m.members.values_mut() {
        v.sort_unstable();
    }
    m
}

/// `metadata.name` of a pool.
pub fn pool_name(pool: &MachineConfigPool) -> &str {
    pool.metadata.name.as_deref().unwrap_or_default()
}
