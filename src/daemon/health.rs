//! Health checks of try mode ([`super::confirm`]): what must pass before an update on trial is
//! confirmed.
//!
//! - **`systemd`** (built in): the manager's `SystemState` is `running`. `starting` is "not
//!   yet" (not passed; the next round looks again), `degraded` fails and names the failed units
//!   (`ListUnitsFiltered(["failed"])`). Without systemd (`--no-systemd`) it is reported as
//!   skipped, never as passed.
//! - **`node`** (built in, cluster mode): a GET of the Node answers (the API server is
//!   reachable) and its `Ready` condition is `True` (the kubelet is healthy).
//! - **`health.d/NAME`**: every executable regular file in
//!   `/etc/machine-config-daemon/health.d/` beneath the root, in name order, run with no
//!   arguments, its working directory that directory and `MCD_ROOT` set to the root; exit
//!   status 0 passes. Each is killed (its whole process group) after the check timeout and then
//!   fails; of its stdout and stderr (interleaved as they arrive) the last [`OUTPUT_LIMIT`] bytes
//!   are kept for the status.
//!
//! **Choices.** Files that are not regular or not executable (`chmod +x`) are skipped with a
//! log line, as are names starting with `.` (editors' temporary files). A symlink is followed
//! when it stays inside `health.d` (after resolving every link); a symlink that leads out of
//! the directory is skipped with a log line: what runs as a check is what an administrator put
//! in that one root-owned directory. Checks run one after another; every failure is reported,
//! in that order (and every result logged).

use crate::host::systemd::ServiceManager;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The health check directory, as a path on the node.
pub const HEALTH_DIR: &str = "/etc/machine-config-daemon/health.d";
/// The bytes of a check's output kept (the last ones).
pub const OUTPUT_LIMIT: usize = 4096;

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// Not passed: why, with the output when there is one.
    Failed(String),
    /// Not run, and not passed either (e.g. no systemd).
    Skipped(String),
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    pub outcome: Outcome,
}

/// The checks of one round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub results: Vec<CheckResult>,
}

impl Report {
    /// Ok when no check failed (skipped ones neither pass nor fail); else every failure, in
    /// order, `NAME: reason; NAME: reason`.
    pub fn verdict(&self) -> Result<(), String> {
        let failed: Vec<String> = self
            .results
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Failed(why) => Some(format!("{}: {why}", r.name)),
                _ => None,
            })
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }
}

/// The executables of `health.d` beneath `root`, in name order, and a line for each entry
/// skipped (and why).
pub fn list(root: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let dir = root.join(HEALTH_DIR.trim_start_matches('/'));
    let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => return (Vec::new(), Vec::new()),
    };
    names.sort();
    let real_dir = std::fs::canonicalize(&dir).unwrap_or(dir.clone());
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for p in names {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            skipped.push(format!("{name}: hidden file, not run"));
            continue;
        }
        let Ok(lmd) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if lmd.file_type().is_symlink() {
            match std::fs::canonicalize(&p) {
                Ok(target) if target.starts_with(&real_dir) => {}
                Ok(target) => {
                    skipped.push(format!(
                        "{name}: a symlink out of {HEALTH_DIR} ({}), not run",
                        target.display()
                    ));
                    continue;
                }
                Err(e) => {
                    skipped.push(format!("{name}: dangling symlink ({e}), not run"));
                    continue;
                }
            }
        }
        match std::fs::metadata(&p) {
            Ok(md) if !md.is_file() => skipped.push(format!("{name}: not a regular file, not run")),
            Ok(md) if md.permissions().mode() & 0o111 == 0 => {
                skipped.push(format!("{name}: not executable, not run"))
            }
            Ok(_) => run.push(p),
            Err(e) => skipped.push(format!("{name}: {e}, not run")),
        }
    }
    (run, skipped)
}

/// Keeps the last `limit` bytes written.
struct Tail {
    buf: Vec<u8>,
    limit: usize,
    dropped: bool,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.limit {
            let cut = self.buf.len() - self.limit;
            self.buf.drain(..cut);
            self.dropped = true;
        }
    }

    fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.buf);
        let s = s.trim_end();
        if self.dropped {
            format!("…{s}")
        } else {
            s.to_string()
        }
    }
}

