//! The CA files a `ControllerConfig` asks of a node (SPEC §12): which path holds which bundle,
//! which files go away, which registry directories are stale, and the bundles not written.

mod daemon_common;
mod recording_systemd;

use base64::Engine;
use machine_config_daemon::cluster::controllerconfig::{ControllerConfig, ControllerConfigSpec};
use machine_config_daemon::daemon::certs::{
    CLOUD_CA, CaError, KUBELET_CA, USER_CA, ca_plan, registry_dir, stale_registry_dirs,
};
use rcgen::{CertificateParams, DnType, KeyPair};

fn pem(cn: &str) -> String {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.self_signed(&KeyPair::generate().unwrap()).unwrap().pem()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A ControllerConfig as the API server returns it (bundles base64, `format: byte`).
fn spec(v: serde_json::Value) -> ControllerConfigSpec {
    let cc: ControllerConfig = serde_json::from_value(serde_json::json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "ControllerConfig",
        "metadata": {"name": "machine-config-controller"},
        "spec": v,
    }))
    .unwrap();
    cc.spec
}

#[test]
fn each_bundle_goes_to_its_file_and_registry_ports_become_colons() {
    let (kube, user, cloud, reg, reg_user) = (
        pem("kube-apiserver"),
        pem("user"),
        pem("cloud"),
        pem("registry"),
        pem("registry-user"),
    );
    let s = spec(serde_json::json!({
        "kubeAPIServerServingCAData": b64(&kube),
        "rootCAData": b64(&pem("root")),
        "additionalTrustBundle": b64(&user),
        "cloudProviderCAData": b64(&cloud),
        "imageRegistryBundleData": [
            {"file": "image-registry.openshift-image-registry.svc..5000", "data": b64(&reg)},
        ],
        "imageRegistryBundleUserData": [
            {"file": "quay.example.com", "data": b64(&reg_user)},
        ],
    }));
    let plan = ca_plan(&s);
    let written: Vec<(&str, &str, String)> = plan
        .write
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                f.bundle.as_str(),
                String::from_utf8(f.data.clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        written,
        [
            (
                "/etc/docker/certs.d/image-registry.openshift-image-registry.svc:5000/ca.crt",
                "image-registry.openshift-image-registry.svc..5000",
                reg
            ),
            (
                "/etc/docker/certs.d/quay.example.com/ca.crt",
                "quay.example.com",
                reg_user
            ),
            (KUBELET_CA, "KubeAPIServerServingCAData", kube),
            (CLOUD_CA, "CloudProviderCAData", cloud),
            (USER_CA, "AdditionalTrustBundle", user),
        ]
    );
    assert_eq!(KUBELET_CA, "/etc/kubernetes/kubelet-ca.crt");
    assert_eq!(
        USER_CA,
        "/etc/pki/ca-trust/source/anchors/openshift-config-user-ca-bundle.crt"
    );
    assert!(plan.remove.is_empty(), "{:?}", plan.remove);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    assert_eq!(
        plan.registries,
        [
            "image-registry.openshift-image-registry.svc:5000",
            "quay.example.com"
        ]
    );
    // The seed's `ls /etc/docker/certs.d`, plus one registry no longer in the config.
    let present = [
        "image-registry.openshift-image-registry.svc.cluster.local:5000".to_string(),
        "image-registry.openshift-image-registry.svc:5000".to_string(),
        "quay.example.com".to_string(),
    ];
    assert_eq!(
        stale_registry_dirs(&present, &plan, &s),
        ["image-registry.openshift-image-registry.svc.cluster.local:5000"]
    );
}

