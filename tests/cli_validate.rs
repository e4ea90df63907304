//! The `validate` command, run as users run it: the built binary on fixture files.

use std::process::{Command, Output};

const F: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/plan");

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .arg("validate")
        .args(args)
        .output()
        .expect("run the binary")
}

/// `validate --config` on a MachineConfig written from `yaml` (its path ends in `mc.yaml`).
fn validate_yaml(yaml: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mc.yaml");
    std::fs::write(&path, yaml).unwrap();
    run(&["--config", path.to_str().unwrap()])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn valid_policies_print_the_effective_policy() {
    for name in ["default-status", "sshkey", "files", "units", "registries"] {
        let path = format!("{F}/policies/{name}.yaml");
        let out = run(&["--policy", &path]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let cp = &v["clusterPolicies"];
        assert_eq!(
            cp["files"][0]["path"], "/var/lib/kubelet/config.json",
            "{name}: defaults first"
        );
        assert_eq!(cp["units"][0]["name"], "iri-registry.service", "{name}");
        match name {
            "files" => {
                let n = cp["files"].as_array().unwrap().len();
                assert_eq!(cp["files"][n - 2]["path"], "/etc/chrony.conf");
                assert_eq!(cp["files"][n - 1]["path"], "/var/run");
            }
            "registries" => assert_eq!(
                cp["files"][3]["actions"],
                serde_json::json!([{"type": "None"}])
            ),
            "sshkey" => assert_eq!(cp["sshkey"]["actions"].as_array().unwrap().len(), 4),
            "units" => assert_eq!(cp["units"][1]["name"], "auditd.service"),
            _ => {
                assert_eq!(
                    cp["sshkey"]["actions"],
                    serde_json::json!([{"type": "None"}])
                );
                assert_eq!(cp["files"].as_array().unwrap().len(), 13);
            }
        }
    }
}

#[test]
fn yaml_output() {
    let out = run(&[
        "--policy",
        &format!("{F}/policies/files.yaml"),
        "-o",
        "yaml",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("clusterPolicies:\n"), "{stdout}");
    assert!(stdout.contains("serviceName: chronyd.service"), "{stdout}");
}

#[test]
fn invalid_policy_prints_every_violation_and_exits_2() {
    let out = run(&["--policy", &format!("{F}/policies/invalid.yaml")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 6, "{stderr}");
    // Each line names the file.
    let file = format!("{F}/policies/invalid.yaml");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with(&format!("error: {file}: spec.nodeDisruptionPolicy."))),
        "{stderr}"
    );
    assert!(lines.contains(&format!("error: {file}: spec.nodeDisruptionPolicy.files[0].actions[0]: reload is required when type is Reload").as_str()));
}

#[test]
fn unreadable_or_malformed_policy_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let wrong_kind = dir.path().join("mc.yaml");
    std::fs::write(
        &wrong_kind,
        "apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfig\n",
    )
    .unwrap();
    let cases = vec![
        (format!("{F}/policies/nope.yaml"), "cannot read"),
        (
            wrong_kind.display().to_string(),
            "kind: expected \"MachineConfiguration\"",
        ),
    ];
    for (path, fragment) in cases {
        let out = run(&["--policy", &path]);
        assert_eq!(out.status.code(), Some(2), "{path}");
        assert!(
            text(&out.stderr).contains(fragment),
            "{path}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn configs_are_validated() {
    let out = run(&["--config", &format!("{F}/configs/old.yaml")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "rendered-worker-old");
    assert_eq!(v["files"], 3);

    let out = run(&["--config", &format!("{F}/configs/usr.yaml")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/usr/bin/a.json is outside the writable trees"));

    // Neither --policy nor --config: a usage error.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
}

/// What only provisioning applies (disks, users other than `core`) is valid, and named: a note
/// on stderr and `notApplied` in the JSON.
#[test]
fn install_time_sections_are_valid_and_named_as_not_applied() {
    let out = validate_yaml(
        r#"apiVersion: machineconfiguration.openshift.io/v1
kind: MachineConfig
metadata: {name: 99-worker-disks}
spec:
  config:
    ignition: {version: 3.4.0}
    passwd:
      users:
      - {name: core, sshAuthorizedKeys: ["ssh-ed25519 AAAA core"]}
      - {name: alice}
    storage:
      disks:
      - {device: /dev/sdb, partitions: [{label: data}]}
      files:
      - {path: /etc/chrony.conf, mode: 420, contents: {source: "data:,server%20a"}}
"#,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["notApplied"],
        serde_json::json!([
            "storage.disks: install-time only, not applied by machine-config-daemon",
            "passwd.users[alice]: install-time only, not applied by machine-config-daemon",
        ])
    );
    let err = text(&out.stderr);
    let notes: Vec<&str> = err.lines().filter(|l| l.starts_with("note: ")).collect();
    assert_eq!(notes.len(), 2, "{err}");
    assert!(
        notes[0].ends_with(
            "mc.yaml: storage.disks: install-time only, not applied by machine-config-daemon"
        ),
        "{err}"
    );

    // A config of files and units only: nothing to name.
    let out = run(&["--config", &format!("{F}/configs/old.yaml")]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("notApplied").is_none(), "{v}");
    assert!(
        !text(&out.stderr).contains("note: "),
        "{}",
        text(&out.stderr)
    );
}

/// Files that usually hold secrets are valid, with one warning each: the machine config server
/// hands every config to anyone who reaches it.
#[test]
fn secret_looking_files_are_warned_about() {
    let out = validate_yaml(
        r#"apiVersion: machineconfiguration.openshift.io/v1
kind: MachineConfig
metadata: {name: 99-worker-secrets}
spec:
  config:
    ignition: {version: 3.4.0}
    storage:
      files:
      - {path: /etc/chrony.conf, mode: 420, contents: {source: "data:,server%20a"}}
      - {path: /var/lib/kubelet/config.json, mode: 384, contents: {source: "data:,%7B%7D"}}
      - {path: /var/home/core/.ssh/id_ed25519, mode: 384, contents: {source: "data:,x"}}
"#,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(
        warnings[0].contains("storage.files[1] (/var/lib/kubelet/config.json): this file usually holds the cluster's pull secret"),
        "{err}"
    );
    assert!(
        warnings[0].contains("gives every config to anyone who reaches it"),
        "{err}"
    );
    assert!(
        warnings[1].contains(
            "(/var/home/core/.ssh/id_ed25519): this file usually holds an ssh private key"
        ),
        "{err}"
    );
    assert!(!err.contains("error"), "{err}");
    // A config without such files: no warning.
    let out = run(&["--config", &format!("{F}/configs/old.yaml")]);
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}
