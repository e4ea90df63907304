//! The OS half of an update through the real binary, against a faithful fake `rpm-ostree`
//! (`tests/fixtures/fake-rpm-ostree`, keeping booted and staged deployments in a directory) and
//! on a package-based root: staged, recorded, rebooted into (the fake plays the boot loader, a
//! new boot id, `/proc/cmdline`), validated; a failed step undone with `cleanup -p` and the old
//! files; a boot without the staged deployment staged again once, then `Degraded`; an
//! interruption while staging undone on the next start; kernel-argument drift; refusals.

mod daemon_common;
use daemon_common::*;
use machine_config_daemon::daemon::state::NodeState;
use machine_config_daemon::model::MachineConfig;
use std::path::PathBuf;
use std::process::{Command, Output};

const FAKE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fake-rpm-ostree"
);

/// A node with its fake OS: `<dir>/os` holds the fake's state, the command line, the kernel
/// release and the boot id.
struct OsNode {
    node: Node,
    os: PathBuf,
}

impl OsNode {
    fn image_based() -> OsNode {
        let n = OsNode::package_based();
        std::fs::create_dir_all(n.node.root.join("run")).unwrap();
        std::fs::write(n.node.root.join("run/ostree-booted"), "").unwrap();
        n
    }

    fn package_based() -> OsNode {
        let node = Node::new();
        let os = node.dir.path().join("os");
        std::fs::create_dir_all(&os).unwrap();
        std::fs::write(os.join("cmdline"), "BOOT_IMAGE=/vmlinuz root=/dev/vda\n").unwrap();
        std::fs::write(os.join("osrelease"), "5.14.0-427.el9.x86_64\n").unwrap();
        std::fs::write(os.join("boot_id"), "boot-1\n").unwrap();
        OsNode { node, os }
    }

    fn env(&self) -> Vec<(String, String)> {
        let p = |f: &str| self.os.join(f).display().to_string();
        vec![
            ("MCD_RPM_OSTREE".into(), FAKE.into()),
            ("FAKE_RPM_OSTREE_DIR".into(), self.os.display().to_string()),
            ("MCD_PROC_CMDLINE".into(), p("cmdline")),
            ("MCD_OSRELEASE".into(), p("osrelease")),
            ("MCD_BOOT_ID".into(), p("boot_id")),
            ("MCD_GRUBBY".into(), String::new()),
            ("MCD_KERNEL_INSTALL".into(), String::new()),
        ]
    }

    fn apply(&self, config: &MachineConfig) -> Output {
        let path = self.node.dir.path().join(format!("{}.json", config.name));
        std::fs::write(&path, config_bytes(config)).unwrap();
        let mut c = Command::new(BIN);
        c.args(["apply", "--no-systemd", "--root"])
            .arg(&self.node.root)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn");
        for (k, v) in self.env() {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn start(&self) -> Daemon {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Daemon::start(
            &self.node,
            StartOpts {
                env,
                ..Default::default()
            },
        )
    }

    /// The fake's own commands (`fake-reboot`, …).
    fn fake(&self, cmd: &str) {
        let ok = Command::new(FAKE)
            .arg(cmd)
            .env("FAKE_RPM_OSTREE_DIR", &self.os)
            .status()
            .unwrap()
            .success();
        assert!(ok, "fake-rpm-ostree {cmd}");
    }

    /// The fake's calls, one string each (arguments joined by spaces), status reads left out.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.os.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.replace('\t', " "))
            .filter(|l| !l.starts_with("status") && !l.starts_with("fake-"))
            .collect()
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.os.join("state.json")).unwrap()).unwrap()
    }
}

