//! An update as one transaction: every managed file ends up entirely old or entirely new, even
//! across a crash.
//!
//! 1. Plan the steps ([`Step`]): backups and stamps first-managed paths need, writes of paths
//!    whose content, mode or owner differ (everything under `force`), removals and restores of
//!    paths the new config no longer manages, `core`'s password, and `currentconfig` last.
//!    Every path is checked against the root before anything is written.
//! 2. Write the journal (`/etc/machine-config-daemon/journal`, atomically): the old and new
//!    names, the steps, the pre-image of every path a step touches and the directories that will
//!    be created.
//! 3. Stage the pre-images under `staging/` (hard links when possible: every write replaces the
//!    inode by a rename, so the old inode stays intact; copies across filesystems).
//! 4. Run the steps. Removing the journal is the commit point; the staging directory is then
//!    cleaned. From [`BATCH_MIN`] file and symlink writes on, those are run as one batch
//!    (every temp file, their data synced together, the renames, one fsync per directory)
//!    before the other steps, rather than each with its own fsyncs; the data is durable before
//!    any rename either way. In a batch, a backup stamp (an empty file) is created at its path
//!    directly: having no data, it is never seen half-written, and its directory's fsync makes
//!    it durable before the commit.
//!
//! **What is looked at, and why that is enough.** An update costs what *changes*, not what the
//! config holds: old and new configs are matched by path (walked side by side in config order,
//! looked up by path where the orders differ) and
//! - a path whose entry is identical in both (kind, contents, mode, owner, tree) is not examined
//!   on disk at all (except under `force`, which rewrites every path);
//! - any other path is read and compared with the disk, and rewritten only if its content, mode
//!   or owner differ there.
//!
//! This relies on the disk matching the old config for the unchanged paths. `old` is the stored
//! `currentconfig`, which is only written as the last step of an update that wrote every one
//! of its paths (and is restored with them on rollback), so right after that update the disk
//! matched it. Anything since is drift (SPEC §6): detection reports it and leaves the file
//! alone, the daemon checks the whole config before applying a new one, and the way to repair
//! it is an administrator or the force file, not an unrelated update. So a drifted path the new
//! config does not change stays as it is (and is still reported) — see the
//! `drifted_unchanged_file_is_left_to_drift_detection` test. The directories of the new paths
//! are checked once each.
//!
//! **Storing the config.** `currentconfig` is rewritten whole, so for a large config with a
//! small change it is the bulk of an update. When the config's name changes, it is encoded
//! straight into its temp file on a second thread, as soon as the new config has passed
//! validation, while the rest of the update is planned and run; its step then only fsyncs and
//! renames it (otherwise the step encodes it). The encoding is streamed to the file, never
//! held whole in memory, and so is the journal. The temp file is the previous stored config,
//! kept as scratch when the staging directory is cleaned and overwritten in place (see
//! `clean_staging`).
//!
//! **Memory: the new contents are spooled.** `apply` and the standalone daemon read the new
//! config *spooled* ([`crate::model::load::load_desired_spooled`]): each file's contents are
//! decoded, validated and counted against the limits as the input is read, as always, then
//! written to an unnamed scratch file (`O_TMPFILE`) in the state directory (or its nearest
//! existing parent, see [`super::state::spool_dir`]) and replaced in memory by their SHA-256,
//! length and place there. The plan compares digests; a write reads that one file back, checks
//! it against the digest the plan was made with and writes it (in a batch: stages it), so an
//! update holds one file's contents at a time, whatever the config's size; the stored config
//! is encoded from the spool the same way. Contents that no longer match (the spool changed
//! under the update) fail that step like a full disk would: the update rolls back, nothing is
//! left half-applied. The spool rather than a second read of the source: the same road for a
//! file, a YAML file (read whole, then spooled) and a directory (rendered: its files are read
//! back into memory to be merged, so such a config is held whole), no second parse, and
//! nothing to go wrong if the source is edited between the two reads. In cluster mode the
//! config is kept whole as it arrives from the API: the fetch itself holds the object's text
//! and a JSON tree of it, more than its decoded contents, so spooling after it would not lower
//! the peak (streaming the fetch into the spool would; not done). A dry run, which shows the
//! contents, reads the config whole.
//!
//! **What the log says.** A committed update logs every path it changed at info level
//! (`/etc/chrony.conf written for rendered-worker-…`, with `path`, `change` and `config` fields),
//! or, above [`LOG_PATHS_MAX`] paths, their number at info level and each path at debug level.
//! Backups, stamps and the stored config are the daemon's own files and are not listed; a
//! rolled-back update changed nothing and lists nothing.
//!
//! **Recovery rolls back.** [`recover`] (run first by every command that changes the node) finds
//! a journal and restores every pre-image, removes the created directories and leftover temp
//! files, then drops the journal: the node is back at the old config, byte for byte, backups
//! included. Rolling back needs nothing but the journal and the staged pre-images, whereas
//! rolling forward would need the new config's contents, which a crash may have lost; the next
//! apply then redoes the update. A failing step rolls back the same way, and the error names it.

use super::backup::{never_delete, noorig_path, orig_path};
use super::manifest::{Desired, Kind, desired_with};
use super::owners::Owners;
use super::root::{self, Entry, Pending, Prepared, Probe, Root, Tree};
use super::state::{CURRENT_CONFIG, JOURNAL, STAGING, write_encoded};
use super::units::{UnitOps, unit_ops};
use super::users::{SHADOW, password_change, set_password_hash};
use super::{HostError, failpoint};
use crate::model::MachineConfig;
use rustc_hash::FxHashMap;

