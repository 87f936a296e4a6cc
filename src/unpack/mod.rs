//! Applying one layer blob to an empty snapshot directory, in one streaming
//! pass: decompress (by magic bytes, else media type), hash the uncompressed
//! stream (it must equal the config's diff_id), read tar entries with
//! `tarstream` and apply each one ourselves through `safefs` — no tar
//! library's `unpack`: they write devices as regular files, know nothing of
//! whiteouts and resolve absolute symlinks against the host's `/`.
//!
//! Layer rules (OCI image-spec "Applying Changesets"), written for overlayfs:
//! a whiteout `.wh.NAME` becomes a 0/0 character device NAME; an opaque
//! marker `.wh..wh..opq` becomes `trusted.overlay.opaque=y` on its directory.
//! Since each layer gets its own directory, "lower" content is never touched,
//! and what the directory already holds is this layer's own: a whiteout
//! leaves it (a directory becomes opaque), whatever the order of the entries.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, futimens, makedev, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::Compression;
use crate::safefs;
use crate::tarstream::{self, Entry, Kind, Sparse, TarError};

pub mod decode;

use crate::safefs::{OPAQUE_MARKER, WHITEOUT_PREFIX};
/// AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`, …) other than the opaque marker.
const AUFS_META_PREFIX: &str = ".wh..wh.";
/// Longer or deeper paths are refused: no real image needs them, and they
/// make every later lookup and the eventual deletion more expensive.
const MAX_PATH_BYTES: usize = 4096;
const MAX_PATH_DEPTH: usize = 256;
/// Files at least this big start their writeback as soon as written (see
/// `start_writeback`).
const WRITEBACK_FROM: u64 = 128 << 10;
/// Bytes per read and write when copying file data.
const COPY_BUFFER: usize = 128 << 10;

/// What unpacking may consume.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bound on the uncompressed stream (and so on what lands on disk).
    pub max_unpacked_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_unpacked_bytes: 1 << 40,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Unpacked {
    pub diff_id: Digest,
    /// Bytes of regular-file data written.
    pub file_bytes: u64,
    pub entries: u64,
    /// Directories the layer implies but does not list (`a/` for `a/b`).
    /// They stand for directories of lower layers, whose metadata the
    /// snapshotter copies in once the lower layers are there.
    pub implicit_dirs: Vec<PathBuf>,
}

/// Unpack `blob` into the empty directory `target`. On error `target` is
/// left for the caller to delete; nothing outside it is ever touched.
pub fn unpack_layer(
    blob: impl Read + Send,
    compression: Compression,
    target: &Path,
    diff_id: &Digest,
    limits: Limits,
    layer: &str,
) -> Result<Unpacked> {
    let fail = |reason: String| Error::Layer {
        layer: layer.to_string(),
        reason,
    };
    let root = safefs::open_root(target).map_err(|e| fail(format!("opening {}: {e}", target.display())))?;
    let (applied, decoder) = std::thread::scope(|scope| {
        let (stream, decoder) = decode::spawn(scope, blob, compression, limits.max_unpacked_bytes);
        // Dropping the stream on an error stops the decoder before the join.
        let applied = apply_stream(stream, root, limits, &fail);
        (applied, decoder.join())
    });
    let (applier, actual) = applied?;
    decoder.map_err(|_| fail("the decompressor panicked".into()))?;
    if &actual != diff_id {
        return Err(fail(format!(
            "uncompressed content hashes to {actual}, but the image config says its diff_id is {diff_id}"
        )));
    }
    Ok(Unpacked {
        diff_id: actual,
        file_bytes: applier.file_bytes,
        entries: applier.entries,
        implicit_dirs: applier.implicit_dirs(),
    })
}

/// Apply an uncompressed tar `stream` (see [`decode::channel`]) to the
/// empty directory `target`; its diff_id is what the stream hashed to.
/// The layer is one mocker wrote itself, but it is checked as any other.
pub fn apply_tar(stream: decode::Decoded, target: &Path, limits: Limits, layer: &str) -> Result<Unpacked> {
    let fail = |reason: String| Error::Layer {
        layer: layer.to_string(),
        reason,
    };
    let root = safefs::open_root(target).map_err(|e| fail(format!("opening {}: {e}", target.display())))?;
    let (applier, diff_id) = apply_stream(stream, root, limits, &fail)?;
    Ok(Unpacked {
        diff_id,
        file_bytes: applier.file_bytes,
        entries: applier.entries,
        implicit_dirs: applier.implicit_dirs(),
    })
}

