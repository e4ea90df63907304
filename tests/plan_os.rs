//! Table tests of the OS half's pure decisions: the command lines for kernel arguments, kernel
//! type, extensions and the OS image on each kind of host, the package-host refusals, a first
//! apply planned against what the host booted, the post-boot check, and the value checks.

use machine_config_daemon::model::MachineConfig;
use machine_config_daemon::model::os::{
    KernelType, check_extension, check_image_reference, check_kernel_argument, missing_argument,
    split_kernel_arguments,
};
use machine_config_daemon::plan::os::{Booted, HostKind, OsExpect, OsStep, check_booted, plan};

fn mc(kargs: &[&str], kt: Option<&str>, ext: &[&str], image: &str) -> MachineConfig {
    let mut m = MachineConfig {
        name: "x".into(),
        ..Default::default()
    };
    m.spec.kernel_arguments = kargs.iter().map(|s| s.to_string()).collect();
    m.spec.kernel_type = kt.map(String::from);
    m.spec.extensions = ext.iter().map(|s| s.to_string()).collect();
    m.spec.os_image_url = image.into();
    m
}

fn kargs(k: &[&str]) -> MachineConfig {
    mc(k, None, &[], "")
}

fn lines(steps: &[OsStep]) -> Vec<String> {
    steps.iter().map(ToString::to_string).collect()
}

fn rpm(old: &MachineConfig, new: &MachineConfig) -> Vec<String> {
    lines(
        &plan(Some(old), new, &HostKind::RpmOstree, &Booted::default())
            .unwrap()
            .steps,
    )
}

#[test]
fn kernel_argument_diffs() {
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (&[], &[], &[]),
        (&[], &["nosmt"], &["rpm-ostree kargs --append=nosmt"]),
        (
            &["nosmt"],
            &[],
            &["rpm-ostree kargs --delete-if-present=nosmt"],
        ),
        (&["a", "b"], &["a", "b"], &[]),
        // Reordered: order matters, every old one deleted, every new one appended.
        (
            &["a", "b"],
            &["b", "a"],
            &["rpm-ostree kargs --delete-if-present=a --delete-if-present=b --append=b --append=a"],
        ),
        // Repeated arguments are kept.
        (
            &[],
            &["console=tty0", "console=ttyS0,115200"],
            &["rpm-ostree kargs --append=console=tty0 --append=console=ttyS0,115200"],
        ),
        // One entry with several arguments, values with '=' and quoted spaces.
        (
            &[],
            &["a=1 b=x=y", "dyndbg=\"file foo.c +p\""],
            &["rpm-ostree kargs --append=a=1 --append=b=x=y '--append=dyndbg=\"file foo.c +p\"'"],
        ),
        // An entry split differently is still the same arguments.
        (&["a b"], &["a", "b"], &[]),
    ];
    for (old, new, want) in cases {
        assert_eq!(rpm(&kargs(old), &kargs(new)), *want, "{old:?} -> {new:?}");
    }
    // The argv itself: one word per argument, never a shell.
    let p = plan(
        Some(&kargs(&[])),
        &kargs(&["dyndbg=\"file foo.c +p\""]),
        &HostKind::RpmOstree,
        &Booted::default(),
    )
    .unwrap();
    assert_eq!(
        p.steps,
        [OsStep::Run {
            run: vec![
                "rpm-ostree".into(),
                "kargs".into(),
                "--append=dyndbg=\"file foo.c +p\"".into()
            ]
        }]
    );
}

