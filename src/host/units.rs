//! Unit enablement: the files of units and dropins are written by the update itself (see
//! [`super::manifest`]); enabling, disabling and presetting go through systemd, so here we only
//! compute the ordered operations the executor must perform.
//!
//! - `before_files`: units the new config no longer has are preset before their files are
//!   deleted or restored (SPEC §5 step 6).
//! - `after_files` (after a daemon-reload): for every unit that is new or whose definition
//!   changed (every unit on a first apply or under the force file): `enabled: true` → enable,
//!   `false` → disable, unset → preset. Masked units get none (the mask is the file side).

use crate::model::{Config, Unit};

/// One enablement operation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "op", content = "unit", rename_all = "lowercase")]
pub enum UnitOp {
    Enable(String),
    Disable(String),
    Preset(String),
}

impl std::fmt::Display for UnitOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitOp::Enable(u) => write!(f, "enable {u}"),
            UnitOp::Disable(u) => write!(f, "disable {u}"),
            UnitOp::Preset(u) => write!(f, "preset {u}"),
        }
    }
}

/// The enablement operations of an update, in the order they must run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnitOps {
    pub before_files: Vec<UnitOp>,
    pub after_files: Vec<UnitOp>,
}

impl UnitOps {
    pub fn is_empty(&self) -> bool {
        self.before_files.is_empty() && self.after_files.is_empty()
    }
}

/// Computes the enablement operations from `old` (None: first apply) to `new`.
pub fn unit_ops(old: Option<&Config>, new: &Config, force: bool) -> UnitOps {
    let find = |c: &Config, name: &str| -> Option<Unit> {
        c.units.iter().find(|u| u.name == name).cloned()
    };
    let mut ops = UnitOps::default();
    let mut names: Vec<&Unit> = new.units.iter().collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    for u in names {
        let changed = match old {
            None => true,
            Some(o) => force || find(o, &u.name).as_ref() != Some(u),
        };
        if !changed || u.mask == Some(true) {
            continue;
        }
        ops.after_files.push(match u.enabled {
            Some(true) => UnitOp::Enable(u.name.clone()),
            Some(false) => UnitOp::Disable(u.name.clone()),
            None => UnitOp::Preset(u.name.clone()),
        });
    }
    if let Some(o) = old {
        let mut removed: Vec<&Unit> = o
            .units
            .iter()
            .filter(|u| find(new, &u.name).is_none())
            .collect();
        removed.sort_by(|a, b| a.name.cmp(&b.name));
        for u in removed {
            ops.before_files.push(UnitOp::Preset(u.name.clone()));
        }
    }
    ops
}
