//! What every command shares as a Unix tool: exit codes in `--help`, a quiet end when its
//! output is cut short (`status | head`), and the output formats each one lists (`status -o
//! wide`, `validate -o text`). The built binary.

use machine_config_daemon::daemon::status::{Status, status_path};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_machine-config-daemon");
const EX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// A root with the users the examples name.
fn node_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for d in ["etc", "home/core"] {
        std::fs::create_dir_all(t.path().join(d)).unwrap();
    }
    std::fs::write(
        t.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\ncore:x:1000:1000::/home/core:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(t.path().join("etc/group"), "root:x:0:\ncore:x:1000:\n").unwrap();
    t
}

/// A root whose status file says Done on `config`.
fn root_with_status(config: &str) -> tempfile::TempDir {
    let t = node_root();
    let mut s = Status::new("node-1", "worker", std::time::SystemTime::now());
    s.current_config = config.into();
    s.desired_config = config.into();
    s.write(&status_path(t.path())).unwrap();
    t
}

const COMMANDS: [&str; 7] = [
    "render", "validate", "plan", "status", "force", "apply", "start",
];

#[test]
fn every_help_lists_the_exit_codes() {
    let top = run(&["--help"]);
    assert!(
        text(&top.stdout).contains("\nExit codes"),
        "{}",
        text(&top.stdout)
    );
    for c in COMMANDS {
        let out = run(&[c, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        let codes = help
            .split_once("\nExit codes:\n")
            .unwrap_or_else(|| panic!("{c}: {help}"))
            .1;
        assert!(codes.contains("  0  "), "{c}: {codes}");
        assert!(codes.contains("  2  "), "{c}: {codes}");
    }
}

/// Runs `args` with stdout a pipe whose reading end is already closed.
fn into_closed_pipe(args: &[&str]) -> std::process::ExitStatus {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors, owned below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors from pipe2, each owned once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let out = Command::new(BIN)
        .args(args)
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(err.is_empty(), "{args:?}: {err}");
    out.status
}

#[test]
fn output_cut_short_ends_quietly() {
    let root = root_with_status("rendered-worker-a");
    let r = root.path().to_str().unwrap();
    std::fs::create_dir_all(root.path().join("etc/machine-config-daemon")).unwrap();
    let base = format!("{EX}/configs/base.yaml");
    let chrony = format!("{EX}/configs/chrony.yaml");
    let cases: Vec<Vec<&str>> = vec![
        vec!["status", "--root", r],
        vec!["status", "--root", r, "-o", "json"],
        vec!["render", &base],
        vec!["validate", "--config", &base],
        vec![
            "validate",
            "--policy",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies/files.yaml"),
            "-o",
            "text",
        ],
        vec!["plan", "--from", &base, "--to", &chrony],
        vec!["apply", "--root", r, "--config", &base, "--dry-run"],
        vec!["force", "--root", r],
        vec!["--help"],
    ];
    for args in cases {
        let st = into_closed_pipe(&args);
        // Ended by SIGPIPE, as `cat` or `ls` are (clap's --help ignores the error and exits
        // 0), and said nothing (no panic, no backtrace).
        assert!(
            st.signal() == Some(libc::SIGPIPE) || (args == ["--help"] && st.code() == Some(0)),
            "{args:?}: {st:?}"
        );
    }
}

#[test]
fn status_takes_wide_like_kubectl() {
    let root = root_with_status("rendered-worker-a");
    let r = root.path().to_str().unwrap();
    let wide = run(&["status", "--root", r, "-o", "wide"]);
    assert_eq!(wide.status.code(), Some(0), "{}", text(&wide.stderr));
    let flag = run(&["status", "--root", r, "--wide"]);
    let narrow = run(&["status", "--root", r]);
    let head = |o: &Output| {
        text(&o.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert!(head(&wide).contains("NODEDEGRADED"), "{}", head(&wide));
    assert_eq!(head(&wide), head(&flag));
    assert!(!head(&narrow).contains("NODEDEGRADED"), "{}", head(&narrow));
}

#[test]
fn validate_prints_text_when_asked() {
    let out = run(&[
        "validate",
        "--config",
        &format!("{EX}/configs/base.yaml"),
        "-o",
        "text",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("{EX}/configs/base.yaml: valid MachineConfig example-base (3 files, 1 units)\n")
    );
    let p = format!("{EX}/policies/files.yaml");
    let out = run(&["validate", "--policy", &p, "-o", "text"]);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out.stdout);
    assert!(t.starts_with(&format!("{p}: valid\n")), "{t}");
    assert!(
        t.contains("\n  file /etc/chrony.conf: Reload chronyd.service\n"),
        "{t}"
    );
    assert!(t.ends_with("  sshkey: None\n"), "{t}");
    assert!(serde_json::from_str::<serde_json::Value>(&t).is_err());
}

#[test]
fn apply_refusing_an_unreconcilable_change_lists_no_actions() {
    let root = node_root();
    let r = root.path().to_str().unwrap();
    let base = format!("{EX}/configs/base.yaml");
    let out = run(&["apply", "--root", r, "--config", &base, "--no-systemd"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let bad = format!("{EX}/configs/unreconcilable.yaml");
    let out = run(&["apply", "--root", r, "--config", &bad, "--no-systemd"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "plan: example-base -> example-unreconcilable: unreconcilable, nothing changed\n"
    );
    assert!(text(&out.stderr).starts_with("error: can't reconcile config example-base"));
}
