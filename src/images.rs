//! Local image operations over the index and the store: list, tag, remove
//! (with garbage collection), inspect, and disk usage.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gc::{collect_unreferenced, referenced_blobs, referenced_snapshots, sweep};
use crate::index::{Batch, ImageRecord, Session, SnapshotRecord};
pub use crate::lookup::find;
use crate::lookup::{resolve, Target};
use crate::manifest::{MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::reference::{familiar_name, split_index_key, ImageRef};
use crate::snapshot;
use crate::Mocker;

/// One row of `mocker images`.
#[derive(Clone, Debug, Serialize)]
pub struct ImageSummary {
    pub repository: String,
    pub tag: String,
    /// docker's repo digest (`<none>` when the image has no name).
    pub digest: String,
    pub id: Digest,
    pub created: Option<String>,
    pub size: u64,
}

/// An image's size as docker reports it: the bytes of its unpacked layers;
/// the bytes of its blobs if it is not (fully) unpacked.
pub fn image_size(snapshots: &BTreeMap<String, SnapshotRecord>, mocker: &Mocker, image: &ImageRecord) -> u64 {
    let unpacked: Option<u64> = image
        .chain_ids
        .iter()
        .map(|c| snapshots.get(c.as_str()).map(|r| r.size))
        .sum();
    unpacked.unwrap_or_else(|| image.blobs().iter().map(|d| mocker.store.size(d).unwrap_or(0)).sum())
}

/// `images [REPOSITORY[:TAG]]`: one row per tag; a pull-by-digest reference
/// shows as a `<none>` tag only when its repository has no tag for the image
/// (as docker lists them); untagged images last.
pub fn list(mocker: &Mocker, filter: Option<&str>) -> Result<Vec<ImageSummary>> {
    let (refs, images, snapshots) = mocker.index.session(|s| Ok((s.refs()?, s.images()?, s.snapshots()?)))?;
    let mut named: HashSet<&str> = HashSet::new();
    let tagged: HashSet<(&str, &str)> = refs
        .iter()
        .filter_map(|(key, m)| match split_index_key(key) {
            (name, Some(_), _) => Some((name, m.as_str())),
            _ => None,
        })
        .collect();
    let mut rows = Vec::new();
    for (key, manifest) in &refs {
        let Some(image) = images.get(manifest.as_str()) else {
            continue;
        };
        named.insert(manifest.as_str());
        let (name, tag, _) = split_index_key(key);
        if tag.is_none() && tagged.contains(&(name, manifest.as_str())) {
            continue;
        }
        rows.push(summary(
            mocker,
            &snapshots,
            image,
            familiar_name(name),
            tag.unwrap_or("<none>"),
        ));
    }
    for (manifest, image) in &images {
        if !named.contains(manifest.as_str()) {
            rows.push(summary(mocker, &snapshots, image, "<none>", "<none>"));
        }
    }
    if let Some(filter) = filter {
        rows.retain(|r| matches_filter(r, filter));
    }
    let created = |r: &ImageSummary| {
        r.created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|t| t.timestamp_nanos_opt().unwrap_or(i64::MAX))
    };
    rows.sort_by(|a, b| {
        created(b)
            .cmp(&created(a))
            .then_with(|| a.repository.cmp(&b.repository))
            .then_with(|| a.tag.cmp(&b.tag))
    });
    Ok(rows)
}

/// `images --filter KEY=VALUE`: `dangling=true|false` (untagged images)
/// and `reference=PATTERN` (a glob over `name` or `name:tag`, `*` not
/// crossing `/`). Values of one key are alternatives; keys must all match.
#[derive(Debug, Default)]
pub struct Filter {
    dangling: Option<bool>,
    references: Vec<String>,
}

impl Filter {
    pub fn parse(specs: &[String]) -> Result<Filter> {
        let mut filter = Filter::default();
        for spec in specs {
            match spec.split_once('=') {
                Some(("dangling", v @ ("true" | "false" | "1" | "0"))) => {
                    filter.dangling = Some(v == "true" || v == "1")
                }
                Some(("reference", pattern)) => filter.references.push(pattern.to_string()),
                Some(("dangling", _)) => return Err(Error::InvalidFilter(spec.clone())),
                Some((key, _)) => return Err(Error::InvalidFilter(key.to_string())),
                None => return Err(Error::BadFilterFormat(spec.clone())),
            }
        }
        Ok(filter)
    }

