//! A directory tree as a tar stream, written as docker's export (Go's
//! archive/tar) writes it, so that GNU tar, umoci and our own unpacker
//! rebuild the same tree: the root first as `./` (docker leaves it out and
//! loses the root's owner, mode and xattrs), relative names (`bin/sh`,
//! `etc/`), parents before
//! children and names sorted, one file per inode with later names as hard
//! links, and PAX records for whatever ustar's fields cannot hold (long
//! names and targets, large ids and sizes, times before 1970, past 2242 or
//! with a fraction of a second, xattrs).
//!
//! The tree may be a running container's merged view: every entry is
//! reached from its parent's fd without following it, an entry gone between
//! readdir and stat (overlayfs lists some whiteouts that lookups hide) is
//! skipped, and a file's data is exactly the size its header announced.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, major, minor, FileStat, Mode, SFlag};
use tar::EntryType;

use crate::error::{Error, Result};
use crate::safefs::{self, OPAQUE_MARKER, WHITEOUT_PREFIX};

const BLOCK: u64 = 512;
/// The largest values ustar's octal fields hold: 7 digits in the 8-byte
/// fields (uid, gid), 11 in the 12-byte ones (size, mtime).
const MAX_OCTAL_8: u64 = 0o7777777;
const MAX_OCTAL_12: u64 = 0o77777777777;
/// Bytes of a path an error quotes (its end).
const QUOTED_PATH: usize = 200;
/// Bounded retries when an entry changes type between stat and open.
const RACE_RETRIES: usize = 3;

/// Write `dir` and everything under it to `out`; `what` names the export
/// in errors.
pub fn write_tree(dir: &Path, what: &str, out: impl Write) -> Result<()> {
    walk(dir, what, None, out)
}

/// Write an overlayfs upper directory as an OCI layer (image-spec
/// "Representing Changes"): its whiteouts (0/0 character devices) as
/// `.wh.NAME` files and its opaque directories followed by
/// `.wh..wh..opq`, everything else as [`write_tree`] writes it. Paths in
/// `skip` (relative, as `etc/hosts`) and what is below them are left out.
/// An upper directory that needs a lower one to make sense (a redirected
/// directory, a metacopy file) is refused: mocker mounts without those
/// features, so one means a tree made by something else.
pub fn write_layer(dir: &Path, what: &str, skip: &HashSet<Vec<u8>>, out: impl Write) -> Result<()> {
    walk(dir, what, Some(skip), out)
}

fn walk(dir: &Path, what: &str, layer: Option<&HashSet<Vec<u8>>>, out: impl Write) -> Result<()> {
    let fail = |rel: &[u8], e: io::Error| {
        // The deepest part names the entry; a container's paths can be long.
        let tail = &rel[rel.len().saturating_sub(QUOTED_PATH)..];
        let cut = if tail.len() < rel.len() { "…" } else { "" };
        let entry = String::from_utf8_lossy(tail);
        Error::io(format!("exporting {what}: entry {cut}{entry:?}"), e)
    };
    let root = safefs::open_root(dir).map_err(|e| fail(b".", e))?;
    let mut tar = TarWriter::new(out);
    tar.layer = layer.is_some();
    tar.root(root.as_fd()).map_err(|e| fail(b".", e))?;
    let names = list_dir(root.as_fd()).map_err(|e| fail(b".", e.into()))?;
    // An explicit stack (open directory, its path, names still to write):
    // a container can build trees deeper than a thread's stack.
    let mut stack = vec![Frame {
        fd: root,
        rel: Vec::new(),
        names,
    }];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.pop() else {
            stack.pop();
            continue;
        };
        let rel = join(&frame.rel, &name);
        if layer.is_some_and(|skip| skip.contains(&rel)) {
            continue;
        }
        let child = tar.entry(frame.fd.as_fd(), &name, &rel).map_err(|e| fail(&rel, e))?;
        if let Some(fd) = child {
            let names = list_dir(fd.as_fd()).map_err(|e| fail(&rel, e.into()))?;
            stack.push(Frame { fd, rel, names });
        }
    }
    tar.finish().map_err(|e| fail(b"(end of archive)", e))
}

struct Frame {
    fd: OwnedFd,
    rel: Vec<u8>,
    /// Sorted descending, so `pop` yields them in order.
    names: Vec<OsString>,
}

