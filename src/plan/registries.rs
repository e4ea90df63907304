//! Safety analysis of a `/etc/containers/registries.conf` change (SPEC §3 point 7).
//!
//! This module owns the one question the `Special` policy action asks: may the new registries.conf
//! be applied with only a crio reload, or must the node be drained first? It parses both versions
//! (containers-registries.conf v2 TOML, plus enough of the older v1 layout to notice any change to
//! it), normalises them and compares them entry by entry. The answer is a [`RegistriesVerdict`]
//! whose reasons say, per registry, what makes the change unsafe.
//!
//! A change is safe when it only adds, and every addition is digest-only:
//! - `unqualified-search-registries` may only grow at its end (lookup order is significant);
//! - no registry or mirror is removed, and no field of an existing registry or mirror changes
//!   (including the relative order of existing mirrors, which decides which mirror is tried first);
//! - an added registry has `mirror-by-digest-only = true`, or at least one mirror and every mirror
//!   with `pull-from-mirror = "digest-only"`; it must not be `blocked`, `insecure`, or rewrite its
//!   prefix to another location, since any of these changes how existing images are pulled;
//! - a mirror added to an existing registry is digest-only through its registry or its own
//!   `pull-from-mirror`;
//! - every other setting (`short-name-mode`, v1 tables, any key this module does not model) is
//!   unchanged.
//!
//! Registries are keyed by `prefix`, or by `location` when the prefix is empty, which is how
//! container tools match an image reference to an entry; mirrors are keyed by location within
//! their registry. Trailing slashes of prefixes and locations are not significant. Anything that
//! cannot be analysed with confidence (unparseable TOML, duplicate keys, settings container tools
//! reject) is reported as unsafe: draining is always the conservative answer.
//!
//! Everything here is pure: bytes in, verdict out, no I/O and no panics.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Verdict on a change of /etc/containers/registries.conf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistriesVerdict {
    /// True when the change needs only a crio reload and no drain.
    pub safe: bool,
    /// Why the change is unsafe, in a stable order; empty when safe.
    pub reasons: Vec<String>,
}

impl RegistriesVerdict {
    fn from_reasons(reasons: Vec<String>) -> Self {
        RegistriesVerdict {
            safe: reasons.is_empty(),
            reasons,
        }
    }
}

/// `pull-from-mirror` value that restricts a mirror to pulls by digest.
const DIGEST_ONLY: &str = "digest-only";
/// `pull-from-mirror` values container tools accept (empty means `all`).
const PULL_FROM_MIRROR_VALUES: [&str; 3] = ["all", "digest-only", "tag-only"];

/// old/new: contents of /etc/containers/registries.conf (None = file absent).
pub fn analyze(old: Option<&[u8]>, new: Option<&[u8]>) -> RegistriesVerdict {
    if old == new {
        return RegistriesVerdict::from_reasons(Vec::new());
    }
    let Some(new) = new else {
        return RegistriesVerdict::from_reasons(vec!["registries.conf removed".to_string()]);
    };
    let old_conf = match old {
        None => Ok(Conf::default()),
        Some(bytes) => parse(bytes),
    };
    let new_conf = parse(new);
    let (old_conf, new_conf) = match (old_conf, new_conf) {
        (Ok(o), Ok(n)) => (o, n),
        (o, n) => {
            let mut reasons = Vec::new();
            if let Err(e) = o {
                reasons.push(format!("old registries.conf: {e}"));
            }
            if let Err(e) = n {
                reasons.push(format!("new registries.conf: {e}"));
            }
            return RegistriesVerdict::from_reasons(reasons);
        }
    };
    if old_conf == new_conf {
        // Only whitespace, comments, key order or equivalent spellings changed.
        return RegistriesVerdict::from_reasons(Vec::new());
    }
    RegistriesVerdict::from_reasons(diff(&old_conf, &new_conf))
}

/// Why a registries.conf could not be read.
#[derive(Debug, thiserror::Error)]
enum ParseError {
    #[error("not valid UTF-8: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    #[error("invalid TOML: {0}")]
    Toml(String),
}

