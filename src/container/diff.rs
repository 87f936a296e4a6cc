//! `diff`: what a container changed, read from its writable layer (the
//! overlayfs upper directory) against the image's layers below it, as
//! docker's `A`/`C`/`D` listing; and [`writable`], what `commit` reads.
//!
//! Rules (docker's overlay differ, with the naive differ's view of opaque
//! directories): a whiteout is `D`; an entry the image has (through the
//! lower layers as overlayfs merges them) is `C`, but a directory whose
//! mode, owner, size and mtime are the image's is not listed; anything
//! else is `A`. An `A` or `D` makes its parent directory `C`. An opaque
//! directory (removed and made again) lists what the image had in it and
//! the container has not as `D`. Mount points the runtime made for itself
//! where the image has none (`/proc`, `/etc/hosts`, …) are left out, as
//! docker's init layer keeps them out of its container layer.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::FileStat;

use super::lookup::get;
use super::state::Status;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::safefs;
use crate::Mocker;

/// Mount points PID 1 makes in the writable layer when the image lacks them.
const RUNTIME_MOUNT_POINTS: &[&str] = &["proc", "sys", "dev", "etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// A container's writable layer and what is below it.
#[derive(Debug)]
pub struct Writable {
    pub id: String,
    /// The upper directory.
    pub upper: PathBuf,
    /// The image's layer directories, topmost first (none for no image).
    pub lowers: Vec<PathBuf>,
    pub image_manifest: Digest,
    /// The chain the writable layer is over.
    pub running: bool,
    /// Its command, for the history entry of a commit.
    pub command: Vec<String>,
    /// Its config as docker's holds it, which a commit records.
    pub run: Option<crate::runtime::spec::RunConfig>,
    /// Paths (relative) in the upper directory that are the runtime's, not
    /// the container's.
    pub skip: HashSet<Vec<u8>>,
    /// Keeps `rm` from deleting the layer while it is read.
    pub reading: super::Reading,
}

/// Find container `query`'s writable layer, held for reading (see
/// `readers`): exclusively by a reader that will freeze the container.
pub fn writable(mocker: &Mocker, query: &str, will_pause: bool) -> Result<Writable> {
    let container = get(mocker, query)?;
    let dir = super::paths::dir_of(mocker, &container.record.id);
    let reading = super::readers::hold(&dir, query, will_pause)?;
    let config = container.config()?;
    if config.init.userns.is_some() {
        return Err(Error::Io {
            context: format!("container {}", container.short_id()),
            source: std::io::Error::other(
                "its writable layer is owned by remapped ids (--userns-remap): not supported",
            ),
        });
    }
    let overlay = &config.init.overlay;
    let lowers: Vec<PathBuf> = overlay
        .lower
        .iter()
        .filter(|l| l.as_str() != "empty")
        .map(|l| overlay.base.join(l))
        .collect();
    let mut writable = Writable {
        id: container.record.id.clone(),
        upper: overlay.base.join(&overlay.upper),
        lowers,
        image_manifest: container.record.image_manifest.clone(),
        running: container.state.status == Status::Running,
        command: config.init.process.args.clone(),
        run: config.run.clone(),
        skip: HashSet::new(),
        reading,
    };
    let upper = open(&writable.upper)?;
    let lowers = Lowers::open(&writable.lowers)?;
    for point in RUNTIME_MOUNT_POINTS {
        let rel = Path::new(point);
        let in_upper = matches!(probe(upper.as_fd(), rel), Probe::Found(_));
        if in_upper && !matches!(lowers.find(rel), Probe::Found(_)) {
            writable.skip.insert(point.as_bytes().to_vec());
        }
    }
    Ok(writable)
}

fn open(dir: &Path) -> Result<OwnedFd> {
    safefs::open_root(dir).map_err(|e| Error::io(format!("opening {}", dir.display()), e))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

/// One line of `diff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// Absolute, as docker prints it.
    pub path: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let letter = match self.kind {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        };
        write!(f, "{letter} {}", self.path)
    }
}

