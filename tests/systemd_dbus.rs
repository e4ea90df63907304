//! The systemd client against a real systemd as PID 1.
//!
//! The tests that change the machine's units are `#[ignore]`d: they run inside the vm-tests
//! guest (`vm-tests/run.sh`), which sets `MCD_SYSTEMD_TESTS=1` and runs this binary with
//! `--ignored --exact NAME`. Run on a developer's machine they refuse to start rather than touch
//! its systemd. The tests without `#[ignore]` need no systemd and run with `cargo test`.

mod precondition;

use machine_config_daemon::host::systemd::{
    Bus, JobResult, ServiceManager, SystemdClient, SystemdError, SystemdOptions,
};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Refuses to run outside the vm-tests guest.
fn guest_client() -> SystemdClient {
    assert_eq!(
        std::env::var("MCD_SYSTEMD_TESTS").as_deref(),
        Ok("1"),
        "these tests change systemd units: run them in the vm-tests guest (vm-tests/run.sh), \
         which sets MCD_SYSTEMD_TESTS=1"
    );
    SystemdClient::new(SystemdOptions::default())
}

/// Runs a shell command in the guest; returns its trimmed stdout (whatever the exit status).
fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes a unit file into `dir` and makes systemd read it.
async fn install_unit(client: &SystemdClient, dir: &str, name: &str, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::create_dir_all("/run/mcd-test").unwrap();
    std::fs::write(Path::new(dir).join(name), body).unwrap();
    client.daemon_reload().await.expect("daemon-reload");
}

fn systemctl_show(unit: &str, prop: &str) -> String {
    sh(&format!("systemctl show -p {prop} --value {unit}"))
}

const RELOADABLE: &str = "[Service]\n\
    ExecStart=/bin/sleep infinity\n\
    ExecReload=/bin/sh -c 'echo reloaded >> /run/mcd-test/reload-marker'\n";

#[tokio::test]
#[ignore = "needs systemd as PID 1: run by vm-tests"]
async fn reload_runs_exec_reload_and_keeps_main_pid() {
    let client = guest_client();
    let unit = "mcd-test-reload.service";
    install_unit(&client, "/etc/systemd/system", unit, RELOADABLE).await;
    let _ = std::fs::remove_file("/run/mcd-test/reload-marker");
    client.restart_unit(unit).await.expect("start");
    let before = client.unit_properties(unit).await.unwrap();
    assert_eq!(before.active_state, "active");
    assert!(before.main_pid > 0 && before.can_reload);

    client.reload_unit(unit).await.expect("reload");

    let marker = std::fs::read_to_string("/run/mcd-test/reload-marker").expect("ExecReload ran");
    assert_eq!(marker, "reloaded\n");
    let after = client.unit_properties(unit).await.unwrap();
    assert_eq!(after.main_pid, before.main_pid, "reload must not restart");
    assert_eq!(systemctl_show(unit, "MainPID"), before.main_pid.to_string());
    println!(
        "reload: ExecReload ran, MainPID {} unchanged",
        after.main_pid
    );
}

#[tokio::test]
#[ignore = "needs systemd as PID 1: run by vm-tests"]
async fn restart_gives_new_main_pid() {
    let client = guest_client();
    let unit = "mcd-test-restart.service";
    install_unit(&client, "/etc/systemd/system", unit, RELOADABLE).await;
    client.restart_unit(unit).await.expect("start");
    let before = client.unit_properties(unit).await.unwrap().main_pid;

    client.restart_unit(unit).await.expect("restart");

    let after = client.unit_properties(unit).await.unwrap();
    assert_eq!(after.active_state, "active");
    assert!(
        after.main_pid > 0 && after.main_pid != before,
        "{before} -> {}",
        after.main_pid
    );
    assert_eq!(systemctl_show(unit, "MainPID"), after.main_pid.to_string());
    println!("restart: MainPID {before} -> {}", after.main_pid);
}

