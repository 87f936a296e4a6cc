//! GNU sparse files: the map of where a file's stored data goes, in the four
//! formats Go's archive/tar (so docker and containerd) read: old GNU (type
//! 'S' with the map in the header), and PAX 0.0, 0.1 and 1.0.

use super::header::BadField;
use super::pax::{self, Records};

/// Bound on segments per file: 16 bytes each in memory. Real sparse files
/// (VM images, databases) have far fewer extents.
pub const MAX_SEGMENTS: usize = 1 << 17;

/// `len` bytes of stored data that belong at `offset` in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub len: u64,
}

impl Segment {
    pub fn new(offset: i64, len: i64) -> Result<Segment, BadField> {
        match (u64::try_from(offset), u64::try_from(len)) {
            (Ok(offset), Ok(len)) => Ok(Segment { offset, len }),
            _ => Err(BadField("sparse map")),
        }
    }
}

/// A sparse file: its logical size and where its stored bytes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sparse {
    pub real_size: u64,
    pub segments: Vec<Segment>,
}

impl Sparse {
    /// Segments in order, not overlapping, inside the file, and together
    /// exactly the `stored` bytes that follow in the archive.
    pub fn validate(real_size: u64, segments: Vec<Segment>, stored: u64) -> Result<Sparse, String> {
        if i64::try_from(real_size).is_err() {
            return Err(format!("file size {real_size} is out of range"));
        }
        let mut end = 0u64;
        let mut total = 0u64;
        for s in &segments {
            let s_end = s.offset.checked_add(s.len).ok_or("a segment's end overflows")?;
            if s.offset < end {
                return Err(format!("segment at {} overlaps or precedes the one before", s.offset));
            }
            if s_end > real_size {
                return Err(format!("segment ends at {s_end}, past the file size {real_size}"));
            }
            end = s_end;
            total += s.len;
        }
        if total != stored {
            return Err(format!("the map covers {total} bytes but the entry stores {stored}"));
        }
        Ok(Sparse { real_size, segments })
    }

    /// Bytes of holes: what the file takes beyond its stored data.
    pub fn hole_bytes(&self) -> u64 {
        self.real_size - self.segments.iter().map(|s| s.len).sum::<u64>()
    }
}

/// Which PAX sparse format the records announce, as Go decides it.
#[derive(Debug, PartialEq, Eq)]
pub enum PaxFormat {
    /// 0.0 or 0.1: the map is in the records.
    InRecords,
    /// 1.0: the map leads the entry's data.
    InData,
}

pub fn pax_format(records: &Records) -> Option<PaxFormat> {
    let major = pax::get(records, "GNU.sparse.major");
    let minor = pax::get(records, "GNU.sparse.minor");
    match (major, minor) {
        (Some(b"0"), Some(b"0" | b"1")) => Some(PaxFormat::InRecords),
        (Some(b"1"), Some(b"0")) => Some(PaxFormat::InData),
        (None, None) if has_record_map(records) => Some(PaxFormat::InRecords),
        _ => None,
    }
}

/// A non-empty map: 0.1's record, or 0.0's pairs (which Go folds into one).
fn has_record_map(records: &Records) -> bool {
    records
        .iter()
        .any(|(k, v)| (k == "GNU.sparse.map" && !v.is_empty()) || k == "GNU.sparse.offset")
}

/// The logical size a PAX sparse file announces.
pub fn pax_real_size(records: &Records) -> Result<Option<u64>, String> {
    match pax::number(records, "GNU.sparse.size")? {
        Some(size) => Ok(Some(size)),
        None => pax::number(records, "GNU.sparse.realsize"),
    }
}

/// Format 0.0's repeated `GNU.sparse.offset`/`GNU.sparse.numbytes` pairs
/// (which win, as in Go), or 0.1's `GNU.sparse.map` ("off,len,off,len");
/// `GNU.sparse.numblocks` must count the segments.
pub fn map_from_records(records: &Records) -> Result<Vec<Segment>, String> {
    let mut numbers = pairs_0_0(records)?;
    if numbers.is_empty() {
        numbers = match pax::get(records, "GNU.sparse.map") {
            Some(map) if !map.is_empty() => map.split(|b| *b == b',').collect(),
            _ => Vec::new(),
        };
    }
    let blocks = pax::number(records, "GNU.sparse.numblocks")?.ok_or("no GNU.sparse.numblocks record")?;
    if blocks.checked_mul(2) != Some(numbers.len() as u64) {
        return Err(format!(
            "GNU.sparse.numblocks is {blocks} but the map has {} values",
            numbers.len()
        ));
    }
    to_segments(&numbers)
}

