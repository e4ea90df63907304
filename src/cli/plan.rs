//! The `plan` command: what changing a node from one config to another would do, without doing
//! anything. Text (default) prints a table of changes with the matched policy entry and actions,
//! the notes, and ends with the final `actions: ...` line; `-o json|yaml` prints the plan object.
//!
//! The OS steps (kernel arguments, kernel type, extensions, OS image) are listed with the exact
//! command lines the host would run. Which host: the one beneath `--root` when given (detected
//! as the daemon does), else `--os` (default `rpm-ostree`, an image-based host, as the cluster's
//! nodes usually are).
//!
//! With `--daemon-config FILE` (or `--root DIR` holding `/etc/machine-config-daemon/config.yaml`)
//! the plan also says what drift of each managed path of the new config would do: the rules,
//! then every path a rule matches with its action (for `heal`, the policy's actions after the
//! rewrite, or why it would degrade instead), and how many other paths degrade.
//!
//! Try mode (`--confirm-timeout`, or the daemon configuration file's `tryMode`) adds a line:
//! `try mode: confirm within 5m (checks: systemd, 2 in health.d), else revert to OLD` (JSON:
//! `tryMode`), the health checks counted beneath `--root` (else `/`).
//!
//! Exit codes: 0 the change can be applied, 2 bad input, 3 unreconcilable (the plan is printed
//! with the reason).

use machine_config_daemon::daemon::confirm;
use machine_config_daemon::daemon::drift;
use machine_config_daemon::daemon::reboot;
use machine_config_daemon::model::{self, LoadErrors, MachineConfig, policy};
use machine_config_daemon::plan::ladder::{self, RebootMode, SoftRebootSupport};
use machine_config_daemon::plan::os::HostKind;
use machine_config_daemon::plan::{self, Change, Plan, PlanOptions};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  the change can be applied (the plan is printed)
  1  the plan could not be printed
  2  bad input (every problem printed)
  3  unreconcilable: the change cannot be applied (the reason is printed)")]
pub struct Args {
    /// The current config: a MachineConfig file, or a directory rendered for --pool.
    #[arg(long, value_name = "OLD", required_unless_present = "kubeconfig")]
    pub from: Option<PathBuf>,
    /// The desired config: a MachineConfig file, or a directory rendered for --pool.
    #[arg(long, value_name = "NEW", required_unless_present = "kubeconfig")]
    pub to: Option<PathBuf>,
    /// Preview a change to a pool of this cluster instead (read-only): the pool rendered with
    /// --add and --remove, planned against each node's current config with the cluster's
    /// policy, and the rollout schedule the controller would follow.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from", "to", "root"])]
    pub kubeconfig: Option<PathBuf>,
    /// With --kubeconfig: a MachineConfig to add to the pool (or to replace the one of its name).
    #[arg(long, value_name = "NEW.yaml", requires = "kubeconfig")]
    pub add: Vec<PathBuf>,
    /// With --kubeconfig: a MachineConfig of the cluster to leave out.
    #[arg(long, value_name = "NAME", requires = "kubeconfig")]
    pub remove: Vec<String>,
    /// A MachineConfiguration holding the node disruption policy; the cluster defaults apply
    /// without it (and are merged with it).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The pool directories are rendered for.
    #[arg(long, default_value = "worker")]
    pub pool: String,
    /// Plan as if the force file (/run/machine-config-daemon-force) were present.
    #[arg(long)]
    pub force: bool,
    /// Plan the OS steps for the host beneath this root (its kind detected as the daemon does).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Which reboot a plan ending in a reboot gets, as the daemon's --reboot-mode decides it:
    /// `full` (default), `auto` or `soft`. Whether the node's systemd can soft-reboot is read
    /// from --root (its soft-reboot.target); without --root the plan says "if".
    #[arg(long, value_enum, value_name = "MODE", default_value = "full")]
    pub reboot_mode: RebootMode,
    /// The kind of host the OS steps are for, when --root is not given.
    #[arg(long = "os", value_enum, default_value = "rpm-ostree")]
    pub os: OsKind,
    /// A daemon configuration file: also show what drift of each managed path would do
    /// (default with --root: <root>/etc/machine-config-daemon/config.yaml when it exists).
    #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
    pub daemon_config: Option<PathBuf>,
    /// Try mode as `start --confirm-timeout` would run it (wins over the daemon
    /// configuration file's tryMode.confirmTimeout): the plan says within what time the checks
    /// must confirm the change, and which checks.
    #[arg(long, value_name = "DURATION", conflicts_with = "kubeconfig")]
    pub confirm_timeout: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: super::Format,
    #[command(flatten)]
    pub limits: super::LimitArgs,
}

/// The kinds of host of `--os`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OsKind {
    /// Image-based (rpm-ostree: RHCOS, Fedora CoreOS).
    RpmOstree,
    /// Package-based, kernel arguments through grubby.
    Grubby,
    /// Package-based, kernel arguments in /etc/kernel/cmdline.
    KernelCmdline,
}

