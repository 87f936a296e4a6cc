//! Container output in docker's json-file format: one JSON object per line,
//! `{"log":"…\n","stream":"stdout","time":"…"}`. The monitor writes it; `logs`
//! reads it (and follows it while the monitor lives).

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};

/// Lines longer than this are split, as docker does (16 KiB).
const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// The log file, shared by the stdout and stderr copiers.
#[derive(Clone)]
pub struct LogWriter(Arc<Mutex<std::fs::File>>);

impl LogWriter {
    pub fn open(path: &Path) -> Result<LogWriter> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ctx(|| format!("opening {}", path.display()))?;
        Ok(LogWriter(Arc::new(Mutex::new(file))))
    }

    fn write(&self, stream: &str, text: &[u8]) {
        let entry = Entry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream: stream.to_string(),
            time: super::state::now(),
        };
        if let (Ok(mut line), Ok(mut file)) = (serde_json::to_vec(&entry), self.0.lock()) {
            line.push(b'\n');
            // A full disk loses log lines, never the container.
            let _ = file.write_all(&line);
        }
    }

    /// Copy `from` until EOF: each line to the log, and all bytes to `tee`
    /// as they come (the attached terminal or pipe, if any).
    pub fn copy(&self, stream: &str, mut from: impl std::io::Read, mut tee: Option<std::fs::File>) {
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // EIO: the pty's last writer closed.
                Err(_) => break,
            };
            if let Some(out) = tee.as_mut() {
                if out.write_all(&buf[..n]).is_err() {
                    tee = None;
                }
            }
            pending.extend_from_slice(&buf[..n]);
            loop {
                let end = match pending.iter().position(|b| *b == b'\n') {
                    Some(i) if i < MAX_LINE => i + 1,
                    _ if pending.len() >= MAX_LINE => MAX_LINE,
                    _ => break,
                };
                let line: Vec<u8> = pending.drain(..end).collect();
                self.write(stream, &line);
            }
        }
        if !pending.is_empty() {
            self.write(stream, &pending);
        }
    }
}

/// Options of `logs`.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Only the last N lines.
    pub tail: Option<usize>,
    pub follow: bool,
}

/// Hand each entry of the log at `path` to `emit`; with `follow`, keep
/// reading until `running()` turns false and the file is drained.
pub fn read(
    path: &Path,
    opts: &ReadOptions,
    mut running: impl FnMut() -> bool,
    mut emit: impl FnMut(&Entry) -> std::io::Result<()>,
) -> Result<()> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("opening {}", path.display())),
    };
    let mut reader = BufReader::new(file);
    let mut offset = 0u64;
    // The existing lines; with --tail only the last N are kept, never the
    // whole log.
    let stopped = match opts.tail {
        None => !drain(&mut reader, &mut offset, path, |e| emit(&e).is_ok())?,
        Some(n) => {
            let mut last = std::collections::VecDeque::with_capacity(n.min(4096));
            drain(&mut reader, &mut offset, path, |e| {
                if last.len() == n {
                    last.pop_front();
                }
                if n > 0 {
                    last.push_back(e);
                }
                true
            })?;
            !last.iter().all(|e| emit(e).is_ok())
        }
    };
    if stopped || !opts.follow {
        return Ok(());
    }
    loop {
        let alive = running();
        reader
            .seek(SeekFrom::Start(offset))
            .ctx(|| format!("reading {}", path.display()))?;
        if !drain(&mut reader, &mut offset, path, |e| emit(&e).is_ok())? || !alive {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Hand each complete line from the reader's position on to `each` (a
/// line still being written is left for later), advancing `offset`; false
/// once `each` asks to stop.
fn drain(
    reader: &mut BufReader<std::fs::File>,
    offset: &mut u64,
    path: &Path,
    mut each: impl FnMut(Entry) -> bool,
) -> Result<bool> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .ctx(|| format!("reading {}", path.display()))?;
        if n == 0 || !line.ends_with('\n') {
            return Ok(true);
        }
        *offset += n as u64;
        if let Ok(entry) = serde_json::from_str::<Entry>(&line) {
            if !each(entry) {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_logged_and_tailed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let log = LogWriter::open(&path).unwrap();
        let long = "x".repeat(MAX_LINE + 10);
        log.copy("stdout", format!("one\ntwo\n{long}\nthree").as_bytes(), None);
        log.copy("stderr", &b"oops\n"[..], None);
        let mut seen = Vec::new();
        read(
            &path,
            &ReadOptions::default(),
            || false,
            |e| {
                seen.push((e.stream.clone(), e.log.clone()));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen[0], ("stdout".into(), "one\n".into()));
        assert_eq!(seen[2].1.len(), MAX_LINE);
        assert_eq!(seen[3].1, "xxxxxxxxxx\n");
        assert_eq!(seen[4], ("stdout".into(), "three".into()));
        assert_eq!(seen[5], ("stderr".into(), "oops\n".into()));
        let mut tail = Vec::new();
        let opts = ReadOptions {
            tail: Some(2),
            follow: false,
        };
        read(
            &path,
            &opts,
            || false,
            |e| {
                tail.push(e.log.clone());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(tail, vec!["three", "oops\n"]);
    }

    #[test]
    fn follow_reads_what_arrives_until_the_container_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let log = LogWriter::open(&path).unwrap();
        log.copy("stdout", &b"first\n"[..], None);
        let mut polls = 0;
        let mut seen = Vec::new();
        let opts = ReadOptions {
            tail: None,
            follow: true,
        };
        read(
            &path,
            &opts,
            || {
                polls += 1;
                if polls == 2 {
                    log.copy("stdout", &b"later\n"[..], None);
                }
                polls < 3
            },
            |e| {
                seen.push(e.log.clone());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, vec!["first\n", "later\n"]);
    }
}
