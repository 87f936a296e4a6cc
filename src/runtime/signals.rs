//! Forwarding signals to another process from a handler: the `--init`
//! reaper forwards every signal to the command, and an attached `run`
//! forwards the terminal's and `kill`'s to the container (docker's
//! sig-proxy). A handler (not a blocked mask and sigwait) because a process
//! may already have threads that would otherwise take the signal and die.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Where the handler sends what it receives: a pidfd, else a pid.
static TARGET_PIDFD: AtomicI32 = AtomicI32::new(-1);
static TARGET: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: nix::libc::c_int) {
    // The interrupted code may be about to read errno.
    let errno = nix::errno::Errno::last_raw();
    let pidfd = TARGET_PIDFD.load(Ordering::Relaxed);
    let pid = TARGET.load(Ordering::Relaxed);
    if pidfd >= 0 {
        super::pidfd::send_signal(pidfd, signal);
    } else if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { nix::libc::kill(pid, signal) };
    }
    nix::errno::Errno::set_raw(errno);
}

/// From now on, `signals` received by this process go to `pid` instead.
pub fn forward_to(pid: i32, signals: &[Signal]) {
    TARGET.store(pid, Ordering::Relaxed);
    handle(signals);
}

/// As [`forward_to`], to the process `target` names (never to another
/// that later gets its pid).
pub fn forward_to_process(target: super::pidfd::Pidfd, signals: &[Signal]) {
    TARGET_PIDFD.store(target.into_raw_fd(), Ordering::Relaxed);
    handle(signals);
}

fn handle(signals: &[Signal]) {
    let action = SigAction::new(SigHandler::Handler(forward), SaFlags::SA_RESTART, SigSet::empty());
    for signal in signals {
        // SAFETY: the handler only reads atomics and makes one syscall.
        let _ = unsafe { sigaction(*signal, &action) };
    }
}
