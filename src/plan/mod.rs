//! Pure decisions: what changed between two configs ([`diff`]), which actions the node disruption
//! policy asks for ([`actions`]), whether the change can be applied at all ([`reconcile`]), and
//! whether a registries.conf change is safe without a drain ([`registries`]).
//!
//! [`plan()`] ties them together into a [`Plan`]: the answer to "what would happen?", with one
//! explained entry per change. Nothing here does I/O or reads the clock; the same inputs always
//! give the same plan, byte for byte once serialised.
//!
//! About `Special`: it stays in [`Plan::actions`] under its API name, and it means "reload
//! `crio.service`" (drained first unless the registries.conf change is safe). The executor treats
//! it as that reload; the plan's notes say so.

pub mod actions;
pub mod diff;
pub mod ladder;
pub mod os;
pub mod reconcile;
pub mod registries;

pub use diff::{ChangeKind, Diff, OsField};

use crate::model::MachineConfig;
use crate::model::policy::{Action, Policy};
use serde::Serialize;

/// Options of a plan that do not come from the two configs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// The force file (`/run/machine-config-daemon-force`, SPEC §7) is present: the whole config
    /// is re-applied and the node reboots.
    pub force: bool,
    /// The kind of host the change is for (None: an image-based host, rpm-ostree, as the
    /// upstream daemon assumes).
    pub host: Option<os::HostKind>,
}

/// What kind of thing a [`Change`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Subject {
    #[serde(rename = "file")]
    File,
    #[serde(rename = "unit")]
    Unit,
    #[serde(rename = "sshkey")]
    SshKey,
    #[serde(rename = "kernelArguments")]
    KernelArguments,
    #[serde(rename = "kernelType")]
    KernelType,
    #[serde(rename = "extensions")]
    Extensions,
    #[serde(rename = "fips")]
    Fips,
    #[serde(rename = "osImageURL")]
    OsImageUrl,
}

impl Subject {
    /// The `kind` string of the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::File => "file",
            Subject::Unit => "unit",
            Subject::SshKey => "sshkey",
            Subject::KernelArguments => "kernelArguments",
            Subject::KernelType => "kernelType",
            Subject::Extensions => "extensions",
            Subject::Fips => "fips",
            Subject::OsImageUrl => "osImageURL",
        }
    }

    fn of_os(field: OsField) -> Subject {
        match field {
            OsField::KernelArguments => Subject::KernelArguments,
            OsField::KernelType => Subject::KernelType,
            OsField::Extensions => Subject::Extensions,
            OsField::Fips => Subject::Fips,
            OsField::OsImageUrl => Subject::OsImageUrl,
        }
    }
}

/// One change and how the policy judged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: Subject,
    /// For files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// For units (the unit name) and sshkey (`core`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub change: ChangeKind,
    /// The policy path or unit name that matched (`sshkey` for the ssh key entry); `null` when
    /// nothing matched or the field always reboots.
    pub matched: Option<String>,
    /// The actions this change asks for on its own.
    pub actions: Vec<Action>,
    /// Why: which entry matched, or why the change forces a reboot.
    pub reason: String,
    /// For OS fields: the old value (boxed, as `new`: a change of every file of a large config
    /// has thousands of changes, none with these).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Box<serde_json::Value>>,
    /// For OS fields: the new value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Box<serde_json::Value>>,
}

/// What changing a node from one config to another would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Name of the old (current) config.
    pub from: String,
    /// Name of the new (desired) config.
    pub to: String,
    /// The final ordered actions (API shape). `[None]` when nothing but writing is needed.
    pub actions: Vec<Action>,
    /// A drain (cordon, evict) precedes the change.
    pub drain: bool,
    /// The change ends in a reboot (`actions` is `[Reboot]`).
    pub reboot: bool,
    /// Files (by path), units (by name), the ssh key change, then OS fields.
    pub changes: Vec<Change>,
    /// Explanations that are not about one change (force file, DaemonReload insertion,
    /// registries.conf verdict, `Special`).
    pub notes: Vec<String>,
    /// The OS steps (kernel arguments, kernel type, extensions, OS image) in the order they
    /// run, as the host would run them; they always end in a reboot.
    #[serde(rename = "osSteps")]
    pub os_steps: Vec<os::OsStep>,
    /// The host the OS steps are for.
    pub host: &'static str,
    /// Why the change cannot be applied (SPEC §4), as `can't reconcile config A with B: ...`.
    pub unreconcilable: Option<String>,
    /// When the plan ends in a reboot: which kind and why (`--reboot-mode`, see [`ladder`]).
    /// Not decided by [`plan()`], which knows nothing of the node's systemd: set by its callers.
    #[serde(rename = "rebootKind", skip_serializing_if = "Option::is_none")]
    pub reboot_kind: Option<ladder::RebootDecision>,
    /// The raw comparison the plan was made from (not serialised): the files and units the
    /// executor must write or remove.
    #[serde(skip)]
    pub diff: Diff,
}

/// Plans the change from `old` to `new` under `policy` (the effective policy, see
/// [`crate::model::policy::effective`]). Pure: no I/O, no clock.
pub fn plan(old: &MachineConfig, new: &MachineConfig, policy: &Policy, opts: &PlanOptions) -> Plan {
    let diff = diff::diff(old, new);
    let decision = actions::decide(&diff, old, new, policy, opts);
    let host = opts.host.clone().unwrap_or(os::HostKind::RpmOstree);
    let mut reasons = match reconcile::check(old, new, &diff) {
        Ok(()) => Vec::new(),
        Err(e) => e.reasons,
    };
    // The force file re-applies the whole config: its OS half is planned against what the
    // host booted, which only the host layer knows; a pure plan has no OS step for it.
    let os_steps = match os::plan(Some(old), new, &host, &os::Booted::default()) {
        Ok(p) => p.steps,
        Err(refused) => {
            reasons.extend(refused);
            Vec::new()
        }
    };
    let unreconcilable = (!reasons.is_empty()).then(|| {
        reconcile::Unreconcilable {
            from: old.name.clone(),
            to: new.name.clone(),
            reasons,
        }
        .to_string()
    });
    let reboot = decision.actions == [Action::Reboot];
    Plan {
        from: old.name.clone(),
        to: new.name.clone(),
        actions: decision.actions,
        drain: decision.drain,
        reboot,
        changes: decision.changes,
        notes: decision.notes,
        os_steps,
        host: host.name(),
        unreconcilable,
        reboot_kind: None,
        diff,
    }
}
