//! `plan --kubeconfig FILE --pool NAME [--add NEW.yaml]... [--remove NAME]...`: a change to a
//! pool previewed before it rolls out ([`controller::preview`]). It reads the cluster's pools,
//! MachineConfigs, nodes and `MachineConfiguration/cluster` (the node disruption policy: its
//! `spec.nodeDisruptionPolicy` merged over the defaults, as the controller computes it; or
//! `--policy FILE` instead), and writes nothing.
//!
//! Text prints the render (from → to, sources), a table of the pool's nodes with what each
//! would do, the plan in full once per distinct current config, and the rollout batches.
//! For each node whose plan drains, the drain pre-flight is checked against the cluster as it
//! is now (the node's pods, every PodDisruptionBudget): a node whose drain would wait on a
//! budget says which pods and budgets (`drainPreflight` in JSON); a cluster that refuses the
//! listing (RBAC) only makes the check unknown, said so. `-o
//! json|yaml` prints the preview object. Exit codes as `plan`: 0, 1 (cluster unreachable), 2
//! (bad input: no such pool, an `--add` file that does not load, an unknown `--remove`), 3 (a
//! node cannot take the change: its reason is printed).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DynamicObject, ListParams};
use machine_config_daemon::cluster::{self, mcp::MachineConfigPool};
use machine_config_daemon::controller::pool::NodeInfo;
use machine_config_daemon::controller::preview::{NodePreview, Preview, PreviewInput, preview};
use machine_config_daemon::controller::render::parse_object;
use machine_config_daemon::model::{MachineConfig, policy::Policy};
use machine_config_daemon::plan::PlanOptions;
use serde_json::Value;

use super::plan::Args;

pub fn run(args: Args) -> ExitCode {
    // The added configs are read (and bounded) before the cluster is asked anything.
    let limits = args.limits.limits();
    let mut add = Vec::new();
    for path in &args.add {
        match read_object(path, limits.config_bytes) {
            Ok(v) => add.push(v),
            Err(e) => return super::fail(super::EXIT_BAD_INPUT, [e]),
        }
    }
    let policy = match &args.policy {
        Some(path) => match super::load_policy(path) {
            Ok(p) => Some(p),
            Err(code) => return code,
        },
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return super::fail(super::EXIT_FAILED, [format!("cannot start: {e}")]),
    };
    let fetched = match runtime.block_on(fetch(&args, policy)) {
        Ok(f) => f,
        Err((code, e)) => return super::fail(code, [e]),
    };
    let pools: Vec<&MachineConfigPool> = fetched.pools.iter().collect();
    let Some(pool) = pools
        .iter()
        .copied()
        .find(|p| p.metadata.name.as_deref() == Some(args.pool.as_str()))
    else {
        return super::fail(
            super::EXIT_BAD_INPUT,
            [format!("--pool: no MachineConfigPool {:?}", args.pool)],
        );
    };
    let current = currents(&fetched.configs, &fetched.nodes);
    let options = PlanOptions {
        force: false,
        host: Some(super::plan::host_kind(&args)),
    };
    let input = PreviewInput {
        pool,
        pools: &pools,
        configs: &fetched.configs,
        add: &add,
        remove: &args.remove,
        nodes: &fetched.nodes,
        current: &current,
        policy: &fetched.policy,
        options: &options,
    };
    let mut p = match preview(&input) {
        Ok(p) => p,
        Err(e) => return super::fail(super::EXIT_BAD_INPUT, [e]),
    };
    runtime.block_on(drain_preflight(&args, &mut p));
    let printed = match args.output {
        super::Format::Text => {
            print!("{}", text(&p, &current));
            ExitCode::SUCCESS
        }
        format => match serde_json::to_value(&p) {
            Ok(v) => super::print_data(&v, format),
            Err(e) => super::fail(super::EXIT_FAILED, [format!("cannot print: {e}")]),
        },
    };
    if p.nodes.iter().any(|n| n.summary == "Refused") {
        ExitCode::from(super::EXIT_UNRECONCILABLE)
    } else {
        printed
    }
}

