//! The OS backend: applies the OS half of a config (kernel arguments, kernel type, extensions,
//! OS image) on this node, and reads back what the node booted.
//!
//! The kind of host is detected from the node's root at start ([`detect`]):
//! - `/run/ostree-booted` present: an image-based host; everything goes through `rpm-ostree`,
//!   stacked into one staged deployment, dropped with `rpm-ostree cleanup -p` on failure.
//! - otherwise a package-based host: kernel arguments through `grubby` when the root has it,
//!   else through `/etc/kernel/cmdline` (rewritten atomically) and `kernel-install add` for each
//!   installed kernel when the root has `kernel-install`. Other OS fields are refused there
//!   (see [`crate::plan::os`]).
//!
//! Programs run in the node's context: with a root other than `/`, inside `chroot ROOT`, as the
//! DaemonSet runs the upstream daemon. Their arguments are passed as argv, never through a
//! shell. Each program's location can be set in the environment, which also runs it directly
//! (not in the chroot), for tests and unusual hosts:
//!
//! | variable | program |
//! |---|---|
//! | `MCD_RPM_OSTREE` | `rpm-ostree` |
//! | `MCD_GRUBBY` | `grubby` |
//! | `MCD_KERNEL_INSTALL` | `kernel-install` |
//!
//! What the node booted is read from `/proc/cmdline` and `/proc/sys/kernel/osrelease` of the
//! daemon's own kernel (the node's kernel, in a DaemonSet as on the host); `MCD_PROC_CMDLINE`
//! and `MCD_OSRELEASE` name other files (tests). On image-based hosts the booted deployment
//! (image, packages) comes from `rpm-ostree status --json`.
//!
//! The pending OS change ([`Pending`], `os-pending` in the state directory) is the OS half's
//! journal: written before the first OS step, marked `Staged` once every step succeeded, and
//! removed once the node has booted into it and it validated. With it the daemon knows, after
//! any interruption, whether to undo a half-staged change, to reboot into a staged one, or to
//! validate the boot.

use super::HostError;
use super::root::{Root, Tree};
use crate::plan::os::{Booted, HostKind, KERNEL_CMDLINE_FILE, OsExpect, OsStep};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pending OS change's file name, in the state directory.
pub const PENDING: &str = "os-pending";
/// The config the node ran before a pending OS change (to roll its files back), in the state
/// directory.
pub const PREVIOUS: &str = "os-previous";

/// A program of the OS backend and how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Program {
    /// By name, from the node's `PATH` (in the chroot of the root when it is not `/`).
    Node(&'static str),
    /// A program on the daemon's own filesystem, run directly.
    Direct(PathBuf),
}

fn program(name: &'static str, var: &str) -> Program {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => Program::Direct(PathBuf::from(p)),
        _ => Program::Node(name),
    }
}

/// The OS backend of one node.
#[derive(Debug, Clone)]
pub struct OsHost {
    root: PathBuf,
    kind: HostKind,
    rpm_ostree: Program,
    grubby: Program,
    kernel_install: Program,
}

/// A failed OS operation.
#[derive(Debug, thiserror::Error)]
pub enum OsError {
    #[error("{command}: {reason}")]
    Command { command: String, reason: String },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

/// Directories searched for a program of the node (beneath its root).
const NODE_PATH: [&str; 4] = ["usr/bin", "usr/sbin", "bin", "sbin"];

fn node_has(root: &Path, p: &Program) -> bool {
    match p {
        Program::Direct(path) => path.exists(),
        Program::Node(name) => NODE_PATH.iter().any(|d| root.join(d).join(name).exists()),
    }
}

/// Detects the kind of host beneath `root`.
pub fn detect(root: &Path) -> OsHost {
    let rpm_ostree = program("rpm-ostree", "MCD_RPM_OSTREE");
    let grubby = program("grubby", "MCD_GRUBBY");
    let kernel_install = program("kernel-install", "MCD_KERNEL_INSTALL");
    let kind = if root.join("run/ostree-booted").exists() {
        HostKind::RpmOstree
    } else if node_has(root, &grubby) {
        HostKind::Grubby
    } else {
        HostKind::KernelCmdline {
            kernel_install: node_has(root, &kernel_install),
            kernels: installed_kernels(root),
        }
    };
    OsHost {
        root: root.to_path_buf(),
        kind,
        rpm_ostree,
        grubby,
        kernel_install,
    }
}

/// Kernels installed beneath `root`: `(version, image)` for each `/lib/modules/VERSION/vmlinuz`
/// or `/boot/vmlinuz-VERSION`, sorted by version.
fn installed_kernels(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root.join("usr/lib/modules")) {
        for e in rd.flatten() {
            let v = e.file_name().to_string_lossy().into_owned();
            if e.path().join("vmlinuz").is_file() {
                out.push((v.clone(), format!("/usr/lib/modules/{v}/vmlinuz")));
            } else if root.join("boot").join(format!("vmlinuz-{v}")).is_file() {
                out.push((v.clone(), format!("/boot/vmlinuz-{v}")));
            }
        }
    }
    out.sort();
    out
}

