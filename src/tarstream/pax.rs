//! PAX extended header records: `LEN key=value\n`, where LEN counts the
//! whole record in bytes. Records are split by their length, never on
//! newlines: a value is bytes (a binary `SCHILY.xattr.security.capability`
//! often holds 0x0a).

/// Records in the order written; repeated keys are kept (sparse format 0.0
/// repeats `GNU.sparse.offset`/`GNU.sparse.numbytes`).
pub type Records = Vec<Record>;

/// A key and its value.
pub type Record = (String, Vec<u8>);

/// Longest record length prefix we read: 20 digits exceed any real record.
const MAX_LEN_DIGITS: usize = 20;

pub fn parse(mut data: &[u8]) -> Result<Records, String> {
    let mut records = Vec::new();
    while !data.is_empty() {
        let (record, rest) = one(data)?;
        records.push(record);
        data = rest;
    }
    Ok(records)
}

/// The first record of `data` and what follows it.
fn one(data: &[u8]) -> Result<(Record, &[u8]), String> {
    let space = data
        .iter()
        .take(MAX_LEN_DIGITS + 1)
        .position(|b| *b == b' ')
        .ok_or("record without a length")?;
    let digits = &data[..space];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(format!("bad record length {:?}", String::from_utf8_lossy(digits)));
    }
    let len: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or("record length out of range")?;
    if len <= space + 1 || len > data.len() {
        return Err(format!("record length {len} does not fit the header"));
    }
    let (record, rest) = data.split_at(len);
    let body = record[space + 1..]
        .strip_suffix(b"\n")
        .ok_or("record does not end with a newline")?;
    let equals = body.iter().position(|b| *b == b'=').ok_or("record without '='")?;
    let key = std::str::from_utf8(&body[..equals]).map_err(|_| "record key is not UTF-8")?;
    if key.is_empty() {
        return Err("record with an empty key".into());
    }
    Ok(((key.to_string(), body[equals + 1..].to_vec()), rest))
}

/// The last value of `key`.
pub fn get<'a>(records: &'a Records, key: &str) -> Option<&'a [u8]> {
    records.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
}

/// The last value of `key` as text; non-UTF-8 is an error.
pub fn text<'a>(records: &'a Records, key: &str) -> Result<Option<&'a str>, String> {
    get(records, key)
        .map(|v| std::str::from_utf8(v).map_err(|_| format!("PAX {key} is not UTF-8")))
        .transpose()
}

/// The last value of `key` as a non-negative decimal.
pub fn number(records: &Records, key: &str) -> Result<Option<u64>, String> {
    text(records, key)?
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| format!("PAX {key} {} is not a number", super::quoted(v)))
        })
        .transpose()
}

/// A PAX time: decimal seconds, optionally negative, with an optional
/// fraction (digits past nanoseconds are dropped). Returns (secs, nanos)
/// with 0 <= nanos < 1e9: -1.5 s is (-2, 500000000).
pub fn time(v: &str) -> Option<(i64, u32)> {
    let (negative, digits) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (secs, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if secs.is_empty() || !secs.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let nanos = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    Some(match (negative, nanos) {
        (false, n) => (secs, n),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::record;
    use super::*;

    #[test]
    fn values_are_bytes() {
        let cap = b"\x01\x00\x00\x02\x0a\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        let data = [record("SCHILY.xattr.security.capability", cap), record("path", b"a\nb")].concat();
        let records = parse(&data).unwrap();
        assert_eq!(get(&records, "SCHILY.xattr.security.capability"), Some(&cap[..]));
        assert_eq!(get(&records, "path"), Some(&b"a\nb"[..]));
    }

    #[test]
    fn malformed_records_are_refused() {
        for bad in [
            &b"5 a=b"[..],
            b"x a=b\n",
            b"99 a=b\n",
            b"6 ab\n\n",
            b"5 =b\n",
            b"3 a\n",
            b"7 a=bc",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn times() {
        assert_eq!(time("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(time("12"), Some((12, 0)));
        assert_eq!(time("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(time("-86400"), Some((-86400, 0)));
        assert_eq!(time("1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(time("x"), None);
        assert_eq!(time(".5"), None);
    }
}
