//! Two measured workarounds for a short-lived process's start, kept here so
//! domain code only calls them by name. `benches/startup.rs` measures each
//! against the plain path; delete one when it stops paying.

/// Run `f` (sled's first open in this process) at nice -20 with its new
/// threads reset to normal priority (SCHED_RESET_ON_FORK), then restore ours.
/// Works around: sled's I/O threads, started by that open, busy-wait on a
/// lazy static the opening thread is still initialising; on 2 cores they
/// can starve it for a whole time slice. Best effort.
pub fn ahead_of_sled_spinning_threads<T>(f: impl FnOnce() -> T) -> T {
    use nix::libc;
    // SAFETY: plain syscalls on the calling thread (who = 0), no memory
    // shared with the kernel beyond the param struct on our stack.
    unsafe {
        let policy = libc::sched_getscheduler(0);
        let nice = {
            *libc::__errno_location() = 0;
            libc::getpriority(libc::PRIO_PROCESS, 0)
        };
        let boosted = policy == libc::SCHED_OTHER
            && *libc::__errno_location() == 0
            && libc::sched_setscheduler(
                0,
                libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK,
                &libc::sched_param { sched_priority: 0 },
            ) == 0;
        if boosted {
            libc::setpriority(libc::PRIO_PROCESS, 0, -20);
        }
        let result = f();
        if boosted {
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            libc::sched_setscheduler(0, libc::SCHED_OTHER, &libc::sched_param { sched_priority: 0 });
        }
        result
    }
}

/// Begin, on a thread of its own, a no-op move of this process into the
/// cgroup it is already in (best effort).
/// Works around: on cgroup v1, a move into a cgroup waits for an RCU grace
/// period (10-20 ms) unless another move began moments before; a process
/// that will move a container into its cgroup a few ms later starts that
/// wait now, in parallel with its other work.
pub fn prepay_cgroup_move_grace_period() {
    std::thread::spawn(|| {
        if let Some(procs) = own_cgroup_procs() {
            let _ = std::fs::write(procs, std::process::id().to_string());
        }
    });
}

/// The `cgroup.procs` of this process's cgroup: in the v1 pids hierarchy if
/// there is one, else in the unified hierarchy.
fn own_cgroup_procs() -> Option<std::path::PathBuf> {
    let table = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path_of = |controllers: &str| {
        table.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, names, path) = (fields.next()?, fields.next()?, fields.next()?);
            (names == controllers).then(|| path.trim_start_matches('/').to_string())
        })
    };
    let root = std::path::Path::new("/sys/fs/cgroup");
    match (path_of("pids"), path_of("")) {
        (Some(path), _) => Some(root.join("pids").join(path).join("cgroup.procs")),
        (None, Some(path)) => Some(root.join(path).join("cgroup.procs")),
        _ => None,
    }
    // Only one that lists us: under a cgroup namespace the path could name
    // another cgroup, and the no-op would become a real move.
    .filter(|p| {
        let me = std::process::id().to_string();
        std::fs::read_to_string(p).is_ok_and(|pids| pids.lines().any(|pid| pid == me))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_is_found_and_holds_us() {
        let procs = own_cgroup_procs().expect("this process's cgroup.procs");
        let pids = std::fs::read_to_string(&procs).unwrap();
        let me = std::process::id().to_string();
        assert!(pids.lines().any(|p| p == me), "{} does not list {me}", procs.display());
    }
}
