//! Content-addressed blob store. Knows digests and bytes, nothing of images.
//!
//! Layout under the store root:
//! - `blobs/sha256/<hex>`: committed blobs, only ever created by rename after
//!   their digest and size were verified and the data fsynced.
//! - `ingest/<hex>`: in-progress downloads. Each is guarded by an exclusive
//!   `flock` held by the one writer; a partial file left by a dead process is
//!   resumed by the next writer (the lock dies with its holder).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::digest::{Digest, Hasher};
use crate::durable::sync_dir;
use crate::error::{Error, IoContext, Result};

#[derive(Clone, Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

/// Outcome of asking to write a blob.
pub enum Begin {
    /// The blob is already committed; nothing to write.
    Exists,
    /// Another process is writing this blob right now.
    Busy,
    /// We hold the ingest lock and may write.
    Writer(Box<Ingest>),
}

impl ContentStore {
    pub fn open(root: &Path) -> Result<Self> {
        let store = ContentStore {
            blobs: root.join("blobs").join("sha256"),
            ingest: root.join("ingest"),
        };
        for dir in [&store.blobs, &store.ingest] {
            fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        Ok(store)
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn has(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Size of a committed blob, if present.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest)).ok().map(|m| m.len())
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).ctx(|| format!("opening blob {digest}"))
    }

    /// Read a small blob (manifest, config) whole, refusing anything over `limit`.
    pub fn read_small(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let file = self.open_blob(digest)?;
        let len = file.metadata().ctx(|| format!("stat blob {digest}"))?.len();
        if len > limit {
            return Err(Error::TooLarge {
                what: format!("blob {digest}"),
                size: len,
                limit,
            });
        }
        let mut buf = Vec::with_capacity(len as usize);
        file.take(limit)
            .read_to_end(&mut buf)
            .ctx(|| format!("reading blob {digest}"))?;
        Ok(buf)
    }

    /// Store bytes already in memory (manifests, configs) under their digest.
    pub fn write_bytes(&self, expected: &Digest, bytes: &[u8], what: &str) -> Result<()> {
        let Some(mut w) = self.begin_waiting(expected, Some(bytes.len() as u64), what)? else {
            return Ok(());
        };
        w.reset()?;
        w.write(bytes)?;
        w.commit()
    }

    /// [`begin`](Self::begin), waiting out another writer of the same blob:
    /// the writer, or None if the blob is stored (by us or by it). A peer
    /// finishes or dies; the bound only turns a wedged one into an error.
    pub fn begin_waiting(&self, digest: &Digest, size: Option<u64>, what: &str) -> Result<Option<Box<Ingest>>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match self.begin(digest, size, what)? {
                Begin::Exists => return Ok(None),
                Begin::Writer(w) => return Ok(Some(w)),
                Begin::Busy if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Begin::Busy => {
                    return Err(Error::io(
                        format!("writing {what}"),
                        io::Error::new(io::ErrorKind::TimedOut, "another process holds its ingest lock"),
                    ))
                }
            }
        }
    }

    /// Try to become the writer of `expected`. Never blocks: a concurrent
    /// writer yields [`Begin::Busy`] and the caller decides how to wait.
    pub fn begin(&self, expected: &Digest, size: Option<u64>, what: &str) -> Result<Begin> {
        if self.has(expected) {
            return Ok(Begin::Exists);
        }
        let path = self.ingest.join(expected.hex());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx(|| format!("opening ingest file {}", path.display()))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(Begin::Busy),
            Err((_, errno)) => return Err(Error::io(format!("locking {}", path.display()), io::Error::from(errno))),
        };
        // The previous holder may have committed (and unlinked the ingest
        // file) between our open and our lock: re-check both.
        if self.has(expected) {
            // We may have just created this ingest file; don't leave it.
            if lock.metadata().is_ok_and(|m| m.len() == 0) {
                let _ = fs::remove_file(&path);
            }
            return Ok(Begin::Exists);
        }
        let ours = lock.metadata().ctx(|| format!("stat {}", path.display()))?;
        match fs::metadata(&path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {}
            _ => return Ok(Begin::Busy),
        }
        let mut ingest = Ingest {
            file: lock,
            path,
            blob_path: self.blob_path(expected),
            blobs_dir: self.blobs.clone(),
            hasher: Hasher::new(),
            written: 0,
            expected: expected.clone(),
            size,
            what: what.to_string(),
        };
        ingest.rehash_existing()?;
        Ok(Begin::Writer(Box::new(ingest)))
    }

    /// Remove the partial download of `digest` unless a writer holds it.
    pub fn discard_ingest(&self, digest: &Digest) -> Result<()> {
        let path = self.ingest.join(digest.hex());
        let Ok(file) = File::open(&path) else { return Ok(()) };
        if let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
        }
        Ok(())
    }

    pub fn delete(&self, digest: &Digest) -> Result<bool> {
        match fs::remove_file(self.blob_path(digest)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("deleting blob {digest}"), e)),
        }
    }

    /// Every committed blob, with names that are not valid digests reported
    /// separately so a check can flag them.
    pub fn list(&self) -> Result<(Vec<Digest>, Vec<PathBuf>)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for entry in fs::read_dir(&self.blobs).ctx(|| format!("listing {}", self.blobs.display()))? {
            let entry = entry.ctx(|| format!("listing {}", self.blobs.display()))?;
            let name = entry.file_name();
            match name.to_str().map(Digest::from_hex) {
                Some(Ok(d)) => good.push(d),
                _ => bad.push(entry.path()),
            }
        }
        good.sort();
        Ok((good, bad))
    }

    /// Ingest files left behind (by interrupted or running pulls).
    pub fn list_ingest(&self) -> Result<Vec<(PathBuf, u64)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.ingest).ctx(|| format!("listing {}", self.ingest.display()))? {
            let entry = entry.ctx(|| format!("listing {}", self.ingest.display()))?;
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((entry.path(), len));
        }
        Ok(out)
    }

    /// Hash a committed blob and return its actual digest.
    pub fn rehash(&self, digest: &Digest) -> Result<Digest> {
        let mut reader = BufReader::with_capacity(1 << 20, self.open_blob(digest)?);
        hash_reader(&mut reader).ctx(|| format!("reading blob {digest}"))
    }
}

