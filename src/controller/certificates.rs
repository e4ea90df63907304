//! The certificate controller (SPEC §12): watches the `ControllerConfig`
//! `machine-config-controller` (one watch, by name) and reports the certificates of its CA
//! bundles ([`super::certs`] parses them):
//!
//! - **`ControllerConfig` `status.controllerCertificates`** (bundleFile, signer, subject,
//!   notBefore, notAfter) and `status.observedGeneration`, written through the status
//!   subresource only when they differ from the stored ones (a JSON merge patch carrying
//!   `metadata.resourceVersion`: on a 409 the watch brings the newer object). Other status
//!   fields (upstream's conditions, say) are left as they are.
//! - **Each pool's `status.certExpirys`** (bundle, subject, expiry): not written here. The list
//!   is published on a `watch` channel to the pool reconciler ([`super::reconcile`]), the one
//!   writer of pool status, which writes it with the rest of the status when it changes. An
//!   absent `ControllerConfig` publishes an empty list (the field is removed); until the first
//!   list of the object is done (or while the controller may not read it), nothing is
//!   published and the pools keep what they have.
//! - **A certificate expired or expiring within 30 days**: a Warning event
//!   `CertificateExpiring` on the `ControllerConfig` (once per bundle, subject and `notAfter`;
//!   see [`super::certs::Warnings`]) and a sample of `mcc_certificate_expiry_seconds`
//!   ([`super::metrics`]). Nothing in the cluster changes when a certificate comes within 30
//!   days of its end, so the controller looks again at that moment (a timer to the next such
//!   moment, not polling).
//! - **A bundle that does not parse**: a Warning event `InvalidCertificateBundle` on the
//!   `ControllerConfig` naming the bundle and why (once per error), and a log line; its
//!   certificates are not listed, the other bundles' are. Chosen over a status condition:
//!   upstream's `ControllerConfig` conditions belong to upstream's template controller.
//!
//! Events of a cluster-scoped object go to the `default` namespace (`kubectl get events -n
//! default --field-selector involvedObject.kind=ControllerConfig`). Which warnings were raised
//! is kept in memory: a new leader raises each once more.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::ControllerError;
use super::certs::{CertExpiry, Warnings, certificate_report, next_warning_at};
use super::metrics::ControllerMetrics;
use super::reconcile::REPORTING_CONTROLLER;
use crate::cluster::controllerconfig::{CONTROLLER_CONFIG_NAME, ControllerConfig};
use crate::cluster::named::{ByVersion, NamedWatch, Seen};
use crate::cluster::retry::{is_code, with_retries};
use crate::cluster::{Client, ClusterError, Options};

/// How long after a failed status write the controller tries again (a change of the object
/// tries again sooner).
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// The certificate controller's state between passes.
struct CertificateController {
    api: Api<ControllerConfig>,
    client: Client,
    opts: Options,
    reporter: Reporter,
    publish: watch::Sender<Option<Vec<CertExpiry>>>,
    metrics: Option<Arc<ControllerMetrics>>,
    warnings: Warnings,
}

/// Runs the certificate controller until its watch ends. `publish` carries every pool's
/// `certExpirys` to the pool reconciler; `metrics`, when given, gets the certificates.
pub async fn run(
    client: Client,
    opts: Options,
    instance: &str,
    publish: watch::Sender<Option<Vec<CertExpiry>>>,
    metrics: Option<Arc<ControllerMetrics>>,
) -> Result<(), ControllerError> {
    let api: Api<ControllerConfig> = Api::all(client.clone());
    let what = format!("ControllerConfig {CONTROLLER_CONFIG_NAME}");
    let mut cc_watch = NamedWatch::new(api.clone(), CONTROLLER_CONFIG_NAME, &opts, &what, |o| {
        Some(ByVersion(o))
    });
    let mut controller = CertificateController {
        api,
        reporter: Reporter {
            controller: REPORTING_CONTROLLER.into(),
            instance: Some(instance.to_string()),
        },
        client,
        opts,
        publish,
        metrics,
        warnings: Warnings::default(),
    };
    let mut wake: Option<tokio::time::Instant> = None;
    tracing::info!("certificate controller started");
    loop {
        let timer = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = cc_watch.rx.changed() => if changed.is_err() {
                return Err(ControllerError::WatchEnded("controllerconfigs"));
            },
            _ = timer => {}
        }
        let current = match &*cc_watch.rx.borrow_and_update() {
            Seen::Pending => continue,
            Seen::Missing => None,
            Seen::Present(cc) => Some(cc.0.clone()),
        };
        let now = Timestamp::now();
        wake = controller.pass(current.as_ref(), now).await.map(|at| {
            let secs = (at.as_second() - now.as_second()).max(0) as u64;
            tokio::time::Instant::now() + std::time::Duration::from_secs(secs)
        });
    }
}

