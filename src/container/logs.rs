//! Container output in docker's json-file format: one JSON object per line,
//! `{"log":"…\n","stream":"stdout","time":"…"}`. The monitor writes it; `logs`
//! reads it (and follows it while the monitor lives).

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::error::ContainerError;
use crate::error::{IoContext, Result};

/// Lines longer than this are split, as docker does (16 KiB).
const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// docker's json-file `--log-opt max-size=… max-file=…`: when a line would
/// take the log past `max_size` bytes it is rotated — `ctr.log` becomes
/// `ctr.log.1`, `.1` becomes `.2`, … keeping `max_files` files in all.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rotation {
    pub max_size: u64,
    pub max_files: u32,
}

impl Rotation {
    /// From `--log-opt KEY=VALUE` options (json-file's max-size and
    /// max-file); None when no max-size is set (docker: unbounded).
    pub fn from_log_opts(opts: &[String]) -> Result<Option<Rotation>> {
        let (mut max_size, mut max_files) = (None, None);
        for opt in opts {
            let invalid = |reason| ContainerError::InvalidLogOpt {
                opt: opt.clone(),
                reason,
            };
            match opt.split_once('=') {
                Some(("max-size", v)) => {
                    let size = crate::runtime::cgroup::parse_bytes(v).map_err(|_| invalid("not a size"))?;
                    max_size = Some(
                        u64::try_from(size)
                            .ok()
                            .filter(|s| *s > 0)
                            .ok_or_else(|| invalid("must be positive"))?,
                    );
                }
                Some(("max-file", v)) => {
                    max_files = Some(
                        v.parse::<u32>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| invalid("must be a positive integer"))?,
                    )
                }
                Some((key, _)) => return Err(ContainerError::UnknownLogOpt { key: key.into() }.into()),
                None => return Err(invalid("expected KEY=VALUE").into()),
            }
        }
        match (max_size, max_files) {
            (Some(max_size), files) => Ok(Some(Rotation {
                max_size,
                max_files: files.unwrap_or(1),
            })),
            (None, Some(n)) if n > 1 => Err(ContainerError::MaxFileWithoutMaxSize.into()),
            (None, _) => Ok(None),
        }
    }
}

/// Rotated file `n` of the log at `path` (`ctr.log.n`).
fn rotated(path: &Path, n: u32) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    name.into()
}

/// The files of a log at `path`, oldest first (rotated ones, then `path`).
fn files_of(path: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = (1..).map(|n| rotated(path, n)).take_while(|p| p.exists()).collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
}

struct Current {
    file: std::fs::File,
    size: u64,
}

/// The log file, shared by the stdout and stderr copiers.
#[derive(Clone)]
pub struct LogWriter {
    path: std::path::PathBuf,
    rotation: Option<Rotation>,
    current: Arc<Mutex<Current>>,
}

