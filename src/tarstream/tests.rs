use super::*;

/// A header block with the given fields, checksummed.
fn block(name: &str, kind: u8, size: u64, edit: impl FnOnce(&mut [u8; BLOCK])) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[100..107].copy_from_slice(b"0000644");
    b[108..115].copy_from_slice(b"0000000");
    b[116..123].copy_from_slice(b"0000000");
    b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    b[136..147].copy_from_slice(b"14000000000");
    b[156] = kind;
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    edit(&mut b);
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    b
}

/// Give the last header block (of an entry without data) type `flag`.
fn retype_last(tar: &mut [u8], flag: u8) {
    let at = tar.len() - BLOCK;
    let h = &mut tar[at..];
    h[156] = flag;
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|x| u32::from(*x)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

/// One PAX record, `LEN key=value\n`.
pub(super) fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = [key.as_bytes(), b"=", value, b"\n"].concat();
    let mut len = body.len() + 2;
    while format!("{len} ").len() + body.len() != len {
        len += 1;
    }
    [format!("{len} ").into_bytes(), body].concat()
}

fn pax_then(records: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    [
        &block("pax", b'x', records.len() as u64, |_| {})[..],
        &padded(records),
        &block(name, b'0', data.len() as u64, |_| {}),
        &padded(data),
    ]
    .concat()
}

fn all(bytes: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, TarError> {
    let mut reader = Reader::new(bytes);
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        let mut data = Vec::new();
        reader.data().read_to_end(&mut data).map_err(TarError::Io)?;
        out.push((entry, data));
    }
    Ok(out)
}

#[test]
fn pax_values_are_bytes() {
    // A file capability with 0x0a inside, as `setcap cap_net_raw,...+ep` makes.
    let cap = b"\x01\x00\x00\x02\x0a\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    let records = [
        record("SCHILY.xattr.security.capability", cap),
        record("mtime", b"-86400.25"),
    ]
    .concat();
    let entries = all(&pax_then(&records, "ping", b"hi")).unwrap();
    assert_eq!(entries.len(), 1);
    let (entry, data) = &entries[0];
    assert_eq!(entry.xattrs, vec![("security.capability".to_string(), cap.to_vec())]);
    assert_eq!(entry.mtime, (-86401, 750_000_000));
    assert_eq!(data, b"hi");
}

#[test]
fn long_names_and_pax_paths() {
    let long = "d/".repeat(80) + "file";
    let gnu = [
        &block("././@LongLink", b'L', long.len() as u64 + 1, |_| {})[..],
        &padded(format!("{long}\0").as_bytes()),
        &block("short", b'0', 1, |_| {}),
        &padded(b"x"),
    ]
    .concat();
    assert_eq!(all(&gnu).unwrap()[0].0.path, PathBuf::from(&long));
    let pax = pax_then(&record("path", long.as_bytes()), "short", b"x");
    assert_eq!(all(&pax).unwrap()[0].0.path, PathBuf::from(&long));
}

#[test]
fn meta_headers_are_bounded() {
    let huge = MAX_META_BYTES + 1;
    for kind in [b'x', b'g', b'L', b'K'] {
        let tar = block("meta", kind, huge, |_| {});
        let err = all(&tar).unwrap_err();
        assert!(matches!(err, TarError::TooLong { size, .. } if size == huge), "{err}");
    }
}

#[test]
fn base256_negative_mtime() {
    let tar = block("old", b'0', 0, |b| {
        b[136..148].fill(0xff);
        b[144..148].copy_from_slice(&(-86400i32).to_be_bytes());
    });
    assert_eq!(all(&tar).unwrap()[0].0.mtime, (-86400, 0));
}

#[test]
fn header_only_types_have_no_data() {
    // A directory claiming 512 bytes: Go reads the next header right after.
    let tar = [
        &block("d/", b'5', 512, |_| {})[..],
        &block("f", b'0', 1, |_| {}),
        &padded(b"y"),
    ]
    .concat();
    let entries = all(&tar).unwrap();
    assert_eq!(
        entries.iter().map(|e| e.0.kind).collect::<Vec<_>>(),
        vec![Kind::Dir, Kind::File]
    );
}

