//! Watching paths with inotify: the managed files, units and dropins (configuration drift), the
//! desired config, the policy file and the force file.
//!
//! inotify watches directories, not paths: editors and tools replace files by rename, which a
//! watch on the file itself would lose. So every path of interest is watched through its parent
//! directory, or, when that does not exist yet, through its nearest existing ancestor; when the
//! missing directory appears the watch moves down to it. Events are filtered to the paths of
//! interest, so a busy `/etc` costs a hash lookup per event and nothing more.
//!
//! A path of interest can be a file (events on that name in its parent) or a tree (any event in
//! the directory itself, used for a desired-config directory). When the kernel's queue overflows,
//! [`Changes::overflow`] is set: the caller must re-check everything, since events were lost.

use futures_util::StreamExt;
use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask};
use nix::errno::Errno;
use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// Why a path is watched; reported back with every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// A file, unit or dropin of the current config (drift detection).
    Managed,
    /// The force file.
    Force,
    /// The desired config (a file or a directory).
    Desired,
    /// The node disruption policy file.
    Policy,
}

/// Errors of the watcher.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "cannot watch {path}: the inotify watch limit is reached; raise the sysctl fs.inotify.max_user_watches (or fs.inotify.max_user_instances)"
    )]
    Limit { path: PathBuf },
    #[error("cannot watch {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("inotify: {0}")]
    Init(io::Error),
}

/// What changed since the last call to [`PathWatcher::next`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Paths of interest that saw an event, with their topic, sorted.
    pub paths: BTreeSet<(Topic, PathBuf)>,
    /// The kernel dropped events: every path of interest must be re-checked.
    pub overflow: bool,
}

impl Changes {
    /// True when a path of `topic` changed (or events were lost).
    pub fn touches(&self, topic: Topic) -> bool {
        self.overflow || self.paths.iter().any(|(t, _)| *t == topic)
    }

    /// Paths of `topic` that changed.
    pub fn of(&self, topic: Topic) -> impl Iterator<Item = &Path> {
        self.paths
            .iter()
            .filter(move |(t, _)| *t == topic)
            .map(|(_, p)| p.as_path())
    }
}

#[derive(Debug, Clone)]
struct Interest {
    topic: Topic,
    /// A directory whose every event counts (instead of one name in its parent).
    tree: bool,
}

/// Events that can change a file's content, mode, type or presence.
fn dir_mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

/// An inotify instance watching a set of paths (absolute paths, already joined with the root).
pub struct PathWatcher {
    stream: EventStream<Vec<u8>>,
    /// Watched directory of each watch descriptor.
    dirs: HashMap<WatchDescriptor, PathBuf>,
    /// Watch descriptor of each watched directory.
    wds: HashMap<PathBuf, WatchDescriptor>,
    /// Paths of interest, and the directory currently watched for each.
    interests: HashMap<PathBuf, (Interest, PathBuf)>,
    /// For each watched directory, the paths of interest it stands for.
    by_dir: HashMap<PathBuf, BTreeSet<PathBuf>>,
}

impl PathWatcher {
    /// A watcher with nothing watched yet.
    pub fn new() -> Result<Self, WatchError> {
        let inotify = Inotify::init().map_err(WatchError::Init)?;
        let stream = inotify
            .into_event_stream(vec![0u8; 64 * 1024])
            .map_err(WatchError::Init)?;
        Ok(PathWatcher {
            stream,
            dirs: HashMap::new(),
            wds: HashMap::new(),
            interests: HashMap::new(),
            by_dir: HashMap::new(),
        })
    }

    /// Number of paths of interest.
    pub fn len(&self) -> usize {
        self.interests.len()
    }

