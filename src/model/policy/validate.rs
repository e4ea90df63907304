//! Validation of a node disruption policy (SPEC §3, "Validation").
//!
//! The rules are checked on the generic JSON value of the policy, not on the typed [`Policy`],
//! because several violations cannot be represented by the types at all (an unknown action
//! type, a `Reload` without `reload`, a `Drain` carrying a `restart`). Parsing a document and
//! checking a policy built in code therefore share one walker: [`policy_from_value`] both checks
//! and builds. Every violation is collected; nothing stops at the first one.

use super::{Action, FilePolicy, Policy, PolicyError, ServiceRef, SshKeyPolicy, UnitPolicy};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// At most this many `files` and this many `units` in a user policy.
pub const MAX_ENTRIES: usize = 50;
/// At most this many actions per entry (and at least one).
pub const MAX_ACTIONS: usize = 10;
/// At most this many characters in a unit or service name.
pub const MAX_UNIT_NAME_LEN: usize = 255;
/// The unit types a unit or service name may end in (the same list Ignition accepts).
pub use crate::model::ignition::UNIT_SUFFIXES;
/// Action types users may write (`Special` is status-only).
const USER_TYPES: &str = "Reboot, None, Drain, Reload, Restart, DaemonReload";

/// Which variant of the rules applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    /// `Special` is accepted (status) or refused (spec).
    pub allow_special: bool,
    /// The limit on `files` and on `units`, if any.
    pub max_entries: Option<usize>,
}

impl Rules {
    /// `spec.nodeDisruptionPolicy`, as users write it.
    pub const SPEC: Rules = Rules {
        allow_special: false,
        max_entries: Some(MAX_ENTRIES),
    };
    /// `status.nodeDisruptionPolicyStatus.clusterPolicies`, the effective policy.
    pub const STATUS: Rules = Rules {
        allow_special: true,
        max_entries: None,
    };
}

/// Checks a unit or service name: length, the pattern `^[a-zA-Z0-9:._\\-]+\..` and the suffix.
/// Returns the reason it is invalid.
pub fn check_unit_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    let len = name.chars().count();
    if len > MAX_UNIT_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_UNIT_NAME_LEN} characters (found {len})"
        ));
    }
    if !matches_unit_pattern(name) {
        return Err(format!(
            "{name:?} is not a valid unit name: it must match ^[a-zA-Z0-9:._\\\\-]+\\..",
        ));
    }
    if !UNIT_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Err(format!(
            "{name:?} must end in one of {}",
            UNIT_SUFFIXES.join(" ")
        ));
    }
    Ok(())
}

/// `^[a-zA-Z0-9:._\\-]+\..`: one or more characters of the class, then a dot that is itself
/// preceded by at least one class character, then any character (not a newline).
fn matches_unit_pattern(name: &str) -> bool {
    let in_class = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '\\' | '-');
    let chars: Vec<char> = name.chars().collect();
    // The dot must be inside the maximal run of class characters at the start.
    let run = chars.iter().take_while(|c| in_class(**c)).count();
    (1..run).any(|i| chars[i] == '.' && chars.get(i + 1).is_some_and(|c| *c != '\n'))
}

/// Checks a policy path: absolute and clean (no empty, `.` or `..` component, no trailing `/`
/// except for `/` itself). Returns the reason it is invalid.
pub fn check_policy_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    if !path.starts_with('/') {
        return Err(format!("{path:?} must be an absolute path"));
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(format!("{path:?} must be clean: no trailing /"));
    }
    for component in path[1..].split('/') {
        match component {
            "" => return Err(format!("{path:?} must be clean: no //")),
            ".." => return Err(format!("{path:?} must not contain ..")),
            "." => return Err(format!("{path:?} must be clean: no . component")),
            _ => {}
        }
    }
    Ok(())
}

/// The generic value of a typed policy, in the shape users write (an empty `sshkey` is left out,
/// as it means "no sshkey entry").
pub(crate) fn policy_to_value(policy: &Policy) -> Value {
    let mut value = serde_json::to_value(policy).unwrap_or_default();
    if policy.sshkey.actions.is_empty()
        && let Some(map) = value.as_object_mut()
    {
        map.remove("sshkey");
    }
    value
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Reports keys of `map` not in `known`, in the map's order.
fn unknown_keys(
    map: &Map<String, Value>,
    known: &[&str],
    field: &str,
    errors: &mut Vec<PolicyError>,
) {
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            errors.push(PolicyError::new(field, format!("unknown field {key:?}")));
        }
    }
}