/// Runs one executable check with `timeout`; `root` goes to `MCD_ROOT`.
pub async fn run_script(path: &Path, root: &Path, timeout: Duration) -> Outcome {
    use std::process::Stdio;
    // One pipe for stdout and stderr, as `2>&1`: the output keeps the order it was written in.
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(format!("cannot make a pipe: {e}")),
    };
    let spawned = {
        let mut cmd = tokio::process::Command::new(path);
        cmd.env("MCD_ROOT", root)
            .current_dir(path.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        match writer.try_clone() {
            Ok(w) => {
                cmd.stdout(Stdio::from(w)).stderr(Stdio::from(writer));
            }
            Err(e) => return Outcome::Failed(format!("cannot make a pipe: {e}")),
        }
        // The command (and its copies of the pipe's writing end) is dropped here: the pipe
        // ends when the check's processes have all closed it.
        cmd.spawn()
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot run: {e}")),
    };
    let pgid = child.id().map(|p| p as i32);
    let mut out = match tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(
        reader,
    )) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "health check {}: its output is not read: {e}", path.display());
            None
        }
    };
    let mut tail = Tail {
        buf: Vec::new(),
        limit: OUTPUT_LIMIT,
        dropped: false,
    };
    let run = async {
        let mut buf = [0u8; 4096];
        // The output until the pipe ends, then the exit status.
        while let Some(r) = out.as_mut() {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => out = None,
                Ok(n) => tail.push(&buf[..n]),
            }
        }
        child.wait().await
    };
    let status = tokio::time::timeout(timeout, run).await;
    let outcome = match status {
        Ok(Ok(s)) if s.success() => return Outcome::Passed,
        Ok(Ok(s)) => format!("{s}"),
        Ok(Err(e)) => format!("cannot wait for it: {e}"),
        Err(_) => {
            // The whole group: a shell's children hold the pipes too.
            if let Some(pg) = pgid {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pg),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            format!(
                "timed out after {}, killed",
                humantime::format_duration(timeout)
            )
        }
    };
    let text = tail.text();
    if text.is_empty() {
        Outcome::Failed(outcome)
    } else {
        Outcome::Failed(format!("{outcome}: {text}"))
    }
}

/// The built-in systemd check.
pub async fn systemd_check(systemd: Option<&dyn ServiceManager>) -> Outcome {
    let Some(sm) = systemd else {
        return Outcome::Skipped("no systemd (--no-systemd)".into());
    };
    match sm.system_state().await {
        Ok(s) => systemd_verdict(&s.state, &s.failed),
        Err(e) => Outcome::Failed(format!("cannot read the system state: {e}")),
    }
}

/// What a `SystemState` (and the failed units) mean for the check.
pub fn systemd_verdict(state: &str, failed: &[String]) -> Outcome {
    match state {
        "running" => Outcome::Passed,
        "starting" | "initializing" => Outcome::Failed(format!("system {state}: not up yet")),
        "degraded" if !failed.is_empty() => Outcome::Failed(format!(
            "system degraded: failed units: {}",
            failed.join(", ")
        )),
        other => Outcome::Failed(format!("system {other}")),
    }
}

/// Runs every check: systemd (its outcome, [`systemd_check`], asked for beforehand: the
/// D-Bus client stays with the daemon), the cluster's (`node`, when given), then `health.d` in
/// name order. Skipped entries of `health.d` are logged. Owns what it needs, so that it can run
/// in a task of its own, beside the daemon's event loop.
pub async fn run_all(
    root: PathBuf,
    systemd: Outcome,
    node: Option<impl std::future::Future<Output = Result<(), String>>>,
    timeout: Duration,
) -> Report {
    let mut results = vec![CheckResult {
        name: "systemd".into(),
        outcome: systemd,
    }];
    if let Some(n) = node {
        let n = n.await;
        results.push(CheckResult {
            name: "node".into(),
            outcome: match n {
                Ok(()) => Outcome::Passed,
                Err(e) => Outcome::Failed(e),
            },
        });
    }
    let (scripts, skipped) = list(&root);
    for s in skipped {
        tracing::warn!(dir = HEALTH_DIR, "health check {s}");
    }
    for p in scripts {
        let name = format!(
            "health.d/{}",
            p.file_name().unwrap_or_default().to_string_lossy()
        );
        let outcome = run_script(&p, &root, timeout).await;
        results.push(CheckResult { name, outcome });
    }
    for r in &results {
        match &r.outcome {
            Outcome::Passed => tracing::info!(check = %r.name, "health check {}: passed", r.name),
            Outcome::Failed(why) => {
                tracing::warn!(check = %r.name, "health check {}: failed: {why}", r.name)
            }
            Outcome::Skipped(why) => {
                tracing::info!(check = %r.name, "health check {}: skipped ({why})", r.name)
            }
        }
    }
    Report { results }
}

