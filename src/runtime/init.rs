//! The container's side of a start: PID 1 of the new PID namespace, cloned
//! by the monitor (a single-threaded process running a protected binary,
//! never a fork of the threaded CLI) into new mount, UTS, IPC and network
//! namespaces. It mounts the root filesystem and pivots into it while the
//! monitor puts it in its cgroup and network, waits for that, and execs.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Uid};
use serde::{Deserialize, Serialize};

use super::security::Security;
use super::spec::ProcessSpec;
use super::RuntimeError;
use crate::error::Error;
use crate::mount::{mount, Overlay};
use crate::safefs;

/// docker's exit codes for failures before the command runs.
pub const EXIT_RUNTIME_FAILED: i32 = 125;
pub const EXIT_CANNOT_INVOKE: i32 = 126;
pub const EXIT_NOT_FOUND: i32 = 127;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InitSpec {
    pub process: ProcessSpec,
    pub overlay: Overlay,
    /// Where the root filesystem is mounted (inside our mount namespace).
    pub rootfs: PathBuf,
    /// `--privileged`: no masked paths, no no_new_privs.
    pub privileged: bool,
    /// The seccomp filter and whether setuid programs may gain privileges.
    #[serde(default = "Security::predating")]
    pub security: Security,
    /// `-v HOST:CONTAINER[:ro]` bind mounts.
    pub volumes: Vec<Volume>,
    /// Files of ours mounted over the image's (/etc/hosts, /etc/hostname,
    /// /etc/resolv.conf).
    pub files: Vec<Volume>,
    /// `--read-only`: the root filesystem is mounted read-only.
    pub read_only_root: bool,
    /// `--network host`: the host's network namespace (no loopback setup).
    pub host_network: bool,
    /// `--init`: PID 1 is a small reaper that forwards signals to the command.
    pub init: bool,
    /// `-t`: stdin/stdout/stderr are a terminal that becomes the controlling one.
    pub tty: bool,
    /// `--userns-remap`: the container's ids on the host.
    #[serde(default)]
    pub userns: Option<super::userns::IdMapping>,
}

/// A host path bind-mounted into the container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

impl Volume {
    /// docker's `-v HOST:CONTAINER[:ro|rw]` (host paths only; named volumes
    /// are not supported).
    pub fn parse(input: &str) -> Result<Volume, Error> {
        let invalid = |reason: &'static str| -> Error {
            RuntimeError::InvalidVolume {
                input: input.to_string(),
                reason,
            }
            .into()
        };
        let parts: Vec<&str> = input.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [s, t] => (*s, *t, "rw"),
            [s, t, m] => (*s, *t, *m),
            _ => return Err(invalid("expected HOST:CONTAINER[:ro]")),
        };
        if !source.starts_with('/') {
            return Err(invalid(
                "the host path must be absolute (named volumes are not supported)",
            ));
        }
        if !target.starts_with('/') || target.split('/').any(|c| c == "..") {
            return Err(invalid("the container path must be absolute, without .."));
        }
        let target = target
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .fold(String::new(), |path, c| path + "/" + c);
        if let Some(why) = reserved_target(&target) {
            return Err(invalid(why));
        }
        let read_only = match mode {
            "ro" => true,
            "rw" => false,
            _ => return Err(invalid("the mode must be ro or rw")),
        };
        Ok(Volume {
            source: PathBuf::from(source),
            target,
            read_only,
        })
    }
}

/// Files under /proc a volume may replace, as runc allows (lxcfs mounts
/// its views there).
const PROC_FILES_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Why a normalised container path cannot take a volume: the root, the
/// kernel filesystems the runtime mounts itself, and /proc's insides (a
/// host directory there could stand in for the container's own /proc).
fn reserved_target(target: &str) -> Option<&'static str> {
    match target {
        "" => Some("the container path must not be /"),
        "/proc" | "/sys" | "/dev" => {
            Some("the container's /proc, /sys and /dev are mounted by mocker and cannot be replaced")
        }
        t if t.starts_with("/proc/") && !PROC_FILES_ALLOWED.contains(&t) => {
            Some("a volume cannot be mounted inside /proc")
        }
        _ => None,
    }
}

