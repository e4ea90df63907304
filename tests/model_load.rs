//! Reading MachineConfigs (src/model/load.rs): formats, Lists, bare Ignition, directories, and
//! the messages of bad input.

use machine_config_daemon::model::load::{load_config_arg, load_path, parse_machine_configs};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/model")
        .join(name)
}

fn errors_of(bytes: &str) -> Vec<String> {
    parse_machine_configs(bytes.as_bytes(), "in.yaml")
        .expect_err("must fail")
        .errors()
        .to_vec()
}

const HEADER: &str = "apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfig\n";

#[test]
fn json_and_yaml_of_the_same_config_are_equal() {
    let yaml = format!(
        "{HEADER}metadata:\n  name: 99-x\n  labels:\n    machineconfiguration.openshift.io/role: worker\n\
         spec:\n  kernelArguments: [nosmt]\n  kernelType: realtime\n  extensions: [usbguard]\n  fips: true\n  osImageURL: quay.io/os@sha256:1111111111111111111111111111111111111111111111111111111111111111\n\
         \x20 config:\n    ignition: {{version: 3.2.0}}\n    storage:\n      files:\n      - path: /etc/x\n        mode: 0644\n        contents: {{source: 'data:,x'}}\n"
    );
    let json = r#"{"apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
      "metadata": {"name": "99-x", "labels": {"machineconfiguration.openshift.io/role": "worker"}},
      "spec": {"kernelArguments": ["nosmt"], "kernelType": "realtime", "extensions": ["usbguard"], "fips": true,
               "osImageURL": "quay.io/os@sha256:1111111111111111111111111111111111111111111111111111111111111111",
               "config": {"ignition": {"version": "3.2.0"}, "storage": {"files": [{"path": "/etc/x", "mode": 420, "contents": {"source": "data:,x"}}]}}}}"#;
    // Detection is by content: the origin's extension says nothing.
    let from_yaml = parse_machine_configs(yaml.as_bytes(), "a.json").unwrap();
    let from_json = parse_machine_configs(json.as_bytes(), "a.yaml").unwrap();
    assert_eq!(from_yaml, from_json);
    let mc = &from_yaml.configs[0];
    assert_eq!(mc.name, "99-x");
    assert_eq!(mc.role(), Some("worker"));
    assert_eq!(mc.spec.kernel_arguments, vec!["nosmt"]);
    assert_eq!(mc.spec.kernel_type.as_deref(), Some("realtime"));
    assert_eq!(mc.spec.extensions, vec!["usbguard"]);
    assert!(mc.spec.fips);
    assert_eq!(
        mc.spec.os_image_url,
        "quay.io/os@sha256:1111111111111111111111111111111111111111111111111111111111111111"
    );
    // YAML `0644` is octal, as the cluster's tools read it.
    assert_eq!(mc.spec.config.files[0].mode, Some(0o644));
}

#[test]
fn a_config_without_spec_config_is_empty() {
    let loaded = parse_machine_configs(
        format!("{HEADER}metadata: {{name: 05-kargs}}\nspec:\n  kernelArguments: [a]\n").as_bytes(),
        "x",
    )
    .unwrap();
    assert_eq!(loaded.configs[0].spec.config, Default::default());
}

#[test]
fn list_input_gives_every_item() {
    let loaded = load_path(&fixture("list.yaml")).unwrap();
    let names: Vec<_> = loaded.configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["10-a", "20-b"]);
    assert_eq!(loaded.configs[0].spec.extensions, vec!["usbguard"]);
    assert!(loaded.configs[1].spec.fips);

    let bad = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: machineconfiguration.openshift.io/v1\n  kind: MachineConfig\n  metadata: {name: ok}\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p}\n";
    assert_eq!(
        errors_of(bad),
        vec![
            "in.yaml: items[1].apiVersion: expected machineconfiguration.openshift.io/v1, got v1",
            "in.yaml: items[1].kind: expected MachineConfig, got Pod",
        ]
    );
}

