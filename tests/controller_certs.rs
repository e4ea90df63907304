//! The CA bundles' certificates as `ControllerConfig` `status.controllerCertificates` and a
//! pool's `status.certExpirys` list them (SPEC §12), and the expiry warning: certificates
//! generated here, exact subjects and dates asserted.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use machine_config_daemon::controller::certs::{
    BundleError, CertExpiry, ControllerCertificate, cert_expirys, controller_certificates,
    expiring_within, parse_bundle, parse_bundles,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd};

/// `y-m-d h:m:s` UTC as rcgen takes it.
fn at(y: i32, mo: u8, d: u8, h: u64, mi: u64, s: u64) -> time::OffsetDateTime {
    date_time_ymd(y, mo, d) + Duration::from_secs(h * 3600 + mi * 60 + s)
}

fn params(
    dn: &[(DnType, &str)],
    from: time::OffsetDateTime,
    to: time::OffsetDateTime,
) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    for (t, v) in dn {
        p.distinguished_name.push(t.clone(), *v);
    }
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.not_before = from;
    p.not_after = to;
    p
}

/// A self-signed CA: its PEM and an issuer to sign others with.
fn ca(
    dn: &[(DnType, &str)],
    from: time::OffsetDateTime,
    to: time::OffsetDateTime,
) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let p = params(dn, from, to);
    let pem = p.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(p, key))
}

fn signed(
    dn: &[(DnType, &str)],
    from: time::OffsetDateTime,
    to: time::OffsetDateTime,
    by: &Issuer<'_, KeyPair>,
) -> String {
    let key = KeyPair::generate().unwrap();
    params(dn, from, to).signed_by(&key, by).unwrap().pem()
}

fn openshift(cn: &'static str) -> Vec<(DnType, &'static str)> {
    // Written O/OU before CN in the certificate, as Go's own encoder does it.
    vec![
        (DnType::OrganizationalUnitName, "openshift"),
        (DnType::CommonName, cn),
    ]
}

/// The seed's example bundle: a self-signed admin signer, the kubelet signer and a CSR signer it
/// signed, in one `KubeAPIServerServingCAData` bundle.
fn seed_bundle() -> String {
    let (admin, _) = ca(
        &openshift("admin-kubeconfig-signer"),
        at(2024, 10, 25, 13, 13, 2),
        at(2034, 10, 23, 13, 13, 2),
    );
    let (kubelet, kubelet_issuer) = ca(
        &openshift("kubelet-signer"),
        at(2024, 10, 25, 13, 13, 5),
        at(2024, 10, 26, 13, 13, 5),
    );
    let csr = signed(
        &[(DnType::CommonName, "kube-csr-signer_@1729862835")],
        at(2024, 10, 25, 13, 27, 14),
        at(2024, 10, 26, 13, 13, 5),
        &kubelet_issuer,
    );
    format!("{admin}{csr}{kubelet}")
}

fn cc(bundle: &str, signer: &str, subject: &str, nb: &str, na: &str) -> ControllerCertificate {
    ControllerCertificate {
        bundle_file: bundle.into(),
        signer: signer.into(),
        subject: subject.into(),
        not_before: nb.into(),
        not_after: na.into(),
    }
}

