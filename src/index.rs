//! The metadata index: a sled database of references, images, layers and
//! leases. It knows digests and records, never bytes or registries.
//!
//! sled 0.34 allows one process per database and acknowledges writes before
//! they reach disk. mocker has no daemon, so every command opens the index
//! for one short [`Session`] (a few reads and at most a couple of
//! transactions), flushes, and closes it. Sessions are serialised by an
//! `flock` on `index.lock`, which a second command waits for (bounded) rather
//! than failing; nothing slow (network, unpacking) ever runs inside one.
//!
//! All keys live in one tree under prefixes so a multi-key update is a single
//! sled transaction:
//! - `meta/schema-version` → `"1"`
//! - `ref/<name:tag | name@digest>` → manifest digest
//! - `image/<manifest digest>` → [`ImageRecord`] (JSON)
//! - `layer/<compressed digest>` → [`LayerRecord`] (JSON)
//! - `lease/<pid>-<nanos>` → [`Lease`] (JSON): blobs an in-flight pull needs
//! - `snapshot/<chain id>` → [`SnapshotRecord`] (JSON): a committed layer snapshot
//! - `active/<key>` → [`ActiveRecord`] (JSON): a writable snapshot (a container's)

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

pub const SCHEMA_VERSION: u32 = 1;
const SCHEMA_KEY: &[u8] = b"meta/schema-version";
const NEXT_ID_KEY: &[u8] = b"meta/next-id";
const REF: &str = "ref/";
const IMAGE: &str = "image/";
const LAYER: &str = "layer/";
const LEASE: &str = "lease/";
const SNAPSHOT: &str = "snapshot/";
const ACTIVE: &str = "active/";
const CONTAINER: &str = "container/";
const NAME: &str = "name/";
const ADDRESS: &str = "ip/";

/// One pulled image, keyed by its (platform-specific) manifest digest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub manifest_size: u64,
    /// The image index / manifest list it was resolved from, if any: docker's
    /// "repo digest" is this one.
    pub index_digest: Option<Digest>,
    pub config_digest: Digest,
    pub config_size: u64,
    /// Compressed layer digests, base first.
    pub layers: Vec<Digest>,
    /// The config's diff_ids and the chain IDs they make, base first.
    pub diff_ids: Vec<Digest>,
    pub chain_ids: Vec<Digest>,
    pub platform: String,
    /// The config's `created` timestamp, as written by the image's builder.
    pub created: Option<String>,
}

impl ImageRecord {
    /// Every blob this image needs, manifest first.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut out = vec![self.manifest_digest.clone(), self.config_digest.clone()];
        out.extend(self.index_digest.iter().cloned());
        out.extend(self.layers.iter().cloned());
        out
    }

    /// The digest docker prints after a pull and lists with `--digests`.
    pub fn repo_digest(&self) -> &Digest {
        self.index_digest.as_ref().unwrap_or(&self.manifest_digest)
    }
}

/// A layer blob and the uncompressed content it carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub diff_id: Digest,
}

/// A committed, read-only layer snapshot: `snapshots/<id>/fs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: u64,
    pub chain_id: Digest,
    pub parent: Option<Digest>,
    pub diff_id: Digest,
    /// Bytes of file data unpacked into it.
    pub size: u64,
}

/// A writable snapshot over a chain of committed ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveRecord {
    pub id: u64,
    pub key: String,
    pub parent: Option<Digest>,
}

/// A container: its name and the image it was created from. Everything
/// else about it lives in `containers/<id>/` (see `container`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub image_manifest: Digest,
    #[serde(with = "crate::timestamp::rfc3339")]
    pub created: crate::timestamp::Timestamp,
    /// Its bridge and address, when it has one (`ip/<bridge>/<addr>`).
    pub address: Option<(String, std::net::Ipv4Addr)>,
}

/// Blobs a running pull depends on before its image is recorded. The pull
/// holds an flock on `leases/<id>` for as long as it runs; garbage
/// collection keeps a lease's blobs while that lock is held (a pid could be
/// reused, a lock dies with its holder).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lease {
    pub pid: u32,
    pub digests: Vec<Digest>,
}

/// The held lock that keeps a lease alive.
pub struct LeaseLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl Drop for LeaseLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A set of index changes applied atomically.
#[derive(Default)]
pub struct Batch(Vec<(String, Option<Vec<u8>>)>);

