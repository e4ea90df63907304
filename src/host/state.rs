//! The daemon's state directory beneath the root (`/etc/machine-config-daemon` unless
//! [`Root::with_state_dir`] says otherwise) and the stored current config (`currentconfig`
//! there, the whole MachineConfig as JSON).
//!
//! The file is a real MachineConfig (the model's emitter writes it, its loader reads it back).

use super::HostError;
use super::root::{Root, Tree};
use crate::model::MachineConfig;

/// The default state directory (inside the root).
pub const STATE_DIR: &str = "/etc/machine-config-daemon";
/// The stored current config, in the state directory.
pub const CURRENT_CONFIG: &str = "currentconfig";
/// The update journal (present only while an update is in progress), in the state directory.
pub const JOURNAL: &str = "journal";
/// Pre-images of the paths an update touches, in the state directory.
pub const STAGING: &str = "staging";

/// Where the new config of an update spools its files' contents ([`crate::model::Spool`]): the
/// state directory beneath `root` when it exists, else its nearest existing parent (a first
/// apply creates the state directory only inside its transaction). The spool is an unnamed
/// file on the node's own disk, like the stored config. `None` when not even the root is a
/// directory (the update will say so).
pub fn spool_dir(root: &std::path::Path, state_dir: &str) -> Option<std::path::PathBuf> {
    let dir = root.join(state_dir.trim_start_matches('/'));
    dir.ancestors()
        .take_while(|d| d.starts_with(root))
        .find(|d| d.is_dir())
        .map(std::path::Path::to_path_buf)
}

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

/// The SHA-256 digest of a stored config's bytes.
pub type Digest = [u8; 32];

/// The stored current config and the digest of its bytes; `None` before the first apply.
///
/// The file is streamed through a small buffer and hashed on the way, so that neither its text
/// nor a JSON tree of it is held whole, only the config itself (read whole and parsed the
/// general way only if the streamed road gives up on it, see [`crate::model::load`]).
pub fn read_current(root: &Root) -> Result<Option<(MachineConfig, Digest)>, HostError> {
    read_stored(root, &root.state_path(CURRENT_CONFIG), false)
}

/// The paths whose old contents an update's decisions read, kept whole by
/// [`read_current_thin`]: the registries configuration (its entries are compared to decide
/// whether a drain is needed).
pub const KEPT_WHOLE: &[&str] = &[crate::plan::actions::REGISTRIES_CONF];

/// [`read_current`] for an update, which only compares the stored config with the new one:
/// every file but those in [`KEPT_WHOLE`] is read thin ([`crate::model::File::thin`]), its
/// contents replaced by their digest as they are decoded, so the two configs' contents are
/// never held together. The result must not be stored, written or emitted.
pub fn read_current_thin(root: &Root) -> Result<Option<(MachineConfig, Digest)>, HostError> {
    read_stored(root, &root.state_path(CURRENT_CONFIG), true)
}

/// A config the daemon stored at `path` (absolute, in the state directory), read whole or thin;
/// `None` when there is no file.
pub(crate) fn read_stored(
    root: &Root,
    path: &str,
    thin: bool,
) -> Result<Option<(MachineConfig, Digest)>, HostError> {
    use sha2::Digest as _;
    use std::io::{Read as _, Seek as _};
    let path = path.to_string();
    let Some(mut file) = root.open_file(&path, Tree::Etc)? else {
        return Ok(None);
    };
    let io = |e: std::io::Error| HostError::State {
        path: path.clone(),
        reason: format!("cannot read: {e}"),
    };
    let mut budget = crate::model::load::Budget::new(crate::model::load::Limits::unbounded());
    if thin {
        budget = budget.thinning(KEPT_WHOLE);
    }
    let mut hashing = Hashing {
        inner: &file,
        hash: sha2::Sha256::new(),
    };
    if let Some(mut loaded) =
        crate::model::load::stream_reader(&mut hashing, CURRENT_CONFIG, &budget)
        && loaded.configs.len() == 1
    {
        // The parser stops at the end of the document: the rest (blanks) is hashed too.
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io)?;
        let mut config = loaded.configs.remove(0);
        if thin {
            // Files read on the general road inside the streamed one (none today) too.
            config.thin_contents(KEPT_WHOLE);
        }
        return Ok(Some((config, hashing.hash.finalize().into())));
    }
    file.rewind().map_err(io)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(io)?;
    let digest = sha2::Sha256::digest(&data).into();
    let mut config = decode(&data)?;
    drop(data);
    if thin {
        config.thin_contents(KEPT_WHOLE);
    }
    Ok(Some((config, digest)))
}

/// A reader that hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hash: sha2::Sha256,
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A small JSON record the daemon keeps in the state directory (`name` there; `what` names it in
/// errors): None when there is none, an error when it is not a regular file or does not parse.
pub fn read_json_record<T: serde::de::DeserializeOwned>(
    root: &Root,
    name: &str,
    what: &str,
) -> Result<Option<T>, HostError> {
    let path = root.state_path(name);
    match root.read(&path, Tree::Etc)? {
        super::root::Entry::Absent => Ok(None),
        super::root::Entry::File { data, .. } => {
            serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| HostError::State {
                    path,
                    reason: format!("cannot parse {what}: {e}"),
                })
        }
        _ => Err(HostError::State {
            path,
            reason: "not a regular file".into(),
        }),
    }
}
