//! After a reboot the daemon asked for (SPEC §5 step 11): the daemon validates the disk against
//! the config it rebooted into, then reports `Done`, or `Degraded` with the first mismatch.
//!
//! The reboot is the one thing a test cannot make the daemon do here (`--no-systemd` skips it;
//! vm-tests' `24-daemon-reboot` reboots a real guest). Before rebooting, the daemon writes its
//! reboot record (the config and this boot's id); the test writes that record as the daemon
//! does, with the boot id of an earlier boot, and starts the daemon as the boot after it would.
//!
//! Metrics after the validation: `mcd_update_state{config, err}` (the time the update ended) is
//! set with the first mismatch as `err` (empty when the disk matched), `mcd_state` says
//! `Degraded` (or `Done`), `mcd_config_drift` holds the time the mismatch was found, and
//! `mcd_reboots_failed_total` stays 0: it counts reboots that could not be started, and this
//! one happened.

mod daemon_common;
use daemon_common::*;
use machine_config_daemon::daemon::reboot::{RebootRecord, record_path};
use machine_config_daemon::daemon::state::NodeState;
use machine_config_daemon::daemon::status::ConditionStatus;
use machine_config_daemon::plan::ladder::RebootKind;

fn config() -> machine_config_daemon::model::MachineConfig {
    mc(
        "rendered-worker-a",
        vec![
            file("/etc/a.conf", "a\n"),
            file("/etc/b.conf", "b\n"),
            file("/etc/c.conf", "c\n"),
        ],
    )
}

/// A node on `config()` (applied by the daemon, which is then stopped) whose daemon has
/// recorded a reboot into it in an earlier boot.
fn rebooted_node() -> Node {
    let node = Node::new();
    node.set_desired(&config());
    {
        let d = Daemon::start(&node, StartOpts::default());
        d.wait_done("rendered-worker-a");
    }
    std::fs::remove_file(node.root.join(STATUS)).unwrap();
    RebootRecord::full("rendered-worker-a", "00000000-0000-0000-0000-000000000000")
        .write(&record_path(&node.root, "/etc/machine-config-daemon"))
        .unwrap();
    node
}

fn message(st: &machine_config_daemon::daemon::status::Status, type_: &str) -> String {
    st.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[test]
fn failed_validation_after_the_reboot_is_degraded_with_the_first_mismatch() {
    let node = rebooted_node();
    // What the node booted with differs from the config in two files.
    std::fs::write(node.path("/etc/c.conf"), "c, changed during the reboot\n").unwrap();
    chmod(&node.path("/etc/b.conf"), 0o600);

    let d = Daemon::start(
        &node,
        StartOpts {
            metrics: Some("127.0.0.1:0".into()),
            ..Default::default()
        },
    );
    let addr = d.metrics_address();
    let st = d.wait("Degraded after the reboot", |s| {
        s.state == NodeState::Degraded
    });
    assert_eq!(
        st.reason,
        "mode mismatch for file: \"/etc/b.conf\"; expected: -rw-r--r--/420/0644; received: -rw-------/384/0600"
    );
    assert_eq!(st.current_config, "rendered-worker-a");
    assert_eq!(
        st.last_outcome.as_deref(),
        Some("applied rendered-worker-a; rebooted, validation failed")
    );
    assert_eq!(st.condition("RebootedNode"), ConditionStatus::True);
    assert_eq!(st.condition("UpdateComplete"), ConditionStatus::False);
    assert_eq!(st.condition("Updated"), ConditionStatus::False);
    assert_eq!(st.post_config_action, None);
    // The record is consumed: the next start is an ordinary one.
    assert!(!record_path(&node.root, "/etc/machine-config-daemon").exists());
    // Nothing was repaired.
    assert_eq!(node.read("/etc/c.conf"), "c, changed during the reboot\n");
    assert_eq!(node.mode("/etc/b.conf") & 0o7777, 0o600);

    let (code, body) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("mcd_state{state=\"Degraded\"} 1"), "{body}");
    assert!(body.contains("mcd_state{state=\"Done\"} 0"), "{body}");
    assert_eq!(
        sample(&body, "mcd_reboots_failed_total"),
        Some(0.0),
        "{body}"
    );
    let drift = sample(&body, "mcd_config_drift").expect("mcd_config_drift");
    assert!(drift > 0.0, "{body}");
    let update_state = body
        .lines()
        .filter(|l| l.starts_with("mcd_update_state{"))
        .collect::<Vec<_>>();
    assert_eq!(update_state.len(), 1, "{body}");
    assert!(
        update_state[0].starts_with(&format!(
            "mcd_update_state{{config=\"rendered-worker-a\",err=\"{}\"}} ",
            st.reason.replace('"', "\\\"")
        )),
        "{body}"
    );

    // Repairing the files brings Done back.
    chmod(&node.path("/etc/b.conf"), 0o644);
    std::fs::write(node.path("/etc/c.conf"), "c\n").unwrap();
    d.wait_done("rendered-worker-a");
}

