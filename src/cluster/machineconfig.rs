//! Fetching one `MachineConfig` (`machineconfiguration.openshift.io/v1`, cluster-scoped) by name.
//!
//! The daemon only ever needs the config its node is told to run, so it GETs that one object
//! when `desiredConfig` changes; it never lists or watches MachineConfigs (at 5,000 nodes a
//! cluster-wide informer per node would multiply every config write by the node count).
//! The object is returned as JSON for the model parser.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

use super::retry::{is_code, with_retries};
use super::{Client, ClusterError, Options};

/// The `machineconfigs` resource.
pub fn machine_config_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("machineconfiguration.openshift.io", "v1", "MachineConfig"),
        "machineconfigs",
    )
}

/// GETs MachineConfig `name` and returns the whole object as JSON (apiVersion, kind, metadata,
/// spec). A missing object is [`ClusterError::MachineConfigNotFound`].
pub async fn fetch_machine_config(
    client: &Client,
    name: &str,
    opts: &Options,
) -> Result<serde_json::Value, ClusterError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &machine_config_resource());
    let what = format!("get MachineConfig {name}");
    match with_retries(opts, &what, || api.get(name)).await {
        Ok(obj) => {
            tracing::info!(config = name, "fetched MachineConfig");
            serde_json::to_value(&obj).map_err(|e| ClusterError::Invalid {
                what,
                detail: e.to_string(),
            })
        }
        Err(ClusterError::Api { source, .. }) if is_code(&source, 404) => {
            Err(ClusterError::MachineConfigNotFound {
                name: name.to_string(),
            })
        }
        Err(e) => Err(e),
    }
}

/// [`fetch_machine_config`] as JSON bytes, the input of `model::load::parse_machine_configs`.
pub async fn fetch_machine_config_bytes(
    client: &Client,
    name: &str,
    opts: &Options,
) -> Result<Vec<u8>, ClusterError> {
    let value = fetch_machine_config(client, name, opts).await?;
    serde_json::to_vec(&value).map_err(|e| ClusterError::Invalid {
        what: format!("MachineConfig {name}"),
        detail: e.to_string(),
    })
}
