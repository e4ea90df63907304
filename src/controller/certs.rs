//! Certificates in the `ControllerConfig` CA bundles (SPEC §12): every certificate's subject,
//! signer, validity, as `ControllerConfig` `status.controllerCertificates` and a pool's
//! `status.certExpirys` list them, and which expire soon. Pure functions of the bundles and a
//! `now`; the parsing is `x509-parser`'s.
//!
//! Formats are upstream's (Go `crypto/x509`):
//! - a subject or signer is Go's `pkix.Name.String()`: the standard attributes in Go's canonical
//!   order, printed last to first (`CN=…,OU=…,O=…,POSTALCODE=…,STREET=…,L=…,ST=…,C=…`), several
//!   values of one attribute joined with `+`, RFC 2253 escaping (`, + " \ < > ;`, a leading `#`
//!   or space, a trailing space); other string attributes (an e-mail address, say) first, as
//!   `<oid>=#<hex of the value re-encoded as PrintableString or UTF8String>`, which comes out at
//!   the end, as Go's does. Attributes whose value is not a string are left out (Go leaves them
//!   out of the named fields too).
//! - dates are RFC 3339 in UTC to the second (`2034-10-23T13:13:02Z`).
//!
//! Choices: a bundle is one unit. A PEM block that is malformed, or a `CERTIFICATE` block that
//! is not a valid X.509 certificate, makes the whole bundle an error naming the bundle (its
//! certificates are then not listed, the other bundles are); PEM blocks of other types (a key)
//! are skipped; a bundle holding bytes but no PEM block at all is an error; an empty bundle (or
//! whitespace only) lists nothing. The order is the bundles' order ([`CONTROLLER_BUNDLES`], then
//! the registry bundles as listed), and within a bundle the certificates' order.

use k8s_openapi::jiff::Timestamp;
use x509_parser::pem::Pem;

pub use crate::cluster::controllerconfig::ControllerCertificate;
use x509_parser::x509::X509Name;

/// Bundle names of the fixed `ControllerConfig` fields, in the order they are listed.
pub const CONTROLLER_BUNDLES: [&str; 4] = [
    "KubeAPIServerServingCAData",
    "CloudProviderCAData",
    "RootCAData",
    "AdditionalTrustBundle",
];

/// A certificate expiring within this many seconds of `now` is reported ([`expiring_within`]).
pub const EXPIRY_WARNING_SECONDS: i64 = 30 * 24 * 60 * 60;

/// One certificate of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The bundle's name (`KubeAPIServerServingCAData`, or a registry bundle's file name).
    pub bundle_file: String,
    /// The subject, in Go's `pkix.Name.String()` form.
    pub subject: String,
    /// The issuer, in the same form.
    pub signer: String,
    /// Start of validity, UTC seconds.
    pub not_before: Timestamp,
    /// End of validity, UTC seconds.
    pub not_after: Timestamp,
}

/// A bundle that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// A PEM block is malformed (bad header, no end line, bad base64).
    #[error("CA bundle {bundle}: PEM block {index}: {reason}")]
    Pem {
        bundle: String,
        index: usize,
        reason: String,
    },
    /// A `CERTIFICATE` block is not an X.509 certificate.
    #[error("CA bundle {bundle}: certificate {index}: not a valid X.509 certificate: {reason}")]
    Certificate {
        bundle: String,
        index: usize,
        reason: String,
    },
    /// The bundle holds bytes but no PEM block.
    #[error("CA bundle {bundle}: no PEM block found in {len} bytes")]
    NoPem { bundle: String, len: usize },
}

impl BundleError {
    /// The bundle's name.
    pub fn bundle(&self) -> &str {
        match self {
            BundleError::Pem { bundle, .. }
            | BundleError::Certificate { bundle, .. }
            | BundleError::NoPem { bundle, .. } => bundle,
        }
    }
}

