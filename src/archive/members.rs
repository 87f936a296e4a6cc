//! One streaming pass over an archive: each member lands where it will be
//! used without ever being held whole — `blobs/sha256/<hex>` straight into
//! the store's verified ingest, small documents in memory (capped), other
//! files (old-layout `layer.tar`s) spooled to a directory under the root
//! that is removed with the load. Links become aliases, resolved only
//! inside the archive's own names.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use super::error::{io, ArchiveError};
use super::layout::BLOBS_DIR;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{Compression, MAX_CONFIG_BYTES};
use crate::store::copy_hashed;
use crate::store::ContentStore;
use crate::tarstream::{Kind, Reader};

/// Links followed at most in a row (a loop is an error, not a hang).
const MAX_ALIASES: usize = 16;
/// Bytes copied at a time.
const CHUNK: usize = 1 << 20;

/// Where one member's content is.
#[derive(Clone, Debug)]
pub enum Member {
    /// A small document, read whole (at most the config limit).
    Small(Vec<u8>),
    /// Committed to the store under its digest (verified against its name).
    Blob(Digest),
    /// Spooled to a file, hashed on the way.
    Spooled { path: PathBuf, digest: Digest, size: u64 },
    /// A symlink or hard link: the member it names.
    Alias(String),
}

/// The archive's members by normalised path.
/// Bound on all the documents (indexes, manifests, configs) an archive's
/// load holds in memory at once: each is capped on its own, their number
/// is not.
const MAX_DOCUMENTS: u64 = 64 << 20;

pub struct Members {
    map: HashMap<String, Member>,
    /// Bytes of the documents held in memory, bounded by `MAX_DOCUMENTS`.
    documents: u64,
    /// Removed with the load, whatever its outcome (or by the next sweep
    /// after a kill).
    spool: crate::gc::Spool,
}

impl Members {
    /// Read the whole (decompressed) archive. `on_commit` is told of each blob
    /// before it is committed to the store (to lease it).
    pub fn read(
        input: impl Read,
        store: &ContentStore,
        spool_in: &Path,
        on_commit: &mut dyn FnMut(&Digest) -> Result<()>,
    ) -> Result<Members> {
        let spool = crate::gc::Spool::new(spool_in)
            .map_err(io(format!("creating a spool directory in {}", spool_in.display())))?;
        let mut members = Members {
            map: HashMap::new(),
            documents: 0,
            spool,
        };
        let mut reader = Reader::new(input);
        while let Some(entry) = reader.next_entry().map_err(ArchiveError::Tar)? {
            let Some(path) = normalise(&entry.path)? else { continue };
            let member = match entry.kind {
                Kind::Dir => continue,
                Kind::Symlink | Kind::HardLink => {
                    let link = entry.link.clone().unwrap_or_default();
                    Member::Alias(link_target(&path, &link, entry.kind == Kind::Symlink)?)
                }
                Kind::File => members.take_file(&path, entry.size, &mut reader.data(), store, on_commit)?,
                other => {
                    return Err(ArchiveError::UnsupportedMember {
                        path,
                        kind: format!("{other:?}"),
                    }
                    .into())
                }
            };
            if members.map.insert(path.clone(), member).is_some() {
                return Err(ArchiveError::DuplicateMember(path).into());
            }
        }
        Ok(members)
    }

    fn take_file(
        &mut self,
        path: &str,
        size: u64,
        data: &mut impl Read,
        store: &ContentStore,
        on_commit: &mut dyn FnMut(&Digest) -> Result<()>,
    ) -> Result<Member> {
        if let Some(hex) = path.strip_prefix(BLOBS_DIR) {
            let digest = Digest::from_hex(hex).map_err(|_| ArchiveError::Invalid {
                what: format!("blob name {path:?}"),
                reason: "not a sha256 digest".into(),
            })?;
            // Leased before the store is asked, so no collection takes it
            // (new or already there) while the load runs.
            on_commit(&digest)?;
            ingest(store, &digest, size, data)?;
            return Ok(Member::Blob(digest));
        }
        if is_document(path) {
            if size > MAX_CONFIG_BYTES {
                return Err(Error::TooLarge {
                    what: format!("{path:?} in the archive"),
                    size,
                    limit: MAX_CONFIG_BYTES,
                });
            }
            self.documents += size;
            if self.documents > MAX_DOCUMENTS {
                return Err(Error::TooLarge {
                    what: "the JSON documents of the archive".into(),
                    size: self.documents,
                    limit: MAX_DOCUMENTS,
                });
            }
            let mut bytes = Vec::with_capacity(size as usize);
            data.read_to_end(&mut bytes).map_err(io(format!("reading {path:?}")))?;
            return Ok(Member::Small(bytes));
        }
        let spooled = self.spool.path().join(self.map.len().to_string());
        let mut file = std::fs::File::create(&spooled).map_err(io(format!("spooling {path:?}")))?;
        let (digest, size) =
            copy_hashed(data, &mut |chunk| file.write_all(chunk)).map_err(io(format!("spooling {path:?}")))?;
        Ok(Member::Spooled {
            path: spooled,
            digest,
            size,
        })
    }

