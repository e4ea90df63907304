//! The daemon's state directory beneath the root (`/etc/machine-config-daemon` unless
//! [`Root::with_state_dir`] says otherwise) and the stored current config (`currentconfig`
//! there, the whole MachineConfig as JSON).
//!
//! The file is a real MachineConfig (the model's emitter writes it, its loader reads it back).

use super::HostError;
use super::root::{Entry, Root, Tree};
use crate::model::MachineConfig;

/// The default state directory (inside the root).
pub const STATE_DIR: &str = "/etc/machine-config-daemon";
/// The stored current config, in the state directory.
pub const CURRENT_CONFIG: &str = "currentconfig";
/// The update journal (present only while an update is in progress), in the state directory.
pub const JOURNAL: &str = "journal";
/// Pre-images of the paths an update touches, in the state directory.
pub const STAGING: &str = "staging";

/// Serialises a config for `currentconfig` (the MachineConfig API object as JSON).
pub fn encode(config: &MachineConfig) -> Vec<u8> {
    // Sized up front (contents base64-encoded, plus room for each file's JSON), so that a large
    // config is not copied over and over as the buffer grows.
    let files: usize = config
        .spec
        .config
        .files
        .iter()
        .map(|f| f.path.len() + f.contents.as_ref().map_or(0, |c| c.len().div_ceil(3) * 4) + 256)
        .sum();
    let mut v = crate::model::ignition::machine_config_json_bytes(config, files + 64 * 1024);
    v.push(b'\n');
    v
}

/// [`encode`], streamed to `w` (no copy of the whole document in memory).
pub fn write_encoded(config: &MachineConfig, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    crate::model::ignition::write_machine_config_json(config, w)?;
    w.write_all(b"\n")
}

/// Parses a stored `currentconfig`.
pub fn decode(data: &[u8]) -> Result<MachineConfig, HostError> {
    let bad = |reason: String| HostError::State {
        path: CURRENT_CONFIG.to_string(),
        reason: format!("cannot parse the stored current config: {reason}"),
    };
    // Written by the daemon from a config that passed the limits it was given then: not
    // bounded again (a config applied with raised limits must still be readable).
    let budget = crate::model::load::Budget::new(crate::model::load::Limits::unbounded());
    let loaded = crate::model::load::parse_machine_configs_with(data, CURRENT_CONFIG, &budget)
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
    match root.read(&root.state_path(CURRENT_CONFIG), Tree::Etc)? {
        Entry::Absent => Ok(None),
        Entry::File { data, .. } => Ok(Some((decode(&data)?, data))),
        _ => Err(HostError::State {
            path: root.state_path(CURRENT_CONFIG),
            reason: "not a regular file".to_string(),
        }),
    }
}
