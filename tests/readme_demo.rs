//! README's quick start, as written: `examples/demo.sh` runs the daemon (the test binary, through
//! a `CARGO_TARGET_DIR` holding it, since the demo honours that variable), and every line of
//! README's demo block runs in turn in a shell, from the project's directory, and must succeed
//! and show what its comment says. The only change made to the lines: the metrics address,
//! `127.0.0.1:8797`, becomes a free port (tests run side by side). Then a second run of the demo
//! starts from scratch, and refuses to while a demo daemon still runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_machine-config-daemon");
const DIR: &str = env!("CARGO_MANIFEST_DIR");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The demo's environment: a target directory holding the binary, the demo directory and the
/// metrics address.
struct Env {
    _tmp: tempfile::TempDir,
    target: PathBuf,
    demo: PathBuf,
    metrics: String,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::create_dir_all(target.join("release")).unwrap();
        std::os::unix::fs::symlink(BIN, target.join("release/machine-config-daemon")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Env {
            demo: tmp.path().join("demo"),
            target,
            metrics: format!("127.0.0.1:{port}"),
            _tmp: tmp,
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.current_dir(DIR)
            .env("CARGO_TARGET_DIR", &self.target)
            .env("MCD_DEMO_DIR", &self.demo)
            .env("MCD_DEMO_BIN", BIN)
            .env("MCD_DEMO_METRICS", &self.metrics)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC");
        c
    }

    /// `examples/demo.sh` in the background (it execs the daemon: the child is the daemon).
    fn demo(&self, log: &Path) -> Demo {
        self.demo_with(log, &[])
    }

    /// [`Env::demo`] with more arguments for the daemon.
    fn demo_with(&self, log: &Path, args: &[&str]) -> Demo {
        let log = std::fs::File::create(log).unwrap();
        let child = self
            .command("examples/demo.sh")
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Demo(child)
    }

    fn shell(&self, script: &str) -> Output {
        self.command("bash")
            .args(["-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// The demo daemon, killed on drop.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// README's demo block: the lines of the code block whose first line sets `B`, `D` and `R`.
fn readme_block() -> Vec<String> {
    readme_block_after("## Quick start")
}

/// The lines of the first such block after `heading`.
fn readme_block_after(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(DIR).join("README.md")).unwrap();
    let readme = &readme[readme.find(heading).expect(heading)..];
    let start = readme
        .find("\nB=${CARGO_TARGET_DIR:-target}/release/machine-config-daemon D=")
        .expect("README's demo block");
    let block = &readme[start + 1..];
    let end = block.find("```").unwrap();
    block[..end].lines().map(str::to_string).collect()
}

#[test]
fn readme_demo_sequence_runs_as_written() {
    let env = Env::new();
    let log = env.target.join("demo.log");
    let mut demo = env.demo(&log);
    let lines = readme_block();
    let (vars, steps) = lines.split_first().unwrap();
    assert!(steps.len() >= 8, "{lines:#?}");
    let mut seen = Vec::new();
    for step in steps {
        if step.contains("$B status") {
            // Every status line waits for the state it shows: no race with the daemon.
            assert!(step.contains("--wait-for "), "{step}");
        }
        let line = step.replace("127.0.0.1:8797", &env.metrics);
        let mut out = env.shell(&format!("{vars}\n{line}"));
        // The status file is written a moment after the drift report is logged: wait for it.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while step.contains("$B status")
            && seen.contains(&"reported")
            && !text(&out.stdout).contains("drift reported")
            && std::time::Instant::now() < end
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
            out = env.shell(&format!("{vars}\n{line}"));
        }
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{step}\n{stdout}{}\ndemo log:\n{}",
            text(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let comment = step.split_once(" # ").map(|c| c.1.trim()).unwrap_or("");
        if step.contains("--wait-for Degraded") {
            assert!(comment.starts_with("Degraded: "), "{comment}");
            let reason = comment.trim_start_matches("Degraded: ");
            assert!(
                stdout.contains("Degraded") && stdout.contains(reason),
                "{stdout}"
            );
            seen.push("degraded");
        } else if step.contains("--wait-for Done") && step.contains("-o json") {
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(v["currentConfig"], "example-chrony", "{stdout}");
            assert!(v["lastPlan"].is_object(), "{stdout}");
            assert!(v["lastOutcome"].is_string(), "{stdout}");
            seen.push("json");
        } else if step.contains("--wait-for Done") {
            assert!(
                stdout.contains("example-base") && stdout.contains("Done"),
                "{stdout}"
            );
            if comment.contains("daemon: running") {
                assert!(
                    stdout.contains(&format!("daemon: running (pid {})", demo.0.id())),
                    "{stdout}"
                );
            }
            seen.push("done");
        } else if step.contains("$B force") {
            assert!(stdout.starts_with("created "), "{stdout}");
            seen.push("force");
        } else if step.starts_with("curl") {
            assert!(stdout.contains("mcd_state{"), "{stdout}");
            seen.push("metrics");
        }
    }
    assert_eq!(
        seen,
        ["done", "degraded", "done", "json", "force", "metrics"],
        "the checks of every line ran"
    );

    // A second run while this one still runs: refused, nothing removed.
    let out = env.shell("examples/demo.sh");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("a demo daemon still runs on"),
        "{}",
        text(&out.stderr)
    );
    assert!(env.demo.join("policy.yaml").exists());

    // Stopped, then run again: a fresh demo, base.yaml and no policy.
    let pid = demo.0.id() as i32;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(demo.0.wait().unwrap().success());
    let second_log = env.target.join("demo2.log");
    let _second = env.demo(&second_log);
    let out = env.shell(&format!(
        "{vars}\n$B status --root $R --wait-for Done --current-config example-base --timeout 10s"
    ));
    assert!(
        out.status.success(),
        "{}{}\n{}",
        text(&out.stdout),
        text(&out.stderr),
        std::fs::read_to_string(&second_log).unwrap_or_default()
    );
    assert!(!env.demo.join("policy.yaml").exists());
    assert_eq!(
        std::fs::read(env.demo.join("desired.yaml")).unwrap(),
        std::fs::read(Path::new(DIR).join("examples/configs/base.yaml")).unwrap()
    );
    assert!(
        !env.demo
            .join("root/run/machine-config-daemon-force")
            .exists()
    );
}

#[test]
fn the_demo_leaves_a_directory_it_did_not_make_alone() {
    let env = Env::new();
    std::fs::create_dir_all(&env.demo).unwrap();
    std::fs::write(env.demo.join("precious"), "x").unwrap();
    let out = env.shell("examples/demo.sh");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("was not made by this script"),
        "{}",
        text(&out.stderr)
    );
    assert!(env.demo.join("precious").exists());
}

/// Waits until `log` holds `needle` (bounded).
fn wait_log(log: &Path, needle: &str) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "{needle:?} not logged:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// README's worked example of the drift rules, as written: the demo with
/// `--daemon-config examples/daemon-config.yaml`, then every line of the block in turn; each
/// must succeed and show what its comments say (after a hand edit, the test waits for the
/// daemon's log line before the next step, as a person reading the log would).
#[test]
fn readme_drift_example_runs_as_written() {
    let env = Env::new();
    let log = env.target.join("demo.log");
    let _demo = env.demo_with(&log, &["--daemon-config", "examples/daemon-config.yaml"]);
    let lines = readme_block_after("### Drift: degrade, report or heal");
    let (vars, steps) = lines.split_first().unwrap();
    // Started: the state is Done on example-base.
    let out = env.shell(&format!(
        "{vars}\n$B status --root $R --wait-for Done --current-config example-base --timeout 10s"
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Each command with the comment lines after it.
    let mut seen = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        let step = &steps[i];
        let mut comments = String::new();
        i += 1;
        while i < steps.len() && steps[i].starts_with('#') {
            comments += &steps[i];
            comments.push('\n');
            i += 1;
        }
        if step.starts_with('#') {
            continue;
        }
        let line = step.replace("127.0.0.1:8797", &env.metrics);
        let mut out = env.shell(&format!("{vars}\n{line}"));
        // The status file is written a moment after the drift report is logged: wait for it.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while step.contains("$B status")
            && seen.contains(&"reported")
            && !text(&out.stdout).contains("drift reported")
            && std::time::Instant::now() < end
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
            out = env.shell(&format!("{vars}\n{line}"));
        }
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{step}\n{stdout}{}\ndemo log:\n{}",
            text(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        if step.contains("$B validate") {
            assert!(stdout.contains("  /etc/chrony.conf -> heal\n"), "{stdout}");
            seen.push("validate");
        } else if step.contains("$B plan") {
            for c in comments.lines().skip(1) {
                let want = c.trim_start_matches('#').trim();
                assert!(
                    stdout.contains(&format!("  {want}\n")),
                    "{want:?} in\n{stdout}"
                );
            }
            seen.push("plan");
        } else if step.contains(">> $R/etc/chrony.conf") {
            wait_log(
                &log,
                "drift healed: /etc/chrony.conf rewritten from example-base (heal 1 of at most 3 within 1h); then reload chronyd.service (skipped: no systemd (--no-systemd)) (policy entry /etc/chrony.conf)",
            );
            seen.push("healed");
        } else if step.starts_with("tail") {
            let base = std::fs::read_to_string(env.demo.join("root/etc/chrony.conf")).unwrap();
            assert!(!base.contains("evil"), "{base}");
            assert!(base.ends_with(&stdout), "{stdout}");
            seen.push("tail");
        } else if step.contains(">> $R/etc/sysconfig/hello") {
            wait_log(
                &log,
                "configuration drift (reported; the node stays Done): content mismatch for file \"/etc/sysconfig/hello\"",
            );
            seen.push("reported");
        } else if step.contains("$B status") {
            assert!(stdout.contains("Done"), "{stdout}");
            assert!(
                stdout.contains("drift rules (examples/daemon-config.yaml):"),
                "{stdout}"
            );
            assert!(
                stdout.contains("drift reported (the node stays Done): content mismatch for file \"/etc/sysconfig/hello\""),
                "{stdout}"
            );
            seen.push("status");
        } else if step.starts_with("curl") {
            for m in [
                "mcd_drift_total{action=\"heal\"} 1\n",
                "mcd_drift_total{action=\"report\"} 1\n",
                "mcd_drift_heals_total{result=\"healed\"} 1\n",
            ] {
                assert!(stdout.contains(m), "{m} in\n{stdout}");
            }
            seen.push("metrics");
        }
    }
    assert_eq!(
        seen,
        [
            "validate", "plan", "healed", "tail", "reported", "status", "metrics"
        ],
        "the checks of every line ran"
    );
}