#[test]
fn several_certificates_in_one_bundle_listed_as_the_seed_shows() {
    let certs = parse_bundle("KubeAPIServerServingCAData", seed_bundle().as_bytes()).unwrap();
    assert_eq!(
        controller_certificates(&certs),
        vec![
            cc(
                "KubeAPIServerServingCAData",
                "CN=admin-kubeconfig-signer,OU=openshift",
                "CN=admin-kubeconfig-signer,OU=openshift",
                "2024-10-25T13:13:02Z",
                "2034-10-23T13:13:02Z",
            ),
            cc(
                "KubeAPIServerServingCAData",
                "CN=kubelet-signer,OU=openshift",
                "CN=kube-csr-signer_@1729862835",
                "2024-10-25T13:27:14Z",
                "2024-10-26T13:13:05Z",
            ),
            cc(
                "KubeAPIServerServingCAData",
                "CN=kubelet-signer,OU=openshift",
                "CN=kubelet-signer,OU=openshift",
                "2024-10-25T13:13:05Z",
                "2024-10-26T13:13:05Z",
            ),
        ]
    );
    let expirys = cert_expirys(&certs);
    assert_eq!(
        expirys[0],
        CertExpiry {
            bundle: "KubeAPIServerServingCAData".into(),
            subject: "CN=admin-kubeconfig-signer,OU=openshift".into(),
            expiry: Some("2034-10-23T13:13:02Z".into()),
        }
    );
    assert_eq!(
        expirys
            .iter()
            .map(|e| e.expiry.as_deref().unwrap())
            .collect::<Vec<_>>(),
        [
            "2034-10-23T13:13:02Z",
            "2024-10-26T13:13:05Z",
            "2024-10-26T13:13:05Z"
        ]
    );
    // The YAML field names are upstream's.
    let yaml = serde_json::to_value(&controller_certificates(&certs)[0]).unwrap();
    assert_eq!(
        yaml,
        serde_json::json!({
            "bundleFile": "KubeAPIServerServingCAData",
            "signer": "CN=admin-kubeconfig-signer,OU=openshift",
            "subject": "CN=admin-kubeconfig-signer,OU=openshift",
            "notBefore": "2024-10-25T13:13:02Z",
            "notAfter": "2034-10-23T13:13:02Z",
        })
    );
    assert_eq!(
        serde_json::to_value(&expirys[1]).unwrap(),
        serde_json::json!({
            "bundle": "KubeAPIServerServingCAData",
            "subject": "CN=kube-csr-signer_@1729862835",
            "expiry": "2024-10-26T13:13:05Z",
        })
    );
}

#[test]
fn subjects_in_go_order_with_escaping() {
    let (pem, _) = ca(
        &[
            (DnType::CommonName, "a,b+c"),
            (DnType::CountryName, "JP"),
            (DnType::OrganizationName, "Example"),
            (DnType::StateOrProvinceName, "Tokyo"),
            (DnType::LocalityName, " Chiyoda"),
        ],
        at(2025, 1, 1, 0, 0, 0),
        at(2026, 1, 1, 0, 0, 0),
    );
    let certs = parse_bundle("user-ca", pem.as_bytes()).unwrap();
    assert_eq!(
        certs[0].subject,
        "CN=a\\,b\\+c,O=Example,L=\\ Chiyoda,ST=Tokyo,C=JP"
    );
    assert_eq!(certs[0].signer, certs[0].subject);
}

#[test]
fn expired_and_soon_expiring_certificates_are_reported_with_seconds_left() {
    let now: Timestamp = "2025-06-01T00:00:00Z".parse().unwrap();
    let (expired, _) = ca(
        &openshift("expired"),
        at(2024, 1, 1, 0, 0, 0),
        at(2025, 5, 31, 0, 0, 0),
    );
    let (soon, _) = ca(
        &openshift("soon"),
        at(2024, 1, 1, 0, 0, 0),
        at(2025, 7, 1, 0, 0, 0), // exactly 30 days
    );
    let (later, _) = ca(
        &openshift("later"),
        at(2024, 1, 1, 0, 0, 0),
        at(2025, 7, 1, 0, 0, 1), // 30 days and a second
    );
    let bundle = format!("{later}{expired}{soon}");
    let certs = parse_bundle("RootCAData", bundle.as_bytes()).unwrap();
    assert_eq!(certs.len(), 3);
    let warned: Vec<(&str, i64)> = expiring_within(&certs, now)
        .into_iter()
        .map(|(c, left)| (c.subject.as_str(), left))
        .collect();
    assert_eq!(
        warned,
        [
            ("CN=expired,OU=openshift", -86_400),
            ("CN=soon,OU=openshift", 30 * 86_400)
        ]
    );
}