#[test]
fn corrupt_streams_fail() {
    let mut bad = block("f", b'0', 1, |_| {});
    bad[0] = b'g';
    assert!(matches!(all(&bad), Err(TarError::Checksum { at: 0 })));
    let short = [&block("f", b'0', 1000, |_| {})[..], &[1u8; 100]].concat();
    assert!(all(&short).is_err());
    assert!(matches!(all(&[0u8; 100]), Err(TarError::Truncated { .. })));
    let bad_pax = pax_then(b"30 path=x\n", "f", b"");
    assert!(matches!(all(&bad_pax), Err(TarError::Pax { .. })));
}

#[test]
fn global_headers_apply_to_nothing() {
    // As Go (and so docker): a 'g' header is an entry of its own, skipped;
    // the 'x' records before it go with it.
    let global = record("uid", b"1000");
    let local = record("gid", b"7");
    let tar = [
        &block("x", b'x', local.len() as u64, |_| {})[..],
        &padded(&local),
        &block("g", b'g', global.len() as u64, |_| {}),
        &padded(&global),
        &block("b", b'0', 0, |_| {}),
    ]
    .concat();
    let entries = all(&tar).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].0.uid, entries[0].0.gid), (0, 0));
}

#[test]
fn names_and_data_are_decided_as_go_decides_them() {
    let long = [&block("././@LongLink", b'L', 9, |_| {})[..], &padded(b"gnu-name\0")].concat();
    // A GNU long name wins over a PAX path.
    let both = [&long[..], &pax_then(&record("path", b"pax-name"), "header-name", b"")].concat();
    // pax_then starts with its 'x' header: the long name comes first here.
    assert_eq!(all(&both).unwrap()[0].0.path, PathBuf::from("gnu-name"));
    // A pre-POSIX entry is a directory by its final name's slash.
    let mut v7 = pax_then(&record("path", b"dir/"), "file", b"");
    retype_last(&mut v7, 0);
    assert_eq!(all(&v7).unwrap()[0].0.kind, Kind::Dir);
    // GNU 'D' (a directory with a listing) has data: a header hidden in it
    // is data, not an entry.
    let hidden = block("etc/ld.so.preload", b'0', 0, |_| {});
    let dumpdir = [
        &block("d", b'D', 512, |_| {})[..],
        &hidden,
        &block("after", b'0', 0, |_| {}),
    ]
    .concat();
    let names: Vec<_> = all(&dumpdir).unwrap().into_iter().map(|(e, _)| e.path).collect();
    assert_eq!(names, [PathBuf::from("d"), PathBuf::from("after")]);
}

#[test]
fn out_of_range_and_misplaced_values_are_refused() {
    let huge = pax_then(&record("size", b"18446744073709551615"), "f", b"");
    assert!(
        matches!(all(&huge), Err(TarError::Pax { .. })),
        "{:?}",
        all(&huge).err()
    );
    let not_gnu = block("s", b'S', 0, |_| {});
    assert!(matches!(all(&not_gnu), Err(TarError::Sparse { .. })));
    let sparse_link = [&block("x", b'x', 0, |_| {})[..], &block("l", b'2', 0, |_| {})].concat();
    assert!(all(&sparse_link).is_ok());
    let records = [record("GNU.sparse.major", b"1"), record("GNU.sparse.minor", b"0")].concat();
    let mut link = pax_then(&records, "l", b"");
    retype_last(&mut link, b'2');
    assert!(
        matches!(all(&link), Err(TarError::Sparse { .. })),
        "{:?}",
        all(&link).err()
    );
}

#[test]
fn sparse_1_0_map_leads_the_data() {
    let map = padded(b"2\n0\n3\n8192\n2\n");
    let data = [&map[..], b"abcde"].concat();
    let records = [
        record("GNU.sparse.major", b"1"),
        record("GNU.sparse.minor", b"0"),
        record("GNU.sparse.name", b"real/name"),
        record("GNU.sparse.realsize", b"10000"),
    ]
    .concat();
    let entries = all(&pax_then(&records, "GNUSparseFile.0/name", &data)).unwrap();
    let (entry, stored) = &entries[0];
    assert_eq!(entry.path, PathBuf::from("real/name"));
    let sparse = entry.sparse.as_ref().unwrap();
    assert_eq!(sparse.real_size, 10000);
    assert_eq!(
        sparse.segments,
        vec![Segment { offset: 0, len: 3 }, Segment { offset: 8192, len: 2 }]
    );
    assert_eq!(stored, b"abcde");
    assert_eq!(sparse.hole_bytes(), 9995);
}

