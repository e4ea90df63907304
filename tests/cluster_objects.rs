//! MachineConfig fetch, the policy object, events and the MachineConfigNode (SPEC §3, §8).

mod support;

use std::time::Duration;

use machine_config_daemon::cluster::events::{EventReason, NodeEvents};
use machine_config_daemon::cluster::machineconfig::fetch_machine_config;
use machine_config_daemon::cluster::mcn::{
    Condition, ConditionStatus, ConditionType, MachineConfigNodes,
};
use machine_config_daemon::cluster::policy::{ClusterPolicy, PolicyWatch};
use machine_config_daemon::cluster::{ClusterError, Options};
use machine_config_daemon::model::policy::Action;
use serde_json::{Value, json};
use support::{
    EVENTS, MACHINECONFIGNODES, MACHINECONFIGS, MACHINECONFIGURATIONS, TestApiServer, eventually,
};

/// Bound on waits that end on an event (generous: reached only when the behaviour is broken).
const WAIT: Duration = Duration::from_secs(30);

fn machine_config(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"config": {"ignition": {"version": "3.4.0"}, "storage": {"files": [
            {"path": "/etc/motd", "contents": {"source": "data:,hello"}, "mode": 420}
        ]}}},
    })
}

#[tokio::test]
async fn machine_config_fetched_by_name_only() {
    let server = TestApiServer::start().await;
    server.put(MACHINECONFIGS, machine_config("rendered-worker-1"));
    server.put(MACHINECONFIGS, machine_config("rendered-worker-2"));
    let mc = fetch_machine_config(&server.client(), "rendered-worker-2", &Options::fast())
        .await
        .unwrap();
    assert_eq!(mc["kind"], "MachineConfig");
    assert_eq!(mc["apiVersion"], "machineconfiguration.openshift.io/v1");
    assert_eq!(mc["metadata"]["name"], "rendered-worker-2");
    assert_eq!(
        mc["spec"]["config"]["storage"]["files"][0]["path"],
        "/etc/motd"
    );
    assert_eq!(
        server.count("list") + server.count("watch"),
        0,
        "no list, no watch"
    );
    assert_eq!(
        server.count_on("get", "/machineconfigs/rendered-worker-2"),
        1
    );
}

#[tokio::test]
async fn missing_machine_config_is_a_clear_error() {
    let server = TestApiServer::start().await;
    let err = fetch_machine_config(&server.client(), "rendered-worker-9", &Options::fast())
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::MachineConfigNotFound { .. }));
    assert_eq!(
        err.to_string(),
        "MachineConfig \"rendered-worker-9\" not found (machineconfiguration.openshift.io/v1 machineconfigs)"
    );
}

fn machine_configuration(generation_observed: Option<i64>) -> Value {
    let mut obj = json!({
        "metadata": {"name": "cluster", "generation": 2},
        "spec": {"nodeDisruptionPolicy": {"files": [
            {"path": "/etc/chrony.conf", "actions": [{"type": "Reload", "reload": {"serviceName": "chronyd.service"}}]}
        ]}},
    });
    if let Some(g) = generation_observed {
        obj["status"] = json!({
            "observedGeneration": g,
            "nodeDisruptionPolicyStatus": {"clusterPolicies": {"files": [
                {"path": "/etc/chrony.conf", "actions": [{"type": format!("G{g}")}]}
            ]}},
        });
    }
    obj
}

#[tokio::test]
async fn policy_waits_for_observed_generation_then_uses_status() {
    let server = TestApiServer::start().await;
    let mut obj = machine_configuration(Some(1));
    // The operator's status for generation 1 says Reboot; generation 2 will say None.
    obj["status"]["nodeDisruptionPolicyStatus"]["clusterPolicies"]["files"][0]["actions"] =
        json!([{"type": "Reboot"}]);
    server.put(MACHINECONFIGURATIONS, obj);
    let watch = PolicyWatch::new(server.client(), Options::fast());
    // The operator observes generation 2 once the daemon is watching (it has listed the stale
    // status by then): getting generation 2's policy, not generation 1's Reboot, shows it waited.
    let operator = async {
        assert!(eventually(WAIT, || server.count("watch") >= 1).await);
        server.merge(
            MACHINECONFIGURATIONS,
            "",
            "cluster",
            json!({"status": {"observedGeneration": 2, "nodeDisruptionPolicyStatus": {"clusterPolicies": {
                "files": [{"path": "/etc/chrony.conf", "actions": [{"type": "None"}]}]}}}}),
        );
    };
    let (policy, ()) = tokio::join!(watch.current(), operator);
    let policy = policy.unwrap();
    match policy {
        ClusterPolicy::Effective { policy, stale } => {
            assert!(!stale);
            assert_eq!(policy.files[0].actions, vec![Action::None]);
        }
        other => panic!("expected the operator's policy, got {other:?}"),
    }
}

