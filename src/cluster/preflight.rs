//! Drain pre-flight (SPEC §9, ours): before a drain cordons a node, decide from the
//! PodDisruptionBudgets whether the drain can make progress now. A drain that cordons and then
//! waits an hour on a budget leaves the node's capacity gone for nothing; when the pre-flight
//! says "blocked", the drain does not cordon, reports the pods and budgets, and tries again when
//! the budgets (or the node's pods) change.
//!
//! [`verdict`] is pure: the node's pods and the budgets of their namespaces in, a [`Verdict`]
//! out. It follows the Eviction API's own rules (kube-apiserver's `pods/eviction`), so that
//! "clear" means the first round of evictions is admitted:
//!
//! - Only pods the drain evicts count ([`super::drain::classify`]: DaemonSet, mirror and
//!   completed pods are left alone); a pod already terminating, and a `Pending` pod (the
//!   Eviction API ignores budgets for it), need no disruption.
//! - A budget covers a pod in its namespace whose labels its selector matches (policy/v1: an
//!   empty selector matches every pod of the namespace, a missing one none).
//! - A pod covered by **several budgets** is blocked: the Eviction API refuses to evict it
//!   (500) until all but one are gone.
//! - **Unhealthy pods** (not `Ready`) go without a disruption when the budget's
//!   `unhealthyPodEvictionPolicy` is `AlwaysAllow`, or (the default, `IfHealthyBudget`) when the
//!   budget's status is current and `currentHealthy >= desiredHealthy > 0`.
//! - A budget whose status is not current (`status.observedGeneration` below
//!   `metadata.generation`, or no status yet) allows nothing: the Eviction API answers 429 until
//!   the disruption controller has processed it.
//! - The pods of the node under one budget need one disruption each. A budget with
//!   `disruptionsAllowed` of 0 (or less) **blocks**. A budget that allows at least one but fewer
//!   than the node needs does **not** block: it is listed as *staged* (the drain evicts as many
//!   as it allows, and the rest once their replacements are healthy elsewhere). Waiting for it
//!   to allow them all at once could wait forever (two replicas on one node under
//!   `maxUnavailable: 1`), which is exactly what the pre-flight is there to avoid.
//!
//! The verdict is a snapshot. A budget can change between the pre-flight and the evictions
//! (another drain takes the last disruption): the eviction then answers 429 and the drain's
//! retry applies as before the pre-flight existed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::drain::{Disposition, classify, pod_id};

/// Why a pod cannot be evicted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The budget's `disruptionsAllowed` is 0 (or less).
    NoDisruptionAllowed,
    /// The budget's status does not reflect its spec yet (no disruption controller has
    /// processed it): the Eviction API refuses until it has.
    NotObserved,
    /// The pod is covered by more than one budget (named in [`Blocker::budget`]): the Eviction
    /// API refuses such pods.
    SeveralBudgets,
}

/// A budget that keeps a pod (or the node's pods) from being evicted at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// `namespace/name` of the budget (several, comma-separated, for [`Why::SeveralBudgets`]).
    pub budget: String,
    /// The budget's `status.disruptionsAllowed` (0 when not observed).
    pub allowed: i32,
    /// How many pods of this node need a disruption of this budget.
    pub needed: u32,
    pub why: Why,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.why {
            Why::NoDisruptionAllowed => write!(
                f,
                "pod {} (PodDisruptionBudget {} allows {} disruptions, {} needed)",
                self.pod, self.budget, self.allowed, self.needed
            ),
            Why::NotObserved => write!(
                f,
                "pod {} (PodDisruptionBudget {} has no current status yet, {} needed)",
                self.pod, self.budget, self.needed
            ),
            Why::SeveralBudgets => write!(
                f,
                "pod {} (covered by several PodDisruptionBudgets: {}; the Eviction API refuses it)",
                self.pod, self.budget
            ),
        }
    }
}

/// What the pre-flight found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// The pods that cannot be evicted now, with their budgets; sorted by pod. Empty: the
    /// drain can start.
    pub blocked: Vec<Blocker>,
    /// Budgets that allow some but fewer disruptions than the node needs (one entry per pod):
    /// the drain starts and evicts in rounds.
    pub staged: Vec<Blocker>,
}

impl Verdict {
    /// The drain can start now.
    pub fn can_drain(&self) -> bool {
        self.blocked.is_empty()
    }

    /// One line naming the blocking pods and budgets (empty when clear).
    pub fn message(&self) -> String {
        if self.blocked.is_empty() {
            return String::new();
        }
        format!(
            "drain waits for PodDisruptionBudgets (node not cordoned): {}",
            self.blocking()
        )
    }

