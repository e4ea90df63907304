//! The controller's metrics (`controller --metrics-address`, default `0.0.0.0:9001`; `none`
//! turns the endpoint off): `/metrics` in the OpenMetrics text format and `/healthz`, over
//! plain HTTP.
//!
//! - `mcc_certificate_expiry_seconds{bundle, subject}` (gauge): for each certificate of the
//!   `ControllerConfig`'s CA bundles that is expired or expires within 30 days, the seconds
//!   until its `notAfter` (negative once expired). The value is computed at each scrape from
//!   the `notAfter` the certificate controller last read, so it is never stale; a certificate
//!   further than 30 days from its expiry has no sample. Two certificates with the same bundle
//!   and subject (an old and a renewed signer in one bundle) give one sample, the one that
//!   expires first.
//!
//! Only the leader reads the `ControllerConfig`: a standby's endpoint answers with no sample.
//! The metrics hold certificate subjects and dates, nothing secret.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::certs::{CertificateInfo, EXPIRY_WARNING_SECONDS};

/// The name of the certificate expiry gauge.
pub const CERTIFICATE_EXPIRY: &str = "mcc_certificate_expiry_seconds";

/// The controller's metrics registry.
#[derive(Debug)]
pub struct ControllerMetrics {
    registry: Registry,
    certificates: Arc<CertificateExpiry>,
    /// One scrape at a time (the scrape time is the collector's).
    scrape: Mutex<()>,
}

/// The certificates' `notAfter` (UTC seconds) by (bundle, subject), read at scrape time.
#[derive(Debug, Default)]
struct CertificateExpiry {
    not_after: Mutex<BTreeMap<(String, String), i64>>,
    /// The time of the scrape being encoded (UTC seconds).
    scrape_time: Mutex<i64>,
}

impl Collector for CertificateExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = *self.scrape_time.lock().unwrap_or_else(|e| e.into_inner());
        let samples: Vec<((String, String), i64)> = self
            .not_after
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, t)| (k.clone(), t - now))
            .filter(|(_, left)| *left <= EXPIRY_WARNING_SECONDS)
            .collect();
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            CERTIFICATE_EXPIRY,
            "Seconds until the notAfter of a ControllerConfig CA certificate that is expired or expires within 30 days (negative once expired)",
            None,
            gauge.metric_type(),
        )?;
        for ((bundle, subject), left) in samples {
            let labels = [("bundle", bundle), ("subject", subject)];
            ConstGauge::new(left).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let certificates = Arc::new(CertificateExpiry::default());
        registry.register_collector(Box::new(certificates.clone()));
        ControllerMetrics {
            registry,
            certificates,
            scrape: Mutex::new(()),
        }
    }
}

impl ControllerMetrics {
    /// The certificates the gauge reports from now on (all of them: the 30 days are applied at
    /// each scrape).
    pub fn set_certificates(&self, certs: &[CertificateInfo]) {
        let mut map: BTreeMap<(String, String), i64> = BTreeMap::new();
        for c in certs {
            let t = c.not_after.as_second();
            map.entry((c.bundle_file.clone(), c.subject.clone()))
                .and_modify(|v| *v = (*v).min(t))
                .or_insert(t);
        }
        *self
            .certificates
            .not_after
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = map;
    }

    /// The text exposition format, now.
    pub fn render(&self) -> String {
        self.render_at(Timestamp::now())
    }

    /// The text exposition format as a scrape at `now` sees it.
    pub fn render_at(&self, now: Timestamp) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        *self
            .certificates
            .scrape_time
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = now.as_second();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until the task is dropped (the daemon's
/// endpoint, with the controller's metrics).
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<ControllerMetrics>) {
    crate::daemon::metrics::serve_rendered(listener, move || metrics.render()).await
}
