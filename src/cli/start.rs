//! The `start` command: the long-running daemon, standalone (the default) or cluster mode.

use machine_config_daemon::cluster::drain::{DrainMode, DrainOptions};
use machine_config_daemon::daemon::cluster::ClusterOptions;
use machine_config_daemon::daemon::run::{self, Options};
use machine_config_daemon::daemon::source::LocalSource;
use machine_config_daemon::host::lock::Wait;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const MODES: &str = "\
Modes:
  standalone (default)  The desired config is --desired-config (a file or a directory, watched)
                        and --policy, the CA bundles --controller-config; the state goes to the
                        status file (see `status`).
  cluster               Chosen by --cluster, or by --kubeconfig (which implies it). The desired
                        config is the Node's machineconfiguration.openshift.io/desiredConfig
                        annotation (the node is --node-name, default $NODE_NAME), fetched from
                        the API server by name; the policy is MachineConfiguration/cluster. The
                        state goes to the node annotations, the MachineConfigNode and events (and
                        the status file). Credentials: --kubeconfig, else in-cluster (the
                        DaemonSet), else $KUBECONFIG or ~/.kube/config. The CA bundles come
                        from ControllerConfig/machine-config-controller.

Exit codes:
  0  stopped by SIGTERM or SIGINT
  1  could not run (e.g. another machine-config-daemon holds the node's lock)
  2  bad arguments or a bad daemon configuration file (every problem printed)";

#[derive(clap::Args)]
#[command(after_help = MODES)]
pub struct Args {
    /// The root of the node to manage.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The daemon's state directory on the node (current config, update journal, backups,
    /// reboot record); under /etc or /var.
    #[arg(long, value_name = "DIR", default_value = "/etc/machine-config-daemon")]
    state_dir: String,
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
    /// Standalone mode: a ControllerConfig file (YAML or JSON) whose CA bundles are written on
    /// the node without drain or reboot (watched; absent: none). Cluster mode watches
    /// ControllerConfig/machine-config-controller instead.
    #[arg(long, value_name = "FILE")]
    controller_config: Option<PathBuf>,
    /// The pool a directory of MachineConfigs is rendered for.
    #[arg(long, default_value = "worker")]
    pool: String,
    /// Do not talk to systemd: post actions are logged as skipped, reboots recorded, not done.
    #[arg(long)]
    no_systemd: bool,
    /// D-Bus address of the system bus (default: $DBUS_SYSTEM_BUS_ADDRESS or the standard one).
    #[arg(long, value_name = "ADDRESS")]
    systemd_bus: Option<String>,
    /// Which reboot a plan that ends in a reboot gets: `full` (the default, as upstream),
    /// `auto` (soft — userspace only, the kernel stays — when the change touches no kernel,
    /// initramfs, kernel argument, kernel type or OS image and systemd is 254 or later) or
    /// `soft` (soft whenever the change needs no kernel boot and systemd supports it).
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        default_value = "full",
        env = "MCD_REBOOT_MODE"
    )]
    reboot_mode: machine_config_daemon::plan::ladder::RebootMode,
    /// Where to serve /metrics and /healthz; `none` turns the endpoint off.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8797")]
    metrics_address: String,
    /// The node's name: the Node in cluster mode, the name in the status (default: the host
    /// name).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Cluster mode: the desired config comes from the node's desiredConfig annotation and the
    /// state is reported to the API server.
    #[arg(long)]
    cluster: bool,
    /// Cluster mode with the credentials of this kubeconfig file (implies --cluster).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Cluster mode: who drains the node, the machine-config controller (by annotation) or
    /// the daemon itself (cordon and evict).
    #[arg(long, value_enum, default_value = "controller")]
    drain_mode: DrainModeArg,
    /// Cluster mode: longest wait for a drain (e.g. `1h`, `90s`).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// The daemon configuration file (drift rules: degrade, report or heal per path); default
    /// <root>/etc/machine-config-daemon/config.yaml when it exists (absent: every drift
    /// degrades the node). Read at start; a bad file is refused (exit code 2).
    #[arg(long, value_name = "PATH")]
    daemon_config: Option<PathBuf>,
    /// Cluster mode, self-drain: check the PodDisruptionBudgets before cordoning and, while
    /// they keep a pod from being evicted, wait without cordoning (reporting the pods and
    /// budgets); `false`: cordon at once and retry evictions the budgets refuse (upstream).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    drain_preflight: bool,
    /// Try mode: after each update (and the reboot it needed), the health checks (systemd's
    /// state, in cluster mode the Node's Ready, and the executables in
    /// /etc/machine-config-daemon/health.d/) must pass within this time (e.g. `5m`; 1s to 24h),
    /// or the node is reverted to the previous config and Degraded. Absent: off (or the daemon
    /// configuration file's tryMode.confirmTimeout).
    #[arg(long, value_name = "DURATION")]
    confirm_timeout: Option<String>,
    /// Log filter (e.g. `debug`, `machine_config_daemon=debug`); default $RUST_LOG or `info`.
    #[arg(long)]
    log_level: Option<String>,
    #[command(flatten)]
    limits: super::LimitArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DrainModeArg {
    /// Hand the drain to the machine-config controller (desiredDrain / lastAppliedDrain).
    Controller,
    /// Cordon and evict the pods here.
    #[value(name = "self")]
    SelfDrain,
}

pub fn run(args: Args) -> ExitCode {
    super::logging::init(args.log_level.as_deref());
    let metrics_address = match super::metrics_address(&args.metrics_address) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let node_name = args.node_name.unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    });
    let cluster = (args.cluster || args.kubeconfig.is_some()).then(|| ClusterOptions {
        kubeconfig: args.kubeconfig,
        drain: DrainOptions {
            mode: match args.drain_mode {
                DrainModeArg::Controller => DrainMode::Controller,
                DrainModeArg::SelfDrain => DrainMode::SelfDrain,
            },
            timeout: args.drain_timeout,
            preflight: args.drain_preflight,
            ..DrainOptions::default()
        },
        api: Default::default(),
    });
    let mut drift = match super::load_daemon_config(&args.root, args.daemon_config.as_deref()) {
        Ok(d) => d,
        Err(code) => return code,
    };
    // The flag wins over the file.
    if let Some(t) = &args.confirm_timeout {
        match humantime::parse_duration(t)
            .map_err(|e| e.to_string())
            .and_then(machine_config_daemon::daemon::confirm::check_confirm_timeout)
        {
            Ok(d) => drift.try_mode.confirm_timeout = Some(d),
            Err(e) => {
                return super::fail(
                    super::EXIT_BAD_INPUT,
                    [format!("--confirm-timeout {t}: {e}")],
                );
            }
        }
    }
    // One daemon per node: the lock is held until this function returns (or the process dies).
    let _lock = match super::lock_root(&args.root, &args.state_dir, Wait::No) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let opts = Options {
        root: args.root,
        state_dir: args.state_dir,
        source: LocalSource {
            desired: args.desired_config,
            policy: args.policy,
            pool: args.pool,
            limits: args.limits.limits(),
        },
        no_systemd: args.no_systemd,
        systemd_bus: args.systemd_bus,
        metrics_address,
        node_name,
        cluster,
        drift,
        controller_config: args.controller_config,
        reboot_mode: args.reboot_mode,
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
