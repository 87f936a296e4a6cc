//! `exec`: a new process in a running container. mocker re-executes itself
//! from its protected binary (see `protected_self`) as `__exec`
//! (single-threaded, as setns into a mount namespace requires), enters PID
//! 1's namespaces, waits until the caller has put it in the container's
//! cgroup, forks (the child lands in the container's PID namespace) and runs
//! the command as a start would.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use serde::{Deserialize, Serialize};

use super::init::{exec_process, EXIT_RUNTIME_FAILED};
use super::spec::ProcessSpec;
use super::RuntimeError;
use crate::error::Result;

const SPEC_ENV: &str = "_MOCKER_EXEC";
const READY_FD_ENV: &str = "_MOCKER_READY_FD";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The container's PID 1, as the host sees it.
    pub pid: u32,
    pub process: ProcessSpec,
    pub privileged: bool,
    /// The container's seccomp filter and no_new_privs choice.
    pub security: super::security::Security,
    /// `-t`: a terminal from the container's devpts, relayed to our stdio.
    #[serde(default)]
    pub tty: bool,
    /// `-i`: our stdin is the command's; without it, it is never read.
    #[serde(default)]
    pub stdin: bool,
}

/// Run `spec` in the container and return its exit code. `joined(pid)`
/// puts the new process in the container's cgroup before it may go on.
/// Our stdout and stderr (and stdin, with `spec.stdin`) become the command's.
pub fn run(spec: &ExecSpec, scratch: &std::path::Path, joined: impl FnOnce(u32) -> Result<()>) -> Result<i32> {
    let (ready_read, ready_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(RuntimeError::sys("pipe"))?;
    let ready_fd = std::os::fd::AsRawFd::as_raw_fd(&ready_read);
    let encoded = serde_json::to_string(spec).map_err(RuntimeError::EncodeExec)?;
    let env = [(SPEC_ENV, encoded.as_str()), (READY_FD_ENV, &ready_fd.to_string())];
    let (mut command, _binary) = super::self_command(scratch, "__exec", &[], &env, ready_read.as_fd())?;
    if !spec.stdin {
        command.stdin(std::process::Stdio::null());
    }
    let mut child = command.spawn().map_err(RuntimeError::io("starting exec"))?;
    drop(ready_read);
    let setup = joined(child.id());
    if setup.is_ok() {
        let _ = nix::unistd::write(&ready_write, b"1");
    }
    drop(ready_write);
    let status = child.wait().map_err(RuntimeError::io("waiting for exec"))?;
    setup?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(EXIT_RUNTIME_FAILED))
}

/// Entry point of `mocker __exec`: wait for the cgroup, join the
/// container, fork the command and wait for it (relaying its terminal).
pub fn main() -> i32 {
    let spec = match read_spec() {
        Ok(spec) => spec,
        Err(message) => {
            eprintln!("mocker: {message}");
            return EXIT_RUNTIME_FAILED;
        }
    };
    if let Err(e) = enter_namespaces(spec.pid) {
        eprintln!("mocker: {e}");
        return EXIT_RUNTIME_FAILED;
    }
    // Opened in the container's mount namespace: its own devpts.
    let opened = spec.tty.then(|| {
        super::terminal::open().inspect(|(master, _)| super::terminal::follow_size(std::io::stdout(), master))
    });
    let terminal = match opened.transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mocker: {e}");
            return EXIT_RUNTIME_FAILED;
        }
    };
    // SAFETY: this process is single-threaded (freshly exec'd).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => run_command(&spec, terminal),
        Ok(ForkResult::Parent { child }) => wait_for_command(child, terminal, spec.stdin),
        Err(e) => {
            eprintln!("mocker: fork: {e}");
            EXIT_RUNTIME_FAILED
        }
    }
}

/// The spec from our environment, once the caller has put us in the
/// container's cgroup (a byte on the ready pipe).
fn read_spec() -> std::result::Result<ExecSpec, String> {
    let spec: ExecSpec = std::env::var(SPEC_ENV)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
        .map_err(|e| format!("__exec is internal to `mocker exec`: {e}"))?;
    let ready = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .ok_or_else(|| format!("__exec is internal to `mocker exec`: no {READY_FD_ENV}"))?;
    // SAFETY: the parent passed us this fd, open and ours alone.
    let ready = unsafe { OwnedFd::from_raw_fd(ready) };
    let mut byte = [0u8; 1];
    if !matches!(nix::unistd::read(&ready, &mut byte), Ok(1)) {
        return Err("exec was not set up (cgroup)".into());
    }
    Ok(spec)
}

