//! This node's `MachineConfigNode` (`machineconfiguration.openshift.io/v1`, named after the
//! node): where the daemon reports the phases of an update as conditions (SPEC §8). The spec and
//! the conditions it sends are built from the types of [`super::crd`], the ones the packaged
//! CRD is generated from.
//!
//! [`MachineConfigNodes::ensure`] creates the object when missing (spec: node, pool, desired
//! config). Status changes are merge patches of the `status` subresource carrying the
//! resourceVersion of the copy we hold; a 409 re-reads and re-applies the change. A condition
//! keeps its `lastTransitionTime` while its status does not change, and an update that changes
//! nothing sends nothing.

use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::crd;
use super::retry::{is_code, with_retries};
use super::{Client, ClusterError, Options};

/// The `machineconfignodes` resource.
pub fn machine_config_node_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "machineconfiguration.openshift.io",
            "v1",
            "MachineConfigNode",
        ),
        "machineconfignodes",
    )
}

/// The condition types of an upstream v1 MachineConfigNode that this daemon writes (upstream
/// also has `PinnedImageSetsProgressing` and `PinnedImageSetsDegraded`, which it does not
/// produce; the v1alpha1 types `UpdateCompatible`, `UpdateFilesAndOS` and `ReloadedCRIO` are
/// gone from v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionType {
    Updated,
    UpdatePrepared,
    UpdateExecuted,
    UpdatePostActionComplete,
    UpdateComplete,
    Resumed,
    AppliedFilesAndOS,
    Drained,
    Cordoned,
    RebootedNode,
    Uncordoned,
    NodeDegraded,
}

impl ConditionType {
    /// Every type, in the order `oc get machineconfignodes -o wide` shows them.
    pub const ALL: [ConditionType; 12] = [
        ConditionType::Updated,
        ConditionType::UpdatePrepared,
        ConditionType::UpdateExecuted,
        ConditionType::UpdatePostActionComplete,
        ConditionType::UpdateComplete,
        ConditionType::Resumed,
        ConditionType::AppliedFilesAndOS,
        ConditionType::Cordoned,
        ConditionType::Drained,
        ConditionType::RebootedNode,
        ConditionType::Uncordoned,
        ConditionType::NodeDegraded,
    ];

    /// The type named `name`, if it is one of [`ConditionType::ALL`].
    pub fn parse(name: &str) -> Option<ConditionType> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Updated => "Updated",
            ConditionType::UpdatePrepared => "UpdatePrepared",
            ConditionType::UpdateExecuted => "UpdateExecuted",
            ConditionType::UpdatePostActionComplete => "UpdatePostActionComplete",
            ConditionType::UpdateComplete => "UpdateComplete",
            ConditionType::Resumed => "Resumed",
            ConditionType::AppliedFilesAndOS => "AppliedFilesAndOS",
            ConditionType::Drained => "Drained",
            ConditionType::Cordoned => "Cordoned",
            ConditionType::RebootedNode => "RebootedNode",
            ConditionType::Uncordoned => "Uncordoned",
            ConditionType::NodeDegraded => "NodeDegraded",
        }
    }
}

/// `True`, `False` or `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// One condition to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub type_: ConditionType,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