fn with_os(name: &str, kargs: &[&str], f: impl FnOnce(&mut MachineConfig)) -> MachineConfig {
    let mut m = mc(name, vec![file("/etc/app.conf", &format!("{name}\n"))]);
    m.spec.kernel_arguments = kargs.iter().map(|s| s.to_string()).collect();
    f(&mut m);
    m
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn current(n: &Node) -> String {
    n.current_config_name().unwrap_or_default()
}

#[test]
fn kernel_arguments_are_staged_rebooted_into_and_validated() {
    let n = OsNode::image_based();
    ok(n.apply(&with_os("a", &[], |_| {})));
    assert!(
        n.calls().is_empty(),
        "a first apply without OS fields runs nothing: {:?}",
        n.calls()
    );

    let b = with_os("b", &["nosmt", "console=tty0 console=ttyS0,115200"], |_| {});
    let out = ok(n.apply(&b));
    assert!(
        out.contains("done: os: rpm-ostree kargs --append=nosmt --append=console=tty0 --append=console=ttyS0,115200"),
        "{out}"
    );
    assert!(
        out.contains("skipped: boot into the OS changes of b"),
        "{out}"
    );
    assert_eq!(
        n.calls(),
        ["kargs --append=nosmt --append=console=tty0 --append=console=ttyS0,115200"]
    );
    let st = n.state();
    assert_eq!(
        st["staged"]["kargs"],
        serde_json::json!(["nosmt", "console=tty0", "console=ttyS0,115200"])
    );
    assert_eq!(st["booted"]["kargs"], serde_json::json!([]));

    // Before the reboot: not Done, and the status says why.
    n.node.set_desired(&b);
    let d = n.start();
    let s = d.wait("reboot pending", |s| {
        s.state == NodeState::Working && s.reason.contains("reboot pending")
    });
    assert_eq!(
        s.reason,
        "reboot pending: the OS changes of b are staged; the node must boot into them"
    );
    drop(d);

    n.fake("fake-reboot");
    let d = n.start();
    d.wait_done("b");
    assert!(!n.node.exists("/etc/machine-config-daemon/os-pending"));
    drop(d);

    // Removing one argument deletes every old one and appends the new list.
    let c = with_os("c", &["console=tty0 console=ttyS0,115200"], |_| {});
    ok(n.apply(&c));
    assert_eq!(
        n.calls().last().unwrap(),
        "kargs --delete-if-present=nosmt --delete-if-present=console=tty0 --delete-if-present=console=ttyS0,115200 --append=console=tty0 --append=console=ttyS0,115200"
    );
    n.fake("fake-reboot");
    n.node.set_desired(&c);
    let d = n.start();
    d.wait_done("c");
    let cmdline = std::fs::read_to_string(n.os.join("cmdline")).unwrap();
    assert!(!cmdline.contains("nosmt"), "{cmdline}");
}

#[test]
fn image_kernel_type_and_extensions_go_into_one_staged_deployment() {
    let n = OsNode::image_based();
    ok(n.apply(&with_os("a", &[], |_| {})));
    let image = "quay.io/example/os@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let b = with_os("b", &["nosmt"], |m| {
        m.spec.os_image_url = image.into();
        m.spec.kernel_type = Some("realtime".into());
        m.spec.extensions = vec!["usbguard".into(), "kerberos".into()];
    });
    ok(n.apply(&b));
    assert_eq!(
        n.calls(),
        [
            format!("rebase --experimental ostree-unverified-registry:{image}"),
            "update --install usbguard --install krb5-workstation --install libkadm5".into(),
            "override remove kernel kernel-core kernel-modules kernel-modules-core kernel-modules-extra --install kernel-rt-core --install kernel-rt-modules --install kernel-rt-modules-extra".into(),
            "kargs --append=nosmt".into(),
        ]
    );
    n.fake("fake-reboot");
    n.node.set_desired(&b);
    let d = n.start();
    d.wait_done("b");
    drop(d);

    // Back to the default kernel, one extension less, same image: no rebase.
    let c = with_os("c", &["nosmt"], |m| {
        m.spec.os_image_url = image.into();
        m.spec.extensions = vec!["usbguard".into()];
    });
    ok(n.apply(&c));
    assert_eq!(
        n.calls()[4..],
        [
            "update --uninstall krb5-workstation --uninstall libkadm5",
            "override reset kernel kernel-core kernel-modules kernel-modules-core kernel-modules-extra --uninstall kernel-rt-core --uninstall kernel-rt-modules --uninstall kernel-rt-modules-extra",
        ]
    );
    n.fake("fake-reboot");
    n.node.set_desired(&c);
    let d = n.start();
    d.wait_done("c");
}

#[test]
fn a_failed_os_step_drops_the_staged_deployment_and_keeps_the_old_config() {
    let n = OsNode::image_based();
    ok(n.apply(&with_os("a", &[], |_| {})));
    std::fs::write(n.os.join("fail"), "kargs").unwrap();
    let o = n.apply(&with_os("b", &["nosmt"], |m| {
        m.spec.extensions = vec!["sysstat".into()];
    }));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("injected failure of kargs"), "{err}");
    assert!(err.contains("rolled back to a"), "{err}");
    assert_eq!(
        n.calls(),
        [
            "update --install sysstat",
            "kargs --append=nosmt",
            "cleanup -p"
        ]
    );
    assert!(n.state()["staged"].is_null());
    assert_eq!(current(&n.node), "a");
    assert_eq!(n.node.read("/etc/app.conf"), "a\n");
    assert!(!n.node.exists("/etc/machine-config-daemon/os-pending"));
}

