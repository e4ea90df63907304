//! The machine config server over the wire: the real server (in-process, `Server::bind`) with
//! its caches fed by the test API server (tests/support/), a TLS certificate made here by a test
//! CA, and a client that verifies the server against that CA. Then a first boot: a node root
//! holding exactly what the server returned, and the real daemon binary reaching `Done` on it
//! without writing any file.

mod mcs_client;
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use machine_config_daemon::cluster::node::{CURRENT_CONFIG, DESIRED_CONFIG, REASON, STATE};
use machine_config_daemon::server::{Server, ServerOptions};
use mcs_client::{Answer, IGN, Pki, get_plain, get_tls};
use serde_json::{Value, json};
use support::{MACHINECONFIGPOOLS, MACHINECONFIGS, NODES, TestApiServer, eventually, node};

const WAIT: Duration = Duration::from_secs(20);

/// A rendered MachineConfig writing `/etc/mco-test-file` (`contents`) and a 0600 file.
fn rendered(name: &str, contents: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"config": {
            "ignition": {"version": "3.4.0"},
            "storage": {"files": [
                {"path": "/etc/mco-test-file", "mode": 420,
                 "contents": {"source": format!("data:,{contents}")}},
                {"path": "/etc/secret-ish/private.conf", "mode": 384,
                 "contents": {"source": "data:,only%20root%0A"}},
            ]},
        }},
    })
}

fn pool(name: &str, status_config: Option<&str>) -> Value {
    let mut p = json!({
        "metadata": {"name": name},
        "spec": {"configuration": {"name": status_config.unwrap_or("")}},
    });
    if let Some(c) = status_config {
        p["status"] = json!({"configuration": {"name": c}, "updatedMachineCount": 0});
    }
    p
}

