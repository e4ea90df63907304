//! Rendering (SPEC §2): merging the MachineConfigs of a pool into one rendered MachineConfig named
//! `rendered-<pool>-<hash>`.
//!
//! Order: by name in byte order; for a pool other than `worker`, the configs labelled for the
//! worker role come first (each group sorted), because custom pools inherit the worker configs.
//! The first config is the base and each next one is merged over it ([`merge_config`]). The name's
//! hash covers the canonical JSON of the rendered spec, so the same inputs give the same name
//! whatever order they were read in.

use super::config::{
    Config, Directory, File, Group, Link, MachineConfig, MachineConfigSpec, Owner, Unit, User,
};
use super::error::RenderError;
use super::ignition::{EMIT_VERSION, machine_config_to_json};
use super::load::ROLE_LABEL;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::Digest as _;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// The pool whose configs custom pools inherit.
pub const WORKER_POOL: &str = "worker";

/// Merges `configs` for `pool` into the rendered MachineConfig.
pub fn render(pool: &str, configs: &[MachineConfig]) -> Result<MachineConfig, RenderError> {
    let pool_ok = !pool.is_empty()
        && pool.len() <= 63
        && pool
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !pool.starts_with('-')
        && !pool.ends_with('-');
    if !pool_ok {
        return Err(RenderError::InvalidPool(pool.to_string()));
    }
    if configs.is_empty() {
        return Err(RenderError::NoConfigs);
    }
    let ordered = order(pool, configs);
    // Unique names make the order total, hence the rendered name independent of input order.
    let mut names: Vec<&str> = ordered.iter().map(|mc| mc.name.as_str()).collect();
    names.sort_unstable();
    if let Some(d) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(RenderError::DuplicateName(d[0].to_string()));
    }

    let mut merger = Merger::new(&ordered[0].spec.config);
    for mc in &ordered[1..] {
        merger.merge(&mc.spec.config);
    }
    let mut config = merger.finish();
    config.version = EMIT_VERSION.to_string();
    for f in &mut config.files {
        f.overwrite.get_or_insert(true);
    }

    let mut spec = MachineConfigSpec {
        config,
        ..Default::default()
    };
    let mut special: Option<(&str, &str)> = None; // (kernel type, config name)
    for mc in &ordered {
        spec.kernel_arguments
            .extend(mc.spec.kernel_arguments.iter().cloned());
        spec.extensions.extend(mc.spec.extensions.iter().cloned());
        spec.fips |= mc.spec.fips;
        if !mc.spec.os_image_url.is_empty() {
            spec.os_image_url = mc.spec.os_image_url.clone();
        }
        match mc.spec.kernel_type.as_deref() {
            None | Some("") | Some("default") => {}
            Some(kt) => match special {
                Some((first, first_mc)) if first != kt => {
                    return Err(RenderError::ConflictingKernelTypes {
                        first_config: first_mc.to_string(),
                        first: first.to_string(),
                        second_config: mc.name.clone(),
                        second: kt.to_string(),
                    });
                }
                Some(_) => {}
                None => special = Some((kt, &mc.name)),
            },
        }
    }
    let kernel_type = special.map_or("default", |(kt, _)| kt);
    if kernel_type != "default"
        && let Some(mc) = ordered
            .iter()
            .find(|mc| mc.spec.extensions.iter().any(|e| e == "kernel-devel"))
    {
        return Err(RenderError::KernelDevelWithNonDefaultKernel {
            config: mc.name.clone(),
            kernel_type: kernel_type.to_string(),
        });
    }
    spec.kernel_type = Some(kernel_type.to_string());

    let mut rendered = MachineConfig {
        name: String::new(),
        labels: [(ROLE_LABEL.to_string(), pool.to_string())].into(),
        spec,
    };
    rendered.name = rendered_name(pool, &rendered);
    Ok(rendered)
}

