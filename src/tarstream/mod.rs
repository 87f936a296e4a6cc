//! Reading a tar stream entry by entry, with every header that only
//! describes the next entry (PAX, GNU long names, GNU sparse maps) already
//! applied. Our own reader, not the tar crate's: that one splits PAX records
//! on newlines (a binary xattr value breaks the pull), reads PAX headers and
//! long names whole into memory however large, and reads none of the PAX
//! sparse formats. Decisions follow Go's archive/tar, which docker and
//! containerd use: what they read from a layer, we read the same way.

mod header;
pub mod pax;
pub mod sparse;

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use header::{BadField, Header, BLOCK};
pub use sparse::{Segment, Sparse};

/// Bound on a PAX header's or a GNU long name's data (both are read whole)
/// and on a sparse 1.0 map.
pub const MAX_META_BYTES: u64 = 1 << 20;
/// Longest part of an untrusted value an error quotes.
const QUOTED: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("{0}")]
    Io(#[source] io::Error),
    #[error("the stream ends inside {what} (byte {at})")]
    Truncated { what: &'static str, at: u64 },
    #[error("no tar header at byte {at} (bad checksum)")]
    Checksum { at: u64 },
    #[error("invalid {field} in the header at byte {at}")]
    Field { field: &'static str, at: u64 },
    #[error("{what} at byte {at} is {size} bytes, over the limit of {limit}")]
    TooLong {
        what: &'static str,
        at: u64,
        size: u64,
        limit: u64,
    },
    #[error("malformed PAX header at byte {at}: {reason}")]
    Pax { at: u64, reason: String },
    #[error("sparse file at byte {at}: {reason}")]
    Sparse { at: u64, reason: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
    /// A type we do not apply (GNU multivolume, old long names, …).
    Other(u8),
}

/// One entry, its metadata final.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    pub path: PathBuf,
    pub link: Option<PathBuf>,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds (negative before 1970) and nanoseconds.
    pub mtime: (i64, u32),
    pub device: (u64, u64),
    /// Bytes of data stored in the archive (for a sparse file, its segments').
    pub size: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub sparse: Option<Sparse>,
}

/// The entries of a tar stream. `next_entry` skips whatever of the previous
/// entry's data was not read through `data`.
pub struct Reader<R> {
    inner: R,
    position: u64,
    /// Unread data of the current entry, then its padding to a block.
    remaining: u64,
    padding: u64,
}

/// What precedes an entry: its PAX records and GNU long names.
#[derive(Default)]
struct Prelude {
    records: Option<pax::Records>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            position: 0,
            remaining: 0,
            padding: 0,
        }
    }

    /// Bytes consumed from the stream so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The current entry's stored data.
    pub fn data(&mut self) -> Data<'_, R> {
        Data { reader: self }
    }

    /// The next entry, or None at the end-of-archive block (or a clean end
    /// of the stream, as GNU tar and Go accept).
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        self.skip_rest()?;
        let mut prelude = Prelude::default();
        loop {
            let at = self.position;
            let Some(block) = self.read_block()? else {
                return Ok(None);
            };
            if header::is_zero(&block) {
                return Ok(None);
            }
            let header = Header::parse(&block)
                .map_err(|BadField(field)| TarError::Field { field, at })?
                .ok_or(TarError::Checksum { at })?;
            let size = u64::try_from(header.size).map_err(|_| TarError::Field { field: "size", at })?;
            match header.kind {
                b'x' => prelude.records = Some(self.read_pax(size, at)?),
                // Go returns a global header as an entry of its own, which
                // docker and containerd skip: its records apply to no file,
                // and the headers before it go with it.
                b'g' => {
                    self.read_pax(size, at)?;
                    prelude = Prelude::default();
                }
                b'L' => prelude.long_name = Some(self.read_long(size, at, "a GNU long name")?),
                b'K' => prelude.long_link = Some(self.read_long(size, at, "a GNU long link name")?),
                _ => return self.entry(header, &block, at, prelude).map(Some),
            }
            self.skip_rest()?;
        }
    }

    fn entry(&mut self, h: Header, block: &[u8; BLOCK], at: u64, prelude: Prelude) -> Result<Entry, TarError> {
        let bad_pax = |reason: String| TarError::Pax { at, reason };
        let records = prelude.records.unwrap_or_default();
        // As Go: a GNU long name wins over a PAX path, which wins over the header.
        let name = prelude
            .long_name
            .or_else(|| pax::get(&records, "path").map(<[u8]>::to_vec))
            .unwrap_or(h.name);
        let link = prelude
            .long_link
            .or_else(|| pax::get(&records, "linkpath").map(<[u8]>::to_vec))
            .unwrap_or(h.link);
        let kind = kind_of(h.kind, &name);
        let stored = match pax::number(&records, "size").map_err(bad_pax)? {
            Some(size) if i64::try_from(size).is_ok() => size,
            Some(size) => return Err(bad_pax(format!("size {size} is out of range"))),
            None => u64::try_from(h.size).map_err(|_| TarError::Field { field: "size", at })?,
        };
        // As Go: links, devices, directories and fifos have no data,
        // whatever their size field says.
        let has_data = !matches!(h.kind, b'1'..=b'6');
        self.start_data(if has_data { stored } else { 0 });
        let mut entry = Entry {
            kind,
            path: to_path(name, at)?,
            link: Some(to_path(link, at)?).filter(|l| !l.as_os_str().is_empty()),
            mode: h.mode & 0o7777,
            uid: id(&records, "uid", h.uid, at)?,
            gid: id(&records, "gid", h.gid, at)?,
            mtime: match pax::text(&records, "mtime").map_err(bad_pax)? {
                Some(v) => pax::time(v).ok_or_else(|| bad_pax(format!("bad mtime {}", quoted(v))))?,
                None => (h.mtime, 0),
            },
            device: (
                device(h.dev_major, "devmajor", at)?,
                device(h.dev_minor, "devminor", at)?,
            ),
            size: if has_data { stored } else { 0 },
            xattrs: records
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("SCHILY.xattr.")
                        .map(|name| (name.to_string(), v.clone()))
                })
                .collect(),
            sparse: None,
        };
        if h.kind == b'S' {
            if h.format != header::Format::Gnu {
                return Err(TarError::Sparse {
                    at,
                    reason: "a sparse entry in a non-GNU header".into(),
                });
            }
            entry.sparse = Some(self.gnu_sparse(block, at)?);
        } else if let Some(format) = sparse::pax_format(&records) {
            if !has_data {
                return Err(TarError::Sparse {
                    at,
                    reason: format!("a sparse map on a {kind:?} entry"),
                });
            }
            self.pax_sparse(&records, format, &mut entry, at)?;
        }
        Ok(entry)
    }

    /// Old GNU format: the map in the header, continued in extension blocks
    /// that come before the data.
    fn gnu_sparse(&mut self, block: &[u8; BLOCK], at: u64) -> Result<Sparse, TarError> {
        let field = |BadField(field)| TarError::Field { field, at };
        let (mut segments, mut extended, real_size) = header::gnu_sparse(block).map_err(field)?;
        while extended {
            if segments.len() > sparse::MAX_SEGMENTS {
                return Err(TarError::Sparse {
                    at,
                    reason: format!("more than {} segments", sparse::MAX_SEGMENTS),
                });
            }
            let ext_at = self.position;
            let block = self.read_block()?.ok_or(TarError::Truncated {
                what: "a sparse map",
                at: ext_at,
            })?;
            let (more, again) = header::gnu_sparse_extension(&block).map_err(field)?;
            segments.extend(more);
            extended = again;
        }
        let real_size = u64::try_from(real_size).map_err(|_| TarError::Field { field: "realsize", at })?;
        Sparse::validate(real_size, segments, self.remaining).map_err(|reason| TarError::Sparse { at, reason })
    }

    /// PAX formats 0.0, 0.1 (map in the records) and 1.0 (map in the data);
    /// `GNU.sparse.name` is the real name.
    fn pax_sparse(
        &mut self,
        records: &pax::Records,
        format: sparse::PaxFormat,
        entry: &mut Entry,
        at: u64,
    ) -> Result<(), TarError> {
        let fail = |reason: String| TarError::Sparse { at, reason };
        if let Some(name) = pax::get(records, "GNU.sparse.name").filter(|n| !n.is_empty()) {
            entry.path = to_path(name.to_vec(), at)?;
        }
        // Without a size record, Go takes the entry's size for the file's.
        let real_size = sparse::pax_real_size(records).map_err(fail)?.unwrap_or(entry.size);
        let segments = match format {
            sparse::PaxFormat::InRecords => sparse::map_from_records(records).map_err(fail)?,
            sparse::PaxFormat::InData => self.read_map_1_0().map_err(fail)?,
        };
        entry.sparse = Some(Sparse::validate(real_size, segments, self.remaining).map_err(fail)?);
        entry.size = self.remaining;
        Ok(())
    }

    /// The 1.0 map: decimal lines in whole blocks at the start of the data.
    fn read_map_1_0(&mut self) -> Result<Vec<Segment>, String> {
        let mut buf = Vec::new();
        // Where the current line starts, and how far it was searched.
        let (mut start, mut scanned) = (0, 0);
        sparse::map_from_lines(|| loop {
            if let Some(nl) = buf[scanned..].iter().position(|b| *b == b'\n') {
                let line = buf[start..scanned + nl].to_vec();
                (start, scanned) = (scanned + nl + 1, scanned + nl + 1);
                return Ok(line);
            }
            scanned = buf.len();
            if buf.len() as u64 >= MAX_META_BYTES {
                return Err(format!("map longer than {MAX_META_BYTES} bytes"));
            }
            let mut block = [0u8; BLOCK];
            if self.remaining < BLOCK as u64 {
                return Err("the map runs past the entry's data".into());
            }
            self.data().read_exact(&mut block).map_err(|e| e.to_string())?;
            buf.extend_from_slice(&block);
        })
    }

    fn read_pax(&mut self, size: u64, at: u64) -> Result<pax::Records, TarError> {
        let data = self.read_meta(size, at, "a PAX header")?;
        pax::parse(&data).map_err(|reason| TarError::Pax { at, reason })
    }

    /// A GNU long name: the data up to its first NUL.
    fn read_long(&mut self, size: u64, at: u64, what: &'static str) -> Result<Vec<u8>, TarError> {
        let mut data = self.read_meta(size, at, what)?;
        if let Some(end) = data.iter().position(|b| *b == 0) {
            data.truncate(end);
        }
        Ok(data)
    }

    fn read_meta(&mut self, size: u64, at: u64, what: &'static str) -> Result<Vec<u8>, TarError> {
        if size > MAX_META_BYTES {
            return Err(TarError::TooLong {
                what,
                at,
                size,
                limit: MAX_META_BYTES,
            });
        }
        self.start_data(size);
        let mut data = Vec::with_capacity(size as usize);
        self.data().read_to_end(&mut data).map_err(|e| truncated(e, what, at))?;
        Ok(data)
    }

    fn start_data(&mut self, size: u64) {
        self.remaining = size;
        self.padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
    }

    /// Skip the rest of the current entry's data and its padding.
    fn skip_rest(&mut self) -> Result<(), TarError> {
        let n = self.remaining + self.padding;
        if n == 0 {
            return Ok(());
        }
        let at = self.position;
        let skipped = io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(TarError::Io)?;
        self.position += skipped;
        (self.remaining, self.padding) = (0, 0);
        if skipped < n {
            return Err(TarError::Truncated {
                what: "an entry's data",
                at,
            });
        }
        Ok(())
    }

    /// One whole block; None at a clean end of the stream.
    fn read_block(&mut self) -> Result<Option<[u8; BLOCK]>, TarError> {
        let mut block = [0u8; BLOCK];
        let mut filled = 0;
        while filled < BLOCK {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Io(e)),
            }
        }
        self.position += filled as u64;
        match filled {
            0 => Ok(None),
            BLOCK => Ok(Some(block)),
            _ => Err(TarError::Truncated {
                what: "a header",
                at: self.position - filled as u64,
            }),
        }
    }
}

