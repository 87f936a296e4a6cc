//! Running containers. This first slice runs a container in the foreground
//! and removes it when it exits (`run --rm`): new PID, mount, UTS, IPC and
//! network namespaces (loopback only), an overlayfs root from the image's
//! snapshots, pivot_root, /proc, /dev and a read-only /sys, the image's
//! command, environment, working directory and user, capabilities and
//! cgroup limits. Networking on a bridge, detached containers and their
//! state are not built yet.

pub mod cgroup;
pub mod init;
pub mod spec;

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::CloneFlags;
use nix::sys::signal::{signal, SigHandler, Signal};

use crate::error::{Error, IoContext, Result};
use crate::manifest::MAX_CONFIG_BYTES;
use crate::Mocker;

pub use spec::Overrides;

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub image: String,
    pub overrides: Overrides,
    pub limits: cgroup::Limits,
    pub volumes: Vec<init::Volume>,
    pub read_only: bool,
    pub network: Network,
}

/// `--network`: a private namespace with loopback only, or the host's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Network {
    #[default]
    None,
    Host,
}

impl Network {
    pub fn parse(input: &str) -> Result<Network> {
        match input {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            "bridge" | "default" => Err(Error::Runtime(
                "bridge networking is not built yet: use --network none (the default for now) or host".into(),
            )),
            other => Err(Error::Runtime(format!("unknown network {other:?}: use none or host"))),
        }
    }
}

/// A new 64-hex container id.
fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").ctx(|| "opening /dev/urandom".into())?,
        &mut bytes,
    )
    .ctx(|| "reading /dev/urandom".into())?;
    Ok(hex::encode(bytes))
}

/// Run a container in the foreground and remove it afterwards; returns the
/// exit code docker would (the command's own; 125/126/127 for failures).
pub fn run(mocker: &Mocker, opts: &RunOptions) -> Result<i32> {
    cgroup::validate(&opts.limits)?;
    let image = crate::rootfs::image_of(mocker, &opts.image)?;
    let config_bytes = mocker.store.read_small(&image.config_digest, MAX_CONFIG_BYTES)?;
    let config: serde_json::Value = serde_json::from_slice(&config_bytes).map_err(|e| Error::InvalidDocument {
        what: format!("config {}", image.config_digest),
        reason: e.to_string(),
    })?;
    let id = new_id()?;
    let process = spec::process_spec(
        config.get("config").unwrap_or(&serde_json::Value::Null),
        &opts.overrides,
        &id,
    )?;

    let key = format!("container-{id}");
    let cgroup = cgroup::ContainerCgroup::create(&id, &opts.limits)?;
    let overlay = match mocker.snapshots.prepare(&key, image.chain_ids.last()) {
        Ok(o) => o,
        Err(e) => {
            let _ = cgroup.remove();
            return Err(e);
        }
    };
    let containers = mocker.root.join("containers");
    let dir = containers.join(&id);
    let result = (|| {
        std::fs::create_dir_all(dir.join("rootfs")).ctx(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(&containers, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .ctx(|| format!("chmod {}", containers.display()))?;
        let spec = init::InitSpec {
            process,
            overlay,
            rootfs: dir.join("rootfs"),
            privileged: opts.overrides.privileged,
            volumes: opts.volumes.clone(),
            read_only_root: opts.read_only,
            host_network: opts.network == Network::Host,
        };
        let spec = serde_json::to_string(&spec).map_err(|e| Error::Runtime(e.to_string()))?;
        spawn_init(&spec, opts.network, |pid| cgroup.add(pid))
    })();
    // The root filesystem was mounted only in the container's mount
    // namespace, which is gone with its processes.
    let _ = std::fs::remove_dir_all(&dir);
    let removed = mocker.snapshots.remove_active(&key).and(cgroup.remove());
    let code = result?;
    removed?;
    Ok(code)
}

/// A sealed in-memory copy of our own binary to run as the container's
/// init: the container can never open the host's mocker binary for writing
/// through /proc/<pid>/exe (runc's CVE-2019-5736).
fn sealed_self() -> Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create(c"mocker-init", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(|e| Error::Runtime(format!("memfd_create: {e}")))?;
    let mut copy = std::fs::File::from(fd);
    let mut exe = std::fs::File::open("/proc/self/exe").ctx(|| "opening our own binary".into())?;
    std::io::copy(&mut exe, &mut copy).ctx(|| "copying our own binary".into())?;
    let seals = SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    fcntl(&copy, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| Error::Runtime(format!("sealing the init binary: {e}")))?;
    Ok(copy.into())
}

/// Start `__init`; `joined(pid)` runs before init may start the container
/// (it waits on a pipe), so the whole container starts inside the cgroup.
fn spawn_init(spec: &str, network: Network, joined: impl FnOnce(u32) -> Result<()>) -> Result<i32> {
    let mut namespaces =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWPID;
    if network == Network::None {
        namespaces |= CloneFlags::CLONE_NEWNET;
    }
    let init = sealed_self()?;
    let (ready_read, ready_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Runtime(format!("pipe: {e}")))?;
    let ready_fd = std::os::fd::AsRawFd::as_raw_fd(&ready_read);
    // The kernel resolves the path before close-on-exec closes the fd.
    let mut command = Command::new(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&init)));
    command
        .arg("__init")
        .env_clear()
        .env(init::INIT_ENV, spec)
        .env(init::READY_FD_ENV, ready_fd.to_string());
    // SAFETY: only async-signal-safe calls (unshare, signal) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            nix::sched::unshare(namespaces)?;
            signal(Signal::SIGINT, SigHandler::SigDfl)?;
            signal(Signal::SIGTERM, SigHandler::SigDfl)?;
            // The ready pipe is the one fd init inherits.
            // SAFETY: ready_fd is open in this (child) process until exec.
            let fd = std::os::fd::BorrowedFd::borrow_raw(ready_fd);
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))?;
            Ok(())
        });
    }
    // Ctrl-C reaches the container through the terminal's process group; we
    // stay to clean up after it.
    // SAFETY: setting a signal to "ignore" has no handler to be unsafe.
    let previous = unsafe {
        (
            signal(Signal::SIGINT, SigHandler::SigIgn),
            signal(Signal::SIGTERM, SigHandler::SigIgn),
        )
    };
    let status = command
        .spawn()
        .map_err(|e| Error::Runtime(format!("starting the container: {e}")))
        .and_then(|mut child| {
            drop(ready_read);
            let setup = joined(child.id());
            if setup.is_ok() {
                // Closing without a byte tells init to give up.
                let _ = nix::unistd::write(&ready_write, b"1");
            }
            drop(ready_write);
            let status = child
                .wait()
                .map_err(|e| Error::Runtime(format!("waiting for the container: {e}")));
            setup.and(status)
        });
    // SAFETY: restoring the dispositions we replaced.
    unsafe {
        if let Ok(p) = previous.0 {
            let _ = signal(Signal::SIGINT, p);
        }
        if let Ok(p) = previous.1 {
            let _ = signal(Signal::SIGTERM, p);
        }
    }
    let status = status?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(init::EXIT_RUNTIME_FAILED))
}
