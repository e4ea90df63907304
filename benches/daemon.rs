//! Benchmarks of `machine-config-daemon start` (standalone, `--no-systemd`), the real release
//! binary against roots on /dev/shm (when present; else the temp dir):
//!
//! - drift detection latency: from the write (chmod 0755 of one managed file) to the status file
//!   saying `Degraded` (the status is renamed into place: this process sleeps on inotify for it,
//!   then reads and parses it), alternating drift and restore, with 100 / 1,000 / 10,000 managed
//!   1 KiB files over ~100 directories;
//! - idle RSS (VmRSS) with 10,000 files after `Done` and 5 s idle;
//! - idle wakeups: voluntary + nonvoluntary context switches of every thread over
//!   `MCD_BENCH_IDLE_SECS` (default 60) seconds with nothing changing;
//! - rebootless update: a new desired config (renamed into place; the policy maps the changed
//!   file to `None`) to `Done` with the new config recorded, 5 and 1,000 files;
//! - peak memory of an update (the target: ≤ 32 MiB at 10,000 files): the daemon's
//!   `VmHWM` over its first apply of 10,000 × 1 KiB files, then over an update changing one of
//!   them, then over one changing every one (the high-water mark reset between updates through
//!   `/proc/PID/clear_refs`), with its idle `VmRSS` before each.
//!
//! `cargo bench --bench daemon`. Prints figures; asserts nothing. `MCD_BENCH_ONLY=updates` runs
//! only the rebootless updates, `MCD_BENCH_ONLY=memory` only the peak memory.

#[path = "../tests/daemon_common/mod.rs"]
mod daemon_common;

use daemon_common::*;
use machine_config_daemon::daemon::state::NodeState;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WARMUP: usize = 5;
const DRIFT_SAMPLES: usize = 60;
const UPDATES: usize = 25;
const SETUP: Duration = Duration::from_secs(300);

fn base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
    n: usize,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let n = v.len();
    let p99 = ((n * 99).div_ceil(100)).max(1) - 1;
    Stats {
        p50: v[n / 2],
        p99: v[p99],
        max: v[n - 1],
        n,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn proc_field(pid: i32, task: Option<&str>, key: &str) -> Option<u64> {
    let p = match task {
        Some(t) => format!("/proc/{pid}/task/{t}/status"),
        None => format!("/proc/{pid}/status"),
    };
    let text = std::fs::read_to_string(p).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Context switches (voluntary + nonvoluntary) of each thread.
fn switches(pid: i32) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid = e.unwrap().file_name().to_string_lossy().into_owned();
        let v = proc_field(pid, Some(&tid), "voluntary_ctxt_switches:").unwrap_or(0);
        let nv = proc_field(pid, Some(&tid), "nonvoluntary_ctxt_switches:").unwrap_or(0);
        out.insert(tid, v + nv);
    }
    out
}

/// A node on `n` files, applied and Done.
fn node_with(n: usize, base: &Path) -> (Node, Daemon, Vec<String>, Duration) {
    let node = Node::in_dir(base);
    let files = many_files(n, "bench");
    let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    node.set_desired(&mc(&format!("rendered-worker-{n}"), files));
    let t = Instant::now();
    let d = Daemon::start(&node, StartOpts::default());
    d.wait_within(SETUP, "first apply", |s| {
        s.state == NodeState::Done && s.current_config == format!("rendered-worker-{n}")
    });
    let took = t.elapsed();
    (node, d, paths, took)
}

