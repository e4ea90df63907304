//! The `plan` command, run as users run it: the built binary on fixture files.

use std::process::{Command, Output};

const F: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/plan");

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_machine-config-daemon"))
        .arg("plan")
        .args(args)
        .output()
        .expect("run the binary")
}

fn config(name: &str) -> String {
    format!("{F}/configs/{name}.yaml")
}

fn policy(name: &str) -> String {
    format!("{F}/policies/{name}.yaml")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_plan(to: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let (from, to) = (config("old"), config(to));
    let mut args = vec!["--from", from.as_str(), "--to", to.as_str(), "-o", "json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code(), v)
}

#[test]
fn json_plans_of_the_example_changes() {
    let chrony_policy = policy("files");
    // (new config, extra args, expected actions, drain, reboot)
    let cases: Vec<(&str, Vec<&str>, serde_json::Value, bool, bool)> = vec![
        (
            "chrony",
            vec!["--policy", &chrony_policy],
            serde_json::json!([{"type": "Reload", "reload": {"serviceName": "chronyd.service"}}]),
            false,
            false,
        ),
        (
            "chrony",
            vec![],
            serde_json::json!([{"type": "Reboot"}]),
            true,
            true,
        ),
        (
            "crio",
            vec![],
            serde_json::json!([{"type": "Reload", "reload": {"serviceName": "crio.service"}}]),
            false,
            false,
        ),
        (
            "ssh",
            vec![],
            serde_json::json!([{"type": "None"}]),
            false,
            false,
        ),
        (
            "kargs",
            vec![],
            serde_json::json!([{"type": "Reboot"}]),
            true,
            true,
        ),
        (
            "old",
            vec!["--force"],
            serde_json::json!([{"type": "Reboot"}]),
            true,
            true,
        ),
    ];
    for (to, extra, actions, drain, reboot) in cases {
        let (code, v) = json_plan(to, &extra);
        assert_eq!(code, Some(0), "{to} {extra:?}");
        assert_eq!(v["actions"], actions, "{to} {extra:?}");
        assert_eq!(v["drain"], drain, "{to} {extra:?}");
        assert_eq!(v["reboot"], reboot, "{to} {extra:?}");
        assert_eq!(v["unreconcilable"], serde_json::Value::Null, "{to}");
        assert_eq!(v["from"], "rendered-worker-old");
    }
}

#[test]
fn json_changes_explain_each_match() {
    let (_, v) = json_plan("crio", &[]);
    let changes = v["changes"].as_array().unwrap();
    let got: Vec<(&str, &str, &str)> = changes
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap(),
                c["path"].as_str().unwrap(),
                c["matched"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "file",
                "/etc/containers/policy.json",
                "/etc/containers/policy.json"
            ),
            ("file", "/etc/crio/policies/a.json", "/etc/crio/policies"),
        ]
    );
    let (_, v) = json_plan("kargs", &[]);
    assert_eq!(v["changes"][0]["kind"], "kernelArguments");
    assert_eq!(v["changes"][0]["matched"], serde_json::Value::Null);
    assert_eq!(
        v["changes"][0]["new"],
        serde_json::json!(["nosmt", "mitigations=off"])
    );
    let (_, v) = json_plan("ssh", &[]);
    assert_eq!(v["changes"][0]["kind"], "sshkey");
    assert_eq!(v["changes"][0]["name"], "core");
    assert_eq!(v["changes"][0]["matched"], "sshkey");
}

#[test]
fn text_plan_is_a_table_ending_with_the_actions() {
    let (from, to, pol) = (config("old"), config("chrony"), policy("files"));
    let out = run(&["--from", &from, "--to", &to, "--policy", &pol]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "plan: rendered-worker-old -> rendered-worker-chrony"
    );
    let header = lines
        .iter()
        .position(|l| l.starts_with("KIND"))
        .expect("table header");
    let row: Vec<&str> = lines[header + 1].split_whitespace().collect();
    assert_eq!(
        row,
        vec![
            "file",
            "changed",
            "/etc/chrony.conf",
            "/etc/chrony.conf",
            "Reload",
            "chronyd.service"
        ]
    );
    assert_eq!(lines.last(), Some(&"actions: Reload chronyd.service"));
    assert!(stdout.contains("drain: no  reboot: no"));

    // An unmatched change says why in the notes.
    let out = run(&["--from", &from, "--to", &config("auditd")]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("auditd.service: no policy unit matches: reboot"),
        "{stdout}"
    );
    assert!(stdout.ends_with("actions: Reboot\n"), "{stdout}");
}

