//! The server's endpoints (see the module docs of [`super`]), its access log and its metrics.

use super::RETRY_AFTER_SECONDS;
use super::cache::{Answer, Cache, Lookup};
use super::ignition::{Accept, MEDIA_TYPE};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for a TLS handshake or a request's headers: a client that sends nothing does
/// not hold a connection for ever.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// What a listener serves.
pub enum Listener {
    /// `/config/`, `/healthz` over TLS.
    Tls(tokio_rustls::TlsAcceptor),
    /// `/config/`, `/healthz` over plain HTTP.
    Plain,
    /// `/metrics`, `/healthz` over plain HTTP.
    Metrics,
}

/// Shared by every connection.
pub struct State {
    pub cache: Cache,
    registry: Registry,
    served: Family<Vec<(String, String)>, Counter>,
}

impl State {
    pub fn new(cache: Cache) -> Self {
        let mut registry = Registry::default();
        let served = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "mcs_configs_served",
            "Ignition configs served to joining machines, by pool",
            served.clone(),
        );
        State {
            cache,
            registry,
            served,
        }
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// Accepts connections for ever, each served on its own task.
pub async fn accept_loop(listener: tokio::net::TcpListener, kind: Listener, state: Arc<State>) {
    let kind = Arc::new(kind);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let state = state.clone();
        let kind = kind.clone();
        tokio::spawn(async move {
            let metrics = matches!(*kind, Listener::Metrics);
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req, peer, metrics)) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(IDLE_LIMIT);
            let result = match &*kind {
                Listener::Tls(acceptor) => {
                    match tokio::time::timeout(IDLE_LIMIT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let io = hyper_util::rt::TokioIo::new(tls);
                            builder.serve_connection(io, service).await
                        }
                        Ok(Err(e)) => {
                            tracing::info!(client = %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(client = %peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                Listener::Plain | Listener::Metrics => {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    builder.serve_connection(io, service).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(client = %peer, error = %e, "connection ended with an error");
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Answers one request.
fn handle(
    state: &State,
    req: Request<Incoming>,
    peer: SocketAddr,
    metrics_listener: bool,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    let mut response = match path.as_str() {
        "/healthz" if state.cache.is_ready() => text(StatusCode::OK, "ok\n"),
        "/healthz" => with_retry_after(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the caches of pools and machine configs are being filled\n",
        )),
        "/metrics" if metrics_listener => {
            let mut r = text(StatusCode::OK, state.metrics());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        p if !metrics_listener && p.starts_with("/config/") => {
            let pool = &p["/config/".len()..];
            let accept = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            config(state, pool, Accept::parse(accept), peer)
        }
        _ => text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}\n")),
    };
    if head {
        *response.body_mut() = Full::new(Bytes::new());
    }
    response
}

fn with_retry_after(mut r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from(RETRY_AFTER_SECONDS),
    );
    r
}

/// `/config/<pool>`, logged.
fn config(state: &State, pool: &str, accept: Accept, peer: SocketAddr) -> Response<Full<Bytes>> {
    let asked = accept.describe();
    let lookup = if pool.is_empty() || pool.contains('/') {
        None
    } else {
        Some(state.cache.lookup(pool))
    };
    let (response, config, version) = match lookup {
        None => (
            text(
                StatusCode::NOT_FOUND,
                format!("no MachineConfigPool {pool:?}: the path is /config/<pool>\n"),
            ),
            None,
            None,
        ),
        Some(Lookup::Starting) => (
            with_retry_after(text(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting: the caches of pools and machine configs are being filled\n",
            )),
            None,
            None,
        ),
        Some(Lookup::NoPool) => (
            text(
                StatusCode::NOT_FOUND,
                format!(
                    "no MachineConfigPool {pool:?} (machineconfiguration.openshift.io/v1 machineconfigpools)\n"
                ),
            ),
            None,
            None,
        ),
        Some(Lookup::NoConfig) => (
            with_retry_after(text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("MachineConfigPool {pool:?} has no rendered config yet\n"),
            )),
            None,
            None,
        ),
        Some(Lookup::Missing(name)) => (
            with_retry_after(text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "MachineConfigPool {pool:?} names rendered config {name:?}, which is not available yet\n"
                ),
            )),
            Some(name),
            None,
        ),
        Some(Lookup::Invalid { config, error }) => {
            tracing::error!(pool, config = %config, %error, "the rendered config cannot be served");
            (
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "the rendered config {config:?} of MachineConfigPool {pool:?} cannot be served: {error}\n"
                    ),
                ),
                Some(config),
                None,
            )
        }
        Some(Lookup::Ready(served)) => match served.answer(&accept) {
            Answer::Config { version, body } => {
                let mut r = Response::new(Full::new(body));
                let ctype = format!("{MEDIA_TYPE};version={version}");
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_str(&ctype).expect("a valid header"),
                );
                r.headers_mut().insert(
                    hyper::header::VARY,
                    hyper::header::HeaderValue::from_static("Accept"),
                );
                state
                    .served
                    .get_or_create(&vec![("pool".to_string(), pool.to_string())])
                    .inc();
                (r, Some(served.name.clone()), Some(version))
            }
            Answer::NotAcceptable(body) => (
                text(StatusCode::NOT_ACCEPTABLE, body),
                Some(served.name.clone()),
                None,
            ),
        },
    };
    tracing::info!(
        target: "access",
        pool,
        client = %peer,
        ignition = %asked,
        status = response.status().as_u16(),
        config = config.as_deref().unwrap_or("-"),
        served = version.unwrap_or("-"),
        "GET /config/{pool} {}",
        response.status().as_u16()
    );
    response
}