/// The merge order of `configs` for `pool` (see the module doc).
pub fn order<'a>(pool: &str, configs: &'a [MachineConfig]) -> Vec<&'a MachineConfig> {
    let is_worker = |mc: &MachineConfig| {
        pool != WORKER_POOL && mc.labels.get(ROLE_LABEL).map(String::as_str) == Some(WORKER_POOL)
    };
    let mut ordered: Vec<&MachineConfig> = configs.iter().collect();
    ordered.sort_by(|a, b| {
        is_worker(b)
            .cmp(&is_worker(a))
            .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
    });
    ordered
}

/// `rendered-<pool>-<first 32 hex digits of the SHA-256 of the canonical spec JSON>`.
///
/// The canonical JSON is the compact JSON of [`machine_config_to_json`]`(mc)["spec"]` with every
/// object's keys sorted. It is hashed as it is written, without building it: everything but
/// `storage.files` is built as a `Value` and written key by key in sorted order, and each file
/// (the bulk of a large config) is written straight from the model, its keys in sorted order and
/// its contents base64-encoded into the output, exactly as the `Value` would serialise.
pub fn rendered_name(pool: &str, mc: &MachineConfig) -> String {
    let digest = hex::encode(canonical_spec_digest(mc));
    format!("rendered-{pool}-{}", &digest[..32])
}

/// The SHA-256 of the canonical JSON of `mc`'s spec (see [`rendered_name`]).
fn canonical_spec_digest(mc: &MachineConfig) -> [u8; 32] {
    let files = &mc.spec.config.files;
    let c = &mc.spec.config;
    let without_files = MachineConfig {
        name: mc.name.clone(),
        labels: mc.labels.clone(),
        spec: MachineConfigSpec {
            // Spelled out (no `..`), so that a new field has to be decided on here.
            config: Config {
                version: c.version.clone(),
                files: Vec::new(),
                directories: c.directories.clone(),
                links: c.links.clone(),
                units: c.units.clone(),
                users: c.users.clone(),
                groups: c.groups.clone(),
                ignition_kernel_arguments: c.ignition_kernel_arguments.clone(),
                disks: c.disks.clone(),
                filesystems: c.filesystems.clone(),
                raid: c.raid.clone(),
                luks: c.luks.clone(),
            },
            kernel_arguments: mc.spec.kernel_arguments.clone(),
            kernel_type: mc.spec.kernel_type.clone(),
            extensions: mc.spec.extensions.clone(),
            fips: mc.spec.fips,
            os_image_url: mc.spec.os_image_url.clone(),
        },
    };
    let mut json = machine_config_to_json(&without_files);
    if !files.is_empty()
        && let Some(Value::Object(config)) = json.pointer_mut("/spec/config")
    {
        // A placeholder the writer replaces with the files (no `null` is ever emitted there).
        let storage = config
            .entry("storage")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(storage) = storage {
            storage.insert("files".into(), Value::Null);
        }
    }
    let mut w = HashWriter {
        hasher: sha2::Sha256::new(),
        buf: Vec::with_capacity(HashWriter::FLUSH_AT + 4096),
    };
    w.value(&json["spec"], &["config", "storage", "files"], files);
    w.flush();
    w.hasher.finalize().into()
}

/// Writes canonical JSON into a SHA-256, through a buffer.
struct HashWriter {
    hasher: sha2::Sha256,
    buf: Vec<u8>,
}

impl HashWriter {
    const FLUSH_AT: usize = 64 * 1024;

    fn flush(&mut self) {
        self.hasher.update(&self.buf);
        self.buf.clear();
    }

    fn json<T: serde::Serialize + ?Sized>(&mut self, v: &T) {
        // Writing a string, number, bool or null into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, v);
        if self.buf.len() >= Self::FLUSH_AT {
            self.flush();
        }
    }

