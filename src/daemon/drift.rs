//! What the daemon does about configuration drift, path by path: the daemon configuration file
//! (`/etc/machine-config-daemon/config.yaml`) and the pure decisions made from it. No I/O here
//! but [`load`] (which reads the file, bounded); the effects live in `daemon::run`.
//!
//! ```yaml
//! drift:
//!   rules:                          # the first rule whose glob matches the path wins
//!     - paths: ["/etc/chrony.conf", "/etc/containers/registries.conf.d/*"]
//!       action: heal                # degrade (the default) | report | heal
//!     - paths: ["/etc/motd"]
//!       action: report
//!   heal:
//!     maxHeals: 3                   # heals of one path within the window, then degrade
//!     window: 1h
//! ```
//!
//! **Actions.** `degrade`: upstream's behaviour and the default for every path no rule matches
//! (and for the kernel arguments, which cannot be rewritten, and the CA files of the
//! ControllerConfig, whose bundles and not a MachineConfig are their authority): the node is `Degraded` with
//! SPEC §6's exact reason. `report`: logged, a Warning event `ConfigDriftDetected`, the metrics;
//! the node stays `Done` and the status lists the reported drift. `heal`: the path is rewritten
//! from the current config through the update's transaction (atomic, journaled), then the node
//! disruption policy's post actions for that path run (e.g. `Reload chronyd.service`); a Normal
//! event `ConfigDriftHealed`.
//!
//! **Choices.**
//! - Globs are those of the `globset` crate with `*`, `?` and `[...]` never matching `/`; `**`
//!   crosses directories (`/etc/containers/**`). A pattern must be an absolute path. Rules are
//!   tried in order, the first match wins; no match means `degrade`.
//! - A heal never drains or reboots: when the policy asks for `Reboot` or `Drain` for the path
//!   (which includes a path no policy entry matches) or for `Special` (registries.conf, whose
//!   safety depends on the drifted contents, which the daemon does not judge), the path is not
//!   healed and the node degrades with the mismatch and the reason it was not healed.
//! - The budget ([`HealBudget`]) is a sliding window per path: at most `maxHeals` heals of one
//!   path within `window`. The next drift of that path degrades with a reason naming the path
//!   and the count; it stays degraded until the path matches the config again (an
//!   administrator restores it, or the force file), like any degraded drift.
//! - `report`ed drift does not hold back an update (an update leaves a drifted path it does
//!   not change alone); `degrade`d drift does, as upstream.
//! - The file is read once, when the daemon starts (a change takes effect on restart); a bad
//!   file stops the daemon from starting (exit code 2), as any other bad input. Its absence
//!   means every path degrades, as upstream.
//!
//! The same file's `tryMode` section turns on try mode (see [`super::confirm`]).
//!
//! **Limits.** The file is at most [`MAX_BYTES`], with at most [`MAX_RULES`] rules of at most
//! [`MAX_PATTERNS`] patterns each, each at most 4096 characters; `maxHeals` is 1 to 1000,
//! `window` 1 second to 30 days. Unknown fields are errors.

use crate::model::MachineConfig;
use crate::model::policy::{Action, Policy};
use crate::plan::diff::{ChangeKind, Diff, FileChange, UnitChange};
use crate::plan::{PlanOptions, actions};
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The daemon configuration file, as a path on the node.
pub const DAEMON_CONFIG: &str = "/etc/machine-config-daemon/config.yaml";
/// The largest daemon configuration file read.
pub const MAX_BYTES: u64 = 1 << 20;
/// The most rules.
pub const MAX_RULES: usize = 100;
/// The most patterns of one rule.
pub const MAX_PATTERNS: usize = 100;
/// The longest pattern.
const MAX_PATTERN_LEN: usize = 4096;
/// `maxHeals` without a `heal` section.
pub const DEFAULT_MAX_HEALS: u32 = 3;
/// `window` without a `heal` section.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
const MAX_MAX_HEALS: u64 = 1000;
const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// What drift of a path does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftAction {
    Degrade,
    Report,
    Heal,
}

