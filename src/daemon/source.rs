//! Standalone mode's source of truth: the desired config (a rendered MachineConfig file, or a
//! directory of MachineConfigs rendered on the fly for the pool) and the node disruption policy
//! file (a MachineConfiguration; absent: the cluster defaults).

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
            None => policy::defaults(),
        };
        let (config, warnings) = model::load_config_arg(&self.desired, &self.pool)
            .map_err(|e| format!("desired config {}: {e}", self.desired.display()))?;
        for w in warnings {
            tracing::warn!(path = %self.desired.display(), "{w}");
        }
        Ok(Wanted { config, policy })
    }
}

/// The effective policy of a MachineConfiguration file; a missing file means the defaults (so a
/// unit can name a policy file that the administrator creates later).
fn read_policy(path: &Path) -> Result<Policy, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(policy::defaults()),
        Err(e) => return Err(format!("policy {}: {e}", path.display())),
    };
    let origin = path.display().to_string();
    let mc = policy::parse_machine_configuration(&bytes, &origin)
        .map_err(|e| format!("policy {origin}: {e}"))?;
    Ok(mc.effective_policy())
}