#[tokio::test]
async fn policy_status_never_observed_proceeds_after_the_wait_marked_stale() {
    let server = TestApiServer::start().await;
    let mut obj = machine_configuration(Some(1));
    obj["status"]["nodeDisruptionPolicyStatus"]["clusterPolicies"]["files"][0]["actions"] =
        json!([{"type": "Reboot"}]);
    server.put(MACHINECONFIGURATIONS, obj);
    let opts = Options {
        policy_wait: Duration::from_millis(500),
        ..Options::fast()
    };
    let watch = PolicyWatch::new(server.client(), opts);
    let policy = tokio::time::timeout(WAIT, watch.current())
        .await
        .expect("the wait is bounded by policy_wait")
        .unwrap();
    assert!(matches!(
        policy,
        ClusterPolicy::Effective { stale: true, .. }
    ));
}

#[tokio::test]
async fn policy_without_operator_status_returns_the_spec() {
    let server = TestApiServer::start().await;
    server.put(MACHINECONFIGURATIONS, machine_configuration(None));
    // Waiting for an operator would take an hour: no operator, no wait.
    let opts = Options {
        policy_wait: Duration::from_secs(3600),
        ..Options::fast()
    };
    let watch = PolicyWatch::new(server.client(), opts);
    let policy = tokio::time::timeout(WAIT, watch.current())
        .await
        .expect("no operator: no wait");
    match policy.unwrap() {
        ClusterPolicy::Spec(spec) => {
            assert_eq!(spec["files"][0]["path"], "/etc/chrony.conf");
            assert_eq!(
                spec["files"][0]["actions"][0]["reload"]["serviceName"],
                "chronyd.service"
            );
        }
        other => panic!("expected the spec, got {other:?}"),
    }
}

#[tokio::test]
async fn policy_without_object_means_cluster_defaults() {
    let server = TestApiServer::start().await;
    let watch = PolicyWatch::new(server.client(), Options::fast());
    assert_eq!(watch.current().await.unwrap(), ClusterPolicy::Defaults);
}

#[tokio::test]
async fn events_recorded_with_reason_type_and_reporter() {
    let server = TestApiServer::start().await;
    let events = NodeEvents::new(server.client(), "worker-0", Some("uid-7"), Options::fast());
    events
        .publish(
            EventReason::ConfigDriftDetected,
            "content mismatch for file \"/etc/motd\"",
        )
        .await
        .unwrap();
    events
        .publish(
            EventReason::NodeDone,
            "Setting node worker-0, currentConfig rendered-worker-2 to Done",
        )
        .await
        .unwrap();
    let stored = server.list(EVENTS);
    assert_eq!(stored.len(), 2);
    let drift = stored
        .iter()
        .find(|e| e["reason"] == "ConfigDriftDetected")
        .unwrap();
    assert_eq!(drift["type"], "Warning");
    assert_eq!(drift["reportingController"], "machineconfigdaemon");
    assert_eq!(drift["regarding"]["kind"], "Node");
    assert_eq!(drift["regarding"]["name"], "worker-0");
    assert_eq!(drift["regarding"]["uid"], "uid-7");
    assert_eq!(drift["note"], "content mismatch for file \"/etc/motd\"");
    let done = stored.iter().find(|e| e["reason"] == "NodeDone").unwrap();
    assert_eq!(done["type"], "Normal");

    // A repeat becomes a series (PATCH), a different note a new event with its own note.
    events
        .publish(
            EventReason::ConfigDriftDetected,
            "content mismatch for file \"/etc/motd\"",
        )
        .await
        .unwrap();
    events
        .publish(
            EventReason::ConfigDriftDetected,
            "content mismatch for file \"/etc/hosts\"",
        )
        .await
        .unwrap();
    let stored = server.list(EVENTS);
    assert_eq!(stored.len(), 3);
    assert!(
        stored
            .iter()
            .any(|e| e["note"] == "content mismatch for file \"/etc/hosts\"")
    );
    assert!(stored.iter().any(|e| e["series"]["count"] == 2));
}

