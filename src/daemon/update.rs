//! The update flow (SPEC §5): one code path for the one-shot `apply` command and the daemon.
//!
//! 1. Plan (pure): the changes, the actions the node disruption policy asks for, and whether the
//!    change can be applied at all. An unreconcilable change stops here; nothing is touched.
//! 2. Drain when the plan says so, through the [`Node`] (the cluster side; standalone: skipped).
//! 3. Units the new config drops are preset (before their files go).
//! 4. Files, units, dropins, ssh keys and `currentconfig` are written as one transaction
//!    ([`crate::host::apply`]): it rolls itself back on any failure, and a crash is rolled back by
//!    the journal on the next start.
//! 5. Enable / disable / preset the units that are new or changed.
//! 6. Post actions in plan order: reload, restart, daemon-reload (`Special` is a reload of
//!    crio.service; a reload that appears twice runs once), and the reboot last, after the
//!    [`Node`] has recorded that it is coming. The reboot is full or soft as the disruption
//!    ladder decides ([`crate::plan::ladder`]: `--reboot-mode`, the change, what the node's
//!    systemd supports); the plan carries the decision (`rebootKind`).
//!
//! 5b. The OS half (kernel arguments, kernel type, extensions, OS image) is staged through the
//!    OS backend ([`crate::host::os`]) after the files, journaled by its pending record (written
//!    before the files, with the config the node ran, so an interruption anywhere is undone or
//!    resumed on the next start). A plan with OS steps always ends in a reboot, and the node is
//!    not `Done` until it has booted into the staged OS and that boot validated.
//!
//! If a step after the transaction fails (an OS step, a systemd job), the OS change is undone
//! (`rpm-ostree cleanup -p`, or the package host's inverse), the files are put back by
//! applying the old config over the new one, systemd re-reads its units, and the error says
//! both what failed and that the node is back on the old config. Without systemd
//! (`--no-systemd`) steps 3, 5 and 6 are reported as skipped, never as done.

