//! What a config puts on disk: one [`Record`] per managed path (SHA-256, size, mode, owner,
//! kind), built once from the config so that validation and drift checks need not keep the
//! contents in memory.
//!
//! Managed paths: `storage.files`; units at `/etc/systemd/system/<name>` (masked → a link to
//! `/dev/null`; `mask: false` without contents → must not be a `/dev/null` link); dropins at
//! `/etc/systemd/system/<unit>.d/<dropin>` (empty contents → must be absent); the `core` user's
//! ssh keys at `/home/core/.ssh/authorized_keys.d/ignition` (0600, owner core). A unit or dropin
//! path also named in `storage.files` is taken from the unit (systemd section wins).

use super::HostError;
use super::owners::Owners;
use super::root::{Root, Tree};
use crate::model::MachineConfig;
use crate::model::config::Held;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Where units and dropins are written.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The `core` user's ssh keys file written from the config.
pub const SSH_KEYS_PATH: &str = "/home/core/.ssh/authorized_keys.d/ignition";
/// The force file (SPEC §7): a config may not create it.
pub const FORCE_FILE: &str = "/run/machine-config-daemon-force";

/// What must be at a managed path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// A regular file with the record's contents, mode and owner.
    File,
    /// A symlink to `/dev/null` (a masked unit).
    MaskLink,
    /// Nothing (an empty dropin).
    Absent,
    /// Anything but a `/dev/null` link (an unmasked unit without contents).
    Unmasked,
}

/// The expected state of one managed path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub sha256: [u8; 32],
    pub size: u64,
    /// Permission bits (incl. setuid/setgid/sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One managed path with the bytes to write there.
pub struct Desired<'a> {
    pub path: Cow<'a, str>,
    pub tree: Tree,
    pub record: Record,
    pub data: Cow<'a, [u8]>,
    /// The entry of a thin file ([`crate::model::File::thin`]): `data` is empty and the
    /// record's SHA-256 and size are the contents' (always set, whatever `hash` asked).
    pub thin: bool,
    /// The digest of a spooled file ([`crate::model::ContentDigest::spooled`]): its contents
    /// are read back from the spool when written.
    pub spooled: Option<&'a crate::model::ContentDigest>,
}

impl Desired<'_> {
    /// The contents to write: `data`, or for a spooled file its contents read back and checked
    /// against the digest the plan was made with (a thin file has none to write).
    pub fn contents(&self) -> Result<Cow<'_, [u8]>, HostError> {
        match self.spooled.and_then(|d| d.read_spooled()) {
            Some(Ok(data)) => Ok(Cow::Owned(data)),
            Some(Err(e)) => Err(HostError::io("read the spooled contents of", &self.path, e)),
            None if self.thin => Err(HostError::State {
                path: self.path.to_string(),
                reason: "the contents were read as a digest only".into(),
            }),
            None => Ok(Cow::Borrowed(&self.data[..])),
        }
    }

    /// The contents this entry asks for, as it holds them (a thin entry: their digest).
    pub fn held(&self) -> Held<'_> {
        if self.thin {
            Held::Digest(&self.record.sha256, self.record.size)
        } else {
            Held::Whole(&self.data)
        }
    }

    /// Whether two entries ask for the same contents (bytes compared; a thin entry by digest).
    pub fn same_data(&self, other: &Desired<'_>) -> bool {
        self.held().same(other.held())
    }
}

/// The records of every managed path of a config, sorted by path.
///
/// Kept for as long as the config is current (drift checks need nothing else), so it is laid
/// out in two allocations whatever the number of paths: the paths concatenated in one string,
/// and one fixed-size entry per path (its record, its tree and where its path is in that
/// string), looked up by binary search. About 100 bytes a path, with no per-path allocation to
/// scatter over the heap.
#[derive(Debug, Default, Clone)]
pub struct Manifest {
    paths: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u32,
    len: u32,
    record: Record,
    tree: Tree,
}

impl Manifest {
    /// Builds the manifest of `config` (owner names resolved with `owners`).
    pub fn build(config: &MachineConfig, owners: &Owners) -> Result<Manifest, HostError> {
        let mut desired = desired(config, owners)?;
        desired.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let mut m = Manifest {
            paths: String::with_capacity(desired.iter().map(|d| d.path.len()).sum()),
            entries: Vec::with_capacity(desired.len()),
        };
        for d in desired {
            let entry = Entry {
                start: m.paths.len() as u32,
                len: d.path.len() as u32,
                record: d.record,
                tree: d.tree,
            };
            m.paths.push_str(&d.path);
            m.entries.push(entry);
        }
        Ok(m)
    }

    fn path_of(&self, e: &Entry) -> &str {
        &self.paths[e.start as usize..(e.start + e.len) as usize]
    }

