//! The node disruption policy (SPEC §3).
//!
//! This module owns the policy types in the API's own JSON shape and their error type. Its
//! submodules own the rest of the policy's life:
//! - [`parse`]: reading a `MachineConfiguration` document (JSON or YAML) into a [`MachineConfiguration`];
//! - [`validate`]: every rule of SPEC §3, reporting all violations at once with the field path;
//! - [`defaults`]: the cluster defaults and the merge of a user policy over them ([`effective`]).
//!
//! A [`Policy`] is plain data: it can be built in code (tests, the daemon) and checked with
//! [`Policy::validate`] (user-policy rules: `Special` refused, at most 50 entries) or
//! [`Policy::validate_status`] (effective-policy rules: `Special` allowed, no entry limit).

pub mod defaults;
pub mod parse;
pub mod validate;

pub use defaults::{defaults, effective};
pub use parse::{MachineConfiguration, parse_machine_configuration};

use serde::{Deserialize, Serialize};
use std::fmt;

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
    /// The API's `type` string of this action.
    pub fn type_name(&self) -> &'static str {
        match self {
            Action::Reboot => "Reboot",
            Action::None => "None",
            Action::Drain => "Drain",
            Action::Reload { .. } => "Reload",
            Action::Restart { .. } => "Restart",
            Action::DaemonReload => "DaemonReload",
            Action::Special => "Special",
        }
    }

    /// The service a `Reload` or `Restart` acts on.
    pub fn service(&self) -> Option<&str> {
        match self {
            Action::Reload { reload: s } | Action::Restart { restart: s } => Some(&s.service_name),
            _ => None,
        }
    }

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

impl fmt::Display for Action {
    /// Human form used in plans and messages: `Reload crio.service`, `DaemonReload`,
    /// `Special (reload crio.service)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Reload { reload: s } => write!(f, "Reload {}", s.service_name),
            Action::Restart { restart: s } => write!(f, "Restart {}", s.service_name),
            Action::Special => f.write_str("Special (reload crio.service)"),
            other => f.write_str(other.type_name()),
        }
    }
}

impl Policy {
    /// Checks the rules of SPEC §3 for a user policy (`spec.nodeDisruptionPolicy`): at most 50
    /// files and units, `Special` refused. `field_prefix` starts every error's field path, e.g.
    /// `spec.nodeDisruptionPolicy`. All violations are reported at once.
    pub fn validate(&self, field_prefix: &str) -> Result<(), PolicyErrors> {
        self.validate_with(field_prefix, validate::Rules::SPEC)
    }

    /// Checks the rules for an effective policy (the status shape): `Special` is allowed and the
    /// entry limit does not apply (defaults plus 50 user entries may exceed it).
    pub fn validate_status(&self, field_prefix: &str) -> Result<(), PolicyErrors> {
        self.validate_with(field_prefix, validate::Rules::STATUS)
    }

    fn validate_with(
        &self,
        field_prefix: &str,
        rules: validate::Rules,
    ) -> Result<(), PolicyErrors> {
        let value = validate::policy_to_value(self);
        let mut errors = Vec::new();
        validate::policy_from_value(&value, field_prefix, rules, &mut errors);
        PolicyErrors::result(errors)
    }
}

/// One violation: where the policy came from, the field path of the offending entry and what
/// is wrong with it. Displays as `origin: field: message`, leaving out what is unknown, e.g.
/// `/etc/machine-config-daemon/policy.yaml: spec.nodeDisruptionPolicy.files[0].path: "etc/x"
/// must be an absolute path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file (or object) the policy was read from; `None` for a policy that was not read
    /// from a document (validated in memory).
    pub origin: Option<String>,
    /// e.g. `spec.nodeDisruptionPolicy.files[2].actions[0]`; empty for errors about the whole
    /// document (unreadable YAML, not a mapping).
    pub field: String,
    /// e.g. `reload is required when type is Reload`.
    pub message: String,
}

impl PolicyError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        // A policy is input too: no more than about 200 characters of it in a message.
        let clip = crate::model::error::clip_input;
        PolicyError {
            origin: None,
            field: clip(&field.into()),
            message: clip(&message.into()),
        }
    }

    /// The same violation, attributed to `origin` (an empty origin names nothing).
    pub(crate) fn with_origin(mut self, origin: &str) -> Self {
        if !origin.is_empty() {
            self.origin = Some(origin.to_string());
        }
        self
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for PolicyError {}

/// All violations found in a policy, in document order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(Vec<PolicyError>);

impl PolicyErrors {
    /// The violations, in document order.
    pub fn errors(&self) -> &[PolicyError] {
        &self.0
    }

    /// `Ok(())` when `errors` is empty.
    pub(crate) fn result(errors: Vec<PolicyError>) -> Result<(), PolicyErrors> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PolicyErrors(errors))
        }
    }
}

impl fmt::Display for PolicyErrors {
    /// One violation per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