#[test]
fn a_bundle_that_does_not_parse_is_named_and_the_others_still_listed() {
    let (good, _) = ca(
        &openshift("good"),
        at(2025, 1, 1, 0, 0, 0),
        at(2026, 1, 1, 0, 0, 0),
    );
    let bad_der = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";
    let unterminated = format!("{good}-----BEGIN CERTIFICATE-----\nMIIB\n");
    let with_key = format!(
        "# comment\n{}{good}",
        KeyPair::generate().unwrap().serialize_pem()
    );
    let (certs, errors) = parse_bundles([
        ("KubeAPIServerServingCAData", good.as_bytes()),
        ("RootCAData", bad_der.as_bytes()),
        (
            "AdditionalTrustBundle",
            b"garbage, not PEM at all".as_slice(),
        ),
        ("registry.example.com..5000", bad_base64.as_bytes()),
        ("other-registry", unterminated.as_bytes()),
        ("empty", b"\n".as_slice()),
        ("keyed", with_key.as_bytes()),
    ]);
    assert_eq!(
        certs
            .iter()
            .map(|c| (c.bundle_file.as_str(), c.subject.as_str()))
            .collect::<Vec<_>>(),
        [
            ("KubeAPIServerServingCAData", "CN=good,OU=openshift"),
            ("keyed", "CN=good,OU=openshift"),
        ]
    );
    assert_eq!(
        errors.iter().map(BundleError::bundle).collect::<Vec<_>>(),
        [
            "RootCAData",
            "AdditionalTrustBundle",
            "registry.example.com..5000",
            "other-registry"
        ]
    );
    assert!(
        matches!(errors[0], BundleError::Certificate { index: 0, .. }),
        "{:?}",
        errors[0]
    );
    assert_eq!(
        errors[1].to_string(),
        "CA bundle AdditionalTrustBundle: no PEM block found in 23 bytes"
    );
    assert!(
        matches!(errors[2], BundleError::Pem { index: 0, .. }),
        "{:?}",
        errors[2]
    );
    assert!(
        matches!(errors[3], BundleError::Pem { index: 1, .. }),
        "{:?}",
        errors[3]
    );
    assert!(
        errors[0]
            .to_string()
            .starts_with("CA bundle RootCAData: certificate 0: not a valid X.509 certificate")
    );
}

/// A whole ControllerConfig as the API server returns it (base64 bundles): every bundle in
/// upstream's order, the registry bundles by file name, a bad bundle named, expiries at `now`.
#[test]
fn report_of_a_controller_config() {
    use base64::Engine;
    use machine_config_daemon::cluster::controllerconfig::ControllerConfig;
    use machine_config_daemon::controller::certs::certificate_report;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let (kube, _) = ca(
        &openshift("kube-apiserver-to-kubelet-signer"),
        at(2024, 10, 25, 13, 13, 5),
        at(2025, 10, 25, 13, 13, 5),
    );
    let (root, _) = ca(
        &[(DnType::CommonName, "root-ca")],
        at(2024, 1, 1, 0, 0, 0),
        at(2034, 1, 1, 0, 0, 0),
    );
    let (reg, _) = ca(
        &[(DnType::CommonName, "registry-ca")],
        at(2024, 1, 1, 0, 0, 0),
        at(2025, 10, 20, 0, 0, 0),
    );
    let cc: ControllerConfig = serde_json::from_value(serde_json::json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "ControllerConfig",
        "metadata": {"name": "machine-config-controller"},
        "spec": {
            "kubeAPIServerServingCAData": b64(&kube),
            "rootCAData": b64(&root),
            "additionalTrustBundle": b64("garbage"),
            "imageRegistryBundleUserData": [{"file": "image-registry.openshift-image-registry.svc..5000", "data": b64(&reg)}],
        },
    }))
    .unwrap();
    let now: Timestamp = "2025-10-01T00:00:00Z".parse().unwrap();
    let r = certificate_report(&cc.spec, now);
    assert_eq!(
        r.cert_expirys,
        vec![
            CertExpiry {
                bundle: "KubeAPIServerServingCAData".into(),
                subject: "CN=kube-apiserver-to-kubelet-signer,OU=openshift".into(),
                expiry: Some("2025-10-25T13:13:05Z".into()),
            },
            CertExpiry {
                bundle: "RootCAData".into(),
                subject: "CN=root-ca".into(),
                expiry: Some("2034-01-01T00:00:00Z".into()),
            },
            CertExpiry {
                bundle: "image-registry.openshift-image-registry.svc..5000".into(),
                subject: "CN=registry-ca".into(),
                expiry: Some("2025-10-20T00:00:00Z".into()),
            },
        ]
    );
    assert_eq!(r.controller_certificates.len(), 3);
    assert_eq!(
        r.controller_certificates[1].not_before,
        "2024-01-01T00:00:00Z"
    );
    assert_eq!(
        r.expiring,
        [
            (
                "KubeAPIServerServingCAData".to_string(),
                "CN=kube-apiserver-to-kubelet-signer,OU=openshift".to_string(),
                24 * 86_400 + 13 * 3600 + 13 * 60 + 5
            ),
            (
                "image-registry.openshift-image-registry.svc..5000".to_string(),
                "CN=registry-ca".to_string(),
                19 * 86_400
            ),
        ]
    );
    assert_eq!(
        r.errors.iter().map(BundleError::bundle).collect::<Vec<_>>(),
        ["AdditionalTrustBundle"]
    );
}