/// Options of [`apply`].
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Rewrite every managed path (the force file, SPEC §7).
    pub force: bool,
    /// Plan only: change nothing, report what would be done (with old and new contents).
    pub dry_run: bool,
}

/// A file the update writes, with what is there now (filled on dry runs only).
#[derive(Debug, Clone)]
pub struct WriteDetail {
    pub path: String,
    pub old: Option<Vec<u8>>,
    pub old_mode: Option<u32>,
    pub new: Vec<u8>,
    pub new_mode: u32,
}

/// What an update did (or, on a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// The steps, in order, e.g. `write /etc/chrony.conf`.
    pub steps: Vec<String>,
    /// Paths no longer managed but kept (never-delete list).
    pub kept: Vec<String>,
    /// Enablement operations the executor must perform.
    pub unit_ops: UnitOps,
    /// Dry run only: the files that would be written.
    pub writes: Vec<WriteDetail>,
}

/// The new config for `currentconfig`: when its name changes (it is then sure to be stored),
/// encoded and written to the temp file on another thread, once the new config passed
/// validation, while the update is planned, staged and run; waited for only when it is needed.
/// The encoding is streamed to the file, never held whole in memory.
struct Encoded<'a> {
    config: &'a MachineConfig,
    pending: Option<Box<dyn FnOnce() -> Ready + 'a>>,
    /// Tells the other thread the new config passed validation and it may write the temp file
    /// (dropped: it may not).
    go: Option<std::sync::mpsc::Sender<()>>,
    ready: Ready,
}

#[derive(Default)]
struct Ready {
    /// The temp file, written ahead (`None`: it was not, write it at the step).
    file: Option<Result<Prepared, HostError>>,
}

impl Encoded<'_> {
    fn wait(&mut self) -> &mut Ready {
        self.go = None;
        if let Some(encode) = self.pending.take() {
            self.ready = encode();
        }
        &mut self.ready
    }

    /// The new config passed validation: the temp file may be written.
    fn validated(&mut self) {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
    }
}

/// Whether `currentconfig` holds `config` already, byte for byte (compared as it is encoded,
/// without holding either whole).
fn stored_is(root: &Root, config: &MachineConfig) -> Result<bool, HostError> {
    let path = root.state_path(CURRENT_CONFIG);
    if root.probe(&path, Tree::Etc)? != Probe::File {
        return Ok(false);
    }
    let Some(file) = root.open_file(&path, Tree::Etc)? else {
        return Ok(false);
    };
    let mut cmp = Compare {
        stored: std::io::BufReader::with_capacity(64 * 1024, file),
        scratch: Vec::new(),
        same: true,
    };
    super::state::write_encoded(config, &mut cmp).map_err(|e| HostError::io("read", &path, e))?;
    let mut rest = [0u8; 1];
    let at_end = std::io::Read::read(&mut cmp.stored, &mut rest)
        .map_err(|e| HostError::io("read", &path, e))?
        == 0;
    Ok(cmp.same && at_end)
}

/// A writer that compares what is written to it with what `stored` holds.
struct Compare<R> {
    stored: R,
    scratch: Vec<u8>,
    same: bool,
}

impl<R: std::io::Read> std::io::Write for Compare<R> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.same {
            self.scratch.resize(buf.len(), 0);
            match self.stored.read_exact(&mut self.scratch) {
                Ok(()) => self.same = self.scratch == buf,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => self.same = false,
                Err(e) => return Err(e),
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Step<'a> {
    Backup(String, Tree),
    Stamp(String),
    Write(&'a Desired<'a>),
    Restore(String, Tree),
    Delete(String, Tree, bool),
    Password(String),
    CurrentConfig,
}

impl Step<'_> {
    /// The managed path the step is about (empty for the password and the stored config).
    fn path(&self) -> &str {
        match self {
            Step::Backup(p, _) | Step::Stamp(p) | Step::Restore(p, _) | Step::Delete(p, _, _) => p,
            Step::Write(d) => &d.path,
            Step::Password(_) | Step::CurrentConfig => "",
        }
    }

    fn describe(&self, root: &Root) -> String {
        match self {
            Step::Backup(p, _) => format!("back up {p} to {}", orig_path(root, p)),
            Step::Stamp(p) => format!("stamp {}", noorig_path(root, p)),
            Step::Write(d) => match d.record.kind {
                Kind::File => format!("write {}", d.path),
                Kind::MaskLink => format!("mask {}", d.path),
                Kind::Absent | Kind::Unmasked => format!("remove {}", d.path),
            },
            Step::Restore(p, _) => format!("restore {p} from {}", orig_path(root, p)),
            Step::Delete(p, _, true) => format!("remove {p} and {}", noorig_path(root, p)),
            Step::Delete(p, _, false) => format!("remove {p}"),
            Step::Password(_) => format!("set the password hash of core in {SHADOW}"),
            Step::CurrentConfig => format!("store {}", root.state_path(CURRENT_CONFIG)),
        }
    }

