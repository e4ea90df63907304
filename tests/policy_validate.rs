//! Node disruption policy parsing and validation (SPEC §3, "Validation"): one failing case per
//! rule, all violations reported at once, malformed documents refused without a panic.

use machine_config_daemon::model::policy::{
    Action, FilePolicy, Policy, SshKeyPolicy, UnitPolicy, parse_machine_configuration,
};
use serde_json::{Value, json};

const SPEC: &str = "spec.nodeDisruptionPolicy";

/// A MachineConfiguration JSON document with `policy` as its `spec.nodeDisruptionPolicy`.
fn doc(policy: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "operator.openshift.io/v1",
        "kind": "MachineConfiguration",
        "metadata": {"name": "cluster"},
        "spec": {"nodeDisruptionPolicy": policy},
    }))
    .unwrap()
}

/// The violations of `policy`, as `field: message` lines.
fn violations(policy: Value) -> Vec<String> {
    match parse_machine_configuration(&doc(policy), "test.json") {
        Ok(_) => Vec::new(),
        Err(e) => e
            .errors()
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect(),
    }
}

fn file_entry(path: &str, actions: Value) -> Value {
    json!({"path": path, "actions": actions})
}

#[test]
fn each_rule_has_a_failing_case() {
    let many = |n: usize, what: &dyn Fn(usize) -> Value| Value::Array((0..n).map(what).collect());
    let none = json!([{"type": "None"}]);
    let long_name = format!("{}.service", "a".repeat(248)); // 256 characters
    // (case, policy, expected violation: field, message fragment)
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "51 files",
            json!({"files": many(51, &|i| file_entry(&format!("/etc/f{i}"), none.clone()))}),
            "spec.nodeDisruptionPolicy.files",
            "at most 50 entries",
        ),
        (
            "51 units",
            json!({"units": many(51, &|i| json!({"name": format!("u{i}.service"), "actions": none}))}),
            "spec.nodeDisruptionPolicy.units",
            "at most 50 entries",
        ),
        (
            "duplicate path",
            json!({"files": [file_entry("/etc/a", none.clone()), file_entry("/etc/a", none.clone())]}),
            "spec.nodeDisruptionPolicy.files[1].path",
            "duplicate path \"/etc/a\"",
        ),
        (
            "duplicate unit name",
            json!({"units": [{"name": "a.service", "actions": none}, {"name": "a.service", "actions": none}]}),
            "spec.nodeDisruptionPolicy.units[1].name",
            "duplicate name",
        ),
        (
            "no actions",
            json!({"files": [file_entry("/etc/a", json!([]))]}),
            "spec.nodeDisruptionPolicy.files[0].actions",
            "at least 1 action",
        ),
        (
            "actions missing",
            json!({"files": [{"path": "/etc/a"}]}),
            "spec.nodeDisruptionPolicy.files[0].actions",
            "actions is required",
        ),
        (
            "11 actions",
            json!({"files": [file_entry("/etc/a", many(11, &|_| json!({"type": "Drain"})))]}),
            "spec.nodeDisruptionPolicy.files[0].actions",
            "at most 10 actions",
        ),
        (
            "Reboot not alone",
            json!({"files": [file_entry("/etc/a", json!([{"type": "Drain"}, {"type": "Reboot"}]))]}),
            "spec.nodeDisruptionPolicy.files[0].actions[1]",
            "Reboot must be the only action",
        ),
        (
            "None not alone",
            json!({"units": [{"name": "a.service", "actions": [{"type": "None"}, {"type": "DaemonReload"}]}]}),
            "spec.nodeDisruptionPolicy.units[0].actions[0]",
            "None must be the only action",
        ),
        (
            "Reload without reload",
            json!({"files": [file_entry("/etc/a", json!([{"type": "Reload"}]))]}),
            "spec.nodeDisruptionPolicy.files[0].actions[0]",
            "reload is required when type is Reload",
        ),
        (
            "Restart without restart",
            json!({"files": [file_entry("/etc/a", json!([{"type": "Restart"}]))]}),
            "spec.nodeDisruptionPolicy.files[0].actions[0]",
            "restart is required when type is Restart",
        ),
        (
            "reload on a Drain",
            json!({"files": [file_entry("/etc/a", json!([{"type": "Drain", "reload": {"serviceName": "crio.service"}}]))]}),
            "spec.nodeDisruptionPolicy.files[0].actions[0]",
            "reload is forbidden when type is Drain",
        ),
        (
            "restart on a Reload",
            json!({"files": [file_entry("/etc/a", json!([{"type": "Reload", "reload": {"serviceName": "a.service"}, "restart": {"serviceName": "a.service"}}]))]}),
            "spec.nodeDisruptionPolicy.files[0].actions[0]",
            "restart is forbidden when type is Reload",
        ),
        (
            "serviceName missing",
            json!({"files": [file_entry("/etc/a", json!([{"type": "Reload", "reload": {}}]))]}),
            "spec.nodeDisruptionPolicy.files[0].actions[0].reload.serviceName",
            "serviceName is required",
        ),
        (
            "service name too long",
            json!({"files": [file_entry("/etc/a", json!([{"type": "Restart", "restart": {"serviceName": long_name}}]))]}),
            "spec.nodeDisruptionPolicy.files[0].actions[0].restart.serviceName",
            "at most 255 characters",
        ),
        (
            "service name pattern",
            json!({"files": [file_entry("/etc/a", json!([{"type": "Reload", "reload": {"serviceName": "crio service.service"}}]))]}),
            "spec.nodeDisruptionPolicy.files[0].actions[0].reload.serviceName",
            "must match",
        ),
        (
            "service name suffix",
            json!({"files": [file_entry("/etc/a", json!([{"type": "Reload", "reload": {"serviceName": "crio.conf"}}]))]}),
            "spec.nodeDisruptionPolicy.files[0].actions[0].reload.serviceName",
            "must end in one of",
        ),
        (
            "unit name without a dot",
            json!({"units": [{"name": "auditd", "actions": none}]}),
            "spec.nodeDisruptionPolicy.units[0].name",
            "must match",
        ),
        (
            // `@` is outside the pattern's class: template instances are refused, as upstream.
            "template unit instance",
            json!({"units": [{"name": "getty@tty1.service", "actions": none}]}),
            "spec.nodeDisruptionPolicy.units[0].name",
            "must match",
        ),
        (
            // The pattern wants a character after the dot.
            "unit name ending in its dot",
            json!({"units": [{"name": "auditd.", "actions": none}]}),
            "spec.nodeDisruptionPolicy.units[0].name",
            "must match",
        ),
        (
            "unit name suffix",
            json!({"units": [{"name": "auditd.conf", "actions": none}]}),
            "spec.nodeDisruptionPolicy.units[0].name",
            "must end in one of",
        ),
        (
            "sshkey without actions",
            json!({"sshkey": {}}),
            "spec.nodeDisruptionPolicy.sshkey.actions",
            "actions is required when sshkey is set",
        ),
        (
            "unknown action type",
            json!({"sshkey": {"actions": [{"type": "Reboots"}]}}),
            "spec.nodeDisruptionPolicy.sshkey.actions[0]",
            "unknown action type \"Reboots\"",
        ),
        (
            "action without type",
            json!({"sshkey": {"actions": [{}]}}),
            "spec.nodeDisruptionPolicy.sshkey.actions[0]",
            "type is required",
        ),
        (
            "Special in spec",
            json!({"files": [file_entry("/etc/containers/registries.conf", json!([{"type": "Special"}]))]}),
            "spec.nodeDisruptionPolicy.files[0].actions[0]",
            "type Special is internal",
        ),
        (
            "relative path",
            json!({"files": [file_entry("etc/a", none.clone())]}),
            "spec.nodeDisruptionPolicy.files[0].path",
            "absolute",
        ),
        (
            "path with ..",
            json!({"files": [file_entry("/etc/../usr", none.clone())]}),
            "spec.nodeDisruptionPolicy.files[0].path",
            "must not contain ..",
        ),
        (
            "path with a . component",
            json!({"files": [file_entry("/etc/./a", none.clone())]}),
            "spec.nodeDisruptionPolicy.files[0].path",
            "no . component",
        ),
        (
            "path with //",
            json!({"files": [file_entry("/etc//a", none.clone())]}),
            "spec.nodeDisruptionPolicy.files[0].path",
            "no //",
        ),
        (
            "path with trailing /",
            json!({"files": [file_entry("/etc/a/", none.clone())]}),
            "spec.nodeDisruptionPolicy.files[0].path",
            "no trailing /",
        ),
        (
            "empty path",
            json!({"files": [file_entry("", none.clone())]}),
            "spec.nodeDisruptionPolicy.files[0].path",
            "must not be empty",
        ),
        (
            "unknown field",
            json!({"files": [{"path": "/etc/a", "actions": none, "actoins": []}]}),
            "spec.nodeDisruptionPolicy.files[0]",
            "unknown field \"actoins\"",
        ),
        (
            "files not a list",
            json!({"files": {"path": "/etc/a"}}),
            "spec.nodeDisruptionPolicy.files",
            "must be a list",
        ),
    ];
    for (case, policy, field, fragment) in cases {
        let found = violations(policy);
        assert!(
            found
                .iter()
                .any(|v| v.starts_with(&format!("{field}: ")) && v.contains(fragment)),
            "{case}: expected `{field}: ...{fragment}...`, got {found:#?}"
        );
    }
}

