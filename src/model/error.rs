//! Errors of the model: what is wrong with an input, where (origin and field path) and why.
//!
//! Loading reports every problem of an input at once ([`LoadErrors`]), so a user fixes a file in
//! one pass; rendering has its own small error type ([`RenderError`]) for rules that only exist
//! once several MachineConfigs are merged.

use std::fmt;

/// One problem in an input: `origin: path: reason`, e.g.
/// `99-worker-ssh.yaml: spec.config.storage.files[3].contents.source: invalid base64 in data URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where the input came from (a file name), when known.
    pub origin: Option<String>,
    /// The field path in the input (`spec.config.storage.files[0].mode`); empty for the document
    /// as a whole (a syntax error).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        let (path, reason) = (path.into(), reason.into());
        FieldError {
            origin: None,
            path: clip_input(&path),
            reason: clip_input(&reason),
        }
    }

    /// The same problem, attributed to `origin` (unless it already has one).
    pub fn with_origin(mut self, origin: &str) -> Self {
        if self.origin.is_none() && !origin.is_empty() {
            self.origin = Some(origin.to_string());
        }
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for FieldError {}

/// Every problem found while loading one or more inputs. Displays one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors {
    fields: Vec<FieldError>,
    messages: Vec<String>,
}

impl LoadErrors {
    /// Collects `fields`; an empty list is allowed but callers only build one when something failed.
    pub fn new(fields: Vec<FieldError>) -> Self {
        let messages = fields.iter().map(ToString::to_string).collect();
        LoadErrors { fields, messages }
    }

    /// One problem without a field path (e.g. an unreadable file).
    pub fn single(origin: &str, reason: impl Into<String>) -> Self {
        Self::new(vec![FieldError::new("", reason).with_origin(origin)])
    }

    /// Each problem as the message printed to the user (`origin: path: reason`).
    pub fn errors(&self) -> &[String] {
        &self.messages
    }

    /// Each problem with its parts.
    pub fn fields(&self) -> &[FieldError] {
        &self.fields
    }

    /// Appends the problems of `other`.
    pub fn extend(&mut self, other: LoadErrors) {
        self.fields.extend(other.fields);
        self.messages.extend(other.messages);
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there is no problem.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.messages.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(m)?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

impl From<RenderError> for LoadErrors {
    fn from(e: RenderError) -> Self {
        LoadErrors::new(vec![FieldError::new("", e.to_string())])
    }
}

/// Why a set of MachineConfigs cannot be rendered into one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("nothing to render: no MachineConfig given")]
    NoConfigs,
    #[error("pool name {0:?} is invalid: use lowercase letters, digits and '-'")]
    InvalidPool(String),
    #[error("MachineConfig name {0:?} appears more than once")]
    DuplicateName(String),
    #[error(
        "spec.kernelType: {first_config} asks for {first:?} and {second_config} for {second:?}; only one non-default kernel type may be set"
    )]
    ConflictingKernelTypes {
        first_config: String,
        first: String,
        second_config: String,
        second: String,
    },
    #[error(
        "spec.extensions: kernel-devel (from {config}) is not supported with kernelType {kernel_type:?}"
    )]
    KernelDevelWithNonDefaultKernel { config: String, kernel_type: String },
}

/// Longest run of input a message keeps, in characters (see [`clip_input`]).
const RUN_MAX: usize = super::load::QUOTE_MAX;
/// Longest message kept whole, in characters.
const MESSAGE_MAX: usize = 1000;

/// `msg` with every run of more than [`RUN_MAX`] characters without a space cut to that length
/// (its full size said), and the whole cut to [`MESSAGE_MAX`] characters: a message never echoes
/// more than about 200 characters of one piece of input (a 10 MB name, a huge key).
pub fn clip_input(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(MESSAGE_MAX + 64));
    let mut run_start = 0;
    let mut run_chars = 0;
    let mut skipped = 0usize;
    for (i, c) in msg.char_indices() {
        if c.is_whitespace() {
            if skipped > 0 {
                out.push_str(&format!("… ({} bytes)", i - run_start));
                skipped = 0;
            }
            run_chars = 0;
            out.push(c);
        } else {
            if run_chars == 0 {
                run_start = i;
            }
            run_chars += 1;
            if run_chars > RUN_MAX {
                skipped += 1;
            } else {
                out.push(c);
            }
        }
    }
    if skipped > 0 {
        out.push_str(&format!("… ({} bytes)", msg.len() - run_start));
    }
    match out.char_indices().nth(MESSAGE_MAX) {
        Some((i, _)) => {
            out.truncate(i);
            out.push_str(" …");
            out
        }
        None => out,
    }
}

