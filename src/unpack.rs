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
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
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

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::manifest::Compression;
use crate::safefs;
use crate::tarstream::{self, Entry, Kind, Sparse, TarError};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`, …) other than the opaque marker.
const AUFS_META_PREFIX: &str = ".wh..wh.";
/// Longer or deeper paths are refused: no real image needs them, and they
/// make every later lookup and the eventual deletion more expensive.
const MAX_PATH_BYTES: usize = 4096;
const MAX_PATH_DEPTH: usize = 256;
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
    /// Bytes of the uncompressed tar stream.
    pub tar_bytes: u64,
    /// Bytes of regular-file data written.
    pub file_bytes: u64,
    pub entries: u64,
    /// Directories the layer implies but does not list (`a/` for `a/b`).
    /// They stand for directories of lower layers, whose metadata the
    /// snapshotter copies in once the lower layers are there.
    pub implicit_dirs: Vec<PathBuf>,
}

/// Pick the decompressor: magic bytes win over a media type that lies.
pub fn decompressor<'a>(
    mut input: BufReader<Box<dyn Read + 'a>>,
    declared: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    let head = input.fill_buf()?;
    let detected = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || is_zstd_skippable(head) {
        Compression::Zstd
    } else if head.len() >= 4 {
        Compression::None
    } else {
        declared
    };
    Ok(match detected {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::None => Box::new(input),
    })
}

/// zstd's skippable frames (magic 0x184D2A50..=0x184D2A5F, little-endian)
/// carry metadata (seekable and chunked zstd) and may open a layer; the
/// decoder skips them wherever they are.
fn is_zstd_skippable(head: &[u8]) -> bool {
    head.get(..4)
        .and_then(|m| <[u8; 4]>::try_from(m).ok())
        .is_some_and(|m| u32::from_le_bytes(m) & 0xffff_fff0 == 0x184d_2a50)
}

/// Hashes and counts everything read through it; refuses to pass `limit`.
struct Metered<R> {
    inner: R,
    hasher: Hasher,
    bytes: u64,
    limit: u64,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        if self.bytes > self.limit {
            return Err(io::Error::other(format!(
                "unpacked size exceeds the limit of {} bytes",
                self.limit
            )));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpack `blob` into the empty directory `target`. On error `target` is
/// left for the caller to delete; nothing outside it is ever touched.
pub fn unpack_layer(
    blob: impl Read,
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
    let input: Box<dyn Read> = Box::new(blob);
    let reader = decompressor(BufReader::with_capacity(256 << 10, input), compression)
        .map_err(|e| fail(format!("cannot decompress: {e}")))?;
    let mut metered = Metered {
        inner: reader,
        hasher: Hasher::new(),
        bytes: 0,
        limit: limits.max_unpacked_bytes,
    };
    let root = safefs::open_root(target).map_err(|e| fail(format!("opening {}: {e}", target.display())))?;
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
    };
    let mut reader = tarstream::Reader::new(&mut metered);
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
        if reader.position().saturating_add(applier.hole_bytes) > limits.max_unpacked_bytes {
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
    let metered = reader.into_inner();
    // The diff_id covers the whole stream, padding after the end marker too.
    io::copy(metered, &mut io::sink()).map_err(|e| fail(format!("corrupt stream after the tar end: {e}")))?;
    let actual = std::mem::take(&mut metered.hasher).finish();
    if &actual != diff_id {
        return Err(fail(format!(
            "uncompressed content hashes to {actual}, but the image config says its diff_id is {diff_id}"
        )));
    }
    applier.finish().map_err(|e| fail(e.to_string()))?;
    Ok(Unpacked {
        diff_id: actual,
        tar_bytes: metered.bytes,
        file_bytes: applier.file_bytes,
        entries: applier.entries,
        implicit_dirs: applier.implicit_dirs(),
    })
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
        let parent = safefs::mkdir_all_in_tracking(self.root.as_fd(), parent_rel, &mut created).map_err(
            |(component, errno)| entry_error(&path, format!("cannot make {component:?} a directory: {errno}")),
        )?;
        self.note_created(created, &path)?;
        let parent = parent.as_fd();

        if name_bytes == OPAQUE_MARKER.as_bytes() {
            return self.make_opaque(parent, parent_rel, &path);
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(parent, parent_rel, hidden, &path);
        }
        self.place(entry, data, parent, &name, &path)
    }

    /// Make `name` in `parent` as `entry` says, replacing what this layer
    /// put there before (a directory stays and takes the new metadata).
    fn place(
        &mut self,
        entry: &Entry,
        data: &mut impl Read,
        parent: BorrowedFd,
        name: &Path,
        path: &Path,
    ) -> Result<()> {
        if entry.kind != Kind::Dir {
            self.implicit.remove(path);
        }
        let existing = safefs::lstat_at(parent, name).map_err(|e| entry_error(path, e))?;
        let existing_is_dir = existing.as_ref().is_some_and(safefs::is_dir);
        if existing.is_some() && (entry.kind != Kind::Dir || !existing_is_dir) {
            safefs::remove_at(parent, name).map_err(|e| entry_error(path, e))?;
            // What this layer implied below it went with it.
            remove_below(&mut self.implicit, path);
        }
        let meta = Meta::of(entry, path)?;
        match entry.kind {
            Kind::Dir => {
                self.implicit.remove(path);
                self.make_dir(parent, name, path, !existing_is_dir, &meta)
            }
            Kind::File => self.write_file(entry, data, parent, name, path, &meta),
            Kind::Symlink => {
                let target = entry
                    .link
                    .as_ref()
                    .ok_or_else(|| entry_error(path, "symlink without a target"))?;
                // Stored verbatim: an absolute target is resolved against the
                // container's root when used, never against ours.
                symlinkat(target.as_path(), parent, name).map_err(|e| entry_error(path, e))?;
                set_meta_at(parent, name, path, &meta, false)
            }
            Kind::HardLink => self.hard_link(entry, parent, name, path),
            Kind::Char | Kind::Block | Kind::Fifo => {
                let dev = makedev(entry.device.0, entry.device.1);
                let (sflag, dev) = match entry.kind {
                    Kind::Char => (SFlag::S_IFCHR, dev),
                    Kind::Block => (SFlag::S_IFBLK, dev),
                    _ => (SFlag::S_IFIFO, 0),
                };
                mknodat(parent, name, sflag, Mode::empty(), dev).map_err(|e| entry_error(path, e))?;
                set_meta_at(parent, name, path, &meta, true)
            }
            Kind::Other(flag) => Err(entry_error(
                path,
                format!("unsupported tar entry type {:?}", flag as char),
            )),
        }
    }

    fn make_dir(&mut self, parent: BorrowedFd, name: &Path, path: &Path, create: bool, meta: &Meta) -> Result<()> {
        let e = |err: Errno| entry_error(path, err);
        if create {
            nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(0o700)).map_err(e)?;
        }
        let fd = safefs::open_child_dir(parent, name).map_err(e)?;
        fchown(fd.as_fd(), meta.owner.0, meta.owner.1).map_err(e)?;
        fchmod(fd.as_fd(), meta.mode).map_err(e)?;
        set_xattrs_fd(fd.as_fd(), meta, path)?;
        if self.whited.contains(path) {
            self.make_opaque(fd.as_fd(), path, path)?;
        }
        self.dir_times.insert(path.to_path_buf(), meta.mtime);
        Ok(())
    }

    fn write_file(
        &mut self,
        entry: &Entry,
        data: &mut impl Read,
        parent: BorrowedFd,
        name: &Path,
        path: &Path,
        meta: &Meta,
    ) -> Result<()> {
        let e = |err: Errno| entry_error(path, err);
        let fd = openat(
            parent,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(e)?;
        let mut file = std::fs::File::from(fd);
        let written = match &entry.sparse {
            None => copy(data, &mut file, entry.size, &mut self.buf),
            Some(sparse) => write_sparse(data, &mut file, sparse, &mut self.buf),
        }
        .map_err(|err| write_error(path, err))?;
        self.file_bytes += written;
        fchown(file.as_fd(), meta.owner.0, meta.owner.1).map_err(e)?;
        // After chown, which clears setuid/setgid.
        fchmod(file.as_fd(), meta.mode).map_err(e)?;
        set_xattrs_fd(file.as_fd(), meta, path)?;
        futimens(file.as_fd(), &meta.mtime, &meta.mtime).map_err(e)
    }

    fn hard_link(&self, entry: &Entry, parent: BorrowedFd, name: &Path, path: &Path) -> Result<()> {
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
        linkat(target_dir.as_fd(), target_name, parent, name, AtFlags::empty())
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
    fn unwhite_parents(&self, parent_rel: &Path, path: &Path) -> Result<()> {
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
                Some(st) if is_whiteout_device(&st) => {
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
            let Some(name) = path.file_name() else {
                futimens(self.root.as_fd(), time, time).map_err(|err| entry_error(Path::new("."), err))?;
                continue;
            };
            let Ok(parent) = safefs::open_dir_in(self.root.as_fd(), path.parent().unwrap_or(Path::new(""))) else {
                continue;
            };
            let Ok(dir) = safefs::open_child_dir(parent.as_fd(), Path::new(name)) else {
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

/// What overlayfs takes for a whiteout: a 0/0 character device.
fn is_whiteout_device(st: &nix::sys::stat::FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR && st.st_rdev == 0
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

/// Owner, mode (devices and fifos only: a symlink has none), xattrs and
/// mtime of `name`, never following it.
fn set_meta_at(parent: BorrowedFd, name: &Path, path: &Path, meta: &Meta, node: bool) -> Result<()> {
    let e = |err: Errno| entry_error(path, err);
    fchownat(parent, name, meta.owner.0, meta.owner.1, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(e)?;
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
}