impl LogWriter {
    pub fn open(path: &Path, rotation: Option<Rotation>) -> Result<LogWriter> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ctx(|| format!("opening {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path: path.to_path_buf(),
            rotation,
            current: Arc::new(Mutex::new(Current { file, size })),
        })
    }

    fn write(&self, stream: &str, text: &[u8]) {
        let entry = Entry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream: stream.to_string(),
            time: crate::timestamp::format(&super::state::now()),
        };
        if let (Ok(mut line), Ok(mut current)) = (serde_json::to_vec(&entry), self.current.lock()) {
            line.push(b'\n');
            if let Some(rotation) = self.rotation {
                if current.size > 0 && current.size + line.len() as u64 > rotation.max_size {
                    self.rotate(&mut current, rotation);
                }
            }
            // A full disk loses log lines, never the container.
            if current.file.write_all(&line).is_ok() {
                current.size += line.len() as u64;
            }
        }
    }

    /// Shift the rotated files up by one (the oldest falls off), move the
    /// log to `.1` and start a new one; with one file, just empty it.
    fn rotate(&self, current: &mut Current, rotation: Rotation) {
        let nth = |n| rotated(&self.path, n);
        if rotation.max_files <= 1 {
            if current.file.set_len(0).is_ok() {
                current.size = 0;
            }
            return;
        }
        for n in (1..rotation.max_files - 1).rev() {
            let _ = std::fs::rename(nth(n), nth(n + 1));
        }
        let fresh = std::fs::rename(&self.path, nth(1))
            .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).open(&self.path));
        // If rotating fails the log just grows: lines are not dropped.
        if let Ok(file) = fresh {
            *current = Current { file, size: 0 };
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

/// `logs`: hand each entry of the container's log to `emit`; with `follow`,
/// until it exits.
pub fn of_container(
    mocker: &crate::Mocker,
    query: &str,
    opts: &ReadOptions,
    emit: impl FnMut(&Entry) -> std::io::Result<()>,
) -> Result<()> {
    let id = super::find(mocker, query)?.id;
    let path = super::paths::log_path(&super::paths::dir_of(mocker, &id));
    read(&path, opts, || super::is_running(mocker, &id), emit)
}

/// Hand each entry of the log at `path` (its rotated files first) to
/// `emit`; with `follow`, keep reading until `running()` turns false and
/// the log is drained, going on to the new file when the log is rotated.
pub fn read(
    path: &Path,
    opts: &ReadOptions,
    mut running: impl FnMut() -> bool,
    mut emit: impl FnMut(&Entry) -> std::io::Result<()>,
) -> Result<()> {
    // The existing lines; with --tail only the last N are kept, never the
    // whole log.
    let mut last = std::collections::VecDeque::new();
    let mut current = None;
    for file_path in files_of(path) {
        let file = match std::fs::File::open(&file_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).ctx(|| format!("opening {}", file_path.display())),
        };
        let mut reader = BufReader::new(file);
        let mut offset = 0u64;
        let more = drain(&mut reader, &mut offset, &file_path, |e| match opts.tail {
            None => emit(&e).is_ok(),
            Some(n) => {
                if last.len() == n {
                    last.pop_front();
                }
                if n > 0 {
                    last.push_back(e);
                }
                true
            }
        })?;
        if !more {
            return Ok(());
        }
        if file_path == path {
            current = Some((reader, offset));
        }
    }
    if !last.iter().all(|e| emit(e).is_ok()) || !opts.follow {
        return Ok(());
    }
    let Some((mut reader, mut offset)) = current else {
        return Ok(());
    };
    loop {
        let alive = running();
        let len = reader.get_ref().metadata().map(|m| m.len()).unwrap_or(0);
        if len < offset {
            // Emptied in place (max-file=1): read it from the start.
            offset = 0;
        }
        reader
            .seek(SeekFrom::Start(offset))
            .ctx(|| format!("reading {}", path.display()))?;
        if !drain(&mut reader, &mut offset, path, |e| emit(&e).is_ok())? {
            return Ok(());
        }
        if let Some(next) = rotated_away(path, reader.get_ref()) {
            // The rest of the old file is read; go on with the new one.
            reader = BufReader::new(next);
            offset = 0;
            continue;
        }
        if !alive {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The file now at `path` if it is not `open` (the log was rotated);
/// a stat per poll, an open only when it changed.
fn rotated_away(path: &Path, open: &std::fs::File) -> Option<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let ours = open.metadata().ok()?.ino();
    if std::fs::metadata(path).ok()?.ino() == ours {
        return None;
    }
    std::fs::File::open(path).ok()
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
        let log = LogWriter::open(&path, None).unwrap();
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
        let log = LogWriter::open(&path, None).unwrap();
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

    fn all(path: &Path, opts: &ReadOptions, mut running: impl FnMut() -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        read(path, opts, &mut running, |e| {
            seen.push(e.log.trim_end().to_string());
            Ok(())
        })
        .unwrap();
        seen
    }

    /// A log at `path` rotated at 160 bytes: entries here are 77 bytes, so
    /// two fit in a file.
    fn rotating(path: &Path, max_files: u32) -> LogWriter {
        let rotation = Rotation {
            max_size: 160,
            max_files,
        };
        LogWriter::open(path, Some(rotation)).unwrap()
    }

    #[test]
    fn rotation_keeps_max_files_and_reads_them_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let log = rotating(&path, 3);
        for i in 0..10 {
            log.copy("stdout", format!("line {i}\n").as_bytes(), None);
        }
        let files = files_of(&path);
        assert_eq!(files.len(), 3, "{files:?}");
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 160, "{}", f.display());
        }
        // The oldest lines fell off; the rest come back in order.
        assert_eq!(
            all(&path, &ReadOptions::default(), || false),
            ["line 4", "line 5", "line 6", "line 7", "line 8", "line 9"]
        );
        let tail = ReadOptions {
            tail: Some(3),
            follow: false,
        };
        assert_eq!(all(&path, &tail, || false), ["line 7", "line 8", "line 9"]);
        // One file: emptied in place, never more than max-size.
        let single = dir.path().join("single.log");
        let log = rotating(&single, 1);
        for i in 0..5 {
            log.copy("stdout", format!("line {i}\n").as_bytes(), None);
        }
        assert_eq!(files_of(&single).len(), 1);
        assert_eq!(all(&single, &ReadOptions::default(), || false), ["line 4"]);
    }

    #[test]
    fn follow_goes_on_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let log = rotating(&path, 2);
        log.copy("stdout", &b"first\n"[..], None);
        let follow = ReadOptions {
            tail: None,
            follow: true,
        };
        let mut polls = 0;
        let seen = all(&path, &follow, || {
            polls += 1;
            if polls == 2 {
                // Past 160 bytes: the log rotates under the reader.
                for line in ["a\n", "b\n", "c\n"] {
                    log.copy("stdout", line.as_bytes(), None);
                }
            }
            polls < 4
        });
        assert_eq!(seen, ["first", "a", "b", "c"]);
    }

    #[test]
    fn log_opts_are_docker_s() {
        let opts = |v: &[&str]| Rotation::from_log_opts(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(opts(&[]).unwrap(), None);
        assert_eq!(
            opts(&["max-size=10m", "max-file=3"]).unwrap(),
            Some(Rotation {
                max_size: 10 << 20,
                max_files: 3
            })
        );
        assert_eq!(
            opts(&["max-size=1k"]).unwrap(),
            Some(Rotation {
                max_size: 1024,
                max_files: 1
            })
        );
        for bad in [
            &["colour=red"][..],
            &["max-size=lots"],
            &["max-size=0"],
            &["max-file=0", "max-size=1m"],
            &["max-file=3"],
            &["max-size"],
        ] {
            assert!(opts(bad).is_err(), "{bad:?}");
        }
    }
}
