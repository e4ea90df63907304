//! Ignition v3 inside MachineConfigs: structural parsing of every 3.x version through the
//! `ignition-config` crate, normalisation into [`Config`] (decoded contents, owners, units,
//! users), the validation rules of SPEC §4 that concern Ignition itself, and emission of a
//! [`Config`] / [`MachineConfig`] back to JSON (Ignition 3.5.0).
//!
//! The crate checks the shape (types, required fields) and reports unknown keys, which become
//! warnings. Normalisation then reads the crate's typed config serialised back to JSON, so only
//! keys the declared version knows reach the model. Storage sections the daemon never acts on
//! (disks, filesystems, raid, luks) and Ignition's own `kernelArguments` are kept as written.

use super::config::{
    Config, Directory, Dropin, File, Group, Link, MC_API_VERSION, MC_KIND, MachineConfig, Owner,
    Unit, User,
};
use super::error::{FieldError, user_terms};
use super::load::{Budget, Limits};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::io::Read as _;
use std::io::Write as _;

/// The Ignition version [`to_ignition_json`] writes.
pub const EMIT_VERSION: &str = "3.5.0";

/// Ignition versions accepted in input.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0", "3.6.0",
];

/// Source schemes that fetch from elsewhere: never allowed in a rendered config.
const REMOTE_SCHEMES: &[&str] = &["http", "https", "s3", "tftp", "gs", "arn", "oem"];

/// Unit name suffixes systemd (and Ignition) accept.
pub const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".target",
    ".path",
    ".timer",
    ".snapshot",
    ".slice",
    ".scope",
];

/// Joins a field path and a child (`spec.config` + `storage` → `spec.config.storage`).
pub(crate) fn join(base: &str, child: &str) -> String {
    match (base.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (_, true) => base.to_string(),
        _ if child.starts_with('[') => format!("{base}{child}"),
        _ => format!("{base}.{child}"),
    }
}

/// Parses the Ignition config `value` found at field path `at` (`spec.config`, or empty for a
/// bare Ignition file). A missing, `null` or empty-object config is an empty [`Config`].
///
/// Returns the normalised config and the warnings (unknown keys), or every problem found.
pub fn parse_config(value: &Value, at: &str) -> Result<(Config, Vec<String>), Vec<FieldError>> {
    parse_config_with(value, at, &Budget::new(Limits::default()))
}

/// [`parse_config`], decoding contents within `budget`.
pub fn parse_config_with(
    value: &Value,
    at: &str,
    budget: &Budget,
) -> Result<(Config, Vec<String>), Vec<FieldError>> {
    parse_config_pre(value, at, budget, None)
}

/// [`parse_config_with`] for a config whose `storage.files` were read and normalised while
/// the input was streamed ([`FileStream`]): `value` holds an empty list in their place.
pub(crate) fn parse_config_pre(
    value: &Value,
    at: &str,
    budget: &Budget,
    pre: Option<PreFiles>,
) -> Result<(Config, Vec<String>), Vec<FieldError>> {
    let obj = match value {
        Value::Null => return Ok((Config::default(), Vec::new())),
        Value::Object(o) if o.is_empty() => return Ok((Config::default(), Vec::new())),
        Value::Object(o) => o,
        other => {
            return Err(vec![FieldError::new(
                at,
                format!("expected an Ignition config object, got {}", kind_of(other)),
            )]);
        }
    };
    let version_at = join(at, "ignition.version");
    let version = match obj.get("ignition").and_then(|i| i.get("version")) {
        None | Some(Value::Null) => {
            return Err(vec![FieldError::new(version_at, "missing")]);
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(vec![FieldError::new(
                version_at,
                format!("expected a string, got {}", kind_of(other)),
            )]);
        }
    };
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return Err(vec![FieldError::new(
            version_at,
            format!("unsupported Ignition version {version:?} (3.0.0 to 3.6.0 are supported)"),
        )]);
    }

    // The crate's typed config of the declared version, deserialised straight from the value
    // (unknown keys collected as warnings), then back to a value holding only the keys that
    // version knows.
    let mut unknown: Vec<String> = Vec::new();
    let typed = match typed_value(value, &version, &mut unknown) {
        Ok(v) => v,
        Err(e) => return Err(vec![locate_structure_error(value, &version, at, &e)]),
    };
    let warnings = unknown
        .iter()
        .map(|p| format!("{}: unknown key, ignored", join(at, &crate_path(p))))
        .collect();

    let (pre_files, nodes) = match pre {
        Some(p) => (Some(p.files), p.nodes),
        None => (None, HashMap::new()),
    };
    let mut n = Normaliser {
        errors: Vec::new(),
        nodes,
        budget,
    };
    let mut config = n.config(&typed, value, &version, at);
    if let Some(files) = pre_files {
        config.files = files;
    }
    if n.errors.is_empty() {
        Ok((config, warnings))
    } else {
        Err(n.errors)
    }
}