impl DriftAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftAction::Degrade => "degrade",
            DriftAction::Report => "report",
            DriftAction::Heal => "heal",
        }
    }

    pub const ALL: [DriftAction; 3] =
        [DriftAction::Degrade, DriftAction::Report, DriftAction::Heal];
}

impl fmt::Display for DriftAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule: these globs get this action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub paths: Vec<String>,
    pub action: DriftAction,
}

/// The heal budget's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealLimits {
    pub max_heals: u32,
    pub window: Duration,
}

impl Default for HealLimits {
    fn default() -> Self {
        HealLimits {
            max_heals: DEFAULT_MAX_HEALS,
            window: DEFAULT_WINDOW,
        }
    }
}

/// The `drift` section: rules and the heal budget, with the globs compiled.
#[derive(Debug, Clone)]
pub struct DriftConfig {
    pub rules: Vec<Rule>,
    pub heal: HealLimits,
    /// Where it was read from (None: no file, the defaults).
    pub origin: Option<String>,
    /// The file's `tryMode` section ([`super::confirm`]; default: off).
    pub try_mode: super::confirm::TryMode,
    set: globset::GlobSet,
    /// The rule of each glob of `set`, by glob index.
    rule_of: Vec<usize>,
}

impl Default for DriftConfig {
    /// No rules: every path degrades (upstream's behaviour).
    fn default() -> Self {
        DriftConfig {
            rules: Vec::new(),
            heal: HealLimits::default(),
            origin: None,
            try_mode: super::confirm::TryMode::default(),
            set: globset::GlobSet::empty(),
            rule_of: Vec::new(),
        }
    }
}

impl PartialEq for DriftConfig {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
            && self.heal == other.heal
            && self.origin == other.origin
            && self.try_mode == other.try_mode
    }
}

/// The action for a path and the rule (index) that chose it; None: no rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub action: DriftAction,
    pub rule: Option<usize>,
}

impl DriftConfig {
    /// The first rule matching `path` decides; no match: `degrade`.
    pub fn action_for(&self, path: &str) -> Verdict {
        let rule = self
            .set
            .matches(path)
            .into_iter()
            .map(|g| self.rule_of[g])
            .min();
        Verdict {
            action: rule.map_or(DriftAction::Degrade, |r| self.rules[r].action),
            rule,
        }
    }

    /// What `status` and `plan` show: the rules in effect, the default and the heal budget.
    pub fn summary(&self) -> Summary {
        Summary {
            source: self.origin.clone(),
            rules: self.rules.clone(),
            default: DriftAction::Degrade,
            heal: HealSummary {
                max_heals: self.heal.max_heals,
                window: humantime::format_duration(self.heal.window).to_string(),
            },
        }
    }
}

/// The drift rules in effect, as `status -o json` and `plan -o json` print them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Summary {
    /// The file the rules came from; absent: no file, every path degrades.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub rules: Vec<RuleSummary>,
    /// The action of a path no rule matches.
    pub default: DriftAction,
    pub heal: HealSummary,
}

/// A rule as shown (the same shape as written).
pub type RuleSummary = Rule;

impl<'de> serde::Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct R {
            paths: Vec<String>,
            action: String,
        }
        let r = R::deserialize(d)?;
        let action = parse_action(&r.action).map_err(serde::de::Error::custom)?;
        Ok(Rule {
            paths: r.paths,
            action,
        })
    }
}

impl<'de> serde::Deserialize<'de> for DriftAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_action(&s).map_err(serde::de::Error::custom)
    }
}

/// The heal budget as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealSummary {
    pub max_heals: u32,
    pub window: String,
}

impl Summary {
    /// A few lines for people: each rule, the default, the heal budget (when a rule heals).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.rules {
            out.push(format!("{} -> {}", r.paths.join(", "), r.action));
        }
        out.push(format!(
            "{} -> {}",
            if self.rules.is_empty() {
                "every path"
            } else {
                "any other path"
            },
            self.default
        ));
        if self.rules.iter().any(|r| r.action == DriftAction::Heal) {
            out.push(format!(
                "heal: at most {} heals of one path within {}, then degrade",
                self.heal.max_heals, self.heal.window
            ));
        }
        out
    }
}