#[test]
fn kernel_type_transitions() {
    let to_rt = "rpm-ostree override remove kernel kernel-core kernel-modules kernel-modules-core kernel-modules-extra --install kernel-rt-core --install kernel-rt-modules --install kernel-rt-modules-extra";
    let from_rt = "rpm-ostree override reset kernel kernel-core kernel-modules kernel-modules-core kernel-modules-extra --uninstall kernel-rt-core --uninstall kernel-rt-modules --uninstall kernel-rt-modules-extra";
    let to_64k = "rpm-ostree override remove kernel kernel-core kernel-modules kernel-modules-core kernel-modules-extra --install kernel-64k-core --install kernel-64k-modules --install kernel-64k-modules-core --install kernel-64k-modules-extra";
    let from_64k = "rpm-ostree override reset kernel kernel-core kernel-modules kernel-modules-core kernel-modules-extra --uninstall kernel-64k-core --uninstall kernel-64k-modules --uninstall kernel-64k-modules-core --uninstall kernel-64k-modules-extra";
    let k = |t: Option<&str>| mc(&[], t, &[], "");
    let cases: &[(Option<&str>, Option<&str>, &[&str])] = &[
        (None, Some("default"), &[]),
        (None, Some("realtime"), &[to_rt]),
        (Some("realtime"), None, &[from_rt]),
        (Some("default"), Some("64k-pages"), &[to_64k]),
        (Some("64k-pages"), Some("default"), &[from_64k]),
        (Some("realtime"), Some("64k-pages"), &[from_rt, to_64k]),
        (Some("realtime"), Some("realtime"), &[]),
    ];
    for (old, new, want) in cases {
        assert_eq!(rpm(&k(*old), &k(*new)), *want, "{old:?} -> {new:?}");
    }
}

#[test]
fn extensions_and_image() {
    let e = |x: &[&str]| mc(&[], None, x, "");
    assert_eq!(
        rpm(&e(&[]), &e(&["ipsec", "wasm"])),
        [
            "rpm-ostree update --install NetworkManager-libreswan --install libreswan --install crun-wasm"
        ]
    );
    assert_eq!(
        rpm(
            &e(&["kernel-devel", "sysstat"]),
            &e(&["sysstat", "sandboxed-containers"])
        ),
        [
            "rpm-ostree update --install kata-containers --uninstall kernel-devel --uninstall kernel-headers"
        ]
    );
    assert!(rpm(&e(&["usbguard"]), &e(&["usbguard"])).is_empty());

    let img = |i: &str| mc(&[], None, &[], i);
    assert_eq!(
        rpm(&img(""), &img("quay.io/a/os:1")),
        ["rpm-ostree rebase --experimental ostree-unverified-registry:quay.io/a/os:1"]
    );
    assert!(rpm(&img("quay.io/a/os:1"), &img("quay.io/a/os:1")).is_empty());
    // An empty image keeps whatever the node runs.
    assert!(rpm(&img("quay.io/a/os:1"), &img("")).is_empty());
    // Everything at once, in order: rebase, extensions, kernel, kernel arguments.
    let all = mc(&["nosmt"], Some("realtime"), &["sysstat"], "quay.io/a/os:2");
    let steps = rpm(&mc(&[], None, &[], "quay.io/a/os:1"), &all);
    let heads: Vec<&str> = steps.iter().map(|s| s.split(' ').nth(1).unwrap()).collect();
    assert_eq!(heads, ["rebase", "update", "override", "kargs"]);
}