    pub fn matches(&self, row: &ImageSummary) -> bool {
        let dangling = row.repository == "<none>";
        self.dangling.is_none_or(|d| d == dangling)
            && (self.references.is_empty()
                || !dangling
                    && self
                        .references
                        .iter()
                        .any(|p| glob(p, &row.repository) || glob(p, &format!("{}:{}", row.repository, row.tag))))
    }
}

/// Go's `path.Match` for `*` (any run without `/`) and `?` (one non-`/`).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // matched[j]: the pattern so far matches text[..j].
    let mut matched = vec![false; t.len() + 1];
    matched[0] = true;
    for &c in &p {
        let mut next = vec![false; t.len() + 1];
        for j in 0..=t.len() {
            match c {
                '*' => next[j] = matched[j] || (j > 0 && next[j - 1] && t[j - 1] != '/'),
                '?' => next[j] = j > 0 && matched[j - 1] && t[j - 1] != '/',
                _ => next[j] = j > 0 && matched[j - 1] && t[j - 1] == c,
            }
        }
        matched = next;
    }
    matched[t.len()]
}

/// docker's `images REPOSITORY[:TAG]` argument, in short or full form.
fn matches_filter(row: &ImageSummary, filter: &str) -> bool {
    let (repo, tag) = match filter.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        Some((r, t)) => (r, Some(t)),
        None => (filter, None),
    };
    let normal = ImageRef::parse(repo)
        .map(|r| familiar_name(&r.name()).to_string())
        .unwrap_or_else(|_| repo.to_string());
    (row.repository == repo || row.repository == normal) && tag.is_none_or(|t| row.tag == t)
}

fn summary(
    mocker: &Mocker,
    snapshots: &BTreeMap<String, SnapshotRecord>,
    image: &ImageRecord,
    repository: &str,
    tag: &str,
) -> ImageSummary {
    ImageSummary {
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest: if repository == "<none>" {
            "<none>".into()
        } else {
            image.repo_digest().to_string()
        },
        id: image.config_digest.clone(),
        created: image.created.clone(),
        size: image_size(snapshots, mocker, image),
    }
}

/// `tag SRC DST`: point DST at the image SRC names.
pub fn tag(mocker: &Mocker, source: &str, target: &str) -> Result<()> {
    let target = ImageRef::parse(target)?;
    if target.digest().is_some() {
        return Err(Error::InvalidReference {
            input: target.to_string(),
            reason: "a tag target cannot contain a digest".into(),
        });
    }
    mocker.index.session(|s| {
        let manifest = match resolve(s, source)? {
            Target::Ref(_, m) => m,
            Target::Images(ms) if ms.len() == 1 => ms[0].clone(),
            Target::Images(_) => return Err(Error::AmbiguousImageId(source.to_string())),
        };
        let mut batch = Batch::default();
        batch.put_ref(&target.index_key(), &manifest);
        s.apply(&batch)
    })
}

/// One line of `rmi` output, as docker prints them.
#[derive(Clone, Debug, PartialEq)]
pub enum Removed {
    Untagged(String),
    Deleted(Digest),
}

/// `rmi INPUT`: untag; when an image loses its last name, delete it and every
/// blob no other image (or running pull) uses. `force` lets an ID remove an
/// image that has several names. Then whatever nothing uses (a killed
/// collection's leftovers) and `gc::sweep`.
pub fn remove(mocker: &Mocker, input: &str, force: bool) -> Result<Vec<Removed>> {
    let removed = remove_image(mocker, input, force);
    // Also when nothing was removed: the retry of a killed rmi finds its
    // image gone ("no such image") and must still reclaim what the kill left
    // — blobs unlinked after the index commit among it.
    let collected = collect_unreferenced(mocker, None);
    let swept = sweep(mocker);
    let (out, _) = removed?;
    collected?;
    swept?;
    Ok(out)
}