/// Deserialises `value` as the `ignition-config` type of `version` (pushing the path of each
/// unknown key, `$.storage.files.0.foo`, to `unknown`) and serialises it back to a value.
fn typed_value(
    value: &Value,
    version: &str,
    unknown: &mut Vec<String>,
) -> Result<Value, serde_json::Error> {
    fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
        value: &Value,
        unknown: &mut Vec<String>,
    ) -> Result<Value, serde_json::Error> {
        let t: T = serde_ignored::deserialize(value, |path| unknown.push(path_string(&path)))?;
        serde_json::to_value(&t)
    }
    use ignition_config as ic;
    match version {
        "3.0.0" => typed::<ic::v3_0::Config>(value, unknown),
        "3.1.0" => typed::<ic::v3_1::Config>(value, unknown),
        "3.2.0" => typed::<ic::v3_2::Config>(value, unknown),
        "3.3.0" => typed::<ic::v3_3::Config>(value, unknown),
        "3.4.0" => typed::<ic::v3_4::Config>(value, unknown),
        "3.5.0" => typed::<ic::v3_5::Config>(value, unknown),
        _ => typed::<ic::v3_6::Config>(value, unknown),
    }
}

/// `$.a.0.b` for a `serde_ignored` path (no `?` for options).
fn path_string(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => "$".into(),
        Path::Seq { parent, index } => format!("{}.{index}", path_string(parent)),
        Path::Map { parent, key } => format!("{}.{key}", path_string(parent)),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_string(parent),
    }
}

/// Finds the field a structural error of the crate concerns by deserialising again with path
/// tracking, so the message names `spec.config.storage.files[0].mode` rather than a byte offset.
fn locate_structure_error(
    value: &Value,
    version: &str,
    at: &str,
    fallback: &serde_json::Error,
) -> FieldError {
    fn tracked<T: serde::de::DeserializeOwned>(v: &Value) -> Option<(String, String)> {
        serde_path_to_error::deserialize::<_, T>(v).err().map(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            (path, e.into_inner().to_string())
        })
    }
    use ignition_config as ic;
    let found = match version {
        "3.0.0" => tracked::<ic::v3_0::Config>(value),
        "3.1.0" => tracked::<ic::v3_1::Config>(value),
        "3.2.0" => tracked::<ic::v3_2::Config>(value),
        "3.3.0" => tracked::<ic::v3_3::Config>(value),
        "3.4.0" => tracked::<ic::v3_4::Config>(value),
        "3.5.0" => tracked::<ic::v3_5::Config>(value),
        _ => tracked::<ic::v3_6::Config>(value),
    };
    match found {
        Some((path, reason)) => {
            let mut reason = user_terms(&reason);
            if path.ends_with("mode") && reason.starts_with("expected an integer") {
                reason.push_str(" (a mode is a number, e.g. 420; in YAML also 0644, unquoted)");
            }
            FieldError::new(join(at, &path), reason)
        }
        None => FieldError::new(at, user_terms(&fallback.to_string())),
    }
}

/// `$.storage.files.0.foo` (the crate's warning path) → `storage.files[0].foo`.
fn crate_path(p: &str) -> String {
    let mut out = String::new();
    for seg in p
        .trim_start_matches('$')
        .split('.')
        .filter(|s| !s.is_empty())
    {
        if seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// A JSON type name for messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks that `path` is absolute and clean: no empty, `.` or `..` component, no trailing `/`,
/// and not `/` itself.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("path is empty".into());
    }
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not absolute"));
    }
    if path == "/" {
        return Err("\"/\" cannot be managed".into());
    }
    if path.contains('\0') {
        return Err(format!("{path:?} contains a NUL byte"));
    }
    if path.ends_with('/') {
        return Err(format!("{path:?} is not clean: trailing '/'"));
    }
    if path.contains("//") {
        return Err(format!("{path:?} is not clean: '//'"));
    }
    for comp in path[1..].split('/') {
        if comp == ".." || comp == "." {
            return Err(format!("{path:?} is not clean: '{comp}' component"));
        }
    }
    Ok(())
}

/// Decodes a `data:` URL: `data:[<media type>][;<param>=<value>]*[;base64],<data>`, the data
/// percent-encoded, or base64 when the last parameter is `base64`.
pub fn decode_data_url(url: &str) -> Result<Vec<u8>, String> {
    let rest = match url.get(..5) {
        Some(s) if s.eq_ignore_ascii_case("data:") => &url[5..],
        _ => return Err("not a data URL".into()),
    };
    let Some((header, payload)) = rest.split_once(',') else {
        return Err("invalid data URL: missing ','".into());
    };
    let mut parts = header.split(';');
    let media_type = parts.next().unwrap_or_default().trim();
    if !media_type.is_empty() {
        let valid = media_type
            .split_once('/')
            .is_some_and(|(t, s)| is_token(t) && is_token(s));
        if !valid {
            return Err(format!("invalid media type {media_type:?} in data URL"));
        }
    }
    let params: Vec<&str> = parts.collect();
    let base64 = params
        .last()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("base64"));
    let plain = if base64 {
        &params[..params.len() - 1]
    } else {
        &params[..]
    };
    for p in plain {
        if !p.contains('=') {
            return Err(format!("invalid parameter {p:?} in data URL"));
        }
    }
    // The common case, a plain base64 payload (no percent-encoding, no whitespace): decoded
    // straight from the URL. Anything else, or anything it refuses, takes the general path below
    // (which also words the error).
    if base64 && let Some(bytes) = decode_base64_plain(payload.as_bytes()) {
        return Ok(bytes);
    }
    if !base64 && !payload.contains('%') {
        return Ok(payload.as_bytes().to_vec());
    }
    let bytes = percent_decode_strict(payload)?;
    if !base64 {
        return Ok(bytes);
    }
    let cleaned: Vec<u8> = bytes
        .into_iter()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(&cleaned)
        .map_err(|_| "invalid base64 in data URL".to_string())
}