/// Every certificate of one PEM bundle.
pub fn parse_bundle(bundle: &str, pem: &[u8]) -> Result<Vec<CertificateInfo>, BundleError> {
    let mut out = Vec::new();
    let mut blocks = 0usize;
    for (index, block) in Pem::iter_from_buffer(pem).enumerate() {
        blocks += 1;
        let block = block.map_err(|e| BundleError::Pem {
            bundle: bundle.to_string(),
            index,
            reason: e.to_string(),
        })?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block.parse_x509().map_err(|e| BundleError::Certificate {
            bundle: bundle.to_string(),
            index,
            reason: e.to_string(),
        })?;
        let validity = cert.validity();
        let time = |t: i64| {
            Timestamp::from_second(t).map_err(|e| BundleError::Certificate {
                bundle: bundle.to_string(),
                index,
                reason: format!("validity date out of range: {e}"),
            })
        };
        out.push(CertificateInfo {
            bundle_file: bundle.to_string(),
            subject: go_name_string(cert.subject()),
            signer: go_name_string(cert.issuer()),
            not_before: time(validity.not_before.timestamp())?,
            not_after: time(validity.not_after.timestamp())?,
        });
    }
    if blocks == 0 && !pem.iter().all(u8::is_ascii_whitespace) {
        return Err(BundleError::NoPem {
            bundle: bundle.to_string(),
            len: pem.len(),
        });
    }
    Ok(out)
}

/// The certificates of several bundles, `(name, PEM)` in order: those that parse, and an error
/// for each bundle that does not (the others still listed).
pub fn parse_bundles<'a>(
    bundles: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> (Vec<CertificateInfo>, Vec<BundleError>) {
    let mut certs = Vec::new();
    let mut errors = Vec::new();
    for (name, pem) in bundles {
        match parse_bundle(name, pem) {
            Ok(c) => certs.extend(c),
            Err(e) => errors.push(e),
        }
    }
    (certs, errors)
}

pub use crate::cluster::mcp::CertExpiry;

/// RFC 3339, UTC, to the second: `2034-10-23T13:13:02Z`.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The `status.controllerCertificates` entries of these certificates.
pub fn controller_certificates(certs: &[CertificateInfo]) -> Vec<ControllerCertificate> {
    certs
        .iter()
        .map(|c| ControllerCertificate {
            bundle_file: c.bundle_file.clone(),
            signer: c.signer.clone(),
            subject: c.subject.clone(),
            not_before: format_time(c.not_before),
            not_after: format_time(c.not_after),
        })
        .collect()
}

/// A pool's `status.certExpirys` entries of these certificates.
pub fn cert_expirys(certs: &[CertificateInfo]) -> Vec<CertExpiry> {
    certs
        .iter()
        .map(|c| CertExpiry {
            bundle: c.bundle_file.clone(),
            subject: c.subject.clone(),
            expiry: Some(format_time(c.not_after)),
        })
        .collect()
}

/// The certificates that are expired at `now` or expire within [`EXPIRY_WARNING_SECONDS`]
/// of it, with the seconds left (negative once expired).
pub fn expiring_within(certs: &[CertificateInfo], now: Timestamp) -> Vec<(&CertificateInfo, i64)> {
    certs
        .iter()
        .map(|c| (c, c.not_after.as_second() - now.as_second()))
        .filter(|(_, left)| *left <= EXPIRY_WARNING_SECONDS)
        .collect()
}

