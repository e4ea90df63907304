//! The OS half of a plan (SPEC §5 step 8): which commands change the kernel arguments, the
//! kernel type, the extensions and the OS image, on which kind of host, or why the host cannot
//! make the change. Pure: the host's kind and, for a first apply, what it booted are inputs.
//!
//! Image-based hosts (rpm-ostree) get the upstream commands, all stacked into one staged
//! deployment, in this order: rebase, extensions, kernel type, kernel arguments. Package-based
//! hosts can change kernel arguments only (through `grubby`, or `/etc/kernel/cmdline` and
//! `kernel-install`); a change of any other OS field there is refused, naming the field.
//!
//! A first apply has no old config to diff: it is planned against what the host booted (its
//! command line, kernel, image and packages), so a node provisioned from the same config needs
//! no OS step, and one that lacks something gets exactly that.

use crate::model::MachineConfig;
use crate::model::os::{
    BASE_KERNEL_PACKAGES, KernelType, kernel_arguments, missing_argument, packages_of,
    strip_transport,
};
use serde::Serialize;

/// The node's path of the kernel command line file of package-based hosts without grubby.
pub const KERNEL_CMDLINE_FILE: &str = "/etc/kernel/cmdline";

/// The kind of host, as far as the OS half is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum HostKind {
    /// An image-based host (`/run/ostree-booted`): everything goes through rpm-ostree.
    #[serde(rename = "rpm-ostree")]
    RpmOstree,
    /// A package-based host whose boot entries `grubby` edits.
    #[serde(rename = "grubby")]
    Grubby,
    /// A package-based host without grubby: `/etc/kernel/cmdline` (the kernel-install and
    /// systemd-boot convention), then `kernel-install add` for each installed kernel when
    /// `kernel-install` exists (`kernels`: version and image path, on the node).
    #[serde(rename = "kernel-cmdline")]
    KernelCmdline {
        kernel_install: bool,
        kernels: Vec<(String, String)>,
    },
}

impl HostKind {
    pub fn image_based(&self) -> bool {
        matches!(self, HostKind::RpmOstree)
    }

    pub fn name(&self) -> &'static str {
        match self {
            HostKind::RpmOstree => "rpm-ostree",
            HostKind::Grubby => "grubby",
            HostKind::KernelCmdline { .. } => "kernel-cmdline",
        }
    }
}

/// One OS step, in the order it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", untagged)]
pub enum OsStep {
    /// Run a program (argv[0] is the program's name; the host layer resolves it).
    Run { run: Vec<String> },
    /// Rewrite `/etc/kernel/cmdline`: each of `remove` dropped once (if present), then `append`.
    Cmdline {
        write: String,
        remove: Vec<String>,
        append: Vec<String>,
    },
}

impl OsStep {
    fn run<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> OsStep {
        OsStep::Run {
            run: argv.into_iter().map(Into::into).collect(),
        }
    }
}

impl std::fmt::Display for OsStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OsStep::Run { run } => {
                let words: Vec<String> = run.iter().map(|w| shell_word(w)).collect();
                f.write_str(&words.join(" "))
            }
            OsStep::Cmdline {
                write,
                remove,
                append,
            } => {
                write!(f, "write {write}")?;
                if !remove.is_empty() {
                    write!(f, " removing {}", remove.join(" "))?;
                }
                if !append.is_empty() {
                    write!(f, " appending {}", append.join(" "))?;
                }
                Ok(())
            }
        }
    }
}

/// A word as a shell would need it to stay one word (for display only: nothing here is ever
/// run through a shell).
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@+%".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// What the booted OS must show after the reboot into a config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsExpect {
    /// Every kernel argument of the config, in order.
    pub kernel_arguments: Vec<String>,
    /// Checked on image-based hosts only (a package host never changes it).
    pub kernel_type: Option<String>,
    /// The image the booted deployment runs (image-based hosts; empty: not checked).
    pub image: String,
    /// Packages the booted deployment must have (image-based hosts).
    pub packages: Vec<String>,
}

/// What the host booted, as far as a config can ask for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Booted {
    /// `/proc/cmdline`, split.
    pub cmdline: Option<Vec<String>>,
    /// The running kernel's release (`uname -r`).
    pub kernel_release: Option<String>,
    /// Image-based hosts: the booted deployment's image reference, as rpm-ostree reports it.
    pub image: Option<String>,
    /// Image-based hosts: the booted deployment's packages (base and layered).
    pub packages: Option<Vec<String>>,
}

/// The OS half of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct OsPlan {
    /// The steps, in order; empty when the OS half does not change.
    pub steps: Vec<OsStep>,
    /// What the node must have booted for the config to be applied.
    pub expect: OsExpect,
}