/// Checks `value` (the `nodeDisruptionPolicy` or `clusterPolicies` object; `null` is an empty
/// policy) under `rules`, pushing every violation to `errors`, and returns the entries that are
/// valid. The result is only meaningful when no error was pushed.
pub(crate) fn policy_from_value(
    value: &Value,
    prefix: &str,
    rules: Rules,
    errors: &mut Vec<PolicyError>,
) -> Policy {
    let mut policy = Policy::default();
    let map = match value {
        Value::Null => return policy,
        Value::Object(map) => map,
        other => {
            errors.push(PolicyError::new(
                prefix,
                format!("must be a mapping, not {}", kind_of(other)),
            ));
            return policy;
        }
    };
    unknown_keys(map, &["files", "units", "sshkey"], prefix, errors);

    let entries = |key: &str, errors: &mut Vec<PolicyError>| -> Vec<(String, Value)> {
        let field = join(prefix, key);
        match map.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if let Some(max) = rules.max_entries
                    && items.len() > max
                {
                    errors.push(PolicyError::new(
                        &field,
                        format!("at most {max} entries are allowed (found {})", items.len()),
                    ));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{field}[{i}]"), v.clone()))
                    .collect()
            }
            Some(other) => {
                errors.push(PolicyError::new(
                    &field,
                    format!("must be a list, not {}", kind_of(other)),
                ));
                Vec::new()
            }
        }
    };

    // files[]
    let mut seen: HashMap<String, String> = HashMap::new();
    for (field, entry) in entries("files", errors) {
        let Some(obj) = expect_object(&entry, &field, errors) else {
            continue;
        };
        unknown_keys(obj, &["path", "actions"], &field, errors);
        let path = required_string(obj, "path", &field, errors);
        if let Some(p) = &path {
            if let Err(why) = check_policy_path(p) {
                errors.push(PolicyError::new(format!("{field}.path"), why));
            } else if let Some(first) = seen.get(p) {
                errors.push(PolicyError::new(
                    format!("{field}.path"),
                    format!("duplicate path {p:?} (first at {first})"),
                ));
            } else {
                seen.insert(p.clone(), field.clone());
            }
        }
        let actions = actions_from_value(obj.get("actions"), &field, rules, errors);
        if let (Some(path), Some(actions)) = (path, actions) {
            policy.files.push(FilePolicy { path, actions });
        }
    }

    // units[]
    let mut seen: HashMap<String, String> = HashMap::new();
    for (field, entry) in entries("units", errors) {
        let Some(obj) = expect_object(&entry, &field, errors) else {
            continue;
        };
        unknown_keys(obj, &["name", "actions"], &field, errors);
        let name = required_string(obj, "name", &field, errors);
        if let Some(n) = &name {
            if let Err(why) = check_unit_name(n) {
                errors.push(PolicyError::new(format!("{field}.name"), why));
            } else if let Some(first) = seen.get(n) {
                errors.push(PolicyError::new(
                    format!("{field}.name"),
                    format!("duplicate name {n:?} (first at {first})"),
                ));
            } else {
                seen.insert(n.clone(), field.clone());
            }
        }
        let actions = actions_from_value(obj.get("actions"), &field, rules, errors);
        if let (Some(name), Some(actions)) = (name, actions) {
            policy.units.push(UnitPolicy { name, actions });
        }
    }

    // sshkey
    let field = join(prefix, "sshkey");
    match map.get("sshkey") {
        None | Some(Value::Null) => {}
        Some(Value::Object(obj)) => {
            unknown_keys(obj, &["actions"], &field, errors);
            if obj.get("actions").is_none_or(Value::is_null) {
                errors.push(PolicyError::new(
                    format!("{field}.actions"),
                    "actions is required when sshkey is set",
                ));
            } else if let Some(actions) =
                actions_from_value(obj.get("actions"), &field, rules, errors)
            {
                policy.sshkey = SshKeyPolicy { actions };
            }
        }
        Some(other) => errors.push(PolicyError::new(
            &field,
            format!("must be a mapping, not {}", kind_of(other)),
        )),
    }
    policy
}

fn expect_object<'a>(
    v: &'a Value,
    field: &str,
    errors: &mut Vec<PolicyError>,
) -> Option<&'a Map<String, Value>> {
    match v {
        Value::Object(obj) => Some(obj),
        other => {
            errors.push(PolicyError::new(
                field,
                format!("must be a mapping, not {}", kind_of(other)),
            ));
            None
        }
    }
}

