//! inotify queue overflow (IN_Q_OVERFLOW) makes the daemon validate every managed path, so a
//! drift whose event was dropped is still found. Needs root: the queue size
//! (`fs.inotify.max_queued_events`) is lowered while the daemon creates its inotify instance
//! (the kernel reads the limit then) and restored right after it is up. Its own test binary, and
//! the tests of this file take turns, so no other daemon starts while the limit is low.

mod daemon_common;
mod precondition;
use daemon_common::*;
use std::sync::Mutex;

const SYSCTL: &str = "/proc/sys/fs/inotify/max_queued_events";

/// One overflow scenario at a time (the sysctl is global).
static SYSCTL_LOCK: Mutex<()> = Mutex::new(());

/// Puts the sysctl back on drop (also when the test fails).
struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

/// A daemon whose inotify queue holds 16 events, on five managed files in `/etc/app`; `None`
/// when the sysctl cannot be lowered here (a failure in CI, a skip that says why elsewhere).
fn daemon_with_a_small_queue() -> Option<(Node, Daemon, inotify::Inotify)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        precondition::missing(&format!("root, to lower {SYSCTL}"));
        return None;
    }
    let Ok(old) = std::fs::read_to_string(SYSCTL) else {
        precondition::missing(&format!("{SYSCTL} readable"));
        return None;
    };
    let old = old.trim().to_string();
    let node = Node::new();
    let files: Vec<_> = (0..5)
        .map(|i| file(&format!("/etc/app/f{i}.conf"), "managed\n"))
        .collect();
    node.set_desired(&mc("rendered-worker-a", files));
    if std::fs::write(SYSCTL, "16").is_err() {
        precondition::missing(&format!("{SYSCTL} writable"));
        return None;
    }
    let restore = Restore(old.clone());
    let d = Daemon::start(&node, StartOpts::default());
    d.wait_done("rendered-worker-a");
    // A control instance with the same small queue, read only after the burst: it proves the
    // burst overflows such a queue.
    let control = inotify::Inotify::init().unwrap();
    control
        .watches()
        .add(node.path("/etc/app"), inotify::WatchMask::ALL_EVENTS)
        .unwrap();
    drop(restore);
    assert_eq!(std::fs::read_to_string(SYSCTL).unwrap().trim(), old);
    Some((node, d, control))
}

/// With the daemon stopped: 600 events in the watched directory, then the drift of
/// `/etc/app/f3.conf` (its events are past the end of the full queue: only a full validation
/// can find it).
fn burst_then_drift(node: &Node, d: &Daemon, control: &mut inotify::Inotify) {
    d.signal(libc::SIGSTOP);
    for i in 0..200 {
        std::fs::write(node.path(&format!("/etc/app/noise{i}")), "n").unwrap();
    }
    std::fs::write(
        node.path("/etc/app/f3.conf"),
        "drifted while the queue was full\n",
    )
    .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let overflowed = control
        .read_events(&mut buf)
        .unwrap()
        .any(|e| e.mask.contains(inotify::EventMask::Q_OVERFLOW));
    assert!(overflowed, "the burst must overflow a queue of 16 events");
    d.signal(libc::SIGCONT);
}

#[test]
fn queue_overflow_triggers_a_full_validation() {
    let _turn = SYSCTL_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let Some((node, mut d, mut control)) = daemon_with_a_small_queue() else {
        return;
    };
    burst_then_drift(&node, &d, &mut control);
    let reason = d.wait_degraded();
    assert_eq!(reason, "content mismatch for file \"/etc/app/f3.conf\"");
    assert!(d.is_running());

    // The watches still work after the overflow (they were re-armed).
    std::fs::write(node.path("/etc/app/f3.conf"), "managed\n").unwrap();
    d.wait_done("rendered-worker-a");
    std::fs::remove_file(node.path("/etc/app/f1.conf")).unwrap();
    let reason = d.wait_degraded();
    assert!(reason.contains("/etc/app/f1.conf"), "{reason}");
}

#[test]
fn queue_overflow_is_logged() {
    let _turn = SYSCTL_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let Some((node, d, mut control)) = daemon_with_a_small_queue() else {
        return;
    };
    burst_then_drift(&node, &d, &mut control);
    d.wait_degraded();
    let log = d.log();
    assert!(log.contains("inotify queue overflow"), "{log}");
}
