//! Choosing the actions of a change (SPEC §3, "Choosing actions", points 1–8).
//!
//! This module owns the policy matching (files by longest path prefix, units by exact name, the
//! `sshkey` entry), the combination of the matched actions into one ordered list, the drain
//! decision, and one refinement of ours: a `DaemonReload` is inserted before the first reload or
//! restart of a unit whose definition changed, since systemd would otherwise reload or restart
//! the unit with the definition it loaded before the change.
//!
//! Path matching: a policy path matches a changed path when it equals it, or when the policy path
//! (cleaned) followed by `/` is a prefix of it; the longest policy path wins. The policy path `/`
//! matches every path. Matching walks up the changed path's ancestors with a hash lookup each, so
//! it costs O(depth) per file whatever the size of the policy.

use super::diff::{ChangeKind, Diff, OsField};
use super::{Change, PlanOptions, Subject, registries};
use crate::model::MachineConfig;
use crate::model::policy::{Action, FilePolicy, Policy, UnitPolicy};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

/// The path of the registries.conf file whose `Special` action is analysed.
pub const REGISTRIES_CONF: &str = "/etc/containers/registries.conf";
/// The service `Special` reloads.
pub const SPECIAL_SERVICE: &str = "crio.service";
/// Where unit files and dropins that `storage.files` may write live.
const SYSTEMD_DIR: &str = "/etc/systemd/system/";

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// One entry per change, in plan order.
    pub changes: Vec<Change>,
    /// The final actions.
    pub actions: Vec<Action>,
    /// A drain precedes the change.
    pub drain: bool,
    pub notes: Vec<String>,
}