pub fn run(args: Args) -> ExitCode {
    if args.kubeconfig.is_some() {
        return super::plan_pool::run(args);
    }
    let (Some(from), Some(to)) = (args.from.clone(), args.to.clone()) else {
        return super::fail(super::EXIT_BAD_INPUT, ["--from and --to are required"]);
    };
    let mut errors: Option<LoadErrors> = None;
    let limits = args.limits.limits();
    let mut load = |path: &Path| match model::load::load_config_arg_with(path, &args.pool, &limits)
    {
        Ok((mc, warnings)) => {
            super::print_warnings(&warnings);
            Some(mc)
        }
        Err(e) => {
            match &mut errors {
                Some(all) => all.extend(e),
                None => errors = Some(e),
            }
            None
        }
    };
    let (old, new) = (load(&from), load(&to));
    let policy = match &args.policy {
        Some(path) => super::load_policy(path),
        None => Ok(policy::defaults()),
    };
    if let Some(e) = &errors {
        return super::fail_load(e);
    }
    let (Some(old), Some(new)) = (old, new) else {
        return super::fail(super::EXIT_BAD_INPUT, ["no MachineConfig loaded"]);
    };
    if let Err(code) = super::check_items(&new, &to) {
        return code;
    }
    let policy = match policy {
        Ok(p) => p,
        Err(code) => return code,
    };
    let drift = match (&args.daemon_config, &args.root) {
        (None, None) => None,
        (explicit, root) => {
            let root = root.as_deref().unwrap_or(Path::new("/"));
            let located = drift::locate(root, explicit.as_deref());
            match super::load_daemon_config(root, explicit.as_deref()) {
                Ok(d) if located.is_some() => Some(d),
                Ok(_) => None,
                Err(code) => return code,
            }
        }
    };
    // Try mode: the flag, else the daemon configuration file's.
    let mut try_mode = drift.as_ref().map(|d| d.try_mode).unwrap_or_default();
    if let Some(t) = &args.confirm_timeout {
        match humantime::parse_duration(t)
            .map_err(|e| e.to_string())
            .and_then(confirm::check_confirm_timeout)
        {
            Ok(d) => try_mode.confirm_timeout = Some(d),
            Err(e) => {
                return super::fail(
                    super::EXIT_BAD_INPUT,
                    [format!("--confirm-timeout {t}: {e}")],
                );
            }
        }
    }
    let try_line = try_mode.confirm_timeout.map(|d| {
        let root = args.root.as_deref().unwrap_or(Path::new("/"));
        let checks = machine_config_daemon::daemon::health::describe(root, false, false);
        (humantime::format_duration(d).to_string(), checks)
    });
    let host = host_kind(&args);
    let opts = PlanOptions {
        force: args.force,
        host: Some(host),
    };
    let mut plan = plan::plan(&old, &new, &policy, &opts);
    if plan.reboot {
        let support = match &args.root {
            Some(root) => reboot::soft_reboot_unit(root),
            None => SoftRebootSupport::Unknown,
        };
        let change = ladder::Change::of_plan(&plan, args.force);
        plan.reboot_kind = Some(ladder::decide(&change, args.reboot_mode, &support));
    }
    let drift_paths = drift.as_ref().map(|d| {
        let managed = drift::managed_paths(&new);
        let matched = managed
            .iter()
            .filter(|p| d.action_for(p).rule.is_some())
            .map(String::as_str);
        let paths = drift::preview(d, &new, &policy, matched);
        (d.summary(), paths, managed.len())
    });
    let printed = match args.output {
        super::Format::Text => {
            print!("{}", render_text(&plan, &old, &new));
            if let Some((summary, paths, managed)) = &drift_paths {
                print!("{}", render_drift(summary, paths, *managed));
            }
            if let Some((within, checks)) = &try_line {
                println!(
                    "try mode: confirm within {within} (checks: {checks}), else revert to {}",
                    old.name
                );
            }
            ExitCode::SUCCESS
        }
        format => match serde_json::to_value(&plan) {
            Ok(mut v) => {
                if let Some((summary, paths, _)) = &drift_paths
                    && let (Ok(mut s), Ok(p)) =
                        (serde_json::to_value(summary), serde_json::to_value(paths))
                {
                    s["paths"] = p;
                    v["drift"] = s;
                }
                if let Some((within, checks)) = &try_line {
                    v["tryMode"] = serde_json::json!({
                        "confirmTimeout": within,
                        "checks": checks,
                        "revertTo": old.name,
                    });
                }
                super::print_data(&v, format)
            }
            Err(e) => super::fail(super::EXIT_FAILED, [format!("cannot print the plan: {e}")]),
        },
    };
    if plan.unreconcilable.is_some() {
        ExitCode::from(super::EXIT_UNRECONCILABLE)
    } else {
        printed
    }
}