/// The bundle of the warning tests: an expired certificate, one expiring in 10 days, one in a
/// year, and a certificate with the same subject as the first, renewed.
fn warning_bundle() -> (String, String) {
    let (expired, _) = ca(
        &openshift("kubelet-signer"),
        at(2024, 10, 25, 13, 13, 5),
        at(2025, 5, 31, 0, 0, 0),
    );
    let (soon, _) = ca(
        &openshift("admin-kubeconfig-signer"),
        at(2024, 10, 25, 13, 13, 2),
        at(2025, 6, 11, 0, 0, 0),
    );
    let (later, _) = ca(
        &openshift("kube-apiserver-to-kubelet-signer"),
        at(2024, 10, 25, 13, 13, 2),
        at(2026, 6, 1, 0, 0, 0),
    );
    let (renewed, _) = ca(
        &openshift("kubelet-signer"),
        at(2025, 5, 30, 0, 0, 0),
        at(2025, 6, 20, 12, 0, 0),
    );
    (format!("{expired}{soon}{later}"), renewed)
}

fn report_of(
    bundles: &[(&str, &str)],
    now: Timestamp,
) -> machine_config_daemon::controller::certs::CertificateReport {
    use base64::Engine;
    use machine_config_daemon::cluster::controllerconfig::ControllerConfig;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut spec = serde_json::json!({"kubeAPIServerServingCAData": "", "rootCAData": ""});
    for (field, pem) in bundles {
        spec[*field] = serde_json::json!(b64(pem));
    }
    let cc: ControllerConfig = serde_json::from_value(serde_json::json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "ControllerConfig",
        "metadata": {"name": "machine-config-controller"},
        "spec": spec,
    }))
    .unwrap();
    machine_config_daemon::controller::certs::certificate_report(&cc.spec, now)
}

/// Each warning once: per certificate and `notAfter` (a renewed certificate is a new one),
/// per bundle error (a bundle fixed and broken again is warned about again); nothing for a
/// certificate further than 30 days from its end.
#[test]
fn warnings_are_raised_once_per_certificate_and_expiry() {
    use machine_config_daemon::controller::certs::{
        REASON_EXPIRING, REASON_INVALID_BUNDLE, Warning, Warnings,
    };
    let now: Timestamp = "2025-06-01T00:00:00Z".parse().unwrap();
    let (bundle, renewed) = warning_bundle();
    let w = |reason, note: &str| Warning {
        reason,
        note: note.into(),
    };
    let mut warnings = Warnings::default();
    let first = report_of(
        &[
            ("kubeAPIServerServingCAData", &bundle),
            ("additionalTrustBundle", "not a PEM bundle"),
        ],
        now,
    );
    assert_eq!(
        warnings.new_warnings(&first, now),
        [
            w(
                REASON_EXPIRING,
                "certificate CN=kubelet-signer,OU=openshift in bundle KubeAPIServerServingCAData \
                 expired at 2025-05-31T00:00:00Z (1 day ago)"
            ),
            w(
                REASON_EXPIRING,
                "certificate CN=admin-kubeconfig-signer,OU=openshift in bundle \
                 KubeAPIServerServingCAData expires at 2025-06-11T00:00:00Z (in 10 days)"
            ),
            w(
                REASON_INVALID_BUNDLE,
                "CA bundle AdditionalTrustBundle: no PEM block found in 16 bytes"
            ),
        ]
    );
    // The same again, an hour later: nothing new.
    let later: Timestamp = "2025-06-01T01:00:00Z".parse().unwrap();
    assert_eq!(warnings.new_warnings(&first, later), []);
    // The renewed kubelet signer added (new notAfter), the user bundle fixed: one new warning.
    let with_renewed = format!("{bundle}{renewed}");
    let second = report_of(&[("kubeAPIServerServingCAData", &with_renewed)], later);
    assert_eq!(
        warnings.new_warnings(&second, later),
        [w(
            REASON_EXPIRING,
            "certificate CN=kubelet-signer,OU=openshift in bundle KubeAPIServerServingCAData \
             expires at 2025-06-20T12:00:00Z (in 19 days)"
        )]
    );
    // The user bundle broken again: warned about again.
    let third = report_of(
        &[
            ("kubeAPIServerServingCAData", &with_renewed),
            ("additionalTrustBundle", "not a PEM bundle"),
        ],
        later,
    );
    assert_eq!(
        warnings.new_warnings(&third, later),
        [w(
            REASON_INVALID_BUNDLE,
            "CA bundle AdditionalTrustBundle: no PEM block found in 16 bytes"
        )]
    );
}