#[test]
fn bare_ignition_is_wrapped_and_named_after_the_file() {
    let loaded = load_path(&fixture("60-bare-ignition.json")).unwrap();
    assert_eq!(loaded.configs.len(), 1);
    let mc = &loaded.configs[0];
    assert_eq!(mc.name, "60-bare-ignition");
    assert!(mc.labels.is_empty());
    assert_eq!(
        mc.spec.config.files[0].contents.as_deref(),
        Some(&b"hello\n"[..])
    );
    assert!(mc.spec.kernel_arguments.is_empty() && !mc.spec.fips && mc.spec.kernel_type.is_none());
}

#[test]
fn wrong_api_version_and_kind_name_the_field() {
    let cases = [
        (
            "apiVersion: machineconfiguration.openshift.io/v2\nkind: MachineConfig\nmetadata: {name: a}\n",
            vec![
                "in.yaml: apiVersion: expected machineconfiguration.openshift.io/v1, got machineconfiguration.openshift.io/v2",
            ],
        ),
        (
            "apiVersion: machineconfiguration.openshift.io/v1\nkind: KubeletConfig\nmetadata: {name: a}\n",
            vec!["in.yaml: kind: expected MachineConfig, got KubeletConfig"],
        ),
        (
            "kind: MachineConfig\nmetadata: {name: a}\n",
            vec!["in.yaml: apiVersion: missing, expected machineconfiguration.openshift.io/v1"],
        ),
        (
            "apiVersion: v2\nkind: List\nitems: []\n",
            vec!["in.yaml: apiVersion: expected v1, got v2"],
        ),
        (
            "apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfig\nmetadata: {}\n",
            vec!["in.yaml: metadata.name: missing"],
        ),
        (
            "apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfig\nmetadata: {name: Bad_Name}\n",
            vec![
                "in.yaml: metadata.name: \"Bad_Name\" is not a valid name (lowercase letters, digits, '-' and '.', at most 253)",
            ],
        ),
    ];
    for (input, want) in cases {
        assert_eq!(errors_of(input), want, "{input}");
    }
}

#[test]
fn spec_fields_of_the_wrong_type_are_each_reported() {
    let input = format!(
        "{HEADER}metadata: {{name: a, labels: {{x: 1}}}}\nspec:\n  kernelArguments: nosmt\n  extensions: [1]\n  kernelType: rt\n  fips: 'yes'\n  osImageURL: 7\n"
    );
    assert_eq!(
        errors_of(&input),
        vec![
            "in.yaml: metadata.labels.x: expected a string, got a number",
            "in.yaml: spec.kernelArguments: expected a list of strings, got a string",
            "in.yaml: spec.extensions[0]: expected a string, got a number",
            "in.yaml: spec.kernelType: unsupported kernel type \"rt\" (default, realtime or 64k-pages)",
            "in.yaml: spec.fips: expected a boolean, got a string",
            "in.yaml: spec.osImageURL: expected a string, got a number",
        ]
    );
}

#[test]
fn malformed_documents_give_one_message_with_position() {
    let json = load_path(&fixture("bad/malformed.json")).unwrap_err();
    assert_eq!(json.len(), 1);
    let m = &json.errors()[0];
    assert!(
        m.contains("malformed.json: invalid JSON: expected `,` or `}` at line 5 column 3"),
        "{m}"
    );

    let yaml = load_path(&fixture("bad/malformed.yaml")).unwrap_err();
    assert_eq!(yaml.len(), 1);
    let m = &yaml.errors()[0];
    assert!(m.contains("malformed.yaml: invalid YAML: "), "{m}");
    assert!(m.contains("line 5"), "{m}");
}

#[test]
fn odd_inputs_are_errors_not_panics() {
    let inputs: Vec<&[u8]> = vec![
        b"",
        b"   \n",
        b"null",
        b"42",
        b"[1, 2]",
        b"{",
        b"\xff\xfe\x00garbage",
        b"- a\n- b\n",
        b"kind: MachineConfig",
        b"apiVersion: v1\nkind: List\nitems: 5\n",
        b"{\"ignition\": 5}",
        b"{\"ignition\": {\"version\": \"3.2.0\"}, \"storage\": {\"files\": 5}}",
        b"apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfig\nmetadata: {name: a}\nspec: {config: [1]}\n",
        b"&a [*a]",
    ];
    for input in inputs {
        let r = parse_machine_configs(input, "odd");
        let e = r.expect_err(&String::from_utf8_lossy(input));
        assert!(!e.is_empty());
        for m in e.errors() {
            assert!(m.starts_with("odd: "), "{m}");
        }
    }
}

