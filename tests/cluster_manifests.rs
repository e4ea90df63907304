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
        .filter(|f| !f.ends_with("kustomization.yaml"))
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
            .arg("-k")
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
        "customresourcedefinition.apiextensions.k8s.io/machineconfigpools.machineconfiguration.openshift.io",
        "machineconfigpool.machineconfiguration.openshift.io/master",
        "machineconfigpool.machineconfiguration.openshift.io/worker",
        "serviceaccount/machine-config-controller",
        "clusterrole.rbac.authorization.k8s.io/machine-config-controller",
        "clusterrolebinding.rbac.authorization.k8s.io/machine-config-controller",
        "role.rbac.authorization.k8s.io/machine-config-controller",
        "rolebinding.rbac.authorization.k8s.io/machine-config-controller",
        "deployment.apps/machine-config-controller",
        "serviceaccount/machine-config-server",
        "clusterrole.rbac.authorization.k8s.io/machine-config-server",
        "clusterrolebinding.rbac.authorization.k8s.io/machine-config-server",
        "daemonset.apps/machine-config-server",
        "service/machine-config-server",
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

/// Every (group/resource:verb) a role grants, sorted.
fn grants(role: &Value) -> Vec<String> {
    let mut grants: Vec<String> = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    grants.push(format!(
                        "{}/{}:{}",
                        g.as_str().unwrap(),
                        r.as_str().unwrap(),
                        v.as_str().unwrap()
                    ));
                }
            }
        }
    }
    grants.sort();
    grants
}