impl Batch {
    fn put<T: Serialize>(&mut self, key: String, value: &T) -> &mut Self {
        // Records are plain structs of strings and numbers: serialising them
        // cannot fail, and an empty value would be a bug, not bad input.
        let bytes = serde_json::to_vec(value).expect("index records serialise");
        self.0.push((key, Some(bytes)));
        self
    }
    fn del(&mut self, key: String) -> &mut Self {
        self.0.push((key, None));
        self
    }
    pub fn put_ref(&mut self, name: &str, manifest: &Digest) -> &mut Self {
        self.put(format!("{REF}{name}"), manifest)
    }
    pub fn del_ref(&mut self, name: &str) -> &mut Self {
        self.del(format!("{REF}{name}"))
    }
    pub fn put_image(&mut self, image: &ImageRecord) -> &mut Self {
        self.put(format!("{IMAGE}{}", image.manifest_digest), image)
    }
    pub fn del_image(&mut self, manifest: &Digest) -> &mut Self {
        self.del(format!("{IMAGE}{manifest}"))
    }
    pub fn put_layer(&mut self, layer: &LayerRecord) -> &mut Self {
        self.put(format!("{LAYER}{}", layer.digest), layer)
    }
    pub fn del_layer(&mut self, digest: &Digest) -> &mut Self {
        self.del(format!("{LAYER}{digest}"))
    }
    pub fn put_lease(&mut self, id: &str, lease: &Lease) -> &mut Self {
        self.put(format!("{LEASE}{id}"), lease)
    }
    pub fn del_lease(&mut self, id: &str) -> &mut Self {
        self.del(format!("{LEASE}{id}"))
    }
    pub fn put_snapshot(&mut self, snapshot: &SnapshotRecord) -> &mut Self {
        self.put(format!("{SNAPSHOT}{}", snapshot.chain_id), snapshot)
    }
    pub fn del_snapshot(&mut self, chain_id: &Digest) -> &mut Self {
        self.del(format!("{SNAPSHOT}{chain_id}"))
    }
    pub fn put_active(&mut self, active: &ActiveRecord) -> &mut Self {
        self.put(format!("{ACTIVE}{}", active.key), active)
    }
    pub fn del_active(&mut self, key: &str) -> &mut Self {
        self.del(format!("{ACTIVE}{key}"))
    }
    /// A container with its unique name and (optionally) its address.
    pub fn put_container(&mut self, container: &ContainerRecord) -> &mut Self {
        self.put(format!("{NAME}{}", container.name), &container.id);
        if let Some((bridge, ip)) = &container.address {
            self.put(format!("{ADDRESS}{bridge}/{ip}"), &container.id);
        }
        self.put(format!("{CONTAINER}{}", container.id), container)
    }
    pub fn del_container(&mut self, container: &ContainerRecord) -> &mut Self {
        self.del(format!("{NAME}{}", container.name));
        if let Some((bridge, ip)) = &container.address {
            self.del(format!("{ADDRESS}{bridge}/{ip}"));
        }
        self.del(format!("{CONTAINER}{}", container.id))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Debug)]
pub struct Index {
    dir: PathBuf,
    lock_path: PathBuf,
    wait: Duration,
}

impl Index {
    pub fn new(root: &Path) -> Self {
        Index {
            dir: root.join("index"),
            lock_path: root.join("index.lock"),
            wait: Duration::from_secs(60),
        }
    }