    /// Paths the step changes, and whether it writes (creates) them.
    fn touched(&self, root: &Root) -> Vec<(String, Tree, bool)> {
        match self {
            Step::Backup(p, _) => vec![(orig_path(root, p), Tree::Etc, true)],
            Step::Stamp(p) => vec![(noorig_path(root, p), Tree::Etc, true)],
            Step::Write(d) => {
                let w = matches!(d.record.kind, Kind::File | Kind::MaskLink);
                vec![(d.path.to_string(), d.tree, w)]
            }
            Step::Restore(p, t) => vec![
                (p.clone(), *t, true),
                (orig_path(root, p), Tree::Etc, false),
            ],
            Step::Delete(p, t, stamp) => {
                let mut v = vec![(p.clone(), *t, false)];
                if *stamp {
                    v.push((noorig_path(root, p), Tree::Etc, false));
                }
                v
            }
            Step::Password(_) => vec![(SHADOW.to_string(), Tree::Etc, true)],
            Step::CurrentConfig => vec![(root.state_path(CURRENT_CONFIG), Tree::Etc, true)],
        }
    }

    /// What the step did to a path the config manages (or to core's password in the shadow
    /// file), for the log: backups, stamps and the stored config are the daemon's own files.
    fn changed(&self) -> Option<(&'static str, &str)> {
        match self {
            Step::Write(d) => Some((
                match d.record.kind {
                    Kind::File => "written",
                    Kind::MaskLink => "masked",
                    Kind::Unmasked => "unmasked",
                    Kind::Absent => "removed",
                },
                &d.path,
            )),
            Step::Restore(p, _) => Some(("restored from its backup", p)),
            Step::Delete(p, _, _) => Some(("removed", p)),
            Step::Password(_) => Some(("core's password hash set", SHADOW)),
            Step::Backup(..) | Step::Stamp(_) | Step::CurrentConfig => None,
        }
    }

    fn run(&self, root: &Root, stored: &mut Encoded<'_>) -> Result<(), HostError> {
        match self {
            Step::Backup(p, t) => copy(root, p, *t, &orig_path(root, p), Tree::Etc),
            Step::Stamp(p) => root.write_file(&noorig_path(root, p), Tree::Etc, b"", 0o644, 0, 0),
            Step::Write(d) => match d.record.kind {
                Kind::File => {
                    let r = &d.record;
                    let data = d.contents()?;
                    root.write_file(&d.path, d.tree, &data, r.mode, r.uid, r.gid)
                }
                Kind::MaskLink => root.write_symlink(&d.path, d.tree, "/dev/null"),
                Kind::Absent | Kind::Unmasked => root.remove(&d.path, d.tree),
            },
            Step::Restore(p, t) => {
                copy(root, &orig_path(root, p), Tree::Etc, p, *t)?;
                root.remove(&orig_path(root, p), Tree::Etc)
            }
            Step::Delete(p, t, stamp) => {
                root.remove(p, *t)?;
                if *stamp {
                    root.remove(&noorig_path(root, p), Tree::Etc)?;
                }
                Ok(())
            }
            Step::Password(h) => set_password_hash(root, h),
            Step::CurrentConfig => {
                if let Some(file) = stored.wait().file.take() {
                    return root.commit_prepared(file?);
                }
                let config = stored.config;
                let path = root.state_path(CURRENT_CONFIG);
                let fill = |w: &mut dyn std::io::Write| write_encoded(config, w);
                match root.prepare_file_with(&path, Tree::Etc, (0o644, 0, 0), fill)? {
                    Some(p) => root.commit_prepared(p),
                    None => root.write_file_with(&path, Tree::Etc, 0o644, 0, 0, fill),
                }
            }
        }
    }
}

/// From this many file and symlink writes on, an update writes them as one batch: every temp
/// file first, then their data made durable together ([`Root::sync_batch`]: writeback started
/// for all, then an fsync each, which commits the filesystem's journal once rather than once a
/// file), then the renames, then one fsync per directory rather than one per file. Below it,
/// each file is written, synced and renamed on its own, as a batch would gain nothing.
pub const BATCH_MIN: usize = 64;

impl Step<'_> {
    /// Whether the step is a file or symlink write that can be part of a batch.
    fn batched(&self) -> bool {
        match self {
            Step::Backup(..) | Step::Stamp(_) => true,
            Step::Write(d) => matches!(d.record.kind, Kind::File | Kind::MaskLink),
            _ => false,
        }
    }

    /// The path a batched step stages, and its tree.
    fn staged_at(&self, root: &Root) -> (std::borrow::Cow<'_, str>, Tree) {
        match self {
            Step::Backup(p, _) => (orig_path(root, p).into(), Tree::Etc),
            Step::Stamp(p) => (noorig_path(root, p).into(), Tree::Etc),
            Step::Write(d) => (d.path.as_ref().into(), d.tree),
            _ => unreachable!("only batched steps are staged"),
        }
    }

    /// The first half of a batched step: its temp file at [`Step::staged_at`], written but
    /// not synced nor renamed.
    fn stage(&self, root: &Root) -> Result<Pending, HostError> {
        let (to, tree) = self.staged_at(root);
        match self {
            Step::Backup(p, t) => copy_with(
                root,
                p,
                *t,
                |data, mode, uid, gid| root.stage_file(&to, tree, data, mode, uid, gid),
                |target| root.stage_symlink(&to, tree, target),
            ),
            Step::Stamp(_) => root.stage_empty(&to, tree, 0o644, 0, 0),
            Step::Write(d) if d.record.kind == Kind::MaskLink => {
                root.stage_symlink(&to, tree, "/dev/null")
            }
            Step::Write(d) => {
                let r = &d.record;
                // Read back one file at a time when spooled: staged, its contents are the
                // page cache's.
                let data = d.contents()?;
                root.stage_file(&to, tree, &data, r.mode, r.uid, r.gid)
            }
            _ => unreachable!("only batched steps are staged"),
        }
    }
}

