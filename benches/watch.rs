//! Memory of the inotify path watcher (`cargo bench --bench watch`): 10,000 files in 100
//! directories under a tempdir, all watched with `watch_file(_, Topic::Managed)` as the daemon's
//! drift monitor does. A counting global allocator (wrapping the system allocator) tracks live
//! heap bytes and live allocations; the figures printed are the differences attributable to the
//! watcher: its fixed cost (`PathWatcher::new`), then what watching the paths added, per path.
//! The paths are built before measuring, so only the watcher's own copies count. `BENCH_DIR`
//! picks the directory the tempdir is made in (default `/var/tmp`).

use machine_config_daemon::watch::{PathWatcher, Topic};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicIsize, Ordering};

const DIRS: usize = 100;
const FILES: usize = 10_000;

/// The system allocator, counting live bytes and live allocations.
struct Counting;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live heap bytes and live allocations.
fn live() -> (isize, isize) {
    (
        BYTES.load(Ordering::Relaxed),
        ALLOCS.load(Ordering::Relaxed),
    )
}

fn main() {
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let paths: Vec<PathBuf> = (0..FILES)
        .map(|i| {
            dir.path()
                .join(format!("etc/bench/d{:03}/f{i:05}.conf", i % DIRS))
        })
        .collect();
    for p in &paths {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "x").unwrap();
    }
    // The event stream registers with the runtime's reactor: build and enter it first.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();

    let (b0, a0) = live();
    let mut w = PathWatcher::new().expect("inotify");
    let (b1, a1) = live();
    for p in &paths {
        w.watch_file(p, Topic::Managed).expect("watch");
    }
    let (b2, a2) = live();
    assert_eq!(w.len(), FILES);
    assert_eq!(w.watched_dirs(), DIRS);

    println!(
        "watcher fixed cost (new): {} bytes in {} allocations",
        b1 - b0,
        a1 - a0
    );
    println!(
        "{FILES} paths in {DIRS} directories: {} bytes in {} allocations \
         ({:.1} bytes and {:.2} allocations per path)",
        b2 - b1,
        a2 - a1,
        (b2 - b1) as f64 / FILES as f64,
        (a2 - a1) as f64 / FILES as f64
    );
    println!(
        "total live heap of the watcher: {} bytes ({:.1} KiB)",
        b2 - b0,
        (b2 - b0) as f64 / 1024.0
    );

    w.forget(Topic::Managed);
    let (b3, a3) = live();
    println!(
        "after forget: {} bytes in {} allocations above the fixed cost",
        b3 - b1,
        a3 - a1
    );
}