use crate::host::exec::{Outcome, PostAction};
use crate::host::os::{self as hostos, OsHost, Pending, Phase};
use crate::host::systemd::{ServiceManager, SystemdError};
use crate::host::units::UnitOp;
use crate::host::{self, ApplyOptions, ApplyReport, HostError, Root};
use crate::model::MachineConfig;
use crate::model::policy::{Action, Policy};
use crate::plan::ladder::{self, RebootDecision, RebootKind, RebootMode, SoftRebootSupport};
use crate::plan::os::{Booted, OsPlan};
use crate::plan::{self, Plan, PlanOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to update.
#[derive(Debug, Clone)]
pub struct UpdateInput {
    /// The current config (None: the first apply, everything written, no post actions).
    pub old: Option<MachineConfig>,
    pub new: MachineConfig,
    pub policy: Policy,
    /// The force file is present: rewrite everything, reboot.
    pub force: bool,
    /// The state directory on the node (None: `/etc/machine-config-daemon`).
    pub state_dir: Option<String>,
    /// The OS backend of the node.
    pub os: OsHost,
    /// `--reboot-mode` (see [`crate::plan::ladder`]).
    pub reboot_mode: RebootMode,
    /// Whether the node's systemd can soft-reboot (irrelevant with `RebootMode::Full`).
    pub soft_reboot: SoftRebootSupport,
    /// Keep the plan's changes for the caller ([`Applied::plan`]): `apply` prints them. The
    /// daemon, which puts its own plan in the status before the update, does not: the changes
    /// of a large update (about 230 bytes a changed path) are then dropped before the
    /// transaction rather than held through it.
    pub keep_changes: bool,
}

/// One step that was performed or skipped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub what: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A successful update.
#[derive(Debug)]
pub struct Applied {
    /// None on the first apply. Its changes are empty unless [`UpdateInput::keep_changes`].
    pub plan: Option<Plan>,
    pub report: ApplyReport,
    /// Drain, unit operations and post actions, in the order they ran.
    pub steps: Vec<Step>,
    /// The plan ends in a reboot (performed, or skipped without systemd).
    pub reboot: bool,
    /// Which kind of reboot, and why (when `reboot`).
    pub reboot_kind: Option<RebootDecision>,
    /// OS changes were staged: the config is applied only once the node has booted into them.
    pub os_staged: bool,
    /// First apply: what the config asks for that this daemon never applies (install-time
    /// sections), one line per field.
    pub not_applied: Vec<String>,
    /// The config now current (the input's `new`).
    pub config: Arc<MachineConfig>,
}

/// Why an update did not happen, or was undone.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The change cannot be applied (SPEC §4); nothing was changed.
    #[error("{0}")]
    Unreconcilable(String),
    /// systemd is needed and does not answer; nothing was changed.
    #[error("{0}")]
    Unavailable(#[source] SystemdError),
    /// The drain failed; nothing was changed.
    #[error("drain: {0}")]
    Drain(String),
    /// Writing the config failed; the transaction rolled back (or refused before writing).
    #[error(transparent)]
    Host(#[from] HostError),
    /// A systemd step failed after the files were written; they were put back.
    #[error("{source}; rolled back to {old}")]
    Action {
        #[source]
        source: SystemdError,
        old: String,
    },
    /// A systemd step failed and putting the old config back failed too.
    #[error("{source}; rolling back to {old} failed too: {rollback}")]
    ActionRollbackFailed {
        #[source]
        source: SystemdError,
        old: String,
        rollback: String,
    },
    /// A systemd step of a first apply failed (there is no older config to go back to).
    #[error("{0}")]
    FirstApply(#[source] SystemdError),
    /// An OS step failed: the OS change was undone and the files put back (`rollback` says
    /// what failed of that, if anything).
    #[error("{reason}{}", rollback.as_deref().map(|r| format!("; {r}")).unwrap_or_default())]
    Os {
        reason: String,
        rollback: Option<String>,
    },
}

impl UpdateError {
    /// The systemd error behind this one, if any (for events such as `FailedServiceReload`).
    pub fn systemd(&self) -> Option<&SystemdError> {
        match self {
            UpdateError::Action { source, .. }
            | UpdateError::ActionRollbackFailed { source, .. }
            | UpdateError::FirstApply(source) => Some(source),
            _ => None,
        }
    }
}

/// The cluster side of an update. Standalone mode has no cluster: see [`Standalone`].
#[async_trait::async_trait]
pub trait Node: Send + Sync {
    /// Cordon and drain before the change.
    async fn drain(&self, config: &str) -> Result<Outcome, String>;
    /// Record that a reboot of this kind is about to happen (`post-config-action: Rebooting`).
    async fn before_reboot(&self, config: &str, kind: &RebootDecision) -> Result<(), String>;
}

/// No cluster: nothing to drain.
pub struct Standalone;

#[async_trait::async_trait]
impl Node for Standalone {
    async fn drain(&self, _config: &str) -> Result<Outcome, String> {
        Ok(Outcome::Skipped(
            "standalone mode: no cluster to drain".into(),
        ))
    }
    async fn before_reboot(&self, _config: &str, _kind: &RebootDecision) -> Result<(), String> {
        Ok(())
    }
}

/// The post actions of a plan, in order, each once (`Special` is a reload of crio.service;
/// `None` and `Drain` are not post actions).
pub fn post_actions(plan: &Plan) -> Vec<PostAction> {
    post_actions_of(&plan.actions)
}

/// [`post_actions`] of a list of policy actions.
pub fn post_actions_of(actions: &[Action]) -> Vec<PostAction> {
    let mut out: Vec<PostAction> = Vec::new();
    for a in actions {
        let p = match a {
            Action::Reload { reload } => PostAction::Reload(reload.service_name.clone()),
            Action::Restart { restart } => PostAction::Restart(restart.service_name.clone()),
            Action::DaemonReload => PostAction::DaemonReload,
            Action::Reboot => PostAction::Reboot,
            Action::Special => PostAction::Reload("crio.service".to_string()),
            Action::None | Action::Drain => continue,
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    // The reboot, if any, comes last whatever the policy's order.
    if let Some(i) = out.iter().position(|p| *p == PostAction::Reboot) {
        let r = out.remove(i);
        out.push(r);
    }
    out
}

/// Plans the update without touching anything but reading what the host booted (for a first
/// apply or a forced one, whose OS half is planned against it). The OS half's refusals make
/// the plan unreconcilable.
pub fn plan_for(input: &UpdateInput) -> (Option<Plan>, Result<OsPlan, String>) {
    let plan = input.old.as_ref().map(|o| {
        plan::plan(
            o,
            &input.new,
            &input.policy,
            &PlanOptions {
                force: input.force,
                host: Some(input.os.kind().clone()),
            },
        )
    });
    let against_boot = input.old.is_none() || input.force;
    let booted = if against_boot {
        input.os.booted()
    } else {
        Booted::default()
    };
    let old = if against_boot {
        None
    } else {
        input.old.as_ref()
    };
    let os = crate::plan::os::plan(old, &input.new, input.os.kind(), &booted).map_err(|r| {
        crate::plan::reconcile::Unreconcilable {
            from: input
                .old
                .as_ref()
                .map(|o| o.name.clone())
                .unwrap_or_default(),
            to: input.new.name.clone(),
            reasons: r,
        }
        .to_string()
    });
    let plan = plan.map(|mut p| {
        if let Ok(os) = &os {
            p.os_steps = os.steps.clone();
        }
        if p.reboot || !p.os_steps.is_empty() {
            let change = ladder::Change::of_plan(&p, input.force);
            p.reboot_kind = Some(ladder::decide(
                &change,
                input.reboot_mode,
                &input.soft_reboot,
            ));
        }
        p
    });
    (plan, os)
}

/// The reboot an update with this plan ends in, when it ends in one: the plan's decision, or
/// for a first apply (no plan: its reboot is for staged OS changes) a full one.
fn reboot_decision(plan: Option<&Plan>, os_steps: bool) -> RebootDecision {
    plan.and_then(|p| p.reboot_kind.clone()).unwrap_or_else(|| {
        ladder::decide(
            &ladder::Change {
                os_steps,
                ..Default::default()
            },
            RebootMode::Full,
            &SoftRebootSupport::Unknown,
        )
    })
}

/// Runs the whole update beneath `root`. `systemd` None: `--no-systemd`.
pub async fn update(
    root: &Path,
    input: UpdateInput,
    systemd: Option<&dyn ServiceManager>,
    node: &dyn Node,
) -> Result<Applied, UpdateError> {
    let (plan, os_plan) = plan_for(&input);
    if let Some(reason) = plan.as_ref().and_then(|p| p.unreconcilable.clone()) {
        return Err(UpdateError::Unreconcilable(reason));
    }
    let os_plan = os_plan.map_err(UpdateError::Unreconcilable)?;
    // A first apply writes everything: every item meets the rules an update checks for the
    // items it touches.
    let mut not_applied = Vec::new();
    if input.old.is_none() {
        let problems = crate::plan::reconcile::config_problems(&input.new);
        if !problems.is_empty() {
            return Err(UpdateError::Unreconcilable(format!(
                "can't apply config {}: {}",
                input.new.name,
                problems.join("; ")
            )));
        }
        not_applied = crate::plan::reconcile::not_applied(&input.new);
        for n in &not_applied {
            tracing::warn!(config = %input.new.name, "{n}");
        }
    }
    let unit_ops = host::units::unit_ops(
        input.old.as_ref().map(|o| &o.spec.config),
        &input.new.spec.config,
        input.force,
    );
    let mut actions = plan.as_ref().map(post_actions).unwrap_or_default();
    // OS changes take effect at boot: a first apply that stages some reboots too.
    if !os_plan.steps.is_empty() && !actions.contains(&PostAction::Reboot) {
        actions.push(PostAction::Reboot);
    }
    let reboot_kind = actions
        .contains(&PostAction::Reboot)
        .then(|| reboot_decision(plan.as_ref(), !os_plan.steps.is_empty()));
    if let Some(d) = &reboot_kind {
        if input.reboot_mode == RebootMode::Soft && d.kind == RebootKind::Full {
            tracing::warn!(config = %input.new.name, kind = d.kind.as_str(), reason = %d.reason, "--reboot-mode=soft, but the reboot into {} is full: {}", input.new.name, d.reason);
        } else {
            tracing::info!(config = %input.new.name, kind = d.kind.as_str(), reason = %d.reason, "the reboot into {} will be {}: {}", input.new.name, d.kind, d.reason);
        }
    }
    // Make sure systemd answers before anything is changed, when it will be needed.
    if let Some(sm) = systemd
        && (!unit_ops.is_empty() || !actions.is_empty())
    {
        sm.unit_properties("init.scope")
            .await
            .map_err(UpdateError::Unavailable)?;
    }
    let mut steps = Vec::new();
    if plan.as_ref().is_some_and(|p| p.drain) {
        let outcome = node
            .drain(&input.new.name)
            .await
            .map_err(UpdateError::Drain)?;
        steps.push(Step {
            what: "drain".into(),
            outcome,
        });
    }
    // Presetting units that are about to go cannot be undone by a rollback, and is harmless.
    for op in &unit_ops.before_files {
        let outcome = run_unit_op(systemd, op)
            .await
            .map_err(|e| match &input.old {
                Some(o) => UpdateError::Action {
                    source: e,
                    old: o.name.clone(),
                },
                None => UpdateError::FirstApply(e),
            })?;
        steps.push(Step {
            what: op.to_string(),
            outcome,
        });
    }

    // What is left no longer needs the plan's raw comparison (an entry per changed path), and
    // the memory freed by reading and planning goes back before the transaction, whose own
    // allocations would otherwise come on top of it.
    let keep_changes = input.keep_changes;
    let plan = plan.map(|p| Plan {
        diff: Default::default(),
        changes: if keep_changes { p.changes } else { Vec::new() },
        ..p
    });
    crate::daemon::trim_memory();
    let sd = input.state_dir.clone();
    let old = input.old.map(Arc::new);
    let new = Arc::new(input.new);
    let os = Arc::new(input.os);
    // The OS half's journal goes first, so that an interruption anywhere after this point is
    // undone (or resumed) on the next start.
    let mut pending = None;
    if !os_plan.steps.is_empty() {
        let p = journal_os(root, sd.clone(), &os, old.clone(), &new, &os_plan).await?;
        pending = Some(p);
    }
    let report = match write(root, sd.clone(), old.clone(), new.clone(), input.force).await {
        Ok(r) => r,
        Err(e) => {
            if let Some(p) = &pending {
                let _ = undo_os(root, sd.clone(), os.clone(), p.clone()).await;
            }
            return Err(e.into());
        }
    };
    tracing::info!(config = %new.name, steps = report.steps.len(), "files written for {}: {} steps", new.name, report.steps.len());

    if let Some(p) = pending.as_mut()
        && let Err(reason) = stage_os(root, sd.clone(), os.clone(), p).await
    {
        tracing::error!(config = %new.name, "OS change failed, rolling back {}: {reason}", new.name);
        let mut failed = Vec::new();
        if let Err(e) = undo_os(root, sd.clone(), os.clone(), p.clone()).await {
            failed.push(format!("undoing the OS change failed too: {e}"));
        }
        let rollback = match old {
            Some(old) => {
                let name = old.name.clone();
                match self::rollback(root, sd, new, old, systemd).await {
                    Ok(()) => format!("rolled back to {name}"),
                    Err(r) => format!("rolling back to {name} failed too: {r}"),
                }
            }
            None => "first apply: the files stay written".into(),
        };
        failed.insert(0, rollback);
        return Err(UpdateError::Os {
            reason,
            rollback: Some(failed.join("; ")),
        });
    }
    let result = async {
        for op in &unit_ops.after_files {
            let outcome = run_unit_op(systemd, op).await?;
            steps.push(Step {
                what: op.to_string(),
                outcome,
            });
        }
        for action in &actions {
            let kind = reboot_kind.as_ref().filter(|_| *action == PostAction::Reboot);
            if let Some(k) = kind
                && systemd.is_some()
                && let Err(e) = node.before_reboot(&new.name, k).await
            {
                tracing::warn!(error = %e, "cannot record the coming reboot: {e}");
            }
            let outcome = match kind {
                Some(k) if k.kind == RebootKind::Soft => soft_reboot(systemd).await?,
                _ => run_post_action(systemd, action).await?,
            };
            match &outcome {
                Outcome::Done => {
                    tracing::info!(action = %action, config = %new.name, "post action {action} for {}: done", new.name)
                }
                Outcome::Skipped(why) => {
                    tracing::info!(action = %action, config = %new.name, "post action {action} for {}: skipped ({why})", new.name)
                }
            }
            // A full reboot keeps its upstream name; a soft one says so.
            let what = match kind {
                Some(k) if k.kind == RebootKind::Soft => format!("soft {action}"),
                _ => action.to_string(),
            };
            steps.push(Step { what, outcome });
        }
        Ok::<(), SystemdError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, config = %new.name, "post action failed, rolling back {}: {e}", new.name);
        if let Some(p) = &pending
            && let Err(u) = undo_os(root, sd.clone(), os.clone(), p.clone()).await
        {
            tracing::error!(error = %u, "undoing the OS change failed: {u}");
        }
        let Some(old) = old else {
            return Err(UpdateError::FirstApply(e));
        };
        let old_name = old.name.clone();
        return match rollback(root, sd, new, old, systemd).await {
            Ok(()) => Err(UpdateError::Action {
                source: e,
                old: old_name,
            }),
            Err(r) => Err(UpdateError::ActionRollbackFailed {
                source: e,
                old: old_name,
                rollback: r,
            }),
        };
    }
    let reboot = actions.contains(&PostAction::Reboot);
    Ok(Applied {
        plan,
        report,
        steps,
        reboot,
        reboot_kind,
        os_staged: pending.is_some(),
        not_applied,
        config: new,
    })
}

fn state_root(root: &Path, state_dir: Option<&str>) -> Result<Root, HostError> {
    let r = Root::open(root)?;
    match state_dir {
        Some(d) => r.with_state_dir(d),
        None => Ok(r),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("task failed: {e}")))
}

/// Writes the OS half's journal (phase `Staging`) and the config the node runs now.
async fn journal_os(
    root: &Path,
    sd: Option<String>,
    os: &Arc<OsHost>,
    old: Option<Arc<MachineConfig>>,
    new: &MachineConfig,
    os_plan: &OsPlan,
) -> Result<Pending, HostError> {
    let r = state_root(root, sd.as_deref())?;
    let previous_cmdline = hostos::cmdline_file(&r).map_err(|e| HostError::State {
        path: crate::plan::os::KERNEL_CMDLINE_FILE.into(),
        reason: e.to_string(),
    })?;
    let p = Pending {
        config: new.name.clone(),
        from: old.as_ref().map(|o| o.name.clone()),
        phase: Phase::Staging,
        boot_id: crate::daemon::reboot::boot_id(),
        attempts: 1,
        steps: os_plan.steps.clone(),
        undo: os.undo_steps(&os_plan.steps, previous_cmdline.as_deref()),
        expect: os_plan.expect.clone(),
        reason: String::new(),
    };
    let p2 = p.clone();
    tokio::task::spawn_blocking(move || {
        if let Some(o) = &old {
            if o.is_thin() {
                // Read for the plan only: the files are not written yet, so `currentconfig`
                // still holds it whole.
                let whole = host::txn::read_replaced(&r, o)?;
                hostos::save_previous(&r, &whole)?;
            } else {
                hostos::save_previous(&r, o)?;
            }
        }
        p2.write(&r)
    })
    .await
    .unwrap_or_else(|e| {
        Err(HostError::State {
            path: hostos::PENDING.into(),
            reason: format!("task failed: {e}"),
        })
    })?;
    Ok(p)
}

/// Runs the OS steps of `pending`, then marks it `Staged`.
pub async fn stage_os(
    root: &Path,
    sd: Option<String>,
    os: Arc<OsHost>,
    pending: &mut Pending,
) -> Result<(), String> {
    let root = root.to_path_buf();
    let mut p = pending.clone();
    let p = blocking(move || {
        let r = state_root(&root, sd.as_deref()).map_err(|e| e.to_string())?;
        for step in &p.steps {
            os.run(step, &r).map_err(|e| e.to_string())?;
        }
        p.phase = Phase::Staged;
        p.write(&r).map_err(|e| e.to_string())?;
        Ok(p)
    })
    .await?;
    *pending = p;
    Ok(())
}

/// Undoes the OS steps of `pending` and removes the journal.
pub async fn undo_os(
    root: &Path,
    sd: Option<String>,
    os: Arc<OsHost>,
    pending: Pending,
) -> Result<(), String> {
    let root = root.to_path_buf();
    blocking(move || {
        let r = state_root(&root, sd.as_deref()).map_err(|e| e.to_string())?;
        os.undo(&pending.undo, &r).map_err(|e| e.to_string())?;
        Pending::clear(&r).map_err(|e| e.to_string())
    })
    .await
}

/// The transaction, off the async threads (it fsyncs).
async fn write(
    root: &Path,
    state_dir: Option<String>,
    old: Option<Arc<MachineConfig>>,
    new: Arc<MachineConfig>,
    force: bool,
) -> Result<ApplyReport, HostError> {
    let root: PathBuf = root.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let root = state_root(&root, state_dir.as_deref())?;
        host::apply(
            &root,
            old.as_deref(),
            &new,
            &ApplyOptions {
                force,
                dry_run: false,
            },
        )
    })
    .await
    .unwrap_or_else(|e| {
        Err(HostError::State {
            path: "update".into(),
            reason: format!("update task failed: {e}"),
        })
    })
}

/// Puts `old` back over `new` after a failed post action, and lets systemd re-read its units.
pub(crate) async fn rollback(
    root: &Path,
    state_dir: Option<String>,
    new: Arc<MachineConfig>,
    old: Arc<MachineConfig>,
    systemd: Option<&dyn ServiceManager>,
) -> Result<(), String> {
    let units_changed = new.spec.config.units != old.spec.config.units;
    // The old config was read thin for the plan: its contents come back from the update's
    // copy of the stored config it replaced.
    let old = if old.is_thin() {
        let r = state_root(root, state_dir.as_deref()).map_err(|e| e.to_string())?;
        Arc::new(
            blocking(move || host::txn::read_replaced(&r, &old).map_err(|e| e.to_string())).await?,
        )
    } else {
        old
    };
    write(root, state_dir, Some(new), old, false)
        .await
        .map_err(|e| e.to_string())?;
    if units_changed && let Some(sm) = systemd {
        sm.daemon_reload().await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn run_unit_op(
    systemd: Option<&dyn ServiceManager>,
    op: &UnitOp,
) -> Result<Outcome, SystemdError> {
    let Some(sm) = systemd else {
        return Ok(skipped());
    };
    match op {
        UnitOp::Enable(u) => sm.enable_unit_files(std::slice::from_ref(u)).await?,
        UnitOp::Disable(u) => sm.disable_unit_files(std::slice::from_ref(u)).await?,
        UnitOp::Preset(u) => sm.preset_unit_files(std::slice::from_ref(u)).await?,
    }
    Ok(Outcome::Done)
}

pub(crate) async fn run_post_action(
    systemd: Option<&dyn ServiceManager>,
    action: &PostAction,
) -> Result<Outcome, SystemdError> {
    let Some(sm) = systemd else {
        return Ok(skipped());
    };
    match action {
        PostAction::Reload(u) => sm.reload_unit(u).await?,
        PostAction::Restart(u) => sm.restart_unit(u).await?,
        PostAction::DaemonReload => sm.daemon_reload().await?,
        PostAction::Reboot => sm.reboot().await?,
    }
    Ok(Outcome::Done)
}

/// Runs `actions` in order (reloads, restarts, daemon-reloads: a reboot is only ever the last
/// step of an update, which runs it itself), stopping at the first that fails: the steps that
/// ran, and the failed action with its error. Used for the actions outside an update: a drift
/// heal's and the CA files'.
pub async fn run_post_actions(
    systemd: Option<&dyn ServiceManager>,
    actions: &[PostAction],
) -> (Vec<Step>, Option<(PostAction, SystemdError)>) {
    let mut steps = Vec::new();
    for action in actions {
        if *action == PostAction::Reboot {
            continue;
        }
        match run_post_action(systemd, action).await {
            Ok(outcome) => steps.push(Step {
                what: action.to_string(),
                outcome,
            }),
            Err(e) => return (steps, Some((action.clone(), e))),
        }
    }
    (steps, None)
}

/// The soft reboot the ladder decided on.
async fn soft_reboot(systemd: Option<&dyn ServiceManager>) -> Result<Outcome, SystemdError> {
    let Some(sm) = systemd else {
        return Ok(skipped());
    };
    sm.soft_reboot().await?;
    Ok(Outcome::Done)
}

fn skipped() -> Outcome {
    Outcome::Skipped("no systemd (--no-systemd)".into())
}
