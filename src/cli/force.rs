//! The `force` command: creates the force file, so that the daemon re-applies the whole current
//! config and reboots (SPEC §7). `touch <root>/run/machine-config-daemon-force` does the same.
//!
//! It refuses a root without the daemon's state directory (a wrong `--root`, or a node the
//! daemon never ran on: there is nothing to re-apply) and creates no directory but the force
//! file's own under the root's `/run`. It takes no lock: the running daemon acts on the file
//! under its own.
//!
//! Exit codes: 0 created, 1 the file could not be created, 2 no such root or no state directory
//! under it.

use machine_config_daemon::daemon::FORCE_FILE;
use machine_config_daemon::host::{Root, lock};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  the force file was created
  1  it could not be created
  2  no such root, or no machine-config-daemon state directory under it (nothing created)")]
pub struct Args {
    /// The root the daemon manages.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The daemon's state directory on the node (it must exist).
    #[arg(long, value_name = "DIR", default_value = "/etc/machine-config-daemon")]
    state_dir: String,
}

pub fn run(args: Args) -> ExitCode {
    let root = match Root::open(&args.root).and_then(|r| r.with_state_dir(&args.state_dir)) {
        Ok(r) => r,
        Err(e) => return super::fail(super::EXIT_BAD_INPUT, [e]),
    };
    match lock::state_dir_exists(&root) {
        Ok(true) => {}
        Ok(false) => {
            return super::fail(
                super::EXIT_BAD_INPUT,
                [format!(
                    "{}: no machine-config-daemon state directory {} under this root (wrong --root, or the daemon never ran here); nothing created",
                    args.root.display(),
                    args.state_dir
                )],
            );
        }
        Err(e) => return super::fail(super::EXIT_FAILED, [e]),
    }
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
