//! The `plan` command.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    super::fail(super::EXIT_FAILED, ["not implemented yet"])
}
