//! Whether a change can be applied at all (SPEC §4, "What may be changed").
//!
//! This module owns the refusals. [`check`] compares two configs and lists every reason the
//! change from the first to the second cannot be applied; [`config_problems`] checks one config
//! alone (what `validate --config` reports, and what [`check`] applies to everything the change
//! writes or removes).
//!
//! Decisions of ours, where SPEC leaves room:
//! - **Paths.** Files may be written (or removed) under `/etc` and `/var`, and under `/opt` and
//!   `/usr/local`, which on image-based hosts are links into `/var`: this pure check accepts those
//!   two trees, and the host layer refuses the write when the tree is not such a link or when any
//!   component resolves through a symlink out of the allowed trees. A path that is not absolute or
//!   not clean (`..`, `.`, `//`, trailing `/`) is refused here.
//! - **Removing ssh keys of `core`.** Removing the `core` user entry from `passwd.users` is
//!   refused (the daemon never deletes that user). An explicit empty `sshAuthorizedKeys` list is
//!   accepted: it is the administrator's stated intent, and it writes an empty key file; the plan
//!   notes that `core` will have no key left.
//! - **Links.** Adding a link or changing an existing one is refused; a link that only disappears
//!   from the config is accepted and left on disk (the daemon never wrote it).
//! - Only the files and units that the change touches are checked against the path and name
//!   rules, so a config whose install-time content predates these rules can still be updated.

use super::diff::{ChangeKind, Diff, OsField};
use crate::model::policy::validate::check_policy_path;
use crate::model::{Config, Directory, File, Group, Link, MachineConfig, Unit, User};
use serde_json::Value;
use std::collections::BTreeMap;

/// The force file (SPEC §7): a config may not create it.
pub const FORCE_FILE: &str = "/run/machine-config-daemon-force";
/// The daemon's state directory on the node (current config, journal, backups): a config may
/// not write into it.
pub const STATE_DIR: &str = "/etc/machine-config-daemon";
/// Trees a config may write files into.
pub const WRITABLE_TREES: [&str; 4] = ["/etc", "/var", "/opt", "/usr/local"];

/// A change that cannot be applied, with every reason found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("can't reconcile config {from} with {to}: {}", reasons.join("; "))]
pub struct Unreconcilable {
    pub from: String,
    pub to: String,
    pub reasons: Vec<String>,
}

/// Lists every reason the change from `old` to `new` (whose comparison is `diff`) cannot be
/// applied.
pub fn check(old: &MachineConfig, new: &MachineConfig, diff: &Diff) -> Result<(), Unreconcilable> {
    let (oc, nc) = (&old.spec.config, &new.spec.config);
    let mut reasons = Vec::new();

    for (name, o, n) in [
        ("storage.disks", &oc.disks, &nc.disks),
        ("storage.filesystems", &oc.filesystems, &nc.filesystems),
        ("storage.raid", &oc.raid, &nc.raid),
        ("storage.luks", &oc.luks, &nc.luks),
        (
            "kernelArguments (the Ignition section)",
            &oc.ignition_kernel_arguments,
            &nc.ignition_kernel_arguments,
        ),
    ] {
        if !section_eq(o, n) {
            reasons.push(format!(
                "{name} changed; it is only applied at install time"
            ));
        }
    }
    if sorted(&oc.directories, |d: &Directory| &d.path) != sorted(&nc.directories, |d| &d.path) {
        reasons.push("storage.directories changed; it is only applied at install time".into());
    }
    links(oc, nc, &mut reasons);
    if sorted(&oc.groups, |g: &Group| &g.name) != sorted(&nc.groups, |g| &g.name) {
        reasons.push("passwd.groups changed; groups are only applied at install time".into());
    }
    users(oc, nc, &mut reasons);

    // Files the change writes or removes (diff.files is sorted by path, so membership is a
    // binary search; `append` is rare, so only those files are looked up).
    reasons.extend(diff.files.iter().filter_map(|fc| path_problems(&fc.path)));
    for f in nc.files.iter().filter(|f| f.has_append) {
        let touched = diff
            .files
            .binary_search_by(|fc| fc.path.as_str().cmp(&f.path))
            .is_ok_and(|i| diff.files[i].change != ChangeKind::Removed);
        if touched {
            reasons.push(append_problem(f));
        }
    }
    let new_units = last_by(&nc.units, |u: &Unit| &u.name);
    for uc in &diff.units {
        match new_units.get(uc.name.as_str()) {
            Some(u) => reasons.extend(unit_problems(u)),
            None => reasons.extend(unit_name_problem(&uc.name)),
        }
    }
    for os in &diff.os {
        if os.field == OsField::Fips {
            reasons.push(format!(
                "fips changed from {} to {}; FIPS mode can only be set at install time",
                os.old, os.new
            ));
        }
    }
    reasons.extend(kernel_problem(new));

    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Unreconcilable {
            from: old.name.clone(),
            to: new.name.clone(),
            reasons,
        })
    }
}