    pub fn with_lock_timeout(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn leases_dir(&self) -> PathBuf {
        self.lock_path.with_file_name("leases")
    }

    fn lease_path(&self, id: &str) -> PathBuf {
        self.leases_dir().join(id)
    }

    /// Take the lock that marks lease `id` as held by this process.
    pub fn hold_lease(&self, id: &str) -> Result<LeaseLock> {
        let path = self.lease_path(id);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        let start = Instant::now();
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .ctx(|| format!("creating lease {}", path.display()))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                // A garbage collection removes a lease file it could lock,
                // and does so under that lock: if it took ours between our
                // open and our lock, the path no longer names the file we
                // locked, and we start again with a new one.
                Ok(lock) => {
                    use std::os::unix::fs::MetadataExt;
                    let ours = lock.metadata().ctx(|| format!("stat of lease {}", path.display()))?;
                    match std::fs::metadata(&path) {
                        Ok(st) if st.dev() == ours.dev() && st.ino() == ours.ino() => {
                            return Ok(LeaseLock { _lock: lock, path })
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e).ctx(|| format!("stat of lease {}", path.display())),
                    }
                }
                // A collection holds it for a moment while it removes it.
                Err((_, nix::errno::Errno::EWOULDBLOCK)) if start.elapsed() < self.wait => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err((_, e)) => return Err(Error::io(format!("locking lease {}", path.display()), e.into())),
            }
        }
    }

    /// Remove what killed pulls left: lease records and `leases/` files
    /// whose lock nobody holds. Runs inside the caller's session; returns
    /// the ids dropped. A file is removed only while we hold its lock, which
    /// `hold_lease` detects, so a pull that is just taking its lease is
    /// never left holding a lock on a file that is gone.
    pub fn drop_dead_leases(&self, s: &Session) -> Result<Vec<String>> {
        let mut dropped = Vec::new();
        let mut batch = Batch::default();
        for id in s.leases()?.keys() {
            if !self.lease_is_live(id) {
                batch.del_lease(id);
                dropped.push(id.clone());
            }
        }
        s.apply(&batch)?;
        let dir = self.leases_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(dropped),
            Err(e) => return Err(e).ctx(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx(|| format!("opening lease {}", path.display())),
            };
            let _lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                // Held: a live pull (or a moment's check by another process).
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => continue,
                Err((_, e)) => return Err(Error::io(format!("locking lease {}", path.display()), e.into())),
            };
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx(|| format!("removing lease {}", path.display())),
            }
            let id = entry.file_name().to_string_lossy().into_owned();
            if !dropped.contains(&id) {
                dropped.push(id);
            }
        }
        Ok(dropped)
    }

    /// Whether the pull that wrote lease `id` is still running.
    pub fn lease_is_live(&self, id: &str) -> bool {
        let Ok(file) = File::open(self.lease_path(id)) else {
            return false;
        };
        matches!(
            Flock::lock(file, FlockArg::LockSharedNonblock),
            Err((_, nix::errno::Errno::EWOULDBLOCK))
        )
    }

    /// Move an unreadable database aside (under the index lock) so a fresh
    /// one can be rebuilt; returns where it went.
    pub fn set_aside(&self) -> Result<PathBuf> {
        let _lock = self.lock()?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let aside = self.dir.with_extension(format!("corrupt-{stamp}"));
        std::fs::rename(&self.dir, &aside).ctx(|| format!("moving the index aside to {}", aside.display()))?;
        Ok(aside)
    }

    /// Open the index, run `f`, flush and close. While `f` runs no other
    /// mocker process can read or write the index.
    pub fn session<T>(&self, f: impl FnOnce(&Session) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let db = self.open_db()?;
        let session = Session { db };
        session.check_schema(&self.dir)?;
        let out = f(&session)?;
        session.db.flush()?;
        Ok(out)
    }

    /// Wait for the inter-process lock; bounded so a wedged peer is reported.
    pub fn lock(&self) -> Result<Flock<File>> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&self.lock_path)
                .ctx(|| format!("opening {}", self.lock_path.display()))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(lock),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) if start.elapsed() < self.wait => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(Error::IndexBusy {
                        path: self.dir.clone(),
                        waited_secs: self.wait.as_secs(),
                    })
                }
                Err((_, errno)) => {
                    return Err(Error::io(format!("locking {}", self.lock_path.display()), errno.into()))
                }
            }
        }
    }

    fn open_db(&self) -> Result<sled::Db> {
        // Our flock already excludes other mocker processes; sled's own lock
        // can still lag a moment behind a peer's close, so retry briefly.
        let start = Instant::now();
        loop {
            // Sessions are short and end with a flush: no background flusher,
            // and a cache sized for an index, not for a database server.
            let config = sled::Config::new()
                .path(&self.dir)
                .flush_every_ms(None)
                .cache_capacity(16 << 20);
            match crate::startup::ahead_of_sled_spinning_threads(|| config.open()) {
                Ok(db) => return Ok(db),
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && start.elapsed() < self.wait =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                // Only damage to the database itself is "unreadable"; a
                // permission or resource error must not invite a repair
                // that sets a healthy index aside.
                Err(e @ (sled::Error::Corruption { .. } | sled::Error::ReportableBug(_))) => {
                    return Err(Error::IndexUnreadable {
                        path: self.dir.clone(),
                        reason: e.to_string(),
                    })
                }
                Err(e) => return Err(Error::Index(format!("opening {}: {e}", self.dir.display()))),
            }
        }
    }
}

pub struct Session {
    db: sled::Db,
}

/// An entry that does not decode: its full key and the reason.
pub type CorruptEntry = (String, String);