/// The standard attributes Go parses into named fields, by the last arc of `2.5.4.x`, with the
/// names it prints, in `ToRDNSequence` order.
const GO_NAME_ORDER: [(&str, &str); 9] = [
    ("2.5.4.6", "C"),
    ("2.5.4.8", "ST"),
    ("2.5.4.7", "L"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.17", "POSTALCODE"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
];

/// Go's `pkix.Name.String()` of a parsed name (see the module docs).
pub fn go_name_string(name: &X509Name<'_>) -> String {
    // RDNs in Go's sequence order; printed last to first.
    let mut rdns: Vec<Vec<String>> = Vec::new();
    for atv in name.iter_attributes() {
        let oid = atv.attr_type().to_id_string();
        if GO_NAME_ORDER.iter().any(|(o, _)| *o == oid) {
            continue;
        }
        let Ok(value) = atv.as_str() else { continue };
        rdns.push(vec![format!(
            "{oid}=#{}",
            hex::encode(go_marshal_string(value))
        )]);
    }
    for (oid, short) in GO_NAME_ORDER {
        let values: Vec<String> = name
            .iter_attributes()
            .filter(|atv| atv.attr_type().to_id_string() == oid)
            .filter_map(|atv| atv.as_str().ok())
            .map(|v| format!("{short}={}", escape_value(v)))
            .collect();
        // Go keeps only the last CN and serial number, every value of the others.
        let values = if short == "CN" || short == "SERIALNUMBER" {
            values.into_iter().last().into_iter().collect()
        } else {
            values
        };
        if !values.is_empty() {
            rdns.push(values);
        }
    }
    rdns.iter()
        .rev()
        .map(|rdn| rdn.join("+"))
        .collect::<Vec<_>>()
        .join(",")
}

/// RFC 2253 escaping as Go's `RDNSequence.String()` does it.
fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (k, c) in v.char_indices() {
        let escape = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => k == 0 || k == v.len() - 1,
            '#' => k == 0,
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// DER of a string as Go's `asn1.Marshal` writes it: PrintableString when every character is
/// printable in ASN.1's sense, UTF8String otherwise.
fn go_marshal_string(v: &str) -> Vec<u8> {
    let printable = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b));
    let tag = if printable { 0x13 } else { 0x0c };
    let mut out = vec![tag];
    let len = v.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend(v.as_bytes());
    out
}

/// The bundles of a `ControllerConfig` spec as `(name, PEM)`: the fixed fields in
/// [`CONTROLLER_BUNDLES`] order (absent ones left out), then `imageRegistryBundleData` and
/// `imageRegistryBundleUserData`, named by their `file`.
pub fn spec_bundles(
    spec: &crate::cluster::controllerconfig::ControllerConfigSpec,
) -> Vec<(&str, &[u8])> {
    let fixed: [Option<&[u8]>; 4] = [
        Some(&spec.kube_api_server_serving_ca_data.0),
        spec.cloud_provider_ca_data.as_ref().map(|b| b.0.as_slice()),
        Some(&spec.root_ca_data.0),
        spec.additional_trust_bundle
            .as_ref()
            .map(|b| b.0.as_slice()),
    ];
    let mut out: Vec<(&str, &[u8])> = CONTROLLER_BUNDLES
        .iter()
        .zip(fixed)
        .filter_map(|(name, data)| data.map(|d| (*name, d)))
        .collect();
    out.extend(
        spec.image_registry_bundle_data
            .iter()
            .chain(&spec.image_registry_bundle_user_data)
            .map(|b| (b.file.as_str(), b.data.0.as_slice())),
    );
    out
}

/// Everything the controller reports about a `ControllerConfig`'s certificates at `now`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertificateReport {
    /// `ControllerConfig` `status.controllerCertificates`.
    pub controller_certificates: Vec<ControllerCertificate>,
    /// Each MachineConfigPool's `status.certExpirys` (the same for every pool).
    pub cert_expirys: Vec<CertExpiry>,
    /// Certificates expired or expiring within 30 days: `(bundle, subject, seconds left)`, for
    /// the Warning event and `mcc_certificate_expiry_seconds`.
    pub expiring: Vec<(String, String, i64)>,
    /// Bundles that do not parse.
    pub errors: Vec<BundleError>,
    /// Every certificate that parsed, in the bundles' order.
    pub certificates: Vec<CertificateInfo>,
}