/// Decides the actions of `diff` (between `old` and `new`) under `policy`.
pub fn decide(
    diff: &Diff,
    old: &MachineConfig,
    new: &MachineConfig,
    policy: &Policy,
    opts: &PlanOptions,
) -> Decision {
    let mut notes = Vec::new();
    let mut changes = Vec::with_capacity(diff.files.len() + diff.units.len() + 1 + diff.os.len());

    // Point 3: files, by longest prefix.
    let file_index = FileIndex::new(&policy.files);
    for f in &diff.files {
        let (matched, actions, reason) = match file_index.lookup(&f.path) {
            Some(entry) => (
                Some(entry.path.clone()),
                entry.actions.clone(),
                format!("matches policy path {}", entry.path),
            ),
            None => (
                None,
                vec![Action::Reboot],
                "no policy path matches: reboot".to_string(),
            ),
        };
        changes.push(Change {
            kind: Subject::File,
            path: Some(f.path.clone()),
            name: None,
            change: f.change,
            matched,
            actions,
            reason,
            old: None,
            new: None,
        });
    }

    // Point 4: units, by exact name.
    let units: HashMap<&str, &UnitPolicy> = policy
        .units
        .iter()
        .rev()
        .map(|u| (u.name.as_str(), u))
        .collect();
    for u in &diff.units {
        let (matched, actions, reason) = match units.get(u.name.as_str()) {
            Some(entry) => (
                Some(entry.name.clone()),
                entry.actions.clone(),
                format!("matches policy unit {}", entry.name),
            ),
            None => (
                None,
                vec![Action::Reboot],
                "no policy unit matches: reboot".to_string(),
            ),
        };
        changes.push(Change {
            kind: Subject::Unit,
            path: None,
            name: Some(u.name.clone()),
            change: u.change,
            matched,
            actions,
            reason,
            old: None,
            new: None,
        });
    }

    // Point 5: the core user's ssh keys or password hash.
    if let Some(s) = &diff.sshkey {
        let what = match (s.keys_changed, s.password_changed) {
            (true, true) => "ssh keys and password hash of core changed",
            (true, false) => "ssh keys of core changed",
            _ => "password hash of core changed",
        };
        let (matched, actions, reason) = if policy.sshkey.actions.is_empty() {
            (
                None,
                vec![Action::Reboot],
                format!("{what}; the policy has no sshkey entry: reboot"),
            )
        } else {
            (
                Some("sshkey".to_string()),
                policy.sshkey.actions.clone(),
                format!("{what}; matches policy sshkey"),
            )
        };
        if s.no_keys_left && s.change != ChangeKind::Removed {
            notes.push("core will have no ssh authorized key after this change".to_string());
        }
        changes.push(Change {
            kind: Subject::SshKey,
            path: None,
            name: Some("core".to_string()),
            change: s.change,
            matched,
            actions,
            reason,
            old: None,
            new: None,
        });
    }

    // Point 1: OS fields always reboot.
    for os in &diff.os {
        let reason = match os.field {
            OsField::Fips => {
                "fips can only be set at install time (refused, see unreconcilable)".to_string()
            }
            f => format!("a {} change always requires a reboot", f.as_str()),
        };
        changes.push(Change {
            kind: Subject::of_os(os.field),
            path: None,
            name: None,
            change: ChangeKind::Changed,
            matched: None,
            actions: vec![Action::Reboot],
            reason,
            old: Some(Box::new(os.old.clone())),
            new: Some(Box::new(os.new.clone())),
        });
    }
    if opts.force {
        notes.push(
            "force file present: the whole config is re-applied and the node reboots".to_string(),
        );
    }

    // Points 2 and 6: combine.
    let mut actions = if opts.force {
        vec![Action::Reboot]
    } else if changes.is_empty() {
        notes.push("no change".to_string());
        vec![Action::None]
    } else {
        combine(changes.iter().flat_map(|c| c.actions.iter()))
    };

    // Ours: DaemonReload before reloading or restarting a unit whose definition changed.
    if actions != [Action::Reboot] {
        insert_daemon_reload(&mut actions, &redefined_units(diff), &mut notes);
    }

    // Point 7: drain.
    let mut drain = actions
        .iter()
        .any(|a| matches!(a, Action::Reboot | Action::Drain));
    if actions.contains(&Action::Special) {
        notes.push(format!(
            "Special: {REGISTRIES_CONF} changed; it is applied by reloading {SPECIAL_SERVICE}"
        ));
        let old_conf = super::diff::file_contents(old, REGISTRIES_CONF);
        let new_conf = super::diff::file_contents(new, REGISTRIES_CONF);
        if old_conf == new_conf {
            notes.push(format!(
                "{REGISTRIES_CONF} is unchanged: no drain needed for it"
            ));
        } else {
            let verdict = registries::analyze(old_conf, new_conf);
            if verdict.safe {
                notes.push(format!(
                    "{REGISTRIES_CONF} change is safe (only digest-only additions): no drain"
                ));
            } else {
                drain = true;
                notes.push(format!(
                    "{REGISTRIES_CONF} change is not safe without a drain: {}",
                    verdict.reasons.join("; ")
                ));
            }
        }
    }
    Decision {
        changes,
        actions,
        drain,
        notes,
    }
}

/// Combines per-change actions (SPEC §3 point 6): any `Reboot` gives `[Reboot]`; identical
/// actions are kept once, at their first occurrence; `None` is dropped when anything else is
/// present; nothing but `None`s (or nothing) gives `[None]`.
pub fn combine<'a>(all: impl IntoIterator<Item = &'a Action>) -> Vec<Action> {
    // Distinct actions are few (at most 10 per policy entry), so a linear scan of the result is
    // cheaper than hashing every action; consecutive repeats (files under one entry) are skipped
    // first.
    let mut out: Vec<Action> = Vec::new();
    let mut previous: Option<&Action> = None;
    for a in all {
        if previous == Some(a) {
            continue;
        }
        previous = Some(a);
        match a {
            Action::Reboot => return vec![Action::Reboot],
            Action::None => {}
            a => {
                if !out.contains(a) {
                    out.push(a.clone());
                }
            }
        }
    }
    if out.is_empty() {
        out.push(Action::None);
    }
    out
}

