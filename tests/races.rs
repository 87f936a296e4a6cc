//! Lifecycle races as root: a start that fails half way, and `rm -f`
//! racing a start. Each must end (no wait for ever) and leave nothing.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn pulled() -> Root {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("toolbox")]);
    root
}

/// Wait for `child` to exit within `limit`; its status, or a failure
/// naming `what` (the child is killed, so the test never hangs).
fn finishes(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn spawn(root: &Root, args: &[&str]) -> Child {
    root.command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_start_that_fails_after_the_clone_ends_and_reports() {
    let root = pulled();
    let id = root.ok(&["create", &image("toolbox"), "sleep", "300"]);
    let id = id.trim().to_string();
    // The host end of its veth is taken: plugging it in fails after PID 1
    // was cloned, and PID 1 must then see that the monitor gave up.
    let veth = format!("mk{}", &id[..12]);
    let ip = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
    assert!(ip(&["link", "add", &veth, "type", "bridge"]));
    let start = finishes(spawn(&root, &["start", &id]), Duration::from_secs(20), "start");
    ip(&["link", "del", &veth]);
    let err = String::from_utf8_lossy(&start.stderr);
    assert!(!start.status.success() && err.contains("veth"), "{err}");
    let rm = finishes(spawn(&root, &["rm", "-f", &id]), Duration::from_secs(20), "rm -f");
    assert!(rm.status.success(), "{}", String::from_utf8_lossy(&rm.stderr));
    assert!(root.containers().is_empty());
}

#[test]
fn rm_f_during_a_start_kills_what_it_started() {
    let root = pulled();
    root.ok(&["create", "--name", "racer", &image("toolbox"), "sleep", "300"]);
    let dir = root.path().join("containers");
    let id = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().file_name();
    let dir = dir.join(id);
    // The host-wide network lock held: the monitor stops in the middle of
    // its start (its root's bridge does not exist yet, so it must take it).
    std::fs::create_dir_all("/run/mocker").unwrap();
    let lock = std::fs::File::create("/run/mocker/network.lock").unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let start = spawn(&root, &["start", "racer"]);
    wait_until("the monitor to take its lock", || monitor_alive(&dir));
    let rm = spawn(&root, &["rm", "-f", "racer"]);
    // Let the start go on once the removal has begun (its mark is made first).
    wait_until("rm to mark the container", || {
        dir.join("removing").exists() || !dir.exists()
    });
    drop(held);
    let rm = finishes(rm, Duration::from_secs(40), "rm -f racing a start");
    assert!(rm.status.success(), "{}", String::from_utf8_lossy(&rm.stderr));
    finishes(start, Duration::from_secs(40), "the start rm -f raced");
    assert!(root.containers().is_empty());
    assert!(!dir.exists());
}

fn monitor_alive(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join("monitor.lock")) else {
        return false;
    };
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock).is_err()
}