/// /proc, /dev (a tmpfs with the standard nodes), /dev/pts, /dev/shm,
/// /dev/mqueue and a read-only /sys, on targets opened inside `root`.
fn mount_kernel_filesystems(
    root: &std::os::fd::OwnedFd,
    userns: Option<&super::userns::IdMapping>,
) -> std::result::Result<(), Failure> {
    let owner = userns.map(|m| m.root());
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_in(root, "proc", "proc", "proc", nosuid_nodev_noexec, None, owner)?;
    mount_in(
        root,
        "dev",
        "tmpfs",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some(dev_options(userns).as_str()),
        owner,
    )?;
    populate_dev(root)?;
    mount_in(
        root,
        "dev/pts",
        "devpts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
        owner,
    )?;
    mount_in(
        root,
        "dev/shm",
        "shm",
        "tmpfs",
        nosuid_nodev_noexec,
        Some("mode=1777,size=65536k"),
        owner,
    )?;
    mount_in(root, "dev/mqueue", "mqueue", "mqueue", nosuid_nodev_noexec, None, owner)?;
    mount_in(
        root,
        "sys",
        "sysfs",
        "sysfs",
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        None,
        owner,
    )?;
    Ok(())
}

/// /dev's tmpfs belongs to the container's root, in a user namespace too.
fn dev_options(userns: Option<&super::userns::IdMapping>) -> String {
    match userns.map(|m| m.root()) {
        Some((uid, gid)) => format!("mode=755,size=65536k,uid={uid},gid={gid}"),
        None => "mode=755,size=65536k".into(),
    }
}

/// docker's masked paths: hidden behind /dev/null or an empty read-only tmpfs.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// docker's read-only paths.
const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

fn capability_set(names: &[String]) -> std::result::Result<caps::CapsHashSet, Failure> {
    names
        .iter()
        .map(|n| {
            n.parse::<caps::Capability>().map_err(|source| {
                RuntimeError::BadCapability {
                    name: n.clone(),
                    source,
                }
                .into()
            })
        })
        .collect()
}

/// Inside the new root (after pivot_root): these paths are the container's
/// own procfs and sysfs, which the image cannot redirect.
fn mask_paths() -> std::result::Result<(), Failure> {
    for path in MASKED_PATHS {
        let Ok(md) = std::fs::symlink_metadata(path) else {
            continue;
        };
        let result = if md.is_dir() {
            mount(Some("tmpfs"), *path, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
        } else {
            mount(Some("/dev/null"), *path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        };
        result.map_err(RuntimeError::mount(format!("masking {path}")))?;
    }
    for path in READONLY_PATHS {
        if std::fs::symlink_metadata(path).is_err() {
            continue;
        }
        mount(
            Some(*path),
            *path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .and_then(|_| {
            mount(
                Some(*path),
                *path,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
                None::<&str>,
            )
        })
        .map_err(RuntimeError::mount(format!("making {path} read-only")))?;
    }
    Ok(())
}

/// PID 1's entry point, in the cloned child: build the container's root
/// filesystem while the monitor puts us in the cgroup and the network (a
/// cgroup v1 migration alone takes 10-20 ms here), wait for `ready` (a byte;
/// EOF means the monitor gave up), then become the command. Nothing of the
/// image runs before `ready`. On
/// failure the reason goes to `errors` (close-on-exec, so a successful exec
/// closes it with nothing written) and the process exits with docker's code.
pub fn container_main(
    spec: &InitSpec,
    ready: std::os::fd::OwnedFd,
    errors: std::os::fd::OwnedFd,
    console: Option<std::os::fd::OwnedFd>,
    userns: Option<super::userns::UsernsFds>,
) -> i32 {
    // The container dies with its monitor rather than run unwatched.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // Rust ignores SIGPIPE in its binaries; an ignored signal stays ignored
    // across exec, and the container's command expects the default.
    // SAFETY: restoring a default disposition installs no handler.
    let _ =
        unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
    let Failure { code, error } = match start_container(spec, ready, &errors, console, userns.as_ref()) {
        Ok(never) => match never {},
        Err(failure) => failure,
    };
    let _ = nix::unistd::write(&errors, format!("{code}\n{error}").as_bytes());
    code
}

/// Why PID 1 (or an exec'd process) did not become the command: docker's
/// exit code for it (125 unless said otherwise) and the reason.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: i32,
    pub error: RuntimeError,
}

impl<E: Into<RuntimeError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: EXIT_RUNTIME_FAILED,
            error: e.into(),
        }
    }
}