#[test]
fn absent_trust_bundles_remove_their_files_and_the_users_registry_bundle_wins() {
    let (kube, data, user) = (pem("kube"), pem("from-data"), pem("from-user"));
    let s = spec(serde_json::json!({
        "kubeAPIServerServingCAData": b64(&kube),
        "rootCAData": "",
        "additionalTrustBundle": null,
        "imageRegistryBundleData": [{"file": "r.example..443", "data": b64(&data)}],
        "imageRegistryBundleUserData": [{"file": "r.example..443", "data": b64(&user)}],
    }));
    let plan = ca_plan(&s);
    assert_eq!(plan.remove, [CLOUD_CA, USER_CA]);
    let reg = plan
        .write
        .iter()
        .find(|f| f.path == "/etc/docker/certs.d/r.example:443/ca.crt")
        .unwrap();
    assert_eq!(String::from_utf8(reg.data.clone()).unwrap(), user);
    assert_eq!(plan.registries, ["r.example:443"]);
}

#[test]
fn a_bundle_that_does_not_parse_is_not_written_and_named_the_others_are() {
    let kube = pem("kube");
    let s = spec(serde_json::json!({
        "kubeAPIServerServingCAData": b64(&kube),
        "rootCAData": "",
        "additionalTrustBundle": b64("not a certificate"),
        "imageRegistryBundleData": [
            {"file": "bad.example", "data": b64("-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n")},
            {"file": "../../etc", "data": b64(&kube)},
            {"file": "..", "data": b64(&kube)},
            {"file": "good.example", "data": b64(&kube)},
        ],
    }));
    let plan = ca_plan(&s);
    assert_eq!(
        plan.write
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>(),
        ["/etc/docker/certs.d/good.example/ca.crt", KUBELET_CA]
    );
    let errors: Vec<String> = plan.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(
        errors[0],
        "CA bundle AdditionalTrustBundle: no PEM block found in 17 bytes"
    );
    assert!(
        errors[1].starts_with("CA bundle bad.example: certificate 0: not a valid X.509"),
        "{}",
        errors[1]
    );
    assert_eq!(
        plan.errors[2],
        CaError::RegistryName {
            field: "spec.imageRegistryBundleData[1].file".into(),
            file: "../../etc".into(),
            reason: "must be one directory name (no '/' or NUL)",
        }
    );
    assert_eq!(
        errors[3],
        "spec.imageRegistryBundleData[2].file: \"..\" is not a registry name"
    );
    // An unparseable user bundle is neither written nor removed: the node keeps its old one.
    assert!(!plan.remove.contains(&USER_CA.to_string()));
    // The registry whose bundle does not parse keeps its directory; the others are stale.
    let present = ["bad.example".to_string(), "old.example".to_string()];
    assert_eq!(stale_registry_dirs(&present, &plan, &s), ["old.example"]);
}

#[test]
fn registry_dir_names() {
    assert_eq!(registry_dir("host..5000").unwrap(), "host:5000");
    assert_eq!(registry_dir("host").unwrap(), "host");
    assert!(registry_dir("").is_err());
    assert!(registry_dir(".").is_err());
    assert!(registry_dir("a/b").is_err());
}

mod on_disk {
    use super::*;
    use machine_config_daemon::daemon::certs::apply_ca_plan;
    use machine_config_daemon::host::Root;
    use std::os::unix::fs::MetadataExt;

    fn read(root: &std::path::Path, path: &str) -> Option<String> {
        std::fs::read_to_string(root.join(path.trim_start_matches('/'))).ok()
    }