/// A MachineConfig file (YAML or JSON) as an object, at most `max` bytes.
fn read_object(path: &std::path::Path, max: u64) -> Result<Value, String> {
    let what = format!("--add {}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| format!("{what}: {e}"))?;
    if meta.len() > max {
        return Err(format!(
            "{what}: {} bytes, more than the limit of {max} (--max-config-size)",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{what}: {e}"))?;
    let v: Value = serde_saphyr::from_str(&text).map_err(|e| format!("{what}: {e}"))?;
    if v["kind"] != "MachineConfig" {
        return Err(format!("{what}: kind: must be MachineConfig"));
    }
    // The model's loader says precisely what is wrong with it, field by field.
    parse_object(&v, &what)?;
    Ok(v)
}

struct Fetched {
    pools: Vec<MachineConfigPool>,
    configs: Vec<Value>,
    nodes: Vec<NodeInfo>,
    policy: Policy,
}

async fn fetch(args: &Args, policy: Option<Policy>) -> Result<Fetched, (u8, String)> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| (super::EXIT_FAILED, format!("{what}: {e}"));
    let client = cluster::connect(args.kubeconfig.as_deref())
        .await
        .map_err(|e| failed("cannot connect", &e))?;
    let lp = ListParams::default();
    let pools = Api::<MachineConfigPool>::all(client.clone())
        .list(&lp)
        .await
        .map_err(|e| failed("cannot list MachineConfigPools", &e))?
        .items;
    let configs = Api::<DynamicObject>::all_with(
        client.clone(),
        &cluster::machineconfig::machine_config_resource(),
    )
    .list(&lp)
    .await
    .map_err(|e| failed("cannot list MachineConfigs", &e))?
    .items
    .into_iter()
    .filter_map(|o| serde_json::to_value(o).ok())
    .collect();
    let nodes = Api::<Node>::all(client.clone())
        .list(&lp)
        .await
        .map_err(|e| failed("cannot list Nodes", &e))?
        .items
        .iter()
        .map(NodeInfo::from_node)
        .collect();
    let policy = match policy {
        Some(p) => p,
        None => {
            let api = Api::<DynamicObject>::all_with(
                client,
                &cluster::policy::machine_configuration_resource(),
            );
            let obj = api
                .get_opt("cluster")
                .await
                .map_err(|e| failed("cannot read MachineConfiguration cluster", &e))?;
            let spec = obj
                .map(|o| o.data["spec"]["nodeDisruptionPolicy"].clone())
                .unwrap_or(Value::Null);
            machine_config_daemon::controller::policy::evaluate(&spec).map_err(|e| {
                (
                    super::EXIT_BAD_INPUT,
                    format!(
                        "MachineConfiguration cluster: spec.nodeDisruptionPolicy is invalid \
                         (the cluster keeps its last valid policy; give it with --policy): {e}"
                    ),
                )
            })?
        }
    };
    Ok(Fetched {
        pools,
        configs,
        nodes,
        policy,
    })
}

/// Fills `drain_preflight` of the nodes whose plan drains: the verdict on the node's pods and
/// the cluster's PodDisruptionBudgets now (only a blocked verdict is shown).
async fn drain_preflight(args: &Args, p: &mut Preview) {
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use machine_config_daemon::cluster::preflight::verdict;
    let drains = |n: &NodePreview| n.plan.as_ref().is_some_and(|p| p.drain);
    if !p.nodes.iter().any(drains) {
        return;
    }
    let unknown = |e: &dyn std::fmt::Display| format!("drain pre-flight not checked: {e}");
    let client = match cluster::connect(args.kubeconfig.as_deref()).await {
        Ok(c) => c,
        Err(e) => {
            for n in p.nodes.iter_mut().filter(|n| drains(n)) {
                n.drain_preflight = Some(unknown(&e));
            }
            return;
        }
    };
    let pdbs = Api::<PodDisruptionBudget>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| unknown(&format!("cannot list PodDisruptionBudgets: {e}")));
    for n in p.nodes.iter_mut().filter(|n| drains(n)) {
        let pdbs = match &pdbs {
            Ok(l) => l,
            Err(e) => {
                n.drain_preflight = Some(e.clone());
                continue;
            }
        };
        let lp = ListParams::default().fields(&format!("spec.nodeName={}", n.node));
        n.drain_preflight = match Api::<Pod>::all(client.clone()).list(&lp).await {
            Ok(pods) => {
                let v = verdict(&pods.items, pdbs);
                (!v.can_drain()).then(|| {
                    format!(
                        "drain would wait for PodDisruptionBudgets now: {}",
                        v.blocking()
                    )
                })
            }
            Err(e) => Some(unknown(&format!("cannot list the pods of {}: {e}", n.node))),
        };
    }
}

/// The parsed config of every node's `currentConfig`, or why it cannot be had.
fn currents(
    configs: &[Value],
    nodes: &[NodeInfo],
) -> BTreeMap<String, Result<MachineConfig, String>> {
    let mut out = BTreeMap::new();
    for name in nodes.iter().filter_map(|n| n.current.as_deref()) {
        if out.contains_key(name) {
            continue;
        }
        let parsed = match configs
            .iter()
            .find(|c| c["metadata"]["name"].as_str() == Some(name))
        {
            None => Err(format!("MachineConfig {name} not found in the cluster")),
            Some(c) => parse_object(c, &format!("MachineConfig {name}")),
        };
        out.insert(name.to_string(), parsed);
    }
    out
}

fn text(p: &Preview, current: &BTreeMap<String, Result<MachineConfig, String>>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pool {}: {} -> {}",
        p.pool,
        p.from.as_deref().unwrap_or("(none)"),
        p.to
    );
    let _ = writeln!(out, "sources: {}", p.sources.join(", "));
    let header = ["NODE", "ZONE", "CURRENT", "WOULD DO"].map(str::to_string);
    let rows: Vec<[String; 4]> = p
        .nodes
        .iter()
        .map(|n| {
            [
                n.node.clone(),
                if n.zone.is_empty() {
                    "-".into()
                } else {
                    n.zone.clone()
                },
                n.current.clone().unwrap_or_else(|| "-".into()),
                n.summary.clone(),
            ]
        })
        .collect();
    let mut w = [0usize; 3];
    for r in std::iter::once(&header).chain(&rows) {
        for (w, c) in w.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let _ = writeln!(out);
    for r in std::iter::once(&header).chain(&rows) {
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        );
    }
    for n in p.nodes.iter().filter(|n| n.plan.is_none()) {
        if let Some(note) = &n.note {
            let _ = writeln!(out, "  - {}: {note}", n.node);
        }
    }
    for n in &p.nodes {
        if let Some(m) = &n.drain_preflight {
            let _ = writeln!(out, "  - {}: {m}", n.node);
        }
    }
    // The plan in full once per distinct current config.
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in p.nodes.iter().filter(|n| n.plan.is_some()) {
        if let Some(c) = n.current.as_deref() {
            groups.entry(c).or_default().push(&n.node);
        }
    }
    for (from, names) in groups {
        let node = p
            .nodes
            .iter()
            .find(|n| n.current.as_deref() == Some(from) && n.plan.is_some())
            .expect("a node of the group");
        let (Some(plan), Some(Ok(old))) = (&node.plan, current.get(from)) else {
            continue;
        };
        let new = MachineConfig {
            name: p.to.clone(),
            ..Default::default()
        };
        let _ = writeln!(out, "\nfrom {from} ({}):", names.join(", "));
        for line in super::plan::render_text(plan, old, &new).lines().skip(1) {
            let _ = writeln!(out, "  {line}");
        }
    }
    let _ = writeln!(out, "\nrollout (maxUnavailable {}):", p.max_unavailable);
    for (i, b) in p.batches.iter().enumerate() {
        let _ = writeln!(out, "  {}. {}", i + 1, b.join(", "));
    }
    if p.batches.is_empty() {
        let _ = writeln!(out, "  no node would be moved");
    }
    if let Some(h) = &p.hold {
        let _ = writeln!(out, "  held: {h}");
    }
    out
}
