//! `system df`'s image rows.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::digest::Digest;
use crate::error::Result;
use crate::Mocker;

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