/// The whole index, decoded.
#[derive(Default)]
pub struct Contents {
    pub refs: BTreeMap<String, Digest>,
    pub images: BTreeMap<String, ImageRecord>,
    pub layers: BTreeMap<String, LayerRecord>,
    pub leases: BTreeMap<String, Lease>,
    pub snapshots: BTreeMap<String, SnapshotRecord>,
    pub actives: BTreeMap<String, ActiveRecord>,
}

impl Session {
    fn check_schema(&self, dir: &Path) -> Result<()> {
        match self.db.get(SCHEMA_KEY)? {
            Some(v) if v.as_ref() == SCHEMA_VERSION.to_string().as_bytes() => Ok(()),
            Some(v) => Err(Error::IndexSchema {
                path: dir.to_path_buf(),
                found: String::from_utf8_lossy(&v).into_owned(),
                expected: SCHEMA_VERSION,
            }),
            None => {
                self.db.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes())?;
                Ok(())
            }
        }
    }

    fn get<T: DeserializeOwned>(&self, key: String) -> Result<Option<T>> {
        match self.db.get(key.as_bytes())? {
            None => Ok(None),
            Some(v) => decode(&key, &v).map(Some),
        }
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<BTreeMap<String, T>> {
        let (good, bad) = self.scan_lenient(prefix)?;
        match bad.first() {
            Some((key, reason)) => Err(Error::Index(format!("entry {key} is corrupt: {reason}"))),
            None => Ok(good),
        }
    }

    /// Like `scan`, but returns undecodable entries (full key, reason)
    /// instead of failing, so a repair can drop them.
    fn scan_lenient<T: DeserializeOwned>(&self, prefix: &str) -> Result<(BTreeMap<String, T>, Vec<CorruptEntry>)> {
        let mut good = BTreeMap::new();
        let mut bad = Vec::new();
        for item in self.db.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k).into_owned();
            match serde_json::from_slice(&v) {
                Ok(value) => {
                    good.insert(key[prefix.len()..].to_string(), value);
                }
                Err(e) => bad.push((key, e.to_string())),
            }
        }
        Ok((good, bad))
    }

    /// Every entry, with the keys of undecodable ones.
    pub fn scan_all_lenient(&self) -> Result<(Contents, Vec<CorruptEntry>)> {
        let (refs, mut bad) = self.scan_lenient(REF)?;
        let (images, b) = self.scan_lenient(IMAGE)?;
        bad.extend(b);
        let (layers, b) = self.scan_lenient(LAYER)?;
        bad.extend(b);
        let (leases, b) = self.scan_lenient(LEASE)?;
        bad.extend(b);
        let (snapshots, b) = self.scan_lenient(SNAPSHOT)?;
        bad.extend(b);
        let (actives, b) = self.scan_lenient(ACTIVE)?;
        bad.extend(b);
        Ok((
            Contents {
                refs,
                images,
                layers,
                leases,
                snapshots,
                actives,
            },
            bad,
        ))
    }

    /// Remove raw keys (corrupt entries found by a lenient scan).
    pub fn remove_keys(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            self.db.remove(key.as_bytes())?;
        }
        Ok(())
    }

    /// Make everything applied so far durable. Call before acting on the
    /// disk in a way that assumes the index change happened (e.g. unlinks).
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    pub fn get_ref(&self, name: &str) -> Result<Option<Digest>> {
        self.get(format!("{REF}{name}"))
    }

    pub fn get_image(&self, manifest: &Digest) -> Result<Option<ImageRecord>> {
        self.get(format!("{IMAGE}{manifest}"))
    }

    pub fn get_layer(&self, digest: &Digest) -> Result<Option<LayerRecord>> {
        self.get(format!("{LAYER}{digest}"))
    }

    pub fn get_snapshot(&self, chain_id: &Digest) -> Result<Option<SnapshotRecord>> {
        self.get(format!("{SNAPSHOT}{chain_id}"))
    }

    pub fn get_active(&self, key: &str) -> Result<Option<ActiveRecord>> {
        self.get(format!("{ACTIVE}{key}"))
    }

    pub fn snapshots(&self) -> Result<BTreeMap<String, SnapshotRecord>> {
        self.scan(SNAPSHOT)
    }

    pub fn actives(&self) -> Result<BTreeMap<String, ActiveRecord>> {
        self.scan(ACTIVE)
    }

    /// A new unique small id (sled's generate_id jumps by a million per
    /// open, and these ids end up in overlayfs mount options).
    pub fn next_id(&self) -> Result<u64> {
        let next = self.db.update_and_fetch(NEXT_ID_KEY, |old| {
            let n = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        Ok(next
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(1))
    }

    pub fn get_container(&self, id: &str) -> Result<Option<ContainerRecord>> {
        self.get(format!("{CONTAINER}{id}"))
    }

    pub fn containers(&self) -> Result<BTreeMap<String, ContainerRecord>> {
        self.scan(CONTAINER)
    }

    /// The id of the container holding `name`.
    pub fn container_named(&self, name: &str) -> Result<Option<String>> {
        self.get(format!("{NAME}{name}"))
    }

    /// Addresses in use on `bridge`.
    pub fn addresses(&self, bridge: &str) -> Result<Vec<std::net::Ipv4Addr>> {
        let used: BTreeMap<String, String> = self.scan(&format!("{ADDRESS}{bridge}/"))?;
        Ok(used.keys().filter_map(|k| k.parse().ok()).collect())
    }

    pub fn refs(&self) -> Result<BTreeMap<String, Digest>> {
        self.scan(REF)
    }

    pub fn images(&self) -> Result<BTreeMap<String, ImageRecord>> {
        self.scan(IMAGE)
    }

    pub fn layers(&self) -> Result<BTreeMap<String, LayerRecord>> {
        self.scan(LAYER)
    }

    pub fn leases(&self) -> Result<BTreeMap<String, Lease>> {
        self.scan(LEASE)
    }

    /// Apply every change in `batch` in one sled transaction.
    pub fn apply(&self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.db.transaction(|tx| {
            for (key, value) in &batch.0 {
                match value {
                    Some(v) => tx.insert(key.as_bytes(), v.as_slice())?,
                    None => tx.remove(key.as_bytes())?,
                };
            }
            Ok::<_, sled::transaction::ConflictableTransactionError<Error>>(())
        })?;
        Ok(())
    }

    /// Drop every key (used by repair before rebuilding).
    pub fn clear(&self) -> Result<()> {
        self.db.clear()?;
        self.db.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes())?;
        Ok(())
    }
}

