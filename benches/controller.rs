//! Benchmark of one full pass of the pool controller's decisions (`controller::decide`) for a
//! pool of 5,000 nodes.
//!
//! Method: one `worker` pool (`maxUnavailable: 10%`) of 5,000 Ready nodes in 3 zones with
//! distinct creation times, mid-rollout: 2,000 nodes on the new rendered config, 400 in flight
//! (desired new, current old, `Working`), the rest on the old one; 20 source MachineConfigs,
//! the two rendered configs. A pass = building the node views from `Node` objects as the
//! reflector caches them (`NodeInfo::from_node`) + `decide` (membership, render selection with
//! the render cache warm — a pass after a node change renders nothing —, the rollout step,
//! the status). Warmed up, then timed over 200 passes with `Instant`; we print the median and
//! the 99th percentile, and the first (cold: it renders) pass.
//!
//! Run: `cargo bench --bench controller` (release profile).

use std::hint::black_box;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use machine_config_daemon::cluster::mcp::{
    IntOrString, LabelSelector, MachineConfigPool, MachineConfigPoolSpec,
};
use machine_config_daemon::controller::decide::{CachedConfig, RenderCache, World, decide};
use machine_config_daemon::controller::pool::NodeInfo;
use machine_config_daemon::controller::render::ConfigInfo;
use serde_json::{Value, json};

const NODES: usize = 5_000;

fn node(i: usize, current: &str, desired: &str, state: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("worker-{i:05}"),
            "creationTimestamp": format!("2026-01-01T{:02}:{:02}:{:02}Z", (i / 3600) % 24, (i / 60) % 60, i % 60),
            "labels": {
                "node-role.kubernetes.io/worker": "",
                "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
                "kubernetes.io/hostname": format!("worker-{i:05}"),
            },
            "annotations": {
                "machineconfiguration.openshift.io/currentConfig": current,
                "machineconfiguration.openshift.io/desiredConfig": desired,
                "machineconfiguration.openshift.io/state": state,
                "machineconfiguration.openshift.io/reason": "",
            },
        },
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap()
}

fn source(i: usize) -> Value {
    json!({
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
        "metadata": {"name": format!("{i:02}-worker"),
                     "labels": {"machineconfiguration.openshift.io/role": "worker"}},
        "spec": {"config": {"ignition": {"version": "3.4.0"}, "storage": {"files": [
            {"path": format!("/etc/bench/{i}.conf"), "contents": {"source": "data:,x"}}
        ]}}},
    })
}

fn cached(v: Value) -> CachedConfig {
    CachedConfig {
        info: ConfigInfo::from_json(&v),
        resource_version: "1".into(),
        object: v,
    }
}

fn main() {
    let configs: Vec<CachedConfig> = (0..20).map(|i| cached(source(i))).collect();
    let config_refs: Vec<&CachedConfig> = configs.iter().collect();
    let mut pool = MachineConfigPool::new(
        "worker",
        MachineConfigPoolSpec {
            machine_config_selector: Some(LabelSelector {
                match_labels: [(
                    "machineconfiguration.openshift.io/role".to_string(),
                    "worker".to_string(),
                )]
                .into(),
                ..Default::default()
            }),
            node_selector: Some(LabelSelector {
                match_labels: [("node-role.kubernetes.io/worker".to_string(), String::new())]
                    .into(),
                ..Default::default()
            }),
            max_unavailable: Some(IntOrString::String("10%".into())),
            ..Default::default()
        },
    );
    pool.metadata.generation = Some(3);
    // The new config is what the sources render to; the old one any other name.
    let mut cache = RenderCache::default();
    let first = decide(
        &World {
            pools: &[&pool],
            nodes: &[],
            configs: &config_refs,
            now: "2026-01-01T00:00:00Z",
            cert_expirys: None,
        },
        &mut cache,
    );
    let new = first.pool_spec[0].1.name.clone();
    pool.spec.configuration = Some(first.pool_spec[0].1.clone());
    let old = "rendered-worker-00000000000000000000000000000000";
    let nodes: Vec<Node> = (0..NODES)
        .map(|i| match i {
            i if i < 2_000 => node(i, &new, &new, "Done"),
            i if i < 2_400 => node(i, old, &new, "Working"),
            i => node(i, old, old, "Done"),
        })
        .collect();

    let pass = |cache: &mut RenderCache| {
        let infos: Vec<NodeInfo> = nodes.iter().map(NodeInfo::from_node).collect();
        let refs: Vec<&NodeInfo> = infos.iter().collect();
        decide(
            &World {
                pools: &[&pool],
                nodes: &refs,
                configs: &config_refs,
                now: "2026-01-01T00:00:00Z",
                cert_expirys: None,
            },
            cache,
        )
    };
    let mut cold_cache = RenderCache::default();
    let t = Instant::now();
    let w = pass(&mut cold_cache);
    let cold = t.elapsed();
    // Sanity: 400 in flight of a budget of 500: 100 more move; the counts are right.
    assert_eq!(w.desired.len(), 100);
    let status = &w.pool_status[0].1;
    assert_eq!(status.machine_count, NODES as i32);
    assert_eq!(status.updated_machine_count, 2_000);
    assert_eq!(status.unavailable_machine_count, 400);

    for _ in 0..20 {
        black_box(pass(&mut cache));
    }
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            black_box(pass(&mut cache));
            t.elapsed()
        })
        .collect();
    times.sort();
    let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "controller pass, {NODES} nodes (node views + decide, render cache warm): \
         median {:.2} ms, p99 {:.2} ms; first pass (renders 20 configs): {:.2} ms",
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        cold.as_secs_f64() * 1e3
    );
}