    fn find(&self, path: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| self.path_of(e).cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The record of `path`, if managed.
    pub fn get(&self, path: &str) -> Option<&Record> {
        self.find(path).map(|e| &e.record)
    }

    /// The record of `path` and the tree it is written in, if managed.
    pub fn get_with_tree(&self, path: &str) -> Option<(&Record, Tree)> {
        self.find(path).map(|e| (&e.record, e.tree))
    }

    /// Every managed path with its record and tree, in path order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Record, Tree)> + Clone {
        self.entries
            .iter()
            .map(|e| (self.path_of(e), &e.record, e.tree))
    }

    /// Every managed path, in path order.
    pub fn paths(&self) -> impl ExactSizeIterator<Item = &str> {
        self.entries.iter().map(|e| self.path_of(e))
    }

    /// The paths of this manifest that `old` does not have, or has with another record or tree,
    /// in path order.
    pub fn changed_since(&self, old: &Manifest) -> Vec<String> {
        let mut out = Vec::new();
        let mut olds = old.iter().peekable();
        for (path, rec, tree) in self.iter() {
            while olds.next_if(|(p, _, _)| *p < path).is_some() {}
            let same = olds
                .next_if(|(p, _, _)| *p == path)
                .is_some_and(|(_, r, t)| r == rec && t == tree);
            if !same {
                out.push(path.to_string());
            }
        }
        out
    }

    /// Number of managed paths.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the config manages no path.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn record(hash: bool, kind: Kind, data: &[u8], mode: u32, uid: u32, gid: u32) -> Record {
    Record {
        kind,
        sha256: if hash {
            Sha256::digest(data).into()
        } else {
            [0; 32]
        },
        size: data.len() as u64,
        mode,
        uid,
        gid,
    }
}

/// Every managed path of `config` with its contents, in config order (a path given twice is
/// listed once, where its last entry is). Refuses (before anything
/// is written) paths outside `/etc` and `/var`, unclean paths and the force file.
pub fn desired<'a>(
    config: &'a MachineConfig,
    owners: &Owners,
) -> Result<Vec<Desired<'a>>, HostError> {
    desired_with(config, owners, true)
}

/// [`desired`], with the SHA-256 of the records left zero when `hash` is false (an update
/// compares the contents themselves and needs no digest).
pub fn desired_with<'a>(
    config: &'a MachineConfig,
    owners: &Owners,
    hash: bool,
) -> Result<Vec<Desired<'a>>, HostError> {
    // Collected in config order; for a path given twice the later entry wins (units and
    // dropins come after `storage.files`).
    let mut out: Vec<Desired<'a>> = Vec::with_capacity(config.spec.config.files.len());
    let c = &config.spec.config;
    for f in &c.files {
        if f.path == FORCE_FILE {
            return Err(HostError::refused(
                &f.path,
                "a config may not create the force file",
            ));
        }
        if f.has_append {
            return Err(HostError::refused(
                &f.path,
                "files with append are not supported",
            ));
        }
        check_tree(&f.path)?;
        let uid = owners.uid(f.user.as_ref(), &f.path)?;
        let gid = owners.gid(f.group.as_ref(), &f.path)?;
        let mode = f.effective_mode();
        if mode > 0o7777 {
            return Err(HostError::refused(
                &f.path,
                format!("invalid mode {mode:o}"),
            ));
        }
        let d = match f.digest.as_deref() {
            Some(digest) => Desired {
                path: Cow::Borrowed(&f.path),
                tree: Tree::Etc,
                record: Record {
                    kind: Kind::File,
                    sha256: digest.sha256,
                    size: digest.len,
                    mode,
                    uid,
                    gid,
                },
                data: Cow::Borrowed(&b""[..]),
                thin: true,
                spooled: digest.spooled.is_some().then_some(digest),
            },
            None => {
                let data = f.data();
                Desired {
                    path: Cow::Borrowed(&f.path),
                    tree: Tree::Etc,
                    record: record(hash, Kind::File, data, mode, uid, gid),
                    data: Cow::Borrowed(data),
                    thin: false,
                    spooled: None,
                }
            }
        };
        out.push(d);
    }
    for u in &c.units {
        check_name(&u.name)?;
        let path = format!("{UNIT_DIR}/{}", u.name);
        let contents = u.contents.as_deref().filter(|s| !s.is_empty());
        let entry = if u.mask == Some(true) {
            Some((Kind::MaskLink, &b""[..]))
        } else if let Some(c) = contents {
            Some((Kind::File, c.as_bytes()))
        } else if u.mask == Some(false) {
            Some((Kind::Unmasked, &b""[..]))
        } else {
            None
        };
        if let Some((kind, data)) = entry {
            let d = Desired {
                path: Cow::Owned(path.clone()),
                tree: Tree::Etc,
                record: record(hash, kind, data, 0o644, 0, 0),
                data: Cow::Borrowed(data),
                thin: false,
                spooled: None,
            };
            out.push(d);
        }
        for d in &u.dropins {
            check_name(&d.name)?;
            let dpath = format!("{path}.d/{}", d.name);
            let data = d.contents.as_deref().unwrap_or_default().as_bytes();
            let kind = if data.is_empty() {
                Kind::Absent
            } else {
                Kind::File
            };
            let e = Desired {
                path: Cow::Owned(dpath),
                tree: Tree::Etc,
                record: record(hash, kind, data, 0o644, 0, 0),
                data: Cow::Borrowed(data),
                thin: false,
                spooled: None,
            };
            out.push(e);
        }
    }
    if let Some(core) = c.users.iter().find(|u| u.name == "core")
        && !core.ssh_authorized_keys.is_empty()
    {
        {
            let (uid, gid) = owners.user("core").ok_or_else(|| HostError::Owner {
                path: SSH_KEYS_PATH.to_string(),
                reason: "user \"core\" is not in the node's /etc/passwd".to_string(),
            })?;
            let mut text = String::new();
            for k in &core.ssh_authorized_keys {
                text.push_str(k.trim_end());
                text.push('\n');
            }
            let data = text.into_bytes();
            let d = Desired {
                path: Cow::Borrowed(SSH_KEYS_PATH),
                tree: Tree::Home { uid, gid },
                record: record(hash, Kind::File, &data, 0o600, uid, gid),
                data: Cow::Owned(data),
                thin: false,
                spooled: None,
            };
            out.push(d);
        }
    }
    Ok(last_wins(out))
}

