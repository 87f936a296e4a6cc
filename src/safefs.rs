//! File operations confined to a directory tree, through file descriptors.
//! Paths inside the tree are resolved with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`, so no `..`, absolute path or symlink (planted by
//! a layer or not) can reach outside it; the last component is always
//! handled with an `*at` call relative to its parent's fd, never followed.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Extended attributes: (name, value), both raw bytes.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// overlayfs' own xattrs (opaque, redirect, origin, …): a layer must not
/// forge them, and an export or a copy never carries them.
pub const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";

const DIR_FLAGS: OFlag = OFlag::O_DIRECTORY.union(OFlag::O_RDONLY).union(OFlag::O_CLOEXEC);

pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(openat(nix::fcntl::AT_FDCWD, path, DIR_FLAGS, Mode::empty())?)
}

fn resolve(root: BorrowedFd, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how)
}

/// Open directory `rel` (resolved inside `root`).
pub fn open_dir_in(root: BorrowedFd, rel: &Path) -> nix::Result<OwnedFd> {
    resolve(root, rel, DIR_FLAGS)
}

/// Open directory `rel` below `root` through directories only: no symlink
/// on the way (overlayfs merges directories, never what a symlink names).
pub fn open_dir_beneath(root: BorrowedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(DIR_FLAGS | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    openat2(root, rel, how)
}

/// A layer's deletion of NAME: an empty `.wh.NAME` (OCI image spec).
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// A layer's mark that a directory hides the ones below (OCI image spec).
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What overlayfs takes for a whiteout: a 0/0 character device.
pub fn is_whiteout(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR && st.st_rdev == 0
}

/// Whether directory `fd` is marked opaque (`trusted.overlay.opaque=y`).
pub fn is_opaque(fd: BorrowedFd) -> bool {
    let mut value = [0u8; 2];
    // SAFETY: valid fd, NUL-terminated name, a live buffer's pointer/length.
    let n = unsafe {
        nix::libc::fgetxattr(
            fd.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

/// Open directory `rel` inside `root`, creating missing components (0755).
/// On failure returns the component that could not be made a directory.
pub fn mkdir_all_in(root: BorrowedFd, rel: &Path) -> Result<OwnedFd, (String, Errno)> {
    mkdir_all_in_tracking(root, rel, &mut Vec::new())
}

/// `mkdir_all_in`, appending the directories it had to create to `created`.
pub fn mkdir_all_in_tracking(
    root: BorrowedFd,
    rel: &Path,
    created: &mut Vec<std::path::PathBuf>,
) -> Result<OwnedFd, (String, Errno)> {
    match open_dir_in(root, rel) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err((rel.display().to_string(), e)),
    }
    let mut current = open_dir_in(root, Path::new(".")).map_err(|e| (".".to_string(), e))?;
    let mut prefix = std::path::PathBuf::new();
    for component in rel.components() {
        prefix.push(component);
        current = match open_dir_in(root, &prefix) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let name = component.as_os_str();
                mkdirat(current.as_fd(), name, Mode::from_bits_truncate(0o755))
                    .map_err(|e| (prefix.display().to_string(), e))?;
                created.push(prefix.clone());
                open_dir_in(root, &prefix).map_err(|e| (prefix.display().to_string(), e))?
            }
            Err(e) => return Err((prefix.display().to_string(), e)),
        };
    }
    Ok(current)
}

/// What an entry made in a directory inherits from it, beyond what the
/// creating call asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Inherit {
    /// The directory's group: a new entry gets it instead of ours when the
    /// directory is setgid or the filesystem is mounted `grpid`.
    pub gid: u32,
    /// A new directory in it is setgid too.
    pub setgid: bool,
    /// A default ACL: a new entry's mode comes from it, not from the umask.
    pub default_acl: bool,
}

