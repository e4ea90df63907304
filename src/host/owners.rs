//! User and group names resolved from the *root's* `/etc/passwd` and `/etc/group` (never the
//! daemon's own: in a DaemonSet they differ). Numeric ids are accepted as they are; a missing
//! database file simply knows no names.

use super::HostError;
use super::root::{Entry, Root, Tree};
use crate::model::Owner;
use std::collections::HashMap;

/// Name → id tables of the root's user and group databases.
#[derive(Debug, Default, Clone)]
pub struct Owners {
    users: HashMap<String, (u32, u32)>,
    groups: HashMap<String, u32>,
}

impl Owners {
    /// Reads `/etc/passwd` and `/etc/group` beneath `root`.
    pub fn load(root: &Root) -> Result<Owners, HostError> {
        let mut o = Owners::default();
        if let Entry::File { data, .. } = root.read("/etc/passwd", Tree::Etc)? {
            for f in fields(&data) {
                if let (Some(name), Some(uid), Some(gid)) = (f.first(), f.get(2), f.get(3))
                    && let (Ok(u), Ok(g)) = (uid.parse(), gid.parse())
                {
                    o.users.insert(name.to_string(), (u, g));
                }
            }
        }
        if let Entry::File { data, .. } = root.read("/etc/group", Tree::Etc)? {
            for f in fields(&data) {
                if let (Some(name), Some(Ok(gid))) = (f.first(), f.get(2).map(|g| g.parse())) {
                    o.groups.insert(name.to_string(), gid);
                }
            }
        }
        Ok(o)
    }

    /// The uid and primary gid of a user name.
    pub fn user(&self, name: &str) -> Option<(u32, u32)> {
        self.users.get(name).copied()
    }

    /// Resolves a file's `user` (default root); an unknown name is an error naming `path`.
    pub fn uid(&self, owner: Option<&Owner>, path: &str) -> Result<u32, HostError> {
        match owner {
            None => Ok(0),
            Some(Owner::Id(id)) => Ok(*id),
            Some(Owner::Name(n)) => {
                self.users
                    .get(n)
                    .map(|u| u.0)
                    .ok_or_else(|| HostError::Owner {
                        path: path.to_string(),
                        reason: format!("unknown user {n:?} (not in the node's /etc/passwd)"),
                    })
            }
        }
    }

    /// Resolves a file's `group` (default root); an unknown name is an error naming `path`.
    pub fn gid(&self, owner: Option<&Owner>, path: &str) -> Result<u32, HostError> {
        match owner {
            None => Ok(0),
            Some(Owner::Id(id)) => Ok(*id),
            Some(Owner::Name(n)) => self.groups.get(n).copied().ok_or_else(|| HostError::Owner {
                path: path.to_string(),
                reason: format!("unknown group {n:?} (not in the node's /etc/group)"),
            }),
        }
    }
}

fn fields(data: &[u8]) -> impl Iterator<Item = Vec<&str>> {
    std::str::from_utf8(data)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}
