//! The `validate` command: check a node disruption policy (`--policy`) and print the effective
//! policy in the status shape, check a MachineConfig (`--config`), or check a daemon
//! configuration file (`--daemon-config`, the drift rules) and print the rules in effect; the
//! same reading as `start`'s.
//!
//! Exit codes: 0 valid, 2 invalid (every problem printed to stderr as `error: ...`).
//!
//! A valid config with files that usually hold secrets (see
//! `machine_config_daemon::model::secrets`) gets one `warning: ...` line per such file on
//! stderr, and is still valid (exit 0): the machine config server gives configs to anyone who
//! reaches it.
//!
//! What a valid config asks that the daemon never applies (provisioning's part: disks,
//! filesystems, users other than `core`, …; [`reconcile::not_applied`]) is named too, one
//! `note: ...` line each on stderr and `notApplied` in the JSON: a node provisioned from the
//! config has it, and a later change of it is refused.

use machine_config_daemon::model::{self, policy};
use machine_config_daemon::plan::reconcile;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  valid
  1  the result could not be printed
  2  invalid (every problem printed)")]
#[command(group(clap::ArgGroup::new("input").required(true).args(["policy", "config", "daemon_config"])))]
pub struct Args {
    /// A MachineConfiguration (operator.openshift.io/v1) holding a node disruption policy,
    /// JSON or YAML. Prints the effective policy (cluster defaults merged with it).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// A MachineConfig file (JSON, YAML, a List or a bare Ignition config) or a directory of them
    /// (rendered for --pool first).
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub config: Option<PathBuf>,
    /// A daemon configuration file (/etc/machine-config-daemon/config.yaml: the drift rules).
    /// Prints the rules in effect.
    #[arg(long, value_name = "FILE")]
    pub daemon_config: Option<PathBuf>,
    /// The pool a directory given to --config is rendered for.
    #[arg(long, default_value = "worker")]
    pub pool: String,
    /// Output format (text: a summary for people; json and yaml: the data).
    #[arg(short = 'o', long = "output", value_enum, default_value = "json")]
    pub output: super::Format,
    #[command(flatten)]
    pub limits: super::LimitArgs,
}

pub fn run(args: Args) -> ExitCode {
    match (&args.policy, &args.config, &args.daemon_config) {
        (Some(path), _, _) => validate_policy(path, args.output),
        (None, Some(path), _) => {
            validate_config(path, &args.pool, args.output, &args.limits.limits())
        }
        (None, None, Some(path)) => validate_daemon_config(path, args.output),
        (None, None, None) => super::fail(
            super::EXIT_BAD_INPUT,
            ["give --policy FILE, --config FILE or --daemon-config FILE"],
        ),
    }
}

fn validate_daemon_config(path: &Path, output: super::Format) -> ExitCode {
    let drift = match super::load_daemon_config(Path::new("/"), Some(path)) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let summary = drift.summary();
    if output == super::Format::Text {
        println!("{}: valid daemon configuration", path.display());
        println!("drift rules (the first match wins):");
        for l in summary.lines() {
            println!("  {l}");
        }
        println!("try mode: {}", try_mode_words(&drift.try_mode));
        return ExitCode::SUCCESS;
    }
    match serde_json::to_value(&summary) {
        Ok(v) => {
            let t = &drift.try_mode;
            let fmt = |d: std::time::Duration| humantime::format_duration(d).to_string();
            let try_mode = t.confirm_timeout.map(|c| {
                serde_json::json!({
                    "confirmTimeout": fmt(c),
                    "checkInterval": fmt(t.check_interval),
                    "checkTimeout": fmt(t.check_timeout),
                })
            });
            super::print_data(
                &serde_json::json!({ "drift": v, "tryMode": try_mode }),
                output,
            )
        }
        Err(e) => super::fail(
            super::EXIT_FAILED,
            [format!("cannot print the result: {e}")],
        ),
    }
}

/// `off`, or `confirm within 5m (checks every 10s, each at most 30s)`.
fn try_mode_words(t: &machine_config_daemon::daemon::confirm::TryMode) -> String {
    let fmt = |d: std::time::Duration| humantime::format_duration(d).to_string();
    match t.confirm_timeout {
        None => "off".into(),
        Some(c) => format!(
            "confirm within {} (checks every {}, each at most {})",
            fmt(c),
            fmt(t.check_interval),
            fmt(t.check_timeout)
        ),
    }
}

fn validate_policy(path: &Path, output: super::Format) -> ExitCode {
    match super::load_policy(path) {
        Ok(effective) if output == super::Format::Text => {
            let line = |what: String, actions: &[policy::Action]| {
                let a: Vec<String> = actions.iter().map(ToString::to_string).collect();
                println!("  {what}: {}", a.join(", "));
            };
            println!("{}: valid", path.display());
            println!("effective policy (cluster defaults merged with this one):");
            for f in &effective.files {
                line(format!("file {}", f.path), &f.actions);
            }
            for u in &effective.units {
                line(format!("unit {}", u.name), &u.actions);
            }
            line("sshkey".to_string(), &effective.sshkey.actions);
            ExitCode::SUCCESS
        }
        Ok(effective) => {
            let status = serde_json::json!({ "clusterPolicies": effective });
            super::print_data(&status, output)
        }
        Err(code) => code,
    }
}

fn validate_config(
    path: &Path,
    pool: &str,
    output: super::Format,
    limits: &model::load::Limits,
) -> ExitCode {
    let (mc, warnings) = match model::load::load_config_arg_with(path, pool, limits) {
        Ok(loaded) => loaded,
        Err(e) => return super::fail_load(&e),
    };
    super::print_warnings(&warnings);
    let problems = reconcile::config_problems(&mc);
    if !problems.is_empty() {
        let origin = path.display();
        return super::fail(
            super::EXIT_BAD_INPUT,
            problems.iter().map(|p| format!("{origin}: {p}")),
        );
    }
    // Valid, but served to anyone who reaches the machine config server.
    let origin = path.display();
    let secrets: Vec<String> = model::secrets::secret_warnings(&mc)
        .into_iter()
        .map(|w| format!("{origin}: {w}"))
        .collect();
    super::print_warnings(&secrets);
    let not_applied = reconcile::not_applied(&mc);
    for n in &not_applied {
        eprintln!("note: {origin}: {n}");
    }
    let c = &mc.spec.config;
    if output == super::Format::Text {
        println!(
            "{}: valid MachineConfig {} ({} files, {} units)",
            path.display(),
            mc.name,
            c.files.len(),
            c.units.len()
        );
        return ExitCode::SUCCESS;
    }
    let mut summary = serde_json::json!({
        "name": mc.name,
        "valid": true,
        "files": c.files.len(),
        "units": c.units.len(),
    });
    if !not_applied.is_empty() {
        summary["notApplied"] = serde_json::json!(not_applied);
    }
    super::print_data(&summary, output)
}
