//! The monitor: one small process per running container (podman's conmon).
//! `start` runs it as `mocker __monitor` (from `runtime::protected_self`)
//! in a session of its own, so the container outlives the command. It
//! holds `monitor.lock` while it lives, clones the container, copies its
//! output to the log, serves published ports, and records how it ended.
//! The container dies with it (PDEATHSIG): a lock nobody holds means
//! nothing runs.
//!
//! Single-threaded until the container is cloned; threads after that.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};

use super::config::ContainerConfig;
use super::error::ContainerError;
use super::logs::LogWriter;
use super::paths::short_id_of;
use super::report::StartReport;
use super::state::{now, State, Status};
use crate::error::{Error, IoContext, Result};
use crate::runtime::{self, cgroup::ContainerCgroup, network, Network, Stdio};

pub const ROOT_ENV: &str = "_MOCKER_MONITOR_ROOT";
pub const ID_ENV: &str = "_MOCKER_MONITOR_ID";
/// The fd on which the monitor sends its start report (`report::StartReport`).
pub const STATUS_FD_ENV: &str = "_MOCKER_STATUS_FD";
/// Set when our stdin/stdout/stderr are the caller's (attached start).
pub const ATTACH_ENV: &str = "_MOCKER_ATTACH";

/// What the caller of `start` wants wired to the container.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Attach {
    /// Our stdout and stderr get the container's output too.
    pub output: bool,
    /// Our stdin becomes the container's (`-i`).
    pub stdin: bool,
}

/// Held by the monitor for as long as it lives; holds its pid, and its
/// mtime says since when (see `system check`'s stuck starts).
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join("monitor.lock")
}

/// Made by `rm` before it looks for a monitor; a monitor that finds it
/// after taking its lock does not start the container. Either the remover
/// sees the monitor or the monitor sees the marker.
pub fn removing_path(dir: &Path) -> PathBuf {
    dir.join("removing")
}

/// The pid a live monitor wrote into its lock file.
pub fn monitor_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(lock_path(dir)).ok()?.trim().parse().ok()
}

/// Held by the monitor until it has let go of the container's namespaces
/// (so its mounts are gone): what removal waits for.
pub fn teardown_lock_path(dir: &Path) -> PathBuf {
    dir.join("teardown.lock")
}

/// Shared by whoever waits to read a container's exit (`wait`, attached
/// starts); the monitor takes it exclusively before removing a `--rm`
/// container, so they read the exit code before it is gone.
pub fn waiters_lock_path(dir: &Path) -> PathBuf {
    dir.join("waiters.lock")
}

/// Wait up to `timeout` until nobody holds the lock at `path` exclusively;
/// whether that happened (no file: at once).
pub fn wait_for_lock_until(path: &Path, timeout: std::time::Duration) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return true;
    };
    let deadline = std::time::Instant::now() + timeout;
    let mut file = file;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
            Ok(_) => return true,
            Err((f, _)) => file = f,
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Block until no monitor holds the lock at `path` (none: at once).
pub fn wait_for_lock(path: &Path) {
    if let Ok(file) = std::fs::File::open(path) {
        let _ = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockShared);
    }
}

/// Entry point of `mocker __monitor`.
pub fn main() -> i32 {
    // A session of its own, before anything else: the container outlives
    // the command that started it, and the terminal's signals are not ours
    // (an attached caller forwards what it should).
    let _ = nix::unistd::setsid();
    let env = |k: &str| std::env::var(k).ok();
    let (Some(root), Some(id), Some(status_fd)) = (
        env(ROOT_ENV),
        env(ID_ENV),
        env(STATUS_FD_ENV).and_then(|f| f.parse::<i32>().ok()),
    ) else {
        eprintln!("mocker: __monitor is internal to `mocker start`");
        return 125;
    };
    // SAFETY: `start` passed us this fd, open and ours alone.
    let status = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(status_fd) });
    let attach = match env(ATTACH_ENV).as_deref() {
        Some("io") => Attach {
            output: true,
            stdin: true,
        },
        Some("o") => Attach {
            output: true,
            stdin: false,
        },
        _ => Attach::default(),
    };
    let dir = PathBuf::from(root).join("containers").join(&id);
    // An attached caller waits for us: our exit code is the container's.
    monitor(&dir, attach, status).unwrap_or(runtime::init::EXIT_RUNTIME_FAILED)
}

