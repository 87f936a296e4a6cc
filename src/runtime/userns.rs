//! User namespaces (`--userns-remap`, as docker's): container ids 0..N map
//! to a subordinate range of the host's from /etc/subuid and /etc/subgid, so
//! a process that escapes is nobody on the host. The image's layers stay
//! shared and owned by root on disk: PID 1 sees them through idmapped
//! mounts. The user namespace (and the network namespace it owns) are made
//! by the monitor before the clone; PID 1 joins the network namespace first
//! and the user namespace last, after its mounts, which need the host's root.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::mount::Overlay;

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error(
        "--userns-remap {user}: no subordinate {kind} range for it in {file}: add a line such as `{user}:100000:65536`"
    )]
    NoRange {
        user: String,
        kind: &'static str,
        file: String,
    },
    #[error("--userns-remap {user}: the {kind} range {start}:{count} is too small or reaches the host's root (needs 65536 ids above 0)")]
    BadRange {
        user: String,
        kind: &'static str,
        start: u32,
        count: u32,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("making the container's user namespace ({step}): {source}")]
    Create {
        step: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("the container's user namespace has no room for another (user.max_user_namespaces is reached): raise it with sysctl")]
    TooMany,
    #[error("making the container's network namespace inside its user namespace failed")]
    Netns,
    #[error("idmapped mount of {path} (the kernel or filesystem may not support idmapped mounts; recreate the container with --userns host): {source}")]
    Idmap {
        path: String,
        #[source]
        source: nix::errno::Errno,
    },
}

/// Container ids `0..size` are host ids `host..host + size`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdRange {
    pub host: u32,
    pub size: u32,
}

/// The uid and gid mappings of a container's user namespace.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdMapping {
    pub uid: IdRange,
    pub gid: IdRange,
}

/// The ids a container gets, as docker's userns-remap gives them: 65536.
const CONTAINER_IDS: u32 = 65536;

impl IdMapping {
    /// `USER[:GROUP]` looked up in /etc/subuid and /etc/subgid.
    pub fn for_user(spec: &str) -> Result<IdMapping, UsernsError> {
        Self::from_files(spec, Path::new("/etc/subuid"), Path::new("/etc/subgid"))
    }

    fn from_files(spec: &str, subuid: &Path, subgid: &Path) -> Result<IdMapping, UsernsError> {
        let (user, group) = spec.split_once(':').unwrap_or((spec, spec));
        Ok(IdMapping {
            uid: range(user, "uid", subuid)?,
            gid: range(group, "gid", subgid)?,
        })
    }

    /// The host uid and gid that container root is.
    pub fn root(&self) -> (u32, u32) {
        (self.uid.host, self.gid.host)
    }

    fn map_line(range: IdRange) -> String {
        format!("0 {} {}\n", range.host, range.size)
    }
}

/// The first range of `name` (a name or a number) in a subid file.
fn range(name: &str, kind: &'static str, file: &Path) -> Result<IdRange, UsernsError> {
    let text = std::fs::read_to_string(file).map_err(|source| UsernsError::Read {
        path: file.display().to_string(),
        source,
    })?;
    let found = text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        (owner == name).then(|| Some((start.parse::<u32>().ok()?, count.parse::<u32>().ok()?)))?
    });
    let Some((start, count)) = found else {
        return Err(UsernsError::NoRange {
            user: name.to_string(),
            kind,
            file: file.display().to_string(),
        });
    };
    if start == 0 || count < CONTAINER_IDS || start.checked_add(CONTAINER_IDS).is_none() {
        return Err(UsernsError::BadRange {
            user: name.to_string(),
            kind,
            start,
            count,
        });
    }
    Ok(IdRange {
        host: start,
        size: CONTAINER_IDS,
    })
}

/// A container's user namespace and, unless it shares the host's network,
/// a network namespace owned by it (so the container's root holds its
/// network capabilities there).
pub struct Namespaces {
    pub user: OwnedFd,
    pub net: Option<OwnedFd>,
}

