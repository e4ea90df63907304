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
        let log = std::fs::File::create(log).unwrap();
        let child = self
            .command("examples/demo.sh")
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
    let readme = std::fs::read_to_string(Path::new(DIR).join("README.md")).unwrap();
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
        let out = env.shell(&format!("{vars}\n{line}"));
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