/// What the config wants of the booted OS.
pub fn expect(config: &MachineConfig, host: &HostKind) -> OsExpect {
    let s = &config.spec;
    let image_based = host.image_based();
    OsExpect {
        kernel_arguments: kernel_arguments(&s.kernel_arguments),
        kernel_type: image_based.then(|| KernelType::of(s.kernel_type.as_deref()).to_string()),
        image: if image_based {
            s.os_image_url.clone()
        } else {
            String::new()
        },
        packages: if image_based {
            packages_of(&s.extensions)
                .into_iter()
                .map(String::from)
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// The OS values a plan starts from: an old config's, or (first apply) what the host booted.
struct From {
    kargs: Vec<String>,
    kernel: KernelType,
    /// None: unknown, so a non-empty new image is always rebased to.
    image: Option<String>,
    packages: Vec<String>,
}

fn from_config(c: &MachineConfig) -> From {
    From {
        kargs: kernel_arguments(&c.spec.kernel_arguments),
        kernel: KernelType::of(c.spec.kernel_type.as_deref()),
        image: Some(c.spec.os_image_url.clone()),
        packages: packages_of(&c.spec.extensions)
            .into_iter()
            .map(String::from)
            .collect(),
    }
}

/// Plans the OS half of the change from `old` (None: a first apply, planned against `booted`)
/// to `new` on `host`. `Err` lists why this host cannot make the change (unreconcilable).
pub fn plan(
    old: Option<&MachineConfig>,
    new: &MachineConfig,
    host: &HostKind,
    booted: &Booted,
) -> Result<OsPlan, Vec<String>> {
    let want = expect(new, &HostKind::RpmOstree);
    let new_kernel = KernelType::of(new.spec.kernel_type.as_deref());
    let from = match old {
        Some(o) => from_config(o),
        None => From {
            // Only what the command line lacks is appended; nothing is deleted.
            kargs: Vec::new(),
            kernel: booted
                .kernel_release
                .as_deref()
                .map_or(new_kernel, KernelType::of_release),
            image: booted
                .image
                .as_deref()
                .map(|i| strip_transport(i).to_string()),
            packages: booted.packages.clone().unwrap_or_default(),
        },
    };
    // Kernel arguments: every old one deleted, every new one appended (upstream's way); on a
    // first apply, only the ones the command line lacks are appended.
    let (remove, append): (Vec<String>, Vec<String>) = match old {
        Some(_) if from.kargs == want.kernel_arguments => (Vec::new(), Vec::new()),
        Some(_) => (from.kargs.clone(), want.kernel_arguments.clone()),
        None => (
            Vec::new(),
            lacking(&want.kernel_arguments, booted.cmdline.as_deref()),
        ),
    };
    let image_change = !new.spec.os_image_url.is_empty()
        && from.image.as_deref() != Some(new.spec.os_image_url.as_str());
    let (install, uninstall): (Vec<String>, Vec<String>) = match old {
        Some(_) => (
            want.packages
                .iter()
                .filter(|p| !from.packages.contains(p))
                .cloned()
                .collect(),
            from.packages
                .iter()
                .filter(|p| !want.packages.contains(p))
                .cloned()
                .collect(),
        ),
        None => (
            want.packages
                .iter()
                .filter(|p| !from.packages.contains(p))
                .cloned()
                .collect(),
            Vec::new(),
        ),
    };
    let kernel_change = from.kernel != new_kernel;

    if !host.image_based() {
        let mut refused = Vec::new();
        let why = format!(
            "this node is not image-based (no /run/ostree-booted): it is a {} host, where only kernelArguments can change",
            host.name()
        );
        if kernel_change {
            refused.push(format!(
                "kernelType: {why} (asked for {new_kernel}, from {})",
                from.kernel
            ));
        }
        if !install.is_empty() || !uninstall.is_empty() {
            refused.push(format!("extensions: {why}"));
        }
        if image_change {
            refused.push(format!("osImageURL: {why}"));
        }
        if !refused.is_empty() {
            return Err(refused);
        }
    }

    let mut steps = Vec::new();
    match host {
        HostKind::RpmOstree => {
            if image_change {
                steps.push(OsStep::run([
                    "rpm-ostree".to_string(),
                    "rebase".into(),
                    "--experimental".into(),
                    format!("ostree-unverified-registry:{}", new.spec.os_image_url),
                ]));
            }
            if !install.is_empty() || !uninstall.is_empty() {
                let mut argv = vec!["rpm-ostree".to_string(), "update".into()];
                for p in &install {
                    argv.push("--install".into());
                    argv.push(p.clone());
                }
                for p in &uninstall {
                    argv.push("--uninstall".into());
                    argv.push(p.clone());
                }
                steps.push(OsStep::Run { run: argv });
            }
            if kernel_change {
                steps.extend(kernel_steps(from.kernel, new_kernel));
            }
            if !remove.is_empty() || !append.is_empty() {
                let mut argv = vec!["rpm-ostree".to_string(), "kargs".into()];
                argv.extend(remove.iter().map(|a| format!("--delete-if-present={a}")));
                argv.extend(append.iter().map(|a| format!("--append={a}")));
                steps.push(OsStep::Run { run: argv });
            }
        }
        HostKind::Grubby => {
            if !remove.is_empty() || !append.is_empty() {
                let mut argv = vec!["grubby".to_string(), "--update-kernel=ALL".into()];
                if !remove.is_empty() {
                    argv.push(format!("--remove-args={}", remove.join(" ")));
                }
                if !append.is_empty() {
                    argv.push(format!("--args={}", append.join(" ")));
                }
                steps.push(OsStep::Run { run: argv });
            }
        }
        HostKind::KernelCmdline {
            kernel_install,
            kernels,
        } => {
            if !remove.is_empty() || !append.is_empty() {
                steps.push(OsStep::Cmdline {
                    write: KERNEL_CMDLINE_FILE.into(),
                    remove,
                    append,
                });
                if *kernel_install {
                    for (version, image) in kernels {
                        steps.push(OsStep::run([
                            "kernel-install",
                            "add",
                            version.as_str(),
                            image.as_str(),
                        ]));
                    }
                }
            }
        }
    }
    Ok(OsPlan {
        steps,
        expect: expect(new, host),
    })
}

/// The arguments of `want` that `cmdline` lacks (multiset: a twice-wanted argument present once
/// lacks once). An unknown command line lacks everything.
fn lacking(want: &[String], cmdline: Option<&[String]>) -> Vec<String> {
    let Some(cmdline) = cmdline else {
        return want.to_vec();
    };
    if missing_argument(want, cmdline).is_none() {
        return Vec::new();
    }
    let mut left: Vec<&String> = cmdline.iter().collect();
    let mut out = Vec::new();
    for w in want {
        match left.iter().position(|c| *c == w) {
            Some(i) => {
                left.remove(i);
            }
            None => out.push(w.clone()),
        }
    }
    out
}

/// The rpm-ostree commands that switch the kernel from one type to another (through the
/// default kernel when going between two non-default types).
fn kernel_steps(from: KernelType, to: KernelType) -> Vec<OsStep> {
    let mut steps = Vec::new();
    if from != KernelType::Default {
        let mut argv = vec!["rpm-ostree".to_string(), "override".into(), "reset".into()];
        argv.extend(BASE_KERNEL_PACKAGES.iter().map(|p| p.to_string()));
        for p in from.packages() {
            argv.push("--uninstall".into());
            argv.push(p.to_string());
        }
        steps.push(OsStep::Run { run: argv });
    }
    if to != KernelType::Default {
        let mut argv = vec!["rpm-ostree".to_string(), "override".into(), "remove".into()];
        argv.extend(BASE_KERNEL_PACKAGES.iter().map(|p| p.to_string()));
        for p in to.packages() {
            argv.push("--install".into());
            argv.push(p.to_string());
        }
        steps.push(OsStep::Run { run: argv });
    }
    steps
}

/// Checks what the host booted against what the config wants; the first mismatch, worded for
/// the node's reason.
pub fn check_booted(expect: &OsExpect, booted: &Booted) -> Result<(), String> {
    if !expect.kernel_arguments.is_empty() {
        let Some(cmdline) = &booted.cmdline else {
            return Err("cannot read /proc/cmdline to check the kernel arguments".into());
        };
        if let Some(a) = missing_argument(&expect.kernel_arguments, cmdline) {
            return Err(format!(
                "expected kernel argument {a:?} missing from /proc/cmdline"
            ));
        }
    }
    if let Some(kt) = &expect.kernel_type {
        let want = KernelType::of(Some(kt));
        if let Some(release) = &booted.kernel_release {
            let running = KernelType::of_release(release);
            if running != want {
                return Err(format!(
                    "running kernel {} is of type {running}, expected {want}",
                    release.trim()
                ));
            }
        }
    }
    if !expect.image.is_empty() {
        match &booted.image {
            Some(img) if strip_transport(img) == expect.image => {}
            Some(img) => {
                return Err(format!(
                    "booted image {} is not the expected {}",
                    strip_transport(img),
                    expect.image
                ));
            }
            None => {
                return Err(format!(
                    "the booted deployment runs no container image; expected {}",
                    expect.image
                ));
            }
        }
    }
    if let Some(have) = &booted.packages
        && let Some(p) = expect.packages.iter().find(|p| !have.contains(p))
    {
        return Err(format!(
            "package {p} of the config's extensions is not in the booted deployment"
        ));
    }
    Ok(())
}
