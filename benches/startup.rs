//! The workarounds in `src/startup.rs` against the plain path. What each
//! works around happens once per process or after an idle moment, so every
//! sample is a fresh process (sled) or follows an idle 100 ms (cgroups).
//! Delete a workaround whose pair shows no gain. On the 2-core test VM
//! (one run): sled's first open 10.8 -> 5.7 ms per process; a cgroup move
//! 10 ms after the start 16.3 -> 10.5 ms (after 3 ms: no gain, the
//! no-op's own wait is not over); `run --rm` end to end 40.5 -> 32.1 ms.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};

/// Set in the child processes this bench spawns: which open to make.
const CHILD: &str = "MOCKER_BENCH_STARTUP_CHILD";

/// In a child: open the index-like database at `path` once, as `mode` says.
fn child(mode: &str, path: &Path) {
    let config = sled::Config::new()
        .path(path)
        .flush_every_ms(None)
        .cache_capacity(16 << 20);
    let db = match mode {
        "ahead" => mocker::startup::ahead_of_sled_spinning_threads(|| config.open()),
        _ => config.open(),
    };
    db.expect("opening the bench database");
}

fn sled_first_open(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    // A database with content, as an index is, before any child opens it.
    let db = sled::open(&path).unwrap();
    for i in 0..1000u32 {
        db.insert(format!("container/{i:08}"), vec![0u8; 200]).unwrap();
    }
    db.flush().unwrap();
    drop(db);
    let exe = std::env::current_exe().unwrap();
    let mut group = c.benchmark_group("sled_first_open");
    group.sample_size(20);
    for mode in ["plain", "ahead"] {
        group.bench_function(mode, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let status = Command::new(&exe)
                        .env(CHILD, mode)
                        .env("BENCH_DB", &path)
                        .status()
                        .unwrap();
                    assert!(status.success());
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

/// A cgroup of the v1 pids hierarchy to move processes into, removed on drop.
struct Target(PathBuf);

impl Target {
    fn create() -> Option<Target> {
        let path = PathBuf::from(format!(
            "/sys/fs/cgroup/pids/mocker-bench-startup-{}",
            std::process::id()
        ));
        std::fs::create_dir(&path).ok().map(|_| Target(path))
    }

    /// Move `child` in: what the monitor does with a container's PID 1.
    fn take(&self, child: &Child) {
        std::fs::write(self.0.join("cgroup.procs"), child.id().to_string()).unwrap();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn cgroup_move_after_idle(c: &mut Criterion) {
    let Some(target) = Target::create() else {
        eprintln!("cgroup_move_after_idle: skipped (needs root and the cgroup v1 pids hierarchy)");
        return;
    };
    let mut group = c.benchmark_group("cgroup_move_after_idle");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    // The gap: the work a `run` does between its start and the move
    // (a `run --rm` here takes about 10 ms to get there).
    for (prepaid, gap_ms) in [(false, 3), (true, 3), (false, 10), (true, 10)] {
        let name = format!("{}/{gap_ms}ms", if prepaid { "prepaid" } else { "plain" });
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
                    // Idle: no cgroup move within the last grace period.
                    std::thread::sleep(Duration::from_millis(100));
                    let start = Instant::now();
                    if prepaid {
                        mocker::startup::prepay_cgroup_move_grace_period();
                    }
                    std::thread::sleep(Duration::from_millis(gap_ms));
                    target.take(&sleeper);
                    total += start.elapsed();
                    sleeper.kill().unwrap();
                    sleeper.wait().unwrap();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sled_first_open, cgroup_move_after_idle);

fn main() {
    if let Ok(mode) = std::env::var(CHILD) {
        child(&mode, Path::new(&std::env::var_os("BENCH_DB").unwrap()));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