    #[test]
    fn written_once_rotated_rewritten_stale_registries_removed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        // A registry the cluster no longer names, with its CA; an old user bundle.
        let stale = t.path().join("etc/docker/certs.d/old.example:5000");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("ca.crt"), "old").unwrap();
        let root = Root::open(t.path()).unwrap();
        let (kube, user, reg) = (pem("kube"), pem("user"), pem("reg"));
        let s = spec(serde_json::json!({
            "kubeAPIServerServingCAData": b64(&kube),
            "rootCAData": "",
            "additionalTrustBundle": b64(&user),
            "imageRegistryBundleData": [{"file": "r.example..5000", "data": b64(&reg)}],
        }));
        let applied = apply_ca_plan(&root, &ca_plan(&s), &s).unwrap();
        assert_eq!(
            applied.written,
            [
                "/etc/docker/certs.d/r.example:5000/ca.crt",
                KUBELET_CA,
                USER_CA
            ]
        );
        assert_eq!(applied.removed_registries, ["old.example:5000"]);
        assert!(!stale.exists());
        assert_eq!(read(t.path(), KUBELET_CA).unwrap(), kube);
        assert_eq!(read(t.path(), USER_CA).unwrap(), user);
        assert_eq!(
            read(t.path(), "/etc/docker/certs.d/r.example:5000/ca.crt").unwrap(),
            reg
        );
        let md = std::fs::metadata(t.path().join("etc/kubernetes/kubelet-ca.crt")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o644, 0, 0));

        // The same config again: nothing to write.
        let again = apply_ca_plan(&root, &ca_plan(&s), &s).unwrap();
        assert_eq!(again, Default::default());

        // Rotation: a new kubelet CA, the user bundle taken out, the registry unchanged.
        let kube2 = pem("kube-rotated");
        let s2 = spec(serde_json::json!({
            "kubeAPIServerServingCAData": b64(&kube2),
            "rootCAData": "",
            "imageRegistryBundleData": [{"file": "r.example..5000", "data": b64(&reg)}],
        }));
        let rotated = apply_ca_plan(&root, &ca_plan(&s2), &s2).unwrap();
        assert_eq!(rotated.written, [KUBELET_CA]);
        assert_eq!(rotated.removed, [USER_CA]);
        assert_eq!(read(t.path(), KUBELET_CA).unwrap(), kube2);
        assert_eq!(read(t.path(), USER_CA), None);

        // A bundle that does not parse leaves the node's file as it was.
        let s3 = spec(serde_json::json!({
            "kubeAPIServerServingCAData": b64("garbage"),
            "rootCAData": "",
            "imageRegistryBundleData": [{"file": "r.example..5000", "data": b64(&reg)}],
        }));
        let plan3 = ca_plan(&s3);
        assert_eq!(plan3.errors.len(), 1);
        let kept = apply_ca_plan(&root, &plan3, &s3).unwrap();
        assert_eq!(kept, Default::default());
        assert_eq!(read(t.path(), KUBELET_CA).unwrap(), kube2);
    }
}

/// What the node disruption policy asks after CA files changed: the defaults' entry for the
/// user CA bundle, nothing for the paths no entry matches, never a drain or a reboot.
mod actions {
    use super::recording_systemd::Systemd;
    use super::*;
    use machine_config_daemon::daemon::certs::ca_actions;
    use machine_config_daemon::daemon::update::run_post_actions;
    use machine_config_daemon::host::exec::{Outcome, PostAction};
    use machine_config_daemon::model::policy::{Action, FilePolicy, Policy, defaults, effective};
    use machine_config_daemon::plan::diff::ChangeKind;

    const REGISTRY: &str = "/etc/docker/certs.d/r.example:5000/ca.crt";

    fn changed(paths: &[&str]) -> Vec<(String, ChangeKind)> {
        paths
            .iter()
            .map(|p| (p.to_string(), ChangeKind::Changed))
            .collect()
    }

    #[test]
    fn the_default_policy_restarts_the_trust_store_and_crio_for_the_user_bundle_only() {
        let a = ca_actions(&defaults(), &changed(&[REGISTRY, KUBELET_CA, USER_CA]));
        assert_eq!(
            a.actions,
            [
                PostAction::Restart("coreos-update-ca-trust.service".into()),
                PostAction::Restart("crio.service".into()),
            ]
        );
        assert_eq!(
            a.matched,
            [
                (REGISTRY.to_string(), None),
                (KUBELET_CA.to_string(), None),
                (USER_CA.to_string(), Some(USER_CA.to_string())),
            ]
        );
        // The kubelet CA (rotated alone) runs nothing, and the user bundle taken out runs the
        // same actions as when it is written.
        let kubelet = ca_actions(&defaults(), &changed(&[KUBELET_CA]));
        assert!(kubelet.actions.is_empty(), "{kubelet:?}");
        assert!(
            kubelet.notes[0].contains("no policy path matches: no action"),
            "{:?}",
            kubelet.notes
        );
        let removed = ca_actions(&defaults(), &[(USER_CA.to_string(), ChangeKind::Removed)]);
        assert_eq!(removed.actions, a.actions);
    }

