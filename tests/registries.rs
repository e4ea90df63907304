//! Table tests for the registries.conf safety analysis (SPEC §3 point 7).

use machine_config_daemon::plan::registries::{RegistriesVerdict, analyze};

/// The registries.conf most cases start from: one search registry list, one mirrored registry
/// (digest-only, two mirrors), one registry with per-mirror settings.
const BASE: &str = r#"
unqualified-search-registries = ["registry.access.redhat.com", "docker.io"]
short-name-mode = "enforcing"

[[registry]]
prefix = ""
location = "quay.io/openshift-release-dev/ocp-release"
mirror-by-digest-only = true

[[registry.mirror]]
location = "mirror.example.com/ocp/release"

[[registry.mirror]]
location = "backup.example.com/ocp/release"

[[registry]]
prefix = "registry.redhat.io/ubi9"
location = "registry.redhat.io/ubi9"

[[registry.mirror]]
location = "mirror.example.com/ubi9"
pull-from-mirror = "digest-only"
"#;

/// What a case expects: `Safe`, or unsafe with exactly these reasons in this order.
enum Expect {
    Safe,
    Unsafe(&'static [&'static str]),
    /// Unsafe, with one reason containing each of these fragments (for messages from the TOML
    /// parser, whose exact wording is not ours).
    UnsafeContaining(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    old: Option<String>,
    new: Option<String>,
    expect: Expect,
}

fn base() -> Option<String> {
    Some(BASE.to_string())
}

/// BASE with `from` replaced by `to` (the fragment must be present).
fn edit(from: &str, to: &str) -> Option<String> {
    assert!(BASE.contains(from), "fixture does not contain {from:?}");
    Some(BASE.replacen(from, to, 1))
}

/// BASE with `extra` appended.
fn plus(extra: &str) -> Option<String> {
    Some(format!("{BASE}\n{extra}"))
}

