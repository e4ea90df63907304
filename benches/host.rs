//! Host benchmarks (`cargo bench --bench host`): on-disk validation of 10,000 × 1 KiB files (warm
//! page cache) and an apply that changes 1 file out of 10,000. Method: a tempdir root on the
//! machine's disk, the config applied once, then N timed runs; prints median and p99 (nearest
//! rank) of wall-clock time per run. The apply is also reported without the time spent inside
//! its fsyncs (the target is "≤ 20 ms plus the fsyncs it needs"): every fsync of an update is
//! made by the calling thread (the stored config's temp file, written on another thread, is
//! fsynced at its step), so that figure is the wall-clock time the update did not spend waiting
//! in fsync. `BENCH_DIR` picks the directory the tempdir root is made in (default `/var/tmp`).
//!
//! Last, the binary itself (`machine-config-daemon apply --no-systemd`, built with the bench's
//! profile) on a fresh root: its wall-clock time and peak RSS (`ru_maxrss`, what
//! `/usr/bin/time -v` reports) for the first apply of the 10,000 files, then one file changed,
//! then every file changed (targets: ≤ 1.5 s for the first apply on ext4, ≤ 32 MiB RSS each),
//! through `/usr/bin/time`.
//! `MCD_BENCH_ONLY=cli` runs only that part.

use machine_config_daemon::host::owners::Owners;
use machine_config_daemon::host::root::fsync_stats;
use machine_config_daemon::host::{self, ApplyOptions, Manifest, Root};
use machine_config_daemon::model::{File, MachineConfig};
use std::time::{Duration, Instant};

const N: usize = 10_000;

fn config(name: &str, changed: Option<usize>) -> MachineConfig {
    let mut m = MachineConfig {
        name: name.to_string(),
        ..MachineConfig::default()
    };
    m.spec.config.version = "3.4.0".to_string();
    m.spec.config.files = (0..N)
        .map(|i| {
            let mut data = format!("file {i} ").repeat(200).into_bytes();
            data.truncate(1024);
            if changed == Some(i) {
                data[0] = b'F';
            }
            File {
                path: format!("/etc/bench/d{:03}/f{i:05}.conf", i % 100),
                contents: Some(data),
                mode: Some(0o644),
                overwrite: Some(true),
                ..File::default()
            }
        })
        .collect();
    m
}

fn stats(name: &str, mut t: Vec<Duration>) {
    t.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p99 = t[((t.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)];
    println!(
        "{name}: median {:.2} ms, p99 {:.2} ms, min {:.2} ms ({} runs)",
        ms(t[t.len() / 2]),
        ms(p99),
        ms(t[0]),
        t.len()
    );
}

/// Runs `machine-config-daemon apply` on `root` with the config file `config`: wall-clock time
/// and peak RSS in KiB, as `/usr/bin/time` reports it (the child's own `ru_maxrss` would count
/// this process's memory: a child spawned by vfork takes its parent's high-water mark across
/// the exec).
fn cli_apply(root: &std::path::Path, config: &std::path::Path) -> (Duration, i64) {
    let t = Instant::now();
    let out = std::process::Command::new("/usr/bin/time")
        .args([
            "-f",
            "%M",
            env!("CARGO_BIN_EXE_machine-config-daemon"),
            "apply",
        ])
        .arg("--root")
        .arg(root)
        .arg("--config")
        .arg(config)
        .arg("--no-systemd")
        .stdout(std::process::Stdio::null())
        .output()
        .expect("run /usr/bin/time machine-config-daemon");
    let d = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "apply failed: {err}");
    let kib = err
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("peak RSS from /usr/bin/time");
    (d, kib)
}

/// The CLI figures (see the module docs).
fn cli(base: &std::path::Path) {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let mut every = config("rendered-worker-c", None);
    for f in &mut every.spec.config.files {
        if let Some(c) = f.contents.as_mut() {
            c[1] = b'X';
        }
    }
    let runs = [
        ("first apply", config("rendered-worker-a", None)),
        ("one file changed", config("rendered-worker-b", Some(4242))),
        ("every file changed", every),
    ];
    for (what, mc) in runs {
        let path = dir.path().join(format!("{}.json", mc.name));
        std::fs::write(&path, host::state::encode(&mc)).unwrap();
        drop(mc);
        let (d, kib) = cli_apply(&root, &path);
        println!(
            "cli apply of {N} files, {what}: {:.0} ms, peak RSS {:.1} MiB",
            d.as_secs_f64() * 1e3,
            kib as f64 / 1024.0
        );
    }
}

fn main() {
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    if std::env::var("MCD_BENCH_ONLY").as_deref() == Ok("cli") {
        cli(std::path::Path::new(&base));
        return;
    }
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
            .expect("tempdir");
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let root = Root::open(dir.path()).unwrap();
    let a = config("rendered-worker-a", None);
    let b = config("rendered-worker-b", Some(4242));

    let t0 = Instant::now();
    let (n0, f0) = fsync_stats();
    host::apply(&root, None, &a, &ApplyOptions::default()).unwrap();
    let (n1, f1) = fsync_stats();
    println!(
        "first apply of {N} files: {:.0} ms ({} fsyncs, {:.0} ms in them)",
        t0.elapsed().as_secs_f64() * 1e3,
        n1 - n0,
        (f1 - f0).as_secs_f64() * 1e3
    );

    let t0 = Instant::now();
    let man = Manifest::build(&a, &Owners::load(&root).unwrap()).unwrap();
    println!(
        "manifest build ({N} records, hashing contents): {:.2} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );

    let runs: Vec<Duration> = (0..30)
        .map(|_| {
            let t = Instant::now();
            man.check_all(&root).unwrap();
            t.elapsed()
        })
        .collect();
    stats(&format!("validate {N} x 1 KiB (check_all)"), runs);

    let runs: Vec<Duration> = (0..1000)
        .map(|i| {
            let p = format!("/etc/bench/d{:03}/f{:05}.conf", i % 100, i * 7 % N);
            let t = Instant::now();
            man.check_path(&root, &p).unwrap();
            t.elapsed()
        })
        .collect();
    stats("validate one path (check_path)", runs);

    let runs: Vec<Duration> = (0..10)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(host::state::encode(&b));
            t.elapsed()
        })
        .collect();
    stats(
        "  of which: encode currentconfig (MachineConfig JSON)",
        runs,
    );

    let mut runs = Vec::new();
    let mut cpu = Vec::new();
    let mut syncs = 0;
    for i in 0..40 {
        let (old, new) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (n0, f0) = fsync_stats();
        let t = Instant::now();
        let r = host::apply(&root, Some(old), new, &ApplyOptions::default()).unwrap();
        let d = t.elapsed();
        let (n1, f1) = fsync_stats();
        runs.push(d);
        cpu.push(d.saturating_sub(f1 - f0));
        syncs = n1 - n0;
        assert_eq!(r.steps.len(), 2, "{:?}", r.steps);
    }
    stats(
        &format!("apply changing 1 of {N} files (incl. fsyncs)"),
        runs,
    );
    stats(
        &format!("  the same, excluding the time inside its {syncs} fsyncs"),
        cpu,
    );
    drop((a, b, man, root));
    cli(std::path::Path::new(&base));
}