#[test]
fn every_problem_of_a_file_is_reported_with_its_origin() {
    let e = load_path(&fixture("bad/bad-base64.yaml")).unwrap_err();
    let origin = fixture("bad/bad-base64.yaml").display().to_string();
    let at = format!("{origin}: spec.config.storage.files");
    assert_eq!(
        e.errors(),
        [
            format!("{at}[1].contents.source: invalid base64 in data URL"),
            format!("{at}[2].path: \"relative/path\" is not absolute"),
            format!(
                "{at}[2].contents.compression: unsupported compression \"bzip2\" (only gzip or none)"
            ),
            format!(
                "{at}[2].mode: mode 0o10000 (4096) is out of range: permission bits 0 to 0o777 only"
            ),
        ]
    );
    assert_eq!(e.to_string(), e.errors().join("\n"));
}

#[test]
fn unknown_keys_warn_with_origin_and_path() {
    let loaded = load_path(&fixture("unknown-key.yaml")).unwrap();
    let origin = fixture("unknown-key.yaml").display().to_string();
    assert_eq!(
        loaded.warnings,
        vec![
            format!("{origin}: spec.kernelArgs: unknown key, ignored"),
            format!("{origin}: spec.config.storage.files[0].modes: unknown key, ignored"),
        ]
    );
    assert_eq!(loaded.configs[0].spec.config.files[0].mode, None);
}

#[test]
fn multi_document_yaml_gives_each_document() {
    let input = format!(
        "{HEADER}metadata: {{name: a}}\n---\n{HEADER}metadata: {{name: b}}\n---\n{HEADER}metadata: {{name: B}}\n"
    );
    let e = parse_machine_configs(input.as_bytes(), "m.yaml").unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(
        e.errors()[0].starts_with("m.yaml (document 3): metadata.name:"),
        "{e}"
    );
    let ok = format!("{HEADER}metadata: {{name: a}}\n---\n{HEADER}metadata: {{name: b}}\n");
    assert_eq!(
        parse_machine_configs(ok.as_bytes(), "m.yaml")
            .unwrap()
            .configs
            .len(),
        2
    );
}

#[test]
fn a_directory_is_read_sorted_and_not_recursively() {
    let loaded = load_path(&fixture("dir")).unwrap();
    let names: Vec<_> = loaded.configs.iter().map(|c| c.name.as_str()).collect();
    // a.json then b.yml; notes.txt and sub/ are ignored.
    assert_eq!(names, vec!["50-worker-chrony", "99-worker-ssh"]);
}

#[test]
fn errors_of_every_file_of_a_directory_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.json"), "{").unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "apiVersion: v9\nkind: MachineConfig\nmetadata: {name: b}\n",
    )
    .unwrap();
    let e = load_path(dir.path()).unwrap_err();
    assert_eq!(e.len(), 2);
    assert!(e.errors()[0].contains("a.json: invalid JSON"));
    assert!(e.errors()[1].contains("b.yaml: apiVersion: expected"));
    let missing = load_path(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(
        missing.errors()[0].contains("nope.yaml: cannot read: "),
        "{missing}"
    );
}

#[test]
fn config_argument_is_used_as_is_or_rendered() {
    let (single, _) = load_config_arg(&fixture("render/99-worker-ssh.yaml"), "worker").unwrap();
    assert_eq!(single.name, "99-worker-ssh");
    assert_eq!(single.spec.config.version, "3.5.0");

    let (rendered, _) = load_config_arg(&fixture("render"), "worker").unwrap();
    assert!(
        rendered.name.starts_with("rendered-worker-"),
        "{}",
        rendered.name
    );
    assert_eq!(rendered.spec.config.files.len(), 1);
    assert_eq!(rendered.spec.config.users[0].name, "core");

    let (from_list, _) = load_config_arg(&fixture("list.yaml"), "worker").unwrap();
    assert!(from_list.name.starts_with("rendered-worker-"));
    assert!(from_list.spec.fips);

    let empty = tempfile::tempdir().unwrap();
    let e = load_config_arg(empty.path(), "worker").unwrap_err();
    assert!(e.errors()[0].ends_with(": no MachineConfig found"), "{e}");
}
