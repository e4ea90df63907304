//! Standalone mode's source of truth: the desired config (a rendered MachineConfig file, or a
//! directory of MachineConfigs rendered on the fly for the pool) and the node disruption policy
//! file (a MachineConfiguration; absent: the cluster defaults).
//!
//! Errors name the file once per problem (the loaders put the file in each line; the prefix
//! says which input it is: `desired config …` or `policy …`). At debug level, each read is
//! logged with what it found.

use crate::model::policy::{self, Policy};
use crate::model::{self, MachineConfig};
use std::path::{Path, PathBuf};

/// Where the desired config and the policy come from.
#[derive(Debug, Clone)]
pub struct LocalSource {
    pub desired: PathBuf,
    pub policy: Option<PathBuf>,
    pub pool: String,
}

/// What the source says now.
#[derive(Debug)]
pub struct Wanted {
    pub config: MachineConfig,
    pub policy: Policy,
}

impl LocalSource {
    /// Reads and validates the desired config and the policy. Every problem is reported in one
    /// message (one problem per line), prefixed with the file it concerns. Whether the change
    /// can be applied is the plan's question, not the source's.
    pub fn read(&self) -> Result<Wanted, String> {
        let policy = match &self.policy {
            Some(p) => read_policy(p)?,
            None => {
                tracing::debug!("no policy file given: the cluster defaults");
                policy::defaults()
            }
        };
        let (config, warnings) =
            model::load_config_arg(&self.desired, &self.pool).map_err(|e| {
                // Every problem already names its file (in a directory, the file in it).
                let desired = self.desired.display().to_string();
                let e = e.to_string();
                if e.starts_with(&desired) {
                    format!("desired config {e}")
                } else {
                    format!("desired config {desired}: {e}")
                }
            })?;
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
        Ok(Wanted { config, policy })
    }
}

/// The effective policy of a MachineConfiguration file; a missing file means the defaults (so a
/// unit can name a policy file that the administrator creates later).
fn read_policy(path: &Path) -> Result<Policy, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
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
