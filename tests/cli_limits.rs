//! A config is untrusted input: the commands that read configs read only regular files (or
//! stdin), within a size; decoded and decompressed contents are capped per file and per config
//! (YAML aliases included); messages quote at most about 200 characters of any input and speak
//! of fields, not of the parsers' types. The built binary, on generated files.

use base64::Engine as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_machine-config-daemon");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the binary; fails the test if it is still running after 20 s (a FIFO must not hang it).
fn run(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => out,
        Err(_) => {
            // SAFETY: kill(2) on our own child, not yet reaped (the thread still waits on it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{args:?} still running after 20 s");
        }
    }
}

fn validate(path: &Path, extra: &[&str]) -> Output {
    let p = path.to_str().unwrap();
    run(&[&["validate", "--config", p], extra].concat())
}

/// A MachineConfig (YAML) with `files`, each already indented as list items.
fn mc_yaml(name: &str, files: &str) -> String {
    format!(
        "apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfig\nmetadata:\n  name: {name}\nspec:\n  config:\n    ignition:\n      version: 3.4.0\n    storage:\n      files:\n{files}"
    )
}

fn gzip_zeros(n: usize) -> String {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; n]).unwrap();
    base64::engine::general_purpose::STANDARD.encode(e.finish().unwrap())
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// The only `error:` line of a refused command (exit code 2).
fn refused(out: &Output) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}{}", text(&out.stdout));
    assert!(out.stdout.is_empty());
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

const MIB: usize = 1024 * 1024;

#[test]
fn only_regular_files_are_read() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let line = refused(&validate(&fifo, &[]));
    assert_eq!(
        line,
        format!(
            "error: {}: cannot read: a FIFO; a config must be a regular file (or - for stdin)",
            fifo.display()
        )
    );
    let line = refused(&validate(Path::new("/dev/zero"), &[]));
    assert!(
        line.contains("/dev/zero: cannot read: a character device"),
        "{line}"
    );
    // The other commands that read configs refuse them the same way.
    let p = fifo.to_str().unwrap();
    for args in [
        vec!["render", p],
        vec!["validate", "--policy", p],
        vec!["plan", "--from", p, "--to", p],
        vec!["apply", "--root", d.path().to_str().unwrap(), "--config", p],
    ] {
        let out = run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.is_empty());
        for line in err.lines() {
            assert!(line.contains("cannot read: a FIFO"), "{args:?}: {line}");
        }
    }
    assert!(!d.path().join("etc").exists());
}

