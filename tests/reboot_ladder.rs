//! The disruption ladder's reboot rung (`--reboot-mode`): which kind of reboot a plan that ends
//! in `Reboot` gets, and whether a reboot asked for has happened.
//!
//! Table tests of the pure decisions ([`ladder::decide`], [`SoftRebootSupport::from_version`],
//! [`reboot::happened`]), then the decision as the built binary shows it: `plan`, and `apply
//! --no-systemd` on roots whose systemd does or does not ship `soft-reboot.target`.

mod host_common;
use host_common::*;
use machine_config_daemon::daemon::reboot::{self, RebootRecord};
use machine_config_daemon::model::policy;
use machine_config_daemon::model::{MachineConfig, machine_config_to_json};
use machine_config_daemon::plan::ladder::{
    self, Change, RebootKind, RebootMode, SoftRebootSupport,
};
use machine_config_daemon::plan::{self, PlanOptions, Subject};
use std::path::Path;
use std::process::Command;

const SOFT: RebootKind = RebootKind::Soft;
const FULL: RebootKind = RebootKind::Full;

fn supported() -> SoftRebootSupport {
    SoftRebootSupport::Supported("systemd 254".into())
}

fn unsupported() -> SoftRebootSupport {
    SoftRebootSupport::Unsupported("systemd 252: soft reboot needs 254 or later".into())
}