    #[test]
    fn a_user_policy_is_followed_by_longest_prefix_without_reboot_or_drain() {
        let policy = effective(&Policy {
            files: vec![
                FilePolicy {
                    path: "/etc/docker/certs.d".into(),
                    actions: vec![Action::reload("crio.service")],
                },
                FilePolicy {
                    path: "/etc/kubernetes".into(),
                    actions: vec![
                        Action::Drain,
                        Action::restart("kubelet.service"),
                        Action::Reboot,
                    ],
                },
            ],
            ..Policy::default()
        });
        let a = ca_actions(&policy, &changed(&[REGISTRY, KUBELET_CA]));
        assert_eq!(
            a.actions,
            [
                PostAction::Reload("crio.service".into()),
                PostAction::Restart("kubelet.service".into()),
            ]
        );
        assert_eq!(a.notes.len(), 2, "{:?}", a.notes);
        assert!(
            a.notes[0].contains("Drain of policy path /etc/kubernetes left out"),
            "{:?}",
            a.notes
        );
        assert!(
            a.notes[1].contains("Reboot of policy path /etc/kubernetes left out"),
            "{:?}",
            a.notes
        );
    }

    #[tokio::test]
    async fn actions_run_in_order_and_the_first_failure_stops_them() {
        let actions = ca_actions(&defaults(), &changed(&[USER_CA])).actions;
        let ok = Systemd::new("");
        let (steps, failed) = run_post_actions(Some(&ok), &actions).await;
        assert!(failed.is_none());
        assert_eq!(
            ok.calls(),
            [
                "restart coreos-update-ca-trust.service",
                "restart crio.service"
            ]
        );
        assert!(steps.iter().all(|s| s.outcome == Outcome::Done));

        let failing = Systemd::new("restart coreos-update-ca-trust.service");
        let (steps, failed) = run_post_actions(Some(&failing), &actions).await;
        assert!(steps.is_empty());
        let (action, e) = failed.unwrap();
        assert_eq!(action.to_string(), "restart coreos-update-ca-trust.service");
        assert!(e.to_string().contains("injected failure"));
        assert_eq!(
            failing.calls(),
            ["restart coreos-update-ca-trust.service"],
            "crio is not restarted after the trust store failed"
        );

        // Without systemd each is skipped, and says so.
        let (steps, failed) = run_post_actions(None, &actions).await;
        assert!(failed.is_none());
        assert_eq!(steps.len(), 2);
        assert!(matches!(&steps[0].outcome, Outcome::Skipped(w) if w.contains("no systemd")));
    }