/// One problem of a daemon configuration file: `origin: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: Option<String>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.origin {
            write!(f, "{o}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found, in document order; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

impl ConfigErrors {
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

struct Errors {
    origin: Option<String>,
    list: Vec<ConfigError>,
}

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let clip = crate::model::error::clip_input;
        self.list.push(ConfigError {
            origin: self.origin.clone(),
            field: clip(&field.into()),
            message: clip(&message.into()),
        });
    }
}

fn parse_action(s: &str) -> Result<DriftAction, String> {
    match s {
        "degrade" => Ok(DriftAction::Degrade),
        "report" => Ok(DriftAction::Report),
        "heal" => Ok(DriftAction::Heal),
        other => Err(format!(
            "unknown action {other:?} (expected degrade, report or heal)"
        )),
    }
}

/// Where the daemon configuration is: `explicit` when given, else the default path beneath
/// `root` when a file is there; None: no file (the defaults).
pub fn locate(root: &Path, explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let p = root.join(DAEMON_CONFIG.trim_start_matches('/'));
    p.symlink_metadata().is_ok().then_some(p)
}

/// Reads and validates the daemon configuration at `path` (a regular file, at most
/// [`MAX_BYTES`]).
pub fn load(path: &Path) -> Result<DriftConfig, ConfigErrors> {
    use std::io::Read;
    let origin = path.display().to_string();
    let whole = |message: String| {
        ConfigErrors(vec![ConfigError {
            origin: Some(origin.clone()),
            field: String::new(),
            message,
        }])
    };
    // Non-blocking: a FIFO put in the file's place must not hang the daemon's start (it is
    // refused below as not a regular file).
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| whole(format!("cannot read: {e}")))?
    };
    let md = file
        .metadata()
        .map_err(|e| whole(format!("cannot read: {e}")))?;
    if !md.is_file() {
        return Err(whole("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| whole(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(whole(format!(
            "larger than {} KiB (the limit on the daemon configuration)",
            MAX_BYTES >> 10
        )));
    }
    parse(&bytes, &origin)
}

/// Parses and validates a daemon configuration (YAML or JSON); every problem is reported,
/// each naming `origin` and the field.
pub fn parse(bytes: &[u8], origin: &str) -> Result<DriftConfig, ConfigErrors> {
    let mut errors = Errors {
        origin: (!origin.is_empty()).then(|| origin.to_string()),
        list: Vec::new(),
    };
    let doc = match parse_document(bytes) {
        Ok(v) => v,
        Err(m) => {
            errors.push("", m);
            return Err(ConfigErrors(errors.list));
        }
    };
    let mut cfg = DriftConfig {
        origin: errors.origin.clone(),
        ..DriftConfig::default()
    };
    let top = match &doc {
        Value::Null => return Ok(cfg),
        Value::Object(m) => m,
        _ => {
            errors.push("", "expected a mapping with a drift or tryMode section");
            return Err(ConfigErrors(errors.list));
        }
    };
    for (k, v) in top {
        match k.as_str() {
            "drift" => drift_section(v, &mut cfg, &mut errors),
            "tryMode" => match super::confirm::parse_section(v) {
                Ok(t) => cfg.try_mode = t,
                Err(list) => {
                    for (field, message) in list {
                        errors.push(field, message);
                    }
                }
            },
            other => errors.push(other, "unknown field (expected drift or tryMode)"),
        }
    }
    if !errors.list.is_empty() {
        return Err(ConfigErrors(errors.list));
    }
    Ok(cfg)
}

