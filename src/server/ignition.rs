//! What the server answers, as pure functions: the Ignition config a joining machine gets for a
//! rendered MachineConfig, and the spec version it gets it in (content negotiation on `Accept`).
//!
//! **The served config** is the rendered config's Ignition ([`crate::model::to_ignition_json`])
//! with two files added (mode 0644, owner root, `overwrite: true`; a file of the rendered config
//! at either path is replaced, with a warning in the log):
//!
//! - [`NODE_ANNOTATIONS_FILE`] (`/etc/machine-config-daemon/node-annotations.json`): the node
//!   annotations `currentConfig` and `desiredConfig` naming the served rendered config and
//!   `state: Done`, exactly as upstream writes them. The daemon's first start reads it when its
//!   Node has no `currentConfig` yet (see `daemon::firstboot`).
//! - [`CONTENT_FILE`] (`/etc/mcs-machine-config-content.json`): the whole rendered
//!   MachineConfig as JSON, as upstream writes it. This is how the parts of a MachineConfig that
//!   Ignition cannot express (`kernelArguments`, `kernelType`, `extensions`, `fips`,
//!   `osImageURL`) reach the machine: the daemon's first start takes this file as its current
//!   config (when it names the config the annotations file names), so those fields are known on
//!   the node without asking the API server.
//!
//! **Versions.** The server speaks Ignition spec 3.0.0 to 3.5.0 ([`VERSIONS`]). A client names
//! what it understands in `Accept` (Ignition sends
//! `application/vnd.coreos.ignition+json;version=3.4.0, */*;q=0.1`); [`negotiate`] decides:
//!
//! - When `Accept` names at least one Ignition version, only the named versions count (a `*/*`
//!   next to them is not a licence to send a version the client did not name: it could not
//!   parse it). Known versions are tried by quality (`q`), then newest first; the first that can
//!   express the config is served. None can (or none is known): `406 Not Acceptable`, naming
//!   what was asked for, why each known version cannot carry the config, and which versions can.
//! - When it names none (no `Accept`, or only `*/*`, `application/*`, `application/json`, or the
//!   Ignition media type without a version: a person with curl), [`DEFAULT_VERSION`] (3.5.0, the
//!   version the project emits everywhere) is served.
//! - An `Accept` with none of these (e.g. only `text/html`): 406.
//!
//! A version *can express* the config when the config, labelled with that version, parses as
//! that version's schema (the `ignition-config` crate's types) with no key left over: a field the
//! version does not have (`kernelArguments` before 3.3.0, `storage.luks` before 3.2.0, a LUKS
//! `clevis.custom` before 3.3.0, …) makes it unable to, and the 406 names the field.

use crate::model::{MachineConfig, machine_config_to_json, to_ignition_json};
use serde_json::{Value, json};

/// The media type of Ignition configs.
pub const MEDIA_TYPE: &str = "application/vnd.coreos.ignition+json";

/// The spec versions the server can serve, oldest first.
pub const VERSIONS: &[&str] = &["3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0"];

/// What a client that names no version gets.
pub const DEFAULT_VERSION: &str = "3.5.0";

/// The file naming the served config, for the daemon's first start.
pub const NODE_ANNOTATIONS_FILE: &str = "/etc/machine-config-daemon/node-annotations.json";

/// The whole served MachineConfig (its non-Ignition fields included).
pub const CONTENT_FILE: &str = "/etc/mcs-machine-config-content.json";

/// The JSON of [`NODE_ANNOTATIONS_FILE`] for config `name`.
pub fn node_annotations(name: &str) -> Value {
    use crate::cluster::node::{CURRENT_CONFIG, DESIRED_CONFIG, STATE};
    json!({ CURRENT_CONFIG: name, DESIRED_CONFIG: name, STATE: "Done" })
}

/// The Ignition config served for `mc` (labelled [`DEFAULT_VERSION`]): its own Ignition with the
/// two files of the module docs added.
pub fn served_config(mc: &MachineConfig) -> Value {
    let mut ign = to_ignition_json(&mc.spec.config);
    ign["ignition"]["version"] = json!(DEFAULT_VERSION);
    let annotations = serde_json::to_vec(&node_annotations(&mc.name)).expect("JSON of strings");
    let mut content = serde_json::to_vec_pretty(&machine_config_to_json(mc)).expect("JSON");
    content.push(b'\n');
    let files = [
        (NODE_ANNOTATIONS_FILE, annotations),
        (CONTENT_FILE, content),
    ];
    let storage = ign
        .as_object_mut()
        .expect("an Ignition config is an object")
        .entry("storage")
        .or_insert_with(|| json!({}));
    let list = storage
        .as_object_mut()
        .expect("storage is an object")
        .entry("files")
        .or_insert_with(|| json!([]));
    let list = list.as_array_mut().expect("files is a list");
    for (path, data) in files {
        let before = list.len();
        list.retain(|f| f["path"].as_str() != Some(path));
        if list.len() != before {
            tracing::warn!(config = %mc.name, path, "the rendered config writes {path}; the server's own file replaces it");
        }
        list.push(json!({
            "path": path,
            "contents": {"source": crate::model::ignition::data_url(&data)},
            "mode": 0o644,
            "overwrite": true,
        }));
    }
    ign
}

