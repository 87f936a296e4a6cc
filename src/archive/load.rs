//! `load`: the images of an archive into the store, the snapshots and the
//! index. One pass over the (decompressed) tar puts each member where it
//! belongs (`members`); the plan checks the documents (`plan`); each layer
//! is unpacked once per chain ID and its diff_id checked; one index batch
//! records every image and name. Everything new is leased while the load
//! runs, and a failure takes back what it added, as a failed pull does.

use std::io::{BufReader, Read};

use super::members::{decompressed, Members};
use super::plan::{self, Planned};
use crate::digest::{chain_ids, Digest};
use crate::error::Result;
use crate::gc::LeaseGuard;
use crate::index::Batch;
use crate::records::describe_image;
use crate::reference::familiar_name;
use crate::unpack::{unpack_layer, Limits};
use crate::Mocker;

/// What `load` reports for each image, as docker prints it.
#[derive(Clone, Debug, PartialEq)]
pub enum Loaded {
    /// `Loaded image: busybox:latest`
    Named(String),
    /// `Loaded image ID: sha256:…` (an image without a name)
    Id(Digest),
}

/// Load every image of the archive `input` (a tar, gzip- or
/// zstd-compressed or not). A bad archive leaves nothing behind.
pub fn load(mocker: &Mocker, input: impl Read) -> Result<Vec<Loaded>> {
    let mut touched = Vec::new();
    let result = load_leased(mocker, input, &mut touched);
    if !touched.is_empty() {
        // The lease is gone by now: what no image uses goes — all of it
        // after a failure, blobs no loaded image names (an index's other
        // platforms) after a success.
        let _ = crate::gc::collect_unreferenced(mocker, Some(&touched));
    }
    result
}

fn load_leased(mocker: &Mocker, input: impl Read, touched: &mut Vec<Digest>) -> Result<Vec<Loaded>> {
    let mut lease = LeaseGuard::hold(mocker, &[])?;
    let mut on_commit = |d: &Digest| {
        // Each rewrite of the lease is an index session: only for news.
        if touched.contains(d) {
            return Ok(());
        }
        touched.push(d.clone());
        lease.record(&touched[..])
    };
    let members = Members::read(decompressed(input)?, &mocker.store, &mocker.root, &mut on_commit)?;
    let images = plan::images(&mocker.store, &members, &mut on_commit)?;
    drop(members); // the spool, before unpacking fills the disk
                   // The snapshots it builds or relies on are leased too.
    let mut chains: Vec<Digest> = Vec::new();
    for image in &images {
        for chain in chain_ids(&crate::manifest::diff_ids(&image.config)?) {
            if !chains.contains(&chain) {
                on_commit(&chain)?;
                chains.push(chain);
            }
        }
    }
    for image in &images {
        unpack(mocker, image)?;
    }
    let loaded = record(mocker, &images, &lease.id)?;
    lease.committed = true;
    Ok(loaded)
}

/// Each layer's snapshot, built unless its chain exists already.
pub(super) fn unpack(mocker: &Mocker, image: &Planned) -> Result<()> {
    let diff_ids = crate::manifest::diff_ids(&image.config)?;
    let chains = chain_ids(&diff_ids);
    let mut parent: Option<Digest> = None;
    for ((chain, diff_id), (blob, compression)) in chains.iter().zip(&diff_ids).zip(&image.layers) {
        mocker.snapshots.ensure(chain, parent.as_ref(), diff_id, |dir| {
            let data = BufReader::with_capacity(1 << 20, mocker.store.open_blob(blob)?);
            let limits = Limits {
                max_unpacked_bytes: mocker.snapshots.free_bytes(),
            };
            let unpacked = unpack_layer(data, *compression, dir, diff_id, limits, blob.as_str())?;
            Ok((unpacked.file_bytes, unpacked.implicit_dirs))
        })?;
        parent = Some(chain.clone());
    }
    Ok(())
}

/// One index batch: every image, its layers and names; the lease goes with it.
pub(super) fn record(mocker: &Mocker, images: &[Planned], lease_id: &str) -> Result<Vec<Loaded>> {
    let mut batch = Batch::default();
    let mut loaded = Vec::new();
    for image in images {
        let (record, layers) = describe_image(
            &image.manifest_digest,
            image.manifest_size,
            &image.manifest,
            image.index_digest.clone(),
            &image.config,
        )?;
        for layer in &layers {
            batch.put_layer(layer);
        }
        batch.put_image(&record);
        if image.names.is_empty() {
            loaded.push(Loaded::Id(record.config_digest.clone()));
        }
        for name in &image.names {
            batch.put_ref(&name.index_key(), &image.manifest_digest);
            let shown = familiar_name(&name.name()).to_string();
            loaded.push(Loaded::Named(match (name.digest(), name.tag()) {
                (Some(d), _) => format!("{shown}@{d}"),
                (None, Some(t)) => format!("{shown}:{t}"),
                (None, None) => format!("{shown}:latest"),
            }));
        }
    }
    batch.del_lease(lease_id);
    mocker.index.session(|s| s.apply(&batch))?;
    Ok(loaded)
}
