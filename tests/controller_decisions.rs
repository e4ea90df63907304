//! The controller's pure decisions, as tables: which drain request a Node asks for
//! (`controller::drain::decide`), what a drain does with each pod (`cluster::drain::classify`,
//! shared with the daemon's self-drain), and the status of `MachineConfiguration/cluster`
//! (`controller::policy::desired_status`).

use k8s_openapi::api::core::v1::Pod;
use machine_config_daemon::cluster::drain::{Disposition, classify};
use machine_config_daemon::controller::drain::{DrainDecision, DrainView, blocked_message, decide};
use machine_config_daemon::controller::policy::{
    CONDITION_TYPE, REASON_INVALID, REASON_VALID, desired_status, evaluate,
};
use machine_config_daemon::model::policy::{Action, FilePolicy, Policy, defaults, effective};
use serde_json::{Value, json};
use std::time::Duration;

fn view(desired: Option<&str>, last: Option<&str>, single_replica: bool) -> DrainView {
    DrainView {
        uid: None,
        desired_drain: desired.map(str::to_string),
        last_applied_drain: last.map(str::to_string),
        single_replica,
    }
}

type Row<'a> = (Option<&'a str>, Option<&'a str>, bool, usize, DrainDecision);

#[test]
fn drain_decisions() {
    use DrainDecision::*;
    let v = |s: &str| s.to_string();
    // desiredDrain, lastAppliedDrain, SingleReplica, Nodes in the cluster, decision.
    let table: &[Row] = &[
        (None, None, false, 3, Idle),
        (None, Some("drain-a"), false, 3, Idle),
        (Some("drain-a"), Some("drain-a"), false, 3, Idle),
        (Some("uncordon-a"), Some("uncordon-a"), false, 3, Idle),
        (
            Some("drain-a"),
            None,
            false,
            3,
            Drain {
                value: v("drain-a"),
            },
        ),
        (
            Some("drain-b"),
            Some("uncordon-a"),
            false,
            2,
            Drain {
                value: v("drain-b"),
            },
        ),
        (
            Some("uncordon-a"),
            Some("drain-a"),
            false,
            3,
            Uncordon {
                value: v("uncordon-a"),
            },
        ),
        // Single-node: by topology, or by the Node count; uncordon is always done.
        (
            Some("drain-a"),
            None,
            true,
            3,
            SkipSingleNode {
                value: v("drain-a"),
            },
        ),
        (
            Some("drain-a"),
            None,
            false,
            1,
            SkipSingleNode {
                value: v("drain-a"),
            },
        ),
        (
            Some("uncordon-a"),
            None,
            true,
            1,
            Uncordon {
                value: v("uncordon-a"),
            },
        ),
        // Not a request this controller understands.
        (
            Some("drain-"),
            None,
            false,
            3,
            Invalid { value: v("drain-") },
        ),
        (
            Some("reboot-a"),
            None,
            false,
            3,
            Invalid {
                value: v("reboot-a"),
            },
        ),
        (Some(""), None, false, 3, Invalid { value: v("") }),
    ];
    for (desired, last, single, nodes, want) in table {
        let got = decide(&view(*desired, *last, *single), *nodes);
        assert_eq!(
            &got, want,
            "desired {desired:?} last {last:?} single {single} nodes {nodes}"
        );
    }
}

#[test]
fn drain_view_reads_the_annotations() {
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
        "metadata": {"name": "n", "uid": "u1", "annotations": {
            "machineconfiguration.openshift.io/desiredDrain": "drain-a",
            "machineconfiguration.openshift.io/lastAppliedDrain": "uncordon-z",
            "machineconfiguration.openshift.io/controlPlaneTopology": "SingleReplica",
        }},
    }))
    .unwrap();
    assert_eq!(
        DrainView::from_node(&node),
        DrainView {
            uid: Some("u1".into()),
            desired_drain: Some("drain-a".into()),
            last_applied_drain: Some("uncordon-z".into()),
            single_replica: true,
        }
    );
}

