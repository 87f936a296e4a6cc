//! One 512-byte header block, read field by field: names, numbers in octal
//! or base-256 (signed, as GNU tar and Go write times before 1970), the
//! checksum, and the GNU sparse fields.

use super::sparse::Segment;

pub const BLOCK: usize = 512;

/// The fields of one header, before PAX records or GNU long names apply.
#[derive(Debug)]
pub struct Header {
    pub kind: u8,
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: i64,
    pub gid: i64,
    pub size: i64,
    pub mtime: i64,
    pub dev_major: i64,
    pub dev_minor: i64,
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Pre-POSIX: no magic, no owner names, no prefix.
    V7,
    /// POSIX ustar (and PAX on top of it): a 155-byte name prefix.
    Ustar,
    /// GNU: no prefix; atime/ctime and the sparse map in its place.
    Gnu,
}

/// Why a block is not a valid header: the field that failed to parse.
#[derive(Debug, PartialEq, Eq)]
pub struct BadField(pub &'static str);

pub fn is_zero(block: &[u8; BLOCK]) -> bool {
    block.iter().all(|b| *b == 0)
}

/// A NUL-terminated field's bytes.
fn text(raw: &[u8]) -> &[u8] {
    raw.iter().position(|b| *b == 0).map_or(raw, |end| &raw[..end])
}

/// A numeric field: base-256 when the high bit of the first byte is set
/// (two's complement when the next bit is set too), else octal text padded
/// with spaces or NULs. An empty field is 0.
pub fn number(raw: &[u8], field: &'static str) -> Result<i64, BadField> {
    match raw.first() {
        Some(first) if first & 0x80 != 0 => {
            let invert = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut value: u64 = 0;
            for (i, byte) in raw.iter().enumerate() {
                let mut byte = byte ^ invert;
                if i == 0 {
                    byte &= 0x7f;
                }
                if value >> 56 != 0 {
                    return Err(BadField(field));
                }
                value = value << 8 | u64::from(byte);
            }
            let value = i64::try_from(value).map_err(|_| BadField(field))?;
            Ok(if invert == 0xff { !value } else { value })
        }
        _ => {
            let trimmed = trim(raw);
            if trimmed.is_empty() {
                return Ok(0);
            }
            let text = std::str::from_utf8(trimmed).map_err(|_| BadField(field))?;
            i64::from_str_radix(text, 8).map_err(|_| BadField(field))
        }
    }
}

/// Octal fields are padded with spaces and NULs on either side.
fn trim(raw: &[u8]) -> &[u8] {
    let pad = |b: &u8| *b == b' ' || *b == 0;
    let start = raw.iter().position(|b| !pad(b)).unwrap_or(raw.len());
    let end = raw.iter().rposition(|b| !pad(b)).map_or(start, |i| i + 1);
    &raw[start..end]
}

/// The stored checksum equals the sum of the block's bytes with the
/// checksum field read as spaces, unsigned (POSIX) or signed (old Unix tars).
fn checksum_ok(block: &[u8; BLOCK]) -> Result<bool, BadField> {
    let stored = number(&block[148..156], "checksum")?;
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, byte) in block.iter().enumerate() {
        let byte = if (148..156).contains(&i) { b' ' } else { *byte };
        unsigned += i64::from(byte);
        signed += i64::from(byte as i8);
    }
    Ok(stored == unsigned || stored == signed)
}

impl Header {
    /// Parse a non-zero block; `Ok(None)` when its checksum is wrong.
    pub fn parse(block: &[u8; BLOCK]) -> Result<Option<Header>, BadField> {
        if !checksum_ok(block)? {
            return Ok(None);
        }
        let format = match (&block[257..263], &block[263..265]) {
            (b"ustar\0", _) => Format::Ustar,
            (b"ustar ", b" \0") => Format::Gnu,
            _ => Format::V7,
        };
        let mut name = text(&block[0..100]).to_vec();
        let prefix = text(&block[345..500]);
        if format == Format::Ustar && !prefix.is_empty() {
            name = [prefix, b"/", &name].concat();
        }
        let has_devices = format != Format::V7;
        Ok(Some(Header {
            kind: block[156],
            name,
            link: text(&block[157..257]).to_vec(),
            mode: u32::try_from(number(&block[100..108], "mode")? & 0o7777_7777).map_err(|_| BadField("mode"))?,
            uid: number(&block[108..116], "uid")?,
            gid: number(&block[116..124], "gid")?,
            size: number(&block[124..136], "size")?,
            mtime: number(&block[136..148], "mtime")?,
            dev_major: if has_devices {
                number(&block[329..337], "devmajor")?
            } else {
                0
            },
            dev_minor: if has_devices {
                number(&block[337..345], "devminor")?
            } else {
                0
            },
            format,
        }))
    }
}

/// An old-GNU sparse header's map: up to 4 segments in the header, whether
/// extension blocks follow, and the file's real size.
pub fn gnu_sparse(block: &[u8; BLOCK]) -> Result<(Vec<Segment>, bool, i64), BadField> {
    let segments = segments(&block[386..482])?;
    let extended = block[482] != 0;
    let real_size = number(&block[483..495], "realsize")?;
    Ok((segments, extended, real_size))
}

/// An extension block of an old-GNU sparse map: 21 segments and the flag.
pub fn gnu_sparse_extension(block: &[u8; BLOCK]) -> Result<(Vec<Segment>, bool), BadField> {
    Ok((segments(&block[..504])?, block[504] != 0))
}

/// 24-byte (offset, length) pairs; the first all-empty one ends the list.
fn segments(raw: &[u8]) -> Result<Vec<Segment>, BadField> {
    let mut out = Vec::new();
    for pair in raw.chunks_exact(24) {
        if pair[0] == 0 {
            break;
        }
        out.push(Segment::new(
            number(&pair[..12], "sparse offset")?,
            number(&pair[12..], "sparse length")?,
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(b"0000644\0", "m"), Ok(0o644));
        assert_eq!(number(b"  755 \0", "m"), Ok(0o755));
        assert_eq!(number(b"\0\0\0\0", "m"), Ok(0));
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "m"), Ok(256));
        // -86400 in 12-byte base-256 two's complement, as GNU tar writes it.
        let mut neg = [0xffu8; 12];
        neg[8..].copy_from_slice(&(-86400i32).to_be_bytes());
        assert_eq!(number(&neg, "m"), Ok(-86400));
        assert!(number(b"12x4", "m").is_err());
        assert!(number(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "m").is_err());
    }
}
