//! A process named by a pidfd: once opened, the fd means that process and
//! no other, even if its pid is reaped and reused (the kill-by-pid race).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::Signal;

pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// ESRCH if no such process; ENOSYS on kernels before 5.3.
    pub fn open(pid: u32) -> std::io::Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this fd; it is ours alone.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// The fd, kept open for the rest of the process (a signal handler's).
    pub fn into_raw_fd(self) -> RawFd {
        std::os::fd::IntoRawFd::into_raw_fd(self.0)
    }

    /// ESRCH once the process has exited.
    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        if send_signal(self.0.as_raw_fd(), signal as nix::libc::c_int) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// pidfd_send_signal(2) on a raw pidfd: one syscall, async-signal-safe (a
/// signal handler's); negative on failure, with errno set.
pub fn send_signal(pidfd: RawFd, signal: nix::libc::c_int) -> nix::libc::c_long {
    // SAFETY: pidfd_send_signal with no siginfo and no flags.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_pidfd_send_signal,
            pidfd,
            signal,
            std::ptr::null::<nix::libc::siginfo_t>(),
            0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_the_process_it_was_opened_for() {
        let mut child = std::process::Command::new("sleep").arg("100").spawn().unwrap();
        let target = Pidfd::open(child.id()).unwrap();
        target.signal(Signal::SIGKILL).unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
        // Reaped: the fd still names it, and says it is gone.
        let err = target.signal(Signal::SIGKILL).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::ESRCH));
    }
}
