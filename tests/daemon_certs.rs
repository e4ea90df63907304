//! The CA files a `ControllerConfig` asks of a node (SPEC §12): which path holds which bundle,
//! which files go away, which registry directories are stale, and the bundles not written.

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