/// A message of serde, serde_json or the YAML parser said in the user's terms: JSON type names
/// instead of Rust ones (`expected i64` → `expected an integer`), no parser options or Rust debug
/// output (`set DuplicateKeyPolicy in Options`, `Depth { depth: 65 }`).
pub fn user_terms(msg: &str) -> String {
    let mut m = msg.to_string();
    // YAML: duplicate keys.
    if let Some(rest) = m.strip_prefix("duplicate mapping key: ") {
        let rest = rest.replacen(", set DuplicateKeyPolicy in Options if acceptable", "", 1);
        m = format!("duplicate key {rest}");
    }
    // YAML: resource limits of the parser.
    if let Some(rest) = m.strip_prefix("budget breached: ") {
        let (what, tail) = match rest.find(" at line ") {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let name = what.split([' ', '{']).next().unwrap_or(what);
        let said = match name {
            "Depth" => "nested more than 64 levels deep".to_string(),
            "Aliases" => "too many aliases (*name)".to_string(),
            "Anchors" => "too many anchors (&name)".to_string(),
            "AliasAnchorRatio" => "too many aliases for its anchors".to_string(),
            "Events" | "Nodes" => "too many values".to_string(),
            "Documents" => "too many documents".to_string(),
            "ScalarBytes" | "InputBytes" | "RecordedAnchorBytes" | "RecordedAnchorEvents" => {
                "too large".to_string()
            }
            "MergeKeys" => "too many merge keys (<<)".to_string(),
            _ => "too large or too complex".to_string(),
        };
        m = format!("{said}{tail}");
    }
    if m.starts_with("recursion limit exceeded") {
        m = m.replacen(
            "recursion limit exceeded",
            "nested more than 128 levels deep",
            1,
        );
    }
    // serde: `invalid type: string "x", expected i64` → `expected an integer, got a string "x"`.
    if let Some(rest) = m.strip_prefix("invalid type: ")
        && let Some((got, expected)) = rest.rsplit_once(", expected ")
    {
        let (expected, tail) = split_position(expected);
        m = format!(
            "expected {}, got {}{tail}",
            type_name(expected),
            article(got)
        );
    } else if let Some(rest) = m.strip_prefix("invalid value: ")
        && let Some((got, expected)) = rest.rsplit_once(", expected ")
    {
        let (expected, tail) = split_position(expected);
        m = format!(
            "invalid value {got}: expected {}{tail}",
            type_name(expected)
        );
    }
    // serde: a list where an object was expected.
    if m.starts_with("invalid length ")
        && let Some((_, expected)) = m.split_once(", expected struct ")
    {
        let (_, tail) = split_position(expected);
        m = format!("expected an object, got a list{tail}");
    }
    if let Some(rest) = m.strip_prefix("missing field `")
        && let Some((field, tail)) = rest.split_once('`')
    {
        m = format!("missing required field {field}{tail}");
    }
    m
}

/// serde's `string "x"`, `integer `5``, `map` as `a string "x"`, `the integer 5`, `an object`.
fn article(got: &str) -> String {
    for (serde, ours) in [
        ("string ", "a string "),
        ("integer ", "the integer "),
        ("floating point ", "the number "),
        ("boolean ", "the boolean "),
    ] {
        if let Some(rest) = got.strip_prefix(serde) {
            return format!("{ours}{}", rest.replace('`', ""));
        }
    }
    match got {
        "map" => "an object".into(),
        "sequence" => "a list".into(),
        "unit value" | "null" => "null".into(),
        other => other.to_string(),
    }
}

/// Splits `expected i64 at line 3 column 5` into the type and the position.
fn split_position(s: &str) -> (&str, &str) {
    match s.find(" at line ") {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// A Rust or serde type name as a JSON one.
fn type_name(t: &str) -> String {
    let t = t.trim();
    match t {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => "an integer".into(),
        "u8 or u16 or u32 or u64" => "a non-negative integer".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list".into(),
        "a map" => "an object".into(),
        "bool" => "a boolean".into(),
        "a borrowed string" => "a string".into(),
        _ if t.starts_with("struct ") => "an object".into(),
        _ if t.starts_with("enum ") => "one of the allowed values".into(),
        _ => t.to_string(),
    }
}
