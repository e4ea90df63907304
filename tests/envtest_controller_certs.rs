//! The controller's certificate reports against a real kube-apiserver with the upstream CRDs
//! (tests/envtest/), the controller binary running with a token of the packaged
//! `machine-config-controller` ServiceAccount (a missing permission fails the test): the
//! `ControllerConfig` status (`controllerCertificates`), each pool's `certExpirys` as `kubectl
//! get mcp -o yaml` shows them, the Warning events (an expiring certificate, a bundle that does
//! not parse) and `mcc_certificate_expiry_seconds` on the controller's metrics endpoint; then a
//! renewed bundle replaces them. Skipped, saying so, where the envtest bundle is absent (failed
//! under `CI`).

mod envtest;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use envtest::*;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{Value, json};

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// A self-signed CA `CN=cn,OU=openshift` valid from `from` to `to` (whole seconds), PEM.
fn ca(cn: &str, from: Timestamp, to: Timestamp) -> String {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, "openshift");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let t = |ts: Timestamp| time::OffsetDateTime::from_unix_timestamp(ts.as_second()).unwrap();
    p.not_before = t(from);
    p.not_after = t(to);
    p.self_signed(&KeyPair::generate().unwrap()).unwrap().pem()
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &gvk("machineconfiguration.openshift.io", "v1", kind, plural),
    )
}

