//! What the lifecycle asks of the host — is the monitor alive, signal a
//! process, kill what is left in a cgroup, wait a little — behind a small
//! trait (as youki puts its syscalls), so the stop and recovery logic has
//! unit tests without root or real processes.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::error::ContainerError;
use super::paths::short_id_of;
use super::state::{State, Status};
use crate::error::{Error, Result};
use crate::runtime::cgroup::ContainerCgroup;
use crate::runtime::pidfd::Pidfd;

pub trait Host {
    /// Whether the container's monitor lives (holds `monitor.lock` in `dir`).
    fn monitor_alive(&self, dir: &Path) -> bool;
    /// Signal the container in `dir` whose PID 1 is `pid`; one that is
    /// already gone is not an error.
    fn signal(&self, dir: &Path, pid: u32, signal: Signal) -> Result<()>;
    /// SIGKILL whatever is left in the container's cgroup and remove it.
    fn clear_cgroup(&self, id: &str);
    /// The container's recorded state.
    fn state(&self, dir: &Path) -> State;
    /// SIGKILL the container's monitor itself (its PID 1 dies with it).
    fn kill_monitor(&self, dir: &Path);
    fn pause(&self, d: Duration);
    fn now(&self) -> Instant;
}

/// The real host.
pub struct Linux;