impl CertificateController {
    /// One pass over the object as the watch has it; the next moment to look again, if any
    /// (a certificate coming within 30 days of its end, or a failed status write's retry).
    async fn pass(&mut self, cc: Option<&ControllerConfig>, now: Timestamp) -> Option<Timestamp> {
        let Some(cc) = cc else {
            tracing::debug!("no ControllerConfig {CONTROLLER_CONFIG_NAME}: no certificates");
            self.publish_expirys(Vec::new());
            if let Some(m) = &self.metrics {
                m.set_certificates(&[]);
            }
            self.warnings = Warnings::default();
            return None;
        };
        let report = certificate_report(&cc.spec, now);
        for e in &report.errors {
            tracing::warn!(bundle = e.bundle(), error = %e, "CA bundle does not parse; its certificates are not listed");
        }
        if let Some(m) = &self.metrics {
            m.set_certificates(&report.certificates);
        }
        self.publish_expirys(report.cert_expirys.clone());
        for w in self.warnings.new_warnings(&report, now) {
            tracing::warn!(reason = w.reason, note = %w.note, "certificate warning");
            self.event(cc, w.reason, &w.note).await;
        }
        let generation = cc.metadata.generation.unwrap_or(0);
        let stored = cc.status.as_ref();
        let up_to_date = stored.is_some_and(|s| {
            s.observed_generation == generation
                && s.controller_certificates == report.controller_certificates
        });
        let next = next_warning_at(&report.certificates, now);
        if !up_to_date && let Err(e) = self.write_status(cc, generation, &report).await {
            tracing::warn!(error = %e, "cannot write the ControllerConfig status; retrying");
            let retry = Timestamp::from_second(now.as_second() + RETRY_AFTER.as_secs() as i64)
                .unwrap_or(now);
            return Some(next.map_or(retry, |n| n.min(retry)));
        }
        next
    }

    fn publish_expirys(&self, list: Vec<CertExpiry>) {
        self.publish.send_if_modified(|v| {
            if v.as_ref() == Some(&list) {
                false
            } else {
                *v = Some(list);
                true
            }
        });
    }

    async fn write_status(
        &self,
        cc: &ControllerConfig,
        generation: i64,
        report: &super::certs::CertificateReport,
    ) -> Result<(), ClusterError> {
        let certificates = if report.controller_certificates.is_empty() {
            Value::Null
        } else {
            serde_json::to_value(&report.controller_certificates).expect("certificates to JSON")
        };
        let body = json!({
            "metadata": {"resourceVersion": cc.metadata.resource_version},
            "status": {
                "observedGeneration": generation,
                "controllerCertificates": certificates,
            },
        });
        let params = PatchParams::default();
        let patch = Patch::Merge(&body);
        let what = format!("ControllerConfig {CONTROLLER_CONFIG_NAME}: write status");
        match with_retries(&self.opts, &what, || {
            self.api
                .patch_status(CONTROLLER_CONFIG_NAME, &params, &patch)
        })
        .await
        {
            Ok(_) => {
                tracing::info!(
                    generation,
                    certificates = report.controller_certificates.len(),
                    invalid_bundles = report.errors.len(),
                    "ControllerConfig status written"
                );
                Ok(())
            }
            Err(ClusterError::Api { source, .. }) if is_code(&source, 409) => {
                tracing::debug!("ControllerConfig changed meanwhile; the watch brings it");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn event(&self, cc: &ControllerConfig, reason: &str, note: &str) {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("machineconfiguration.openshift.io/v1".into()),
            kind: Some("ControllerConfig".into()),
            name: cc.metadata.name.clone(),
            uid: cc.metadata.uid.clone(),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "CheckCertificates".into(),
            secondary: None,
        };
        // A fresh recorder per event: each note names its own certificate or bundle.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(reason, error = %e, "event not published");
        }
    }
}