    /// `v` with its object keys sorted; `hook` is the key path (below `v`) of the files'
    /// placeholder.
    fn value(&mut self, v: &Value, hook: &[&str], files: &[File]) {
        match v {
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                self.buf.push(b'{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    self.json(k.as_str());
                    self.buf.push(b':');
                    let item = &o[k];
                    match hook {
                        [last] if k == last && item.is_null() => self.files(files),
                        [first, rest @ ..] if k == first => self.value(item, rest, files),
                        _ => self.value(item, &[], files),
                    }
                }
                self.buf.push(b'}');
            }
            Value::Array(a) => {
                self.buf.push(b'[');
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    self.value(item, &[], files);
                }
                self.buf.push(b']');
            }
            leaf => self.json(leaf),
        }
    }

    /// The files as `to_ignition_json` emits them, keys sorted: append, contents, group, mode,
    /// overwrite, path, user.
    fn files(&mut self, files: &[File]) {
        self.buf.push(b'[');
        for (i, f) in files.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.buf.push(b'{');
            if f.has_append {
                self.buf
                    .extend_from_slice(br#""append":[{"source":"data:,"}],"#);
            }
            if let Some(c) = &f.contents {
                self.buf
                    .extend_from_slice(br#""contents":{"source":"data:;base64,"#);
                let start = self.buf.len();
                let len = base64::encoded_len(c.len(), true).expect("contents fit in memory");
                self.buf.resize(start + len, 0);
                let written = base64::engine::general_purpose::STANDARD
                    .encode_slice(c, &mut self.buf[start..])
                    .expect("buffer sized for the encoding");
                debug_assert_eq!(written, len);
                self.buf.extend_from_slice(br#""},"#);
            }
            if let Some(g) = &f.group {
                self.buf.extend_from_slice(br#""group":"#);
                self.owner(g);
                self.buf.push(b',');
            }
            if let Some(m) = f.mode {
                self.buf.extend_from_slice(br#""mode":"#);
                self.json(&m);
                self.buf.push(b',');
            }
            if let Some(o) = f.overwrite {
                self.buf.extend_from_slice(br#""overwrite":"#);
                self.json(&o);
                self.buf.push(b',');
            }
            self.buf.extend_from_slice(br#""path":"#);
            self.json(f.path.as_str());
            if let Some(u) = &f.user {
                self.buf.extend_from_slice(br#","user":"#);
                self.owner(u);
            }
            self.buf.push(b'}');
            if self.buf.len() >= Self::FLUSH_AT {
                self.flush();
            }
        }
        self.buf.push(b']');
    }

    fn owner(&mut self, o: &Owner) {
        match o {
            Owner::Id(id) => {
                self.buf.extend_from_slice(br#"{"id":"#);
                self.json(id);
            }
            Owner::Name(name) => {
                self.buf.extend_from_slice(br#"{"name":"#);
                self.json(name.as_str());
            }
        }
        self.buf.push(b'}');
    }
}

/// A later `Some` wins.
fn over<T: Clone>(base: &mut Option<T>, later: &Option<T>) {
    if later.is_some() {
        base.clone_from(later);
    }
}

/// Merges `later` over `base` with Ignition's rules: entries keyed by path (files, directories
/// and links share one key space: a later entry of another kind replaces the earlier one) or by
/// name (units, dropins, users, groups) are merged field by field, a later set field winning;
/// new entries are appended. A user's ssh keys are merged as an ordered set.
///
/// [`render`] merges all its configs through one [`Merger`], which keeps its indexes from one
/// config to the next; this function is the same merge for a single pair.
pub fn merge_config(base: &mut Config, later: &Config) {
    let first = std::mem::take(base);
    let mut m = Merger::new(&first);
    m.merge(later);
    *base = m.finish();
}

/// The merge of [`merge_config`], with every lookup keyed: each list of the config being built is
/// held with a map from its key (path or name) to the index of its first entry with that key, so
/// merging a later config costs one hash lookup per entry instead of a scan of the list (render
/// was quadratic in the number of files). Removing an entry (a file replaced by a later directory
/// or link of the same path, and so on) leaves a hole rather than shifting the list, so indexes
/// stay valid; the holes are dropped at the end, which keeps exactly the order the list-based
/// merge gives: survivors in place, new entries appended.
///
/// Keys borrow from the input configs (every entry comes from one of them). std's `HashMap`
/// (randomly keyed SipHash) rather than a faster fixed hash: paths come from the cluster, and
/// chosen collisions must not make rendering quadratic again.
pub struct Merger<'a> {
    /// Everything but the keyed lists.
    rest: Config,
    files: Keyed<'a, File>,
    directories: Keyed<'a, Directory>,
    links: Keyed<'a, Link>,
    /// Each unit with the index of its dropins by name.
    units: Keyed<'a, (Unit, HashMap<&'a str, usize>)>,
    /// Each user with the set of its ssh keys.
    users: Keyed<'a, (User, HashSet<&'a str>)>,
    groups: Keyed<'a, Group>,
}

impl<'a> Merger<'a> {
    /// Starts from a copy of `first`.
    pub fn new(first: &'a Config) -> Self {
        let c = first;
        // Spelled out (no `..`), so that a new field of `Config` has to be decided on here.
        let Config {
            version,
            files: _,
            directories: _,
            links: _,
            units: _,
            users: _,
            groups: _,
            ignition_kernel_arguments,
            disks,
            filesystems,
            raid,
            luks,
        } = c;
        let rest = Config {
            version: version.clone(),
            ignition_kernel_arguments: ignition_kernel_arguments.clone(),
            disks: disks.clone(),
            filesystems: filesystems.clone(),
            raid: raid.clone(),
            luks: luks.clone(),
            ..Config::default()
        };
        Merger {
            rest,
            files: Keyed::new(c.files.iter().map(|f| (f.path.as_str(), f.clone()))),
            directories: Keyed::new(c.directories.iter().map(|d| (d.path.as_str(), d.clone()))),
            links: Keyed::new(c.links.iter().map(|l| (l.path.as_str(), l.clone()))),
            units: Keyed::new(c.units.iter().map(|u| (u.name.as_str(), unit_entry(u)))),
            users: Keyed::new(c.users.iter().map(|u| (u.name.as_str(), user_entry(u)))),
            groups: Keyed::new(c.groups.iter().map(|g| (g.name.as_str(), g.clone()))),
        }
    }

    /// Merges `later` over the config built so far (see [`merge_config`]).
    pub fn merge(&mut self, later: &'a Config) {
        for f in &later.files {
            self.directories.remove(&f.path);
            self.links.remove(&f.path);
            match self.files.get_mut(&f.path) {
                Some(b) => merge_file(b, f),
                None => self.files.push(&f.path, f.clone()),
            }
        }
        for d in &later.directories {
            self.files.remove(&d.path);
            self.links.remove(&d.path);
            match self.directories.get_mut(&d.path) {
                Some(b) => merge_directory(b, d),
                None => self.directories.push(&d.path, d.clone()),
            }
        }
        for l in &later.links {
            self.files.remove(&l.path);
            self.directories.remove(&l.path);
            match self.links.get_mut(&l.path) {
                Some(b) => merge_link(b, l),
                None => self.links.push(&l.path, l.clone()),
            }
        }
        for u in &later.units {
            match self.units.get_mut(&u.name) {
                Some((b, dropins)) => merge_unit(b, dropins, u),
                None => self.units.push(&u.name, unit_entry(u)),
            }
        }
        for u in &later.users {
            match self.users.get_mut(&u.name) {
                Some((b, keys)) => {
                    for k in &u.ssh_authorized_keys {
                        if keys.insert(k) {
                            b.ssh_authorized_keys.push(k.clone());
                        }
                    }
                    over(&mut b.password_hash, &u.password_hash);
                    for (k, v) in &u.other_fields {
                        b.other_fields.insert(k.clone(), v.clone());
                    }
                }
                None => self.users.push(&u.name, user_entry(u)),
            }
        }
        for g in &later.groups {
            match self.groups.get_mut(&g.name) {
                Some(b) => {
                    for (k, v) in &g.fields {
                        b.fields.insert(k.clone(), v.clone());
                    }
                }
                None => self.groups.push(&g.name, g.clone()),
            }
        }
        let base = &mut self.rest;
        merge_keyed(&mut base.disks, &later.disks, "device");
        merge_keyed(&mut base.filesystems, &later.filesystems, "device");
        merge_keyed(&mut base.raid, &later.raid, "name");
        merge_keyed(&mut base.luks, &later.luks, "name");
        merge_kernel_arguments(
            &mut base.ignition_kernel_arguments,
            &later.ignition_kernel_arguments,
        );
    }

    /// The merged config.
    pub fn finish(self) -> Config {
        Config {
            files: self.files.into_vec(),
            directories: self.directories.into_vec(),
            links: self.links.into_vec(),
            units: self.units.into_vec().into_iter().map(|(u, _)| u).collect(),
            users: self.users.into_vec().into_iter().map(|(u, _)| u).collect(),
            groups: self.groups.into_vec(),
            ..self.rest
        }
    }
}

fn unit_entry(u: &Unit) -> (Unit, HashMap<&str, usize>) {
    let mut dropins = HashMap::with_capacity(u.dropins.len());
    for (i, d) in u.dropins.iter().enumerate() {
        dropins.entry(d.name.as_str()).or_insert(i);
    }
    (u.clone(), dropins)
}

fn user_entry(u: &User) -> (User, HashSet<&str>) {
    (
        u.clone(),
        u.ssh_authorized_keys.iter().map(String::as_str).collect(),
    )
}

/// A list under construction with a map from key to the index of the first live entry with that
/// key (see [`Merger`]). Only the first config can hold two entries with one key (a merge finds
/// the first and never adds a second); the others are kept in `more`, so that a removal still
/// removes them all.
struct Keyed<'a, T> {
    items: Vec<Option<T>>,
    first: HashMap<&'a str, usize>,
    more: HashMap<&'a str, Vec<usize>>,
}

impl<'a, T> Keyed<'a, T> {
    fn new(entries: impl ExactSizeIterator<Item = (&'a str, T)>) -> Self {
        let mut k = Keyed {
            items: Vec::with_capacity(entries.len()),
            first: HashMap::with_capacity(entries.len()),
            more: HashMap::new(),
        };
        for (key, item) in entries {
            let i = k.items.len();
            k.items.push(Some(item));
            match k.first.entry(key) {
                Entry::Vacant(v) => {
                    v.insert(i);
                }
                Entry::Occupied(_) => k.more.entry(key).or_default().push(i),
            }
        }
        k
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut T> {
        let i = *self.first.get(key)?;
        self.items[i].as_mut()
    }

    /// Appends `item`; only called when no live entry has `key`.
    fn push(&mut self, key: &'a str, item: T) {
        self.first.insert(key, self.items.len());
        self.items.push(Some(item));
    }

    /// Removes every entry with `key`.
    fn remove(&mut self, key: &str) {
        if let Some(i) = self.first.remove(key) {
            self.items[i] = None;
            if !self.more.is_empty()
                && let Some(rest) = self.more.remove(key)
            {
                for j in rest {
                    self.items[j] = None;
                }
            }
        }
    }

    fn into_vec(self) -> Vec<T> {
        self.items.into_iter().flatten().collect()
    }
}

fn merge_file(b: &mut File, f: &File) {
    // Contents are decoded, so an earlier compression can never leak onto later contents.
    over(&mut b.contents, &f.contents);
    over(&mut b.mode, &f.mode);
    over(&mut b.user, &f.user);
    over(&mut b.group, &f.group);
    over(&mut b.overwrite, &f.overwrite);
    b.has_append |= f.has_append;
}

fn merge_directory(b: &mut Directory, d: &Directory) {
    over(&mut b.mode, &d.mode);
    over(&mut b.user, &d.user);
    over(&mut b.group, &d.group);
    over(&mut b.overwrite, &d.overwrite);
}

fn merge_link(b: &mut Link, l: &Link) {
    over(&mut b.target, &l.target);
    over(&mut b.hard, &l.hard);
    over(&mut b.user, &l.user);
    over(&mut b.group, &l.group);
    over(&mut b.overwrite, &l.overwrite);
}

fn merge_unit<'a>(b: &mut Unit, dropins: &mut HashMap<&'a str, usize>, u: &'a Unit) {
    over(&mut b.contents, &u.contents);
    over(&mut b.enabled, &u.enabled);
    over(&mut b.mask, &u.mask);
    for d in &u.dropins {
        match dropins.get(d.name.as_str()) {
            Some(&i) => over(&mut b.dropins[i].contents, &d.contents),
            None => {
                dropins.insert(&d.name, b.dropins.len());
                b.dropins.push(d.clone());
            }
        }
    }
}

/// Merges two JSON lists of objects keyed by `key`: same key → later fields win, else appended.
fn merge_keyed(base: &mut Option<Value>, later: &Option<Value>, key: &str) {
    let Some(later) = later else { return };
    let (Some(Value::Array(b)), Value::Array(l)) = (base.as_mut(), later) else {
        *base = Some(later.clone());
        return;
    };
    for item in l {
        let found = b
            .iter_mut()
            .find(|x| x.get(key).is_some() && x.get(key) == item.get(key));
        match (found, item) {
            (Some(Value::Object(bo)), Value::Object(io)) => {
                for (k, v) in io {
                    bo.insert(k.clone(), v.clone());
                }
            }
            (Some(slot), _) => *slot = item.clone(),
            (None, _) => b.push(item.clone()),
        }
    }
}

/// Ignition's `kernelArguments`: each list (`shouldExist`, `shouldNotExist`) merged as a set.
fn merge_kernel_arguments(base: &mut Option<Value>, later: &Option<Value>) {
    let Some(later) = later else { return };
    let (Some(Value::Object(b)), Value::Object(l)) = (base.as_mut(), later) else {
        *base = Some(later.clone());
        return;
    };
    for (k, v) in l {
        match (b.get_mut(k), v) {
            (Some(Value::Array(ba)), Value::Array(la)) => {
                for x in la {
                    if !ba.contains(x) {
                        ba.push(x.clone());
                    }
                }
            }
            _ => {
                b.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Dropin;

    /// The rendered name's hash as first specified: the canonical `Value`, serialised.
    fn reference_digest(mc: &MachineConfig) -> [u8; 32] {
        let json = machine_config_to_json(mc);
        let bytes = serde_json::to_vec(&canonical(&json["spec"])).unwrap();
        sha2::Sha256::digest(&bytes).into()
    }

    /// `v` with every object's keys sorted, recursively.
    fn canonical(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                let mut m = Map::new();
                for k in keys {
                    m.insert(k.clone(), canonical(&o[k]));
                }
                Value::Object(m)
            }
            Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }

    fn file(path: &str) -> File {
        File {
            path: path.into(),
            ..File::default()
        }
    }

    #[test]
    fn streamed_digest_is_the_canonical_json_digest() {
        let mut mc = MachineConfig {
            name: "x".into(),
            labels: [(ROLE_LABEL.to_string(), "worker".to_string())].into(),
            ..MachineConfig::default()
        };
        // No files, then no storage at all but files.
        assert_eq!(canonical_spec_digest(&mc), reference_digest(&mc));
        mc.spec.config.files = vec![file("/etc/a")];
        assert_eq!(canonical_spec_digest(&mc), reference_digest(&mc));

        // Every field of a file, owners of both kinds, contents needing padding and escaping in
        // the path, other storage sections on both sides of `files`, and the rest of the spec.
        mc.spec.config.files = vec![
            File {
                path: "/etc/\"quoted\"\u{1}\u{e9}".into(),
                contents: Some(b"hello\n".to_vec()),
                mode: Some(0o644),
                user: Some(Owner::Id(0)),
                group: Some(Owner::Name("wheel".into())),
                overwrite: Some(false),
                has_append: true,
                digest: None,
            },
            File {
                contents: Some(Vec::new()),
                user: Some(Owner::Name("core".into())),
                group: Some(Owner::Id(4_000_000_000)),
                ..file("/etc/b")
            },
            File {
                contents: Some((0..=255).collect()),
                ..file("/etc/c")
            },
            file("/etc/d"),
        ];
        mc.spec.config.directories = vec![Directory {
            path: "/etc/dir".into(),
            mode: Some(0o755),
            ..Directory::default()
        }];
        mc.spec.config.links = vec![Link {
            path: "/etc/link".into(),
            target: Some("/etc/a".into()),
            ..Link::default()
        }];
        mc.spec.config.disks =
            Some(serde_json::json!([{"device": "/dev/sda", "z": 1.5, "a": null}]));
        mc.spec.config.luks = Some(serde_json::json!([{"name": "l"}]));
        mc.spec.config.units = vec![Unit {
            name: "a.service".into(),
            contents: Some("[Service]\n".into()),
            ..Unit::default()
        }];
        mc.spec.config.users = vec![User {
            name: "core".into(),
            ssh_authorized_keys: vec!["ssh-ed25519 AAAA".into()],
            ..User::default()
        }];
        mc.spec.kernel_arguments = vec!["a=1".into()];
        mc.spec.kernel_type = Some("realtime".into());
        mc.spec.extensions = vec!["usbguard".into()];
        mc.spec.fips = true;
        mc.spec.os_image_url = "quay.io/x@sha256:00".into();
        assert_eq!(canonical_spec_digest(&mc), reference_digest(&mc));

        // Enough files to flush the buffer several times.
        mc.spec.config.files = (0..2_000)
            .map(|i| File {
                contents: Some(vec![b'x'; i % 300]),
                mode: Some(i as u32),
                ..file(&format!("/etc/many/{i}"))
            })
            .collect();
        assert_eq!(canonical_spec_digest(&mc), reference_digest(&mc));
    }

    /// The merge as first written: each later entry looked up in the lists one by one.
    fn reference_merge(base: &mut Config, later: &Config) {
        for f in &later.files {
            base.directories.retain(|d| d.path != f.path);
            base.links.retain(|l| l.path != f.path);
            match base.files.iter_mut().find(|b| b.path == f.path) {
                Some(b) => merge_file(b, f),
                None => base.files.push(f.clone()),
            }
        }
        for d in &later.directories {
            base.files.retain(|f| f.path != d.path);
            base.links.retain(|l| l.path != d.path);
            match base.directories.iter_mut().find(|b| b.path == d.path) {
                Some(b) => merge_directory(b, d),
                None => base.directories.push(d.clone()),
            }
        }
        for l in &later.links {
            base.files.retain(|f| f.path != l.path);
            base.directories.retain(|d| d.path != l.path);
            match base.links.iter_mut().find(|b| b.path == l.path) {
                Some(b) => merge_link(b, l),
                None => base.links.push(l.clone()),
            }
        }
        for u in &later.units {
            match base.units.iter_mut().find(|b| b.name == u.name) {
                Some(b) => reference_merge_unit(b, u),
                None => base.units.push(u.clone()),
            }
        }
        for u in &later.users {
            match base.users.iter_mut().find(|b| b.name == u.name) {
                Some(b) => {
                    for k in &u.ssh_authorized_keys {
                        if !b.ssh_authorized_keys.contains(k) {
                            b.ssh_authorized_keys.push(k.clone());
                        }
                    }
                    over(&mut b.password_hash, &u.password_hash);
                    for (k, v) in &u.other_fields {
                        b.other_fields.insert(k.clone(), v.clone());
                    }
                }
                None => base.users.push(u.clone()),
            }
        }
        for g in &later.groups {
            match base.groups.iter_mut().find(|b| b.name == g.name) {
                Some(b) => {
                    for (k, v) in &g.fields {
                        b.fields.insert(k.clone(), v.clone());
                    }
                }
                None => base.groups.push(g.clone()),
            }
        }
        merge_keyed(&mut base.disks, &later.disks, "device");
        merge_keyed(&mut base.filesystems, &later.filesystems, "device");
        merge_keyed(&mut base.raid, &later.raid, "name");
        merge_keyed(&mut base.luks, &later.luks, "name");
        merge_kernel_arguments(
            &mut base.ignition_kernel_arguments,
            &later.ignition_kernel_arguments,
        );
    }

    fn reference_merge_unit(b: &mut Unit, u: &Unit) {
        over(&mut b.contents, &u.contents);
        over(&mut b.enabled, &u.enabled);
        over(&mut b.mask, &u.mask);
        for d in &u.dropins {
            match b.dropins.iter_mut().find(|x| x.name == d.name) {
                Some(x) => over(&mut x.contents, &d.contents),
                None => b.dropins.push(d.clone()),
            }
        }
    }

    /// A small deterministic generator (xorshift), so that the test needs no dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn maybe<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
            (self.below(2) == 0).then(|| f(self))
        }
    }

    /// A config drawing its keys from a handful, so that entries of every kind collide.
    fn random_config(r: &mut Rng) -> Config {
        let path = |r: &mut Rng| format!("/etc/p{}", r.below(6));
        let mut c = Config::default();
        for _ in 0..r.below(6) {
            let p = path(r);
            c.files.push(File {
                contents: r.maybe(|r| vec![r.below(3) as u8]),
                mode: r.maybe(|r| r.below(8) as u32),
                overwrite: r.maybe(|r| r.below(2) == 0),
                has_append: r.below(4) == 0,
                ..file(&p)
            });
        }
        for _ in 0..r.below(4) {
            c.directories.push(Directory {
                path: path(r),
                mode: r.maybe(|r| r.below(8) as u32),
                ..Directory::default()
            });
        }
        for _ in 0..r.below(4) {
            c.links.push(Link {
                path: path(r),
                target: r.maybe(|r| format!("/t{}", r.below(3))),
                hard: r.maybe(|r| r.below(2) == 0),
                ..Link::default()
            });
        }
        for _ in 0..r.below(4) {
            let dropins = (0..r.below(4))
                .map(|_| Dropin {
                    name: format!("d{}.conf", r.below(3)),
                    contents: r.maybe(|r| format!("c{}", r.below(3))),
                })
                .collect();
            c.units.push(Unit {
                name: format!("u{}.service", r.below(4)),
                contents: r.maybe(|r| format!("c{}", r.below(3))),
                enabled: r.maybe(|r| r.below(2) == 0),
                mask: r.maybe(|r| r.below(2) == 0),
                dropins,
            });
        }
        for _ in 0..r.below(3) {
            c.users.push(User {
                name: format!("user{}", r.below(3)),
                ssh_authorized_keys: (0..r.below(4))
                    .map(|_| format!("k{}", r.below(4)))
                    .collect(),
                password_hash: r.maybe(|r| format!("h{}", r.below(3))),
                other_fields: [(format!("f{}", r.below(2)), serde_json::json!(r.below(3)))].into(),
            });
        }
        for _ in 0..r.below(3) {
            c.groups.push(Group {
                name: format!("g{}", r.below(3)),
                fields: [(format!("f{}", r.below(2)), serde_json::json!(r.below(3)))].into(),
            });
        }
        c
    }

    #[test]
    fn keyed_merge_is_the_list_merge() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5_000 {
            // The first config may hold duplicate keys (a hand-built one can): the merge must
            // find the first and remove them all.
            let configs: Vec<Config> = (0..1 + r.below(5)).map(|_| random_config(&mut r)).collect();
            let mut want = configs[0].clone();
            for c in &configs[1..] {
                reference_merge(&mut want, c);
            }
            let mut m = Merger::new(&configs[0]);
            for c in &configs[1..] {
                m.merge(c);
            }
            assert_eq!(m.finish(), want, "{configs:#?}");
            // And the one-pair entry point.
            if configs.len() > 1 {
                let mut one = configs[0].clone();
                merge_config(&mut one, &configs[1]);
                let mut want = configs[0].clone();
                reference_merge(&mut want, &configs[1]);
                assert_eq!(one, want);
            }
        }
    }
}