#[test]
fn blocked_messages_name_the_node_the_request_and_the_pods() {
    assert_eq!(
        blocked_message(
            "worker-0",
            "drain-rendered-worker-2",
            Duration::from_secs(3601),
            &["apps/web".into(), "db/pg-0".into()]
        ),
        "drain of node worker-0 (drain-rendered-worker-2) not complete after 1h 1s; pods blocking: apps/web, db/pg-0"
    );
    assert_eq!(
        blocked_message("w", "drain-a", Duration::from_millis(300), &[]),
        "drain of node w (drain-a) not complete after 1s"
    );
}

fn pod(v: Value) -> Pod {
    let mut base = json!({
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Running"},
    });
    merge(&mut base, &v);
    serde_json::from_value(base).unwrap()
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn owner(kind: &str, controller: bool) -> Value {
    json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": kind, "name": "o",
        "uid": "o-uid", "controller": controller}]}})
}

#[test]
fn pod_dispositions() {
    let evict = Disposition::Evict { warning: None };
    let table: Vec<(&str, Value, Disposition)> = vec![
        ("replicaset pod", owner("ReplicaSet", true), evict.clone()),
        (
            "daemonset pod",
            owner("DaemonSet", true),
            Disposition::Skip("DaemonSet pod"),
        ),
        (
            "mirror pod",
            json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}}),
            Disposition::Skip("mirror pod"),
        ),
        (
            "succeeded",
            json!({"status": {"phase": "Succeeded"}}),
            Disposition::Skip("completed pod"),
        ),
        (
            "failed",
            json!({"status": {"phase": "Failed"}}),
            Disposition::Skip("completed pod"),
        ),
        (
            "no controller",
            json!({}),
            Disposition::Evict {
                warning: Some(
                    "ns/p: evicting a pod without controller; it will not be recreated".into(),
                ),
            },
        ),
        (
            "owner that is not its controller",
            owner("ConfigMap", false),
            Disposition::Evict {
                warning: Some(
                    "ns/p: evicting a pod without controller; it will not be recreated".into(),
                ),
            },
        ),
        (
            "emptyDir",
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                "name": "o", "uid": "u", "controller": true}]},
                   "spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}),
            Disposition::Evict {
                warning: Some("ns/p: evicting a pod with emptyDir; its local data is lost".into()),
            },
        ),
        (
            "pending pod",
            json!({"status": {"phase": "Pending"}}),
            Disposition::Evict {
                warning: Some(
                    "ns/p: evicting a pod without controller; it will not be recreated".into(),
                ),
            },
        ),
    ];
    for (what, patch, want) in table {
        assert_eq!(classify(&pod(patch)), want, "{what}");
    }
}

fn condition(status: &Value) -> Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == CONDITION_TYPE)
        .unwrap()
        .clone()
}

const NOW: &str = "2026-11-30T10:00:00Z";
const LATER: &str = "2026-11-30T11:00:00Z";

#[test]
fn policy_status_of_a_valid_spec_is_the_merged_policy() {
    let spec = json!({"files": [{"path": "/etc/chrony.conf",
        "actions": [{"type": "Reload", "reload": {"serviceName": "chronyd.service"}}]}]});
    let status = desired_status(Some(3), &spec, &Value::Null, NOW);
    assert_eq!(status["observedGeneration"], 3);
    let policies = &status["nodeDisruptionPolicyStatus"]["clusterPolicies"];
    let want = effective(&Policy {
        files: vec![FilePolicy {
            path: "/etc/chrony.conf".into(),
            actions: vec![Action::reload("chronyd.service")],
        }],
        ..Policy::default()
    });
    assert_eq!(policies, &serde_json::to_value(&want).unwrap());
    assert_eq!(
        policies["files"].as_array().unwrap().last().unwrap()["path"],
        "/etc/chrony.conf"
    );
    let c = condition(&status);
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], REASON_VALID);
    assert_eq!(c["lastTransitionTime"], NOW);
    assert_eq!(c["observedGeneration"], 3);

    // Nothing changed: the same status (the write is skipped), transition time kept.
    let again = desired_status(Some(3), &spec, &status, LATER);
    assert_eq!(again, status);
    // No spec policy: the defaults.
    let none = desired_status(Some(1), &Value::Null, &Value::Null, NOW);
    assert_eq!(
        none["nodeDisruptionPolicyStatus"]["clusterPolicies"],
        serde_json::to_value(defaults()).unwrap()
    );
}