/// Copies the entry at `from` (a file with its mode and owner, or a symlink) to `to`.
fn copy(root: &Root, from: &str, ft: Tree, to: &str, tt: Tree) -> Result<(), HostError> {
    copy_with(
        root,
        from,
        ft,
        |data, mode, uid, gid| root.write_file(to, tt, data, mode, uid, gid),
        |target| root.write_symlink(to, tt, target),
    )
}

/// Reads the entry at `from` and hands it to `file` (contents, mode, uid, gid) or `link`
/// (target); anything else is an error.
fn copy_with<T>(
    root: &Root,
    from: &str,
    ft: Tree,
    file: impl FnOnce(&[u8], u32, u32, u32) -> Result<T, HostError>,
    link: impl FnOnce(&str) -> Result<T, HostError>,
) -> Result<T, HostError> {
    match root.read(from, ft)? {
        Entry::File {
            data,
            mode,
            uid,
            gid,
        } => file(&data, mode, uid, gid),
        Entry::Symlink { target } => link(&target),
        Entry::Absent => Err(HostError::refused(from, "missing")),
        Entry::Other { .. } => Err(HostError::refused(from, "not a regular file or symlink")),
    }
}

fn matches_disk(disk: &Entry, d: &Desired<'_>) -> bool {
    let r = &d.record;
    match (r.kind, disk) {
        (
            Kind::File,
            Entry::File {
                data,
                mode,
                uid,
                gid,
            },
        ) => {
            // A spooled file is compared by digest: its contents stay in the spool.
            let same_data = d.held().same(crate::model::config::Held::Whole(data));
            *mode == r.mode && *uid == r.uid && *gid == r.gid && same_data
        }
        (Kind::MaskLink, Entry::Symlink { target }) => target == "/dev/null",
        (Kind::Absent, Entry::Absent) => true,
        (Kind::Unmasked, Entry::Symlink { target }) => target != "/dev/null",
        (Kind::Unmasked, _) => true,
        _ => false,
    }
}

/// The same path in two configs asks for the same thing (contents compared, or, for the thin
/// old config an update reads, the new contents' digest with the old one).
fn same(a: &Desired<'_>, b: &Desired<'_>) -> bool {
    let (x, y) = (&a.record, &b.record);
    (x.kind, x.mode, x.uid, x.gid, a.tree) == (y.kind, y.mode, y.uid, y.gid, b.tree)
        && a.same_data(b)
}

#[allow(clippy::too_many_arguments)]
fn plan_steps<'a>(
    root: &Root,
    old: Option<&MachineConfig>,
    old_desired: &[Desired<'_>],
    new_desired: &'a [Desired<'a>],
    new: &'a MachineConfig,
    opts: &ApplyOptions,
    heal: Option<&rustc_hash::FxHashSet<&str>>,
    report: &mut ApplyReport,
) -> Result<Vec<Step<'a>>, HostError> {
    let mut steps = Vec::new();
    // Both lists have one entry a path, in config order, and an update mostly keeps that order:
    // they are walked side by side, and the old list is indexed by path only if a path is not
    // where the walk expects it (added, removed or moved paths).
    let mut old_by_path: Option<FxHashMap<&str, usize>> = None;
    let mut matched = vec![false; old_desired.len()];
    let mut next = 0;
    for d in new_desired {
        let at = if old_desired.get(next).is_some_and(|o| o.path == d.path) {
            Some(next)
        } else {
            old_by_path
                .get_or_insert_with(|| {
                    old_desired
                        .iter()
                        .enumerate()
                        .map(|(i, o)| (&*o.path, i))
                        .collect()
                })
                .get(&*d.path)
                .copied()
        };
        if let Some(i) = at {
            matched[i] = true;
            next = i + 1;
        }
        let old_d = at.map(|i| &old_desired[i]);
        let healed = heal.is_some_and(|h| h.contains(&*d.path));
        if !opts.force && !healed && old_d.is_some_and(|o| same(o, d)) {
            continue;
        }
        let disk = root.read(&d.path, d.tree)?;
        if let Entry::Other { .. } = disk {
            return Err(HostError::refused(
                &d.path,
                "is a directory or a special file",
            ));
        }
        if old_d.is_none()
            && root.probe(&orig_path(root, &d.path), Tree::Etc)? == Probe::Absent
            && root.probe(&noorig_path(root, &d.path), Tree::Etc)? == Probe::Absent
        {
            steps.push(match disk {
                Entry::Absent => Step::Stamp(d.path.to_string()),
                _ => Step::Backup(d.path.to_string(), d.tree),
            });
        }
        if opts.force || !matches_disk(&disk, d) {
            if opts.dry_run && d.record.kind == Kind::File {
                let (o, m) = match disk {
                    Entry::File { data, mode, .. } => (Some(data), Some(mode)),
                    _ => (None, None),
                };
                report.writes.push(WriteDetail {
                    path: d.path.to_string(),
                    old: o,
                    old_mode: m,
                    new: d.contents()?.into_owned(),
                    new_mode: d.record.mode,
                });
            }
            steps.push(Step::Write(d));
        }
    }
    // In path order (stable: a path's backup stays before its write), then the removals, also
    // in path order.
    steps.sort_by(|a, b| a.path().cmp(b.path()));
    report.writes.sort_by(|a, b| a.path.cmp(&b.path));
    let written = steps.len();
    for (od, _) in old_desired.iter().zip(&matched).filter(|(_, m)| !**m) {
        let (path, tree) = (&*od.path, &od.tree);
        if never_delete(path) {
            report.kept.push(path.to_string());
            continue;
        }
        if root.probe(&orig_path(root, path), Tree::Etc)? != Probe::Absent {
            steps.push(Step::Restore(path.to_string(), *tree));
        } else {
            let stamp = root.probe(&noorig_path(root, path), Tree::Etc)? != Probe::Absent;
            if stamp || root.probe(path, *tree)? != Probe::Absent {
                steps.push(Step::Delete(path.to_string(), *tree, stamp));
            }
        }
    }
    steps[written..].sort_by(|a, b| a.path().cmp(b.path()));
    report.kept.sort();
    if let Some(h) = password_change(old, new) {
        steps.push(Step::Password(h));
    }
    Ok(steps)
}