/// The current entry's data: reads end at its end, and a stream that ends
/// before is an error.
pub struct Data<'a, R> {
    reader: &'a mut Reader<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &mut *self.reader;
        let max = buf.len().min(usize::try_from(r.remaining).unwrap_or(usize::MAX));
        if max == 0 {
            return Ok(0);
        }
        let n = r.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "corrupt tar stream: it ends inside this entry's data",
            ));
        }
        r.remaining -= n as u64;
        r.position += n as u64;
        Ok(n)
    }
}

fn truncated(e: io::Error, what: &'static str, at: u64) -> TarError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        TarError::Truncated { what, at }
    } else {
        TarError::Io(e)
    }
}

fn kind_of(flag: u8, name: &[u8]) -> Kind {
    match flag {
        // Pre-POSIX archives mark directories by a trailing slash only.
        b'\0' if name.ends_with(b"/") => Kind::Dir,
        b'0' | b'\0' | b'7' | b'S' => Kind::File,
        b'1' => Kind::HardLink,
        b'2' => Kind::Symlink,
        b'3' => Kind::Char,
        b'4' => Kind::Block,
        // 'D' is GNU's directory with a listing of its contents as data.
        b'5' | b'D' => Kind::Dir,
        b'6' => Kind::Fifo,
        other => Kind::Other(other),
    }
}

