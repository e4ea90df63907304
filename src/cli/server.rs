//! The `server` command: the machine config server (see `machine_config_daemon::server`).

use machine_config_daemon::server::{self, ServerOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

const ABOUT: &str = "\
Serves each MachineConfigPool's current rendered config as an Ignition config to machines that
join the pool: GET /config/<pool> over HTTPS, in the Ignition spec version (3.0.0 to 3.5.0) the
client's Accept header names (application/vnd.coreos.ignition+json;version=3.4.0); 3.5.0 when it
names none. Anyone who reaches the port gets the configs: never put secrets in a MachineConfig.

Endpoints:
  /config/<pool>  200 config, 404 no such pool, 406 version cannot carry the config,
                  503 (Retry-After) no rendered config yet
  /healthz        200 once the caches of pools and configs are filled, 503 before
  /metrics        on --metrics-address only: mcs_configs_served_total{pool}

Exit codes:
  0  stopped by SIGTERM or SIGINT
  1  could not run (cluster unreachable, port taken)
  2  bad arguments, or an unusable certificate or key";

#[derive(clap::Args)]
#[command(after_help = ABOUT)]
pub struct Args {
    /// Credentials for the API server (default: in-cluster, then $KUBECONFIG, ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The server's certificate chain, PEM.
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// The server's private key, PEM.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Where to serve HTTPS.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:22623")]
    listen: SocketAddr,
    /// Also serve /config/ and /healthz over plain HTTP here (upstream's port is 22624); off
    /// unless given.
    #[arg(long, value_name = "ADDR")]
    insecure_listen: Option<SocketAddr>,
    /// Where to serve /metrics and /healthz over plain HTTP; `none` turns it off.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:22625")]
    metrics_address: String,
    /// Log filter (e.g. `debug`); default $RUST_LOG or `info`.
    #[arg(long)]
    log_level: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    super::logging::init(args.log_level.as_deref());
    let metrics_address = match super::metrics_address(&args.metrics_address) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let opts = ServerOptions {
        kubeconfig: args.kubeconfig,
        cert: args.cert,
        key: args.key,
        listen: args.listen,
        insecure_listen: args.insecure_listen,
        metrics_address,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return super::fail(super::EXIT_FAILED, [format!("tokio runtime: {e}")]),
    };
    match runtime.block_on(server::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ server::ServerError::Tls(_)) => super::fail(super::EXIT_BAD_INPUT, [e]),
        Err(e) => {
            tracing::error!("{e}");
            super::fail(super::EXIT_FAILED, [e])
        }
    }
}
