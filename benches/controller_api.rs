//! Benchmark of the controller against the test API server (tests/support/): what a rollout
//! costs in time and requests, and what the controller process holds in memory.
//!
//! 1. **Done → next node.** A `worker` pool of 30 (then 300: 29 steps each) simulated nodes (the bench writes their
//!    annotations as a daemon would), `maxUnavailable: 1`, the controller in-process. Once the
//!    pool has a new config, each time the node in flight reports `Done` on it (one merge of
//!    `currentConfig` and `state`) the bench times how long until the controller has set the
//!    next node's `desiredConfig` (the server's state is read every 100 µs). Also counted: the
//!    controller's writes (POST, PUT, PATCH, DELETE over HTTP; the bench's own writes go to the
//!    server's store directly) per rollout step, Lease renewals apart.
//! 2. **Memory and idle requests at 5,000 nodes.** The `machine-config-daemon controller`
//!    binary (this profile's) as a child process on a pool of 5,000 nodes, all `Done` on the
//!    pool's config: once the pool's status counts them all, its VmRSS and VmHWM
//!    (/proc/PID/status), then the requests it makes in 10 idle seconds (watches renewed and
//!    Lease renewals; anything else would be polling).
//!
//! Run: `cargo bench --bench controller_api` (release profile).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use machine_config_daemon::cluster::Options;
use machine_config_daemon::controller::{self, ControllerOptions, lease::LeaseTimings};
use serde_json::{Value, json};
use support::{MACHINECONFIGPOOLS, MACHINECONFIGS, NODES, TestApiServer};

const CURRENT: &str = "machineconfiguration.openshift.io/currentConfig";
const DESIRED: &str = "machineconfiguration.openshift.io/desiredConfig";
const STATE: &str = "machineconfiguration.openshift.io/state";

fn config(name: &str, path: &str) -> Value {
    json!({
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
        "metadata": {"name": name, "labels": {"machineconfiguration.openshift.io/role": "worker"}},
        "spec": {"config": {"ignition": {"version": "3.4.0"}, "storage": {"files": [
            {"path": path, "mode": 420, "contents": {"source": "data:,x"}}]}}},
    })
}

fn pool(max: Value) -> Value {
    json!({
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
        "metadata": {"name": "worker", "generation": 1},
        "spec": {
            "machineConfigSelector": {"matchLabels": {"machineconfiguration.openshift.io/role": "worker"}},
            "nodeSelector": {"matchLabels": {"node-role.kubernetes.io/worker": ""}},
            "maxUnavailable": max,
        },
    })
}

fn worker(i: usize, on: Option<&str>) -> Value {
    let mut n = support::node(&format!("worker-{i:05}"), json!({}));
    n["metadata"]["labels"] = json!({
        "node-role.kubernetes.io/worker": "",
        "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
    });
    n["metadata"]["creationTimestamp"] = json!(format!(
        "2026-01-01T{:02}:{:02}:{:02}Z",
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60
    ));
    if let Some(c) = on {
        n["metadata"]["annotations"] = json!({CURRENT: c, DESIRED: c, STATE: "Done"});
    }
    n
}

fn writes(server: &TestApiServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| matches!(r.verb, "create" | "update" | "patch" | "delete"))
        .filter(|r| !r.path.contains("/leases"))
        .count()
}

/// Nodes told to run a config they do not run yet.
fn in_flight(server: &TestApiServer) -> Vec<(String, String)> {
    server
        .list(NODES)
        .iter()
        .filter_map(|n| {
            let a = &n["metadata"]["annotations"];
            let d = a[DESIRED].as_str()?;
            (a[CURRENT].as_str() != Some(d)).then(|| {
                (
                    n["metadata"]["name"].as_str().unwrap().to_string(),
                    d.to_string(),
                )
            })
        })
        .collect()
}

async fn wait(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
}

/// Every node in flight reports Done on its desired config.
fn report_done(server: &TestApiServer) {
    for (name, config) in in_flight(server) {
        server.merge(
            NODES,
            "",
            &name,
            json!({"metadata": {"annotations": {CURRENT: config, STATE: "Done"}}}),
        );
    }
}

