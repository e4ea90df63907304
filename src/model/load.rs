//! Reading MachineConfigs from bytes, files and directories.
//!
//! Accepted documents (JSON or YAML, told apart by content, not by file extension):
//! - a `MachineConfig` (`machineconfiguration.openshift.io/v1`);
//! - a `v1` `List` (or a `MachineConfigList`) of MachineConfigs;
//! - a bare Ignition config, wrapped as a MachineConfig named after the file stem.
//!
//! YAML may hold several documents (`---`). YAML is read the way the cluster's own tools read it
//! (YAML 1.1 scalars: `0644` is octal, `yes` is a boolean), so a file means the same here as after
//! `oc apply`. Every problem of an input is reported at once, each naming its origin and field.

use super::config::{MC_API_VERSION, MC_KIND, MachineConfig, MachineConfigSpec};
use super::error::{FieldError, LoadErrors};
use super::ignition::{join, kind_of};
use serde_json::{Map, Value};
use std::path::Path;

pub use super::ignition::machine_config_to_json;

pub use super::config::ROLE_LABEL;

/// Kernel types a MachineConfig may ask for.
pub const KERNEL_TYPES: &[&str] = &["default", "realtime", "64k-pages"];

/// Keys of `spec` that upstream defines and this daemon has no use for: accepted silently.
const IGNORED_SPEC_KEYS: &[&str] = &["baseOSExtensionsContainerImage"];

/// MachineConfigs read from one or more inputs, with the warnings (unknown keys) met on the way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub configs: Vec<MachineConfig>,
    pub warnings: Vec<String>,
}

/// Parses every MachineConfig in `bytes`. `origin` (usually the file name) prefixes messages and
/// names a bare Ignition config (its file stem).
pub fn parse_machine_configs(bytes: &[u8], origin: &str) -> Result<Loaded, LoadErrors> {
    let docs = parse_documents(bytes).map_err(|reason| LoadErrors::single(origin, reason))?;
    if docs.is_empty() {
        return Err(LoadErrors::single(origin, "empty input: no MachineConfig"));
    }
    let mut loaded = Loaded::default();
    let mut errors = Vec::new();
    let several = docs.len() > 1;
    for (d, doc) in docs.iter().enumerate() {
        let doc_origin = if several {
            format!("{origin} (document {})", d + 1)
        } else {
            origin.to_string()
        };
        let mut warnings = Vec::new();
        match document(doc, origin, &mut warnings) {
            Ok(configs) => loaded.configs.extend(configs),
            Err(errs) => errors.extend(errs.into_iter().map(|e| e.with_origin(&doc_origin))),
        }
        loaded
            .warnings
            .extend(warnings.into_iter().map(|w| prefix(&doc_origin, &w)));
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(LoadErrors::new(errors))
    }
}

fn prefix(origin: &str, message: &str) -> String {
    if origin.is_empty() {
        message.to_string()
    } else {
        format!("{origin}: {message}")
    }
}