/// The test API server and a running machine config server.
struct Mcs {
    api: TestApiServer,
    pki: Pki,
    addr: SocketAddr,
    metrics: SocketAddr,
    insecure: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Mcs {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Mcs {
    async fn start(api: TestApiServer) -> Mcs {
        let pki = Pki::new();
        let opts = ServerOptions {
            kubeconfig: None,
            cert: pki.cert(),
            key: pki.key(),
            listen: "127.0.0.1:0".parse().unwrap(),
            insecure_listen: Some("127.0.0.1:0".parse().unwrap()),
            metrics_address: Some("127.0.0.1:0".parse().unwrap()),
        };
        let server = Server::bind(&opts, api.client()).await.unwrap();
        let (addr, metrics, insecure) = (
            server.https,
            server.metrics.unwrap(),
            server.insecure.unwrap(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        let mcs = Mcs {
            api,
            pki,
            addr,
            metrics,
            insecure,
            stop: Some(stop),
        };
        // Ready once the caches are filled.
        let deadline = tokio::time::Instant::now() + WAIT;
        while mcs.get("/healthz", None).await.status != 200 {
            assert!(tokio::time::Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        mcs
    }

    async fn get(&self, path: &str, accept: Option<&str>) -> Answer {
        get_tls(self.addr, &self.pki.ca_pem, path, accept)
            .await
            .unwrap()
    }
}

/// The files of a served Ignition config: path → (mode, contents).
fn files(ign: &Value) -> std::collections::BTreeMap<String, (u64, Vec<u8>)> {
    ign["storage"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let data = machine_config_daemon::model::ignition::decode_data_url(
                f["contents"]["source"].as_str().unwrap(),
            )
            .unwrap();
            (
                f["path"].as_str().unwrap().to_string(),
                (f["mode"].as_u64().unwrap_or(0o644), data),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ignition_version_is_negotiated_over_tls() {
    let api = TestApiServer::start().await;
    api.put(MACHINECONFIGS, rendered("rendered-worker-1", "one"));
    api.put(
        MACHINECONFIGPOOLS,
        pool("worker", Some("rendered-worker-1")),
    );
    let mcs = Mcs::start(api).await;
    for v in ["3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0"] {
        // As Ignition asks.
        let accept = format!("{IGN};version={v}, */*;q=0.1");
        let a = mcs.get("/config/worker", Some(&accept)).await;
        assert_eq!(a.status, 200, "{v}: {}", a.text());
        assert_eq!(a.content_type, format!("{IGN};version={v}"));
        let ign = a.json();
        assert_eq!(ign["ignition"]["version"], json!(v));
        let f = files(&ign);
        assert_eq!(f["/etc/mco-test-file"], (420, b"one".to_vec()));
        assert_eq!(f["/etc/secret-ish/private.conf"].0, 384);
        let annotations: Value =
            serde_json::from_slice(&f["/etc/machine-config-daemon/node-annotations.json"].1)
                .unwrap();
        assert_eq!(
            annotations,
            json!({CURRENT_CONFIG: "rendered-worker-1", DESIRED_CONFIG: "rendered-worker-1", STATE: "Done"})
        );
        let content: Value =
            serde_json::from_slice(&f["/etc/mcs-machine-config-content.json"].1).unwrap();
        assert_eq!(content["metadata"]["name"], json!("rendered-worker-1"));
        assert_eq!(content["kind"], json!("MachineConfig"));
    }
    // No version named: the default, 3.5.0.
    for accept in [None, Some("*/*"), Some(IGN)] {
        let a = mcs.get("/config/worker", accept).await;
        assert_eq!(a.status, 200, "{accept:?}");
        assert_eq!(
            a.json()["ignition"]["version"],
            json!("3.5.0"),
            "{accept:?}"
        );
    }
    // The same over plain HTTP, when enabled.
    let a = get_plain(mcs.insecure, "/config/worker").await;
    assert_eq!(a.status, 200);
    // One metric line per pool, counting every config served.
    let m = get_plain(mcs.metrics, "/metrics").await.text();
    assert!(
        m.contains("mcs_configs_served_total{pool=\"worker\"} 10\n"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pool_404_no_config_503_unexpressible_406() {
    let api = TestApiServer::start().await;
    let mut karg = rendered("rendered-infra-1", "x");
    karg["spec"]["config"]["kernelArguments"] = json!({"shouldExist": ["quiet"]});
    api.put(MACHINECONFIGS, karg);
    api.put(MACHINECONFIGPOOLS, pool("infra", Some("rendered-infra-1")));
    api.put(MACHINECONFIGPOOLS, pool("fresh", None));
    api.put(MACHINECONFIGPOOLS, pool("early", Some("rendered-early-1")));
    let mut bad = rendered("rendered-bad-1", "x");
    bad["spec"]["config"]["storage"]["files"][0]["path"] = json!("etc/relative");
    api.put(MACHINECONFIGS, bad);
    api.put(MACHINECONFIGPOOLS, pool("bad", Some("rendered-bad-1")));
    let mcs = Mcs::start(api).await;

    let a = mcs.get("/config/nope", None).await;
    assert_eq!(a.status, 404);
    assert!(
        a.text().contains("no MachineConfigPool \"nope\""),
        "{}",
        a.text()
    );

    let a = mcs.get("/config/fresh", None).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.retry_after.as_deref(), Some("10"));
    assert!(
        a.text().contains("has no rendered config yet"),
        "{}",
        a.text()
    );
    // Named, but not (yet) a MachineConfig.
    let a = mcs.get("/config/early", None).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.retry_after.as_deref(), Some("10"));
    assert!(a.text().contains("rendered-early-1"), "{}", a.text());

    // Ignition's kernelArguments exist from 3.3.0 on.
    let a = mcs
        .get(
            "/config/infra",
            Some(&format!("{IGN};version=3.2.0, */*;q=0.1")),
        )
        .await;
    assert_eq!(a.status, 406, "{}", a.text());
    let body = a.text();
    assert!(body.contains("asked for Ignition version 3.2.0"), "{body}");
    assert!(
        body.contains("Ignition 3.2.0 has no field kernelArguments"),
        "{body}"
    );
    assert!(
        body.contains("served as Ignition 3.3.0, 3.4.0, 3.5.0"),
        "{body}"
    );
    let a = mcs
        .get("/config/infra", Some(&format!("{IGN};version=3.3.0")))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.json()["kernelArguments"],
        json!({"shouldExist": ["quiet"]})
    );
    // A version the server does not speak.
    let a = mcs
        .get("/config/infra", Some(&format!("{IGN};version=2.2.0")))
        .await;
    assert_eq!(a.status, 406);
    assert!(a.text().contains("does not speak 2.2.0"), "{}", a.text());
    // Nothing the server produces (and the refusal speaks of this request, not the last one).
    let a = mcs.get("/config/infra", Some("text/html")).await;
    assert_eq!(a.status, 406);
    assert!(a.text().contains("no Ignition media type"), "{}", a.text());
    assert!(!a.text().contains("2.2.0"), "{}", a.text());

    // A rendered config the model refuses: 500 naming the config and the field.
    let a = mcs.get("/config/bad", None).await;
    assert_eq!(a.status, 500, "{}", a.text());
    assert!(
        a.text().contains(
            "rendered config \"rendered-bad-1\" of MachineConfigPool \"bad\" cannot be served"
        ) && a.text().contains("spec.config.storage.files[0].path"),
        "{}",
        a.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_ca_is_refused() {
    let api = TestApiServer::start().await;
    api.put(MACHINECONFIGS, rendered("rendered-worker-1", "one"));
    api.put(
        MACHINECONFIGPOOLS,
        pool("worker", Some("rendered-worker-1")),
    );
    let mcs = Mcs::start(api).await;
    let other = Pki::new();
    let err = get_tls(mcs.addr, &other.ca_pem, "/config/worker", None)
        .await
        .unwrap_err();
    assert!(err.starts_with("TLS:"), "{err}");
    assert!(err.contains("certificate"), "{err}");
}

/// A renewed certificate (the Secret's files replaced) is presented to the next client without a
/// restart; a broken one is not taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let api = TestApiServer::start().await;
    api.put(MACHINECONFIGS, rendered("rendered-worker-1", "one"));
    api.put(
        MACHINECONFIGPOOLS,
        pool("worker", Some("rendered-worker-1")),
    );
    let mcs = Mcs::start(api).await;
    let renewed = Pki::new();
    assert!(
        get_tls(mcs.addr, &renewed.ca_pem, "/config/worker", None)
            .await
            .is_err()
    );
    // A key that does not go with the certificate: the old pair stays.
    let replace = |from: &Path, to: &Path| {
        let tmp = to.with_extension("new");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    };
    replace(&renewed.key(), &mcs.pki.key());
    assert_eq!(mcs.get("/config/worker", None).await.status, 200);
    // The whole pair renewed: only the new CA is good now.
    replace(&renewed.cert(), &mcs.pki.cert());
    let a = get_tls(mcs.addr, &renewed.ca_pem, "/config/worker", None)
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let err = get_tls(mcs.addr, &mcs.pki.ca_pem, "/config/worker", None)
        .await
        .unwrap_err();
    assert!(err.starts_with("TLS:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_rendered_config_is_served_once_the_pool_moves_to_it() {
    let api = TestApiServer::start().await;
    api.put(MACHINECONFIGS, rendered("rendered-worker-1", "one"));
    api.put(
        MACHINECONFIGPOOLS,
        pool("worker", Some("rendered-worker-1")),
    );
    let mcs = Mcs::start(api).await;
    let served = |a: Answer| files(&a.json())["/etc/mco-test-file"].1.clone();
    assert_eq!(served(mcs.get("/config/worker", None).await), b"one");

    // The controller renders a new config and moves the pool to it: the watch brings both.
    mcs.api
        .put(MACHINECONFIGS, rendered("rendered-worker-2", "two"));
    mcs.api.merge(
        MACHINECONFIGPOOLS,
        "",
        "worker",
        json!({"spec": {"configuration": {"name": "rendered-worker-2"}},
               "status": {"configuration": {"name": "rendered-worker-2"}}}),
    );
    // Until both watch events are in, the old config (or, for the moment between the pool's
    // event and the config's, a 503 naming the new one) is served.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let a = mcs.get("/config/worker", None).await;
        if a.status == 503 {
            assert!(a.text().contains("rendered-worker-2"), "{}", a.text());
        } else {
            let got = served(a);
            if got == b"two" {
                break;
            }
            assert_eq!(got, b"one");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never served the new config"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Answered from the cache: the server asked the API server for nothing but its watches.
    let gets = mcs
        .api
        .requests()
        .iter()
        .filter(|r| r.verb == "get")
        .count();
    assert_eq!(gets, 0);
}

// ---- first boot ------------------------------------------------------------------------------

/// Writes every file of `ign` beneath `root`, as Ignition would (directories 0755).
fn provision(root: &Path, ign: &Value) {
    use std::os::unix::fs::PermissionsExt as _;
    for (path, (mode, data)) in files(ign) {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode as u32)).unwrap();
    }
}

fn inode(p: &Path) -> (u64, i64) {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(p).unwrap();
    (m.ino(), m.mtime_nsec())
}

/// The daemon binary in cluster mode on `root`, logging to `log`.
fn start_daemon(api: &TestApiServer, dir: &Path, root: &Path, log: &Path) -> Child {
    let kubeconfig = api.write_kubeconfig(dir);
    Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .arg("start")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--root")
        .arg(root)
        .args(["--no-systemd", "--metrics-address", "none"])
        .args(["--node-name", "worker-0"])
        .env_remove("NODE_NAME")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// A root provisioned with what the server answered for pool `worker`, and the daemon on it.
async fn first_boot(tamper: bool, content_file: bool) -> (Mcs, tempfile::TempDir, PathBuf, Reaped) {
    let api = TestApiServer::start().await;
    api.put(MACHINECONFIGS, rendered("rendered-worker-1", "one"));
    api.put(
        MACHINECONFIGPOOLS,
        pool("worker", Some("rendered-worker-1")),
    );
    // The node as the kubelet registers it: no annotations of ours.
    api.put(NODES, node("worker-0", json!({})));
    let mcs = Mcs::start(api).await;
    let ign = mcs
        .get(
            "/config/worker",
            Some(&format!("{IGN};version=3.4.0, */*;q=0.1")),
        )
        .await
        .json();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    provision(&root, &ign);
    if tamper {
        std::fs::write(root.join("etc/mco-test-file"), "edited").unwrap();
    }
    if !content_file {
        std::fs::remove_file(root.join("etc/mcs-machine-config-content.json")).unwrap();
    }
    let log = dir.path().join("daemon.log");
    let daemon = Reaped(start_daemon(&mcs.api, dir.path(), &root, &log));
    (mcs, dir, root, daemon)
}

fn annotation(api: &TestApiServer, key: &str) -> Option<String> {
    api.get(NODES, "worker-0").unwrap()["metadata"]["annotations"][key]
        .as_str()
        .map(String::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_boot_takes_the_served_config_as_current_with_no_write() {
    let (mcs, dir, root, _daemon) = first_boot(false, true).await;
    let managed = [
        root.join("etc/mco-test-file"),
        root.join("etc/secret-ish/private.conf"),
    ];
    let before: Vec<_> = managed.iter().map(|p| inode(p)).collect();
    let log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let ok = eventually(WAIT, || {
        annotation(&mcs.api, STATE).as_deref() == Some("Done")
            && annotation(&mcs.api, CURRENT_CONFIG).as_deref() == Some("rendered-worker-1")
    })
    .await;
    assert!(
        ok,
        "state {:?} reason {:?}\n{}",
        annotation(&mcs.api, STATE),
        annotation(&mcs.api, REASON),
        log()
    );
    assert_eq!(
        annotation(&mcs.api, DESIRED_CONFIG).as_deref(),
        Some("rendered-worker-1")
    );
    // Nothing rewritten: same inodes, same modification times.
    let after: Vec<_> = managed.iter().map(|p| inode(p)).collect();
    assert_eq!(before, after);
    let log = log();
    assert!(
        log.contains("first boot: the machine was provisioned with rendered-worker-1"),
        "{log}"
    );
    assert!(!log.contains("applied"), "{log}");
    // Taken from the content file the server added, not fetched.
    assert!(!log.contains("fetched MachineConfig"), "{log}");
    // The stored current config is the served one.
    let stored: Value = serde_json::from_slice(
        &std::fs::read(root.join("etc/machine-config-daemon/currentconfig")).unwrap(),
    )
    .unwrap();
    assert_eq!(stored["metadata"]["name"], json!("rendered-worker-1"));
}

/// Without the content file the daemon fetches the named config from the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_boot_without_the_content_file_fetches_the_named_config() {
    let (mcs, dir, root, _daemon) = first_boot(false, false).await;
    let before = inode(&root.join("etc/mco-test-file"));
    let ok = eventually(WAIT, || {
        annotation(&mcs.api, STATE).as_deref() == Some("Done")
            && annotation(&mcs.api, CURRENT_CONFIG).as_deref() == Some("rendered-worker-1")
    })
    .await;
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    assert!(ok, "{log}");
    assert!(log.contains("fetched MachineConfig"), "{log}");
    assert!(
        log.contains("first boot: the machine was provisioned with rendered-worker-1"),
        "{log}"
    );
    assert_eq!(inode(&root.join("etc/mco-test-file")), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_boot_on_a_disk_that_does_not_match_is_degraded() {
    let (mcs, dir, root, _daemon) = first_boot(true, true).await;
    let ok = eventually(WAIT, || {
        annotation(&mcs.api, STATE).as_deref() == Some("Degraded")
    })
    .await;
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    assert!(ok, "{log}");
    assert_eq!(
        annotation(&mcs.api, REASON).as_deref(),
        Some("content mismatch for file \"/etc/mco-test-file\"")
    );
    assert_eq!(
        annotation(&mcs.api, CURRENT_CONFIG).as_deref(),
        Some("rendered-worker-1")
    );
    // The daemon does not overwrite the file.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/mco-test-file")).unwrap(),
        "edited"
    );
}

// ---- the command ------------------------------------------------------------------------------

/// `machine-config-daemon server` as packaged runs it: one access log line per request, with the
/// pool, the client's address, the Ignition version asked for and the status code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_serves_and_logs_each_request() {
    let api = TestApiServer::start().await;
    api.put(MACHINECONFIGS, rendered("rendered-worker-1", "one"));
    api.put(
        MACHINECONFIGPOOLS,
        pool("worker", Some("rendered-worker-1")),
    );
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let log = dir.path().join("server.log");
    let child = Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .arg("server")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cert")
        .arg(pki.cert())
        .arg("--key")
        .arg(pki.key())
        .args(["--listen", "127.0.0.1:0", "--metrics-address", "none"])
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _server = Reaped(child);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    // The bound address, from the start-up line.
    let mut addr = None;
    assert!(
        eventually(WAIT, || {
            addr = read_log()
                .lines()
                .find(|l| l.contains("machine config server listening"))
                .and_then(|l| l.split("https=").nth(1))
                .and_then(|a| a.split_whitespace().next())
                .and_then(|a| a.parse::<SocketAddr>().ok());
            addr.is_some()
        })
        .await,
        "{}",
        read_log()
    );
    let addr = addr.unwrap();
    let accept = format!("{IGN};version=3.4.0, */*;q=0.1");
    let deadline = tokio::time::Instant::now() + WAIT;
    let a = loop {
        let a = get_tls(addr, &pki.ca_pem, "/config/worker", Some(&accept))
            .await
            .unwrap();
        if a.status != 503 || tokio::time::Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        get_tls(addr, &pki.ca_pem, "/config/nope", None)
            .await
            .unwrap()
            .status,
        404
    );
    let access = |status: &str| {
        read_log()
            .lines()
            .filter(|l| l.contains(" access: ") && l.contains(status))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(WAIT, || !access("status=404").is_empty()).await,
        "{}",
        read_log()
    );
    let ok = access("status=200");
    assert_eq!(ok.len(), 1, "{}", read_log());
    for field in [
        "GET /config/worker 200",
        "pool=\"worker\"",
        "client=127.0.0.1:",
        "ignition=3.4.0",
        "config=\"rendered-worker-1\"",
        "served=\"3.4.0\"",
    ] {
        assert!(ok[0].contains(field), "{field} in {}", ok[0]);
    }
    let nope = &access("status=404")[0];
    assert!(
        nope.contains("pool=\"nope\"") && nope.contains("ignition=any"),
        "{nope}"
    );
}

#[test]
fn an_unusable_certificate_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("tls.crt");
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let pki = Pki::new();
    let out = Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .arg("server")
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(pki.key())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: {}: no CERTIFICATE block found",
            cert.display()
        )),
        "{err}"
    );
    // A key that does not go with the certificate.
    let other = Pki::new();
    let out = Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .arg("server")
        .arg("--cert")
        .arg(pki.cert())
        .arg("--key")
        .arg(other.key())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not go with"), "{err}");
}
