//! Telling systemd how the daemon is doing (`Type=notify`): `READY=1` after the first sync,
//! `STATUS=` a one-line summary, `WATCHDOG=1` at half the watchdog interval, `STOPPING=1`.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.

use sd_notify::NotifyState;
use std::time::Duration;

/// Sends `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Sends `STATUS=<status>`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Sends `WATCHDOG=1`.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// While a long update runs: `WATCHDOG=1`, and `EXTEND_TIMEOUT_USEC` by two intervals so that
/// a first sync that stages OS changes (an image pull, a kernel install) is not taken for a
/// start that hangs (it only extends start-up; once running it changes nothing).
pub fn still_working(interval: Duration) {
    let usec = u32::try_from(interval.as_micros() * 2).unwrap_or(u32::MAX);
    send(&[NotifyState::Watchdog, NotifyState::ExtendTimeoutUsec(usec)]);
}

/// Sends `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, or `None` when no watchdog is set.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