/// Reads `path`: a file, or a directory's `*.json`, `*.yaml` and `*.yml` files (sorted by name,
/// not recursive). Problems of every file are reported together.
pub fn load_path(path: &Path) -> Result<Loaded, LoadErrors> {
    let origin = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| LoadErrors::single(&origin, format!("cannot read: {e}")))?;
    if !meta.is_dir() {
        let bytes = std::fs::read(path)
            .map_err(|e| LoadErrors::single(&origin, format!("cannot read: {e}")))?;
        return parse_machine_configs(&bytes, &origin);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| LoadErrors::single(&origin, format!("cannot read directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| LoadErrors::single(&origin, format!("cannot read directory: {e}")))?;
        let p = entry.path();
        let wanted = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "json" | "yaml" | "yml"));
        if wanted && p.is_file() {
            files.push(p);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut loaded = Loaded::default();
    let mut errors: Option<LoadErrors> = None;
    for f in files {
        match load_path(&f) {
            Ok(l) => {
                loaded.configs.extend(l.configs);
                loaded.warnings.extend(l.warnings);
            }
            Err(e) => match &mut errors {
                Some(all) => all.extend(e),
                None => errors = Some(e),
            },
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(loaded),
    }
}

/// The MachineConfig a command argument stands for: a file holding exactly one MachineConfig is
/// used as it is; a directory, or a file with several, is rendered for `pool`.
pub fn load_config_arg(
    path: &Path,
    pool: &str,
) -> Result<(MachineConfig, Vec<String>), LoadErrors> {
    let origin = path.display().to_string();
    let mut loaded = load_path(path)?;
    if loaded.configs.is_empty() {
        return Err(LoadErrors::single(&origin, "no MachineConfig found"));
    }
    if !path.is_dir() && loaded.configs.len() == 1 {
        let mc = loaded.configs.pop().unwrap_or_default();
        return Ok((mc, loaded.warnings));
    }
    super::render::render(pool, &loaded.configs)
        .map(|mc| (mc, loaded.warnings))
        .map_err(|e| LoadErrors::single(&origin, e.to_string()))
}

/// Splits `bytes` into documents: JSON when the first non-blank character is `{` or `[`,
/// otherwise YAML (possibly several documents; empty ones are skipped).
fn parse_documents(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{') | Some(b'[')) {
        return serde_json::from_slice::<Value>(bytes)
            .map(|v| vec![v])
            .map_err(|e| format!("invalid JSON: {e}"));
    }
    if first.is_none() {
        return Ok(Vec::new());
    }
    let options = serde_saphyr::options! {
        legacy_octal_numbers: true,
        with_snippet: false,
    };
    serde_saphyr::from_slice_multiple_with_options::<Value>(bytes, options)
        .map(|docs| docs.into_iter().filter(|d| !d.is_null()).collect())
        .map_err(|e| format!("invalid YAML: {e}"))
}

/// One document → its MachineConfigs.
fn document(
    doc: &Value,
    origin: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<MachineConfig>, Vec<FieldError>> {
    let Value::Object(obj) = doc else {
        return Err(vec![FieldError::new(
            "",
            format!(
                "expected a MachineConfig, a List or an Ignition config (an object), got {}",
                kind_of(doc)
            ),
        )]);
    };
    let kind = obj.get("kind").and_then(Value::as_str);
    let api = obj.get("apiVersion");
    match kind {
        None if api.is_none() && obj.contains_key("ignition") => {
            let (config, w) = super::ignition::parse_config(doc, "")?;
            warnings.extend(w);
            let name = Path::new(origin)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "ignition".to_string());
            Ok(vec![MachineConfig {
                name,
                labels: Default::default(),
                spec: MachineConfigSpec {
                    config,
                    ..Default::default()
                },
            }])
        }
        Some("List") | Some("MachineConfigList") => {
            let want_api = if kind == Some("List") {
                "v1"
            } else {
                MC_API_VERSION
            };
            let mut errors = Vec::new();
            check_string(obj, "apiVersion", want_api, "", &mut errors);
            let items = match obj.get("items") {
                None | Some(Value::Null) => &[][..],
                Some(Value::Array(a)) => a.as_slice(),
                Some(other) => {
                    errors.push(FieldError::new(
                        "items",
                        format!("expected a list, got {}", kind_of(other)),
                    ));
                    &[][..]
                }
            };
            let mut configs = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match machine_config(item, &format!("items[{i}]"), warnings) {
                    Ok(mc) => configs.push(mc),
                    Err(e) => errors.extend(e),
                }
            }
            if errors.is_empty() {
                Ok(configs)
            } else {
                Err(errors)
            }
        }
        _ => machine_config(doc, "", warnings).map(|mc| vec![mc]),
    }
}

/// Checks that `obj[key]` is the string `want`.
fn check_string(
    obj: &Map<String, Value>,
    key: &str,
    want: &str,
    at: &str,
    errors: &mut Vec<FieldError>,
) {
    let field = join(at, key);
    match obj.get(key) {
        Some(Value::String(s)) if s == want => {}
        None | Some(Value::Null) => {
            errors.push(FieldError::new(field, format!("missing, expected {want}")));
        }
        Some(Value::String(s)) => {
            errors.push(FieldError::new(field, format!("expected {want}, got {s}")));
        }
        Some(other) => errors.push(FieldError::new(
            field,
            format!("expected {want}, got {}", kind_of(other)),
        )),
    }
}

/// Checks a Kubernetes object name (a DNS subdomain: lowercase letters, digits, `-` and `.`,
/// starting and ending with a letter or digit, at most 253 characters).
fn check_name(name: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| alnum(c) || c == '-' || c == '.')
        && name.starts_with(alnum)
        && name.ends_with(alnum);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name (lowercase letters, digits, '-' and '.', at most 253)"
        ))
    }
}

