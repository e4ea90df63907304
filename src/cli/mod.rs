//! Subcommands. Each file owns one command: its `Args` (clap) and its `run`.

pub mod apply;
pub mod force;
pub mod logging;
pub mod plan;
pub mod render;
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

/// Prints every problem of `errors` (one `error: ...` line each) and returns the bad-input code.
pub fn fail_load(errors: &machine_config_daemon::model::LoadErrors) -> ExitCode {
    fail(EXIT_BAD_INPUT, errors.errors())
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

/// Reads a MachineConfiguration file, validates its node disruption policy and returns the
/// effective policy (cluster defaults merged with it). On failure, prints every problem and
/// returns the bad-input exit code.
pub fn load_policy(
    path: &std::path::Path,
) -> Result<machine_config_daemon::model::policy::Policy, ExitCode> {
    use machine_config_daemon::model::policy;
    let origin = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| fail(EXIT_BAD_INPUT, [format!("{origin}: cannot read: {e}")]))?;
    let mc = policy::parse_machine_configuration(&bytes, &origin)
        .map_err(|e| fail(EXIT_BAD_INPUT, e.errors()))?;
    Ok(mc.effective_policy())
}
