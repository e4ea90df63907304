//! Subcommands. Each file owns one command: its `Args` (clap) and its `run`.

pub mod apply;
pub mod controller;
pub mod force;
pub mod logging;
pub mod plan;
pub mod plan_pool;
pub mod render;
pub mod rollout;
pub mod server;
pub mod start;
pub mod status;
pub mod validate;

use std::process::ExitCode;

/// Exit code: the command failed (and rolled back, where it changes anything).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad input; nothing was changed.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: the change cannot be applied (unreconcilable); nothing was changed.
pub const EXIT_UNRECONCILABLE: u8 = 3;

/// Prints each message on its own line to stderr, prefixed with `error: `, and returns `code`.
pub fn fail<I, S>(code: u8, messages: I) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: std::fmt::Display,
{
    for m in messages {
        eprintln!("error: {m}");
    }
    ExitCode::from(code)
}

/// Output format of commands that print data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Yaml,
}

/// The bounds on reading a config (see [`machine_config_daemon::model::load::Limits`]), as flags
/// of every command that reads configs.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct LimitArgs {
    /// Largest config file read (bytes, or with a K, M or G suffix: binary units).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
    pub max_config_size: u64,
    /// Largest decoded (decompressed) contents of one file of a config.
    #[arg(long, value_name = "SIZE", default_value = "32M", value_parser = parse_size)]
    pub max_file_size: u64,
    /// Largest decoded contents of all the files of a config together.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub max_total_size: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> machine_config_daemon::model::load::Limits {
        machine_config_daemon::model::load::Limits {
            config_bytes: self.max_config_size,
            file_bytes: self.max_file_size,
            total_bytes: self.max_total_size,
        }
    }
}

/// `123`, `64K`, `64M`, `1G` (also `KiB`, `MiB`, `GiB`): bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 64M, 1G, 1048576)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit (K, M or G)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Prints every problem of `errors` (one `error: ...` line each) and returns the bad-input code.
pub fn fail_load(errors: &machine_config_daemon::model::LoadErrors) -> ExitCode {
    fail(EXIT_BAD_INPUT, errors.errors())
}

/// `--metrics-address`: `none` (or empty) for no metrics server, else the address to listen on;
/// an address that does not parse is bad input, named.
pub fn metrics_address(arg: &str) -> Result<Option<std::net::SocketAddr>, ExitCode> {
    match arg {
        "none" | "" => Ok(None),
        a => a
            .parse()
            .map(Some)
            .map_err(|e| fail(EXIT_BAD_INPUT, [format!("--metrics-address {a}: {e}")])),
    }
}

/// Prints each warning on its own line to stderr, prefixed with `warning: `.
pub fn print_warnings<S: std::fmt::Display>(warnings: &[S]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// Prints `value` to stdout as pretty JSON or YAML (`Text` prints JSON) and returns success, or
/// failure when it cannot be serialised.
pub fn print_data(value: &serde_json::Value, format: Format) -> ExitCode {
    let text = match format {
        Format::Yaml => serde_saphyr::to_string(value).map_err(|e| e.to_string()),
        Format::Json | Format::Text => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
    };
    match text {
        Ok(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, [format!("cannot print the result: {e}")]),
    }
}

/// Takes the single-instance lock of the state directory `state_dir` beneath `root` (see
/// [`machine_config_daemon::host::lock`]). Another holder: exit code 1 (with [`Wait::No`]) or a
/// wait announced on stderr; a bad root or state directory: exit code 2.
pub fn lock_root(
    root: &std::path::Path,
    state_dir: &str,
    wait: machine_config_daemon::host::lock::Wait,
) -> Result<machine_config_daemon::host::lock::Lock, ExitCode> {
    use machine_config_daemon::host::Root;
    use machine_config_daemon::host::lock::{self, LockError};
    let root = Root::open(root)
        .and_then(|r| r.with_state_dir(state_dir))
        .map_err(|e| fail(EXIT_BAD_INPUT, [e]))?;
    let path = root.state_path(lock::LOCK_FILE);
    let announce = |pid: Option<u32>| {
        let pid = pid.map_or("unknown".to_string(), |p| p.to_string());
        eprintln!("waiting for {path}, held by machine-config-daemon pid {pid}");
    };
    lock::acquire(&root, wait, announce).map_err(|e| match e {
        LockError::Held { .. } => fail(EXIT_FAILED, [e]),
        LockError::Host(e) => fail(EXIT_FAILED, [e]),
    })
}

/// Reads a MachineConfiguration file, validates its node disruption policy and returns the
/// effective policy (cluster defaults merged with it). On failure, prints every problem and
/// returns the bad-input exit code.
pub fn load_policy(
    path: &std::path::Path,
) -> Result<machine_config_daemon::model::policy::Policy, ExitCode> {
    use machine_config_daemon::model::policy;
    let origin = path.display().to_string();
    let limit = machine_config_daemon::model::load::Limits::default().config_bytes;
    let bytes = machine_config_daemon::model::load::read_input(path, limit)
        .map_err(|e| fail(EXIT_BAD_INPUT, [format!("{origin}: {e}")]))?;
    let mc = policy::parse_machine_configuration(&bytes, &origin)
        .map_err(|e| fail(EXIT_BAD_INPUT, e.errors()))?;
    Ok(mc.effective_policy())
}

/// Refuses (bad input, exit 2) a config holding items no config may hold
/// ([`machine_config_daemon::plan::reconcile::invalid_items`]), each named with the file.
pub fn check_items(
    config: &machine_config_daemon::model::MachineConfig,
    origin: &std::path::Path,
) -> Result<(), ExitCode> {
    let problems = machine_config_daemon::plan::reconcile::invalid_items(config);
    if problems.is_empty() {
        return Ok(());
    }
    let origin = origin.display();
    Err(fail(
        EXIT_BAD_INPUT,
        problems.iter().map(|p| format!("{origin}: {p}")),
    ))
}

/// Reads the daemon configuration file (`explicit`, else the default path beneath `root` when
/// it exists; see [`machine_config_daemon::daemon::drift`]). Absent: the defaults (every drift
/// degrades). On failure, prints every problem and returns the bad-input exit code. The one
/// reading of that file for `start`, `validate` and `plan`.
pub fn load_daemon_config(
    root: &std::path::Path,
    explicit: Option<&std::path::Path>,
) -> Result<machine_config_daemon::daemon::drift::DriftConfig, ExitCode> {
    use machine_config_daemon::daemon::drift;
    match drift::locate(root, explicit) {
        None => Ok(drift::DriftConfig::default()),
        Some(path) => drift::load(&path).map_err(|e| fail(EXIT_BAD_INPUT, e.errors())),
    }
}
