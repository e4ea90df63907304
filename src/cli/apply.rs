//! The `apply` command: one-shot update of a node (or of a root directory) to a config.
//!
//! Flow: recover an interrupted update (rolled back), read the stored current config (none:
//! first apply, everything is written and no post action runs), plan with the node disruption
//! policy, refuse unreconcilable changes, write as one transaction, store the new current config,
//! then run the unit operations and post actions through systemd's D-Bus API — the same update
//! flow as the daemon's ([`machine_config_daemon::daemon::update`]). With `--no-systemd` they are
//! printed as skipped (never as done). A failed post action puts the old config back (exit 1).
//!
//! `--dry-run` changes nothing and prints a unified diff per file that would be written; contents
//! of files whose mode gives no read access to group and others are not shown.
//!
//! The node's lock (see [`machine_config_daemon::host::lock`]) is held from before the recovery
//! to the end, except for a dry run; `--wait` waits for another holder instead of failing.
//!
//! Exit codes: 0 applied, 1 failed (rolled back), 2 bad input, 3 unreconcilable.

use machine_config_daemon::daemon::reboot;
use machine_config_daemon::daemon::update::{self, Standalone, UpdateError, UpdateInput};
use machine_config_daemon::host::exec::{Outcome, PostAction};
use machine_config_daemon::host::lock::Wait;
use machine_config_daemon::host::systemd::{ServiceManager, SystemdClient, SystemdOptions};
use machine_config_daemon::host::{self, ApplyOptions, ApplyReport, HostError, Root};
use machine_config_daemon::model;
use machine_config_daemon::model::policy;
use machine_config_daemon::plan::ladder::{RebootKind, RebootMode, SoftRebootSupport};
use machine_config_daemon::plan::{self, Plan};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  applied (or, with --dry-run, could be)
  1  failed, and rolled back to the old config; or another machine-config-daemon holds the
     node's lock (without --wait)
  2  bad input: nothing changed
  3  unreconcilable change: nothing changed")]
pub struct Args {
    /// The root directory of the node to change.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// The daemon's state directory on the node (current config, journal, backups).
    #[arg(long, value_name = "DIR", default_value = "/etc/machine-config-daemon")]
    pub state_dir: String,
    /// The desired config: a MachineConfig file, or a directory rendered for --pool.
    #[arg(long, value_name = "NEW")]
    pub config: PathBuf,
    /// A MachineConfiguration holding the node disruption policy (cluster defaults otherwise).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The pool a directory of MachineConfigs is rendered for.
    #[arg(long, default_value = "worker")]
    pub pool: String,
    /// Change nothing; print what would be done, with a diff of every file.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not talk to systemd: post actions and unit operations are reported as skipped.
    #[arg(long)]
    pub no_systemd: bool,
    /// Which reboot a plan that ends in a reboot gets: `full` (the default, as upstream),
    /// `auto` (soft — userspace only, the kernel stays — when the change touches no kernel,
    /// initramfs, kernel argument, kernel type or OS image and systemd is 254 or later) or
    /// `soft` (soft whenever the change needs no kernel boot and systemd supports it).
    #[arg(long, value_enum, value_name = "MODE", default_value = "full")]
    pub reboot_mode: machine_config_daemon::plan::ladder::RebootMode,
    /// When another machine-config-daemon (the daemon, or another apply) holds the node's
    /// lock, wait for it instead of failing.
    #[arg(long)]
    pub wait: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: super::Format,
    #[command(flatten)]
    pub limits: super::LimitArgs,
}

fn exit_for(e: &HostError) -> u8 {
    match e {
        HostError::Refused { .. } => super::EXIT_UNRECONCILABLE,
        HostError::Owner { .. } => super::EXIT_BAD_INPUT,
        _ => super::EXIT_FAILED,
    }
}