/// Alternating drift (chmod 0755) and restore (chmod 0644) of files spread over the config;
/// the drift's latency to `Degraded` is sampled.
fn drift_latency(node: &Node, d: &Daemon, paths: &[String]) -> (Stats, Stats) {
    let mut w = StatusWatch::new(&node.root);
    let mut drift = Vec::new();
    let mut restore = Vec::new();
    for i in 0..WARMUP + DRIFT_SAMPLES {
        let p = node.path(&paths[(i * 7919) % paths.len()]);
        let t = Instant::now();
        chmod(&p, 0o755);
        w.until(DEADLINE, |s| s.state == NodeState::Degraded)
            .unwrap_or_else(|| panic!("no Degraded after a drift:\n{}", d.log()));
        let dt = t.elapsed();
        let t = Instant::now();
        chmod(&p, 0o644);
        w.until(DEADLINE, |s| s.state == NodeState::Done)
            .unwrap_or_else(|| panic!("no Done after the restore:\n{}", d.log()));
        let rt = t.elapsed();
        if i >= WARMUP {
            drift.push(dt);
            restore.push(rt);
        }
    }
    (stats(drift), stats(restore))
}

/// `UPDATES` rebootless updates of /etc/bench/app.conf (policy: `None`) next to `n` other files.
fn none_updates(n: usize, base: &Path) -> Stats {
    let node = Node::in_dir(base);
    node.set_policy_none(&["/etc/bench/app.conf"]);
    let config = |i: usize| {
        let mut files = many_files(n, "bench");
        files.push(file("/etc/bench/app.conf", &format!("generation={i}\n")));
        mc(&format!("rendered-worker-u{i}"), files)
    };
    node.set_desired(&config(0));
    let d = Daemon::start(
        &node,
        StartOpts {
            policy: true,
            ..Default::default()
        },
    );
    d.wait_within(SETUP, "first apply", |s| {
        s.state == NodeState::Done && s.current_config == "rendered-worker-u0"
    });
    let mut w = StatusWatch::new(&node.root);
    let mut samples = Vec::new();
    for i in 1..=WARMUP + UPDATES {
        let bytes = config_bytes(&config(i));
        let name = format!("rendered-worker-u{i}");
        let tmp = node.desired.with_extension("tmp-edit");
        let t = Instant::now();
        std::fs::write(&tmp, &bytes).unwrap();
        std::fs::rename(&tmp, &node.desired).unwrap();
        let st = w
            .until(DEADLINE, |s| {
                s.state == NodeState::Done && s.current_config == name
            })
            .unwrap_or_else(|| panic!("update {i} not applied:\n{}", d.log()));
        let took = t.elapsed();
        assert!(
            !st.last_outcome.unwrap_or_default().contains("reboot"),
            "a None update must not reboot"
        );
        if i > WARMUP {
            samples.push(took);
        }
    }
    stats(samples)
}

/// 10,000 files of 1 KiB; `changed`: one file's first byte differs; `every`: every file's
/// second byte differs.
fn kib_files(
    name: &str,
    changed: Option<usize>,
    every: bool,
) -> machine_config_daemon::model::MachineConfig {
    let files = (0..10_000)
        .map(|i| {
            let mut data = format!("file {i} ").repeat(200).into_bytes();
            data.truncate(1024);
            if changed == Some(i) {
                data[0] = b'F';
            }
            if every {
                data[1] = b'X';
            }
            file_bytes(
                &format!("/etc/bench/d{:03}/f{i:05}.conf", i % 100),
                data,
                0o644,
            )
        })
        .collect();
    mc(name, files)
}

