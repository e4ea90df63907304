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

/// Every path reported until a second passes with nothing new.
async fn drain(w: &mut PathWatcher) -> Vec<(Topic, PathBuf)> {
    let mut all = Vec::new();
    while let Some(c) = next(w).await {
        all.extend(c.paths);
    }
    all
}

#[test]
fn re_adding_a_path_watches_it_once() {
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        fs::write(&f, "a").unwrap();
        let mut w = PathWatcher::new().unwrap();
        w.watch_file(&f, Topic::Managed).unwrap();
        w.watch_file(&f, Topic::Managed).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w.watched_dirs(), 1);
        // Re-added under another topic: reported under that one only.
        w.watch_file(&f, Topic::Force).unwrap();
        assert_eq!(w.len(), 1);
        fs::write(&f, "b").unwrap();
        assert_eq!(drain(&mut w).await, vec![(Topic::Force, f.clone())]);
        w.forget(Topic::Force);
        assert!(w.is_empty());
        assert_eq!(w.watched_dirs(), 0);
    });
}

#[test]
fn a_file_under_a_created_ancestor_is_reported_at_each_step() {
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let f = a.join("b/f");
        let mut w = PathWatcher::new().unwrap();
        w.watch_file(&f, Topic::Managed).unwrap();
        assert_eq!((w.len(), w.watched_dirs()), (1, 1));

        fs::create_dir(&a).unwrap();
        assert!(
            wait_for(&mut w, Topic::Managed, &f).await,
            "ancestor created"
        );
        fs::create_dir(a.join("b")).unwrap();
        assert!(wait_for(&mut w, Topic::Managed, &f).await, "parent created");
        // The watch moved down to the parent; the directories above are unwatched.
        assert_eq!((w.len(), w.watched_dirs()), (1, 1));

        fs::write(&f, "x").unwrap();
        assert!(wait_for(&mut w, Topic::Managed, &f).await, "file written");
        fs::remove_dir_all(&a).unwrap();
        assert!(
            wait_for(&mut w, Topic::Managed, &f).await,
            "ancestor removed"
        );
        drain(&mut w).await;
        assert_eq!((w.len(), w.watched_dirs()), (1, 1));
    });
}

#[test]
fn a_missing_tree_is_reported_when_created_then_watched_itself() {
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let desired = tmp.path().join("desired.d");
        let mut w = PathWatcher::new().unwrap();
        w.watch_tree(&desired, Topic::Desired).unwrap();
        fs::create_dir(&desired).unwrap();
        assert!(
            wait_for(&mut w, Topic::Desired, &desired).await,
            "tree created"
        );
        drain(&mut w).await;
        fs::write(desired.join("50-x.yaml"), "x").unwrap();
        assert!(
            wait_for(&mut w, Topic::Desired, &desired).await,
            "tree entry"
        );
        assert_eq!((w.len(), w.watched_dirs()), (1, 1));
    });
}

#[test]
fn forgetting_a_topic_keeps_another_topics_path_in_the_same_directory() {
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("managed");
        let f = tmp.path().join("force");
        let deep = tmp.path().join("missing/managed");
        fs::write(&m, "a").unwrap();
        let mut w = PathWatcher::new().unwrap();
        w.watch_file(&m, Topic::Managed).unwrap();
        w.watch_file(&deep, Topic::Managed).unwrap();
        w.watch_file(&f, Topic::Force).unwrap();
        assert_eq!((w.len(), w.watched_dirs()), (3, 1));

        w.forget(Topic::Managed);
        assert_eq!((w.len(), w.watched_dirs()), (1, 1));
        fs::write(&m, "b").unwrap();
        fs::create_dir(tmp.path().join("missing")).unwrap();
        fs::write(&f, "").unwrap();
        assert_eq!(drain(&mut w).await, vec![(Topic::Force, f.clone())]);
    });
}

#[test]
fn one_change_among_many_files_of_a_directory_reports_exactly_that_path() {
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..2000)
            .map(|i| tmp.path().join(format!("f{i:04}.conf")))
            .collect();
        let mut w = PathWatcher::new().unwrap();
        for f in &files {
            fs::write(f, "a").unwrap();
            w.watch_file(f, Topic::Managed).unwrap();
        }
        drain(&mut w).await;
        assert_eq!((w.len(), w.watched_dirs()), (2000, 1));
        fs::write(&files[1234], "b").unwrap();
        let mut seen = drain(&mut w).await;
        seen.dedup();
        assert_eq!(seen, vec![(Topic::Managed, files[1234].clone())]);
    });
}

#[test]
fn a_directory_watched_under_two_names_reports_under_each() {
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        let link = tmp.path().join("link");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let a = real.join("a");
        let b = link.join("b");
        let mut w = PathWatcher::new().unwrap();
        w.watch_file(&a, Topic::Managed).unwrap();
        w.watch_file(&b, Topic::Managed).unwrap();
        // One inode, one inotify watch.
        assert_eq!((w.len(), w.watched_dirs()), (2, 1));
        fs::write(&a, "x").unwrap();
        assert_eq!(drain(&mut w).await, vec![(Topic::Managed, a.clone())]);
        fs::write(real.join("b"), "x").unwrap();
        assert_eq!(drain(&mut w).await, vec![(Topic::Managed, b.clone())]);
    });
}

#[test]
fn replace_keeps_the_events_queued_for_the_paths_it_keeps() {
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("c"),
        );
        for p in [&a, &b, &c] {
            fs::write(p, "x").unwrap();
        }
        let mut w = PathWatcher::new().unwrap();
        w.replace(Topic::Managed, &[a.clone(), b.clone()]).unwrap();
        assert_eq!((w.len(), w.watched_dirs()), (2, 1));
        // Changed while nobody reads the watcher, then the set changes: `a` stays, `b` goes,
        // `c` comes.
        fs::write(&a, "changed").unwrap();
        fs::write(&b, "changed").unwrap();
        w.replace(Topic::Managed, &[a.clone(), c.clone()]).unwrap();
        assert_eq!((w.len(), w.watched_dirs()), (2, 1));
        let mut seen = std::collections::BTreeSet::new();
        while let Some(ch) = next(&mut w).await {
            seen.extend(ch.of(Topic::Managed).map(Path::to_path_buf));
        }
        assert_eq!(seen, [a.clone()].into_iter().collect());
        fs::write(&c, "changed").unwrap();
        assert!(wait_for(&mut w, Topic::Managed, &c).await, "the added path");
        w.replace(Topic::Managed, &[]).unwrap();
        assert_eq!((w.len(), w.watched_dirs()), (0, 0));
    });
}