/// Make the namespaces: a helper child unshares them, we write its maps,
/// keep fds to them, and let it exit. Call while single-threaded.
pub fn create(mapping: &IdMapping, with_net: bool) -> Result<Namespaces, UsernsError> {
    use nix::sched::CloneFlags;
    let fail = |step: &'static str| move |source| UsernsError::Create { step, source };
    let (go_read, go_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(fail("pipe"))?;
    let (done_read, done_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(fail("pipe"))?;
    let (go_raw, done_raw) = (go_read.as_raw_fd(), done_write.as_raw_fd());
    let mut stack = vec![0u8; 64 * 1024];
    let child = Box::new(move || -> isize {
        // SAFETY: fds copied into this child by the clone, used only here.
        let (go, done) = unsafe { (BorrowedFd::borrow_raw(go_raw), BorrowedFd::borrow_raw(done_raw)) };
        super::close_all_but(&[go_raw, done_raw]);
        let mut byte = [0u8; 1];
        // The maps are written, then (once) our network namespace made,
        // then we wait for EOF: our parent has what it needs.
        if nix::unistd::read(go, &mut byte) != Ok(1) {
            return 1;
        }
        if with_net && nix::sched::unshare(CloneFlags::CLONE_NEWNET).is_err() {
            return 1;
        }
        let _ = nix::unistd::write(done, b"1");
        let _ = nix::unistd::read(go, &mut byte);
        0
    });
    // SAFETY: single-threaded caller; the child only reads and writes pipes.
    let pid = unsafe {
        nix::sched::clone(
            child,
            &mut stack,
            CloneFlags::CLONE_NEWUSER,
            Some(nix::sys::signal::Signal::SIGCHLD as i32),
        )
    }
    .map_err(|e| match e {
        nix::errno::Errno::ENOSPC => UsernsError::TooMany,
        e => fail("clone")(e),
    })?;
    drop(done_write);
    let result = (|| {
        let write = |file: &str, text: String| {
            std::fs::write(format!("/proc/{pid}/{file}"), text).map_err(|e| UsernsError::Create {
                step: "writing the id maps",
                source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)),
            })
        };
        write("uid_map", IdMapping::map_line(mapping.uid))?;
        write("gid_map", IdMapping::map_line(mapping.gid))?;
        nix::unistd::write(&go_write, b"1").map_err(fail("releasing the helper"))?;
        let mut byte = [0u8; 1];
        if nix::unistd::read(&done_read, &mut byte) != Ok(1) {
            return Err(UsernsError::Netns);
        }
        let open = |kind: &str| -> Result<OwnedFd, UsernsError> {
            let path = format!("/proc/{pid}/ns/{kind}");
            let fd = nix::fcntl::open(
                path.as_str(),
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(fail("opening the namespaces"))?;
            Ok(fd)
        };
        Ok(Namespaces {
            user: open("user")?,
            net: if with_net { Some(open("net")?) } else { None },
        })
    })();
    drop(go_write);
    let _ = nix::sys::wait::waitpid(pid, None);
    result
}

/// What the monitor prepared for a container in a user namespace : the namespaces, and its image layers idmapped,
/// topmost first.
pub struct UsernsFds {
    pub user: std::os::fd::OwnedFd,
    pub net: Option<std::os::fd::OwnedFd>,
    pub lowers: Vec<std::os::fd::OwnedFd>,
}

impl UsernsFds {
    pub fn raw_fds(&self) -> Vec<std::os::fd::RawFd> {
        std::iter::once(&self.user)
            .chain(&self.net)
            .chain(&self.lowers)
            .map(|fd| fd.as_raw_fd())
            .collect()
    }

    /// The overlay over the idmapped layers, reached through our fds.
    pub(crate) fn overlay(&self, overlay: &Overlay) -> Overlay {
        Overlay {
            lower: self
                .lowers
                .iter()
                .map(|fd| format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .collect(),
            ..overlay.clone()
        }
    }
}
/// Everything PID 1 of a container with `mapping` needs: its namespaces
/// and the layers of `overlay` idmapped into the user namespace. Call while
/// single-threaded.
pub fn prepare(mapping: &IdMapping, overlay: &Overlay, with_net: bool) -> Result<UsernsFds, UsernsError> {
    let namespaces = create(mapping, with_net)?;
    let lowers = overlay
        .lower
        .iter()
        .map(|lower| idmapped(&overlay.base.join(lower), namespaces.user.as_fd()))
        .collect::<Result<_, _>>()?;
    Ok(UsernsFds {
        user: namespaces.user,
        net: namespaces.net,
        lowers,
    })
}

/// A detached copy of the mount at `path` whose files appear through
/// `userns`'s mapping (host root's files as the container's root's): what
/// lets every container share one copy of a layer.
pub fn idmapped(path: &Path, userns: BorrowedFd) -> Result<OwnedFd, UsernsError> {
    use nix::libc;
    let fail = |source| UsernsError::Idmap {
        path: path.display().to_string(),
        source,
    };
    let c_path =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| fail(nix::errno::Errno::EINVAL))?;
    // SAFETY: open_tree(2) with a valid path; returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(fail(nix::errno::Errno::last()));
    }
    // SAFETY: the kernel just returned this fd to us.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr(2) on our detached tree with a valid attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_fd().as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc != 0 {
        return Err(fail(nix::errno::Errno::last()));
    }
    Ok(tree)
}