#[test]
fn special_is_shown_as_a_crio_reload() {
    // Write a registries.conf change next to the fixtures, in a temp dir.
    let dir = tempfile::tempdir().unwrap();
    let old = std::fs::read_to_string(config("old")).unwrap();
    let new = old.replace("rendered-worker-old", "rendered-worker-reg").replace(
        "      - path: /etc/chrony.conf\n",
        "      - path: /etc/containers/registries.conf\n        contents:\n          source: data:,unqualified-search-registries%20%3D%20%5B%22quay.io%22%5D\n      - path: /etc/chrony.conf\n",
    );
    let to = dir.path().join("reg.yaml");
    std::fs::write(&to, new).unwrap();
    let out = run(&["--from", &config("old"), "--to", to.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.ends_with("actions: Special (reload crio.service)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("applied by reloading crio.service"),
        "{stdout}"
    );
    // With the seed's registries policy, the change is written with no action.
    let out = run(&[
        "--from",
        &config("old"),
        "--to",
        to.to_str().unwrap(),
        "--policy",
        &policy("registries"),
    ]);
    assert!(text(&out.stdout).ends_with("actions: None\n"));
}

#[test]
fn unreconcilable_prints_the_plan_and_exits_3() {
    let (code, v) = json_plan("usr", &[]);
    assert_eq!(code, Some(3));
    assert_eq!(
        v["unreconcilable"],
        "can't reconcile config rendered-worker-old with rendered-worker-usr: storage.files: \
         /usr/bin/a.json is outside the writable trees (/etc, /var, /opt, /usr/local)"
    );
    assert!(!v["changes"].as_array().unwrap().is_empty());
    let out = run(&["--from", &config("old"), "--to", &config("usr")]);
    assert_eq!(out.status.code(), Some(3));
    let t = text(&out.stdout);
    assert!(t.contains("unreconcilable: can't reconcile config"), "{t}");
    // What differs, but nothing that reads as a plan that can run.
    assert!(t.contains("differences:\n  file "), "{t}");
    assert!(t.ends_with("refused: nothing would be done\n"), "{t}");
    for runnable in ["no changes", "actions:", "drain:", "reboot:"] {
        assert!(!t.contains(runnable), "{t}");
    }
}

#[test]
fn an_unreconcilable_change_with_no_listed_difference_says_no_changes_nowhere() {
    let ex = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/configs");
    let out = run(&[
        "--from",
        &format!("{ex}/base.yaml"),
        "--to",
        &format!("{ex}/unreconcilable.yaml"),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stdout),
        "plan: example-base -> example-unreconcilable\n\
         unreconcilable: can't reconcile config example-base with example-unreconcilable: \
         passwd.groups changed; groups are only applied at install time\n\
         refused: nothing would be done\n"
    );
}

#[test]
fn bad_input_exits_2_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "apiVersion: [").unwrap();
    let broken = broken.to_str().unwrap();
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec![
                "--from".into(),
                broken.into(),
                "--to".into(),
                config("chrony"),
            ],
            vec!["broken.yaml"],
        ),
        (
            vec![
                "--from".into(),
                config("old"),
                "--to".into(),
                format!("{F}/configs/missing.yaml"),
            ],
            vec!["missing.yaml"],
        ),
        (
            vec![
                "--from".into(),
                config("old"),
                "--to".into(),
                config("chrony"),
                "--policy".into(),
                policy("invalid"),
            ],
            vec![
                "spec.nodeDisruptionPolicy.files[0].actions[0]: reload is required when type is Reload",
                "spec.nodeDisruptionPolicy.sshkey.actions: actions is required when sshkey is set",
            ],
        ),
    ];
    for (args, fragments) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        for f in fragments {
            assert!(
                stderr
                    .lines()
                    .any(|l| l.starts_with("error: ") && l.contains(f)),
                "{args:?}: {stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