    #[tokio::test]
    async fn a_failed_action_runs_again_with_those_after_it_and_a_doubling_wait() {
        use machine_config_daemon::daemon::certs::{
            CA_RETRY_FIRST, CA_RETRY_MAX, CaRetry, with_pending,
        };
        let actions = ca_actions(&defaults(), &changed(&[USER_CA])).actions;
        let failing = Systemd::new("restart coreos-update-ca-trust.service");
        let (_, failed) = run_post_actions(Some(&failing), &actions).await;
        let (action, e) = failed.unwrap();
        let retry = CaRetry::after(&actions, &action, &e, None);
        assert_eq!(
            retry.actions, actions,
            "the failed action and crio after it"
        );
        assert_eq!(retry.delay, CA_RETRY_FIRST);
        assert!(
            retry
                .failure
                .starts_with("restart coreos-update-ca-trust.service: ")
                && retry.failure.contains("injected failure"),
            "{}",
            retry.failure
        );

        // The second action failing keeps only it; each retry waits twice as long, up to the
        // longest wait.
        let crio = Systemd::new("restart crio.service");
        let (steps, failed) = run_post_actions(Some(&crio), &actions).await;
        assert_eq!(steps.len(), 1);
        let (action, e) = failed.unwrap();
        let again = CaRetry::after(&actions, &action, &e, Some(retry.delay));
        assert_eq!(again.actions, [PostAction::Restart("crio.service".into())]);
        assert_eq!(again.delay, CA_RETRY_FIRST * 2);
        let mut d = again.delay;
        for _ in 0..10 {
            d = CaRetry::after(&actions, &action, &e, Some(d)).delay;
        }
        assert_eq!(d, CA_RETRY_MAX);

        // A new change runs the pending actions first, then its own, each once.
        let reload = PostAction::Reload("other.service".into());
        let merged = with_pending(
            Some(again.clone()),
            vec![reload.clone(), PostAction::Restart("crio.service".into())],
        );
        assert_eq!(
            merged,
            [PostAction::Restart("crio.service".into()), reload.clone()]
        );
        assert_eq!(with_pending(None, vec![reload.clone()]), [reload]);
    }

    /// The pending actions, as the status writes them, read back by a daemon that starts again.
    #[test]
    fn pending_actions_are_read_back_from_the_status() {
        use machine_config_daemon::daemon::certs::{CA_RETRY_FIRST, CaRetry};
        for a in [
            PostAction::DaemonReload,
            PostAction::Reload("chronyd.service".into()),
            PostAction::Restart("crio.service".into()),
            PostAction::Reboot,
        ] {
            assert_eq!(a.to_string().parse::<PostAction>(), Ok(a));
        }
        for bad in [
            "",
            "restart",
            "restart ",
            "reload ",
            "reload a b",
            "stop crio.service",
            "restart a b",
        ] {
            let e = bad.parse::<PostAction>().unwrap_err();
            assert!(e.contains("is not a post action"), "{bad:?}: {e}");
        }
        let pending = [
            "restart coreos-update-ca-trust.service".to_string(),
            "bogus".to_string(),
            "restart crio.service".to_string(),
        ];
        let errors = [
            "CA bundle x: not PEM".to_string(),
            "restart coreos-update-ca-trust.service: no such unit".to_string(),
        ];
        let r = CaRetry::restored(&pending, &errors).unwrap();
        assert_eq!(
            r.actions,
            [
                PostAction::Restart("coreos-update-ca-trust.service".into()),
                PostAction::Restart("crio.service".into())
            ],
            "the one that is no action left out"
        );
        assert_eq!(
            r.failure,
            "restart coreos-update-ca-trust.service: no such unit"
        );
        assert_eq!(r.delay, CA_RETRY_FIRST);
        let r = CaRetry::restored(&pending[2..], &errors).unwrap();
        assert_eq!(
            r.failure,
            "restart crio.service: failed before the daemon started again"
        );
        assert_eq!(CaRetry::restored(&[], &errors), None);
        assert_eq!(CaRetry::restored(&pending[1..2], &errors), None);
    }
}

/// Standalone mode's ControllerConfig file.
mod file {
    use super::*;
    use machine_config_daemon::daemon::certs::read_controller_config;

    #[test]
    fn yaml_json_absent_and_bad_input_naming_the_field() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("cc.yaml");
        assert_eq!(read_controller_config(&path, 1 << 20).unwrap(), None);
        let kube = pem("kube");
        std::fs::write(
            &path,
            format!(
                "apiVersion: machineconfiguration.openshift.io/v1\nkind: ControllerConfig\nmetadata:\n  name: machine-config-controller\nspec:\n  kubeAPIServerServingCAData: {}\n  rootCAData: \"\"\n",
                b64(&kube)
            ),
        )
        .unwrap();
        let s = read_controller_config(&path, 1 << 20).unwrap().unwrap();
        assert_eq!(s.kube_api_server_serving_ca_data.0, kube.as_bytes());

