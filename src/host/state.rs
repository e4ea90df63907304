//! The daemon's state directory beneath the root and the stored current config
//! (`/etc/machine-config-daemon/currentconfig`, the whole MachineConfig as JSON).
//!
//! Until the model's Ignition emitter is merged, the config is stored with serde on the model
//! types; [`encode`] and [`decode`] are the one place to switch.

use super::HostError;
use super::root::{Entry, Root, Tree};
use crate::model::MachineConfig;

/// The state directory (inside the root).
pub const STATE_DIR: &str = "/etc/machine-config-daemon";
/// The stored current config.
pub const CURRENT_CONFIG: &str = "/etc/machine-config-daemon/currentconfig";
/// The update journal (present only while an update is in progress).
pub const JOURNAL: &str = "/etc/machine-config-daemon/journal";
/// Pre-images of the paths an update touches.
pub const STAGING: &str = "/etc/machine-config-daemon/staging";

/// Serialises a config for `currentconfig`.
pub fn encode(config: &MachineConfig) -> Vec<u8> {
    serde_json::to_vec(config).expect("config serialises")
}

/// Parses a stored `currentconfig`.
pub fn decode(data: &[u8]) -> Result<MachineConfig, HostError> {
    serde_json::from_slice(data).map_err(|e| HostError::State {
        path: CURRENT_CONFIG.to_string(),
        reason: format!("cannot parse the stored current config: {e}"),
    })
}

/// The stored current config and its bytes; `None` before the first apply.
pub fn read_current(root: &Root) -> Result<Option<(MachineConfig, Vec<u8>)>, HostError> {
    match root.read(CURRENT_CONFIG, Tree::Etc)? {
        Entry::Absent => Ok(None),
        Entry::File { data, .. } => Ok(Some((decode(&data)?, data))),
        _ => Err(HostError::State {
            path: CURRENT_CONFIG.to_string(),
            reason: "not a regular file".to_string(),
        }),
    }
}