/// Become the container's root in its user namespace (joined last: from
/// here on our capabilities hold only inside it).
pub fn enter(userns: BorrowedFd) -> nix::Result<()> {
    nix::sched::setns(userns, nix::sched::CloneFlags::CLONE_NEWUSER)?;
    become_root()
}

/// After joining a user namespace our ids are unmapped there; files made
/// before a setuid would belong to the host's root.
pub fn become_root() -> nix::Result<()> {
    let root_gid = nix::unistd::Gid::from_raw(0);
    let root_uid = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid)?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid)
}

impl From<UsernsError> for crate::Error {
    fn from(e: UsernsError) -> Self {
        crate::Error::Module(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_come_from_the_subid_files() {
        let dir = tempfile::tempdir().unwrap();
        let subuid = dir.path().join("subuid");
        let subgid = dir.path().join("subgid");
        std::fs::write(&subuid, "alice:100000:65536\nremap:300000:70000\n").unwrap();
        std::fs::write(&subgid, "remap:400000:65536\nstaff:500000:65536\n").unwrap();
        let m = IdMapping::from_files("remap", &subuid, &subgid).unwrap();
        assert_eq!(
            m.uid,
            IdRange {
                host: 300000,
                size: 65536
            }
        );
        assert_eq!(
            m.gid,
            IdRange {
                host: 400000,
                size: 65536
            }
        );
        assert_eq!(m.root(), (300000, 400000));
        let m = IdMapping::from_files("remap:staff", &subuid, &subgid).unwrap();
        assert_eq!(m.gid.host, 500000);
        let err = IdMapping::from_files("bob", &subuid, &subgid).unwrap_err().to_string();
        assert!(
            err.contains("no subordinate uid range") && err.contains("bob:100000:65536"),
            "{err}"
        );
        std::fs::write(&subuid, "small:100000:1000\nzero:0:65536\n").unwrap();
        for user in ["small", "zero"] {
            let err = IdMapping::from_files(user, &subuid, &subgid).unwrap_err().to_string();
            assert!(err.contains("too small or reaches the host's root"), "{err}");
        }
        assert_eq!(IdMapping::map_line(IdRange { host: 7, size: 9 }), "0 7 9\n");
    }
}