/// Waits (on a watch) until `name` satisfies `cond`; its JSON.
async fn wait_obj(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    log: &Path,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let waited = tokio::time::timeout(
        WAIT,
        await_condition(api.clone(), name, |o: Option<&DynamicObject>| {
            o.is_some_and(|o| cond(&serde_json::to_value(o).unwrap()))
        }),
    )
    .await;
    let latest = serde_json::to_value(api.get(name).await.unwrap()).unwrap();
    assert!(
        matches!(waited, Ok(Ok(Some(_)))),
        "{what}: not seen; latest: {latest:#}\ncontroller log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    latest
}

/// Warning events (events.k8s.io/v1) regarding the ControllerConfig: (reason, note).
async fn events(client: &kube::Client) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ControllerConfig")
                && e.type_.as_deref() == Some("Warning")
        })
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// GET `http://addr/path`: the body.
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reported_in_status_events_and_metrics_on_a_real_api_server() {
    let Some(env) = envtest("certificates_reported_on_a_real_api_server") else {
        return;
    };
    let client = env.client().await;
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes");
    for f in ["00-namespace.yaml", "20-pools.yaml", "30-controller.yaml"] {
        apply_yaml(&client, &pkg.join(f), false).await;
    }

    // The bundles: the seed's long-lived admin signer and a kubelet signer 10.5 days from its end
    // in KubeAPIServerServingCAData, a root CA, a registry CA, and a user bundle that is no PEM.
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    let day = |d: i64| Timestamp::from_second(now.as_second() + d * 86_400).unwrap();
    let fmt = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let admin_from: Timestamp = "2024-10-25T13:13:02Z".parse().unwrap();
    let admin_to: Timestamp = "2034-10-23T13:13:02Z".parse().unwrap();
    let admin = ca("admin-kubeconfig-signer", admin_from, admin_to);
    // Ten and a half days: the event's whole days stay 10 however long the controller takes.
    let kubelet_to = Timestamp::from_second(day(10).as_second() + 43_200).unwrap();
    let kubelet_from = day(-355);
    let kubelet = ca("kubelet-signer", kubelet_from, kubelet_to);
    let root = ca("root-ca", day(-1), day(3650));
    let registry = ca("registry-ca", day(-1), day(365));
    let cc = json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "ControllerConfig",
        "metadata": {"name": "machine-config-controller"},
        "spec": {
            "kubeAPIServerServingCAData": b64(&format!("{admin}{kubelet}")),
            "rootCAData": b64(&root),
            "additionalTrustBundle": b64("not a PEM bundle"),
            "cloudProviderCAData": null,
            "imageRegistryBundleUserData": [{"file": "registry.example.com..5000", "data": b64(&registry)}],
            // Upstream's other required fields.
            "baseOSContainerImage": "example", "cloudProviderConfig": "", "clusterDNSIP": "172.30.0.10",
            "dns": {"apiVersion": "config.openshift.io/v1", "kind": "DNS", "spec": {}},
            "infra": {"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure", "spec": {}},
            "images": {}, "ipFamilies": "IPv4",
            "network": {"mtuMigration": null}, "proxy": null, "releaseImage": "example",
        },
    });
    let ccs = api(&client, "ControllerConfig", "controllerconfigs");
    ccs.create(&PostParams::default(), &serde_json::from_value(cc).unwrap())
        .await
        .unwrap();

    // The controller binary as the packaged ServiceAccount, metrics on a port of its choice.
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
    let kubeconfig = dir.path().join("controller.kubeconfig");
    env.token_kubeconfig(&kubeconfig, &token);
    let log = dir.path().join("controller.log");
    let _controller = Controller(
        Command::new(BIN)
            .args(["controller", "--identity", "envtest-certs"])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--metrics-address", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );

    // `oc get controllerconfig/machine-config-controller -o yaml | yq '.status.controllerCertificates'`
    let cert = |bundle: &str, subject: &str, from: Timestamp, to: Timestamp| {
        json!({"bundleFile": bundle, "signer": subject, "subject": subject,
               "notBefore": fmt(from), "notAfter": fmt(to)})
    };
    let expected = json!([
        cert(
            "KubeAPIServerServingCAData",
            "CN=admin-kubeconfig-signer,OU=openshift",
            admin_from,
            admin_to
        ),
        cert(
            "KubeAPIServerServingCAData",
            "CN=kubelet-signer,OU=openshift",
            kubelet_from,
            kubelet_to
        ),
        cert("RootCAData", "CN=root-ca,OU=openshift", day(-1), day(3650)),
        cert(
            "registry.example.com..5000",
            "CN=registry-ca,OU=openshift",
            day(-1),
            day(365)
        ),
    ]);
    let stored = wait_obj(
        &ccs,
        "machine-config-controller",
        "ControllerConfig status.controllerCertificates",
        &log,
        |o| o["status"]["controllerCertificates"] == expected,
    )
    .await;
    assert_eq!(
        stored["status"]["observedGeneration"],
        stored["metadata"]["generation"]
    );

    // `oc get mcp master -o yaml | yq '.status.certExpirys'`: the same list in every pool.
    let expirys = |list: &Value| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| json!({"bundle": c["bundleFile"], "subject": c["subject"], "expiry": c["notAfter"]}))
            .collect()
    };
    let pools = api(&client, "MachineConfigPool", "machineconfigpools");
    for pool in ["master", "worker"] {
        wait_obj(&pools, pool, "pool status.certExpirys", &log, |o| {
            o["status"]["certExpirys"] == expirys(&expected)
        })
        .await;
    }

    // The Warning events: the kubelet signer (10 days left) and the user bundle, once each.
    let expected_events = [
        (
            "CertificateExpiring".to_string(),
            format!(
                "certificate CN=kubelet-signer,OU=openshift in bundle KubeAPIServerServingCAData \
                 expires at {} (in 10 days)",
                fmt(kubelet_to)
            ),
        ),
        (
            "InvalidCertificateBundle".to_string(),
            "CA bundle AdditionalTrustBundle: no PEM block found in 16 bytes".to_string(),
        ),
    ];
    let got = {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut got = events(&client).await;
            got.sort();
            if got.len() >= 2 || tokio::time::Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(got, expected_events);

    // The metric on the endpoint: the kubelet signer only, the seconds to its end at the scrape.
    let text = std::fs::read_to_string(&log).unwrap();
    let addr = text
        .lines()
        .find(|l| l.contains("metrics endpoint listening"))
        .and_then(|l| l.split("address=").nth(1))
        .map(|a| a.split_whitespace().next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{text}"));
    let before = Timestamp::now().as_second();
    let body = http_get(&addr, "/metrics").await;
    let after = Timestamp::now().as_second();
    let samples: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("mcc_certificate_expiry_seconds"))
        .collect();
    assert_eq!(samples.len(), 1, "{body}");
    let (labels, value) = samples[0].rsplit_once(' ').unwrap();
    assert_eq!(
        labels,
        "mcc_certificate_expiry_seconds{bundle=\"KubeAPIServerServingCAData\",subject=\"CN=kubelet-signer,OU=openshift\"}"
    );
    let value: i64 = value.parse().unwrap();
    let end = kubelet_to.as_second();
    assert!(
        (end - after..=end - before).contains(&value),
        "{value} not the seconds from the scrape ({before}..={after}) to {end}"
    );

    // The bundles renewed: the kubelet signer for a year, the user bundle fixed. The statuses
    // follow, the metric has no sample left, no new warning.
    let renewed = ca("kubelet-signer", day(-1), day(365));
    ccs.patch(
        "machine-config-controller",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "kubeAPIServerServingCAData": b64(&format!("{admin}{renewed}")),
            "additionalTrustBundle": b64(&root),
        }})),
    )
    .await
    .unwrap();
    let mut expected = expected.as_array().unwrap().clone();
    expected[1] = cert(
        "KubeAPIServerServingCAData",
        "CN=kubelet-signer,OU=openshift",
        day(-1),
        day(365),
    );
    expected.insert(
        3,
        cert(
            "AdditionalTrustBundle",
            "CN=root-ca,OU=openshift",
            day(-1),
            day(3650),
        ),
    );
    let expected = Value::Array(expected);
    let stored = wait_obj(
        &ccs,
        "machine-config-controller",
        "renewed ControllerConfig status",
        &log,
        |o| {
            o["status"]["controllerCertificates"] == expected
                && o["status"]["observedGeneration"] == o["metadata"]["generation"]
        },
    )
    .await;
    assert_eq!(stored["metadata"]["generation"], 2);
    for pool in ["master", "worker"] {
        wait_obj(&pools, pool, "renewed certExpirys", &log, |o| {
            o["status"]["certExpirys"] == expirys(&expected)
        })
        .await;
    }
    let body = http_get(&addr, "/metrics").await;
    assert!(!body.contains("mcc_certificate_expiry_seconds{"), "{body}");
    let mut got = events(&client).await;
    got.sort();
    assert_eq!(got, expected_events);

    // The ControllerConfig deleted: the pools' certExpirys removed.
    ccs.delete("machine-config-controller", &Default::default())
        .await
        .unwrap();
    for pool in ["master", "worker"] {
        wait_obj(&pools, pool, "certExpirys removed", &log, |o| {
            o["status"].get("certExpirys").is_none()
        })
        .await;
    }

    let text = std::fs::read_to_string(&log).unwrap();
    for word in ["code: 403", "forbidden", "Forbidden"] {
        assert!(
            !text.contains(word),
            "{word} in the controller's log:\n{text}"
        );
    }
}
