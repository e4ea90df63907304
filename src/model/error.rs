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
        FieldError {
            origin: None,
            path: path.into(),
            reason: reason.into(),
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