#[test]
fn package_hosts_change_kernel_arguments_only() {
    let grubby = plan(
        Some(&kargs(&["a", "b"])),
        &kargs(&["c"]),
        &HostKind::Grubby,
        &Booted::default(),
    )
    .unwrap();
    assert_eq!(
        lines(&grubby.steps),
        ["grubby --update-kernel=ALL '--remove-args=a b' --args=c"]
    );
    let host = HostKind::KernelCmdline {
        kernel_install: true,
        kernels: vec![("6.1.0-9-amd64".into(), "/boot/vmlinuz-6.1.0-9-amd64".into())],
    };
    let p = plan(
        Some(&kargs(&[])),
        &kargs(&["nosmt"]),
        &host,
        &Booted::default(),
    )
    .unwrap();
    assert_eq!(
        lines(&p.steps),
        [
            "write /etc/kernel/cmdline appending nosmt",
            "kernel-install add 6.1.0-9-amd64 /boot/vmlinuz-6.1.0-9-amd64"
        ]
    );
    // Only a removal is a change too; no kernel argument change writes nothing and installs
    // nothing.
    let p = plan(
        Some(&kargs(&["quiet", "nosmt"])),
        &kargs(&["quiet"]),
        &host,
        &Booted::default(),
    )
    .unwrap();
    assert_eq!(
        lines(&p.steps),
        [
            // Arguments after the first removed one are removed and appended again (order).
            "write /etc/kernel/cmdline removing quiet nosmt appending quiet",
            "kernel-install add 6.1.0-9-amd64 /boot/vmlinuz-6.1.0-9-amd64"
        ]
    );
    let p = plan(
        Some(&kargs(&["quiet"])),
        &kargs(&["quiet"]),
        &host,
        &Booted::default(),
    )
    .unwrap();
    assert!(p.steps.is_empty(), "{:?}", lines(&p.steps));
    for (new, field) in [
        (mc(&[], Some("realtime"), &[], ""), "kernelType"),
        (mc(&[], None, &["usbguard"], ""), "extensions"),
        (mc(&[], None, &[], "quay.io/a/os:1"), "osImageURL"),
    ] {
        for host in [HostKind::Grubby, host.clone()] {
            let err = plan(Some(&kargs(&[])), &new, &host, &Booted::default()).unwrap_err();
            assert_eq!(err.len(), 1, "{err:?}");
            assert!(
                err[0].starts_with(&format!(
                    "{field}: this node is not image-based (no /run/ostree-booted)"
                )),
                "{err:?}"
            );
        }
    }
    // Dropping an extension is a change too, refused the same way.
    assert!(
        plan(
            Some(&mc(&[], None, &["usbguard"], "")),
            &kargs(&[]),
            &HostKind::Grubby,
            &Booted::default()
        )
        .is_err()
    );
}

#[test]
fn a_first_apply_is_planned_against_the_boot() {
    let s = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let booted = Booted {
        cmdline: s(&["BOOT_IMAGE=/x", "root=/dev/vda", "nosmt"]),
        kernel_release: Some("5.14.0-427.el9.x86_64".into()),
        image: Some("ostree-unverified-registry:quay.io/a/os:1".into()),
        packages: s(&["kernel", "usbguard"]),
    };
    let new = mc(
        &["nosmt", "nosmt", "quiet"],
        None,
        &["usbguard"],
        "quay.io/a/os:1",
    );
    let p = plan(None, &new, &HostKind::RpmOstree, &booted).unwrap();
    assert_eq!(
        lines(&p.steps),
        ["rpm-ostree kargs --append=nosmt --append=quiet"]
    );
    let same = mc(&["nosmt"], None, &["usbguard"], "quay.io/a/os:1");
    assert!(
        plan(None, &same, &HostKind::RpmOstree, &booted)
            .unwrap()
            .steps
            .is_empty()
    );
    let rt = mc(&[], Some("realtime"), &[], "");
    assert_eq!(
        plan(None, &rt, &HostKind::RpmOstree, &booted)
            .unwrap()
            .steps
            .len(),
        1
    );
    // A package host that already runs what a config asks needs nothing, and refuses otherwise.
    assert!(
        plan(None, &kargs(&["nosmt"]), &HostKind::Grubby, &booted)
            .unwrap()
            .steps
            .is_empty()
    );
    assert!(plan(None, &rt, &HostKind::Grubby, &booted).is_err());
}