impl Inherit {
    /// Read from the directory itself.
    pub fn of(dir: BorrowedFd) -> nix::Result<Inherit> {
        let st = nix::sys::stat::fstat(dir)?;
        // SAFETY: valid fd, NUL-terminated name, a null buffer of length 0
        // (asks only whether the attribute exists).
        let n = unsafe {
            nix::libc::fgetxattr(
                dir.as_raw_fd(),
                c"system.posix_acl_default".as_ptr(),
                std::ptr::null_mut(),
                0,
            )
        };
        // No attribute, or none possible here: no default ACL. Any other
        // answer counts as one, which only costs a chmod later.
        let default_acl = n >= 0 || !matches!(Errno::last(), Errno::ENODATA | Errno::EOPNOTSUPP);
        Ok(Inherit {
            gid: st.st_gid,
            setgid: st.st_mode & nix::libc::S_ISGID != 0,
            default_acl,
        })
    }
}

/// The most directories a `DirPath` keeps open: layers unpack in parallel
/// (one per core), and 16 of them must stay well under a soft limit of
/// 1024 fds. Deeper paths are opened the long way.
const MAX_OPEN_DIRS: usize = 32;

/// A directory opened inside a root, and what entries made in it inherit.
pub struct OpenDir {
    pub fd: OwnedFd,
    pub inherit: Inherit,
}

/// The directories along the path last resolved inside one root, kept
/// open: a tar stream lists a directory's entries together, so most entries
/// find their parent here instead of resolving it again (openat2, fstat and
/// close per entry). A path resolves to the same directory for as long as
/// none of its components is removed or replaced, so whoever removes or
/// replaces anything under the root, or changes a directory's owner, mode
/// or ACL, calls `clear` (or `keep`s the changed directory again).
#[derive(Default)]
pub struct DirPath {
    /// Each path a strict ancestor of the next.
    open: Vec<(std::path::PathBuf, std::rc::Rc<OpenDir>)>,
}

impl DirPath {
    pub fn clear(&mut self) {
        self.open.clear();
    }

    /// Drop what is not `rel` or an ancestor of it.
    fn truncate_to(&mut self, rel: &Path) {
        while self.open.last().is_some_and(|(path, _)| !rel.starts_with(path)) {
            self.open.pop();
        }
    }

    /// Keep directory `rel`, just made or changed, open (with what it
    /// passes on) for the entries inside it that come next.
    pub fn keep(&mut self, rel: &Path, dir: OpenDir) {
        self.truncate_to(rel);
        if let Some((top, _)) = self.open.last() {
            if top == rel {
                self.open.pop();
            }
        }
        if self.open.len() < MAX_OPEN_DIRS
            && self
                .open
                .last()
                .is_some_and(|(top, _)| Some(top.as_path()) == rel.parent())
        {
            self.open.push((rel.to_path_buf(), std::rc::Rc::new(dir)));
        }
    }

    /// Directory `rel` inside `root`, as `mkdir_all_in_tracking` opens it
    /// (creating missing components, listed in `created`), but component by
    /// component from the deepest one already open. A component that is
    /// not a plain directory (a symlink) goes the long way: resolved inside
    /// the root by `mkdir_all_in_tracking`.
    pub fn open_or_make(
        &mut self,
        root: BorrowedFd,
        rel: &Path,
        created: &mut Vec<std::path::PathBuf>,
    ) -> Result<std::rc::Rc<OpenDir>, (String, Errno)> {
        let inspect = |fd: OwnedFd, path: &Path| match Inherit::of(fd.as_fd()) {
            Ok(inherit) => Ok(std::rc::Rc::new(OpenDir { fd, inherit })),
            Err(e) => Err((path.display().to_string(), e)),
        };
        self.truncate_to(rel);
        if self.open.is_empty() {
            let fd = open_dir_in(root, Path::new("")).map_err(|e| (".".to_string(), e))?;
            self.open
                .push((std::path::PathBuf::new(), inspect(fd, Path::new("."))?));
        }
        let mut prefix = self.open.last().map(|(p, _)| p.clone()).unwrap_or_default();
        let Ok(rest) = rel.strip_prefix(&prefix).map(Path::to_path_buf) else {
            return Err((rel.display().to_string(), Errno::EINVAL));
        };
        for component in rest.components() {
            let Some((_, top)) = self.open.last() else { break };
            let top = top.fd.as_fd();
            prefix.push(component);
            let name = Path::new(component.as_os_str());
            let fd = match open_child_dir(top, name) {
                Err(Errno::ENOENT) if mkdirat(top, name, Mode::from_bits_truncate(0o755)).is_ok() => {
                    created.push(prefix.clone());
                    open_child_dir(top, name)
                }
                other => other,
            };
            match fd {
                // Bounded: a layer's deep tree must not take all our fds.
                Ok(fd) if self.open.len() < MAX_OPEN_DIRS => {
                    let dir = inspect(fd, &prefix)?;
                    self.open.push((prefix.clone(), dir));
                }
                _ => {
                    let fd = mkdir_all_in_tracking(root, rel, created)?;
                    return inspect(fd, rel);
                }
            }
        }
        match self.open.last() {
            Some((_, dir)) => Ok(dir.clone()),
            None => Err((rel.display().to_string(), Errno::ENOENT)),
        }
    }
}

