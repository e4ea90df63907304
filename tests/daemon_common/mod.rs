//! Shared helpers of the daemon tests (and of `benches/daemon.rs`): a node (a tempdir root with
//! a user database, the desired config and the policy file next to it), the real
//! `machine-config-daemon start` as a child process (killed on drop), and bounded waits on the
//! status file that sleep on inotify (the daemon writes it by rename, so every write is one
//! `IN_MOVED_TO status.json`).
#![allow(dead_code)]

use inotify::{Inotify, WatchMask};
use machine_config_daemon::daemon::state::NodeState;
use machine_config_daemon::daemon::status::Status;
use machine_config_daemon::model::{File, MachineConfig, machine_config_to_json};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_machine-config-daemon");

/// How long any wait may last before the test fails (normally milliseconds are enough).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The status file beneath a root.
pub const STATUS: &str = "run/machine-config-daemon/status.json";

/// A node: `<dir>/root` (the root), `<dir>/desired.json`, `<dir>/policy.yaml`, `<dir>/daemon.log`.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub desired: PathBuf,
    pub policy: PathBuf,
    pub log: PathBuf,
}

impl Node {
    /// A node in a fresh tempdir.
    pub fn new() -> Node {
        Node::in_dir(&std::env::temp_dir())
    }

    /// A node in a fresh directory beneath `base` (benches use /dev/shm).
    pub fn in_dir(base: &Path) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("mcd-node-")
            .tempdir_in(base)
            .unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("home")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        // The status directory exists from the start, so the waits can watch it.
        std::fs::create_dir_all(root.join("run/machine-config-daemon")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\ncore:x:1000:1000:CoreOS Admin:/home/core:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\ncore:x:1000:\n").unwrap();
        Node {
            desired: dir.path().join("desired.json"),
            policy: dir.path().join("policy.yaml"),
            log: dir.path().join("daemon.log"),
            root,
            dir,
        }
    }

    /// The absolute path of a node path (`/etc/x`).
    pub fn path(&self, node_path: &str) -> PathBuf {
        self.root.join(node_path.trim_start_matches('/'))
    }

    /// Writes the daemon configuration file (`yaml`) at its default place beneath the root,
    /// where `start` finds it without a flag; returns its path.
    pub fn set_daemon_config(&self, yaml: &str) -> PathBuf {
        let p = self.path("/etc/machine-config-daemon/config.yaml");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, yaml).unwrap();
        p
    }

    pub fn read(&self, node_path: &str) -> String {
        std::fs::read_to_string(self.path(node_path)).unwrap()
    }

    /// What `status --root <this node>` prints (text).
    pub fn status_text(&self) -> String {
        let out = std::process::Command::new(BIN)
            .args(["status", "--root"])
            .arg(&self.root)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn exists(&self, node_path: &str) -> bool {
        std::fs::symlink_metadata(self.path(node_path)).is_ok()
    }

    pub fn mode(&self, node_path: &str) -> u32 {
        std::fs::symlink_metadata(self.path(node_path))
            .unwrap()
            .mode()
    }

    /// Writes the desired config the way editors and tools do: a new file renamed over it.
    pub fn set_desired(&self, m: &MachineConfig) {
        replace(&self.desired, &config_bytes(m));
    }

    /// Writes raw bytes as the desired config (by rename).
    pub fn set_desired_raw(&self, bytes: &[u8]) {
        replace(&self.desired, bytes);
    }

    /// Writes the desired config in place (truncate and write, as `>` in a shell does).
    pub fn set_desired_in_place(&self, m: &MachineConfig) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(true)
            .open(&self.desired)
            .unwrap();
        f.write_all(&config_bytes(m)).unwrap();
    }

    /// Writes a policy file mapping each of `paths` to the `None` action.
    pub fn set_policy_none(&self, paths: &[&str]) {
        replace(&self.policy, policy_none(paths).as_bytes());
    }

    /// The stored current config's name (`/etc/machine-config-daemon/currentconfig`).
    pub fn current_config_name(&self) -> Option<String> {
        let bytes = std::fs::read(self.path("/etc/machine-config-daemon/currentconfig")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["metadata"]["name"].as_str().map(str::to_string)
    }

    /// The status the daemon last wrote.
    pub fn status(&self) -> Option<Status> {
        Status::read(&self.root.join(STATUS)).ok()
    }

    /// Every entry beneath the root except the status directory and the single-instance lock
    /// (the PID of the last daemon to start, and the state directory it created for it): type,
    /// mode and contents.
    pub fn snapshot(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.retain(|(p, _)| !p.starts_with("run/machine-config-daemon"));
        out.retain(|(p, _)| p != "etc/machine-config-daemon/lock");
        if !out
            .iter()
            .any(|(p, _)| p.starts_with("etc/machine-config-daemon/"))
        {
            out.retain(|(p, _)| p != "etc/machine-config-daemon");
        }
        out
    }

    /// (inode, mtime in ns) of each node path: a rewrite (by rename) changes both.
    pub fn stamps(&self, node_paths: &[&str]) -> Vec<(String, u64, i128)> {
        node_paths
            .iter()
            .map(|p| {
                let md = std::fs::symlink_metadata(self.path(p)).unwrap();
                (
                    p.to_string(),
                    md.ino(),
                    md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
                )
            })
            .collect()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let v = if md.file_type().is_symlink() {
            format!(
                "{:o} -> {}",
                md.mode(),
                std::fs::read_link(&p).unwrap().display()
            )
        } else if md.is_dir() {
            walk(root, &p, out);
            format!("{:o}", md.mode())
        } else {
            format!(
                "{:o} {}",
                md.mode(),
                String::from_utf8_lossy(&std::fs::read(&p).unwrap())
            )
        };
        out.push((rel, v));
    }
}

