//! The `status` command: prints the standalone status file the daemon keeps up to date, whether
//! a daemon is running on that root now (the holder of the state directory's lock, see
//! [`machine_config_daemon::host::lock`]) and when the status was last written (the file's
//! modification time), so that a status left behind by a stopped daemon is not taken for news.
//!
//! The text form also shows the drift rules the daemon runs with (its daemon configuration
//! file's, or that every drift degrades) and the drift it reports while `Done`.
//!
//! `--wait-for STATE` waits (up to `--timeout`) until the status says STATE, sleeping on inotify
//! on the status directory (the daemon writes the file by rename): scripts and the README's demo
//! get the state the daemon reaches, not whatever it had written a moment before.
//!
//! Exit codes: 0 printed (with `--wait-for`: the state was reached), 1 no status to read, or
//! the timeout passed first (the last status is printed), 2 bad arguments.

use machine_config_daemon::daemon::state::NodeState;
use machine_config_daemon::daemon::status::{Status, status_path};
use machine_config_daemon::host::{Root, lock};
use serde_json::json;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// Output formats of `status` (`wide` is the text table with the finer phases, as kubectl's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Wide,
    Json,
    Yaml,
}

/// States `--wait-for` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitState {
    Done,
    Working,
    Degraded,
    Unreconcilable,
}

impl WaitState {
    fn state(self) -> NodeState {
        match self {
            WaitState::Done => NodeState::Done,
            WaitState::Working => NodeState::Working,
            WaitState::Degraded => NodeState::Degraded,
            WaitState::Unreconcilable => NodeState::Unreconcilable,
        }
    }
}

const AFTER_HELP: &str = "\
Exit codes:
  0  printed (with --wait-for: the state was reached)
  1  no status to read, or --timeout passed before the state was reached
  2  bad arguments";

#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The root the daemon manages (its status file is under <root>/run/machine-config-daemon/).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The daemon's state directory on the node (where its lock is).
    #[arg(long, value_name = "DIR", default_value = "/etc/machine-config-daemon")]
    state_dir: String,
    /// Output format (`wide`: the table with the finer update phases).
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: Output,
    /// Also show the finer update phases (the same as `-o wide`).
    #[arg(long)]
    wide: bool,
    /// Wait until the node is in this state (case-insensitive), then print the status.
    #[arg(long, value_enum, ignore_case = true, value_name = "STATE")]
    wait_for: Option<WaitState>,
    /// With --wait-for: also wait until the current config is this one (after a new desired
    /// config, the state it reaches on it).
    #[arg(long, value_name = "NAME", requires = "wait_for")]
    current_config: Option<String>,
    /// Longest wait of --wait-for (e.g. `2s`, `1m`).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration, requires = "wait_for")]
    timeout: Duration,
}

/// Who holds the node's lock: `Some(pid)` while a daemon (or an apply) runs.
fn running(root: &Path, state_dir: &str) -> Option<Option<u32>> {
    let root = Root::open(root)
        .and_then(|r| r.with_state_dir(state_dir))
        .ok()?;
    lock::holder(&root).ok().flatten()
}

