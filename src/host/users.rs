//! The `core` user's password hash, written into the root's `/etc/shadow` (the ssh keys file is
//! an ordinary managed path, see [`super::manifest`]).
//!
//! Only when the hash changes between the old and the new config (or on a first apply that sets
//! one): the second field of `core`'s line is replaced, the rest of the file kept byte for byte,
//! and the file rewritten atomically with its mode and owner. A hash removed by the new config
//! becomes `*` (no password login), as upstream does.

use super::HostError;
use super::root::{Entry, Root, Tree};
use crate::model::MachineConfig;

/// The shadow file beneath the root.
pub const SHADOW: &str = "/etc/shadow";

/// The hash to set for `core`, if it must change.
pub fn password_change(old: Option<&MachineConfig>, new: &MachineConfig) -> Option<String> {
    let hash = |c: &MachineConfig| {
        c.spec
            .config
            .users
            .iter()
            .find(|u| u.name == "core")
            .and_then(|u| u.password_hash.clone())
    };
    let n = hash(new);
    match old {
        None => n,
        Some(o) if hash(o) != n => Some(n.unwrap_or_else(|| "*".to_string())),
        Some(_) => None,
    }
}

/// Rewrites `core`'s hash in the root's shadow file.
pub fn set_password_hash(root: &Root, hash: &str) -> Result<(), HostError> {
    if hash.contains(':') || hash.contains('\n') {
        return Err(HostError::refused(SHADOW, "invalid password hash for core"));
    }
    let Entry::File {
        data,
        mode,
        uid,
        gid,
    } = root.read(SHADOW, Tree::Etc)?
    else {
        return Err(HostError::refused(SHADOW, "not a regular file"));
    };
    let text =
        String::from_utf8(data).map_err(|_| HostError::refused(SHADOW, "not valid UTF-8"))?;
    let mut found = false;
    let mut out = String::with_capacity(text.len() + hash.len());
    for line in text.split_inclusive('\n') {
        let mut fields: Vec<&str> = line.trim_end_matches('\n').split(':').collect();
        if fields.first() == Some(&"core") && fields.len() > 1 {
            fields[1] = hash;
            found = true;
            out.push_str(&fields.join(":"));
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    if !found {
        return Err(HostError::refused(SHADOW, "user \"core\" has no entry"));
    }
    root.write_file(SHADOW, Tree::Etc, out.as_bytes(), mode, uid, gid)
}
