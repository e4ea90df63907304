//! This node: rooted, safe file operations, backups, units, ssh keys, on-disk validation.
pub mod systemd;
