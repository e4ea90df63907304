//! Ignition parsing, normalisation, validation and emission (src/model/ignition.rs), through the
//! public loader as users reach it.

use base64::Engine as _;
use machine_config_daemon::model::{
    self, Dropin, File, MachineConfig, Owner, Unit, User, ignition, load::parse_machine_configs,
};
use serde_json::{Value, json};
use std::io::Write as _;

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A MachineConfig (JSON) around an Ignition config.
fn mc(config: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": {"name": "99-test"},
        "spec": {"config": config},
    }))
    .unwrap()
}

fn parse_one(config: Value) -> Result<MachineConfig, Vec<String>> {
    match parse_machine_configs(&mc(config), "t.json") {
        Ok(mut l) => Ok(l.configs.remove(0)),
        Err(e) => Err(e.errors().to_vec()),
    }
}

/// A config with one file whose `contents` is `contents`.
fn with_contents(contents: Value) -> Value {
    json!({"ignition": {"version": "3.2.0"},
           "storage": {"files": [{"path": "/etc/f", "contents": contents}]}})
}

#[test]
fn every_ignition_version_normalises_to_the_same_model() {
    for version in [
        "3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0", "3.6.0",
    ] {
        let config = json!({
            "ignition": {"version": version},
            "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 AAAA k1"]}]},
            "storage": {
                "files": [{"path": "/etc/chrony.conf", "mode": 420, "overwrite": true,
                           "user": {"name": "root"}, "group": {"id": 0},
                           "contents": {"source": "data:,pool%202.rhel.pool.ntp.org%0A"}}],
                "directories": [{"path": "/etc/mydir", "mode": 493}],
                "links": [{"path": "/etc/mylink", "target": "/etc/chrony.conf"}]
            },
            "systemd": {"units": [{"name": "chronyd.service", "enabled": true,
                                   "dropins": [{"name": "10-x.conf", "contents": "[Service]\n"}]}]}
        });
        let got = parse_one(config).unwrap_or_else(|e| panic!("{version}: {e:?}"));
        let c = &got.spec.config;
        assert_eq!(c.version, version);
        assert_eq!(
            c.files,
            vec![File {
                path: "/etc/chrony.conf".into(),
                contents: Some(b"pool 2.rhel.pool.ntp.org\n".to_vec()),
                mode: Some(0o644),
                user: Some(Owner::Name("root".into())),
                group: Some(Owner::Id(0)),
                overwrite: Some(true),
                has_append: false,
                digest: None,
            }],
            "{version}"
        );
        assert_eq!(c.directories[0].path, "/etc/mydir");
        assert_eq!(c.directories[0].mode, Some(0o755));
        assert_eq!(c.links[0].target.as_deref(), Some("/etc/chrony.conf"));
        assert_eq!(
            c.units,
            vec![Unit {
                name: "chronyd.service".into(),
                contents: None,
                enabled: Some(true),
                mask: None,
                dropins: vec![Dropin {
                    name: "10-x.conf".into(),
                    contents: Some("[Service]\n".into())
                }],
            }],
            "{version}"
        );
        assert_eq!(
            c.users,
            vec![User {
                name: "core".into(),
                ssh_authorized_keys: vec!["ssh-ed25519 AAAA k1".into()],
                ..Default::default()
            }]
        );
    }
}

