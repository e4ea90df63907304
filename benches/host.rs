//! Host benchmarks (`cargo bench --bench host`): on-disk validation of 10,000 × 1 KiB files (warm
//! page cache) and an apply that changes 1 file out of 10,000. Method: a tempdir root on the
//! machine's disk, the config applied once, then N timed runs; prints median and p99 (nearest
//! rank) of wall-clock time per run. The apply is also reported without the time spent inside
//! its fsyncs (the target is "≤ 20 ms plus the fsyncs it needs"): every fsync of an update is
//! made by the calling thread (the stored config's temp file, written on another thread, is
//! fsynced at its step), so that figure is the wall-clock time the update did not spend waiting
//! in fsync. `BENCH_DIR` picks the directory the tempdir root is made in (default `/var/tmp`).

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

fn main() {
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
}