/// Decodes canonical base64 (padded, or unpadded) with the SIMD decoder; None when the input
/// holds anything else (percent-encoding, whitespace, invalid characters or trailing bits).
fn decode_base64_plain(b: &[u8]) -> Option<Vec<u8>> {
    let engine = if b.len().is_multiple_of(4) {
        base64_simd::STANDARD
    } else {
        base64_simd::STANDARD_NO_PAD
    };
    engine.decode_to_vec(b).ok()
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
}

/// Percent-decoding that refuses a `%` not followed by two hex digits.
fn percent_decode_strict(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok =
                b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err("invalid percent-encoding in data URL".into());
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(percent_encoding::percent_decode_str(s).collect())
}

/// Decodes a resource source: a `data:` URL, or `""` (empty contents). Remote schemes are refused.
pub fn decode_source(source: &str) -> Result<Vec<u8>, String> {
    if source.is_empty() {
        return Ok(Vec::new());
    }
    let scheme = source
        .split_once(':')
        .map(|(s, _)| s)
        .filter(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        })
        .map(str::to_ascii_lowercase);
    match scheme.as_deref() {
        Some("data") => decode_data_url(source),
        Some(s) if REMOTE_SCHEMES.contains(&s) => Err(format!(
            "remote source ({s}) is not allowed in a rendered config: contents must be a data URL"
        )),
        Some(s) => Err(format!(
            "unsupported source scheme {s:?}: contents must be a data URL"
        )),
        None => Err("source is not a URL: contents must be a data URL".into()),
    }
}

/// Inflates `data`, stopping as soon as the result would exceed `cap` bytes (`Ok(None)`).
fn gunzip(data: impl std::io::Read, cap: u64) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("invalid gzip data: {e}"))?;
    out.shrink_to_fit();
    Ok((out.len() as u64 <= cap).then_some(out))
}

/// Checks `verification.hash` (`sha256-<hex>` or `sha512-<hex>`) against the decoded contents.
fn verify_hash(hash: &str, data: &[u8]) -> Result<(), String> {
    use sha2::Digest as _;
    let (func, want) = hash
        .split_once('-')
        .ok_or_else(|| format!("hash {hash:?} is not <function>-<hex>"))?;
    let got = match func {
        "sha256" => hex::encode(sha2::Sha256::digest(data)),
        "sha512" => hex::encode(sha2::Sha512::digest(data)),
        other => {
            return Err(format!(
                "unsupported hash function {other:?} (sha256 or sha512)"
            ));
        }
    };
    if got.eq_ignore_ascii_case(want) {
        Ok(())
    } else {
        Err(format!("contents do not match: expected {want}, got {got}"))
    }
}

/// True for `null`, `[]`, `{}` and objects whose values are all empty.
fn is_empty_json(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty_json),
        _ => false,
    }
}

/// `storage.files[]` exactly as every Ignition 3.x version declares it (3.0.0's
/// `FileContents` and later versions' `Resource` without `httpHeaders`, which 3.0.0 lacks): the
/// streamed form of a file. Any other key, or a value of another type, fails it, and loading
/// then takes the general path, which says what is wrong.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamedFile {
    path: String,
    #[serde(default)]
    contents: Option<StreamedResource>,
    #[serde(default)]
    append: Option<Vec<StreamedResource>>,
    #[serde(default)]
    mode: Option<i64>,
    #[serde(default)]
    overwrite: Option<bool>,
    #[serde(default)]
    user: Option<StreamedOwner>,
    #[serde(default)]
    group: Option<StreamedOwner>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamedResource {
    #[serde(default)]
    compression: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    verification: Option<StreamedVerification>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamedVerification {
    #[serde(default)]
    hash: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamedOwner {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    name: Option<String>,
}

impl StreamedResource {
    fn into_value(self) -> Value {
        let mut m = Map::new();
        put(&mut m, "compression", self.compression);
        put(&mut m, "source", self.source);
        if let Some(v) = self.verification {
            m.insert("verification".into(), json!({ "hash": v.hash }));
        }
        Value::Object(m)
    }
}

impl StreamedOwner {
    fn into_value(self) -> Value {
        json!({ "id": self.id, "name": self.name })
    }
}

impl StreamedFile {
    /// The file as the typed config serialised back shows it to [`Normaliser::file`].
    fn into_value(self) -> Value {
        let mut m = Map::new();
        m.insert("path".into(), self.path.into());
        put(
            &mut m,
            "contents",
            self.contents.map(StreamedResource::into_value),
        );
        if let Some(a) = self.append {
            let a: Vec<Value> = a.into_iter().map(StreamedResource::into_value).collect();
            m.insert("append".into(), a.into());
        }
        put(&mut m, "mode", self.mode);
        put(&mut m, "overwrite", self.overwrite);
        put(&mut m, "user", self.user.map(StreamedOwner::into_value));
        put(&mut m, "group", self.group.map(StreamedOwner::into_value));
        Value::Object(m)
    }
}

/// The `storage.files` of one config normalised as they were read ([`FileStream`]).
#[derive(Debug, Default)]
pub(crate) struct PreFiles {
    files: Vec<File>,
    /// The paths seen, for the duplicate checks of the directories and links that follow.
    nodes: HashMap<String, String>,
}

/// Normalises the files of one config's `storage.files` one at a time as the input is read,
/// so that only their decoded contents are held, never their source text nor a JSON tree of
/// them. Stops at the first problem: loading then takes the general path, which reports
/// every problem of the input in its usual order.
pub(crate) struct FileStream<'b> {
    n: Normaliser<'b>,
    /// The field path of the config (`spec.config`), for the files' field paths.
    at: String,
    files: Vec<File>,
}

impl<'b> FileStream<'b> {
    pub(crate) fn new(at: &str, budget: &'b Budget) -> Self {
        FileStream {
            n: Normaliser {
                errors: Vec::new(),
                nodes: HashMap::new(),
                budget,
            },
            at: join(at, "storage"),
            files: Vec::new(),
        }
    }

    /// Normalises the next file; false when it has a problem.
    pub(crate) fn push(&mut self, f: StreamedFile) -> bool {
        let p = join(&self.at, &format!("files[{}]", self.files.len()));
        let mut file = self.n.file(&f.into_value(), &p);
        if let Some(keep) = self.n.budget.thin_keep()
            && !keep.contains(&file.path.as_str())
        {
            match self.n.budget.spool() {
                // A file the spool cannot take (its disk full) stays whole.
                Some(spool) => {
                    let _ = file.spool(spool);
                }
                None => file.thin(),
            }
        }
        self.files.push(file);
        self.n.errors.is_empty()
    }

    pub(crate) fn finish(mut self) -> PreFiles {
        self.files.shrink_to_fit();
        PreFiles {
            files: self.files,
            nodes: self.n.nodes,
        }
    }
}

/// Walks the typed config and collects every problem.
struct Normaliser<'b> {
    errors: Vec<FieldError>,
    /// Storage paths already seen (files, directories, links share one key space) → field path.
    nodes: HashMap<String, String>,
    /// What decoded contents may still use.
    budget: &'b Budget,
}