#[test]
fn contents_are_decoded() {
    let text = b"line one\nline two: 100% \xe2\x9c\x93\n";
    let cases: Vec<(&str, Value, Vec<u8>)> = vec![
        (
            "percent-encoded",
            json!({"source": "data:,a%20b%0Ac"}),
            b"a b\nc".to_vec(),
        ),
        (
            "plain characters",
            json!({"source": "data:,abc"}),
            b"abc".to_vec(),
        ),
        (
            "base64 with media type and params",
            json!({"source": format!("data:text/plain;charset=utf-8;base64,{}", b64(text))}),
            text.to_vec(),
        ),
        (
            "base64 without padding",
            json!({"source": "data:;base64,aGVsbG8"}),
            b"hello".to_vec(),
        ),
        (
            "base64 with half its padding",
            json!({"source": "data:;base64,QQ="}),
            b"A".to_vec(),
        ),
        (
            "base64 wrapped over lines",
            json!({"source": "data:;base64,aGVs\nbG8g\r\nd29y bGQ="}),
            b"hello world".to_vec(),
        ),
        (
            "base64 with percent-encoded characters",
            json!({"source": "data:;base64,aGVsbG8%3D"}),
            b"hello".to_vec(),
        ),
        (
            "gzip base64",
            json!({"source": format!("data:;base64,{}", b64(&gzip(text))), "compression": "gzip"}),
            text.to_vec(),
        ),
        (
            "empty compression is none",
            json!({"source": "data:,x", "compression": ""}),
            b"x".to_vec(),
        ),
        (
            "empty source is empty contents",
            json!({"source": ""}),
            Vec::new(),
        ),
        (
            "sha512 verification of decoded data",
            json!({"source": "data:,abc", "verification": {"hash": "sha512-ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"}}),
            b"abc".to_vec(),
        ),
    ];
    for (what, contents, want) in cases {
        let got = parse_one(with_contents(contents)).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(
            got.spec.config.files[0].contents.as_deref(),
            Some(&want[..]),
            "{what}"
        );
    }
}

#[test]
fn bad_contents_name_the_field_and_reason() {
    let at = "t.json: spec.config.storage.files[0].contents";
    let cases: Vec<(&str, Value, String)> = vec![
        (
            "bad base64",
            json!({"source": "data:;base64,!!!not base64"}),
            format!("{at}.source: invalid base64 in data URL"),
        ),
        (
            "base64 with stray bits after the last byte",
            json!({"source": "data:;base64,QR=="}),
            format!("{at}.source: invalid base64 in data URL"),
        ),
        (
            "unknown compression",
            json!({"source": "data:,x", "compression": "xz"}),
            format!("{at}.compression: unsupported compression \"xz\" (only gzip or none)"),
        ),
        (
            "https source",
            json!({"source": "https://example.com/chrony.conf"}),
            format!(
                "{at}.source: remote source (https) is not allowed in a rendered config: contents must be a data URL"
            ),
        ),
        (
            "s3 source",
            json!({"source": "s3://bucket/key"}),
            format!(
                "{at}.source: remote source (s3) is not allowed in a rendered config: contents must be a data URL"
            ),
        ),
        (
            "bad percent-encoding",
            json!({"source": "data:,100%zz"}),
            format!("{at}.source: invalid percent-encoding in data URL"),
        ),
        (
            "missing comma",
            json!({"source": "data:text/plain"}),
            format!("{at}.source: invalid data URL: missing ','"),
        ),
        (
            "gzip that is not gzip",
            json!({"source": "data:,plain", "compression": "gzip"}),
            format!("{at}.source: invalid gzip data: unexpected end of file"),
        ),
        (
            "hash mismatch",
            json!({"source": "data:,abc", "verification": {"hash": "sha256-00"}}),
            format!(
                "{at}.verification.hash: contents do not match: expected 00, got ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            ),
        ),
    ];
    for (what, contents, want) in cases {
        let errors = parse_one(with_contents(contents)).expect_err(what);
        assert_eq!(errors, vec![want], "{what}");
    }
}

#[test]
fn invalid_nodes_are_refused() {
    let file = |f: Value| json!({"ignition": {"version": "3.4.0"}, "storage": {"files": [f]}});
    let unit = |u: Value| json!({"ignition": {"version": "3.4.0"}, "systemd": {"units": [u]}});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "relative path",
            file(json!({"path": "etc/x"})),
            "storage.files[0].path: \"etc/x\" is not absolute",
        ),
        (
            "dot-dot",
            file(json!({"path": "/etc/../x"})),
            "storage.files[0].path: \"/etc/../x\" is not clean: '..' component",
        ),
        (
            "double slash",
            file(json!({"path": "/etc//x"})),
            "storage.files[0].path: \"/etc//x\" is not clean: '//'",
        ),
        (
            "trailing slash",
            file(json!({"path": "/etc/x/"})),
            "storage.files[0].path: \"/etc/x/\" is not clean: trailing '/'",
        ),
        (
            "mode too big",
            file(json!({"path": "/etc/x", "mode": 0o4755})),
            "storage.files[0].mode: mode 0o4755 (2541) is out of range: permission bits 0 to 0o777 only",
        ),
        (
            "negative mode",
            file(json!({"path": "/etc/x", "mode": -1})),
            "storage.files[0].mode: mode -1 is out of range: permission bits 0 to 0o777 only",
        ),
        (
            "mode of wrong type",
            file(json!({"path": "/etc/x", "mode": "0644"})),
            "storage.files[0].mode: expected an integer, got a string \"0644\" (a mode is a number, e.g. 420; in YAML also 0644, unquoted)",
        ),
        (
            "owner id and name",
            file(json!({"path": "/etc/x", "user": {"id": 0, "name": "root"}})),
            "storage.files[0].user: id and name are both set; give one",
        ),
        (
            "empty unit name",
            unit(json!({"name": ""})),
            "systemd.units[0].name: unit name is empty",
        ),
        (
            "unit without type",
            unit(json!({"name": "foo"})),
            "systemd.units[0].name: unit name \"foo\" has no valid unit type suffix (.service, .timer, ...)",
        ),
        (
            "empty dropin name",
            unit(json!({"name": "a.service", "dropins": [{"name": ""}]})),
            "systemd.units[0].dropins[0].name: dropin name is empty",
        ),
        (
            "dropin not .conf",
            unit(json!({"name": "a.service", "dropins": [{"name": "x.txt"}]})),
            "systemd.units[0].dropins[0].name: dropin name \"x.txt\" must end in .conf",
        ),
    ];
    for (what, config, want) in cases {
        let errors = parse_one(config).expect_err(what);
        assert_eq!(
            errors,
            vec![format!("t.json: spec.config.{want}")],
            "{what}"
        );
    }
}

