//! One blob from the registry into the store: claim its ingest file (or
//! wait for the process that holds it), stream the rest of it (resuming
//! where an interrupted pull stopped), verify size and digest.

use std::time::Duration;

use futures_util::StreamExt;

use super::follow::Feed;
use super::LayerEvent;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::store::{Begin, Ingest};
use crate::Mocker;

/// How a blob came to be in the store.
pub(super) enum Fetched {
    AlreadyExisted,
    /// Another pull downloaded it while we waited.
    Waited,
    /// Downloaded, verified and committed by us.
    Downloaded,
}

/// Where a blob comes from.
pub(super) struct BlobSource<'a> {
    pub registry: &'a Registry,
    pub digest: &'a Digest,
    pub size: u64,
    pub media_type: &'a str,
    pub what: &'a str,
}

/// Make sure one blob is in the store. `feed`, if given, hears of every
/// byte as it lands (a streaming unpack reads behind it); it is left for
/// the caller to finish. A downloaded blob is committed (fsynced and
/// renamed) at once, not with the pull's snapshots: holding its ingest lock
/// until then would let two pulls each wait for a blob the other holds.
pub(super) async fn fetch_blob(
    mocker: &Mocker,
    blob: &BlobSource<'_>,
    report: &impl Fn(LayerEvent),
    feed: Option<&Feed>,
) -> Result<Fetched> {
    let mut waited = false;
    let mut retried_whole = false;
    loop {
        let Some(mut writer) = claim_blob(mocker, blob, &mut waited, report).await? else {
            return Ok(if waited {
                Fetched::Waited
            } else {
                Fetched::AlreadyExisted
            });
        };
        let offset = writer.offset();
        if let Some(feed) = feed {
            feed.attach(writer.reader()?, offset);
        }
        let downloaded = download(blob, &mut writer, report, feed).await;
        // Resumed bytes may have been bad: one retry of the whole blob.
        let retry = |e: &Error, retried: bool| offset > 0 && !retried && matches!(e, Error::SizeMismatch { .. });
        match downloaded {
            Err(e) if retry(&e, retried_whole) => {
                retried_whole = true;
                restart(feed);
                continue;
            }
            other => other?,
        }
        report(LayerEvent::Verifying);
        // The fsync waits for the disk: off the async workers.
        let committed = tokio::task::spawn_blocking(move || writer.commit())
            .await
            .map_err(|e| Error::io(format!("committing {}", blob.what), std::io::Error::other(e)))?;
        match committed {
            Ok(()) => {
                report(LayerEvent::DownloadComplete);
                return Ok(Fetched::Downloaded);
            }
            Err(Error::DigestMismatch { .. } | Error::SizeMismatch { .. }) if offset > 0 && !retried_whole => {
                retried_whole = true;
                restart(feed);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The bytes a reader followed were deleted (they failed verification):
/// whatever comes next, its work must be redone from the stored blob.
fn restart(feed: Option<&Feed>) {
    if let Some(feed) = feed {
        feed.restart();
    }
}

/// The store's writer for the blob, once no other pull writes it; `None`
/// if the blob is (or, after waiting, became) complete.
async fn claim_blob(
    mocker: &Mocker,
    blob: &BlobSource<'_>,
    waited: &mut bool,
    report: &impl Fn(LayerEvent),
) -> Result<Option<Box<Ingest>>> {
    loop {
        match mocker.store.begin(blob.digest, Some(blob.size), blob.what)? {
            Begin::Exists if *waited => report(LayerEvent::DownloadComplete),
            Begin::Exists => report(LayerEvent::AlreadyExists),
            Begin::Busy => {
                if !*waited {
                    report(LayerEvent::WaitingForOther);
                    *waited = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Begin::Writer(w) => return Ok(Some(w)),
        }
        return Ok(None);
    }
}

/// Stream the rest of the blob into `writer` (from its offset, or from the
/// start if the registry cannot resume).
async fn download(
    blob: &BlobSource<'_>,
    writer: &mut Box<Ingest>,
    report: &impl Fn(LayerEvent),
    feed: Option<&Feed>,
) -> Result<()> {
    let offset = writer.offset();
    if offset >= blob.size {
        return Ok(());
    }
    let fetched = blob
        .registry
        .blob(blob.digest, blob.size, blob.media_type, offset)
        .await?;
    let mut done = offset;
    if fetched.resumed {
        report(LayerEvent::Resuming { from: offset });
    } else if offset > 0 {
        writer.reset()?;
        restart(feed);
        done = 0;
    }
    let mut stream = fetched.stream;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                writer.write(&bytes)?;
                done += bytes.len() as u64;
                if let Some(feed) = feed {
                    feed.advance(done);
                }
                report(LayerEvent::Downloading { done, total: blob.size });
            }
            // oci-client's own verification fails the stream at its
            // end; our commit names both digests precisely.
            Err(_) if done == blob.size => break,
            Err(e) => {
                return Err(Error::Registry {
                    reference: blob.what.to_string(),
                    reason: format!("download interrupted: {e}"),
                })
            }
        }
    }
    Ok(())
}