/// `diff CONTAINER`: its changes, parents before children (names sorted
/// within a directory, as docker's walk lists them).
pub fn diff(mocker: &Mocker, query: &str) -> Result<Vec<Change>> {
    let w = writable(mocker, query, false)?;
    let upper = open(&w.upper)?;
    let lowers = Lowers::open(&w.lowers)?;
    changes(&w, upper, &lowers).map_err(|e| Error::io(format!("reading the changes of {query}"), e.into()))
}

fn changes(w: &Writable, upper: OwnedFd, lowers: &Lowers) -> nix::Result<Vec<Change>> {
    // Keyed by components, so the order is the walk's ("a" < "a/b" < "a.b").
    let mut found: BTreeMap<Vec<Vec<u8>>, ChangeKind> = BTreeMap::new();
    // Paths, not open directories: a wide tree would hold an fd per
    // directory waiting its turn.
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = match safefs::open_dir_beneath(upper.as_fd(), &rel) {
            // Gone or replaced since it was listed (a running container).
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => continue,
            other => other?,
        };
        for name in &list(dir.as_fd())? {
            let path = rel.join(name);
            if w.skip.contains(path.as_os_str().as_bytes()) {
                continue;
            }
            let Some(st) = safefs::lstat_at(dir.as_fd(), Path::new(name))? else {
                continue;
            };
            let kind = if safefs::is_whiteout(&st) {
                Some(ChangeKind::Deleted)
            } else {
                match lowers.find(&path) {
                    Probe::Found(lower) if safefs::is_dir(&st) && safefs::is_dir(&lower) => {
                        let child = safefs::open_child_dir(dir.as_fd(), Path::new(name))?;
                        let opaque = safefs::is_opaque(child.as_fd());
                        if opaque {
                            let kept = names_in(child.as_fd())?;
                            for gone in lowers.list(&path)?.into_iter().filter(|n| !kept.contains(n)) {
                                record(&mut found, &path.join(gone), ChangeKind::Deleted);
                            }
                        }
                        stack.push(path.clone());
                        (opaque || !same_dir(&st, &lower, holds_mount_point(w, &path))).then_some(ChangeKind::Changed)
                    }
                    // Another type in the image (a file made a directory, say).
                    found_below => {
                        if safefs::is_dir(&st) {
                            stack.push(path.clone());
                        }
                        match found_below {
                            Probe::Found(_) => Some(ChangeKind::Changed),
                            _ => Some(ChangeKind::Added),
                        }
                    }
                }
            };
            if let Some(kind) = kind {
                record(&mut found, &path, kind);
            }
        }
    }
    Ok(found
        .into_iter()
        .map(|(components, kind)| Change {
            kind,
            path: components
                .iter()
                .fold(String::new(), |p, c| format!("{p}/{}", String::from_utf8_lossy(c))),
        })
        .collect())
}

/// Whether directory `path` holds one of the runtime's mount points, whose
/// making changed its mtime.
fn holds_mount_point(w: &Writable, path: &Path) -> bool {
    w.skip
        .iter()
        .any(|s| Path::new(OsStr::from_bytes(s)).parent() == Some(path))
}

/// Record `kind` for `path`; an addition or deletion makes its parent a
/// change unless the parent is listed already (as added, say) or the root.
fn record(found: &mut BTreeMap<Vec<Vec<u8>>, ChangeKind>, path: &Path, kind: ChangeKind) {
    let key: Vec<Vec<u8>> = path.iter().map(|c| c.as_bytes().to_vec()).collect();
    if kind != ChangeKind::Changed && key.len() > 1 {
        found
            .entry(key[..key.len() - 1].to_vec())
            .or_insert(ChangeKind::Changed);
    }
    found.insert(key, kind);
}