#[test]
fn all_problems_of_a_config_are_reported_at_once() {
    let config = json!({"ignition": {"version": "3.2.0"},
        "storage": {
            "files": [
                {"path": "relative", "contents": {"source": "data:,ok"}},
                {"path": "/etc/ok", "mode": 0o10000},
                {"path": "/etc/ok2", "contents": {"source": "http://example.com/x"}},
                {"path": "/etc/ok", "contents": {"source": "data:,dup"}},
            ]
        },
        "systemd": {"units": [{"name": "a.service"}, {"name": "a.service"}]}
    });
    let errors = parse_one(config).unwrap_err();
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(errors[0].contains("files[0].path"));
    assert!(errors[1].contains("files[1].mode"));
    assert!(errors[2].contains("files[2].contents.source: remote source (http)"));
    assert!(errors[3].contains("files[3].path: duplicate path \"/etc/ok\""));
    assert!(errors[4].contains("systemd.units[1].name: duplicate unit \"a.service\""));
}

#[test]
fn unsupported_versions_are_errors() {
    for (version, want) in [
        (
            json!("2.2.0"),
            "unsupported Ignition version \"2.2.0\" (3.0.0 to 3.6.0 are supported)",
        ),
        (
            json!("3.7.0"),
            "unsupported Ignition version \"3.7.0\" (3.0.0 to 3.6.0 are supported)",
        ),
        (json!(3), "expected a string, got a number"),
    ] {
        let errors = parse_one(json!({"ignition": {"version": version}})).unwrap_err();
        assert_eq!(
            errors,
            vec![format!("t.json: spec.config.ignition.version: {want}")]
        );
    }
    let errors = parse_one(json!({"storage": {}})).unwrap_err();
    assert_eq!(
        errors,
        vec!["t.json: spec.config.ignition.version: missing"]
    );
}

#[test]
fn unknown_keys_are_warnings_not_errors() {
    let config = json!({"ignition": {"version": "3.2.0"},
        "storage": {"files": [{"path": "/etc/x", "contnets": {"source": "data:,x"}}]},
        "systemd": {"units": [{"name": "a.service", "enable": true}]}});
    let loaded = parse_machine_configs(&mc(config), "t.json").unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "t.json: spec.config.storage.files[0].contnets: unknown key, ignored",
            "t.json: spec.config.systemd.units[0].enable: unknown key, ignored",
        ]
    );
    assert_eq!(loaded.configs[0].spec.config.files[0].contents, None);
}