#[test]
fn the_boot_is_checked_against_the_config() {
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let expect = OsExpect {
        kernel_arguments: s(&["console=tty0", "console=ttyS0", "nosmt"]),
        kernel_type: Some("realtime".into()),
        image: "quay.io/a/os@sha256:aa".into(),
        packages: s(&["usbguard"]),
    };
    let good = Booted {
        cmdline: Some(s(&[
            "BOOT_IMAGE=/x",
            "console=tty0",
            "quiet",
            "console=ttyS0",
            "nosmt",
        ])),
        kernel_release: Some("5.14.0-427.13.1.el9_4.x86_64+rt".into()),
        image: Some("ostree-unverified-registry:quay.io/a/os@sha256:aa".into()),
        packages: Some(s(&["kernel-rt-core", "usbguard"])),
    };
    assert_eq!(check_booted(&expect, &good), Ok(()));
    let cases: Vec<(Booted, &str)> = vec![
        (
            Booted {
                cmdline: Some(s(&["console=ttyS0", "console=tty0", "nosmt"])),
                ..good.clone()
            },
            "expected kernel argument \"console=ttyS0\" missing from /proc/cmdline",
        ),
        (
            Booted {
                cmdline: Some(s(&["console=tty0", "nosmt"])),
                ..good.clone()
            },
            "expected kernel argument \"console=ttyS0\" missing from /proc/cmdline",
        ),
        (
            Booted {
                kernel_release: Some("5.14.0-427.el9.x86_64".into()),
                ..good.clone()
            },
            "running kernel 5.14.0-427.el9.x86_64 is of type default, expected realtime",
        ),
        (
            Booted {
                image: Some("ostree-unverified-registry:quay.io/a/os@sha256:bb".into()),
                ..good.clone()
            },
            "booted image quay.io/a/os@sha256:bb is not the expected quay.io/a/os@sha256:aa",
        ),
        (
            Booted {
                packages: Some(s(&["kernel-rt-core"])),
                ..good.clone()
            },
            "package usbguard of the config's extensions is not in the booted deployment",
        ),
    ];
    for (booted, want) in cases {
        assert_eq!(check_booted(&expect, &booted), Err(want.to_string()));
    }
}

#[test]
fn kernel_types_of_running_kernels() {
    for (release, want) in [
        ("5.14.0-427.el9.x86_64", KernelType::Default),
        ("5.14.0-427.13.1.el9_4.x86_64+rt", KernelType::Realtime),
        ("4.18.0-372.rt7.168.el8.x86_64", KernelType::Realtime),
        ("5.14.0-427.el9.aarch64+64k", KernelType::Pages64k),
        ("6.1.0-9-amd64", KernelType::Default),
        ("6.1.0-9-rt-amd64", KernelType::Realtime),
    ] {
        assert_eq!(KernelType::of_release(release), want, "{release}");
    }
}

#[test]
fn values_are_checked() {
    assert_eq!(
        split_kernel_arguments(" a  b=\"x y\" c ").unwrap(),
        ["a", "b=\"x y\"", "c"]
    );
    assert!(split_kernel_arguments("a=\"x").is_err());
    for bad in ["nosmt\n", "a\0b", "a\tb", "x\u{7f}"] {
        assert!(check_kernel_argument(bad).is_err(), "{bad:?}");
    }
    assert!(check_kernel_argument("console=ttyS0,115200n8").is_ok());
    assert!(check_extension("usbguard").is_ok());
    let e = check_extension("usbguard; rm -rf /").unwrap_err();
    assert!(
        e.starts_with("unknown extension \"usbguard; rm -rf /\" (supported: ipsec,"),
        "{e}"
    );
    assert!(check_extension(&"x".repeat(100_000)).unwrap_err().len() < 400);
    for good in [
        "",
        "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "registry.example.com:5000/os/rhcos:4.19",
        "localhost/os",
        "fedora/coreos:stable",
        "ubuntu",
    ] {
        assert_eq!(check_image_reference(good), Ok(()), "{good}");
    }
    for bad in [
        "not a ref!! $(reboot)",
        "docker://quay.io/a/b",
        "Quay.io/A/B",
        "quay.io/a/b@sha256:123",
        "quay.io/a/b:",
        "quay.io/a//b",
        "quay.io/a/b:-x",
    ] {
        assert!(check_image_reference(bad).is_err(), "{bad}");
    }
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        missing_argument(&s(&["a", "a"]), &s(&["a", "b"])),
        Some("a")
    );
    assert_eq!(
        missing_argument(&s(&["a", "a"]), &s(&["a", "b", "a"])),
        None
    );
}