/// The file as written (v2 keys, the v1 `registries` table, and whatever else is there).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawConf {
    #[serde(default)]
    unqualified_search_registries: Vec<String>,
    short_name_mode: Option<String>,
    #[serde(default)]
    registry: Vec<RawRegistry>,
    /// The v1 layout: `[registries.search]`, `[registries.insecure]`, `[registries.block]`.
    registries: Option<toml::Table>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawRegistry {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<RawMirror>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawMirror {
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    pull_from_mirror: String,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

/// A normalised registries.conf.
#[derive(Debug, Default, PartialEq)]
struct Conf {
    search: Vec<String>,
    short_name_mode: Option<String>,
    /// Registries by key (prefix, or location when the prefix is empty). The first entry wins
    /// when a key repeats; the repetition itself is recorded in `problems`.
    registries: BTreeMap<String, Registry>,
    /// Tables of the v1 `[registries]` table, by name (`search`, `insecure`, `block`, ...).
    v1: BTreeMap<String, toml::Value>,
    /// Top-level keys this module does not model (`aliases`, `credential-helpers`, ...).
    other: BTreeMap<String, toml::Value>,
    /// What makes this file ambiguous or unacceptable to container tools.
    problems: Vec<String>,
}

#[derive(Debug, PartialEq)]
struct Registry {
    prefix: String,
    location: String,
    insecure: bool,
    blocked: bool,
    mirror_by_digest_only: bool,
    mirrors: Vec<Mirror>,
    other: BTreeMap<String, toml::Value>,
}

#[derive(Debug, PartialEq)]
struct Mirror {
    location: String,
    insecure: bool,
    /// Normalised: empty becomes `all`.
    pull_from_mirror: String,
    other: BTreeMap<String, toml::Value>,
}

impl Registry {
    /// Whether `mirror` of this registry is only used for pulls by digest.
    fn mirror_is_digest_only(&self, mirror: &Mirror) -> bool {
        self.mirror_by_digest_only || mirror.pull_from_mirror == DIGEST_ONLY
    }
}

/// Removes trailing slashes, which container tools ignore in prefixes and locations.
fn clean_location(s: &str) -> String {
    s.trim_end_matches('/').to_string()
}

fn parse(bytes: &[u8]) -> Result<Conf, ParseError> {
    let text = std::str::from_utf8(bytes)?;
    let raw: RawConf = toml::from_str(text).map_err(|e| ParseError::Toml(toml_error(text, &e)))?;
    Ok(normalise(raw))
}

/// A one-line description of a TOML error with its line and column.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message,
    }
}

fn normalise(raw: RawConf) -> Conf {
    let mut problems = Vec::new();
    let mut registries = BTreeMap::new();
    for (index, r) in raw.registry.into_iter().enumerate() {
        let prefix = clean_location(&r.prefix);
        let location = clean_location(&r.location);
        let key = if prefix.is_empty() {
            location.clone()
        } else {
            prefix.clone()
        };
        if key.is_empty() {
            problems.push(format!(
                "registry entry #{} has neither prefix nor location",
                index + 1
            ));
            continue;
        }
        let mut mirrors: Vec<Mirror> = Vec::with_capacity(r.mirror.len());
        for m in r.mirror {
            let location = clean_location(&m.location);
            if location.is_empty() {
                problems.push(format!("registry {key:?}: a mirror has no location"));
                continue;
            }
            if mirrors.iter().any(|seen| seen.location == location) {
                problems.push(format!(
                    "registry {key:?}: mirror {location:?} listed more than once"
                ));
                continue;
            }
            let pull_from_mirror = if m.pull_from_mirror.is_empty() {
                "all".to_string()
            } else {
                m.pull_from_mirror
            };
            if !PULL_FROM_MIRROR_VALUES.contains(&pull_from_mirror.as_str()) {
                problems.push(format!(
                    "registry {key:?}: mirror {location:?}: unknown pull-from-mirror {pull_from_mirror:?}"
                ));
            }
            if r.mirror_by_digest_only && pull_from_mirror != "all" {
                problems.push(format!(
                    "registry {key:?}: mirror {location:?}: pull-from-mirror cannot be combined \
                     with mirror-by-digest-only on the registry"
                ));
            }
            mirrors.push(Mirror {
                location,
                insecure: m.insecure,
                pull_from_mirror,
                other: m.other,
            });
        }
        if registries.contains_key(&key) {
            problems.push(format!("registry {key:?} is defined more than once"));
            continue;
        }
        let registry = Registry {
            prefix,
            location,
            insecure: r.insecure,
            blocked: r.blocked,
            mirror_by_digest_only: r.mirror_by_digest_only,
            mirrors,
            other: r.other,
        };
        registries.insert(key, registry);
    }
    Conf {
        search: raw.unqualified_search_registries,
        short_name_mode: raw.short_name_mode,
        registries,
        v1: raw
            .registries
            .map(|t| t.into_iter().collect())
            .unwrap_or_default(),
        other: raw.other,
        problems,
    }
}

