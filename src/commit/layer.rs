//! The new layer, in one pass over the writable layer: `export` writes it
//! as a tar stream, which goes both through the compressor into a new blob
//! of the store (hashed as written: the blob digest) and, in chunks on a
//! bounded queue, to `unpack` on a thread of its own, which hashes it (the
//! diff_id) and applies it into a scratch snapshot. So the new image's
//! snapshot exists when the blob does, and nothing is held whole.

use std::io::{self, Write};
use std::sync::mpsc::SyncSender;

use super::Compression;
use crate::container::Writable;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::snapshot::Scratch;
use crate::store::NewBlob;
use crate::unpack::{self, Unpacked};
use crate::Mocker;

/// Bytes per chunk handed to the applier.
const CHUNK: usize = 256 << 10;

/// The layer written: its blob (sealed, not yet published) and what the
/// applier made of it.
pub struct Layer {
    pub blob: NewBlob,
    pub media_type: &'static str,
    pub digest: Digest,
    pub size: u64,
    pub unpacked: Unpacked,
}

/// Write `w`'s changes as a layer blob and apply them into `scratch`.
pub fn write(mocker: &Mocker, w: &Writable, compression: Compression, scratch: &Scratch) -> Result<Layer> {
    let target = scratch.fs_dir();
    let (tx, stream) = unpack::decode::channel();
    let what = format!("the layer of container {}", &w.id[..w.id.len().min(12)]);
    let limits = unpack::Limits {
        max_unpacked_bytes: mocker.snapshots.free_bytes(),
    };
    let (produced, applied) = std::thread::scope(|scope| {
        let applier = scope.spawn(|| unpack::apply_tar(stream, &target, limits, &what));
        let produced = produce(mocker, w, compression, tx, &what);
        (produced, applier.join())
    });
    let applied = applied.map_err(|_| Error::Layer {
        layer: what.clone(),
        reason: "the applier panicked".into(),
    })?;
    // When both failed, one stopped because the other did: a producer that
    // found its queue closed (BrokenPipe) reports the applier's error.
    let (mut blob, unpacked) = match (produced, applied) {
        (Ok(blob), Ok(unpacked)) => (blob, unpacked),
        (Err(Error::Io { source, .. }), Err(e)) if source.kind() == io::ErrorKind::BrokenPipe => return Err(e),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let (digest, size) = blob.seal()?;
    Ok(Layer {
        blob,
        media_type: compression.media_type(),
        digest,
        size,
        unpacked,
    })
}

/// The tar stream of the writable layer, compressed into a new blob and
/// sent on to the applier.
fn produce(
    mocker: &Mocker,
    w: &Writable,
    compression: Compression,
    tx: SyncSender<io::Result<Vec<u8>>>,
    what: &str,
) -> Result<NewBlob> {
    let blob = mocker.store.begin_new(what)?;
    let mut tee = Tee {
        encoder: Encoder::new(compression, blob).map_err(|e| Error::io(format!("compressing {what}"), e))?,
        tx: Some(tx),
        pending: Vec::with_capacity(CHUNK),
    };
    if let Err(e) = crate::export::write_layer(&w.upper, what, &w.skip, &mut tee) {
        // The applier must not take a cut stream for a whole one.
        if let Some(tx) = tee.tx.take() {
            let _ = tx.send(Err(io::Error::other("the layer's writer failed")));
        }
        return Err(e);
    }
    tee.send_pending()
        .map_err(|e| Error::io(format!("writing {what}"), e))?;
    drop(tee.tx.take());
    tee.encoder
        .finish()
        .map_err(|e| Error::io(format!("compressing {what}"), e))
}

/// gzip or zstd over the new blob.
enum Encoder {
    Gzip(super::pgzip::ParallelGz<NewBlob>),
    Zstd(zstd::stream::write::Encoder<'static, NewBlob>),
}

impl Encoder {
    fn new(compression: Compression, blob: NewBlob) -> io::Result<Encoder> {
        Ok(match compression {
            Compression::Gzip => Encoder::Gzip(super::pgzip::ParallelGz::new(blob)),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(blob, 3)?),
        })
    }

    fn finish(self) -> io::Result<NewBlob> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// Every byte to the encoder and, a chunk at a time, to the applier.
struct Tee {
    encoder: Encoder,
    tx: Option<SyncSender<io::Result<Vec<u8>>>>,
    pending: Vec<u8>,
}

impl Tee {
    fn send_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        let sent = self.tx.as_ref().map(|tx| tx.send(Ok(chunk)));
        match sent {
            Some(Ok(())) => Ok(()),
            // The applier stopped: its error says why.
            _ => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the layer's applier stopped")),
        }
    }
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.encoder.write_all(buf)?;
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= CHUNK {
            self.send_pending()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}
