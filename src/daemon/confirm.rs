//! Try mode: an update is applied *on trial* and reverted unless the health checks confirm it
//! within `--confirm-timeout` (or the daemon configuration file's `tryMode.confirmTimeout`).
//! Off by default: without a timeout the daemon behaves exactly as upstream.
//!
//! ```yaml
//! tryMode:
//!   confirmTimeout: 5m     # off when absent; 1s to 24h
//!   checkInterval: 10s     # how often the checks run while pending; 100ms to 1h
//!   checkTimeout: 30s      # each check is killed after this and counts as failed; 100ms to 1h
//! ```
//!
//! This module holds the configuration, the journal record and the confirmation state machine
//! as a pure function ([`step`]: record × event → record + effects). The checks are in
//! [`super::health`], the wiring (timer, revert, status) in `daemon::run::confirm`.
//!
//! **States** (the record's [`Phase`]; no record: nothing on trial):
//! - `Applying`: written atomically *before* the update's transaction commits, naming the
//!   previous config (`from`, saved whole beside the record) and the new one (`to`), the
//!   timeout and whether the plan reboots.
//! - `AwaitingReboot`: the update committed and asked for a reboot; the checks start once the
//!   node is up again.
//! - `Checking`: pending confirmation until `deadline` (Unix milliseconds).
//! - `Reverting`: the checks did not pass in time; the revert to `from` is under way.
//! - `Rejected`: reverted. `to` is remembered: the daemon does not apply it again until the
//!   desired config changes (or the force file appears); the node is `Degraded` with the
//!   failing check's name and output meanwhile.
//!
//! **Choices.**
//! - The deadline counts from when the update is done and, for an update that reboots, from
//!   when the daemon starts after that reboot (the whole timeout again: a boot's length must
//!   not eat the trial; staged OS changes with no systemd to reboot wait for the boot into
//!   them, told by the boot id the record keeps). A daemon restarted within one boot (a crash, `kill -9`) resumes with
//!   the time that was left (the deadline is wall-clock time kept in the record).
//! - The first apply (no previous config) is never on trial: there is nothing to go back to.
//!   Neither is a forced re-apply (the force file), the administrator's own hammer.
//! - A new desired config arriving while one is pending is applied on trial too, and a revert
//!   goes back to the last *confirmed* config (the record keeps the first `from`).
//! - The revert is the update flow itself, with the old and new configs swapped: the node
//!   disruption policy's actions run for what changes back, the OS fields are planned back
//!   through the OS backend, and it reboots when the reverse plan does — under a policy that
//!   is the same for both directions (the defaults are), that is exactly when the update did.
//! - A revert interrupted (crash, reboot) is finished on the next start: the record still
//!   says `Reverting`, and applying `from` over `to` again is idempotent.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The journal record, in the state directory.
pub const RECORD: &str = "try-pending";
/// The config to revert to (whole), in the state directory.
pub const PREVIOUS: &str = "try-previous";

/// `checkInterval` without a value.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// `checkTimeout` without a value.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
const MIN_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
const MIN_SHORT: Duration = Duration::from_millis(100);
const MAX_SHORT: Duration = Duration::from_secs(3600);

/// Try mode's settings. `confirm_timeout` None: off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TryMode {
    pub confirm_timeout: Option<Duration>,
    pub check_interval: Duration,
    pub check_timeout: Duration,
}

impl Default for TryMode {
    fn default() -> Self {
        TryMode {
            confirm_timeout: None,
            check_interval: DEFAULT_INTERVAL,
            check_timeout: DEFAULT_CHECK_TIMEOUT,
        }
    }
}

impl TryMode {
    pub fn enabled(&self) -> bool {
        self.confirm_timeout.is_some()
    }
}

/// Checks a `confirmTimeout` / `--confirm-timeout` value: 1s to 24h.
pub fn check_confirm_timeout(d: Duration) -> Result<Duration, String> {
    if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d) {
        Ok(d)
    } else {
        Err("expected a duration from 1s to 24h".into())
    }
}

/// Checks a `checkInterval` / `checkTimeout` value: 100ms to 1h.
pub fn check_short(d: Duration) -> Result<Duration, String> {
    if (MIN_SHORT..=MAX_SHORT).contains(&d) {
        Ok(d)
    } else {
        Err("expected a duration from 100ms to 1h".into())
    }
}

