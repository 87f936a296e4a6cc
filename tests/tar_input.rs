//! What comes in: tars other tools write that the spec allows — GNU sparse
//! files in all four formats, zstd skippable frames, PAX headers — unpacked
//! by the real unpacker, and the bounds that keep hostile ones small.

mod common;

use std::io::Cursor;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{sha256_hex, tar_layer};
use mocker::digest::Digest;
use mocker::manifest::Compression;
use mocker::unpack::{unpack_layer, Limits, Unpacked};

fn unpack(
    bytes: &[u8],
    compression: Compression,
    diff: &[u8],
    limit: u64,
) -> (tempfile::TempDir, Result<Unpacked, String>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("fs")).unwrap();
    let diff_id = Digest::parse(&format!("sha256:{}", sha256_hex(diff))).unwrap();
    let limits = Limits {
        max_unpacked_bytes: limit,
    };
    let result = unpack_layer(
        Cursor::new(bytes),
        compression,
        &dir.path().join("fs"),
        &diff_id,
        limits,
        "layer",
    )
    .map_err(|e| e.to_string());
    (dir, result)
}

/// `holes`: "start" at 0, "middle" at 1 MiB, "end" at 3 MiB; `empty`: 8 MiB of hole.
fn sparse_source() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let holes = std::fs::File::create(dir.path().join("holes")).unwrap();
    for (offset, text) in [(0u64, &b"start"[..]), (1 << 20, b"middle"), (3 << 20, b"end")] {
        std::os::unix::fs::FileExt::write_all_at(&holes, text, offset).unwrap();
    }
    holes.sync_all().unwrap();
    drop(holes);
    std::fs::File::create(dir.path().join("empty"))
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    dir
}

fn gnu_tar(source: &Path, format_args: &[&str]) -> Vec<u8> {
    let out = Command::new("tar")
        .args(format_args)
        .args(["--sparse", "--owner=0", "--group=0", "-cf", "-", "-C"])
        .arg(source)
        .args(["holes", "empty"])
        .output()
        .expect("GNU tar");
    assert!(
        out.status.success(),
        "tar {format_args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn gnu_sparse_files_in_every_format_keep_their_holes() {
    let source = sparse_source();
    let formats: [(&str, &[&str]); 4] = [
        ("old GNU", &["--format=gnu"]),
        ("PAX 0.0", &["--format=pax", "--sparse-version=0.0"]),
        ("PAX 0.1", &["--format=pax", "--sparse-version=0.1"]),
        ("PAX 1.0", &["--format=pax", "--sparse-version=1.0"]),
    ];
    for (name, args) in formats {
        let tar = gnu_tar(source.path(), args);
        let (dir, result) = unpack(&tar, Compression::None, &tar, 1 << 30);
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
        let fs = dir.path().join("fs");
        assert_eq!(common::list(&fs), ["empty", "holes"], "{name}: names");
        let holes = std::fs::read(fs.join("holes")).unwrap();
        assert_eq!(holes.len(), (3 << 20) + 3, "{name}: size");
        assert_eq!(&holes[..5], b"start", "{name}");
        assert_eq!(&holes[1 << 20..(1 << 20) + 6], b"middle", "{name}");
        assert_eq!(&holes[3 << 20..], b"end", "{name}");
        assert!(holes[5..1 << 20].iter().all(|b| *b == 0), "{name}: hole content");
        let empty = std::fs::metadata(fs.join("empty")).unwrap();
        assert_eq!(empty.len(), 8 << 20, "{name}");
        // Holes stay holes: a few blocks on disk, not megabytes.
        let on_disk = std::fs::metadata(fs.join("holes")).unwrap().blocks() * 512 + empty.blocks() * 512;
        assert!(on_disk < 1 << 20, "{name}: {on_disk} bytes on disk");
    }
}

#[test]
fn a_sparse_bomb_counts_at_its_full_size() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::File::create(dir.path().join("holes"))
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    std::fs::File::create(dir.path().join("empty")).unwrap();
    let tar = gnu_tar(dir.path(), &["--format=pax", "--sparse-version=1.0"]);
    assert!(tar.len() < 1 << 20, "the bomb is small: {}", tar.len());
    let (dir, result) = unpack(&tar, Compression::None, &tar, 1 << 30);
    let err = result.unwrap_err();
    assert!(err.contains("exceeds the limit of 1073741824 bytes"), "{err}");
    assert!(common::list(&dir.path().join("fs")).is_empty(), "the bomb was written");
}

