//! Terminals for `-t`: opened from the devpts of the caller's mount
//! namespace (the container's, so `tty` and /dev/pts/N make sense inside),
//! made a process's controlling terminal, sized like the user's, and
//! resized with it (SIGWINCH).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::{Error, Result};

/// A new terminal: (master, slave), both close-on-exec.
pub fn open() -> Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::OFlag;
    let fail = |what: &'static str| move |e: nix::errno::Errno| Error::Runtime(format!("{what}: {e}"));
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(fail("opening /dev/ptmx"))?;
    nix::pty::grantpt(&master).map_err(fail("grantpt"))?;
    nix::pty::unlockpt(&master).map_err(fail("unlockpt"))?;
    let name = nix::pty::ptsname_r(&master).map_err(fail("ptsname"))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(fail("opening the terminal"))?;
    Ok((master.into(), slave))
}

/// In the process that will exec: a session of its own with `slave` as its
/// controlling terminal and its stdin, stdout and stderr.
pub fn make_controlling(slave: &OwnedFd) -> Result<()> {
    nix::unistd::setsid().map_err(|e| Error::Runtime(format!("setsid: {e}")))?;
    let last = || std::io::Error::last_os_error();
    // SAFETY: TIOCSCTTY takes an int; dup2 onto our standard fds.
    unsafe {
        if nix::libc::ioctl(slave.as_raw_fd(), nix::libc::TIOCSCTTY, 0) != 0 {
            return Err(Error::Runtime(format!("setting the controlling terminal: {}", last())));
        }
        for target in 0..3 {
            if nix::libc::dup2(slave.as_raw_fd(), target) < 0 {
                return Err(Error::Runtime(format!("dup2: {}", last())));
            }
        }
    }
    Ok(())
}

/// Give `terminal` the window size of `from` (the user's), if it has one.
pub fn copy_size(from: i32, terminal: &OwnedFd) {
    copy_size_raw(from, terminal.as_raw_fd());
}

/// Two ioctls: async-signal-safe, so the SIGWINCH handler may call it.
fn copy_size_raw(from: i32, to: i32) {
    // SAFETY: winsize is plain data; the ioctls read and write only it.
    unsafe {
        let mut size: nix::libc::winsize = std::mem::zeroed();
        if nix::libc::ioctl(from, nix::libc::TIOCGWINSZ, &mut size) == 0 {
            nix::libc::ioctl(to, nix::libc::TIOCSWINSZ, &size);
        }
    }
}

/// The (user's terminal, container's terminal) pair SIGWINCH resizes.
static FOLLOWED: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];

extern "C" fn resized(_: nix::libc::c_int) {
    // The interrupted code may be about to read errno.
    let errno = nix::errno::Errno::last_raw();
    let (from, to) = (FOLLOWED[0].load(Ordering::Relaxed), FOLLOWED[1].load(Ordering::Relaxed));
    if from >= 0 && to >= 0 {
        copy_size_raw(from, to);
    }
    nix::errno::Errno::set_raw(errno);
}

/// Copy `from`'s size to `terminal` now and on every SIGWINCH from now on
/// (the user resized their window). Keeps a duplicate of `terminal` open for
/// the rest of the process, so the handler never resizes a reused fd.
pub fn follow_size(from: i32, terminal: &OwnedFd) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let Ok(kept) = nix::unistd::dup(terminal) else {
        return;
    };
    FOLLOWED[0].store(from, Ordering::Relaxed);
    FOLLOWED[1].store(std::os::fd::IntoRawFd::into_raw_fd(kept), Ordering::Relaxed);
    let action = SigAction::new(SigHandler::Handler(resized), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler only reads atomics and makes two ioctls.
    let _ = unsafe { sigaction(Signal::SIGWINCH, &action) };
    copy_size(from, terminal);
}