/// `systemd, 2 in health.d` (or `systemd (skipped: no systemd)`): what `plan` and the logs say
/// the checks are.
pub fn describe(root: &Path, no_systemd: bool, cluster: bool) -> String {
    let mut parts = vec![if no_systemd {
        "systemd (skipped: --no-systemd)".to_string()
    } else {
        "systemd".to_string()
    }];
    if cluster {
        parts.push("node Ready".into());
    }
    let (run, _) = list(root);
    parts.push(format!("{} in health.d", run.len()));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_states() {
        let table: [(&str, &[&str], Outcome); 5] = [
            ("running", &[], Outcome::Passed),
            (
                "starting",
                &[],
                Outcome::Failed("system starting: not up yet".into()),
            ),
            (
                "degraded",
                &["foo.service", "bar.mount"],
                Outcome::Failed("system degraded: failed units: foo.service, bar.mount".into()),
            ),
            ("degraded", &[], Outcome::Failed("system degraded".into())),
            ("stopping", &[], Outcome::Failed("system stopping".into())),
        ];
        for (state, failed, want) in table {
            let failed: Vec<String> = failed.iter().map(|s| s.to_string()).collect();
            assert_eq!(systemd_verdict(state, &failed), want, "{state}");
        }
    }

    #[test]
    fn verdict_names_every_failure_and_skips_do_not_pass_or_fail() {
        let r = |name: &str, outcome| CheckResult {
            name: name.into(),
            outcome,
        };
        let report = Report {
            results: vec![
                r("systemd", Outcome::Skipped("no systemd".into())),
                r("health.d/10-a", Outcome::Passed),
                r("health.d/20-b", Outcome::Failed("exit status: 1: b".into())),
                r("health.d/30-c", Outcome::Failed("exit status: 2".into())),
            ],
        };
        assert_eq!(
            report.verdict(),
            Err("health.d/20-b: exit status: 1: b; health.d/30-c: exit status: 2".into())
        );
        let ok = Report {
            results: report.results[..2].to_vec(),
        };
        assert_eq!(ok.verdict(), Ok(()));
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut t = Tail {
            buf: Vec::new(),
            limit: 4,
            dropped: false,
        };
        t.push(b"ab");
        assert_eq!(t.text(), "ab");
        t.push(b"cdef\n");
        assert_eq!(t.text(), "…def");
    }

    #[test]
    fn list_skips_what_is_not_a_check() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(HEALTH_DIR.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = |name: &str| {
            let p = dir.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        exe("20-b");
        exe("10-a");
        exe(".10-a.swp");
        std::fs::write(dir.join("30-plain"), "x").unwrap();
        std::fs::create_dir(dir.join("40-dir")).unwrap();
        std::os::unix::fs::symlink(dir.join("10-a"), dir.join("50-inside")).unwrap();
        let outside = root.path().join("outside.sh");
        std::fs::write(&outside, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("60-outside")).unwrap();
        let (run, skipped) = list(root.path());
        let names: Vec<String> = run
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["10-a", "20-b", "50-inside"]);
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(skipped[0].starts_with(".10-a.swp: hidden"), "{skipped:?}");
        assert!(
            skipped[1].contains("30-plain: not executable"),
            "{skipped:?}"
        );
        assert!(
            skipped[2].contains("40-dir: not a regular file"),
            "{skipped:?}"
        );
        assert!(
            skipped[3].contains("60-outside: a symlink out of"),
            "{skipped:?}"
        );
    }
}