/// Why `config` (an Ignition config of [`DEFAULT_VERSION`]) cannot be served as `version`;
/// `Ok` with the config labelled `version` when it can.
pub fn convert(config: &Value, version: &str) -> Result<Value, String> {
    let mut v = config.clone();
    v["ignition"]["version"] = json!(version);
    let mut unknown: Vec<String> = Vec::new();
    check_schema(&v, version, &mut unknown)?;
    if let Some(first) = unknown.first() {
        let more = match unknown.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Err(format!("Ignition {version} has no field {first}{more}"));
    }
    Ok(v)
}

/// Parses `v` as the schema of `version`, pushing every key the schema does not have (as
/// `storage.luks[0].clevis`) to `unknown`.
fn check_schema(v: &Value, version: &str, unknown: &mut Vec<String>) -> Result<(), String> {
    fn parse<T: serde::de::DeserializeOwned>(
        v: &Value,
        unknown: &mut Vec<String>,
    ) -> Result<(), String> {
        serde_ignored::deserialize::<_, _, T>(v, |path| unknown.push(field_path(&path)))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    use ignition_config as ic;
    match version {
        "3.0.0" => parse::<ic::v3_0::Config>(v, unknown),
        "3.1.0" => parse::<ic::v3_1::Config>(v, unknown),
        "3.2.0" => parse::<ic::v3_2::Config>(v, unknown),
        "3.3.0" => parse::<ic::v3_3::Config>(v, unknown),
        "3.4.0" => parse::<ic::v3_4::Config>(v, unknown),
        "3.5.0" => parse::<ic::v3_5::Config>(v, unknown),
        other => Err(format!("Ignition {other} is not served")),
    }
}

/// `storage.files[0].contents` for a `serde_ignored` path.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let p = field_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// What a client's `Accept` header asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Accept {
    /// Ignition versions named (with q > 0), known or not, with their quality, in header order.
    pub versions: Vec<(String, f32)>,
    /// A range that admits the default (`*/*`, `application/*`, `application/json`, the
    /// Ignition media type without a version), or no header at all.
    pub any: bool,
}

impl Accept {
    /// Parses an `Accept` header (None: no header, which accepts anything).
    pub fn parse(header: Option<&str>) -> Accept {
        let Some(header) = header.filter(|h| !h.trim().is_empty()) else {
            return Accept {
                versions: Vec::new(),
                any: true,
            };
        };
        let mut out = Accept::default();
        for range in header.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let mut version = None;
            let mut q = 1.0f32;
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "version" => version = Some(v.to_string()),
                    "q" => q = v.parse().unwrap_or(0.0),
                    _ => {}
                }
            }
            if q <= 0.0 {
                continue;
            }
            match (media.as_str(), version) {
                (MEDIA_TYPE, Some(v)) => out.versions.push((normalise(&v), q)),
                (MEDIA_TYPE | "*/*" | "application/*" | "application/json", _) => out.any = true,
                _ => {}
            }
        }
        out
    }

    /// The versions to try, best first: named known versions by quality, then newest first; or
    /// the default when none is named and the header admits it.
    pub fn candidates(&self) -> Vec<&'static str> {
        if self.versions.is_empty() {
            return if self.any {
                vec![DEFAULT_VERSION]
            } else {
                Vec::new()
            };
        }
        let mut known: Vec<(&'static str, f32)> = self
            .versions
            .iter()
            .filter_map(|(v, q)| VERSIONS.iter().find(|k| *k == v).map(|k| (*k, *q)))
            .collect();
        // Quality first, then the newer version (versions compare as strings: 3.x.0 only).
        known.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(a.0)));
        known.dedup_by_key(|k| k.0);
        known.into_iter().map(|(v, _)| v).collect()
    }

    /// How the request is described in logs and answers: the versions named, or `any`.
    pub fn describe(&self) -> String {
        if self.versions.is_empty() {
            return if self.any {
                "any".into()
            } else {
                "none".into()
            };
        }
        let v: Vec<&str> = self.versions.iter().map(|(v, _)| v.as_str()).collect();
        v.join(",")
    }
}

/// `3.4` → `3.4.0` (a version without its patch number).
fn normalise(v: &str) -> String {
    if v.split('.').count() == 2 {
        format!("{v}.0")
    } else {
        v.to_string()
    }
}

/// The outcome of [`negotiate`].
#[derive(Debug, Clone, PartialEq)]
pub enum Negotiated {
    /// Serve this config in this version.
    Serve {
        version: &'static str,
        config: Value,
    },
    /// 406: the body says what was asked for, what cannot be, and what could be served.
    NotAcceptable(String),
}