/// `rmi` without the sweep: what it removed and the bytes it freed.
fn remove_image(mocker: &Mocker, input: &str, force: bool) -> Result<(Vec<Removed>, u64)> {
    let (out, freed, trash) = mocker.index.session(|s| {
        let (drop_refs, candidates) = removal_targets(s, input, force)?;
        let candidates = unused_by_containers(s, input, force, candidates)?;
        let mut batch = Batch::default();
        let mut out = untag(&drop_refs, &mut batch);
        let images = s.images()?;
        let doomed: Vec<&ImageRecord> = candidates.iter().filter_map(|m| images.get(m.as_str())).collect();
        for image in &doomed {
            batch.del_image(&image.manifest_digest);
        }
        let survivors = images.values().filter(|i| !candidates.contains(&i.manifest_digest));
        let (garbage, deleted_snapshots) = unshared_content(mocker, s, survivors, &doomed, &mut batch)?;
        // Index first, made durable: a crash before the unlinks leaves orphan
        // blobs and directories, which the next collection (or `system
        // check --repair`) removes; never an entry without its content.
        s.apply(&batch)?;
        s.flush()?;
        // Blobs go inside the session (a pull's "already exists" must not
        // race their deletion). Snapshot directories are renamed to trash in
        // it (so no pull adopts one in between) and deleted after it.
        let mut freed = 0;
        for blob in &garbage {
            freed += mocker.store.size(blob).unwrap_or(0);
            mocker.store.delete(blob)?;
        }
        let mut trash = Vec::new();
        for snapshot in &deleted_snapshots {
            trash.extend(mocker.snapshots.trash(snapshot.id)?);
        }
        for image in &doomed {
            if !out.contains(&Removed::Deleted(image.config_digest.clone())) {
                out.push(Removed::Deleted(image.config_digest.clone()));
            }
        }
        out.extend(deleted_snapshots.into_iter().map(|r| Removed::Deleted(r.chain_id)));
        Ok((out, freed, trash))
    })?;
    let freed = freed + snapshot::delete_all(trash)?;
    Ok((out, freed))
}

/// The tags `rmi INPUT` drops and the images it may delete.
fn removal_targets(s: &Session, input: &str, force: bool) -> Result<(Vec<String>, Vec<Digest>)> {
    let refs = s.refs()?;
    match resolve(s, input)? {
        Target::Ref(key, manifest) => {
            let others = refs.iter().filter(|(k, m)| **m == manifest && **k != key).count();
            Ok((vec![key], if others == 0 { vec![manifest] } else { vec![] }))
        }
        Target::Images(manifests) => {
            let keys: Vec<String> = refs
                .iter()
                .filter(|(_, m)| manifests.contains(m))
                .map(|(k, _)| k.clone())
                .collect();
            // docker: names all in one repository go together; names in
            // several repositories need -f.
            let repositories: HashSet<&str> = keys.iter().map(|k| split_index_key(k).0).collect();
            if repositories.len() > 1 && !force {
                let id = s
                    .get_image(&manifests[0])?
                    .map(|i| i.config_digest.short().to_string())
                    .unwrap_or_else(|| input.to_string());
                return Err(Error::ImageReferencedMultiple { id });
            }
            Ok((keys, manifests))
        }
    }
}

/// docker: an image a container was created from is only untagged, and
/// only with -f. Returns the candidates no container uses.
fn unused_by_containers(s: &Session, input: &str, force: bool, candidates: Vec<Digest>) -> Result<Vec<Digest>> {
    let containers = s.containers()?;
    if let Some(user) = containers.values().find(|c| candidates.contains(&c.image_manifest)) {
        if !force {
            let image = s
                .get_image(&user.image_manifest)?
                .map(|i| i.config_digest.short().to_string())
                .unwrap_or_default();
            return Err(Error::Runtime(format!(
                "conflict: unable to remove {input:?} (must force) - container {} is using its referenced image {image}",
                &user.id[..12]
            )));
        }
    }
    Ok(candidates
        .into_iter()
        .filter(|m| !containers.values().any(|c| &c.image_manifest == m))
        .collect())
}

/// Drop `keys` in `batch`; docker's "Untagged:" names for them.
fn untag(keys: &[String], batch: &mut Batch) -> Vec<Removed> {
    let mut out = Vec::new();
    for key in keys {
        batch.del_ref(key);
        let (name, tag, digest) = split_index_key(key);
        let shown = match (tag, digest) {
            (Some(t), _) => format!("{}:{t}", familiar_name(name)),
            (_, Some(d)) => format!("{}@{d}", familiar_name(name)),
            _ => familiar_name(name).to_string(),
        };
        out.push(Removed::Untagged(shown));
    }
    out
}

