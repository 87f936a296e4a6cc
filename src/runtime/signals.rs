//! Forwarding signals to another process from a handler: the `--init`
//! reaper forwards every signal to the command, and an attached `run`
//! forwards the terminal's and `kill`'s to the container (docker's
//! sig-proxy). A handler (not a blocked mask and sigwait) because a process
//! may already have threads that would otherwise take the signal and die.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Where the handler sends what it receives.
static TARGET: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: nix::libc::c_int) {
    let pid = TARGET.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { nix::libc::kill(pid, signal) };
    }
}

/// From now on, `signals` received by this process go to `pid` instead.
pub fn forward_to(pid: i32, signals: &[Signal]) {
    TARGET.store(pid, Ordering::Relaxed);
    let action = SigAction::new(SigHandler::Handler(forward), SaFlags::SA_RESTART, SigSet::empty());
    for signal in signals {
        // SAFETY: the handler only reads an atomic and calls kill.
        let _ = unsafe { sigaction(*signal, &action) };
    }
}