impl ContentStore {
    /// Start a blob whose digest is known only once it is written (a layer
    /// mocker makes): see [`NewBlob`].
    pub fn begin_new(&self, what: &str) -> Result<NewBlob> {
        loop {
            let file = tempfile::Builder::new()
                .prefix(NEW_PREFIX)
                .tempfile_in(&self.ingest)
                .ctx(|| format!("creating a file in {}", self.ingest.display()))?;
            // Held while we write: a sweep removes only the files of dead
            // writers, under this lock.
            let Some(lock) =
                crate::safefs::lock_fresh(file.path()).ctx(|| format!("locking {}", file.path().display()))?
            else {
                continue;
            };
            return Ok(NewBlob {
                file,
                _lock: lock,
                hasher: Hasher::new(),
                written: 0,
                store: self.clone(),
                what: what.to_string(),
            });
        }
    }
}

/// Names of [`NewBlob`]s' temporary files in `ingest/`.
const NEW_PREFIX: &str = ".new-";

impl ContentStore {
    /// Remove what killed writers of new blobs left in `ingest/` (files no
    /// live writer holds); the bytes freed.
    pub fn sweep_new_blobs(&self) -> Result<u64> {
        let mut freed = 0;
        for (path, len) in self.list_ingest()? {
            let ours = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(NEW_PREFIX));
            let Some(file) = ours.then(|| File::open(&path).ok()).flatten() else {
                continue;
            };
            if let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                match fs::remove_file(&path) {
                    Ok(()) => freed += len,
                    // Published (renamed into blobs/) meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).ctx(|| format!("removing {}", path.display())),
                }
            }
        }
        Ok(freed)
    }
}

/// A blob being written to a temporary file in `ingest/` (removed if it is
/// dropped unpublished), hashed as it goes; [`NewBlob::seal`] gives its
/// digest, and [`NewBlob::publish`] renames it into `blobs/` under that
/// digest's ingest lock, as a verified download is.
pub struct NewBlob {
    file: tempfile::NamedTempFile,
    _lock: Flock<File>,
    hasher: Hasher,
    written: u64,
    store: ContentStore,
    what: String,
}