#[tokio::test]
#[ignore = "needs systemd as PID 1: run by vm-tests"]
async fn daemon_reload_makes_new_definition_active() {
    let client = guest_client();
    let unit = "mcd-test-version.service";
    let def = |v: u32| {
        format!(
            // oneshot: the start job ends after ExecStart wrote the file.
            "[Service]\nType=oneshot\nRemainAfterExit=yes\nEnvironment=VERSION={v}\n\
             ExecStart=/bin/sh -c 'echo $VERSION > /run/mcd-test/version'\n"
        )
    };
    install_unit(&client, "/etc/systemd/system", unit, &def(1)).await;
    client.restart_unit(unit).await.expect("start");
    assert_eq!(sh("cat /run/mcd-test/version"), "1");

    std::fs::write(format!("/etc/systemd/system/{unit}"), def(2)).unwrap();
    assert!(
        client
            .unit_properties(unit)
            .await
            .unwrap()
            .need_daemon_reload
    );
    assert_eq!(systemctl_show(unit, "NeedDaemonReload"), "yes");

    client.daemon_reload().await.expect("daemon-reload");

    assert!(
        !client
            .unit_properties(unit)
            .await
            .unwrap()
            .need_daemon_reload
    );
    assert_eq!(systemctl_show(unit, "NeedDaemonReload"), "no");
    assert_eq!(systemctl_show(unit, "Environment"), "VERSION=2");
    client.restart_unit(unit).await.expect("restart");
    assert_eq!(sh("cat /run/mcd-test/version"), "2");
    println!("daemon-reload: NeedDaemonReload=no, new definition (VERSION=2) running");
}

#[tokio::test]
#[ignore = "needs systemd as PID 1: run by vm-tests"]
async fn enable_disable_mask_unmask_preset() {
    let client = guest_client();
    let unit = "mcd-test-enable.service";
    let units = [unit.to_string()];
    // A vendor unit (as an OS would ship it), so masking does not replace our only copy.
    install_unit(
        &client,
        "/usr/lib/systemd/system",
        unit,
        "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n",
    )
    .await;
    let is_enabled = || sh(&format!("systemctl is-enabled {unit}"));
    assert_eq!(is_enabled(), "disabled");

    client.enable_unit_files(&units).await.expect("enable");
    assert_eq!(is_enabled(), "enabled");
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/mcd-test-enable.service").exists()
    );

    client.disable_unit_files(&units).await.expect("disable");
    assert_eq!(is_enabled(), "disabled");

    client.mask_unit_files(&units).await.expect("mask");
    assert_eq!(is_enabled(), "masked");
    assert_eq!(
        sh(&format!("readlink /etc/systemd/system/{unit}")),
        "/dev/null"
    );
    assert_eq!(
        client.unit_properties(unit).await.unwrap().load_state,
        "masked"
    );

    client.unmask_unit_files(&units).await.expect("unmask");
    assert_eq!(is_enabled(), "disabled");

    // Debian's default preset policy is "enable *".
    client.preset_unit_files(&units).await.expect("preset");
    assert_eq!(is_enabled(), "enabled");
    assert!(
        !client
            .unit_properties(unit)
            .await
            .unwrap()
            .need_daemon_reload
    );
    println!("unit files: enabled, disabled, masked, unmasked, preset -> enabled");
}

