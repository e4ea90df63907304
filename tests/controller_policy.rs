//! The policy status controller (src/controller/policy.rs) against the test API server, for
//! what needs exact request counts: the status is written through the status subresource once
//! per change of the spec, and not at all when a change leaves it as it is.

mod support;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use machine_config_daemon::cluster::policy::machine_configuration_resource;
use machine_config_daemon::controller::policy::{PolicyStatusOptions, run};
use serde_json::{Value, json};
use std::time::Duration;
use support::{MACHINECONFIGURATIONS, TestApiServer, eventually};

const WAIT: Duration = Duration::from_secs(20);

fn status_writes(server: &TestApiServer) -> usize {
    server.count_on("patch", "/machineconfigurations/cluster/status")
}

fn stored(server: &TestApiServer) -> Value {
    server.get(MACHINECONFIGURATIONS, "cluster").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_written_once_per_change_and_never_when_nothing_changes() {
    let server = TestApiServer::start().await;
    let api: Api<DynamicObject> = Api::all_with(server.client(), &machine_configuration_resource());
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "operator.openshift.io/v1", "kind": "MachineConfiguration",
        "metadata": {"name": "cluster"},
        "spec": {"nodeDisruptionPolicy": {"sshkey": {"actions": [{"type": "Drain"}]}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let opts = PolicyStatusOptions {
        api: machine_config_daemon::cluster::Options::fast(),
    };
    let task = tokio::spawn(run(server.client(), opts));

    // (A request is counted when it arrives, before it is stored: wait for the stored status.)
    assert!(
        eventually(WAIT, || stored(&server)["status"]["observedGeneration"]
            == 1)
        .await
    );
    let first = stored(&server);
    assert_eq!(
        first["status"]["nodeDisruptionPolicyStatus"]["clusterPolicies"]["sshkey"],
        json!({"actions": [{"type": "Drain"}]})
    );

    // The controller's own write (its echo on the watch) and a change that leaves the status
    // as it is (a label): no write. Then a spec change: one write. Events are handled in
    // order, so once the second write is seen both were handled, without a write.
    api.patch(
        "cluster",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "cluster",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"nodeDisruptionPolicy": {"sshkey": {"actions": [{"type": "None"}]}}}}),
        ),
    )
    .await
    .unwrap();
    assert!(
        eventually(WAIT, || stored(&server)["status"]["observedGeneration"]
            == 2)
        .await,
        "{:#}",
        stored(&server)
    );
    assert_eq!(status_writes(&server), 2);
    assert_eq!(
        stored(&server)["status"]["conditions"][0]["reason"],
        "AsExpected"
    );
    task.abort();
}
