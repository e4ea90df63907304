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
//!
//! Layout: one record per watched directory (a few hundred for a node's config), found by path
//! or by watch descriptor. It holds the paths of interest it stands for, relative to itself: the
//! files whose parent it is in a hash map keyed by file name (the common case; an event's name is
//! looked up there, whatever the number of files in the directory), the paths below a missing
//! directory in a list of relative paths (short, and empty once the directories exist), and a
//! tree interest on the directory itself as a field. Full paths are rebuilt only to report a
//! change or to re-arm. So a file costs one slot of its directory's map (the boxed name and the
//! topic, 24 bytes, over the map's load factor) plus its name's allocation: about 50 bytes of
//! heap and one allocation per path (`cargo bench --bench watch` measures it). There is no map
//! of all paths: finding a path again (when it is re-added) walks its ancestors, O(depth).
//!
//! The kernel gives one watch descriptor per inode: a directory watched under two names (a
//! symlink, a bind mount, a rename not yet seen) shares it, so a descriptor maps to one record
//! per name, and events are reported under each.

use futures_util::StreamExt;
use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask};
use nix::errno::Errno;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};

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
    /// Standalone mode's ControllerConfig file (the CA bundles).
    ControllerConfig,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interest {
    topic: Topic,
    /// A directory whose every event counts (instead of one name in its parent).
    tree: bool,
}

/// Where a path of interest sits relative to the directory watched for it.
enum Rest<'a> {
    /// The directory itself (a tree).
    Here,
    /// A name in the directory.
    Name(&'a OsStr),
    /// Below a missing directory: two components or more.
    Deep(&'a Path),
}

impl<'a> Rest<'a> {
    /// `path` relative to `dir`, one of its ancestors (or itself).
    fn of(path: &'a Path, dir: &Path) -> Option<Self> {
        let rest = path.strip_prefix(dir).ok()?;
        let mut comps = rest.components();
        Some(match (comps.next(), comps.next()) {
            (None, _) => Rest::Here,
            (Some(name), None) => Rest::Name(name.as_os_str()),
            _ => Rest::Deep(rest),
        })
    }
}

/// A watched directory and the paths of interest it stands for, relative to it.
#[derive(Debug)]
struct Dir {
    path: PathBuf,
    /// A tree interest on the directory itself.
    tree: Option<Topic>,
    /// Paths of interest whose parent is this directory, by file name. A tree interest here is a
    /// missing directory, watched through its parent until it appears.
    names: HashMap<Box<OsStr>, Interest>,
    /// Paths of interest below a directory of this one that is missing, relative to this one.
    deep: Vec<(Box<Path>, Interest)>,
}

impl Dir {
    fn new(path: &Path) -> Self {
        Dir {
            path: path.to_path_buf(),
            tree: None,
            names: HashMap::new(),
            deep: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        usize::from(self.tree.is_some()) + self.names.len() + self.deep.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn put(&mut self, rest: Rest, interest: Interest) {
        match rest {
            Rest::Here => self.tree = Some(interest.topic),
            Rest::Name(name) => {
                self.names.insert(name.into(), interest);
            }
            Rest::Deep(rest) => self.deep.push((rest.into(), interest)),
        }
    }

    fn take(&mut self, rest: Rest) -> Option<Interest> {
        match rest {
            Rest::Here => self.tree.take().map(|topic| Interest { topic, tree: true }),
            Rest::Name(name) => self.names.remove(name),
            Rest::Deep(rest) => {
                let i = self.deep.iter().position(|(r, _)| **r == *rest)?;
                Some(self.deep.swap_remove(i).1)
            }
        }
    }

    /// Drops the interests of `topic`; returns how many.
    fn forget(&mut self, topic: Topic) -> usize {
        let before = self.len();
        if self.tree == Some(topic) {
            self.tree = None;
        }
        self.names.retain(|_, i| i.topic != topic);
        self.deep.retain(|(_, i)| i.topic != topic);
        let gone = before - self.len();
        if gone > 0 {
            self.names.shrink_to_fit();
            self.deep.shrink_to_fit();
        }
        gone
    }

    /// Every path of interest, as a full path.
    fn interests(&self) -> impl Iterator<Item = (PathBuf, Interest)> + '_ {
        let tree = self
            .tree
            .map(|topic| (self.path.clone(), Interest { topic, tree: true }));
        let names = self.names.iter().map(|(n, i)| (self.path.join(&**n), *i));
        let deep = self.deep.iter().map(|(r, i)| (self.path.join(r), *i));
        tree.into_iter().chain(names).chain(deep)
    }
}

/// What a batch of events calls for, besides the changes reported.
#[derive(Default)]
struct Rearm {
    /// Paths of interest taken out of their directory, to be watched again.
    paths: BTreeMap<PathBuf, Interest>,
    /// Directories some of them were taken from: unwatched if nothing is left in them.
    from: BTreeSet<PathBuf>,
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

fn missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ENOENT | Errno::ENOTDIR)
    )
}