impl OsHost {
    pub fn kind(&self) -> &HostKind {
        &self.kind
    }

    /// One line for the log and the status: the kind, and the program it uses.
    pub fn describe(&self) -> String {
        match &self.kind {
            HostKind::RpmOstree => "image-based (rpm-ostree)".into(),
            HostKind::Grubby => "package-based (grubby)".into(),
            HostKind::KernelCmdline { kernel_install, .. } => format!(
                "package-based ({KERNEL_CMDLINE_FILE}{})",
                if *kernel_install {
                    " and kernel-install"
                } else {
                    ""
                }
            ),
        }
    }

    fn command(&self, argv: &[String]) -> Result<Command, OsError> {
        let (prog, rest) = argv.split_first().ok_or_else(|| OsError::Command {
            command: String::new(),
            reason: "empty command".into(),
        })?;
        let p = match prog.as_str() {
            "rpm-ostree" => &self.rpm_ostree,
            "grubby" => &self.grubby,
            "kernel-install" => &self.kernel_install,
            other => {
                return Err(OsError::Command {
                    command: other.to_string(),
                    reason: "not a program of the OS backend".into(),
                });
            }
        };
        let mut c = match p {
            Program::Direct(path) => Command::new(path),
            Program::Node(name) if self.root == Path::new("/") => Command::new(name),
            Program::Node(name) => {
                let mut c = Command::new("chroot");
                c.arg(&self.root).arg(name);
                c
            }
        };
        c.args(rest);
        c.stdin(std::process::Stdio::null());
        Ok(c)
    }