fn condition<'a>(mcn: &'a Value, type_: &str) -> &'a Value {
    mcn["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("condition {type_} in {mcn}"))
}

#[tokio::test]
async fn machine_config_node_created_and_conditions_updated() {
    let server = TestApiServer::start().await;
    let mcn = MachineConfigNodes::new(server.client(), "worker-0", Options::fast());
    mcn.ensure("worker", "rendered-worker-2").await.unwrap();
    let obj = server.get(MACHINECONFIGNODES, "worker-0").expect("created");
    assert_eq!(
        obj["spec"],
        json!({"node": {"name": "worker-0"}, "pool": {"name": "worker"}, "configVersion": {"desired": "rendered-worker-2"}})
    );

    mcn.set_conditions(&[
        Condition::new(
            ConditionType::UpdatePrepared,
            ConditionStatus::True,
            "UpdatePrepared",
            "plan computed",
        ),
        Condition::new(
            ConditionType::Updated,
            ConditionStatus::False,
            "Updating",
            "applying rendered-worker-2",
        ),
    ])
    .await
    .unwrap();
    let obj = server.get(MACHINECONFIGNODES, "worker-0").unwrap();
    assert_eq!(condition(&obj, "UpdatePrepared")["status"], "True");
    assert_eq!(
        condition(&obj, "Updated")["message"],
        "applying rendered-worker-2"
    );
    assert!(
        condition(&obj, "Updated")["lastTransitionTime"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(
        obj["status"]["configVersion"]["desired"].is_null(),
        "desired only once validated"
    );

    // Not validated yet → no desired; validated → desired set. Unchanged writes send nothing.
    let writes_before = server.count_on("patch", "/machineconfignodes/worker-0/status");
    mcn.set_conditions(&[Condition::new(
        ConditionType::UpdatePrepared,
        ConditionStatus::True,
        "UpdatePrepared",
        "plan computed",
    )])
    .await
    .unwrap();
    assert_eq!(
        server.count_on("patch", "/machineconfignodes/worker-0/status"),
        writes_before
    );
    mcn.set_validated_desired("rendered-worker-2")
        .await
        .unwrap();
    mcn.set_conditions(&[Condition::new(
        ConditionType::Updated,
        ConditionStatus::True,
        "Updated",
        "done",
    )])
    .await
    .unwrap();
    let obj = server.get(MACHINECONFIGNODES, "worker-0").unwrap();
    assert_eq!(
        obj["status"]["configVersion"]["desired"],
        "rendered-worker-2"
    );
    assert_eq!(condition(&obj, "Updated")["status"], "True");
    assert_eq!(
        condition(&obj, "UpdatePrepared")["status"],
        "True",
        "others kept"
    );
    // The spec is not touched by status writes.
    assert_eq!(obj["spec"]["pool"]["name"], "worker");
}

#[tokio::test]
async fn machine_config_node_status_write_survives_conflict() {
    let server = TestApiServer::start().await;
    let mcn = MachineConfigNodes::new(server.client(), "worker-0", Options::fast());
    mcn.ensure("worker", "rendered-worker-1").await.unwrap();
    // Someone else writes the object: our cached resourceVersion is now stale.
    server.merge(
        MACHINECONFIGNODES,
        "",
        "worker-0",
        json!({"metadata": {"labels": {"x": "y"}}}),
    );
    mcn.set_conditions(&[Condition::new(
        ConditionType::NodeDegraded,
        ConditionStatus::False,
        "AsExpected",
        "",
    )])
    .await
    .unwrap();
    let obj = server.get(MACHINECONFIGNODES, "worker-0").unwrap();
    assert_eq!(condition(&obj, "NodeDegraded")["status"], "False");
    assert_eq!(obj["metadata"]["labels"]["x"], "y");
    // An existing object with another desired config gets its spec updated, not recreated.
    mcn.ensure("worker", "rendered-worker-2").await.unwrap();
    let obj = server.get(MACHINECONFIGNODES, "worker-0").unwrap();
    assert_eq!(obj["spec"]["configVersion"]["desired"], "rendered-worker-2");
    assert_eq!(condition(&obj, "NodeDegraded")["status"], "False");
}