fn required_string(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
    errors: &mut Vec<PolicyError>,
) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => {
            errors.push(PolicyError::new(
                format!("{field}.{key}"),
                format!("{key} is required"),
            ));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.push(PolicyError::new(
                format!("{field}.{key}"),
                format!("must be a string, not {}", kind_of(other)),
            ));
            None
        }
    }
}

/// Checks the `actions` list of the entry at `entry_field`; `None` when it has any violation.
fn actions_from_value(
    value: Option<&Value>,
    entry_field: &str,
    rules: Rules,
    errors: &mut Vec<PolicyError>,
) -> Option<Vec<Action>> {
    let field = format!("{entry_field}.actions");
    let items = match value {
        None | Some(Value::Null) => {
            errors.push(PolicyError::new(&field, "actions is required"));
            return None;
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            errors.push(PolicyError::new(
                &field,
                format!("must be a list, not {}", kind_of(other)),
            ));
            return None;
        }
    };
    let before = errors.len();
    if items.is_empty() {
        errors.push(PolicyError::new(&field, "at least 1 action is required"));
    } else if items.len() > MAX_ACTIONS {
        errors.push(PolicyError::new(
            &field,
            format!(
                "at most {MAX_ACTIONS} actions are allowed (found {})",
                items.len()
            ),
        ));
    }
    let mut actions = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let field = format!("{field}[{j}]");
        if let Some(action) = action_from_value(item, &field, items.len(), rules, errors) {
            actions.push(action);
        }
    }
    (errors.len() == before).then_some(actions)
}

/// Checks one action; `list_len` is the length of its list (for the "stands alone" rule).
fn action_from_value(
    value: &Value,
    field: &str,
    list_len: usize,
    rules: Rules,
    errors: &mut Vec<PolicyError>,
) -> Option<Action> {
    let obj = expect_object(value, field, errors)?;
    unknown_keys(obj, &["type", "reload", "restart"], field, errors);
    let before = errors.len();
    let ty = match obj.get("type") {
        None | Some(Value::Null) => {
            errors.push(PolicyError::new(field, "type is required"));
            None
        }
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            errors.push(PolicyError::new(
                field,
                format!("type must be a string, not {}", kind_of(other)),
            ));
            None
        }
    };
    match ty {
        Some("Reboot" | "None" | "Drain" | "Reload" | "Restart" | "DaemonReload") => {}
        Some("Special") if rules.allow_special => {}
        Some("Special") => errors.push(PolicyError::new(
            field,
            "type Special is internal to the cluster status and may not be set",
        )),
        Some(other) => errors.push(PolicyError::new(
            field,
            format!("unknown action type {other:?}; expected one of {USER_TYPES}"),
        )),
        None => {}
    }
    if let Some(t @ ("Reboot" | "None")) = ty
        && list_len > 1
    {
        errors.push(PolicyError::new(
            field,
            format!("{t} must be the only action of its list"),
        ));
    }
    // reload/restart: required with their type, forbidden with any other.
    let mut service = None;
    for (key, owner) in [("reload", "Reload"), ("restart", "Restart")] {
        match (obj.get(key).filter(|v| !v.is_null()), ty) {
            (None, Some(t)) if t == owner => errors.push(PolicyError::new(
                field,
                format!("{key} is required when type is {owner}"),
            )),
            (Some(_), Some(t)) if t != owner => errors.push(PolicyError::new(
                field,
                format!("{key} is forbidden when type is {t} (only allowed when type is {owner})"),
            )),
            (Some(v), Some(_)) => service = service_ref(v, &format!("{field}.{key}"), errors),
            _ => {}
        }
    }
    if errors.len() != before {
        return None;
    }
    Some(match ty? {
        "Reboot" => Action::Reboot,
        "None" => Action::None,
        "Drain" => Action::Drain,
        "Reload" => Action::Reload { reload: service? },
        "Restart" => Action::Restart { restart: service? },
        "DaemonReload" => Action::DaemonReload,
        "Special" => Action::Special,
        _ => return None,
    })
}

fn service_ref(value: &Value, field: &str, errors: &mut Vec<PolicyError>) -> Option<ServiceRef> {
    let obj = expect_object(value, field, errors)?;
    unknown_keys(obj, &["serviceName"], field, errors);
    let name = required_string(obj, "serviceName", field, errors)?;
    if let Err(why) = check_unit_name(&name) {
        errors.push(PolicyError::new(format!("{field}.serviceName"), why));
        return None;
    }
    Some(ServiceRef { service_name: name })
}
