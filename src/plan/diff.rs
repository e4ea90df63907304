//! What changed between two MachineConfigs (SPEC §3, the inputs of "Choosing actions").
//!
//! This module owns the comparison only: files by path, units by name (with their dropins), the
//! `core` user's ssh keys and password hash, and the OS fields. It does not judge (see
//! [`super::actions`] and [`super::reconcile`]). Results are sorted (files by path, units by name)
//! so everything downstream is deterministic. Cost: O(n log n) in the number of files and units
//! (one sort of each side, then a merge walk).
//!
//! Equality rules, chosen so that two spellings of the same node state are not a change:
//! - a file's contents compare decoded (unset == empty), its mode with the 0644 default applied;
//!   user, group and overwrite compare as written;
//! - a unit compares contents, enabled, mask and its dropins as a set keyed by name, where a dropin
//!   with empty or unset contents is the same as no dropin (both mean "absent");
//! - `kernelArguments` compare in order (empty == absent); `kernelType` unset == `default`;
//!   **ours:** `extensions` compare as a set (the OS installs a set; reordering is not a change).
//!
//! When a config lists a path or name twice, the last entry wins, as in rendering.

use crate::model::{File, MachineConfig, Unit, User};
use serde::Serialize;
use std::collections::BTreeMap;

/// How a file, unit or field changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Changed,
    Removed,
}

impl ChangeKind {
    /// `added`, `changed` or `removed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Changed => "changed",
            ChangeKind::Removed => "removed",
        }
    }
}

/// A file (`storage.files`) that was added, changed or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    pub change: ChangeKind,
}

/// A unit (`systemd.units`) that was added, changed or removed; a dropin change is a change of
/// its unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitChange {
    pub name: String,
    pub change: ChangeKind,
    /// The unit file's contents or a dropin's contents changed: systemd must re-read the unit
    /// (daemon-reload) before a reload or restart of it sees the new definition.
    pub definition_changed: bool,
}

/// A change of the `core` user's ssh keys or password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKeyChange {
    /// `added` when the old config had no `core` user, `removed` when the new one has none.
    pub change: ChangeKind,
    pub keys_changed: bool,
    pub password_changed: bool,
    /// The new config gives `core` no ssh key at all.
    pub no_keys_left: bool,
}

/// An OS-level field of the MachineConfig spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum OsField {
    #[serde(rename = "kernelArguments")]
    KernelArguments,
    #[serde(rename = "kernelType")]
    KernelType,
    #[serde(rename = "extensions")]
    Extensions,
    #[serde(rename = "fips")]
    Fips,
    #[serde(rename = "osImageURL")]
    OsImageUrl,
}

impl OsField {
    /// The field's name in the MachineConfig spec.
    pub fn as_str(self) -> &'static str {
        match self {
            OsField::KernelArguments => "kernelArguments",
            OsField::KernelType => "kernelType",
            OsField::Extensions => "extensions",
            OsField::Fips => "fips",
            OsField::OsImageUrl => "osImageURL",
        }
    }
}

/// A changed OS field, with its old and new values as JSON (for display).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsChange {
    pub field: OsField,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

/// Everything that differs between two configs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// Sorted by path.
    pub files: Vec<FileChange>,
    /// Sorted by name.
    pub units: Vec<UnitChange>,
    pub sshkey: Option<SshKeyChange>,
    /// In the order kernelArguments, kernelType, extensions, fips, osImageURL.
    pub os: Vec<OsChange>,
}

impl Diff {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.units.is_empty()
            && self.sshkey.is_none()
            && self.os.is_empty()
    }
}

/// Compares `old` and `new`.
pub fn diff(old: &MachineConfig, new: &MachineConfig) -> Diff {
    let (oc, nc) = (&old.spec.config, &new.spec.config);
    let files = merge_join(
        by_key(&oc.files, |f| &f.path),
        by_key(&nc.files, |f| &f.path),
    )
    .into_iter()
    .filter_map(|(path, o, n)| {
        kind_of(o, n, files_equal).map(|change| FileChange {
            path: path.to_string(),
            change,
        })
    })
    .collect();
    let units = merge_join(
        by_key(&oc.units, |u| &u.name),
        by_key(&nc.units, |u| &u.name),
    )
    .into_iter()
    .filter_map(|(name, o, n)| {
        let change = kind_of(o, n, units_equal)?;
        let definition_changed = match (o, n) {
            (Some(o), Some(n)) => !definitions_equal(o, n),
            (Some(u), None) | (None, Some(u)) => u.contents.is_some() || !dropins(u).is_empty(),
            (None, None) => false,
        };
        Some(UnitChange {
            name: name.to_string(),
            change,
            definition_changed,
        })
    })
    .collect();
    Diff {
        files,
        units,
        sshkey: sshkey_change(old, new),
        os: os_changes(old, new),
    }
}

/// The contents of the last file at `path` in `config`, if any (`Some(b"")` for a file without
/// contents).
pub fn file_contents<'a>(config: &'a MachineConfig, path: &str) -> Option<&'a [u8]> {
    config
        .spec
        .config
        .files
        .iter()
        .rev()
        .find(|f| f.path == path)
        .map(File::data)
}

fn kind_of<T>(o: Option<&T>, n: Option<&T>, equal: fn(&T, &T) -> bool) -> Option<ChangeKind> {
    match (o, n) {
        (None, Some(_)) => Some(ChangeKind::Added),
        (Some(_), None) => Some(ChangeKind::Removed),
        (Some(o), Some(n)) if !equal(o, n) => Some(ChangeKind::Changed),
        _ => None,
    }
}