fn fail(context: &str) -> impl FnOnce(nix::errno::Errno) -> RuntimeError + '_ {
    RuntimeError::sys(context)
}

/// As PID 1 of the new PID namespace: build the root filesystem, enter it,
/// become the configured user and exec. Returns only on failure.
fn start_container(
    spec: &InitSpec,
    ready: std::os::fd::OwnedFd,
    errors: &std::os::fd::OwnedFd,
    console: Option<std::os::fd::OwnedFd>,
    userns: Option<&super::userns::UsernsFds>,
) -> std::result::Result<std::convert::Infallible, Failure> {
    // First, so that sysfs is mounted from it.
    if let Some(net) = userns.and_then(|u| u.net.as_ref()) {
        nix::sched::setns(net, nix::sched::CloneFlags::CLONE_NEWNET).map_err(fail("entering the network namespace"))?;
    }
    let root = build_root(spec, userns)?;
    enter_root(&root)?;
    if !spec.privileged {
        mask_paths()?;
    }
    if let Some(console) = console {
        open_console(console)?;
    }
    wait_for_monitor(ready)?;
    if !spec.host_network {
        loopback_up().map_err(RuntimeError::io("bringing up loopback"))?;
    }
    nix::unistd::sethostname(&spec.process.hostname).map_err(fail("setting the hostname"))?;
    // Last: every mount above needed the host's root.
    if let Some(u) = userns {
        super::userns::enter(u.user.as_fd()).map_err(fail("entering the user namespace"))?;
    }
    exec_process(&spec.process, spec.privileged, &spec.security, spec.init, errors)
}

