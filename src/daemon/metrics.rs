//! Prometheus metrics (SPEC §8) and the small HTTP endpoint that serves them.
//!
//! Names follow the upstream daemon so dashboards carry over: `mcd_state`, `mcd_update_state`,
//! `mcd_config_drift`, `mcd_reboots_failed_total`, `mcd_host_os_and_version`; ours adds
//! `mcd_state_transitions_total`, the durations of updates and drift checks as histograms, and
//! for the drift rules of the daemon configuration `mcd_drift_total{action}` (drifted paths
//! found, by the action their rule chose: `degrade`, `report`, `heal`) and
//! `mcd_drift_heals_total{result}` (heals: `healed`, or why not: `refused` by the node
//! disruption policy, `exhausted` budget, `failed`).
//! `mcd_state_transitions_total`, `mcd_reboots_total{kind="soft"|"full"}` (reboots the daemon
//! asked for and saw happen, counted by the process that starts after them) and the durations
//! of updates and drift checks as histograms.
//! Try mode adds `mcd_try_reverts_total` and `mcd_try_confirmations_total`.
//! The endpoint serves `/metrics` and `/healthz` on 127.0.0.1:8797 by default (loopback only).

use super::state::NodeState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    state: Family<Labels, Gauge>,
    transitions: Family<Labels, Counter>,
    update_state: Family<Labels, Gauge>,
    config_drift: Gauge<f64, AtomicU64>,
    drift_total: Family<Labels, Counter>,
    drift_heals: Family<Labels, Counter>,
    reboots_failed: Counter,
    reboots: Family<Labels, Counter>,
    update_seconds: Histogram,
    drift_check_seconds: Histogram,
    try_reverts: Counter,
    try_confirmed: Counter,
}