impl Write for NewBlob {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl NewBlob {
    /// Make what was written durable; its digest and size.
    pub fn seal(&mut self) -> Result<(Digest, u64)> {
        let path = self.file.path().to_path_buf();
        self.file.as_file().sync_all().map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ENOSPC) => Error::DiskFull {
                what: self.what.clone(),
            },
            _ => Error::io(format!("syncing {}", path.display()), e),
        })?;
        Ok((std::mem::take(&mut self.hasher).finish(), self.written))
    }

    /// Publish the sealed blob as `digest` (which the caller has leased).
    pub fn publish(self, digest: &Digest) -> Result<()> {
        let Some(ingest) = self.store.begin_waiting(digest, Some(self.written), &self.what)? else {
            return Ok(());
        };
        // Under the digest's lock: ours replaces the empty ingest file.
        self.file
            .persist(&ingest.blob_path)
            .map_err(|e| Error::io(format!("publishing blob {digest}"), e.error))?;
        let _ = fs::remove_file(&ingest.path);
        sync_dir(&ingest.blobs_dir)
    }
}

pub fn hash_reader(reader: &mut impl Read) -> io::Result<Digest> {
    copy_hashed(reader, &mut |_| Ok(())).map(|(digest, _)| digest)
}

/// Copy `data` to `sink` chunk by chunk; its digest and length.
pub fn copy_hashed(data: &mut impl Read, sink: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<(Digest, u64)> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            return Ok((hasher.finish(), total));
        }
        hasher.update(&buf[..n]);
        sink(&buf[..n])?;
        total += n as u64;
    }
}

/// An exclusive, resumable write of one blob. Dropping it without commit
/// keeps the partial data (invisible) for the next attempt to resume.
pub struct Ingest {
    file: Flock<File>,
    path: PathBuf,
    blob_path: PathBuf,
    blobs_dir: PathBuf,
    hasher: Hasher,
    written: u64,
    expected: Digest,
    size: Option<u64>,
    what: String,
}

impl Ingest {
    /// Bytes already present from an earlier attempt; a download resumes here.
    pub fn offset(&self) -> u64 {
        self.written
    }