        let json = t.path().join("cc.json");
        std::fs::write(
            &json,
            serde_json::json!({
                "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "ControllerConfig",
                "metadata": {"name": "machine-config-controller"},
                "spec": {"kubeAPIServerServingCAData": "%%%", "rootCAData": ""},
            })
            .to_string(),
        )
        .unwrap();
        let e = read_controller_config(&json, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "controller config {}: spec.kubeAPIServerServingCAData: ",
                json.display()
            )),
            "{e}"
        );

        std::fs::write(&json, r#"{"apiVersion": "v1", "kind": "ConfigMap"}"#).unwrap();
        let e = read_controller_config(&json, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("apiVersion: expected machineconfiguration.openshift.io/v1, got v1"),
            "{e}"
        );

        // Bounded like a config.
        let e = read_controller_config(&path, 16).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }
}

/// An expired certificate (2001–2002).
fn expired_pem(cn: &str) -> String {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = rcgen::date_time_ymd(2001, 1, 1);
    p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    p.self_signed(&KeyPair::generate().unwrap()).unwrap().pem()
}

/// The real daemon in standalone mode with `--controller-config`: the CA files written without
/// reboot, the policy's actions for the user bundle, a garbage bundle reported while the others
/// are written, drift on a CA file, a rotation rewritten and not taken for drift, and an
/// unchanged file that writes nothing.
mod standalone {
    use super::daemon_common::*;
    use super::*;
    use machine_config_daemon::daemon::state::NodeState;
    use machine_config_daemon::daemon::status::Status;
    use std::os::unix::fs::MetadataExt;

    const REGISTRY: &str = "/etc/docker/certs.d/image-registry.svc:5000/ca.crt";

    fn controller_config(kube: &str, user: &str, registries: serde_json::Value) -> String {
        serde_json::json!({
            "apiVersion": "machineconfiguration.openshift.io/v1",
            "kind": "ControllerConfig",
            "metadata": {"name": "machine-config-controller"},
            "spec": {
                "kubeAPIServerServingCAData": b64(kube),
                "rootCAData": b64(&pem("root")),
                "additionalTrustBundle": b64(user),
                "imageRegistryBundleData": registries,
            },
        })
        .to_string()
    }

    fn certificates(s: &Status) -> machine_config_daemon::daemon::status::CertificatesStatus {
        s.certificates.clone().unwrap_or_default()
    }

    #[test]
    fn written_without_reboot_drift_rotation_and_garbage() {
        let node = Node::new();
        node.set_desired(&mc("rendered-worker-a", vec![file("/etc/a.conf", "a\n")]));
        // A registry the cluster no longer names.
        let stale = node.path("/etc/docker/certs.d/old.example");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("ca.crt"), "old").unwrap();
        // The kubelet CA bundle: two certificates, one of them long expired.
        let kube = format!(
            "{}{}",
            pem("kube-apiserver-lb-signer"),
            expired_pem("expired-signer")
        );
        let (user, reg) = (pem("user-ca"), pem("registry-ca"));
        let cc = node.dir.path().join("controllerconfig.json");
        std::fs::write(
            &cc,
            controller_config(
                &kube,
                &user,
                serde_json::json!([
                    {"file": "image-registry.svc..5000", "data": b64(&reg)},
                    {"file": "garbage.example", "data": b64("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")},
                ]),
            ),
        )
        .unwrap();
        let cc_arg = cc.to_str().unwrap();
        let d = Daemon::start(
            &node,
            StartOpts {
                args: vec!["--controller-config".to_string(), cc_arg.to_string()],
                ..Default::default()
            },
        );
        let st = d.wait("the CA files written", |s| {
            s.state == NodeState::Done && !certificates(s).files.is_empty()
        });
        let c = certificates(&st);
        assert_eq!(c.source, cc_arg);
        assert_eq!(c.files, [REGISTRY, KUBELET_CA, USER_CA]);
        assert_eq!(c.written, [REGISTRY, KUBELET_CA, USER_CA]);
        assert_eq!(c.removed, ["/etc/docker/certs.d/old.example"]);
        assert_eq!(
            c.actions,
            [
                "restart coreos-update-ca-trust.service: skipped (no systemd (--no-systemd))",
                "restart crio.service: skipped (no systemd (--no-systemd))",
            ]
        );
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
        assert!(
            c.errors[0].starts_with("CA bundle garbage.example: certificate 0"),
            "{:?}",
            c.errors
        );
        assert_eq!(
            node.read(KUBELET_CA),
            kube,
            "both certificates, the expired one too"
        );
        assert_eq!(node.read(USER_CA), user);
        assert_eq!(node.read(REGISTRY), reg);
        assert_eq!(node.mode(KUBELET_CA) & 0o7777, 0o644);
        assert!(!stale.exists(), "stale registry directory removed");
        assert!(!node.exists("/etc/docker/certs.d/garbage.example"));
        assert!(st.post_config_action.is_none(), "no reboot");
        assert_eq!(st.current_config, "rendered-worker-a");
        let text = node.status_text();
        assert!(
            text.contains(&format!("CA files: 3 from {cc_arg}\n")),
            "{text}"
        );
        assert!(
            text.contains("CA files: CA bundle garbage.example: certificate 0"),
            "{text}"
        );

