//! The pure drift decisions of `daemon::drift`, as tables: which action a path gets from the
//! rules (first match wins, no match degrades), the heal budget's sliding window, whether the
//! node disruption policy lets a path be healed and with which actions, and the daemon
//! configuration file's validation (every problem, each naming its field).

use machine_config_daemon::daemon::drift::{
    self, Budget, DriftAction, HealBudget, HealLimits, HealPlan,
};
use machine_config_daemon::model::policy::{self, Action, FilePolicy, UnitPolicy};
use machine_config_daemon::model::{Dropin, File, MachineConfig, Unit};
use std::time::{Duration, Instant};

use DriftAction::{Degrade, Heal, Report};

const RULES: &str = r#"
drift:
  rules:
    - paths: ["/etc/chrony.conf", "/etc/containers/registries.conf.d/*"]
      action: heal
    - paths: ["/etc/containers/**"]
      action: report
    - paths: ["/etc/chrony.conf", "/etc/ssh/sshd_config.d/?0-*.conf"]
      action: degrade
    - paths: ["/etc/motd", "/etc/[ab]x"]
      action: report
"#;

#[test]
fn the_first_matching_rule_decides_and_no_match_degrades() {
    let d = drift::parse(RULES.as_bytes(), "config.yaml").unwrap();
    let table: &[(&str, DriftAction, Option<usize>)] = &[
        ("/etc/chrony.conf", Heal, Some(0)), // also rule 2: the first wins
        (
            "/etc/containers/registries.conf.d/mirror.conf",
            Heal,
            Some(0),
        ),
        // `*` stays within a directory; `**` crosses them.
        (
            "/etc/containers/registries.conf.d/sub/x.conf",
            Report,
            Some(1),
        ),
        ("/etc/containers/policy.json", Report, Some(1)),
        ("/etc/ssh/sshd_config.d/10-x.conf", Degrade, Some(2)),
        ("/etc/ssh/sshd_config.d/100-x.conf", Degrade, None),
        ("/etc/motd", Report, Some(3)),
        ("/etc/ax", Report, Some(3)),
        ("/etc/cx", Degrade, None),
        ("/etc/chrony.conf.bak", Degrade, None),
        ("/etc/motd/", Degrade, None),
        ("/var/lib/x", Degrade, None),
    ];
    for (path, action, rule) in table {
        let v = d.action_for(path);
        assert_eq!((v.action, v.rule), (*action, *rule), "{path}");
    }
    // No file: everything degrades.
    let none = drift::DriftConfig::default();
    assert_eq!(none.action_for("/etc/chrony.conf").action, Degrade);
    // An empty file or an empty drift section: the same.
    for text in ["", "drift:\n", "drift:\n  rules: []\n", "{}"] {
        let d = drift::parse(text.as_bytes(), "c").unwrap();
        assert_eq!(d.action_for("/etc/chrony.conf").action, Degrade, "{text:?}");
        assert_eq!(d.heal, HealLimits::default(), "{text:?}");
    }
}

#[test]
fn heal_budget_is_a_sliding_window_per_path() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut b = HealBudget::new(HealLimits {
        max_heals: 2,
        window: Duration::from_secs(60),
    });
    // (path, seconds, expected)
    let table: &[(&str, u64, Budget)] = &[
        ("/a", 0, Budget::Heal { nth: 1 }),
        ("/a", 10, Budget::Heal { nth: 2 }),
        ("/a", 20, Budget::Exhausted { count: 2 }),
        // Another path has its own budget.
        ("/b", 20, Budget::Heal { nth: 1 }),
        // Refusals are not counted: at 59 s both heals are still within the window.
        ("/a", 59, Budget::Exhausted { count: 2 }),
        // At 60 s the first heal (0 s) has left the window.
        ("/a", 60, Budget::Heal { nth: 2 }),
        ("/a", 69, Budget::Exhausted { count: 2 }),
        // 10 s and 60 s gone by 130 s.
        ("/a", 130, Budget::Heal { nth: 1 }),
        ("/b", 130, Budget::Heal { nth: 1 }),
    ];
    for (path, s, want) in table {
        assert_eq!(b.try_heal(path, at(*s)), *want, "{path} at {s}s");
    }
    // maxHeals 1: one heal per window.
    let mut one = HealBudget::new(HealLimits {
        max_heals: 1,
        window: Duration::from_secs(3600),
    });
    assert_eq!(one.try_heal("/x", at(0)), Budget::Heal { nth: 1 });
    assert_eq!(one.try_heal("/x", at(3599)), Budget::Exhausted { count: 1 });
    assert_eq!(one.try_heal("/x", at(3600)), Budget::Heal { nth: 1 });
}

