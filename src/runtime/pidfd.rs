//! A process named by a pidfd: once opened, the fd means that process and
//! no other, even if its pid is reaped and reused (the kill-by-pid race).

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::Signal;

#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// ESRCH if no such process; ENOSYS on kernels before 5.3.
    pub fn open(pid: u32) -> std::io::Result<Pidfd> {
        let pid = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| std::io::Error::from_raw_os_error(nix::libc::EINVAL))?;
        let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
        Ok(Pidfd(fd))
    }

    /// ESRCH once the process has exited. One syscall, no allocation:
    /// async-signal-safe (a signal handler's).
    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        let signal = rustix::process::Signal::from_named_raw(signal as i32)
            .ok_or_else(|| std::io::Error::from_raw_os_error(nix::libc::EINVAL))?;
        rustix::process::pidfd_send_signal(self.0.as_fd(), signal)?;
        Ok(())
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