    /// Runs `argv` and returns its standard output; a non-zero exit is an error carrying the
    /// end of its standard error.
    fn output(&self, argv: &[String]) -> Result<Vec<u8>, OsError> {
        let shown = argv.join(" ");
        tracing::info!(command = %shown, "running {shown}");
        let out = self.command(argv)?.output().map_err(|e| OsError::Command {
            command: shown.clone(),
            reason: format!("cannot run: {e}"),
        })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: String = err
                .trim()
                .chars()
                .rev()
                .take(400)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(OsError::Command {
                command: shown,
                reason: format!("{}: {}", out.status, tail),
            });
        }
        Ok(out.stdout)
    }

    /// Runs one OS step.
    pub fn run(&self, step: &OsStep, state: &Root) -> Result<(), OsError> {
        match step {
            OsStep::Run { run } => self.output(run).map(drop),
            OsStep::Cmdline {
                write,
                remove,
                append,
            } => {
                let now = read_cmdline_file(state, write)?;
                let mut args = match now {
                    Some(s) => {
                        crate::model::os::split_kernel_arguments(&s).map_err(|r| OsError::File {
                            path: write.clone(),
                            reason: r,
                        })?
                    }
                    // No file yet: start from the running command line, less what the boot
                    // loader adds itself.
                    None => booted_cmdline()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|a| !a.starts_with("BOOT_IMAGE=") && !a.starts_with("initrd="))
                        .collect(),
                };
                // The config's arguments were appended: the last occurrence is the config's.
                for r in remove {
                    if let Some(i) = args.iter().rposition(|a| a == r) {
                        args.remove(i);
                    }
                }
                args.extend(append.iter().cloned());
                write_cmdline_file(state, write, &(args.join(" ") + "\n"))
            }
        }
    }

    /// The steps that undo `steps` (run after a failure, or to drop a staged change):
    /// `rpm-ostree cleanup -p` on image-based hosts; the inverse `grubby` command; the previous
    /// `/etc/kernel/cmdline` (`previous`, None when there was none) and `kernel-install` again.
    pub fn undo_steps(&self, steps: &[OsStep], previous: Option<&str>) -> Vec<OsStep> {
        if steps.is_empty() {
            return Vec::new();
        }
        match &self.kind {
            HostKind::RpmOstree => vec![OsStep::Run {
                run: vec!["rpm-ostree".into(), "cleanup".into(), "-p".into()],
            }],
            _ => {
                // The inverse of each step, last first (the command line file put back as it
                // was); then kernel-install again, to read it.
                let mut out = Vec::new();
                for s in steps.iter().rev() {
                    match s {
                        OsStep::Run { run } if run.first().is_some_and(|p| p == "grubby") => {
                            let mut inv = vec!["grubby".to_string(), "--update-kernel=ALL".into()];
                            for a in &run[1..] {
                                if let Some(v) = a.strip_prefix("--args=") {
                                    inv.push(format!("--remove-args={v}"));
                                } else if let Some(v) = a.strip_prefix("--remove-args=") {
                                    inv.push(format!("--args={v}"));
                                }
                            }
                            out.push(OsStep::Run { run: inv });
                        }
                        OsStep::Cmdline { write, .. } => out.push(OsStep::Cmdline {
                            write: write.clone(),
                            remove: vec![RESTORE.into()],
                            append: previous.map(|p| vec![p.to_string()]).unwrap_or_default(),
                        }),
                        OsStep::Run { .. } => {}
                    }
                }
                out.extend(
                    steps
                        .iter()
                        .filter(|s| matches!(s, OsStep::Run { run } if run.first().is_some_and(|p| p == "kernel-install")))
                        .cloned(),
                );
                out
            }
        }
    }

    /// Runs undo steps (see [`OsHost::undo_steps`]); a restore of the command line file puts
    /// the recorded previous contents back (or removes the file when there was none).
    pub fn undo(&self, undo: &[OsStep], state: &Root) -> Result<(), OsError> {
        for s in undo {
            match s {
                OsStep::Cmdline {
                    write,
                    remove,
                    append,
                } if remove.first().is_some_and(|r| r == RESTORE) => match append.first() {
                    Some(prev) => write_cmdline_file(state, write, prev)?,
                    None => state
                        .remove(write, Tree::Etc)
                        .map_err(|e| OsError::File {
                            path: write.clone(),
                            reason: e.to_string(),
                        })
                        .map(drop)?,
                },
                other => self.run(other, state)?,
            }
        }
        Ok(())
    }

    /// What the node booted: its command line, kernel, and on image-based hosts the booted
    /// deployment's image and packages (None where it cannot be read).
    pub fn booted(&self) -> Booted {
        let mut b = Booted {
            cmdline: booted_cmdline(),
            kernel_release: std::fs::read_to_string(env_path(
                "MCD_OSRELEASE",
                "/proc/sys/kernel/osrelease",
            ))
            .ok()
            .map(|s| s.trim().to_string()),
            image: None,
            packages: None,
        };
        if self.kind.image_based() {
            match self.deployments() {
                Ok(d) => {
                    if let Some(booted) = d.iter().find(|d| d.booted) {
                        b.image = booted.image.clone();
                        b.packages = Some(booted.packages());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the booted deployment: {e}"),
            }
        }
        b
    }

    /// Image-based hosts: whether a deployment is staged.
    pub fn staged(&self) -> Result<bool, OsError> {
        if !self.kind.image_based() {
            return Ok(false);
        }
        Ok(self.deployments()?.iter().any(|d| d.staged))
    }

    fn deployments(&self) -> Result<Vec<Deployment>, OsError> {
        let argv: Vec<String> = ["rpm-ostree", "status", "--json"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = self.output(&argv)?;
        let status: RpmOstreeStatus =
            serde_json::from_slice(&out).map_err(|e| OsError::Command {
                command: "rpm-ostree status --json".into(),
                reason: format!("unexpected output: {e}"),
            })?;
        Ok(status.deployments)
    }
}

/// The marker of a command line restore in undo steps (never a kernel argument: it has a
/// space).
const RESTORE: &str = "restore previous";

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// `/proc/cmdline`, split (None when it cannot be read).
pub fn booted_cmdline() -> Option<Vec<String>> {
    let s = std::fs::read_to_string(env_path("MCD_PROC_CMDLINE", "/proc/cmdline")).ok()?;
    crate::model::os::split_kernel_arguments(s.trim()).ok()
}

fn read_cmdline_file(state: &Root, path: &str) -> Result<Option<String>, OsError> {
    match state.read(path, Tree::Etc) {
        Ok(super::root::Entry::File { data, .. }) => {
            Ok(Some(String::from_utf8_lossy(&data).trim().to_string()))
        }
        Ok(super::root::Entry::Absent) => Ok(None),
        Ok(_) => Err(OsError::File {
            path: path.into(),
            reason: "not a regular file".into(),
        }),
        Err(e) => Err(OsError::File {
            path: path.into(),
            reason: e.to_string(),
        }),
    }
}

/// The current contents of the command line file (for the undo record).
pub fn cmdline_file(state: &Root) -> Result<Option<String>, OsError> {
    read_cmdline_file(state, KERNEL_CMDLINE_FILE).map(|o| o.map(|s| s + "\n"))
}

fn write_cmdline_file(state: &Root, path: &str, contents: &str) -> Result<(), OsError> {
    state
        .write_file(path, Tree::Etc, contents.as_bytes(), 0o644, 0, 0)
        .map_err(|e| OsError::File {
            path: path.into(),
            reason: e.to_string(),
        })
}

#[derive(Debug, Deserialize)]
struct RpmOstreeStatus {
    #[serde(default)]
    deployments: Vec<Deployment>,
}

/// A deployment as `rpm-ostree status --json` reports it (the fields used here).
#[derive(Debug, Deserialize)]
struct Deployment {
    #[serde(default)]
    booted: bool,
    #[serde(default)]
    staged: bool,
    #[serde(default, rename = "container-image-reference")]
    image: Option<String>,
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default, rename = "requested-packages")]
    requested_packages: Vec<String>,
    #[serde(default, rename = "base-packages")]
    base_packages: Vec<String>,
}

