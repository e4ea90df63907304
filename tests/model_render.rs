//! Rendering (SPEC §2, src/model/render.rs): order, merge, spec fields and the rendered name.

use base64::Engine as _;
use machine_config_daemon::model::render::render;
use machine_config_daemon::model::{
    File, MachineConfig, RenderError, Unit, User, load::parse_machine_configs,
};
use serde_json::{Value, json};
use std::io::Write as _;

/// A MachineConfig parsed from JSON, as users write them.
fn mc(name: &str, role: Option<&str>, spec: Value) -> MachineConfig {
    let mut labels = serde_json::Map::new();
    if let Some(r) = role {
        labels.insert("machineconfiguration.openshift.io/role".into(), r.into());
    }
    let doc = json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    });
    let mut loaded = parse_machine_configs(doc.to_string().as_bytes(), name).unwrap();
    loaded.configs.remove(0)
}

fn files(list: Value) -> Value {
    json!({"config": {"ignition": {"version": "3.2.0"}, "storage": {"files": list}}})
}

fn file_at<'a>(r: &'a MachineConfig, path: &str) -> &'a File {
    r.spec.config.files.iter().find(|f| f.path == path).unwrap()
}

fn gzip_url(data: &[u8]) -> String {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    let gz = enc.finish().unwrap();
    format!(
        "data:;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(gz)
    )
}

#[test]
fn later_names_win_whatever_the_input_order() {
    let a = mc(
        "00-a",
        None,
        files(json!([{"path": "/etc/x", "contents": {"source": "data:,from-a"}}])),
    );
    let b = mc(
        "99-b",
        None,
        files(json!([{"path": "/etc/x", "contents": {"source": "data:,from-b"}}])),
    );
    let c = mc(
        "50-c",
        None,
        files(json!([{"path": "/etc/x", "contents": {"source": "data:,from-c"}}])),
    );
    for input in [
        vec![a.clone(), b.clone(), c.clone()],
        vec![b.clone(), c.clone(), a.clone()],
        vec![c.clone(), a.clone(), b.clone()],
    ] {
        let r = render("worker", &input).unwrap();
        assert_eq!(file_at(&r, "/etc/x").data(), b"from-b");
        assert_eq!(r.spec.config.files.len(), 1);
    }
}

#[test]
fn name_order_is_byte_order() {
    // Byte order, not numeric or natural order: '-' (0x2d) sorts before '0' (0x30).
    let x = mc(
        "10-x",
        None,
        files(json!([{"path": "/etc/x", "contents": {"source": "data:,dash"}}])),
    );
    let y = mc(
        "100",
        None,
        files(json!([{"path": "/etc/x", "contents": {"source": "data:,zero"}}])),
    );
    let r = render("worker", &[y, x]).unwrap();
    assert_eq!(file_at(&r, "/etc/x").data(), b"zero");
}

#[test]
fn custom_pools_apply_worker_configs_first() {
    let worker = mc(
        "99-worker-x",
        Some("worker"),
        files(json!([{"path": "/etc/x", "contents": {"source": "data:,worker"}}])),
    );
    let infra = mc(
        "50-infra-x",
        Some("infra"),
        files(json!([{"path": "/etc/x", "contents": {"source": "data:,infra"}}])),
    );
    let input = [worker, infra];
    assert_eq!(
        file_at(&render("infra", &input).unwrap(), "/etc/x").data(),
        b"infra"
    );
    // For the worker pool itself there is no worker-first group: plain name order.
    assert_eq!(
        file_at(&render("worker", &input).unwrap(), "/etc/x").data(),
        b"worker"
    );
}

#[test]
fn a_later_file_replaces_field_by_field() {
    let a = mc(
        "00-a",
        None,
        files(json!([
            {"path": "/etc/x", "mode": 0o600, "user": {"name": "core"}, "contents": {"source": "data:,old"}},
            {"path": "/etc/keep", "contents": {"source": "data:,keep"}}
        ])),
    );
    let b = mc(
        "10-b",
        None,
        files(json!([
            {"path": "/etc/x", "contents": {"source": "data:,new"}},
            {"path": "/etc/added", "mode": 0o755}
        ])),
    );
    let r = render("worker", &[a, b]).unwrap();
    let x = file_at(&r, "/etc/x");
    assert_eq!(x.data(), b"new");
    assert_eq!(x.mode, Some(0o600));
    assert_eq!(
        x.user,
        Some(machine_config_daemon::model::Owner::Name("core".into()))
    );
    let paths: Vec<_> = r
        .spec
        .config
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(paths, vec!["/etc/x", "/etc/keep", "/etc/added"]);
}