#[test]
fn old_gnu_sparse_with_extension_blocks() {
    // 6 segments: 4 in the header, 2 in one extension block.
    let segment = |i: u64| (i * 4096, 1u64);
    let put = |dst: &mut [u8], (off, len): (u64, u64)| {
        dst[..11].copy_from_slice(format!("{off:011o}").as_bytes());
        dst[12..23].copy_from_slice(format!("{len:011o}").as_bytes());
    };
    let header = block("sparse", b'S', 6, |b| {
        b[257..265].copy_from_slice(b"ustar  \0");
        for i in 0..4 {
            put(&mut b[386 + 24 * i as usize..], segment(i));
        }
        b[482] = 1;
        b[483..494].copy_from_slice(format!("{:011o}", 5 * 4096 + 1).as_bytes());
    });
    let mut ext = [0u8; BLOCK];
    put(&mut ext[0..], segment(4));
    put(&mut ext[24..], segment(5));
    let tar = [&header[..], &ext, &padded(b"abcdef")].concat();
    let entries = all(&tar).unwrap();
    let sparse = entries[0].0.sparse.as_ref().unwrap();
    assert_eq!(sparse.segments.len(), 6);
    assert_eq!(sparse.real_size, 5 * 4096 + 1);
    assert_eq!(entries[0].1, b"abcdef");
}

/// Rebuild a sparse file's logical content from its map and stored bytes.
fn expand(entry: &Entry, stored: &[u8]) -> Vec<u8> {
    let sparse = entry.sparse.as_ref().expect("a sparse entry");
    let mut out = vec![0u8; sparse.real_size as usize];
    let mut from = 0;
    for s in &sparse.segments {
        let len = s.len as usize;
        out[s.offset as usize..s.offset as usize + len].copy_from_slice(&stored[from..from + len]);
        from += len;
    }
    out
}

#[test]
fn gnu_tar_sparse_formats() {
    // Made by GNU tar 1.34 (`--sparse`, and `--format=pax --sparse-version=V`)
    // from `holes` ("start" at 0, "middle" at 1 MiB, "end" at 3 MiB) and
    // `allhole` (5 MiB, no data).
    let archives: [(&str, &[u8]); 4] = [
        ("gnu", include_bytes!("../../fuzz/seeds/tar/sparse-gnu.tar")),
        ("0.0", include_bytes!("../../fuzz/seeds/tar/sparse-0.0.tar")),
        ("0.1", include_bytes!("../../fuzz/seeds/tar/sparse-0.1.tar")),
        ("1.0", include_bytes!("../../fuzz/seeds/tar/sparse-1.0.tar")),
    ];
    for (format, bytes) in archives {
        let entries = all(bytes).unwrap_or_else(|e| panic!("{format}: {e}"));
        let names: Vec<_> = entries.iter().map(|(e, _)| e.path.display().to_string()).collect();
        assert_eq!(names, ["./", "./allhole", "./holes"], "{format}");
        let allhole = expand(&entries[1].0, &entries[1].1);
        assert!(allhole.len() == 5 << 20 && allhole.iter().all(|b| *b == 0), "{format}");
        let holes = expand(&entries[2].0, &entries[2].1);
        assert_eq!(holes.len(), (3 << 20) + 3, "{format}");
        assert_eq!(&holes[..5], b"start", "{format}");
        assert_eq!(&holes[1 << 20..(1 << 20) + 6], b"middle", "{format}");
        assert_eq!(&holes[3 << 20..], b"end", "{format}");
        assert!(
            entries[2].0.sparse.as_ref().unwrap().hole_bytes() > (3 << 20) - (1 << 16),
            "{format}"
        );
    }
}