fn config() -> MachineConfig {
    let mut m = MachineConfig {
        name: "rendered-worker-a".into(),
        ..MachineConfig::default()
    };
    m.spec.config.version = "3.4.0".into();
    for p in [
        "/etc/chrony.conf",
        "/etc/motd",
        "/etc/x",
        "/etc/drained.conf",
        "/etc/containers/registries.conf",
        "/etc/systemd/system/not-a-unit-of-the-config.conf",
    ] {
        m.spec.config.files.push(File {
            path: p.into(),
            contents: Some(b"x\n".to_vec()),
            ..File::default()
        });
    }
    m.spec.config.units.push(Unit {
        name: "chronyd.service".into(),
        contents: Some("[Service]\n".into()),
        dropins: vec![Dropin {
            name: "10-x.conf".into(),
            contents: Some("[Service]\n".into()),
        }],
        ..Unit::default()
    });
    m.spec.config.units.push(Unit {
        name: "kubelet.service".into(),
        contents: Some("[Service]\n".into()),
        ..Unit::default()
    });
    m
}

fn policy() -> policy::Policy {
    let mut p = policy::defaults();
    p.files.push(FilePolicy {
        path: "/etc/chrony.conf".into(),
        actions: vec![Action::reload("chronyd.service")],
    });
    p.files.push(FilePolicy {
        path: "/etc/motd".into(),
        actions: vec![Action::None],
    });
    p.files.push(FilePolicy {
        path: "/etc/drained.conf".into(),
        actions: vec![Action::Drain, Action::restart("x.service")],
    });
    p.units.push(UnitPolicy {
        name: "chronyd.service".into(),
        actions: vec![Action::restart("chronyd.service")],
    });
    p
}

#[test]
fn heal_follows_the_policy_and_never_reboots_or_drains() {
    let (c, p) = (config(), policy());
    let heal = |actions: Vec<Action>, matched: &str| HealPlan::Heal {
        actions,
        matched: Some(matched.into()),
    };
    let table: &[(&str, Result<HealPlan, &str>)] = &[
        (
            "/etc/chrony.conf",
            Ok(heal(
                vec![Action::reload("chronyd.service")],
                "/etc/chrony.conf",
            )),
        ),
        ("/etc/motd", Ok(heal(vec![Action::None], "/etc/motd"))),
        // A unit file and a dropin are changes of their unit, whose definition changed.
        (
            "/etc/systemd/system/chronyd.service",
            Ok(heal(
                vec![Action::DaemonReload, Action::restart("chronyd.service")],
                "chronyd.service",
            )),
        ),
        (
            "/etc/systemd/system/chronyd.service.d/10-x.conf",
            Ok(heal(
                vec![Action::DaemonReload, Action::restart("chronyd.service")],
                "chronyd.service",
            )),
        ),
        (
            "/etc/x",
            Err(
                "the node disruption policy asks for a reboot for /etc/x (no policy path matches: reboot)",
            ),
        ),
        (
            "/etc/systemd/system/kubelet.service",
            Err(
                "the node disruption policy asks for a reboot for unit kubelet.service (no policy unit matches: reboot)",
            ),
        ),
        // A file of storage.files under the unit directory that is no unit of the config.
        (
            "/etc/systemd/system/not-a-unit-of-the-config.conf",
            Err(
                "the node disruption policy asks for a reboot for /etc/systemd/system/not-a-unit-of-the-config.conf",
            ),
        ),
        (
            "/etc/drained.conf",
            Err(
                "the node disruption policy asks for a drain for /etc/drained.conf (matches policy path /etc/drained.conf), and a heal never drains",
            ),
        ),
        (
            "/etc/containers/registries.conf",
            Err("/etc/containers/registries.conf is applied by the Special action"),
        ),
    ];
    for (path, want) in table {
        let got = drift::heal_plan(&c, &p, path);
        match (want, &got) {
            (Ok(w), g) => assert_eq!(g, w, "{path}"),
            (Err(prefix), HealPlan::Refuse(why)) => {
                assert!(why.starts_with(prefix), "{path}: {why}")
            }
            (Err(_), g) => panic!("{path}: expected a refusal, got {g:?}"),
        }
    }
    // The preview `plan` prints is the same decision, path by path.
    let rules = drift::parse(RULES.as_bytes(), "c").unwrap();
    let managed = drift::managed_paths(&c);
    assert!(managed.contains(&"/etc/systemd/system/chronyd.service.d/10-x.conf".to_string()));
    let prev = drift::preview(&rules, &c, &p, managed.iter().map(String::as_str));
    let chrony = prev.iter().find(|x| x.path == "/etc/chrony.conf").unwrap();
    assert_eq!(chrony.action, Heal);
    assert_eq!(chrony.then, Some(vec![Action::reload("chronyd.service")]));
    let motd = prev.iter().find(|x| x.path == "/etc/motd").unwrap();
    assert_eq!((motd.action, &motd.then), (Report, &None));
}

