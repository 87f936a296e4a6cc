//! Reading a blob while it downloads. The download appends to the store's
//! ingest file and tells a [`Feed`] how far it got; a [`Follower`] reads the
//! same file behind it (from the page cache) and waits at its end. The
//! download never waits for the reader, and nothing is buffered in memory
//! beyond one read.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// How the download side left the stream.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    /// Every byte is in the file.
    Complete,
    /// The download failed or was cancelled.
    Failed,
    /// The bytes already read are void: the download started over, or the
    /// blob arrived another way (already stored, or fetched by another
    /// process). The reader's work must be redone from the stored blob.
    Aborted,
}

#[derive(Default)]
struct State {
    file: Option<Arc<File>>,
    written: u64,
    end: Option<End>,
}

/// The download's side: where the bytes are and how many there are.
#[derive(Default)]
pub struct Feed {
    state: Mutex<State>,
    changed: Condvar,
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain numbers behind.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut state = self.lock();
        if state.end.is_none() {
            f(&mut state);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// The download writes `file`, which already holds `written` bytes (a
    /// resumed download). A second attach means the download restarted.
    pub fn attach(&self, file: File, written: u64) {
        self.update(|s| {
            if s.file.is_some() {
                s.end = Some(End::Aborted);
            } else {
                s.file = Some(Arc::new(file));
                s.written = written;
            }
        });
    }

    pub fn advance(&self, written: u64) {
        self.update(|s| s.written = written);
    }

    /// The file was truncated to start over: what was read is void.
    pub fn restart(&self) {
        self.update(|s| s.end = Some(End::Aborted));
    }

    /// The download ended: complete (all bytes written and verified) or not.
    pub fn finish(&self, complete: bool) {
        self.update(|s| {
            s.end = Some(match (complete, s.file.is_some()) {
                (true, true) => End::Complete,
                (true, false) => End::Aborted,
                (false, _) => End::Failed,
            })
        });
    }

    /// Whether the reader must start over from the stored blob.
    pub fn aborted(&self) -> bool {
        self.lock().end == Some(End::Aborted)
    }

    /// Wait until bytes past `pos` are there (the file and how far it goes),
    /// or the stream ended (`None` at a complete end).
    fn wait_past(&self, pos: u64) -> io::Result<Option<(Arc<File>, u64)>> {
        let mut state = self.lock();
        loop {
            match (state.end, &state.file) {
                (Some(End::Failed), _) => return Err(io::Error::other("the download failed")),
                (Some(End::Aborted), _) => return Err(io::Error::other("the download started over")),
                (_, Some(file)) if state.written > pos => return Ok(Some((file.clone(), state.written))),
                (Some(End::Complete), _) => return Ok(None),
                _ => {
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                }
            }
        }
    }
}

/// Marks the feed failed when dropped before it finished, so a reader never
/// waits for a download that was cancelled.
pub struct FinishOnDrop(pub Arc<Feed>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish(false);
    }
}

/// The reader's side: the blob from byte 0, as far as it has arrived.
pub struct Follower {
    feed: Arc<Feed>,
    pos: u64,
}

impl Follower {
    pub fn new(feed: Arc<Feed>) -> Self {
        Follower { feed, pos: 0 }
    }
}

impl Read for Follower {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some((file, written)) = self.feed.wait_past(self.pos)? else {
            return Ok(0);
        };
        let want = buf.len().min(usize::try_from(written - self.pos).unwrap_or(usize::MAX));
        let n = file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the blob file is shorter than written",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(bytes).unwrap();
        let reader = File::open(tmp.path()).unwrap();
        (tmp, reader)
    }

    #[test]
    fn reads_what_arrives_and_ends_when_complete() {
        let feed = Arc::new(Feed::default());
        let (mut tmp, reader) = file_with(b"abc");
        feed.attach(reader, 3);
        let mut follower = Follower::new(feed.clone());
        let reading = std::thread::spawn(move || {
            let mut all = Vec::new();
            follower.read_to_end(&mut all).map(|_| all)
        });
        tmp.write_all(b"def").unwrap();
        feed.advance(6);
        feed.finish(true);
        assert_eq!(reading.join().unwrap().unwrap(), b"abcdef");
    }

    #[test]
    fn a_failed_download_fails_the_reader() {
        let feed = Arc::new(Feed::default());
        let (_tmp, reader) = file_with(b"abc");
        feed.attach(reader, 3);
        let mut follower = Follower::new(feed.clone());
        let mut first = [0u8; 3];
        follower.read_exact(&mut first).unwrap();
        drop(FinishOnDrop(feed.clone()));
        assert!(follower.read(&mut first).is_err());
        assert!(!feed.aborted());
    }

    #[test]
    fn a_restart_or_a_blob_from_elsewhere_aborts() {
        let feed = Arc::new(Feed::default());
        let (_tmp, reader) = file_with(b"abc");
        feed.attach(reader, 3);
        let (_tmp2, again) = file_with(b"");
        feed.attach(again, 0);
        assert!(feed.aborted());
        assert!(Follower::new(feed).read(&mut [0u8; 1]).is_err());

        // Never attached: the blob was stored already.
        let feed = Arc::new(Feed::default());
        feed.finish(true);
        assert!(feed.aborted());
    }
}