#[test]
fn valid_edge_cases_are_accepted() {
    let cases = vec![
        (
            "50 files",
            json!({"files": (0..50).map(|i| file_entry(&format!("/etc/f{i}"), json!([{"type": "None"}]))).collect::<Vec<_>>()}),
        ),
        (
            "10 actions",
            json!({"files": [file_entry("/etc/a", Value::Array((0..10).map(|_| json!({"type": "DaemonReload"})).collect()))]}),
        ),
        (
            "systemd escape in a unit name",
            json!({"units": [{"name": "dev-disk-by\\x2dlabel.mount", "actions": [{"type": "None"}]}]}),
        ),
        (
            "the root path",
            json!({"files": [file_entry("/", json!([{"type": "None"}]))]}),
        ),
        (
            "255-character name",
            json!({"units": [{"name": format!("{}.service", "a".repeat(247)), "actions": [{"type": "None"}]}]}),
        ),
        ("empty policy", json!({})),
        ("null policy", Value::Null),
    ];
    for (case, policy) in cases {
        let found = violations(policy);
        assert!(found.is_empty(), "{case}: unexpected violations {found:#?}");
    }
}

#[test]
fn all_violations_are_reported_at_once_in_document_order() {
    let bytes = std::fs::read("tests/fixtures/plan/policies/invalid.yaml").unwrap();
    let err = parse_machine_configuration(&bytes, "invalid.yaml").unwrap_err();
    let lines: Vec<String> = err.errors().iter().map(|e| e.to_string()).collect();
    // Each names the file it is in.
    assert_eq!(
        lines,
        vec![
            "invalid.yaml: spec.nodeDisruptionPolicy.files[0].actions[0]: reload is required when type is Reload",
            "invalid.yaml: spec.nodeDisruptionPolicy.files[1].path: \"etc/relative\" must be an absolute path",
            "invalid.yaml: spec.nodeDisruptionPolicy.files[1].actions[0]: Reboot must be the only action of its list",
            "invalid.yaml: spec.nodeDisruptionPolicy.units[0].name: \"not-a-unit\" is not a valid unit name: it must match ^[a-zA-Z0-9:._\\\\-]+\\..",
            "invalid.yaml: spec.nodeDisruptionPolicy.units[0].actions[0]: type Special is internal to the cluster status and may not be set",
            "invalid.yaml: spec.nodeDisruptionPolicy.sshkey.actions: actions is required when sshkey is set",
        ]
    );
    // Display: one violation per line.
    assert_eq!(err.to_string().lines().count(), 6);
}