fn unix_now(now: SystemTime) -> f64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Metrics {
    /// Registers every metric; `os` and `version` come from the root's `/etc/os-release`.
    pub fn new(os: &str, version: &str, backend: &str) -> Self {
        let mut registry = Registry::default();
        let state = Family::<Labels, Gauge>::default();
        registry.register(
            "mcd_state",
            "Node state: 1 for the current state, 0 for the others",
            state.clone(),
        );
        let transitions = Family::<Labels, Counter>::default();
        registry.register(
            "mcd_state_transitions",
            "State transitions, by source and target state",
            transitions.clone(),
        );
        let update_state = Family::<Labels, Gauge>::default();
        registry.register(
            "mcd_update_state",
            "Unix time the last update ended, by config and error (empty on success)",
            update_state.clone(),
        );
        let config_drift = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "mcd_config_drift",
            "Unix time configuration drift was last detected (0: never)",
            config_drift.clone(),
        );
        let drift_total = Family::<Labels, Counter>::default();
        registry.register(
            "mcd_drift",
            "Drifted paths found, by the drift action their rule chose (degrade, report, heal)",
            drift_total.clone(),
        );
        let drift_heals = Family::<Labels, Counter>::default();
        registry.register(
            "mcd_drift_heals",
            "Drift heals, by result (healed, refused, exhausted, failed)",
            drift_heals.clone(),
        );
        for a in crate::daemon::drift::DriftAction::ALL {
            let _ = drift_total.get_or_create(&labels(&[("action", a.as_str())]));
        }
        let reboots_failed = Counter::default();
        registry.register(
            "mcd_reboots_failed",
            "Reboots that failed to start",
            reboots_failed.clone(),
        );
        let reboots = Family::<Labels, Counter>::default();
        registry.register(
            "mcd_reboots",
            "Reboots the daemon asked for and saw happen, by kind (soft: userspace only)",
            reboots.clone(),
        );
        for kind in ["soft", "full"] {
            drop(reboots.get_or_create(&labels(&[("kind", kind)])));
        }
        let host = Family::<Labels, Gauge>::default();
        registry.register(
            "mcd_host_os_and_version",
            "The host's operating system and version",
            host.clone(),
        );
        host.get_or_create(&labels(&[
            ("os", os),
            ("version", version),
            ("backend", backend),
        ]))
        .set(1);
        let update_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        registry.register(
            "mcd_update_duration_seconds",
            "Duration of updates, from Working to the end of the file and service steps",
            update_seconds.clone(),
        );
        let drift_check_seconds = Histogram::new(exponential_buckets(0.00001, 2.0, 20));
        registry.register(
            "mcd_drift_check_duration_seconds",
            "Duration of one drift check of the paths an inotify batch concerned",
            drift_check_seconds.clone(),
        );
        let try_reverts = Counter::default();
        registry.register(
            "mcd_try_reverts",
            "Updates on trial (try mode) reverted because the health checks did not pass in time",
            try_reverts.clone(),
        );
        let try_confirmed = Counter::default();
        registry.register(
            "mcd_try_confirmations",
            "Updates on trial (try mode) confirmed by the health checks",
            try_confirmed.clone(),
        );
        let m = Metrics {
            try_reverts,
            try_confirmed,
            registry,
            state,
            transitions,
            update_state,
            config_drift,
            drift_total,
            drift_heals,
            reboots_failed,
            reboots,
            update_seconds,
            drift_check_seconds,
        };
        m.set_state(None, NodeState::Done);
        m
    }

    /// Records a state change.
    pub fn set_state(&self, from: Option<NodeState>, to: NodeState) {
        for s in NodeState::ALL {
            self.state
                .get_or_create(&labels(&[("state", s.as_str())]))
                .set(i64::from(s == to));
        }
        if let Some(from) = from {
            self.transitions
                .get_or_create(&labels(&[("from", from.as_str()), ("to", to.as_str())]))
                .inc();
        }
    }

    /// Records the end of an update of `config`; `error` is empty on success.
    pub fn update_done(&self, config: &str, error: &str, took: Duration, now: SystemTime) {
        self.update_ended(config, error, now);
        self.update_seconds.observe(took.as_secs_f64());
    }

    /// `mcd_update_state` alone: an update that needed a reboot ends after it, when the disk
    /// has been validated (`error`: the first mismatch, empty when it matched); its duration
    /// was recorded before the reboot.
    pub fn update_ended(&self, config: &str, error: &str, now: SystemTime) {
        self.update_state.clear();
        self.update_state
            .get_or_create(&labels(&[("config", config), ("err", error)]))
            .set(unix_now(now) as i64);
    }

    /// Records a detected drift.
    pub fn drift_detected(&self, now: SystemTime) {
        self.config_drift.set(unix_now(now));
    }

    /// Counts a drifted path found, by the action its rule chose.
    pub fn drift_action(&self, action: crate::daemon::drift::DriftAction) {
        self.drift_total
            .get_or_create(&labels(&[("action", action.as_str())]))
            .inc();
    }

    /// Counts a heal attempt by its result (`healed`, `refused`, `exhausted`, `failed`).
    pub fn drift_heal(&self, result: &str) {
        self.drift_heals
            .get_or_create(&labels(&[("result", result)]))
            .inc();
    }

    /// Records a drift check's duration.
    pub fn drift_checked(&self, took: Duration) {
        self.drift_check_seconds.observe(took.as_secs_f64());
    }

    /// Records a reboot the daemon asked for that has happened.
    pub fn rebooted(&self, kind: crate::plan::ladder::RebootKind) {
        self.reboots
            .get_or_create(&labels(&[("kind", kind.as_str())]))
            .inc();
    }

    /// Counts an update on trial reverted (try mode).
    pub fn try_reverted(&self) {
        self.try_reverts.inc();
    }

    /// Counts an update on trial confirmed (try mode).
    pub fn try_confirmed(&self) {
        self.try_confirmed.inc();
    }

    /// Records a reboot that could not be started.
    pub fn reboot_failed(&self) {
        self.reboots_failed.inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Reads `ID` and `VERSION_ID` from an os-release file (`unknown` when absent).
pub fn os_release(path: &std::path::Path) -> (String, String) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| "unknown".to_string())
    };
    (field("ID"), field("VERSION_ID"))
}

/// Serves `/metrics` and `/healthz` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    serve_rendered(listener, move || metrics.render()).await
}

/// Serves `/metrics` (the text `render` gives at each scrape, OpenMetrics) and `/healthz` on
/// `listener` until the task is dropped: the daemon's and the controller's endpoint.
pub async fn serve_rendered(
    listener: tokio::net::TcpListener,
    render: impl Fn() -> String + Send + Sync + 'static,
) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};
    let render = Arc::new(render);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let render = render.clone();
                    async move {
                        let (status, ctype, body) = match req.uri().path() {
                            "/metrics" => (
                                StatusCode::OK,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                render(),
                            ),
                            "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
                            _ => (
                                StatusCode::NOT_FOUND,
                                "text/plain",
                                "not found\n".to_string(),
                            ),
                        };
                        Response::builder()
                            .status(status)
                            .header("content-type", ctype)
                            .body(Full::new(Bytes::from(body)))
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