/// The daemon's peak memory over its first apply and two updates of 10,000 files (see the
/// module docs).
fn update_memory(base: &Path) {
    let node = Node::in_dir(base);
    node.set_desired(&kib_files("rendered-worker-a", None, false));
    let d = Daemon::start(&node, StartOpts::default());
    let done = |name: &str| {
        d.wait_within(SETUP, name, |s| {
            s.state == NodeState::Done && s.current_config == name
        });
    };
    done("rendered-worker-a");
    let kib = |field: &str| proc_field(d.pid(), None, field).unwrap_or(0) as f64 / 1024.0;
    println!(
        "\npeak memory of an update, 10,000 x 1 KiB files: first apply VmHWM {:.1} MiB",
        kib("VmHWM:")
    );
    for (what, name, changed, every) in [
        ("one file changed", "rendered-worker-b", Some(4242), false),
        ("every file changed", "rendered-worker-c", None, true),
    ] {
        let config = kib_files(name, changed, every);
        std::thread::sleep(Duration::from_secs(2));
        let idle = kib("VmRSS:");
        std::fs::write(format!("/proc/{}/clear_refs", d.pid()), "5").expect("reset VmHWM");
        node.set_desired(&config);
        drop(config);
        done(name);
        println!(
            "  {what}: VmHWM {:.1} MiB (idle VmRSS before it {idle:.1} MiB)",
            kib("VmHWM:")
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; a filter is not supported.
    if std::env::var("MCD_BENCH_ONLY").is_ok_and(|v| v == "memory") {
        update_memory(&base());
        return;
    }
    let base = base();
    println!("daemon benchmarks: release binary {BIN}");
    println!(
        "roots beneath {} ({})",
        base.display(),
        if base.starts_with("/dev/shm") {
            "tmpfs: fsyncs are cheap"
        } else {
            "the temp dir"
        }
    );
    println!(
        "drift latency: chmod 0755 of one managed file -> status.json renamed with state Degraded \
         (seen through inotify, read and parsed by this process); {WARMUP} warm-up pairs, then \
         {DRIFT_SAMPLES} samples alternating drift and restore (chmod 0644 -> Done)"
    );

    let idle_secs: u64 = std::env::var("MCD_BENCH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);

    // MCD_BENCH_ONLY=updates skips the drift and idle parts (for profiling the updates).
    let only_updates = std::env::var("MCD_BENCH_ONLY").is_ok_and(|v| v == "updates");
    for n in [100usize, 1_000, 10_000] {
        if only_updates {
            break;
        }
        let (node, d, paths, took) = node_with(n, &base);
        println!("\nN = {n} files: first apply to Done in {}", ms(took));
        if n == 10_000 {
            std::thread::sleep(Duration::from_secs(5));
            let rss = proc_field(d.pid(), None, "VmRSS:").unwrap_or(0);
            let hwm = proc_field(d.pid(), None, "VmHWM:").unwrap_or(0);
            println!(
                "  idle RSS after Done + 5 s idle: VmRSS {:.1} MiB (peak VmHWM {:.1} MiB, during the first apply)",
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0
            );
            let before = switches(d.pid());
            std::thread::sleep(Duration::from_secs(idle_secs));
            let after = switches(d.pid());
            let mut woke = 0u64;
            for (tid, a) in &after {
                woke += a - before.get(tid).copied().unwrap_or(0);
            }
            let gone = before.keys().filter(|t| !after.contains_key(*t)).count();
            let new = after.keys().filter(|t| !before.contains_key(*t)).count();
            println!(
                "  idle wakeups over {idle_secs} s: {woke} context switches (voluntary + nonvoluntary, \
                 all threads: {} before, {} after; {gone} exited, {new} new)",
                before.len(),
                after.len()
            );
        }
        let (drift, restore) = drift_latency(&node, &d, &paths);
        println!(
            "  drift -> Degraded: p50 {} p99 {} max {} (n = {})",
            ms(drift.p50),
            ms(drift.p99),
            ms(drift.max),
            drift.n
        );
        println!(
            "  restore -> Done:   p50 {} p99 {} max {} (n = {})",
            ms(restore.p50),
            ms(restore.p99),
            ms(restore.max),
            restore.n
        );
        drop(d);
        drop(node);
    }

    println!(
        "\nrebootless update: desired config written (temp file + rename) -> status.json says Done \
         with the new config; the policy maps the changed file to None; {WARMUP} warm-up updates, \
         then {UPDATES}"
    );
    for n in [4usize, 999] {
        let s = none_updates(n, &base);
        println!(
            "  {} files: p50 {} p99 {} max {} (n = {})",
            n + 1,
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            s.n
        );
    }
    if !only_updates {
        update_memory(&base);
    }
}