#[test]
fn a_bad_daemon_config_lists_every_problem_with_its_field() {
    let table: &[(&str, &[&str])] = &[
        (
            "drift: [1]\n",
            &["c.yaml: drift: expected a mapping (rules, heal)"],
        ),
        (
            "rules: []\n",
            &["c.yaml: rules: unknown field (expected drift or tryMode)"],
        ),
        (
            "drift:\n  rules:\n    - paths: [\"/etc/x\"]\n      action: heal\n      when: always\n",
            &["c.yaml: drift.rules[0].when: unknown field (expected paths or action)"],
        ),
        (
            "drift:\n  rules:\n    - action: report\n    - paths: []\n      action: Heal\n",
            &[
                "c.yaml: drift.rules[0].paths: required",
                "c.yaml: drift.rules[1].paths: at least one glob is required",
                "c.yaml: drift.rules[1].action: unknown action \"Heal\" (expected degrade, report or heal)",
            ],
        ),
        (
            "drift:\n  rules:\n    - paths: [\"etc/x\", 3, \"/etc/{a\"]\n",
            &[
                "c.yaml: drift.rules[0].paths[0]: \"etc/x\" must be an absolute path (a glob)",
                "c.yaml: drift.rules[0].paths[1]: expected a string (a glob)",
                "c.yaml: drift.rules[0].paths[2]: invalid glob \"/etc/{a\": unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
                "c.yaml: drift.rules[0].action: required (degrade, report or heal)",
            ],
        ),
        (
            "drift:\n  heal:\n    maxHeals: 1001\n    window: 0s\n    every: 1\n",
            &[
                "c.yaml: drift.heal.maxHeals: 1001: expected a whole number from 1 to 1000",
                "c.yaml: drift.heal.window: \"0s\": expected a duration from 1s to 30days",
                "c.yaml: drift.heal.every: unknown field (expected maxHeals or window)",
            ],
        ),
        (
            "drift:\n  heal:\n    maxHeals: -1\n    window: 31days\n",
            &[
                "c.yaml: drift.heal.maxHeals: -1: expected a whole number from 1 to 1000",
                "c.yaml: drift.heal.window: \"31days\": expected a duration from 1s to 30days",
            ],
        ),
        ("drift: {rules: [\n", &["c.yaml: invalid YAML"]),
    ];
    for (text, want) in table {
        let errors = drift::parse(text.as_bytes(), "c.yaml").unwrap_err();
        let got: Vec<String> = errors.errors().iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), want.len(), "{text:?}: {got:#?}");
        for (g, w) in got.iter().zip(*want) {
            assert!(
                g.starts_with(w),
                "{text:?}: {g:?} does not start with {w:?}"
            );
        }
    }
    // Too many rules.
    let mut many = String::from("drift:\n  rules:\n");
    for i in 0..=drift::MAX_RULES {
        many += &format!("    - paths: [\"/etc/{i}\"]\n      action: report\n");
    }
    let e = drift::parse(many.as_bytes(), "c").unwrap_err();
    assert_eq!(
        e.errors()[0].to_string(),
        "c: drift.rules: 101 rules: at most 100 are allowed"
    );
    // The values taken.
    let ok = drift::parse(b"drift:\n  heal:\n    maxHeals: 7\n    window: 30m\n", "c").unwrap();
    assert_eq!(
        ok.heal,
        HealLimits {
            max_heals: 7,
            window: Duration::from_secs(1800)
        }
    );
}
