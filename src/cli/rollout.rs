//! The `rollout status` command: follow a pool's rollout as `kubectl rollout status` follows a
//! Deployment's. It watches the pool and the nodes (no polling) and prints the progress
//! ([`controller::progress`]) whenever it changes: on a terminal one line redrawn in place,
//! otherwise one line per change. It exits 0 once the pool runs its config everywhere, 1 as
//! soon as a node of the pool degrades (or the pool does), or when `--timeout` passes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use machine_config_daemon::cluster::{self, mcp::MachineConfigPool};
use machine_config_daemon::controller::pool::NodeInfo;
use machine_config_daemon::controller::progress::{Verdict, progress};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(clap::Subcommand)]
pub enum RolloutCommand {
    /// Watch a pool's rollout until every node runs the pool's config.
    #[command(after_help = "\
Exit codes:
  0  the pool is Updated: every node runs its config
  1  a node of the pool (or the pool) is degraded, the timeout passed, or no cluster
  2  bad input (no such pool)")]
    Status(StatusArgs),
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The kubeconfig to use (default: in-cluster credentials, else $KUBECONFIG or
    /// ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The MachineConfigPool to follow.
    #[arg(long)]
    pub pool: String,
    /// Give up after this long (e.g. `90s`, `1h`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub fn run(args: Args) -> ExitCode {
    let RolloutCommand::Status(args) = args.command;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return super::fail(super::EXIT_FAILED, [format!("cannot start: {e}")]),
    };
    runtime.block_on(status(args))
}

async fn status(args: StatusArgs) -> ExitCode {
    let client = match cluster::connect(args.kubeconfig.as_deref()).await {
        Ok(c) => c,
        Err(e) => return super::fail(super::EXIT_FAILED, [e]),
    };
    let pools: Api<MachineConfigPool> = Api::all(client.clone());
    match pools.get_opt(&args.pool).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return super::fail(
                super::EXIT_BAD_INPUT,
                [format!("--pool: no MachineConfigPool {:?}", args.pool)],
            );
        }
        Err(e) => {
            return super::fail(
                super::EXIT_FAILED,
                [format!(
                    "cannot read MachineConfigPool {:?}: {e}",
                    args.pool
                )],
            );
        }
    }
    let pool_watch = watcher::watcher(
        pools,
        watcher::Config::default().fields(&format!("metadata.name={}", args.pool)),
    );
    let node_watch = watcher::watcher(Api::<Node>::all(client), watcher::Config::default());
    let mut pool_watch = std::pin::pin!(pool_watch);
    let mut node_watch = std::pin::pin!(node_watch);
    let deadline = tokio::time::sleep(args.timeout);
    tokio::pin!(deadline);

    let tty = std::io::stdout().is_terminal();
    let mut pool: Option<MachineConfigPool> = None;
    let mut nodes: std::collections::BTreeMap<String, NodeInfo> = Default::default();
    let mut listing: std::collections::BTreeMap<String, NodeInfo> = Default::default();
    let mut nodes_synced = false;
    let mut last_line = String::new();
    loop {
        tokio::select! {
            ev = pool_watch.next() => match ev {
                Some(Ok(Event::Apply(p) | Event::InitApply(p))) => pool = Some(p),
                Some(Ok(Event::Delete(_))) => {
                    finish_line(tty, &last_line);
                    return super::fail(super::EXIT_FAILED,
                        [format!("MachineConfigPool {:?} was deleted", args.pool)]);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::debug!(error = %e, "pool watch"),
                None => return super::fail(super::EXIT_FAILED, ["the pool watch ended"]),
            },
            ev = node_watch.next() => match ev {
                Some(Ok(Event::Apply(n))) => {
                    let info = NodeInfo::from_node(&n);
                    nodes.insert(info.name.clone(), info);
                }
                Some(Ok(Event::Delete(n))) => {
                    nodes.remove(n.metadata.name.as_deref().unwrap_or_default());
                }
                Some(Ok(Event::Init)) => listing.clear(),
                Some(Ok(Event::InitApply(n))) => {
                    let info = NodeInfo::from_node(&n);
                    listing.insert(info.name.clone(), info);
                }
                Some(Ok(Event::InitDone)) => {
                    nodes = std::mem::take(&mut listing);
                    nodes_synced = true;
                }
                Some(Err(e)) => tracing::debug!(error = %e, "node watch"),
                None => return super::fail(super::EXIT_FAILED, ["the node watch ended"]),
            },
            _ = &mut deadline => {
                finish_line(tty, &last_line);
                return super::fail(super::EXIT_FAILED, [format!(
                    "timed out after {} waiting for pool {:?} to be updated",
                    humantime::format_duration(args.timeout), args.pool)]);
            }
        }
        let (Some(p), true) = (&pool, nodes_synced) else {
            continue;
        };
        let node_list: Vec<NodeInfo> = nodes.values().cloned().collect();
        let now = progress(p, &node_list);
        if now.line != last_line {
            if tty {
                print!("\r\x1b[K{}", now.line);
            } else {
                println!("{}", now.line);
            }
            let _ = std::io::stdout().flush();
            last_line = now.line.clone();
        }
        match now.verdict {
            Verdict::Waiting => {}
            Verdict::Done => {
                finish_line(tty, &last_line);
                println!("pool {:?} is updated", args.pool);
                return ExitCode::SUCCESS;
            }
            Verdict::Failed(why) => {
                finish_line(tty, &last_line);
                return super::fail(super::EXIT_FAILED, [why]);
            }
        }
    }
}

/// Ends the redrawn line on a terminal, so what follows starts on a line of its own.
fn finish_line(tty: bool, last: &str) {
    if tty && !last.is_empty() {
        println!();
    }
}
