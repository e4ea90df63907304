//! Kubernetes Events about this node (`events.k8s.io/v1`), reported by `machineconfigdaemon`.
//!
//! [`NodeEvents`] wraps kube-runtime's `Recorder` (which folds repeats of one event into a series,
//! PATCHing its count instead of creating a new object). The recorder keys a series on the reason
//! but not the note, so a repeat with a different note would show the first note; to keep notes
//! truthful we keep one recorder per (reason, note), a small bounded map.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::Mutex;

use super::retry::with_retries;
use super::{Client, ClusterError, Options};

/// `reportingController` of every event.
pub const REPORTING_CONTROLLER: &str = "machineconfigdaemon";

/// Most distinct (reason, note) series remembered before the map is reset.
const MAX_SERIES: usize = 64;

/// The reasons the daemon reports, named as upstream names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventReason {
    ConfigDriftDetected,
    /// Ours: a drifted path was rewritten from the current config (the `heal` drift action).
    ConfigDriftHealed,
    ConfigDriftMonitorStarted,
    ConfigDriftMonitorStopped,
    NodeDone,
    Reboot,
    SkipReboot,
    FailedServiceReload,
    FailedServiceRestart,
    FailedToDrain,
    FailedToUncordon,
    /// A ControllerConfig CA bundle that does not parse (not written).
    InvalidCertificateBundle,
    /// Ours: try mode's health checks confirmed the update on trial.
    TryModeConfirmed,
    /// Ours: try mode reverted the update on trial (the failing check and its output).
    TryModeReverted,
}

impl EventReason {
    /// The `reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::ConfigDriftDetected => "ConfigDriftDetected",
            EventReason::ConfigDriftHealed => "ConfigDriftHealed",
            EventReason::ConfigDriftMonitorStarted => "ConfigDriftMonitorStarted",
            EventReason::ConfigDriftMonitorStopped => "ConfigDriftMonitorStopped",
            EventReason::NodeDone => "NodeDone",
            EventReason::Reboot => "Reboot",
            EventReason::SkipReboot => "SkipReboot",
            EventReason::FailedServiceReload => "FailedServiceReload",
            EventReason::FailedServiceRestart => "FailedServiceRestart",
            EventReason::FailedToDrain => "FailedToDrain",
            EventReason::FailedToUncordon => "FailedToUncordon",
            EventReason::InvalidCertificateBundle => "InvalidCertificateBundle",
            EventReason::TryModeConfirmed => "TryModeConfirmed",
            EventReason::TryModeReverted => "TryModeReverted",
        }
    }

    /// `Warning` for failures and drift, `Normal` otherwise.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            EventReason::ConfigDriftDetected
                | EventReason::FailedServiceReload
                | EventReason::FailedServiceRestart
                | EventReason::FailedToDrain
                | EventReason::FailedToUncordon
                | EventReason::InvalidCertificateBundle
                | EventReason::TryModeReverted
        )
    }

    /// The `action` field: what the daemon was doing.
    pub fn action(self) -> &'static str {
        match self {
            EventReason::ConfigDriftDetected
            | EventReason::ConfigDriftHealed
            | EventReason::ConfigDriftMonitorStarted
            | EventReason::ConfigDriftMonitorStopped => "DriftMonitor",
            EventReason::NodeDone => "Update",
            EventReason::Reboot | EventReason::SkipReboot => "Reboot",
            EventReason::FailedServiceReload => "ReloadService",
            EventReason::FailedServiceRestart => "RestartService",
            EventReason::FailedToDrain => "Drain",
            EventReason::FailedToUncordon => "Uncordon",
            EventReason::InvalidCertificateBundle => "WriteCertificates",
            EventReason::TryModeConfirmed | EventReason::TryModeReverted => "TryMode",
        }
    }
}

/// Publishes events regarding one Node.
pub struct NodeEvents {
    client: Client,
    node: ObjectReference,
    opts: Options,
    recorders: Mutex<HashMap<(EventReason, String), Recorder>>,
}

impl NodeEvents {
    /// Events about node `node_name` (`node_uid` from the watched Node, so `kubectl describe
    /// node` finds them).
    pub fn new(client: Client, node_name: &str, node_uid: Option<&str>, opts: Options) -> Self {
        let node = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node_name.to_string()),
            uid: node_uid.map(str::to_string),
            ..Default::default()
        };
        NodeEvents {
            client,
            node,
            opts,
            recorders: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes `reason` with human text `note` (clipped to the API's 1 kB).
    pub async fn publish(&self, reason: EventReason, note: &str) -> Result<(), ClusterError> {
        let note = clip_bytes(note, 1024).to_string();
        let recorder = {
            let mut map = self.recorders.lock().await;
            if map.len() >= MAX_SERIES {
                map.clear();
            }
            map.entry((reason, note.clone()))
                .or_insert_with(|| {
                    let reporter = Reporter {
                        controller: REPORTING_CONTROLLER.into(),
                        instance: self.node.name.clone(),
                    };
                    Recorder::new(self.client.clone(), reporter)
                })
                .clone()
        };
        let event = Event {
            type_: if reason.is_warning() {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.as_str().into(),
            note: Some(note.clone()),
            action: reason.action().into(),
            secondary: None,
        };
        let what = format!("event {}", reason.as_str());
        with_retries(&self.opts, &what, || recorder.publish(&event, &self.node)).await?;
        tracing::info!(reason = reason.as_str(), note = %note, "event published");
        Ok(())
    }
}

fn clip_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
