//! Rendering (SPEC §2): merging the MachineConfigs of a pool into one rendered MachineConfig named
//! `rendered-<pool>-<hash>`.
//!
//! Order: by name in byte order; for a pool other than `worker`, the configs labelled for the
//! worker role come first (each group sorted), because custom pools inherit the worker configs.
//! The first config is the base and each next one is merged over it ([`merge_config`]). The name's
//! hash covers the canonical JSON of the rendered spec, so the same inputs give the same name
//! whatever order they were read in.

use super::config::{Config, Directory, File, Link, MachineConfig, MachineConfigSpec, Unit};
use super::error::RenderError;
use super::ignition::{EMIT_VERSION, machine_config_to_json};
use super::load::ROLE_LABEL;
use serde_json::{Map, Value};
use sha2::Digest as _;

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

    let mut config = ordered[0].spec.config.clone();
    for mc in &ordered[1..] {
        merge_config(&mut config, &mc.spec.config);
    }
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
pub fn rendered_name(pool: &str, mc: &MachineConfig) -> String {
    let json = machine_config_to_json(mc);
    let spec = canonical(&json["spec"]);
    let bytes = serde_json::to_vec(&spec).unwrap_or_default();
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    format!("rendered-{pool}-{}", &digest[..32])
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
pub fn merge_config(base: &mut Config, later: &Config) {
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
            Some(b) => merge_unit(b, u),
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

fn merge_unit(b: &mut Unit, u: &Unit) {
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
