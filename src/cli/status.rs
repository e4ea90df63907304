//! The `status` command: prints the standalone status file the daemon keeps up to date.

use machine_config_daemon::daemon::status::{Status, status_path};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The root the daemon manages (its status file is under <root>/run/machine-config-daemon/).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: super::Format,
    /// Also show the finer update phases.
    #[arg(long)]
    wide: bool,
}

pub fn run(args: Args) -> ExitCode {
    let status = match Status::read(&status_path(&args.root)) {
        Ok(s) => s,
        Err(e) => return super::fail(super::EXIT_FAILED, [e]),
    };
    match args.output {
        super::Format::Text => print!("{}", status.table(args.wide)),
        super::Format::Json => match serde_json::to_string_pretty(&status) {
            Ok(s) => println!("{s}"),
            Err(e) => return super::fail(super::EXIT_FAILED, [e]),
        },
        super::Format::Yaml => match serde_saphyr::to_string(&status) {
            Ok(s) => print!("{s}"),
            Err(e) => return super::fail(super::EXIT_FAILED, [e]),
        },
    }
    ExitCode::SUCCESS
}