fn drift_section(v: &Value, cfg: &mut DriftConfig, errors: &mut Errors) {
    let m = match v {
        Value::Null => return,
        Value::Object(m) => m,
        _ => return errors.push("drift", "expected a mapping (rules, heal)"),
    };
    let mut builder = globset::GlobSetBuilder::new();
    for (k, v) in m {
        match k.as_str() {
            "rules" => {
                let list = match v {
                    Value::Null => continue,
                    Value::Array(a) => a,
                    _ => {
                        errors.push("drift.rules", "expected a list of rules");
                        continue;
                    }
                };
                if list.len() > MAX_RULES {
                    errors.push(
                        "drift.rules",
                        format!("{} rules: at most {MAX_RULES} are allowed", list.len()),
                    );
                    continue;
                }
                for (i, r) in list.iter().enumerate() {
                    if let Some(rule) = rule(r, &format!("drift.rules[{i}]"), errors) {
                        for p in &rule.paths {
                            // Checked by `rule`.
                            if let Ok(g) = glob(p) {
                                builder.add(g);
                                cfg.rule_of.push(cfg.rules.len());
                            }
                        }
                        cfg.rules.push(rule);
                    }
                }
            }
            "heal" => heal_section(v, &mut cfg.heal, errors),
            other => errors.push(
                format!("drift.{other}"),
                "unknown field (expected rules or heal)",
            ),
        }
    }
    match builder.build() {
        Ok(set) => cfg.set = set,
        Err(e) => errors.push("drift.rules", format!("cannot compile the globs: {e}")),
    }
}

fn glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

fn rule(v: &Value, field: &str, errors: &mut Errors) -> Option<Rule> {
    let Value::Object(m) = v else {
        errors.push(field, "expected a mapping (paths, action)");
        return None;
    };
    let before = errors.list.len();
    let mut paths = Vec::new();
    let mut action = None;
    for (k, v) in m {
        match k.as_str() {
            "paths" => {
                let Value::Array(list) = v else {
                    errors.push(format!("{field}.paths"), "expected a list of globs");
                    continue;
                };
                if list.is_empty() {
                    errors.push(format!("{field}.paths"), "at least one glob is required");
                }
                if list.len() > MAX_PATTERNS {
                    errors.push(
                        format!("{field}.paths"),
                        format!("{} globs: at most {MAX_PATTERNS} are allowed", list.len()),
                    );
                    continue;
                }
                for (j, p) in list.iter().enumerate() {
                    let f = format!("{field}.paths[{j}]");
                    let Some(p) = p.as_str() else {
                        errors.push(f, "expected a string (a glob)");
                        continue;
                    };
                    if p.len() > MAX_PATTERN_LEN {
                        errors.push(f, format!("longer than {MAX_PATTERN_LEN} characters"));
                    } else if !p.starts_with('/') {
                        errors.push(f, format!("{p:?} must be an absolute path (a glob)"));
                    } else if let Err(e) = glob(p) {
                        errors.push(f, format!("invalid glob {p:?}: {}", e.kind()));
                    } else {
                        paths.push(p.to_string());
                    }
                }
            }
            "action" => match v.as_str().map(parse_action) {
                Some(Ok(a)) => action = Some(a),
                Some(Err(m)) => errors.push(format!("{field}.action"), m),
                None => errors.push(
                    format!("{field}.action"),
                    "expected a string (degrade, report or heal)",
                ),
            },
            other => errors.push(
                format!("{field}.{other}"),
                "unknown field (expected paths or action)",
            ),
        }
    }
    if !m.contains_key("paths") {
        errors.push(format!("{field}.paths"), "required");
    }
    if !m.contains_key("action") {
        errors.push(
            format!("{field}.action"),
            "required (degrade, report or heal)",
        );
    }
    if errors.list.len() != before {
        return None;
    }
    Some(Rule {
        paths,
        action: action?,
    })
}