fn files_equal(a: &File, b: &File) -> bool {
    a.same_contents(b)
        && a.effective_mode() == b.effective_mode()
        && a.user == b.user
        && a.group == b.group
        && a.overwrite == b.overwrite
}

fn units_equal(a: &Unit, b: &Unit) -> bool {
    a.enabled == b.enabled && a.mask == b.mask && definitions_equal(a, b)
}

fn definitions_equal(a: &Unit, b: &Unit) -> bool {
    a.contents == b.contents && dropins(a) == dropins(b)
}

/// The dropins that exist (non-empty contents), by name; the last one of a name wins.
fn dropins(unit: &Unit) -> BTreeMap<&str, &str> {
    let mut map = BTreeMap::new();
    for d in &unit.dropins {
        match d.contents.as_deref() {
            Some(c) if !c.is_empty() => map.insert(d.name.as_str(), c),
            _ => map.remove(d.name.as_str()),
        };
    }
    map
}

/// `items` keyed and sorted by `key`; of equal keys only the last item is kept.
fn by_key<'a, T>(items: &'a [T], key: impl Fn(&'a T) -> &'a String) -> Vec<(&'a str, &'a T)> {
    // Unstable sort on (key, position): same order as a stable sort, without its buffer.
    let mut keyed: Vec<(&str, usize, &T)> = items
        .iter()
        .enumerate()
        .map(|(i, item)| (key(item).as_str(), i, item))
        .collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(b.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<(&str, &T)> = Vec::with_capacity(keyed.len());
    for (k, _, item) in keyed {
        match out.last_mut() {
            Some(last) if last.0 == k => *last = (k, item),
            _ => out.push((k, item)),
        }
    }
    out
}

/// Walks two sorted, de-duplicated lists together.
type Joined<'a, T> = Vec<(&'a str, Option<&'a T>, Option<&'a T>)>;
fn merge_join<'a, T>(old: Vec<(&'a str, &'a T)>, new: Vec<(&'a str, &'a T)>) -> Joined<'a, T> {
    let mut out = Vec::with_capacity(old.len().max(new.len()));
    let (mut o, mut n) = (old.into_iter().peekable(), new.into_iter().peekable());
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some(a), Some(b)) if a.0 == b.0 => {
                let (a, b) = (o.next(), n.next());
                if let (Some(a), Some(b)) = (a, b) {
                    out.push((a.0, Some(a.1), Some(b.1)));
                }
            }
            (Some(a), Some(b)) if a.0 < b.0 => out.extend(o.next().map(|a| (a.0, Some(a.1), None))),
            (Some(_), None) => out.extend(o.next().map(|a| (a.0, Some(a.1), None))),
            _ => out.extend(n.next().map(|b| (b.0, None, Some(b.1)))),
        }
    }
    out
}

/// The `core` user of a config (the last entry named `core`).
pub fn core_user(config: &MachineConfig) -> Option<&User> {
    config
        .spec
        .config
        .users
        .iter()
        .rev()
        .find(|u| u.name == "core")
}

fn sshkey_change(old: &MachineConfig, new: &MachineConfig) -> Option<SshKeyChange> {
    let (o, n) = (core_user(old), core_user(new));
    let keys = |u: Option<&User>| u.map(|u| u.ssh_authorized_keys.clone()).unwrap_or_default();
    let hash = |u: Option<&User>| u.and_then(|u| u.password_hash.clone());
    let keys_changed = keys(o) != keys(n);
    let password_changed = hash(o) != hash(n);
    if !keys_changed && !password_changed {
        return None;
    }
    let change = match (o, n) {
        (None, Some(_)) => ChangeKind::Added,
        (Some(_), None) => ChangeKind::Removed,
        _ => ChangeKind::Changed,
    };
    Some(SshKeyChange {
        change,
        keys_changed,
        password_changed,
        no_keys_left: keys(n).is_empty(),
    })
}

fn os_changes(old: &MachineConfig, new: &MachineConfig) -> Vec<OsChange> {
    use serde_json::json;
    let (o, n) = (&old.spec, &new.spec);
    let kernel_type = |t: &Option<String>| match t.as_deref() {
        None | Some("") => "default".to_string(),
        Some(t) => t.to_string(),
    };
    fn extension_set(e: &[String]) -> Vec<&str> {
        let mut v: Vec<&str> = e.iter().map(String::as_str).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
    let mut out = Vec::new();
    let mut push = |field, changed: bool, old, new| {
        if changed {
            out.push(OsChange { field, old, new });
        }
    };
    push(
        OsField::KernelArguments,
        o.kernel_arguments != n.kernel_arguments,
        json!(o.kernel_arguments),
        json!(n.kernel_arguments),
    );
    let (okt, nkt) = (kernel_type(&o.kernel_type), kernel_type(&n.kernel_type));
    push(OsField::KernelType, okt != nkt, json!(okt), json!(nkt));
    push(
        OsField::Extensions,
        extension_set(&o.extensions) != extension_set(&n.extensions),
        json!(o.extensions),
        json!(n.extensions),
    );
    push(
        OsField::Fips,
        o.fips != n.fips,
        json!(o.fips),
        json!(n.fips),
    );
    push(
        OsField::OsImageUrl,
        o.os_image_url != n.os_image_url,
        json!(o.os_image_url),
        json!(n.os_image_url),
    );
    out
}
