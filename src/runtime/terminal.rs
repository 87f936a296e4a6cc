//! Terminals for `-t`: opened from the devpts of the caller's mount
//! namespace (the container's, so `tty` and /dev/pts/N make sense inside),
//! made a process's controlling terminal, sized like the user's.

use std::os::fd::{AsRawFd, OwnedFd};

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
    // SAFETY: winsize is plain data; the ioctls read and write only it.
    unsafe {
        let mut size: nix::libc::winsize = std::mem::zeroed();
        if nix::libc::ioctl(from, nix::libc::TIOCGWINSZ, &mut size) == 0 {
            nix::libc::ioctl(terminal.as_raw_fd(), nix::libc::TIOCSWINSZ, &size);
        }
    }
}