#[test]
fn malformed_documents_are_errors_not_panics() {
    let cases: Vec<(&str, &[u8], &str)> = vec![
        ("empty", b"", "empty document"),
        ("not UTF-8", b"\xff\xfe\x00", "not valid UTF-8"),
        ("broken JSON", b"{\"apiVersion\": ", "invalid JSON"),
        ("broken YAML", b"apiVersion: [unclosed\nkind: x\n", "invalid YAML"),
        ("a list", b"[1, 2]", "expected a MachineConfiguration object"),
        ("a scalar", b"hello", "expected a MachineConfiguration object"),
        (
            "wrong kind",
            b"apiVersion: operator.openshift.io/v1\nkind: MachineConfig\n",
            "kind: expected \"MachineConfiguration\"",
        ),
        (
            "wrong apiVersion",
            b"apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfiguration\n",
            "apiVersion: expected \"operator.openshift.io/v1\"",
        ),
        (
            "policy not a mapping",
            b"apiVersion: operator.openshift.io/v1\nkind: MachineConfiguration\nspec:\n  nodeDisruptionPolicy: 3\n",
            "spec.nodeDisruptionPolicy: must be a mapping",
        ),
        (
            "actions not a list",
            b"apiVersion: operator.openshift.io/v1\nkind: MachineConfiguration\nspec:\n  nodeDisruptionPolicy:\n    sshkey:\n      actions: None\n",
            "spec.nodeDisruptionPolicy.sshkey.actions: must be a list",
        ),
        (
            "path not a string",
            b"apiVersion: operator.openshift.io/v1\nkind: MachineConfiguration\nspec:\n  nodeDisruptionPolicy:\n    files: [{path: 3, actions: [{type: None}]}]\n",
            "files[0].path: must be a string",
        ),
    ];
    for (case, bytes, fragment) in cases {
        let err = parse_machine_configuration(bytes, "input").expect_err(case);
        let text = err.to_string();
        assert!(
            text.contains(fragment),
            "{case}: {text:?} lacks {fragment:?}"
        );
        assert!(
            !text.contains('\n') || err.errors().len() > 1,
            "{case}: one line per error"
        );
        // The parser's own words follow, not just the kind of document.
        if let Some((_, detail)) = text.split_once(fragment)
            && fragment.starts_with("invalid")
        {
            assert!(
                detail.trim_start_matches(':').trim().len() > 5,
                "{case}: {text:?} says nothing after {fragment:?}"
            );
        }
    }
}