    /// True when nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.interests.is_empty()
    }

    /// Number of directories watched (inotify watches in use).
    pub fn watched_dirs(&self) -> usize {
        self.wds.len()
    }

    /// Watch the file `path` (through its parent directory).
    pub fn watch_file(&mut self, path: &Path, topic: Topic) -> Result<(), WatchError> {
        self.add(path, Interest { topic, tree: false })
    }

    /// Watch every entry of the directory `path` (and the directory itself appearing).
    pub fn watch_tree(&mut self, path: &Path, topic: Topic) -> Result<(), WatchError> {
        self.add(path, Interest { topic, tree: true })
    }

    /// Stop watching every path of `topic`; directories left with no interest are unwatched.
    pub fn forget(&mut self, topic: Topic) {
        let gone: Vec<PathBuf> = self
            .interests
            .iter()
            .filter(|(_, (i, _))| i.topic == topic)
            .map(|(p, _)| p.clone())
            .collect();
        for path in gone {
            if let Some((_, dir)) = self.interests.remove(&path) {
                self.unlink(&path, &dir);
            }
        }
    }

    fn add(&mut self, path: &Path, interest: Interest) -> Result<(), WatchError> {
        let path = path.to_path_buf();
        if let Some((_, dir)) = self.interests.remove(&path) {
            self.unlink(&path, &dir);
        }
        let dir = self.arm(&path, interest.tree)?;
        self.by_dir
            .entry(dir.clone())
            .or_default()
            .insert(path.clone());
        self.interests.insert(path, (interest, dir));
        Ok(())
    }

    /// Removes `path` from `dir`'s set, and unwatches `dir` if nothing is left.
    fn unlink(&mut self, path: &Path, dir: &Path) {
        let empty = match self.by_dir.get_mut(dir) {
            Some(set) => {
                set.remove(path);
                set.is_empty()
            }
            None => false,
        };
        if empty {
            self.by_dir.remove(dir);
            if let Some(wd) = self.wds.remove(dir) {
                self.dirs.remove(&wd);
                // The directory may be gone already; the kernel dropped the watch then.
                let _ = self.stream.watches().remove(wd);
            }
        }
    }

    /// Watches the directory that stands for `path` and returns it: the path itself for a tree
    /// that exists, else its parent if that exists, else the nearest existing ancestor.
    fn arm(&mut self, path: &Path, tree: bool) -> Result<PathBuf, WatchError> {
        let mut dir = if tree {
            path.to_path_buf()
        } else {
            parent(path)
        };
        loop {
            match self.watch_dir(&dir) {
                Ok(()) => return Ok(dir),
                Err(WatchError::Io { source, .. })
                    if matches!(
                        source.raw_os_error().map(Errno::from_raw),
                        Some(Errno::ENOENT | Errno::ENOTDIR)
                    ) =>
                {
                    // The directory does not exist (yet): go one level up.
                    let up = parent(&dir);
                    if up == dir {
                        return Err(WatchError::Io { path: dir, source });
                    }
                    dir = up;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn watch_dir(&mut self, dir: &Path) -> Result<(), WatchError> {
        if self.wds.contains_key(dir) {
            return Ok(());
        }
        match self.stream.watches().add(dir, dir_mask()) {
            Ok(wd) => {
                if let Some(old) = self.dirs.insert(wd.clone(), dir.to_path_buf()) {
                    // The kernel reuses a descriptor for the same inode seen by another name.
                    self.wds.remove(&old);
                }
                self.wds.insert(dir.to_path_buf(), wd);
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(Errno::ENOSPC as i32) => Err(WatchError::Limit {
                path: dir.to_path_buf(),
            }),
            Err(source) => Err(WatchError::Io {
                path: dir.to_path_buf(),
                source,
            }),
        }
    }

    /// Waits for the next batch of events and returns the paths of interest they concern.
    /// Events that are already queued are read in the same batch, so a burst of writes to one
    /// file is reported once. Returns `None` when the inotify stream ends.
    pub async fn next(&mut self) -> Option<Result<Changes, WatchError>> {
        let mut changes = Changes::default();
        let first = self.stream.next().await?;
        let mut events = vec![first];
        while let Some(Some(more)) = futures_util::FutureExt::now_or_never(self.stream.next()) {
            events.push(more);
        }
        let mut rearm: BTreeSet<PathBuf> = BTreeSet::new();
        for ev in events {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => return Some(Err(WatchError::Init(e))),
            };
            self.on_event(ev.wd, ev.mask, ev.name, &mut changes, &mut rearm);
        }
        for path in rearm {
            if let Some((interest, dir)) = self.interests.remove(&path) {
                self.unlink(&path, &dir);
                if let Err(e) = self.add(&path, interest) {
                    return Some(Err(e));
                }
            }
        }
        Some(Ok(changes))
    }

    fn on_event(
        &mut self,
        wd: WatchDescriptor,
        mask: EventMask,
        name: Option<OsString>,
        changes: &mut Changes,
        rearm: &mut BTreeSet<PathBuf>,
    ) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            changes.overflow = true;
            // Directories may have come or gone unseen: re-arm everything.
            rearm.extend(self.interests.keys().cloned());
            return;
        }
        let Some(dir) = self.dirs.get(&wd).cloned() else {
            return;
        };
        let Some(paths) = self.by_dir.get(&dir) else {
            return;
        };
        if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED) {
            // The watched directory went away: everything it stood for changed, and must be
            // watched through an ancestor now.
            for p in paths {
                let (interest, _) = &self.interests[p];
                changes.paths.insert((interest.topic, p.clone()));
                rearm.insert(p.clone());
            }
            if mask.contains(EventMask::IGNORED) {
                self.dirs.remove(&wd);
                self.wds.remove(&dir);
            }
            return;
        }
        let Some(name) = name else { return };
        let full = dir.join(name);
        for p in paths {
            let (interest, _) = &self.interests[p];
            if interest.tree && p == &dir {
                changes.paths.insert((interest.topic, p.clone()));
            } else if p == &full {
                changes.paths.insert((interest.topic, p.clone()));
                if interest.tree {
                    // The tree's directory itself was created, removed or replaced.
                    rearm.insert(p.clone());
                }
            } else if p.starts_with(&full) {
                // A missing ancestor of the path appeared or vanished: watch closer to it.
                changes.paths.insert((interest.topic, p.clone()));
                rearm.insert(p.clone());
            }
        }
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"))
}