impl Normaliser<'_> {
    fn err(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError::new(path, reason));
    }

    fn config(&mut self, typed: &Value, original: &Value, version: &str, at: &str) -> Config {
        let mut c = Config {
            version: version.to_string(),
            ..Config::default()
        };
        let storage = &typed["storage"];
        let storage_at = join(at, "storage");
        for (i, f) in array(&storage["files"]).iter().enumerate() {
            let p = join(&storage_at, &format!("files[{i}]"));
            c.files.push(self.file(f, &p));
        }
        for (i, d) in array(&storage["directories"]).iter().enumerate() {
            let p = join(&storage_at, &format!("directories[{i}]"));
            let path = self.node_path(d, &p);
            c.directories.push(Directory {
                path,
                mode: self.mode(&d["mode"], &join(&p, "mode")),
                user: self.owner(&d["user"], &join(&p, "user")),
                group: self.owner(&d["group"], &join(&p, "group")),
                overwrite: d["overwrite"].as_bool(),
            });
        }
        for (i, l) in array(&storage["links"]).iter().enumerate() {
            let p = join(&storage_at, &format!("links[{i}]"));
            let path = self.node_path(l, &p);
            let target = l["target"].as_str().map(str::to_string);
            if target.as_deref() == Some("") {
                self.err(join(&p, "target"), "link target is empty");
            }
            c.links.push(Link {
                path,
                target,
                hard: l["hard"].as_bool(),
                user: self.owner(&l["user"], &join(&p, "user")),
                group: self.owner(&l["group"], &join(&p, "group")),
                overwrite: l["overwrite"].as_bool(),
            });
        }
        let kept = |v: &Value| (!is_empty_json(v)).then(|| v.clone());
        c.disks = kept(&original["storage"]["disks"]);
        c.filesystems = kept(&original["storage"]["filesystems"]);
        c.raid = kept(&original["storage"]["raid"]);
        c.luks = kept(&original["storage"]["luks"]);
        c.ignition_kernel_arguments = kept(&original["kernelArguments"]);

        let mut unit_names = HashMap::new();
        for (i, u) in array(&typed["systemd"]["units"]).iter().enumerate() {
            let p = join(at, &format!("systemd.units[{i}]"));
            let unit = self.unit(u, &p);
            if let Some(first) = unit_names.insert(unit.name.clone(), p.clone()) {
                self.err(
                    join(&p, "name"),
                    format!("duplicate unit {:?} (also {first})", unit.name),
                );
            }
            c.units.push(unit);
        }

        let mut user_names = HashMap::new();
        for (i, u) in array(&typed["passwd"]["users"]).iter().enumerate() {
            let p = join(at, &format!("passwd.users[{i}]"));
            let user = self.user(u, &p);
            if let Some(first) = user_names.insert(user.name.clone(), p.clone()) {
                self.err(
                    join(&p, "name"),
                    format!("duplicate user {:?} (also {first})", user.name),
                );
            }
            c.users.push(user);
        }
        let mut group_names = HashMap::new();
        for (i, g) in array(&typed["passwd"]["groups"]).iter().enumerate() {
            let p = join(at, &format!("passwd.groups[{i}]"));
            let name = g["name"].as_str().unwrap_or_default().to_string();
            if name.is_empty() {
                self.err(join(&p, "name"), "group name is empty");
            }
            if let Some(first) = group_names.insert(name.clone(), p.clone()) {
                self.err(
                    join(&p, "name"),
                    format!("duplicate group {name:?} (also {first})"),
                );
            }
            c.groups.push(Group {
                name,
                fields: other_fields(g, &["name"]),
            });
        }
        c
    }

    /// Reads and validates the `path` of a file, directory or link; refuses a path seen before.
    fn node_path(&mut self, node: &Value, p: &str) -> String {
        let path = node["path"].as_str().unwrap_or_default().to_string();
        let field = join(p, "path");
        if let Err(reason) = check_path(&path) {
            self.err(field, reason);
        } else if let Some(first) = self.nodes.insert(path.clone(), p.to_string()) {
            self.err(field, format!("duplicate path {path:?} (also {first})"));
        }
        path
    }

    fn file(&mut self, f: &Value, p: &str) -> File {
        let path = self.node_path(f, p);
        let contents = self.resource(&f["contents"], &join(p, "contents"));
        let append = array(&f["append"]);
        for (j, a) in append.iter().enumerate() {
            self.resource(a, &join(p, &format!("append[{j}]")));
        }
        File {
            path,
            contents,
            mode: self.mode(&f["mode"], &join(p, "mode")),
            user: self.owner(&f["user"], &join(p, "user")),
            group: self.owner(&f["group"], &join(p, "group")),
            overwrite: f["overwrite"].as_bool(),
            has_append: !append.is_empty(),
            digest: None,
        }
    }

    /// Says that the resource at `p` exceeds a limit (the total only once).
    fn too_big(&mut self, p: &str, what: &str) {
        // None: already said for an earlier file (the config is refused all the same).
        if let Some(reason) = self.budget.exceeded(what) {
            self.err(join(p, "source"), reason);
        }
    }

    /// Decodes a resource (`contents` or an `append` entry); `None` when it has no source.
    fn resource(&mut self, r: &Value, p: &str) -> Option<Vec<u8>> {
        let source = r["source"].as_str()?;
        let room = self.budget.room();
        let compression = r["compression"].as_str().unwrap_or_default();
        // A data URL decodes to at least a third of its length (`%XX` is one byte): one that
        // long cannot fit, and is refused before any buffer is allocated for it.
        if compression.is_empty() && source.len() as u64 / 3 > room.saturating_add(3) {
            self.too_big(p, "decoded");
            return None;
        }
        let raw = match decode_source(source) {
            Ok(b) => b,
            Err(reason) => {
                self.err(join(p, "source"), reason);
                return None;
            }
        };
        let data = match compression {
            "" => {
                if raw.len() as u64 > room {
                    self.too_big(p, "decoded");
                    return None;
                }
                raw
            }
            "gzip" => match gunzip(raw.as_slice(), room) {
                Ok(Some(d)) => d,
                Ok(None) => {
                    self.too_big(p, "decompressed");
                    return None;
                }
                Err(reason) => {
                    self.err(join(p, "source"), reason);
                    return None;
                }
            },
            other => {
                self.err(
                    join(p, "compression"),
                    format!("unsupported compression {other:?} (only gzip or none)"),
                );
                return None;
            }
        };
        self.budget.spend(data.len() as u64);
        if let Some(hash) = r["verification"]["hash"].as_str()
            && let Err(reason) = verify_hash(hash, &data)
        {
            self.err(join(p, "verification.hash"), reason);
        }
        Some(data)
    }

    fn mode(&mut self, m: &Value, p: &str) -> Option<u32> {
        let m = m.as_i64()?;
        if (0..=0o777).contains(&m) {
            Some(m as u32)
        } else {
            let shown = if m < 0 {
                m.to_string()
            } else {
                format!("{m:#o} ({m})")
            };
            self.err(
                p,
                format!("mode {shown} is out of range: permission bits 0 to 0o777 only"),
            );
            None
        }
    }

    fn owner(&mut self, o: &Value, p: &str) -> Option<Owner> {
        let id = o["id"].as_i64();
        let name = o["name"].as_str().filter(|s| !s.is_empty());
        match (id, name) {
            (Some(_), Some(_)) => {
                self.err(p, "id and name are both set; give one");
                None
            }
            (Some(id), None) => match u32::try_from(id) {
                Ok(id) => Some(Owner::Id(id)),
                Err(_) => {
                    self.err(join(p, "id"), format!("id {id} is out of range"));
                    None
                }
            },
            (None, Some(name)) => Some(Owner::Name(name.to_string())),
            (None, None) => None,
        }
    }

    fn unit(&mut self, u: &Value, p: &str) -> Unit {
        let name = u["name"].as_str().unwrap_or_default().to_string();
        if name.is_empty() {
            self.err(join(p, "name"), "unit name is empty");
        } else if name.contains('/') {
            self.err(join(p, "name"), format!("unit name {name:?} contains '/'"));
        } else if !UNIT_SUFFIXES
            .iter()
            .any(|s| name.ends_with(s) && name.len() > s.len())
        {
            self.err(
                join(p, "name"),
                format!("unit name {name:?} has no valid unit type suffix (.service, .timer, ...)"),
            );
        }
        let mut dropins = Vec::new();
        let mut seen = HashMap::new();
        for (j, d) in array(&u["dropins"]).iter().enumerate() {
            let dp = join(p, &format!("dropins[{j}]"));
            let dname = d["name"].as_str().unwrap_or_default().to_string();
            if dname.is_empty() {
                self.err(join(&dp, "name"), "dropin name is empty");
            } else if dname.contains('/') {
                self.err(
                    join(&dp, "name"),
                    format!("dropin name {dname:?} contains '/'"),
                );
            } else if !dname.ends_with(".conf") || dname == ".conf" {
                self.err(
                    join(&dp, "name"),
                    format!("dropin name {dname:?} must end in .conf"),
                );
            } else if let Some(first) = seen.insert(dname.clone(), dp.clone()) {
                self.err(
                    join(&dp, "name"),
                    format!("duplicate dropin {dname:?} (also {first})"),
                );
            }
            dropins.push(Dropin {
                name: dname,
                contents: d["contents"].as_str().map(str::to_string),
            });
        }
        Unit {
            name,
            contents: u["contents"].as_str().map(str::to_string),
            enabled: u["enabled"].as_bool(),
            mask: u["mask"].as_bool(),
            dropins,
        }
    }

    fn user(&mut self, u: &Value, p: &str) -> User {
        let name = u["name"].as_str().unwrap_or_default().to_string();
        if name.is_empty() {
            self.err(join(p, "name"), "user name is empty");
        }
        User {
            name,
            ssh_authorized_keys: array(&u["sshAuthorizedKeys"])
                .iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect(),
            password_hash: u["passwordHash"].as_str().map(str::to_string),
            other_fields: other_fields(u, &["name", "sshAuthorizedKeys", "passwordHash"]),
        }
    }
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The non-null fields of `obj` other than `except`, sorted by name.
fn other_fields(obj: &Value, except: &[&str]) -> std::collections::BTreeMap<String, Value> {
    obj.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| !v.is_null() && !except.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `data:;base64,<contents>`: how emitted configs carry contents (uncompressed).
pub fn data_url(contents: &[u8]) -> String {
    format!(
        "data:;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(contents)
    )
}

fn owner_json(o: &Owner) -> Value {
    match o {
        Owner::Id(id) => json!({ "id": id }),
        Owner::Name(name) => json!({ "name": name }),
    }
}

fn put<T: Into<Value>>(m: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(key.to_string(), v.into());
    }
}