/// An action's human form (plans, messages) is its API type, with the service where it has one.
#[test]
fn actions_display_their_type() {
    let service = |name: &str| machine_config_daemon::model::policy::ServiceRef {
        service_name: name.into(),
    };
    let shown: Vec<String> = [
        Action::Reboot,
        Action::None,
        Action::Drain,
        Action::DaemonReload,
        Action::Reload {
            reload: service("crio.service"),
        },
        Action::Restart {
            restart: service("chronyd.service"),
        },
        Action::Special,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    assert_eq!(
        shown,
        [
            "Reboot",
            "None",
            "Drain",
            "DaemonReload",
            "Reload crio.service",
            "Restart chronyd.service",
            "Special (reload crio.service)",
        ]
    );
}

#[test]
fn seed_examples_parse_to_the_documented_policies() {
    let read = |name: &str| {
        let path = format!("tests/fixtures/plan/policies/{name}");
        parse_machine_configuration(&std::fs::read(&path).unwrap(), &path)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let crio_sequence = vec![
        Action::Drain,
        Action::reload("crio.service"),
        Action::DaemonReload,
        Action::restart("crio.service"),
    ];
    let cases = vec![
        (
            "sshkey.yaml",
            Policy {
                sshkey: SshKeyPolicy {
                    actions: crio_sequence.clone(),
                },
                ..Policy::default()
            },
        ),
        (
            "files.yaml",
            Policy {
                files: vec![
                    FilePolicy {
                        path: "/etc/chrony.conf".into(),
                        actions: vec![Action::reload("chronyd.service")],
                    },
                    FilePolicy {
                        path: "/var/run".into(),
                        actions: vec![Action::None],
                    },
                ],
                ..Policy::default()
            },
        ),
        (
            "units.yaml",
            Policy {
                units: vec![UnitPolicy {
                    name: "auditd.service".into(),
                    actions: crio_sequence,
                }],
                ..Policy::default()
            },
        ),
        (
            "registries.yaml",
            Policy {
                files: vec![FilePolicy {
                    path: "/etc/containers/registries.conf".into(),
                    actions: vec![Action::None],
                }],
                ..Policy::default()
            },
        ),
    ];
    for (name, expected) in cases {
        let mc = read(name);
        assert_eq!(mc.name.as_deref(), Some("cluster"), "{name}");
        assert_eq!(mc.policy, expected, "{name}");
        assert_eq!(mc.status, None, "{name}");
    }
}

/// Every action type a policy may set parses to its action (none is dropped on the way).
#[test]
fn every_action_type_parses_to_its_action() {
    let cases = [
        (json!({"type": "Reboot"}), Action::Reboot),
        (json!({"type": "None"}), Action::None),
        (json!({"type": "Drain"}), Action::Drain),
        (
            json!({"type": "Reload", "reload": {"serviceName": "a.service"}}),
            Action::reload("a.service"),
        ),
        (
            json!({"type": "Restart", "restart": {"serviceName": "b.service"}}),
            Action::restart("b.service"),
        ),
        (json!({"type": "DaemonReload"}), Action::DaemonReload),
        // `Special` is the cluster status's only: refused in a spec (each_rule_has_a_failing_case).
    ];
    for (action, want) in cases {
        let policy = json!({"files": [file_entry("/etc/x", json!([action]))]});
        let parsed = parse_machine_configuration(&doc(policy), "test.json").unwrap();
        assert_eq!(parsed.policy.files[0].actions, [want], "{action}");
    }
}

#[test]
fn json_and_yaml_give_the_same_policy() {
    let yaml = std::fs::read("tests/fixtures/plan/policies/units.yaml").unwrap();
    let from_yaml = parse_machine_configuration(&yaml, "units.yaml").unwrap();
    // The same document, written as JSON.
    let value: Value = serde_saphyr::from_slice(&yaml).unwrap();
    let json = serde_json::to_vec_pretty(&value).unwrap();
    assert_eq!(json.first(), Some(&b'{'));
    let from_json = parse_machine_configuration(&json, "units.json").unwrap();
    assert_eq!(from_yaml, from_json);
    assert_eq!(from_json.policy.units[0].actions.len(), 4);
}

#[test]
fn actions_serialise_in_the_api_shape() {
    let actions = vec![
        Action::reload("crio.service"),
        Action::restart("kubelet.service"),
        Action::DaemonReload,
    ];
    assert_eq!(
        serde_json::to_value(&actions).unwrap(),
        json!([
            {"type": "Reload", "reload": {"serviceName": "crio.service"}},
            {"type": "Restart", "restart": {"serviceName": "kubelet.service"}},
            {"type": "DaemonReload"},
        ])
    );
}

#[test]
fn typed_policies_are_validated_with_the_same_rules() {
    let bad = Policy {
        files: vec![
            FilePolicy {
                path: "/etc/a".into(),
                actions: vec![Action::Reboot, Action::Drain],
            },
            FilePolicy {
                path: "/etc/b".into(),
                actions: vec![Action::Special],
            },
        ],
        units: vec![UnitPolicy {
            name: "x.service".into(),
            actions: vec![],
        }],
        sshkey: SshKeyPolicy::default(),
    };
    let err = bad.validate("policy").unwrap_err();
    let fields: Vec<&str> = err.errors().iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "policy.files[0].actions[0]",
            "policy.files[1].actions[0]",
            "policy.units[0].actions"
        ]
    );
    // Special is fine in the status; the default policy (with Special) is a valid status.
    let status_ok = Policy {
        units: vec![],
        ..bad.clone()
    };
    assert!(
        status_ok.validate_status("status").is_err(),
        "Reboot alone still applies"
    );
    assert!(
        machine_config_daemon::model::policy::defaults()
            .validate_status("status")
            .is_ok()
    );
    assert!(
        machine_config_daemon::model::policy::defaults()
            .validate(SPEC)
            .is_err(),
        "Special refused in spec"
    );
}
