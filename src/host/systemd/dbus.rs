//! [`SystemdClient`]: the [`ServiceManager`] on systemd's D-Bus API (`org.freedesktop.systemd1`),
//! through zbus (tokio) and the `zbus_systemd` proxies.
//!
//! The connection is made lazily by the first operation, so a daemon started where systemd is
//! absent (`--no-systemd`, containers) fails only when it actually needs systemd, with a clear
//! error ([`SystemdError::NoBus`] or [`SystemdError::NotSystemd`]).

use super::{
    Hint, JobResult, Operation, ServiceManager, SystemdError, UnitProperties, job_outcome,
};
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};
use tracing::{debug, info, warn};
use zbus::OwnedObjectPath;
use zbus::proxy::CacheProperties;
use zbus_systemd::systemd1::{JobRemovedStream, ManagerProxy, ServiceProxy, UnitProxy};

/// Which bus systemd is reached on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Bus {
    /// The system bus: `DBUS_SYSTEM_BUS_ADDRESS` when set, else `/run/dbus/system_bus_socket`.
    #[default]
    System,
    /// An explicit D-Bus address, e.g. `unix:path=/run/systemd/private` (systemd's private
    /// socket, usable without dbus-daemon by root).
    Address(String),
}

impl Bus {
    fn describe(&self) -> String {
        match self {
            Bus::System => match std::env::var("DBUS_SYSTEM_BUS_ADDRESS") {
                Ok(a) => a,
                Err(_) => "unix:path=/var/run/dbus/system_bus_socket".to_string(),
            },
            Bus::Address(a) => a.clone(),
        }
    }
}

/// Settings of a [`SystemdClient`].
#[derive(Clone, Debug)]
pub struct SystemdOptions {
    pub bus: Bus,
    /// Time allowed for each job (and for a daemon-reload) to finish.
    pub job_timeout: Duration,
}

impl Default for SystemdOptions {
    fn default() -> Self {
        SystemdOptions {
            bus: Bus::System,
            job_timeout: super::DEFAULT_JOB_TIMEOUT,
        }
    }
}

/// The real [`ServiceManager`]: systemd over D-Bus.
pub struct SystemdClient {
    options: SystemdOptions,
    link: OnceCell<Link>,
}

/// The connection to systemd, made once.
struct Link {
    manager: ManagerProxy<'static>,
    /// `JobRemoved` signals since the connection was made. One stream for the client's life
    /// (rather than one match rule per job) saves two bus round trips per job; signals of other
    /// jobs are skipped by job path, which systemd never reuses within a boot. The lock also
    /// makes this client run one job at a time, as the update flow's post actions are ordered.
    jobs: Mutex<JobRemovedStream>,
}

impl SystemdClient {
    /// A client that connects on first use.
    pub fn new(options: SystemdOptions) -> SystemdClient {
        SystemdClient {
            options,
            link: OnceCell::new(),
        }
    }

    /// Connects (once), subscribes to the manager's signals; later calls reuse it.
    async fn link(&self, op: Operation) -> Result<&Link, SystemdError> {
        self.link
            .get_or_try_init(|| async {
                let builder = match &self.options.bus {
                    Bus::System => zbus::connection::Builder::system(),
                    Bus::Address(a) => zbus::connection::Builder::address(a.as_str()),
                };
                let conn = builder
                    .build()
                    .await
                    .map_err(|source| SystemdError::NoBus {
                        op,
                        address: self.options.bus.describe(),
                        source,
                    })?;
                let map = |e| SystemdError::from_dbus(op, "", e);
                let manager = ManagerProxy::new(&conn).await.map_err(map)?;
                // Listen before anything can start a job of ours.
                let jobs = manager.receive_job_removed().await.map_err(map)?;
                // systemd sends JobRemoved only to clients that subscribed. This call is also
                // the first one to reach PID 1, so it tells whether systemd is there at all.
                manager.subscribe().await.map_err(|e| {
                    match SystemdError::from_dbus(op, "", e) {
                        // Any refusal of the bus itself (not of systemd) means systemd is not
                        // there: no owner of the name, access denied, unknown method.
                        SystemdError::Refused { detail, .. }
                            if detail.starts_with("org.freedesktop.DBus.Error.") =>
                        {
                            SystemdError::NotSystemd { op, detail }
                        }
                        other => other,
                    }
                })?;
                debug!(bus = %self.options.bus.describe(), "connected to systemd");
                Ok::<_, SystemdError>(Link {
                    manager,
                    jobs: Mutex::new(jobs),
                })
            })
            .await
    }