/// Drops every entry whose path is given again later in the list (one hash lookup a path; the
/// order is kept).
fn last_wins(out: Vec<Desired<'_>>) -> Vec<Desired<'_>> {
    let keep: Option<Vec<bool>> = {
        let mut last: rustc_hash::FxHashMap<&str, usize> = rustc_hash::FxHashMap::default();
        last.reserve(out.len());
        for (i, d) in out.iter().enumerate() {
            last.insert(&d.path, i);
        }
        (last.len() != out.len()).then(|| {
            out.iter()
                .enumerate()
                .map(|(i, d)| last[&*d.path] == i)
                .collect()
        })
    };
    match keep {
        None => out,
        Some(keep) => out
            .into_iter()
            .zip(keep)
            .filter_map(|(d, k)| k.then_some(d))
            .collect(),
    }
}

/// A config path must be clean and literally under `/etc` or `/var` (or the `/opt`,
/// `/usr/local` exception; whether those are links into `/var` is checked on the node).
pub fn check_tree(path: &str) -> Result<(), HostError> {
    super::root::check_clean(path)?;
    let ok = ["/etc/", "/var/", "/opt/", "/usr/local/"]
        .iter()
        .any(|p| path.starts_with(p));
    if !ok {
        return Err(HostError::refused(
            path,
            "only paths under /etc and /var may be written",
        ));
    }
    check_reserved(super::state::STATE_DIR, path)
}

/// Refuses the daemon's own files in the state directory `state_dir` (backups, stamps,
/// staging, `currentconfig`, the journal, the reboot record, and their temp files).
pub fn check_reserved(state_dir: &str, path: &str) -> Result<(), HostError> {
    let reserved = |rest: &str| {
        ["/orig/", "/noorig/", "/staging/"]
            .iter()
            .any(|p| rest.starts_with(p))
            || ["currentconfig", "journal", "reboot-pending"]
                .iter()
                .any(|f| {
                    rest.strip_prefix('/')
                        .is_some_and(|r| r == *f || r == super::root::tmp_name(f))
                })
    };
    if path.strip_prefix(state_dir).is_some_and(reserved) {
        return Err(HostError::refused(
            path,
            "reserved for the daemon's own state",
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), HostError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.contains('\0') {
        return Err(HostError::refused(
            &format!("{UNIT_DIR}/{name}"),
            "invalid unit or dropin name",
        ));
    }
    Ok(())
}

/// Checks every managed path of a config against the root's directory layout (no symlinked
/// directory leading out of the allowed trees), before anything is written.
///
/// [`Root::check`] resolves only a path's parent directory (the last component is never
/// followed), so it runs once per distinct parent and tree; each path's own components were
/// checked for cleanliness by [`desired`], which `desired` lists come from.
pub fn preflight(root: &Root, desired: &[Desired<'_>]) -> Result<(), HostError> {
    let mut seen: rustc_hash::FxHashSet<(&str, Tree)> = rustc_hash::FxHashSet::default();
    for d in desired {
        // Each path's own components were checked by `desired` already.
        check_reserved(root.state_dir(), &d.path)?;
        let parent = d.path.rsplit_once('/').map_or("", |(p, _)| p);
        if parent.is_empty() || seen.insert((parent, d.tree)) {
            root.check(&d.path, d.tree)?;
        }
    }
    Ok(())
}