/// The blobs and snapshots of `doomed` images that no survivor (nor live
/// pull, nor container) uses, their records dropped in `batch`.
fn unshared_content<'a>(
    mocker: &Mocker,
    s: &Session,
    survivors: impl Iterator<Item = &'a ImageRecord> + Clone,
    doomed: &[&ImageRecord],
    batch: &mut Batch,
) -> Result<(Vec<Digest>, Vec<SnapshotRecord>)> {
    let mut keep_snapshots = referenced_snapshots(&mocker.index, s, survivors.clone())?;
    let mut keep = referenced_blobs(&mocker.index, s, survivors)?;
    let mut garbage = Vec::new();
    for image in doomed {
        for blob in image.blobs() {
            if keep.insert(blob.clone()) {
                garbage.push(blob);
            }
        }
    }
    for blob in &garbage {
        batch.del_layer(blob);
    }
    let mut deleted = Vec::new();
    for image in doomed {
        for chain_id in image.chain_ids.iter().rev() {
            if keep_snapshots.insert(chain_id.clone()) {
                if let Some(snapshot) = s.get_snapshot(chain_id)? {
                    batch.del_snapshot(chain_id);
                    deleted.push(snapshot);
                }
            }
        }
    }
    Ok((garbage, deleted))
}

/// What `system prune` removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub removed: Vec<Removed>,
    /// Bytes of blobs, snapshots and partial downloads freed.
    pub reclaimed: u64,
}

/// `system prune`: remove untagged images (every image with `all`) that no
/// container was created from, then everything on disk that no image, live
/// pull or container needs: blobs, snapshots, partial downloads, what killed
/// pulls and collections left (see [`sweep`]). `reclaimed` counts what was
/// freed: blob bytes, and the file data of deleted snapshot directories.
pub fn prune(mocker: &Mocker, all: bool) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    let (refs, images, containers) = mocker
        .index
        .session(|s| Ok((s.refs()?, s.images()?, s.containers()?)))?;
    let named: HashSet<&Digest> = refs.values().collect();
    let used: HashSet<&Digest> = containers.values().map(|c| &c.image_manifest).collect();
    let doomed: Vec<&ImageRecord> = images
        .values()
        .filter(|i| (all || !named.contains(&i.manifest_digest)) && !used.contains(&i.manifest_digest))
        .collect();
    for image in doomed {
        match remove_image(mocker, image.config_digest.as_str(), true) {
            Ok((lines, freed)) => {
                pruned.removed.extend(lines);
                pruned.reclaimed += freed;
            }
            // Removed already with an image that shares its config.
            Err(Error::NoSuchImage(_)) => {}
            Err(e) => return Err(e),
        }
    }
    // Anything else nothing uses: leftovers of crashes and failed pulls.
    let collected = collect_unreferenced(mocker, None)?;
    pruned.reclaimed += collected.blob_bytes + collected.snapshot_bytes;
    for record in collected.snapshots {
        pruned.removed.push(Removed::Deleted(record.chain_id));
    }
    pruned.reclaimed += sweep(mocker)?;
    for (path, len) in mocker.store.list_ingest()? {
        let Some(digest) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| Digest::from_hex(n).ok())
        else {
            continue;
        };
        if mocker.store.discard_ingest(&digest).is_ok() && !path.exists() {
            pruned.reclaimed += len;
        }
    }
    Ok(pruned)
}