/// Apply every entry of the tar `stream` under `root`, then read the stream
/// to its end (the diff_id covers the padding after the end marker too).
/// Returns the applier and the stream's digest.
fn apply_stream(
    mut stream: decode::Decoded,
    root: OwnedFd,
    limits: Limits,
    fail: &impl Fn(String) -> Error,
) -> Result<(Applier, Digest)> {
    let mut applier = Applier {
        root,
        dir_times: HashMap::new(),
        file_bytes: 0,
        hole_bytes: 0,
        entries: 0,
        // The root too, until the layer has a `./` entry.
        implicit: BTreeSet::from([PathBuf::new()]),
        whited: HashSet::new(),
        opaque: HashSet::new(),
        buf: vec![0; COPY_BUFFER],
        dirs: safefs::DirPath::default(),
        creator: Creator::current(),
    };
    let mut reader = tarstream::Reader::new(&mut stream);
    while let Some(entry) = reader.next_entry().map_err(|e| match e {
        // A limit or a read error (the decompressor, the size meter)
        // says what it is; the rest is a malformed archive.
        TarError::TooLong { .. } | TarError::Io(_) => fail(e.to_string()),
        _ => fail(format!("corrupt tar stream: {e}")),
    })? {
        // Holes take no disk, but a sparse bomb must not pass as small.
        applier.hole_bytes = applier
            .hole_bytes
            .saturating_add(entry.sparse.as_ref().map_or(0, Sparse::hole_bytes));
        // The entry's own data counts now, not at the next header: a last
        // entry must not pass unmeasured (a stream of `channel` has no meter).
        let reaches = reader
            .position()
            .saturating_add(entry.size)
            .saturating_add(applier.hole_bytes);
        if reaches > limits.max_unpacked_bytes {
            return Err(fail(format!(
                "unpacked size exceeds the limit of {} bytes (sparse files count at their full size)",
                limits.max_unpacked_bytes
            )));
        }
        applier.apply(&entry, &mut reader.data()).map_err(|e| match e {
            Error::Layer { .. } => e,
            other => fail(other.to_string()),
        })?;
        applier.entries += 1;
    }
    // What follows the end marker is hashed too, and bounded by the same limit.
    let room = limits.max_unpacked_bytes.saturating_sub(reader.position());
    let trailing = io::copy(&mut reader.into_inner().take(room.saturating_add(1)), &mut io::sink())
        .map_err(|e| fail(format!("corrupt stream after the tar end: {e}")))?;
    if trailing > room {
        return Err(fail(format!(
            "the stream after the tar end exceeds the limit of {} bytes",
            limits.max_unpacked_bytes
        )));
    }
    applier.finish().map_err(|e| fail(e.to_string()))?;
    Ok((applier, stream.digest()))
}

/// A path inside the layer, checked: relative, no `..`. Absolute entries are
/// taken relative to the root (as every runtime does); `..` is refused.
fn clean_path(raw: &Path) -> std::result::Result<PathBuf, String> {
    if raw.as_os_str().len() > MAX_PATH_BYTES {
        return Err(format!("path is longer than {MAX_PATH_BYTES} bytes"));
    }
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err("contains '..'".into()),
            Component::Prefix(_) => return Err("has a path prefix".into()),
        }
    }
    if out.components().count() > MAX_PATH_DEPTH {
        return Err(format!("path is deeper than {MAX_PATH_DEPTH} directories"));
    }
    Ok(out)
}

/// Longest part of an entry's name an error quotes: hostile names are long.
const QUOTED_NAME: usize = 200;

fn entry_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Io {
        context: format!("entry {}", shown(path)),
        source: io::Error::other(reason.to_string()),
    }
}

/// An untrusted path for a message: escaped, and cut if long.
fn shown(path: &Path) -> String {
    tarstream::quoted_up_to(&path.display().to_string(), QUOTED_NAME)
}

struct Applier {
    root: OwnedFd,
    /// Directory mtimes are set last: creating entries inside changes them.
    /// One per path (a repeated entry replaces the earlier time).
    dir_times: HashMap<PathBuf, TimeSpec>,
    file_bytes: u64,
    /// Holes of sparse files: disk the layer may take beyond its stream.
    hole_bytes: u64,
    entries: u64,
    implicit: BTreeSet<PathBuf>,
    /// Paths this layer has a whiteout for, whatever order it came in.
    whited: HashSet<PathBuf>,
    /// Directories this layer made opaque.
    opaque: HashSet<PathBuf>,
    /// One copy buffer for every file: fewer, larger writes than io::copy's.
    buf: Vec<u8>,
    /// The parent directories of the entries being applied, kept open.
    dirs: safefs::DirPath,
    /// Who creates: an entry of our own uid and gid needs no chown.
    creator: Creator,
}

