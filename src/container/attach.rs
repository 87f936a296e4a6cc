//! Starts as `run` and `start -a` make them: attached (the user's terminal
//! raw for `-it`, signals proxied to PID 1 or window sizes to the monitor,
//! output streamed until the exit) or detached, and what a failed start
//! leaves behind.

use std::io::IsTerminal;

use nix::sys::signal::Signal;

use super::lookup::Container;
use super::monitor::Attach;
use super::remove::remove;
use super::start::{start_container, Started};
use super::stop::pid1;
use super::wait::wait_attached;
use crate::error::{Error, Result};
use crate::runtime::{pidfd::Pidfd, signals};
use crate::Mocker;

/// What a failed start leaves: `run` removes the container it created (as
/// docker, it leaves nothing), `start` keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailedStart {
    Remove,
    Keep,
}

/// How an attached start ended.
#[derive(Debug)]
pub enum Attached {
    /// It did not start (nothing of the image ran).
    NotStarted(Error),
    /// It ran; this is its exit code.
    Exited(i32),
    /// It ran, but its end could not be learnt.
    Lost(Error),
}

/// docker's sig-proxy signals.
const PROXIED: [Signal; 6] = {
    use Signal::*;
    [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2]
};

/// Start detached; a failed start is undone as `on_failure` says.
pub fn start_detached(mocker: &Mocker, container: &Container, on_failure: OnFailedStart) -> Result<Started> {
    start_container(mocker, container, Attach::default()).inspect_err(|_| undo(mocker, container, on_failure))
}

/// Start attached: stream output (and stdin, with `stdin`) until the
/// container exits.
pub fn start_attached(
    mocker: &Mocker,
    container: Container,
    stdin: bool,
    tty: bool,
    on_failure: OnFailedStart,
) -> Attached {
    let _raw = RawTerminal::enter(tty && stdin);
    if !tty {
        // Held from before the start: the container may be signalled as
        // soon as it runs, before we know its PID 1.
        signals::hold(&PROXIED);
    }
    let started = match start_container(mocker, &container, Attach { output: true, stdin }) {
        Ok(started) => started,
        Err(e) => {
            undo(mocker, &container, on_failure);
            return Attached::NotStarted(e);
        }
    };
    if tty {
        forward_resizes(&started);
    } else {
        proxy_signals(mocker, &container.record.id, started.pid);
    }
    match wait_attached(mocker, container, started) {
        Ok(code) => Attached::Exited(code),
        Err(e) => Attached::Lost(e),
    }
}

fn undo(mocker: &Mocker, container: &Container, on_failure: OnFailedStart) {
    if on_failure == OnFailedStart::Remove {
        let _ = remove(mocker, &container.record.id, true);
    }
}

/// Forward the signals a terminal or `kill` sends us to the container's
/// PID 1 while we wait for it: through a pidfd, so never to a process that
/// gets its pid after it exits.
fn proxy_signals(mocker: &Mocker, id: &str, pid: u32) {
    match pid1(mocker, id, pid) {
        Ok(Some(target)) => signals::forward_to_process(target, &PROXIED),
        // Already gone: nothing to forward to.
        Ok(None) => {}
        // No pidfds (before Linux 5.3): by pid.
        Err(_) => signals::forward_to(pid as i32, &PROXIED),
    }
}

/// The monitor, in a session of its own, resizes the container's terminal
/// when ours is (through a pidfd: we reap it before we exit); one resize
/// now covers any made before the forwarding began.
fn forward_resizes(started: &Started) {
    let Some(monitor) = &started.monitor else {
        return;
    };
    if let Ok(target) = Pidfd::open(monitor.id()) {
        signals::forward_to_process(target, &[Signal::SIGWINCH]);
        // Our child, not yet reaped: its pid is still its own.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor.id() as i32), Signal::SIGWINCH);
    }
}

/// The user's terminal in raw mode for `-it`, restored on drop.
pub struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    pub fn enter(wanted: bool) -> RawTerminal {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        if !wanted || !stdin.is_terminal() {
            return RawTerminal(None);
        }
        let Ok(saved) = tcgetattr(&stdin) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, saved);
        }
    }
}