pub(crate) fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Index(format!("entry {key} is corrupt: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seed: &[u8]) -> ImageRecord {
        ImageRecord {
            manifest_digest: Digest::of_bytes(seed),
            manifest_media_type: "m".into(),
            manifest_size: 1,
            index_digest: None,
            config_digest: Digest::of_bytes(b"config"),
            config_size: 2,
            layers: vec![Digest::of_bytes(b"layer")],
            diff_ids: vec![Digest::of_bytes(b"diff")],
            chain_ids: vec![Digest::of_bytes(b"diff")],
            platform: "linux/amd64".into(),
            created: None,
        }
    }

    #[test]
    fn batch_applies_all_keys_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::new(dir.path());
        let img = record(b"m1");
        index
            .session(|s| {
                let mut b = Batch::default();
                b.put_image(&img)
                    .put_ref("docker.io/library/a:latest", &img.manifest_digest);
                s.apply(&b)
            })
            .unwrap();
        let (refs, images) = index.session(|s| Ok((s.refs()?, s.images()?))).unwrap();
        assert_eq!(refs["docker.io/library/a:latest"], img.manifest_digest);
        assert_eq!(images.len(), 1);
        assert_eq!(index.session(|s| s.get_image(&img.manifest_digest)).unwrap(), Some(img));
    }

    #[test]
    fn failing_session_writes_nothing_partial() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::new(dir.path());
        let img = record(b"m2");
        let res: Result<()> = index.session(|s| {
            s.db.transaction(|tx| {
                tx.insert(format!("{IMAGE}{}", img.manifest_digest).as_bytes(), b"{}".as_slice())?;
                sled::transaction::abort(Error::Interrupted)?;
                Ok(())
            })?;
            Ok(())
        });
        assert!(res.is_err());
        assert!(index.session(|s| s.images()).unwrap().is_empty());
    }

    #[test]
    fn second_session_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::new(dir.path());
        let held = index.lock().unwrap();
        let other = index.clone().with_lock_timeout(Duration::from_millis(100));
        assert!(matches!(other.session(|_| Ok(())), Err(Error::IndexBusy { .. })));
        let waiter = std::thread::spawn(move || index.session(|s| s.refs().map(|r| r.len())));
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
        assert_eq!(waiter.join().unwrap().unwrap(), 0);
    }

    #[test]
    fn schema_version_mismatch_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::new(dir.path());
        index
            .session(|s| Ok(s.db.insert(SCHEMA_KEY, b"99".as_slice())?))
            .unwrap();
        assert!(matches!(index.session(|_| Ok(())), Err(Error::IndexSchema { .. })));
    }
}
