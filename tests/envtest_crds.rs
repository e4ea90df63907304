//! The packaged MachineConfigNode and MachineConfig CRDs (generated from src/cluster/crd.rs) on
//! a real kube-apiserver (tests/envtest/, without the upstream CRDs): valid objects are stored,
//! and MachineConfigNodes upstream's schema refuses are refused by ours too. Skipped, saying so, where the
//! envtest bundle is absent (failed under `CI`).

mod envtest;

use envtest::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::path::Path;

fn mcn(name: &str, node: &str, desired: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfigNode",
        "metadata": {"name": name},
        "spec": {"node": {"name": node}, "pool": {"name": "worker"},
                 "configVersion": {"desired": desired}},
    }))
    .unwrap()
}

fn condition(reason: &str) -> Value {
    json!({"type": "Updated", "status": "True", "reason": reason, "message": "m",
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

/// The 422 of a refused write, with the field it names.
fn refused<T: std::fmt::Debug>(r: Result<T, kube::Error>, field: &str) {
    match r {
        Err(kube::Error::Api(s)) if s.code == 422 => {
            assert!(s.message.contains(field), "{field}: {}", s.message)
        }
        other => panic!("{field}: expected a 422, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packaged_crd_refuses_what_upstream_refuses() {
    let Some(env) = envtest_without_crds("packaged_crd") else {
        return;
    };
    let client = env.client().await;
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes");
    for (file, name) in [
        (
            "12-crd-machineconfignode.yaml",
            "machineconfignodes.machineconfiguration.openshift.io",
        ),
        (
            "10-crd-machineconfig.yaml",
            "machineconfigs.machineconfiguration.openshift.io",
        ),
    ] {
        apply_yaml(&client, &pkg.join(file), false).await;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let established = kube::runtime::wait::await_condition(
            crds,
            name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(WAIT, established)
            .await
            .expect("CRD established in time")
            .unwrap();
    }
    // A MachineConfig as the daemon reads it is stored whole (the Ignition config stays open).
    put_machine_config(&client, machine_config("rendered-worker-1", "/etc/x", "x")).await;
    let mc = machine_configs(&client)
        .get("rendered-worker-1")
        .await
        .unwrap();
    assert_eq!(
        mc.data["spec"]["config"]["storage"]["files"][0]["path"],
        "/etc/x"
    );
    let api = machine_config_nodes(&client);
    let pp = PostParams::default();

    // Valid: stored, and its status accepted.
    api.create(&pp, &mcn("node-a", "node-a", "rendered-worker-1"))
        .await
        .unwrap();
    let status = |conditions: Value, generation: i64| {
        Patch::Merge(json!({"status": {"observedGeneration": generation,
            "conditions": conditions,
            "configVersion": {"desired": "rendered-worker-1", "current": "rendered-worker-1"}}}))
    };
    let params = PatchParams::default();
    api.patch_status("node-a", &params, &status(json!([condition("Done")]), 2))
        .await
        .unwrap();

    // The name must be the node's; names must be DNS-1123 subdomains.
    refused(
        api.create(&pp, &mcn("node-b", "node-c", "rendered-worker-1"))
            .await,
        "spec.node.name should match metadata.name",
    );
    refused(
        api.create(&pp, &mcn("node-d", "node-d", "Bad_Name")).await,
        "spec.configVersion.desired",
    );
    refused(
        api.create(&pp, &mcn("node-e", "node-e", "")).await,
        "spec.configVersion.desired",
    );
    // Conditions: a reason is required and follows upstream's pattern; at most 20.
    refused(
        api.patch_status("node-a", &params, &status(json!([condition("")]), 2))
            .await,
        "reason",
    );
    refused(
        api.patch_status("node-a", &params, &status(json!([condition("not ok!")]), 2))
            .await,
        "reason",
    );
    let many: Vec<Value> = (0..21)
        .map(|i| {
            let mut c = condition("Done");
            c["type"] = json!(format!("T{i}"));
            c
        })
        .collect();
    refused(
        api.patch_status("node-a", &params, &status(json!(many), 2))
            .await,
        "conditions",
    );
    // observedGeneration never decreases.
    refused(
        api.patch_status("node-a", &params, &status(json!([condition("Done")]), 1))
            .await,
        "observedGeneration must not decrease",
    );
    let mut bad_current = status(json!([condition("Done")]), 2);
    if let Patch::Merge(v) = &mut bad_current {
        v["status"]["configVersion"]["current"] = json!("Bad_Name");
    }
    refused(
        api.patch_status("node-a", &params, &bad_current).await,
        "status.configVersion.current",
    );
}

/// A MachineConfiguration named `name` with `spec`.
fn machine_configuration(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "operator.openshift.io/v1",
        "kind": "MachineConfiguration",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packaged_machine_configuration_crd_refuses_what_upstream_refuses() {
    let Some(env) = envtest_without_crds("packaged_machine_configuration_crd") else {
        return;
    };
    let client = env.client().await;
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes");
    apply_yaml(
        &client,
        &pkg.join("11-crd-machineconfiguration.yaml"),
        false,
    )
    .await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let established = kube::runtime::wait::await_condition(
        crds,
        "machineconfigurations.operator.openshift.io",
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(WAIT, established)
        .await
        .expect("CRD established in time")
        .unwrap();
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &gvk(
            "operator.openshift.io",
            "v1",
            "MachineConfiguration",
            "machineconfigurations",
        ),
    );
    let pp = PostParams::default();

    // Valid as users write it: stored as written; a field this CRD leaves out is pruned.
    let valid = json!({
        "managementState": "Managed",
        "logLevel": "Debug",
        "managedBootImages": {"machineManagers": []},
        "nodeDisruptionPolicy": {
            "files": [{"path": "/etc/chrony.conf",
                       "actions": [{"type": "Reload", "reload": {"serviceName": "chronyd.service"}}]}],
            "units": [{"name": "auditd.service", "actions": [{"type": "Drain"}, {"type": "DaemonReload"}]}],
            "sshkey": {"actions": [{"type": "None"}]},
        },
    });
    let stored = api
        .create(&pp, &machine_configuration("cluster", valid.clone()))
        .await
        .unwrap();
    assert_eq!(
        stored.data["spec"]["nodeDisruptionPolicy"],
        valid["nodeDisruptionPolicy"]
    );
    assert_eq!(stored.data["spec"]["operatorLogLevel"], "Normal", "default");
    assert!(stored.data["spec"]["managedBootImages"].is_null(), "pruned");

    // The typed object reads it back.
    let typed: Api<machine_config_daemon::cluster::machineconfiguration::MachineConfiguration> =
        Api::all(client.clone());
    let got = typed.get("cluster").await.unwrap();
    let policy = got.spec.node_disruption_policy.unwrap();
    assert_eq!(policy.files[0].path, "/etc/chrony.conf");

    let policy = |p: Value| json!({"nodeDisruptionPolicy": p});
    let action = |a: Value| policy(json!({"files": [{"path": "/etc/x", "actions": a}]}));
    for (name, spec, field) in [
        (
            "reboot-not-alone",
            action(json!([{"type": "Reboot"}, {"type": "Drain"}])),
            "Reboot action can only be specified standalone",
        ),
        (
            "none-not-alone",
            action(json!([{"type": "None"}, {"type": "Drain"}])),
            "None action can only be specified standalone",
        ),
        (
            "reload-without-service",
            action(json!([{"type": "Reload"}])),
            "reload is required when type is Reload",
        ),
        (
            "restart-on-drain",
            action(json!([{"type": "Drain", "restart": {"serviceName": "a.service"}}])),
            "restart is required when type is Restart, and forbidden otherwise",
        ),
        (
            "special-in-spec",
            action(json!([{"type": "Special"}])),
            "spec.nodeDisruptionPolicy.files[0].actions[0].type",
        ),
        (
            "bad-suffix",
            policy(json!({"units": [{"name": "auditd", "actions": [{"type": "None"}]}]})),
            "Invalid ${SERVICETYPE} in service name",
        ),
        (
            "bad-service",
            action(json!([{"type": "Restart", "restart": {"serviceName": "a b.service"}}])),
            "Invalid ${NAME} in service name",
        ),
        (
            "duplicate-path",
            policy(json!({"files": [
                {"path": "/etc/x", "actions": [{"type": "None"}]},
                {"path": "/etc/x", "actions": [{"type": "Drain"}]}]})),
            "Duplicate value",
        ),
        (
            "sshkey-without-actions",
            policy(json!({"sshkey": {}})),
            "spec.nodeDisruptionPolicy.sshkey.actions",
        ),
        (
            "eleven-actions",
            action(json!(vec![json!({"type": "Drain"}); 11])),
            "spec.nodeDisruptionPolicy.files[0].actions",
        ),
        (
            "bad-management-state",
            json!({"managementState": "Sometimes"}),
            "spec.managementState",
        ),
    ] {
        refused(
            api.create(&pp, &machine_configuration(name, spec)).await,
            field,
        );
    }

    // Status: the effective policy may carry Special; a bad observedGeneration type is refused.
    let status = json!({"status": {
        "observedGeneration": 1,
        "nodeDisruptionPolicyStatus": {"clusterPolicies": {
            "files": [{"path": "/etc/containers/registries.conf", "actions": [{"type": "Special"}]}],
            "units": [], "sshkey": {"actions": [{"type": "None"}]}}},
        "conditions": [condition("AsExpected")],
    }});
    api.patch_status("cluster", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    refused(
        api.patch_status(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [condition("")]}})),
        )
        .await,
        "reason",
    );
}
