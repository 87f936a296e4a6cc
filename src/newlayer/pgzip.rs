//! gzip on every core, as `pigz --independent` makes it: the stream is cut
//! into blocks, each block is compressed as a gzip member of its own on a
//! worker thread, and the members are written in order. Concatenated
//! members are one gzip file (RFC 1952, 2.2) that every layer reader reads
//! whole (Go's gzip, pigz, zlib's gzread, our `MultiGzDecoder`; eStargz
//! layers are made of members too); each
//! block costs a few bytes of header and the matches it cannot make into
//! the block before it (well under 1 % at 1 MiB).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::write::GzEncoder;

/// Bytes of input per member.
const BLOCK: usize = 1 << 20;

/// Past a few cores the disk is the limit; this bounds the memory in
/// flight (two blocks per worker, in and out).
const MAX_WORKERS: usize = 8;

type Job = (Vec<u8>, Sender<io::Result<Vec<u8>>>);

pub struct ParallelGz<W: Write> {
    out: W,
    block: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    /// Members being compressed, in stream order.
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    /// Members handed out so far.
    members: u64,
    workers: Vec<JoinHandle<()>>,
}

impl<W: Write> ParallelGz<W> {
    /// Fails only if not even one worker thread can be made.
    pub fn new(out: W) -> io::Result<ParallelGz<W>> {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS));
        let (tx, rx) = mpsc::sync_channel::<Job>(count);
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::new();
        for _ in 0..count {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new().name("gzip".into()).spawn(move || loop {
                // The lock is held only to take a job, not to do it.
                let job = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok((block, done)) = job else { return };
                let _ = done.send(member(&block));
            });
            match spawned {
                Ok(worker) => workers.push(worker),
                // Fewer workers (a thread limit): slower, not wrong.
                Err(e) if workers.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(ParallelGz {
            out,
            block: Vec::with_capacity(BLOCK),
            jobs: Some(tx),
            pending: VecDeque::new(),
            members: 0,
            workers,
        })
    }

    /// Hand the current block to a worker; write finished members while
    /// more than two per worker are in flight (bounding memory).
    fn dispatch(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let (done, member) = mpsc::channel();
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send((block, done)).map_err(|_| stopped())?;
        self.pending.push_back(member);
        self.members += 1;
        while self.pending.len() > 2 * self.workers.len() {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(member) = self.pending.pop_front() {
            let bytes = member.recv().map_err(|_| stopped())??;
            self.out.write_all(&bytes)?;
        }
        Ok(())
    }

    /// The last block, every member written; the writer back.
    pub fn finish(mut self) -> io::Result<W> {
        // An empty stream is still one (empty) member: a valid gzip file.
        if !self.block.is_empty() || self.members == 0 {
            self.dispatch()?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        // Without jobs, the workers end.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.dispatch()?;
        }
        Ok(n)
    }

    /// Members are whole or not written: only `finish` completes the stream.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn member(block: &[u8]) -> io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::with_capacity(block.len() / 2 + 64), flate2::Compression::default());
    gz.write_all(block)?;
    gz.finish()
}

fn stopped() -> io::Error {
    io::Error::other("a gzip worker stopped")
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn roundtrip(input: &[u8]) -> Vec<u8> {
        let mut gz = ParallelGz::new(Vec::new()).unwrap();
        // Odd-sized writes, so blocks are filled across calls.
        for piece in input.chunks(70_001) {
            gz.write_all(piece).unwrap();
        }
        let compressed = gz.finish().unwrap();
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&compressed[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn members_in_order_make_the_stream() {
        let input: Vec<u8> = (0..(3 * BLOCK + 12345) as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert_eq!(roundtrip(&input), input);
        assert_eq!(roundtrip(&input[..BLOCK]), &input[..BLOCK]);
        assert_eq!(roundtrip(b""), b"");
    }
}
