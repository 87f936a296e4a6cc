//! Running a container's process: PID 1 cloned into new namespaces
//! ([`clone_container`]), what it runs ([`spec`]), what it does before its
//! exec ([`init`]), its cgroup ([`cgroup`]), its network ([`network`]) and
//! its user ([`users`]). The container lifecycle on top of this — state,
//! monitor, logs — is in `container`.

pub mod cgroup;
pub mod error;
pub mod exec;
pub mod init;
pub mod network;
pub mod pidfd;
pub mod seccomp;
pub mod security;
pub mod signals;
pub mod spec;
pub mod terminal;
pub mod userns;
pub mod users;

use std::io::Read;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{IoContext, Result};

pub use error::RuntimeError;
pub use spec::Overrides;

/// `--network`: the bridge (docker's default), a private namespace with
/// loopback only, or the host's.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    #[default]
    Bridge,
    None,
    Host,
}

impl Network {
    pub fn parse(input: &str) -> Result<Network> {
        match input {
            "bridge" | "default" => Ok(Network::Bridge),
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            other => Err(RuntimeError::UnknownNetwork(other.to_string()).into()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Network::Bridge => "bridge",
            Network::None => "none",
            Network::Host => "host",
        }
    }
}

/// A new 64-hex container id.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").ctx(|| "opening /dev/urandom".into())?,
        &mut bytes,
    )
    .ctx(|| "reading /dev/urandom".into())?;
    Ok(hex::encode(bytes))
}

/// Our own binary, opened so that whatever runs it inside a container can
/// never open the host's mocker for writing through /proc/<pid>/exe (runc's
/// CVE-2019-5736). First choice, as runc's `try_bindfd`: a read-only bind
/// mount of the binary, opened and then detached (no copy, microseconds);
/// otherwise a sealed memfd copy (costs a copy of the whole binary).
/// `scratch` is a root-only directory for the transient mount point.
pub fn protected_self(scratch: &std::path::Path) -> Result<OwnedFd> {
    match read_only_self(scratch) {
        Ok(fd) => Ok(fd),
        Err(_) => sealed_self(),
    }
}

