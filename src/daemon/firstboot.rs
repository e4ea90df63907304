//! First boot in cluster mode: a machine provisioned by the machine config server (see
//! `crate::server`) starts with the served config already on disk, written by Ignition, and
//! with two files the server added to it:
//!
//! - `/etc/machine-config-daemon/node-annotations.json` ([`NODE_ANNOTATIONS_FILE`]): the
//!   `currentConfig` / `desiredConfig` / `state` annotations naming the served rendered config;
//! - `/etc/mcs-machine-config-content.json` ([`CONTENT_FILE`]): that whole MachineConfig,
//!   `kernelArguments`, `kernelType`, `extensions`, `fips` and `osImageURL` included.
//!
//! When the daemon's Node has no `currentConfig` annotation yet and the annotations file exists
//! (and the node has no stored current config, or the stored one is that same config: a start
//! interrupted after storing it), the daemon takes the named config as its current config
//! without applying anything: from the content file when it holds the config of that name, else
//! fetched from the API server by name. It stores it as `currentconfig` and sets the Node's
//! `currentConfig` (and `desiredConfig`, when the node has none). The start then goes on as
//! after a reboot: the disk is validated against that config, so the node becomes `Done` when
//! every file matches, or `Degraded` with the first mismatch as its reason. The `state`
//! annotation is written from that validation, not copied from the file (the file's `Done` is
//! what the server hoped for, not what the disk shows).
//!
//! Not done here: the OS half of the config (kernel arguments, kernel type, extensions, OS
//! image). Upstream applies it with a first-boot service and a reboot before the kubelet starts;
//! here the current config's kernel arguments are checked against `/proc/cmdline` like after
//! any reboot, and a node that did not boot with them is `Degraded` until an administrator
//! deals with it.

use crate::cluster::node::{CURRENT_CONFIG, DESIRED_CONFIG};
use crate::host::root::{Entry, Tree};
use crate::host::{HostError, Root};
use crate::model::MachineConfig;

/// The annotations file the server adds to served configs.
pub const NODE_ANNOTATIONS_FILE: &str = crate::server::ignition::NODE_ANNOTATIONS_FILE;
/// The served MachineConfig, as the server adds it to served configs.
pub const CONTENT_FILE: &str = crate::server::ignition::CONTENT_FILE;

/// Why the first-boot files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FirstBootError {
    #[error("{0}")]
    Host(#[from] HostError),
    #[error("{path}: {reason}")]
    Invalid { path: &'static str, reason: String },
}

/// The config `currentConfig` of the annotations file names; None when there is no such file.
pub fn initial_config(root: &Root) -> Result<Option<String>, FirstBootError> {
    let Some(data) = read(root, NODE_ANNOTATIONS_FILE)? else {
        return Ok(None);
    };
    let invalid = |reason: String| FirstBootError::Invalid {
        path: NODE_ANNOTATIONS_FILE,
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let name = v[CURRENT_CONFIG]
        .as_str()
        .or(v[DESIRED_CONFIG].as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(format!("no {CURRENT_CONFIG:?}")))?;
    Ok(Some(name.to_string()))
}

/// The MachineConfig of the content file when it is config `name`; None when the file is
/// absent or holds another config.
pub fn content(root: &Root, name: &str) -> Result<Option<MachineConfig>, FirstBootError> {
    let Some(data) = read(root, CONTENT_FILE)? else {
        return Ok(None);
    };
    let mut loaded = crate::model::parse_machine_configs(&data, CONTENT_FILE).map_err(|e| {
        FirstBootError::Invalid {
            path: CONTENT_FILE,
            reason: e.to_string(),
        }
    })?;
    if loaded.configs.len() != 1 {
        return Err(FirstBootError::Invalid {
            path: CONTENT_FILE,
            reason: format!("{} MachineConfigs instead of one", loaded.configs.len()),
        });
    }
    let mc = loaded.configs.remove(0);
    Ok((mc.name == name).then_some(mc))
}

fn read(root: &Root, path: &str) -> Result<Option<Vec<u8>>, FirstBootError> {
    match root.read(path, Tree::Etc)? {
        Entry::Absent => Ok(None),
        Entry::File { data, .. } => Ok(Some(data)),
        _ => Err(FirstBootError::Invalid {
            path: if path == CONTENT_FILE {
                CONTENT_FILE
            } else {
                NODE_ANNOTATIONS_FILE
            },
            reason: "not a regular file".into(),
        }),
    }
}
