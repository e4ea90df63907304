//! Post actions (SPEC §5 step 10): several in one plan run in plan order, the first failure stops
//! the sequence, and the files are put back to the old config, byte for byte.
//!
//! systemd is a recording double here (the real one, as PID 1, is vm-tests' part: scenario
//! `27-daemon-rollback` fails a real reload); what is under test is the update flow's order,
//! stop and rollback, through the public `daemon::update::update`.

mod host_common;
use host_common::*;
use machine_config_daemon::daemon::update::{Standalone, UpdateError, UpdateInput, update};
mod recording_systemd;
use machine_config_daemon::host::{self, ApplyOptions, Root};
use machine_config_daemon::model::MachineConfig;
use machine_config_daemon::model::policy::{Action, FilePolicy, Policy, effective};
use machine_config_daemon::plan::ladder::{RebootMode, SoftRebootSupport};
use recording_systemd::Systemd;

fn config(name: &str, version: &str) -> MachineConfig {
    mc(
        name,
        vec![
            file("/etc/a.conf", &format!("a {version}\n"), 0o644),
            file("/etc/b.conf", &format!("b {version}\n"), 0o644),
            file("/etc/c.conf", &format!("c {version}\n"), 0o644),
        ],
    )
}

/// Each file has its own action: reload a.service, restart b.service, reload c.service.
fn policy() -> Policy {
    effective(&Policy {
        files: vec![
            FilePolicy {
                path: "/etc/a.conf".into(),
                actions: vec![Action::reload("a.service")],
            },
            FilePolicy {
                path: "/etc/b.conf".into(),
                actions: vec![Action::restart("b.service")],
            },
            FilePolicy {
                path: "/etc/c.conf".into(),
                actions: vec![Action::reload("c.service")],
            },
        ],
        ..Policy::default()
    })
}

/// A root on `config("rendered-worker-1", "1")`.
fn node() -> tempfile::TempDir {
    let t = make_root();
    host::update(
        &Root::open(t.path()).unwrap(),
        &config("rendered-worker-1", "1"),
        &ApplyOptions::default(),
    )
    .unwrap();
    t
}

async fn update_to_2(
    root: &std::path::Path,
    systemd: &Systemd,
) -> Result<Vec<String>, UpdateError> {
    update_to_2_from(root, systemd, config("rendered-worker-1", "1")).await
}

async fn update_to_2_from(
    root: &std::path::Path,
    systemd: &Systemd,
    old: MachineConfig,
) -> Result<Vec<String>, UpdateError> {
    update_to(
        root,
        systemd,
        old,
        config("rendered-worker-2", "2"),
        RebootMode::Full,
    )
    .await
}

async fn update_to(
    root: &std::path::Path,
    systemd: &Systemd,
    old: MachineConfig,
    new: MachineConfig,
    reboot_mode: RebootMode,
) -> Result<Vec<String>, UpdateError> {
    let input = UpdateInput {
        old: Some(old),
        new,
        policy: policy(),
        force: false,
        state_dir: None,
        os: machine_config_daemon::host::os::detect(root),
        reboot_mode,
        soft_reboot: SoftRebootSupport::Supported("systemd 254".into()),
        keep_changes: true,
    };
    update(root, input, Some(systemd), &Standalone)
        .await
        .map(|a| a.steps.iter().map(|s| s.what.clone()).collect())
}

#[tokio::test]
async fn post_actions_run_in_plan_order() {
    let t = node();
    let systemd = Systemd::new("");
    let steps = update_to_2(t.path(), &systemd).await.unwrap();
    assert_eq!(
        systemd.calls(),
        ["reload a.service", "restart b.service", "reload c.service"]
    );
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(read(t.path(), "/etc/b.conf"), "b 2\n");
}

#[tokio::test]
async fn the_first_failing_post_action_stops_the_sequence_and_the_files_are_put_back() {
    let t = node();
    let before = snapshot(t.path());
    let systemd = Systemd::new("restart b.service");
    let err = update_to_2(t.path(), &systemd).await.unwrap_err();
    // The reload of a.service ran, the restart of b.service failed, c.service was not touched.
    assert_eq!(systemd.calls(), ["reload a.service", "restart b.service"]);
    assert!(matches!(err, UpdateError::Action { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "restart b.service: injected failure; rolled back to rendered-worker-1"
    );
    let after = snapshot(t.path());
    assert_eq!(before, after, "{}", diff(&before, &after));
}

/// The daemon and `apply` read the stored config thin (each file's contents as a digest): the
/// rollback after a failed post action gets the old contents back from the update's copy of
/// the config it replaced, byte for byte, and stores the old config again.
#[tokio::test]
async fn a_rollback_from_a_thin_old_config_puts_the_old_contents_back() {
    let t = node();
    let before = snapshot(t.path());
    let root = Root::open(t.path()).unwrap();
    let (old, _) = host::state::read_current_thin(&root).unwrap().unwrap();
    assert!(old.is_thin(), "the stored config was read thin");
    assert!(old.spec.config.files.iter().all(|f| f.contents.is_none()));
    let systemd = Systemd::new("restart b.service");
    let err = update_to_2_from(t.path(), &systemd, old).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "restart b.service: injected failure; rolled back to rendered-worker-1"
    );
    let after = snapshot(t.path());
    assert_eq!(before, after, "{}", diff(&before, &after));
    let (stored, _) = host::state::read_current(&root).unwrap().unwrap();
    let want = config("rendered-worker-1", "1");
    assert_eq!(stored.name, want.name);
    assert_eq!(stored.spec.config.files, want.spec.config.files);
}

/// A thin old config plans the same update as the whole one, and the update succeeds.
#[tokio::test]
async fn an_update_from_a_thin_old_config_runs_the_same_steps() {
    let whole = node();
    let thin = node();
    let sd_whole = Systemd::new("");
    let sd_thin = Systemd::new("");
    let steps_whole = update_to_2(whole.path(), &sd_whole).await.unwrap();
    let (old, _) = host::state::read_current_thin(&Root::open(thin.path()).unwrap())
        .unwrap()
        .unwrap();
    let steps_thin = update_to_2_from(thin.path(), &sd_thin, old).await.unwrap();
    assert_eq!(steps_whole, steps_thin);
    assert_eq!(sd_whole.calls(), sd_thin.calls());
    assert_eq!(snapshot(whole.path()), snapshot(thin.path()));
}

/// A file no policy entry matches: the plan ends in a reboot, soft or full as the ladder
/// decides (`--reboot-mode`), and the update asks systemd for that kind.
#[tokio::test]
async fn the_reboot_is_the_kind_the_ladder_decided() {
    for (mode, call, step) in [
        (RebootMode::Full, "reboot", "reboot"),
        (RebootMode::Auto, "soft-reboot", "soft reboot"),
        (RebootMode::Soft, "soft-reboot", "soft reboot"),
    ] {
        let t = node();
        let systemd = Systemd::new("");
        let mut new = config("rendered-worker-2", "2");
        new.spec
            .config
            .files
            .push(file("/etc/d.conf", "d\n", 0o644));
        let steps = update_to(
            t.path(),
            &systemd,
            config("rendered-worker-1", "1"),
            new,
            mode,
        )
        .await
        .unwrap();
        assert_eq!(systemd.calls(), [call], "{mode:?}");
        assert_eq!(steps, ["drain", step], "{mode:?}");
        assert_eq!(read(t.path(), "/etc/d.conf"), "d\n");
    }
}