    fn rehash_existing(&mut self) -> Result<()> {
        let len = self
            .file
            .metadata()
            .ctx(|| format!("stat {}", self.path.display()))?
            .len();
        if self.size.is_some_and(|s| len > s) {
            return self.reset();
        }
        self.file
            .seek(SeekFrom::Start(0))
            .ctx(|| format!("seek {}", self.path.display()))?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut done = 0u64;
        while done < len {
            let n = self
                .file
                .read(&mut buf)
                .ctx(|| format!("reading {}", self.path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            done += n as u64;
        }
        self.hasher = hasher;
        self.written = done;
        Ok(())
    }

    /// Throw away partial data and start from byte 0.
    pub fn reset(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .ctx(|| format!("truncating {}", self.path.display()))?;
        self.file
            .seek(SeekFrom::Start(0))
            .ctx(|| format!("seek {}", self.path.display()))?;
        self.hasher = Hasher::new();
        self.written = 0;
        Ok(())
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(size) = self.size {
            let total = self.written + bytes.len() as u64;
            if total > size {
                self.discard();
                return Err(Error::SizeMismatch {
                    what: self.what.clone(),
                    expected: size,
                    actual: total,
                });
            }
        }
        if let Err(e) = self.file.write_all(bytes) {
            return Err(self.write_error(e));
        }
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn write_error(&mut self, e: io::Error) -> Error {
        if e.raw_os_error() == Some(nix::libc::ENOSPC) {
            // Free the space rather than keep a partial file for resume.
            self.discard();
            return Error::DiskFull {
                what: self.what.clone(),
            };
        }
        Error::io(format!("writing {}", self.path.display()), e)
    }

    fn discard(&mut self) {
        let _ = fs::remove_file(&self.path);
    }

    /// A second, read-only handle on the bytes written so far: a streaming
    /// unpack reads the blob through it while the download appends.
    pub fn reader(&self) -> Result<File> {
        File::open(&self.path).ctx(|| format!("opening {}", self.path.display()))
    }

    /// Verify size and digest, fsync, and atomically publish the blob.
    pub fn commit(mut self) -> Result<()> {
        if let Some(size) = self.size {
            if self.written != size {
                self.discard();
                return Err(Error::SizeMismatch {
                    what: self.what.clone(),
                    expected: size,
                    actual: self.written,
                });
            }
        }
        let actual = std::mem::take(&mut self.hasher).finish();
        if actual != self.expected {
            self.discard();
            return Err(Error::DigestMismatch {
                what: self.what.clone(),
                expected: self.expected.to_string(),
                actual: actual.to_string(),
            });
        }
        if let Err(e) = self.file.sync_all() {
            return Err(self.write_error(e));
        }
        fs::rename(&self.path, &self.blob_path).ctx(|| format!("publishing blob {}", self.expected))?;
        sync_dir(&self.blobs_dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn new_blobs_are_published_by_digest_and_dead_ones_swept() {
        let (_dir, store) = store();
        let mut blob = store.begin_new("test").unwrap();
        blob.write_all(b"made here").unwrap();
        // A live writer's file is left alone; a dead one's is removed.
        std::fs::write(store.ingest.join(".new-dead"), b"left by a kill").unwrap();
        assert_eq!(store.sweep_new_blobs().unwrap(), 14);
        let (digest, size) = blob.seal().unwrap();
        assert_eq!((digest.clone(), size), (Digest::of_bytes(b"made here"), 9));
        blob.publish(&digest).unwrap();
        assert_eq!(store.rehash(&digest).unwrap(), digest);
        assert!(store.list_ingest().unwrap().is_empty());
    }

    #[test]
    fn commit_publishes_only_verified_bytes() {
        let (_dir, store) = store();
        let data = b"hello world";
        let d = Digest::of_bytes(data);
        store.write_bytes(&d, data, "test blob").unwrap();
        assert!(store.has(&d));
        assert_eq!(store.rehash(&d).unwrap(), d);
        assert!(matches!(store.begin(&d, None, "x").unwrap(), Begin::Exists));
    }

    #[test]
    fn mismatched_bytes_leave_nothing_behind() {
        let (dir, store) = store();
        let claimed = Digest::of_bytes(b"the real thing");
        let err = store.write_bytes(&claimed, b"an impostor!!!", "layer x").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(claimed.as_str()), "{msg}");
        assert!(msg.contains(Digest::of_bytes(b"an impostor!!!").as_str()), "{msg}");
        assert!(!store.has(&claimed));
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
    }

    #[test]
    fn oversize_write_is_rejected_at_once() {
        let (_dir, store) = store();
        let d = Digest::of_bytes(b"abc");
        let Begin::Writer(mut w) = store.begin(&d, Some(3), "blob").unwrap() else {
            panic!("expected writer")
        };
        let err = w.write(b"abcd").unwrap_err();
        assert!(matches!(
            err,
            Error::SizeMismatch {
                expected: 3,
                actual: 4,
                ..
            }
        ));
    }

    #[test]
    fn second_writer_is_busy_and_partial_data_resumes() {
        let (_dir, store) = store();
        let data = b"0123456789";
        let d = Digest::of_bytes(data);
        let Begin::Writer(mut w) = store.begin(&d, Some(10), "blob").unwrap() else {
            panic!("expected writer")
        };
        w.write(&data[..4]).unwrap();
        assert!(matches!(store.begin(&d, Some(10), "blob").unwrap(), Begin::Busy));
        drop(w);
        let Begin::Writer(mut w) = store.begin(&d, Some(10), "blob").unwrap() else {
            panic!("expected writer")
        };
        assert_eq!(w.offset(), 4);
        w.write(&data[4..]).unwrap();
        w.commit().unwrap();
        assert_eq!(store.rehash(&d).unwrap(), d);
    }

    #[test]
    fn list_reports_foreign_names() {
        let (dir, store) = store();
        let d = Digest::of_bytes(b"x");
        store.write_bytes(&d, b"x", "x").unwrap();
        fs::write(dir.path().join("blobs/sha256/not-a-digest"), b"").unwrap();
        let (good, bad) = store.list().unwrap();
        assert_eq!(good, vec![d]);
        assert_eq!(bad.len(), 1);
    }
}