/// The pre-image of one touched path, as recorded in the journal.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PreImage {
    path: String,
    tree: Tree,
    /// `absent`, `link:<target>` or `staged:<name in staging/>`.
    state: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Journal<'a> {
    old: Option<String>,
    new: String,
    /// The report's step descriptions, borrowed when written (a large update has thousands).
    steps: std::borrow::Cow<'a, [String]>,
    preimages: Vec<PreImage>,
    created_dirs: Vec<(String, Tree)>,
}

/// Heals drift: rewrites `paths` of `config` (the stored current config) wherever the disk
/// differs from it (content, mode, owner, type), through the same transaction as an update
/// (journal, pre-images, atomic writes, rollback), and nothing else: the other paths, the units'
/// enablement and `currentconfig` are left as they are. A path `config` does not manage is
/// ignored.
pub fn heal(root: &Root, config: &MachineConfig, paths: &[&str]) -> Result<ApplyReport, HostError> {
    let set: rustc_hash::FxHashSet<&str> = paths.iter().copied().collect();
    let stored = Encoded {
        config,
        pending: None,
        go: None,
        ready: Ready::default(),
    };
    let mut report = apply_in(
        root,
        Some(config),
        config,
        &ApplyOptions::default(),
        stored,
        Some(&set),
    )?;
    // The same config on both sides: no enablement changes.
    report.unit_ops = UnitOps::default();
    Ok(report)
}

/// Applies `new` over `old` (None: first apply) beneath `root`, as one transaction.
pub fn apply(
    root: &Root,
    old: Option<&MachineConfig>,
    new: &MachineConfig,
    opts: &ApplyOptions,
) -> Result<ApplyReport, HostError> {
    // A thin config (read for a comparison, its contents replaced by digests) is only ever the
    // old side: written, it would empty every file.
    if new.is_thin() {
        return Err(HostError::State {
            path: new.name.clone(),
            reason: "a config read thin (contents as digests) cannot be applied".into(),
        });
    }
    if opts.dry_run {
        let stored = Encoded {
            config: new,
            pending: None,
            go: None,
            ready: Ready::default(),
        };
        return apply_in(root, old, new, opts, stored, None);
    }
    // Storing the config (the bulk of the work for a large config with a small change) runs on
    // a second core meanwhile: encoding at once, writing the temp file once the new config
    // passed validation (nothing is written for a refused config), and only when the stored
    // config is sure to change, that is when the name changes (a config changed under the same
    // name is stored by its step, after the plan: slower, as correct).
    let (go, validated) = std::sync::mpsc::channel::<()>();
    let ahead = old.is_some_and(|o| o.name != new.name);
    std::thread::scope(|s| {
        let storing = s.spawn(move || {
            let file = (ahead && validated.recv().is_ok())
                .then(|| {
                    let path = root.state_path(CURRENT_CONFIG);
                    root.prepare_file_with(&path, Tree::Etc, (0o644, 0, 0), |w| {
                        write_encoded(new, w)
                    })
                    .transpose()
                })
                .flatten();
            Ready { file }
        });
        let stored = Encoded {
            config: new,
            pending: Some(Box::new(move || {
                storing.join().expect("storing does not panic")
            })),
            go: Some(go),
            ready: Ready::default(),
        };
        apply_in(root, old, new, opts, stored, None)
    })
}

