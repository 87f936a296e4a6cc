//! The snapshotter: committed layer snapshots (read-only directories keyed
//! by chain ID, each holding only its own layer's changes) and active
//! snapshots (an upper and a work directory over a chain of committed ones),
//! mounted with overlayfs. Knows nothing of registries or images.
//!
//! Layout under `snapshots/`:
//! - `<id>/fs` (+ `<id>/meta.json` naming its chain ID) — committed or active
//! - `<id>/work` — overlayfs work directory of an active snapshot
//! - `tmp-<id>/` — a snapshot being built; renamed to `<id>` when complete
//! - `trash-<id>/`, `trash-active-<id>/` — a snapshot being deleted (or
//!   whose deletion a kill cut short: the next sweep finishes it)
//! - `locks/<chain hex>` — flock held while a chain ID is being unpacked
//!
//! Ids are short integers from the index so that lower directory lists stay
//! short (`12/fs:11/fs:…`).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::digest::Digest;
use crate::durable::{sync_dir, Watch};
use crate::error::{Error, IoContext, Result};
use crate::index::{ActiveRecord, Batch, Index, Session, SnapshotRecord};
use crate::mount::Overlay;
use crate::safefs;

/// Outcome of [`Snapshotter::begin`].
pub enum Begin {
    Exists(SnapshotRecord),
    /// Another process holds the chain's lock (is unpacking it).
    Busy,
    Building(Building),
}

/// A snapshot being built in `tmp-<id>/fs`, holding its chain's lock.
/// Dropped without commit, it deletes what it built.
pub struct Building {
    id: u64,
    tmp: PathBuf,
    chain_id: Digest,
    /// Opened before anything is written, to sync (and see the writeback
    /// errors of) what the build writes.
    watch: Watch,
    _lock: Flock<fs::File>,
    /// Marks the directory as in use, for sweeps by other processes.
    _tmp_lock: Flock<fs::File>,
    committed: bool,
}

impl Building {
    pub fn fs_dir(&self) -> PathBuf {
        self.tmp.join("fs")
    }
}

impl Drop for Building {
    fn drop(&mut self) {
        if !self.committed {
            let _ = safefs::remove_tree(&self.tmp);
        }
    }
}

/// A snapshot being built in `tmp-<id>/fs` before its chain ID is known,
/// flocked like a [`Building`]; deleted if dropped before
/// [`Snapshotter::name`] makes it one.
pub struct Scratch {
    id: u64,
    tmp: PathBuf,
    lock: Option<Flock<fs::File>>,
    watch: Option<Watch>,
}

impl Scratch {
    pub fn fs_dir(&self) -> PathBuf {
        self.tmp.join("fs")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.lock.is_some() {
            let _ = safefs::remove_tree(&self.tmp);
        }
    }
}

/// A layer unpacked into its building directory, ready to be sealed.
pub struct Built {
    pub building: Building,
    pub diff_id: Digest,
    /// Bytes of file data it holds.
    pub size: u64,
    /// Directories the layer implies but does not list.
    pub implicit_dirs: Vec<PathBuf>,
}

/// Snapshots ready to publish once a sync has made them durable.
pub struct Sealed {
    builds: Vec<(Building, SnapshotRecord)>,
}

impl Sealed {
    /// One `syncfs` for all of them, through the watch of the lowest id,
    /// which was open before any of them was written (see `begin`).
    pub fn sync(self) -> Result<Durable> {
        if let Some((first, _)) = self.builds.iter().min_by_key(|(b, _)| b.id) {
            first.watch.sync()?;
        }
        Ok(Durable { builds: self.builds })
    }
}

/// Sealed snapshots whose files are on disk: what `publish` takes.
pub struct Durable {
    builds: Vec<(Building, SnapshotRecord)>,
}

/// A snapshot directory renamed out of the numbered namespace, flocked until
/// its tree is deleted: a kill leaves a `trash-<id>` that the next sweep
/// finishes, and a sweep never takes a deletion that is still running.
pub struct Trash {
    path: PathBuf,
    _lock: Flock<fs::File>,
}