impl Deployment {
    fn packages(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .packages
            .iter()
            .chain(&self.requested_packages)
            .chain(&self.base_packages)
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Where the pending OS change stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Steps are running (or were, when the process died): undo and roll back.
    Staging,
    /// Every step succeeded: the node must boot into it.
    Staged,
    /// The node booted and the OS did not match twice: the node is Degraded with `reason`.
    Failed,
}

/// The pending OS change, the OS half's journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// The config being applied.
    pub config: String,
    /// The config the node ran before (None: first apply).
    pub from: Option<String>,
    pub phase: Phase,
    /// The boot in which the change was staged.
    pub boot_id: String,
    /// How many times the change was staged (a boot that does not match it re-stages once).
    pub attempts: u32,
    pub steps: Vec<OsStep>,
    pub undo: Vec<OsStep>,
    pub expect: OsExpect,
    /// Why the node is Degraded (phase `Failed`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Pending {
    /// The pending change, if any.
    pub fn read(state: &Root) -> Result<Option<Pending>, HostError> {
        super::state::read_json_record(state, PENDING, "the pending OS change")
    }

    /// Writes it atomically and durably.
    pub fn write(&self, state: &Root) -> Result<(), HostError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| HostError::State {
            path: PENDING.into(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        state.write_file(&state.state_path(PENDING), Tree::Etc, &bytes, 0o600, 0, 0)
    }

    /// Removes the record and the saved previous config.
    pub fn clear(state: &Root) -> Result<(), HostError> {
        state.remove(&state.state_path(PENDING), Tree::Etc)?;
        state.remove(&state.state_path(PREVIOUS), Tree::Etc)?;
        Ok(())
    }
}

/// Saves the config the node runs before an OS change (to roll its files back after an
/// interrupted staging).
pub fn save_previous(state: &Root, config: &crate::model::MachineConfig) -> Result<(), HostError> {
    let bytes = super::state::encode(config);
    state.write_file(&state.state_path(PREVIOUS), Tree::Etc, &bytes, 0o600, 0, 0)
}

/// The saved previous config, if any.
pub fn read_previous(state: &Root) -> Result<Option<crate::model::MachineConfig>, HostError> {
    match state.read(&state.state_path(PREVIOUS), Tree::Etc)? {
        super::root::Entry::File { data, .. } => super::state::decode(&data).map(Some),
        _ => Ok(None),
    }
}
