//! The normalised machine configuration: what every Ignition version (3.0.0 to 3.5.0) and every
//! MachineConfig is turned into before anything else looks at it.
//!
//! Fields that Ignition leaves unset stay `None` here, because rendering merges field by field and
//! "unset" must not overwrite an earlier value. Contents are already decoded (data URL, gzip), so
//! a file's compression travels with its contents by construction.

use serde::{Deserialize, Serialize};

/// The API version of MachineConfig objects.
pub const MC_API_VERSION: &str = "machineconfiguration.openshift.io/v1";
/// The kind of MachineConfig objects.
pub const MC_KIND: &str = "MachineConfig";
/// The label that says which pool (role) a MachineConfig is for.
pub const ROLE_LABEL: &str = "machineconfiguration.openshift.io/role";

/// A MachineConfig: a name and what the node should look like.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MachineConfig {
    /// `metadata.name`; empty when the input had none (a bare Ignition config).
    pub name: String,
    /// `metadata.labels`, kept for rendering (role ordering) and display.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    pub spec: MachineConfigSpec,
}

/// `spec` of a MachineConfig.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MachineConfigSpec {
    /// `spec.config`: the normalised Ignition config.
    pub config: Config,
    /// `spec.kernelArguments`, in order. Empty and absent are the same.
    pub kernel_arguments: Vec<String>,
    /// `spec.kernelType`: `default`, `realtime` or `64k-pages`. `None` when unset (means default).
    pub kernel_type: Option<String>,
    /// `spec.extensions`, in order.
    pub extensions: Vec<String>,
    /// `spec.fips`.
    pub fips: bool,
    /// `spec.osImageURL`; empty when unset.
    pub os_image_url: String,
}

/// A normalised Ignition config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Config {
    /// The Ignition version the input declared (e.g. `3.2.0`); rendering emits its own.
    pub version: String,
    pub files: Vec<File>,
    pub directories: Vec<Directory>,
    pub links: Vec<Link>,
    pub units: Vec<Unit>,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    /// Ignition's own `kernelArguments` section (3.3.0+), kept only to refuse it when it changes.
    pub ignition_kernel_arguments: Option<serde_json::Value>,
    /// `storage.disks`, `storage.filesystems`, `storage.raid`, `storage.luks` exactly as written:
    /// the daemon never acts on them, it only compares them to refuse changes (SPEC §4).
    pub disks: Option<serde_json::Value>,
    pub filesystems: Option<serde_json::Value>,
    pub raid: Option<serde_json::Value>,
    pub luks: Option<serde_json::Value>,
}

/// A user or group reference of a file, directory or link: by numeric id or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Owner {
    Id(u32),
    Name(String),
}

/// `storage.files[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct File {
    /// Absolute path on the node.
    pub path: String,
    /// Decoded contents; `None` when the config gives no `contents` (an empty file is created).
    pub contents: Option<Vec<u8>>,
    /// Permission bits, 0 to 0o777: loading refuses anything above 0o777 (setuid, setgid and
    /// sticky bits included, SPEC §4). `None` means the default 0644 when written.
    pub mode: Option<u32>,
    pub user: Option<Owner>,
    pub group: Option<Owner>,
    /// `overwrite`; rendering sets `Some(true)` where it is unset.
    pub overwrite: Option<bool>,
    /// True when the file has a non-empty `append` list (refused by the daemon, SPEC §4).
    pub has_append: bool,
    /// Set, with `contents` dropped, when the config was read only to be compared with another
    /// one ([`File::thin`]): the digest of the decoded contents. Never serialised: a thin
    /// config is never stored nor written to a node.
    /// Boxed: a file stays as small as before for the configs that are not thin.
    #[serde(skip)]
    pub digest: Option<Box<ContentDigest>>,
}

/// The SHA-256 and length of a file's decoded contents.
///
/// The stored current config is only ever *compared* with the config that replaces it (the
/// diff, and the update's check of which paths stay the same), so an update reads it thin:
/// each file's contents replaced by this digest as it is decoded. With 10,000 files of 1 KiB
/// that is 0.4 MB held instead of 10 MB. A file whose old contents some decision reads (the
/// registries configuration, whose old and new contents are compared entry by entry) is kept
/// whole.
///
/// The *new* config of an update is read the same way but **spooled** ([`Spool`]): each file's
/// decoded contents are written to an unnamed scratch file as they are decoded and only their
/// digest and place there are held; writing the file reads them back, one file at a time,
/// and checks them against the digest. Two digests are equal when their SHA-256 and length
/// are, wherever the contents are kept.
#[derive(Debug, Clone, Eq)]
pub struct ContentDigest {
    pub sha256: [u8; 32],
    pub len: u64,
    /// Where the contents were spooled (`None`: thin, the contents are gone).
    pub spooled: Option<Spooled>,
}

impl PartialEq for ContentDigest {
    fn eq(&self, other: &Self) -> bool {
        (self.sha256, self.len) == (other.sha256, other.len)
    }
}

