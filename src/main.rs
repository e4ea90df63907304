//! The command line: one subcommand per file in `src/cli/`. Library code lives in the crate's
//! lib (`machine_config_daemon`); this binary only parses arguments, prints and sets exit codes.
//!
//! Exit codes shared by every command: 0 success, 1 failure (rolled back where it applies),
//! 2 bad input (nothing changed), 3 unreconcilable change (nothing changed).

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "machine-config-daemon", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Merge MachineConfigs into one rendered MachineConfig and print it.
    Render(cli::render::Args),
    /// Validate a node disruption policy or a MachineConfig.
    Validate(cli::validate::Args),
    /// Show what changing from one config to another would do, without doing it.
    Plan(cli::plan::Args),
    /// Print the node's state as the running daemon last wrote it.
    Status(cli::status::Args),
    /// Create the force file: the daemon re-applies the current config and reboots.
    Force(cli::force::Args),
    /// Apply a config to a node (or a root directory), one shot.
    Apply(cli::apply::Args),
    /// Run the daemon: apply the desired config, watch for drift and new configs.
    Start(cli::start::Args),
}

fn main() -> ExitCode {
    // Built with `--features failpoints` (tests only): fail points from $FAILPOINTS, e.g.
    // `FAILPOINTS=after_journal=sleep(2000)` to widen the window of an update.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    match cli.command {
        Command::Render(args) => cli::render::run(args),
        Command::Validate(args) => cli::validate::run(args),
        Command::Plan(args) => cli::plan::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Force(args) => cli::force::run(args),
        Command::Apply(args) => cli::apply::run(args),
        Command::Start(args) => cli::start::run(args),
    }
}
