//! A new layer in one pass, for `commit` and `import`: a tar stream goes
//! both through the compressor into a new blob of the store (hashed as
//! written: the blob digest) and, in chunks on a bounded queue, to
//! `unpack` on a thread of its own, which hashes it (the diff_id) and
//! applies it, with every check a pulled layer gets, into a scratch
//! snapshot. So the new image's snapshot exists when its blob does, and
//! nothing is held whole. [`publish`] then makes both visible.

mod pgzip;

use std::io::{self, Write};
use std::sync::mpsc::SyncSender;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::snapshot::{Begin, Scratch};
use crate::store::NewBlob;
use crate::unpack::{self, Unpacked};
use crate::Mocker;

/// The new layer's compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => crate::manifest::Compression::Gzip.oci_layer_type(),
            Compression::Zstd => crate::manifest::Compression::Zstd.oci_layer_type(),
        }
    }
}

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

/// Write the tar stream `produce` makes as a layer blob, and apply it into
/// `scratch`; `what` names the layer in errors.
pub fn write(
    mocker: &Mocker,
    compression: Compression,
    scratch: &Scratch,
    what: &str,
    produce: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<Layer> {
    let target = scratch.fs_dir();
    let (tx, stream) = unpack::decode::channel();
    let limits = unpack::Limits {
        max_unpacked_bytes: mocker.snapshots.free_bytes(),
    };
    let (produced, applied) = std::thread::scope(|scope| {
        let applier = scope.spawn(|| unpack::apply_tar(stream, &target, limits, what));
        let produced = tee(mocker, compression, tx, what, produce);
        (produced, applier.join())
    });
    let applied = applied.map_err(|_| Error::Layer {
        layer: what.to_string(),
        reason: "the applier panicked".into(),
    })?;
    // When both failed, one stopped because the other did: a producer that
    // found its queue closed (BrokenPipe) reports the applier's error.
    let (mut blob, unpacked) = match (produced, applied) {
        (Ok(blob), Ok(unpacked)) => (blob, unpacked),
        (Err(Error::Io { source, .. }), Err(e)) if source.kind() == io::ErrorKind::BrokenPipe => return Err(e),
        // The blob's disk filled, whichever side's write noticed.
        (Err(Error::Io { source, .. }), _) if source.raw_os_error() == Some(nix::libc::ENOSPC) => {
            return Err(Error::DiskFull { what: what.to_string() })
        }
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

/// The tar stream `produce` makes, compressed into a new blob and sent on
/// to the applier.
fn tee(
    mocker: &Mocker,
    compression: Compression,
    tx: SyncSender<io::Result<Vec<u8>>>,
    what: &str,
    produce: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<NewBlob> {
    let blob = mocker.store.begin_new(what)?;
    let mut tee = Tee {
        encoder: Encoder::new(compression, blob).map_err(|e| Error::io(format!("compressing {what}"), e))?,
        tx: Some(tx),
        pending: Vec::with_capacity(CHUNK),
    };
    if let Err(e) = produce(&mut tee) {
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
    Gzip(pgzip::ParallelGz<NewBlob>),
    Zstd(zstd::stream::write::Encoder<'static, NewBlob>),
}

impl Encoder {
    fn new(compression: Compression, blob: NewBlob) -> io::Result<Encoder> {
        Ok(match compression {
            Compression::Gzip => Encoder::Gzip(pgzip::ParallelGz::new(blob)?),
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

/// Make `layer` visible: its blob under its digest, its scratch snapshot
/// under `chain_id` over `parent` (or, if that chain exists already, the
/// scratch deleted). The caller holds a lease on both until it records
/// them.
pub fn publish(
    mocker: &Mocker,
    layer: Layer,
    scratch: Scratch,
    parent: Option<&Digest>,
    chain_id: &Digest,
) -> Result<()> {
    layer.blob.publish(&layer.digest)?;
    match mocker.snapshots.name(scratch, chain_id)? {
        Begin::Building(building) => {
            let unpacked = &layer.unpacked;
            mocker.snapshots.commit(
                building,
                parent,
                &unpacked.diff_id,
                unpacked.file_bytes,
                &unpacked.implicit_dirs,
            )?;
        }
        // `name` never answers Busy: it waits for the chain's lock.
        Begin::Exists(_) | Begin::Busy => {}
    }
    Ok(())
}
