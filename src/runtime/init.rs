//! The container's side of `run`: this runs in a fresh single-threaded
//! process (mocker re-executed as `__init`, never a fork of the threaded
//! parent) that was created in new mount, UTS, IPC and network namespaces
//! and whose children land in a new PID namespace. It forks the container's
//! PID 1, which mounts the root filesystem, pivots into it and execs.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Uid};
use serde::{Deserialize, Serialize};

use super::spec::ProcessSpec;
use crate::error::Error;
use crate::mount::Overlay;
use crate::safefs;

/// Environment variable carrying the [`InitSpec`] to `mocker __init`.
pub const INIT_ENV: &str = "_MOCKER_INIT";

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
}

/// Entry point of `mocker __init`: returns the exit code to leave with.
pub fn main() -> i32 {
    let spec: InitSpec = match std::env::var(INIT_ENV)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("mocker: __init is internal to `mocker run`: {e}");
            return EXIT_RUNTIME_FAILED;
        }
    };
    // SAFETY: this process is single-threaded (freshly exec'd, no runtime started).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = match start_container(&spec) {
                Ok(never) => match never {},
                Err((code, e)) => {
                    eprintln!("mocker: {e}");
                    code
                }
            };
            std::process::exit(code);
        }
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("mocker: waiting for the container: {e}");
                    return EXIT_RUNTIME_FAILED;
                }
            }
        },
        Err(e) => {
            eprintln!("mocker: fork: {e}");
            EXIT_RUNTIME_FAILED
        }
    }
}

type Failure = (i32, Error);

fn fail(context: &str) -> impl Fn(nix::errno::Errno) -> Failure + '_ {
    move |e| (EXIT_RUNTIME_FAILED, Error::Runtime(format!("{context}: {e}")))
}

/// As PID 1 of the new PID namespace: build the root filesystem, enter it,
/// become the configured user and exec. Returns only on failure.
fn start_container(spec: &InitSpec) -> std::result::Result<std::convert::Infallible, Failure> {
    // Nothing we mount may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(fail("making mounts private"))?;
    std::env::set_current_dir(&spec.overlay.base).map_err(|e| {
        (
            EXIT_RUNTIME_FAILED,
            Error::Runtime(format!("entering {}: {e}", spec.overlay.base.display())),
        )
    })?;
    mount(
        Some("overlay"),
        &spec.rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(spec.overlay.options().as_str()),
    )
    .map_err(fail("mounting the root filesystem"))?;
    let root = safefs::open_root(&spec.rootfs).map_err(|e| {
        (
            EXIT_RUNTIME_FAILED,
            Error::Runtime(format!("opening the root filesystem: {e}")),
        )
    })?;

    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_in(&root, "proc", "proc", "proc", nosuid_nodev_noexec, None)?;
    mount_in(
        &root,
        "dev",
        "tmpfs",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    populate_dev(&root)?;
    mount_in(
        &root,
        "dev/pts",
        "devpts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    mount_in(
        &root,
        "dev/shm",
        "shm",
        "tmpfs",
        nosuid_nodev_noexec,
        Some("mode=1777,size=65536k"),
    )?;
    mount_in(&root, "dev/mqueue", "mqueue", "mqueue", nosuid_nodev_noexec, None)?;
    mount_in(
        &root,
        "sys",
        "sysfs",
        "sysfs",
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        None,
    )?;

    // pivot_root(".", ".") stacks the old root under the new one; detaching
    // it leaves no path back to the host (never a plain chroot).
    nix::unistd::fchdir(root.as_fd()).map_err(fail("entering the root filesystem"))?;
    nix::unistd::pivot_root(".", ".").map_err(fail("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail("detaching the old root"))?;
    nix::unistd::chdir("/").map_err(fail("chdir /"))?;

    let process = &spec.process;
    nix::unistd::sethostname(&process.hostname).map_err(fail("setting the hostname"))?;
    std::fs::create_dir_all(&process.cwd)
        .and_then(|_| std::env::set_current_dir(&process.cwd))
        .map_err(|e| {
            (
                EXIT_RUNTIME_FAILED,
                Error::Runtime(format!("working directory {}: {e}", process.cwd)),
            )
        })?;
    nix::unistd::setgroups(&[]).map_err(fail("setgroups"))?;
    nix::unistd::setgid(Gid::from_raw(process.gid)).map_err(fail("setgid"))?;
    nix::unistd::setuid(Uid::from_raw(process.uid)).map_err(fail("setuid"))?;

    let program = resolve(&process.args[0], &process.env)?;
    let cstr =
        |s: &str| CString::new(s).map_err(|_| (EXIT_RUNTIME_FAILED, Error::Runtime(format!("NUL byte in {s:?}"))));
    let args = process
        .args
        .iter()
        .map(|a| cstr(a))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let env = process
        .env
        .iter()
        .map(|e| cstr(e))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let path = cstr(&program.to_string_lossy())?;
    let err = nix::unistd::execve(&path, &args, &env).unwrap_err();
    let code = match err {
        nix::errno::Errno::ENOENT => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_INVOKE,
    };
    Err((code, Error::Runtime(format!("cannot run {:?}: {err}", process.args[0]))))
}

/// Mount onto `rel` inside the new root, resolved by fd (never by a path a
/// symlink in the image could redirect onto the host: CVE-2021-30465).
fn mount_in(
    root: &std::os::fd::OwnedFd,
    rel: &str,
    source: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> std::result::Result<(), Failure> {
    let target = safefs::mkdir_all_in(root.as_fd(), Path::new(rel)).map_err(|(c, e)| {
        (
            EXIT_RUNTIME_FAILED,
            Error::Runtime(format!("mount point /{rel} ({c}): {e}")),
        )
    })?;
    let via_fd = format!("/proc/self/fd/{}", target.as_raw_fd());
    mount(Some(source), via_fd.as_str(), Some(fstype), flags, data).map_err(|e| {
        (
            EXIT_RUNTIME_FAILED,
            Error::Runtime(format!("mounting {fstype} on /{rel}: {e}")),
        )
    })
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
    Err((
        EXIT_NOT_FOUND,
        Error::Runtime(format!("{program:?}: executable file not found in $PATH")),
    ))
}