/// Runs the container to its end; its exit code, once it has run (later
/// failures are only reported: the code is what an attached caller needs).
fn monitor(dir: &Path, attach: Attach, status: std::fs::File) -> Result<i32> {
    let (lock, teardown, config, cgroup) = match prepare(dir) {
        Ok(prepared) => prepared,
        Err(e) => {
            StartReport::Failed {
                code: runtime::init::EXIT_RUNTIME_FAILED,
                message: e.to_string(),
            }
            .send(status);
            return Err(e);
        }
    };
    let state_path = dir.join("state.json");
    let (running, state, cgroup) = match launch(dir, &config, cgroup, attach, &state_path) {
        Ok(launched) => launched,
        Err((code, message)) => {
            StartReport::Failed {
                code,
                message: message.clone(),
            }
            .send(status);
            return Err(Error::StartFailed { code, message });
        }
    };
    StartReport::Started {
        pid: running.pid.as_raw() as u32,
    }
    .send(status);
    if let Some(endpoint) = &config.endpoint {
        for port in running.published {
            network::serve(port, endpoint.address);
        }
    }
    let code = exit_code_of(running.pid);
    // The PID namespace is gone, so every writer of the output is too.
    for copier in running.copiers {
        let _ = copier.join();
    }
    let saved = record_exit(state, &state_path, code, cgroup);
    let _ = waitpid(running.pid, None);
    drop(lock);
    // Letting go of the namespaces waits for the kernel (an RCU grace
    // period): after the lock, so that waiters need not.
    drop(running.namespace);
    drop(teardown);
    if let Some(endpoint) = &config.endpoint {
        let _ = network::detach(endpoint);
    }
    let removed = if config.auto_remove {
        auto_remove(dir, &config)
    } else {
        Ok(())
    };
    if let Err(e) = saved.and(removed) {
        eprintln!("Error: {e}");
    }
    Ok(code)
}

/// Start the container and record it running. A failure is docker's exit
/// code and why; one of the start itself is recorded for `inspect`.
fn launch(
    dir: &Path,
    config: &ContainerConfig,
    cgroup: ContainerCgroup,
    attach: Attach,
    state_path: &Path,
) -> std::result::Result<(Running, State, ContainerCgroup), Failed> {
    let running = match start(dir, config, &cgroup, attach) {
        Ok(running) => running,
        Err(failed) => {
            let _ = cgroup.remove();
            record_failed_start(state_path, &failed);
            return Err(failed);
        }
    };
    let state = State::running(
        running.pid.as_raw() as u32,
        std::process::id(),
        running.published.iter().map(|p| p.mapping().clone()).collect(),
    );
    if let Err(e) = state.save(state_path) {
        let _ = nix::sys::signal::kill(running.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(running.pid, None);
        let _ = cgroup.remove();
        return Err((runtime::init::EXIT_RUNTIME_FAILED, e.to_string()));
    }
    Ok((running, state, cgroup))
}

/// A failed start, as `inspect` shows it: created again, with docker's
/// code and why; what the last run left (its finish, its OOM) is kept.
fn record_failed_start(state_path: &Path, (code, message): &Failed) {
    let mut state = State::load(state_path).unwrap_or_default();
    state.status = Status::Created;
    state.exit_code = *code;
    state.error = message.clone();
    let _ = state.save(state_path);
}

/// Wait for PID 1's exit; docker's exit code for it. WNOWAIT: it stays a
/// zombie, its pid its own, until the exit is recorded (see
/// `host::Linux::signal`).
fn exit_code_of(pid: nix::unistd::Pid) -> i32 {
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return runtime::init::EXIT_RUNTIME_FAILED,
        }
    }
}

/// Record how the container ended (OOM kills are read from its cgroup,
/// which then goes).
fn record_exit(mut state: State, state_path: &Path, code: i32, cgroup: ContainerCgroup) -> Result<()> {
    state.status = Status::Exited;
    state.pid = 0;
    state.exit_code = code;
    state.finished_at = Some(now());
    state.oom_killed = cgroup.oom_killed();
    let _ = cgroup.remove();
    state.save(state_path)
}

type Prepared = (
    nix::fcntl::Flock<std::fs::File>,
    Option<nix::fcntl::Flock<std::fs::File>>,
    ContainerConfig,
    ContainerCgroup,
);

/// Our locks (see `take_lock`; `teardown.lock` taken while we hold the
/// monitor lock, so no remover can slip between), the container's config
/// and its cgroup.
fn prepare(dir: &Path) -> Result<Prepared> {
    let prepared = (|| {
        let lock = take_lock(dir)?;
        let _ = std::fs::File::create(waiters_lock_path(dir));
        let teardown = std::fs::File::create(teardown_lock_path(dir))
            .ok()
            .and_then(|f| nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok());
        let config = ContainerConfig::load(dir)?;
        let cgroup = ContainerCgroup::create(&config.id, &config.limits, config.init.privileged)?;
        Ok((lock, teardown, config, cgroup))
    })();
    match prepared {
        // Removed while we were starting: say so, as docker's start does.
        Err(_) if !dir.join("config.json").exists() => Err(Error::NoSuchContainer(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )),
        other => other,
    }
}

