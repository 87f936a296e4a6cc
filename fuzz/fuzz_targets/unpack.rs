//! Arbitrary bytes as a layer (any compression) unpacked into a fresh
//! snapshot directory. Invariant: whatever the input, nothing changes beside
//! the snapshot — a sentinel directory next to it stays exactly as it was.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mocker::digest::Digest;
use mocker::manifest::Compression;
use mocker::unpack::{unpack_layer, Limits};

fn fingerprint(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        out.push(format!("{} {:?} {}", p.display(), md.permissions(), md.len()));
        if md.is_dir() {
            for entry in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                stack.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let scratch = tempfile::tempdir().expect("tempdir");
    let target = scratch.path().join("fs");
    let sentinel = scratch.path().join("sentinel");
    std::fs::create_dir(&target).expect("mkdir");
    std::fs::create_dir(&sentinel).expect("mkdir");
    std::fs::write(sentinel.join("secret"), b"x").expect("write");
    let before = (
        fingerprint(&sentinel),
        std::fs::read_dir(scratch.path()).expect("ls").count(),
    );
    let diff_id = Digest::of_bytes(data);
    let limits = Limits {
        max_unpacked_bytes: 64 << 20,
    };
    let _ = unpack_layer(data, Compression::None, &target, &diff_id, limits, "fuzz");
    let after = (
        fingerprint(&sentinel),
        std::fs::read_dir(scratch.path()).expect("ls").count(),
    );
    assert_eq!(before, after, "the unpacker changed something outside the snapshot");
});