/// What a created entry gets without being told: owner (our effective ids)
/// and mode (what the creating call asks, less the umask). Entries that
/// match need no chown or chmod after their creation.
#[derive(Clone, Copy, Debug)]
struct Creator {
    uid: u32,
    gid: u32,
    /// The process umask; all bits when it cannot be read (always chmod).
    umask: u32,
}

impl Creator {
    fn current() -> Creator {
        Creator {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            umask: read_umask().unwrap_or(0o7777),
        }
    }

    /// Whether an entry created in `parent` is already `meta`'s owner: ours,
    /// and the parent's group is ours too (a setgid parent or a `grpid`
    /// mount gives a new entry the parent's group).
    fn owns(&self, parent: &safefs::Inherit, meta: &Meta) -> bool {
        let ours = (Some(Uid::from_raw(self.uid)), Some(Gid::from_raw(self.gid)));
        meta.owner == ours && parent.gid == self.gid
    }

    /// Whether creating with `meta.mode & 0o777` in `parent` leaves exactly
    /// `meta.mode`: no setuid/setgid/sticky bit, nothing the umask takes,
    /// no default ACL deciding instead, and (for a directory) no setgid
    /// inherited.
    fn gives_mode(&self, parent: &safefs::Inherit, meta: &Meta, dir: bool) -> bool {
        let mode = meta.mode.bits();
        mode & !0o777 == 0 && mode & self.umask == 0 && !parent.default_acl && !(dir && parent.setgid)
    }
}

/// The umask, read without changing it (umask(2) can only set it, and
/// another thread may be creating files meanwhile).
fn read_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status.lines().find_map(|line| line.strip_prefix("Umask:"))?;
    u32::from_str_radix(value.trim(), 8).ok()
}

impl Applier {
    fn apply(&mut self, entry: &Entry, data: &mut impl Read) -> Result<()> {
        let path = clean_path(&entry.path).map_err(|reason| entry_error(&entry.path, reason))?;
        let Some(name) = path.file_name().map(PathBuf::from) else {
            return self.apply_root(entry, &path);
        };
        let parent_rel = path.parent().unwrap_or(Path::new(""));
        let name_bytes = name.as_os_str().as_bytes();
        let is_whiteout = name_bytes.starts_with(WHITEOUT_PREFIX.as_bytes());
        if is_whiteout && name_bytes != OPAQUE_MARKER.as_bytes() && name_bytes.starts_with(AUFS_META_PREFIX.as_bytes())
        {
            // AUFS bookkeeping, meaningless to overlayfs.
            return Ok(());
        }
        if is_whiteout && matches!(safefs::open_dir_in(self.root.as_fd(), parent_rel), Err(Errno::ENOTDIR)) {
            // A whiteout under a path this layer made a non-directory (umoci
            // emits these when a directory becomes a file): that file already
            // hides everything below it.
            return Ok(());
        }
        if !is_whiteout {
            self.unwhite_parents(parent_rel, &path)?;
        }
        let mut created = Vec::new();
        let parent = self
            .dirs
            .open_or_make(self.root.as_fd(), parent_rel, &mut created)
            .map_err(|(component, errno)| {
                entry_error(&path, format!("cannot make {component:?} a directory: {errno}"))
            })?;
        self.note_created(created, &path)?;

        if name_bytes == OPAQUE_MARKER.as_bytes() {
            return self.make_opaque(parent.fd.as_fd(), parent_rel, &path);
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(parent.fd.as_fd(), parent_rel, hidden, &path);
        }
        self.place(entry, data, &parent, &name, &path)
    }

    /// Run `make`, which creates `name` in `parent` and fails with EEXIST if
    /// something is there: that is this layer's earlier entry of the same
    /// name, which goes (with what it implied below it) before `make` runs
    /// again. Creating first spares the lstat almost every entry would need.
    fn replacing<T>(
        &mut self,
        parent: BorrowedFd,
        name: &Path,
        path: &Path,
        make: impl Fn() -> nix::Result<T>,
    ) -> nix::Result<T> {
        match make() {
            Err(Errno::EEXIST) => {
                self.remove(parent, name, path)?;
                make()
            }
            other => other,
        }
    }

    /// Remove this layer's `name` in `parent`, and what it implied below it.
    fn remove(&mut self, parent: BorrowedFd, name: &Path, path: &Path) -> nix::Result<()> {
        // The open directories may run through what goes.
        self.dirs.clear();
        safefs::remove_at(parent, name)?;
        remove_below(&mut self.implicit, path);
        Ok(())
    }

