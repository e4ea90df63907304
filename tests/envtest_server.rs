//! The machine config server against a real kube-apiserver (tests/envtest/) with the upstream
//! MachineConfigPool and MachineConfig CRDs, as the packaged ServiceAccount: the packaged RBAC
//! (packaging/kubernetes/40-server-rbac.yaml) is created, the DaemonSet and Service are accepted
//! by a server dry run, and the server, holding a token of that ServiceAccount, fills its caches
//! (a 403 on a list or watch would keep `/healthz` at 503), serves a pool's config and then the
//! next one the pool moves to. Skipped, saying so, where the envtest bundle is absent (failed
//! under `CI`).

mod envtest;
mod mcs_client;

use envtest::*;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use machine_config_daemon::server::{Server, ServerOptions};
use mcs_client::{IGN, Pki, get_tls};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const FILE: &str = "/etc/mco-test-file";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_a_real_pool_as_the_packaged_service_account() {
    let Some(env) = envtest("server_packaged_rbac") else {
        return;
    };
    let admin = env.client().await;
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes");
    apply_yaml(&admin, &pkg.join("00-namespace.yaml"), false).await;
    apply_yaml(&admin, &pkg.join("40-server-rbac.yaml"), false).await;
    let dry = apply_yaml(&admin, &pkg.join("41-server.yaml"), true).await;
    assert_eq!(
        dry,
        [
            "DaemonSet/machine-config-server",
            "Service/machine-config-server"
        ]
    );

    // The upstream schema: a pool with spec.configuration, its status through /status.
    put_machine_config(&admin, machine_config("rendered-et-srv-1", FILE, "one")).await;
    put_machine_config(&admin, machine_config("rendered-et-srv-2", FILE, "two")).await;
    let pools: Api<DynamicObject> = Api::all_with(
        admin.clone(),
        &gvk(
            "machineconfiguration.openshift.io",
            "v1",
            "MachineConfigPool",
            "machineconfigpools",
        ),
    );
    let _ = pools.delete("et-srv", &DeleteParams::default()).await;
    let pool: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfigPool",
        "metadata": {"name": "et-srv"},
        "spec": {
            "configuration": {"name": "rendered-et-srv-1"},
            "machineConfigSelector": {"matchLabels": {"machineconfiguration.openshift.io/role": "et-srv"}},
            "nodeSelector": {"matchLabels": {"node-role.kubernetes.io/et-srv": ""}},
        },
    }))
    .unwrap();
    pools.create(&PostParams::default(), &pool).await.unwrap();

    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "machine-config-daemon");
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": [],
        "expirationSeconds": 3600}}))
    .unwrap();
    let token = sas
        .create_token_request("machine-config-server", &PostParams::default(), &tr)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("sa.kubeconfig");
    env.token_kubeconfig(&kubeconfig, &token);
    let client = machine_config_daemon::cluster::connect(Some(&kubeconfig))
        .await
        .unwrap();

    let pki = Pki::new();
    let opts = ServerOptions {
        kubeconfig: None,
        cert: pki.cert(),
        key: pki.key(),
        listen: "127.0.0.1:0".parse().unwrap(),
        insecure_listen: None,
        metrics_address: None,
    };
    let server = Server::bind(&opts, client).await.unwrap();
    let addr = server.https;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));

    let get = |accept: Option<String>| {
        let ca = pki.ca_pem.clone();
        async move {
            get_tls(addr, &ca, "/config/et-srv", accept.as_deref())
                .await
                .unwrap()
        }
    };
    let served = |a: &mcs_client::Answer| {
        a.json()["storage"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == FILE)
            .map(|f| f["contents"]["source"].as_str().unwrap().to_string())
    };
    // Ready once both lists succeeded with the ServiceAccount's permissions; then the spec's
    // config (the pool has no status yet).
    let accept = Some(format!("{IGN};version=3.2.0"));
    let first = wait_answer(|| get(accept.clone()), |a| a.status == 200).await;
    assert_eq!(first.content_type, format!("{IGN};version=3.2.0"));
    assert_eq!(served(&first).as_deref(), Some("data:;base64,b25l"));

    // The pool moves on (spec and status, as the controller writes them).
    pools
        .patch(
            "et-srv",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"configuration": {"name": "rendered-et-srv-2"}}})),
        )
        .await
        .unwrap();
    pools
        .patch_status(
            "et-srv",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "configuration": {"name": "rendered-et-srv-2"},
                "machineCount": 0, "updatedMachineCount": 0, "readyMachineCount": 0,
                "unavailableMachineCount": 0, "degradedMachineCount": 0,
            }})),
        )
        .await
        .unwrap();
    let next = wait_answer(
        || get(None),
        |a| a.status == 200 && served(a).as_deref() == Some("data:;base64,dHdv"),
    )
    .await;
    assert_eq!(next.json()["ignition"]["version"], "3.5.0");
    let _ = stop.send(());
}

/// Asks until `done` holds for the answer (the test fails after [`WAIT`]).
async fn wait_answer<F, Fut>(
    mut ask: F,
    done: impl Fn(&mcs_client::Answer) -> bool,
) -> mcs_client::Answer
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = mcs_client::Answer>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let a = ask().await;
        if done(&a) {
            return a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last answer {}: {}",
            a.status,
            a.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