fn written(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

pub fn run(args: Args) -> ExitCode {
    let path = status_path(&args.root);
    let (status, timed_out) = match args.wait_for {
        None => match Status::read(&path) {
            Ok(s) => (s, false),
            Err(e) => return super::fail(super::EXIT_FAILED, [e]),
        },
        Some(want) => match wait_for(
            &path,
            want.state(),
            args.current_config.as_deref(),
            args.timeout,
        ) {
            Ok(r) => r,
            Err(e) => return super::fail(super::EXIT_FAILED, [e]),
        },
    };
    let daemon = running(&args.root, &args.state_dir);
    let modified = written(&path);
    let now = SystemTime::now();
    let wide = args.wide || args.output == Output::Wide;
    match args.output {
        Output::Text | Output::Wide => {
            print!("{}", status.table(wide));
            println!();
            match daemon {
                Some(Some(pid)) => println!("daemon: running (pid {pid})"),
                Some(None) => println!("daemon: running (pid unknown)"),
                None => println!("daemon: not running (the status below is the last one written)"),
            }
            if !status.host.is_empty() {
                println!("host: {}", status.host);
            }
            for n in &status.not_applied {
                println!("not applied: {n}");
            }
            if let Some(d) = &status.drift {
                let from = d
                    .source
                    .as_deref()
                    .unwrap_or("no daemon configuration file");
                println!("drift rules ({from}):");
                for l in d.lines() {
                    println!("  {l}");
                }
            }
            for r in &status.drift_reported {
                println!("drift reported (the node stays Done): {r}");
            }
            if let Some(t) = &status.try_mode {
                println!(
                    "try mode: confirm within {} (checks: {})",
                    t.confirm_timeout, t.checks
                );
                if !t.summary.is_empty() {
                    println!("  {}", t.summary);
                }
                for c in &t.last_checks {
                    println!("  check {c}");
                }
            }
            if let Some(c) = &status.certificates {
                println!("CA files: {} from {}", c.files.len(), c.source);
                for e in &c.errors {
                    println!("CA files: {e}");
                }
                if !c.pending_actions.is_empty() {
                    println!(
                        "CA files: {} run again at {}",
                        c.pending_actions.join(", "),
                        c.retry_at
                    );
                }
            }
            if let Some(t) = modified {
                let ago = now.duration_since(t).unwrap_or_default();
                let ago = humantime::format_duration(Duration::from_secs(ago.as_secs()));
                println!(
                    "status written: {} ({ago} ago)",
                    humantime::format_rfc3339_seconds(t)
                );
            }
        }
        Output::Json | Output::Yaml => {
            let mut v = match serde_json::to_value(&status) {
                Ok(v) => v,
                Err(e) => return super::fail(super::EXIT_FAILED, [e]),
            };
            v["daemon"] = json!({
                "running": daemon.is_some(),
                "pid": daemon.flatten(),
            });
            v["statusWritten"] =
                json!(modified.map(|t| humantime::format_rfc3339_seconds(t).to_string()));
            let format = if args.output == Output::Json {
                super::Format::Json
            } else {
                super::Format::Yaml
            };
            let code = super::print_data(&v, format);
            if !timed_out {
                return code;
            }
        }
    }
    if timed_out {
        let want = args
            .wait_for
            .map(WaitState::state)
            .unwrap_or(NodeState::Done);
        let on = |c: &str| {
            if c.is_empty() {
                "no config".to_string()
            } else {
                c.to_string()
            }
        };
        let wanted = match &args.current_config {
            Some(c) => format!("{want} on {}", on(c)),
            None => want.to_string(),
        };
        return super::fail(
            super::EXIT_FAILED,
            [format!(
                "timed out after {}: the node is {} on {}, not {wanted}",
                humantime::format_duration(args.timeout),
                status.state,
                on(&status.current_config)
            )],
        );
    }
    ExitCode::SUCCESS
}

/// Reads the status until it says `want` (on `config`, if given), or `timeout` passes: (the
/// last status, timed out). Sleeps on inotify: on the status directory, or while that does not
/// exist yet (a daemon just started), on its nearest existing ancestor.
fn wait_for(
    path: &Path,
    want: NodeState,
    config: Option<&str>,
    timeout: Duration,
) -> Result<(Status, bool), String> {
    use inotify::Inotify;
    let end = Instant::now() + timeout;
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut inotify = Inotify::init().map_err(|e| format!("inotify: {e}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // Watched before each read, so that no write after that read is missed; again after
        // each wake-up, since the directory may have been created, or removed and made anew.
        watch_nearest(&mut inotify, &dir)?;
        let last = Status::read(path);
        if let Ok(s) = &last
            && s.state == want
            && config.is_none_or(|c| s.current_config == c)
        {
            return Ok((last.map_err(|e| e.to_string())?, false));
        }
        // Sleep until something is written or created where we watch (or the time is up).
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return last.map(|s| (s, true)).map_err(|e| e.to_string());
            }
            let mut pfd = libc::pollfd {
                fd: inotify.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: one valid pollfd, for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, ms) };
            match inotify.read_events(&mut buf) {
                Ok(mut events) => {
                    if events.next().is_some() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("inotify: {e}")),
            }
        }
    }
}

/// Watches `dir` for the status file's writes or, while it does not exist, its nearest existing
/// ancestor for the creation of the next directory on the way.
fn watch_nearest(inotify: &mut inotify::Inotify, dir: &Path) -> Result<(), String> {
    use inotify::WatchMask;
    let mask =
        WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE | WatchMask::CREATE | WatchMask::DELETE_SELF;
    'again: loop {
        let mut at = dir;
        loop {
            match inotify.watches().add(at, mask) {
                Ok(_) if at == dir => return Ok(()),
                Ok(_) => {
                    // The next directory may have been made between the failed look-up and this
                    // watch (its creation was then not seen): go deeper if so.
                    let next = dir.ancestors().find(|a| a.parent() == Some(at));
                    if next.is_some_and(Path::exists) {
                        continue 'again;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    at = at
                        .parent()
                        .ok_or_else(|| format!("cannot watch {}: {e}", dir.display()))?;
                }
                Err(e) => return Err(format!("cannot watch {}: {e}", at.display())),
            }
        }
    }
}