/// Parses the `tryMode` section of the daemon configuration file; errors are (field, message).
pub fn parse_section(v: &serde_json::Value) -> Result<TryMode, Vec<(String, String)>> {
    use serde_json::Value;
    let mut t = TryMode::default();
    let mut errors = Vec::new();
    let m = match v {
        Value::Null => return Ok(t),
        Value::Object(m) => m,
        _ => {
            return Err(vec![(
                "tryMode".into(),
                "expected a mapping (confirmTimeout, checkInterval, checkTimeout)".into(),
            )]);
        }
    };
    for (k, v) in m {
        let field = format!("tryMode.{k}");
        let parsed = match v {
            Value::String(s) => humantime::parse_duration(s).map_err(|e| format!("{v}: {e}")),
            _ => Err(format!("{v}: expected a duration such as 30s or 5m")),
        };
        let bounded = |r: Result<Duration, String>| r.map_err(|e| format!("{v}: {e}"));
        let checked = match k.as_str() {
            "confirmTimeout" => parsed.and_then(|d| {
                bounded(check_confirm_timeout(d)).map(|d| t.confirm_timeout = Some(d))
            }),
            "checkInterval" => {
                parsed.and_then(|d| bounded(check_short(d)).map(|d| t.check_interval = d))
            }
            "checkTimeout" => {
                parsed.and_then(|d| bounded(check_short(d)).map(|d| t.check_timeout = d))
            }
            _ => {
                Err("unknown field (expected confirmTimeout, checkInterval or checkTimeout)".into())
            }
        };
        if let Err(m) = checked {
            errors.push((field, m));
        }
    }
    if errors.is_empty() {
        Ok(t)
    } else {
        Err(errors)
    }
}

/// Where an update on trial is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Applying,
    AwaitingReboot,
    Checking,
    Reverting,
    Rejected,
}

/// The journal record of an update on trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub phase: Phase,
    /// The config to revert to (the last confirmed one).
    pub from: String,
    /// The config on trial.
    pub to: String,
    /// The update's plan ends in a reboot.
    pub reboot: bool,
    /// The confirmation timeout, in milliseconds.
    pub timeout_ms: u64,
    /// `Checking`: when the trial ends (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// The last failed check and its output (`Reverting`, `Rejected`: why).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// `AwaitingReboot`: the boot that waits for the reboot (a start in another boot has
    /// rebooted, whoever rebooted it: e.g. staged OS changes without systemd to reboot).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub boot_id: String,
}