    /// Make `name` in `parent` as `entry` says, replacing what this layer
    /// put there before (a directory stays and takes the new metadata).
    fn place(
        &mut self,
        entry: &Entry,
        data: &mut impl Read,
        parent: &safefs::OpenDir,
        name: &Path,
        path: &Path,
    ) -> Result<()> {
        if entry.kind != Kind::Dir {
            self.implicit.remove(path);
        }
        let meta = Meta::of(entry, path)?;
        let chown = !self.creator.owns(&parent.inherit, &meta);
        let fd = parent.fd.as_fd();
        match entry.kind {
            Kind::Dir => {
                self.implicit.remove(path);
                self.make_dir(parent, name, path, &meta)
            }
            Kind::File => self.write_file(entry, data, parent, name, path, &meta),
            Kind::Symlink => {
                let target = entry
                    .link
                    .as_ref()
                    .ok_or_else(|| entry_error(path, "symlink without a target"))?;
                // Stored verbatim: an absolute target is resolved against the
                // container's root when used, never against ours.
                self.replacing(fd, name, path, || symlinkat(target.as_path(), fd, name))
                    .map_err(|e| entry_error(path, e))?;
                set_meta_at(fd, name, path, &meta, chown, false)
            }
            Kind::HardLink => self.hard_link(entry, fd, name, path),
            Kind::Char | Kind::Block | Kind::Fifo => {
                let dev = makedev(entry.device.0, entry.device.1);
                let (sflag, dev) = match entry.kind {
                    Kind::Char => (SFlag::S_IFCHR, dev),
                    Kind::Block => (SFlag::S_IFBLK, dev),
                    _ => (SFlag::S_IFIFO, 0),
                };
                self.replacing(fd, name, path, || mknodat(fd, name, sflag, Mode::empty(), dev))
                    .map_err(|e| entry_error(path, e))?;
                set_meta_at(fd, name, path, &meta, chown, true)
            }
            Kind::Other(flag) => Err(entry_error(
                path,
                format!("unsupported tar entry type {:?}", flag as char),
            )),
        }
    }

    /// A directory entry: made, or over a directory already there only its
    /// metadata changes. It stays open for the entries inside it.
    fn make_dir(&mut self, parent: &safefs::OpenDir, name: &Path, path: &Path, meta: &Meta) -> Result<()> {
        let e = |err: Errno| entry_error(path, err);
        let at = parent.fd.as_fd();
        let mkdir = || nix::sys::stat::mkdirat(at, name, Mode::from_bits_truncate(meta.mode.bits() & 0o777));
        let created = match mkdir() {
            Ok(()) => true,
            Err(Errno::EEXIST) => match safefs::lstat_at(at, name).map_err(e)? {
                Some(st) if safefs::is_dir(&st) => false,
                _ => {
                    self.replacing(at, name, path, mkdir).map_err(e)?;
                    true
                }
            },
            Err(err) => return Err(e(err)),
        };
        let fd = safefs::open_child_dir(at, name).map_err(e)?;
        if !created || !self.creator.owns(&parent.inherit, meta) {
            fchown(fd.as_fd(), meta.owner.0, meta.owner.1).map_err(e)?;
        }
        if !created || !self.creator.gives_mode(&parent.inherit, meta, true) {
            fchmod(fd.as_fd(), meta.mode).map_err(e)?;
        }
        set_xattrs_fd(fd.as_fd(), meta, path)?;
        if self.whited.contains(path) {
            self.make_opaque(fd.as_fd(), path, path)?;
        }
        self.dir_times.insert(path.to_path_buf(), meta.mtime);
        if !created {
            // It may be open under another name (reached here through a
            // symlink): what that one would pass on is stale now.
            self.dirs.clear();
        }
        // What entries made in it inherit: known for one just made with
        // this metadata, read back from one whose metadata changed.
        let inherit = if created {
            safefs::Inherit {
                gid: meta.owner.1.map_or(self.creator.gid, Gid::as_raw),
                setgid: meta.mode.contains(Mode::S_ISGID),
                default_acl: parent.inherit.default_acl
                    || meta.xattrs.iter().any(|(key, _)| key == "system.posix_acl_default"),
            }
        } else {
            safefs::Inherit::of(fd.as_fd()).map_err(e)?
        };
        self.dirs.keep(path, safefs::OpenDir { fd, inherit });
        Ok(())
    }

