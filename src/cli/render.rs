//! The `render` command: merge MachineConfigs (files or directories) into the rendered
//! MachineConfig of a pool and print it as JSON (default) or YAML.

use machine_config_daemon::model::{self, LoadErrors};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  rendered and printed
  1  the result could not be printed
  2  bad input (every problem printed)")]
pub struct Args {
    /// The pool to render for (`worker`, `master` or a custom pool).
    #[arg(long, default_value = "worker")]
    pub pool: String,
    /// MachineConfig files (JSON or YAML, a List, or a bare Ignition config) or directories of them.
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    pub inputs: Vec<PathBuf>,
    /// Output format (a MachineConfig has no text form).
    #[arg(short = 'o', long = "output", value_enum, default_value = "json")]
    pub output: Output,
    #[command(flatten)]
    pub limits: super::LimitArgs,
}

/// What `render` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Json,
    Yaml,
}

pub fn run(args: Args) -> ExitCode {
    let mut configs = Vec::new();
    let mut errors: Option<LoadErrors> = None;
    // One budget for every input: they make one rendered config.
    let budget = model::load::Budget::new(args.limits.limits());
    for input in &args.inputs {
        match model::load::load_in_budget(input, &budget) {
            Ok(loaded) => {
                super::print_warnings(&loaded.warnings);
                configs.extend(loaded.configs);
            }
            Err(e) => match &mut errors {
                Some(all) => all.extend(e),
                None => errors = Some(e),
            },
        }
    }
    if let Some(e) = errors {
        return super::fail_load(&e);
    }
    let rendered = match model::render::render(&args.pool, &configs) {
        Ok(mc) => mc,
        Err(e) => return super::fail(super::EXIT_BAD_INPUT, [e]),
    };
    let json = model::machine_config_to_json(&rendered);
    let format = match args.output {
        Output::Json => super::Format::Json,
        Output::Yaml => super::Format::Yaml,
    };
    super::print_data(&json, format)
}