fn heal_section(v: &Value, heal: &mut HealLimits, errors: &mut Errors) {
    let m = match v {
        Value::Null => return,
        Value::Object(m) => m,
        _ => return errors.push("drift.heal", "expected a mapping (maxHeals, window)"),
    };
    for (k, v) in m {
        match k.as_str() {
            "maxHeals" => match v.as_u64() {
                Some(n) if (1..=MAX_MAX_HEALS).contains(&n) => heal.max_heals = n as u32,
                _ => errors.push(
                    "drift.heal.maxHeals",
                    format!("{v}: expected a whole number from 1 to {MAX_MAX_HEALS}"),
                ),
            },
            "window" => {
                let parsed = match v {
                    Value::String(s) => humantime::parse_duration(s).map_err(|e| e.to_string()),
                    _ => Err("expected a duration such as 30m or 1h".to_string()),
                };
                match parsed {
                    Ok(d) if d >= Duration::from_secs(1) && d <= MAX_WINDOW => heal.window = d,
                    Ok(_) => errors.push(
                        "drift.heal.window",
                        format!("{v}: expected a duration from 1s to 30days"),
                    ),
                    Err(e) => errors.push("drift.heal.window", format!("{v}: {e}")),
                }
            }
            other => errors.push(
                format!("drift.heal.{other}"),
                "unknown field (expected maxHeals or window)",
            ),
        }
    }
}

/// The document ([`crate::model::document`]); an empty one is `null` (the defaults).
fn parse_document(bytes: &[u8]) -> Result<Value, String> {
    Ok(crate::model::document::parse_json_or_yaml(bytes)?.unwrap_or(Value::Null))
}

/// The outcome of [`HealBudget::try_heal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Heal; this is the `nth` heal of the path within the window (1-based).
    Heal { nth: u32 },
    /// Do not heal: the path was healed `count` times within the window already.
    Exhausted { count: u32 },
}

/// Heals per path within a sliding window (pure: the caller gives the time).
#[derive(Debug, Clone, Default)]
pub struct HealBudget {
    limits: HealLimits,
    heals: HashMap<String, VecDeque<Instant>>,
}

impl HealBudget {
    pub fn new(limits: HealLimits) -> Self {
        HealBudget {
            limits,
            heals: HashMap::new(),
        }
    }

    /// Asks to heal `path` at `now`: allowed (and counted) while fewer than `maxHeals` heals
    /// of it fall within the window ending at `now`.
    pub fn try_heal(&mut self, path: &str, now: Instant) -> Budget {
        let window = self.limits.window;
        let q = self.heals.entry(path.to_string()).or_default();
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            q.pop_front();
        }
        if q.len() as u32 >= self.limits.max_heals {
            return Budget::Exhausted {
                count: q.len() as u32,
            };
        }
        q.push_back(now);
        // Paths healed long ago are forgotten, so the map stays as small as the recent heals.
        if self.heals.len() > 1024 {
            self.heals.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
        }
        Budget::Heal {
            nth: self.heals.get(path).map_or(1, |q| q.len() as u32),
        }
    }
}

/// Whether and how a drifted path can be healed under the node disruption policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealPlan {
    /// Rewrite the path, then run these actions (`[None]`: nothing to run); `matched` is the
    /// policy path or unit that chose them.
    Heal {
        actions: Vec<Action>,
        matched: Option<String>,
    },
    /// Not healed, and why (the node degrades).
    Refuse(String),
}

/// The unit a path of `config` belongs to: its unit file or one of its dropins under
/// `/etc/systemd/system/`.
fn unit_of<'a>(config: &'a MachineConfig, path: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(crate::host::manifest::UNIT_DIR)?;
    let rest = rest.strip_prefix('/')?;
    let name = match rest.split_once('/') {
        None => rest,
        Some((dir, file)) if !file.contains('/') => dir.strip_suffix(".d")?,
        Some(_) => return None,
    };
    config
        .spec
        .config
        .units
        .iter()
        .find(|u| u.name == name)
        .map(|u| u.name.as_str())
}