impl Host for Linux {
    fn monitor_alive(&self, dir: &Path) -> bool {
        let Ok(file) = std::fs::File::open(super::monitor::lock_path(dir)) else {
            return false;
        };
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
            Ok(_) => false,
            Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
        }
    }

    /// Through a pidfd (see [`pid1`]); by pid where there are none.
    fn signal(&self, dir: &Path, pid: u32, signal: Signal) -> Result<()> {
        let failed = |source: std::io::Error| -> Error {
            ContainerError::Signal {
                id: short_id_of(dir),
                signal,
                source,
            }
            .into()
        };
        match pid1(dir, pid) {
            Ok(Some(target)) => match target.signal(signal) {
                Err(e) if e.raw_os_error() != Some(nix::libc::ESRCH) => Err(failed(e)),
                _ => Ok(()),
            },
            Ok(None) => Ok(()),
            // No pidfds: before Linux 5.3, or refused by a seccomp filter.
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::ENOSYS | nix::libc::EPERM)) => {
                match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
                    Err(e) => Err(failed(e.into())),
                }
            }
            Err(e) => Err(failed(e)),
        }
    }

    fn clear_cgroup(&self, id: &str) {
        if let Some(cgroup) = ContainerCgroup::load(id) {
            cgroup.kill_all();
            let _ = cgroup.remove();
        }
    }

    fn state(&self, dir: &Path) -> State {
        State::load(&dir.join("state.json")).unwrap_or_default()
    }

    /// Through a pidfd opened before checking that the pid in the lock file
    /// is still the lock's holder's.
    fn kill_monitor(&self, dir: &Path) {
        let Some(pid) = super::monitor::monitor_pid(dir) else {
            return;
        };
        if let Ok(target) = Pidfd::open(pid) {
            if self.monitor_alive(dir) && super::monitor::monitor_pid(dir) == Some(pid) {
                let _ = target.signal(Signal::SIGKILL);
            }
        }
    }

    fn pause(&self, d: Duration) {
        std::thread::sleep(d);
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// PID 1 of the container in `dir` as a pidfd, if it still runs as `pid`.
/// The pidfd is opened before that is checked: the monitor, the only
/// process that reaps PID 1, records the exit before reaping, so "running"
/// read after the open, with the monitor alive, means the pidfd names PID 1
/// and not a process that got its pid since. ENOSYS before Linux 5.3.
pub fn pid1(dir: &Path, pid: u32) -> std::io::Result<Option<Pidfd>> {
    let target = match Pidfd::open(pid) {
        Ok(target) => target,
        Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => return Ok(None),
        Err(e) => return Err(e),
    };
    let state = State::load(&dir.join("state.json")).unwrap_or_default();
    let current = Linux.monitor_alive(dir) && state.status == Status::Running && state.pid == pid;
    Ok(current.then_some(target))
}

/// Wait up to `timeout` for the monitor in `dir` to go; whether it went.
pub fn wait_for_monitor(host: &impl Host, dir: &Path, timeout: Duration) -> bool {
    let deadline = host.now() + timeout;
    loop {
        if !host.monitor_alive(dir) {
            return true;
        }
        if host.now() >= deadline {
            return false;
        }
        host.pause(Duration::from_millis(10));
    }
}

/// How long SIGKILL may take before we call the container stuck.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(30);

/// docker's stop: SIGTERM to PID 1, SIGKILL after `grace`; returns once the
/// monitor has recorded the exit.
pub fn terminate(host: &impl Host, dir: &Path, pid: u32, grace: Duration) -> Result<()> {
    if !grace.is_zero() {
        host.signal(dir, pid, Signal::SIGTERM)?;
        if wait_for_monitor(host, dir, grace) {
            return Ok(());
        }
    }
    host.signal(dir, pid, Signal::SIGKILL)?;
    if wait_for_monitor(host, dir, KILL_TIMEOUT) {
        Ok(())
    } else {
        Err(ContainerError::DidNotStop {
            id: short_id_of(dir),
            waited_secs: KILL_TIMEOUT.as_secs(),
        }
        .into())
    }
}

/// How long a start may take before its monitor is taken for stuck.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `rm -f`'s stop, whatever the container is doing: a running one is
/// killed; a start in progress is waited for until the container runs
/// (then killed) or the start fails; a monitor still starting after
/// [`START_TIMEOUT`] is killed itself. Returns once no monitor is left.
pub fn force_stop(host: &impl Host, dir: &Path) -> Result<()> {
    let deadline = host.now() + START_TIMEOUT;
    loop {
        if !host.monitor_alive(dir) {
            return Ok(());
        }
        let state = host.state(dir);
        if state.status == Status::Running && state.pid != 0 {
            return terminate(host, dir, state.pid, Duration::ZERO);
        }
        if host.now() >= deadline {
            host.kill_monitor(dir);
            return match wait_for_monitor(host, dir, KILL_TIMEOUT) {
                true => Ok(()),
                false => Err(ContainerError::MonitorSurvived {
                    id: short_id_of(dir),
                    waited_secs: KILL_TIMEOUT.as_secs(),
                }
                .into()),
            };
        }
        host.pause(Duration::from_millis(10));
    }
}

/// The state as it really is: "running" with its monitor gone means the
/// container died with it; whatever is left of it is killed and the
/// correction saved.
pub fn settle(host: &impl Host, id: &str, dir: &Path, state: State) -> Result<State> {
    match state.settled(host.monitor_alive(dir), &super::state::now()) {
        None => Ok(state),
        Some(settled) => {
            host.clear_cgroup(id);
            settled.save(&dir.join("state.json"))?;
            Ok(settled)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::state::Status;
    use std::cell::{Cell, RefCell};

    /// A monitor that exits after a number of polls, or once a given signal
    /// arrives; a clock that advances with each pause.
    struct Fake {
        polls_left: Cell<u32>,
        dies_on: Option<Signal>,
        sent: RefCell<Vec<Signal>>,
        cleared: RefCell<Vec<String>>,
        /// States to report, last first; then the default (created).
        states: RefCell<Vec<State>>,
        monitor_killed: Cell<bool>,
        start: Instant,
        elapsed: Cell<Duration>,
    }

    impl Fake {
        fn new(polls_left: u32, dies_on: Option<Signal>) -> Fake {
            Fake {
                polls_left: Cell::new(polls_left),
                dies_on,
                sent: RefCell::default(),
                cleared: RefCell::default(),
                states: RefCell::default(),
                monitor_killed: Cell::new(false),
                start: Instant::now(),
                elapsed: Cell::new(Duration::ZERO),
            }
        }
    }

    impl Host for Fake {
        fn monitor_alive(&self, _: &Path) -> bool {
            if self.monitor_killed.get() || self.sent.borrow().iter().any(|s| Some(*s) == self.dies_on) {
                return false;
            }
            let left = self.polls_left.get();
            self.polls_left.set(left.saturating_sub(1));
            left > 0
        }
        fn signal(&self, _: &Path, _: u32, signal: Signal) -> Result<()> {
            self.sent.borrow_mut().push(signal);
            Ok(())
        }
        fn clear_cgroup(&self, id: &str) {
            self.cleared.borrow_mut().push(id.to_string());
        }
        fn state(&self, _: &Path) -> State {
            self.states.borrow_mut().pop().unwrap_or_default()
        }
        fn kill_monitor(&self, _: &Path) {
            self.monitor_killed.set(true);
        }
        fn pause(&self, d: Duration) {
            self.elapsed.set(self.elapsed.get() + d);
        }
        fn now(&self) -> Instant {
            self.start + self.elapsed.get()
        }
    }

    #[test]
    fn stop_sends_term_and_kills_only_after_the_grace_period() {
        let dir = Path::new("/nonexistent");
        // Exits on SIGTERM: no SIGKILL.
        let host = Fake::new(u32::MAX, Some(Signal::SIGTERM));
        terminate(&host, dir, 1, Duration::from_secs(10)).unwrap();
        assert_eq!(*host.sent.borrow(), vec![Signal::SIGTERM]);
        assert!(host.elapsed.get() < Duration::from_secs(1));
        // Ignores SIGTERM (PID 1 without a handler): SIGKILL after 2 s.
        let host = Fake::new(u32::MAX, Some(Signal::SIGKILL));
        terminate(&host, dir, 1, Duration::from_secs(2)).unwrap();
        assert_eq!(*host.sent.borrow(), vec![Signal::SIGTERM, Signal::SIGKILL]);
        assert!(host.elapsed.get() >= Duration::from_secs(2));
        // -t 0 kills at once.
        let host = Fake::new(u32::MAX, Some(Signal::SIGKILL));
        terminate(&host, dir, 1, Duration::ZERO).unwrap();
        assert_eq!(*host.sent.borrow(), vec![Signal::SIGKILL]);
        // Survives SIGKILL: an error, not a hang.
        let host = Fake::new(u32::MAX, None);
        assert!(terminate(&host, dir, 1, Duration::from_secs(1)).is_err());
        assert!(host.elapsed.get() >= KILL_TIMEOUT);
    }

    #[test]
    fn a_dead_monitor_settles_the_state_and_clears_the_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let running = State {
            status: Status::Running,
            pid: 10,
            monitor_pid: 9,
            ..Default::default()
        };
        let host = Fake::new(1, None);
        // Monitor alive: nothing changes, nothing is killed.
        assert_eq!(settle(&host, "c1", dir.path(), running.clone()).unwrap(), running);
        assert!(host.cleared.borrow().is_empty());
        // Monitor gone: exited 137, cgroup cleared, saved for everyone.
        let settled = settle(&host, "c1", dir.path(), running).unwrap();
        assert_eq!((settled.status, settled.exit_code), (Status::Exited, 137));
        assert_eq!(*host.cleared.borrow(), vec!["c1".to_string()]);
        assert_eq!(State::load(&dir.path().join("state.json")).unwrap(), settled);
    }

    #[test]
    fn a_forced_removal_waits_for_a_start_kills_what_runs_and_never_hangs() {
        let dir = Path::new("/nonexistent");
        let running = State {
            status: Status::Running,
            pid: 42,
            ..Default::default()
        };
        // Starting for three polls, then running: killed, once it runs.
        let host = Fake::new(u32::MAX, Some(Signal::SIGKILL));
        *host.states.borrow_mut() = vec![running, State::default(), State::default()];
        force_stop(&host, dir).unwrap();
        assert_eq!(*host.sent.borrow(), vec![Signal::SIGKILL]);
        assert!(!host.monitor_killed.get());
        // The start fails (the monitor goes): nothing to kill.
        let host = Fake::new(3, None);
        force_stop(&host, dir).unwrap();
        assert!(host.sent.borrow().is_empty() && !host.monitor_killed.get());
        // A start that never ends: its monitor is killed after the bound.
        let host = Fake::new(u32::MAX, None);
        force_stop(&host, dir).unwrap();
        assert!(host.monitor_killed.get());
        assert!(host.elapsed.get() >= START_TIMEOUT && host.elapsed.get() < START_TIMEOUT + KILL_TIMEOUT);
    }
}
