//! `machine-config-daemon start`: the long-running daemon, in standalone or cluster mode.
//!
//! One code path for both modes; the [`Mode`] decides where the desired config comes from and
//! where the state goes. Standalone: a local file or directory (watched with inotify) and the
//! status file. Cluster ([`super::cluster`]): the node's `desiredConfig` annotation (a watch of
//! the own Node, in the same `select!`) and a GET of that MachineConfig; the state goes to the
//! node annotations, the MachineConfigNode and events as well as to the status file.
//!
//! Start-up (in this order): roll back an interrupted update (the host journal), finish a
//! reboot the daemon asked for (validate the disk against the config it rebooted into), honour
//! the force file, read the desired config and apply it if it differs from the current one (or
//! validate the disk when it does not), then watch. While running it sleeps in one `select!` on
//! inotify (managed paths, the desired config, the policy, the force file and the ControllerConfig
//! file; in cluster mode the node and ControllerConfig watches instead of those three files),
//! SIGTERM/SIGINT and, only when systemd asked for one, the watchdog timer (and in cluster mode,
//! only while a failed request waits to be retried, a retry timer): nothing polls.
//!
//! The ControllerConfig's CA files ([`super::certs`]) are written from the same loop, so never
//! during an update; they are managed paths too (their records kept beside the config's
//! manifest).
//!
//! Drift (SPEC §6): an inotify event on a managed path re-checks that path alone against its
//! record; a mismatch makes the node `Degraded` with the exact reason, restoring the file
//! makes it `Done` again. A queue overflow re-checks everything. Drift detection is paused
//! during an update, but the watches stay in place: their events queue up meanwhile and are
//! looked at against the new config once it is current. So after an update only the paths it
//! added or changed need a check (they may sit in directories that did not exist to be
//! watched); the whole config is checked before every update, and after a forced or failed one.
//!
//! What drift does is chosen per path by the daemon configuration file's rules
//! ([`super::drift`]): `degrade` (the default, as above), `report` (logged, an event, the
//! metrics, the status lists it; the node stays `Done`) or `heal` (see [`drift`]: the path is
//! rewritten from the current config and the policy's actions for it run, within a budget).
//! Heals run in the event loop, like updates, so one never overlaps the other; the daemon
//! holds the node's lock all along, so no `apply` runs meanwhile either. The heal's own write
//! comes back as an inotify event, which checks the path and finds it clean.
//!
//! Try mode ([`super::confirm`], [`confirm`]): an update on trial keeps the node `Working`
//! until the health checks confirm it; one they do not confirm in time is reverted and the node
//! is `Degraded` until the desired config changes. Its check timer is one more arm of the
//! `select!`, set only while an update is on trial.
//!
//! The node state is derived, in this order of precedence: a failed update or unreadable desired
//! config (`Degraded`), a refused change (`Unreconcilable`), the first drifted path (`Degraded`),
//! else `Done`; `Working` while an update runs. Every transition is checked
//! ([`NodeState::can_go_to`]), logged, counted, and written to the status file.

use super::cluster::{ClusterCtx, ClusterOptions, Snapshot};
use super::metrics::{Metrics, os_release};
use super::reboot::{RebootRecord, boot_id, happened, record_path};
use super::source::{LocalSource, Wanted};
use super::state::NodeState;
use super::status::{ConditionStatus, Status, status_path};
use super::update::Node;
use super::{FORCE_FILE, notify};
use crate::cluster::ClusterError;
use crate::cluster::events::EventReason;
use crate::host::exec::Outcome;
use crate::host::ondisk::check_record;
use crate::host::owners::Owners;
use crate::host::systemd::{Bus, ServiceManager, SystemdClient, SystemdOptions};
use crate::host::{self, HostError, Manifest, Root};
use crate::model::MachineConfig;
use crate::watch::{Changes, PathWatcher, Topic, WatchError};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::signal::unix::{Signal, SignalKind, signal};

mod apply;
pub use apply::STATUS_PLAN_CHANGES;
mod certs;
mod confirm;
mod drift;
mod os;

/// How the daemon is run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The root of the node (`/`; a DaemonSet mounts the host elsewhere; tests use a tempdir).
    pub root: PathBuf,
    /// The state directory on the node (current config, journal, backups, reboot record).
    pub state_dir: String,
    pub source: LocalSource,
    /// No systemd: post actions and unit operations are skipped (and said so), reboots are
    /// recorded, not performed.
    pub no_systemd: bool,
    /// The system bus address (default: `DBUS_SYSTEM_BUS_ADDRESS` or the standard socket).
    pub systemd_bus: Option<String>,
    /// Where to serve `/metrics` and `/healthz`; None: no endpoint.
    pub metrics_address: Option<SocketAddr>,
    /// The node's name in the status (host name by default); in cluster mode, the Node.
    pub node_name: String,
    /// Cluster mode: the desired config and policy come from the API server (`source.desired`
    /// and `source.policy` are then unused; `source.pool` names the MachineConfigNode's pool).
    pub cluster: Option<ClusterOptions>,
    /// What drift does, path by path (the daemon configuration file; default: degrade).
    pub drift: super::drift::DriftConfig,
    /// Standalone mode: a ControllerConfig file whose CA bundles are written on the node
    /// (watched; absent: none). Cluster mode watches `ControllerConfig/machine-config-controller`.
    pub controller_config: Option<PathBuf>,
    /// `--reboot-mode`: full (default), soft or auto ([`crate::plan::ladder`]).
    pub reboot_mode: crate::plan::ladder::RebootMode,
}

/// Where the desired config comes from and where the state is reported.
enum Mode {
    /// `Options::source` and the status file.
    Standalone,
    /// The API server (and the status file).
    Cluster(Box<ClusterCtx>),
}