#[test]
fn later_contents_without_compression_clear_an_earlier_gzip() {
    let a = mc(
        "00-a",
        None,
        files(
            json!([{"path": "/etc/x", "contents": {"source": gzip_url(b"compressed text"), "compression": "gzip"}}]),
        ),
    );
    let b = mc(
        "10-b",
        None,
        files(json!([{"path": "/etc/x", "contents": {"source": "data:,plain%20text"}}])),
    );
    let r = render("worker", &[a.clone(), b]).unwrap();
    assert_eq!(file_at(&r, "/etc/x").data(), b"plain text");
    // And the other way round: later gzip contents are decoded.
    let c = mc(
        "20-c",
        None,
        files(
            json!([{"path": "/etc/x", "contents": {"source": gzip_url(b"gz again"), "compression": "gzip"}}]),
        ),
    );
    let r = render("worker", &[a, c]).unwrap();
    assert_eq!(file_at(&r, "/etc/x").data(), b"gz again");
    // The emitted rendered config carries plain base64 without compression.
    let emitted = machine_config_daemon::model::machine_config_to_json(&r);
    let f = &emitted["spec"]["config"]["storage"]["files"][0];
    assert!(f["contents"].get("compression").is_none());
}

#[test]
fn overwrite_defaults_to_true_but_keeps_an_explicit_false() {
    let a = mc(
        "00-a",
        None,
        files(json!([
            {"path": "/etc/unset"},
            {"path": "/etc/false", "overwrite": false}
        ])),
    );
    let r = render("worker", &[a]).unwrap();
    assert_eq!(file_at(&r, "/etc/unset").overwrite, Some(true));
    assert_eq!(file_at(&r, "/etc/false").overwrite, Some(false));
}

#[test]
fn units_dropins_and_users_merge_by_name() {
    let a = mc(
        "00-a",
        None,
        json!({"config": {"ignition": {"version": "3.2.0"},
        "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["k1", "k2"]}]},
        "systemd": {"units": [{"name": "a.service", "contents": "[Unit]\n", "enabled": true,
                               "dropins": [{"name": "10.conf", "contents": "old"}]}]}}}),
    );
    let b = mc(
        "10-b",
        None,
        json!({"config": {"ignition": {"version": "3.4.0"},
        "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["k2", "k3"], "passwordHash": "h"}]},
        "systemd": {"units": [
            {"name": "a.service", "mask": true, "dropins": [{"name": "10.conf", "contents": "new"}, {"name": "20.conf", "contents": "more"}]},
            {"name": "b.service", "enabled": false}
        ]}}}),
    );
    let r = render("worker", &[b, a]).unwrap();
    let c = &r.spec.config;
    assert_eq!(c.units.len(), 2);
    let a = &c.units[0];
    assert_eq!(
        (a.contents.as_deref(), a.enabled, a.mask),
        (Some("[Unit]\n"), Some(true), Some(true))
    );
    let dropins: Vec<_> = a
        .dropins
        .iter()
        .map(|d| (d.name.as_str(), d.contents.as_deref()))
        .collect();
    assert_eq!(
        dropins,
        vec![("10.conf", Some("new")), ("20.conf", Some("more"))]
    );
    assert_eq!(
        c.units[1],
        Unit {
            name: "b.service".into(),
            enabled: Some(false),
            ..Default::default()
        }
    );
    assert_eq!(
        c.users,
        vec![User {
            name: "core".into(),
            ssh_authorized_keys: vec!["k1".into(), "k2".into(), "k3".into()],
            password_hash: Some("h".into()),
            ..Default::default()
        }]
    );
    assert_eq!(c.version, "3.5.0");
}

#[test]
fn a_later_link_replaces_a_file_at_the_same_path() {
    let a = mc(
        "00-a",
        None,
        files(json!([{"path": "/etc/x", "contents": {"source": "data:,f"}}])),
    );
    let b = mc(
        "10-b",
        None,
        json!({"config": {"ignition": {"version": "3.2.0"},
        "storage": {"links": [{"path": "/etc/x", "target": "/etc/y"}]}}}),
    );
    let r = render("worker", &[a, b]).unwrap();
    assert!(r.spec.config.files.is_empty());
    assert_eq!(r.spec.config.links[0].target.as_deref(), Some("/etc/y"));
}

