//! The stored current config: the streamed encoder writes exactly the bytes of serde_json's
//! pretty printer over `machine_config_to_json` (plus a newline), and reads back as the same
//! config.

use machine_config_daemon::host::state;
use machine_config_daemon::model::{
    self, Dropin, File, MachineConfig, Owner, Unit, User, load::parse_machine_configs,
};
use serde_json::json;

fn reference(m: &MachineConfig) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(&model::machine_config_to_json(m)).unwrap();
    v.push(b'\n');
    v
}

fn assert_identical(m: &MachineConfig, round_trip: bool) {
    let got = state::encode(m);
    let want = reference(m);
    assert!(
        got == want,
        "streamed encoding differs:\n--- got\n{}\n--- want\n{}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    if !round_trip {
        return;
    }
    let back = state::decode(&got).unwrap();
    assert_eq!(
        model::machine_config_to_json(&back),
        model::machine_config_to_json(m)
    );
}

fn every_field(name: &str, path: &str) -> MachineConfig {
    let mut m = MachineConfig {
        name: name.to_string(),
        ..MachineConfig::default()
    };
    m.labels.insert(
        "machineconfiguration.openshift.io/role".into(),
        "worker".into(),
    );
    m.spec.config.version = "3.4.0".into();
    m.spec.config.files = vec![
        File {
            path: path.into(),
            contents: Some(b"\x00\x01binary\xff\n".to_vec()),
            mode: Some(0o600),
            user: Some(Owner::Id(1000)),
            group: Some(Owner::Name("wh\"eel".into())),
            overwrite: Some(false),
            has_append: true,
            digest: None,
        },
        File {
            path: "/etc/empty".into(),
            contents: Some(Vec::new()),
            ..File::default()
        },
        File {
            path: "/etc/none".into(),
            overwrite: Some(true),
            ..File::default()
        },
        File {
            path: "/var/big".into(),
            contents: Some((0..=255u8).cycle().take(70_000).collect()),
            mode: Some(0o644),
            user: Some(Owner::Name("core".into())),
            group: Some(Owner::Id(0)),
            ..File::default()
        },
    ];
    m.spec.config.units = vec![
        Unit {
            name: "a.service".into(),
            contents: Some("[Unit]\nDescription=a\n".into()),
            enabled: Some(true),
            mask: Some(false),
            dropins: vec![
                Dropin {
                    name: "1.conf".into(),
                    contents: Some("x".into()),
                },
                Dropin {
                    name: "2.conf".into(),
                    contents: None,
                },
            ],
        },
        Unit {
            name: "b.service".into(),
            mask: Some(true),
            ..Unit::default()
        },
    ];
    m.spec.config.users = vec![User {
        name: "core".into(),
        ssh_authorized_keys: vec!["ssh-ed25519 AAAA k1".into(), "k2".into()],
        password_hash: Some("$6$h".into()),
        ..User::default()
    }];
    m.spec.config.disks = Some(json!([{"device": "/dev/vdb", "partitions": [{"number": 1}]}]));
    m.spec.config.ignition_kernel_arguments = Some(json!({"shouldExist": ["a"]}));
    m.spec.kernel_arguments = vec!["a=1".into(), "b".into()];
    m.spec.kernel_type = Some("realtime".into());
    m.spec.extensions = vec!["usbguard".into()];
    m.spec.fips = true;
    m.spec.os_image_url =
        "quay.io/x@sha256:0000000000000000000000000000000000000000000000000000000000000000".into();
    m
}

#[test]
fn streamed_encoding_is_byte_identical() {
    assert_identical(&MachineConfig::default(), false);
    // Strings that need escaping (not a loadable config, so no round trip).
    assert_identical(
        &every_field("rendered-\"quoted\"\n", "/etc/all fields \u{e9}\t\"x\"\\"),
        false,
    );
    assert_identical(&every_field("rendered-worker-1", "/etc/all-fields"), true);
    let mut only_files = MachineConfig {
        name: "f".into(),
        ..MachineConfig::default()
    };
    only_files.spec.config.files = vec![File {
        path: "/etc/x".into(),
        ..File::default()
    }];
    assert_identical(&only_files, true);
}

#[test]
fn example_configs_encode_identically() {
    let mut n = 0;
    for dir in [
        "examples/configs",
        "examples/render",
        "tests/fixtures/plan/configs",
    ] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            let Ok(loaded) = parse_machine_configs(&bytes, &p.display().to_string()) else {
                continue;
            };
            for m in &loaded.configs {
                assert_identical(m, true);
                n += 1;
            }
        }
    }
    assert!(n >= 5, "only {n} example configs found");
}

/// The writer path (handed to an `io::Write` a megabyte at a time) and the in-memory path give
/// the same bytes, for a config several times the flush size.
#[test]
fn written_in_chunks_or_in_memory_the_bytes_are_the_same() {
    let mut m = MachineConfig {
        name: "rendered-worker-big".into(),
        ..MachineConfig::default()
    };
    m.spec.config.version = "3.4.0".into();
    m.spec.config.files = (0..3000)
        .map(|i| File {
            path: format!("/etc/big/f{i:04}.conf"),
            contents: Some(vec![(i % 251) as u8; 1000 + i % 7]),
            mode: Some(0o644),
            ..File::default()
        })
        .collect();
    let in_memory = state::encode(&m);
    assert!(in_memory.len() > 3 * 1024 * 1024, "{}", in_memory.len());
    // A writer that takes at most 4 KiB a call, to catch any piece written twice or dropped.
    struct Dribble(Vec<u8>, usize);
    impl std::io::Write for Dribble {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = b.len().min(4096);
            self.0.extend_from_slice(&b[..n]);
            self.1 += 1;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = Dribble(Vec::new(), 0);
    state::write_encoded(&m, &mut w).unwrap();
    assert!(w.1 > 1, "written in one call");
    assert!(w.0 == in_memory, "the two encodings differ");
    assert!(in_memory == reference(&m), "differs from serde_json");
}