/// A zstd skippable frame (magic 0x184D2A5x) holding `payload`.
fn skippable(payload: &[u8]) -> Vec<u8> {
    let mut frame = 0x184d_2a5e_u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn zstd_skippable_frames_anywhere_are_skipped() {
    let tar = tar_layer(&[("a", &[7u8; 3000]), ("b", b"hello")]);
    let (first, second) = tar.split_at(1536);
    let frame = |part: &[u8]| zstd::stream::encode_all(part, 3).unwrap();
    let meta = skippable(b"{\"seekable\":true}");
    let layouts: [(&str, Vec<u8>); 3] = [
        ("leading", [meta.clone(), frame(&tar)].concat()),
        ("between", [frame(first), meta.clone(), frame(second)].concat()),
        ("trailing", [frame(&tar), meta.clone()].concat()),
    ];
    for (name, blob) in layouts {
        // Declared as plain tar: the magic bytes must still say zstd.
        let (dir, result) = unpack(&blob, Compression::None, &tar, 1 << 30);
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(std::fs::read(dir.path().join("fs/b")).unwrap(), b"hello", "{name}");
    }
}

/// A header of `kind` whose data is `size` bytes of 'a', then a file.
fn meta_entry(kind: tar::EntryType, size: usize) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path("meta").unwrap();
    h.set_entry_type(kind);
    h.set_size(size as u64);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    let body: Vec<u8> = if kind == tar::EntryType::XHeader {
        let value = "a".repeat(size - size.to_string().len() - " path=\n".len());
        let record = format!("{} path={value}\n", size);
        assert_eq!(record.len(), size);
        record.into_bytes()
    } else {
        vec![b'a'; size]
    };
    out.extend_from_slice(&body);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&tar_layer(&[("f", b"x")]));
    out
}

#[test]
fn pax_headers_and_long_names_are_bounded() {
    for kind in [tar::EntryType::XHeader, tar::EntryType::GNULongName] {
        let tar = meta_entry(kind, 2 << 20);
        let (_dir, result) = unpack(&tar, Compression::None, &tar, 1 << 30);
        let err = result.unwrap_err();
        assert!(
            err.contains("2097152 bytes, over the limit of 1048576"),
            "{kind:?}: {err}"
        );
    }
    // Under the bound, a long PAX path is read (then refused as too long a path).
    let tar = meta_entry(tar::EntryType::XHeader, 8192);
    let (_dir, result) = unpack(&tar, Compression::None, &tar, 1 << 30);
    assert!(
        result.unwrap_err().contains("longer than 4096"),
        "a long path is refused by name"
    );
}

/// A stream `commit` or `import` tees to the unpacker has no meter of its
/// own: the limit holds for the last entry's data and for whatever follows
/// the end marker too, which a bomb of zeros would otherwise hide in.
#[test]
fn a_teed_stream_is_bounded_to_its_last_byte() {
    let apply = |stream: Vec<u8>| {
        let dir = tempfile::tempdir().unwrap();
        let (tx, decoded) = mocker::unpack::decode::channel();
        let feeder = std::thread::spawn(move || {
            for chunk in stream.chunks(64 << 10) {
                if tx.send(Ok(chunk.to_vec())).is_err() {
                    return;
                }
            }
        });
        let limits = Limits {
            max_unpacked_bytes: 256 << 10,
        };
        let result = mocker::unpack::apply_tar(decoded, dir.path(), limits, "layer").map_err(|e| e.to_string());
        feeder.join().unwrap();
        result
    };
    let small = tar_layer(&[("a", &[1u8; 1000])]);
    assert!(apply(small.clone()).is_ok());
    let err = apply(tar_layer(&[("big", &vec![1u8; 1 << 20])])).unwrap_err();
    assert!(err.contains("exceeds the limit"), "{err}");
    let mut trailing = small;
    trailing.extend(vec![0u8; 4 << 20]);
    let err = apply(trailing).unwrap_err();
    assert!(err.contains("after the tar end exceeds the limit"), "{err}");
}