    fn write_file(
        &mut self,
        entry: &Entry,
        data: &mut impl Read,
        parent: &safefs::OpenDir,
        name: &Path,
        path: &Path,
        meta: &Meta,
    ) -> Result<()> {
        let e = |err: Errno| entry_error(path, err);
        let at = parent.fd.as_fd();
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let create_mode = Mode::from_bits_truncate(meta.mode.bits() & 0o777);
        let fd = self
            .replacing(at, name, path, || openat(at, name, flags, create_mode))
            .map_err(e)?;
        let mut file = std::fs::File::from(fd);
        let written = match &entry.sparse {
            None => copy(data, &mut file, entry.size, &mut self.buf),
            Some(sparse) => write_sparse(data, &mut file, sparse, &mut self.buf),
        }
        .map_err(|err| write_error(path, err))?;
        self.file_bytes += written;
        if written >= WRITEBACK_FROM {
            start_writeback(&file);
        }
        if !self.creator.owns(&parent.inherit, meta) {
            fchown(file.as_fd(), meta.owner.0, meta.owner.1).map_err(e)?;
        }
        // After chown, which clears setuid/setgid (creation never sets them).
        if !self.creator.gives_mode(&parent.inherit, meta, false) {
            fchmod(file.as_fd(), meta.mode).map_err(e)?;
        }
        set_xattrs_fd(file.as_fd(), meta, path)?;
        futimens(file.as_fd(), &meta.mtime, &meta.mtime).map_err(e)
    }

    fn hard_link(&mut self, entry: &Entry, parent: BorrowedFd, name: &Path, path: &Path) -> Result<()> {
        let raw_target = entry
            .link
            .as_ref()
            .ok_or_else(|| entry_error(path, "hardlink without a target"))?;
        let target = clean_path(raw_target)
            .map_err(|reason| entry_error(path, format!("hardlink target {}: {reason}", shown(raw_target))))?;
        let (Some(target_name), target_parent) = (target.file_name(), target.parent().unwrap_or(Path::new(""))) else {
            return Err(entry_error(path, "hardlink to the root"));
        };
        let target_dir = safefs::open_dir_in(self.root.as_fd(), target_parent).map_err(|err| {
            entry_error(
                path,
                format!("hardlink target {} not in this layer: {err}", shown(&target)),
            )
        })?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink.
        self.replacing(parent, name, path, || {
            linkat(target_dir.as_fd(), target_name, parent, name, AtFlags::empty())
        })
        .map_err(|err| entry_error(path, format!("hardlink to {}: {err}", shown(&target))))
    }

    /// The root entry (`./`): its owner, mode and xattrs become the snapshot
    /// root's, as umoci makes them, and its mtime is set with the other
    /// directories'. A root that is not a directory cannot be applied.
    fn apply_root(&mut self, entry: &Entry, path: &Path) -> Result<()> {
        if entry.kind != Kind::Dir {
            return Err(entry_error(
                path,
                format!("the root entry is a {:?}, not a directory", entry.kind),
            ));
        }
        let meta = Meta::of(entry, path)?;
        let root = self.root.as_fd();
        fchown(root, meta.owner.0, meta.owner.1).map_err(|e| entry_error(path, e))?;
        fchmod(root, meta.mode).map_err(|e| entry_error(path, e))?;
        set_xattrs_fd(root, &meta, path)?;
        // What the root's entries inherit changed.
        self.dirs.clear();
        self.dir_times.insert(PathBuf::new(), meta.mtime);
        self.implicit.remove(Path::new(""));
        Ok(())
    }

