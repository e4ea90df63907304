//! Benchmark of `model::render::render`.
//!
//! Method: each case builds its MachineConfigs in memory, renders once to check the result
//! (every path present once, in merge order), warms up, then times `render` with `Instant`
//! over as many runs as fit in about two seconds (at least 3, at most 200); we print the median
//! and the slowest run.
//!
//! Cases:
//! - 100 MachineConfigs of 10 files, 2 units with a dropin each, and one user with an ssh key
//!   (every config adds its own files and units, and all of them merge into the same `core` user);
//! - two configs of N distinct files each (N = 7,500, 15,000 and 30,000; 128-byte contents,
//!   spread over 100 directories), the case where a merge that looks entries up one by one is
//!   quadratic; the ratio of successive medians shows the growth (n·log n: about 2.1);
//! - one config of 60,000 files, the same files without any merge, for comparison (what is left
//!   is mostly the rendered name: hashing the canonical JSON of the spec).
//!
//! Run: `cargo bench --bench render` (release profile).

use machine_config_daemon::model::render::render;
use machine_config_daemon::model::{Dropin, File, MachineConfig, Unit, User};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn files(prefix: &str, n: usize) -> Vec<File> {
    (0..n)
        .map(|i| File {
            path: format!("/etc/{prefix}/d{:02}/file-{i:05}.conf", i % 100),
            contents: Some(vec![b'a' + (i % 26) as u8; 128]),
            mode: Some(0o644),
            ..File::default()
        })
        .collect()
}

fn mc(name: &str, files: Vec<File>) -> MachineConfig {
    let mut mc = MachineConfig {
        name: name.into(),
        ..MachineConfig::default()
    };
    mc.spec.config.files = files;
    mc
}

fn hundred_configs() -> Vec<MachineConfig> {
    (0..100)
        .map(|c| {
            let mut m = mc(
                &format!("{c:02}-worker-custom"),
                files(&format!("c{c:02}"), 10),
            );
            m.spec.config.units = (0..2)
                .map(|u| Unit {
                    name: format!("c{c:02}-u{u}.service"),
                    contents: Some("[Service]\nExecStart=/bin/true\n".into()),
                    enabled: Some(true),
                    dropins: vec![Dropin {
                        name: "10-env.conf".into(),
                        contents: Some("[Service]\nEnvironment=A=1\n".into()),
                    }],
                    ..Unit::default()
                })
                .collect();
            m.spec.config.users = vec![User {
                name: "core".into(),
                ssh_authorized_keys: vec![format!("ssh-ed25519 AAAA{c:02} key-{c}")],
                ..User::default()
            }];
            m
        })
        .collect()
}

/// Times `render("worker", configs)`; returns the median.
fn measure(label: &str, configs: &[MachineConfig], expect_files: usize) -> Duration {
    let rendered = render("worker", configs).expect("renders");
    let got = &rendered.spec.config.files;
    assert_eq!(got.len(), expect_files, "{label}: file count");
    let mut seen = std::collections::HashSet::new();
    assert!(
        got.iter().all(|f| seen.insert(f.path.as_str())),
        "{label}: paths unique"
    );
    let expected: Vec<&str> = configs
        .iter()
        .flat_map(|c| c.spec.config.files.iter().map(|f| f.path.as_str()))
        .collect();
    let order: Vec<&str> = got.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(order, expected, "{label}: merge order");

    let start = Instant::now();
    black_box(render("worker", black_box(configs)).unwrap());
    let first = start.elapsed();
    let runs = (Duration::from_secs(2).as_nanos() / first.as_nanos().max(1)).clamp(3, 200) as usize;
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(render("worker", black_box(configs)).unwrap());
            start.elapsed()
        })
        .collect();
    times.sort();
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    println!("render, {label:<42} median {median:>10.3?}  max {max:>10.3?}  ({runs} runs)");
    median
}

fn main() {
    measure("100 MachineConfigs", &hundred_configs(), 1_000);
    let mut previous: Option<Duration> = None;
    for n in [7_500, 15_000, 30_000] {
        let configs = [mc("00-a", files("a", n)), mc("01-b", files("b", n))];
        let label = format!("two configs of {n} distinct files each");
        let median = measure(&label, &configs, 2 * n);
        if let Some(p) = previous {
            println!(
                "  ratio to half the files: {:.2}",
                median.as_secs_f64() / p.as_secs_f64()
            );
        }
        previous = Some(median);
    }
    let mut one = files("a", 30_000);
    one.extend(files("b", 30_000));
    measure("one config of 60000 files", &[mc("00-a", one)], 60_000);
}