/// Contents as something holds them: the bytes, or only their SHA-256 and length (a thin or
/// spooled file, a manifest's record).
#[derive(Debug, Clone, Copy)]
pub enum Held<'a> {
    Whole(&'a [u8]),
    Digest(&'a [u8; 32], u64),
}

impl Held<'_> {
    /// Whether both hold the same bytes: compared as bytes when both are whole, else by
    /// SHA-256 and length (a whole one hashed; the length first).
    pub fn same(self, other: Held<'_>) -> bool {
        use sha2::Digest as _;
        match (self, other) {
            (Held::Whole(a), Held::Whole(b)) => a == b,
            (Held::Digest(sha, len), Held::Whole(data))
            | (Held::Whole(data), Held::Digest(sha, len)) => {
                len == data.len() as u64 && *sha == <[u8; 32]>::from(sha2::Sha256::digest(data))
            }
            (Held::Digest(a, n), Held::Digest(b, m)) => (a, n) == (b, m),
        }
    }
}

/// The place of a file's contents in a [`Spool`].
#[derive(Debug, Clone)]
pub struct Spooled {
    pub spool: std::sync::Arc<Spool>,
    pub offset: u64,
}

impl PartialEq for Spooled {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.spool, &other.spool) && self.offset == other.offset
    }
}

impl Eq for Spooled {}

/// An unnamed scratch file holding the decoded contents of a config's files
/// ([`ContentDigest::spooled`]), appended to as the config is read. It is never synced and
/// vanishes when the last config holding it is dropped, or with the process (`O_TMPFILE`):
/// nothing is left behind by a crash. Readable from several threads at once (positioned reads).
#[derive(Debug)]
pub struct Spool {
    file: std::fs::File,
    end: std::sync::Mutex<u64>,
}

impl Spool {
    /// A new, empty spool in the directory `dir` (its filesystem holds the contents).
    pub fn new_in(dir: &std::path::Path) -> std::io::Result<std::sync::Arc<Spool>> {
        Ok(std::sync::Arc::new(Spool {
            file: tempfile::tempfile_in(dir)?,
            end: std::sync::Mutex::new(0),
        }))
    }

    /// Appends `data`; returns its offset.
    pub fn put(&self, data: &[u8]) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt as _;
        let mut end = self.end.lock().unwrap_or_else(|e| e.into_inner());
        let at = *end;
        self.file.write_all_at(data, at)?;
        *end = at + data.len() as u64;
        Ok(at)
    }

    /// The `len` bytes at `offset`.
    pub fn get(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt as _;
        let mut buf = vec![0; usize::try_from(len).map_err(std::io::Error::other)?];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

impl ContentDigest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest as _;
        ContentDigest {
            sha256: sha2::Sha256::digest(data).into(),
            len: data.len() as u64,
            spooled: None,
        }
    }

    /// Whether `data` has this digest (the length is compared first).
    pub fn matches(&self, data: &[u8]) -> bool {
        self.len == data.len() as u64 && *self == Self::of(data)
    }

    /// The spooled contents, read back and checked against the digest; `None` for a thin
    /// file, whose contents are gone.
    pub fn read_spooled(&self) -> Option<std::io::Result<Vec<u8>>> {
        let s = self.spooled.as_ref()?;
        Some(s.spool.get(s.offset, self.len).and_then(|data| {
            if self.matches(&data) {
                Ok(data)
            } else {
                Err(std::io::Error::other(
                    "the spooled contents do not match their digest",
                ))
            }
        }))
    }
}

impl MachineConfig {
    /// True when some file was thinned ([`File::thin`]).
    pub fn is_thin(&self) -> bool {
        self.spec.config.files.iter().any(File::is_thin)
    }

    /// Spools every file's contents but those at the paths in `keep` ([`File::spool`]); a file
    /// the spool cannot take (its disk full) stays whole.
    pub fn spool_contents(&mut self, spool: &std::sync::Arc<Spool>, keep: &[&str]) {
        for f in &mut self.spec.config.files {
            if !keep.contains(&f.path.as_str()) {
                let _ = f.spool(spool);
            }
        }
    }

    /// Reads every spooled file's contents back into memory ([`File::unspool`]).
    pub fn unspool_contents(&mut self) -> std::io::Result<()> {
        for f in &mut self.spec.config.files {
            f.unspool()?;
        }
        Ok(())
    }

    /// Thins every file but those at the paths in `keep` ([`File::thin`]).
    pub fn thin_contents(&mut self, keep: &[&str]) {
        for f in &mut self.spec.config.files {
            if !keep.contains(&f.path.as_str()) {
                f.thin();
            }
        }
    }

    /// The pool this config is labelled for (`machineconfiguration.openshift.io/role`), if any.
    pub fn role(&self) -> Option<&str> {
        self.labels.get(ROLE_LABEL).map(String::as_str)
    }
}

impl File {
    /// The mode to write when the config gives none.
    pub const DEFAULT_MODE: u32 = 0o644;

    /// The contents to write (empty when unset). Not for a thin file ([`File::is_thin`]),
    /// whose contents are gone: compare it with [`File::same_contents`].
    pub fn data(&self) -> &[u8] {
        debug_assert!(
            self.digest.is_none(),
            "the contents of the thin file {} were asked for",
            self.path
        );
        self.contents.as_deref().unwrap_or_default()
    }