#[test]
fn spec_fields_combine() {
    let a = mc(
        "00-a",
        None,
        json!({"kernelArguments": ["a=1", "b"], "extensions": ["usbguard"], "osImageURL": "quay.io/os@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}),
    );
    let b = mc(
        "10-b",
        None,
        json!({"kernelArguments": ["c"], "fips": true, "osImageURL": "quay.io/os@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}),
    );
    let c = mc(
        "20-c",
        None,
        json!({"kernelArguments": ["a=1"], "extensions": ["kerberos"], "kernelType": "realtime", "osImageURL": ""}),
    );
    let r = render("worker", &[c, a, b]).unwrap();
    assert_eq!(r.spec.kernel_arguments, vec!["a=1", "b", "c", "a=1"]);
    assert_eq!(r.spec.extensions, vec!["usbguard", "kerberos"]);
    assert!(r.spec.fips);
    assert_eq!(r.spec.kernel_type.as_deref(), Some("realtime"));
    assert_eq!(
        r.spec.os_image_url,
        "quay.io/os@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
    );
}

#[test]
fn kernel_type_rules() {
    let kt = |name: &str, t: &str| mc(name, None, json!({"kernelType": t}));
    let plain = mc("00-plain", None, json!({}));
    let cases: Vec<(Vec<MachineConfig>, Result<&str, RenderError>)> = vec![
        (vec![plain.clone()], Ok("default")),
        (vec![kt("10-d", "default"), plain.clone()], Ok("default")),
        (
            vec![kt("10-rt", "realtime"), kt("20-d", "default")],
            Ok("realtime"),
        ),
        (
            vec![kt("10-64k", "64k-pages"), plain.clone()],
            Ok("64k-pages"),
        ),
        (
            vec![kt("10-rt", "realtime"), kt("20-rt", "realtime")],
            Ok("realtime"),
        ),
        (
            vec![kt("20-64k", "64k-pages"), kt("10-rt", "realtime")],
            Err(RenderError::ConflictingKernelTypes {
                first_config: "10-rt".into(),
                first: "realtime".into(),
                second_config: "20-64k".into(),
                second: "64k-pages".into(),
            }),
        ),
        (
            vec![
                kt("10-rt", "realtime"),
                mc("20-devel", None, json!({"extensions": ["kernel-devel"]})),
            ],
            Err(RenderError::KernelDevelWithNonDefaultKernel {
                config: "20-devel".into(),
                kernel_type: "realtime".into(),
            }),
        ),
        (
            vec![
                mc("20-devel", None, json!({"extensions": ["kernel-devel"]})),
                plain.clone(),
            ],
            Ok("default"),
        ),
    ];
    for (input, want) in cases {
        let got = render("worker", &input).map(|r| r.spec.kernel_type.unwrap());
        assert_eq!(
            got.as_deref().map_err(Clone::clone),
            want,
            "{:?}",
            input.iter().map(|m| &m.name).collect::<Vec<_>>()
        );
    }
}

#[test]
fn rendered_name_is_stable_and_follows_the_content() {
    let a = mc(
        "00-a",
        Some("worker"),
        files(json!([{"path": "/etc/a", "contents": {"source": "data:,a"}}])),
    );
    let b = mc("10-b", Some("worker"), json!({"kernelArguments": ["x"]}));
    let c = mc(
        "20-c",
        Some("worker"),
        files(json!([{"path": "/etc/c", "mode": 0o600}])),
    );
    let perms = [
        [a.clone(), b.clone(), c.clone()],
        [a.clone(), c.clone(), b.clone()],
        [b.clone(), a.clone(), c.clone()],
        [b.clone(), c.clone(), a.clone()],
        [c.clone(), a.clone(), b.clone()],
        [c.clone(), b.clone(), a.clone()],
    ];
    let first = render("worker", &perms[0]).unwrap();
    for p in &perms[1..] {
        assert_eq!(render("worker", p).unwrap(), first);
    }
    let name = &first.name;
    let hash = name.strip_prefix("rendered-worker-").expect(name);
    assert_eq!(hash.len(), 32);
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(first.role(), Some("worker"));

    // Any change of the spec changes the name; so does the pool.
    let c2 = mc(
        "20-c",
        Some("worker"),
        files(json!([{"path": "/etc/c", "mode": 0o644}])),
    );
    assert_ne!(
        render("worker", &[a.clone(), b.clone(), c2]).unwrap().name,
        first.name
    );
    let infra = render("infra", &perms[0]).unwrap();
    assert!(infra.name.starts_with("rendered-infra-"));
    assert_eq!(infra.role(), Some("infra"));
}

#[test]
fn render_refuses_empty_input_duplicates_and_bad_pools() {
    let a = mc("00-a", None, json!({}));
    assert_eq!(render("worker", &[]), Err(RenderError::NoConfigs));
    assert_eq!(
        render("worker", &[a.clone(), a.clone()]),
        Err(RenderError::DuplicateName("00-a".into()))
    );
    assert_eq!(
        render("Work er", std::slice::from_ref(&a)),
        Err(RenderError::InvalidPool("Work er".into()))
    );
    assert_eq!(
        render("", &[a]),
        Err(RenderError::InvalidPool(String::new()))
    );
}

#[test]
fn rendered_config_round_trips() {
    let a = mc(
        "00-a",
        Some("worker"),
        files(
            json!([{"path": "/etc/a", "contents": {"source": gzip_url(b"zz"), "compression": "gzip"}}]),
        ),
    );
    let b = mc(
        "10-b",
        Some("worker"),
        json!({"kernelArguments": ["x"], "fips": true, "extensions": ["usbguard"]}),
    );
    let r = render("worker", &[a, b]).unwrap();
    let json = machine_config_daemon::model::machine_config_to_json(&r);
    let back = parse_machine_configs(json.to_string().as_bytes(), "r")
        .unwrap()
        .configs
        .remove(0);
    assert_eq!(back, r);
    // Rendering the rendered config alone changes nothing but keeps the name stable.
    let again = render("worker", &[back]).unwrap();
    assert_eq!((again.spec, again.name), (r.spec, r.name));
}