impl Condition {
    pub fn new(type_: ConditionType, status: ConditionStatus, reason: &str, message: &str) -> Self {
        Condition {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The daemon's handle on its MachineConfigNode.
pub struct MachineConfigNodes {
    api: Api<DynamicObject>,
    name: String,
    opts: Options,
    /// The object as of our last read or write.
    cached: Mutex<Option<DynamicObject>>,
}

impl MachineConfigNodes {
    pub fn new(client: Client, node_name: &str, opts: Options) -> Self {
        MachineConfigNodes {
            api: Api::all_with(client, &machine_config_node_resource()),
            name: node_name.to_string(),
            opts,
            cached: Mutex::new(None),
        }
    }

    /// Makes sure the object exists with spec `{node: {name}, pool: {name}, configVersion:
    /// {desired}}`: creates it when missing, updates the spec when pool or desired differ.
    /// Names upstream's schema would refuse (not DNS-1123 subdomains, empty) are refused here,
    /// before any request, as [`ClusterError::Invalid`].
    pub async fn ensure(&self, pool: &str, desired: &str) -> Result<(), ClusterError> {
        for (field, value) in [
            ("spec.node.name", self.name.as_str()),
            ("spec.pool.name", pool),
            ("spec.configVersion.desired", desired),
        ] {
            if !is_dns1123_subdomain(value) {
                return Err(ClusterError::Invalid {
                    what: format!("MachineConfigNode {}: {field}", self.name),
                    detail: format!(
                        "{value:?} is not a lowercase RFC 1123 subdomain (lowercase letters, \
                         digits, '-' and '.', starting and ending with a letter or digit, at \
                         most 253 characters)"
                    ),
                });
            }
        }
        let spec = serde_json::to_value(crd::MachineConfigNodeSpec {
            node: crd::MCOObjectReference {
                name: self.name.clone(),
            },
            pool: crd::MCOObjectReference {
                name: pool.to_string(),
            },
            config_version: crd::MachineConfigNodeSpecMachineConfigVersion {
                desired: desired.to_string(),
            },
        })
        .expect("spec to JSON");
        let what = format!("MachineConfigNode {}", self.name);
        let post = PostParams::default();
        let mut cached = self.cached.lock().await;
        for _ in 0..self.opts.conflict_attempts {
            let current = with_retries(&self.opts, &format!("get {what}"), || {
                self.api.get_opt(&self.name)
            })
            .await?;
            let result = match current {
                None => {
                    let mut obj = DynamicObject::new(&self.name, &machine_config_node_resource());
                    obj.data = json!({ "spec": spec });
                    let r = with_retries(&self.opts, &format!("create {what}"), || {
                        self.api.create(&post, &obj)
                    })
                    .await;
                    if r.is_ok() {
                        tracing::info!(mcn = %self.name, pool, desired, "MachineConfigNode created");
                    }
                    r
                }
                Some(obj) if obj.data.get("spec") == Some(&spec) => Ok(obj),
                Some(mut obj) => {
                    obj.data["spec"] = spec.clone();
                    let r = with_retries(&self.opts, &format!("update {what} spec"), || {
                        self.api.replace(&self.name, &post, &obj)
                    })
                    .await;
                    if r.is_ok() {
                        tracing::info!(mcn = %self.name, pool, desired, "MachineConfigNode spec updated");
                    }
                    r
                }
            };
            match result {
                Ok(obj) => {
                    *cached = Some(obj);
                    return Ok(());
                }
                Err(ClusterError::Api { source, .. }) if is_code(&source, 409) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ClusterError::Conflict {
            what,
            attempts: self.opts.conflict_attempts,
        })
    }

    /// Sets `conditions` (others are kept) in one status write.
    pub async fn set_conditions(&self, conditions: &[Condition]) -> Result<(), ClusterError> {
        let now = now_rfc3339();
        self.update_status(|status| merge_conditions(status, conditions, &now))
            .await
    }

    /// Sets `status.configVersion.desired` — call only once the update to `config` is validated.
    pub async fn set_validated_desired(&self, config: &str) -> Result<(), ClusterError> {
        self.set_config_version("desired", config).await
    }

    /// Sets `status.configVersion.current` (the node now runs `config`).
    pub async fn set_current(&self, config: &str) -> Result<(), ClusterError> {
        self.set_config_version("current", config).await
    }

    async fn set_config_version(&self, field: &str, config: &str) -> Result<(), ClusterError> {
        self.update_status(|status| {
            let cv = &mut status["configVersion"];
            if cv.get(field).and_then(Value::as_str) == Some(config) {
                return false;
            }
            if !cv.is_object() {
                *cv = json!({});
            }
            cv[field] = json!(config);
            true
        })
        .await
    }

    /// Applies `change` to the status (returns whether it changed anything) and writes it.
    async fn update_status(&self, change: impl Fn(&mut Value) -> bool) -> Result<(), ClusterError> {
        let what = format!("update MachineConfigNode {} status", self.name);
        let mut cached = self.cached.lock().await;
        for _ in 0..self.opts.conflict_attempts {
            let obj = match cached.take() {
                Some(o) => o,
                None => match with_retries(&self.opts, &what, || self.api.get(&self.name)).await {
                    Ok(o) => o,
                    Err(ClusterError::Api { source, .. }) if is_code(&source, 404) => {
                        return Err(ClusterError::Invalid {
                            what,
                            detail: "the object does not exist; call ensure() first".into(),
                        });
                    }
                    Err(e) => return Err(e),
                },
            };
            let mut status = obj.data.get("status").cloned().unwrap_or_else(|| json!({}));
            if !status.is_object() {
                status = json!({});
            }
            if !change(&mut status) {
                *cached = Some(obj);
                return Ok(());
            }
            let body = json!({
                "metadata": {"resourceVersion": obj.metadata.resource_version},
                "status": status,
            });
            let params = PatchParams::default();
            let patch = Patch::Merge(&body);
            let result = with_retries(&self.opts, &what, || {
                self.api.patch_status(&self.name, &params, &patch)
            })
            .await;
            match result {
                Ok(updated) => {
                    tracing::debug!(mcn = %self.name, status = %body["status"], "MachineConfigNode status written");
                    *cached = Some(updated);
                    return Ok(());
                }
                Err(ClusterError::Api { source, .. }) if is_code(&source, 409) => {
                    tracing::debug!(mcn = %self.name, "status write conflicted, re-reading");
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClusterError::Conflict {
            what,
            attempts: self.opts.conflict_attempts,
        })
    }
}

/// Merges `new` into `status.conditions`; true when anything changed.
fn merge_conditions(status: &mut Value, new: &[Condition], now: &str) -> bool {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let list = status["conditions"].as_array_mut().expect("array");
    let mut changed = false;
    for c in new {
        let mut entry = serde_json::to_value(crd::Condition {
            type_: c.type_.as_str().to_string(),
            status: match c.status {
                ConditionStatus::True => crd::ConditionStatus::True,
                ConditionStatus::False => crd::ConditionStatus::False,
                ConditionStatus::Unknown => crd::ConditionStatus::Unknown,
            },
            last_transition_time: now.to_string(),
            reason: c.reason.clone(),
            message: clip_message(&c.message).to_string(),
            observed_generation: None,
        })
        .expect("condition to JSON");
        // Compared without its time, which is set below.
        entry
            .as_object_mut()
            .expect("object")
            .remove("lastTransitionTime");
        match list
            .iter_mut()
            .find(|e| e.get("type").and_then(Value::as_str) == Some(c.type_.as_str()))
        {
            Some(existing) => {
                let same_status = existing.get("status") == entry.get("status");
                let same_text = existing.get("reason") == entry.get("reason")
                    && existing.get("message") == entry.get("message");
                if same_status && same_text {
                    continue;
                }
                let time = if same_status {
                    existing
                        .get("lastTransitionTime")
                        .cloned()
                        .unwrap_or_else(|| json!(now))
                } else {
                    json!(now)
                };
                let mut entry = entry;
                entry["lastTransitionTime"] = time;
                *existing = entry;
            }
            None => {
                let mut entry = entry;
                entry["lastTransitionTime"] = json!(now);
                list.push(entry);
            }
        }
        changed = true;
    }
    changed
}

/// Whether `s` is a lowercase RFC 1123 subdomain, as upstream's schema requires of the names in
/// a MachineConfigNode: dot-separated labels of lowercase letters, digits and `-`, each starting
/// and ending with a letter or digit, at most 253 characters in all.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            label.starts_with(alnum)
                && label.ends_with(alnum)
                && label.chars().all(|c| alnum(c) || c == '-')
        })
}

/// Upstream's limit on a condition message, in characters.
const MESSAGE_MAX: usize = 32768;

/// The message cut to [`MESSAGE_MAX`] characters (an error text can be longer: the schema
/// would refuse the whole status write).
fn clip_message(m: &str) -> &str {
    match m.char_indices().nth(MESSAGE_MAX) {
        Some((i, _)) => &m[..i],
        None => m,
    }
}

fn now_rfc3339() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_subdomains() {
        for ok in ["rendered-worker-1", "a", "a.b-c.d9", "0x"] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        let long = "a".repeat(254);
        for bad in [
            "", "Bad_Name", "-a", "a-", "a..b", ".a", "a.", "a_b", "UPPER", &long,
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn messages_are_clipped_to_upstreams_limit() {
        let long = "é".repeat(MESSAGE_MAX + 5);
        assert_eq!(clip_message(&long).chars().count(), MESSAGE_MAX);
        assert_eq!(clip_message("short"), "short");
    }
}