fn pairs_0_0(records: &Records) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    for (key, value) in records {
        let expected = if out.len() % 2 == 0 {
            "GNU.sparse.offset"
        } else {
            "GNU.sparse.numbytes"
        };
        match key.as_str() {
            "GNU.sparse.offset" | "GNU.sparse.numbytes" if key == expected => out.push(value.as_slice()),
            "GNU.sparse.offset" | "GNU.sparse.numbytes" => return Err("offsets and sizes do not alternate".into()),
            _ => {}
        }
    }
    Ok(out)
}

fn to_segments(numbers: &[&[u8]]) -> Result<Vec<Segment>, String> {
    if !numbers.len().is_multiple_of(2) {
        return Err("odd number of map values".into());
    }
    if numbers.len() / 2 > MAX_SEGMENTS {
        return Err(format!("more than {MAX_SEGMENTS} segments"));
    }
    numbers
        .chunks_exact(2)
        .map(|pair| {
            Ok(Segment {
                offset: decimal(pair[0])?,
                len: decimal(pair[1])?,
            })
        })
        .collect()
}

fn decimal(raw: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(raw)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad map value {}", super::quoted(&String::from_utf8_lossy(raw))))
}

/// Format 1.0's map at the start of the data: newline-terminated decimals,
/// the count then offset/length pairs, padded to a whole block. `next_line`
/// yields the lines (the caller bounds how much it reads).
pub fn map_from_lines(mut next_line: impl FnMut() -> Result<Vec<u8>, String>) -> Result<Vec<Segment>, String> {
    let count = decimal(&next_line()?)?;
    if count > MAX_SEGMENTS as u64 {
        return Err(format!("more than {MAX_SEGMENTS} segments"));
    }
    let mut numbers = Vec::with_capacity(2 * count as usize);
    for _ in 0..2 * count {
        numbers.push(next_line()?);
    }
    let refs: Vec<&[u8]> = numbers.iter().map(Vec::as_slice).collect();
    to_segments(&refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(pairs: &[(&str, &str)]) -> Records {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn formats_as_go_reads_them() {
        let r0_0 = records(&[
            ("GNU.sparse.size", "100"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.offset", "10"),
            ("GNU.sparse.numbytes", "5"),
            ("GNU.sparse.offset", "50"),
            ("GNU.sparse.numbytes", "3"),
        ]);
        assert_eq!(pax_format(&r0_0), Some(PaxFormat::InRecords));
        let map = map_from_records(&r0_0).unwrap();
        assert_eq!(
            map,
            vec![Segment { offset: 10, len: 5 }, Segment { offset: 50, len: 3 }]
        );
        let r0_1 = records(&[
            ("GNU.sparse.major", "0"),
            ("GNU.sparse.minor", "1"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.map", "10,5,50,3"),
        ]);
        assert_eq!(map_from_records(&r0_1).unwrap(), map);
        assert_eq!(
            pax_format(&records(&[("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0")])),
            Some(PaxFormat::InData)
        );
        assert_eq!(
            pax_format(&records(&[("GNU.sparse.major", "2"), ("GNU.sparse.minor", "0")])),
            None
        );
        assert_eq!(pax_format(&records(&[("path", "x")])), None);
    }

    #[test]
    fn maps_are_validated() {
        let seg = |offset, len| Segment { offset, len };
        assert!(Sparse::validate(100, vec![seg(10, 5), seg(50, 3)], 8).is_ok());
        assert!(
            Sparse::validate(100, vec![seg(10, 5), seg(12, 3)], 8).is_err(),
            "overlap"
        );
        assert!(Sparse::validate(100, vec![seg(50, 3), seg(10, 5)], 8).is_err(), "order");
        assert!(Sparse::validate(52, vec![seg(50, 3)], 3).is_err(), "past the end");
        assert!(
            Sparse::validate(100, vec![seg(50, 3)], 4).is_err(),
            "stored bytes unaccounted"
        );
        assert!(
            Sparse::validate(u64::MAX, vec![seg(u64::MAX, 3)], 3).is_err(),
            "overflow"
        );
        let bad_pairs = records(&[("GNU.sparse.offset", "1"), ("GNU.sparse.offset", "2")]);
        assert!(map_from_records(&bad_pairs).is_err());
        let mut lines = vec![b"1".to_vec(), b"0".to_vec(), b"x".to_vec()].into_iter();
        assert!(map_from_lines(|| lines.next().ok_or("short".to_string())).is_err());
    }
}