/// The container's root filesystem at `spec.rootfs`, with the kernel's
/// filesystems and the volumes mounted in it; opened.
fn build_root(
    spec: &InitSpec,
    userns: Option<&super::userns::UsernsFds>,
) -> std::result::Result<std::os::fd::OwnedFd, Failure> {
    // Nothing we mount may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(RuntimeError::mount("making mounts private"))?;
    std::env::set_current_dir(&spec.overlay.base)
        .map_err(RuntimeError::io(format!("entering {}", spec.overlay.base.display())))?;
    let overlay = match userns {
        Some(u) if !u.lowers.is_empty() => u.overlay(&spec.overlay),
        _ => spec.overlay.clone(),
    };
    mount(
        Some("overlay"),
        &spec.rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(overlay.options().as_str()),
    )
    .map_err(RuntimeError::mount("mounting the root filesystem"))?;
    let root = safefs::open_root(&spec.rootfs).map_err(RuntimeError::io("opening the root filesystem"))?;

    mount_kernel_filesystems(&root, spec.userns.as_ref())?;

    for volume in spec.volumes.iter().chain(&spec.files) {
        bind_volume(&root, volume, spec.userns.map(|m| m.root()))?;
    }
    if spec.read_only_root {
        // Only the root mount: /dev, /proc, /dev/shm and volumes keep theirs.
        mount(
            None::<&str>,
            &spec.rootfs,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(RuntimeError::mount("making the root filesystem read-only"))?;
    }
    Ok(root)
}

/// Make `root` our root. pivot_root(".", ".") stacks the old root under
/// the new one; detaching it leaves no path back to the host (never a
/// plain chroot).
fn enter_root(root: &std::os::fd::OwnedFd) -> std::result::Result<(), Failure> {
    nix::unistd::fchdir(root.as_fd()).map_err(fail("entering the root filesystem"))?;
    nix::unistd::pivot_root(".", ".").map_err(fail("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail("detaching the old root"))?;
    nix::unistd::chdir("/").map_err(fail("chdir /"))?;
    Ok(())
}

/// Wait for the monitor's byte on `ready` (we are in the cgroup and the
/// network); EOF means it gave up.
fn wait_for_monitor(ready: std::os::fd::OwnedFd) -> std::result::Result<(), Failure> {
    let mut byte = [0u8; 1];
    if !matches!(nix::unistd::read(&ready, &mut byte), Ok(1)) {
        return Err(RuntimeError::MonitorGaveUp.into());
    }
    Ok(())
}

/// The part of a start that `exec` shares: enter the working directory,
/// become the user with the allowed capabilities, close what is ours, load
/// the seccomp filter and exec (after forking a reaping PID 1 when `init`).
/// Returns only on failure.
pub(crate) fn exec_process(
    process: &ProcessSpec,
    privileged: bool,
    security: &Security,
    init: bool,
    errors: &std::os::fd::OwnedFd,
) -> std::result::Result<std::convert::Infallible, Failure> {
    let no_new_privs = !privileged && !security.allow_new_privileges;
    // Without no_new_privs, loading a filter takes CAP_SYS_ADMIN: load it
    // now, while we hold it (the profile must then allow what follows).
    let (early, last) = match &security.seccomp {
        Some(program) if !no_new_privs => (Some(program), None),
        program => (None, program.as_ref()),
    };
    if let Some(program) = early {
        program.load()?;
    }
    enter_working_directory(&process.cwd)?;
    let user = become_user(process)?;
    // Setuid binaries in the image cannot gain what the container lacks.
    if no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(fail("no_new_privs"))?;
    }
    // Nothing of ours may reach the container's command (CVE-2024-21626).
    close_range_from_3(nix::libc::CLOSE_RANGE_CLOEXEC).map_err(RuntimeError::io("close_range"))?;
    let argv = Argv::new(process, &user)?;
    // Last: from here on only fork, prctl, execve and the error report run.
    if let Some(program) = last {
        program.load()?;
    }
    if init {
        // SAFETY: PID 1 is single-threaded.
        if let ForkResult::Parent { child } = unsafe { fork() }.map_err(fail("fork"))? {
            // Nothing of the monitor's (its lock, the error pipe) may
            // stay open in a process that never execs.
            let _ = close_range_from_3(0);
            let _ = errors;
            std::process::exit(reap_as_init(child));
        }
    }
    // Credentials changed since the monitor set it: set it again.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let err = match nix::unistd::execve(&argv.path, &argv.args, &argv.env) {
        Ok(never) => match never {},
        Err(err) => err,
    };
    Err(Failure {
        code: match err {
            nix::errno::Errno::ENOENT => EXIT_NOT_FOUND,
            _ => EXIT_CANNOT_INVOKE,
        },
        error: RuntimeError::CannotRun {
            program: process.args[0].clone(),
            source: err,
        },
    })
}

/// close_range(2) on every fd from 3 up, with `flags` (0: close them).
fn close_range_from_3(flags: std::ffi::c_uint) -> std::io::Result<()> {
    // SAFETY: close_range (no wrapper in nix or rustix) takes only numbers
    // and touches no memory; the fds it closes are ours, not Rust-owned
    // ones still in use (the caller execs or exits next).
    if unsafe { nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What execve takes: the program found on PATH, its arguments and its
/// environment (with HOME from the user unless given), as C strings.
struct Argv {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

impl Argv {
    fn new(process: &ProcessSpec, user: &super::users::User) -> std::result::Result<Argv, Failure> {
        let program = resolve(&process.args[0], &process.env)?;
        let cstr = |s: &str| CString::new(s).map_err(|_| RuntimeError::NulByte(s.to_string()));
        let args = process
            .args
            .iter()
            .map(|a| cstr(a))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut env = process.env.clone();
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        let env = env
            .iter()
            .map(|e| cstr(e))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let path = cstr(&program.to_string_lossy())?;
        Ok(Argv { path, args, env })
    }
}

/// Enter (creating it if missing) the working directory, which must then
/// be inside the new root (CVE-2024-21626: a leaked directory fd as cwd
/// would reach the host).
fn enter_working_directory(cwd: &str) -> std::result::Result<(), Failure> {
    std::fs::create_dir_all(cwd)
        .and_then(|_| std::env::set_current_dir(cwd))
        .map_err(|source| RuntimeError::WorkingDirectory {
            path: cwd.to_string(),
            source,
        })?;
    match std::env::current_dir() {
        Ok(cwd) if cwd.is_absolute() && cwd.exists() => Ok(()),
        _ => Err(RuntimeError::WorkingDirectoryOutside.into()),
    }
}

/// Become the process's user with its capabilities (bounded by what we
/// hold), ambient ones cleared; the user, as the image's files name it.
fn become_user(process: &ProcessSpec) -> std::result::Result<super::users::User, Failure> {
    // What we may grant is bounded by what we hold (this host, for one,
    // lacks CAP_SYS_RESOURCE in its bounding set).
    let held = caps::read(None, caps::CapSet::Permitted).map_err(caps_error("reading capabilities".into()))?;
    let keep: caps::CapsHashSet = capability_set(&process.capabilities)?
        .intersection(&held)
        .copied()
        .collect();
    // Bounding set first, while we still hold CAP_SETPCAP.
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, caps::CapSet::Bounding, cap).map_err(caps_error(format!("dropping {cap}")))?;
        }
    }
    let user = resolve_user(&process.user)?;
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(fail("setgroups"))?;
    nix::unistd::setgid(Gid::from_raw(user.gid)).map_err(fail("setgid"))?;
    nix::unistd::setuid(Uid::from_raw(user.uid)).map_err(fail("setuid"))?;
    let cap_error = |source| RuntimeError::Capabilities {
        what: "setting capabilities".into(),
        source,
    };
    if user.uid == 0 {
        caps::set(None, caps::CapSet::Effective, &keep).map_err(cap_error)?;
        caps::set(None, caps::CapSet::Permitted, &keep).map_err(cap_error)?;
        caps::set(None, caps::CapSet::Inheritable, &keep).map_err(cap_error)?;
    }
    caps::clear(None, caps::CapSet::Ambient).map_err(cap_error)?;
    Ok(user)
}

fn caps_error(what: String) -> impl FnOnce(caps::errors::CapsError) -> RuntimeError {
    move |source| RuntimeError::Capabilities { what, source }
}

/// `-t`: a terminal from the container's own devpts (so `tty` and
/// /dev/pts/N make sense inside), made our controlling terminal and our
/// stdin/stdout/stderr; its master end goes to the monitor over `console`.
/// It gets the size of our stdout (the user's terminal, when attached)
/// before the command can ask for it.
fn open_console(console: std::os::fd::OwnedFd) -> std::result::Result<(), Failure> {
    let (master, slave) = super::terminal::open()?;
    super::terminal::copy_size(std::io::stdout(), &master);
    nix::sys::socket::sendmsg::<()>(
        console.as_raw_fd(),
        &[std::io::IoSlice::new(b"t")],
        &[nix::sys::socket::ControlMessage::ScmRights(&[master.as_raw_fd()])],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(fail("sending the terminal to the monitor"))?;
    drop(master);
    drop(console);
    Ok(super::terminal::make_controlling(&slave)?)
}

/// The user from the container's own /etc/passwd and /etc/group (we are
/// inside the new root: absolute symlinks resolve within it).
fn resolve_user(spec: &str) -> std::result::Result<super::users::User, Failure> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    Ok(super::users::resolve(spec, &passwd, &group)?)
}

/// `--init`: as PID 1, forward signals to the command and reap every
/// orphan until the command exits; leave with its status.
fn reap_as_init(command: nix::unistd::Pid) -> i32 {
    // As `ps` in the container shows it (docker's is docker-init).
    let _ = nix::sys::prctl::set_name(c"mocker-init");
    let every: Vec<nix::sys::signal::Signal> = nix::sys::signal::Signal::iterator()
        .filter(|s| {
            use nix::sys::signal::Signal::*;
            !matches!(s, SIGCHLD | SIGKILL | SIGSTOP)
        })
        .collect();
    super::signals::forward_to(command.as_raw(), &every);
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => return code,
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => return 128 + signal as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return EXIT_RUNTIME_FAILED,
        }
    }
}

