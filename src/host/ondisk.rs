//! On-disk validation: does the node hold what the config says? One checker for the whole
//! config ([`Manifest::check_all`]) and for one path ([`Manifest::check_path`], what drift
//! detection calls per event), both driven by the [`Record`]s, never by the contents.
//!
//! Compared: the type (a symlink where a file should be is a mismatch; the last component is
//! never followed), the permission bits, the contents (size, then SHA-256). Not compared: owners
//! (as upstream; the update itself does compare them to decide what to rewrite) and times (a
//! touch is not drift). Masked units must be links to `/dev/null`. Absent dropins and unmasked
//! units are not checked. Messages are exactly SPEC §6's.

use super::manifest::{Kind, Manifest, Record};
use super::root::{Entry, Root, Tree, open_file_nofollow};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::fd::OwnedFd;

/// The first difference found between a managed path and its record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("content mismatch for file {0:?}")]
    Content(String),
    #[error(
        "mode mismatch for file: {path:?}; expected: {}; received: {}",
        go_mode(*.expected),
        go_mode(*.received)
    )]
    Mode {
        path: String,
        /// Full `st_mode` (type and permission bits).
        expected: u32,
        received: u32,
    },
    #[error("could not stat file {path:?}: {error}")]
    Stat { path: String, error: String },
    #[error("could not read file {path:?}: {error}")]
    Read { path: String, error: String },
    #[error("unit file {path:?} is expected to be masked (a link to /dev/null) but is not")]
    NotMasked { path: String },
}