/// Replaces `path` by a new file renamed over it.
pub fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-edit");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A MachineConfiguration (node disruption policy) mapping `paths` to `None`.
pub fn policy_none(paths: &[&str]) -> String {
    let mut s = String::from(
        "apiVersion: operator.openshift.io/v1\nkind: MachineConfiguration\nmetadata:\n  name: cluster\n  namespace: openshift-machine-config-operator\nspec:\n  nodeDisruptionPolicy:\n    files:\n",
    );
    for p in paths {
        s += &format!("      - path: {p}\n        actions:\n          - type: None\n");
    }
    s
}

/// A file of a config, mode 0644 unless told.
pub fn file(path: &str, contents: &str) -> File {
    file_bytes(path, contents.as_bytes().to_vec(), 0o644)
}

pub fn file_bytes(path: &str, contents: Vec<u8>, mode: u32) -> File {
    File {
        path: path.to_string(),
        contents: Some(contents),
        mode: Some(mode),
        overwrite: Some(true),
        ..File::default()
    }
}

/// A rendered MachineConfig with these files.
pub fn mc(name: &str, files: Vec<File>) -> MachineConfig {
    let mut m = MachineConfig {
        name: name.to_string(),
        ..MachineConfig::default()
    };
    m.spec.config.version = "3.4.0".to_string();
    m.spec.config.files = files;
    m
}