async fn done_to_next(n_nodes: usize) {
    let n = n_nodes;
    let server = TestApiServer::start().await;
    server.put(MACHINECONFIGPOOLS, pool(json!(1)));
    server.put(MACHINECONFIGS, config("00-worker", "/etc/a"));
    for i in 0..n {
        server.put(NODES, worker(i, None));
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let opts = ControllerOptions {
        identity: "bench".into(),
        namespace: "machine-config-daemon".into(),
        lease: LeaseTimings::default(),
        requests: Options::fast(),
        drain: Default::default(),
        metrics: None,
    };
    let ctl = tokio::spawn(controller::run(server.client(), opts, async move {
        let _ = rx.await;
    }));
    // New nodes get the first config at once; they report Done.
    wait(
        "the first config on every node",
        Duration::from_secs(30),
        || in_flight(&server).len() == n,
    )
    .await;
    report_done(&server);
    // Let the first assignment's writes (its events, the pool's status) all land first.
    let mut last = writes(&server);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = writes(&server);
        if now == last {
            break;
        }
        last = now;
    }
    // A second source: a new render, rolled out one node at a time.
    server.put(MACHINECONFIGS, config("50-worker", "/etc/b"));
    wait(
        "the first node of the rollout",
        Duration::from_secs(30),
        || !in_flight(&server).is_empty(),
    )
    .await;
    let mut latencies = Vec::new();
    let mut step_writes = Vec::new();
    for _ in 1..n.min(30) {
        let before: Vec<String> = in_flight(&server).into_iter().map(|(n, _)| n).collect();
        let w0 = writes(&server);
        report_done(&server);
        let t0 = Instant::now();
        wait("the next node", Duration::from_secs(30), || {
            in_flight(&server).iter().any(|(n, _)| !before.contains(n))
        })
        .await;
        latencies.push(t0.elapsed());
        // Let the step's status write land before counting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        step_writes.push(writes(&server) - w0);
    }
    let _ = tx.send(());
    let _ = ctl.await;
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "done -> next desiredConfig ({} steps, maxUnavailable 1, {n} nodes): median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        latencies.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() * 9 / 10]),
        ms(*latencies.last().unwrap())
    );
    step_writes.sort();
    println!(
        "controller writes per rollout step (Lease apart): median {}, max {} (pool size {n})",
        step_writes[step_writes.len() / 2],
        step_writes.last().unwrap()
    );
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

async fn memory_at_scale() {
    const N: usize = 5_000;
    let server = TestApiServer::start().await;
    server.put(MACHINECONFIGS, config("00-worker", "/etc/a"));
    let rendered = machine_config_daemon::controller::render::render_pool(
        "worker",
        &[&config("00-worker", "/etc/a")],
    )
    .unwrap()
    .name;
    let mut p = pool(json!("10%"));
    p["spec"]["configuration"] = json!({"name": rendered});
    server.put(MACHINECONFIGPOOLS, p);
    for i in 0..N {
        server.put(NODES, worker(i, Some(&rendered)));
    }
    let dir = tempfile::tempdir().unwrap();
    let kc = server.write_kubeconfig(dir.path());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .args([
            "controller",
            "--identity",
            "bench",
            "--metrics-address",
            "none",
        ])
        .arg("--kubeconfig")
        .arg(&kc)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let t0 = Instant::now();
    wait(
        "the pool's status to count 5,000",
        Duration::from_secs(120),
        || {
            server.get(MACHINECONFIGPOOLS, "worker").unwrap()["status"]["updatedMachineCount"]
                == N as u64
        },
    )
    .await;
    let synced = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.requests().len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle: Vec<String> = server.requests()[before..]
        .iter()
        .map(|r| format!("{} {}", r.verb, r.path))
        .collect();
    println!(
        "controller process, {N} nodes all Done: status written {:.1} s after start; VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        synced.as_secs_f64(),
        status_kib(pid, "VmRSS:") as f64 / 1024.0,
        status_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    let lease = idle.iter().filter(|r| r.contains("/leases")).count();
    let other: Vec<&String> = idle.iter().filter(|r| !r.contains("/leases")).collect();
    println!(
        "requests in 10 idle seconds: {} Lease renewals, {} others {:?}",
        lease,
        other.len(),
        other
    );
    let _ = child.kill().await;
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The same rollout in a pool 10 times larger: the writes per step must not grow.
        done_to_next(30).await;
        done_to_next(300).await;
        memory_at_scale().await;
    });
}
