//! One daemon per node: an exclusive `flock(2)` on `<state dir>/lock` beneath the root, held by
//! every command that changes the root (`start` for its whole life, `apply` unless it is a dry
//! run). The holder writes its PID into the file, so that a second one can say who holds it.
//!
//! Choices:
//! - `flock`, not a PID file: the kernel releases the lock when its holder dies, however it
//!   dies (SIGKILL, a crash), so a stale lock never needs cleaning up. The file itself is never
//!   removed (removing it would let two processes lock two different files).
//! - `force` takes no lock: it only creates the force file, which the running daemon acts on
//!   under its own lock.
//! - [`holder`] (what `status` asks) probes with a shared lock, which it drops at once. An
//!   exclusive attempt that meets only such probes retries instead of failing, so a `status`
//!   running at the same moment never makes a `start` fail.

use super::HostError;
use super::root::{Root, Tree, open_file_nofollow};
use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "lock";

/// The lock, held until dropped (or until the process ends).
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
    path: String,
}

impl Lock {
    /// The lock file, as a path on the node.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("another machine-config-daemon (pid {}) holds {path}", pid.map_or("unknown".to_string(), |p| p.to_string()))]
    Held { pid: Option<u32>, path: String },
    /// The lock file could not be created, opened or locked.
    #[error("{0}")]
    Host(#[from] HostError),
}

/// How [`acquire`] behaves when another process holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Fail at once with [`LockError::Held`].
    No,
    /// Block until the holder lets go.
    Yes,
}

/// Takes the lock of `root`'s state directory (created if missing) and writes this process's
/// PID in it. With [`Wait::Yes`], `waiting` is called once with the holder's PID before blocking.
pub fn acquire(
    root: &Root,
    wait: Wait,
    waiting: impl FnOnce(Option<u32>),
) -> Result<Lock, LockError> {
    let path = root.state_path(LOCK_FILE);
    let mut created = Vec::new();
    let parent = root.parent_create(&path, Tree::Etc, &mut created)?;
    let fd: OwnedFd = rfs::openat(
        &parent.dir,
        parent.name.as_str(),
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| HostError::io("open", &path, e))?;
    let st = rfs::fstat(&fd).map_err(|e| HostError::io("stat", &path, e))?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
        return Err(HostError::refused(&path, "the lock file is not a regular file").into());
    }
    let mut file = std::fs::File::from(fd);
    let mut waiting = Some(waiting);
    loop {
        match rfs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(Errno::WOULDBLOCK) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(HostError::io("lock", &path, e).into()),
        }
        // Held. By a shared probe ([`holder`]), which lets go at once: try again. By another
        // exclusive holder: fail, or wait for it.
        let probe = open_again(root, &path)?;
        match probe
            .as_ref()
            .map(|f| rfs::flock(f, FlockOperation::NonBlockingLockShared))
        {
            Some(Ok(())) | None => {
                drop(probe);
                std::thread::yield_now();
                continue;
            }
            Some(Err(Errno::WOULDBLOCK)) => {}
            Some(Err(Errno::INTR)) => continue,
            Some(Err(e)) => return Err(HostError::io("lock", &path, e).into()),
        }
        let pid = read_pid(&mut file);
        if wait == Wait::No {
            return Err(LockError::Held { pid, path });
        }
        if let Some(w) = waiting.take() {
            w(pid);
        }
        match rfs::flock(&file, FlockOperation::LockExclusive) {
            Ok(()) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(HostError::io("lock", &path, e).into()),
        }
    }
    let write = |file: &mut std::fs::File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
    };
    write(&mut file).map_err(|e| HostError::io("write", &path, e))?;
    Ok(Lock { _file: file, path })
}

/// Who holds the lock of `root`'s state directory: `Ok(None)` when nobody does (or there is no
/// lock file), `Ok(Some(pid))` when a process does (`pid` is `None` when it has not written it
/// yet, or wrote something else).
pub fn holder(root: &Root) -> Result<Option<Option<u32>>, HostError> {
    let path = root.state_path(LOCK_FILE);
    let Some(mut file) = open_again(root, &path)? else {
        return Ok(None);
    };
    loop {
        return match rfs::flock(&file, FlockOperation::NonBlockingLockShared) {
            // Free: the shared lock is dropped with the file.
            Ok(()) => Ok(None),
            Err(Errno::WOULDBLOCK) => Ok(Some(read_pid(&mut file))),
            Err(Errno::INTR) => continue,
            Err(e) => Err(HostError::io("lock", &path, e)),
        };
    }
}

/// True when `root` has its state directory (a directory, reached through no symlink).
pub fn state_dir_exists(root: &Root) -> Result<bool, HostError> {
    let dir = root.state_dir();
    match root.open_dir_nofollow(dir) {
        Ok(found) => Ok(found.is_some()),
        Err(Errno::NOTDIR) => Ok(false),
        Err(e) => Err(HostError::io("open", dir, e)),
    }
}

/// Opens the lock file read-only (`None` when it or its directory is missing).
fn open_again(root: &Root, path: &str) -> Result<Option<std::fs::File>, HostError> {
    let Some(parent) = root.parent(path, Tree::Etc)? else {
        return Ok(None);
    };
    match open_file_nofollow(&parent.dir, &parent.name) {
        Ok(found) => Ok(found.map(|(f, _)| f)),
        Err(e) => Err(HostError::io("open", path, e)),
    }
}

/// The PID written in the lock file, if it holds one.
fn read_pid(file: &mut std::fs::File) -> Option<u32> {
    let mut s = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_free_once_dropped() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        assert!(!state_dir_exists(&root).unwrap());
        assert_eq!(holder(&root).unwrap(), None);

        let lock = acquire(&root, Wait::No, |_| unreachable!()).unwrap();
        assert_eq!(lock.path(), "/etc/machine-config-daemon/lock");
        assert!(state_dir_exists(&root).unwrap());
        let me = std::process::id();
        assert_eq!(holder(&root).unwrap(), Some(Some(me)));
        // Another open file description conflicts, even in the same process.
        match acquire(&root, Wait::No, |_| unreachable!()) {
            Err(e @ LockError::Held { .. }) => assert_eq!(
                e.to_string(),
                format!(
                    "another machine-config-daemon (pid {me}) holds /etc/machine-config-daemon/lock"
                )
            ),
            other => panic!("{other:?}"),
        }
        drop(lock);
        assert_eq!(holder(&root).unwrap(), None);
        let again = acquire(&root, Wait::No, |_| unreachable!()).unwrap();
        assert_eq!(holder(&root).unwrap(), Some(Some(me)));
        drop(again);
    }

    #[test]
    fn a_lock_file_that_is_not_a_regular_file_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("etc/machine-config-daemon");
        std::fs::create_dir_all(&dir).unwrap();
        nix::unistd::mkfifo(
            &dir.join("lock"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let root = Root::open(t.path()).unwrap();
        let e = acquire(&root, Wait::No, |_| {}).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/machine-config-daemon/lock: the lock file is not a regular file"
        );
    }
}