fn read_only_self(scratch: &std::path::Path) -> Result<OwnedFd> {
    use crate::mount::mount;
    use nix::mount::{umount2, MntFlags, MsFlags};
    std::fs::create_dir_all(scratch).ctx(|| format!("creating {}", scratch.display()))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let point = scratch.join(format!("exe-{}-{nanos}", std::process::id()));
    std::fs::File::create(&point).ctx(|| format!("creating {}", point.display()))?;
    let opened = (|| -> Result<std::fs::File> {
        mount(
            Some("/proc/self/exe"),
            &point,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(RuntimeError::mount("binding our binary"))?;
        let opened = mount(
            None::<&str>,
            &point,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(RuntimeError::mount("making it read-only"))
        .map_err(crate::Error::from)
        .and_then(|_| std::fs::File::open(&point).ctx(|| "opening our binary".into()));
        // The open file keeps the detached read-only mount alive.
        let _ = umount2(&point, MntFlags::MNT_DETACH);
        opened
    })();
    let _ = std::fs::remove_file(&point);
    let file = opened?;
    // Check what we rely on: the file's mount is read-only.
    match nix::sys::statvfs::fstatvfs(&file) {
        Ok(st) if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) => Ok(file.into()),
        _ => Err(RuntimeError::SelfNotReadOnly.into()),
    }
}

/// A command that runs mocker itself from [`protected_self`] as
/// `mode args…`, with a clean environment plus `env`, keeping `pass` open
/// across the exec (its number is the caller's to tell the child, and the
/// caller closes its own copy once the child is spawned). The caller sets
/// stdio.
///
/// No `pre_exec`: without one, std spawns with posix_spawn (a vfork), not a
/// fork of this multi-threaded process's whole address space, which cost
/// milliseconds per start. So `pass` is made inheritable here, and a child
/// that wants a session of its own calls setsid itself.
pub fn self_command(
    scratch: &std::path::Path,
    mode: &str,
    args: &[&str],
    env: &[(&str, &str)],
    pass: std::os::fd::BorrowedFd,
) -> Result<(std::process::Command, OwnedFd)> {
    let binary = protected_self(scratch)?;
    nix::fcntl::fcntl(pass, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
        .map_err(RuntimeError::sys(format!("passing a pipe to {mode}")))?;
    // The kernel resolves the path before close-on-exec closes the fd.
    let mut command = std::process::Command::new(format!("/proc/self/fd/{}", binary.as_raw_fd()));
    command.arg(mode).args(args).env_clear().envs(env.iter().copied());
    Ok((command, binary))
}

/// A sealed in-memory copy of our own binary (see [`protected_self`]).
pub fn sealed_self() -> Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create(c"mocker-init", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(RuntimeError::sys("memfd_create"))?;
    let mut copy = std::fs::File::from(fd);
    let mut exe = std::fs::File::open("/proc/self/exe").ctx(|| "opening our own binary".into())?;
    std::io::copy(&mut exe, &mut copy).ctx(|| "copying our own binary".into())?;
    let seals = SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    fcntl(&copy, FcntlArg::F_ADD_SEALS(seals)).map_err(RuntimeError::sys("sealing the init binary"))?;
    Ok(copy.into())
}

/// The container's standard streams, as the child will see them.
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// `-t`: a socket on which PID 1 sends the master end of the terminal
    /// it opens in the container (which then replaces the three above).
    pub console: Option<OwnedFd>,
}

/// PID 1, cloned and waiting: write to `ready` once it is in its cgroup
/// and network; `errors` reports whether its exec happened.
pub struct Cloned {
    pub pid: Pid,
    ready: OwnedFd,
    errors: OwnedFd,
}

/// Clone PID 1 of a new container from this (single-threaded) process:
/// new PID, mount, UTS, IPC and (unless host) network namespaces.
/// With `userns`, PID 1 joins the prepared network namespace instead of
/// making one, and its user namespace last (see [`userns`]).
pub fn clone_container(
    spec: &init::InitSpec,
    network: Network,
    stdio: Stdio,
    userns: Option<userns::UsernsFds>,
) -> Result<Cloned> {
    let mut flags =
        CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if network != Network::Host && userns.as_ref().is_none_or(|u| u.net.is_none()) {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(RuntimeError::sys("pipe"));
    let (ready_read, ready_write) = pipe()?;
    let (errors_read, errors_write) = pipe()?;
    let mut stack = vec![0u8; 256 * 1024];
    let mut child_fds = Some((ready_read, errors_write, stdio, userns));
    let child = Box::new(|| -> isize {
        let Some((ready, errors, stdio, userns)) = child_fds.take() else {
            return init::EXIT_RUNTIME_FAILED as isize;
        };
        let dup2 = nix::unistd::dup2_stdin(&stdio.stdin)
            .and_then(|_| nix::unistd::dup2_stdout(&stdio.stdout))
            .and_then(|_| nix::unistd::dup2_stderr(&stdio.stderr));
        if dup2.is_err() {
            return init::EXIT_RUNTIME_FAILED as isize;
        }
        // Given up now, by their owners: `close_all_but` below closes them
        // too, and dropping them after (when PID 1 fails to exec) would close
        // whatever reused their numbers (debug builds abort on it). One that
        // already is 0, 1 or 2 is the standard fd now: forgotten, not closed.
        let Stdio {
            console,
            stdin,
            stdout,
            stderr,
        } = stdio;
        for fd in [stdin, stdout, stderr] {
            if fd.as_raw_fd() <= 2 {
                let _ = fd.into_raw_fd();
            }
        }
        // The clone copied every fd of the monitor, `ready`'s write end
        // among them: holding it, PID 1 would never see the EOF that means
        // "give up", and the monitor would wait for it for ever.
        let mut keep = vec![ready.as_raw_fd(), errors.as_raw_fd()];
        keep.extend(console.as_ref().map(|c| c.as_raw_fd()));
        keep.extend(userns.iter().flat_map(userns::UsernsFds::raw_fds));
        close_all_but(&keep);
        init::container_main(spec, ready, errors, console, userns) as isize
    });
    // SAFETY: the caller is single-threaded, so the child (a copy of this
    // process, not sharing memory) may run arbitrary code; SIGCHLD makes it
    // an ordinary child for waitpid.
    let pid = unsafe { nix::sched::clone(child, &mut stack, flags, Some(Signal::SIGCHLD as i32)) }
        .map_err(RuntimeError::sys("creating the container's namespaces"))?;
    Ok(Cloned {
        pid,
        ready: ready_write,
        errors: errors_read,
    })
}

/// Close every fd from 3 up except `keep`: what a clone child does first,
/// as it copied all of its parent's, pipe ends it waits on among them.
pub(crate) fn close_all_but(keep: &[std::os::fd::RawFd]) {
    let mut keep: Vec<u32> = keep.iter().map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for fd in keep.into_iter().chain([u32::MAX]) {
        if fd > from {
            // SAFETY: close_range(2) (no wrapper in nix or rustix) takes
            // only numbers; it closes fds of this single-threaded child.
            unsafe { nix::libc::syscall(nix::libc::SYS_close_range, from, fd - 1, 0u32) };
        }
        from = from.max(fd.saturating_add(1));
    }
}

/// The master end of the terminal PID 1 sent on the console socket.
pub fn receive_console(socket: &OwnedFd) -> Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(RuntimeError::sys("receiving the terminal"))?;
    for cmsg in msg.cmsgs().map_err(RuntimeError::sys("receiving the terminal"))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us.
                return Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(*fd) });
            }
        }
    }
    Err(RuntimeError::NoTerminal.into())
}

/// Why a container's command did not start.
#[derive(Debug)]
pub struct StartFailure {
    /// docker's exit code: 125, 126 or 127.
    pub code: i32,
    pub message: String,
}

impl Cloned {
    /// Let PID 1 go on, and wait until its command was exec'd (Ok) or
    /// failed to start (the reason, after reaping it).
    pub fn release(self) -> std::result::Result<Pid, StartFailure> {
        let pid = self.pid;
        let _ = nix::unistd::write(&self.ready, b"1");
        drop(self.ready);
        let mut report = Vec::new();
        let _ = std::fs::File::from(self.errors).read_to_end(&mut report);
        if report.is_empty() {
            return Ok(pid);
        }
        let _ = nix::sys::wait::waitpid(pid, None);
        let report = String::from_utf8_lossy(&report);
        let (code, message) = report.split_once('\n').unwrap_or(("125", &report));
        Err(StartFailure {
            code: code.parse().unwrap_or(init::EXIT_RUNTIME_FAILED),
            message: message.to_string(),
        })
    }

    /// Give up before the start: PID 1 exits when `ready` closes.
    pub fn abandon(self) {
        let pid = self.pid;
        drop(self.ready);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}