/// lstat of `name` in `dir`; None when it does not exist.
pub fn lstat_at(dir: BorrowedFd, name: &Path) -> nix::Result<Option<FileStat>> {
    match fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

/// Remove `name` from `dir` whatever it is; directories with everything in
/// them. Never follows a symlink, and walks with an explicit stack: a layer
/// can build trees far deeper than a thread's stack would allow recursion.
/// What another remover took first (ENOENT) counts as removed.
pub fn remove_at(dir: BorrowedFd, name: &Path) -> nix::Result<()> {
    remove_at_measured(dir, name).map(|_| ())
}

/// `remove_at`, returning the bytes of file data it freed: each regular
/// file's size when its last link goes (what another remover took is not
/// counted).
pub fn remove_at_measured(dir: BorrowedFd, name: &Path) -> nix::Result<u64> {
    let gone = |r: nix::Result<()>| match r {
        Err(Errno::ENOENT) => Ok(()),
        other => other,
    };
    let unlink_file = |dir: BorrowedFd, name: &Path, st: &FileStat| -> nix::Result<u64> {
        let freed = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG && st.st_nlink == 1 {
            st.st_size as u64
        } else {
            0
        };
        match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(freed),
            Err(Errno::ENOENT) => Ok(0),
            Err(e) => Err(e),
        }
    };
    let mut freed = 0;
    let Some(st) = lstat_at(dir, name)? else { return Ok(0) };
    if !is_dir(&st) {
        return unlink_file(dir, name, &st);
    }
    // Each frame: an open directory and the name it has in its parent.
    let top = match openat(dir, name, DIR_FLAGS | OFlag::O_NOFOLLOW, Mode::empty()) {
        Err(Errno::ENOENT) => return Ok(0),
        other => other?,
    };
    let mut stack: Vec<(OwnedFd, std::ffi::OsString)> = vec![(top, name.as_os_str().to_owned())];
    while let Some((current, _)) = stack.last() {
        let mut subdir = None;
        {
            let mut listing = nix::dir::Dir::from_fd(nix::unistd::dup(current.as_fd())?)?;
            for entry in listing.iter() {
                let entry = entry?;
                let entry_name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes()).to_owned();
                if entry_name == "." || entry_name == ".." {
                    continue;
                }
                let path = Path::new(&entry_name);
                match lstat_at(current.as_fd(), path)? {
                    Some(st) if is_dir(&st) => {
                        subdir = Some(entry_name);
                        break;
                    }
                    Some(st) => freed += unlink_file(current.as_fd(), path, &st)?,
                    None => {}
                }
            }
        }
        match subdir {
            // Descend; the directory is revisited once its child is gone.
            Some(child) => match openat(
                current.as_fd(),
                Path::new(&child),
                DIR_FLAGS | OFlag::O_NOFOLLOW,
                Mode::empty(),
            ) {
                // Taken by another remover meanwhile: list this one again.
                Err(Errno::ENOENT) => {}
                fd => stack.push((fd?, child)),
            },
            None => {
                let Some((_, done)) = stack.pop() else { break };
                match stack.last() {
                    Some((parent, _)) => gone(unlinkat(parent.as_fd(), Path::new(&done), UnlinkatFlags::RemoveDir))?,
                    None => gone(unlinkat(dir, name, UnlinkatFlags::RemoveDir))?,
                }
            }
        }
    }
    Ok(freed)
}

