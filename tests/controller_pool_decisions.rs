//! The controller's pure decisions (src/controller/): pool membership, which nodes next, the
//! pool's status, render selection and garbage collection. Tables of cases, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use machine_config_daemon::cluster::mcp::{
    IntOrString, LabelSelector, LabelSelectorRequirement, MachineConfigPool, MachineConfigPoolSpec,
    MachineConfigPoolStatus, PoolConfiguration,
};
use machine_config_daemon::controller::decide::{CachedConfig, RenderCache, World, decide};
use machine_config_daemon::controller::pool::{NodeInfo, membership};
use machine_config_daemon::controller::render::{
    ConfigInfo, KEEP_UNREFERENCED, garbage, render_pool, select,
};
use machine_config_daemon::controller::rollout::{Hold, RolloutSpec, next_step, schedule};
use machine_config_daemon::controller::status::{StatusInput, pool_status};
use serde_json::{Value, json};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn selector(pairs: &[(&str, &str)]) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: labels(pairs),
        ..Default::default()
    })
}

fn pool(name: &str, node_label: &str) -> MachineConfigPool {
    let mut p = MachineConfigPool::new(
        name,
        MachineConfigPoolSpec {
            node_selector: selector(&[(node_label, "")]),
            machine_config_selector: selector(&[("machineconfiguration.openshift.io/role", name)]),
            ..Default::default()
        },
    );
    p.metadata.generation = Some(1);
    p
}

/// A Ready node on config `on`, Done, in `zone` (empty: none), created at `age`.
fn node(name: &str, zone: &str, created: i64, on: &str) -> NodeInfo {
    let mut l = labels(&[("node-role.kubernetes.io/worker", "")]);
    if !zone.is_empty() {
        l.insert("topology.kubernetes.io/zone".into(), zone.into());
    }
    NodeInfo {
        name: name.into(),
        labels: l,
        created,
        unschedulable: false,
        ready: true,
        current: Some(on.into()),
        desired: Some(on.into()),
        state: Some("Done".into()),
        reason: String::new(),
        drain_blocked: None,
    }
}

#[test]
fn membership_worker_yields_to_a_custom_pool_and_two_custom_pools_conflict() {
    let worker = pool("worker", "node-role.kubernetes.io/worker");
    let infra = pool("infra", "node-role.kubernetes.io/infra");
    let gpu = pool("gpu", "node-role.kubernetes.io/gpu");
    let mut plain = node("plain", "", 0, "a");
    plain.labels = labels(&[("node-role.kubernetes.io/worker", "")]);
    let mut w_infra = node("w-infra", "", 0, "a");
    w_infra.labels = labels(&[
        ("node-role.kubernetes.io/worker", ""),
        ("node-role.kubernetes.io/infra", ""),
    ]);
    let mut both = node("both", "", 0, "a");
    both.labels = labels(&[
        ("node-role.kubernetes.io/worker", ""),
        ("node-role.kubernetes.io/infra", ""),
        ("node-role.kubernetes.io/gpu", ""),
    ]);
    let mut none = node("none", "", 0, "a");
    none.labels = labels(&[("node-role.kubernetes.io/control-plane", "")]);
    let m = membership(&[&worker, &infra, &gpu], &[&plain, &w_infra, &both, &none]);
    assert_eq!(m.of("worker"), ["plain"]);
    assert_eq!(m.of("infra"), ["w-infra"]);
    assert!(m.of("gpu").is_empty());
    let both_pools = vec!["gpu".to_string(), "infra".to_string()];
    assert_eq!(
        m.conflicts["infra"],
        vec![("both".to_string(), both_pools.clone())]
    );
    assert_eq!(m.conflicts["gpu"], vec![("both".to_string(), both_pools)]);
    assert!(!m.conflicts.contains_key("worker"));
}