    async fn manager(&self, op: Operation) -> Result<&ManagerProxy<'static>, SystemdError> {
        Ok(&self.link(op).await?.manager)
    }

    /// Starts a job with `start` and waits for its `JobRemoved`. The signal stream was opened
    /// before the call, so the job's end cannot be missed whatever the order of reply and signal.
    async fn run_job<F, Fut>(&self, op: Operation, unit: &str, start: F) -> Result<(), SystemdError>
    where
        F: FnOnce(ManagerProxy<'static>) -> Fut,
        Fut: std::future::Future<Output = zbus::Result<OwnedObjectPath>>,
    {
        let link = self.link(op).await?;
        let mut removed = link.jobs.lock().await;
        let job = start(link.manager.clone())
            .await
            .map_err(|e| SystemdError::from_dbus(op, unit, e))?;
        debug!(%op, unit, job = %job.as_str(), "job queued");
        let timeout = self.options.job_timeout;
        let waited = tokio::time::timeout(timeout, wait_for_job(&mut removed, &job)).await;
        drop(removed);
        let result = match waited {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => return Err(SystemdError::from_dbus(op, unit, e)),
            Err(_) => {
                return Err(SystemdError::JobTimeout {
                    op,
                    unit: unit.to_string(),
                    timeout,
                    hint: self.hint(unit).await,
                });
            }
        };
        if result == JobResult::Done {
            info!(%op, unit, "job done");
            return Ok(());
        }
        let hint = self.hint(unit).await;
        job_outcome(op, unit, result, hint)
    }

    /// The unit's state, or no hint when it cannot be read.
    async fn hint(&self, unit: &str) -> Hint {
        Hint(
            self.properties(Operation::Properties, unit)
                .await
                .ok()
                .map(Box::new),
        )
    }

    async fn properties(&self, op: Operation, unit: &str) -> Result<UnitProperties, SystemdError> {
        let manager = self.manager(op).await?;
        let map = |e| SystemdError::from_dbus(op, unit, e);
        // LoadUnit (not GetUnit): a unit that is not loaded is still described.
        let path = manager.load_unit(unit.to_string()).await.map_err(map)?;
        let conn = manager.inner().connection();
        let u = UnitProxy::builder(conn)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(map)?;
        let mut props = UnitProperties {
            load_state: u.load_state().await.map_err(map)?,
            active_state: u.active_state().await.map_err(map)?,
            sub_state: u.sub_state().await.map_err(map)?,
            need_daemon_reload: u.need_daemon_reload().await.map_err(map)?,
            can_reload: u.can_reload().await.map_err(map)?,
            ..Default::default()
        };
        if unit.ends_with(".service") && props.load_state != "not-found" {
            let s = ServiceProxy::builder(conn)
                .path(path)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(map)?;
            props.main_pid = s.main_pid().await.map_err(map)?;
            props.result = s.result().await.map_err(map)?;
        }
        Ok(props)
    }

    /// EnableUnitFiles and friends, then a daemon-reload so systemd sees the new state.
    async fn unit_files(&self, op: Operation, units: &[String]) -> Result<(), SystemdError> {
        if units.is_empty() {
            return Ok(());
        }
        let manager = self.manager(op).await?;
        let names = units.join(" ");
        let files = units.to_vec();
        let map = |e| SystemdError::from_dbus(op, &names, e);
        // runtime = false: persistent, in /etc/systemd/system. force = true where systemd offers
        // it: the node's state comes from the config, so a stale symlink left by an older config
        // (or by hand) is replaced rather than failing the update.
        let changes = match op {
            Operation::Enable => {
                let (has_install_info, changes) = manager
                    .enable_unit_files(files, false, true)
                    .await
                    .map_err(map)?;
                if !has_install_info {
                    warn!(units = %names, "enable: unit has no [Install] section; nothing to enable");
                }
                changes
            }
            Operation::Disable => manager
                .disable_unit_files(files, false)
                .await
                .map_err(map)?,
            Operation::Preset => {
                manager
                    .preset_unit_files(files, false, true)
                    .await
                    .map_err(map)?
                    .1
            }
            Operation::Mask => manager
                .mask_unit_files(files, false, true)
                .await
                .map_err(map)?,
            Operation::Unmask => manager.unmask_unit_files(files, false).await.map_err(map)?,
            other => {
                return Err(SystemdError::UnitFiles {
                    op: other,
                    units: names,
                    message: "not a unit file operation".into(),
                });
            }
        };
        for (kind, file, target) in &changes {
            info!(%op, kind = %kind, file = %file, target = %target, "unit file changed");
        }
        self.daemon_reload().await
    }
}