    /// Replaces the contents by their digest (see [`ContentDigest`]).
    pub fn thin(&mut self) {
        if self.digest.is_none() {
            self.digest = Some(Box::new(ContentDigest::of(self.data())));
            self.contents = None;
        } else if let Some(d) = self.digest.as_deref_mut() {
            d.spooled = None;
        }
    }

    /// Moves the contents to `spool`, keeping their digest and place there (see
    /// [`ContentDigest`]). A file without contents, or already thin or spooled, stays as it is.
    pub fn spool(&mut self, spool: &std::sync::Arc<Spool>) -> std::io::Result<()> {
        if self.digest.is_some() {
            return Ok(());
        }
        let Some(c) = &self.contents else {
            return Ok(());
        };
        let offset = spool.put(c)?;
        let mut d = ContentDigest::of(c);
        d.spooled = Some(Spooled {
            spool: spool.clone(),
            offset,
        });
        self.digest = Some(Box::new(d));
        self.contents = None;
        Ok(())
    }

    /// Reads spooled contents back into memory (a whole file again).
    pub fn unspool(&mut self) -> std::io::Result<()> {
        if let Some(r) = self.digest.as_deref().and_then(ContentDigest::read_spooled) {
            self.contents = Some(r?);
            self.digest = None;
        }
        Ok(())
    }

    /// True when the contents were replaced by their digest and are gone (not spooled).
    pub fn is_thin(&self) -> bool {
        self.digest.as_ref().is_some_and(|d| d.spooled.is_none())
    }

    /// True when the contents are in a [`Spool`].
    pub fn is_spooled(&self) -> bool {
        self.digest.as_ref().is_some_and(|d| d.spooled.is_some())
    }

    /// The contents to write: borrowed for a whole file, read back (and checked against their
    /// digest) for a spooled one; an error for a thin one.
    pub fn contents_bytes(&self) -> std::io::Result<std::borrow::Cow<'_, [u8]>> {
        match self.digest.as_deref() {
            None => Ok(std::borrow::Cow::Borrowed(self.data())),
            Some(d) => match d.read_spooled() {
                Some(r) => r.map(std::borrow::Cow::Owned),
                None => Err(std::io::Error::other(format!(
                    "the contents of {} were read as a digest only",
                    self.path
                ))),
            },
        }
    }

    /// Whether the file has contents (`contents` is set, or was when it was thinned or spooled).
    pub fn has_contents(&self) -> bool {
        self.contents.is_some() || self.digest.is_some()
    }

    /// The digest of the contents (computed for a whole file).
    pub fn content_digest(&self) -> ContentDigest {
        self.digest
            .as_deref()
            .cloned()
            .unwrap_or_else(|| ContentDigest::of(self.data()))
    }

    /// The decoded contents as this file holds them: whole, or their digest when thin or
    /// spooled.
    pub fn held(&self) -> Held<'_> {
        match self.digest.as_deref() {
            Some(d) => Held::Digest(&d.sha256, d.len),
            None => Held::Whole(self.data()),
        }
    }

    /// Whether two files have the same decoded contents (unset is empty), thin or whole.
    pub fn same_contents(&self, other: &File) -> bool {
        self.held().same(other.held())
    }

    /// The mode to write.
    pub fn effective_mode(&self) -> u32 {
        self.mode.unwrap_or(Self::DEFAULT_MODE)
    }
}

/// `storage.directories[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Directory {
    pub path: String,
    pub mode: Option<u32>,
    pub user: Option<Owner>,
    pub group: Option<Owner>,
    pub overwrite: Option<bool>,
}

/// `storage.links[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Link {
    pub path: String,
    pub target: Option<String>,
    pub hard: Option<bool>,
    pub user: Option<Owner>,
    pub group: Option<Owner>,
    pub overwrite: Option<bool>,
}

/// `systemd.units[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Unit {
    /// Unit name, e.g. `chronyd.service`.
    pub name: String,
    /// Unit file contents; `None` when the config only enables, masks or adds dropins.
    pub contents: Option<String>,
    pub enabled: Option<bool>,
    pub mask: Option<bool>,
    pub dropins: Vec<Dropin>,
}

/// `systemd.units[].dropins[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dropin {
    /// File name inside `<unit>.d/`, e.g. `10-override.conf`.
    pub name: String,
    /// `None` or empty: the dropin is removed.
    pub contents: Option<String>,
}

/// `passwd.users[]`. Only `name`, `sshAuthorizedKeys` and `passwordHash` are applied; any other
/// field is kept in `other_fields` (sorted names) so that reconcilability can refuse it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub ssh_authorized_keys: Vec<String>,
    pub password_hash: Option<String>,
    /// Names of other fields set (e.g. `uid`, `groups`), with their JSON values.
    pub other_fields: std::collections::BTreeMap<String, serde_json::Value>,
}

/// `passwd.groups[]`, kept as written: any change is refused.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub fields: std::collections::BTreeMap<String, serde_json::Value>,
}