fn to_path(bytes: Vec<u8>, at: u64) -> Result<PathBuf, TarError> {
    if bytes.contains(&0) {
        return Err(TarError::Pax {
            at,
            reason: "a path holds a NUL byte".into(),
        });
    }
    Ok(PathBuf::from(OsString::from_vec(bytes)))
}

/// An untrusted value for an error message: escaped, and cut if long.
pub fn quoted(value: &str) -> String {
    quoted_up_to(value, QUOTED)
}

/// `value` escaped, and cut after `max` bytes (at a character boundary).
pub fn quoted_up_to(value: &str, max: usize) -> String {
    let cut = (0..=max.min(value.len()))
        .rev()
        .find(|i| value.is_char_boundary(*i))
        .unwrap_or(0);
    let ellipsis = if cut < value.len() { "…" } else { "" };
    format!("{:?}{ellipsis}", &value[..cut])
}

fn id(records: &pax::Records, key: &'static str, header: i64, at: u64) -> Result<u64, TarError> {
    match pax::number(records, key).map_err(|reason| TarError::Pax { at, reason })? {
        Some(v) => Ok(v),
        None => u64::try_from(header).map_err(|_| TarError::Field { field: key, at }),
    }
}

fn device(value: i64, field: &'static str, at: u64) -> Result<u64, TarError> {
    u64::try_from(value).map_err(|_| TarError::Field { field, at })
}

#[cfg(test)]
mod tests;