/// Reads `JobRemoved` signals until the one for `job` arrives; returns its result.
async fn wait_for_job(
    removed: &mut JobRemovedStream,
    job: &OwnedObjectPath,
) -> zbus::Result<JobResult> {
    while let Some(signal) = removed.next().await {
        let args = signal.args()?;
        if args.job.as_str() == job.as_str() {
            return Ok(JobResult::parse(&args.result));
        }
    }
    Err(zbus::Error::Failure(
        "the connection to systemd closed before the job finished".into(),
    ))
}

#[async_trait::async_trait]
impl ServiceManager for SystemdClient {
    /// No pre-check of `CanReload`: systemd refuses a unit without `ExecReload`
    /// (`JobTypeNotApplicable`), a missing one (`NoSuchUnit`) and a masked one (`UnitMasked`)
    /// before queueing a job, and [`SystemdError::from_dbus`] turns those into the clear errors,
    /// so a successful reload costs one call and one signal.
    async fn reload_unit(&self, unit: &str) -> Result<(), SystemdError> {
        let name = unit.to_string();
        self.run_job(Operation::Reload, unit, |m| async move {
            m.reload_unit(name, "replace".into()).await
        })
        .await
    }

    async fn restart_unit(&self, unit: &str) -> Result<(), SystemdError> {
        let name = unit.to_string();
        self.run_job(Operation::Restart, unit, |m| async move {
            m.restart_unit(name, "replace".into()).await
        })
        .await
    }

