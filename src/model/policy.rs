//! The node disruption policy (SPEC §3): types in the API's own JSON shape.
//!
//! Parsing, validation, the cluster defaults and the merge live next to these types (see the
//! functions below the types).

use serde::{Deserialize, Serialize};

/// One action of a policy entry, serialised exactly as the API writes it:
/// `{"type":"Reload","reload":{"serviceName":"crio.service"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Action {
    /// Drain and reboot the node.
    Reboot,
    /// Write the change, nothing else.
    None,
    /// Cordon and drain before the change, uncordon after.
    Drain,
    /// Reload a service.
    Reload { reload: ServiceRef },
    /// Restart a service.
    Restart { restart: ServiceRef },
    /// systemd manager reload.
    DaemonReload,
    /// Internal (status only): `/etc/containers/registries.conf` analysis.
    Special,
}

/// `{"serviceName": "crio.service"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceRef {
    #[serde(rename = "serviceName")]
    pub service_name: String,
}

impl Action {
    /// A `Reload` of `service`.
    pub fn reload(service: &str) -> Self {
        Action::Reload {
            reload: ServiceRef {
                service_name: service.to_string(),
            },
        }
    }
    /// A `Restart` of `service`.
    pub fn restart(service: &str) -> Self {
        Action::Restart {
            restart: ServiceRef {
                service_name: service.to_string(),
            },
        }
    }
}

/// `files[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePolicy {
    pub path: String,
    pub actions: Vec<Action>,
}

/// `units[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitPolicy {
    pub name: String,
    pub actions: Vec<Action>,
}

/// `sshkey`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SshKeyPolicy {
    pub actions: Vec<Action>,
}

/// A node disruption policy, in the shape of `status.nodeDisruptionPolicyStatus.clusterPolicies`
/// (and, once validated, of `spec.nodeDisruptionPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Policy {
    #[serde(default)]
    pub files: Vec<FilePolicy>,
    #[serde(default)]
    pub units: Vec<UnitPolicy>,
    #[serde(default)]
    pub sshkey: SshKeyPolicy,
}