/// Units whose definition changed: a unit whose contents or dropins changed in `systemd.units`,
/// or whose unit file (`/etc/systemd/system/<unit>`) or dropin (`/etc/systemd/system/<unit>.d/*`)
/// changed in `storage.files`.
fn redefined_units(diff: &Diff) -> BTreeSet<&str> {
    let mut set: BTreeSet<&str> = diff
        .units
        .iter()
        .filter(|u| u.definition_changed)
        .map(|u| u.name.as_str())
        .collect();
    for f in &diff.files {
        let Some(rest) = f.path.strip_prefix(SYSTEMD_DIR) else {
            continue;
        };
        match rest.split_once('/') {
            None if !rest.is_empty() => {
                set.insert(rest);
            }
            Some((dir, file)) if !file.contains('/') && dir.len() > 2 && dir.ends_with(".d") => {
                set.insert(&dir[..dir.len() - 2]);
            }
            _ => {}
        }
    }
    set
}

/// Makes sure a `DaemonReload` precedes the first `Reload`/`Restart` (or `Special`, a reload of
/// crio.service) of any redefined unit. A `DaemonReload` found later in the list is moved there,
/// so it still happens once.
fn insert_daemon_reload(
    actions: &mut Vec<Action>,
    redefined: &BTreeSet<&str>,
    notes: &mut Vec<String>,
) {
    fn target(a: &Action) -> Option<&str> {
        match a {
            Action::Special => Some(SPECIAL_SERVICE),
            a => a.service(),
        }
    }
    let Some((first, unit)) = actions.iter().enumerate().find_map(|(i, a)| {
        target(a)
            .filter(|s| redefined.contains(s))
            .map(|s| (i, s.to_string()))
    }) else {
        return;
    };
    if actions[..first].contains(&Action::DaemonReload) {
        return;
    }
    let what = actions[first].to_string();
    actions.retain(|a| *a != Action::DaemonReload);
    actions.insert(first, Action::DaemonReload);
    notes.push(format!(
        "DaemonReload added before {what}: the definition of {unit} changed, and systemd keeps \
         the old one until its configuration is reloaded"
    ));
}

/// Policy file entries by cleaned path, for longest-prefix lookups. Only ancestors whose length
/// equals the length of some policy path are hashed, so most probes cost one array read.
struct FileIndex<'a> {
    by_path: HashMap<Cow<'a, str>, &'a FilePolicy>,
    /// `has_len[n]`: some policy path is `n` bytes long.
    has_len: Vec<bool>,
}

impl<'a> FileIndex<'a> {
    fn new(entries: &'a [FilePolicy]) -> Self {
        // First entry wins on duplicates (a validated policy has none).
        let mut by_path = HashMap::with_capacity(entries.len());
        for e in entries {
            by_path.entry(clean_path(&e.path)).or_insert(e);
        }
        let mut has_len = vec![false; by_path.keys().map(|k| k.len() + 1).max().unwrap_or(0)];
        for k in by_path.keys() {
            has_len[k.len()] = true;
        }
        FileIndex { by_path, has_len }
    }

    /// The entry with the longest path equal to `path` or a parent directory of it.
    fn lookup(&self, path: &str) -> Option<&'a FilePolicy> {
        if self.by_path.is_empty() {
            return None;
        }
        let cleaned = clean_path(path);
        let mut candidate: &str = &cleaned;
        loop {
            if self.has_len.get(candidate.len()).copied().unwrap_or(false)
                && let Some(e) = self.by_path.get(candidate)
            {
                return Some(e);
            }
            match candidate.rfind('/') {
                Some(0) if candidate.len() > 1 => candidate = "/",
                Some(i) if i > 0 => candidate = &candidate[..i],
                _ => return None,
            }
        }
    }
}

/// Lexically cleans a path: collapses `//`, drops `.` components and a trailing `/`, resolves
/// `..` against the previous component (never above `/`). Borrows when already clean.
pub fn clean_path(path: &str) -> Cow<'_, str> {
    // A trailing `/` leaves an empty last component: no separate check for it.
    let is_clean = path == "/"
        || (path.starts_with('/')
            && path[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."));
    if is_clean {
        return Cow::Borrowed(path);
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let rooted = path.starts_with('/');
    let joined = parts.join("/");
    Cow::Owned(if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    })
}
