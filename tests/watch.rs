//! The inotify path watcher against real files in a tempdir.

use machine_config_daemon::watch::{Changes, PathWatcher, Topic};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The next batch of changes, or None when nothing arrives within a second.
async fn next(w: &mut PathWatcher) -> Option<Changes> {
    match tokio::time::timeout(Duration::from_secs(1), w.next()).await {
        Ok(Some(Ok(c))) => Some(c),
        Ok(Some(Err(e))) => panic!("watch error: {e}"),
        Ok(None) => panic!("stream ended"),
        Err(_) => None,
    }
}

/// Collects batches until `want` was reported or a second passes with nothing new.
async fn wait_for(w: &mut PathWatcher, topic: Topic, want: &Path) -> bool {
    while let Some(c) = next(w).await {
        if c.of(topic).any(|p| p == want) {
            return true;
        }
    }
    false
}

fn managed(dir: &Path, rel: &str) -> PathBuf {
    dir.join(rel)
}

#[test]
fn content_change_rename_replace_chmod_and_delete_are_reported() {
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc");
        fs::create_dir(&etc).unwrap();
        let f = managed(&etc, "chrony.conf");
        fs::write(&f, "a").unwrap();
        let mut w = PathWatcher::new().unwrap();
        w.watch_file(&f, Topic::Managed).unwrap();

        fs::write(&f, "b").unwrap();
        assert!(wait_for(&mut w, Topic::Managed, &f).await, "write");

        let tmpf = etc.join(".chrony.conf.swp");
        fs::write(&tmpf, "c").unwrap();
        fs::rename(&tmpf, &f).unwrap();
        assert!(wait_for(&mut w, Topic::Managed, &f).await, "rename over");

        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(wait_for(&mut w, Topic::Managed, &f).await, "chmod");

        fs::remove_file(&f).unwrap();
        assert!(wait_for(&mut w, Topic::Managed, &f).await, "delete");
    });
}

#[test]
fn unrelated_files_in_the_same_directory_are_filtered_out() {
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("managed");
        fs::write(&f, "a").unwrap();
        let mut w = PathWatcher::new().unwrap();
        w.watch_file(&f, Topic::Managed).unwrap();
        for i in 0..20 {
            fs::write(tmp.path().join(format!("other{i}")), "x").unwrap();
        }
        while let Some(c) = next(&mut w).await {
            assert!(c.paths.is_empty(), "unexpected {:?}", c.paths);
        }
    });
}

#[test]
fn a_missing_parent_directory_is_watched_through_its_ancestor() {
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp
            .path()
            .join("etc/systemd/system/hello.service.d/10-x.conf");
        let mut w = PathWatcher::new().unwrap();
        w.watch_file(&f, Topic::Managed).unwrap();
        assert_eq!(w.watched_dirs(), 1);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        // Creating the directories moves the watch down to the parent.
        while next(&mut w).await.is_some() {}
        fs::write(&f, "[Service]\n").unwrap();
        assert!(
            wait_for(&mut w, Topic::Managed, &f).await,
            "file in new directory"
        );
    });
}

#[test]
fn a_removed_parent_directory_is_reported_and_rewatched() {
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        fs::create_dir(&d).unwrap();
        let f = d.join("f");
        fs::write(&f, "a").unwrap();
        let mut w = PathWatcher::new().unwrap();
        w.watch_file(&f, Topic::Managed).unwrap();
        fs::remove_dir_all(&d).unwrap();
        assert!(
            wait_for(&mut w, Topic::Managed, &f).await,
            "directory removed"
        );
        fs::create_dir(&d).unwrap();
        fs::write(&f, "b").unwrap();
        assert!(wait_for(&mut w, Topic::Managed, &f).await, "recreated");
    });
}

#[test]
fn tree_and_topics_are_kept_apart_and_forget_stops_reports() {
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let desired = tmp.path().join("desired.d");
        let force = tmp.path().join("run/machine-config-daemon-force");
        fs::create_dir(&desired).unwrap();
        let mut w = PathWatcher::new().unwrap();
        w.watch_tree(&desired, Topic::Desired).unwrap();
        w.watch_file(&force, Topic::Force).unwrap();

        fs::write(desired.join("50-x.yaml"), "x").unwrap();
        assert!(
            wait_for(&mut w, Topic::Desired, &desired).await,
            "tree entry"
        );

        fs::create_dir(tmp.path().join("run")).unwrap();
        while next(&mut w).await.is_some() {}
        fs::write(&force, "").unwrap();
        assert!(wait_for(&mut w, Topic::Force, &force).await, "force file");

        w.forget(Topic::Desired);
        fs::write(desired.join("60-y.yaml"), "y").unwrap();
        while let Some(c) = next(&mut w).await {
            assert!(
                !c.touches(Topic::Desired),
                "forgotten topic reported: {:?}",
                c.paths
            );
        }
    });
}