impl Trash {
    /// Delete the tree; the bytes of file data freed.
    pub fn delete(self) -> Result<u64> {
        safefs::remove_tree_measured(&self.path).ctx(|| format!("removing {}", self.path.display()))
    }
}

/// Delete trashed directories; the bytes of file data freed.
pub fn delete_all(trash: Vec<Trash>) -> Result<u64> {
    trash.into_iter().map(Trash::delete).sum()
}

/// What [`Snapshotter::sweep_unrecorded`] found.
#[derive(Default)]
pub struct Unrecorded {
    /// Complete snapshots something needs, now recorded.
    pub adopted: Vec<SnapshotRecord>,
    /// Directories to delete once the session is over.
    pub trash: Vec<Trash>,
}

/// Try an exclusive flock on `path` without waiting: `None` if another
/// process holds it (or the path is gone).
fn try_lock(path: &Path) -> Result<Option<Flock<fs::File>>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx(|| format!("opening {}", path.display())),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::io(format!("locking {}", path.display()), e.into())),
    }
}

/// What the index says of a chain ID about to be built.
enum Found {
    Recorded(SnapshotRecord),
    NewId(u64),
}

/// Ids of every snapshot, committed or active, the index records.
fn recorded_in(s: &Session) -> Result<HashSet<u64>> {
    Ok(s.snapshots()?
        .values()
        .map(|r| r.id)
        .chain(s.actives()?.values().map(|a| a.id))
        .collect())
}

/// The committed chain from `top` down, within an open session.
fn chain_in(s: &crate::index::Session, top: &Digest) -> Result<Vec<SnapshotRecord>> {
    let mut out = Vec::new();
    let mut next = Some(top.clone());
    while let Some(chain_id) = next {
        if out.len() > MAX_CHAIN {
            return Err(Error::Index(format!(
                "snapshot chain of {top} is longer than {MAX_CHAIN} (a cycle?)"
            )));
        }
        let record = s
            .get_snapshot(&chain_id)?
            .ok_or_else(|| Error::Index(format!("snapshot {chain_id} is not unpacked (pull the image again)")))?;
        next = record.parent.clone();
        out.push(record);
    }
    Ok(out)
}

/// Give each implied directory (the root too, for a layer without a `./`
/// entry) the owner, mode, times and xattrs of the same directory in the
/// topmost lower layer that has one.
fn inherit_dirs(target: &Path, lowers: &[PathBuf], dirs: &[PathBuf]) -> Result<()> {
    use std::os::fd::AsFd;
    let root = safefs::open_root(target).ctx(|| format!("opening {}", target.display()))?;
    let mut lowers = Lowers {
        roots: lowers
            .iter()
            .map(|l| safefs::open_root(l).ctx(|| format!("opening {}", l.display())))
            .collect::<Result<Vec<_>>>()?,
        hidden: HashMap::new(),
    };
    for dir in dirs {
        let Some(source) = lowers.dir(dir) else {
            continue;
        };
        // Through directories only, in case the layer replaced one.
        let Ok(fd) = safefs::open_dir_beneath(root.as_fd(), dir) else {
            continue;
        };
        copy_dir_metadata(source.as_fd(), fd.as_fd())
            .map_err(|e| Error::io(format!("setting metadata of {}", dir.display()), e))?;
    }
    Ok(())
}

/// The lower layers' roots, topmost first, and which of their directories
/// an opaque one (itself or an ancestor) hides, as found.
struct Lowers {
    roots: Vec<std::os::fd::OwnedFd>,
    hidden: HashMap<(usize, PathBuf), bool>,
}