#[test]
fn crds_have_status_subresources_where_the_daemon_writes_status() {
    let docs = documents();
    for (name, status) in [
        ("machineconfigs.machineconfiguration.openshift.io", false),
        ("machineconfigurations.operator.openshift.io", true),
        ("machineconfignodes.machineconfiguration.openshift.io", true),
        ("machineconfigpools.machineconfiguration.openshift.io", true),
        ("controllerconfigs.machineconfiguration.openshift.io", true),
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

/// `kubectl apply -k` installs every manifest of the folder.
#[test]
fn kustomization_lists_every_manifest() {
    let k: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(format!("{DIR}/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let mut listed: Vec<String> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut files: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    files.sort();
    assert_eq!(listed, files);
}

/// The controller: two replicas, no host access, non-root, read-only root filesystem, its
/// own ServiceAccount, the leader election identity from the pod's name.
#[test]
fn controller_deployment_runs_unprivileged() {
    let docs = documents();
    let d = find(&docs, "Deployment", "machine-config-controller");
    assert_eq!(d["metadata"]["namespace"], "machine-config-daemon");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "machine-config-controller");
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(pod[host].is_null() || pod[host] == false, "{host}");
    }
    assert!(pod["volumes"].is_null(), "no volumes (no hostPath)");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["args"], serde_json::json!(["controller"]));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert!(c["securityContext"]["privileged"].is_null());
    assert_eq!(c["env"][0]["name"], "POD_NAME");
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    // `controller --help` knows POD_NAME as the identity.
    let help = Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .args(["controller", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("[env: POD_NAME="));
}

#[test]
fn controller_rbac_grants_only_what_the_controllers_use() {
    let docs = documents();
    let cluster = grants(find(&docs, "ClusterRole", "machine-config-controller"));
    let expected = [
        "/nodes:get",
        "/nodes:list",
        "/nodes:patch",
        "/nodes:watch",
        "/pods/eviction:create",
        "/pods:list",
        "/pods:watch",
        "events.k8s.io/events:create",
        "events.k8s.io/events:patch",
        "machineconfiguration.openshift.io/controllerconfigs/status:patch",
        "machineconfiguration.openshift.io/controllerconfigs/status:update",
        "machineconfiguration.openshift.io/controllerconfigs:get",
        "machineconfiguration.openshift.io/controllerconfigs:list",
        "machineconfiguration.openshift.io/controllerconfigs:watch",
        "machineconfiguration.openshift.io/machineconfigpools/status:patch",
        "machineconfiguration.openshift.io/machineconfigpools/status:update",
        "machineconfiguration.openshift.io/machineconfigpools:get",
        "machineconfiguration.openshift.io/machineconfigpools:list",
        "machineconfiguration.openshift.io/machineconfigpools:patch",
        "machineconfiguration.openshift.io/machineconfigpools:watch",
        "machineconfiguration.openshift.io/machineconfigs:create",
        "machineconfiguration.openshift.io/machineconfigs:delete",
        "machineconfiguration.openshift.io/machineconfigs:get",
        "machineconfiguration.openshift.io/machineconfigs:list",
        "machineconfiguration.openshift.io/machineconfigs:watch",
        "operator.openshift.io/machineconfigurations/status:patch",
        "operator.openshift.io/machineconfigurations/status:update",
        "operator.openshift.io/machineconfigurations:get",
        "operator.openshift.io/machineconfigurations:list",
        "operator.openshift.io/machineconfigurations:watch",
        "policy/poddisruptionbudgets:list",
        "policy/poddisruptionbudgets:watch",
    ];
    assert_eq!(cluster, expected);
    // The Lease: in its namespace only.
    let role = find(&docs, "Role", "machine-config-controller");
    assert_eq!(role["metadata"]["namespace"], "machine-config-daemon");
    assert_eq!(
        grants(role),
        [
            "coordination.k8s.io/leases:create",
            "coordination.k8s.io/leases:get",
            "coordination.k8s.io/leases:update"
        ]
    );
    let binding = find(&docs, "RoleBinding", "machine-config-controller");
    assert_eq!(binding["subjects"][0]["name"], "machine-config-controller");
}

/// The default of `--flag <ADDR>` in `machine-config-daemon server --help`, as (host, port).
fn server_default(flag: &str) -> (String, String) {
    let help = Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .args(["server", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let (_, after) = help
        .split_once(&format!("{flag} <ADDR>"))
        .unwrap_or_else(|| panic!("no {flag} in server --help:\n{help}"));
    let default = after
        .split_once("[default: ")
        .and_then(|(_, d)| d.split_once(']'))
        .map(|(d, _)| d)
        .unwrap_or_else(|| panic!("no default for {flag}:\n{help}"));
    let (host, port) = default.rsplit_once(':').unwrap();
    (host.to_string(), port.to_string())
}

#[test]
fn server_reads_pools_and_configs_only() {
    let docs = documents();
    let role = find(&docs, "ClusterRole", "machine-config-server");
    assert_eq!(
        grants(role),
        [
            "machineconfiguration.openshift.io/machineconfigpools:get",
            "machineconfiguration.openshift.io/machineconfigpools:list",
            "machineconfiguration.openshift.io/machineconfigpools:watch",
            "machineconfiguration.openshift.io/machineconfigs:get",
            "machineconfiguration.openshift.io/machineconfigs:list",
            "machineconfiguration.openshift.io/machineconfigs:watch",
        ]
    );
    let binding = find(&docs, "ClusterRoleBinding", "machine-config-server");
    assert_eq!(binding["roleRef"]["name"], "machine-config-server");
    assert_eq!(binding["subjects"][0]["name"], "machine-config-server");
    assert_eq!(binding["subjects"][0]["namespace"], "machine-config-daemon");
    find(&docs, "ServiceAccount", "machine-config-server");
}

/// Unprivileged, on the control-plane nodes' network at the server's default ports, with its
/// certificate from the Secret, probed where it answers.
#[test]
fn server_runs_unprivileged_on_control_plane_nodes() {
    let docs = documents();
    let ds = find(&docs, "DaemonSet", "machine-config-server");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "machine-config-server");
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(
        pod["nodeSelector"]["node-role.kubernetes.io/control-plane"],
        ""
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert!(pod["hostPID"].is_null());
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert!(c["securityContext"]["privileged"].is_null());
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "server",
            "--cert",
            "/etc/mcs/tls/tls.crt",
            "--key",
            "/etc/mcs/tls/tls.key"
        ]
    );
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/mcs/tls");
    assert_eq!(c["volumeMounts"][0]["readOnly"], true);
    assert_eq!(
        pod["volumes"][0]["secret"]["secretName"],
        "machine-config-server-tls"
    );
    // The args set neither address: the ports are the defaults.
    let (_, https) = server_default("--listen");
    let (_, metrics) = server_default("--metrics-address");
    assert_eq!(https, "22623");
    let port = |name: &str| {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["containerPort"].to_string())
            .unwrap()
    };
    assert_eq!(port("https"), https);
    assert_eq!(port("metrics"), metrics);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"].to_string(), metrics);
    assert_eq!(c["livenessProbe"]["tcpSocket"]["port"].to_string(), https);

    let svc = find(&docs, "Service", "machine-config-server");
    assert_eq!(
        svc["spec"]["selector"],
        ds["spec"]["template"]["metadata"]["labels"]
    );
    let ports: Vec<String> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].to_string())
        .collect();
    assert_eq!(ports, [https, metrics]);
}
