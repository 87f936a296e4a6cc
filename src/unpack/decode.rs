//! The uncompressed stream of a layer blob, decompressed on a thread of its
//! own while the caller hashes it (the diff_id) and applies its entries, as
//! `pigz -dc | tar -x` splits the work. Decompression is the longer half, so
//! the hash goes to the other side (measured: the decoder with the hash was
//! the critical path of a one-layer pull, the applier idle a third of it).
//! A bounded queue of chunks joins them, so memory stays at a few chunks
//! whatever the layer.

use std::io::{self, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use crate::digest::{Digest, Hasher};
use crate::manifest::Compression;

/// Bytes per chunk handed from the decoder to the applier.
const CHUNK: usize = 256 << 10;
/// Chunks in flight: enough to ride out a burst of small files on the
/// applier's side, small enough to stay in cache.
const QUEUE: usize = 32;

/// Pick the decompressor: magic bytes win over a media type that lies.
/// The first four bytes decide, however the stream arrives (a download may
/// deliver fewer at first).
fn decompressor<'a>(
    mut input: Box<dyn Read + Send + 'a>,
    declared: Compression,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = &head[..got];
    let detected = Compression::sniff(head).unwrap_or(declared);
    let input = BufReader::with_capacity(CHUNK, io::Cursor::new(head.to_vec()).chain(input));
    Ok(match detected {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::None => Box::new(input),
    })
}

/// Decode `blob` on a thread of `scope`. Read the stream from the returned
/// [`Decoded`]; join the handle (for the stream's length) once it is read to
/// its end, or after dropping it (which stops the decoder at its next
/// chunk). A stream longer than `limit` bytes fails.
pub fn spawn<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    blob: impl Read + Send + 'env,
    declared: Compression,
    limit: u64,
) -> (Decoded, ScopedJoinHandle<'scope, u64>) {
    let (tx, rx) = sync_channel(QUEUE);
    let handle = scope.spawn(move || {
        let input: Box<dyn Read + Send> = Box::new(blob);
        let mut tally = Metered { bytes: 0, limit };
        match decompressor(input, declared) {
            Ok(reader) => tally.pump(reader, &tx),
            Err(e) => {
                let _ = tx.send(Err(io::Error::new(e.kind(), format!("cannot decompress: {e}"))));
            }
        }
        tally.bytes
    });
    let decoded = Decoded {
        rx,
        chunk: Vec::new(),
        at: 0,
        hasher: Hasher::new(),
    };
    (decoded, handle)
}

/// A stream someone else produces uncompressed (a layer being written,
/// see `commit`): chunks sent on the returned sender are read, and hashed,
/// from the [`Decoded`]; dropping the sender ends the stream, and sending
/// an error fails it.
pub fn channel() -> (SyncSender<io::Result<Vec<u8>>>, Decoded) {
    let (tx, rx) = sync_channel(QUEUE);
    let decoded = Decoded {
        rx,
        chunk: Vec::new(),
        at: 0,
        hasher: Hasher::new(),
    };
    (tx, decoded)
}

/// Counts the stream; refuses to pass `limit`.
struct Metered {
    bytes: u64,
    limit: u64,
}

impl Metered {
    /// Read `reader` to its end in chunks, sending each; stop at the first error (sent on) or when the reader hangs up.
    fn pump(&mut self, mut reader: impl Read, tx: &SyncSender<io::Result<Vec<u8>>>) {
        loop {
            let chunk = match self.next_chunk(&mut reader) {
                Ok(chunk) if chunk.is_empty() => return,
                other => other,
            };
            let failed = chunk.is_err();
            if tx.send(chunk).is_err() || failed {
                return;
            }
        }
    }

    /// What one read gives, up to a chunk: a stream that arrives slowly
    /// (a layer read while it downloads) flows on without waiting for more.
    fn next_chunk(&mut self, reader: &mut impl Read) -> io::Result<Vec<u8>> {
        let mut chunk = vec![0; CHUNK];
        let filled = loop {
            match reader.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        chunk.truncate(filled);
        self.bytes += filled as u64;
        if self.bytes > self.limit {
            return Err(io::Error::other(format!(
                "unpacked size exceeds the limit of {} bytes",
                self.limit
            )));
        }
        Ok(chunk)
    }
}

/// The applier's side of the queue: a plain reader of the stream, which
/// hashes every chunk as it arrives.
pub struct Decoded {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    hasher: Hasher,
}

impl Decoded {
    /// The digest of every byte received (the diff_id, once read to the end).
    pub fn digest(self) -> Digest {
        self.hasher.finish()
    }
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk?;
                    self.hasher.update(&self.chunk);
                    self.at = 0;
                }
                // The decoder is done: the end of the stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A source that gives one byte per read, as a download may at first.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            match buf.first_mut() {
                Some(b) => *b = *first,
                None => return Ok(0),
            }
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn magic_bytes_decide_however_slowly_they_arrive() {
        let plain = b"the layer's tar stream".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        // Declared uncompressed (a media type that lies): the magic wins.
        let (out, digest, len) = std::thread::scope(|scope| {
            let (mut stream, decoder) = spawn(scope, Trickle(&gz), Compression::None, u64::MAX);
            let mut out = Vec::new();
            stream.read_to_end(&mut out).unwrap();
            (out, stream.digest(), decoder.join().unwrap())
        });
        assert_eq!(out, plain);
        assert_eq!(digest, Digest::of_bytes(&plain));
        assert_eq!(len, plain.len() as u64);
    }
}