/// Emits `config` as an Ignition 3.5.0 config: only set fields, contents as uncompressed
/// `data:;base64,` URLs. A file with `has_append` gets one empty `append` entry, so that the flag
/// survives a round trip (the appended data itself is not part of the model).
pub fn to_ignition_json(config: &Config) -> Value {
    ignition_value(config, true)
}

/// [`to_ignition_json`]; with `files` false, a non-empty `storage.files` is left as a `null`
/// placeholder (in its place) for [`write_machine_config_json`] to stream.
fn ignition_value(config: &Config, files: bool) -> Value {
    let mut root = Map::new();
    root.insert("ignition".into(), json!({ "version": EMIT_VERSION }));
    put(
        &mut root,
        "kernelArguments",
        config.ignition_kernel_arguments.clone(),
    );

    let mut passwd = Map::new();
    if !config.users.is_empty() {
        let users = config.users.iter().map(|u| {
            let mut m = Map::new();
            m.insert("name".into(), u.name.clone().into());
            if !u.ssh_authorized_keys.is_empty() {
                m.insert(
                    "sshAuthorizedKeys".into(),
                    u.ssh_authorized_keys.clone().into(),
                );
            }
            put(&mut m, "passwordHash", u.password_hash.clone());
            for (k, v) in &u.other_fields {
                m.insert(k.clone(), v.clone());
            }
            Value::Object(m)
        });
        passwd.insert("users".into(), users.collect());
    }
    if !config.groups.is_empty() {
        let groups = config.groups.iter().map(|g| {
            let mut m = Map::new();
            m.insert("name".into(), g.name.clone().into());
            for (k, v) in &g.fields {
                m.insert(k.clone(), v.clone());
            }
            Value::Object(m)
        });
        passwd.insert("groups".into(), groups.collect());
    }
    if !passwd.is_empty() {
        root.insert("passwd".into(), Value::Object(passwd));
    }

    let mut storage = Map::new();
    put(&mut storage, "disks", config.disks.clone());
    if !config.directories.is_empty() {
        let dirs = config.directories.iter().map(|d| {
            let mut m = Map::new();
            m.insert("path".into(), d.path.clone().into());
            put(&mut m, "mode", d.mode);
            put(&mut m, "user", d.user.as_ref().map(owner_json));
            put(&mut m, "group", d.group.as_ref().map(owner_json));
            put(&mut m, "overwrite", d.overwrite);
            Value::Object(m)
        });
        storage.insert("directories".into(), dirs.collect());
    }
    if !config.files.is_empty() && !files {
        storage.insert("files".into(), Value::Null);
    } else if !config.files.is_empty() {
        let files = config.files.iter().map(|f| {
            assert!(!f.is_thin(), "the thin file {} was emitted", f.path);
            // A spooled config is only ever streamed ([`write_machine_config_json`]).
            assert!(!f.is_spooled(), "the spooled file {} was emitted", f.path);
            let mut m = Map::new();
            m.insert("path".into(), f.path.clone().into());
            put(
                &mut m,
                "contents",
                f.contents
                    .as_ref()
                    .map(|c| json!({ "source": data_url(c) })),
            );
            if f.has_append {
                m.insert("append".into(), json!([{ "source": "data:," }]));
            }
            put(&mut m, "mode", f.mode);
            put(&mut m, "user", f.user.as_ref().map(owner_json));
            put(&mut m, "group", f.group.as_ref().map(owner_json));
            put(&mut m, "overwrite", f.overwrite);
            Value::Object(m)
        });
        storage.insert("files".into(), files.collect());
    }
    put(&mut storage, "filesystems", config.filesystems.clone());
    if !config.links.is_empty() {
        let links = config.links.iter().map(|l| {
            let mut m = Map::new();
            m.insert("path".into(), l.path.clone().into());
            put(&mut m, "target", l.target.clone());
            put(&mut m, "hard", l.hard);
            put(&mut m, "user", l.user.as_ref().map(owner_json));
            put(&mut m, "group", l.group.as_ref().map(owner_json));
            put(&mut m, "overwrite", l.overwrite);
            Value::Object(m)
        });
        storage.insert("links".into(), links.collect());
    }
    put(&mut storage, "luks", config.luks.clone());
    put(&mut storage, "raid", config.raid.clone());
    if !storage.is_empty() {
        root.insert("storage".into(), Value::Object(storage));
    }

    if !config.units.is_empty() {
        let units = config.units.iter().map(|u| {
            let mut m = Map::new();
            m.insert("name".into(), u.name.clone().into());
            put(&mut m, "contents", u.contents.clone());
            put(&mut m, "enabled", u.enabled);
            put(&mut m, "mask", u.mask);
            if !u.dropins.is_empty() {
                let dropins = u.dropins.iter().map(|d| {
                    let mut dm = Map::new();
                    dm.insert("name".into(), d.name.clone().into());
                    put(&mut dm, "contents", d.contents.clone());
                    Value::Object(dm)
                });
                m.insert("dropins".into(), dropins.collect());
            }
            Value::Object(m)
        });
        root.insert(
            "systemd".into(),
            json!({ "units": units.collect::<Vec<_>>() }),
        );
    }
    Value::Object(root)
}