fn apply_in(
    root: &Root,
    old: Option<&MachineConfig>,
    new: &MachineConfig,
    opts: &ApplyOptions,
    mut stored: Encoded<'_>,
    heal: Option<&rustc_hash::FxHashSet<&str>>,
) -> Result<ApplyReport, HostError> {
    let owners = Owners::load(root)?;
    // The old config's list is built on another core while the new one is built and checked.
    let (new_desired, old_list) = std::thread::scope(|s| {
        let old_list = old.map(|o| s.spawn(|| desired_with(o, &owners, false)));
        let new_desired = desired_with(new, &owners, false).and_then(|d| {
            super::manifest::preflight(root, &d)?;
            Ok(d)
        });
        let old_list = match old_list {
            Some(h) => h.join().expect("listing does not panic"),
            None => Ok(Vec::new()),
        };
        (new_desired, old_list)
    });
    let (new_desired, old_list) = (new_desired?, old_list?);
    if !opts.dry_run {
        stored.validated();
    }
    let mut report = ApplyReport {
        unit_ops: unit_ops(old.map(|o| &o.spec.config), &new.spec.config, opts.force),
        ..ApplyReport::default()
    };
    let mut steps = plan_steps(
        root,
        old,
        &old_list,
        &new_desired,
        new,
        opts,
        heal,
        &mut report,
    )?;
    // The stored config is rewritten with any other change, else only if it differs (a heal
    // rewrites paths of the stored config itself: it stays as it is).
    let stale = heal.is_none() && (!steps.is_empty() || !stored_is(root, new)?);
    if stale {
        steps.push(Step::CurrentConfig);
    }
    report.steps = steps.iter().map(|s| s.describe(root)).collect();
    if opts.dry_run || steps.is_empty() {
        return Ok(report);
    }
    // Pre-images and directories to create, before anything changes.
    let mut preimages: Vec<PreImage> = Vec::new();
    let mut created: Vec<(String, Tree)> = Vec::new();
    // Each touched path once, where it is first touched (a set of borrowed paths rather than
    // of copies: a large update touches tens of thousands).
    let touched: Vec<(String, Tree, bool)> = steps.iter().flat_map(|s| s.touched(root)).collect();
    let first: Vec<bool> = {
        let mut seen = rustc_hash::FxHashSet::default();
        seen.reserve(touched.len());
        touched.iter().map(|t| seen.insert(t.0.as_str())).collect()
    };
    preimages.reserve(first.iter().filter(|f| **f).count());
    // The missing directories of a path are those of its directory: looked up once each.
    let mut dirs_seen = rustc_hash::FxHashSet::default();
    for ((path, tree, writes), first) in touched.into_iter().zip(first) {
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        if writes && dirs_seen.insert((dir.to_string(), tree)) {
            for d in root.missing_dirs(&path, tree)? {
                if !created.iter().any(|c| c.0 == d) {
                    created.push((d, tree));
                }
            }
        }
        if !first {
            continue;
        }
        let state = match root.probe(&path, tree)? {
            Probe::Absent => "absent".to_string(),
            Probe::Symlink(t) => format!("link:{t}"),
            // The stored config's pre-image has a name of its own, so that cleaning the
            // staging directory can keep it as scratch for the next update (see `clean_staging`).
            Probe::File if path == root.state_path(CURRENT_CONFIG) => {
                format!("staged:{STAGED_CURRENT}")
            }
            Probe::File => format!("staged:{}", preimages.len()),
            Probe::Other => return Err(HostError::refused(&path, "not a regular file")),
        };
        preimages.push(PreImage { path, tree, state });
    }
    for d in root.missing_dirs(&root.state_path(JOURNAL), Tree::Etc)? {
        if !created.iter().any(|c| c.0 == d) {
            created.insert(0, (d, Tree::Etc));
        }
    }
    let journal = Journal {
        old: old.map(|o| o.name.clone()),
        new: new.name.clone(),
        steps: std::borrow::Cow::Borrowed(&report.steps),
        preimages,
        created_dirs: created,
    };
    // Streamed to its file, one line: a large update's journal is megabytes.
    root.write_file_with(&root.state_path(JOURNAL), Tree::Etc, 0o600, 0, 0, |w| {
        serde_json::to_writer(w, &journal).map_err(std::io::Error::from)
    })?;
    tracing::info!(old = ?journal.old, new = %journal.new, steps = steps.len(), "update journal written");
    let result = run_steps(root, &journal, &steps, &mut stored);
    if let Err((step, e)) = result {
        tracing::error!(%step, error = %e, "update step failed, rolling back");
        // The other thread is done with the temp file before the rollback removes it.
        stored.wait();
        return match rollback(root, &journal) {
            Ok(()) => Err(HostError::RolledBack {
                step,
                source: Box::new(e),
            }),
            Err(r) => Err(HostError::RollbackFailed {
                step,
                source: Box::new(e),
                rollback: Box::new(r),
            }),
        };
    }
    clean_staging(root)?;
    log_changes(&journal.new, &steps);
    Ok(report)
}

/// Up to this many changed paths, an update logs each at info level; above it, their number
/// at info and each path at debug level (an update of thousands of files would otherwise
/// flood the journal).
pub const LOG_PATHS_MAX: usize = 20;

/// Logs what a committed update changed: one line per path (`/etc/chrony.conf written for
/// rendered-worker-…`, fields `path`, `change`, `config`), or the count (see
/// [`LOG_PATHS_MAX`]).
fn log_changes(config: &str, steps: &[Step<'_>]) {
    let changed: Vec<(&str, &str)> = steps.iter().filter_map(Step::changed).collect();
    let each_at_info = changed.len() <= LOG_PATHS_MAX;
    if !each_at_info {
        tracing::info!(
            config = %config,
            paths = changed.len(),
            "{} paths changed for {config} (each is logged at debug level)",
            changed.len()
        );
    }
    for (change, path) in changed {
        if each_at_info {
            tracing::info!(config = %config, path = %path, change = %change, "{path} {change} for {config}");
        } else {
            tracing::debug!(config = %config, path = %path, change = %change, "{path} {change} for {config}");
        }
    }
}

fn tag(step: &str) -> impl FnOnce(HostError) -> (String, HostError) + '_ {
    move |e| (step.to_string(), e)
}