    /// Subscribes to `Reloading` before calling `Reload`, then waits for `Reloading(false)`.
    /// (systemd also delays the method reply until the reload ended; waiting for the signal
    /// keeps that guarantee explicit and bounded by the job timeout.)
    async fn daemon_reload(&self) -> Result<(), SystemdError> {
        let op = Operation::DaemonReload;
        let manager = self.manager(op).await?;
        let mut reloading = manager
            .receive_reloading()
            .await
            .map_err(|e| SystemdError::from_dbus(op, "", e))?;
        let timeout = self.options.job_timeout;
        let work = async {
            manager.reload().await?;
            while let Some(signal) = reloading.next().await {
                if !signal.args()?.active {
                    return Ok(());
                }
            }
            Err(zbus::Error::Failure(
                "the connection to systemd closed during the reload".into(),
            ))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(())) => {
                info!("daemon-reload done");
                Ok(())
            }
            Ok(Err(e)) => Err(SystemdError::from_dbus(op, "", e)),
            Err(_) => Err(SystemdError::ReloadTimeout { timeout }),
        }
    }

    async fn enable_unit_files(&self, units: &[String]) -> Result<(), SystemdError> {
        self.unit_files(Operation::Enable, units).await
    }

    async fn disable_unit_files(&self, units: &[String]) -> Result<(), SystemdError> {
        self.unit_files(Operation::Disable, units).await
    }

    async fn preset_unit_files(&self, units: &[String]) -> Result<(), SystemdError> {
        self.unit_files(Operation::Preset, units).await
    }

    async fn mask_unit_files(&self, units: &[String]) -> Result<(), SystemdError> {
        self.unit_files(Operation::Mask, units).await
    }

    async fn unmask_unit_files(&self, units: &[String]) -> Result<(), SystemdError> {
        self.unit_files(Operation::Unmask, units).await
    }

    /// `StartUnit("reboot.target", "replace-irreversibly")`, which is what `systemctl reboot`
    /// does. Chosen over a transient unit and over logind because it needs nothing but PID 1:
    /// logind may be absent (minimal hosts, containers) and applies inhibitor locks and polkit
    /// to a reboot the update flow has already decided on, and a transient unit would only wrap
    /// the same request. `replace-irreversibly` keeps later jobs from cancelling the reboot, and
    /// the ordered shutdown stops services cleanly so the journal and our state are flushed.
    ///
    /// Only the queueing is awaited: the reboot job ends with the machine, so its `JobRemoved`
    /// is never seen.
    async fn reboot(&self) -> Result<(), SystemdError> {
        let op = Operation::Reboot;
        let manager = self.manager(op).await?;
        let job = manager
            .start_unit("reboot.target".into(), "replace-irreversibly".into())
            .await
            .map_err(|e| SystemdError::from_dbus(op, "reboot.target", e))?;
        info!(job = %job.as_str(), "reboot queued");
        Ok(())
    }

    /// `StartUnit("soft-reboot.target", "replace-irreversibly")`, which is what `systemctl
    /// soft-reboot` does, for the reasons given at [`Self::reboot`]. Not the manager's
    /// `SoftReboot` method: that one is the last step of the operation (the equivalent of
    /// `systemctl soft-reboot --force`), without the ordered stop of every service.
    async fn soft_reboot(&self) -> Result<(), SystemdError> {
        let op = Operation::SoftReboot;
        let manager = self.manager(op).await?;
        let job = manager
            .start_unit(
                super::SOFT_REBOOT_TARGET.into(),
                "replace-irreversibly".into(),
            )
            .await
            .map_err(|e| SystemdError::from_dbus(op, super::SOFT_REBOOT_TARGET, e))?;
        info!(job = %job.as_str(), "soft reboot queued");
        Ok(())
    }

    async fn version(&self) -> Result<String, SystemdError> {
        let op = Operation::Properties;
        let manager = self.manager(op).await?;
        manager
            .version()
            .await
            .map_err(|e| SystemdError::from_dbus(op, "", e))
    }

    /// `basic.target`'s `ActiveEnterTimestampMonotonic`: every boot transaction, the one after
    /// a soft reboot too, starts it once, and nothing else does. (The manager's
    /// `UserspaceTimestampMonotonic` is not it: systemd 254 keeps it across a soft reboot.)
    async fn userspace_started(&self) -> Option<u64> {
        let op = Operation::Properties;
        let manager = self.manager(op).await.ok()?;
        let read = async {
            let path = manager.get_unit(super::USERSPACE_MARK_UNIT.into()).await?;
            let u = UnitProxy::builder(manager.inner().connection())
                .path(path)
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            u.active_enter_timestamp_monotonic().await
        };
        match read.await {
            Ok(0) => None,
            Ok(t) => Some(t),
            Err(e) => {
                warn!(error = %e, "cannot read when {} started", super::USERSPACE_MARK_UNIT);
                None
            }
        }
    }

    async fn system_state(&self) -> Result<super::SystemState, SystemdError> {
        let op = Operation::Properties;
        let manager = self.manager(op).await?;
        let map = |e| SystemdError::from_dbus(op, "", e);
        // Declared without change signals, so read from systemd each time (never cached).
        let state = manager.system_state().await.map_err(map)?;
        let failed = if state == "degraded" {
            manager
                .list_units_filtered(vec!["failed".into()])
                .await
                .map_err(map)?
                .into_iter()
                .map(|u| u.0)
                .collect()
        } else {
            Vec::new()
        };
        Ok(super::SystemState { state, failed })
    }

    async fn unit_properties(&self, unit: &str) -> Result<UnitProperties, SystemdError> {
        self.properties(Operation::Properties, unit).await
    }
}