#[test]
fn users_groups_and_storage_sections_are_kept() {
    let config = json!({"ignition": {"version": "3.4.0"},
    "kernelArguments": {"shouldExist": ["nosmt"]},
    "passwd": {
        "users": [{"name": "core", "passwordHash": "$6$x", "uid": 1000, "groups": ["wheel"]}],
        "groups": [{"name": "admins", "gid": 1500}]
    },
    "storage": {
        "disks": [{"device": "/dev/vdb", "wipeTable": true}],
        "filesystems": [{"device": "/dev/vdb1", "format": "xfs"}],
        "files": [{"path": "/etc/x", "append": [{"source": "data:,more"}]}]
    }});
    let c = parse_one(config).unwrap().spec.config;
    assert_eq!(c.users[0].password_hash.as_deref(), Some("$6$x"));
    assert_eq!(
        c.users[0].other_fields.keys().collect::<Vec<_>>(),
        vec!["groups", "uid"]
    );
    assert_eq!(c.groups[0].name, "admins");
    assert_eq!(c.groups[0].fields["gid"], json!(1500));
    assert_eq!(
        c.disks,
        Some(json!([{"device": "/dev/vdb", "wipeTable": true}]))
    );
    assert_eq!(
        c.filesystems,
        Some(json!([{"device": "/dev/vdb1", "format": "xfs"}]))
    );
    assert_eq!(c.raid, None);
    assert_eq!(
        c.ignition_kernel_arguments,
        Some(json!({"shouldExist": ["nosmt"]}))
    );
    assert!(c.files[0].has_append);
}

#[test]
fn emitted_config_is_ignition_3_5_with_only_set_fields() {
    let config = model::Config {
        files: vec![File {
            path: "/etc/a".into(),
            contents: Some(b"hi\n".to_vec()),
            mode: Some(0o600),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        ignition::to_ignition_json(&config),
        json!({"ignition": {"version": "3.5.0"},
               "storage": {"files": [{"path": "/etc/a", "contents": {"source": "data:;base64,aGkK"}, "mode": 384}]}})
    );
    assert_eq!(
        ignition::to_ignition_json(&model::Config::default()),
        json!({"ignition": {"version": "3.5.0"}})
    );
}

#[test]
fn parse_of_emit_is_identity_apart_from_version() {
    let config = json!({"ignition": {"version": "3.1.0"},
        "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["k1", "k2"], "passwordHash": "h", "shell": "/bin/sh"}],
                   "groups": [{"name": "g", "gid": 7}]},
        "storage": {
            "files": [
                {"path": "/etc/gz", "mode": 384, "overwrite": false, "user": {"id": 1000}, "group": {"name": "wheel"},
                 "contents": {"source": format!("data:;base64,{}", b64(&gzip(b"\x00\x01binary\xff"))), "compression": "gzip"}},
                {"path": "/etc/empty"},
                {"path": "/etc/app", "append": [{"source": "data:,x"}]}
            ],
            "directories": [{"path": "/etc/d", "mode": 448, "overwrite": true}],
            "links": [{"path": "/etc/l", "target": "/etc/gz", "hard": false}],
            "disks": [{"device": "/dev/vdb"}]
        },
        "systemd": {"units": [
            {"name": "a.service", "contents": "[Unit]\n", "enabled": false, "mask": false,
             "dropins": [{"name": "1.conf", "contents": "x"}, {"name": "2.conf"}]},
            {"name": "b.service", "mask": true}
        ]}
    });
    let mut original = parse_one(config).unwrap();
    original.labels.insert(
        "machineconfiguration.openshift.io/role".into(),
        "worker".into(),
    );
    original.spec.kernel_arguments = vec!["a=1".into(), "b".into()];
    original.spec.kernel_type = Some("realtime".into());
    original.spec.extensions = vec!["usbguard".into()];
    original.spec.fips = true;
    original.spec.os_image_url =
        "quay.io/x@sha256:0000000000000000000000000000000000000000000000000000000000000000".into();

    let emitted = serde_json::to_vec(&model::machine_config_to_json(&original)).unwrap();
    let mut back = parse_machine_configs(&emitted, "emitted").unwrap();
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    let mut back = back.configs.remove(0);
    assert_eq!(back.spec.config.version, "3.5.0");
    back.spec.config.version = original.spec.config.version.clone();
    assert_eq!(back, original);
}