/// The host the OS steps are planned for: beneath --root, else --os.
pub(super) fn host_kind(args: &Args) -> HostKind {
    match &args.root {
        Some(root) => machine_config_daemon::host::os::detect(root).kind().clone(),
        None => match args.os {
            OsKind::RpmOstree => HostKind::RpmOstree,
            OsKind::Grubby => HostKind::Grubby,
            OsKind::KernelCmdline => HostKind::KernelCmdline {
                kernel_install: false,
                kernels: Vec::new(),
            },
        },
    }
}

/// The human form of a plan.
pub(super) fn render_text(plan: &Plan, old: &MachineConfig, new: &MachineConfig) -> String {
    let name = |mc: &MachineConfig| {
        if mc.name.is_empty() {
            "(unnamed)".to_string()
        } else {
            mc.name.clone()
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "plan: {} -> {}", name(old), name(new));
    if let Some(reason) = &plan.unreconcilable {
        // Refused: the differences found, but no policy match, no "no changes" and no actions,
        // which would read as a plan that can run.
        if !plan.changes.is_empty() {
            let _ = writeln!(out, "differences:");
            for c in &plan.changes {
                let _ = writeln!(
                    out,
                    "  {} {} {}",
                    c.kind.as_str(),
                    c.change.as_str(),
                    subject(c)
                );
            }
        }
        let _ = writeln!(out, "unreconcilable: {reason}");
        let _ = writeln!(out, "refused: nothing would be done");
        return out;
    }
    if plan.changes.is_empty() {
        let _ = writeln!(out, "no changes");
    } else {
        let rows: Vec<[String; 5]> = plan.changes.iter().map(row).collect();
        let header = ["KIND", "CHANGE", "PATH/NAME", "MATCHED", "ACTIONS"].map(str::to_string);
        let mut widths = [0usize; 4];
        for r in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let _ = writeln!(out);
        for r in std::iter::once(&header).chain(&rows) {
            let _ = writeln!(
                out,
                "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
            );
        }
    }
    let why: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.matched.is_none())
        .collect();
    if !why.is_empty() || !plan.notes.is_empty() {
        let _ = writeln!(out, "\nnotes:");
        for c in why {
            let what = c
                .path
                .as_deref()
                .or(c.name.as_deref())
                .unwrap_or(c.kind.as_str());
            let _ = writeln!(out, "  - {what}: {}", c.reason);
        }
        for n in &plan.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    if !plan.os_steps.is_empty() {
        let _ = writeln!(out, "\nos steps ({}, then a reboot):", plan.host);
        for step in &plan.os_steps {
            let _ = writeln!(out, "  {step}");
        }
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    let reboot = match &plan.reboot_kind {
        Some(k) if plan.reboot => k.to_string(),
        _ => yes(plan.reboot).to_string(),
    };
    let _ = writeln!(out, "\ndrain: {}  reboot: {reboot}", yes(plan.drain));
    let actions: Vec<String> = plan.actions.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "actions: {}", actions.join(", "));
    out
}

/// The drift section of the text plan: the rules, each managed path a rule matches with what
/// its drift would do, and the count of the others (which degrade).
fn render_drift(summary: &drift::Summary, paths: &[drift::PathDrift], managed: usize) -> String {
    let mut out = String::new();
    let from = summary
        .source
        .as_deref()
        .map_or(String::new(), |s| format!(" ({s})"));
    let _ = writeln!(out, "\ndrift rules{from}:");
    for l in summary.lines() {
        let _ = writeln!(out, "  {l}");
    }
    let _ = writeln!(out, "drift of the managed paths of the new config:");
    for p in paths {
        let what = match (&p.then, &p.not_healed) {
            (Some(actions), _) => {
                let a: Vec<String> = actions.iter().map(ToString::to_string).collect();
                format!("heal: rewrite, then {}", a.join(", "))
            }
            (None, Some(why)) => format!("degrade (not healed: {why})"),
            (None, None) => p.action.to_string(),
        };
        let _ = writeln!(out, "  {}: {what}", p.path);
    }
    let others = managed - paths.len();
    if others > 0 || paths.is_empty() {
        let _ = writeln!(
            out,
            "  {others} other managed path{}: degrade",
            if others == 1 { "" } else { "s" }
        );
    }
    out
}

fn subject(c: &Change) -> String {
    match (&c.path, &c.name) {
        (Some(p), _) => p.clone(),
        (None, Some(n)) => n.clone(),
        (None, None) => match (&c.old, &c.new) {
            (Some(o), Some(n)) => format!("{o} -> {n}"),
            _ => String::new(),
        },
    }
}

fn row(c: &Change) -> [String; 5] {
    let actions: Vec<String> = c.actions.iter().map(ToString::to_string).collect();
    [
        c.kind.as_str().to_string(),
        c.change.as_str().to_string(),
        subject(c),
        c.matched.clone().unwrap_or_else(|| "-".into()),
        actions.join(", "),
    ]
}