/// Items that no config may hold, whatever the node runs: a file in the daemon's own state
/// directory, a masked unit with contents. `validate`, `plan` and `apply` refuse them as bad
/// input (exit 2), naming the item; the daemon refuses the config.
pub fn invalid_items(config: &MachineConfig) -> Vec<String> {
    let c = &config.spec.config;
    let mut out: Vec<String> = c
        .files
        .iter()
        .filter_map(|f| state_dir_problem(&f.path))
        .collect();
    out.extend(c.units.iter().filter_map(mask_problem));
    out
}

fn state_dir_problem(path: &str) -> Option<String> {
    path.strip_prefix(STATE_DIR)
        .is_some_and(|rest| rest.starts_with('/'))
        .then(|| {
            format!(
                "storage.files: {path} is in the daemon's own state directory {STATE_DIR}, which a config may not write"
            )
        })
}

fn mask_problem(u: &Unit) -> Option<String> {
    (u.mask == Some(true) && u.contents.as_deref().is_some_and(|c| !c.is_empty())).then(|| {
        format!(
            "systemd.units: {}: mask: true with contents; a masked unit is a link to /dev/null, so the contents would never be written",
            u.name
        )
    })
}

/// Problems of one config on its own: file paths (absolute, clean, allowed trees, not the force
/// file), `append`, unit and dropin names, and `kernel-devel` with a non-default kernel.
pub fn config_problems(config: &MachineConfig) -> Vec<String> {
    let c = &config.spec.config;
    let mut out: Vec<String> = c.files.iter().flat_map(file_problems).collect();
    out.extend(c.units.iter().flat_map(unit_problems));
    out.extend(kernel_problem(config));
    out
}

/// What a config asks for that belongs to provisioning and that this daemon never applies: on a
/// first apply these are accepted (a node provisioned from the same config already has them)
/// and reported, one line per field; on later updates a change to them is refused ([`check`]).
pub fn not_applied(config: &MachineConfig) -> Vec<String> {
    let c = &config.spec.config;
    let mut out = Vec::new();
    let mut note = |field: &str| {
        out.push(format!(
            "{field}: install-time only, not applied by machine-config-daemon"
        ))
    };
    for (name, v) in [
        ("storage.disks", &c.disks),
        ("storage.filesystems", &c.filesystems),
        ("storage.raid", &c.raid),
        ("storage.luks", &c.luks),
        (
            "kernelArguments (the Ignition section)",
            &c.ignition_kernel_arguments,
        ),
    ] {
        if !section_eq(v, &None) {
            note(name);
        }
    }
    if !c.directories.is_empty() {
        note("storage.directories");
    }
    if !c.links.is_empty() {
        note("storage.links");
    }
    if !c.groups.is_empty() {
        note("passwd.groups");
    }
    for u in &c.users {
        if u.name != "core" {
            note(&format!("passwd.users[{}]", u.name));
        } else {
            for f in u.other_fields.keys() {
                note(&format!("passwd.users[core].{f}"));
            }
        }
    }
    out
}

fn section_eq(a: &Option<Value>, b: &Option<Value>) -> bool {
    let empty = |v: &Option<Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    };
    (empty(a) && empty(b)) || a == b
}