/// `--rm`, attached or not: removed here, as docker's daemon does, so a
/// killed `run` leaves nothing behind (the attached caller waits for us);
/// after every waiter has read the exit (see `waiters_lock_path`).
fn auto_remove(dir: &Path, config: &ContainerConfig) -> Result<()> {
    let _readers_done = std::fs::File::open(waiters_lock_path(dir))
        .ok()
        .and_then(|f| nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok());
    let mocker = crate::Mocker::open(dir.parent().and_then(Path::parent).unwrap_or(Path::new("/")))?;
    super::remove::discard(&super::host::Linux, &mocker, &config.id, Some(config))
}

/// `monitor.lock`, with our pid in it, for a container that is not being
/// removed (checked after the lock: see `removing_path`).
fn take_lock(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    // Not truncated before it is ours: a live monitor's pid is in it.
    let file =
        super::paths::open_lock_file(&lock_path(dir), true).ctx(|| format!("creating {}", lock_path(dir).display()))?;
    // Briefly retried: a removal's check, or a reader's probe of whether
    // a monitor lives, holds it for a moment.
    let mut file = file;
    let mut tries = 0;
    let mut lock = loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => break lock,
            Err((_, _)) if tries == 20 => return Err(ContainerError::AlreadyRunning { id: short_id_of(dir) }.into()),
            Err((f, _)) => file = f,
        }
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let _ = lock.set_len(0).and_then(|_| writeln!(lock, "{}", std::process::id()));
    if removing_path(dir).exists() {
        return Err(ContainerError::BeingRemoved { id: short_id_of(dir) }.into());
    }
    Ok(lock)
}

/// Put PID 1 in its cgroup and plug its network namespace (`netns`, or
/// its own) into the bridge. Both wait for an RCU grace period in the
/// kernel: done at the same time.
fn join_cgroup_and_network(
    config: &ContainerConfig,
    cgroup: &ContainerCgroup,
    pid: u32,
    netns: Option<std::fs::File>,
) -> Result<()> {
    let plugging = match &config.endpoint {
        Some(endpoint) if config.network == Network::Bridge => {
            let netns = match netns {
                Some(netns) => Ok(netns),
                None => {
                    std::fs::File::open(format!("/proc/{pid}/ns/net")).ctx(|| "opening the container's netns".into())
                }
            };
            let endpoint = endpoint.clone();
            Some(std::thread::spawn(move || network::attach(netns?, &endpoint)))
        }
        _ => None,
    };
    let joined = cgroup.add(pid);
    let plugged = match plugging {
        Some(thread) => thread
            .join()
            .unwrap_or_else(|_| Err(ContainerError::NetworkThreadPanicked.into())),
        None => Ok(()),
    };
    joined.and(plugged)
}

