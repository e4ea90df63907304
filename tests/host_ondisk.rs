//! On-disk validation: exact messages, one path and the whole config.

mod host_common;
use host_common::*;
use machine_config_daemon::host::owners::Owners;
use machine_config_daemon::host::{self, ApplyOptions, Manifest, Root};
use machine_config_daemon::model::Unit;
use std::os::unix::fs::PermissionsExt;

fn setup() -> (tempfile::TempDir, Manifest) {
    let t = make_root();
    let m = with_units(
        mc(
            "a",
            vec![
                file("/etc/x", "hello\n", 0o644),
                file("/etc/y", "y\n", 0o600),
            ],
        ),
        vec![Unit {
            name: "bad.service".into(),
            mask: Some(true),
            ..Unit::default()
        }],
    );
    let root = Root::open(t.path()).unwrap();
    host::update(&root, &m, &ApplyOptions::default()).unwrap();
    let man = Manifest::build(&m, &Owners::load(&root).unwrap()).unwrap();
    (t, man)
}

#[test]
fn clean_node_validates() {
    let (t, man) = setup();
    let root = Root::open(t.path()).unwrap();
    man.check_all(&root).unwrap();
    man.check_path(&root, "/etc/x").unwrap();
    man.check_path(&root, "/etc/unmanaged").unwrap();
}

#[test]
fn content_mismatch() {
    let (t, man) = setup();
    std::fs::write(t.path().join("etc/x"), "hellO\n").unwrap();
    let root = Root::open(t.path()).unwrap();
    let e = man.check_path(&root, "/etc/x").unwrap_err();
    assert_eq!(e.to_string(), "content mismatch for file \"/etc/x\"");
    assert_eq!(man.check_all(&root).unwrap_err(), e);
}

#[test]
fn mode_mismatch_message_is_exact() {
    let (t, man) = setup();
    std::fs::set_permissions(
        t.path().join("etc/x"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let root = Root::open(t.path()).unwrap();
    assert_eq!(
        man.check_path(&root, "/etc/x").unwrap_err().to_string(),
        "mode mismatch for file: \"/etc/x\"; expected: -rw-r--r--/420/0644; received: -rwxr-xr-x/493/0755"
    );
}

#[test]
fn a_symlink_where_a_file_should_be() {
    let (t, man) = setup();
    std::fs::remove_file(t.path().join("etc/x")).unwrap();
    std::fs::write(t.path().join("etc/x.real"), "hello\n").unwrap();
    std::os::unix::fs::symlink("x.real", t.path().join("etc/x")).unwrap();
    let root = Root::open(t.path()).unwrap();
    assert_eq!(
        man.check_path(&root, "/etc/x").unwrap_err().to_string(),
        "mode mismatch for file: \"/etc/x\"; expected: -rw-r--r--/420/0644; received: Lrwxrwxrwx/134218239/01000000777"
    );
}

#[test]
fn missing_file() {
    let (t, man) = setup();
    std::fs::remove_file(t.path().join("etc/y")).unwrap();
    let root = Root::open(t.path()).unwrap();
    assert_eq!(
        man.check_path(&root, "/etc/y").unwrap_err().to_string(),
        "could not stat file \"/etc/y\": No such file or directory (os error 2)"
    );
}

#[test]
fn touch_is_not_a_mismatch() {
    let (t, man) = setup();
    let f = std::fs::File::options()
        .write(true)
        .open(t.path().join("etc/x"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    man.check_all(&Root::open(t.path()).unwrap()).unwrap();
}

#[test]
fn unmasked_unit_is_a_mismatch() {
    let (t, man) = setup();
    let p = t.path().join("etc/systemd/system/bad.service");
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, "[Unit]\n").unwrap();
    let root = Root::open(t.path()).unwrap();
    assert_eq!(
        man.check_path(&root, "/etc/systemd/system/bad.service")
            .unwrap_err()
            .to_string(),
        "unit file \"/etc/systemd/system/bad.service\" is expected to be masked (a link to /dev/null) but is not"
    );
}

#[test]
fn go_mode_strings() {
    use machine_config_daemon::host::ondisk::go_mode;
    assert_eq!(go_mode(0o100644), "-rw-r--r--/420/0644");
    assert_eq!(go_mode(0o040755), "drwxr-xr-x/2147484141/020000000755");
    assert_eq!(go_mode(0o104755), "urwxr-xr-x/8389101/040000755");
}
