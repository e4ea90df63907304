//! The machine config server (SPEC §12, seed §5.1.1): gives a machine that joins a pool the
//! pool's current rendered config as an Ignition config.
//!
//! - [`ignition`]: what is served (the rendered config's Ignition plus the first-boot files) and
//!   in which Ignition spec version (`Accept` negotiation, 3.0.0 to 3.5.0). Pure.
//! - [`cache`]: the pools and rendered MachineConfigs, kept by watches; which config a pool's
//!   joining machines get.
//! - [`http`]: the endpoints, the access log and the metrics.
//! - [`tls`]: the certificate and key (rustls).
//!
//! **Endpoints.** `GET /config/<pool>` (and `HEAD`) on the HTTPS listener (`--listen`,
//! default `0.0.0.0:22623`): `200` with the config (`Content-Type:
//! application/vnd.coreos.ignition+json;version=X`), `404` for a pool that does not exist, `406`
//! for an Ignition version that cannot carry the config (the body names what was asked for and
//! what is available), `503` with `Retry-After` while the pool has no rendered config yet (or it
//! is not in the cache yet, or the caches are still being filled at start), `500` for a
//! rendered config that does not parse. `/healthz` answers `200 ok` once the caches are filled
//! (`503` before: a readiness probe keeps a starting server out of the Service). Every answer to
//! `/config/` is logged (target `access`: pool, client address, the Ignition versions asked
//! for, the status code, the config and version served).
//!
//! **Metrics** on a separate plain-HTTP listener (`--metrics-address`, default
//! `0.0.0.0:22625`; `none` turns it off): `/metrics` (`mcs_configs_served_total{pool}`, configs
//! served per pool) and `/healthz`. The metrics hold no config, only pool names and counts.
//!
//! **Plain HTTP on 22624** (`--insecure-listen ADDR`, off by default): the same `/config/` and
//! `/healthz` without TLS, for machines whose Ignition cannot be given the server's CA (upstream
//! served 22624 for this). Off by default: TLS does not make the config secret (anyone who
//! reaches the port gets it), but it stops a machine on the path from handing a joining machine
//! a config of its own.
//!
//! **Nothing secret may be served.** The endpoint cannot be closed to the machines it exists
//! for, which have no credentials yet: anyone who reaches the port gets every pool's config.
//! The trust root for joining is the kubelet's certificate signing request, not this server.
//! So no MachineConfig may hold secrets (`validate --config` warns about paths that usually
//! do); restrict who reaches the port with network policy or firewalls.

pub mod cache;
pub mod http;
pub mod ignition;
pub mod tls;

use crate::cluster::{self, ClusterError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The HTTPS port upstream serves on.
pub const SECURE_PORT: u16 = 22623;
/// The plain HTTP port upstream served on.
pub const INSECURE_PORT: u16 = 22624;
/// The metrics port (ours).
pub const METRICS_PORT: u16 = 22625;
/// Seconds a client is asked to wait before asking again (503).
pub const RETRY_AFTER_SECONDS: u32 = 10;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// A kubeconfig file; None: in-cluster credentials (then `KUBECONFIG`, `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// PEM certificate chain (the server's certificate first).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The HTTPS listener.
    pub listen: SocketAddr,
    /// A plain HTTP listener for the same endpoints (None: none).
    pub insecure_listen: Option<SocketAddr>,
    /// The metrics listener (None: none).
    pub metrics_address: Option<SocketAddr>,
}

/// Why the server cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Cluster(#[from] ClusterError),
}

/// A server whose listeners are bound; [`Server::serve`] runs it.
pub struct Server {
    /// The HTTPS listener's address.
    pub https: SocketAddr,
    /// The plain HTTP listener's address, when there is one.
    pub insecure: Option<SocketAddr>,
    /// The metrics listener's address, when there is one.
    pub metrics: Option<SocketAddr>,
    listeners: Vec<(tokio::net::TcpListener, http::Listener)>,
    state: Arc<http::State>,
}

impl Server {
    /// Reads the certificate and key, binds the listeners and starts the caches' watches with
    /// `client` (nothing is served until [`Server::serve`]).
    pub async fn bind(opts: &ServerOptions, client: cluster::Client) -> Result<Self, ServerError> {
        let acceptor = tls::acceptor(&opts.cert, &opts.key)?;
        let bind = |addr: SocketAddr, what: &'static str| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, what, source })
        };
        let mut listeners = Vec::new();
        let https = bind(opts.listen, "HTTPS").await?;
        let https_addr = local(&https, opts.listen);
        listeners.push((https, http::Listener::Tls(acceptor)));
        let mut insecure = None;
        if let Some(a) = opts.insecure_listen {
            let l = bind(a, "plain HTTP").await?;
            insecure = Some(local(&l, a));
            listeners.push((l, http::Listener::Plain));
        }
        let mut metrics = None;
        if let Some(a) = opts.metrics_address {
            let l = bind(a, "metrics").await?;
            metrics = Some(local(&l, a));
            listeners.push((l, http::Listener::Metrics));
        }
        let state = Arc::new(http::State::new(cache::Cache::start(client)));
        Ok(Server {
            https: https_addr,
            insecure,
            metrics,
            listeners,
            state,
        })
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        tracing::info!(https = %self.https, insecure = ?self.insecure, metrics = ?self.metrics, "machine config server listening");
        let mut tasks = tokio::task::JoinSet::new();
        for (listener, kind) in self.listeners {
            tasks.spawn(http::accept_loop(listener, kind, self.state.clone()));
        }
        let cache = self.state.cache.clone();
        tasks.spawn(async move {
            match cache.wait_ready().await {
                Ok(()) => tracing::info!("caches of pools and machine configs filled: serving"),
                Err(e) => tracing::error!(error = %e, "the caches stopped"),
            }
        });
        shutdown.await;
        tasks.abort_all();
        tracing::info!("machine config server stopped");
    }
}

fn local(l: &tokio::net::TcpListener, asked: SocketAddr) -> SocketAddr {
    l.local_addr().unwrap_or(asked)
}

/// Connects to the cluster, binds and serves until SIGTERM or SIGINT.
pub async fn run(opts: ServerOptions) -> Result<(), ServerError> {
    // The certificate is checked before the cluster is: a bad one fails at once.
    tls::acceptor(&opts.cert, &opts.key)?;
    let client = cluster::connect(opts.kubeconfig.as_deref()).await?;
    let server = Server::bind(&opts, client).await?;
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                    _ = int.recv() => tracing::info!("SIGINT: stopping"),
                }
            }
            _ => std::future::pending().await,
        }
    };
    server.serve(shutdown).await;
    Ok(())
}