fn sorted<T: PartialEq>(items: &[T], key: impl Fn(&T) -> &String) -> Vec<&T> {
    let mut v: Vec<&T> = items.iter().collect();
    v.sort_by(|a, b| key(a).cmp(key(b)));
    v
}

/// Items by key; of equal keys the last one wins.
fn last_by<T>(items: &[T], key: impl Fn(&T) -> &String) -> BTreeMap<&str, &T> {
    items.iter().map(|i| (key(i).as_str(), i)).collect()
}

fn links(oc: &Config, nc: &Config, reasons: &mut Vec<String>) {
    let old = last_by(&oc.links, |l: &Link| &l.path);
    for (path, link) in last_by(&nc.links, |l: &Link| &l.path) {
        match old.get(path) {
            None => reasons.push(format!(
                "storage.links: adding link {path} is not supported"
            )),
            Some(o) if *o != link => reasons.push(format!(
                "storage.links: changing link {path} is not supported"
            )),
            _ => {}
        }
    }
}

fn users(oc: &Config, nc: &Config, reasons: &mut Vec<String>) {
    let old = last_by(&oc.users, |u: &User| &u.name);
    let new = last_by(&nc.users, |u: &User| &u.name);
    let mut names: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let (o, n) = (old.get(name), new.get(name));
        if o == n {
            continue;
        }
        if name != "core" {
            let what = match (o, n) {
                (None, _) => "added",
                (_, None) => "removed",
                _ => "changed",
            };
            reasons.push(format!(
                "passwd.users: user {name:?} {what}; only the ssh keys and password hash of core may change"
            ));
            continue;
        }
        match n {
            None => reasons.push("passwd.users: user core may not be removed".into()),
            Some(n) if !n.other_fields.is_empty() => {
                let fields: Vec<&str> = n.other_fields.keys().map(String::as_str).collect();
                reasons.push(format!(
                    "passwd.users: core may only set sshAuthorizedKeys and passwordHash, not {}",
                    fields.join(", ")
                ));
            }
            Some(_) => {}
        }
    }
}

/// Path rules shared by files written and files removed.
fn path_problems(path: &str) -> Option<String> {
    if let Err(why) = check_policy_path(path) {
        return Some(format!("storage.files: {why}"));
    }
    if path == FORCE_FILE {
        return Some(format!(
            "storage.files: {FORCE_FILE} is the force file and may not be written by a config"
        ));
    }
    if let Some(p) = state_dir_problem(path) {
        return Some(p);
    }
    let allowed = WRITABLE_TREES.iter().any(|t| {
        path.strip_prefix(t)
            .is_some_and(|rest| rest.starts_with('/'))
    });
    if !allowed {
        return Some(format!(
            "storage.files: {path} is outside the writable trees ({})",
            WRITABLE_TREES.join(", ")
        ));
    }
    None
}

fn file_problems(f: &File) -> Vec<String> {
    let mut out: Vec<String> = path_problems(&f.path).into_iter().collect();
    if f.has_append {
        out.push(append_problem(f));
    }
    out
}

fn append_problem(f: &File) -> String {
    format!("storage.files: {}: append is not supported", f.path)
}

fn unit_name_problem(name: &str) -> Option<String> {
    let bad = name.is_empty() || name.contains('/') || name == "." || name == "..";
    bad.then(|| format!("systemd.units: {name:?} is not a valid unit file name"))
}

fn unit_problems(u: &Unit) -> Vec<String> {
    let mut out: Vec<String> = unit_name_problem(&u.name).into_iter().collect();
    out.extend(mask_problem(u));
    for d in &u.dropins {
        if d.name.is_empty() || d.name.contains('/') || d.name == "." || d.name == ".." {
            out.push(format!(
                "systemd.units: {}: {:?} is not a valid dropin file name",
                u.name, d.name
            ));
        }
    }
    out
}

fn kernel_problem(config: &MachineConfig) -> Option<String> {
    let kt = config.spec.kernel_type.as_deref().unwrap_or("default");
    let devel = config.spec.extensions.iter().any(|e| e == "kernel-devel");
    (devel && !kt.is_empty() && kt != "default")
        .then(|| format!("extension kernel-devel is not supported with kernelType {kt}"))
}