#[test]
fn an_invalid_spec_is_reported_and_never_applied() {
    let good = json!({"units": [{"name": "auditd.service", "actions": [{"type": "Drain"}]}]});
    let first = desired_status(Some(1), &good, &Value::Null, NOW);
    let table: &[(Value, &[&str])] = &[
        (
            json!({"files": [{"path": "etc/x", "actions": [{"type": "None"}]}]}),
            &["spec.nodeDisruptionPolicy.files[0].path", "absolute"],
        ),
        (
            json!({"files": [{"path": "/etc/a/../b", "actions": [{"type": "None"}]}]}),
            &["spec.nodeDisruptionPolicy.files[0].path", ".."],
        ),
        (
            json!({"units": [{"name": "x.service", "actions": [{"type": "Special"}]}]}),
            &["spec.nodeDisruptionPolicy.units[0].actions[0]", "Special"],
        ),
        (
            json!({"sshkey": {"actions": [{"type": "Reboot"}, {"type": "Drain"}]}}),
            &["spec.nodeDisruptionPolicy.sshkey.actions", "Reboot"],
        ),
        (
            json!({"files": [{"path": "/a", "actions": [{"type": "Reload"}]}]}),
            &[
                "spec.nodeDisruptionPolicy.files[0].actions[0]",
                "reload is required",
            ],
        ),
    ];
    for (spec, words) in table {
        let status = desired_status(Some(2), spec, &first, LATER);
        // Observed, but the last good policy stays.
        assert_eq!(status["observedGeneration"], 2, "{spec}");
        assert_eq!(
            status["nodeDisruptionPolicyStatus"], first["nodeDisruptionPolicyStatus"],
            "{spec}"
        );
        let c = condition(&status);
        assert_eq!(c["status"], "True", "{spec}");
        assert_eq!(c["reason"], REASON_INVALID, "{spec}");
        assert_eq!(c["lastTransitionTime"], LATER, "{spec}");
        let message = c["message"].as_str().unwrap();
        for w in *words {
            assert!(message.contains(w), "{spec}: {message:?} lacks {w:?}");
        }
    }
    // Invalid from the start: the defaults are in effect.
    let bad = json!({"files": [{"path": "rel", "actions": [{"type": "None"}]}]});
    let status = desired_status(Some(1), &bad, &Value::Null, NOW);
    assert_eq!(
        status["nodeDisruptionPolicyStatus"]["clusterPolicies"],
        serde_json::to_value(defaults()).unwrap()
    );
}

#[test]
fn other_conditions_and_fields_are_kept() {
    let current = json!({
        "conditions": [{"type": "BootImageUpdateDegraded", "status": "False", "reason": "AsExpected",
                        "message": "m", "lastTransitionTime": NOW}],
        "managedBootImagesStatus": {"machineManagers": []},
    });
    let status = desired_status(Some(1), &Value::Null, &current, NOW);
    let conditions = status["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 2);
    assert_eq!(conditions[0], current["conditions"][0]);
    assert_eq!(
        status["managedBootImagesStatus"],
        current["managedBootImagesStatus"]
    );
}

#[test]
fn the_effective_policy_reloads_crio_for_registries_d() {
    // The merged status keeps the defaults' Special entry (status rules allow it).
    let merged = evaluate(&Value::Null).unwrap();
    assert!(
        merged
            .files
            .iter()
            .any(|f| f.path == "/etc/containers/registries.conf" && f.actions == [Action::Special])
    );
}