fn files(paths: &[&'static str]) -> Change<'static> {
    Change {
        files: paths.to_vec(),
        ..Default::default()
    }
}

fn os(fields: &[Subject]) -> Change<'static> {
    Change {
        os_fields: fields.to_vec(),
        ..Default::default()
    }
}

#[test]
fn the_ladder_decision_table() {
    let unit_file = files(&["/etc/systemd/system/app.service", "/etc/app.conf"]);
    let forced = Change {
        force: true,
        ..files(&["/etc/app.conf"])
    };
    let staged = Change {
        os_steps: true,
        ..Default::default()
    };
    let cases: Vec<(
        &str,
        Change,
        RebootMode,
        SoftRebootSupport,
        RebootKind,
        &str,
    )> = vec![
        // full: always full, whatever the change and the systemd.
        (
            "full mode",
            unit_file.clone(),
            RebootMode::Full,
            supported(),
            FULL,
            "--reboot-mode=full",
        ),
        // auto: soft for files and units only.
        (
            "auto, files",
            unit_file.clone(),
            RebootMode::Auto,
            supported(),
            SOFT,
            "no kernel, initramfs, kernel argument or image change; systemd 254",
        ),
        (
            "auto, no soft reboot in systemd",
            unit_file.clone(),
            RebootMode::Auto,
            unsupported(),
            FULL,
            "no soft reboot: systemd 252: soft reboot needs 254 or later",
        ),
        (
            "auto, plan away from the node",
            unit_file.clone(),
            RebootMode::Auto,
            SoftRebootSupport::Unknown,
            SOFT,
            "no kernel, initramfs, kernel argument or image change; if the node's systemd is 254 or later, else full",
        ),
        (
            "auto, kernel arguments",
            os(&[Subject::KernelArguments]),
            RebootMode::Auto,
            supported(),
            FULL,
            "kernel arguments change",
        ),
        (
            "auto, kernel type",
            os(&[Subject::KernelType]),
            RebootMode::Auto,
            supported(),
            FULL,
            "kernel type changes",
        ),
        (
            "auto, extensions",
            os(&[Subject::Extensions]),
            RebootMode::Auto,
            supported(),
            FULL,
            "extensions change (packages of the OS deployment)",
        ),
        (
            "auto, FIPS",
            os(&[Subject::Fips]),
            RebootMode::Auto,
            supported(),
            FULL,
            "FIPS changes (kernel argument and initramfs)",
        ),
        (
            "auto, image and kernel arguments",
            os(&[Subject::OsImageUrl, Subject::KernelArguments]),
            RebootMode::Auto,
            supported(),
            FULL,
            "OS image changes, kernel arguments change",
        ),
        (
            "auto, staged OS steps",
            staged.clone(),
            RebootMode::Auto,
            supported(),
            FULL,
            "OS changes are staged: only a boot enters them",
        ),
        (
            "auto, force file",
            forced.clone(),
            RebootMode::Auto,
            supported(),
            FULL,
            "the force file asks for a full reboot",
        ),
        (
            "auto, sysctl",
            files(&["/etc/app.conf", "/etc/sysctl.d/99-net.conf"]),
            RebootMode::Auto,
            supported(),
            FULL,
            "/etc/sysctl.d/99-net.conf: kernel settings are not reset by a soft reboot",
        ),
        (
            "auto, modprobe options",
            files(&["/etc/modprobe.d/bonding.conf"]),
            RebootMode::Auto,
            supported(),
            FULL,
            "/etc/modprobe.d/bonding.conf: options of loaded kernel modules stay as they are",
        ),
        (
            "auto, dracut",
            files(&["/etc/dracut.conf.d/10-fips.conf"]),
            RebootMode::Auto,
            supported(),
            FULL,
            "/etc/dracut.conf.d/10-fips.conf: initramfs input",
        ),
        (
            "auto, kernel command line file",
            files(&["/etc/kernel/cmdline"]),
            RebootMode::Auto,
            supported(),
            FULL,
            "/etc/kernel/cmdline: read when the kernel is installed or booted",
        ),
        // soft: kernel-facing files are accepted; what needs a kernel boot is not.
        (
            "soft, sysctl",
            files(&["/etc/sysctl.d/99-net.conf"]),
            RebootMode::Soft,
            supported(),
            SOFT,
            "no kernel, initramfs, kernel argument or image change; systemd 254",
        ),
        (
            "soft, kernel arguments",
            os(&[Subject::KernelArguments]),
            RebootMode::Soft,
            supported(),
            FULL,
            "kernel arguments change",
        ),
        (
            "soft, staged OS steps",
            staged,
            RebootMode::Soft,
            supported(),
            FULL,
            "OS changes are staged: only a boot enters them",
        ),
        (
            "soft, force file",
            forced,
            RebootMode::Soft,
            supported(),
            FULL,
            "the force file asks for a full reboot",
        ),
        (
            "soft, no soft reboot in systemd",
            unit_file,
            RebootMode::Soft,
            unsupported(),
            FULL,
            "no soft reboot: systemd 252: soft reboot needs 254 or later",
        ),
    ];
    for (what, change, mode, support, kind, reason) in cases {
        let d = ladder::decide(&change, mode, &support);
        assert_eq!((d.kind, d.reason.as_str()), (kind, reason), "{what}");
    }
}

#[test]
fn kernel_facing_paths_are_matched_by_directory_or_exact_name() {
    for (path, hit) in [
        ("/etc/sysctl.d/a.conf", true),
        ("/etc/sysctl.conf", true),
        ("/etc/sysctl.conf.d/a", false),
        ("/etc/sysctl.dx/a.conf", false),
        ("/usr/lib/sysctl.d/50-x.conf", true),
        ("/etc/modprobe.d/x.conf", true),
        ("/etc/dracut.conf", true),
        ("/etc/dracut.confx", false),
        ("/boot/loader/entries/x.conf", true),
        ("/etc/kernel/install.d/90-x.install", true),
        ("/etc/kernelx", false),
        ("/etc/chrony.conf", false),
        ("/etc/systemd/system/kubelet.service", false),
    ] {
        assert_eq!(ladder::kernel_facing(path).is_some(), hit, "{path}");
    }
}

#[test]
fn systemd_versions() {
    for (version, supported) in [
        ("254", true),
        ("254.26-1~bpo12+1", true),
        ("v256.7", true),
        ("257.4-1ubuntu3", true),
        ("253.99", false),
        ("252.39-1~deb12u2", false),
        ("", false),
        ("unknown", false),
    ] {
        let s = SoftRebootSupport::from_version(version);
        assert_eq!(
            matches!(s, SoftRebootSupport::Supported(_)),
            supported,
            "{version}: {s:?}"
        );
    }
    assert_eq!(
        SoftRebootSupport::from_version("254.26-1~bpo12+1"),
        SoftRebootSupport::Supported("systemd 254".into())
    );
    assert_eq!(
        SoftRebootSupport::from_version("252.39-1~deb12u2"),
        SoftRebootSupport::Unsupported("systemd 252: soft reboot needs 254 or later".into())
    );
    assert_eq!(
        SoftRebootSupport::from_version("x"),
        SoftRebootSupport::Unsupported("systemd version \"x\" not understood".into())
    );
}

fn record(kind: RebootKind, userspace: Option<u64>) -> RebootRecord {
    RebootRecord {
        kind,
        userspace_started: userspace,
        ..RebootRecord::full("rendered-worker-b", "boot-1")
    }
}

#[test]
fn whether_the_reboot_has_happened() {
    let cases = [
        // A full reboot: only a new boot id says it happened.
        (
            "full, same boot",
            record(FULL, Some(10)),
            "boot-1",
            Some(20),
            None,
        ),
        (
            "full, new boot",
            record(FULL, Some(10)),
            "boot-2",
            Some(20),
            Some(FULL),
        ),
        // A soft reboot keeps the boot id: a userspace started since says it happened.
        (
            "soft, new userspace",
            record(SOFT, Some(10)),
            "boot-1",
            Some(20),
            Some(SOFT),
        ),
        (
            "soft, same userspace",
            record(SOFT, Some(10)),
            "boot-1",
            Some(10),
            None,
        ),
        (
            "soft, userspace unknown now",
            record(SOFT, Some(10)),
            "boot-1",
            None,
            None,
        ),
        (
            "soft, userspace unknown then",
            record(SOFT, None),
            "boot-1",
            Some(20),
            None,
        ),
        // Asked soft, but the kernel restarted (a power cut, a reboot by hand): full.
        (
            "soft, new boot",
            record(SOFT, Some(10)),
            "boot-2",
            Some(20),
            Some(FULL),
        ),
    ];
    for (what, rec, boot, userspace, want) in cases {
        assert_eq!(reboot::happened(&rec, boot, userspace), want, "{what}");
    }
}

#[test]
fn a_record_without_a_kind_is_a_full_reboot() {
    let rec: RebootRecord =
        serde_json::from_str(r#"{"config":"rendered-worker-a","boot_id":"b"}"#).unwrap();
    assert_eq!(rec, RebootRecord::full("rendered-worker-a", "b"));
    let soft = record(SOFT, Some(7));
    let json = serde_json::to_value(&soft).unwrap();
    assert_eq!(json["kind"], "soft");
    assert_eq!(json["userspaceStarted"], 7);
    let back: RebootRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, soft);
}

#[test]
fn the_plan_feeds_the_ladder_its_os_fields_and_files() {
    let old = mc("a", vec![file("/etc/app.conf", "1\n", 0o644)]);
    let mut new = mc(
        "b",
        vec![
            file("/etc/app.conf", "2\n", 0o644),
            file("/etc/sysctl.d/99-x.conf", "x=1\n", 0o644),
        ],
    );
    new.spec.kernel_arguments = vec!["nosmt".into()];
    let p = plan::plan(&old, &new, &policy::defaults(), &PlanOptions::default());
    let c = Change::of_plan(&p, false);
    assert_eq!(c.os_fields, [Subject::KernelArguments]);
    assert!(c.os_steps);
    assert_eq!(c.files, ["/etc/app.conf", "/etc/sysctl.d/99-x.conf"]);
    assert!(!c.force);
}

// The built binary.

fn write_mc(dir: &Path, m: &MachineConfig) -> std::path::PathBuf {
    let p = dir.join(format!("{}.json", m.name));
    std::fs::write(
        &p,
        serde_json::to_vec_pretty(&machine_config_to_json(m)).unwrap(),
    )
    .unwrap();
    p
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two configs: `a`, then `b` changing a file no policy entry matches (a reboot), and `k`
/// adding a kernel argument too.
fn configs(dir: &Path) -> (String, String, String) {
    let a = mc(
        "rendered-worker-a",
        vec![file("/etc/app.conf", "1\n", 0o644)],
    );
    let b = mc(
        "rendered-worker-b",
        vec![file("/etc/app.conf", "2\n", 0o644)],
    );
    let mut k = b.clone();
    k.name = "rendered-worker-k".into();
    k.spec.kernel_arguments = vec!["nosmt".into()];
    let p = |m: &MachineConfig| write_mc(dir, m).to_string_lossy().into_owned();
    (p(&a), p(&b), p(&k))
}

#[test]
fn plan_shows_which_reboot_and_why() {
    let d = tempfile::tempdir().unwrap();
    let (a, b, k) = configs(d.path());
    // Default: full, as upstream.
    let (code, out, err) = run(&["plan", "--from", &a, "--to", &b]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("drain: yes  reboot: full (--reboot-mode=full)"),
        "{out}"
    );
    let (code, out, err) = run(&["plan", "--from", &a, "--to", &b, "--reboot-mode", "auto"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("reboot: soft (no kernel, initramfs, kernel argument or image change; if the node's systemd is 254 or later, else full)"),
        "{out}"
    );
    let (code, out, err) = run(&["plan", "--from", &a, "--to", &k, "--reboot-mode", "auto"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("reboot: full (kernel arguments change)"),
        "{out}"
    );

    // JSON, and the node's systemd read beneath --root.
    let root = make_root();
    let args = |to: &str| {
        [
            "plan",
            "--from",
            &a,
            "--to",
            to,
            "--reboot-mode",
            "auto",
            "--root",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            root.path().to_string_lossy().into_owned(),
            "-o".into(),
            "json".into(),
        ])
        .collect::<Vec<_>>()
    };
    let json = |to: &str| {
        let a = args(to);
        let (code, out, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["rebootKind"].clone()
    };
    let v = json(&b);
    assert_eq!(v["kind"], "full", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("no soft reboot: no soft-reboot.target beneath "),
        "{v}"
    );
    let unit = root
        .path()
        .join("usr/lib/systemd/system/soft-reboot.target");
    std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
    std::fs::write(&unit, "[Unit]\n").unwrap();
    let v = json(&b);
    assert_eq!(v["kind"], "soft", "{v}");
    assert_eq!(
        v["reason"],
        "no kernel, initramfs, kernel argument or image change; soft-reboot.target present"
    );
    // A plan without a reboot has no kind.
    let (code, out, _) = run(&["plan", "--from", &a, "--to", &a, "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v.get("rebootKind").is_none(), "{v}");
}

#[test]
fn apply_records_the_reboot_kind_it_decided() {
    let d = tempfile::tempdir().unwrap();
    let (a, b, _) = configs(d.path());
    let root = make_root();
    let r = root.path().to_string_lossy().into_owned();
    let (code, out, err) = run(&["apply", "--root", &r, "--config", &a, "--no-systemd"]);
    assert_eq!(code, 0, "{out}{err}");

    // This root's systemd has no soft-reboot.target: full, and the reason says why.
    let (code, out, err) = run(&[
        "apply",
        "--root",
        &r,
        "--config",
        &b,
        "--no-systemd",
        "--reboot-mode",
        "auto",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("skipped: reboot (dry run)"), "{out}");
    assert!(
        out.contains("reboot: full (no soft reboot: no soft-reboot.target"),
        "{out}"
    );

    let unit = root.path().join("lib/systemd/system/soft-reboot.target");
    std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
    std::fs::write(&unit, "[Unit]\n").unwrap();
    let (code, out, err) = run(&[
        "apply",
        "--root",
        &r,
        "--config",
        &b,
        "--no-systemd",
        "--reboot-mode",
        "auto",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["plan"]["rebootKind"]["kind"], "soft", "{v}");
    let ops: Vec<&str> = v["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["drain", "soft reboot"], "{v}");
    assert_eq!(read(root.path(), "/etc/app.conf"), "2\n");
}
