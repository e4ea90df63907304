//! The fuzz targets, as plain functions of the input bytes (each binary in `src/bin` runs one
//! under AFL++). A target panics only on a finding: a panic inside the library, or a property
//! that must hold whatever the input (stated at each target).

use machine_config_daemon::model::ignition::{data_url, decode_data_url, decode_source};
use machine_config_daemon::model::policy::{Policy, effective, parse_machine_configuration};
use machine_config_daemon::model::render::render;
use machine_config_daemon::model::{MachineConfig, machine_config_to_json, parse_machine_configs};
use machine_config_daemon::plan::os::{Booted, HostKind};
use machine_config_daemon::plan::{PlanOptions, plan, registries};

/// The MachineConfig loader (a YAML or JSON stream of MachineConfigs, a List, or a bare Ignition
/// config). Whatever it accepts must render, and a rendered config must load back as itself
/// (the daemon stores it and reads it back).
pub fn load(data: &[u8]) {
    let Ok(loaded) = parse_machine_configs(data, "fuzz") else {
        return;
    };
    let Ok(rendered) = render("worker", &loaded.configs) else {
        return;
    };
    let json = serde_json::to_vec(&machine_config_to_json(&rendered)).expect("serialises");
    let back = parse_machine_configs(&json, "rendered").expect("a rendered config loads");
    assert_eq!(
        back.configs,
        vec![rendered],
        "a rendered config round-trips"
    );
}

/// The policy parser and validator (a MachineConfiguration document); an accepted policy must
/// give an effective policy.
pub fn policy(data: &[u8]) {
    if let Ok(mc) = parse_machine_configuration(data, "fuzz") {
        let _ = mc.effective_policy();
    }
}

/// The registries.conf analysis. Input: one flag byte (bit 0: an old file exists, bit 1: a new
/// one does), then the old file, a NUL byte, the new file. The verdict must not depend on
/// anything but the input (the analysis is pure).
pub fn registries(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (old, new) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let old = (flags & 1 != 0).then_some(old);
    let new = (flags & 2 != 0).then_some(new);
    let verdict = registries::analyze(old, new);
    assert_eq!(
        registries::analyze(old, new),
        verdict,
        "same input, same verdict"
    );
}

/// Data URL decoding: any string as a file's `contents.source`; and any bytes, encoded as the
/// project emits them, must decode back to themselves.
pub fn data_url_decoding(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = decode_source(s);
    }
    let url = data_url(data);
    assert_eq!(decode_data_url(&url).as_deref(), Ok(data), "{url}");
}

/// Plan between two fuzzed configs (the first two MachineConfigs of the input stream; one
/// config is planned against itself), under the default policy or a policy with user entries,
/// for a kind of host the input picks (its length modulo 3: coverage guidance reaches all
/// three, and an execution costs a third of planning for each); the OS half also against a
/// booted state taken from the old config.
/// A config planned against itself must change nothing.
pub fn plan_two(data: &[u8]) {
    let Ok(loaded) = parse_machine_configs(data, "fuzz") else {
        return;
    };
    let mut configs = loaded.configs.into_iter();
    let Some(old) = configs.next() else { return };
    let new = configs.next().unwrap_or_else(|| old.clone());
    let policy = user_policy(data.len());
    let hosts = hosts();
    let host = &hosts[data.len() % hosts.len()];
    let opts = PlanOptions {
        force: data.len() % 7 == 0,
        host: Some(host.clone()),
    };
    let _ = plan(&old, &new, policy, &opts);
    let same = plan(
        &new,
        &new,
        policy,
        &PlanOptions {
            force: false,
            ..opts
        },
    );
    assert!(
        same.changes.is_empty(),
        "a config against itself: {:?}",
        same.changes
    );
    let booted = booted_from(&old);
    let _ = machine_config_daemon::plan::os::plan(Some(&old), &new, host, &booted);
    let _ = machine_config_daemon::plan::os::plan(None, &new, host, &Booted::default());
}

fn hosts() -> [HostKind; 3] {
    [
        HostKind::RpmOstree,
        HostKind::Grubby,
        HostKind::KernelCmdline {
            kernel_install: true,
            kernels: vec![(
                "5.14.0-1.el9.x86_64".into(),
                "/boot/vmlinuz-5.14.0-1.el9.x86_64".into(),
            )],
        },
    ]
}

fn booted_from(mc: &MachineConfig) -> Booted {
    Booted {
        cmdline: Some(mc.spec.kernel_arguments.clone()),
        kernel_release: Some(match mc.spec.kernel_type.as_deref() {
            Some("realtime") => "5.14.0-1.el9.x86_64+rt".into(),
            _ => "5.14.0-1.el9.x86_64".into(),
        }),
        image: Some(mc.spec.os_image_url.clone()),
        packages: Some(mc.spec.extensions.clone()),
    }
}

/// The defaults, or (for odd lengths) the defaults with the user entries of the policy example.
/// Both are made once per process (the `policy` target fuzzes their parsing): the plan target
/// spends its executions on planning.
fn user_policy(len: usize) -> &'static Policy {
    static POLICIES: std::sync::OnceLock<[Policy; 2]> = std::sync::OnceLock::new();
    let [default, user] = POLICIES.get_or_init(|| {
        let doc = include_bytes!("../../examples/policies/files.yaml");
        let user = parse_machine_configuration(doc, "files.yaml")
            .expect("the example policy is valid")
            .effective_policy();
        [effective(&Policy::default()), user]
    });
    if len % 2 == 0 { default } else { user }
}
