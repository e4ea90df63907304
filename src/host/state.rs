//! The daemon's state directory beneath the root and the stored current config
//! (`/etc/machine-config-daemon/currentconfig`, the whole MachineConfig as JSON).
//!
//! The file is a real MachineConfig (the model's emitter writes it, its loader reads it back).

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

/// Serialises a config for `currentconfig` (the MachineConfig API object as JSON).
pub fn encode(config: &MachineConfig) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(&crate::model::machine_config_to_json(config))
        .expect("config serialises");
    v.push(b'\n');
    v
}

/// Parses a stored `currentconfig`.
pub fn decode(data: &[u8]) -> Result<MachineConfig, HostError> {
    let bad = |reason: String| HostError::State {
        path: CURRENT_CONFIG.to_string(),
        reason: format!("cannot parse the stored current config: {reason}"),
    };
    let loaded = crate::model::parse_machine_configs(data, CURRENT_CONFIG)
        .map_err(|e| bad(e.to_string()))?;
    let mut configs = loaded.configs;
    if configs.len() != 1 {
        return Err(bad(format!(
            "{} MachineConfigs instead of one",
            configs.len()
        )));
    }
    Ok(configs.remove(0))
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