/// Emits a MachineConfig as the API object: `apiVersion`, `kind`, `metadata` (name, labels when
/// any) and `spec` (config as Ignition 3.5.0, kernelArguments, kernelType when set, extensions,
/// fips, osImageURL). This is the shape stored as `currentconfig` and printed by `render`.
pub fn machine_config_to_json(mc: &MachineConfig) -> Value {
    machine_config_value(mc, true)
}

fn machine_config_value(mc: &MachineConfig, files: bool) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), mc.name.clone().into());
    if !mc.labels.is_empty() {
        metadata.insert("labels".into(), json!(mc.labels));
    }
    let s = &mc.spec;
    let mut spec = Map::new();
    spec.insert("config".into(), ignition_value(&s.config, files));
    spec.insert("kernelArguments".into(), json!(s.kernel_arguments));
    put(&mut spec, "kernelType", s.kernel_type.clone());
    spec.insert("extensions".into(), json!(s.extensions));
    spec.insert("fips".into(), s.fips.into());
    spec.insert("osImageURL".into(), s.os_image_url.clone().into());
    json!({
        "apiVersion": MC_API_VERSION,
        "kind": MC_KIND,
        "metadata": Value::Object(metadata),
        "spec": Value::Object(spec),
    })
}

/// Writes [`machine_config_to_json`]`(mc)` as pretty JSON: exactly the bytes
/// `serde_json::to_writer_pretty(w, &machine_config_to_json(mc))` writes, without building the
/// `Value` of `storage.files` (the bulk of a large config): each file is emitted into a buffer
/// (its contents base64-encoded straight into it), handed to `w` a megabyte at a time.
///
/// Everything else (small) is still built as a `Value` and serialised by serde_json, re-indented
/// to its depth (pretty JSON never holds a raw newline inside a string, so inserting the indent
/// after each newline is exact).
pub fn write_machine_config_json<W: std::io::Write + ?Sized>(
    mc: &MachineConfig,
    w: &mut W,
) -> std::io::Result<()> {
    let mut e = Emitter {
        out: Vec::with_capacity(FLUSH_AT + 64 * 1024),
        sink: Some(w),
        files: &mc.spec.config.files,
    };
    e.emit(mc)?;
    e.flush()
}

