//! Shared helpers of the host tests: tempdir roots with a user database, configs, snapshots.
#![allow(dead_code)]

use machine_config_daemon::model::{File, MachineConfig, Owner, Unit, User};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// A tempdir root with `/etc/passwd`, `/etc/group`, `/etc/shadow` and `/home`.
pub fn make_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    std::fs::create_dir_all(p.join("etc")).unwrap();
    std::fs::create_dir_all(p.join("home")).unwrap();
    std::fs::create_dir_all(p.join("var")).unwrap();
    std::fs::write(
        p.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\ncore:x:1000:1000:CoreOS Admin:/home/core:/bin/bash\nchrony:x:994:990::/var/lib/chrony:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(
        p.join("etc/group"),
        "root:x:0:\nwheel:x:10:core\ncore:x:1000:\nchrony:x:990:\n",
    )
    .unwrap();
    std::fs::write(
        p.join("etc/shadow"),
        "root:*:19000:0:99999:7:::\ncore:!!:19000:0:99999:7:::\n",
    )
    .unwrap();
    std::fs::set_permissions(p.join("etc/shadow"), std::fs::Permissions::from_mode(0o600)).unwrap();
    t
}

pub fn file(path: &str, contents: &str, mode: u32) -> File {
    File {
        path: path.to_string(),
        contents: Some(contents.as_bytes().to_vec()),
        mode: Some(mode),
        overwrite: Some(true),
        ..File::default()
    }
}

pub fn owned(path: &str, contents: &str, user: Owner, group: Owner) -> File {
    File {
        user: Some(user),
        group: Some(group),
        ..file(path, contents, 0o640)
    }
}

pub fn mc(name: &str, files: Vec<File>) -> MachineConfig {
    let mut m = MachineConfig {
        name: name.to_string(),
        ..MachineConfig::default()
    };
    m.spec.config.version = "3.4.0".to_string();
    m.spec.config.files = files;
    m
}

pub fn with_units(mut m: MachineConfig, units: Vec<Unit>) -> MachineConfig {
    m.spec.config.units = units;
    m
}

pub fn with_core(mut m: MachineConfig, keys: &[&str], hash: Option<&str>) -> MachineConfig {
    m.spec.config.users = vec![User {
        name: "core".to_string(),
        ssh_authorized_keys: keys.iter().map(|k| k.to_string()).collect(),
        password_hash: hash.map(str::to_string),
        ..User::default()
    }];
    m
}

/// Every entry beneath `root`: type, mode, owner and contents (or link target). Contents are
/// kept byte for byte, ASCII-escaped (`\n`, `\xff`: one spelling per byte sequence), so two
/// snapshots are equal only when every byte is.
pub type Snapshot = BTreeMap<String, String>;

/// The scratch file the stored config's writes reuse (see `host::txn`): it holds
/// whichever config was last written or replaced, carries no state, and so is left out of
/// snapshots; where present it must be a regular file with one link.
/// The single-instance lock, beneath the root.
pub const LOCK: &str = "etc/machine-config-daemon/lock";
pub const SCRATCH: &str = "etc/machine-config-daemon/.currentconfig.mcdtmp";

pub fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    // The single-instance lock holds the PID of the last command that took it: bookkeeping of
    // the commands, not part of the node's state.
    if let Some(lock) = out.remove(LOCK) {
        assert!(lock.starts_with("100644 "), "lock file: {lock}");
    }
    if out.remove(SCRATCH).is_some() {
        let md = std::fs::symlink_metadata(root.join(SCRATCH)).unwrap();
        assert!(md.is_file() && md.nlink() == 1, "scratch file: {md:?}");
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let head = format!("{:o} {}:{}", md.mode(), md.uid(), md.gid());
        let v = if md.file_type().is_symlink() {
            format!("{head} -> {}", std::fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            walk(root, &p, out);
            head
        } else {
            format!("{head} {}", std::fs::read(&p).unwrap().escape_ascii())
        };
        out.insert(rel, v);
    }
}

/// Describes how two snapshots differ (for assertion messages).
pub fn diff(a: &Snapshot, b: &Snapshot) -> String {
    let mut s = String::new();
    for (k, v) in a {
        match b.get(k) {
            None => s += &format!("only in first: {k}\n"),
            Some(w) if w != v => s += &format!("differs: {k}: {v:?} vs {w:?}\n"),
            _ => {}
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            s += &format!("only in second: {k}\n");
        }
    }
    s
}

pub fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p.trim_start_matches('/'))).unwrap()
}

pub fn mode_of(root: &Path, p: &str) -> u32 {
    std::fs::symlink_metadata(root.join(p.trim_start_matches('/')))
        .unwrap()
        .mode()
}

pub fn exists(root: &Path, p: &str) -> bool {
    std::fs::symlink_metadata(root.join(p.trim_start_matches('/'))).is_ok()
}