    /// The member `path` names, links followed.
    pub fn get(&self, path: &str, what: &'static str) -> Result<&Member> {
        let mut path = normalise(Path::new(path))?.unwrap_or_default();
        for _ in 0..MAX_ALIASES {
            match self.map.get(&path) {
                Some(Member::Alias(target)) => path = target.clone(),
                Some(member) => return Ok(member),
                None => break,
            }
        }
        Err(ArchiveError::Missing { what, path }.into())
    }

    pub fn has(&self, path: &str) -> bool {
        self.map.contains_key(path)
    }

    /// A document member's bytes (from memory, the store or the spool), capped.
    pub fn read_small(&self, path: &str, store: &ContentStore, what: &'static str) -> Result<Vec<u8>> {
        match self.get(path, what)? {
            Member::Small(bytes) => Ok(bytes.clone()),
            Member::Blob(digest) => store.read_small(digest, MAX_CONFIG_BYTES),
            Member::Spooled { path: file, size, .. } => {
                if *size > MAX_CONFIG_BYTES {
                    return Err(Error::TooLarge {
                        what: format!("{path:?} in the archive"),
                        size: *size,
                        limit: MAX_CONFIG_BYTES,
                    });
                }
                std::fs::read(file).map_err(io(format!("reading {path:?}")))
            }
            Member::Alias(_) => Err(ArchiveError::Missing {
                what,
                path: path.into(),
            }
            .into()),
        }
    }
}

/// Write `size` bytes of `data` into the store as `digest`; false if the
/// store had it already (the bytes are skipped with the member).
pub fn ingest(store: &ContentStore, digest: &Digest, size: u64, data: &mut impl Read) -> Result<bool> {
    let what = format!("blob {digest} in the archive");
    // A pull writing the same blob finishes or dies: waited for.
    let Some(mut writer) = store.begin_waiting(digest, Some(size), &what)? else {
        return Ok(false);
    };
    // A partial file from an earlier attempt is not ours to resume from.
    writer.reset()?;
    let mut failed = None;
    let copied = copy_hashed(data, &mut |chunk| {
        writer.write(chunk).map_err(|e| {
            failed = Some(e);
            std::io::Error::other("store write failed")
        })
    });
    // The writer holds the ingest lock: dropped before the discard.
    let result = match (copied, failed) {
        (Ok(_), None) => writer.commit(),
        (Err(e), None) => {
            drop(writer);
            Err(io(format!("reading {what}"))(e))
        }
        (_, Some(e)) => {
            drop(writer);
            Err(e)
        }
    };
    if result.is_err() {
        // A load is not resumed: leave no partial file in ingest/.
        let _ = store.discard_ingest(digest);
    }
    result.map(|()| true)
}

/// Documents kept in memory: docker's and the OCI layout's JSON files.
fn is_document(path: &str) -> bool {
    path.ends_with(".json")
        || path.ends_with("/json")
        || matches!(path, "repositories" | "oci-layout" | "VERSION")
        || path.ends_with("/VERSION")
}

/// `path` relative to the archive's root, `./` and trailing `/` dropped;
/// None for the root itself; an error for an absolute path or one with `..`.
fn normalise(path: &Path) -> Result<Option<String>> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return Err(ArchiveError::UnsafePath(path.to_string_lossy().into_owned()).into()),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// The member a link names: a symlink's target is relative to the link's
/// directory, a hard link's to the root; neither may leave the archive.
fn link_target(path: &str, link: &Path, symlink: bool) -> Result<String> {
    let unsafe_link = || ArchiveError::UnsafePath(format!("{path} -> {}", link.display()));
    let mut parts: Vec<String> = if symlink {
        path.split('/').map(String::from).collect()
    } else {
        Vec::new()
    };
    parts.pop();
    if !symlink {
        parts.clear();
    }
    for c in link.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop().ok_or_else(unsafe_link)?;
            }
            _ => return Err(unsafe_link().into()),
        }
    }
    if parts.is_empty() {
        return Err(unsafe_link().into());
    }
    Ok(parts.join("/"))
}

/// The decompressed stream of an archive that may be gzip- or
/// zstd-compressed, told by its first bytes.
pub fn decompressed<'a>(input: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut input = BufReader::with_capacity(CHUNK, input);
    let head = input.fill_buf().map_err(io("reading the archive"))?;
    Ok(match Compression::sniff(head) {
        Some(Compression::Gzip) => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Some(Compression::Zstd) => {
            Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(io("reading the archive"))?)
        }
        _ => Box::new(input),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_confined() {
        assert_eq!(normalise(Path::new("./a/b/")).unwrap().as_deref(), Some("a/b"));
        assert_eq!(normalise(Path::new("./")).unwrap(), None);
        assert!(normalise(Path::new("../x")).is_err());
        assert!(normalise(Path::new("a/../../x")).is_err());
        assert!(normalise(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn links_resolve_inside_the_archive() {
        let t = |p: &str, l: &str, s: bool| link_target(p, Path::new(l), s).ok();
        assert_eq!(
            t("abc/layer.tar", "../blobs/sha256/ff", true).as_deref(),
            Some("blobs/sha256/ff")
        );
        assert_eq!(
            t("abc/layer.tar", "def/layer.tar", false).as_deref(),
            Some("def/layer.tar")
        );
        assert_eq!(t("abc/layer.tar", "../../etc/passwd", true), None);
        assert_eq!(t("abc/layer.tar", "/etc/passwd", true), None);
    }
}