#[test]
fn a_boot_without_the_staged_deployment_is_staged_again_once_then_degraded() {
    let n = OsNode::image_based();
    ok(n.apply(&with_os("a", &[], |_| {})));
    let b = with_os("b", &["nosmt"], |_| {});
    ok(n.apply(&b));
    n.node.set_desired(&b);
    // The boot comes back in the old deployment (the staged one was lost).
    n.fake("fake-reboot-old");
    let d = n.start();
    d.wait("staged again", |s| s.reason.contains("reboot pending"));
    drop(d);
    assert_eq!(
        n.calls(),
        ["kargs --append=nosmt", "cleanup -p", "kargs --append=nosmt"]
    );
    n.fake("fake-reboot-old");
    let d = n.start();
    let reason = d.wait_degraded();
    assert_eq!(
        reason,
        "expected kernel argument \"nosmt\" missing from /proc/cmdline"
    );
    drop(d);
    // A restart says so too.
    let d = n.start();
    assert_eq!(d.wait_degraded(), reason);
}

#[test]
fn an_interruption_while_staging_is_undone_on_the_next_start() {
    let n = OsNode::image_based();
    ok(n.apply(&with_os("a", &[], |_| {})));
    // A wrapper of the fake kills the apply process during the kargs step.
    let die = n.node.dir.path().join("die-rpm-ostree");
    std::fs::write(
        &die,
        format!(
            "#!/bin/sh\ncase \"$1\" in kargs) kill -9 $PPID; sleep 1;; esac\nexec {FAKE} \"$@\"\n"
        ),
    )
    .unwrap();
    chmod(&die, 0o755);
    let b = with_os("b", &["nosmt"], |m| {
        m.spec.extensions = vec!["sysstat".into()]
    });
    let path = n.node.dir.path().join("b.json");
    std::fs::write(&path, config_bytes(&b)).unwrap();
    let mut c = Command::new(BIN);
    c.args(["apply", "--no-systemd", "--root"])
        .arg(&n.node.root)
        .arg("--config")
        .arg(&path);
    for (k, v) in n.env() {
        c.env(k, v);
    }
    c.env("MCD_RPM_OSTREE", &die);
    let o = c.output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(n.node.exists("/etc/machine-config-daemon/os-pending"));
    assert_eq!(
        current(&n.node),
        "b",
        "the files were committed before the OS steps"
    );
    assert!(!n.state()["staged"].is_null());

    // The next start undoes the staged change and puts the files of a back.
    n.node.set_desired(&with_os("a", &[], |_| {}));
    let d = n.start();
    d.wait_done("a");
    assert!(n.state()["staged"].is_null());
    assert_eq!(n.calls().last().unwrap(), "cleanup -p");
    assert_eq!(n.node.read("/etc/app.conf"), "a\n");
    assert!(!n.node.exists("/etc/machine-config-daemon/os-pending"));
}

#[test]
fn kernel_argument_drift_is_seen_at_start() {
    let n = OsNode::image_based();
    let b = with_os("b", &["nosmt", "mitigations=off"], |_| {});
    ok(n.apply(&with_os("a", &[], |_| {})));
    ok(n.apply(&b));
    n.fake("fake-reboot");
    n.node.set_desired(&b);
    let d = n.start();
    d.wait_done("b");
    drop(d);
    // Someone edits the boot entry; the node boots without one argument.
    std::fs::write(
        n.os.join("cmdline"),
        "BOOT_IMAGE=/vmlinuz root=/dev/vda mitigations=off\n",
    )
    .unwrap();
    let d = n.start();
    assert_eq!(
        d.wait_degraded(),
        "expected kernel argument \"nosmt\" missing from /proc/cmdline"
    );
}

