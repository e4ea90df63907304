//! Subcommands. Each file owns one command: its `Args` (clap) and its `run`.

pub mod force;
pub mod logging;
pub mod plan;
pub mod render;
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