#[test]
fn selector_operators() {
    let mut p = pool("custom", "x");
    p.spec.node_selector = Some(LabelSelector {
        match_expressions: vec![
            LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: vec!["a".into(), "b".into()],
            },
            LabelSelectorRequirement {
                key: "old".into(),
                operator: "DoesNotExist".into(),
                values: vec![],
            },
        ],
        ..Default::default()
    });
    let cases = [
        (vec![("tier", "a")], true),
        (vec![("tier", "c")], false),
        (vec![("tier", "b"), ("old", "")], false),
        (vec![], false),
    ];
    for (l, expected) in cases {
        let mut n = node("n", "", 0, "a");
        n.labels = labels(&l);
        let m = membership(&[&p], &[&n]);
        assert_eq!(m.of("custom").len() == 1, expected, "{l:?}");
    }
    // No nodeSelector: no node; an empty one: every node.
    let mut nil = pool("nil", "x");
    nil.spec.node_selector = None;
    let mut all = pool("all", "x");
    all.spec.node_selector = Some(LabelSelector::default());
    let n = node("n", "", 0, "a");
    let m = membership(&[&nil, &all], &[&n]);
    assert!(m.of("nil").is_empty());
    assert_eq!(m.of("all"), ["n"]);
}

fn spec<'a>(max: Option<&'a IntOrString>) -> RolloutSpec<'a> {
    RolloutSpec {
        target: Some("b"),
        current: Some("a"),
        paused: false,
        max_unavailable: max,
    }
}