/// A MachineConfig object at field path `at` (empty, or `items[3]` in a List).
fn machine_config(
    v: &Value,
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<MachineConfig, Vec<FieldError>> {
    let Value::Object(obj) = v else {
        return Err(vec![FieldError::new(
            at,
            format!("expected a MachineConfig object, got {}", kind_of(v)),
        )]);
    };
    let mut errors = Vec::new();
    check_string(obj, "apiVersion", MC_API_VERSION, at, &mut errors);
    check_string(obj, "kind", MC_KIND, at, &mut errors);
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "apiVersion" | "kind" | "metadata" | "spec" | "status"
        ) {
            warnings.push(format!("{}: unknown key, ignored", join(at, key)));
        }
    }

    let mut mc = MachineConfig::default();
    let meta_at = join(at, "metadata");
    match obj.get("metadata") {
        Some(Value::Object(meta)) => {
            match meta.get("name") {
                Some(Value::String(name)) => {
                    if let Err(reason) = check_name(name) {
                        errors.push(FieldError::new(join(&meta_at, "name"), reason));
                    }
                    mc.name = name.clone();
                }
                None | Some(Value::Null) => {
                    errors.push(FieldError::new(join(&meta_at, "name"), "missing"));
                }
                Some(other) => errors.push(FieldError::new(
                    join(&meta_at, "name"),
                    format!("expected a string, got {}", kind_of(other)),
                )),
            }
            match meta.get("labels") {
                None | Some(Value::Null) => {}
                Some(Value::Object(labels)) => {
                    for (k, val) in labels {
                        match val {
                            Value::String(s) => {
                                mc.labels.insert(k.clone(), s.clone());
                            }
                            other => errors.push(FieldError::new(
                                join(&meta_at, &format!("labels.{k}")),
                                format!("expected a string, got {}", kind_of(other)),
                            )),
                        }
                    }
                }
                Some(other) => errors.push(FieldError::new(
                    join(&meta_at, "labels"),
                    format!("expected a map, got {}", kind_of(other)),
                )),
            }
        }
        None | Some(Value::Null) => {
            errors.push(FieldError::new(join(&meta_at, "name"), "missing"));
        }
        Some(other) => errors.push(FieldError::new(
            meta_at,
            format!("expected an object, got {}", kind_of(other)),
        )),
    }

    let spec_at = join(at, "spec");
    let empty = Map::new();
    let spec = match obj.get("spec") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(s)) => s,
        Some(other) => {
            errors.push(FieldError::new(
                &spec_at,
                format!("expected an object, got {}", kind_of(other)),
            ));
            &empty
        }
    };
    for key in spec.keys() {
        let known = matches!(
            key.as_str(),
            "config" | "kernelArguments" | "kernelType" | "extensions" | "fips" | "osImageURL"
        );
        if !known && !IGNORED_SPEC_KEYS.contains(&key.as_str()) {
            warnings.push(format!("{}: unknown key, ignored", join(&spec_at, key)));
        }
    }
    let null = Value::Null;
    let field = |k: &str| spec.get(k).unwrap_or(&null);

    match super::ignition::parse_config(field("config"), &join(&spec_at, "config")) {
        Ok((config, w)) => {
            mc.spec.config = config;
            warnings.extend(w);
        }
        Err(e) => errors.extend(e),
    }
    mc.spec.kernel_arguments = strings(
        field("kernelArguments"),
        &join(&spec_at, "kernelArguments"),
        &mut errors,
    );
    mc.spec.extensions = strings(
        field("extensions"),
        &join(&spec_at, "extensions"),
        &mut errors,
    );
    for (i, a) in mc.spec.kernel_arguments.iter().enumerate() {
        if let Err(reason) = super::os::check_kernel_argument(a) {
            errors.push(FieldError::new(
                format!("{}[{i}]", join(&spec_at, "kernelArguments")),
                reason,
            ));
        }
    }
    for (i, e) in mc.spec.extensions.iter().enumerate() {
        if let Err(reason) = super::os::check_extension(e) {
            errors.push(FieldError::new(
                format!("{}[{i}]", join(&spec_at, "extensions")),
                reason,
            ));
        }
    }
    let kt_at = join(&spec_at, "kernelType");
    match field("kernelType") {
        Value::Null => {}
        Value::String(s) if s.is_empty() => {}
        Value::String(s) if KERNEL_TYPES.contains(&s.as_str()) => {
            mc.spec.kernel_type = Some(s.clone());
        }
        Value::String(s) => errors.push(FieldError::new(
            kt_at,
            format!("unsupported kernel type {s:?} (default, realtime or 64k-pages)"),
        )),
        other => errors.push(FieldError::new(
            kt_at,
            format!("expected a string, got {}", kind_of(other)),
        )),
    }
    match field("fips") {
        Value::Null => {}
        Value::Bool(b) => mc.spec.fips = *b,
        other => errors.push(FieldError::new(
            join(&spec_at, "fips"),
            format!("expected a boolean, got {}", kind_of(other)),
        )),
    }
    match field("osImageURL") {
        Value::Null => {}
        Value::String(s) => {
            if let Err(reason) = super::os::check_image_reference(s) {
                errors.push(FieldError::new(join(&spec_at, "osImageURL"), reason));
            }
            mc.spec.os_image_url = s.clone();
        }
        other => errors.push(FieldError::new(
            join(&spec_at, "osImageURL"),
            format!("expected a string, got {}", kind_of(other)),
        )),
    }
    if errors.is_empty() {
        Ok(mc)
    } else {
        Err(errors)
    }
}

/// A list of strings (null = empty).
fn strings(v: &Value, at: &str, errors: &mut Vec<FieldError>) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::String(s) => Some(s.clone()),
                other => {
                    errors.push(FieldError::new(
                        format!("{at}[{i}]"),
                        format!("expected a string, got {}", kind_of(other)),
                    ));
                    None
                }
            })
            .collect(),
        other => {
            errors.push(FieldError::new(
                at,
                format!("expected a list of strings, got {}", kind_of(other)),
            ));
            Vec::new()
        }
    }
}