/// [`CertificateReport`] of a `ControllerConfig` spec.
pub fn certificate_report(
    spec: &crate::cluster::controllerconfig::ControllerConfigSpec,
    now: Timestamp,
) -> CertificateReport {
    let (certs, errors) = parse_bundles(spec_bundles(spec));
    CertificateReport {
        controller_certificates: controller_certificates(&certs),
        cert_expirys: cert_expirys(&certs),
        expiring: expiring_within(&certs, now)
            .into_iter()
            .map(|(c, left)| (c.bundle_file.clone(), c.subject.clone(), left))
            .collect(),
        errors,
        certificates: certs,
    }
}

/// The next moment after `now` at which one of `certs` comes within
/// [`EXPIRY_WARNING_SECONDS`] of its `notAfter` (None when none will): the controller looks
/// again then, as nothing in the cluster changes at that moment.
pub fn next_warning_at(certs: &[CertificateInfo], now: Timestamp) -> Option<Timestamp> {
    certs
        .iter()
        .map(|c| c.not_after.as_second() - EXPIRY_WARNING_SECONDS)
        .filter(|t| *t > now.as_second())
        .min()
        .and_then(|t| Timestamp::from_second(t).ok())
}

/// Reason of the Warning event for a certificate expired or expiring within 30 days.
pub const REASON_EXPIRING: &str = "CertificateExpiring";
/// Reason of the Warning event for a bundle that does not parse.
pub const REASON_INVALID_BUNDLE: &str = "InvalidCertificateBundle";

/// A Warning event to raise on the `ControllerConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// [`REASON_EXPIRING`] or [`REASON_INVALID_BUNDLE`].
    pub reason: &'static str,
    /// What the event says: the certificate (bundle, subject, `notAfter`, days left) or the
    /// bundle's error.
    pub note: String,
}

/// What has been warned about already, so that each warning is raised once: a certificate
/// once per (bundle, subject, `notAfter`) — a renewed certificate has a new `notAfter` and is
/// warned about again when it comes near it; a bad bundle once per error, again if it is
/// fixed and breaks again. Entries no longer in the report are forgotten.
#[derive(Debug, Clone, Default)]
pub struct Warnings {
    expiring: std::collections::BTreeSet<(String, String, i64)>,
    invalid: std::collections::BTreeSet<String>,
}

impl Warnings {
    /// The warnings of `report` at `now` not raised before (and records them as raised).
    pub fn new_warnings(&mut self, report: &CertificateReport, now: Timestamp) -> Vec<Warning> {
        let mut out = Vec::new();
        let mut expiring = std::collections::BTreeSet::new();
        for (c, left) in expiring_within(&report.certificates, now) {
            let key = (
                c.bundle_file.clone(),
                c.subject.clone(),
                c.not_after.as_second(),
            );
            if !self.expiring.contains(&key) {
                let at = format_time(c.not_after);
                let when = if left < 0 {
                    format!("expired at {at} ({} ago)", days(-left))
                } else {
                    format!("expires at {at} (in {})", days(left))
                };
                out.push(Warning {
                    reason: REASON_EXPIRING,
                    note: format!(
                        "certificate {} in bundle {} {when}",
                        c.subject, c.bundle_file
                    ),
                });
            }
            expiring.insert(key);
        }
        self.expiring = expiring;
        let mut invalid = std::collections::BTreeSet::new();
        for e in &report.errors {
            let note = e.to_string();
            if !self.invalid.contains(&note) {
                out.push(Warning {
                    reason: REASON_INVALID_BUNDLE,
                    note: note.clone(),
                });
            }
            invalid.insert(note);
        }
        self.invalid = invalid;
        out
    }
}

/// `N days` (whole days, down), or `N hours` under a day, `N seconds` under an hour.
fn days(seconds: i64) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match seconds {
        s if s >= 86_400 => plural(s / 86_400, "day"),
        s if s >= 3_600 => plural(s / 3_600, "hour"),
        s => plural(s, "second"),
    }
}