/// An inotify instance watching a set of paths (absolute paths, already joined with the root).
pub struct PathWatcher {
    stream: EventStream<Vec<u8>>,
    /// Watch descriptor of each watched directory.
    wds: HashMap<PathBuf, WatchDescriptor>,
    /// The directories behind each watch descriptor: one, or one per name the kernel saw the
    /// same directory under.
    dirs: HashMap<WatchDescriptor, Vec<Dir>>,
    /// Number of paths of interest.
    len: usize,
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
            wds: HashMap::new(),
            dirs: HashMap::new(),
            len: 0,
        })
    }

    /// Number of paths of interest.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of directories watched (inotify watches in use).
    pub fn watched_dirs(&self) -> usize {
        self.dirs.len()
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
        let mut empty = Vec::new();
        for dir in self.dirs.values_mut().flatten() {
            self.len -= dir.forget(topic);
            if dir.is_empty() {
                empty.push(dir.path.clone());
            }
        }
        for dir in empty {
            self.prune(&dir);
        }
    }

    /// Makes `paths` (files) the paths of interest of `topic`: new ones are added, the others
    /// of that topic dropped, and a directory that still stands for something keeps its watch
    /// (and the events already queued for it) throughout.
    pub fn replace(&mut self, topic: Topic, paths: &[PathBuf]) -> Result<(), WatchError> {
        let keep: std::collections::HashSet<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let mut gone: Vec<PathBuf> = Vec::new();
        for dir in self.dirs.values().flatten() {
            gone.extend(
                dir.interests()
                    .filter(|(p, i)| i.topic == topic && (i.tree || !keep.contains(p.as_path())))
                    .map(|(p, _)| p),
            );
        }
        for p in &gone {
            if let Some(dir) = self.take(p) {
                let dir = dir.to_path_buf();
                self.prune(&dir);
            }
        }
        for p in paths {
            self.add(p, Interest { topic, tree: false })?;
        }
        Ok(())
    }

    fn dir_mut(&mut self, path: &Path) -> Option<&mut Dir> {
        let wd = self.wds.get(path)?;
        self.dirs.get_mut(wd)?.iter_mut().find(|d| d.path == path)
    }

    fn add(&mut self, path: &Path, interest: Interest) -> Result<(), WatchError> {
        let old = self.take(path);
        let armed = self.arm(path, interest.tree);
        if let Ok(dir) = armed {
            let rest = Rest::of(path, dir).expect("watched through an ancestor");
            self.dir_mut(dir)
                .expect("a watched directory has its record")
                .put(rest, interest);
            self.len += 1;
        }
        if let Some(old) = old {
            self.prune(old);
        }
        armed.map(|_| ())
    }

    /// Takes `path` out of the directory it is watched through, if it is watched: that is one of
    /// its ancestors (or itself, for a tree). Returns that directory.
    fn take<'p>(&mut self, path: &'p Path) -> Option<&'p Path> {
        for dir in path.ancestors() {
            let Some(d) = self.dir_mut(dir) else {
                continue;
            };
            if d.take(Rest::of(path, dir)?).is_some() {
                self.len -= 1;
                return Some(dir);
            }
        }
        None
    }

    /// Unwatches `dir` if it stands for nothing any more.
    fn prune(&mut self, dir: &Path) {
        let Some(wd) = self.wds.get(dir).cloned() else {
            return;
        };
        let Some(list) = self.dirs.get_mut(&wd) else {
            return;
        };
        let Some(i) = list.iter().position(|d| d.path == dir && d.is_empty()) else {
            return;
        };
        list.swap_remove(i);
        self.wds.remove(dir);
        if list.is_empty() {
            self.dirs.remove(&wd);
            // The directory may be gone already; the kernel dropped the watch then.
            let _ = self.stream.watches().remove(wd);
        }
    }

    /// Watches the directory that stands for `path` and returns it: the path itself for a tree
    /// that exists, else its parent if that exists, else the nearest existing ancestor.
    fn arm<'p>(&mut self, path: &'p Path, tree: bool) -> Result<&'p Path, WatchError> {
        let mut dirs = path.ancestors();
        if !tree {
            dirs.next();
        }
        let mut err = None;
        for dir in dirs {
            match self.watch_dir(dir) {
                Ok(()) => return Ok(dir),
                // The directory does not exist (yet): go one level up.
                Err(WatchError::Io { source, .. }) if missing(&source) => {
                    err.get_or_insert(WatchError::Io {
                        path: dir.to_path_buf(),
                        source,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Err(err.unwrap_or_else(|| WatchError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "no directory to watch"),
        }))
    }

    fn watch_dir(&mut self, dir: &Path) -> Result<(), WatchError> {
        if self.wds.contains_key(dir) {
            return Ok(());
        }
        match self.stream.watches().add(dir, dir_mask()) {
            Ok(wd) => {
                // The kernel reuses a descriptor for the same inode seen by another name: the
                // directory gets one record per name.
                self.dirs.entry(wd.clone()).or_default().push(Dir::new(dir));
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
        let mut rearm = Rearm::default();
        for ev in events {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => return Some(Err(WatchError::Init(e))),
            };
            self.on_event(ev.wd, ev.mask, ev.name, &mut changes, &mut rearm);
        }
        let mut failed = None;
        for (path, interest) in rearm.paths {
            if let Err(e) = self.add(&path, interest) {
                failed.get_or_insert(e);
            }
        }
        for dir in rearm.from {
            self.prune(&dir);
        }
        match failed {
            Some(e) => Some(Err(e)),
            None => Some(Ok(changes)),
        }
    }

    fn on_event(
        &mut self,
        wd: WatchDescriptor,
        mask: EventMask,
        name: Option<OsString>,
        changes: &mut Changes,
        rearm: &mut Rearm,
    ) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            changes.overflow = true;
            // Directories may have come or gone unseen: re-arm everything.
            for (wd, list) in self.dirs.drain() {
                for dir in list {
                    rearm.paths.extend(dir.interests());
                }
                let _ = self.stream.watches().remove(wd);
            }
            self.wds.clear();
            self.len = 0;
            return;
        }
        if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED) {
            // The watched directory went away: everything it stood for changed, and must be
            // watched through an ancestor now.
            let Some(list) = self.dirs.remove(&wd) else {
                return;
            };
            if !mask.contains(EventMask::IGNORED) {
                let _ = self.stream.watches().remove(wd);
            }
            for dir in list {
                self.wds.remove(&dir.path);
                self.len -= dir.len();
                for (path, interest) in dir.interests() {
                    changes.paths.insert((interest.topic, path.clone()));
                    rearm.paths.insert(path, interest);
                }
            }
            return;
        }
        let Some(name) = name else { return };
        let Some(list) = self.dirs.get_mut(&wd) else {
            return;
        };
        for dir in list {
            if let Some(topic) = dir.tree {
                changes.paths.insert((topic, dir.path.clone()));
            }
            if let Some(&interest) = dir.names.get(name.as_os_str()) {
                let path = dir.path.join(&name);
                changes.paths.insert((interest.topic, path.clone()));
                if interest.tree {
                    // The tree's directory itself was created, removed or replaced.
                    dir.names.remove(name.as_os_str());
                    self.len -= 1;
                    rearm.paths.insert(path, interest);
                    rearm.from.insert(dir.path.clone());
                }
            }
            if dir.deep.is_empty() {
                continue;
            }
            let before = dir.deep.len();
            dir.deep.retain(|(rest, interest)| {
                if rest.components().next().map(Component::as_os_str) != Some(name.as_os_str()) {
                    return true;
                }
                // A missing ancestor of the path appeared or vanished: watch closer to it.
                let path = dir.path.join(rest);
                changes.paths.insert((interest.topic, path.clone()));
                rearm.paths.insert(path, *interest);
                false
            });
            if dir.deep.len() < before {
                self.len -= before - dir.deep.len();
                rearm.from.insert(dir.path.clone());
            }
        }
    }
}