/// A dup of our fd `fd` (0-2, or a pty end), open.
fn dup_fd(fd: i32) -> Result<OwnedFd> {
    // SAFETY: fd is one of ours and open.
    nix::unistd::dup(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
        .map_err(|source| ContainerError::Sys { what: "dup", source }.into())
}

/// The container's stdio, our ends to copy its output from, and our end of
/// the console socket (`tty`: PID 1 sends its terminal there).
type Wired = (Stdio, Vec<(&'static str, OwnedFd)>, Option<OwnedFd>);

fn wire_stdio(tty: bool, attach: Attach) -> Result<Wired> {
    let null = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .ctx(|| "opening /dev/null".into())
    };
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|source| ContainerError::Sys { what: "pipe", source })
    };
    Ok(if tty {
        let (ours, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|source| ContainerError::Sys {
            what: "socketpair",
            source,
        })?;
        // PID 1 sizes its terminal from its stdout before anything runs
        // (the caller's terminal, if attached), then replaces all three.
        let stdio = Stdio {
            stdin: null()?,
            stdout: if attach.output { dup_fd(1) } else { null() }?,
            stderr: null()?,
            console: Some(theirs),
        };
        (stdio, Vec::new(), Some(ours))
    } else {
        let (out_read, out_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        let stdin = if attach.stdin { dup_fd(0) } else { null() }?;
        let stdio = Stdio {
            stdin,
            stdout: out_write,
            stderr: err_write,
            console: None,
        };
        (stdio, vec![("stdout", out_read), ("stderr", err_read)], None)
    })
}

/// A container that runs, and what the monitor holds for it.
struct Running {
    pid: nix::unistd::Pid,
    /// Threads copying its output to the log.
    copiers: Vec<std::thread::JoinHandle<()>>,
    published: Vec<network::Published>,
    /// Its mount namespace, held until the exit is recorded.
    namespace: Option<std::fs::File>,
}

/// A start's failure: docker's exit code and why.
type Failed = (i32, String);

fn failed(e: impl Into<Error>) -> Failed {
    (runtime::init::EXIT_RUNTIME_FAILED, e.into().to_string())
}

/// Bind ports, clone the container, wire its network and output, and let
/// it exec.
fn start(
    dir: &Path,
    config: &ContainerConfig,
    cgroup: &ContainerCgroup,
    attach: Attach,
) -> std::result::Result<Running, Failed> {
    let published = claim_network(dir, config).map_err(failed)?;
    let log = LogWriter::open(&super::paths::log_path(dir), config.log_rotation).map_err(failed)?;
    let (stdio, sources, console) = wire_stdio(config.init.tty, attach).map_err(failed)?;
    // Before the clone, while we are single-threaded.
    let userns = match &config.init.userns {
        Some(mapping) => Some(
            runtime::userns::prepare(mapping, &config.init.overlay, config.network != Network::Host).map_err(failed)?,
        ),
        None => None,
    };
    let prepared_netns = match userns.as_ref().and_then(|u| u.net.as_ref()) {
        Some(net) => Some(std::fs::File::from(
            net.try_clone().ctx(|| "dup".into()).map_err(failed)?,
        )),
        None => None,
    };
    let cloned = runtime::clone_container(&config.init, config.network, stdio, userns).map_err(failed)?;
    if let Err(e) = join_cgroup_and_network(config, cgroup, cloned.pid.as_raw() as u32, prepared_netns) {
        cloned.abandon();
        return Err(failed(e));
    }
    // Pipes are copied before the release: a failing start writes to stderr.
    let mut copiers: Vec<_> = sources
        .into_iter()
        .map(|(stream, fd)| copy_output(&log, attach, stream, fd))
        .collect();
    let namespace = std::fs::File::open(format!("/proc/{}/ns/mnt", cloned.pid)).ok();
    let pid = cloned.release().map_err(|f| (f.code, f.message))?;
    if let Some(console) = console {
        let master = follow_console(&console, attach).map_err(failed)?;
        copiers.push(copy_output(&log, attach, "stdout", master));
    }
    Ok(Running {
        pid,
        copiers,
        published,
        namespace,
    })
}

/// The published ports, bound; and, under one hold of the network lock,
/// the container's address (still, or again after a reboot emptied the
/// claims, its own) and the bridge (which stays: a removal checks the
/// claims under the lock).
fn claim_network(dir: &Path, config: &ContainerConfig) -> Result<Vec<network::Published>> {
    let published = config
        .ports
        .iter()
        .map(network::bind)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if let Some(endpoint) = &config.endpoint {
        let root = dir.parent().and_then(Path::parent).unwrap_or(Path::new("/"));
        let lock = network::lock()?;
        let claimant = network::Claimant::new(root, &config.id)?;
        lock.reclaim(&endpoint.bridge.name, endpoint.address, &claimant)?;
        network::ensure_bridge(&lock, &endpoint.bridge)?;
    }
    Ok(published)
}

/// A thread copying one output stream `fd` of the container to its log
/// (and to our own stdout or stderr when attached).
fn copy_output(log: &LogWriter, attach: Attach, stream: &'static str, fd: OwnedFd) -> std::thread::JoinHandle<()> {
    let tee = if attach.output {
        dup_fd(if stream == "stderr" { 2 } else { 1 })
            .ok()
            .map(std::fs::File::from)
    } else {
        None
    };
    let log = log.clone();
    let from = std::fs::File::from(fd);
    std::thread::spawn(move || log.copy(stream, from, tee))
}

/// The container's terminal, which PID 1 sent on `console` before the exec
/// that `release` waited for: sized like the caller's (who forwards its
/// SIGWINCH to us) and fed our stdin when attached so.
fn follow_console(console: &OwnedFd, attach: Attach) -> Result<OwnedFd> {
    let master = runtime::receive_console(console)?;
    if attach.output {
        runtime::terminal::follow_size(std::io::stdout(), &master);
    }
    if attach.stdin {
        if let Ok(input) = dup_fd(master.as_raw_fd()) {
            let mut input = std::fs::File::from(input);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut input);
            });
        }
    }
    Ok(master)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_is_recorded_as_created_with_its_code_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let last_run = State {
            status: Status::Exited,
            exit_code: 0,
            finished_at: Some("2024-01-01T00:00:00Z".parse().unwrap()),
            oom_killed: true,
            ..Default::default()
        };
        last_run.save(&path).unwrap();
        record_failed_start(&path, &(127, "exec: \"nope\": not found".into()));
        let state = State::load(&path).unwrap();
        assert_eq!((state.status, state.exit_code), (Status::Created, 127));
        assert_eq!(state.error, "exec: \"nope\": not found");
        assert_eq!((state.finished_at, state.oom_killed), (last_run.finished_at, true));
    }
}