/// Every reason the change from `old` to `new` is unsafe, in a stable order: file-level problems,
/// top-level settings, then registries sorted by key.
fn diff(old: &Conf, new: &Conf) -> Vec<String> {
    let mut reasons = Vec::new();
    reasons.extend(
        old.problems
            .iter()
            .map(|p| format!("old registries.conf: {p}")),
    );
    reasons.extend(
        new.problems
            .iter()
            .map(|p| format!("new registries.conf: {p}")),
    );

    if !new.search.starts_with(&old.search) {
        reasons.push(format!(
            "unqualified-search-registries changed from {} to {}; only appending is safe",
            list(&old.search),
            list(&new.search)
        ));
    }
    if old.short_name_mode != new.short_name_mode {
        reasons.push(format!(
            "short-name-mode changed from {} to {}",
            optional(old.short_name_mode.as_deref()),
            optional(new.short_name_mode.as_deref())
        ));
    }
    for (name, change) in changed_keys(&old.v1, &new.v1) {
        reasons.push(format!("v1 table [registries.{name}] {change}"));
    }
    for (name, change) in changed_keys(&old.other, &new.other) {
        reasons.push(format!("top-level key {name:?} {change}"));
    }

    let keys: BTreeSet<&String> = old.registries.keys().chain(new.registries.keys()).collect();
    for key in keys {
        match (old.registries.get(key), new.registries.get(key)) {
            (Some(_), None) => reasons.push(format!("registry {key:?}: removed")),
            (None, Some(added)) => added_registry(key, added, &mut reasons),
            (Some(o), Some(n)) => changed_registry(key, o, n, &mut reasons),
            (None, None) => {}
        }
    }
    reasons
}

/// Reasons an added registry is unsafe.
fn added_registry(key: &str, r: &Registry, reasons: &mut Vec<String>) {
    if r.blocked {
        reasons.push(format!("registry {key:?}: added as blocked"));
    }
    if r.insecure {
        reasons.push(format!("registry {key:?}: added as insecure"));
    }
    if !r.prefix.is_empty() && !r.location.is_empty() && r.prefix != r.location {
        reasons.push(format!(
            "registry {key:?}: added with location {:?}, redirecting every pull of the prefix",
            r.location
        ));
    }
    for name in r.other.keys() {
        reasons.push(format!(
            "registry {key:?}: added with unrecognised field {name:?}"
        ));
    }
    if !r.mirror_by_digest_only {
        let not_digest_only: Vec<&Mirror> = r
            .mirrors
            .iter()
            .filter(|m| !r.mirror_is_digest_only(m))
            .collect();
        if r.mirrors.is_empty() {
            reasons.push(format!(
                "registry {key:?}: added without mirror-by-digest-only and without digest-only mirrors"
            ));
        }
        for m in not_digest_only {
            reasons.push(format!(
                "registry {key:?}: added with mirror {:?} not digest-only (pull-from-mirror {:?})",
                m.location, m.pull_from_mirror
            ));
        }
    }
    for m in &r.mirrors {
        for name in m.other.keys() {
            reasons.push(format!(
                "registry {key:?}: mirror {:?} added with unrecognised field {name:?}",
                m.location
            ));
        }
    }
}

