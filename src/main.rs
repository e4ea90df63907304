//! The command line: one subcommand per file in `src/cli/`. Library code lives in the crate's
//! lib (`machine_config_daemon`); this binary only parses arguments, prints and sets exit codes.
//!
//! Exit codes shared by every command: 0 success, 1 failure (rolled back where it applies),
//! 2 bad input (nothing changed), 3 unreconcilable change (nothing changed).

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "machine-config-daemon",
    version,
    about,
    after_help = "\
Exit codes (each command's --help lists its own):
  0  success
  1  failed (rolled back where it applies), or another machine-config-daemon holds the lock
  2  bad input: nothing changed
  3  unreconcilable change: nothing changed"
)]
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
    /// Run the controller: render each pool's configs, roll its nodes out, report its status.
    Controller(cli::controller::Args),
    /// Follow a pool's rollout (`rollout status --pool NAME`).
    Rollout(cli::rollout::Args),
    /// Serve pools' rendered configs as Ignition to machines that join the cluster.
    Server(cli::server::Args),
}

/// The allocator's settings for the commands that update a node (`apply`, `start`), whose peak
/// memory during an update is bounded (README, Performance), measured with 10,000 files:
/// - one arena (`M_ARENA_MAX`): the few threads of an update allocate briefly, and each
///   further arena keeps its own freed memory resident;
/// - a fixed mmap threshold of 128 KiB (`M_MMAP_THRESHOLD`): a large buffer (a list of
///   thousands of files) is mapped and given back when freed. Without it, glibc raises the
///   threshold after the first such buffer is freed, and the later ones stay in the heap.
///
/// Together about 1.5 to 2 MiB less at the peak, at no measurable cost in time.
fn tune_malloc() {
    // SAFETY: mallopt only sets the allocator's parameters; called before any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() -> ExitCode {
    // Built with `--features failpoints` (tests only): fail points from $FAILPOINTS, e.g.
    // `FAILPOINTS=after_journal=sleep(2000)` to widen the window of an update, and
    // `MCD_FAILPOINT_HOLD=NAME=FIFO`: each time NAME is reached while the named pipe FIFO
    // exists, it holds until a test has opened FIFO for writing and closed it again (a window
    // that the test opens and ends on events of its own, not after a delay).
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    #[cfg(feature = "failpoints")]
    if let Ok(spec) = std::env::var("MCD_FAILPOINT_HOLD")
        && let Some((name, fifo)) = spec.split_once('=')
    {
        let fifo = std::path::PathBuf::from(fifo);
        fail::cfg_callback(name, move || {
            if let Ok(mut held) = std::fs::File::open(&fifo) {
                let _ = std::io::copy(&mut held, &mut std::io::sink());
            }
        })
        .expect("MCD_FAILPOINT_HOLD names a fail point");
    }
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Start(_) | Command::Controller(_) | Command::Server(_)
    ) {
        // A command whose output is cut short (`status | head`) ends quietly, as every Unix
        // tool does, instead of panicking on EPIPE. Not the daemon: its log goes to a pipe
        // (journald) that may close and reopen, which must not kill it.
        // SAFETY: setting a signal disposition before any other thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if matches!(cli.command, Command::Apply(_) | Command::Start(_)) {
        tune_malloc();
    }
    match cli.command {
        Command::Render(args) => cli::render::run(args),
        Command::Validate(args) => cli::validate::run(args),
        Command::Plan(args) => cli::plan::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Force(args) => cli::force::run(args),
        Command::Apply(args) => cli::apply::run(args),
        Command::Start(args) => cli::start::run(args),
        Command::Controller(args) => cli::controller::run(args),
        Command::Server(args) => cli::server::run(args),
        Command::Rollout(args) => cli::rollout::run(args),
    }
}