#[tokio::test]
#[ignore = "needs systemd as PID 1: run by vm-tests"]
async fn reload_without_exec_reload_is_a_clear_error() {
    let client = guest_client();
    let unit = "mcd-test-noreload.service";
    install_unit(
        &client,
        "/etc/systemd/system",
        unit,
        "[Service]\nExecStart=/bin/sleep infinity\n",
    )
    .await;
    client.restart_unit(unit).await.expect("start");
    let pid = client.unit_properties(unit).await.unwrap().main_pid;

    let err = client.reload_unit(unit).await.expect_err("cannot reload");

    assert!(matches!(err, SystemdError::CannotReload { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "reload mcd-test-noreload.service: unit has no ExecReload"
    );
    assert_eq!(client.unit_properties(unit).await.unwrap().main_pid, pid);
    println!("error: {err}");
}

#[tokio::test]
#[ignore = "needs systemd as PID 1: run by vm-tests"]
async fn missing_unit_is_a_clear_error() {
    let client = guest_client();
    let err = client
        .restart_unit("mcd-test-missing.service")
        .await
        .expect_err("no such unit");
    assert_eq!(
        err.to_string(),
        "restart mcd-test-missing.service: no such unit"
    );
    println!("error: {err}");
    let err = client
        .reload_unit("mcd-test-missing.service")
        .await
        .expect_err("no such unit");
    assert_eq!(
        err.to_string(),
        "reload mcd-test-missing.service: no such unit"
    );
    println!("error: {err}");
}

#[tokio::test]
#[ignore = "needs systemd as PID 1: run by vm-tests"]
async fn masked_unit_is_a_clear_error() {
    let client = guest_client();
    let unit = "mcd-test-masked.service";
    install_unit(
        &client,
        "/usr/lib/systemd/system",
        unit,
        "[Service]\nExecStart=/bin/sleep infinity\nExecReload=/bin/true\n",
    )
    .await;
    client
        .mask_unit_files(&[unit.to_string()])
        .await
        .expect("mask");
    let err = client.restart_unit(unit).await.expect_err("masked");
    assert_eq!(
        err.to_string(),
        "restart mcd-test-masked.service: unit is masked"
    );
    let err = client.reload_unit(unit).await.expect_err("masked");
    assert_eq!(
        err.to_string(),
        "reload mcd-test-masked.service: unit is masked"
    );
    println!("error: {err}");
}

#[tokio::test]
#[ignore = "needs systemd as PID 1: run by vm-tests"]
async fn failing_restart_reports_result_and_hint() {
    let client = guest_client();
    let unit = "mcd-test-fail.service";
    install_unit(
        &client,
        "/etc/systemd/system",
        unit,
        "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo failing on purpose; exit 3'\n",
    )
    .await;

    let err = client.restart_unit(unit).await.expect_err("unit fails");

    match &err {
        SystemdError::JobFailed { result, hint, .. } => {
            assert_eq!(*result, JobResult::Failed);
            let p = hint.0.as_ref().expect("hint");
            assert_eq!(
                (p.active_state.as_str(), p.sub_state.as_str()),
                ("failed", "failed")
            );
            assert_eq!(p.result, "exit-code");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "restart mcd-test-fail.service: job failed; unit is failed/failed, result exit-code \
         (see `journalctl -u mcd-test-fail.service`)"
    );
    println!("error: {err}");
}

#[tokio::test]
#[ignore = "needs systemd as PID 1: run by vm-tests"]
async fn job_timeout_is_reported() {
    let setup = guest_client();
    let unit = "mcd-test-slow.service";
    install_unit(
        &setup,
        "/etc/systemd/system",
        unit,
        "[Service]\nType=oneshot\nExecStart=/bin/sleep 30\n",
    )
    .await;
    // Only the job under test gets the short timeout.
    let client = SystemdClient::new(SystemdOptions {
        bus: Bus::System,
        job_timeout: Duration::from_millis(500),
    });
    // The job runs 30 s: an error naming the 500 ms timeout and the unit still activating is
    // the client giving up on it.
    let err = client.restart_unit(unit).await.expect_err("times out");
    assert!(
        err.to_string()
            .starts_with("restart mcd-test-slow.service: job did not finish within 500ms; unit is activating/start"),
        "{err}"
    );
    sh("systemctl stop --no-block mcd-test-slow.service");
    println!("error: {err}");
}

/// Phase one of the reboot scenario: asks for the reboot through the client.
#[tokio::test]
#[ignore = "needs systemd as PID 1: run by vm-tests"]
async fn reboot_via_client() {
    let client = guest_client();
    client.reboot().await.expect("reboot queued");
    println!("reboot: job queued");
}

/// D-Bus `ReloadUnit` versus `systemctl reload` of the same unit, N times each; prints medians.
#[tokio::test]
#[ignore = "benchmark: run by vm-tests/bench/reload.sh"]
async fn bench_reload_dbus_vs_systemctl() {
    let client = guest_client();
    let unit = "mcd-bench-reload.service";
    install_unit(
        &client,
        "/etc/systemd/system",
        unit,
        "[Service]\nExecStart=/bin/sleep infinity\nExecReload=/bin/true\n",
    )
    .await;
    client.restart_unit(unit).await.unwrap();
    let n: usize = std::env::var("MCD_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    // Warm-up: connection, subscription, page cache of systemctl.
    client.reload_unit(unit).await.unwrap();
    sh(&format!("systemctl reload {unit}"));

    let mut dbus = Vec::with_capacity(n);
    let mut fresh = Vec::with_capacity(n);
    let mut ctl = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.reload_unit(unit).await.unwrap();
        dbus.push(t.elapsed());

        let t = Instant::now();
        SystemdClient::new(SystemdOptions::default())
            .reload_unit(unit)
            .await
            .unwrap();
        fresh.push(t.elapsed());

        let t = Instant::now();
        let st = Command::new("systemctl")
            .args(["reload", unit])
            .status()
            .unwrap();
        assert!(st.success());
        ctl.push(t.elapsed());
    }
    let (d, f, c) = (median(dbus), median(fresh), median(ctl));
    println!("bench reload, N={n} each, median wall time per reload of {unit}:");
    println!(
        "  D-Bus client, connection reused:    {:>8.2} ms",
        d.as_secs_f64() * 1e3
    );
    println!(
        "  D-Bus client, new connection each:  {:>8.2} ms",
        f.as_secs_f64() * 1e3
    );
    println!(
        "  systemctl reload (fork+exec):       {:>8.2} ms",
        c.as_secs_f64() * 1e3
    );
    println!(
        "  ratio D-Bus/systemctl: {:.2} (reused), {:.2} (new connection)",
        d.as_secs_f64() / c.as_secs_f64(),
        f.as_secs_f64() / c.as_secs_f64()
    );
}

/// No bus at the address: the first operation says so (needs no systemd).
#[tokio::test]
async fn no_bus_is_a_clear_error_at_first_use() {
    let client = SystemdClient::new(SystemdOptions {
        bus: Bus::Address("unix:path=/nonexistent/mcd-test-bus".into()),
        ..Default::default()
    });
    let err = client
        .restart_unit("crio.service")
        .await
        .expect_err("no bus");
    assert!(err.is_unreachable(), "{err:?}");
    assert!(
        err.to_string().starts_with(
            "restart: cannot connect to the system bus at unix:path=/nonexistent/mcd-test-bus: "
        ),
        "{err}"
    );
}

/// A bus without systemd on it (a private dbus-daemon): a clear "not systemd" error.
#[tokio::test]
async fn bus_without_systemd_is_a_clear_error() {
    // A minimal bus: no service directories, so nothing can be activated as systemd1.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bus.conf");
    std::fs::write(
        &config,
        format!(
            "<busconfig><type>session</type><listen>unix:path={}/bus</listen>\
             <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>\
             <allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>",
            dir.path().display()
        ),
    )
    .unwrap();
    let Ok(mut child) = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--print-address"])
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        precondition::missing("dbus-daemon (Debian package dbus-daemon)");
        return;
    };
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let client = SystemdClient::new(SystemdOptions {
        bus: Bus::Address(line.trim().to_string()),
        ..Default::default()
    });
    let err = client.daemon_reload().await.expect_err("not systemd");
    let _ = child.kill();
    let _ = child.wait();
    assert!(matches!(err, SystemdError::NotSystemd { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("daemon-reload: systemd is not reachable on the system bus (is PID 1 systemd?): org.freedesktop.DBus.Error.ServiceUnknown"),
        "{err}"
    );
}