/// The controller looks again when the next certificate comes within 30 days of its end.
#[test]
fn next_warning_is_when_a_certificate_comes_within_30_days() {
    use machine_config_daemon::controller::certs::next_warning_at;
    let (bundle, _) = warning_bundle();
    let certs = parse_bundle("KubeAPIServerServingCAData", bundle.as_bytes()).unwrap();
    let now: Timestamp = "2025-06-01T00:00:00Z".parse().unwrap();
    // 2026-06-01 minus 30 days.
    assert_eq!(
        next_warning_at(&certs, now),
        Some("2026-05-02T00:00:00Z".parse().unwrap())
    );
    let after: Timestamp = "2026-05-02T00:00:00Z".parse().unwrap();
    assert_eq!(next_warning_at(&certs, after), None);
}

/// `mcc_certificate_expiry_seconds`: seconds left at the scrape, negative once expired, only
/// within 30 days; one sample per bundle and subject (the first to expire).
#[test]
fn expiry_metric_at_a_scrape() {
    use machine_config_daemon::controller::metrics::ControllerMetrics;
    let (bundle, renewed) = warning_bundle();
    let with_renewed = format!("{bundle}{renewed}");
    let certs = parse_bundle("KubeAPIServerServingCAData", with_renewed.as_bytes()).unwrap();
    let metrics = ControllerMetrics::default();
    metrics.set_certificates(&certs);
    let now: Timestamp = "2025-06-01T00:00:00Z".parse().unwrap();
    let samples = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("mcc_certificate_expiry_seconds"))
            .map(String::from)
            .collect()
    };
    let text = metrics.render_at(now);
    assert!(
        text.contains("# TYPE mcc_certificate_expiry_seconds gauge"),
        "{text}"
    );
    assert_eq!(
        samples(&text),
        [
            "mcc_certificate_expiry_seconds{bundle=\"KubeAPIServerServingCAData\",subject=\"CN=admin-kubeconfig-signer,OU=openshift\"} 864000",
            "mcc_certificate_expiry_seconds{bundle=\"KubeAPIServerServingCAData\",subject=\"CN=kubelet-signer,OU=openshift\"} -86400",
        ]
    );
    // Later the year-long one is within 30 days too (17 days left), the values follow: the
    // admin signer ended 338 days before, the kubelet signer's first certificate 349.
    let later: Timestamp = "2026-05-15T00:00:00Z".parse().unwrap();
    assert_eq!(
        samples(&metrics.render_at(later)),
        [
            "mcc_certificate_expiry_seconds{bundle=\"KubeAPIServerServingCAData\",subject=\"CN=admin-kubeconfig-signer,OU=openshift\"} -29203200",
            "mcc_certificate_expiry_seconds{bundle=\"KubeAPIServerServingCAData\",subject=\"CN=kube-apiserver-to-kubelet-signer,OU=openshift\"} 1468800",
            "mcc_certificate_expiry_seconds{bundle=\"KubeAPIServerServingCAData\",subject=\"CN=kubelet-signer,OU=openshift\"} -30153600",
        ]
    );
    metrics.set_certificates(&[]);
    assert_eq!(samples(&metrics.render_at(now)), Vec::<String>::new());
}