/// How a drifted `path` of `config` would be healed under `policy` (the effective policy): the
/// rewrite counts as a change of that one path (a unit file or dropin: of its unit, whose
/// definition changed), matched as an update's change would be (SPEC §3).
pub fn heal_plan(config: &MachineConfig, policy: &Policy, path: &str) -> HealPlan {
    let mut diff = Diff::default();
    let what = match unit_of(config, path) {
        Some(unit) => {
            diff.units.push(UnitChange {
                name: unit.to_string(),
                change: ChangeKind::Changed,
                definition_changed: true,
            });
            format!("unit {unit}")
        }
        None if path == crate::host::manifest::SSH_KEYS_PATH => {
            diff.sshkey = Some(crate::plan::diff::SshKeyChange {
                change: ChangeKind::Changed,
                keys_changed: true,
                password_changed: false,
                no_keys_left: false,
            });
            "the ssh keys of core".to_string()
        }
        None => {
            diff.files.push(FileChange {
                path: path.to_string(),
                change: ChangeKind::Changed,
            });
            path.to_string()
        }
    };
    let d = actions::decide(&diff, config, config, policy, &PlanOptions::default());
    let change = d.changes.first();
    let matched = change.and_then(|c| c.matched.clone());
    let why = change.map(|c| c.reason.clone()).unwrap_or_default();
    if d.actions.contains(&Action::Reboot) {
        return HealPlan::Refuse(format!(
            "the node disruption policy asks for a reboot for {what} ({why}), and a heal never reboots"
        ));
    }
    if d.drain || d.actions.contains(&Action::Drain) {
        return HealPlan::Refuse(format!(
            "the node disruption policy asks for a drain for {what} ({why}), and a heal never drains"
        ));
    }
    if d.actions.contains(&Action::Special) {
        return HealPlan::Refuse(format!(
            "{what} is applied by the Special action (registries.conf), whose safety depends on the drifted contents"
        ));
    }
    HealPlan::Heal {
        actions: d.actions,
        matched,
    }
}

/// What drift of one managed path would do, as `plan` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathDrift {
    pub path: String,
    pub action: DriftAction,
    /// The rule that chose the action (0-based), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// `heal`: the actions after the rewrite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then: Option<Vec<Action>>,
    /// `heal` that the policy prevents: why the path degrades instead.
    #[serde(skip_serializing_if = "Option::is_none", rename = "notHealed")]
    pub not_healed: Option<String>,
}

/// What drift would do for each of `paths` (managed paths of `config`) under `drift` and
/// `policy`.
pub fn preview<'a>(
    drift: &DriftConfig,
    config: &MachineConfig,
    policy: &Policy,
    paths: impl IntoIterator<Item = &'a str>,
) -> Vec<PathDrift> {
    paths
        .into_iter()
        .map(|p| {
            let v = drift.action_for(p);
            let (then, not_healed) = match v.action {
                DriftAction::Heal => match heal_plan(config, policy, p) {
                    HealPlan::Heal { actions, .. } => (Some(actions), None),
                    HealPlan::Refuse(why) => (None, Some(why)),
                },
                _ => (None, None),
            };
            PathDrift {
                path: p.to_string(),
                action: v.action,
                rule: v.rule,
                then,
                not_healed,
            }
        })
        .collect()
}

/// The paths drift detection watches for `config`, in config order: its files, its units'
/// files (with contents, or masked) and non-empty dropins, and `core`'s ssh keys file.
pub fn managed_paths(config: &MachineConfig) -> Vec<String> {
    let c = &config.spec.config;
    let unit_dir = crate::host::manifest::UNIT_DIR;
    let mut out: Vec<String> = c.files.iter().map(|f| f.path.clone()).collect();
    for u in &c.units {
        let path = format!("{unit_dir}/{}", u.name);
        if u.mask == Some(true) || u.contents.as_deref().is_some_and(|s| !s.is_empty()) {
            out.push(path.clone());
        }
        for d in &u.dropins {
            if d.contents.as_deref().is_some_and(|s| !s.is_empty()) {
                out.push(format!("{path}.d/{}", d.name));
            }
        }
    }
    if c.users
        .iter()
        .any(|u| u.name == "core" && !u.ssh_authorized_keys.is_empty())
    {
        out.push(crate::host::manifest::SSH_KEYS_PATH.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}
