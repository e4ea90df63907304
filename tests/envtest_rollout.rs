//! The controller against a real kube-apiserver with the upstream CRDs (tests/envtest/): the
//! packaged default pools and controller RBAC are created, the controller runs in-process with
//! a token of the packaged `machine-config-controller` ServiceAccount (a 403 would stop the
//! rollout), and six real daemons (`start`, cluster mode, `--no-systemd`, tempdir roots,
//! self-drain) are rolled from one config to the next two at a time. A watch records every
//! node change in the order etcd committed it, so "at every moment" is checked by replaying it.
//! Skipped, saying so, where the envtest bundle is absent (failed under `CI`).

mod envtest;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envtest::*;
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use machine_config_daemon::cluster::Options;
use machine_config_daemon::controller::{self, ControllerOptions, lease::LeaseTimings};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_machine-config-daemon");
const FILE: &str = "/etc/mco-test-file";
const WAIT: Duration = Duration::from_secs(90);

fn pools(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &gvk(
            "machineconfiguration.openshift.io",
            "v1",
            "MachineConfigPool",
            "machineconfigpools",
        ),
    )
}

fn worker_config(contents: &str) -> Value {
    let mut mc = machine_config("00-worker", FILE, contents);
    mc["metadata"]["labels"] = json!({"machineconfiguration.openshift.io/role": "worker"});
    mc
}

struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn unavailable(n: &Node) -> bool {
    let a = n.metadata.annotations.clone().unwrap_or_default();
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
        || !ready
        || a.get(STATE).map(String::as_str) != Some("Done")
        || a.get(DESIRED_CONFIG) != a.get(CURRENT_CONFIG)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_roll_out_two_at_a_time_on_a_real_api_server() {
    let Some(env) = envtest("six_nodes_roll_out_two_at_a_time_on_a_real_api_server") else {
        return;
    };
    let client = env.client().await;
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes");
    for f in ["00-namespace.yaml", "20-pools.yaml", "30-controller.yaml"] {
        apply_yaml(&client, &pkg.join(f), false).await;
    }
    let pool_api = pools(&client);
    pool_api
        .patch(
            "worker",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxUnavailable": 2}})),
        )
        .await
        .unwrap();
    put_machine_config(&client, worker_config("one")).await;

    // Six Ready worker nodes in three zones.
    let nodes_api: Api<Node> = Api::all(client.clone());
    let names = ["et-c-1", "et-a-1", "et-b-1", "et-a-2", "et-c-2", "et-b-2"];
    for name in names {
        let zone = format!("zone-{}", &name[3..4]);
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {
                "node-role.kubernetes.io/worker": "", "topology.kubernetes.io/zone": zone}},
        }))
        .unwrap();
        nodes_api
            .create(&PostParams::default(), &node)
            .await
            .unwrap();
        nodes_api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                    "reason": "KubeletReady", "message": "ready"}]}}),
                ),
            )
            .await
            .unwrap();
    }
    // The expected order from what the server recorded: zone, then age, then name.
    let mut expected: Vec<(String, i64, String)> = Vec::new();
    for name in names {
        let n = nodes_api.get(name).await.unwrap();
        let zone = n.metadata.labels.as_ref().unwrap()["topology.kubernetes.io/zone"].clone();
        let created = n.metadata.creation_timestamp.unwrap().0.as_second();
        expected.push((zone, created, name.to_string()));
    }
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, _, n)| n).collect();

    // Every node change, in commit order.
    let seen: Arc<Mutex<Vec<Node>>> = Arc::default();
    let recorder = {
        let seen = seen.clone();
        let api = nodes_api.clone();
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(n)) = stream.next().await {
                seen.lock().unwrap().push(n);
            }
        })
    };

    // The controller, as the packaged ServiceAccount.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "machine-config-daemon");
    let tr: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .unwrap();
    let token = sas
        .create_token_request("machine-config-controller", &PostParams::default(), &tr)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let dir = tempfile::tempdir().unwrap();
    let sa_kubeconfig = dir.path().join("controller.kubeconfig");
    env.token_kubeconfig(&sa_kubeconfig, &token);
    let sa_client = machine_config_daemon::cluster::connect(Some(&sa_kubeconfig))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(
        sa_client,
        ControllerOptions {
            identity: "envtest-controller".into(),
            namespace: "machine-config-daemon".into(),
            lease: LeaseTimings::default(),
            requests: Options::fast(),
            drain: machine_config_daemon::controller::drain::DrainControllerOptions {
                api: Options::fast(),
                ..Default::default()
            },
            metrics: None,
        },
        async move {
            let _ = stopped.await;
        },
    ));

    let mut daemons = Daemons(Vec::new());
    for name in names {
        let root = dir.path().join(name);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        daemons.0.push(
            Command::new(BIN)
                .arg("start")
                .arg("--kubeconfig")
                .arg(&env.kubeconfig)
                .arg("--root")
                .arg(&root)
                .args(["--no-systemd", "--metrics-address", "none"])
                .args(["--node-name", name, "--drain-mode", "self"])
                .env_remove("NODE_NAME")
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    // Waits until every node is Done on the pool's config and the pool says Updated on it.
    let updated = |target: Option<String>| {
        let pool_api = pool_api.clone();
        let nodes_api = nodes_api.clone();
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let pool = serde_json::to_value(pool_api.get("worker").await.unwrap()).unwrap();
                let config = pool["spec"]["configuration"]["name"]
                    .as_str()
                    .map(String::from);
                let done = match &config {
                    Some(c) if target.as_ref().is_none_or(|t| t != c) => {
                        let nodes = nodes_api.list(&Default::default()).await.unwrap();
                        let all = nodes.items.iter().all(|n| {
                            let a = n.metadata.annotations.clone().unwrap_or_default();
                            a.get(CURRENT_CONFIG) == Some(c)
                                && a.get(STATE).map(String::as_str) == Some("Done")
                        });
                        all && pool["status"]["configuration"]["name"] == c.as_str()
                            && pool["status"]["conditions"].as_array().is_some_and(|l| {
                                l.iter()
                                    .any(|x| x["type"] == "Updated" && x["status"] == "True")
                            })
                    }
                    _ => false,
                };
                if done {
                    return (config.unwrap(), pool);
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "pool not updated: {pool}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (first, _) = updated(None).await;
    let from = seen.lock().unwrap().len();
    put_machine_config(&client, worker_config("two")).await;
    let (second, pool) = updated(Some(first.clone())).await;
    assert_ne!(first, second);

    // Replay.
    let history = seen.lock().unwrap().clone();
    let mut state: BTreeMap<String, Node> = BTreeMap::new();
    for n in &history[..from] {
        state.insert(n.metadata.name.clone().unwrap(), n.clone());
    }
    let (mut most, mut order) = (0, Vec::<String>::new());
    for n in &history[from..] {
        let name = n.metadata.name.clone().unwrap();
        let desired = n
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESIRED_CONFIG).cloned());
        if desired.as_deref() == Some(second.as_str()) && !order.contains(&name) {
            order.push(name.clone());
        }
        state.insert(name, n.clone());
        let now = state.values().filter(|n| unavailable(n)).count();
        assert!(now <= 2, "{now} nodes unavailable at once");
        most = most.max(now);
    }
    assert_eq!(most, 2);
    assert_eq!(order, expected);
    for (field, n) in [
        ("machineCount", 6),
        ("updatedMachineCount", 6),
        ("readyMachineCount", 6),
        ("unavailableMachineCount", 0),
        ("degradedMachineCount", 0),
    ] {
        assert_eq!(pool["status"][field], n, "{field}: {}", pool["status"]);
    }
    // The rendered configs passed upstream's schema, owned by the pool.
    let rendered = machine_configs(&client).get(&second).await.unwrap();
    assert_eq!(
        rendered.metadata.owner_references.unwrap()[0].kind,
        "MachineConfigPool"
    );

    // What a user sees (docs/any-kubernetes.md quotes it; `-- --nocapture` shows it).
    if let Ok(out) = Command::new("kubectl")
        .args(["--kubeconfig", &env.kubeconfig, "get", "mcp"])
        .output()
    {
        println!("{}", String::from_utf8_lossy(&out.stdout));
    }

    stop.send(()).unwrap();
    controller.await.unwrap().unwrap();
    recorder.abort();
    drop(daemons);
}