impl Record {
    /// What a status shows about this record.
    pub fn describe(&self, now_ms: u64) -> String {
        match self.phase {
            Phase::Applying => format!("try mode: applying {} on trial", self.to),
            Phase::AwaitingReboot => {
                format!(
                    "try mode: {} on trial, checks start after the reboot",
                    self.to
                )
            }
            Phase::Checking => {
                let left = self.deadline_ms.unwrap_or(now_ms).saturating_sub(now_ms);
                let left = Duration::from_secs(left.div_ceil(1000));
                let mut s = format!(
                    "try mode: {} pending confirmation ({} left)",
                    self.to,
                    humantime::format_duration(left)
                );
                if !self.reason.is_empty() {
                    s += &format!("; last check: {}", self.reason);
                }
                s
            }
            Phase::Reverting => format!(
                "try mode: reverting {} to {}: {}",
                self.to, self.from, self.reason
            ),
            Phase::Rejected => format!(
                "try mode: {} reverted to {}: {}; not applied again until the desired config changes",
                self.to, self.from, self.reason
            ),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An update from `from` to `to` is about to commit (try mode on, not a first apply, not
    /// forced).
    Starting {
        from: String,
        to: String,
        reboot: bool,
        timeout_ms: u64,
    },
    /// The update succeeded; `reboot`: a reboot was asked for (and will happen).
    Committed { reboot: bool, now_ms: u64 },
    /// The update failed and rolled back; `current` is the config now current.
    UpdateFailed { current: String, now_ms: u64 },
    /// The daemon started: `current` is the stored config, `rebooted` whether the reboot the
    /// daemon asked for has happened since the last start.
    Started {
        current: Option<String>,
        rebooted: bool,
        now_ms: u64,
    },
    /// The checks ran: Err(the failed check and its output).
    Checked {
        result: Result<(), String>,
        now_ms: u64,
    },
    /// The revert's update ended with `current` as the current config.
    RevertEnded { current: String },
    /// The desired config is now `name`.
    Desired { name: String },
    /// The force file appeared.
    Forced,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Run the checks now (and again every interval while `Checking`).
    Check,
    /// The config on trial is confirmed.
    Confirmed { config: String },
    /// Revert `to` to `from` (the record, now `Reverting`, says why).
    Revert,
    /// The revert is done.
    Reverted,
    /// The rejected config is forgotten.
    Forgotten { config: String },
}

/// The confirmation state machine: no I/O, no clock (the time comes with the events).
pub fn step(state: Option<&Record>, event: &Event) -> (Option<Record>, Vec<Effect>) {
    use Event::*;
    use Phase::*;
    let keep = || (state.cloned(), Vec::new());
    let checking = |r: &Record, to: &str, now_ms: u64| Record {
        phase: Checking,
        to: to.to_string(),
        deadline_ms: Some(now_ms + r.timeout_ms),
        reason: String::new(),
        ..r.clone()
    };
    match (state, event) {
        (
            s,
            Starting {
                from,
                to,
                reboot,
                timeout_ms,
            },
        ) => {
            // A config pending confirmation is not confirmed by the next update: a revert
            // goes back to the last confirmed config.
            let from = match s {
                Some(r) if matches!(r.phase, Checking | AwaitingReboot | Applying) => {
                    r.from.clone()
                }
                _ => from.clone(),
            };
            (
                Some(Record {
                    phase: Applying,
                    from,
                    to: to.clone(),
                    reboot: *reboot,
                    timeout_ms: *timeout_ms,
                    deadline_ms: None,
                    reason: String::new(),
                    boot_id: String::new(),
                }),
                Vec::new(),
            )
        }
        (Some(r), Committed { reboot, now_ms }) if r.phase == Applying => {
            if *reboot {
                (
                    Some(Record {
                        phase: AwaitingReboot,
                        reboot: true,
                        ..r.clone()
                    }),
                    Vec::new(),
                )
            } else {
                (
                    Some(checking(r, &r.to.clone(), *now_ms)),
                    vec![Effect::Check],
                )
            }
        }
        (Some(r), UpdateFailed { current, now_ms }) if r.phase == Applying => {
            if *current == r.from {
                (None, Vec::new())
            } else {
                // Back on a config that was itself pending confirmation: its trial starts again.
                (Some(checking(r, current, *now_ms)), vec![Effect::Check])
            }
        }
        (
            Some(r),
            Started {
                current,
                rebooted,
                now_ms,
            },
        ) => {
            let on = |name: &str| current.as_deref() == Some(name);
            match r.phase {
                // The transaction committed (the process died after it): on trial from now.
                Applying | AwaitingReboot if on(&r.to) => {
                    if r.phase == AwaitingReboot && !rebooted {
                        keep()
                    } else {
                        (
                            Some(checking(r, &r.to.clone(), *now_ms)),
                            vec![Effect::Check],
                        )
                    }
                }
                // Rolled back (the journal undid it), or changed by hand: nothing on trial.
                Applying | AwaitingReboot | Checking if !on(&r.to) => (None, Vec::new()),
                Checking => (state.cloned(), vec![Effect::Check]),
                Reverting if on(&r.from) => (
                    Some(Record {
                        phase: Rejected,
                        ..r.clone()
                    }),
                    vec![Effect::Reverted],
                ),
                Reverting => (state.cloned(), vec![Effect::Revert]),
                _ => keep(),
            }
        }
        (Some(r), Checked { result, now_ms }) if r.phase == Checking => match result {
            Ok(()) => (
                None,
                vec![Effect::Confirmed {
                    config: r.to.clone(),
                }],
            ),
            Err(why) if r.deadline_ms.is_none_or(|d| *now_ms >= d) => (
                Some(Record {
                    phase: Reverting,
                    reason: why.clone(),
                    ..r.clone()
                }),
                vec![Effect::Revert],
            ),
            Err(why) => (
                Some(Record {
                    reason: why.clone(),
                    ..r.clone()
                }),
                Vec::new(),
            ),
        },
        (Some(r), RevertEnded { current }) if r.phase == Reverting => {
            if *current == r.from {
                (
                    Some(Record {
                        phase: Rejected,
                        ..r.clone()
                    }),
                    vec![Effect::Reverted],
                )
            } else {
                keep()
            }
        }
        (Some(r), Desired { name }) if r.phase == Rejected && *name != r.to => (
            None,
            vec![Effect::Forgotten {
                config: r.to.clone(),
            }],
        ),
        (Some(r), Forced) if r.phase == Rejected => (
            None,
            vec![Effect::Forgotten {
                config: r.to.clone(),
            }],
        ),
        _ => keep(),
    }
}

/// The config `to` was rejected and is still the desired config: not applied again.
pub fn holds_back(state: Option<&Record>, desired: &str) -> bool {
    state.is_some_and(|r| r.phase == Phase::Rejected && r.to == desired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Effect::*;
    use Phase::*;

    /// What, state before, event, state after, effects.
    type Row = (
        &'static str,
        Option<Record>,
        Event,
        Option<Record>,
        Vec<Effect>,
    );

    fn rec(phase: Phase, deadline: Option<u64>) -> Record {
        Record {
            phase,
            from: "a".into(),
            to: "b".into(),
            reboot: false,
            timeout_ms: 1000,
            deadline_ms: deadline,
            reason: String::new(),
            boot_id: String::new(),
        }
    }

    fn with(phase: Phase, deadline: Option<u64>, f: impl FnOnce(&mut Record)) -> Record {
        let mut r = rec(phase, deadline);
        f(&mut r);
        r
    }

    #[test]
    fn confirmation_state_machine() {
        let starting = Event::Starting {
            from: "a".into(),
            to: "b".into(),
            reboot: false,
            timeout_ms: 1000,
        };
        let fail = |now_ms| Event::Checked {
            result: Err("health.d/10-x: exit status 1: boom".into()),
            now_ms,
        };
        let started = |current: Option<&str>, rebooted| Event::Started {
            current: current.map(String::from),
            rebooted,
            now_ms: 5000,
        };
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            ("an update on trial is journaled before it commits",
             None, starting.clone(), Some(rec(Applying, None)), vec![]),
            ("an update on top of a pending one keeps the confirmed config to revert to",
             Some(with(Checking, Some(9), |r| { r.from = "z".into(); r.to = "a".into() })), starting.clone(),
             Some(with(Applying, None, |r| r.from = "z".into())), vec![]),
            ("an update after a rejected config starts afresh",
             Some(with(Rejected, None, |r| { r.from = "z".into(); r.to = "y".into() })), starting.clone(),
             Some(rec(Applying, None)), vec![]),
            ("committed without reboot: checks start, deadline now + timeout",
             Some(rec(Applying, None)), Event::Committed { reboot: false, now_ms: 100 },
             Some(rec(Checking, Some(1100))), vec![Check]),
            ("committed with a reboot: wait for it",
             Some(rec(Applying, None)), Event::Committed { reboot: true, now_ms: 100 },
             Some(with(AwaitingReboot, None, |r| r.reboot = true)), vec![]),
            ("failed and rolled back to the confirmed config: nothing on trial",
             Some(rec(Applying, None)), Event::UpdateFailed { current: "a".into(), now_ms: 100 },
             None, vec![]),
            ("failed back onto a config still on trial: its trial starts again",
             Some(with(Applying, None, |r| r.from = "z".into())), Event::UpdateFailed { current: "a".into(), now_ms: 100 },
             Some(with(Checking, Some(1100), |r| { r.from = "z".into(); r.to = "a".into() })), vec![Check]),
            ("all checks pass: confirmed, record gone",
             Some(rec(Checking, Some(1000))), Event::Checked { result: Ok(()), now_ms: 10 },
             None, vec![Confirmed { config: "b".into() }]),
            ("a check fails before the deadline: keep checking, remember why",
             Some(rec(Checking, Some(1000))), fail(999),
             Some(with(Checking, Some(1000), |r| r.reason = "health.d/10-x: exit status 1: boom".into())), vec![]),
            ("a check fails at the deadline: revert",
             Some(rec(Checking, Some(1000))), fail(1000),
             Some(with(Reverting, Some(1000), |r| r.reason = "health.d/10-x: exit status 1: boom".into())), vec![Revert]),
            ("passing at the last moment confirms",
             Some(rec(Checking, Some(1000))), Event::Checked { result: Ok(()), now_ms: 1000 },
             None, vec![Confirmed { config: "b".into() }]),
            ("checks outside Checking are ignored",
             Some(rec(AwaitingReboot, None)), fail(99999),
             Some(rec(AwaitingReboot, None)), vec![]),
            ("the revert landed on the previous config: rejected",
             Some(with(Reverting, Some(1), |r| r.reason = "x".into())), Event::RevertEnded { current: "a".into() },
             Some(with(Rejected, Some(1), |r| r.reason = "x".into())), vec![Reverted]),
            ("the revert failed: still reverting",
             Some(rec(Reverting, None)), Event::RevertEnded { current: "b".into() },
             Some(rec(Reverting, None)), vec![]),
            ("start: the update committed before the crash: on trial from now",
             Some(rec(Applying, None)), started(Some("b"), false),
             Some(rec(Checking, Some(6000))), vec![Check]),
            ("start: the update was rolled back by the journal: nothing on trial",
             Some(rec(Applying, None)), started(Some("a"), false),
             None, vec![]),
            ("start after the reboot: the whole timeout again",
             Some(rec(AwaitingReboot, None)), started(Some("b"), true),
             Some(rec(Checking, Some(6000))), vec![Check]),
            ("start in the same boot, reboot still to come: wait",
             Some(rec(AwaitingReboot, None)), started(Some("b"), false),
             Some(rec(AwaitingReboot, None)), vec![]),
            ("start while checking: resume with the time left",
             Some(rec(Checking, Some(7000))), started(Some("b"), false),
             Some(rec(Checking, Some(7000))), vec![Check]),
            ("start while checking, past the deadline: the first check decides",
             Some(rec(Checking, Some(10))), started(Some("b"), false),
             Some(rec(Checking, Some(10))), vec![Check]),
            ("start while checking, another config current: nothing on trial",
             Some(rec(Checking, Some(7000))), started(Some("c"), false),
             None, vec![]),
            ("start with a revert in progress: finish it",
             Some(rec(Reverting, None)), started(Some("b"), false),
             Some(rec(Reverting, None)), vec![Revert]),
            ("start after the revert's reboot: rejected",
             Some(rec(Reverting, None)), started(Some("a"), true),
             Some(rec(Rejected, None)), vec![Reverted]),
            ("start when rejected: still rejected",
             Some(rec(Rejected, None)), started(Some("a"), false),
             Some(rec(Rejected, None)), vec![]),
            ("the rejected config is still desired: held back",
             Some(rec(Rejected, None)), Event::Desired { name: "b".into() },
             Some(rec(Rejected, None)), vec![]),
            ("another desired config: the rejected one is forgotten",
             Some(rec(Rejected, None)), Event::Desired { name: "c".into() },
             None, vec![Forgotten { config: "b".into() }]),
            ("the force file: the rejected one is forgotten",
             Some(rec(Rejected, None)), Event::Forced,
             None, vec![Forgotten { config: "b".into() }]),
            ("the force file while checking: ignored",
             Some(rec(Checking, Some(5))), Event::Forced,
             Some(rec(Checking, Some(5))), vec![]),
            ("nothing on trial: events change nothing",
             None, fail(5), None, vec![]),
        ];
        for (what, state, event, want_state, want_effects) in table {
            let (got, effects) = step(state.as_ref(), &event);
            assert_eq!(got, want_state, "{what}");
            assert_eq!(effects, want_effects, "{what}");
        }
    }

    #[test]
    fn holds_back_only_the_rejected_config() {
        let r = rec(Rejected, None);
        assert!(holds_back(Some(&r), "b"));
        assert!(!holds_back(Some(&r), "c"));
        assert!(!holds_back(Some(&rec(Checking, Some(1))), "b"));
        assert!(!holds_back(None, "b"));
    }

    #[test]
    fn section_values_are_checked() {
        let ok = parse_section(&serde_json::json!({"confirmTimeout": "5m", "checkInterval": "2s", "checkTimeout": "500ms"})).unwrap();
        assert_eq!(ok.confirm_timeout, Some(Duration::from_secs(300)));
        assert_eq!(ok.check_interval, Duration::from_secs(2));
        assert_eq!(ok.check_timeout, Duration::from_millis(500));
        let table = [
            (
                serde_json::json!({"confirmTimeout": "0s"}),
                "tryMode.confirmTimeout",
                "expected a duration from 1s to 24h",
            ),
            (
                serde_json::json!({"confirmTimeout": "soon"}),
                "tryMode.confirmTimeout",
                "\"soon\"",
            ),
            (
                serde_json::json!({"confirmTimeout": 5}),
                "tryMode.confirmTimeout",
                "expected a duration",
            ),
            (
                serde_json::json!({"checkInterval": "2h"}),
                "tryMode.checkInterval",
                "from 100ms to 1h",
            ),
            (
                serde_json::json!({"checkTimeout": "1ms"}),
                "tryMode.checkTimeout",
                "from 100ms to 1h",
            ),
            (
                serde_json::json!({"confirm": "5m"}),
                "tryMode.confirm",
                "unknown field",
            ),
            (serde_json::json!("5m"), "tryMode", "expected a mapping"),
        ];
        for (v, field, message) in table {
            let e = parse_section(&v).unwrap_err();
            assert_eq!(e[0].0, field, "{v}");
            assert!(e[0].1.contains(message), "{v}: {}", e[0].1);
        }
    }
}
