//! Forwarding signals to another process from a handler: the `--init`
//! reaper forwards every signal to the command, and an attached `run`
//! forwards the terminal's and `kill`'s to the container (docker's
//! sig-proxy). A handler (not a blocked mask and sigwait) because a process
//! may already have threads that would otherwise take the signal and die.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Where the handler sends what it receives: a pidfd, else a pid.
static TARGET_PIDFD: AtomicI32 = AtomicI32::new(-1);
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
    let pidfd = TARGET_PIDFD.load(Ordering::SeqCst);
    let pid = TARGET.load(Ordering::SeqCst);
    if pidfd >= 0 {
        super::pidfd::send_signal(pidfd, signal);
    } else if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { nix::libc::kill(pid, signal) };
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
/// that later gets its pid).
pub fn forward_to_process(target: super::pidfd::Pidfd, signals: &[Signal]) {
    TARGET_PIDFD.store(target.into_raw_fd(), Ordering::SeqCst);
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