    /// The blocking pods and budgets, `; `-separated.
    pub fn blocking(&self) -> String {
        let list: Vec<String> = self.blocked.iter().map(ToString::to_string).collect();
        list.join("; ")
    }
}

/// Whether `selector` (policy/v1 semantics) matches `labels`: a missing selector matches
/// nothing, an empty one everything; an unknown operator matches nothing.
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    use kube::core::{Selector, SelectorExt};
    let Some(sel) = selector else {
        return false;
    };
    Selector::try_from(sel.clone()).is_ok_and(|s| s.matches(labels))
}

fn budget_id(pdb: &PodDisruptionBudget) -> String {
    format!(
        "{}/{}",
        pdb.metadata.namespace.as_deref().unwrap_or_default(),
        pdb.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The budget's status reflects its spec.
fn observed(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = &pdb.status else {
        return false;
    };
    let generation = pdb.metadata.generation.unwrap_or(0);
    status.observed_generation.unwrap_or(0) >= generation
}

fn allowed(pdb: &PodDisruptionBudget) -> i32 {
    if !observed(pdb) {
        return 0;
    }
    pdb.status.as_ref().map_or(0, |s| s.disruptions_allowed)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// An unhealthy pod the budget lets go without a disruption.
fn goes_freely(pod: &Pod, pdb: &PodDisruptionBudget) -> bool {
    if pod_ready(pod) {
        return false;
    }
    let policy = pdb
        .spec
        .as_ref()
        .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref());
    if policy == Some("AlwaysAllow") {
        return true;
    }
    observed(pdb)
        && pdb
            .status
            .as_ref()
            .is_some_and(|s| s.desired_healthy > 0 && s.current_healthy >= s.desired_healthy)
}

/// Whether the Eviction API consults budgets for `pod` at all.
fn needs_budget(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Pending") | Some("Succeeded") | Some("Failed"))
}

/// The pre-flight verdict for draining a node whose pods are `pods`, given the budgets `pdbs`
/// (those of the pods' namespaces; others are ignored).
pub fn verdict(pods: &[Pod], pdbs: &[PodDisruptionBudget]) -> Verdict {
    let empty = BTreeMap::new();
    // Budget index → the pods of this node that need one of its disruptions.
    let mut under: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut out = Verdict::default();
    for pod in pods {
        if !matches!(classify(pod), Disposition::Evict { .. }) || !needs_budget(pod) {
            continue;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let covering: Vec<usize> = pdbs
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.metadata.namespace.as_deref().unwrap_or_default() == ns
                    && selector_matches(b.spec.as_ref().and_then(|s| s.selector.as_ref()), labels)
            })
            .map(|(i, _)| i)
            .collect();
        match covering.as_slice() {
            [] => {}
            [i] => {
                if !goes_freely(pod, &pdbs[*i]) {
                    under.entry(*i).or_default().push(pod_id(pod));
                }
            }
            several => {
                let mut names: Vec<String> = several.iter().map(|i| budget_id(&pdbs[*i])).collect();
                names.sort();
                out.blocked.push(Blocker {
                    pod: pod_id(pod),
                    budget: names.join(", "),
                    allowed: 0,
                    needed: 1,
                    why: Why::SeveralBudgets,
                });
            }
        }
    }
    for (i, pods) in under {
        let pdb = &pdbs[i];
        let allowed = allowed(pdb);
        let needed = u32::try_from(pods.len()).unwrap_or(u32::MAX);
        let (list, why) = if !observed(pdb) {
            (&mut out.blocked, Why::NotObserved)
        } else if allowed <= 0 {
            (&mut out.blocked, Why::NoDisruptionAllowed)
        } else if i64::from(allowed) < i64::from(needed) {
            (&mut out.staged, Why::NoDisruptionAllowed)
        } else {
            continue;
        };
        for pod in pods {
            list.push(Blocker {
                pod,
                budget: budget_id(pdb),
                allowed,
                needed,
                why: why.clone(),
            });
        }
    }
    out.blocked.sort_by(|a, b| a.pod.cmp(&b.pod));
    out.staged.sort_by(|a, b| a.pod.cmp(&b.pod));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A running, ready pod `ns/name` with `labels`, owned by a ReplicaSet.
    fn pod(ns: &str, name: &str, labels: Value) -> Value {
        json!({
            "metadata": {"namespace": ns, "name": name, "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "rs", "uid": "u", "controller": true}]},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        })
    }

    /// A budget `ns/name` with `selector`, observed, allowing `allowed`.
    fn pdb(ns: &str, name: &str, selector: Value, allowed: i32) -> Value {
        json!({
            "metadata": {"namespace": ns, "name": name, "generation": 2},
            "spec": {"selector": selector},
            "status": {"observedGeneration": 2, "disruptionsAllowed": allowed,
                "currentHealthy": 3, "desiredHealthy": 3 - allowed, "expectedPods": 3},
        })
    }

    fn run(pods: Vec<Value>, pdbs: Vec<Value>) -> Verdict {
        let pods: Vec<Pod> = pods
            .into_iter()
            .map(|p| serde_json::from_value(p).unwrap())
            .collect();
        let pdbs: Vec<PodDisruptionBudget> = pdbs
            .into_iter()
            .map(|p| serde_json::from_value(p).unwrap())
            .collect();
        verdict(&pods, &pdbs)
    }

    /// (pod, budget, allowed, needed, why) of each blocker.
    fn rows(list: &[Blocker]) -> Vec<(&str, &str, i32, u32, Why)> {
        list.iter()
            .map(|b| {
                (
                    b.pod.as_str(),
                    b.budget.as_str(),
                    b.allowed,
                    b.needed,
                    b.why.clone(),
                )
            })
            .collect()
    }

    fn with(mut v: Value, path: &[&str], value: Value) -> Value {
        let mut at = &mut v;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = value;
        v
    }

    #[test]
    fn verdict_table() {
        use Why::*;
        let app = json!({"app": "web"});
        let sel = json!({"matchLabels": {"app": "web"}});
        type Row = (Vec<(&'static str, &'static str, i32, u32, Why)>, usize);
        let cases: Vec<(&str, Vec<Value>, Vec<Value>, Row)> = vec![
            (
                "no budgets",
                vec![pod("a", "p", app.clone())],
                vec![],
                (vec![], 0),
            ),
            (
                "budget allows one, one needed",
                vec![pod("a", "p", app.clone())],
                vec![pdb("a", "b", sel.clone(), 1)],
                (vec![], 0),
            ),
            (
                "budget allows none",
                vec![pod("a", "p", app.clone())],
                vec![pdb("a", "b", sel.clone(), 0)],
                (vec![("a/p", "a/b", 0, 1, NoDisruptionAllowed)], 0),
            ),
            (
                "negative allowed blocks too",
                vec![pod("a", "p", app.clone())],
                vec![pdb("a", "b", sel.clone(), -1)],
                (vec![("a/p", "a/b", -1, 1, NoDisruptionAllowed)], 0),
            ),
            (
                "budget of another namespace",
                vec![pod("a", "p", app.clone())],
                vec![pdb("other", "b", sel.clone(), 0)],
                (vec![], 0),
            ),
            (
                "selector does not match",
                vec![pod("a", "p", json!({"app": "db"}))],
                vec![pdb("a", "b", sel.clone(), 0)],
                (vec![], 0),
            ),
            (
                "empty selector covers the namespace",
                vec![pod("a", "p", json!({"any": "thing"}))],
                vec![pdb("a", "b", json!({}), 0)],
                (vec![("a/p", "a/b", 0, 1, NoDisruptionAllowed)], 0),
            ),
            (
                "missing selector covers nothing",
                vec![pod("a", "p", app.clone())],
                vec![with(pdb("a", "b", json!({}), 0), &["spec"], json!({}))],
                (vec![], 0),
            ),
            (
                "matchExpressions",
                vec![pod("a", "p", json!({"tier": "front"}))],
                vec![pdb(
                    "a",
                    "b",
                    json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}]}),
                    0,
                )],
                (vec![("a/p", "a/b", 0, 1, NoDisruptionAllowed)], 0),
            ),
            (
                "several budgets over one pod",
                vec![pod("a", "p", app.clone())],
                vec![pdb("a", "y", sel.clone(), 5), pdb("a", "x", json!({}), 5)],
                (vec![("a/p", "a/x, a/y", 0, 1, SeveralBudgets)], 0),
            ),
            (
                "two pods, budget allows one: staged, not blocked",
                vec![pod("a", "p1", app.clone()), pod("a", "p2", app.clone())],
                vec![pdb("a", "b", sel.clone(), 1)],
                (vec![], 2),
            ),
            (
                "two pods, budget allows two",
                vec![pod("a", "p1", app.clone()), pod("a", "p2", app.clone())],
                vec![pdb("a", "b", sel.clone(), 2)],
                (vec![], 0),
            ),
            (
                "two pods, budget allows none: both named, two needed",
                vec![pod("a", "p2", app.clone()), pod("a", "p1", app.clone())],
                vec![pdb("a", "b", sel.clone(), 0)],
                (
                    vec![
                        ("a/p1", "a/b", 0, 2, NoDisruptionAllowed),
                        ("a/p2", "a/b", 0, 2, NoDisruptionAllowed),
                    ],
                    0,
                ),
            ),
            (
                "budget not observed yet",
                vec![pod("a", "p", app.clone())],
                vec![with(
                    pdb("a", "b", sel.clone(), 3),
                    &["metadata", "generation"],
                    json!(3),
                )],
                (vec![("a/p", "a/b", 0, 1, NotObserved)], 0),
            ),
            (
                "budget without status",
                vec![pod("a", "p", app.clone())],
                vec![with(
                    pdb("a", "b", sel.clone(), 3),
                    &["status"],
                    Value::Null,
                )],
                (vec![("a/p", "a/b", 0, 1, NotObserved)], 0),
            ),
            (
                "DaemonSet pod is not evicted",
                vec![with(
                    pod("a", "p", app.clone()),
                    &["metadata", "ownerReferences"],
                    json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "u", "controller": true}]),
                )],
                vec![pdb("a", "b", sel.clone(), 0)],
                (vec![], 0),
            ),
            (
                "mirror pod is not evicted",
                vec![with(
                    pod("a", "p", app.clone()),
                    &["metadata", "annotations"],
                    json!({"kubernetes.io/config.mirror": "x"}),
                )],
                vec![pdb("a", "b", sel.clone(), 0)],
                (vec![], 0),
            ),
            (
                "completed pod needs nothing",
                vec![with(
                    pod("a", "p", app.clone()),
                    &["status", "phase"],
                    json!("Succeeded"),
                )],
                vec![pdb("a", "b", sel.clone(), 0)],
                (vec![], 0),
            ),
            (
                "pending pod: the Eviction API ignores budgets",
                vec![with(
                    pod("a", "p", app.clone()),
                    &["status", "phase"],
                    json!("Pending"),
                )],
                vec![pdb("a", "b", sel.clone(), 0)],
                (vec![], 0),
            ),
            (
                "terminating pod needs nothing",
                vec![with(
                    pod("a", "p", app.clone()),
                    &["metadata", "deletionTimestamp"],
                    json!("2026-01-01T00:00:00Z"),
                )],
                vec![pdb("a", "b", sel.clone(), 0)],
                (vec![], 0),
            ),
            (
                "unready pod, AlwaysAllow",
                vec![with(
                    pod("a", "p", app.clone()),
                    &["status", "conditions"],
                    json!([{"type": "Ready", "status": "False"}]),
                )],
                vec![with(
                    pdb("a", "b", sel.clone(), 0),
                    &["spec", "unhealthyPodEvictionPolicy"],
                    json!("AlwaysAllow"),
                )],
                (vec![], 0),
            ),
            (
                "unready pod, IfHealthyBudget with a healthy budget",
                vec![with(
                    pod("a", "p", app.clone()),
                    &["status", "conditions"],
                    json!([{"type": "Ready", "status": "False"}]),
                )],
                // currentHealthy 3 >= desiredHealthy 3 (allowed 0): the unhealthy pod goes.
                vec![pdb("a", "b", sel.clone(), 0)],
                (vec![], 0),
            ),
            (
                "unready pod, IfHealthyBudget with an unhealthy budget",
                vec![with(
                    pod("a", "p", app.clone()),
                    &["status", "conditions"],
                    json!([{"type": "Ready", "status": "False"}]),
                )],
                vec![with(
                    pdb("a", "b", sel.clone(), 0),
                    &["status", "currentHealthy"],
                    json!(2),
                )],
                (vec![("a/p", "a/b", 0, 1, NoDisruptionAllowed)], 0),
            ),
            (
                "ready pod under a healthy budget still needs a disruption",
                vec![pod("a", "p", app.clone())],
                vec![pdb("a", "b", sel.clone(), 0)],
                (vec![("a/p", "a/b", 0, 1, NoDisruptionAllowed)], 0),
            ),
        ];
        for (name, pods, pdbs, (blocked, staged)) in cases {
            let v = run(pods, pdbs);
            assert_eq!(rows(&v.blocked), blocked, "{name}");
            assert_eq!(v.staged.len(), staged, "{name}: staged {:?}", v.staged);
            assert_eq!(v.can_drain(), blocked.is_empty(), "{name}");
        }
    }

    #[test]
    fn message_names_pods_and_budgets() {
        let v = run(
            vec![
                pod("a", "p", json!({"app": "web"})),
                pod("a", "q", json!({"app": "web"})),
            ],
            vec![
                pdb("a", "b", json!({"matchLabels": {"app": "web"}}), 0),
                pdb("a", "c", json!({"matchLabels": {"app": "nope"}}), 0),
            ],
        );
        assert_eq!(
            v.message(),
            "drain waits for PodDisruptionBudgets (node not cordoned): \
             pod a/p (PodDisruptionBudget a/b allows 0 disruptions, 2 needed); \
             pod a/q (PodDisruptionBudget a/b allows 0 disruptions, 2 needed)"
        );
        assert_eq!(run(vec![], vec![]).message(), "");
    }
}
