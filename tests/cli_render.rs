//! The `render` command, run as users run it: the built binary on fixture files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/model")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .arg("render")
        .args(args)
        .output()
        .expect("run the binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn path(name: &str) -> String {
    fixture(name).display().to_string()
}

#[test]
fn renders_a_directory_as_json() {
    let out = run(&["--pool", "worker", &path("render")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["apiVersion"], "machineconfiguration.openshift.io/v1");
    assert_eq!(v["kind"], "MachineConfig");
    let name = v["metadata"]["name"].as_str().unwrap();
    assert!(
        name.starts_with("rendered-worker-") && name.len() == "rendered-worker-".len() + 32,
        "{name}"
    );
    assert_eq!(
        v["metadata"]["labels"]["machineconfiguration.openshift.io/role"],
        "worker"
    );
    let spec = &v["spec"];
    // 50-worker-chrony's contents replace 00-worker's; the mode of 00-worker stays.
    let file = &spec["config"]["storage"]["files"][0];
    assert_eq!(file["path"], "/etc/chrony.conf");
    assert_eq!(
        file["contents"]["source"],
        "data:;base64,c2VydmVyIGNsb2NrLmV4YW1wbGUuY29tIGlidXJzdAo="
    );
    assert_eq!(file["mode"], 420);
    assert_eq!(file["overwrite"], true);
    assert_eq!(spec["config"]["ignition"]["version"], "3.5.0");
    assert_eq!(
        spec["kernelArguments"],
        serde_json::json!(["systemd.unified_cgroup_hierarchy=1", "nosmt"])
    );
    assert_eq!(spec["kernelType"], "default");
    assert_eq!(
        spec["osImageURL"],
        "quay.io/openshift/os@sha256:1111111111111111111111111111111111111111111111111111111111111111"
    );
    assert_eq!(spec["config"]["passwd"]["users"][0]["name"], "core");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn the_name_does_not_depend_on_argument_order() {
    let files = [
        "render/99-worker-ssh.yaml",
        "render/00-worker.yaml",
        "render/50-worker-chrony.json",
    ];
    let a = run(&[&path(files[0]), &path(files[1]), &path(files[2])]);
    let b = run(&[&path(files[2]), &path(files[0]), &path(files[1])]);
    let dir = run(&[&path("render")]);
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.stdout, dir.stdout);
}

#[test]
fn yaml_output_is_the_same_object() {
    let json = run(&[&path("render")]);
    let yaml = run(&["-o", "yaml", &path("render")]);
    assert_eq!(yaml.status.code(), Some(0), "{}", text(&yaml.stderr));
    let from_json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let from_yaml: serde_json::Value = serde_saphyr::from_slice(&yaml.stdout).unwrap();
    assert_eq!(from_json, from_yaml);
    assert!(text(&yaml.stdout).starts_with("apiVersion: machineconfiguration.openshift.io/v1\n"));
}

#[test]
fn custom_pool_name_and_label() {
    let out = run(&["--pool", "infra", &path("render"), &path("list.yaml")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("rendered-infra-")
    );
    assert_eq!(
        v["metadata"]["labels"]["machineconfiguration.openshift.io/role"],
        "infra"
    );
    assert_eq!(v["spec"]["fips"], true);
    assert_eq!(v["spec"]["extensions"], serde_json::json!(["usbguard"]));
}

#[test]
fn warnings_go_to_stderr_and_do_not_fail() {
    let out = run(&[&path("unknown-key.yaml")]);
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("warning: ")
            && lines[0].ends_with("spec.kernelArgs: unknown key, ignored"),
        "{err}"
    );
    assert!(
        lines[1].ends_with("spec.config.storage.files[0].modes: unknown key, ignored"),
        "{err}"
    );
}

#[test]
fn bad_input_exits_2_with_one_line_per_problem() {
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec![path("bad/bad-base64.yaml")],
            vec![
                "spec.config.storage.files[1].contents.source: invalid base64 in data URL",
                "spec.config.storage.files[2].path: \"relative/path\" is not absolute",
                "spec.config.storage.files[2].contents.compression: unsupported compression \"bzip2\" (only gzip or none)",
                "spec.config.storage.files[2].mode: mode 0o10000 (4096) is out of range: permission bits 0 to 0o777 only",
            ],
        ),
        (
            vec![path("bad/malformed.json")],
            vec!["invalid JSON: expected `,` or `}` at line 5 column 3"],
        ),
        (vec![path("bad/malformed.yaml")], vec!["invalid YAML: "]),
        (
            vec![path("bad/wrong-api.yaml")],
            vec![
                "apiVersion: expected machineconfiguration.openshift.io/v1, got machineconfiguration.openshift.io/v2",
                "kind: expected MachineConfig, got MachineConfigs",
            ],
        ),
        // Problems of several inputs are all reported.
        (
            vec![path("bad/malformed.json"), path("bad/wrong-api.yaml")],
            vec!["invalid JSON", "apiVersion: expected", "kind: expected"],
        ),
        (vec![path("does-not-exist.yaml")], vec!["cannot read: "]),
        (
            vec!["--pool".into(), "Bad Pool".into(), path("render")],
            vec!["pool name \"Bad Pool\" is invalid"],
        ),
    ];
    for (args, wants) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
        let lines: Vec<_> = err.lines().collect();
        assert_eq!(lines.len(), wants.len(), "{args:?}: {err}");
        for (line, want) in lines.iter().zip(&wants) {
            assert!(line.starts_with("error: "), "{line}");
            assert!(line.contains(want), "{line} should contain {want}");
        }
    }
}

#[test]
fn kernel_rules_are_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let mc = |name: &str, spec: &str| {
        format!(
            "apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfig\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        )
    };
    std::fs::write(
        dir.path().join("a.yaml"),
        mc("10-rt", "{kernelType: realtime}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        mc("20-devel", "{extensions: [kernel-devel]}"),
    )
    .unwrap();
    let out = run(&[&dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: spec.extensions: kernel-devel (from 20-devel) is not supported with kernelType \"realtime\"\n"
    );
}

#[test]
fn no_input_is_a_usage_error() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("FILE_OR_DIR"));
}

#[test]
fn render_lists_only_the_formats_it_prints() {
    let help = run(&["--help"]);
    let help = text(&help.stdout);
    let values = help
        .lines()
        .find(|l| l.contains("--output"))
        .and_then(|l| l.split_once("[possible values: "))
        .map(|(_, v)| v.trim_end_matches(']'))
        .unwrap_or_else(|| panic!("{help}"));
    assert_eq!(values, "json, yaml");
    let out = run(&["-o", "text", &path("render")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("invalid value 'text'"),
        "{}",
        text(&out.stderr)
    );
}