impl Mode {
    fn cluster(&mut self) -> Option<&mut ClusterCtx> {
        match self {
            Mode::Cluster(c) => Some(c),
            Mode::Standalone => None,
        }
    }
}

/// What the source says the node should run.
enum Desired {
    /// A config to compare with the current one and apply if it differs.
    Config(Box<Wanted>),
    /// The current config (cluster mode: `desiredConfig` names it, or is not set).
    Current,
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Watch(#[from] WatchError),
    #[error("{0}")]
    Host(#[from] HostError),
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(opts: Options) -> Result<(), DaemonError> {
    let mut d = Daemon::new(opts)?;
    if let Some(addr) = d.opts.metrics_address {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Io {
                what: format!("metrics endpoint {addr}"),
                source,
            })?;
        // The bound address (port 0 asks the system for a free port; tests read it here).
        if let Ok(bound) = listener.local_addr() {
            tracing::info!(address = %bound, "metrics endpoint listening");
        }
        tokio::spawn(super::metrics::serve(listener, d.metrics.clone()));
    }
    d.start().await?;
    d.serve().await;
    notify::stopping();
    tracing::info!("stopped");
    Ok(())
}

/// The status and the reboot record, shared with the update's [`Node`] hooks.
pub(super) struct LocalNode {
    status: Arc<Mutex<Status>>,
    status_file: PathBuf,
    /// Where the reboot record goes.
    record: PathBuf,
    /// When this userspace started (kept in the record of a soft reboot).
    userspace_started: Option<u64>,
}

#[async_trait::async_trait]
impl Node for LocalNode {
    async fn drain(&self, _config: &str) -> Result<Outcome, String> {
        Ok(Outcome::Skipped(
            "standalone mode: no cluster to drain".into(),
        ))
    }

    async fn before_reboot(
        &self,
        config: &str,
        kind: &crate::plan::ladder::RebootDecision,
    ) -> Result<(), String> {
        let rec = RebootRecord {
            config: config.to_string(),
            boot_id: boot_id(),
            kind: kind.kind,
            reason: kind.reason.clone(),
            userspace_started: self.userspace_started,
        };
        rec.write(&self.record).map_err(|e| e.to_string())?;
        let mut st = self.status.lock().map_err(|e| e.to_string())?;
        st.post_config_action = Some("Rebooting".into());
        st.write(&self.status_file).map_err(|e| e.to_string())
    }
}

struct Daemon {
    opts: Options,
    root: Root,
    status: Arc<Mutex<Status>>,
    status_file: PathBuf,
    metrics: Arc<Metrics>,
    watcher: PathWatcher,
    systemd: Option<SystemdClient>,
    /// Records of the current config's managed paths (drift checks need nothing else).
    manifest: Manifest,
    /// Records of the CA files written from the ControllerConfig (drift-checked like the
    /// manifest's; for a path in both, this record is the one checked).
    ca: BTreeMap<String, crate::host::manifest::Record>,
    /// The last ControllerConfig spec seen (its CA files are brought back after every update).
    ca_spec: Option<crate::cluster::controllerconfig::ControllerConfigSpec>,
    /// The CA files' post actions that failed, and when they run again.
    ca_retry: Option<(tokio::time::Instant, crate::daemon::certs::CaRetry)>,
    current_name: String,
    /// SHA-256 of the stored current config (to tell a new desired config from the same one).
    current_digest: Option<[u8; 32]>,
    /// Drifted paths that degrade the node, and their reasons.
    drift: BTreeMap<String, String>,
    /// Of `drift`, the paths whose rule says `heal` but that were not healed, with the
    /// mismatch itself (their `drift` reason says why they were not healed).
    unhealed: BTreeMap<String, String>,
    /// Healed paths whose policy action then failed (the reason): `Degraded` until the path is
    /// healed again, or a new config is current. Apart from `drift`, which the check of the
    /// heal's own write (the path matches again) clears.
    heal_failed: BTreeMap<String, String>,
    /// Drifted paths whose rule says `report`, and their reasons (the node stays `Done`).
    reported: BTreeMap<String, String>,
    /// Drifted paths whose rule says `heal`, waiting for [`Daemon::heal_pending`].
    to_heal: Vec<(String, String)>,
    /// Heals per path within the window.
    heal_budget: super::drift::HealBudget,
    /// A problem that is not drift: failed update, unreadable desired config, refused change.
    problem: Option<(NodeState, String)>,
    sigterm: Signal,
    sigint: Signal,
    stop: bool,
    /// A reboot was requested: stay `Working` until it happens.
    rebooting: bool,
    /// The OS backend of the node.
    os: crate::host::os::OsHost,
    /// OS changes of this config are staged and the node has not booted into them (no systemd
    /// to reboot): `Working` until it has.
    os_pending: Option<String>,
    /// The node did not boot into the OS changes of the current config (twice): `Degraded`
    /// with this reason until another config is applied.
    os_failed: Option<String>,
    /// The kernel arguments of the current config (checked against `/proc/cmdline`).
    current_kargs: Vec<String>,
    /// The managed paths are watched.
    armed: bool,
    /// When this userspace started (see [`super::reboot::userspace_started`]).
    userspace_started: Option<u64>,
    /// When to hand freed memory back to the system (set by an update; see [`TRIM_DELAY`]).
    trim_at: Option<tokio::time::Instant>,
    /// Try mode: the update on trial (or the rejected config), as journaled.
    trial: Option<super::confirm::Record>,
    /// Try mode: when the health checks run next.
    check_at: Option<tokio::time::Instant>,
    /// Try mode: the round of checks running (in its own task), for the trial of that config.
    checks: Option<(String, tokio::task::JoinHandle<super::health::Report>)>,
    /// Try mode: the update running is a revert (not itself on trial, not held back by drift).
    reverting: bool,
    /// Try mode: the last round of checks, one line per check.
    last_checks: Vec<String>,
    mode: Mode,
}

/// How long after an update the allocator's free memory is returned to the system. Not at once:
/// updates often come in bursts (several MachineConfigs rolled out in a row), and each would
/// otherwise fault the same pages in again.
const TRIM_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// The key of kernel-argument drift among the drifted paths.
const CMDLINE: &str = "/proc/cmdline";

/// The digest of `config` as stored (`currentconfig`'s bytes), streamed: the encoding is never
/// held in memory.
fn config_digest(config: &MachineConfig) -> [u8; 32] {
    let mut h = Sha256::new();
    host::state::write_encoded(config, &mut h).expect("hashing cannot fail");
    h.finalize().into()
}

impl Daemon {
    fn new(opts: Options) -> Result<Self, DaemonError> {
        let root = Root::open(&opts.root)?.with_state_dir(&opts.state_dir)?;
        let status_file = status_path(&opts.root);
        let mut status = Status::new(&opts.node_name, &opts.source.pool, SystemTime::now());
        let mut ca_retry = None;
        if let Ok(old) = Status::read(&status_file) {
            // CA post actions that failed and waited: they run as soon as the loop starts.
            if let Some(r) = old.certificates.as_ref().and_then(|c| {
                crate::daemon::certs::CaRetry::restored(&c.pending_actions, &c.errors)
            }) {
                tracing::info!(actions = r.actions.len(), failed_before = %r.failure, "CA post actions pending from before the start: they run now");
                ca_retry = Some((tokio::time::Instant::now(), r));
            }
            // Keep the conditions' history and the last plan across restarts.
            status.conditions = old.conditions;
            status.last_plan = old.last_plan;
            status.last_outcome = old.last_outcome;
            status.not_applied = old.not_applied;
            status.post_config_action = old.post_config_action;
            status.last_reboot = old.last_reboot;
        }
        status.drift = Some(opts.drift.summary());
        let (os, version) = os_release(&opts.root.join("etc/os-release"));
        let os_host = crate::host::os::detect(&opts.root);
        tracing::info!(os = %os, version = %version, backend = os_host.kind().name(), "host: {os} {version}, {}", os_host.describe());
        status.host = format!("{os} {version}, {}", os_host.describe());
        let systemd = (!opts.no_systemd).then(|| {
            SystemdClient::new(SystemdOptions {
                bus: opts
                    .systemd_bus
                    .clone()
                    .map(Bus::Address)
                    .unwrap_or(Bus::System),
                ..SystemdOptions::default()
            })
        });
        let io = |what: &str| {
            let what = what.to_string();
            move |source| DaemonError::Io { what, source }
        };
        Ok(Daemon {
            root,
            status: Arc::new(Mutex::new(status)),
            status_file,
            metrics: Arc::new(Metrics::new(&os, &version, os_host.kind().name())),
            watcher: PathWatcher::new()?,
            systemd,
            manifest: Manifest::default(),
            ca: BTreeMap::new(),
            ca_spec: None,
            ca_retry,
            current_name: String::new(),
            current_digest: None,
            drift: BTreeMap::new(),
            unhealed: BTreeMap::new(),
            heal_failed: BTreeMap::new(),
            reported: BTreeMap::new(),
            to_heal: Vec::new(),
            heal_budget: super::drift::HealBudget::new(opts.drift.heal),
            problem: None,
            sigterm: signal(SignalKind::terminate()).map_err(io("SIGTERM handler"))?,
            sigint: signal(SignalKind::interrupt()).map_err(io("SIGINT handler"))?,
            stop: false,
            rebooting: false,
            os: os_host,
            os_pending: None,
            os_failed: None,
            current_kargs: Vec::new(),
            armed: false,
            userspace_started: None,
            trim_at: None,
            trial: None,
            check_at: None,
            checks: None,
            reverting: false,
            last_checks: Vec::new(),
            mode: Mode::Standalone,
            opts,
        })
    }

    fn reboot_record(&self) -> PathBuf {
        record_path(&self.opts.root, &self.opts.state_dir)
    }

    fn abs(&self, node_path: &str) -> PathBuf {
        self.opts.root.join(node_path.trim_start_matches('/'))
    }

    fn node_path(&self, abs: &Path) -> Option<String> {
        abs.strip_prefix(&self.opts.root)
            .ok()
            .map(|p| format!("/{}", p.display()))
    }

    fn with_status<T>(&self, f: impl FnOnce(&mut Status) -> T) -> T {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut st)
    }

    /// Moves to `to` (checked), then writes the status and tells systemd.
    fn transition(&mut self, to: NodeState, reason: &str) {
        let from = self.with_status(|s| s.state);
        if from != to && !from.can_go_to(to) {
            tracing::error!(from = %from, to = %to, reason, "refused state transition");
            return;
        }
        let now = SystemTime::now();
        self.with_status(|s| {
            s.set_state(to, reason);
            s.current_config = self.current_name.clone();
            s.updated = super::status::rfc3339(now);
            let degraded = matches!(to, NodeState::Degraded | NodeState::Unreconcilable);
            let st = if degraded {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            };
            let message = if reason.is_empty() {
                format!("node is {to}")
            } else {
                reason.to_string()
            };
            s.set_condition("NodeDegraded", st, to.as_str(), &message, now);
        });
        if from != to {
            tracing::info!(from = %from, state = %to, config = %self.current_name, reason, "state {from} -> {to} on {}{}", dash(&self.current_name), if reason.is_empty() { String::new() } else { format!(": {reason}") });
            self.metrics.set_state(Some(from), to);
        }
        self.write_status();
    }

    /// Queues an event (cluster mode; standalone has nowhere to send it).
    fn queue(&mut self, reason: EventReason, note: impl Into<String>) {
        if let Some(c) = self.mode.cluster() {
            c.queue(reason, note);
        }
    }

    /// Cluster mode: brings the node annotations, the MachineConfigNode and the events in line
    /// with the status. Called once per handled event.
    async fn report(&mut self) {
        let Mode::Cluster(_) = self.mode else {
            return;
        };
        let snap = self.with_status(|s| Snapshot {
            state: s.state,
            reason: s.reason.clone(),
            current_config: s.current_config.clone(),
            conditions: s.conditions.clone(),
        });
        if let Some(c) = self.mode.cluster() {
            c.report(&snap).await;
        }
    }

    /// At debug level, the plan the last update followed (from the status, where the update
    /// put it): the actions, then every change with the policy entry it matched, or why none.
    fn log_plan(&self) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let Some(plan) = self.with_status(|s| s.last_plan.clone()) else {
            return;
        };
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let actions: Vec<String> = plan["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let service = a["reload"]["serviceName"]
                    .as_str()
                    .or(a["restart"]["serviceName"].as_str());
                match service {
                    Some(svc) => format!("{} {svc}", text(&a["type"])),
                    None => text(&a["type"]),
                }
            })
            .collect();
        tracing::debug!(
            from = %text(&plan["from"]),
            config = %text(&plan["to"]),
            drain = plan["drain"].as_bool().unwrap_or(false),
            reboot = plan["reboot"].as_bool().unwrap_or(false),
            "plan {} -> {}: actions {}",
            dash(&text(&plan["from"])),
            text(&plan["to"]),
            actions.join(", ")
        );
        for c in plan["changes"].as_array().into_iter().flatten() {
            let subject = c["path"]
                .as_str()
                .or(c["name"].as_str())
                .unwrap_or_default();
            let kind = format!("{} {subject}", text(&c["kind"]));
            let kind = kind.trim();
            tracing::debug!(
                change = %text(&c["change"]),
                matched = c["matched"].as_str(),
                "plan: {kind} {}: {}",
                text(&c["change"]),
                text(&c["reason"])
            );
        }
    }

    fn write_status(&self) {
        let summary = self.with_status(|s| {
            if let Err(e) = s.write(&self.status_file) {
                tracing::error!(error = %e, path = %self.status_file.display(), "cannot write status {}: {e}", self.status_file.display());
            }
            if s.reason.is_empty() {
                format!("{} {}", s.state, dash(&s.current_config))
            } else {
                format!("{} {}: {}", s.state, dash(&s.current_config), s.reason)
            }
        });
        notify::status(&summary);
    }

    /// Derives the state from the problem and the drift, and records it.
    fn settle(&mut self) {
        let drifted = self
            .drift
            .values()
            .next()
            .or(self.heal_failed.values().next());
        let trial = self.trial_state();
        let (state, reason) = match (&self.problem, drifted) {
            (Some((s, r)), _) => (*s, r.clone()),
            (None, Some(r)) => (NodeState::Degraded, r.clone()),
            // A rejected config degrades whatever else waits; a trial waits behind a failed
            // or pending boot into staged OS changes (whose reasons say more).
            (None, None)
                if trial
                    .as_ref()
                    .is_some_and(|(s, _)| *s == NodeState::Degraded)
                    || (trial.is_some()
                        && self.os_failed.is_none()
                        && self.os_pending.is_none()) =>
            {
                trial.unwrap_or((NodeState::Done, String::new()))
            }
            (None, None) => match &self.os_pending {
                _ if self.os_failed.is_some() => (
                    NodeState::Degraded,
                    self.os_failed.clone().unwrap_or_default(),
                ),
                Some(c) => (
                    NodeState::Working,
                    format!(
                        "reboot pending: the OS changes of {c} are staged; the node must boot into them"
                    ),
                ),
                None => (NodeState::Done, String::new()),
            },
        };
        self.transition(state, &reason);
    }

    /// Reads the stored current config: its name, digest and records.
    fn load_current(&mut self) -> Result<Option<MachineConfig>, HostError> {
        let stored = host::state::read_current(&self.root)?;
        self.set_current(stored).map(|(mc, _)| mc)
    }

    /// Takes the stored current config (as [`host::state::read_current`] returns it) as the
    /// current one; true when the manifest had to be rebuilt for it.
    fn set_current(
        &mut self,
        stored: Option<(MachineConfig, host::state::Digest)>,
    ) -> Result<(Option<MachineConfig>, bool), HostError> {
        let Some((mc, stored)) = stored else {
            self.current_kargs.clear();
            self.current_name.clear();
            self.current_digest = None;
            self.manifest = Manifest::default();
            return Ok((None, true));
        };
        // The manifest is rebuilt only when the stored config is not the one it describes.
        let rebuild = self.current_digest != Some(stored) || self.manifest.is_empty();
        if rebuild {
            self.manifest = Manifest::build(&mc, &Owners::load(&self.root)?)?;
        }
        self.current_digest = Some(stored);
        self.current_name = mc.name.clone();
        self.current_kargs = crate::model::os::kernel_arguments(&mc.spec.kernel_arguments);
        Ok((Some(mc), rebuild))
    }

    /// Makes `config` (just applied) the current config without reading it back from disk:
    /// `digest` is its stored digest when known.
    fn adopt(&mut self, config: &MachineConfig, digest: Option<[u8; 32]>) -> Result<(), HostError> {
        self.current_name = config.name.clone();
        self.current_kargs = crate::model::os::kernel_arguments(&config.spec.kernel_arguments);
        self.current_digest = Some(digest.unwrap_or_else(|| config_digest(config)));
        self.manifest = Manifest::build(config, &Owners::load(&self.root)?)?;
        Ok(())
    }

    /// Watches the managed paths: the current config's and the CA files.
    fn watch_managed(&mut self) -> Result<(), WatchError> {
        let paths: Vec<PathBuf> = self
            .manifest
            .paths()
            .chain(self.ca.keys().map(String::as_str))
            .map(|p| self.abs(p))
            .collect();
        self.watcher.replace(Topic::Managed, &paths)
    }

    /// The record of a managed path and its tree: a CA file's, else the current config's.
    fn record_of(&self, path: &str) -> Option<(&crate::host::manifest::Record, host::root::Tree)> {
        match self.ca.get(path) {
            Some(r) => Some((r, host::root::Tree::Etc)),
            None => self.manifest.get_with_tree(path),
        }
    }

    /// Watches the managed paths of the current config (and the CA files).
    fn arm_drift(&mut self) -> Result<(), WatchError> {
        self.armed = true;
        self.watch_managed()?;
        tracing::info!(
            paths = self.manifest.len(),
            watches = self.watcher.watched_dirs(),
            "drift monitor started: {} managed paths of {}",
            self.manifest.len(),
            dash(&self.current_name)
        );
        // Nothing to watch against before the first apply: the event comes with the first config.
        if !self.current_name.is_empty() {
            let note = format!(
                "Config Drift Monitor started, watching against {}",
                self.current_name
            );
            self.queue(EventReason::ConfigDriftMonitorStarted, note);
        }
        Ok(())
    }

    /// Checks `paths` (node paths), or every managed path when None.
    fn check_drift(&mut self, paths: Option<Vec<String>>) {
        let started = Instant::now();
        let checked = paths
            .as_ref()
            .map_or(self.manifest.len() + self.ca.len(), Vec::len);
        // (path, reason) of every mismatch, and the paths found clean.
        let (bad, clean): (Vec<(String, String)>, Vec<String>) = match paths {
            Some(paths) => {
                let mut bad = Vec::new();
                let mut clean = Vec::new();
                for p in paths {
                    // A path no longer managed (a CA file removed) has no drift.
                    let Some((rec, tree)) = self.record_of(&p) else {
                        clean.push(p);
                        continue;
                    };
                    match check_record(&self.root, &p, tree, rec) {
                        Ok(()) => clean.push(p),
                        Err(m) => bad.push((p, m.to_string())),
                    }
                }
                (bad, clean)
            }
            None => {
                // The whole config (two threads for large ones); every drifted path not found
                // again is clean now.
                let mut bad: Vec<(String, String)> = self
                    .manifest
                    .mismatches(&self.root)
                    .into_iter()
                    .filter(|m| !self.ca.contains_key(m.path()))
                    .map(|m| (m.path().to_string(), m.to_string()))
                    .collect();
                for (p, rec) in &self.ca {
                    if let Err(m) = check_record(&self.root, p, host::root::Tree::Etc, rec) {
                        bad.push((p.clone(), m.to_string()));
                    }
                }
                // Kernel arguments: the running kernel's command line must have every one of
                // the current config's (unless the node has yet to boot into them).
                if self.os_pending.is_none() && !self.current_kargs.is_empty() {
                    let cmdline = crate::host::os::booted_cmdline();
                    let expect = crate::plan::os::OsExpect {
                        kernel_arguments: self.current_kargs.clone(),
                        ..Default::default()
                    };
                    let booted = crate::plan::os::Booted {
                        cmdline,
                        ..Default::default()
                    };
                    if let Err(reason) = crate::plan::os::check_booted(&expect, &booted) {
                        bad.push((CMDLINE.to_string(), reason));
                    }
                }
                let found: std::collections::HashSet<&str> =
                    bad.iter().map(|(p, _)| p.as_str()).collect();
                let clean = self
                    .drift
                    .keys()
                    .chain(self.reported.keys())
                    .chain(self.to_heal.iter().map(|(p, _)| p))
                    .filter(|p| !found.contains(p.as_str()))
                    .cloned()
                    .collect();
                (bad, clean)
            }
        };
        tracing::debug!(
            checked,
            drifted = bad.len(),
            config = %self.current_name,
            "drift check of {checked} managed paths against {}: {} drifted",
            dash(&self.current_name),
            bad.len()
        );
        for p in clean {
            self.unhealed.remove(&p);
            self.to_heal.retain(|(q, _)| *q != p);
            let degraded = self.drift.remove(&p).is_some();
            if self.reported.remove(&p).is_some() || degraded {
                tracing::info!(path = %p, "drift cleared: {p} matches the config again");
            }
        }
        let found = self.drift_found(bad);
        self.metrics.drift_checked(started.elapsed());
        if found {
            self.metrics.drift_detected(SystemTime::now());
        }
    }

    async fn start(&mut self) -> Result<(), DaemonError> {
        if let Some(copts) = self.opts.cluster.clone() {
            tracing::info!(root = %self.opts.root.display(), node = %self.opts.node_name, "starting in cluster mode: node {}, root {}", self.opts.node_name, self.opts.root.display());
            let connect = ClusterCtx::connect(copts, &self.opts.node_name, &self.opts.source.pool);
            let ctx = tokio::select! {
                c = connect => c?,
                _ = self.sigterm.recv() => { self.stop = true; return Ok(()) }
                _ = self.sigint.recv() => { self.stop = true; return Ok(()) }
            };
            self.mode = Mode::Cluster(Box::new(ctx));
        } else {
            tracing::info!(root = %self.opts.root.display(), desired = %self.opts.source.desired.display(), "starting: root {}, desired config {}", self.opts.root.display(), self.opts.source.desired.display());
        }
        if let Some(r) = host::recover(&self.root)? {
            tracing::warn!("{r}");
        }
        self.first_boot().await?;
        self.load_current()?;
        self.resume_os().await;
        // Watch the managed paths before any check of them, so that a change made right after
        // a check is never missed.
        self.arm_drift()?;
        let systemd = self.systemd.as_ref().map(|s| s as &dyn ServiceManager);
        self.userspace_started = super::reboot::userspace_started(systemd).await;
        let rebooted = match self.finish_reboot() {
            Some((config, valid)) => {
                self.after_reboot(&config, valid).await;
                true
            }
            None => false,
        };
        self.resume_trial(rebooted).await;
        self.watch_sources()?;
        if self.force_file_present() {
            self.force().await;
        } else {
            self.sync().await;
        }
        if !self.armed {
            self.arm_drift()?;
        }
        self.heal_pending().await;
        // Standalone: the ControllerConfig file (cluster mode: the watch wakes the loop).
        self.on_controller_config().await;
        self.report().await;
        let summary = self.with_status(|s| format!("{} {}", s.state, dash(&s.current_config)));
        notify::ready(&summary);
        Ok(())
    }

    /// Cluster mode, first start on a machine the machine config server provisioned (see
    /// [`super::firstboot`]): takes the served config as the current one, with no write but
    /// `currentconfig`, and tells the Node. Unusable first-boot files are logged and ignored
    /// (the node then gets its config the ordinary way, by applying its desiredConfig).
    async fn first_boot(&mut self) -> Result<(), DaemonError> {
        use super::firstboot;
        let Mode::Cluster(c) = &mut self.mode else {
            return Ok(());
        };
        if c.view().is_none_or(|v| v.current_config.is_some()) {
            return Ok(());
        }
        let name = match firstboot::initial_config(&self.root) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "first boot: ignoring {}", firstboot::NODE_ANNOTATIONS_FILE);
                return Ok(());
            }
        };
        let stored = host::state::read_current(&self.root)?;
        match &stored {
            Some((mc, _)) if mc.name != name => return Ok(()),
            Some(_) => {
                tracing::info!(config = %name, "first boot: {name} is already stored as the current config")
            }
            None => {
                let config = match firstboot::content(&self.root, &name) {
                    Ok(Some(mc)) => mc,
                    other => {
                        if let Err(e) = other {
                            tracing::warn!(error = %e, "first boot: fetching {name} instead");
                        }
                        match c.fetch(&name).await {
                            Ok(w) => w.config,
                            Err(e) => {
                                tracing::error!(config = %name, error = %e, "first boot: cannot read the config the machine was provisioned with; it will be applied as the desired config");
                                return Ok(());
                            }
                        }
                    }
                };
                let path = self.root.state_path(host::state::CURRENT_CONFIG);
                self.root
                    .write_file_with(&path, host::root::Tree::Etc, 0o644, 0, 0, |w| {
                        host::state::write_encoded(&config, w)
                    })?;
                tracing::info!(config = %name, "first boot: the machine was provisioned with {name} ({}); validating the disk against it", firstboot::NODE_ANNOTATIONS_FILE);
            }
        }
        if let Err(e) = c.set_initial_config(&name).await {
            tracing::warn!(config = %name, error = %e, "first boot: cannot set currentConfig yet; it is reported with the state");
        }
        self.with_status(|s| {
            s.last_outcome = Some(format!(
                "first boot: provisioned with {name}; nothing applied"
            ))
        });
        Ok(())
    }

    /// Cluster mode, after the reboot into `config`: clear `post-config-action`, and once the
    /// disk is validated, uncordon and say so.
    async fn after_reboot(&mut self, config: &str, valid: bool) {
        let Some(c) = self.mode.cluster() else {
            return;
        };
        c.rebooted().await;
        if !valid {
            return;
        }
        match c.uncordon(config).await {
            Ok(()) => {
                c.queue(
                    EventReason::NodeDone,
                    format!(
                        "Setting node {}, currentConfig {config} to Done",
                        self.opts.node_name
                    ),
                );
                let now = SystemTime::now();
                self.with_status(|s| {
                    s.set_condition(
                        "Uncordoned",
                        ConditionStatus::True,
                        "Uncordoned",
                        &format!("node schedulable again after {config}"),
                        now,
                    )
                });
            }
            Err(e) => self.problem = Some((NodeState::Degraded, e)),
        }
    }

    fn watch_sources(&mut self) -> Result<(), WatchError> {
        if let Mode::Standalone = self.mode {
            let desired = self.opts.source.desired.clone();
            if desired.is_dir() {
                self.watcher.watch_tree(&desired, Topic::Desired)?;
            } else {
                self.watcher.watch_file(&desired, Topic::Desired)?;
            }
            if let Some(p) = self.opts.source.policy.clone() {
                self.watcher.watch_file(&p, Topic::Policy)?;
            }
            if let Some(p) = self.opts.controller_config.clone() {
                self.watcher.watch_file(&p, Topic::ControllerConfig)?;
            }
        }
        let force = self.abs(FORCE_FILE);
        self.watcher.watch_file(&force, Topic::Force)?;
        Ok(())
    }

    /// After a reboot the daemon asked for: validate the disk against the config it rebooted
    /// into. A record from this same boot means the reboot has not happened yet. Returns the
    /// config and whether the disk matches it.
    fn finish_reboot(&mut self) -> Option<(String, bool)> {
        let rec = RebootRecord::read(&self.reboot_record())?;
        let Some(kind) = happened(&rec, &boot_id(), self.userspace_started) else {
            tracing::warn!(config = %rec.config, kind = rec.kind.as_str(), "a {} reboot into {} was requested but this is still the same boot", rec.kind, rec.config);
            return None;
        };
        self.metrics.rebooted(kind);
        self.check_drift(None);
        let now = SystemTime::now();
        let ok = self.drift.is_empty()
            && self.problem.is_none()
            && self.os_pending.is_none()
            && self.os_failed.is_none();
        self.with_status(|s| {
            s.post_config_action = None;
            s.set_condition(
                "RebootedNode",
                ConditionStatus::True,
                "Rebooted",
                &format!("rebooted into {}: {kind} reboot", rec.config),
                now,
            );
            s.last_reboot = Some(super::status::LastReboot {
                kind,
                asked: rec.kind,
                reason: rec.reason.clone(),
                config: rec.config.clone(),
                time: super::status::rfc3339(now),
            });
            let c = if ok {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            };
            s.set_condition(
                "UpdateComplete",
                c,
                "Validated",
                "on-disk state validated after the reboot",
                now,
            );
            s.set_condition("Updated", c, "Validated", &rec.config, now);
            s.set_condition(
                "Resumed",
                c,
                "Validated",
                &format!("resumed on {}", rec.config),
                now,
            );
            // A full reboot keeps the upstream words.
            let rebooted = match kind {
                crate::plan::ladder::RebootKind::Full => "rebooted",
                crate::plan::ladder::RebootKind::Soft => "soft-rebooted",
            };
            s.last_outcome = Some(if ok {
                format!("applied {}; {rebooted} and validated", rec.config)
            } else {
                format!("applied {}; {rebooted}, validation failed", rec.config)
            });
        });
        let first_mismatch = self.drift.values().next().map_or("", String::as_str);
        self.metrics.update_ended(&rec.config, first_mismatch, now);
        tracing::info!(config = %rec.config, valid = ok, kind = kind.as_str(), "finished the {kind} reboot into {}: the disk {} it", rec.config, if ok { "matches" } else { "does not match" });
        RebootRecord::remove(&self.reboot_record());
        Some((rec.config, ok))
    }

    fn force_file_present(&self) -> bool {
        self.abs(FORCE_FILE).symlink_metadata().is_ok()
    }

    /// Reads the desired config and applies it if it differs from the current one; validates
    /// the disk otherwise.
    async fn sync(&mut self) {
        let wanted = match self.read_desired().await {
            Ok(Desired::Config(w)) => *w,
            Ok(Desired::Current) => {
                let name = self.current_name.clone();
                self.trial_event(super::confirm::Event::Desired { name: name.clone() });
                self.with_status(|s| s.desired_config = name);
                self.same_config();
                return;
            }
            Err(e) => {
                match self.mode {
                    Mode::Standalone => {
                        tracing::error!(desired = %self.opts.source.desired.display(), "{e}")
                    }
                    Mode::Cluster(_) => tracing::error!("desired config: {e}"),
                }
                self.with_status(|s| s.desired_config.clear());
                self.problem = Some((NodeState::Degraded, e));
                self.check_drift(None);
                self.settle();
                return;
            }
        };
        self.with_status(|s| s.desired_config = wanted.config.name.clone());
        // Try mode: a config reverted is not applied again while it is the desired one.
        self.trial_event(super::confirm::Event::Desired {
            name: wanted.config.name.clone(),
        });
        if super::confirm::holds_back(self.trial.as_ref(), &wanted.config.name) {
            tracing::info!(config = %wanted.config.name, "try mode: {} was reverted: not applying it again until the desired config changes", wanted.config.name);
            self.check_drift(None);
            self.settle();
            return;
        }
        let new_digest = config_digest(&wanted.config);
        if self.current_digest == Some(new_digest) {
            tracing::debug!(config = %wanted.config.name, "the desired config is the current one: checking the disk against it");
            self.same_config();
            return;
        }
        tracing::debug!(from = %self.current_name, config = %wanted.config.name, "the desired config differs from the current one: updating");
        self.apply(wanted, false, Some(new_digest)).await;
        self.log_plan();
    }

    /// The desired config is the current one: validate the disk.
    fn same_config(&mut self) {
        if self.problem.take().is_some() {
            // The desired config went back to the current one: a (trivial) update.
            self.transition(NodeState::Working, "");
        }
        self.check_drift(None);
        self.settle();
    }

    /// What the source wants. Standalone: the desired config file(s) and the policy file.
    /// Cluster: the node's `desiredConfig`, fetched unless it names the current config (a
    /// failure arms the retry timer).
    async fn read_desired(&mut self) -> Result<Desired, String> {
        let current = self.current_name.clone();
        let has_current = self.current_digest.is_some();
        match &mut self.mode {
            Mode::Standalone => match self.opts.source.read_spooled(
                host::state::spool_dir(&self.opts.root, &self.opts.state_dir).as_deref(),
            )? {
                Some(w) => Ok(Desired::Config(Box::new(w))),
                None => {
                    tracing::info!(desired = %self.opts.source.desired.display(), "no MachineConfig in {}: nothing to apply", self.opts.source.desired.display());
                    Ok(Desired::Current)
                }
            },
            Mode::Cluster(c) => {
                let desired = c.desired();
                c.synced = desired.clone();
                c.sync_pending = false;
                match desired {
                    None => {
                        tracing::info!("the node has no desiredConfig annotation yet");
                        Ok(Desired::Current)
                    }
                    Some(d) if has_current && d == current => Ok(Desired::Current),
                    Some(d) => {
                        let r = c.fetch(&d).await;
                        if r.is_err() {
                            c.sync_pending = true;
                            c.retry_later();
                        }
                        r.map(|w| Desired::Config(Box::new(w)))
                    }
                }
            }
        }
    }

    /// The policy the force file re-applies with.
    async fn read_policy(&mut self) -> crate::model::policy::Policy {
        let r = match &mut self.mode {
            Mode::Standalone => self.opts.source.policy(),
            Mode::Cluster(c) => c.policy().await,
        };
        r.unwrap_or_else(|e| {
            tracing::warn!("{e}; using the default policy");
            crate::model::policy::defaults()
        })
    }

    /// The force file: re-apply the whole current config, reboot, and delete the file.
    async fn force(&mut self) {
        tracing::warn!(
            path = FORCE_FILE,
            "force file found: re-applying the current config"
        );
        self.trial_event(super::confirm::Event::Forced);
        let current = match self.load_current() {
            Ok(c) => c,
            Err(e) => {
                self.problem = Some((NodeState::Degraded, format!("force file: {e}")));
                self.settle();
                return;
            }
        };
        let Some(config) = current else {
            tracing::warn!("force file ignored: there is no current config yet");
            self.remove_force_file();
            self.sync().await;
            return;
        };
        let policy = self.read_policy().await;
        self.apply(Wanted { config, policy }, true, None).await;
        self.log_plan();
    }

    fn remove_force_file(&self) {
        let p = self.abs(FORCE_FILE);
        if let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(path = %p.display(), error = %e, "cannot remove the force file");
        }
    }

    /// The event loop.
    async fn serve(&mut self) {
        let mut watchdog = notify::watchdog_interval().map(tokio::time::interval);
        while !self.stop {
            let retry_at = match &self.mode {
                Mode::Cluster(c) => c.retry_at,
                Mode::Standalone => None,
            };
            let (node_rx, cc_rx) = match &mut self.mode {
                Mode::Cluster(c) => {
                    let c = &mut **c;
                    (Some(&mut c.rx), Some(&mut c.cc.rx))
                }
                Mode::Standalone => (None, None),
            };
            tokio::select! {
                ok = node_changed(node_rx) => {
                    if !ok {
                        tracing::error!("the node watch stopped");
                        break;
                    }
                    self.on_node_change().await;
                }
                ok = watch_changed(cc_rx) => {
                    if !ok {
                        tracing::error!("the ControllerConfig watch stopped");
                        break;
                    }
                    self.on_controller_config().await;
                }
                _ = sleep_until(retry_at) => self.on_retry().await,
                _ = sleep_until(self.check_at) => self.on_check_timer().await,
                _ = sleep_until(self.ca_retry.as_ref().map(|r| r.0)) => self.on_ca_retry().await,
                (to, report) = checks_done(&mut self.checks) => self.on_checks_done(to, report).await,
                _ = sleep_until(self.trim_at) => {
                    self.trim_at = None;
                    crate::daemon::trim_memory();
                }
                changes = self.watcher.next() => match changes {
                    Some(Ok(c)) => self.on_changes(c).await,
                    Some(Err(e)) => {
                        tracing::error!("{e}");
                        self.problem = Some((NodeState::Degraded, e.to_string()));
                        self.settle();
                    }
                    None => break,
                },
                _ = self.sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break }
                _ = self.sigint.recv() => { tracing::info!("SIGINT: stopping"); break }
                _ = async { match watchdog.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } } => notify::watchdog(),
            }
            self.heal_pending().await;
            self.report().await;
        }
    }

    /// Cluster mode: the node changed. A new `desiredConfig` is synced; anything else (our own
    /// writes, the drain annotations, other fields of the view) is no news.
    async fn on_node_change(&mut self) {
        let Some(c) = self.mode.cluster() else {
            return;
        };
        let desired = c.desired();
        if desired != c.synced {
            tracing::info!(
                desired = desired.as_deref().unwrap_or("-"),
                "desiredConfig changed to {}",
                desired.as_deref().unwrap_or("-")
            );
            self.sync().await;
        }
    }

    /// Cluster mode: the retry timer fired (a fetch or a report failed earlier).
    async fn on_retry(&mut self) {
        let Some(c) = self.mode.cluster() else {
            return;
        };
        c.retry_at = None;
        if c.sync_pending {
            self.sync().await;
        }
    }

    async fn on_changes(&mut self, c: Changes) {
        if c.overflow {
            // Events were lost: everything is re-read and re-checked below.
            tracing::warn!("inotify queue overflow: validating every managed path");
        }
        if c.touches(Topic::Force) && self.force_file_present() {
            self.force().await;
            return;
        }
        if c.touches(Topic::ControllerConfig) {
            self.on_controller_config().await;
        }
        if c.touches(Topic::Desired) || c.touches(Topic::Policy) {
            self.sync().await;
            return;
        }
        if c.overflow {
            self.check_drift(None);
        } else {
            let paths: Vec<String> = c
                .of(Topic::Managed)
                .filter_map(|p| self.node_path(p))
                .collect();
            if paths.is_empty() {
                return;
            }
            self.check_drift(Some(paths));
        }
        // A desired config held back by the drift (the check before applying) is applied once
        // the drift is repaired.
        let held_back = self
            .status
            .lock()
            .is_ok_and(|s| !s.desired_config.is_empty() && s.desired_config != self.current_name);
        if self.drift.is_empty() && self.problem.is_none() && held_back {
            self.sync().await;
            return;
        }
        self.settle();
    }
}

/// Waits for a change of the node watch (never, in standalone mode). False: the watch ended.
async fn node_changed(
    rx: Option<&mut tokio::sync::watch::Receiver<crate::cluster::node::Observed>>,
) -> bool {
    watch_changed(rx).await
}

/// Waits for a change of a watch channel (never without one). False: the watch ended.
async fn watch_changed<T>(rx: Option<&mut tokio::sync::watch::Receiver<T>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// The round of try-mode checks in `checks` has ended: its config and report (None: the task
/// failed); pending while none runs.
async fn checks_done(
    checks: &mut Option<(String, tokio::task::JoinHandle<super::health::Report>)>,
) -> (String, Option<super::health::Report>) {
    let Some((_, task)) = checks else {
        return std::future::pending().await;
    };
    let report = task.await.ok();
    let (to, _) = checks.take().expect("a round of checks was running");
    (to, report)
}

/// Sleeps until `at` (forever when None).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
