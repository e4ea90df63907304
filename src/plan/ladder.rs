//! The disruption ladder's last rung: when a plan ends in `Reboot`, which kind of reboot.
//!
//! A **full** reboot restarts the kernel (what the upstream daemon always does). A **soft**
//! reboot (systemd 254 and later, `soft-reboot.target`) restarts the whole userspace — every
//! service, the daemon too — on the running kernel: no firmware, boot loader, kernel or initrd.
//! It is enough when nothing the kernel or the initramfs reads changes. Pure: the caller says
//! what the running systemd supports ([`SoftRebootSupport`]); nothing here does I/O.
//!
//! `--reboot-mode` (default `full`, the upstream behaviour):
//! - `full`: always a full reboot.
//! - `auto`: soft when the change touches no kernel, initramfs, kernel argument, kernel type or
//!   OS image, touches no file the kernel reads at boot only (see [`kernel_facing`]), the force
//!   file is absent, and the running systemd supports soft reboot; full otherwise, with the
//!   reason.
//! - `soft`: soft whenever it can work: the same as `auto` except that the kernel-facing files
//!   are accepted (the user knows that a soft reboot leaves the kernel's settings as they are).
//!   A change that needs the kernel to boot (an OS field, staged OS steps, the force file), or a
//!   systemd without soft reboot, still reboots fully — it is not refused — and the reason says
//!   why (the daemon logs it as a warning). Refusing would leave the node on a config it cannot
//!   boot into; a full reboot is what the upstream daemon would do anyway.
//!
//! Choices:
//! - **Extensions** change the packages of the OS deployment: on an image-based host they are a
//!   new deployment staged by rpm-ostree, which only a boot enters (a soft reboot into it would
//!   need `/run/nextroot` prepared, which this daemon does not do). So any OS field (kernel
//!   arguments, kernel type, extensions, FIPS, OS image) and any staged OS step means full.
//! - **FIPS** turns on a kernel argument and rebuilds the initramfs: full.
//! - **The force file** (SPEC §7) asks for "re-apply, then reboot": it keeps a full reboot.
//! - **Kernel-facing files** (`auto` only): files under `/etc/sysctl.d/`, `/etc/sysctl.conf`,
//!   `/usr/lib/sysctl.d/` (a soft reboot does not reset kernel settings: a removed or lowered
//!   setting would stay in force), `/etc/modprobe.d/`, `/usr/lib/modprobe.d/` (options of
//!   modules already loaded stay), `/etc/dracut.conf`, `/etc/dracut.conf.d/`,
//!   `/usr/lib/dracut/` (initramfs inputs), `/etc/kernel/` (kernel command line and install
//!   hooks) and `/boot/`.

use super::{Plan, Subject};
use serde::Serialize;
use std::fmt;

/// `--reboot-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RebootMode {
    /// Always a full reboot (the upstream behaviour).
    #[default]
    Full,
    /// Soft whenever a soft reboot can work (the running systemd supports it and the change
    /// needs no kernel boot), full otherwise.
    Soft,
    /// Soft when the change touches nothing the kernel or the initramfs reads and the running
    /// systemd supports it, full otherwise.
    Auto,
}

/// The kind of a reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebootKind {
    /// Userspace only (`soft-reboot.target`): the kernel and its boot id stay.
    Soft,
    /// The whole machine (`reboot.target`).
    Full,
}

impl RebootKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RebootKind::Soft => "soft",
            RebootKind::Full => "full",
        }
    }
}

impl fmt::Display for RebootKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the node's systemd can soft-reboot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoftRebootSupport {
    /// It can; how that is known (`systemd 254`, `soft-reboot.target present`).
    Supported(String),
    /// It cannot, or that could not be told; why (`systemd 252: soft reboot needs 254 or
    /// later`).
    Unsupported(String),
    /// Not known: a plan made away from the node (`plan --from --to`).
    Unknown,
}

/// The first systemd version with `soft-reboot.target`.
pub const SOFT_REBOOT_SINCE: u32 = 254;

impl SoftRebootSupport {
    /// From the manager's `Version` property (`254.26-1~bpo12+1`, `252`, `v256.7`).
    pub fn from_version(version: &str) -> SoftRebootSupport {
        let digits: String = version
            .trim()
            .trim_start_matches('v')
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        match digits.parse::<u32>() {
            Ok(v) if v >= SOFT_REBOOT_SINCE => SoftRebootSupport::Supported(format!("systemd {v}")),
            Ok(v) => SoftRebootSupport::Unsupported(format!(
                "systemd {v}: soft reboot needs {SOFT_REBOOT_SINCE} or later"
            )),
            Err(_) => SoftRebootSupport::Unsupported(format!(
                "systemd version {} not understood",
                crate::model::load::quote(version)
            )),
        }
    }
}

