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
pub fn set_xattr_fd(fd: BorrowedFd, key: &str, value: &[u8]) -> io::Result<()> {
    let key = cstring(key.as_bytes())?;
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
/// and its last component not followed (`rel` empty: the root itself).
pub fn open_dir_nofollow_in(root: BorrowedFd, rel: &Path) -> nix::Result<OwnedFd> {
    match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = open_dir_in(root, parent)?;
            openat(parent.as_fd(), name, DIR_FLAGS | OFlag::O_NOFOLLOW, Mode::empty())
        }
        _ => open_dir_in(root, rel),
    }
}

/// Call `f` with a buffer `f` fills, sized by a first call with an empty one
/// (the xattr calls' protocol); retried if the value grew in between.
fn xattr_buffer(mut f: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let size = f(&mut []);
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        match f(&mut buf) {
            n if n >= 0 => {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            _ if Errno::last() == Errno::ERANGE => continue,
            _ => return Err(io::Error::last_os_error()),
        }
    }
}

/// Copy the extended attributes of directory `src` onto `dst`, except
/// overlayfs' own (`trusted.overlay.*`): an opaque marker belongs to one layer.
pub fn copy_xattrs(src: BorrowedFd, dst: BorrowedFd) -> io::Result<()> {
    // SAFETY: valid fd; the buffer pointer/length come from a slice.
    let names =
        xattr_buffer(|buf| unsafe { nix::libc::flistxattr(src.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let key = cstring(name)?;
        // SAFETY: valid fd, NUL-terminated key, buffer from a slice.
        let value = xattr_buffer(|buf| unsafe {
            nix::libc::fgetxattr(src.as_raw_fd(), key.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        })?;
        // SAFETY: valid fd, NUL-terminated key, value pointer/length from a slice.
        let rc = unsafe { nix::libc::fsetxattr(dst.as_raw_fd(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
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