/// Bind `volume.source` (a host path, as the user named it) onto its target
/// inside the new root, resolved by fd so an image symlink cannot redirect
/// it onto the host.
fn bind_volume(root: &std::os::fd::OwnedFd, volume: &Volume, owner: Owner) -> std::result::Result<(), Failure> {
    let rel = Path::new(volume.target.trim_start_matches('/'));
    // docker creates a missing host directory (the container's root's).
    if !volume.source.exists() {
        make_host_dirs(&volume.source, owner)
            .map_err(RuntimeError::io(format!("creating {}", volume.source.display())))?;
    }
    let source =
        std::fs::File::open(&volume.source).map_err(RuntimeError::io(format!("volume {}", volume.source.display())))?;
    let is_dir = source.metadata().map(|m| m.is_dir()).unwrap_or(false);
    let target = volume_target(root, rel, &volume.target, is_dir, owner)?;
    let from = format!("/proc/self/fd/{}", source.as_raw_fd());
    let onto = format!("/proc/self/fd/{}", target.as_raw_fd());
    mount(
        Some(from.as_str()),
        onto.as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(RuntimeError::mount(format!("mounting volume {}", volume.target)))?;
    if volume.read_only {
        // Reopen: the old fd still names the directory under the mount.
        let mounted = nix::fcntl::openat2(
            root.as_fd(),
            rel,
            nix::fcntl::OpenHow::new()
                .flags(nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC)
                .resolve(nix::fcntl::ResolveFlag::RESOLVE_IN_ROOT | nix::fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS),
        )
        .map_err(fail(&format!("volume target {}", volume.target)))?;
        let onto = format!("/proc/self/fd/{}", mounted.as_raw_fd());
        mount(
            None::<&str>,
            onto.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(RuntimeError::mount(format!(
            "making volume {} read-only",
            volume.target
        )))?;
    }
    Ok(())
}

/// The mount point of a volume at `rel` in the root (`target` as the user
/// gave it): a directory, or an empty file for a file, made if missing.
fn volume_target(
    root: &std::os::fd::OwnedFd,
    rel: &Path,
    target: &str,
    is_dir: bool,
    owner: Owner,
) -> std::result::Result<std::os::fd::OwnedFd, Failure> {
    let in_root = |(c, e): (String, nix::errno::Errno)| RuntimeError::sys(format!("volume target {target} ({c})"))(e);
    if is_dir {
        return Ok(mkdirs_in(root, rel, owner).map_err(in_root)?);
    }
    let parent = mkdirs_in(root, rel.parent().unwrap_or(Path::new("")), owner).map_err(in_root)?;
    let name = rel
        .file_name()
        .ok_or(RuntimeError::InvalidVolumeTarget(target.to_string()))?;
    let file = nix::fcntl::openat(
        parent.as_fd(),
        Path::new(name),
        nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(fail(&format!("volume target {target}")))?;
    Ok(file)
}

/// The new network namespace starts with `lo` down; docker's containers
/// have it up.
fn loopback_up() -> std::io::Result<()> {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain data; the ioctls read and write only it.
    unsafe {
        let mut request: nix::libc::ifreq = std::mem::zeroed();
        for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as nix::libc::c_char;
        }
        if nix::libc::ioctl(socket.as_raw_fd(), nix::libc::SIOCGIFFLAGS, &mut request) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= nix::libc::IFF_UP as nix::libc::c_short;
        if nix::libc::ioctl(socket.as_raw_fd(), nix::libc::SIOCSIFFLAGS, &request) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Mount onto `rel` inside the new root, resolved by fd (never by a path a
/// symlink in the image could redirect onto the host: CVE-2021-30465).
/// Who owns what PID 1 makes in the root filesystem or for a volume: with
/// a user namespace, the container's root (host uid, gid); else host root.
type Owner = Option<(u32, u32)>;

/// Directory `rel` in `root`, made if missing; what it makes belongs to
/// `owner` (each new directory chowned through an fd opened inside the
/// root, never by a path an image symlink could redirect).
fn mkdirs_in(
    root: &std::os::fd::OwnedFd,
    rel: &Path,
    owner: Owner,
) -> Result<std::os::fd::OwnedFd, (String, nix::errno::Errno)> {
    let mut created = Vec::new();
    let dir = safefs::mkdir_all_in_tracking(root.as_fd(), rel, &mut created)?;
    if let Some((uid, gid)) = owner {
        for path in &created {
            let made = safefs::open_dir_in(root.as_fd(), path).map_err(|e| (path.display().to_string(), e))?;
            nix::unistd::fchown(&made, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|e| (path.display().to_string(), e))?;
        }
    }
    Ok(dir)
}

/// A missing host directory for a volume, as docker makes it: the new
/// directories belong to `owner`.
fn make_host_dirs(path: &Path, owner: Owner) -> std::io::Result<()> {
    let missing: Vec<&Path> = path.ancestors().take_while(|p| !p.exists()).collect();
    std::fs::create_dir_all(path)?;
    if let Some((uid, gid)) = owner {
        for dir in missing {
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

fn mount_in(
    root: &std::os::fd::OwnedFd,
    rel: &str,
    source: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
    owner: Owner,
) -> std::result::Result<(), Failure> {
    let target = mkdirs_in(root, Path::new(rel), owner)
        .map_err(|(c, e)| RuntimeError::sys(format!("mount point /{rel} ({c})"))(e))?;
    let via_fd = format!("/proc/self/fd/{}", target.as_raw_fd());
    mount(Some(source), via_fd.as_str(), Some(fstype), flags, data)
        .map_err(RuntimeError::mount(format!("mounting {fstype} on /{rel}")))?;
    Ok(())
}

/// The standard device nodes and links of a container's /dev.
fn populate_dev(root: &std::os::fd::OwnedFd) -> std::result::Result<(), Failure> {
    let dev = safefs::open_dir_in(root.as_fd(), Path::new("dev")).map_err(fail("opening /dev"))?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        mknodat(
            dev.as_fd(),
            name,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(fail("creating /dev nodes"))?;
        nix::sys::stat::fchmodat(
            dev.as_fd(),
            name,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::NoFollowSymlink,
        )
        .or_else(|e| {
            if e == nix::errno::Errno::EOPNOTSUPP {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(fail("chmod /dev nodes"))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        nix::unistd::symlinkat(target, dev.as_fd(), link).map_err(fail("creating /dev links"))?;
    }
    Ok(())
}

/// Find the program the way a shell would, with the container's PATH.
fn resolve(program: &str, env: &[String]) -> std::result::Result<PathBuf, Failure> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Failure {
        code: EXIT_NOT_FOUND,
        error: RuntimeError::NotInPath(program.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_targets_are_normalised_and_reserved_paths_refused() {
        let v = Volume::parse("/srv/data:/data//sub/./:ro").unwrap();
        assert_eq!((v.target.as_str(), v.read_only), ("/data/sub", true));
        assert_eq!(Volume::parse("/x:/proc/meminfo").unwrap().target, "/proc/meminfo");
        for bad in [
            "/x:/proc",
            "/x:/proc/",
            "/x:/sys",
            "/x://dev",
            "/x:/proc/sys",
            "/x:/proc/1/root",
            "/x:/",
            "/x:/a/../proc",
            "x:/data",
            "/x:data",
            "/x:/data:rx",
        ] {
            let err = Volume::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid volume {bad:?}")), "{bad}: {err}");
        }
    }
}
