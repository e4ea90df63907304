//! The packaged RBAC (packaging/kubernetes/) is enough, checked against what the daemon really
//! does: the namespace, ServiceAccount, ClusterRole and binding are created on a real
//! kube-apiserver (tests/envtest/), the DaemonSet is accepted by a server dry run (privileged
//! pods allowed), and the daemon runs with a token of the packaged ServiceAccount through a
//! bootstrap, an update with a self-drain (cordon, pod list and watch, eviction, uncordon),
//! drift (events created and patched) and its MachineConfigNode. Any 403 fails the test.
//! Skipped, saying so, where the envtest bundle is absent (failed under `CI`).

mod envtest;

use envtest::*;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::path::Path;

const FILE: &str = "/etc/mco-test-file";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_as_the_packaged_service_account_without_a_403() {
    let Some(mut c) = EnvCluster::new(
        "packaged_rbac",
        "et-rbac",
        json!({DESIRED_CONFIG: "et-rbac-1"}),
    )
    .await
    else {
        return;
    };
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes");
    for f in [
        "00-namespace.yaml",
        "01-serviceaccount.yaml",
        "02-rbac.yaml",
    ] {
        apply_yaml(&c.client, &pkg.join(f), false).await;
    }
    let ds = apply_yaml(&c.client, &pkg.join("03-daemonset.yaml"), true).await;
    assert_eq!(ds, ["DaemonSet/machine-config-daemon"]);

    let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "machine-config-daemon");
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": [],
        "expirationSeconds": 3600}}))
    .unwrap();
    let tr = sas
        .create_token_request("machine-config-daemon", &PostParams::default(), &tr)
        .await
        .unwrap();
    let token = tr.status.unwrap().token;
    let kubeconfig = c.dir.path().join("sa.kubeconfig");
    c.env.token_kubeconfig(&kubeconfig, &token);

    put_machine_config(&c.client, machine_config("et-rbac-1", FILE, "one")).await;
    put_machine_config(&c.client, machine_config("et-rbac-2", FILE, "two")).await;
    let ns = "et-rbac-pods";
    namespace(&c.client, ns).await;
    let pods: Api<Pod> = c.pods(ns);
    let _ = pods
        .delete("app", &DeleteParams::default().grace_period(0))
        .await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "app", "namespace": ns},
        "spec": {"nodeName": "et-rbac", "containers": [{"name": "c", "image": "example"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();

    c.start_daemon_with(
        &kubeconfig,
        &["--drain-mode", "self", "--drain-timeout", "5m"],
    );
    c.wait_state("Done", Some("et-rbac-1")).await;

    // An update with a self-drain; the test finishes the eviction as the kubelet would.
    c.annotate(json!({DESIRED_CONFIG: "et-rbac-2"})).await;
    let evicted = wait_until(|| async {
        pods.get_opt("app")
            .await
            .unwrap()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(evicted, "pod not evicted\n{}", c.log());
    let _ = pods
        .delete("app", &DeleteParams::default().grace_period(0))
        .await;
    c.wait_state("Done", Some("et-rbac-2")).await;
    assert_eq!(c.file(FILE).as_deref(), Some("two"));

    // Drift: a Warning event (created), then the same again (patched as a series).
    for _ in 0..2 {
        c.write_file(FILE, "edited by hand");
        c.wait_state("Degraded", None).await;
        c.write_file(FILE, "two");
        c.wait_state("Done", Some("et-rbac-2")).await;
    }
    c.wait_event("ConfigDriftDetected", |e| {
        e["reason"] == "ConfigDriftDetected"
            && e["series"]["count"].as_i64().is_some_and(|n| n >= 2)
    })
    .await;
    let mcn = c.mcn().await.expect("MachineConfigNode created");
    assert_eq!(mcn["spec"]["configVersion"]["desired"], "et-rbac-2");

    let log = c.log();
    // (Not a bare "403": timestamps contain it.)
    for word in ["code: 403", "forbidden", "Forbidden"] {
        assert!(!log.contains(word), "{word} in the daemon's log:\n{log}");
    }
    assert!(c.alive());
}

async fn wait_until<F, Fut>(mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}