/// docker-style `image inspect` document for one image.
pub fn inspect(mocker: &Mocker, input: &str) -> Result<Vec<Value>> {
    let images = find(mocker, input)?;
    let (refs, snapshots) = mocker.index.session(|s| Ok((s.refs()?, s.snapshots()?)))?;
    images
        .iter()
        .map(|image| {
            let parse = |digest: &Digest, limit: u64| -> Result<Value> {
                let bytes = mocker.store.read_small(digest, limit)?;
                serde_json::from_slice(&bytes).map_err(|e| Error::InvalidDocument {
                    what: format!("stored blob {digest}"),
                    reason: e.to_string(),
                })
            };
            let config = parse(&image.config_digest, MAX_CONFIG_BYTES)?;
            let manifest = parse(&image.manifest_digest, MAX_MANIFEST_BYTES)?;
            let mut tags = Vec::new();
            let mut digests = Vec::new();
            for (key, m) in &refs {
                if *m != image.manifest_digest {
                    continue;
                }
                let (name, tag, _) = split_index_key(key);
                if let Some(t) = tag {
                    tags.push(format!("{}:{t}", familiar_name(name)));
                }
                let repo_digest = format!("{}@{}", familiar_name(name), image.repo_digest());
                if !digests.contains(&repo_digest) {
                    digests.push(repo_digest);
                }
            }
            Ok(json!({
                "Id": image.config_digest,
                "RepoTags": tags,
                "RepoDigests": digests,
                "Created": image.created,
                "Os": config.get("os"),
                "Architecture": config.get("architecture"),
                "Variant": config.get("variant"),
                "Size": image_size(&snapshots, mocker, image),
                "Config": config.get("config"),
                "RootFS": config.get("rootfs"),
                "Descriptor": {
                    "mediaType": image.manifest_media_type,
                    "digest": image.manifest_digest,
                    "size": image.manifest_size,
                },
                "Manifest": manifest,
                "ImageConfig": config,
            }))
        })
        .collect()
}

/// `system df` figures for images.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DiskUsage {
    pub images: usize,
    /// Images used by containers.
    pub active: usize,
    /// Bytes on disk for all images, each shared blob counted once.
    pub size: u64,
    /// Bytes of blobs used by more than one image.
    pub shared: u64,
    /// What removing every unused image would free.
    pub reclaimable: u64,
    /// What the images would take without deduplication.
    pub size_without_dedup: u64,
    /// Bytes of unpacked layer snapshots, each counted once.
    pub unpacked: u64,
    /// What the unpacked layers would take if every image had its own copy.
    pub unpacked_without_dedup: u64,
}

pub fn disk_usage(mocker: &Mocker) -> Result<DiskUsage> {
    let (images, snapshots, containers) = mocker
        .index
        .session(|s| Ok((s.images()?, s.snapshots()?, s.containers()?)))?;
    let used: HashSet<&Digest> = containers.values().map(|c| &c.image_manifest).collect();
    let mut users: HashMap<Digest, usize> = HashMap::new();
    for image in images.values() {
        let unique: HashSet<Digest> = image.blobs().into_iter().collect();
        for blob in unique {
            *users.entry(blob).or_default() += 1;
        }
    }
    let mut usage = DiskUsage {
        images: images.len(),
        active: images.values().filter(|i| used.contains(&i.manifest_digest)).count(),
        ..Default::default()
    };
    for (blob, count) in &users {
        let size = mocker.store.size(blob).unwrap_or(0);
        usage.size += size;
        usage.size_without_dedup += size * *count as u64;
        if *count > 1 {
            usage.shared += size;
        }
    }
    usage.unpacked = snapshots.values().map(|r| r.size).sum();
    usage.unpacked_without_dedup = images
        .values()
        .flat_map(|i| i.chain_ids.iter())
        .filter_map(|c| snapshots.get(c.as_str()).map(|r| r.size))
        .sum();
    // What removing every image no container uses would free.
    let in_use = || images.values().filter(|i| used.contains(&i.manifest_digest));
    let kept_blobs: HashSet<Digest> = in_use().flat_map(|i| i.blobs()).collect();
    let kept_chains: HashSet<&Digest> = in_use().flat_map(|i| i.chain_ids.iter()).collect();
    usage.reclaimable = users
        .keys()
        .filter(|b| !kept_blobs.contains(*b))
        .map(|b| mocker.store.size(b).unwrap_or(0))
        .sum::<u64>()
        + snapshots
            .values()
            .filter(|r| !kept_chains.contains(&r.chain_id))
            .map(|r| r.size)
            .sum::<u64>();
    Ok(usage)
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_is_go_path_match() {
        assert!(super::glob("busy*", "busybox"));
        assert!(super::glob("*box:lat?st", "busybox:latest"));
        assert!(!super::glob("*box", "library/busybox"));
        assert!(super::glob("*/busybox", "library/busybox"));
        assert!(!super::glob("busy", "busybox"));
        assert!(super::glob("", ""));
    }
}