/// [`write_machine_config_json`] into memory: `capacity` is a guess of the size (a good one
/// saves copying a large config as the buffer grows).
pub fn machine_config_json_bytes(mc: &MachineConfig, capacity: usize) -> Vec<u8> {
    let mut e: Emitter<'_, std::io::Sink> = Emitter {
        out: Vec::with_capacity(capacity),
        sink: None,
        files: &mc.spec.config.files,
    };
    e.emit(mc).expect("writing to memory");
    e.out
}

/// The emitter's buffer is handed to its writer once it holds this much.
const FLUSH_AT: usize = 1024 * 1024;

struct Emitter<'a, W: std::io::Write + ?Sized> {
    /// Everything is written here first (no dynamic call, no error, per piece).
    out: Vec<u8>,
    /// Where `out` goes (None: the caller takes `out` at the end).
    sink: Option<&'a mut W>,
    files: &'a [File],
}

impl<W: std::io::Write + ?Sized> Emitter<'_, W> {
    fn emit(&mut self, mc: &MachineConfig) -> std::io::Result<()> {
        let v = machine_config_value(mc, false);
        self.node(&v, 0, &["spec", "config", "storage", "files"])
    }

    /// Hands what is buffered to the writer (nothing without one).
    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.sink.as_mut() {
            w.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    fn indent(&mut self, level: usize) -> std::io::Result<()> {
        const SPACES: &[u8] = &[b' '; 64];
        let mut n = 2 * level;
        while n > 0 {
            let k = n.min(SPACES.len());
            self.out.write_all(&SPACES[..k])?;
            n -= k;
        }
        Ok(())
    }

    /// `,\n` (or `\n` for the first member) and the indent of a member at `level`.
    fn sep(&mut self, first: bool, level: usize) -> std::io::Result<()> {
        self.out.write_all(if first { b"\n" } else { b",\n" })?;
        self.indent(level)
    }

    fn close(&mut self, level: usize, c: &[u8]) -> std::io::Result<()> {
        self.out.write_all(b"\n")?;
        self.indent(level)?;
        self.out.write_all(c)
    }

    fn string(&mut self, s: &str) -> std::io::Result<()> {
        // serde_json escapes only control characters, `"` and `\\`: without any, the string is
        // written as is.
        if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.out.write_all(b"\"")?;
            self.out.write_all(s.as_bytes())?;
            return self.out.write_all(b"\"");
        }
        serde_json::to_writer(&mut self.out, s).map_err(std::io::Error::from)
    }

    fn key(&mut self, first: bool, level: usize, key: &str) -> std::io::Result<()> {
        self.sep(first, level)?;
        self.string(key)?;
        self.out.write_all(b": ")
    }

    /// A value at `level` whose first line is already indented, the way serde_json's pretty
    /// printer writes it.
    fn leaf(&mut self, v: &Value, level: usize) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(v).map_err(std::io::Error::from)?;
        let mut lines = text.split(|b| *b == b'\n');
        if let Some(l) = lines.next() {
            self.out.write_all(l)?;
        }
        for l in lines {
            self.out.write_all(b"\n")?;
            self.indent(level)?;
            self.out.write_all(l)?;
        }
        Ok(())
    }

    /// `v` at `level`; `hook` is the key path (below `v`) of the `files` placeholder.
    fn node(&mut self, v: &Value, level: usize, hook: &[&str]) -> std::io::Result<()> {
        let Some((first_key, rest)) = hook.split_first() else {
            return self.leaf(v, level);
        };
        let Value::Object(m) = v else {
            return self.leaf(v, level);
        };
        if m.is_empty() {
            return self.leaf(v, level);
        }
        self.out.write_all(b"{")?;
        for (i, (k, val)) in m.iter().enumerate() {
            self.key(i == 0, level + 1, k)?;
            if k == first_key && rest.is_empty() && val.is_null() {
                self.files(level + 1)?;
            } else if k == first_key {
                self.node(val, level + 1, rest)?;
            } else {
                self.leaf(val, level + 1)?;
            }
        }
        self.close(level, b"}")
    }

    fn owner(&mut self, o: &Owner, level: usize) -> std::io::Result<()> {
        self.out.write_all(b"{")?;
        match o {
            Owner::Id(id) => {
                self.key(true, level + 1, "id")?;
                write!(self.out, "{id}")?;
            }
            Owner::Name(name) => {
                self.key(true, level + 1, "name")?;
                self.string(name)?;
            }
        }
        self.close(level, b"}")
    }

    /// The `files` array at `level`, member for member as [`to_ignition_json`] builds it.
    fn files(&mut self, level: usize) -> std::io::Result<()> {
        let files = self.files;
        self.out.write_all(b"[")?;
        for (i, f) in files.iter().enumerate() {
            // A thin config (its contents read as digests, for a comparison) is never emitted:
            // it would say the files are empty.
            assert!(!f.is_thin(), "the thin file {} was emitted", f.path);
            let l = level + 2;
            self.sep(i == 0, level + 1)?;
            self.out.write_all(b"{")?;
            self.key(true, l, "path")?;
            self.string(&f.path)?;
            if f.has_contents() {
                // Read back one file at a time when spooled.
                let c = f.contents_bytes()?;
                self.key(false, l, "contents")?;
                self.out.write_all(b"{")?;
                self.key(true, l + 1, "source")?;
                self.out.write_all(b"\"data:;base64,")?;
                base64_simd::STANDARD.encode_append(&c, &mut self.out);
                self.out.write_all(b"\"")?;
                self.close(l, b"}")?;
            }
            if f.has_append {
                self.key(false, l, "append")?;
                self.out.write_all(b"[")?;
                self.sep(true, l + 1)?;
                self.out.write_all(b"{")?;
                self.key(true, l + 2, "source")?;
                self.out.write_all(b"\"data:,\"")?;
                self.close(l + 1, b"}")?;
                self.close(l, b"]")?;
            }
            if let Some(mode) = f.mode {
                self.key(false, l, "mode")?;
                write!(self.out, "{mode}")?;
            }
            if let Some(o) = &f.user {
                self.key(false, l, "user")?;
                self.owner(o, l)?;
            }
            if let Some(o) = &f.group {
                self.key(false, l, "group")?;
                self.owner(o, l)?;
            }
            if let Some(b) = f.overwrite {
                self.key(false, l, "overwrite")?;
                self.out.write_all(if b { b"true" } else { b"false" })?;
            }
            self.close(level + 1, b"}")?;
            if self.out.len() >= FLUSH_AT {
                self.flush()?;
            }
        }
        self.close(level, b"]")
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    /// A reader that counts what is read from it.
    struct Counting<'a> {
        data: &'a [u8],
        read: &'a std::cell::Cell<usize>,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.data.read(buf)?;
            self.read.set(self.read.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn gunzip_stops_reading_at_the_cap() {
        // Stored, not compressed: as many bytes in as out, so what was read shows where the
        // decoder stopped.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        for _ in 0..16 {
            e.write_all(&[0u8; 1 << 20]).unwrap();
        }
        let gz = e.finish().unwrap();
        let read = std::cell::Cell::new(0);
        let input = Counting {
            data: &gz,
            read: &read,
        };
        // 16 MiB; the cap is 1 MiB.
        assert_eq!(super::gunzip(input, 1 << 20), Ok(None));
        assert!(
            read.get() < gz.len() / 4,
            "read {} of {} compressed bytes",
            read.get(),
            gz.len()
        );
    }
}