    /// `.wh.NAME` hides NAME of the layers below only, wherever it comes in
    /// the layer. What this layer made of NAME stays: a non-directory
    /// already hides the lower one, a directory becomes opaque (and if it
    /// was only implied, it no longer stands for the lower one).
    fn whiteout(&mut self, parent: BorrowedFd, parent_rel: &Path, hidden: &[u8], path: &Path) -> Result<()> {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(entry_error(path, "invalid whiteout name"));
        }
        let hidden = Path::new(std::ffi::OsStr::from_bytes(hidden));
        let rel = parent_rel.join(hidden);
        self.whited.insert(rel.clone());
        match safefs::lstat_at(parent, hidden).map_err(|e| entry_error(path, e))? {
            None => {
                mknodat(parent, hidden, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| entry_error(path, e))
            }
            Some(st) if safefs::is_dir(&st) => {
                self.implicit.remove(&rel);
                let dir = safefs::open_child_dir(parent, hidden).map_err(|e| entry_error(path, e))?;
                self.make_opaque(dir.as_fd(), &rel, path)
            }
            Some(_) => Ok(()),
        }
    }

    fn make_opaque(&mut self, dir: BorrowedFd, rel: &Path, path: &Path) -> Result<()> {
        safefs::set_xattr_fd(dir, "trusted.overlay.opaque", b"y").map_err(|e| entry_error(path, e))?;
        self.opaque.insert(rel.to_path_buf());
        Ok(())
    }

    /// An entry below a path this layer whited out (`.wh.d`, then `d/f`):
    /// the whiteout device must give way to a directory, which
    /// `note_created` makes opaque.
    fn unwhite_parents(&mut self, parent_rel: &Path, path: &Path) -> Result<()> {
        // Every entry passes here: no syscall unless a parent was whited out.
        if !parent_rel.ancestors().any(|a| self.whited.contains(a)) {
            return Ok(());
        }
        if !matches!(safefs::open_dir_in(self.root.as_fd(), parent_rel), Err(Errno::ENOTDIR)) {
            return Ok(());
        }
        let mut prefix = PathBuf::new();
        for component in parent_rel.components() {
            prefix.push(component);
            if !self.whited.contains(&prefix) {
                continue;
            }
            let (Some(name), Some(up)) = (prefix.file_name(), prefix.parent()) else {
                continue;
            };
            let Ok(dir) = safefs::open_dir_in(self.root.as_fd(), up) else {
                return Ok(());
            };
            match safefs::lstat_at(dir.as_fd(), Path::new(name)).map_err(|e| entry_error(path, e))? {
                Some(st) if safefs::is_whiteout(&st) => {
                    self.dirs.clear();
                    safefs::remove_at(dir.as_fd(), Path::new(name)).map_err(|e| entry_error(path, e))?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Directories made for an entry's parents stand for the lower layers'
    /// (they get their metadata later), except those this layer whited out:
    /// new and opaque.
    fn note_created(&mut self, created: Vec<PathBuf>, path: &Path) -> Result<()> {
        for dir in created {
            if self.whited.contains(&dir) {
                let fd = safefs::open_dir_nofollow_in(self.root.as_fd(), &dir).map_err(|e| entry_error(path, e))?;
                self.make_opaque(fd.as_fd(), &dir, path)?;
            } else {
                self.implicit.insert(dir);
            }
        }
        Ok(())
    }

    /// The implied directories, but none below an opaque one: the lower
    /// directory they would stand for is hidden, so they are new.
    fn implicit_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.implicit.clone();
        for opaque in &self.opaque {
            remove_below(&mut dirs, opaque);
        }
        dirs.into_iter().collect()
    }

    /// Directory mtimes, deepest first so a parent's is not disturbed after.
    /// A directory replaced or hidden later in the layer keeps what replaced it.
    fn finish(&mut self) -> Result<()> {
        if self.implicit.contains(Path::new("")) {
            // No root entry: a base layer's root is docker's default (not
            // what our umask made); a later layer's takes its parent's.
            fchmod(self.root.as_fd(), Mode::from_bits_truncate(0o755)).map_err(|e| entry_error(Path::new("."), e))?;
        }
        let mut times: Vec<(&PathBuf, &TimeSpec)> = self.dir_times.iter().collect();
        times.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (path, time) in times {
            if path.file_name().is_none() {
                futimens(self.root.as_fd(), time, time).map_err(|err| entry_error(Path::new("."), err))?;
                continue;
            }
            let Ok(dir) = safefs::open_dir_nofollow_in(self.root.as_fd(), path) else {
                continue;
            };
            futimens(dir.as_fd(), time, time).map_err(|err| entry_error(path, err))?;
        }
        Ok(())
    }
}

/// Drop the paths strictly below `dir` from `set`: with component-wise
/// ordering they follow `dir` contiguously.
fn remove_below(set: &mut BTreeSet<PathBuf>, dir: &Path) {
    let below: Vec<PathBuf> = set
        .range::<Path, _>((std::ops::Bound::Excluded(dir), std::ops::Bound::Unbounded))
        .take_while(|p| p.starts_with(dir))
        .cloned()
        .collect();
    for path in below {
        set.remove(&path);
    }
}

/// An entry's metadata in the types the syscalls take; layers must not
/// forge overlayfs' own whiteout and opaque markers.
struct Meta {
    owner: (Option<Uid>, Option<Gid>),
    mode: Mode,
    mtime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn of(entry: &Entry, path: &Path) -> Result<Meta> {
        // u32::MAX means "leave unchanged" to chown; larger ids do not exist.
        if entry.uid >= u64::from(u32::MAX) || entry.gid >= u64::from(u32::MAX) {
            return Err(entry_error(
                path,
                format!("owner {}:{} is out of range", entry.uid, entry.gid),
            ));
        }
        Ok(Meta {
            owner: (
                Some(Uid::from_raw(entry.uid as u32)),
                Some(Gid::from_raw(entry.gid as u32)),
            ),
            mode: Mode::from_bits_truncate(entry.mode),
            mtime: TimeSpec::new(entry.mtime.0, i64::from(entry.mtime.1)),
            xattrs: entry
                .xattrs
                .iter()
                .filter(|(name, _)| !name.starts_with(safefs::OVERLAY_XATTR_PREFIX))
                .cloned()
                .collect(),
        })
    }
}

fn set_xattrs_fd(fd: BorrowedFd, meta: &Meta, path: &Path) -> Result<()> {
    for (key, value) in &meta.xattrs {
        safefs::set_xattr_fd(fd, key, value).map_err(|err| entry_error(path, format!("xattr {key}: {err}")))?;
    }
    Ok(())
}

/// Owner (unless creation gave it), mode (devices and fifos only: a symlink
/// has none), xattrs and mtime of `name`, never following it.
fn set_meta_at(parent: BorrowedFd, name: &Path, path: &Path, meta: &Meta, chown: bool, node: bool) -> Result<()> {
    let e = |err: Errno| entry_error(path, err);
    if chown {
        fchownat(parent, name, meta.owner.0, meta.owner.1, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(e)?;
    }
    if node {
        // Older kernels refuse NoFollow for chmod; a node is no symlink.
        fchmodat(parent, name, meta.mode, FchmodatFlags::NoFollowSymlink)
            .or_else(|err| match err {
                Errno::EOPNOTSUPP => fchmodat(parent, name, meta.mode, FchmodatFlags::FollowSymlink),
                other => Err(other),
            })
            .map_err(e)?;
    }
    for (key, value) in &meta.xattrs {
        match safefs::set_xattr_at(parent, name, key, value) {
            // The kernel keeps user.* xattrs to files and directories; docker
            // skips what it refuses on the rest, so a layer it takes is taken.
            Err(err) if err.raw_os_error() == Some(nix::libc::EPERM) && key.starts_with("user.") => {}
            other => other.map_err(|err| entry_error(path, format!("xattr {key}: {err}")))?,
        }
    }
    utimensat(parent, name, &meta.mtime, &meta.mtime, UtimensatFlags::NoFollowSymlink).map_err(e)
}

/// Exactly `len` bytes from `data` to `out`.
fn copy(data: &mut impl Read, out: &mut std::fs::File, len: u64, buf: &mut [u8]) -> io::Result<u64> {
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = data.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "corrupt tar stream: it ends inside this file",
            ));
        }
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(len)
}