/// Lock what was just made at `path` (a file or directory that a sweep
/// deletes once it finds it unlocked), waiting out a sweep's brief hold;
/// None if a sweep took it before we locked it (make another).
pub fn lock_fresh(path: &Path) -> io::Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::open(path)?;
    let lock =
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;
    let ours = lock.metadata()?;
    let still = std::fs::metadata(path).is_ok_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev());
    Ok(still.then_some(lock))
}

/// Remove the tree at `path` (its parent resolved normally: for trees the
/// caller owns, such as snapshot directories).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    remove_tree_measured(path).map(|_| ())
}

/// `remove_tree`, returning the bytes of file data freed (see `remove_at_measured`).
pub fn remove_tree_measured(path: &Path) -> io::Result<u64> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot remove a root"));
    };
    let parent = match open_root(parent) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    Ok(remove_at_measured(parent.as_fd(), Path::new(name))?)
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in name"))
}

/// Set an extended attribute through an open (non-O_PATH) fd.
pub fn set_xattr_fd(fd: BorrowedFd, key: impl AsRef<[u8]>, value: &[u8]) -> io::Result<()> {
    let key = cstring(key.as_ref())?;
    // SAFETY: valid fd, NUL-terminated key, value pointer/length from a slice.
    let rc = unsafe { nix::libc::fsetxattr(fd.as_raw_fd(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Set an extended attribute on `name` in `dir` without following it, whatever
/// it is (symlinks included): `lsetxattr` on the path through the parent's
/// fd, so the parent is the pinned directory and only the final component,
/// never followed, is looked up.
pub fn set_xattr_at(dir: BorrowedFd, name: &Path, key: &str, value: &[u8]) -> io::Result<()> {
    if name.as_os_str().as_bytes().contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a single path component",
        ));
    }
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_os_str().as_bytes());
    let path = cstring(&path)?;
    let key = cstring(key.as_bytes())?;
    // SAFETY: NUL-terminated strings and a slice's pointer/length.
    let rc = unsafe { nix::libc::lsetxattr(path.as_ptr(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Open directory `rel` inside `root`, its parents resolved inside the root
/// and its last component not followed (`rel` empty: the root itself), in
/// one openat2: O_NOFOLLOW applies to the last component only.
pub fn open_dir_nofollow_in(root: BorrowedFd, rel: &Path) -> nix::Result<OwnedFd> {
    resolve(root, rel, DIR_FLAGS | OFlag::O_NOFOLLOW)
}

/// Open directory `name` in `dir`, not following it if it is a symlink.
pub fn open_child_dir(dir: BorrowedFd, name: &Path) -> nix::Result<OwnedFd> {
    openat(dir, name, DIR_FLAGS | OFlag::O_NOFOLLOW, Mode::empty())
}

/// Every extended attribute (name, value) of the inode open as `fd`.
pub fn xattrs_fd(fd: BorrowedFd) -> io::Result<Xattrs> {
    let raw = fd.as_raw_fd();
    read_xattrs(
        // SAFETY: valid fd; pointer and length of a live buffer.
        |buf| unsafe { nix::libc::flistxattr(raw, buf.as_mut_ptr().cast(), buf.len()) },
        // SAFETY: as above, and a NUL-terminated name.
        |name, buf| unsafe { nix::libc::fgetxattr(raw, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) },
    )
}

/// Every extended attribute of `name` in `dir`, not following it (symlinks
/// and device nodes, which cannot be opened for reading safely). The path
/// goes through the directory's fd, so only the last component is looked up.
pub fn xattrs_at(dir: BorrowedFd, name: &Path) -> io::Result<Xattrs> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_os_str().as_bytes());
    let path = cstring(&path)?;
    read_xattrs(
        // SAFETY: NUL-terminated path; pointer and length of a live buffer.
        |buf| unsafe { nix::libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) },
        // SAFETY: as above, and a NUL-terminated name.
        |key, buf| unsafe { nix::libc::lgetxattr(path.as_ptr(), key.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) },
    )
}

/// The list-then-get loop shared by both forms. A filesystem without
/// xattrs has none; one removed between list and get is left out.
fn read_xattrs(list: impl Fn(&mut [u8]) -> isize, get: impl Fn(&CString, &mut [u8]) -> isize) -> io::Result<Xattrs> {
    let names = match sized(list) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => return Ok(Vec::new()),
        other => other?,
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let key = cstring(name)?;
        match sized(|buf| get(&key, buf)) {
            Ok(value) => out.push((name.to_vec(), value)),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Ask for the size, then fill; again if it grew in between (ERANGE).
fn sized(call: impl Fn(&mut [u8]) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let size = call(&mut []);
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        let got = call(&mut buf);
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(nix::libc::ERANGE) {
            return Err(err);
        }
    }
}

/// Copy the extended attributes of directory `src` onto `dst`, except
/// overlayfs' own (`trusted.overlay.*`): an opaque marker belongs to one layer.
pub fn copy_xattrs(src: BorrowedFd, dst: BorrowedFd) -> io::Result<()> {
    for (name, value) in xattrs_fd(src)? {
        if !name.starts_with(OVERLAY_XATTR_PREFIX.as_bytes()) {
            set_xattr_fd(dst, &name, &value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_stays_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root_dir.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root_dir.path().join("up")).unwrap();
        let root = open_root(root_dir.path()).unwrap();
        // The absolute symlink resolves to a path inside the root, which does
        // not exist: refused, and nothing appears outside.
        assert!(mkdir_all_in(root.as_fd(), Path::new("escape/made")).is_err());
        // `..` past the root stays at the root.
        mkdir_all_in(root.as_fd(), Path::new("up/other")).unwrap();
        mkdir_all_in(root.as_fd(), Path::new("../../dotdot")).unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(root_dir.path().join("other").is_dir());
        assert!(root_dir.path().join("dotdot").is_dir());
        // Once the target exists inside the root, the link leads there.
        let inside = root_dir.path().join(outside.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        mkdir_all_in(root.as_fd(), Path::new("escape/made")).unwrap();
        assert!(inside.join("made").is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn remove_at_does_not_follow_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(root_dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root_dir.path().join("d/link")).unwrap();
        let root = open_root(root_dir.path()).unwrap();
        remove_at(root.as_fd(), Path::new("d")).unwrap();
        assert!(!root_dir.path().join("d").exists());
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn removes_trees_deeper_than_a_stack() {
        let root_dir = tempfile::tempdir().unwrap();
        let root = open_root(root_dir.path()).unwrap();
        let mut dir = root_dir.path().join("deep");
        std::fs::create_dir(&dir).unwrap();
        // 3000 levels through chdir-free *at calls.
        let mut fd = open_dir_in(root.as_fd(), Path::new("deep")).unwrap();
        for _ in 0..3000 {
            mkdirat(fd.as_fd(), "d", Mode::from_bits_truncate(0o755)).unwrap();
            std::fs::write(format!("/proc/self/fd/{}/f", fd.as_raw_fd()), b"x").unwrap();
            fd = openat(fd.as_fd(), "d", DIR_FLAGS, Mode::empty()).unwrap();
        }
        dir.push("d");
        remove_tree(&root_dir.path().join("deep")).unwrap();
        assert!(!root_dir.path().join("deep").exists());
    }
}