/// Reasons a change of a registry present in both versions is unsafe.
fn changed_registry(key: &str, old: &Registry, new: &Registry, reasons: &mut Vec<String>) {
    // The key is the same, so a different prefix can only be "" versus the location itself:
    // both spell the same scope.
    if old.location != new.location {
        reasons.push(format!(
            "registry {key:?}: location changed from {:?} to {:?}",
            old.location, new.location
        ));
    }
    if old.insecure != new.insecure {
        reasons.push(format!(
            "registry {key:?}: insecure changed from {} to {}",
            old.insecure, new.insecure
        ));
    }
    if old.blocked != new.blocked {
        reasons.push(format!(
            "registry {key:?}: blocked changed from {} to {}",
            old.blocked, new.blocked
        ));
    }
    if old.mirror_by_digest_only != new.mirror_by_digest_only {
        reasons.push(format!(
            "registry {key:?}: mirror-by-digest-only changed from {} to {}",
            old.mirror_by_digest_only, new.mirror_by_digest_only
        ));
    }
    for (name, change) in changed_keys(&old.other, &new.other) {
        reasons.push(format!("registry {key:?}: field {name:?} {change}"));
    }

    let old_mirrors: BTreeMap<&str, &Mirror> = old
        .mirrors
        .iter()
        .map(|m| (m.location.as_str(), m))
        .collect();
    let new_mirrors: BTreeMap<&str, &Mirror> = new
        .mirrors
        .iter()
        .map(|m| (m.location.as_str(), m))
        .collect();
    let locations: BTreeSet<&str> = old_mirrors
        .keys()
        .chain(new_mirrors.keys())
        .copied()
        .collect();
    for location in locations {
        match (old_mirrors.get(location), new_mirrors.get(location)) {
            (Some(_), None) => {
                reasons.push(format!("registry {key:?}: mirror {location:?} removed"));
            }
            (None, Some(m)) => {
                if !new.mirror_is_digest_only(m) {
                    reasons.push(format!(
                        "registry {key:?}: mirror {location:?} added but not digest-only \
                         (pull-from-mirror {:?})",
                        m.pull_from_mirror
                    ));
                }
                for name in m.other.keys() {
                    reasons.push(format!(
                        "registry {key:?}: mirror {location:?} added with unrecognised field {name:?}"
                    ));
                }
            }
            (Some(o), Some(n)) => changed_mirror(key, o, n, reasons),
            (None, None) => {}
        }
    }

    // Mirrors are tried in order: the mirrors kept must keep their relative order.
    let kept_old: Vec<&str> = old
        .mirrors
        .iter()
        .map(|m| m.location.as_str())
        .filter(|l| new_mirrors.contains_key(l))
        .collect();
    let kept_new: Vec<&str> = new
        .mirrors
        .iter()
        .map(|m| m.location.as_str())
        .filter(|l| old_mirrors.contains_key(l))
        .collect();
    if kept_old != kept_new {
        reasons.push(format!(
            "registry {key:?}: mirrors reordered from {} to {}",
            list(&kept_old),
            list(&kept_new)
        ));
    }
}

fn changed_mirror(key: &str, old: &Mirror, new: &Mirror, reasons: &mut Vec<String>) {
    let location = &old.location;
    if old.insecure != new.insecure {
        reasons.push(format!(
            "registry {key:?}: mirror {location:?}: insecure changed from {} to {}",
            old.insecure, new.insecure
        ));
    }
    if old.pull_from_mirror != new.pull_from_mirror {
        reasons.push(format!(
            "registry {key:?}: mirror {location:?}: pull-from-mirror changed from {:?} to {:?}",
            old.pull_from_mirror, new.pull_from_mirror
        ));
    }
    for (name, change) in changed_keys(&old.other, &new.other) {
        reasons.push(format!(
            "registry {key:?}: mirror {location:?}: field {name:?} {change}"
        ));
    }
}

/// Keys whose values differ between two maps, sorted, with `added`, `removed` or `changed`.
fn changed_keys<'a>(
    old: &'a BTreeMap<String, toml::Value>,
    new: &'a BTreeMap<String, toml::Value>,
) -> Vec<(&'a str, &'static str)> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter_map(|k| match (old.get(k), new.get(k)) {
            (Some(_), None) => Some((k.as_str(), "removed")),
            (None, Some(_)) => Some((k.as_str(), "added")),
            (Some(o), Some(n)) if o != n => Some((k.as_str(), "changed")),
            _ => None,
        })
        .collect()
}

/// `["a", "b"]`.
fn list<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{:?}", item.as_ref());
    }
    out.push(']');
    out
}

/// `"value"`, or `unset`.
fn optional(value: Option<&str>) -> String {
    value.map_or_else(|| "unset".to_string(), |v| format!("{v:?}"))
}