/// docker's test for a directory the container did not change: same mode,
/// size and mtime (owner too); only mode and owner when the runtime made
/// a mount point in it.
fn same_dir(upper: &FileStat, lower: &FileStat, runtime_touched: bool) -> bool {
    let meta = upper.st_mode == lower.st_mode && upper.st_uid == lower.st_uid && upper.st_gid == lower.st_gid;
    let times = upper.st_size == lower.st_size
        && upper.st_mtime == lower.st_mtime
        && upper.st_mtime_nsec == lower.st_mtime_nsec;
    meta && (times || runtime_touched)
}

fn list(dir: BorrowedFd) -> nix::Result<Vec<std::ffi::OsString>> {
    let mut names = names_in(dir)?.into_iter().collect::<Vec<_>>();
    names.sort();
    Ok(names)
}

fn names_in(dir: BorrowedFd) -> nix::Result<HashSet<std::ffi::OsString>> {
    let mut listing = nix::dir::Dir::from_fd(nix::unistd::dup(dir)?)?;
    let mut names = HashSet::new();
    for entry in listing.iter() {
        let bytes = entry?.file_name().to_bytes().to_vec();
        if bytes != b"." && bytes != b".." {
            names.insert(OsStr::from_bytes(&bytes).to_owned());
        }
    }
    Ok(names)
}

/// What one layer says of a path.
enum Probe {
    Found(FileStat),
    /// A whiteout, a non-directory on the way, or an opaque directory
    /// above it: nothing further down shows.
    Hidden,
    /// Look in the next layer down.
    Absent,
}

/// `rel` in the layer whose root is `root`, looked up as overlayfs merges:
/// through directories only.
fn probe(root: BorrowedFd, rel: &Path) -> Probe {
    let parts: Vec<&OsStr> = rel.iter().collect();
    let mut dir: Option<OwnedFd> = None;
    let mut opaque_above = false;
    for (k, part) in parts.iter().enumerate() {
        let at = dir.as_ref().map_or(root, |d| d.as_fd());
        let st = match safefs::lstat_at(at, Path::new(part)) {
            Ok(Some(st)) => st,
            Ok(None) if opaque_above => return Probe::Hidden,
            Ok(None) => return Probe::Absent,
            Err(_) => return Probe::Hidden,
        };
        if safefs::is_whiteout(&st) {
            return Probe::Hidden;
        }
        if k + 1 == parts.len() {
            return Probe::Found(st);
        }
        if !safefs::is_dir(&st) {
            return Probe::Hidden;
        }
        match safefs::open_child_dir(at, Path::new(part)) {
            Ok(fd) => {
                opaque_above |= safefs::is_opaque(fd.as_fd());
                dir = Some(fd);
            }
            Err(_) => return Probe::Hidden,
        }
    }
    Probe::Absent
}

/// The image's layers, topmost first.
struct Lowers(Vec<OwnedFd>);

impl Lowers {
    fn open(dirs: &[PathBuf]) -> Result<Lowers> {
        dirs.iter().map(|d| open(d)).collect::<Result<Vec<_>>>().map(Lowers)
    }

    /// `rel` as the image shows it.
    fn find(&self, rel: &Path) -> Probe {
        for root in &self.0 {
            match probe(root.as_fd(), rel) {
                Probe::Absent => continue,
                other => return other,
            }
        }
        Probe::Absent
    }

    /// The names directory `rel` holds in the image (merged, whiteouts
    /// applied).
    fn list(&self, rel: &Path) -> nix::Result<Vec<std::ffi::OsString>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for root in &self.0 {
            match probe(root.as_fd(), rel) {
                Probe::Found(st) if safefs::is_dir(&st) => {}
                Probe::Absent => continue,
                _ => break,
            }
            let dir = safefs::open_dir_beneath(root.as_fd(), rel)?;
            for name in list(dir.as_fd())? {
                let st = safefs::lstat_at(dir.as_fd(), Path::new(&name))?;
                if seen.insert(name.clone()) && !st.as_ref().is_some_and(safefs::is_whiteout) && st.is_some() {
                    out.push(name);
                }
            }
            if safefs::is_opaque(dir.as_fd()) {
                break;
            }
        }
        Ok(out)
    }
}
