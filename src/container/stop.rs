//! `stop`: docker's SIGTERM, then SIGKILL; and `rm -f`'s stop, whatever
//! the container is doing.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::error::ContainerError;
use super::host::{self, Host, Linux};
use super::lookup::get_on;
use super::paths::{dir_of, short_id_of};
use super::state::Status;
use crate::error::Result;
use crate::Mocker;

/// How long SIGKILL may take before we call the container stuck.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a start may take before its monitor is taken for stuck.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// docker's stop: SIGTERM, then SIGKILL after `timeout`.
pub fn stop(mocker: &Mocker, query: &str, timeout: Duration) -> Result<()> {
    stop_on(&Linux, mocker, query, timeout)
}

pub(super) fn stop_on(host: &dyn Host, mocker: &Mocker, query: &str, timeout: Duration) -> Result<()> {
    let container = get_on(host, mocker, query)?;
    if container.state.status != Status::Running {
        return Ok(());
    }
    let dir = dir_of(mocker, &container.record.id);
    terminate(host, &dir, container.state.pid, timeout)
}

/// The running container `id`'s PID 1 as a pidfd, if it still runs as
/// `pid` (see [`host::pid1`]); ENOSYS before Linux 5.3.
pub fn pid1(mocker: &Mocker, id: &str, pid: u32) -> std::io::Result<Option<crate::runtime::pidfd::Pidfd>> {
    host::pid1(&dir_of(mocker, id), pid)
}

/// Wait up to `timeout` for the monitor in `dir` to go; whether it went.
pub(super) fn wait_for_monitor(host: &dyn Host, dir: &Path, timeout: Duration) -> bool {
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

/// SIGTERM to PID 1, SIGKILL after `grace`; returns once the monitor has
/// recorded the exit.
pub(super) fn terminate(host: &dyn Host, dir: &Path, pid: u32, grace: Duration) -> Result<()> {
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

/// `rm -f`'s stop: a running container is killed; a start in progress is
/// waited for until the container runs (then killed) or the start fails; a
/// monitor still starting after [`START_TIMEOUT`] is killed itself.
/// Returns once no monitor is left.
pub(super) fn force_stop(host: &dyn Host, dir: &Path) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::fake::{self, FakeHost};
    use crate::container::state::State;

    #[test]
    fn stop_sends_term_and_kills_only_after_the_grace_period() {
        let dir = Path::new("/nonexistent");
        // Exits on SIGTERM: no SIGKILL.
        let host = FakeHost::with_monitor(u32::MAX, Some(Signal::SIGTERM));
        terminate(&host, dir, 1, Duration::from_secs(10)).unwrap();
        assert_eq!(*host.sent.borrow(), vec![Signal::SIGTERM]);
        assert!(host.elapsed.get() < Duration::from_secs(1));
        // Ignores SIGTERM (PID 1 without a handler): SIGKILL after 2 s.
        let host = FakeHost::with_monitor(u32::MAX, Some(Signal::SIGKILL));
        terminate(&host, dir, 1, Duration::from_secs(2)).unwrap();
        assert_eq!(*host.sent.borrow(), vec![Signal::SIGTERM, Signal::SIGKILL]);
        assert!(host.elapsed.get() >= Duration::from_secs(2));
        // -t 0 kills at once.
        let host = FakeHost::with_monitor(u32::MAX, Some(Signal::SIGKILL));
        terminate(&host, dir, 1, Duration::ZERO).unwrap();
        assert_eq!(*host.sent.borrow(), vec![Signal::SIGKILL]);
        // Survives SIGKILL: an error naming the container, not a hang.
        let host = FakeHost::with_monitor(u32::MAX, None);
        let err = terminate(&host, Path::new("/c/0123456789abcdef"), 1, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("container 0123456789ab did not stop"), "{err}");
        assert!(host.elapsed.get() >= KILL_TIMEOUT);
    }

    #[test]
    fn stop_of_a_running_container_terms_then_kills_and_leaves_others_alone() {
        let (_tmp, mocker) = fake::root_with_image();
        let id = fake::create(&mocker, &FakeHost::new()).record.id;
        // Created: nothing to signal.
        let host = FakeHost::with_monitor(0, None);
        stop_on(&host, &mocker, &id, Duration::from_secs(10)).unwrap();
        assert!(host.sent.borrow().is_empty());
        // Running, PID 1 ignores SIGTERM: SIGKILL once the 3 s are up.
        fake::mark_running(&mocker, &id, 42);
        let host = FakeHost::with_monitor(u32::MAX, Some(Signal::SIGKILL));
        stop_on(&host, &mocker, &id, Duration::from_secs(3)).unwrap();
        assert_eq!(host.calls_to("signal"), ["signal 42 SIGTERM", "signal 42 SIGKILL"]);
        assert!(host.elapsed.get() >= Duration::from_secs(3) && host.elapsed.get() < Duration::from_secs(4));
    }

    #[test]
    fn a_forced_stop_waits_for_a_start_kills_what_runs_and_never_hangs() {
        let dir = Path::new("/nonexistent");
        let running = State {
            status: Status::Running,
            pid: 42,
            ..Default::default()
        };
        // Starting for three polls, then running: killed, once it runs.
        let host = FakeHost::with_monitor(u32::MAX, Some(Signal::SIGKILL));
        *host.states.borrow_mut() = vec![running, State::default(), State::default()];
        force_stop(&host, dir).unwrap();
        assert_eq!(*host.sent.borrow(), vec![Signal::SIGKILL]);
        assert!(!host.monitor_killed.get());
        // The start fails (the monitor goes): nothing to kill.
        let host = FakeHost::with_monitor(3, None);
        force_stop(&host, dir).unwrap();
        assert!(host.sent.borrow().is_empty() && !host.monitor_killed.get());
        // A start that never ends: its monitor is killed after the bound.
        let host = FakeHost::with_monitor(u32::MAX, None);
        force_stop(&host, dir).unwrap();
        assert!(host.monitor_killed.get());
        assert!(host.elapsed.get() >= START_TIMEOUT && host.elapsed.get() < START_TIMEOUT + KILL_TIMEOUT);
    }
}
