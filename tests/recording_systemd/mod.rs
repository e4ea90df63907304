//! A recording systemd for tests of what the daemon asks of systemd: every call is recorded as
//! `OPERATION UNIT…` (e.g. `restart b.service`, `daemon-reload`), and the one call named
//! `fail` fails with an injected refusal. The real systemd is vm-tests' part.
#![allow(dead_code)]

use machine_config_daemon::host::systemd::{
    Operation, ServiceManager, SystemdError, UnitProperties,
};
use std::sync::Mutex;

/// Records every call; the call named `fail` (e.g. `restart b.service`) fails.
pub struct Systemd {
    calls: Mutex<Vec<String>>,
    fail: &'static str,
}

impl Systemd {
    pub fn new(fail: &'static str) -> Systemd {
        Systemd {
            calls: Mutex::new(Vec::new()),
            fail,
        }
    }

    fn call(&self, op: Operation, what: &str) -> Result<(), SystemdError> {
        let call = format!("{op} {what}").trim().to_string();
        self.calls.lock().unwrap().push(call.clone());
        if call == self.fail {
            return Err(SystemdError::Refused {
                op,
                unit: what.to_string(),
                detail: "injected failure".into(),
            });
        }
        Ok(())
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl ServiceManager for Systemd {
    async fn reload_unit(&self, unit: &str) -> Result<(), SystemdError> {
        self.call(Operation::Reload, unit)
    }
    async fn restart_unit(&self, unit: &str) -> Result<(), SystemdError> {
        self.call(Operation::Restart, unit)
    }
    async fn daemon_reload(&self) -> Result<(), SystemdError> {
        self.call(Operation::DaemonReload, "")
    }
    async fn enable_unit_files(&self, units: &[String]) -> Result<(), SystemdError> {
        self.call(Operation::Enable, &units.join(" "))
    }
    async fn disable_unit_files(&self, units: &[String]) -> Result<(), SystemdError> {
        self.call(Operation::Disable, &units.join(" "))
    }
    async fn preset_unit_files(&self, units: &[String]) -> Result<(), SystemdError> {
        self.call(Operation::Preset, &units.join(" "))
    }
    async fn mask_unit_files(&self, units: &[String]) -> Result<(), SystemdError> {
        self.call(Operation::Mask, &units.join(" "))
    }
    async fn unmask_unit_files(&self, units: &[String]) -> Result<(), SystemdError> {
        self.call(Operation::Unmask, &units.join(" "))
    }
    async fn reboot(&self) -> Result<(), SystemdError> {
        self.call(Operation::Reboot, "")
    }
    async fn soft_reboot(&self) -> Result<(), SystemdError> {
        self.call(Operation::SoftReboot, "")
    }
    async fn unit_properties(&self, _unit: &str) -> Result<UnitProperties, SystemdError> {
        Ok(UnitProperties {
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            result: "success".into(),
            main_pid: 1,
            need_daemon_reload: false,
            can_reload: true,
        })
    }
}