        // A CA file edited behind the daemon's back is drift, like any managed file.
        std::fs::write(node.path(KUBELET_CA), "edited").unwrap();
        assert_eq!(
            d.wait_degraded(),
            format!("content mismatch for file {KUBELET_CA:?}")
        );
        std::fs::write(node.path(KUBELET_CA), &kube).unwrap();
        d.wait_done("rendered-worker-a");

        // The same ControllerConfig written again: nothing is written.
        let ino = std::fs::metadata(node.path(KUBELET_CA)).unwrap().ino();
        let mut w = StatusWatch::new(&node.root);
        std::fs::write(&cc, std::fs::read(&cc).unwrap()).unwrap();
        assert!(w.next_write(DEADLINE), "the file was read again");
        assert_eq!(std::fs::metadata(node.path(KUBELET_CA)).unwrap().ino(), ino);
        assert_eq!(
            certificates(&Status::read(&node.root.join(STATUS)).unwrap()).written,
            c.written
        );

        // Rotation: a new kubelet CA only; rewritten, no action (the policy has none for it),
        // not drift, no reboot.
        let rotated = pem("kube-apiserver-lb-signer-2");
        std::fs::write(
            &cc,
            controller_config(
                &rotated,
                &user,
                serde_json::json!([{"file": "image-registry.svc..5000", "data": b64(&reg)}]),
            ),
        )
        .unwrap();
        let st = d.wait("the rotation written", |s| {
            certificates(s).written == [KUBELET_CA]
        });
        let c = certificates(&st);
        assert!(c.actions.is_empty(), "{:?}", c.actions);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(node.read(KUBELET_CA), rotated);
        // The next update goes through (the node has not drifted), and by then every event of
        // the rotation's write has been looked at: one drift in all, the edit above.
        node.set_desired(&mc("rendered-worker-b", vec![file("/etc/a.conf", "b\n")]));
        let st = d.wait_done("rendered-worker-b");
        assert!(st.post_config_action.is_none());
        assert_eq!(
            d.log().matches("configuration drift").count(),
            1,
            "{}",
            d.log()
        );
        assert_eq!(
            node.read(KUBELET_CA),
            rotated,
            "the update leaves the CA files"
        );
    }

    /// A drift rule that would heal the CA files does not: their authority is the
    /// ControllerConfig, not a MachineConfig, so their drift degrades whatever the rules say.
    #[test]
    fn a_heal_rule_does_not_heal_a_ca_file() {
        let node = Node::new();
        node.set_desired(&mc("rendered-worker-a", vec![file("/etc/a.conf", "a\n")]));
        let config_dir = node.path("/etc/machine-config-daemon");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(
            config_dir.join("config.yaml"),
            "drift:\n  rules:\n    - paths: [\"/etc/**\"]\n      action: heal\n",
        )
        .unwrap();
        let kube = pem("kube-apiserver-lb-signer");
        let cc = node.dir.path().join("controllerconfig.json");
        std::fs::write(
            &cc,
            controller_config(&kube, &pem("user-ca"), serde_json::json!([])),
        )
        .unwrap();
        let d = Daemon::start(
            &node,
            StartOpts {
                args: vec![
                    "--controller-config".to_string(),
                    cc.to_str().unwrap().to_string(),
                ],
                ..Default::default()
            },
        );
        d.wait("the CA files written", |s| {
            s.state == NodeState::Done && !certificates(s).files.is_empty()
        });
        std::fs::write(node.path(KUBELET_CA), "edited").unwrap();
        assert_eq!(
            d.wait_degraded(),
            format!("content mismatch for file {KUBELET_CA:?}")
        );
        assert_eq!(node.read(KUBELET_CA), "edited", "not rewritten");
    }

    /// CA post actions that failed and wait to run again are in the status; a daemon that
    /// starts again (the files already match: nothing is written) runs them at once.
    #[test]
    fn pending_actions_run_when_the_daemon_starts_again() {
        let node = Node::new();
        node.set_desired(&mc("rendered-worker-a", vec![file("/etc/a.conf", "a\n")]));
        let cc = node.dir.path().join("controllerconfig.json");
        std::fs::write(
            &cc,
            controller_config(&pem("kube"), &pem("user-ca"), serde_json::json!([])),
        )
        .unwrap();
        let args = vec![
            "--controller-config".to_string(),
            cc.to_str().unwrap().to_string(),
        ];
        let mut d = Daemon::start(
            &node,
            StartOpts {
                args: args.clone(),
                ..Default::default()
            },
        );
        d.wait("the CA files written", |s| {
            s.state == NodeState::Done && !certificates(s).files.is_empty()
        });
        d.signal(libc::SIGTERM);
        assert!(d.wait_exit(DEADLINE).is_some_and(|s| s.success()));
        // What a failed restart of the trust store leaves in the status.
        let path = node.root.join(STATUS);
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["certificates"]["pendingActions"] = serde_json::json!([
            "restart coreos-update-ca-trust.service",
            "restart crio.service"
        ]);
        v["certificates"]["errors"] =
            serde_json::json!(["restart coreos-update-ca-trust.service: no such unit"]);
        v["certificates"]["retryAt"] = serde_json::json!("2026-01-01T00:00:00Z");
        std::fs::write(&path, v.to_string()).unwrap();
        let text = node.status_text();
        assert!(
            text.contains("CA files: restart coreos-update-ca-trust.service: no such unit\n"),
            "{text}"
        );
        assert!(
            text.contains("CA files: restart coreos-update-ca-trust.service, restart crio.service run again at 2026-01-01T00:00:00Z\n"),
            "{text}"
        );

        let d = Daemon::start(
            &node,
            StartOpts {
                args,
                ..Default::default()
            },
        );
        let st = d.wait("the pending actions run", |s| {
            certificates(s).pending_actions.is_empty()
                && !certificates(s).actions.is_empty()
                && s.state == NodeState::Done
        });
        let c = certificates(&st);
        assert_eq!(
            c.actions,
            [
                "restart coreos-update-ca-trust.service: skipped (no systemd (--no-systemd))",
                "restart crio.service: skipped (no systemd (--no-systemd))",
            ]
        );
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert!(c.retry_at.is_empty(), "{}", c.retry_at);
        assert!(c.written.is_empty(), "nothing written: {:?}", c.written);
        assert!(
            d.log()
                .contains("CA post actions pending from before the start: they run now"),
            "{}",
            d.log()
        );
    }
}