pub fn run(args: Args) -> ExitCode {
    let limits = args.limits.limits();
    // An update spools the new config's contents (see `host::state::spool_dir`); a dry run,
    // which shows them, reads it whole, and so does an update that cannot make a spool.
    let spool = match args.dry_run {
        true => None,
        false => host::state::spool_dir(&args.root, &args.state_dir),
    }
    .and_then(|dir| model::Spool::new_in(&dir).ok());
    let loaded = match spool {
        Some(spool) => model::load::load_config_arg_spooled(
            &args.config,
            &args.pool,
            &limits,
            spool,
            host::state::KEPT_WHOLE,
        ),
        None => model::load::load_config_arg_with(&args.config, &args.pool, &limits),
    };
    let new = match loaded {
        Ok((mc, warnings)) => {
            super::print_warnings(&warnings);
            mc
        }
        Err(e) => return super::fail_load(&e),
    };
    if let Err(code) = super::check_items(&new, &args.config) {
        return code;
    }
    let policy = match &args.policy {
        Some(p) => match super::load_policy(p) {
            Ok(p) => p,
            Err(code) => return code,
        },
        None => policy::defaults(),
    };
    let root = match Root::open(&args.root).and_then(|r| r.with_state_dir(&args.state_dir)) {
        Ok(r) => r,
        Err(e) => return super::fail(super::EXIT_BAD_INPUT, [e]),
    };
    // One writer per node: held until the end of this function (a dry run changes nothing).
    let _lock = if args.dry_run {
        None
    } else {
        let wait = if args.wait { Wait::Yes } else { Wait::No };
        match super::lock_root(&args.root, &args.state_dir, wait) {
            Ok(l) => Some(l),
            Err(code) => return code,
        }
    };
    let mut recovered = None;
    if !args.dry_run {
        match host::recover(&root) {
            Ok(r) => recovered = r,
            Err(e) => return super::fail(super::EXIT_FAILED, [format!("recovery: {e}")]),
        }
    }
    // Thin: the update only compares it with the new config (see `read_current_thin`).
    let old = match host::state::read_current_thin(&root) {
        Ok(c) => c.map(|c| c.0),
        Err(e) => return super::fail(super::EXIT_FAILED, [e]),
    };
    let force_file = root
        .probe(host::manifest::FORCE_FILE, host::root::Tree::Etc)
        .is_ok_and(|p| p != host::root::Probe::Absent);
    let os = host::os::detect(&args.root);
    let systemd =
        (!args.no_systemd && !args.dry_run).then(|| SystemdClient::new(SystemdOptions::default()));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return super::fail(super::EXIT_FAILED, [format!("tokio runtime: {e}")]),
    };
    // Asked of systemd only when the mode is not `full`; a dry run looks at the root's units.
    let soft_reboot = match args.reboot_mode {
        RebootMode::Full => SoftRebootSupport::Unknown,
        _ => {
            let sm = systemd.as_ref().map(|s| s as &dyn ServiceManager);
            runtime.block_on(reboot::soft_reboot_support(sm, &args.root))
        }
    };
    let input = UpdateInput {
        old,
        new,
        policy,
        force: force_file,
        state_dir: Some(args.state_dir.clone()),
        os,
        reboot_mode: args.reboot_mode,
        soft_reboot,
        keep_changes: true,
    };
    let (plan, os_plan) = update::plan_for(&input);
    let old = input.old.as_ref();
    // Not cloned: a config can be large.
    let new = &input.new;
    let name = new.name.clone();
    if let Some(reason) = plan.as_ref().and_then(|p| p.unreconcilable.clone()) {
        print_result(&args, recovered.as_deref(), plan.as_ref(), &name, None, &[]);
        return super::fail(super::EXIT_UNRECONCILABLE, [reason]);
    }
    let os_steps = match os_plan {
        Ok(p) => p.steps,
        Err(reason) => return super::fail(super::EXIT_UNRECONCILABLE, [reason]),
    };
    // A first apply writes everything, so every item is checked (the update flow does the
    // same; here it also covers --dry-run).
    if old.is_none() {
        let problems = plan::reconcile::config_problems(new);
        if !problems.is_empty() {
            return super::fail(
                super::EXIT_UNRECONCILABLE,
                [format!(
                    "can't apply config {}: {}",
                    name,
                    problems.join("; ")
                )],
            );
        }
    }
    if args.dry_run {
        let opts = ApplyOptions {
            force: force_file,
            dry_run: true,
        };
        let report = match host::apply(&root, old, new, &opts) {
            Ok(r) => r,
            Err(e) => return super::fail(exit_for(&e), [e]),
        };
        let mut outcomes = Vec::new();
        let ops = report
            .unit_ops
            .before_files
            .iter()
            .chain(&report.unit_ops.after_files);
        for op in ops {
            outcomes.push((op.to_string(), Outcome::Skipped("dry run".into())));
        }
        for step in &os_steps {
            outcomes.push((format!("os: {step}"), Outcome::Skipped("dry run".into())));
        }
        if old.is_none() {
            for n in plan::reconcile::not_applied(new) {
                outcomes.push((format!("not applied: {n}"), Outcome::Skipped(String::new())));
            }
        }
        let mut actions = plan.as_ref().map(update::post_actions).unwrap_or_default();
        if !os_steps.is_empty() && !actions.contains(&PostAction::Reboot) {
            actions.push(PostAction::Reboot);
        }
        for a in actions {
            let soft = a == PostAction::Reboot
                && plan
                    .as_ref()
                    .and_then(|p| p.reboot_kind.as_ref())
                    .is_some_and(|k| k.kind == RebootKind::Soft);
            let what = if soft {
                format!("soft {a}")
            } else {
                a.to_string()
            };
            outcomes.push((what, Outcome::Skipped("dry run".into())));
        }
        print_result(
            &args,
            recovered.as_deref(),
            plan.as_ref(),
            &name,
            Some(&report),
            &outcomes,
        );
        return ExitCode::SUCCESS;
    }
    drop(root);
    // The update plans again (and returns its plan): two plans of a large change are not
    // held at once.
    drop(plan);
    let sm = systemd.as_ref().map(|s| s as &dyn ServiceManager);
    let result = runtime.block_on(update::update(&args.root, input, sm, &Standalone));
    if force_file {
        let _ = std::fs::remove_file(
            args.root
                .join(host::manifest::FORCE_FILE.trim_start_matches('/')),
        );
    }
    let applied = match result {
        Ok(a) => a,
        Err(UpdateError::Host(e)) => return super::fail(exit_for(&e), [e]),
        Err(UpdateError::Unreconcilable(r)) => return super::fail(super::EXIT_UNRECONCILABLE, [r]),
        Err(e) => return super::fail(super::EXIT_FAILED, [e]),
    };
    let mut outcomes: Vec<(String, Outcome)> = os_steps
        .iter()
        .map(|s| (format!("os: {s}"), Outcome::Done))
        .collect();
    outcomes.extend(
        applied
            .steps
            .iter()
            .map(|s| (s.what.clone(), s.outcome.clone())),
    );
    for n in &applied.not_applied {
        outcomes.push((format!("not applied: {n}"), Outcome::Skipped(String::new())));
    }
    if applied.os_staged && args.no_systemd {
        outcomes.push((
            format!("boot into the OS changes of {name}"),
            Outcome::Skipped(
                "reboot pending: the node runs them only after a reboot, which the next start validates"
                    .into(),
            ),
        ));
    }
    let report = applied.report;
    print_result(
        &args,
        recovered.as_deref(),
        applied.plan.as_ref(),
        &name,
        Some(&report),
        &outcomes,
    );
    ExitCode::SUCCESS
}

