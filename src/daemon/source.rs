//! Standalone mode's source of truth: the desired config (a rendered MachineConfig file, or a
//! directory of MachineConfigs rendered on the fly for the pool) and the node disruption policy
//! file (a MachineConfiguration; absent: the cluster defaults).
//!
//! Errors name the file once per problem (the loaders put the file in each line; the prefix
//! says which input it is: `desired config …` or `policy …`). At debug level, each read is
//! logged with what it found.
//!
//! A directory holding no MachineConfig (a freshly installed node's empty `desired.d`) asks for
//! nothing: the daemon stays on its current config (none yet: `Done` on no config), and that is
//! not a problem. An empty or unreadable *file* is one.

use crate::model::policy::{self, Policy};
use crate::model::{self, MachineConfig};
use std::path::{Path, PathBuf};

/// Where the desired config and the policy come from.
#[derive(Debug, Clone)]
pub struct LocalSource {
    pub desired: PathBuf,
    pub policy: Option<PathBuf>,
    pub pool: String,
    /// Bounds on reading the desired config.
    pub limits: model::load::Limits,
}

/// What the source says now.
#[derive(Debug)]
pub struct Wanted {
    pub config: MachineConfig,
    pub policy: Policy,
}

impl LocalSource {
    /// Reads and validates the desired config and the policy; `None` when the desired config is
    /// a directory with no MachineConfig in it. Every problem is reported in one message (one
    /// problem per line), prefixed with the file it concerns. Whether the change can be applied
    /// is the plan's question, not the source's.
    pub fn read(&self) -> Result<Option<Wanted>, String> {
        self.read_in(None)
    }

    /// [`LocalSource::read`] for an update: the files' decoded contents are spooled to an
    /// unnamed file in `spool_dir` as they are read ([`model::load::load_desired_spooled`]),
    /// so that the update never holds them all at once. When no spool can be made there, the
    /// config is read whole (as it is without a directory).
    pub fn read_spooled(&self, spool_dir: Option<&Path>) -> Result<Option<Wanted>, String> {
        let Some(spool_dir) = spool_dir else {
            return self.read_in(None);
        };
        match model::Spool::new_in(spool_dir) {
            Ok(spool) => self.read_in(Some(spool)),
            Err(e) => {
                tracing::warn!(dir = %spool_dir.display(), error = %e, "cannot spool the desired config's contents in {}: reading it whole", spool_dir.display());
                self.read_in(None)
            }
        }
    }

    fn read_in(
        &self,
        spool: Option<std::sync::Arc<model::Spool>>,
    ) -> Result<Option<Wanted>, String> {
        let policy = self.policy()?;
        let loaded = match spool {
            Some(spool) => model::load::load_desired_spooled(
                &self.desired,
                &self.pool,
                &self.limits,
                spool,
                crate::host::state::KEPT_WHOLE,
            ),
            None => model::load::load_desired(&self.desired, &self.pool, &self.limits),
        };
        let loaded = loaded.map_err(|e| {
            // Every problem already names its file (in a directory, the file in it).
            let desired = self.desired.display().to_string();
            let e = e.to_string();
            if e.starts_with(&desired) {
                format!("desired config {e}")
            } else {
                format!("desired config {desired}: {e}")
            }
        })?;
        let Some((config, warnings)) = loaded else {
            tracing::debug!(path = %self.desired.display(), "no MachineConfig in {}", self.desired.display());
            return Ok(None);
        };
        for w in warnings {
            tracing::warn!(path = %self.desired.display(), "{w}");
        }
        tracing::debug!(
            path = %self.desired.display(),
            config = %config.name,
            files = config.spec.config.files.len(),
            units = config.spec.config.units.len(),
            "desired config read from {}: {}",
            self.desired.display(),
            config.name
        );
        Ok(Some(Wanted { config, policy }))
    }

    /// The effective policy (the cluster defaults without a policy file).
    pub fn policy(&self) -> Result<Policy, String> {
        match &self.policy {
            Some(p) => read_policy(p),
            None => {
                tracing::debug!("no policy file given: the cluster defaults");
                Ok(policy::defaults())
            }
        }
    }
}

/// The effective policy of a MachineConfiguration file; a missing file means the defaults (so a
/// unit can name a policy file that the administrator creates later).
fn read_policy(path: &Path) -> Result<Policy, String> {
    if !path.exists() {
        return Ok(policy::defaults());
    }
    let limit = model::load::Limits::default().config_bytes;
    let bytes = match model::load::read_input(path, limit) {
        Ok(b) => b,
        // Removed since the check above.
        Err(_) if !path.exists() => {
            tracing::debug!(path = %path.display(), "policy file {} absent: the cluster defaults", path.display());
            return Ok(policy::defaults());
        }
        Err(e) => return Err(format!("policy {}: {e}", path.display())),
    };
    let origin = path.display().to_string();
    // Every violation names the file.
    let mc =
        policy::parse_machine_configuration(&bytes, &origin).map_err(|e| format!("policy {e}"))?;
    let effective = mc.effective_policy();
    tracing::debug!(
        path = %origin,
        files = effective.files.len(),
        units = effective.units.len(),
        "policy read from {origin}"
    );
    Ok(effective)
}
