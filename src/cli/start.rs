//! The `start` command: the long-running daemon (standalone mode).

use machine_config_daemon::daemon::run::{self, Options};
use machine_config_daemon::daemon::source::LocalSource;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The root of the node to manage.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The desired config: a rendered MachineConfig file, or a directory of MachineConfigs
    /// rendered on the fly for --pool. Watched: a change is applied as soon as it is written.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/machine-config-daemon/desired.d"
    )]
    desired_config: PathBuf,
    /// A MachineConfiguration file with the node disruption policy (watched; absent: the
    /// cluster defaults).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The pool a directory of MachineConfigs is rendered for.
    #[arg(long, default_value = "worker")]
    pool: String,
    /// Do not talk to systemd: post actions are logged as skipped, reboots recorded, not done.
    #[arg(long)]
    no_systemd: bool,
    /// D-Bus address of the system bus (default: $DBUS_SYSTEM_BUS_ADDRESS or the standard one).
    #[arg(long, value_name = "ADDRESS")]
    systemd_bus: Option<String>,
    /// Where to serve /metrics and /healthz; `none` turns the endpoint off.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8797")]
    metrics_address: String,
    /// The node's name in the status (default: the host name).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Log filter (e.g. `debug`, `machine_config_daemon=debug`); default $RUST_LOG or `info`.
    #[arg(long)]
    log_level: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    super::logging::init(args.log_level.as_deref());
    let metrics_address = match args.metrics_address.as_str() {
        "none" | "" => None,
        a => match a.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                return super::fail(
                    super::EXIT_BAD_INPUT,
                    [format!("--metrics-address {a}: {e}")],
                );
            }
        },
    };
    let node_name = args.node_name.unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    });
    let opts = Options {
        root: args.root,
        source: LocalSource {
            desired: args.desired_config,
            policy: args.policy,
            pool: args.pool,
        },
        no_systemd: args.no_systemd,
        systemd_bus: args.systemd_bus,
        metrics_address,
        node_name,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return super::fail(super::EXIT_FAILED, [format!("tokio runtime: {e}")]),
    };
    match runtime.block_on(run::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            super::fail(super::EXIT_FAILED, [e])
        }
    }
}