/// `n` files of 1 KiB spread over about 100 directories (`/etc/bench/dNN/fNNNNN.conf`), in
/// path order.
pub fn many_files(n: usize, tag: &str) -> Vec<File> {
    let dirs = n.clamp(1, 100);
    let mut files: Vec<File> = (0..n)
        .map(|i| {
            let path = format!("/etc/bench/d{:03}/f{i:05}.conf", i % dirs);
            let mut body = format!("# {tag} {path}\n").into_bytes();
            body.resize(1024, b'x');
            body[1023] = b'\n';
            file_bytes(&path, body, 0o644)
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

pub fn config_bytes(m: &MachineConfig) -> Vec<u8> {
    serde_json::to_vec_pretty(&machine_config_to_json(m)).unwrap()
}

/// The running daemon; killed (SIGKILL) and reaped on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub root: PathBuf,
}

/// Options of `start` beyond the root and the desired config.
#[derive(Default, Clone)]
pub struct StartOpts<'a> {
    /// Pass `--policy <node>/policy.yaml`.
    pub policy: bool,
    /// `--metrics-address` (default `none`).
    pub metrics: Option<String>,
    pub env: Vec<(&'a str, &'a str)>,
    /// Another binary (benches pass the release one; default [`BIN`]).
    pub bin: Option<&'a str>,
    /// More arguments after the usual ones.
    pub args: Vec<String>,
}

impl Daemon {
    /// `machine-config-daemon start --no-systemd` on `node`; stderr appended to `node.log`.
    pub fn start(node: &Node, opts: StartOpts) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let mut cmd = Command::new(opts.bin.unwrap_or(BIN));
        cmd.arg("start")
            .arg("--root")
            .arg(&node.root)
            .arg("--desired-config")
            .arg(&node.desired)
            .arg("--no-systemd")
            .arg("--node-name")
            .arg("test-node")
            .arg("--metrics-address")
            .arg(opts.metrics.as_deref().unwrap_or("none"));
        if opts.policy {
            cmd.arg("--policy").arg(&node.policy);
        }
        cmd.args(&opts.args);
        cmd.env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .env_remove("FAILPOINTS")
            .env("RUST_LOG", "info");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon {
            child,
            log: node.log.clone(),
            root: node.root.clone(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The daemon's log so far (every run of this node).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle` at least `count` times; returns the log.
    pub fn wait_log(&self, needle: &str, count: usize) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(
                Instant::now() < end,
                "{needle:?} not logged {count} times:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address the metrics endpoint listens on, as the daemon logs it once bound (start it
    /// with `metrics: Some("127.0.0.1:0")` for a free port).
    pub fn metrics_address(&self) -> String {
        let log = self.wait_log("metrics endpoint listening", 1);
        let line = log
            .lines()
            .rfind(|l| l.contains("metrics endpoint listening"))
            .unwrap();
        let rest = &line[line.find("address=").expect("address field") + "address=".len()..];
        rest.split_whitespace().next().unwrap().to_string()
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill({}, {sig})", self.pid());
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the status satisfies `pred`; fails with the status and the log otherwise.
    pub fn wait(&self, what: &str, pred: impl Fn(&Status) -> bool) -> Status {
        self.wait_within(DEADLINE, what, pred)
    }

    /// [`Daemon::wait`] with another deadline (benches: the first apply of 10,000 files).
    pub fn wait_within(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Status) -> bool,
    ) -> Status {
        let mut w = StatusWatch::new(&self.root);
        match w.until(timeout, &pred) {
            Some(s) => s,
            None => panic!(
                "timed out waiting for {what}\nstatus: {:#?}\nlog:\n{}",
                Status::read(&self.root.join(STATUS)).ok(),
                self.log()
            ),
        }
    }

    /// Waits for state `Done` with `config` as the current config.
    pub fn wait_done(&self, config: &str) -> Status {
        self.wait(&format!("Done on {config}"), |s| {
            s.state == NodeState::Done && s.current_config == config
        })
    }

    /// Waits for state `Degraded` and returns its reason.
    pub fn wait_degraded(&self) -> String {
        self.wait("Degraded", |s| s.state == NodeState::Degraded)
            .reason
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status writes seen through inotify on the status directory: each write renames a new file
/// to `status.json`, one `IN_MOVED_TO`.
pub struct StatusWatch {
    inotify: Inotify,
    file: PathBuf,
    buf: Vec<u8>,
}

impl StatusWatch {
    pub fn new(root: &Path) -> StatusWatch {
        let file = root.join(STATUS);
        let inotify = Inotify::init().unwrap();
        inotify
            .watches()
            .add(file.parent().unwrap(), WatchMask::MOVED_TO)
            .unwrap();
        StatusWatch {
            inotify,
            file,
            buf: vec![0; 4096],
        }
    }

    /// Waits up to `timeout` for the next write of the status file; true if one came.
    pub fn next_write(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            match self.inotify.read_events(&mut self.buf) {
                Ok(events) => {
                    let mut seen = false;
                    for e in events {
                        if e.name == Some(OsStr::new("status.json")) {
                            seen = true;
                        }
                    }
                    if seen {
                        return true;
                    }
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("inotify: {e}"),
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut pfd = libc::pollfd {
                fd: self.inotify.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
        }
    }

    /// The status now, then after each write, until `pred` holds (or `timeout`).
    pub fn until(&mut self, timeout: Duration, pred: impl Fn(&Status) -> bool) -> Option<Status> {
        let end = Instant::now() + timeout;
        loop {
            if let Ok(s) = Status::read(&self.file)
                && pred(&s)
            {
                return Some(s);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.next_write(left) {
                // One last look (a write may have landed just as the time ran out).
                return Status::read(&self.file).ok().filter(|s| pred(s));
            }
        }
    }

    /// Waits for the next write after now, then for `pred` (writes that were already made
    /// before this call, but after the watch was created, count).
    pub fn after_next_write(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Status) -> bool,
    ) -> Option<Status> {
        let end = Instant::now() + timeout;
        if !self.next_write(timeout) {
            return None;
        }
        self.until(end.saturating_duration_since(Instant::now()), pred)
    }
}

/// Restores a file's permission bits to `mode`.
pub fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The value of the sample `name` (with its labels, e.g. `mcd_drift_total{action="heal"}`) in
/// a Prometheus text exposition `body`.
pub fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The value of the sample `name` the metrics endpoint at `addr` serves now.
pub fn metric(addr: &str, name: &str) -> Option<f64> {
    sample(&http_get(addr, "/metrics").1, name)
}

/// A GET over plain HTTP/1.1: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (code, body.to_string())
}

/// A hold on a fail point of the daemon (`MCD_FAILPOINT_HOLD`, see `src/main.rs`; needs
/// `--features failpoints`): once armed, the next update to reach the point stops there until
/// the test lets it go.
pub struct Hold {
    /// `NAME=FIFO`, for [`StartOpts::env`].
    pub spec: String,
    fifo: PathBuf,
}

/// The daemon is stopped at the point until this is dropped.
pub struct Held(std::fs::File);

impl Hold {
    /// A hold on `point` for daemons of `node` (not armed yet).
    pub fn new(node: &Node, point: &str) -> Hold {
        let fifo = node.dir.path().join("hold.fifo");
        Hold {
            spec: format!("{point}={}", fifo.display()),
            fifo,
        }
    }

    /// The environment a daemon needs for this hold.
    pub fn env(&self) -> (&str, &str) {
        ("MCD_FAILPOINT_HOLD", self.spec.as_str())
    }

    /// The next update to reach the point stops there.
    pub fn arm(&self) {
        nix::unistd::mkfifo(&self.fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }

    /// Waits until an update is stopped at the point (the daemon has opened the pipe) and
    /// disarms the hold; the update goes on when the returned [`Held`] is dropped.
    pub fn held(&self) -> Held {
        use std::os::unix::fs::OpenOptionsExt;
        let end = Instant::now() + DEADLINE;
        // Opening for writing without blocking fails (ENXIO) until the daemon reads.
        let writer = loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.fifo)
            {
                Ok(f) => break f,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("no update reached the hold: {e}"),
            }
        };
        std::fs::remove_file(&self.fifo).unwrap();
        Held(writer)
    }
}