#[test]
fn successful_validation_after_the_reboot_is_done() {
    let node = rebooted_node();
    let d = Daemon::start(
        &node,
        StartOpts {
            metrics: Some("127.0.0.1:0".into()),
            ..Default::default()
        },
    );
    let addr = d.metrics_address();
    let st = d.wait_done("rendered-worker-a");
    assert_eq!(
        st.last_outcome.as_deref(),
        Some("applied rendered-worker-a; rebooted and validated")
    );
    let (_, body) = http_get(&addr, "/metrics");
    assert!(
        body.lines()
            .any(|l| l.starts_with("mcd_update_state{config=\"rendered-worker-a\",err=\"\"} ")),
        "{body}"
    );
    assert_eq!(
        sample(&body, "mcd_reboots_failed_total"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "mcd_reboots_total{kind=\"full\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "mcd_reboots_total{kind=\"soft\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(st.condition("RebootedNode"), ConditionStatus::True);
    assert_eq!(
        message(&st, "RebootedNode"),
        "rebooted into rendered-worker-a: full reboot"
    );
    assert_eq!(st.condition("UpdateComplete"), ConditionStatus::True);
    assert!(!record_path(&node.root, "/etc/machine-config-daemon").exists());
}

#[test]
fn a_record_from_this_boot_means_the_reboot_has_not_happened() {
    let node = rebooted_node();
    let this_boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    RebootRecord::full("rendered-worker-a", this_boot.trim())
        .write(&record_path(&node.root, "/etc/machine-config-daemon"))
        .unwrap();
    let d = Daemon::start(&node, StartOpts::default());
    let st = d.wait_done("rendered-worker-a");
    d.wait_log("still the same boot", 1);
    assert_ne!(st.condition("RebootedNode"), ConditionStatus::True);
    // Kept for the boot that follows the reboot.
    assert!(record_path(&node.root, "/etc/machine-config-daemon").exists());
}

/// A node whose daemon recorded a soft reboot into `config()` in this boot (a soft reboot keeps
/// the kernel, hence the boot id), from the userspace that started at 1000 µs.
fn soft_rebooted_node() -> (Node, std::path::PathBuf) {
    let node = rebooted_node();
    let this_boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    RebootRecord {
        kind: RebootKind::Soft,
        reason: "no kernel, initramfs, kernel argument or image change; systemd 254".into(),
        userspace_started: Some(1000),
        ..RebootRecord::full("rendered-worker-a", this_boot.trim())
    }
    .write(&record_path(&node.root, "/etc/machine-config-daemon"))
    .unwrap();
    let userspace = node.root.join("userspace-started");
    (node, userspace)
}

#[test]
fn a_soft_reboot_keeps_the_boot_id_and_is_seen_by_the_userspace_after_it() {
    let (node, userspace) = soft_rebooted_node();
    std::fs::write(&userspace, "2000\n").unwrap();
    let d = Daemon::start(
        &node,
        StartOpts {
            metrics: Some("127.0.0.1:0".into()),
            env: vec![("MCD_USERSPACE_STARTED", userspace.to_str().unwrap())],
            ..Default::default()
        },
    );
    let addr = d.metrics_address();
    let st = d.wait_done("rendered-worker-a");
    assert_eq!(
        st.last_outcome.as_deref(),
        Some("applied rendered-worker-a; soft-rebooted and validated")
    );
    assert_eq!(st.condition("RebootedNode"), ConditionStatus::True);
    assert_eq!(
        message(&st, "RebootedNode"),
        "rebooted into rendered-worker-a: soft reboot"
    );
    let last = st.last_reboot.expect("lastReboot in the status");
    assert_eq!(
        (last.kind, last.asked),
        (RebootKind::Soft, RebootKind::Soft)
    );
    assert_eq!(last.config, "rendered-worker-a");
    assert_eq!(
        last.reason,
        "no kernel, initramfs, kernel argument or image change; systemd 254"
    );
    let (_, body) = http_get(&addr, "/metrics");
    assert_eq!(
        sample(&body, "mcd_reboots_total{kind=\"soft\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "mcd_reboots_total{kind=\"full\"}"),
        Some(0.0),
        "{body}"
    );
    assert!(!record_path(&node.root, "/etc/machine-config-daemon").exists());
}

#[test]
fn a_soft_reboot_recorded_by_this_userspace_has_not_happened() {
    let (node, userspace) = soft_rebooted_node();
    // The daemon restarted, but the userspace that asked for the soft reboot still runs.
    std::fs::write(&userspace, "1000\n").unwrap();
    let d = Daemon::start(
        &node,
        StartOpts {
            env: vec![("MCD_USERSPACE_STARTED", userspace.to_str().unwrap())],
            ..Default::default()
        },
    );
    let st = d.wait_done("rendered-worker-a");
    d.wait_log(
        "a soft reboot into rendered-worker-a was requested but this is still the same boot",
        1,
    );
    assert_ne!(st.condition("RebootedNode"), ConditionStatus::True);
    assert!(st.last_reboot.is_none());
    assert!(record_path(&node.root, "/etc/machine-config-daemon").exists());
}

/// `--no-systemd` records the reboot it would have made, with the kind `--reboot-mode` decided:
/// soft where the root's systemd ships soft-reboot.target, full where it does not.
#[test]
fn the_daemon_records_the_reboot_kind_it_decided() {
    for (soft_target, kind, reason) in [
        (
            true,
            "soft",
            "no kernel, initramfs, kernel argument or image change; soft-reboot.target present",
        ),
        (
            false,
            "full",
            "no soft reboot: no soft-reboot.target beneath",
        ),
    ] {
        let node = Node::new();
        if soft_target {
            let unit = node.path("/usr/lib/systemd/system/soft-reboot.target");
            std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
            std::fs::write(&unit, "[Unit]\n").unwrap();
        }
        node.set_desired(&config());
        let d = Daemon::start(
            &node,
            StartOpts {
                args: vec!["--reboot-mode".to_string(), "auto".to_string()],
                ..Default::default()
            },
        );
        d.wait_done("rendered-worker-a");
        // A file no policy entry matches: the plan ends in a reboot.
        let b = mc(
            "rendered-worker-b",
            vec![
                file("/etc/a.conf", "a, changed\n"),
                file("/etc/b.conf", "b\n"),
                file("/etc/c.conf", "c\n"),
            ],
        );
        node.set_desired(&b);
        let st = d.wait_done("rendered-worker-b");
        let plan = st.last_plan.clone().unwrap();
        assert_eq!(plan["rebootKind"]["kind"], kind, "{plan}");
        assert!(
            plan["rebootKind"]["reason"]
                .as_str()
                .unwrap()
                .starts_with(reason),
            "{plan}"
        );
        assert_eq!(st.condition("RebootedNode"), ConditionStatus::False);
        let msg = message(&st, "RebootedNode");
        assert!(
            msg.starts_with(&format!(
                "no systemd (--no-systemd): {kind} reboot ({reason}"
            )),
            "{msg}"
        );
        let skipped = if kind == "soft" {
            "soft reboot"
        } else {
            "reboot"
        };
        assert!(
            st.last_outcome
                .as_deref()
                .unwrap()
                .ends_with(&format!("; {skipped} (no systemd (--no-systemd))")),
            "{:?}",
            st.last_outcome
        );
        d.wait_log(
            &format!("the reboot into rendered-worker-b will be {kind}"),
            1,
        );
    }
}