fn list_dir(fd: BorrowedFd) -> nix::Result<Vec<OsString>> {
    let mut dir = nix::dir::Dir::from_fd(nix::unistd::dup(fd)?)?;
    let mut names = Vec::new();
    for entry in dir.iter() {
        let bytes = entry?.file_name().to_bytes().to_vec();
        if bytes != b"." && bytes != b".." {
            names.push(OsStr::from_bytes(&bytes).to_owned());
        }
    }
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

/// `rel` with `prefix` before its last component: `a/.wh.b` for `a/b`.
fn with_prefix(rel: &[u8], prefix: &[u8]) -> Vec<u8> {
    let cut = rel.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
    [&rel[..cut], prefix, &rel[cut..]].concat()
}

fn join(parent: &[u8], name: &OsStr) -> Vec<u8> {
    let mut rel = parent.to_vec();
    if !rel.is_empty() {
        rel.push(b'/');
    }
    rel.extend_from_slice(name.as_bytes());
    rel
}

/// One name, as found without following it.
enum Node {
    Dir(OwnedFd, FileStat),
    File(File, FileStat),
    Symlink(OsString, FileStat),
    /// Character and block devices, fifos.
    Special(FileStat),
    /// An overlayfs whiteout (a 0/0 character device), in a layer.
    Whiteout(FileStat),
}

/// The xattrs of `name` in `dir`, or None if it is gone since it was found.
fn xattrs_unless_gone(dir: BorrowedFd, name: &OsStr) -> io::Result<Option<safefs::Xattrs>> {
    match safefs::xattrs_at(dir, Path::new(name)) {
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => Ok(None),
        other => other.map(Some),
    }
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// What `name` is; None when it is gone, a whiteout or a socket. Entries
/// that change type between the stat and the open are looked at again.
fn inspect(dir: BorrowedFd, name: &OsStr, layer: bool) -> io::Result<Option<Node>> {
    for _ in 0..RACE_RETRIES {
        match inspect_once(dir, name, layer) {
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP | Errno::ENOTDIR | Errno::EAGAIN) => continue,
            other => return Ok(other?),
        }
    }
    Err(io::Error::other("it keeps changing type while being read"))
}

fn inspect_once(dir: BorrowedFd, name: &OsStr, layer: bool) -> nix::Result<Option<Node>> {
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let open = |flags: OFlag| -> nix::Result<(OwnedFd, FileStat)> {
        let fd = openat(dir, name, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
        let opened = fstat(fd.as_fd())?;
        // Replaced by something else since the stat: look again.
        if file_type(&opened) != file_type(&st) {
            return Err(Errno::EAGAIN);
        }
        Ok((fd, opened))
    };
    Ok(Some(match file_type(&st) {
        SFlag::S_IFDIR => {
            let (fd, st) = open(OFlag::O_DIRECTORY | OFlag::O_RDONLY)?;
            Node::Dir(fd, st)
        }
        SFlag::S_IFREG => {
            // O_NONBLOCK: should a fifo take its place, opening must not hang.
            let (fd, st) = open(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)?;
            Node::File(File::from(fd), st)
        }
        // EINVAL: no longer a symlink since the stat; look again.
        SFlag::S_IFLNK => Node::Symlink(
            readlinkat(dir, name).map_err(|e| if e == Errno::EINVAL { Errno::EAGAIN } else { e })?,
            st,
        ),
        // overlayfs' whiteout form: hidden by the merged view, never
        // content; in an upper directory, a deletion.
        SFlag::S_IFCHR if st.st_rdev == 0 && layer => Node::Whiteout(st),
        SFlag::S_IFCHR if st.st_rdev == 0 => return Ok(None),
        SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => Node::Special(st),
        // Sockets (docker skips them too).
        _ => return Ok(None),
    }))
}

/// One tar header's worth of metadata.
struct Meta<'a> {
    path: Vec<u8>,
    kind: EntryType,
    st: &'a FileStat,
    size: u64,
    link: Option<&'a [u8]>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<'a> Meta<'a> {
    fn new(path: &[u8], kind: EntryType, st: &'a FileStat) -> Self {
        Meta {
            path: path.to_vec(),
            kind,
            st,
            size: 0,
            link: None,
            xattrs: Vec::new(),
        }
    }
}

struct TarWriter<W> {
    out: W,
    /// First name written for each (dev, ino) that has more than one.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// Writing an overlayfs upper directory as a layer (whiteouts, opaque
    /// directories).
    layer: bool,
}

impl<W: Write> TarWriter<W> {
    fn new(out: W) -> Self {
        TarWriter {
            out,
            links: HashMap::new(),
            layer: false,
        }
    }

    /// Write the entry for `name` (at `rel`); a directory's fd is returned
    /// so that the walk descends into what was exported, not a replacement.
    fn entry(&mut self, dir: BorrowedFd, name: &OsStr, rel: &[u8]) -> io::Result<Option<OwnedFd>> {
        let Some(node) = inspect(dir, name, self.layer)? else {
            return Ok(None);
        };
        let st = match &node {
            Node::Dir(_, st) | Node::File(_, st) | Node::Symlink(_, st) | Node::Special(st) => *st,
            // overlayfs links whiteouts to one shared inode: never hard links.
            Node::Whiteout(st) => return self.whiteout(rel, st).map(|()| None),
        };
        if !matches!(node, Node::Dir(..)) {
            if let Some(first) = self.earlier_name(&st, rel) {
                let mut meta = Meta::new(rel, EntryType::Link, &st);
                meta.link = Some(&first);
                self.header(&meta)?;
                return Ok(None);
            }
        }
        match node {
            Node::Dir(fd, st) => {
                let mut meta = Meta::new(&[rel, b"/"].concat(), EntryType::Directory, &st);
                meta.xattrs = safefs::xattrs_fd(fd.as_fd())?;
                self.refuse_lower_references(&meta.xattrs)?;
                self.header(&meta)?;
                if self.layer && safefs::is_opaque(fd.as_fd()) {
                    self.opaque_marker(rel, &st)?;
                }
                return Ok(Some(fd));
            }
            Node::File(file, st) => {
                let mut meta = Meta::new(rel, EntryType::Regular, &st);
                meta.size = st.st_size as u64;
                meta.xattrs = safefs::xattrs_fd(file.as_fd())?;
                self.refuse_lower_references(&meta.xattrs)?;
                self.header(&meta)?;
                self.data(file, meta.size)?;
            }
            Node::Symlink(target, st) => {
                let mut meta = Meta::new(rel, EntryType::Symlink, &st);
                meta.link = Some(target.as_bytes());
                let Some(xattrs) = xattrs_unless_gone(dir, name)? else {
                    return Ok(None);
                };
                meta.xattrs = xattrs;
                self.header(&meta)?;
            }
            Node::Whiteout(_) => {}
            Node::Special(st) => {
                let kind = match file_type(&st) {
                    SFlag::S_IFCHR => EntryType::Char,
                    SFlag::S_IFBLK => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let mut meta = Meta::new(rel, kind, &st);
                let Some(xattrs) = xattrs_unless_gone(dir, name)? else {
                    return Ok(None);
                };
                meta.xattrs = xattrs;
                self.header(&meta)?;
            }
        }
        Ok(None)
    }

    /// `.wh.NAME` for a whiteout at `rel`: an empty file, mode 0600, with
    /// the whiteout's owner and time (as docker's overlay driver writes it).
    fn whiteout(&mut self, rel: &[u8], st: &FileStat) -> io::Result<()> {
        let mut st = *st;
        st.st_mode = nix::libc::S_IFREG | 0o600;
        self.header(&Meta::new(
            &with_prefix(rel, WHITEOUT_PREFIX.as_bytes()),
            EntryType::Regular,
            &st,
        ))
    }

    /// `DIR/.wh..wh..opq` after an opaque directory's entry: an empty file
    /// with the directory's permissions, owner and time.
    fn opaque_marker(&mut self, rel: &[u8], dir: &FileStat) -> io::Result<()> {
        let mut st = *dir;
        st.st_mode = nix::libc::S_IFREG | (dir.st_mode & 0o777);
        self.header(&Meta::new(
            &join(rel, OsStr::new(OPAQUE_MARKER)),
            EntryType::Regular,
            &st,
        ))
    }

    /// In a layer, an entry whose content is in a lower directory
    /// (overlayfs' redirect_dir and metacopy) cannot be written alone.
    fn refuse_lower_references(&self, xattrs: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
        let lower = |key: &Vec<u8>| key == b"trusted.overlay.redirect" || key == b"trusted.overlay.metacopy";
        match xattrs.iter().find(|(key, _)| self.layer && lower(key)) {
            Some((key, _)) => Err(io::Error::other(format!(
                "{} refers to a lower layer (overlayfs redirect_dir or metacopy)",
                String::from_utf8_lossy(key)
            ))),
            None => Ok(()),
        }
    }

    /// The root directory's own entry, `./`.
    fn root(&mut self, fd: BorrowedFd) -> io::Result<()> {
        let st = fstat(fd)?;
        let mut meta = Meta::new(b"./", EntryType::Directory, &st);
        meta.xattrs = safefs::xattrs_fd(fd)?;
        self.header(&meta)
    }

    /// The name this inode was already written under, if any; records
    /// `rel` as the first one otherwise.
    fn earlier_name(&mut self, st: &FileStat, rel: &[u8]) -> Option<Vec<u8>> {
        if st.st_nlink <= 1 {
            return None;
        }
        let key = (st.st_dev, st.st_ino);
        if let Some(first) = self.links.get(&key) {
            return Some(first.clone());
        }
        self.links.insert(key, rel.to_vec());
        None
    }

    fn header(&mut self, meta: &Meta) -> io::Result<()> {
        let mut pax = Pax::default();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(meta.kind);
        fit_bytes(&mut h.as_old_mut().name, &meta.path, b"path", &mut pax);
        if let Some(link) = meta.link {
            fit_bytes(&mut h.as_old_mut().linkname, link, b"linkpath", &mut pax);
        }
        let st = meta.st;
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(fit_number(st.st_uid.into(), MAX_OCTAL_8, b"uid", &mut pax));
        h.set_gid(fit_number(st.st_gid.into(), MAX_OCTAL_8, b"gid", &mut pax));
        h.set_size(fit_number(meta.size, MAX_OCTAL_12, b"size", &mut pax));
        h.set_mtime(fit_mtime(st.st_mtime, st.st_mtime_nsec, &mut pax));
        if matches!(meta.kind, EntryType::Char | EntryType::Block) {
            // 12-bit majors and 20-bit minors always fit 7 octal digits.
            h.set_device_major(major(st.st_rdev) as u32)?;
            h.set_device_minor(minor(st.st_rdev) as u32)?;
        }
        for (key, value) in &meta.xattrs {
            if key.starts_with(safefs::OVERLAY_XATTR_PREFIX.as_bytes()) {
                continue;
            }
            // A PAX key ends at its '=' and is text: such a name cannot be
            // written so that it reads back the same (Go refuses it too).
            if key.contains(&b'=') || std::str::from_utf8(key).is_err() {
                let name = String::from_utf8_lossy(key);
                return Err(io::Error::other(format!("xattr {name:?} cannot be written to a tar")));
            }
            pax.record(&[b"SCHILY.xattr.", key.as_slice()].concat(), value);
        }
        if !pax.0.is_empty() {
            self.pax_header(&meta.path, &pax.0)?;
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes())
    }

    /// The 'x' entry carrying `records` for the entry at `path`, named as
    /// Go names it (`dir/PaxHeaders.0/base`, cut to fit).
    fn pax_header(&mut self, path: &[u8], records: &[u8]) -> io::Result<()> {
        let trimmed = path.strip_suffix(b"/").unwrap_or(path);
        let (dir, base) = match trimmed.iter().rposition(|b| *b == b'/') {
            Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
            None => (&b""[..], trimmed),
        };
        let name = [dir, b"PaxHeaders.0/", base].concat();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        fit_bytes(&mut h.as_old_mut().name, &name, b"", &mut Pax::default());
        h.set_mode(0o644);
        h.set_size(records.len() as u64);
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(records)?;
        self.zeros(padding(records.len() as u64))
    }

    /// Exactly `size` bytes of `file`: a file that shrank since its stat is
    /// padded with zeros and one that grew is cut, as docker does, so the
    /// stream stays a valid tar while the container writes.
    fn data(&mut self, file: File, size: u64) -> io::Result<()> {
        let copied = io::copy(&mut file.take(size), &mut self.out)?;
        self.zeros(size - copied + padding(size))
    }

    fn zeros(&mut self, mut count: u64) -> io::Result<()> {
        const ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];
        while count > 0 {
            let n = count.min(BLOCK);
            self.out.write_all(&ZEROS[..n as usize])?;
            count -= n;
        }
        Ok(())
    }

    /// The end-of-archive marker: two zero blocks.
    fn finish(mut self) -> io::Result<()> {
        self.zeros(2 * BLOCK)?;
        self.out.flush()
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// Copy `value` into a header field when it fits (no NUL inside either);
/// otherwise a PAX record holds it and the field gets a truncated copy.
fn fit_bytes(field: &mut [u8], value: &[u8], key: &[u8], pax: &mut Pax) {
    let fits = value.len() <= field.len() && !value.contains(&0);
    if !fits {
        pax.record(key, value);
    }
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// The field's value, or 0 with a PAX record when it is too large for
/// octal (the tar crate would write GNU base-256, which ustar lacks).
fn fit_number(value: u64, max: u64, key: &[u8], pax: &mut Pax) -> u64 {
    if value <= max {
        return value;
    }
    pax.record(key, value.to_string().as_bytes());
    0
}

/// The header's mtime; a PAX record too when the time has a fraction or
/// does not fit unsigned octal (then the field is 0, as Go writes it).
fn fit_mtime(secs: i64, nanos: i64, pax: &mut Pax) -> u64 {
    let fits = (0..=MAX_OCTAL_12 as i64).contains(&secs);
    if nanos != 0 || !fits {
        pax.record(b"mtime", pax_time(secs, nanos).as_bytes());
    }
    if fits {
        secs as u64
    } else {
        0
    }
}

/// Decimal seconds of the real value: (-2 s, +0.5e9 ns) is "-1.5".
fn pax_time(secs: i64, nanos: i64) -> String {
    let (sign, whole, frac) = match (secs < 0, nanos) {
        (false, n) => ("", secs.unsigned_abs(), n),
        (true, 0) => ("-", secs.unsigned_abs(), 0),
        (true, n) => ("-", (secs + 1).unsigned_abs(), 1_000_000_000 - n),
    };
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let digits = format!("{frac:09}");
    format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
}

/// PAX extended header records: `LEN KEY=VALUE\n`, raw bytes.
#[derive(Default)]
struct Pax(Vec<u8>);

impl Pax {
    fn record(&mut self, key: &[u8], value: &[u8]) {
        // LEN counts the whole record in bytes, its own digits included.
        let rest = key.len() + value.len() + 3;
        let mut len = rest;
        loop {
            let next = rest + len.to_string().len();
            if next == len {
                break;
            }
            len = next;
        }
        self.0.extend_from_slice(format!("{len} ").as_bytes());
        self.0.extend_from_slice(key);
        self.0.push(b'=');
        self.0.extend_from_slice(value);
        self.0.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_as_go_writes_them() {
        assert_eq!(pax_time(-86400, 0), "-86400");
        assert_eq!(pax_time(-2, 500_000_000), "-1.5");
        assert_eq!(pax_time(-1, 999_999_999), "-0.000000001");
        assert_eq!(pax_time(1_700_000_000, 123_456_789), "1700000000.123456789");
        assert_eq!(pax_time(5, 100_000_000), "5.1");
    }

    #[test]
    fn pax_record_lengths_count_bytes() {
        for (key, len) in [(&b"a"[..], 1usize), (b"k", 4), (b"k", 5), (b"k", 94), (b"k", 995)] {
            let mut pax = Pax::default();
            let value = vec![0xffu8; len];
            pax.record(key, &value);
            let text = &pax.0;
            let space = text.iter().position(|b| *b == b' ').unwrap();
            let declared: usize = std::str::from_utf8(&text[..space]).unwrap().parse().unwrap();
            assert_eq!(declared, text.len(), "value of {len} bytes");
        }
    }

    #[test]
    fn file_data_is_exactly_the_announced_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        // Shrunk since its stat: zeros up to the size, then the padding.
        let mut tar = TarWriter::new(Vec::new());
        tar.data(File::open(&path).unwrap(), 600).unwrap();
        assert_eq!(tar.out.len(), 1024);
        assert_eq!(&tar.out[..10], b"0123456789");
        assert!(tar.out[10..].iter().all(|b| *b == 0));
        // Grown since: cut at the size.
        let mut tar = TarWriter::new(Vec::new());
        tar.data(File::open(&path).unwrap(), 4).unwrap();
        assert_eq!(tar.out.len(), 512);
        assert_eq!(&tar.out[..5], b"0123\0");
    }

    #[test]
    fn whiteout_names_prefix_the_last_component() {
        assert_eq!(with_prefix(b"a/b/c", b".wh."), b"a/b/.wh.c");
        assert_eq!(with_prefix(b"top", b".wh."), b".wh.top");
    }

    #[test]
    fn numbers_that_do_not_fit_go_to_pax() {
        let mut pax = Pax::default();
        assert_eq!(fit_number(70000, MAX_OCTAL_8, b"uid", &mut pax), 70000);
        assert!(pax.0.is_empty());
        assert_eq!(fit_number(3_000_000, MAX_OCTAL_8, b"uid", &mut pax), 0);
        assert_eq!(pax.0, b"15 uid=3000000\n");
        let mut pax = Pax::default();
        assert_eq!(fit_mtime(16_725_225_600, 0, &mut pax), 0);
        assert_eq!(pax.0, b"21 mtime=16725225600\n");
    }
}