#[test]
fn stdin_is_read_when_asked_with_a_dash() {
    let mut child = Command::new(BIN)
        .args(["validate", "--config", "-", "-o", "text"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = mc_yaml(
        "from-stdin",
        "        - path: /etc/x\n          contents:\n            source: \"data:,x\"\n",
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "-: valid MachineConfig from-stdin (1 files, 0 units)\n"
    );
}

#[test]
fn a_config_larger_than_the_limit_is_refused_unless_raised() {
    let d = tempfile::tempdir().unwrap();
    let mut body = mc_yaml(
        "big",
        "        - path: /etc/x\n          contents:\n            source: \"data:,x\"\n",
    );
    body.push_str(&format!("# {}\n", "x".repeat(2048)));
    let p = write(d.path(), "big.yaml", &body);
    let line = refused(&validate(&p, &["--max-config-size", "1K"]));
    assert_eq!(
        line,
        format!(
            "error: {}: larger than 1024 bytes (the limit on a config's size; --max-config-size raises it)",
            p.display()
        )
    );
    let out = validate(&p, &["--max-config-size", "4K"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn decompression_stops_at_the_per_file_cap() {
    let d = tempfile::tempdir().unwrap();
    let files = format!(
        "        - path: /etc/ok\n          contents:\n            source: \"data:,x\"\n        - path: /etc/big\n          contents:\n            compression: gzip\n            source: \"data:;base64,{}\"\n",
        gzip_zeros(33 * MIB)
    );
    let p = write(d.path(), "bomb.yaml", &mc_yaml("bomb", &files));
    let line = refused(&validate(&p, &[]));
    assert_eq!(
        line,
        format!(
            "error: {}: spec.config.storage.files[1].contents.source: decompressed contents exceed 32 MiB (the limit per file; --max-file-size raises it)",
            p.display()
        )
    );
    // Raised, it is valid (and the total of 256 MiB is not reached).
    let out = validate(&p, &["--max-file-size", "40M", "-o", "text"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Uncompressed contents are held to the same cap.
    let plain = format!(
        "        - path: /etc/big\n          contents:\n            source: \"data:;base64,{}\"\n",
        base64::engine::general_purpose::STANDARD.encode(vec![b'a'; 2 * MIB])
    );
    let p = write(d.path(), "plain.yaml", &mc_yaml("plain", &plain));
    let line = refused(&validate(&p, &["--max-file-size", "1M"]));
    assert!(
        line.ends_with("spec.config.storage.files[0].contents.source: decoded contents exceed 1 MiB (the limit per file; --max-file-size raises it)"),
        "{line}"
    );
}

#[test]
fn yaml_aliases_count_against_the_total_once_decoded() {
    let d = tempfile::tempdir().unwrap();
    // One 4 MiB source, repeated by 99 aliases: 400 MiB if every file were decoded.
    let mut files = format!(
        "        - path: /etc/f0\n          contents: &c\n            compression: gzip\n            source: \"data:;base64,{}\"\n",
        gzip_zeros(4 * MIB)
    );
    for i in 1..100 {
        files.push_str(&format!(
            "        - path: /etc/f{i}\n          contents: *c\n"
        ));
    }
    let p = write(d.path(), "alias.yaml", &mc_yaml("alias", &files));
    assert!(std::fs::metadata(&p).unwrap().len() < 64 * 1024);
    let line = refused(&validate(&p, &["--max-total-size", "10M"]));
    // Files 0 and 1 fit in 10 MiB; the third does not, and nothing after it is decoded (or
    // reported again).
    assert_eq!(
        line,
        format!(
            "error: {}: spec.config.storage.files[2].contents.source: decompressed contents of the config's files exceed 10 MiB in all (--max-total-size raises it); the files after this one were not decoded",
            p.display()
        )
    );
    // With the default total (256 MiB) it is refused too.
    let line = refused(&validate(&p, &[]));
    assert!(line.contains("files[64].contents.source: decompressed contents of the config's files exceed 256 MiB in all"), "{line}");
    // A directory's files share the total.
    let dir = d.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    for n in ["a", "b", "c"] {
        let f = format!(
            "        - path: /etc/{n}\n          contents:\n            compression: gzip\n            source: \"data:;base64,{}\"\n",
            gzip_zeros(4 * MIB)
        );
        write(&dir, &format!("{n}.yaml"), &mc_yaml(n, &f));
    }
    let line = refused(&validate(&dir, &["--max-total-size", "10M"]));
    assert!(line.contains("c.yaml: spec.config.storage.files[0].contents.source: decompressed contents of the config's files exceed 10 MiB in all"), "{line}");
}

#[test]
fn messages_quote_little_of_the_input() {
    let d = tempfile::tempdir().unwrap();
    let name = "a".repeat(10_000_000);
    let p = write(
        d.path(),
        "name.yaml",
        &mc_yaml(&name, "        - path: /etc/x\n"),
    );
    let line = refused(&validate(&p, &[]));
    assert!(line.len() < 600, "{} bytes", line.len());
    assert!(
        line.contains(&format!(
            "metadata.name: \"{}\"… (10000000 bytes in all) is not a valid name",
            "a".repeat(190)
        )),
        "{line}"
    );
    // Whatever the message, no run of input longer than about 200 characters.
    let key = "k".repeat(100_000);
    let p = write(
        d.path(),
        "kt.yaml",
        &mc_yaml("x", "        - path: /etc/x\n")
            .replace("spec:\n", &format!("spec:\n  kernelType: {key}\n")),
    );
    let line = refused(&validate(&p, &[]));
    assert!(line.len() < 600, "{} bytes", line.len());
    assert!(
        line.contains("spec.kernelType: unsupported kernel type"),
        "{line}"
    );
    // Warnings too: an unknown key of 100,000 characters.
    let p = write(
        d.path(),
        "key.json",
        &format!(
            "{{\"apiVersion\": \"machineconfiguration.openshift.io/v1\", \"kind\": \"MachineConfig\", \"metadata\": {{\"name\": \"x\"}}, \"{key}\": 1}}"
        ),
    );
    let out = validate(&p, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.len() < 600, "{} bytes", err.len());
    assert!(
        err.starts_with("warning: ") && err.contains("… (100001 bytes) unknown key, ignored"),
        "{err}"
    );
    // A parser's message echoing the input is cut too.
    let p = write(
        d.path(),
        "mode.yaml",
        &mc_yaml(
            "x",
            &format!("        - path: /etc/x\n          mode: \"{key}\"\n"),
        ),
    );
    let line = refused(&validate(&p, &[]));
    assert!(line.len() < 600, "{} bytes", line.len());
    assert!(
        line.contains(&format!(
            "mode: expected an integer, got a string \"{}… (100002 bytes)",
            "k".repeat(199)
        )),
        "{line}"
    );
}

#[test]
fn library_wording_becomes_the_users() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            mc_yaml("x", "        - path: /etc/x\n").replace(
                "kind: MachineConfig\n",
                "kind: MachineConfig\nkind: MachineConfig\n",
            ),
            "invalid YAML: duplicate key kind at line 3, column 1",
        ),
        (
            mc_yaml("x", "        - path: /etc/x\n")
                + &format!("  kernelArguments: {}{}\n", "[".repeat(70), "]".repeat(70)),
            "invalid YAML: nested more than 64 levels deep at line",
        ),
        (
            mc_yaml("x", "        - path: /etc/x\n          mode: \"0644\"\n"),
            "spec.config.storage.files[0].mode: expected an integer, got a string \"0644\" (a mode is a number, e.g. 420; in YAML also 0644, unquoted)",
        ),
        (
            mc_yaml("x", "        - path: /etc/x\n          overwrite: 3\n"),
            "spec.config.storage.files[0].overwrite: expected a boolean, got the integer 3",
        ),
        (
            mc_yaml("x", "        - path: /etc/x\n          contents: []\n"),
            "spec.config.storage.files[0].contents: expected an object, got a list",
        ),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let p = write(d.path(), &format!("c{i}.yaml"), body);
        let line = refused(&validate(&p, &[]));
        assert!(line.contains(want), "{line}\nshould contain {want}");
        for leak in [
            "DuplicateKeyPolicy",
            "Options",
            "Depth {",
            "i64",
            "struct ",
            "Vec<",
        ] {
            assert!(!line.contains(leak), "{line}");
        }
    }
    // JSON's own depth limit, in the same terms.
    let p = write(
        d.path(),
        "deep.json",
        &format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200)),
    );
    let line = refused(&validate(&p, &[]));
    assert!(
        line.contains("invalid JSON: nested more than 128 levels deep"),
        "{line}"
    );
}

/// A `--metrics-address` that does not parse is refused before anything starts, by every command
/// that serves metrics, with the flag and the value named.
#[test]
fn a_bad_metrics_address_is_refused_by_each_server() {
    let server = ["server", "--cert", "/nonexistent", "--key", "/nonexistent"];
    for cmd in [&["start"][..], &["controller"], &server] {
        let out = run(&[cmd, &["--metrics-address", "port-nine"]].concat());
        let line = refused(&out);
        assert!(
            line.starts_with("error: --metrics-address port-nine: "),
            "{cmd:?}: {line}"
        );
    }
}
