//! Benchmark of `plan::plan` between two configs where every file changed.
//!
//! Method: configs of N files (N = 1,000 and 10,000) of 1 KiB each, spread over 100 directories
//! under /etc, half of them matched by a default policy path (`/etc/containers/registries.d`,
//! `/etc/crio/policies`) and half by a user entry for `/etc/app`; every file's contents differ
//! between the two configs, and the new config lists its files in reverse order (so sorting is
//! exercised). The effective policy is the defaults plus the user entry. Each size is warmed up,
//! then timed over many iterations with `Instant`; we print the median and the 99th percentile,
//! and the ratio of the 10k median to the 1k median next to n·log n's ratio (13.3).
//!
//! Run: `cargo bench --bench plan` (release profile).

use machine_config_daemon::model::policy::{Action, FilePolicy, Policy, effective};
use machine_config_daemon::model::{File, MachineConfig};
use machine_config_daemon::plan::{PlanOptions, plan};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn config(name: &str, n: usize, fill: u8, reverse: bool) -> MachineConfig {
    let dirs = [
        "/etc/containers/registries.d",
        "/etc/crio/policies",
        "/etc/app",
    ];
    let mut files: Vec<File> = (0..n)
        .map(|i| File {
            path: format!("{}/d{:02}/file-{i:05}.conf", dirs[i % dirs.len()], i % 100),
            contents: Some(vec![fill; 1024]),
            mode: Some(0o644),
            overwrite: Some(true),
            ..File::default()
        })
        .collect();
    if reverse {
        files.reverse();
    }
    let mut mc = MachineConfig {
        name: name.into(),
        ..MachineConfig::default()
    };
    mc.spec.config.files = files;
    mc
}

fn measure(n: usize, policy: &Policy) -> (Duration, Duration) {
    let old = config("rendered-worker-old", n, b'a', false);
    let new = config("rendered-worker-new", n, b'b', true);
    let opts = PlanOptions::default();
    // Sanity: every file is a change, and the result is what the policy says.
    let p = plan(&old, &new, policy, &opts);
    assert_eq!(p.changes.len(), n);
    assert_eq!(
        p.actions,
        vec![
            Action::restart("app.service"),
            Action::reload("crio.service")
        ]
    );
    let iterations = if n >= 10_000 { 60 } else { 400 };
    for _ in 0..iterations / 10 {
        black_box(plan(black_box(&old), black_box(&new), policy, &opts));
    }
    let mut times: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            black_box(plan(black_box(&old), black_box(&new), policy, &opts));
            start.elapsed()
        })
        .collect();
    times.sort();
    phases(&old, &new, policy);
    let median = times[times.len() / 2];
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    println!(
        "plan, {n:>6} files all changed: median {median:>10.3?}  p99 {p99:>10.3?}  ({iterations} runs)"
    );
    (median, p99)
}

/// Median time of each phase of a plan (diff, actions, reconcilability), to show where time goes.
fn phases(old: &MachineConfig, new: &MachineConfig, policy: &Policy) {
    use machine_config_daemon::plan::{actions, diff, reconcile};
    let median = |f: &dyn Fn()| {
        let mut t: Vec<Duration> = (0..21)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed()
            })
            .collect();
        t.sort();
        t[10]
    };
    let d = diff::diff(old, new);
    let opts = PlanOptions::default();
    let td = median(&|| drop(black_box(diff::diff(old, new))));
    let ta = median(&|| drop(black_box(actions::decide(&d, old, new, policy, &opts))));
    let tr = median(&|| drop(black_box(reconcile::check(old, new, &d))));
    println!("    phases: diff {td:.3?}  actions {ta:.3?}  reconcile {tr:.3?}");
}

fn main() {
    let policy = effective(&Policy {
        files: vec![FilePolicy {
            path: "/etc/app".into(),
            actions: vec![Action::restart("app.service")],
        }],
        ..Policy::default()
    });
    let (m1k, _) = measure(1_000, &policy);
    let (m10k, _p99_10k) = measure(10_000, &policy);
    let ratio = m10k.as_secs_f64() / m1k.as_secs_f64();
    let nlogn = (10_000f64 * 10_000f64.log2()) / (1_000f64 * 1_000f64.log2());
    println!("growth 1k -> 10k: x{ratio:.1} (n log n: x{nlogn:.1}, linear: x10.0)");
    let met = if m10k <= Duration::from_millis(20) {
        "met"
    } else {
        "NOT met"
    };
    println!("target: median <= 20 ms at 10k: {met}");
    // The figures depend on what else runs on the machine; say how busy it was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "load average while measuring: {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}