/// Which reboot, and why (shown by `plan`, logged, kept in the status and the reboot record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebootDecision {
    pub kind: RebootKind,
    pub reason: String,
}

impl fmt::Display for RebootDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind, self.reason)
    }
}

/// What the decision looks at, beyond the mode and the support.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change<'a> {
    /// The OS fields that change (kernel arguments, kernel type, extensions, FIPS, OS image).
    pub os_fields: Vec<Subject>,
    /// OS steps are staged (a first apply's OS half, planned against what the host booted).
    pub os_steps: bool,
    /// The force file is present.
    pub force: bool,
    /// The paths of the files that change (written or removed).
    pub files: Vec<&'a str>,
}

impl<'a> Change<'a> {
    /// The change a plan describes (`force`: the force file is present).
    pub fn of_plan(plan: &'a Plan, force: bool) -> Change<'a> {
        let mut os_fields = Vec::new();
        let mut files = Vec::new();
        for c in &plan.changes {
            match c.kind {
                Subject::File => files.extend(c.path.as_deref()),
                Subject::Unit | Subject::SshKey => {}
                k => {
                    if !os_fields.contains(&k) {
                        os_fields.push(k);
                    }
                }
            }
        }
        Change {
            os_fields,
            os_steps: !plan.os_steps.is_empty(),
            force,
            files,
        }
    }
}

/// The files a soft reboot would not bring fully into effect, and why (see the module docs).
const KERNEL_FACING: &[(&str, &str)] = &[
    (
        "/etc/sysctl.d/",
        "kernel settings are not reset by a soft reboot",
    ),
    (
        "/usr/lib/sysctl.d/",
        "kernel settings are not reset by a soft reboot",
    ),
    (
        "/etc/sysctl.conf",
        "kernel settings are not reset by a soft reboot",
    ),
    (
        "/etc/modprobe.d/",
        "options of loaded kernel modules stay as they are",
    ),
    (
        "/usr/lib/modprobe.d/",
        "options of loaded kernel modules stay as they are",
    ),
    ("/etc/dracut.conf", "initramfs input"),
    ("/etc/dracut.conf.d/", "initramfs input"),
    ("/usr/lib/dracut/", "initramfs input"),
    (
        "/etc/kernel/",
        "read when the kernel is installed or booted",
    ),
    ("/boot/", "read by the boot loader"),
];

/// Why a soft reboot would not bring `path` fully into effect, if it would not.
pub fn kernel_facing(path: &str) -> Option<&'static str> {
    KERNEL_FACING.iter().find_map(|(prefix, why)| {
        let hit = if prefix.ends_with('/') {
            path.starts_with(prefix)
        } else {
            path == *prefix
        };
        hit.then_some(*why)
    })
}

fn field_words(s: Subject) -> &'static str {
    match s {
        Subject::KernelArguments => "kernel arguments change",
        Subject::KernelType => "kernel type changes",
        Subject::Extensions => "extensions change (packages of the OS deployment)",
        Subject::Fips => "FIPS changes (kernel argument and initramfs)",
        Subject::OsImageUrl => "OS image changes",
        Subject::File | Subject::Unit | Subject::SshKey => "",
    }
}

/// The reason of a soft reboot.
pub const SOFT_REASON: &str = "no kernel, initramfs, kernel argument or image change";

/// Decides the kind of a reboot the plan ends in. Pure.
pub fn decide(change: &Change, mode: RebootMode, support: &SoftRebootSupport) -> RebootDecision {
    let full = |reason: String| RebootDecision {
        kind: RebootKind::Full,
        reason,
    };
    if mode == RebootMode::Full {
        return full("--reboot-mode=full".into());
    }
    if change.force {
        return full("the force file asks for a full reboot".into());
    }
    if !change.os_fields.is_empty() {
        let words: Vec<&str> = change.os_fields.iter().map(|f| field_words(*f)).collect();
        return full(words.join(", "));
    }
    if change.os_steps {
        return full("OS changes are staged: only a boot enters them".into());
    }
    if mode == RebootMode::Auto
        && let Some((path, why)) = change
            .files
            .iter()
            .find_map(|p| kernel_facing(p).map(|why| (*p, why)))
    {
        return full(format!("{path}: {why}"));
    }
    match support {
        SoftRebootSupport::Supported(how) => RebootDecision {
            kind: RebootKind::Soft,
            reason: format!("{SOFT_REASON}; {how}"),
        },
        SoftRebootSupport::Unsupported(why) => full(format!("no soft reboot: {why}")),
        SoftRebootSupport::Unknown => RebootDecision {
            kind: RebootKind::Soft,
            reason: format!(
                "{SOFT_REASON}; if the node's systemd is {SOFT_REBOOT_SINCE} or later, else full"
            ),
        },
    }
}