#[test]
fn a_package_host_writes_kernel_cmdline_and_refuses_other_os_fields() {
    let n = OsNode::package_based();
    ok(n.apply(&with_os("a", &[], |_| {})));
    std::fs::create_dir_all(n.node.path("/etc/kernel")).unwrap();
    std::fs::write(
        n.node.path("/etc/kernel/cmdline"),
        "root=/dev/vda rw quiet\n",
    )
    .unwrap();
    let b = with_os("b", &["nosmt", "quiet"], |_| {});
    let out = ok(n.apply(&b));
    assert!(
        out.contains("done: os: write /etc/kernel/cmdline appending nosmt quiet"),
        "{out}"
    );
    assert_eq!(
        n.node.read("/etc/kernel/cmdline"),
        "root=/dev/vda rw quiet nosmt quiet\n"
    );
    let c = with_os("c", &["quiet"], |_| {});
    ok(n.apply(&c));
    assert_eq!(
        n.node.read("/etc/kernel/cmdline"),
        "root=/dev/vda rw quiet quiet\n"
    );

    for (field, f) in [
        (
            "osImageURL",
            Box::new(|m: &mut MachineConfig| m.spec.os_image_url = "quay.io/example/os:4.19".into())
                as Box<dyn Fn(&mut MachineConfig)>,
        ),
        (
            "kernelType",
            Box::new(|m: &mut MachineConfig| m.spec.kernel_type = Some("realtime".into())),
        ),
        (
            "extensions",
            Box::new(|m: &mut MachineConfig| m.spec.extensions = vec!["usbguard".into()]),
        ),
    ] {
        let d = with_os("d", &["quiet"], |m| f(m));
        let o = n.apply(&d);
        assert_eq!(o.status.code(), Some(3), "{field}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "{field}: this node is not image-based (no /run/ostree-booted)"
            )),
            "{field}: {err}"
        );
        assert_eq!(current(&n.node), "c", "{field}: nothing changed");
        assert_eq!(
            n.node.read("/etc/kernel/cmdline"),
            "root=/dev/vda rw quiet quiet\n"
        );
    }
}

/// A change made to a config.
type Edit = Box<dyn Fn(&mut MachineConfig)>;

