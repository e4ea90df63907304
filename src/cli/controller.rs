//! The `controller` command: the machine-config controller (render per pool, roll pools out,
//! report pool status, report the `ControllerConfig`'s certificates), with leader election so
//! several replicas are safe. `--metrics-address` (default `0.0.0.0:9001`, `none` for none)
//! serves `/metrics` and `/healthz` from the start, leader or not (a bad address: exit 2; an
//! address in use: exit 1).

use std::sync::Arc;

use std::path::PathBuf;
use std::process::ExitCode;

use machine_config_daemon::cluster;
use machine_config_daemon::controller::metrics::{self, ControllerMetrics};
use machine_config_daemon::controller::{self, ControllerOptions, lease};

#[derive(clap::Args)]
#[command(after_help = "\
Metrics (on --metrics-address):
  /metrics   mcc_certificate_expiry_seconds{bundle,subject}: seconds until the end of each
             ControllerConfig CA certificate expired or expiring within 30 days (leader only)
  /healthz   ok

Exit codes:
  0  stopped by SIGTERM or SIGINT (the leader lease given up)
  1  failed (no cluster, a watch ended, the leader lease lost, the metrics address in use):
     restart it
  2  bad input (an option's value)")]
pub struct Args {
    /// The kubeconfig to use (default: in-cluster credentials, else $KUBECONFIG or
    /// ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The leader election identity (default: $POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// The namespace of the leader election Lease.
    #[arg(long, default_value = lease::NAMESPACE)]
    pub lease_namespace: String,
    /// Where to serve /metrics and /healthz over plain HTTP; `none` turns it off.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9001")]
    pub metrics_address: String,
    /// Drains: check the PodDisruptionBudgets before cordoning and, while they keep a pod from
    /// being evicted, wait without cordoning (reported on the Node and in an event); `false`:
    /// cordon at once and retry evictions the budgets refuse (upstream).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub drain_preflight: bool,
    /// Log filter (e.g. `debug`); default $RUST_LOG or `info`.
    #[arg(long)]
    pub log_level: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    super::logging::init(args.log_level.as_deref());
    let metrics_address = match super::metrics_address(&args.metrics_address) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let identity = args.identity.unwrap_or_else(|| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "machine-config-controller".into())
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return super::fail(super::EXIT_FAILED, [format!("cannot start: {e}")]),
    };
    let result = runtime.block_on(async {
        let metrics = match metrics_address {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("metrics endpoint {addr}: {e}"))?;
                let metrics = Arc::new(ControllerMetrics::default());
                tracing::info!(address = %listener.local_addr()?, "metrics endpoint listening");
                tokio::spawn(metrics::serve(listener, metrics.clone()));
                Some(metrics)
            }
            None => None,
        };
        let client = cluster::connect(args.kubeconfig.as_deref()).await?;
        let opts = ControllerOptions {
            identity,
            namespace: args.lease_namespace,
            lease: lease::LeaseTimings::default(),
            requests: cluster::Options::default(),
            metrics,
            drain: controller::drain::DrainControllerOptions {
                preflight: args.drain_preflight,
                ..Default::default()
            },
        };
        controller::run(client, opts, shutdown_signal())
            .await
            .map_err(anyhow::Error::from)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail(super::EXIT_FAILED, [format!("{e:#}")]),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}