fn run_steps(
    root: &Root,
    journal: &Journal<'_>,
    steps: &[Step<'_>],
    stored: &mut Encoded<'_>,
) -> Result<(), (String, HostError)> {
    (|| {
        failpoint!("host::after_journal");
        stage(root, journal)?;
        failpoint!("host::after_staging");
        Ok(())
    })()
    .map_err(tag("stage pre-images"))?;
    let batch = steps.iter().filter(|s| s.batched()).count() >= BATCH_MIN;
    if batch {
        run_batch(root, steps)?;
    }
    for s in steps.iter().filter(|s| !(batch && s.batched())) {
        let name = s.describe(root);
        (|| {
            failpoint!("host::before_op");
            s.run(root, stored)?;
            failpoint!("host::after_op");
            Ok(())
        })()
        .map_err(tag(&name))?;
    }
    let commit = || {
        failpoint!("host::after_currentconfig");
        root.remove(&root.state_path(JOURNAL), Tree::Etc)
    };
    commit().map_err(tag("commit (remove the journal)"))?;
    // Committed: a crash from here on keeps the new config.
    let after_commit = || -> Result<(), HostError> {
        failpoint!("host::after_commit");
        Ok(())
    };
    if let Err(e) = after_commit() {
        tracing::warn!(error = %e, "after commit");
    }
    Ok(())
}

/// The file and symlink writes of a large update, as one batch (see [`BATCH_MIN`]), in step
/// order. Every other step runs after them, in its order: those are removals, restores, the
/// password and the stored config, none of which touches a path a batched step writes (a
/// first-managed path's backup, which must come before its removal, is batched and so comes
/// first).
fn run_batch(root: &Root, steps: &[Step<'_>]) -> Result<(), (String, HostError)> {
    let batched: Vec<&Step<'_>> = steps.iter().filter(|s| s.batched()).collect();
    // The directories the batch writes into are made first, here, in step order: the threads
    // below then only create files in directories that exist, and never race to make one.
    let mut last_dir: Option<(String, Tree)> = None;
    for s in &batched {
        let (path, tree) = s.staged_at(root);
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        if last_dir
            .as_ref()
            .is_some_and(|(d, t)| d == dir && *t == tree)
        {
            continue;
        }
        root.parent_create(&path, tree, &mut Vec::new())
            .map_err(|e| (s.describe(root), e))?;
        last_dir = Some((dir.to_string(), tree));
    }
    let staged = root::in_parallel(
        &batched,
        64,
        || (),
        |(), s| {
            failpoint!("host::before_op");
            s.stage(root)
        },
    )
    .map_err(|(i, e)| (batched[i].describe(root), e))?;
    root.sync_batch(&staged)
        .map_err(tag("sync the files written"))?;
    let mut dirs: Vec<(String, Tree)> = Vec::new();
    let mut seen = rustc_hash::FxHashSet::default();
    for (s, p) in steps.iter().filter(|s| s.batched()).zip(&staged) {
        let dir = (|| {
            let dir = root.finish(p)?;
            failpoint!("host::after_op");
            Ok(dir)
        })()
        .map_err(|e| (s.describe(root), e))?;
        if seen.insert((dir.clone(), p.tree())) {
            dirs.push((dir, p.tree()));
        }
    }
    for (d, tree) in &dirs {
        root.sync_parent(&format!("{d}/x"), *tree)
            .map_err(tag("sync the directories written"))?;
    }
    Ok(())
}

fn stage(root: &Root, journal: &Journal<'_>) -> Result<(), HostError> {
    for p in &journal.preimages {
        if let Some(name) = p.state.strip_prefix("staged:") {
            let dest = format!("{}/{name}", root.state_path(STAGING));
            if !root.hard_link(&p.path, &dest, p.tree)? {
                copy(root, &p.path, p.tree, &dest, Tree::Etc)?;
            }
        }
    }
    root.sync_parent(&format!("{}/x", root.state_path(STAGING)), Tree::Etc)
}

fn rollback(root: &Root, journal: &Journal<'_>) -> Result<(), HostError> {
    for p in journal.preimages.iter().rev() {
        failpoint!("host::rollback::restore");
        root.remove_tmp(&p.path, p.tree)?;
        if p.state == "absent" {
            root.remove(&p.path, p.tree)?;
        } else if let Some(t) = p.state.strip_prefix("link:") {
            root.write_symlink(&p.path, p.tree, t)?;
        } else if let Some(name) = p.state.strip_prefix("staged:") {
            let staged = format!("{}/{name}", root.state_path(STAGING));
            // Missing only when the crash came before staging ended, hence before any step.
            if root.probe(&staged, Tree::Etc)? == Probe::File {
                copy(root, &staged, Tree::Etc, &p.path, p.tree)?;
            }
        }
    }
    // Directories holding the journal go last, once the journal is gone.
    let journal_path = root.state_path(JOURNAL);
    let holds_journal = |d: &str| journal_path.starts_with(&format!("{d}/"));
    for (d, tree) in journal.created_dirs.iter().rev() {
        if !holds_journal(d) {
            root.remove_dir(d, *tree)?;
        }
    }
    root.remove(&root.state_path(JOURNAL), Tree::Etc)?;
    failpoint!("host::rollback::after_journal");
    clean_staging(root)?;
    for (d, tree) in journal.created_dirs.iter().rev() {
        if holds_journal(d) {
            root.remove_dir(d, *tree)?;
        }
    }
    tracing::info!(old = ?journal.old, new = %journal.new, "update rolled back");
    Ok(())
}

/// Empties and removes the staging directory once nothing needs its pre-images (the journal
/// is gone). Nothing here is synced: should a crash undo it, the next recovery cleans again.
///
/// The stored config's pre-image is not unlinked but renamed to the temp name the next store
/// of `currentconfig` writes to, as scratch ([`Root::prepare_file`] overwrites it in place).
/// For a large config with a small change, storing the config is most of an update, and
/// allocating its blocks and pages anew, then freeing the old ones here, was most of that.
/// The scratch file holds a config the node was on; it is the same file the atomic write's
/// leftovers would be, carries no state, and only the stored config's writes use it.
fn clean_staging(root: &Root) -> Result<(), HostError> {
    let staging = root.state_path(STAGING);
    for name in root.list_dir(&staging)? {
        let path = format!("{staging}/{name}");
        if name == STAGED_CURRENT && root.probe(&path, Tree::Etc)? == Probe::File {
            root.rename_unsynced(&path, &scratch_path(root), Tree::Etc)?;
        } else {
            root.discard(&path, Tree::Etc)?;
        }
    }
    root.remove_dir(&staging, Tree::Etc)
}

/// The name of the stored config's pre-image in the staging directory.
const STAGED_CURRENT: &str = "currentconfig";

/// The whole of `old`, a thin config an update was planned from ([`super::state::read_current_thin`]),
/// once that update has replaced `currentconfig`, to put it back after a failed post action:
/// the update's pre-image of `currentconfig` was kept as scratch when its staging directory was
/// cleaned (see `clean_staging`); read it thin first, and only when it is exactly `old`, whole.
/// When `currentconfig` still holds `old` (the update did not rewrite it), that is read.
pub fn read_replaced(root: &Root, old: &MachineConfig) -> Result<MachineConfig, HostError> {
    use super::state::{KEPT_WHOLE, read_stored};
    let current = root.state_path(CURRENT_CONFIG);
    for path in [current, scratch_path(root)] {
        let same = match read_stored(root, &path, true)? {
            Some((mut c, _)) => {
                // Thin as `old` was (a config read whole here has only its kept files whole).
                c.thin_contents(KEPT_WHOLE);
                c == *old
            }
            None => false,
        };
        if same && let Some((c, _)) = read_stored(root, &path, false)? {
            return Ok(c);
        }
    }
    Err(HostError::State {
        path: CURRENT_CONFIG.to_string(),
        reason: format!("the stored copy of {} is gone", old.name),
    })
}

/// The scratch file kept for the next store of `currentconfig` (its temp name).
fn scratch_path(root: &Root) -> String {
    root.state_path(&super::root::tmp_name(CURRENT_CONFIG))
}

/// Recovers an interrupted update: rolls it back (see the module docs). Returns a description
/// of what was recovered, `None` when there was nothing to do.
pub fn recover(root: &Root) -> Result<Option<String>, HostError> {
    root.remove_tmp(&root.state_path(JOURNAL), Tree::Etc)?;
    let data = match root.read(&root.state_path(JOURNAL), Tree::Etc)? {
        Entry::File { data, .. } => data,
        Entry::Absent => {
            clean_staging(root)?;
            // No journal and no stored config: a first apply that crashed before its journal
            // (the stored config's temp file is written ahead) or while its rollback removed
            // the directories it had created. The state directory holds at most that temp
            // file; both go, leaving the node as before its first apply.
            if root.probe(&root.state_path(CURRENT_CONFIG), Tree::Etc)? == Probe::Absent {
                root.discard(&scratch_path(root), Tree::Etc)?;
                root.remove_dir(root.state_dir(), Tree::Etc)?;
            }
            return Ok(None);
        }
        _ => {
            return Err(HostError::State {
                path: root.state_path(JOURNAL),
                reason: "not a regular file".to_string(),
            });
        }
    };
    let journal: Journal = serde_json::from_slice(&data).map_err(|e| HostError::State {
        path: root.state_path(JOURNAL),
        reason: format!("cannot parse the update journal: {e}"),
    })?;
    rollback(root, &journal)?;
    Ok(Some(format!(
        "rolled back the interrupted update from {} to {}",
        journal.new,
        journal.old.as_deref().unwrap_or("(no config)")
    )))
}

/// The whole one-shot update: recover an interrupted update, read the stored current config
/// (none: first apply) and apply `new` over it.
pub fn update(
    root: &Root,
    new: &MachineConfig,
    opts: &ApplyOptions,
) -> Result<ApplyReport, HostError> {
    if !opts.dry_run
        && let Some(r) = recover(root)?
    {
        tracing::warn!("{r}");
    }
    let current = super::state::read_current(root)?;
    apply(root, current.as_ref().map(|c| &c.0), new, opts)
}