fn names(step: &[(String, String)]) -> Vec<&str> {
    step.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn next_nodes_by_zone_then_oldest_within_max_unavailable() {
    // Zones out of order, ages out of order within a zone.
    let nodes = [
        node("z-b-new", "zone-b", 300, "a"),
        node("z-a-new", "zone-a", 200, "a"),
        node("z-b-old", "zone-b", 100, "a"),
        node("z-a-old", "zone-a", 150, "a"),
        node("z-c", "zone-c", 10, "a"),
        node("z-a-mid", "zone-a", 180, "a"),
    ];
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let two = IntOrString::Int(2);
    let step = next_step(&spec(Some(&two)), &refs);
    assert_eq!(names(&step.set), ["z-a-old", "z-a-mid"]);
    assert!(step.set.iter().all(|(_, c)| c == "b"));
    assert_eq!(step.hold, None);
    // The whole rollout: batches of two, zone then age.
    assert_eq!(
        schedule(&spec(Some(&two)), &refs),
        vec![
            vec!["z-a-old", "z-a-mid"],
            vec!["z-a-new", "z-b-old"],
            vec!["z-b-new", "z-c"],
        ]
    );
    // Without zones: oldest first.
    let plain = [
        node("n1", "", 30, "a"),
        node("n2", "", 10, "a"),
        node("n3", "", 20, "a"),
    ];
    let refs: Vec<&NodeInfo> = plain.iter().collect();
    assert_eq!(names(&next_step(&spec(None), &refs).set), ["n2"]);
}

#[test]
fn max_unavailable_integer_percentage_rounding_and_minimum() {
    let nodes: Vec<NodeInfo> = (0..10)
        .map(|i| node(&format!("n{i:02}"), "", i, "a"))
        .collect();
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let cases = [
        (None, 1),
        (Some(IntOrString::Int(3)), 3),
        (Some(IntOrString::Int(0)), 1),
        (Some(IntOrString::String("25%".into())), 2), // 2.5 rounds down
        (Some(IntOrString::String("5%".into())), 1),  // 0.5 rounds down to 0, at least 1
        (Some(IntOrString::String("100%".into())), 10),
        (Some(IntOrString::Int(50)), 10),
    ];
    for (max, expected) in cases {
        let step = next_step(&spec(max.as_ref()), &refs);
        assert_eq!(step.set.len(), expected, "{max:?}");
    }
    let bad = IntOrString::String("lots".into());
    let step = next_step(&spec(Some(&bad)), &refs);
    assert!(step.set.is_empty());
    assert!(
        matches!(&step.hold, Some(Hold::InvalidMaxUnavailable(m)) if m.contains("spec.maxUnavailable") && m.contains("lots")),
        "{:?}",
        step.hold
    );
}

#[test]
fn already_unavailable_nodes_use_the_budget() {
    let three = IntOrString::Int(3);
    let mk = || -> Vec<NodeInfo> { (0..6).map(|i| node(&format!("n{i}"), "", i, "a")).collect() };
    // Each way of being unavailable, on a node already on the target or not involved.
    type Edit = fn(&mut NodeInfo);
    let cases: [(&str, Edit); 6] = [
        ("cordoned", |n| n.unschedulable = true),
        ("not ready", |n| n.ready = false),
        ("working", |n| n.state = Some("Working".into())),
        ("in flight", |n| n.desired = Some("b".into())),
        ("done on b, cordoned", |n| {
            n.current = Some("b".into());
            n.desired = Some("b".into());
            n.unschedulable = true;
        }),
        ("new node (no config)", |n| {
            n.current = None;
            n.desired = None;
        }),
    ];
    for (what, edit) in cases {
        let mut nodes = mk();
        edit(&mut nodes[5]);
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let step = next_step(&spec(Some(&three)), &refs);
        let moved: Vec<&str> = names(&step.set);
        match what {
            // A new node gets a config outside the budget: three old nodes move besides it.
            "new node (no config)" => assert_eq!(moved, ["n5", "n0", "n1", "n2"], "{what}"),
            // Unavailable and not on the target: moved at no extra cost, two others.
            "cordoned" | "not ready" | "working" => {
                assert_eq!(moved, ["n0", "n1", "n5"], "{what}")
            }
            // Unavailable on (or moving to) the target: two others.
            _ => assert_eq!(moved, ["n0", "n1"], "{what}"),
        }
    }
    // A full budget of nodes in flight: nothing more.
    let mut nodes = mk();
    for n in nodes.iter_mut().take(3) {
        n.desired = Some("b".into());
        n.state = Some("Working".into());
    }
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    assert!(next_step(&spec(Some(&three)), &refs).set.is_empty());
}

#[test]
fn paused_or_degraded_pools_move_no_node_but_new_nodes_get_a_config() {
    let mut nodes: Vec<NodeInfo> = (0..3).map(|i| node(&format!("n{i}"), "", i, "a")).collect();
    let mut fresh = node("fresh", "", 99, "a");
    fresh.current = None;
    fresh.desired = None;
    fresh.state = None;
    nodes.push(fresh);
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let paused = RolloutSpec {
        paused: true,
        ..spec(None)
    };
    let step = next_step(&paused, &refs);
    // Paused: the new node gets the config the pool is on, not the new one.
    assert_eq!(step.set, vec![("fresh".to_string(), "a".to_string())]);
    assert_eq!(step.hold, Some(Hold::Paused));

    nodes[2].state = Some("Degraded".into());
    nodes[2].reason = "boom".into();
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let step = next_step(&spec(None), &refs);
    assert_eq!(step.set, vec![("fresh".to_string(), "b".to_string())]);
    assert_eq!(step.hold, Some(Hold::Degraded(vec!["n2".into()])));
    nodes[2].state = Some("Unreconcilable".into());
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    assert!(matches!(
        next_step(&spec(None), &refs).hold,
        Some(Hold::Degraded(_))
    ));
    // Recovered: the rollout goes on.
    nodes[2].state = Some("Done".into());
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    assert_eq!(names(&next_step(&spec(None), &refs).set), ["fresh", "n0"]);
}

fn conf(name: &str) -> PoolConfiguration {
    PoolConfiguration {
        name: name.into(),
        ..Default::default()
    }
}

fn cond<'a>(s: &'a MachineConfigPoolStatus, t: &str) -> (&'a str, &'a str, &'a str) {
    let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

fn counts(s: &MachineConfigPoolStatus) -> [i32; 5] {
    [
        s.machine_count,
        s.ready_machine_count,
        s.updated_machine_count,
        s.unavailable_machine_count,
        s.degraded_machine_count,
    ]
}

#[test]
fn status_counts_and_conditions_as_the_seed_defines_them() {
    let target = conf("rendered-worker-new");
    let old = conf("rendered-worker-old");
    let previous = MachineConfigPoolStatus {
        configuration: Some(old.clone()),
        ..Default::default()
    };
    let input = StatusInput {
        generation: 2,
        target: Some(&target),
        previous: Some(&previous),
        now: "2026-01-01T00:00:00Z",
        ..Default::default()
    };
    let on = |n: &str| node(n, "", 0, "rendered-worker-new");
    // Seed example 1: 3 nodes, one still updating: 3 / ready 2 / updated 2, UPDATING, and
    // CONFIG still the one it updates from.
    let mut updating = on("w2");
    updating.current = Some("rendered-worker-old".into());
    updating.state = Some("Working".into());
    let nodes = [on("w0"), on("w1"), updating];
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let s = pool_status(&input, &refs);
    assert_eq!(counts(&s), [3, 2, 2, 1, 0]);
    assert_eq!(cond(&s, "Updated").0, "False");
    assert_eq!(cond(&s, "Updating").0, "True");
    assert_eq!(cond(&s, "Degraded").0, "False");
    assert_eq!(s.configuration, Some(old.clone()));
    assert_eq!(s.observed_generation, 2);

    // Seed example 2: a cordoned node on the config: counted, not ready, updated,
    // unavailable; the pool is UPDATING.
    let mut cordoned = on("w2");
    cordoned.unschedulable = true;
    let nodes = [on("w0"), on("w1"), cordoned];
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let s = pool_status(&input, &refs);
    assert_eq!(counts(&s), [3, 2, 3, 1, 0]);
    assert_eq!(cond(&s, "Updating").0, "True");
    assert_eq!(cond(&s, "Updated").0, "False");

    // All done: Updated, and CONFIG becomes the new config.
    let nodes = [on("w0"), on("w1"), on("w2")];
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let s = pool_status(&input, &refs);
    assert_eq!(counts(&s), [3, 3, 3, 0, 0]);
    assert_eq!(cond(&s, "Updated").0, "True");
    assert_eq!(cond(&s, "Updating").0, "False");
    assert_eq!(s.configuration, Some(target.clone()));

    // Degraded and Unreconcilable nodes: DEGRADEDMACHINECOUNT, NodeDegraded naming each.
    let mut bad = on("w1");
    bad.state = Some("Degraded".into());
    bad.reason = "unexpected on-disk state validating against rendered-worker-new".into();
    let mut unrec = on("w2");
    unrec.state = Some("Unreconcilable".into());
    unrec.reason = "kernelType cannot change".into();
    let nodes = [on("w0"), bad, unrec];
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let s = pool_status(&input, &refs);
    assert_eq!(s.degraded_machine_count, 2);
    let (status, reason, message) = cond(&s, "NodeDegraded");
    assert_eq!(status, "True");
    assert_eq!(reason, "2 nodes are reporting degraded status on sync");
    assert_eq!(
        message,
        "Node w1 is reporting: \"unexpected on-disk state validating against rendered-worker-new\", \
         Node w2 is reporting: \"kernelType cannot change\""
    );
    assert_eq!(cond(&s, "Degraded").0, "True");
    assert_eq!(cond(&s, "Degraded").2, message);

    // A drain blocked past its limit (the drain controller's annotation): Degraded names the
    // node and the pods, while the node itself is only Working.
    let mut draining = on("w1");
    draining.state = Some("Working".into());
    draining.unschedulable = true;
    draining.drain_blocked = Some(
        "drain of rendered-worker-new blocked for 1h0m: pod default/db-0 (429: PodDisruptionBudget)"
            .into(),
    );
    let nodes = [on("w0"), draining];
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let s = pool_status(&input, &refs);
    assert_eq!(s.degraded_machine_count, 0);
    assert_eq!(cond(&s, "NodeDegraded").0, "False");
    assert_eq!(
        cond(&s, "Degraded"),
        (
            "True",
            "DrainBlocked",
            "Node w1: drain of rendered-worker-new blocked for 1h0m: pod default/db-0 \
             (429: PodDisruptionBudget)"
        )
    );

    // A render failure: RenderDegraded with the reason, Degraded.
    let nodes = [on("w0")];
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let failed = StatusInput {
        render_error: Some("pool worker: kernel-devel with kernelType realtime"),
        ..input.clone()
    };
    let s = pool_status(&failed, &refs);
    assert_eq!(
        cond(&s, "RenderDegraded"),
        (
            "True",
            "RenderFailed",
            "pool worker: kernel-devel with kernelType realtime"
        )
    );
    assert_eq!(cond(&s, "Degraded").0, "True");
    assert_eq!(cond(&s, "NodeDegraded").0, "False");

    // A node in two pools: Degraded names it.
    let conflicts = vec![(
        "n9".to_string(),
        vec!["gpu".to_string(), "infra".to_string()],
    )];
    let s = pool_status(
        &StatusInput {
            conflicts: &conflicts,
            ..input.clone()
        },
        &refs,
    );
    assert_eq!(
        cond(&s, "Degraded"),
        (
            "True",
            "MultiplePoolsMatchNode",
            "Node n9 belongs to more than one pool: gpu, infra"
        )
    );
}

#[test]
fn condition_transition_times_stay_while_the_status_stays() {
    let target = conf("c");
    let nodes = [node("n", "", 0, "c")];
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let first = pool_status(
        &StatusInput {
            target: Some(&target),
            now: "2026-01-01T00:00:00Z",
            ..Default::default()
        },
        &refs,
    );
    let again = pool_status(
        &StatusInput {
            target: Some(&target),
            previous: Some(&first),
            now: "2026-01-02T00:00:00Z",
            ..Default::default()
        },
        &refs,
    );
    assert_eq!(first, again);
}

fn mc(name: &str, role: Option<&str>, file: &str) -> Value {
    let mut v = json!({
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
        "metadata": {"name": name},
        "spec": {"config": {"ignition": {"version": "3.4.0"}, "storage": {"files": [
            {"path": file, "contents": {"source": "data:,x"}}
        ]}}},
    });
    if let Some(r) = role {
        v["metadata"]["labels"] = json!({"machineconfiguration.openshift.io/role": r});
    }
    v
}

#[test]
fn selection_never_takes_a_rendered_config() {
    let worker = pool("worker", "node-role.kubernetes.io/worker");
    let mut owned = mc("custom-name", Some("worker"), "/etc/a");
    owned["metadata"]["ownerReferences"] = json!([{"kind": "MachineConfigPool", "name": "worker",
        "apiVersion": "machineconfiguration.openshift.io/v1", "uid": "u"}]);
    let objects = [
        mc("00-worker", Some("worker"), "/etc/a"),
        mc("99-worker-b", Some("worker"), "/etc/b"),
        mc("00-master", Some("master"), "/etc/m"),
        mc("rendered-worker-0123", Some("worker"), "/etc/r"),
        owned,
        mc("unlabelled", None, "/etc/u"),
    ];
    let infos: Vec<ConfigInfo> = objects.iter().map(ConfigInfo::from_json).collect();
    let refs: Vec<&ConfigInfo> = infos.iter().collect();
    assert_eq!(select(&worker, &refs), ["00-worker", "99-worker-b"]);
}

#[test]
fn rendered_config_is_named_by_content_has_no_role_label_and_lists_its_sources() {
    let a = mc("00-worker", Some("worker"), "/etc/a");
    let b = mc("99-worker-b", Some("worker"), "/etc/b");
    let one = render_pool("worker", &[&a, &b]).unwrap();
    let again = render_pool("worker", &[&b, &a]).unwrap();
    assert_eq!(one.name, again.name);
    assert!(one.name.starts_with("rendered-worker-"), "{}", one.name);
    assert_eq!(one.name.len(), "rendered-worker-".len() + 32);
    assert!(one.object["metadata"]["labels"].is_null(), "{}", one.object);
    assert_eq!(one.object["metadata"]["name"], one.name);
    let sources: Vec<&str> = one
        .configuration
        .source
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(sources, ["00-worker", "99-worker-b"]);
    // Same name and contents as the `render` command's.
    let configs: Vec<_> = [&a, &b]
        .iter()
        .flat_map(|v| {
            machine_config_daemon::model::parse_machine_configs(v.to_string().as_bytes(), "t")
                .unwrap()
                .configs
        })
        .collect();
    let cmd = machine_config_daemon::model::render::render("worker", &configs).unwrap();
    assert_eq!(cmd.name, one.name);
    // A change of content, a new name.
    let b2 = mc("99-worker-b", Some("worker"), "/etc/b2");
    assert_ne!(render_pool("worker", &[&a, &b2]).unwrap().name, one.name);
    // A config that does not render: the error says which and why.
    let mut rt = mc("50-rt", Some("worker"), "/etc/rt");
    rt["spec"]["kernelType"] = json!("realtime");
    rt["spec"]["extensions"] = json!(["kernel-devel"]);
    let err = render_pool("worker", &[&a, &rt]).unwrap_err();
    assert!(
        err.contains("50-rt") && err.contains("kernel-devel"),
        "{err}"
    );
    assert!(
        render_pool("worker", &[])
            .unwrap_err()
            .contains("no MachineConfig")
    );
}

#[test]
fn garbage_keeps_referenced_and_the_newest_unreferenced() {
    let info = |name: &str, created: i64| ConfigInfo {
        name: name.into(),
        labels: BTreeMap::new(),
        rendered: true,
        created,
    };
    let mut configs: Vec<ConfigInfo> = (0..8)
        .map(|i| info(&format!("rendered-worker-{i:032x}"), i))
        .collect();
    configs.push(info(
        "rendered-worker-gpu-00000000000000000000000000000001",
        0,
    ));
    configs.push(ConfigInfo {
        rendered: false,
        ..info("00-worker", 0)
    });
    let refs: Vec<&ConfigInfo> = configs.iter().collect();
    let referenced: BTreeSet<String> = [format!("rendered-worker-{:032x}", 0)].into();
    let gone = garbage(&["worker", "worker-gpu"], &refs, &referenced);
    // 7 unreferenced worker configs (1..=7): the newest KEEP_UNREFERENCED stay.
    let expected: Vec<String> = (1..(8 - KEEP_UNREFERENCED as i64))
        .map(|i| format!("rendered-worker-{i:032x}"))
        .collect();
    assert_eq!(gone, expected);
}

#[test]
fn a_settled_cluster_decides_no_write() {
    let a = mc("00-worker", Some("worker"), "/etc/a");
    let mut worker = pool("worker", "node-role.kubernetes.io/worker");
    let rendered = render_pool("worker", &[&a]).unwrap();
    let cached = |v: &Value| CachedConfig {
        info: ConfigInfo::from_json(v),
        resource_version: "1".into(),
        object: v.clone(),
    };
    let mut robj = rendered.object.clone();
    robj["metadata"]["ownerReferences"] = json!([{"kind": "MachineConfigPool"}]);
    let configs = [cached(&a), cached(&robj)];
    let config_refs: Vec<&CachedConfig> = configs.iter().collect();
    let nodes = [node("n0", "", 0, &rendered.name)];
    let node_refs: Vec<&NodeInfo> = nodes.iter().collect();
    let mut cache = RenderCache::default();
    // First pass: the pool's spec gets the config, its status is written.
    let w = decide(
        &World {
            pools: &[&worker],
            nodes: &node_refs,
            configs: &config_refs,
            now: "2026-01-01T00:00:00Z",
            cert_expirys: None,
        },
        &mut cache,
    );
    assert!(w.create.is_empty());
    assert_eq!(w.pool_spec.len(), 1);
    assert!(w.desired.is_empty());
    assert_eq!(w.pool_status.len(), 1);
    worker.spec.configuration = Some(w.pool_spec[0].1.clone());
    worker.status = Some(w.pool_status[0].1.clone());
    let w = decide(
        &World {
            pools: &[&worker],
            nodes: &node_refs,
            configs: &config_refs,
            now: "2026-01-01T00:01:00Z",
            cert_expirys: None,
        },
        &mut cache,
    );
    assert_eq!(w, Default::default());

    // The certificate controller publishes a list: one status write carrying it, with every
    // other field as it was; the same list again, or none published, writes nothing; an empty
    // list clears it.
    let expiry = machine_config_daemon::cluster::mcp::CertExpiry {
        bundle: "KubeAPIServerServingCAData".into(),
        subject: "CN=admin-kubeconfig-signer,OU=openshift".into(),
        expiry: Some("2034-10-23T13:13:02Z".into()),
    };
    let list = [expiry.clone()];
    let mut pass = |worker: &MachineConfigPool, certs: Option<&[_]>| {
        decide(
            &World {
                pools: &[worker],
                nodes: &node_refs,
                configs: &config_refs,
                now: "2026-01-01T00:02:00Z",
                cert_expirys: certs,
            },
            &mut cache,
        )
    };
    let w = pass(&worker, Some(&list));
    let before = worker.status.clone().unwrap();
    assert_eq!(w.pool_status.len(), 1);
    let written = &w.pool_status[0].1;
    assert_eq!(written.cert_expirys, [expiry]);
    assert_eq!(
        MachineConfigPoolStatus {
            cert_expirys: vec![],
            ..written.clone()
        },
        before
    );
    assert!(w.desired.is_empty() && w.pool_spec.is_empty() && w.create.is_empty());
    worker.status = Some(written.clone());
    assert_eq!(pass(&worker, Some(&list)), Default::default());
    assert_eq!(pass(&worker, None), Default::default());
    let w = pass(&worker, Some(&[]));
    assert_eq!(w.pool_status.len(), 1);
    assert_eq!(w.pool_status[0].1, before);
}
