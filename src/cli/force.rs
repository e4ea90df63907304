//! The `force` command: creates the force file, so that the daemon re-applies the whole current
//! config and reboots (SPEC §7). `touch <root>/run/machine-config-daemon-force` does the same.

use machine_config_daemon::daemon::FORCE_FILE;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The root the daemon manages.
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

pub fn run(args: Args) -> ExitCode {
    let path = args.root.join(FORCE_FILE.trim_start_matches('/'));
    if let Some(dir) = path.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        return super::fail(super::EXIT_FAILED, [format!("{}: {e}", dir.display())]);
    }
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        Ok(_) => {
            println!(
                "created {}: the daemon will re-apply the current config and reboot",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(super::EXIT_FAILED, [format!("{}: {e}", path.display())]),
    }
}