/// The forked child: take the terminal, then become the command as a
/// start would. Never returns.
fn run_command(spec: &ExecSpec, terminal: Option<(OwnedFd, OwnedFd)>) -> ! {
    if let Some((_, slave)) = &terminal {
        if let Err(e) = super::terminal::make_controlling(slave) {
            eprintln!("mocker: {e}");
            std::process::exit(EXIT_RUNTIME_FAILED);
        }
    }
    drop(terminal);
    // SAFETY: restoring a default disposition installs no handler.
    let _ =
        unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
    let (errors_read, errors_write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mocker: pipe: {e}");
            std::process::exit(EXIT_RUNTIME_FAILED);
        }
    };
    drop(errors_read);
    let failure = match exec_process(&spec.process, spec.privileged, &spec.security, false, &errors_write) {
        Ok(never) => match never {},
        Err(failure) => failure,
    };
    eprintln!("mocker: {}", failure.error);
    std::process::exit(failure.code);
}

/// The parent: relay the terminal (if any) until it closes, then reap the
/// command; its exit code, or 128 + the signal that killed it.
fn wait_for_command(child: nix::unistd::Pid, mut terminal: Option<(OwnedFd, OwnedFd)>, stdin: bool) -> i32 {
    loop {
        if let Some((master, slave)) = terminal.take() {
            drop(slave);
            relay(master, stdin);
        }
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("mocker: waiting for the command: {e}");
                return EXIT_RUNTIME_FAILED;
            }
        }
    }
}

/// Copy our stdin (only with `-i`: without it, docker's exec reads none) to
/// the terminal and the terminal to our stdout until the command's side
/// closes. One thread with poll: having joined the
/// container's PID namespace, this process cannot start threads.
fn relay(master: OwnedFd, stdin_wanted: bool) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Write;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut reading_stdin = stdin_wanted;
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if reading_stdin {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let (master_ready, stdin_ready) = (ready(&fds[0]), fds.get(1).is_some_and(ready));
        if master_ready {
            // EIO once the last holder of the slave end is gone.
            match nix::unistd::read(&master, &mut buf) {
                Ok(n) if n > 0 => {
                    if stdout.write_all(&buf[..n]).and_then(|_| stdout.flush()).is_err() {
                        return;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                _ => return,
            }
        }
        if stdin_ready {
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(n) if n > 0 => {
                    if nix::unistd::write(&master, &buf[..n]).is_err() {
                        return;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                _ => reading_stdin = false,
            }
        }
    }
}

/// Join PID 1's namespaces; all are opened first, as entering the mount
/// namespace changes what /proc paths mean. The mount namespace also sets
/// our root and working directory to the container's root.
fn enter_namespaces(pid: u32) -> Result<()> {
    let kinds = [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
        // Last: from here on our capabilities hold only inside it.
        ("user", CloneFlags::CLONE_NEWUSER),
    ];
    let own = |kind: &str| std::fs::read_link(format!("/proc/self/ns/{kind}")).ok();
    let mut opened = Vec::new();
    for (kind, flag) in kinds {
        let path = format!("/proc/{pid}/ns/{kind}");
        // --network host shares ours: joining it again is harmless but skip it.
        if std::fs::read_link(&path).ok() == own(kind) {
            continue;
        }
        let file = std::fs::File::open(&path).map_err(RuntimeError::io(format!("opening {path}")))?;
        opened.push((kind, flag, file));
    }
    for (kind, flag, file) in opened {
        nix::sched::setns(file.as_fd(), flag).map_err(RuntimeError::sys(format!("entering the {kind} namespace")))?;
        if flag == CloneFlags::CLONE_NEWUSER {
            super::userns::become_root().map_err(RuntimeError::sys("becoming root in the user namespace"))?;
        }
    }
    Ok(())
}