fn hidden(mode: Option<u32>) -> bool {
    mode.is_some_and(|m| m & 0o044 == 0)
}

fn file_diff(w: &host::txn::WriteDetail) -> String {
    if hidden(Some(w.new_mode)) || hidden(w.old_mode) {
        let m = if hidden(Some(w.new_mode)) {
            w.new_mode
        } else {
            w.old_mode.unwrap_or(0)
        };
        return format!(
            "--- {p}\n+++ {p}\n(contents hidden: mode {m:04o} gives no read access to group or others)\n",
            p = w.path
        );
    }
    let old = String::from_utf8_lossy(w.old.as_deref().unwrap_or_default()).into_owned();
    let new = String::from_utf8_lossy(&w.new).into_owned();
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .header(&format!("a{}", w.path), &format!("b{}", w.path))
        .to_string()
}

fn print_result(
    args: &Args,
    recovered: Option<&str>,
    plan: Option<&Plan>,
    name: &str,
    report: Option<&ApplyReport>,
    outcomes: &[(String, Outcome)],
) {
    let diffs: Vec<String> = report
        .map(|r| r.writes.iter().map(file_diff).collect())
        .unwrap_or_default();
    if args.output != super::Format::Text {
        let v = json!({
            "recovered": recovered,
            "firstApply": plan.is_none(),
            "dryRun": args.dry_run,
            "config": name,
            "plan": plan.map(|p| serde_json::to_value(p).unwrap_or_default()),
            "steps": report.map(|r| r.steps.clone()),
            "kept": report.map(|r| r.kept.clone()),
            "operations": outcomes.iter().map(|(what, o)| json!({"operation": what, "result": o})).collect::<Vec<_>>(),
            "diffs": diffs,
        });
        super::print_data(&v, args.output);
        return;
    }
    if let Some(r) = recovered {
        println!("recovered: {r}");
    }
    match plan {
        None => println!("first apply of {name}: writing everything, no post actions"),
        Some(p) if p.unreconcilable.is_some() => {
            // Refused: the error line that follows says why; no actions to list.
            println!(
                "plan: {} -> {}: unreconcilable, nothing changed",
                p.from, p.to
            );
        }
        Some(p) => {
            println!("plan: {} -> {}", p.from, p.to);
            for c in &p.changes {
                let what = c
                    .path
                    .as_deref()
                    .or(c.name.as_deref())
                    .unwrap_or(c.kind.as_str());
                println!("  {} {} {what}", c.kind.as_str(), c.change.as_str());
            }
            let acts: Vec<String> = p
                .actions
                .iter()
                .map(|a| serde_json::to_string(a).unwrap_or_default())
                .collect();
            println!(
                "actions: {}  drain: {}  reboot: {}",
                acts.join(", "),
                p.drain,
                p.reboot
            );
            if let Some(k) = &p.reboot_kind {
                println!("reboot: {k}");
            }
            for step in &p.os_steps {
                println!("  os ({}): {step}", p.host);
            }
        }
    }
    let Some(report) = report else { return };
    let verb = if args.dry_run { "would" } else { "done" };
    if report.steps.is_empty() {
        println!("nothing to write: the node already has {name}");
    }
    for s in &report.steps {
        println!("{verb}: {s}");
    }
    for k in &report.kept {
        println!("kept (never deleted): {k}");
    }
    for (what, o) in outcomes {
        match o {
            Outcome::Done => println!("done: {what}"),
            Outcome::Skipped(why) if why.is_empty() => println!("{what}"),
            Outcome::Skipped(why) => println!("skipped: {what} ({why})"),
        }
    }
    for d in diffs {
        print!("{d}");
    }
}
