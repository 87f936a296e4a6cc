//! Forwarding signals to another process from a handler: the `--init`
//! reaper forwards every signal to the command, and an attached `run`
//! forwards the terminal's and `kill`'s to the container (docker's
//! sig-proxy). A handler (not a blocked mask and sigwait) because a process
//! may already have threads that would otherwise take the signal and die.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::pidfd::Pidfd;

/// Where the handler sends what it receives: a pidfd (kept for the rest of
/// the process; `get` is one atomic load), else a pid.
static TARGET_PIDFD: OnceLock<Pidfd> = OnceLock::new();
static TARGET: AtomicI32 = AtomicI32::new(0);
/// Signals received before there was a target (a bit per number).
static PENDING: AtomicU64 = AtomicU64::new(0);

extern "C" fn forward(signal: nix::libc::c_int) {
    // The interrupted code may be about to read errno.
    let errno = nix::errno::Errno::last_raw();
    if !send(signal) {
        PENDING.fetch_or(1 << (signal as u64 % 64), Ordering::SeqCst);
    }
    nix::errno::Errno::set_raw(errno);
}

/// Send `signal` to the target, if there is one yet.
fn send(signal: nix::libc::c_int) -> bool {
    let Ok(signal) = Signal::try_from(signal) else {
        // Not one `handle` installs: nothing to forward.
        return true;
    };
    let pid = TARGET.load(Ordering::SeqCst);
    if let Some(pidfd) = TARGET_PIDFD.get() {
        let _ = pidfd.signal(signal);
    } else if pid > 0 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    } else {
        return false;
    }
    true
}

/// From now on, keep `signals` received by this process for the target a
/// later `forward_to…` names (a container started attached can print, and
/// be signalled, before its PID 1 is known to us).
pub fn hold(signals: &[Signal]) {
    handle(signals);
}

/// From now on, `signals` received by this process go to `pid` instead.
pub fn forward_to(pid: i32, signals: &[Signal]) {
    TARGET.store(pid, Ordering::SeqCst);
    handle(signals);
    deliver_pending();
}

/// As [`forward_to`], to the process `target` names (never to another
/// that later gets its pid). Once per process: a later target is ignored.
pub fn forward_to_process(target: Pidfd, signals: &[Signal]) {
    let _ = TARGET_PIDFD.set(target);
    handle(signals);
    deliver_pending();
}

fn deliver_pending() {
    let pending = PENDING.swap(0, Ordering::SeqCst);
    for signal in (1..64).filter(|n| pending & (1 << n) != 0) {
        send(signal as nix::libc::c_int);
    }
}

fn handle(signals: &[Signal]) {
    let action = SigAction::new(SigHandler::Handler(forward), SaFlags::SA_RESTART, SigSet::empty());
    for signal in signals {
        // SAFETY: the handler only uses atomics and makes one syscall.
        let _ = unsafe { sigaction(*signal, &action) };
    }
}