impl Mismatch {
    /// The path the mismatch concerns.
    pub fn path(&self) -> &str {
        match self {
            Mismatch::Content(path)
            | Mismatch::Mode { path, .. }
            | Mismatch::Stat { path, .. }
            | Mismatch::Read { path, .. }
            | Mismatch::NotMasked { path } => path,
        }
    }
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// Renders a Unix `st_mode` the way upstream's (Go) messages do: `-rw-r--r--/420/0644`, i.e. Go's
/// `FileMode` string, its decimal value and its octal value (type bits mapped to Go's).
pub fn go_mode(st_mode: u32) -> String {
    let mut go: u32 = st_mode & 0o777;
    go |= match st_mode & S_IFMT {
        0o040000 => 1 << 31,
        S_IFLNK => 1 << 27,
        0o060000 => 1 << 26,
        0o010000 => 1 << 25,
        0o140000 => 1 << 24,
        0o020000 => (1 << 26) | (1 << 21),
        _ => 0,
    };
    if st_mode & 0o4000 != 0 {
        go |= 1 << 23;
    }
    if st_mode & 0o2000 != 0 {
        go |= 1 << 22;
    }
    if st_mode & 0o1000 != 0 {
        go |= 1 << 20;
    }
    let mut s = String::new();
    for (i, c) in "dalTLDpSugct?".chars().enumerate() {
        if go & (1 << (31 - i)) != 0 {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if go & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    let oct = if go == 0 {
        "0".to_string()
    } else {
        format!("0{go:o}")
    };
    format!("{s}/{go}/{oct}")
}

impl Manifest {
    /// Checks one path against its record; an unmanaged path is fine.
    pub fn check_path(&self, root: &Root, path: &str) -> Result<(), Mismatch> {
        match self.get_with_tree(path) {
            Some((rec, tree)) => check_record(root, path, tree, rec),
            None => Ok(()),
        }
    }

    /// Checks every managed path, in path order; the first mismatch is returned.
    pub fn check_all(&self, root: &Root) -> Result<(), Mismatch> {
        match self.scan(root, true).into_iter().next() {
            Some(m) => Err(m),
            None => Ok(()),
        }
    }

    /// Every mismatch, in path order.
    pub fn mismatches(&self, root: &Root) -> Vec<Mismatch> {
        self.scan(root, false)
    }

    /// The mismatches in path order (only the first of each half when `first`). Large manifests
    /// are checked by two threads, each over one half of the paths (in order), so the result is
    /// the same as one pass in order.
    fn scan(&self, root: &Root, first: bool) -> Vec<Mismatch> {
        let records: Vec<(&str, &Record, Tree)> = self.iter().collect();
        let run = |part: &[(&str, &Record, Tree)]| {
            let mut c = Checker::default();
            let mut out = Vec::new();
            for (path, rec, tree) in part {
                if let Err(m) = c.check(root, path, *tree, rec) {
                    out.push(m);
                    if first {
                        break;
                    }
                }
            }
            out
        };
        if records.len() < PARALLEL_MIN {
            return run(&records);
        }
        let (a, b) = records.split_at(records.len() / 2);
        let (mut ra, rb) = std::thread::scope(|s| {
            let hb = s.spawn(|| run(b));
            let ra = run(a);
            (ra, hb.join().expect("validation thread"))
        });
        if !first || ra.is_empty() {
            ra.extend(rb);
        }
        ra
    }
}

/// Below this many records, validation runs on the calling thread only.
const PARALLEL_MIN: usize = 256;

fn stat_err(path: &str, e: impl std::fmt::Display) -> Mismatch {
    Mismatch::Stat {
        path: path.to_string(),
        error: e.to_string(),
    }
}

/// Checks one path against `rec`.
pub fn check_record(root: &Root, path: &str, tree: Tree, rec: &Record) -> Result<(), Mismatch> {
    Checker::default().check(root, path, tree, rec)
}

/// The state kept between consecutive checks: the last parent directory opened (paths come in
/// order, so siblings share it) and a read buffer.
#[derive(Default)]
struct Checker {
    /// The parent directory path and its handle: `Ok(None)` missing, `Err` not reachable
    /// without a symlink (or another error: the careful road decides).
    dir: Option<(String, Result<Option<OwnedFd>, ()>)>,
    buf: Vec<u8>,
}

impl Checker {
    fn check(&mut self, root: &Root, path: &str, tree: Tree, rec: &Record) -> Result<(), Mismatch> {
        match rec.kind {
            Kind::Absent | Kind::Unmasked => Ok(()),
            Kind::MaskLink => match root.read(path, tree) {
                Ok(Entry::Symlink { target }) if target == "/dev/null" => Ok(()),
                Ok(Entry::Absent) => Err(stat_err(path, std::io::Error::from_raw_os_error(2))),
                Ok(_) => Err(Mismatch::NotMasked {
                    path: path.to_string(),
                }),
                Err(e) => Err(stat_err(path, e)),
            },
            Kind::File => self.check_file(root, path, tree, rec),
        }
    }

    /// The fast road: the parent opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)`
    /// (once per directory), the file with `O_NOFOLLOW` beneath it: no symlink is followed
    /// anywhere. Any symlink on the way (or other error) takes the careful road, which resolves
    /// the path with the tree rules of [`Root`].
    fn check_file(
        &mut self,
        root: &Root,
        path: &str,
        tree: Tree,
        rec: &Record,
    ) -> Result<(), Mismatch> {
        let expected = S_IFREG | rec.mode;
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        if self.dir.as_ref().is_none_or(|(p, _)| p != parent) {
            let fd = root.open_dir_nofollow(parent).map_err(|_| ());
            self.dir = Some((parent.to_string(), fd));
        }
        let opened = match &self.dir {
            Some((_, Ok(Some(dir)))) => match open_file_nofollow(dir, name) {
                Ok(Some(x)) => Some(x),
                Ok(None) => return Err(stat_err(path, std::io::Error::from_raw_os_error(2))),
                // A symlink at the end (or another error): take the careful road.
                Err(_) => None,
            },
            Some((_, Ok(None))) => {
                return Err(stat_err(path, std::io::Error::from_raw_os_error(2)));
            }
            _ => None,
        };
        let Some((mut file, st)) = opened else {
            return match root.read(path, tree) {
                Ok(Entry::Absent) => Err(stat_err(path, std::io::Error::from_raw_os_error(2))),
                Ok(Entry::File { data, mode, .. }) => {
                    compare(path, expected, S_IFREG | mode, rec, data.len() as u64)?;
                    if Sha256::digest(&data).as_slice() != rec.sha256 {
                        return Err(Mismatch::Content(path.to_string()));
                    }
                    Ok(())
                }
                Ok(Entry::Symlink { .. }) => compare(path, expected, S_IFLNK | 0o777, rec, 0),
                Ok(Entry::Other { mode }) => compare(path, expected, mode, rec, 0),
                Err(e) => Err(stat_err(path, e)),
            };
        };
        compare(path, expected, st.st_mode, rec, st.st_size as u64)?;
        // The size matched: read exactly that much (one read for small files), hash it.
        self.buf.resize(rec.size as usize, 0);
        if let Err(e) = file.read_exact(&mut self.buf) {
            return Err(Mismatch::Read {
                path: path.to_string(),
                error: e.to_string(),
            });
        }
        if Sha256::digest(&self.buf).as_slice() != rec.sha256 {
            return Err(Mismatch::Content(path.to_string()));
        }
        Ok(())
    }
}

fn compare(
    path: &str,
    expected: u32,
    received: u32,
    rec: &Record,
    size: u64,
) -> Result<(), Mismatch> {
    let received = received & (S_IFMT | 0o7777);
    if received != expected {
        return Err(Mismatch::Mode {
            path: path.to_string(),
            expected,
            received,
        });
    }
    if size != rec.size {
        return Err(Mismatch::Content(path.to_string()));
    }
    Ok(())
}
