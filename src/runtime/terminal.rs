//! Terminals for `-t`: opened from the devpts of the caller's mount
//! namespace (the container's, so `tty` and /dev/pts/N make sense inside),
//! made a process's controlling terminal, sized like the user's, and
//! resized with it (SIGWINCH).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use super::RuntimeError;

/// A new terminal: (master, slave), both close-on-exec.
pub fn open() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(RuntimeError::sys("opening /dev/ptmx"))?;
    nix::pty::grantpt(&master).map_err(RuntimeError::sys("grantpt"))?;
    nix::pty::unlockpt(&master).map_err(RuntimeError::sys("unlockpt"))?;
    let name = nix::pty::ptsname_r(&master).map_err(RuntimeError::sys("ptsname"))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(RuntimeError::sys("opening the terminal"))?;
    Ok((master.into(), slave))
}

/// In the process that will exec: a session of its own with `slave` as its
/// controlling terminal and its stdin, stdout and stderr.
pub fn make_controlling(slave: &OwnedFd) -> Result<(), RuntimeError> {
    nix::unistd::setsid().map_err(RuntimeError::sys("setsid"))?;
    rustix::process::ioctl_tiocsctty(slave)
        .map_err(|e| RuntimeError::io("setting the controlling terminal")(e.into()))?;
    nix::unistd::dup2_stdin(slave)
        .and_then(|_| nix::unistd::dup2_stdout(slave))
        .and_then(|_| nix::unistd::dup2_stderr(slave))
        .map_err(|e| RuntimeError::io("dup2")(e.into()))?;
    Ok(())
}

/// Give `terminal` the window size of `from` (the user's), if it has one.
/// Two ioctls: async-signal-safe, so the SIGWINCH handler may call it.
pub fn copy_size(from: impl AsFd, terminal: impl AsFd) {
    if let Ok(size) = rustix::termios::tcgetwinsize(from) {
        let _ = rustix::termios::tcsetwinsize(terminal, size);
    }
}

/// The (user's terminal, container's terminal) pair SIGWINCH resizes: our
/// own duplicates, open for the rest of the process, so the handler never
/// resizes a reused fd (`get` is one atomic load).
static FOLLOWED: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();

extern "C" fn resized(_: nix::libc::c_int) {
    // The interrupted code may be about to read errno.
    let errno = nix::errno::Errno::last_raw();
    if let Some((from, to)) = FOLLOWED.get() {
        copy_size(from, to);
    }
    nix::errno::Errno::set_raw(errno);
}

/// Copy `from`'s size to `terminal` now and on every SIGWINCH from now on
/// (the user resized their window). Once per process: later calls only
/// copy the size now.
pub fn follow_size(from: impl AsFd, terminal: &OwnedFd) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    if let (Ok(kept_from), Ok(kept_to)) = (nix::unistd::dup(from.as_fd()), nix::unistd::dup(terminal)) {
        if FOLLOWED.set((kept_from, kept_to)).is_ok() {
            let action = SigAction::new(SigHandler::Handler(resized), SaFlags::SA_RESTART, SigSet::empty());
            // SAFETY: the handler only reads a OnceLock and makes two ioctls.
            let _ = unsafe { sigaction(Signal::SIGWINCH, &action) };
        }
    }
    // After the handler is in place: a resize from now on is not missed.
    copy_size(from, terminal);
}