/// Picks the version to serve `config` ([`served_config`]'s output) in for `accept`.
pub fn negotiate(config: &Value, accept: &Accept) -> Negotiated {
    let candidates = accept.candidates();
    let mut why = Vec::new();
    for v in &candidates {
        match convert(config, v) {
            Ok(c) => {
                return Negotiated::Serve {
                    version: v,
                    config: c,
                };
            }
            Err(e) => why.push(e),
        }
    }
    let available: Vec<&str> = VERSIONS
        .iter()
        .copied()
        .filter(|v| convert(config, v).is_ok())
        .collect();
    let mut body = format!(
        "not acceptable: the client asked for Ignition {}; ",
        match accept.describe().as_str() {
            "none" => "no Ignition media type".to_string(),
            d => format!("version {d}"),
        }
    );
    let unknown: Vec<&str> = accept
        .versions
        .iter()
        .map(|(v, _)| v.as_str())
        .filter(|v| !VERSIONS.contains(v))
        .collect();
    if !unknown.is_empty() {
        body.push_str(&format!(
            "this server does not speak {} (it speaks {}); ",
            unknown.join(", "),
            VERSIONS.join(", ")
        ));
    }
    for w in &why {
        body.push_str(w);
        body.push_str("; ");
    }
    body.push_str(&format!(
        "this config can be served as Ignition {} (Accept: {MEDIA_TYPE};version=X.Y.Z)\n",
        if available.is_empty() {
            "none of them".to_string()
        } else {
            available.join(", ")
        }
    ));
    Negotiated::NotAcceptable(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple() -> Value {
        json!({"ignition": {"version": "3.5.0"}, "storage": {"files": [
            {"path": "/etc/a", "contents": {"source": "data:,a"}, "mode": 420}
        ]}})
    }

    #[test]
    fn accept_headers() {
        let a = Accept::parse(Some(
            "application/vnd.coreos.ignition+json;version=3.4.0, */*;q=0.1",
        ));
        assert_eq!(a.versions, vec![("3.4.0".to_string(), 1.0)]);
        assert!(a.any);
        assert_eq!(a.candidates(), vec!["3.4.0"]);
        assert_eq!(Accept::parse(None).candidates(), vec![DEFAULT_VERSION]);
        assert_eq!(
            Accept::parse(Some("*/*")).candidates(),
            vec![DEFAULT_VERSION]
        );
        assert_eq!(
            Accept::parse(Some("application/vnd.coreos.ignition+json")).candidates(),
            vec![DEFAULT_VERSION]
        );
        assert!(Accept::parse(Some("text/html")).candidates().is_empty());
        // Quality, then newest first; unknown and q=0 versions are not candidates.
        let a = Accept::parse(Some(
            "application/vnd.coreos.ignition+json; version=3.1.0; q=0.5, \
             application/vnd.coreos.ignition+json;version=3.2, \
             application/vnd.coreos.ignition+json;version=3.3.0, \
             application/vnd.coreos.ignition+json;version=2.2.0, \
             application/vnd.coreos.ignition+json;version=3.5.0;q=0",
        ));
        assert_eq!(a.candidates(), vec!["3.3.0", "3.2.0", "3.1.0"]);
        assert_eq!(a.describe(), "3.1.0,3.2.0,3.3.0,2.2.0");
    }

    #[test]
    fn every_version_serves_a_plain_config() {
        for v in VERSIONS {
            let got = convert(&simple(), v).unwrap();
            assert_eq!(got["ignition"]["version"], json!(v));
            assert_eq!(got["storage"], simple()["storage"]);
        }
    }

    #[test]
    fn a_field_a_version_lacks_is_refused_by_name() {
        let mut c = simple();
        c["kernelArguments"] = json!({"shouldExist": ["quiet"]});
        for v in ["3.0.0", "3.1.0", "3.2.0"] {
            assert_eq!(
                convert(&c, v).unwrap_err(),
                format!("Ignition {v} has no field kernelArguments")
            );
        }
        for v in ["3.3.0", "3.4.0", "3.5.0"] {
            assert!(convert(&c, v).is_ok(), "{v}");
        }
        let a = Accept::parse(Some(
            "application/vnd.coreos.ignition+json;version=3.0.0, */*;q=0.1",
        ));
        match negotiate(&c, &a) {
            Negotiated::NotAcceptable(body) => {
                assert!(body.contains("asked for Ignition version 3.0.0"), "{body}");
                assert!(
                    body.contains("Ignition 3.0.0 has no field kernelArguments"),
                    "{body}"
                );
                assert!(
                    body.contains("served as Ignition 3.3.0, 3.4.0, 3.5.0"),
                    "{body}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Named several: the best one that can express it.
        let a = Accept::parse(Some(
            "application/vnd.coreos.ignition+json;version=3.0.0, application/vnd.coreos.ignition+json;version=3.3.0;q=0.5",
        ));
        assert!(matches!(
            negotiate(&c, &a),
            Negotiated::Serve {
                version: "3.3.0",
                ..
            }
        ));
    }

    #[test]
    fn unknown_versions_are_named_in_the_refusal() {
        let a = Accept::parse(Some("application/vnd.coreos.ignition+json;version=2.2.0"));
        match negotiate(&simple(), &a) {
            Negotiated::NotAcceptable(body) => {
                assert!(body.contains("does not speak 2.2.0"), "{body}");
                assert!(
                    body.contains("3.0.0, 3.1.0, 3.2.0, 3.3.0, 3.4.0, 3.5.0"),
                    "{body}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