fn cases() -> Vec<Case> {
    vec![
        Case { name: "identical", old: base(), new: base(), expect: Expect::Safe },
        Case { name: "both absent", old: None, new: None, expect: Expect::Safe },
        Case {
            name: "whitespace and comment only",
            old: base(),
            new: Some(format!(
                "# managed by the machine-config-daemon examples\n\n{}",
                BASE.replace("mirror-by-digest-only = true", "mirror-by-digest-only   =   true # keep")
            )),
            expect: Expect::Safe,
        },
        Case {
            name: "trailing slash and default pull-from-mirror are not changes",
            old: base(),
            new: Some(
                BASE.replace(
                    "location = \"mirror.example.com/ocp/release\"",
                    "location = \"mirror.example.com/ocp/release/\"\npull-from-mirror = \"all\"",
                ),
            ),
            expect: Expect::Safe,
        },
        Case {
            name: "search registries appended",
            old: base(),
            new: edit(r#""docker.io"]"#, r#""docker.io", "quay.io"]"#),
            expect: Expect::Safe,
        },
        Case {
            name: "search registries reordered",
            old: base(),
            new: edit(
                r#"["registry.access.redhat.com", "docker.io"]"#,
                r#"["docker.io", "registry.access.redhat.com"]"#,
            ),
            expect: Expect::Unsafe(&[
                r#"unqualified-search-registries changed from ["registry.access.redhat.com", "docker.io"] to ["docker.io", "registry.access.redhat.com"]; only appending is safe"#,
            ]),
        },
        Case {
            name: "search registry removed",
            old: base(),
            new: edit(r#", "docker.io"]"#, "]"),
            expect: Expect::Unsafe(&[
                r#"unqualified-search-registries changed from ["registry.access.redhat.com", "docker.io"] to ["registry.access.redhat.com"]; only appending is safe"#,
            ]),
        },
        Case {
            name: "search registry inserted at the front",
            old: base(),
            new: edit(r#"= ["registry.access.redhat.com""#, r#"= ["quay.io", "registry.access.redhat.com""#),
            expect: Expect::Unsafe(&[
                r#"unqualified-search-registries changed from ["registry.access.redhat.com", "docker.io"] to ["quay.io", "registry.access.redhat.com", "docker.io"]; only appending is safe"#,
            ]),
        },
        Case {
            name: "digest-only registry added with mirrors",
            old: base(),
            new: plus(
                r#"
[[registry]]
location = "quay.io/foo"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.example/foo"
[[registry.mirror]]
location = "m2.example/foo"
insecure = true
"#,
            ),
            expect: Expect::Safe,
        },
        Case {
            name: "registry added whose every mirror pulls by digest only",
            old: base(),
            new: plus(
                r#"
[[registry]]
prefix = "quay.io/foo"
location = "quay.io/foo"
[[registry.mirror]]
location = "m.example/foo"
pull-from-mirror = "digest-only"
"#,
            ),
            expect: Expect::Safe,
        },
        Case {
            name: "digest-only mirror added to an existing registry",
            old: base(),
            new: edit(
                "pull-from-mirror = \"digest-only\"\n",
                "pull-from-mirror = \"digest-only\"\n\n[[registry.mirror]]\nlocation = \"m2.example.com/ubi9\"\npull-from-mirror = \"digest-only\"\n",
            ),
            expect: Expect::Safe,
        },
        Case {
            name: "mirror added to a mirror-by-digest-only registry, before the others",
            old: base(),
            new: edit(
                "mirror-by-digest-only = true\n",
                "mirror-by-digest-only = true\n\n[[registry.mirror]]\nlocation = \"near.example.com/ocp/release\"\n",
            ),
            expect: Expect::Safe,
        },
        Case {
            name: "registry added without digest-only",
            old: base(),
            new: plus(
                r#"
[[registry]]
location = "quay.io/foo"
[[registry.mirror]]
location = "m.example/foo"
"#,
            ),
            expect: Expect::Unsafe(&[
                r#"registry "quay.io/foo": added with mirror "m.example/foo" not digest-only (pull-from-mirror "all")"#,
            ]),
        },
        Case {
            name: "registry added with a tag-only mirror among digest-only ones",
            old: base(),
            new: plus(
                r#"
[[registry]]
location = "quay.io/foo"
[[registry.mirror]]
location = "a.example/foo"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "b.example/foo"
pull-from-mirror = "tag-only"
"#,
            ),
            expect: Expect::Unsafe(&[
                r#"registry "quay.io/foo": added with mirror "b.example/foo" not digest-only (pull-from-mirror "tag-only")"#,
            ]),
        },
        Case {
            name: "registry added with no mirrors and no digest-only",
            old: base(),
            new: plus("[[registry]]\nlocation = \"quay.io/foo\"\n"),
            expect: Expect::Unsafe(&[
                r#"registry "quay.io/foo": added without mirror-by-digest-only and without digest-only mirrors"#,
            ]),
        },
        Case {
            name: "blocked registry added",
            old: base(),
            new: plus(
                "[[registry]]\nlocation = \"docker.io/evil\"\nblocked = true\nmirror-by-digest-only = true\n",
            ),
            expect: Expect::Unsafe(&[r#"registry "docker.io/evil": added as blocked"#]),
        },
        Case {
            name: "registry added that redirects its prefix",
            old: base(),
            new: plus(
                "[[registry]]\nprefix = \"quay.io/foo\"\nlocation = \"other.example/foo\"\nmirror-by-digest-only = true\n",
            ),
            expect: Expect::Unsafe(&[
                r#"registry "quay.io/foo": added with location "other.example/foo", redirecting every pull of the prefix"#,
            ]),
        },
        Case {
            name: "non digest-only mirror added to an existing registry",
            old: base(),
            new: edit(
                "pull-from-mirror = \"digest-only\"\n",
                "pull-from-mirror = \"digest-only\"\n\n[[registry.mirror]]\nlocation = \"m2.example.com/ubi9\"\n",
            ),
            expect: Expect::Unsafe(&[
                r#"registry "registry.redhat.io/ubi9": mirror "m2.example.com/ubi9" added but not digest-only (pull-from-mirror "all")"#,
            ]),
        },
        Case {
            name: "registry removed",
            old: base(),
            new: Some(BASE.split("[[registry]]\nprefix = \"registry.redhat.io/ubi9\"").next().unwrap_or_default().to_string()),
            expect: Expect::Unsafe(&[r#"registry "registry.redhat.io/ubi9": removed"#]),
        },
        Case {
            name: "mirror removed",
            old: base(),
            new: edit("[[registry.mirror]]\nlocation = \"backup.example.com/ocp/release\"\n", ""),
            expect: Expect::Unsafe(&[
                r#"registry "quay.io/openshift-release-dev/ocp-release": mirror "backup.example.com/ocp/release" removed"#,
            ]),
        },
        Case {
            name: "mirrors reordered",
            old: base(),
            new: edit(
                "location = \"mirror.example.com/ocp/release\"\n\n[[registry.mirror]]\nlocation = \"backup.example.com/ocp/release\"",
                "location = \"backup.example.com/ocp/release\"\n\n[[registry.mirror]]\nlocation = \"mirror.example.com/ocp/release\"",
            ),
            expect: Expect::Unsafe(&[
                r#"registry "quay.io/openshift-release-dev/ocp-release": mirrors reordered from ["mirror.example.com/ocp/release", "backup.example.com/ocp/release"] to ["backup.example.com/ocp/release", "mirror.example.com/ocp/release"]"#,
            ]),
        },
        Case {
            name: "prefix changed",
            old: base(),
            new: edit("prefix = \"registry.redhat.io/ubi9\"", "prefix = \"registry.redhat.io/ubi9-minimal\""),
            expect: Expect::Unsafe(&[
                r#"registry "registry.redhat.io/ubi9": removed"#,
                r#"registry "registry.redhat.io/ubi9-minimal": added with location "registry.redhat.io/ubi9", redirecting every pull of the prefix"#,
            ]),
        },
        Case {
            name: "empty prefix spelled out as the location is the same registry",
            old: base(),
            new: edit(
                "prefix = \"\"\nlocation = \"quay.io/openshift-release-dev/ocp-release\"",
                "prefix = \"quay.io/openshift-release-dev/ocp-release\"\nlocation = \"quay.io/openshift-release-dev/ocp-release\"",
            ),
            expect: Expect::Safe,
        },
        Case {
            name: "location changed",
            old: base(),
            new: edit("location = \"registry.redhat.io/ubi9\"", "location = \"registry.example.com/ubi9\""),
            expect: Expect::Unsafe(&[
                r#"registry "registry.redhat.io/ubi9": location changed from "registry.redhat.io/ubi9" to "registry.example.com/ubi9""#,
            ]),
        },
        Case {
            name: "blocked toggled",
            old: base(),
            new: edit("location = \"registry.redhat.io/ubi9\"", "location = \"registry.redhat.io/ubi9\"\nblocked = true"),
            expect: Expect::Unsafe(&[
                r#"registry "registry.redhat.io/ubi9": blocked changed from false to true"#,
            ]),
        },
        Case {
            name: "insecure toggled",
            old: base(),
            new: edit("location = \"registry.redhat.io/ubi9\"", "location = \"registry.redhat.io/ubi9\"\ninsecure = true"),
            expect: Expect::Unsafe(&[
                r#"registry "registry.redhat.io/ubi9": insecure changed from false to true"#,
            ]),
        },
        Case {
            name: "mirror-by-digest-only flipped",
            old: base(),
            new: edit("mirror-by-digest-only = true", "mirror-by-digest-only = false"),
            expect: Expect::Unsafe(&[
                r#"registry "quay.io/openshift-release-dev/ocp-release": mirror-by-digest-only changed from true to false"#,
            ]),
        },
        Case {
            name: "mirror pull-from-mirror changed",
            old: base(),
            new: edit("pull-from-mirror = \"digest-only\"", "pull-from-mirror = \"all\""),
            expect: Expect::Unsafe(&[
                r#"registry "registry.redhat.io/ubi9": mirror "mirror.example.com/ubi9": pull-from-mirror changed from "digest-only" to "all""#,
            ]),
        },
        Case {
            name: "mirror insecure toggled",
            old: base(),
            new: edit(
                "location = \"backup.example.com/ocp/release\"",
                "location = \"backup.example.com/ocp/release\"\ninsecure = true",
            ),
            expect: Expect::Unsafe(&[
                r#"registry "quay.io/openshift-release-dev/ocp-release": mirror "backup.example.com/ocp/release": insecure changed from false to true"#,
            ]),
        },
        Case {
            name: "short-name-mode changed",
            old: base(),
            new: edit("short-name-mode = \"enforcing\"", "short-name-mode = \"permissive\""),
            expect: Expect::Unsafe(&[r#"short-name-mode changed from "enforcing" to "permissive""#]),
        },
        Case {
            name: "short-name-mode removed",
            old: base(),
            new: edit("short-name-mode = \"enforcing\"\n", ""),
            expect: Expect::Unsafe(&[r#"short-name-mode changed from "enforcing" to unset"#]),
        },
        Case {
            name: "unmodelled field of a registry removed",
            old: plus("[[registry]]\nprefix = \"example.com/x\"\nlocation = \"example.com/x\"\nunknown-knob = 1\n"),
            new: plus("[[registry]]\nprefix = \"example.com/x\"\nlocation = \"example.com/x\"\n"),
            expect: Expect::Unsafe(&[r#"registry "example.com/x": field "unknown-knob" removed"#]),
        },
        Case {
            name: "unmodelled top-level table added",
            old: base(),
            new: plus("[aliases]\n\"ubi\" = \"registry.redhat.io/ubi9/ubi\"\n"),
            expect: Expect::Unsafe(&[r#"top-level key "aliases" added"#]),
        },
        Case {
            name: "several problems are reported together, registries sorted by key",
            old: base(),
            new: Some(
                BASE.replace("mirror-by-digest-only = true", "mirror-by-digest-only = false")
                    .replace("location = \"registry.redhat.io/ubi9\"", "location = \"registry.redhat.io/ubi9\"\nblocked = true")
                    .replace(r#", "docker.io"]"#, "]"),
            ),
            expect: Expect::Unsafe(&[
                r#"unqualified-search-registries changed from ["registry.access.redhat.com", "docker.io"] to ["registry.access.redhat.com"]; only appending is safe"#,
                r#"registry "quay.io/openshift-release-dev/ocp-release": mirror-by-digest-only changed from true to false"#,
                r#"registry "registry.redhat.io/ubi9": blocked changed from false to true"#,
            ]),
        },
        Case {
            name: "invalid TOML in the new file",
            old: base(),
            new: Some(format!("{BASE}\n[[registry]\nlocation = \"x\"\n")),
            expect: Expect::UnsafeContaining(&["new registries.conf: invalid TOML", "line 24, column 12"]),
        },
        Case {
            name: "invalid TOML in the old file",
            old: Some("unqualified-search-registries = [\"docker.io\"\n".to_string()),
            new: base(),
            expect: Expect::UnsafeContaining(&["old registries.conf: invalid TOML", "line"]),
        },
        Case {
            name: "wrong type is a parse error",
            old: base(),
            new: edit("mirror-by-digest-only = true", "mirror-by-digest-only = \"yes\""),
            expect: Expect::UnsafeContaining(&["new registries.conf: invalid TOML", "line 8, column 25"]),
        },
        Case {
            name: "file added with digest-only content",
            old: None,
            new: Some(
                "[[registry]]\nlocation = \"quay.io/foo\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.example/foo\"\n"
                    .to_string(),
            ),
            expect: Expect::Safe,
        },
        Case {
            name: "file added with search registries and a tag mirror",
            old: None,
            new: Some(
                "unqualified-search-registries = [\"docker.io\"]\n[[registry]]\nlocation = \"quay.io/foo\"\n[[registry.mirror]]\nlocation = \"m.example/foo\"\n"
                    .to_string(),
            ),
            expect: Expect::Unsafe(&[
                r#"registry "quay.io/foo": added with mirror "m.example/foo" not digest-only (pull-from-mirror "all")"#,
            ]),
        },
        Case {
            name: "file removed",
            old: base(),
            new: None,
            expect: Expect::Unsafe(&["registries.conf removed"]),
        },
        Case {
            name: "v1 search list changed",
            old: Some("[registries.search]\nregistries = ['registry.access.redhat.com', 'docker.io']\n\n[registries.insecure]\nregistries = []\n".to_string()),
            new: Some("[registries.search]\nregistries = ['registry.access.redhat.com', 'docker.io', 'quay.io']\n\n[registries.insecure]\nregistries = []\n".to_string()),
            expect: Expect::Unsafe(&["v1 table [registries.search] changed"]),
        },
        Case {
            name: "v1 block table added",
            old: Some("[registries.search]\nregistries = ['docker.io']\n".to_string()),
            new: Some("[registries.search]\nregistries = ['docker.io']\n[registries.block]\nregistries = ['evil.example']\n".to_string()),
            expect: Expect::Unsafe(&["v1 table [registries.block] added"]),
        },
        Case {
            name: "v1 comment-only change",
            old: Some("[registries.search]\nregistries = ['docker.io']\n".to_string()),
            new: Some("# search list\n[registries.search]\nregistries = [ 'docker.io' ]\n".to_string()),
            expect: Expect::Safe,
        },
        Case {
            name: "duplicate registry in the new file",
            old: base(),
            new: plus("[[registry]]\nlocation = \"registry.redhat.io/ubi9\"\nmirror-by-digest-only = true\n"),
            expect: Expect::Unsafe(&[
                r#"new registries.conf: registry "registry.redhat.io/ubi9" is defined more than once"#,
            ]),
        },
        Case {
            name: "mirror-by-digest-only combined with pull-from-mirror",
            old: base(),
            new: plus(
                "[[registry]]\nlocation = \"quay.io/foo\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.example/foo\"\npull-from-mirror = \"digest-only\"\n",
            ),
            expect: Expect::Unsafe(&[
                r#"new registries.conf: registry "quay.io/foo": mirror "m.example/foo": pull-from-mirror cannot be combined with mirror-by-digest-only on the registry"#,
            ]),
        },
        Case {
            name: "registry without prefix or location",
            old: base(),
            new: plus("[[registry]]\nmirror-by-digest-only = true\n"),
            expect: Expect::Unsafe(&[
                "new registries.conf: registry entry #3 has neither prefix nor location",
            ]),
        },
    ]
}

#[test]
fn registries_conf_changes() {
    let mut failures = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 20);
    for case in &cases {
        let got = analyze(
            case.old.as_deref().map(str::as_bytes),
            case.new.as_deref().map(str::as_bytes),
        );
        let ok = match case.expect {
            Expect::Safe => {
                got == RegistriesVerdict {
                    safe: true,
                    reasons: vec![],
                }
            }
            Expect::Unsafe(reasons) => {
                !got.safe
                    && got.reasons == reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>()
            }
            Expect::UnsafeContaining(fragments) => {
                !got.safe
                    && got.reasons.len() == 1
                    && fragments.iter().all(|f| got.reasons[0].contains(f))
                    && !got.reasons[0].contains('\n')
            }
        };
        if !ok {
            failures.push(format!("{}: got {:?}", case.name, got));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn both_files_unparseable_reports_both() {
    let got = analyze(Some(b"a = ["), Some(b"b = {"));
    assert!(!got.safe);
    assert_eq!(got.reasons.len(), 2, "{got:?}");
    assert!(got.reasons[0].starts_with("old registries.conf: invalid TOML"));
    assert!(got.reasons[1].starts_with("new registries.conf: invalid TOML"));
}

#[test]
fn non_utf8_is_unsafe_not_a_panic() {
    let got = analyze(Some(BASE.as_bytes()), Some(&[0xff, 0xfe, b'a']));
    assert!(!got.safe);
    assert_eq!(got.reasons.len(), 1);
    assert!(
        got.reasons[0].starts_with("new registries.conf: not valid UTF-8"),
        "{got:?}"
    );
}

#[test]
fn verdict_is_deterministic() {
    let new = plus(
        "[[registry]]\nlocation = \"z.example/a\"\n[[registry]]\nlocation = \"a.example/z\"\n[[registry]]\nlocation = \"m.example/m\"\n",
    )
    .unwrap_or_default();
    let first = analyze(Some(BASE.as_bytes()), Some(new.as_bytes()));
    for _ in 0..10 {
        assert_eq!(analyze(Some(BASE.as_bytes()), Some(new.as_bytes())), first);
    }
    let keys: Vec<&str> = first
        .reasons
        .iter()
        .map(|r| r.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [
            r#"registry "a.example/z""#,
            r#"registry "m.example/m""#,
            r#"registry "z.example/a""#
        ]
    );
}

#[test]
fn verdict_serialises_as_json_object() {
    let got = analyze(Some(BASE.as_bytes()), None);
    let json = serde_json::to_value(&got).unwrap_or_default();
    assert_eq!(
        json,
        serde_json::json!({"safe": false, "reasons": ["registries.conf removed"]})
    );
}

/// The registries.conf carried by one of examples/configs, decoded from its base64 data URL.
fn example_registries_conf(name: &str) -> Vec<u8> {
    use base64::Engine as _;
    let path = format!("{}/examples/configs/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: serde_json::Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let files = doc["spec"]["config"]["storage"]["files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let file = files
        .iter()
        .find(|f| f["path"] == "/etc/containers/registries.conf")
        .unwrap_or_else(|| panic!("{path}: no registries.conf"));
    let source = file["contents"]["source"].as_str().unwrap_or_default();
    let data = source
        .strip_prefix("data:;base64,")
        .unwrap_or_else(|| panic!("{path}: {source}"));
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn examples_agree_with_the_analysis() {
    let base = example_registries_conf("base.yaml");
    assert_eq!(
        analyze(
            Some(&base),
            Some(&example_registries_conf("registries.yaml"))
        ),
        RegistriesVerdict {
            safe: true,
            reasons: vec![]
        }
    );
    assert_eq!(
        analyze(Some(&base), Some(&example_registries_conf("registries-unsafe.yaml"))),
        RegistriesVerdict {
            safe: false,
            reasons: vec![
                r#"registry "quay.io/openshift-release-dev/ocp-release": mirror "backup-mirror.example.com:5000/ocp4/openshift4" removed"#
                    .to_string()
            ],
        }
    );
    // Every other example keeps base's registries.conf byte for byte.
    for name in [
        "chrony.yaml",
        "sshkey.yaml",
        "kargs.yaml",
        "unreconcilable.yaml",
        "gzip.yaml",
    ] {
        assert_eq!(example_registries_conf(name), base, "{name}");
    }
}
