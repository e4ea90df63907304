//! packaging/kubernetes/: kubectl accepts the manifests, and they say what SPEC §10 asks.
//!
//! `kubectl apply --dry-run=client` needs API discovery even in client mode, so when kubectl is
//! installed the check runs it against the test API server (which serves discovery documents and
//! answers 404 for every object, so each manifest is "created (dry run)"); `--validate=false`
//! because offline there is no OpenAPI document to validate against. Without kubectl that part
//! fails in CI and is skipped with a message elsewhere.
//!
//! The ClusterRole's rules are checked against the requests the daemon really makes, in
//! tests/cluster_daemon.rs (`packaged_role_grants_exactly_the_requests_the_daemon_makes`).

mod precondition;
mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/kubernetes");

fn documents() -> Vec<Value> {
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "yaml"))
    {
        let text = std::fs::read_to_string(f).unwrap();
        for part in text.split("\n---\n") {
            let doc: Value =
                serde_saphyr::from_str(part).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            docs.push(doc);
        }
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} in packaging/kubernetes"))
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_apply_dry_run_accepts_the_manifests() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        precondition::missing("kubectl (Debian package kubernetes-client), for the dry run");
        return;
    }
    let server = support::TestApiServer::start().await;
    let dir = Path::new(DIR);
    let server_url = format!("http://{}", server.addr);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("kubectl")
            .args([
                "apply",
                "--dry-run=client",
                "--validate=false",
                "-o",
                "name",
                "--server",
            ])
            .arg(&server_url)
            .arg("-f")
            .arg(dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl failed:\n{stdout}\n{stderr}");
    for expected in [
        "namespace/machine-config-daemon",
        "serviceaccount/machine-config-daemon",
        "clusterrole.rbac.authorization.k8s.io/machine-config-daemon",
        "clusterrolebinding.rbac.authorization.k8s.io/machine-config-daemon",
        "daemonset.apps/machine-config-daemon",
        "customresourcedefinition.apiextensions.k8s.io/machineconfigs.machineconfiguration.openshift.io",
        "customresourcedefinition.apiextensions.k8s.io/machineconfigurations.operator.openshift.io",
        "customresourcedefinition.apiextensions.k8s.io/machineconfignodes.machineconfiguration.openshift.io",
    ] {
        assert!(
            stdout.lines().any(|l| l == expected),
            "{expected} missing in:\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn daemonset_runs_privileged_on_every_node() {
    let docs = documents();
    let ds = find(&docs, "DaemonSet", "machine-config-daemon");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["terminationGracePeriodSeconds"], 600);
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], true);
    assert_eq!(c["resources"]["requests"]["cpu"], "20m");
    assert_eq!(c["resources"]["requests"]["memory"], "50Mi");
    assert_eq!(
        c["args"],
        serde_json::json!([
            "start",
            "--cluster",
            "--root",
            "/rootfs",
            "--node-name",
            "$(NODE_NAME)",
            "--systemd-bus",
            "unix:path=/rootfs/run/dbus/system_bus_socket"
        ])
    );
    assert_eq!(c["env"][0]["name"], "NODE_NAME");
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/rootfs");
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/");
}

#[test]
fn crds_have_status_subresources_where_the_daemon_writes_status() {
    let docs = documents();
    for (name, status) in [
        ("machineconfigs.machineconfiguration.openshift.io", false),
        ("machineconfigurations.operator.openshift.io", true),
        ("machineconfignodes.machineconfiguration.openshift.io", true),
    ] {
        let crd = find(&docs, "CustomResourceDefinition", name);
        assert_eq!(crd["spec"]["scope"], "Cluster", "{name}");
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["name"], "v1");
        assert_eq!(v["subresources"]["status"].is_object(), status, "{name}");
        assert_eq!(v["schema"]["openAPIV3Schema"]["type"], "object");
    }
}

/// The probes ask `/healthz` where the daemon the DaemonSet starts actually listens: its
/// default `--metrics-address` (the container's args do not set one), on the node's loopback,
/// which a hostNetwork pod shares with the kubelet. And the container has a memory limit.
#[test]
fn daemonset_probes_the_health_endpoint_and_limits_memory() {
    let help = Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .args(["start", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let (_, after) = help
        .split_once("--metrics-address <ADDR>")
        .unwrap_or_else(|| panic!("no --metrics-address in start --help:\n{help}"));
    let default = after
        .split_once("[default: ")
        .and_then(|(_, d)| d.split_once(']'))
        .map(|(d, _)| d)
        .unwrap_or_else(|| panic!("no default for --metrics-address:\n{help}"));
    let (host, port) = default.rsplit_once(':').unwrap();

    let docs = documents();
    let ds = find(&docs, "DaemonSet", "machine-config-daemon");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let c = &pod["containers"][0];
    assert!(
        !c["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("--metrics-address")),
        "the args set --metrics-address: the probes must follow it"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(get["host"], host, "{probe}");
        assert_eq!(get["port"].to_string(), port, "{probe}");
    }
    assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
}