/// Each stored segment at its offset; what lies between stays a hole.
fn write_sparse(data: &mut impl Read, out: &mut std::fs::File, sparse: &Sparse, buf: &mut [u8]) -> io::Result<u64> {
    let mut written = 0;
    for segment in &sparse.segments {
        out.seek(io::SeekFrom::Start(segment.offset))?;
        written += copy(data, out, segment.len, buf)?;
    }
    out.set_len(sparse.real_size)?;
    Ok(written)
}

/// Ask the kernel to start writing `file`'s data now, without waiting. The
/// pull syncs its snapshots once at the end; without this the data of a
/// whole layer stays dirty until then (under the kernel's background
/// threshold, a tenth of memory) and that sync pays for all of it, while
/// now the disk writes as the unpack goes on. Advisory: errors are ignored
/// (the final sync reports any that matter).
fn start_writeback(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor `file` keeps open; no
    // memory is passed.
    unsafe {
        nix::libc::sync_file_range(file.as_raw_fd(), 0, 0, nix::libc::SYNC_FILE_RANGE_WRITE);
    }
}

fn write_error(path: &Path, err: io::Error) -> Error {
    if err.raw_os_error() == Some(nix::libc::ENOSPC) {
        Error::DiskFull {
            what: format!("entry {}", shown(path)),
        }
    } else {
        entry_error(path, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths() {
        assert_eq!(clean_path(Path::new("./a/b")).unwrap(), PathBuf::from("a/b"));
        assert_eq!(
            clean_path(Path::new("/etc/passwd")).unwrap(),
            PathBuf::from("etc/passwd")
        );
        assert!(clean_path(Path::new("a/../../b")).is_err());
    }

    fn entry(
        builder: &mut tar::Builder<Vec<u8>>,
        kind: tar::EntryType,
        path: &str,
        mode: u32,
        owner: (u64, u64),
        data: &[u8],
    ) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        header.set_mtime(1_000_000);
        if kind == tar::EntryType::Symlink {
            header.set_link_name("file").unwrap();
        }
        builder.append_data(&mut header, path, data).unwrap();
    }

    fn unpack(tar: &[u8], target: &Path) {
        let diff_id = Digest::of_bytes(tar);
        unpack_layer(tar, Compression::None, target, &diff_id, Limits::default(), "test").unwrap();
    }

    /// Creation gives our owner and the asked mode only where nothing is
    /// inherited: a setgid directory passes its group (and to directories
    /// its setgid bit) on, so those entries are still chowned and chmodded.
    #[test]
    fn inherited_group_and_setgid_are_overridden() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            return; // chown needs root
        }
        let me = (0, 0);
        let mut b = tar::Builder::new(Vec::new());
        entry(&mut b, tar::EntryType::Directory, "shared/", 0o2775, (0, 4321), b"");
        entry(&mut b, tar::EntryType::Regular, "shared/file", 0o644, me, b"x");
        entry(&mut b, tar::EntryType::Directory, "shared/sub/", 0o755, me, b"");
        entry(&mut b, tar::EntryType::Symlink, "shared/link", 0o777, me, b"");
        entry(&mut b, tar::EntryType::Regular, "shared/implied/file", 0o600, me, b"y");
        entry(&mut b, tar::EntryType::Regular, "plain", 0o4755, me, b"z");
        let tar = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        unpack(&tar, dir.path());
        let meta = |p: &str| std::fs::symlink_metadata(dir.path().join(p)).unwrap();
        assert_eq!((meta("shared").gid(), meta("shared").mode() & 0o7777), (4321, 0o2775));
        assert_eq!(
            (meta("shared/file").gid(), meta("shared/file").mode() & 0o7777),
            (0, 0o644)
        );
        assert_eq!(
            (meta("shared/sub").gid(), meta("shared/sub").mode() & 0o7777),
            (0, 0o755)
        );
        assert_eq!(meta("shared/link").gid(), 0);
        assert_eq!(meta("shared/implied/file").gid(), 0);
        assert_eq!(meta("plain").mode() & 0o7777, 0o4755);
    }

    /// A directory changed through a symlink to it passes its new group on:
    /// entries made in it later are still given their own owner and mode.
    #[test]
    fn a_directory_changed_through_an_alias_is_seen_under_its_name() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            return; // chown needs root
        }
        let me = (0, 0);
        let mut b = tar::Builder::new(Vec::new());
        entry(&mut b, tar::EntryType::Directory, "a/", 0o755, me, b"");
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_mode(0o777);
        link.set_link_name("..").unwrap();
        b.append_data(&mut link, "a/l", &b""[..]).unwrap();
        entry(&mut b, tar::EntryType::Directory, "a/l/a/", 0o2775, (0, 4321), b"");
        entry(&mut b, tar::EntryType::Regular, "a/f", 0o644, me, b"x");
        entry(&mut b, tar::EntryType::Directory, "a/s/", 0o755, me, b"");
        let tar = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        unpack(&tar, dir.path());
        let meta = |p: &str| std::fs::symlink_metadata(dir.path().join(p)).unwrap();
        assert_eq!((meta("a").gid(), meta("a").mode() & 0o7777), (4321, 0o2775));
        assert_eq!((meta("a/f").gid(), meta("a/f").mode() & 0o7777), (0, 0o644));
        assert_eq!((meta("a/s").gid(), meta("a/s").mode() & 0o7777), (0, 0o755));
    }

    /// Entries keep landing in the right directory when an earlier one of
    /// the same name is replaced while its parent is held open.
    #[test]
    fn replacing_keeps_later_entries_in_place() {
        let me = (
            u64::from(nix::unistd::geteuid().as_raw()),
            u64::from(nix::unistd::getegid().as_raw()),
        );
        let mut b = tar::Builder::new(Vec::new());
        entry(&mut b, tar::EntryType::Directory, "a/", 0o755, me, b"");
        entry(&mut b, tar::EntryType::Directory, "a/b/", 0o755, me, b"");
        entry(&mut b, tar::EntryType::Regular, "a/b/f", 0o644, me, b"1");
        // a/b becomes a file, then a directory again with new content.
        entry(&mut b, tar::EntryType::Regular, "a/b", 0o644, me, b"2");
        entry(&mut b, tar::EntryType::Directory, "a/b/", 0o700, me, b"");
        entry(&mut b, tar::EntryType::Regular, "a/b/g", 0o600, me, b"3");
        entry(&mut b, tar::EntryType::Regular, "a/h", 0o640, me, b"4");
        let tar = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        unpack(&tar, dir.path());
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("g")]);
        assert_eq!(std::fs::read(dir.path().join("a/h")).unwrap(), b"4");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode("a/b"), mode("a/b/g"), mode("a/h")), (0o700, 0o600, 0o640));
    }
}
