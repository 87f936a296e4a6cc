//! What the lifecycle asks of the host — processes, locks, cgroups, the
//! network, the monitor — behind one trait (as youki puts its syscalls), so
//! that create, start, stop and rm decide against a fake (`fake.rs`) in
//! unit tests without root, processes or a bridge. Files under the storage
//! root stay real: a temporary directory serves.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::error::ContainerError;
use super::monitor::Attach;
use super::paths::short_id_of;
use super::report::StartReport;
use super::state::{State, Status};
use crate::error::{Error, IoContext, Result};
use crate::runtime::cgroup::ContainerCgroup;
use crate::runtime::network::{self, Bridge, Endpoint};
use crate::runtime::pidfd::Pidfd;

pub trait Host {
    /// Whether the container's monitor lives (holds `monitor.lock` in `dir`).
    fn monitor_alive(&self, dir: &Path) -> bool;
    /// Signal the container in `dir` whose PID 1 is `pid`; one that is
    /// already gone is not an error.
    fn signal(&self, dir: &Path, pid: u32, signal: Signal) -> Result<()>;
    /// SIGKILL whatever is left in the container's cgroup and remove it.
    fn clear_cgroup(&self, id: &str);
    /// The container's recorded state.
    fn state(&self, dir: &Path) -> State;
    /// SIGKILL the container's monitor itself (its PID 1 dies with it).
    fn kill_monitor(&self, dir: &Path);
    fn pause(&self, d: Duration);
    fn now(&self) -> Instant;
    /// Claim a free address on `bridge` host-wide for container `id` of
    /// the storage root `root`; `also_used` are this root's recorded ones.
    fn claim_address(&self, root: &Path, bridge: &Bridge, id: &str, also_used: &[Ipv4Addr]) -> Result<Ipv4Addr>;
    /// Drop container `id`'s host-wide claim of `addr` on `bridge`.
    fn release_address(&self, root: &Path, id: &str, bridge: &str, addr: Ipv4Addr) -> Result<()>;
    /// Take the container's veth off the bridge (gone already: no error).
    fn detach_network(&self, endpoint: &Endpoint) -> Result<()>;
    /// Give `path` to the container's root (`--userns-remap`).
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<()>;
    /// If no monitor lives for the container in `dir`, mark it as being
    /// removed so that none starts; whether none lived.
    fn claim_for_removal(&self, dir: &Path) -> bool;
    /// Wait up to `timeout` for the monitor to let go of the container's
    /// namespaces (`teardown.lock`); whether it did.
    fn wait_for_teardown(&self, dir: &Path, timeout: Duration) -> bool;
    /// Run the monitor of container `id` of `root` and read its start
    /// report; the monitor when it reported a start (else it is reaped).
    fn spawn_monitor(
        &self,
        root: &Path,
        id: &str,
        attach: Attach,
    ) -> Result<(StartReport, Option<std::process::Child>)>;
}

/// The real host.
pub struct Linux;

impl Host for Linux {
    fn monitor_alive(&self, dir: &Path) -> bool {
        let Ok(file) = std::fs::File::open(super::monitor::lock_path(dir)) else {
            return false;
        };
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
            Ok(_) => false,
            Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
        }
    }

    /// Through a pidfd (see [`pid1`]); by pid where there are none.
    fn signal(&self, dir: &Path, pid: u32, signal: Signal) -> Result<()> {
        let failed = |source: std::io::Error| -> Error {
            ContainerError::Signal {
                id: short_id_of(dir),
                signal,
                source,
            }
            .into()
        };
        // A pausing commit finishes first (frozen tasks take no signal); a
        // freeze whose maker died is thawed, so the signal is delivered.
        super::pause::thaw_unless_paused(dir);
        match pid1(dir, pid) {
            Ok(Some(target)) => match target.signal(signal) {
                Err(e) if e.raw_os_error() != Some(nix::libc::ESRCH) => Err(failed(e)),
                _ => Ok(()),
            },
            Ok(None) => Ok(()),
            // No pidfds: before Linux 5.3, or refused by a seccomp filter.
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::ENOSYS | nix::libc::EPERM)) => {
                match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
                    Err(e) => Err(failed(e.into())),
                }
            }
            Err(e) => Err(failed(e)),
        }
    }

    fn clear_cgroup(&self, id: &str) {
        if let Some(cgroup) = ContainerCgroup::load(id) {
            cgroup.kill_all();
            let _ = cgroup.remove();
        }
    }

    fn state(&self, dir: &Path) -> State {
        State::load(&dir.join("state.json")).unwrap_or_default()
    }

    /// Through a pidfd opened before checking that the pid in the lock file
    /// is still the lock's holder's.
    fn kill_monitor(&self, dir: &Path) {
        let Some(pid) = super::monitor::monitor_pid(dir) else {
            return;
        };
        if let Ok(target) = Pidfd::open(pid) {
            if self.monitor_alive(dir) && super::monitor::monitor_pid(dir) == Some(pid) {
                let _ = target.signal(Signal::SIGKILL);
            }
        }
    }

    fn pause(&self, d: Duration) {
        std::thread::sleep(d);
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn claim_address(&self, root: &Path, bridge: &Bridge, id: &str, also_used: &[Ipv4Addr]) -> Result<Ipv4Addr> {
        let claimant = network::Claimant::new(root, id)?;
        network::lock()?.claim_free(bridge, &claimant, also_used)
    }

    fn release_address(&self, root: &Path, id: &str, bridge: &str, addr: Ipv4Addr) -> Result<()> {
        let claimant = network::Claimant::new(root, id)?;
        network::lock()?.release(bridge, addr, &claimant)
    }

    fn detach_network(&self, endpoint: &Endpoint) -> Result<()> {
        network::detach(endpoint)
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).ctx(|| format!("chown {}", path.display()))
    }

    fn claim_for_removal(&self, dir: &Path) -> bool {
        super::remove::claim_for_removal(dir)
    }

    fn wait_for_teardown(&self, dir: &Path, timeout: Duration) -> bool {
        super::monitor::wait_for_lock_until(&super::monitor::teardown_lock_path(dir), timeout)
    }

    fn spawn_monitor(
        &self,
        root: &Path,
        id: &str,
        attach: Attach,
    ) -> Result<(StartReport, Option<std::process::Child>)> {
        super::start::spawn_monitor(root, id, attach)
    }
}

/// PID 1 of the container in `dir` as a pidfd, if it still runs as `pid`.
/// The pidfd is opened before that is checked: the monitor, the only
/// process that reaps PID 1, records the exit before reaping, so "running"
/// read after the open, with the monitor alive, means the pidfd names PID 1
/// and not a process that got its pid since. ENOSYS before Linux 5.3.
pub fn pid1(dir: &Path, pid: u32) -> std::io::Result<Option<Pidfd>> {
    let target = match Pidfd::open(pid) {
        Ok(target) => target,
        Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => return Ok(None),
        Err(e) => return Err(e),
    };
    let state = State::load(&dir.join("state.json")).unwrap_or_default();
    let current = Linux.monitor_alive(dir) && state.status == Status::Running && state.pid == pid;
    Ok(current.then_some(target))
}