impl Lowers {
    /// Directory `dir` in the topmost layer that has it, as overlayfs finds
    /// it: through directories only, and none if a layer has a whiteout or a
    /// file on the way or makes an ancestor opaque (the directory is new).
    fn dir(&mut self, dir: &Path) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        for i in 0..self.roots.len() {
            match safefs::open_dir_beneath(self.roots[i].as_fd(), dir) {
                Ok(fd) => return Some(fd),
                Err(nix::errno::Errno::ENOENT) if !self.hides(i, dir.parent()) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// Whether layer `i` makes `dir` or one of its ancestors opaque.
    fn hides(&mut self, i: usize, dir: Option<&Path>) -> bool {
        use std::os::fd::AsFd;
        let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) else {
            return false;
        };
        let key = (i, dir.to_path_buf());
        if let Some(hidden) = self.hidden.get(&key) {
            return *hidden;
        }
        let hidden = safefs::open_dir_beneath(self.roots[i].as_fd(), dir).is_ok_and(|fd| safefs::is_opaque(fd.as_fd()))
            || self.hides(i, dir.parent());
        self.hidden.insert(key, hidden);
        hidden
    }
}

/// Owner, mode, xattrs and times of directory `src` onto `dst`.
fn copy_dir_metadata(src: std::os::fd::BorrowedFd, dst: std::os::fd::BorrowedFd) -> std::io::Result<()> {
    use nix::sys::stat::{fchmod, fstat, futimens, Mode};
    use nix::sys::time::TimeSpec;
    let st = fstat(src)?;
    nix::unistd::fchown(
        dst,
        Some(nix::unistd::Uid::from_raw(st.st_uid)),
        Some(nix::unistd::Gid::from_raw(st.st_gid)),
    )?;
    // After chown, which may clear setgid.
    fchmod(dst, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    safefs::copy_xattrs(src, dst)?;
    let atime = TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let mtime = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    futimens(dst, &atime, &mtime)?;
    Ok(())
}

/// Give directory `dir` the metadata of directory `like`.
fn root_like(dir: &Path, like: &Path) -> Result<()> {
    use std::os::fd::AsFd;
    let context = || format!("copying the metadata of {} to {}", like.display(), dir.display());
    let src = safefs::open_root(like).ctx(context)?;
    let dst = safefs::open_root(dir).ctx(context)?;
    copy_dir_metadata(src.as_fd(), dst.as_fd()).ctx(context)
}

/// An active snapshot recorded but not yet made on disk (see `reserve`).
pub struct Reserved {
    id: u64,
    lowers: Vec<SnapshotRecord>,
}

#[derive(Clone, Debug)]
pub struct Snapshotter {
    dir: PathBuf,
    index: Index,
}

/// More layers than overlayfs stacks (500) means a corrupt parent cycle.
pub const MAX_CHAIN: usize = 500;

/// How long to wait for another process unpacking the same chain ID.
const UNPACK_WAIT: Duration = Duration::from_secs(3600);

impl Snapshotter {
    pub fn open(root: &Path, index: Index) -> Result<Self> {
        let dir = root.join("snapshots");
        fs::create_dir_all(dir.join("locks")).ctx(|| format!("creating {}", dir.display()))?;
        // Layers hold setuid binaries and device nodes: host users must not
        // reach them (moby's CVE-2021-41091).
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .ctx(|| format!("chmod {}", dir.display()))?;
        Ok(Snapshotter { dir, index })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Free bytes on the snapshots' filesystem: what one unpack may
    /// consume at most (a decompression bomb stops there).
    pub fn free_bytes(&self) -> u64 {
        nix::sys::statvfs::statvfs(&self.dir)
            .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
            .unwrap_or(u64::MAX)
    }

    pub fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    pub fn get(&self, chain_id: &Digest) -> Result<Option<SnapshotRecord>> {
        self.index.session(|s| s.get_snapshot(chain_id))
    }

    /// Which of `chain_ids` are committed, in one session.
    pub fn committed(&self, chain_ids: &[Digest]) -> Result<Vec<bool>> {
        self.index
            .session(|s| chain_ids.iter().map(|c| Ok(s.get_snapshot(c)?.is_some())).collect())
    }

    /// Start building snapshot `chain_id`, unless it exists or another
    /// process is building it (`wait` blocks for that process instead).
    pub fn begin(&self, chain_id: &Digest, wait: bool) -> Result<Begin> {
        if let Some(existing) = self.get(chain_id)? {
            return Ok(Begin::Exists(existing));
        }
        let Some(lock) = self.lock_chain(chain_id, wait)? else {
            return Ok(Begin::Busy);
        };
        // One session under the chain's lock: recorded by now, or a crash
        // between publishing a directory and recording it left a complete
        // snapshot the index does not know (adopt it: no other process is
        // about to record it), or a new id.
        // Opened before the id is taken: a build with a higher id (taken
        // later) writes nothing before this watch exists, so syncing
        // through the lowest id's watch sees every build's errors.
        let watch = Watch::open(&self.dir)?;
        let numbered = self.numbered_dirs()?;
        let found = self.index.session(|s| {
            if let Some(existing) = s.get_snapshot(chain_id)? {
                return Ok(Found::Recorded(existing));
            }
            let orphans = self.orphans(&numbered, &recorded_in(s)?);
            if let Some(orphan) = orphans.into_iter().find(|r| &r.chain_id == chain_id) {
                let mut batch = Batch::default();
                batch.put_snapshot(&orphan);
                s.apply(&batch)?;
                return Ok(Found::Recorded(orphan));
            }
            Ok(Found::NewId(s.next_id()?))
        })?;
        let id = match found {
            Found::Recorded(record) => return Ok(Begin::Exists(record)),
            Found::NewId(id) => id,
        };
        let (tmp, tmp_lock) = self.make_tmp(id)?;
        Ok(Begin::Building(Building {
            id,
            tmp,
            chain_id: chain_id.clone(),
            watch,
            _lock: lock,
            _tmp_lock: tmp_lock,
            committed: false,
        }))
    }

    /// `tmp-<id>/fs`, its directory locked before anything goes in, so a
    /// sweep never takes a live build.
    fn make_tmp(&self, id: u64) -> Result<(PathBuf, Flock<fs::File>)> {
        let tmp = self.dir.join(format!("tmp-{id}"));
        fs::create_dir(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        let tmp_lock = fs::File::open(&tmp)
            .and_then(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| std::io::Error::from(e)))
            .ctx(|| format!("locking {}", tmp.display()));
        let made = tmp_lock.and_then(|lock| {
            fs::create_dir(tmp.join("fs")).ctx(|| format!("creating {}/fs", tmp.display()))?;
            Ok(lock)
        });
        match made {
            Ok(lock) => Ok((tmp, lock)),
            Err(e) => {
                let _ = safefs::remove_tree(&tmp);
                Err(e)
            }
        }
    }

    /// Start building a snapshot whose chain ID is known only once it is
    /// built (`commit` learns its layer's diff_id by writing it).
    pub fn begin_scratch(&self) -> Result<Scratch> {
        // Before the id, as in `begin`.
        let watch = Watch::open(&self.dir)?;
        let id = self.index.session(|s| s.next_id())?;
        let (tmp, lock) = self.make_tmp(id)?;
        Ok(Scratch {
            id,
            tmp,
            lock: Some(lock),
            watch: Some(watch),
        })
    }

    /// Give a built scratch snapshot its chain ID: a [`Building`] to commit,
    /// or the snapshot that already has that chain (the scratch is deleted).
    pub fn name(&self, mut scratch: Scratch, chain_id: &Digest) -> Result<Begin> {
        let lock = self
            .lock_chain(chain_id, true)?
            .ok_or_else(|| Error::Index(format!("snapshot {chain_id} is locked")))?;
        if let Some(existing) = self.get(chain_id)? {
            return Ok(Begin::Exists(existing));
        }
        let (Some(tmp_lock), Some(watch)) = (scratch.lock.take(), scratch.watch.take()) else {
            return Err(Error::Index("scratch snapshot already named".into()));
        };
        Ok(Begin::Building(Building {
            id: scratch.id,
            tmp: scratch.tmp.clone(),
            chain_id: chain_id.clone(),
            watch,
            _lock: lock,
            _tmp_lock: tmp_lock,
            committed: false,
        }))
    }

    /// Committed snapshot directories (with their meta.json) that the index
    /// does not record.
    pub fn unrecorded(&self) -> Result<Vec<SnapshotRecord>> {
        let numbered = self.numbered_dirs()?;
        let known = self.index.session(recorded_in)?;
        Ok(self.orphans(&numbered, &known))
    }

    /// Of the `numbered` directories, those not `known` whose meta.json
    /// describes them.
    fn orphans(&self, numbered: &[(u64, PathBuf)], known: &HashSet<u64>) -> Vec<SnapshotRecord> {
        let mut out = Vec::new();
        for (id, dir) in numbered {
            if known.contains(id) {
                continue;
            }
            let Ok(bytes) = fs::read(dir.join("meta.json")) else {
                continue;
            };
            if let Ok(record) = serde_json::from_slice::<SnapshotRecord>(&bytes) {
                if record.id == *id {
                    out.push(record);
                }
            }
        }
        out
    }

    /// `snapshots/<id>` directories, by id.
    pub fn numbered_dirs(&self) -> Result<Vec<(u64, PathBuf)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).ctx(|| format!("listing {}", self.dir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", self.dir.display()))?;
            if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
                out.push((id, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// `tmp-*` directories no live build holds (what a killed unpack left),
    /// and `trash-*` directories no live deletion holds (what a killed
    /// deletion left).
    pub fn stale_partial_builds(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                (name.starts_with("trash-") || name.starts_with("tmp-")) && matches!(try_lock(&e.path()), Ok(Some(_)))
            })
            .map(|e| e.path())
            .collect()
    }

    /// Delete what killed unpacks and deletions left behind; the bytes of
    /// file data freed. Each is taken under its lock (a live build or
    /// deletion holds it), and a `tmp-` one is renamed out of that
    /// namespace before the slow delete. Best effort: what fails stays for
    /// the next sweep.
    pub fn sweep_partial_builds(&self) -> u64 {
        let Ok(entries) = fs::read_dir(&self.dir) else { return 0 };
        let mut freed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.starts_with("trash-") && !name.starts_with("tmp-") {
                continue;
            }
            let Ok(Some(_lock)) = try_lock(&entry.path()) else {
                continue;
            };
            let target = match name.strip_prefix("tmp-") {
                Some(id) => {
                    let trash = self.dir.join(format!("trash-{id}"));
                    if fs::rename(entry.path(), &trash).is_err() {
                        continue;
                    }
                    trash
                }
                None => entry.path(),
            };
            freed += safefs::remove_tree_measured(&target).unwrap_or(0);
        }
        freed
    }

    /// Move committed or active snapshot `id` out of the numbered namespace,
    /// locked, for deletion (by [`Trash::delete`], after the caller's
    /// session). The caller has dropped its record and flushed, and holds
    /// what keeps anyone from recording it again: the index session, or the
    /// chain's lock. `None` if the directory is gone or another process is
    /// deleting it.
    pub fn trash(&self, id: u64) -> Result<Option<Trash>> {
        let dir = self.path_of(id);
        let Some(lock) = try_lock(&dir)? else {
            return Ok(None);
        };
        let mut attempt = 0;
        let path = loop {
            let path = match attempt {
                0 => self.dir.join(format!("trash-{id}")),
                n => self.dir.join(format!("trash-{id}.{n}")),
            };
            match fs::rename(&dir, &path) {
                Ok(()) => break path,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                // A leftover of the same name: take another.
                Err(e)
                    if matches!(e.raw_os_error(), Some(nix::libc::ENOTEMPTY | nix::libc::EEXIST)) && attempt < 100 =>
                {
                    attempt += 1
                }
                Err(e) => return Err(e).ctx(|| format!("renaming {}", dir.display())),
            }
        };
        // The rename reaches the disk before any unlink of the tree, so a
        // crash never leaves a half-deleted directory under its number.
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .ctx(|| format!("syncing {}", self.dir.display()))?;
        Ok(Some(Trash { path, _lock: lock }))
    }

    /// Numbered directories no index record names, inside the caller's
    /// session (so no record changes meanwhile): what a kill left between an
    /// index change and a directory's deletion or publication.
    /// - No `meta.json`: a deletion cut short (a deletion removed meta.json
    ///   first; nothing publishes a snapshot without it). Trashed.
    /// - A `work` directory: a writable layer whose records are gone; only
    ///   `system check --repair`, which restores containers first, judges
    ///   it. Left alone.
    /// - A `meta.json`: a complete snapshot published but not recorded. Its
    ///   builder holds the chain's lock until it has recorded it, so a locked
    ///   chain is left alone; otherwise it is recorded if `needed` names its
    ///   chain and no other snapshot has it, and trashed if not.
    pub fn sweep_unrecorded(&self, s: &Session, needed: &HashSet<Digest>) -> Result<Unrecorded> {
        // Listed before the records are read: an active snapshot is recorded
        // before its directory is made, so whatever we list is recorded by now.
        let dirs = self.numbered_dirs()?;
        let snapshots = s.snapshots()?;
        let known: HashSet<u64> = snapshots
            .values()
            .map(|r| r.id)
            .chain(s.actives()?.values().map(|a| a.id))
            .collect();
        let mut out = Unrecorded::default();
        let mut batch = Batch::default();
        for (id, path) in dirs {
            if known.contains(&id) || path.join("work").exists() {
                continue;
            }
            let meta = path.join("meta.json");
            let record = match fs::read(&meta) {
                Ok(bytes) => match serde_json::from_slice::<SnapshotRecord>(&bytes) {
                    Ok(record) if record.id == id => Some(record),
                    // Not ours to judge: `system check` reports it.
                    _ => continue,
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).ctx(|| format!("reading {}", meta.display())),
            };
            let _chain_lock = match &record {
                Some(record) => {
                    let Some(lock) = self.lock_chain(&record.chain_id, false)? else {
                        continue;
                    };
                    if needed.contains(&record.chain_id) && !snapshots.contains_key(record.chain_id.as_str()) {
                        batch.put_snapshot(record);
                        out.adopted.push(record.clone());
                        continue;
                    }
                    Some(lock)
                }
                None => None,
            };
            out.trash.extend(self.trash(id)?);
        }
        s.apply(&batch)?;
        Ok(out)
    }

    /// Publish one built snapshot (seal, sync, publish). Its parent must be
    /// committed.
    pub fn commit(
        &self,
        building: Building,
        parent: Option<&Digest>,
        diff_id: &Digest,
        size: u64,
        implicit_dirs: &[PathBuf],
    ) -> Result<SnapshotRecord> {
        let built = Built {
            building,
            diff_id: diff_id.clone(),
            size,
            implicit_dirs: implicit_dirs.to_vec(),
        };
        let durable = self.seal(parent, vec![built])?.sync()?;
        let mut records = self.publish(durable)?;
        records
            .pop()
            .ok_or_else(|| Error::Index("sealed snapshot vanished".into()))
    }

    /// Ready `builds` for publishing: consecutive layers, base first, on top
    /// of the committed `parent`. Directories a layer only implied take
    /// their metadata from the layers below it (committed, or built in this
    /// batch), so the merged view shows what applying the layers in order
    /// would; each gets the `meta.json` that lets a crash's orphan be adopted.
    pub fn seal(&self, parent: Option<&Digest>, builds: Vec<Built>) -> Result<Sealed> {
        let mut lowers: Vec<PathBuf> = match parent {
            Some(p) => self.chain(p)?.iter().map(|r| self.path_of(r.id).join("fs")).collect(),
            None => Vec::new(),
        };
        let mut parent = parent.cloned();
        let mut sealed = Vec::with_capacity(builds.len());
        for built in builds {
            let fs_dir = built.building.fs_dir();
            if !lowers.is_empty() && !built.implicit_dirs.is_empty() {
                inherit_dirs(&fs_dir, &lowers, &built.implicit_dirs)?;
            }
            let record = SnapshotRecord {
                id: built.building.id,
                chain_id: built.building.chain_id.clone(),
                parent: parent.take(),
                diff_id: built.diff_id,
                size: built.size,
            };
            let meta = serde_json::to_vec(&record).map_err(|e| Error::Index(e.to_string()))?;
            let tmp = &built.building.tmp;
            fs::write(tmp.join("meta.json"), meta).ctx(|| format!("writing {}/meta.json", tmp.display()))?;
            lowers.insert(0, fs_dir);
            parent = Some(record.chain_id.clone());
            sealed.push((built.building, record));
        }
        Ok(Sealed { builds: sealed })
    }

    /// Publish synced snapshots. Durable before visible: their files
    /// reached the disk before the renames, so after a power loss the index
    /// never names a snapshot whose files did not. Complete before visible:
    /// each rename publishes a whole directory, then one index batch records
    /// them all; a crash between leaves directories that the next `begin`
    /// adopts (by their `meta.json`) or `system check --repair` removes. The
    /// chain locks are held until the records are written, as sweeps and
    /// `system check` expect of a live build.
    pub fn publish(&self, durable: Durable) -> Result<Vec<SnapshotRecord>> {
        let mut batch = Batch::default();
        let mut records = Vec::with_capacity(durable.builds.len());
        let mut published = Vec::with_capacity(durable.builds.len());
        for (mut building, record) in durable.builds {
            let final_dir = self.path_of(building.id);
            fs::rename(&building.tmp, &final_dir).ctx(|| format!("publishing snapshot {}", final_dir.display()))?;
            building.committed = true;
            batch.put_snapshot(&record);
            records.push(record);
            published.push(building);
        }
        if records.is_empty() {
            return Ok(records);
        }
        sync_dir(&self.dir)?;
        self.index.session(|s| s.apply(&batch))?;
        drop(published);
        Ok(records)
    }

    /// Make sure snapshot `chain_id` exists, building it with `build` (which
    /// fills an empty directory and returns the bytes written and the
    /// implied directories). Returns the record and whether this call built it.
    pub fn ensure(
        &self,
        chain_id: &Digest,
        parent: Option<&Digest>,
        diff_id: &Digest,
        build: impl FnOnce(&Path) -> Result<(u64, Vec<PathBuf>)>,
    ) -> Result<(SnapshotRecord, bool)> {
        match self.begin(chain_id, true)? {
            Begin::Exists(record) => Ok((record, false)),
            Begin::Busy => Err(Error::Index(format!("snapshot {chain_id} is locked"))),
            Begin::Building(building) => {
                let (size, implicit) = build(&building.fs_dir())?;
                Ok((self.commit(building, parent, diff_id, size, &implicit)?, true))
            }
        }
    }

    pub(crate) fn lock_chain(&self, chain_id: &Digest, wait: bool) -> Result<Option<Flock<fs::File>>> {
        let path = self.dir.join("locks").join(chain_id.hex());
        let start = Instant::now();
        loop {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .ctx(|| format!("opening {}", path.display()))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Some(lock)),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) if !wait => return Ok(None),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) if start.elapsed() < UNPACK_WAIT => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err((_, e)) => return Err(Error::io(format!("locking {}", path.display()), e.into())),
            }
        }
    }

    /// The committed chain from `top` down to the base layer.
    pub fn chain(&self, top: &Digest) -> Result<Vec<SnapshotRecord>> {
        self.index.session(|s| chain_in(s, top))
    }

    /// Create the writable snapshot `key` over `parent` and return its mount.
    /// Chain lookup and record happen in one session, so no `rmi` can take
    /// the lower layers in between; the record comes before the directories,
    /// so a concurrent check never sees unrecorded ones.
    pub fn prepare(&self, key: &str, parent: Option<&Digest>) -> Result<Overlay> {
        let reserved = self.index.session(|s| {
            let mut batch = Batch::default();
            let reserved = self.reserve(s, key, parent, &mut batch)?;
            s.apply(&batch)?;
            Ok(reserved)
        })?;
        self.make_active(key, reserved)
    }

    /// The index half of `prepare`, inside the caller's session: look up
    /// the chain and add the record of `key` to `batch` (which the caller
    /// applies, with its own changes, in one transaction).
    pub fn reserve(
        &self,
        s: &crate::index::Session,
        key: &str,
        parent: Option<&Digest>,
        batch: &mut Batch,
    ) -> Result<Reserved> {
        if s.get_active(key)?.is_some() {
            return Err(Error::Index(format!("snapshot {key} already exists")));
        }
        let lowers = match parent {
            Some(p) => chain_in(s, p)?,
            None => Vec::new(),
        };
        let id = s.next_id()?;
        batch.put_active(&ActiveRecord {
            id,
            key: key.to_string(),
            parent: parent.cloned(),
        });
        Ok(Reserved { id, lowers })
    }

    /// The disk half of `prepare`, once the reservation is recorded.
    pub fn make_active(&self, key: &str, reserved: Reserved) -> Result<Overlay> {
        let dir = self.path_of(reserved.id);
        let made = ["fs", "work"]
            .iter()
            .try_for_each(|sub| fs::create_dir_all(dir.join(sub)).ctx(|| format!("creating {}/{sub}", dir.display())));
        // The merged root shows the upper directory's owner, mode, times
        // and xattrs: those of the image's root, as in its top layer.
        let made = made.and_then(|()| match reserved.lowers.first() {
            Some(top) => root_like(&dir.join("fs"), &self.path_of(top.id).join("fs")),
            None => Ok(()),
        });
        if let Err(e) = made {
            let _ = self.remove_active(key);
            return Err(e);
        }
        Ok(self.overlay(reserved.id, &reserved.lowers))
    }

    fn overlay(&self, id: u64, lowers: &[SnapshotRecord]) -> Overlay {
        let mut lower: Vec<String> = lowers.iter().map(|r| format!("{}/fs", r.id)).collect();
        if lower.is_empty() {
            // overlayfs needs a lower directory; an empty one stands for "no image".
            lower.push("empty".to_string());
            let _ = fs::create_dir_all(self.dir.join("empty"));
        }
        Overlay {
            base: self.dir.clone(),
            lower,
            upper: format!("{id}/fs"),
            work: format!("{id}/work"),
        }
    }

    /// Remove the writable snapshot `key` (unmounted by the caller). Its
    /// directory leaves the numbered namespace first: a kill after that
    /// leaves a record without a directory (dropped by the next removal) and
    /// a `trash-` directory (deleted by the next sweep), never an unrecorded
    /// numbered directory.
    pub fn remove_active(&self, key: &str) -> Result<()> {
        let Some(active) = self.index.session(|s| s.get_active(key))? else {
            return Ok(());
        };
        let trash = self.discard_dir(active.id)?;
        let mut batch = Batch::default();
        batch.del_active(key);
        self.index.session(|s| {
            s.apply(&batch)?;
            s.flush()
        })?;
        safefs::remove_tree(&trash).ctx(|| format!("removing {}", trash.display()))
    }

    /// First step of removing active snapshot `id` whose record the caller
    /// drops next (`Batch::del_active`) and flushes: move its directory out
    /// of the numbered namespace. Returns the path to delete afterwards.
    pub fn discard_dir(&self, id: u64) -> Result<PathBuf> {
        let dir = self.path_of(id);
        let trash = self.dir.join(format!("trash-active-{id}"));
        match fs::rename(&dir, &trash) {
            Ok(()) => Ok(trash),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(trash),
            Err(e) => Err(e).ctx(|| format!("renaming {}", dir.display())),
        }
    }

    /// Ids of active snapshots' directories the index does not record.
    pub fn unrecorded_active_dirs(&self) -> Result<Vec<u64>> {
        // Listed first: an active snapshot's record precedes its directory.
        let dirs = self.numbered_dirs()?;
        let known = self.index.session(recorded_in)?;
        Ok(dirs
            .into_iter()
            .filter(|(id, path)| !known.contains(id) && !path.join("meta.json").exists())
            .map(|(id, _)| id)
            .collect())
    }
}