#[test]
fn bad_os_values_are_refused_by_validate_plan_and_apply_alike() {
    let n = OsNode::image_based();
    let base = n.node.dir.path().join("base.json");
    std::fs::write(&base, config_bytes(&with_os("a", &[], |_| {}))).unwrap();
    ok(n.apply(&with_os("a", &[], |_| {})));
    let cases: [(&str, Edit, &str); 4] = [
        (
            "spec.kernelArguments[0]",
            Box::new(|m| m.spec.kernel_arguments = vec!["nosmt\nrm".into()]),
            "control character",
        ),
        (
            "spec.kernelArguments[0]",
            Box::new(|m| m.spec.kernel_arguments = vec!["a\0b".into()]),
            "control character",
        ),
        (
            "spec.extensions[1]",
            Box::new(|m| m.spec.extensions = vec!["usbguard".into(), "usbguard; rm -rf /".into()]),
            "unknown extension",
        ),
        (
            "spec.osImageURL",
            Box::new(|m| m.spec.os_image_url = "not a ref!! $(reboot)".into()),
            "is not a container image reference",
        ),
    ];
    for (field, f, why) in cases {
        let bad = with_os("bad", &[], |m| f(m));
        let path = n.node.dir.path().join("bad.json");
        std::fs::write(&path, config_bytes(&bad)).unwrap();
        let runs: [(&str, Vec<&std::ffi::OsStr>); 3] = [
            (
                "validate",
                vec!["validate".as_ref(), "--config".as_ref(), path.as_os_str()],
            ),
            (
                "plan",
                vec![
                    "plan".as_ref(),
                    "--from".as_ref(),
                    base.as_os_str(),
                    "--to".as_ref(),
                    path.as_os_str(),
                ],
            ),
            (
                "apply",
                vec![
                    "apply".as_ref(),
                    "--no-systemd".as_ref(),
                    "--root".as_ref(),
                    n.node.root.as_os_str(),
                    "--config".as_ref(),
                    path.as_os_str(),
                ],
            ),
        ];
        for (cmd, args) in runs {
            let mut c = Command::new(BIN);
            c.args(&args);
            for (k, v) in n.env() {
                c.env(k, v);
            }
            let o = c.output().unwrap();
            assert_eq!(o.status.code(), Some(2), "{cmd} {field}: {}", text(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains(field) && err.contains(why),
                "{cmd} {field}: {err}"
            );
        }
        assert_eq!(current(&n.node), "a");
        assert!(n.calls().is_empty(), "{:?}", n.calls());
    }
}

#[test]
fn a_files_only_update_over_staged_os_changes_still_waits_for_the_boot() {
    let n = OsNode::image_based();
    ok(n.apply(&with_os("a", &[], |_| {})));
    let b = with_os("b", &["nosmt"], |_| {});
    ok(n.apply(&b));
    // The daemon then gets c: b's OS half, other files. Nothing to stage, but b's staged
    // change has still not been booted into.
    let mut c = with_os("c", &["nosmt"], |_| {});
    c.name = "c".into();
    n.node.set_desired(&c);
    let d = n.start();
    let s = d.wait("c applied", |s| {
        s.current_config == "c" && s.state != NodeState::Working || s.reason.contains("of c")
    });
    assert_eq!(s.state, NodeState::Working, "{s:?}");
    assert_eq!(
        s.reason,
        "reboot pending: the OS changes of c are staged; the node must boot into them"
    );
    drop(d);
    n.fake("fake-reboot");
    let d = n.start();
    d.wait_done("c");
}

#[test]
fn a_boot_into_the_wrong_image_stays_degraded_across_restarts() {
    let n = OsNode::image_based();
    ok(n.apply(&with_os("a", &[], |_| {})));
    let image = "quay.io/example/os:4.19";
    let b = with_os("b", &[], |m| m.spec.os_image_url = image.into());
    ok(n.apply(&b));
    n.node.set_desired(&b);
    for _ in 0..2 {
        n.fake("fake-reboot-old");
        let d = n.start();
        d.wait("the boot checked", |s| {
            s.state == NodeState::Degraded || s.reason.contains("reboot pending")
        });
    }
    let want = "the booted deployment runs no container image; expected quay.io/example/os:4.19";
    let d = n.start();
    assert_eq!(d.wait_degraded(), want);
    drop(d);
    // Another config clears it.
    let c = with_os("c", &[], |_| {});
    n.node.set_desired(&c);
    let d = n.start();
    d.wait_done("c");
    assert!(!n.node.exists("/etc/machine-config-daemon/os-pending"));
}

#[test]
fn a_staged_deployment_dropped_before_the_reboot_is_staged_again() {
    let n = OsNode::image_based();
    ok(n.apply(&with_os("a", &[], |_| {})));
    let b = with_os("b", &["nosmt"], |_| {});
    ok(n.apply(&b));
    // Someone drops the staged deployment before the node reboots.
    let ok_cleanup = Command::new(FAKE)
        .args(["cleanup", "-p"])
        .env("FAKE_RPM_OSTREE_DIR", &n.os)
        .status()
        .unwrap()
        .success();
    assert!(ok_cleanup);
    assert!(n.state()["staged"].is_null());
    n.node.set_desired(&b);
    let d = n.start();
    d.wait("reboot pending", |s| s.reason.contains("reboot pending"));
    drop(d);
    assert_eq!(
        n.calls(),
        ["kargs --append=nosmt", "cleanup -p", "kargs --append=nosmt"]
    );
    n.fake("fake-reboot");
    let d = n.start();
    d.wait_done("b");
}

#[test]
fn try_mode_reverts_staged_kernel_arguments_through_the_os_backend() {
    let n = OsNode::image_based();
    ok(n.apply(&with_os("a", &[], |_| {})));
    let dir = n.node.path("/etc/machine-config-daemon/health.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("10-app"), "#!/bin/sh\necho app is down\nexit 1\n").unwrap();
    chmod(&dir.join("10-app"), 0o755);
    n.node.set_daemon_config("tryMode:\n  confirmTimeout: 1s\n");
    n.node.set_desired(&with_os("b", &["nosmt"], |_| {}));
    let d = n.start();
    // Staged, no systemd to reboot: the trial waits for the boot.
    d.wait("reboot pending", |s| {
        s.state == NodeState::Working && s.reason.contains("reboot pending")
    });
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(n.node.path("/etc/machine-config-daemon/try-pending")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["phase"], "AwaitingReboot");
    drop(d);

    n.fake("fake-reboot");
    let d = n.start();
    d.wait_log("try mode: resuming", 1);
    // On trial after the boot; the check fails; the revert stages the reverse change.
    let reason = d.wait_degraded();
    assert_eq!(
        reason,
        "try mode: b reverted to a: health.d/10-app: exit status: 1: app is down; not applied again until the desired config changes"
    );
    assert_eq!(n.calls().last().unwrap(), "kargs --delete-if-present=nosmt");
    assert_eq!(n.state()["staged"]["kargs"], serde_json::json!([]));
    assert_eq!(current(&n.node), "a");
    assert_eq!(n.node.read("/etc/app.conf"), "a\n");
    drop(d);

    // The boot into the reverted OS: validated, and still Degraded on the rejected config.
    n.fake("fake-reboot");
    let d = n.start();
    let st = d.wait("Degraded after the boot", |s| {
        s.state == NodeState::Degraded && s.current_config == "a"
    });
    assert_eq!(st.reason, reason);
    assert_eq!(n.state()["booted"]["kargs"], serde_json::json!([]));
}
