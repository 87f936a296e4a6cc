//! The pull pipeline's stages, in MB/s of uncompressed tar, on real-looking
//! content (this machine's Python standard library: many small text files
//! and some binaries):
//! - `decode`: decompression on the decoder thread plus the diff_id hash on
//!   the reader's side, nothing written (the first half of an unpack);
//! - `extract`: a whole unpack (decode + file creation) of gzip, zstd and
//!   plain layers, from a blob in memory;
//! - `extract/gzip_while_written`: the same gzip unpack reading the blob
//!   through `pull::follow` while another thread writes it to a file in
//!   64 KiB chunks, as a download does (streaming's own cost);
//! - `dedup`: a second image whose base layer is already unpacked.
//!
//! The network and blob stages (digest, ingest) are in `benches/store.rs`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mocker::digest::Digest;
use mocker::manifest::Compression;
use mocker::pull::follow::{Feed, Follower};
use mocker::unpack::{decode, unpack_layer, Limits};

/// A tar of a real directory tree, built in memory once.
fn real_tar() -> Vec<u8> {
    let source = ["/usr/lib/python3.11", "/usr/lib/python3", "/usr/share/perl"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_dir())
        .expect("a directory of real files to pack");
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all("content", source).expect("tar");
    builder.into_inner().expect("tar")
}

fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(tar).expect("gzip");
            enc.finish().expect("gzip")
        }
        Compression::Zstd => zstd::stream::encode_all(tar, 3).expect("zstd"),
    }
}

fn decoding(c: &mut Criterion) {
    let tar = real_tar();
    let diff_id = Digest::of_bytes(&tar);
    let mut group = c.benchmark_group("decode");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(tar.len() as u64));
    for (name, kind) in [("gzip", Compression::Gzip), ("zstd", Compression::Zstd)] {
        let blob = compress(&tar, kind);
        group.bench_function(name, |b| {
            b.iter(|| {
                std::thread::scope(|scope| {
                    let (mut stream, decoder) = decode::spawn(scope, &blob[..], kind, u64::MAX);
                    std::io::copy(&mut stream, &mut std::io::sink()).expect("decode");
                    assert_eq!(stream.digest(), diff_id);
                    decoder.join().expect("decoder")
                })
            })
        });
    }
    group.finish();
}

/// Unpack `blob` into a new directory under `scratch`, timing only the
/// unpack; `source` makes the reader (the blob itself, or a follower).
fn timed_unpack<R: std::io::Read + Send>(
    scratch: &Path,
    name: &str,
    n: u64,
    kind: Compression,
    diff_id: &Digest,
    source: impl FnOnce() -> R,
) -> Duration {
    let target = scratch.join(format!("{name}-{n}"));
    std::fs::create_dir(&target).expect("mkdir");
    let start = Instant::now();
    unpack_layer(source(), kind, &target, diff_id, Limits::default(), name).expect("unpack");
    let took = start.elapsed();
    // Cleanup and writeback stay outside the measurement, so each run
    // starts from a quiet disk.
    std::fs::remove_dir_all(&target).expect("cleanup");
    nix::unistd::sync();
    took
}

/// A follower of `blob` as a thread writes it into a file under `scratch`.
fn written_meanwhile(scratch: &Path, blob: &Arc<Vec<u8>>, n: u64) -> (Follower, std::thread::JoinHandle<()>) {
    let path = scratch.join(format!("blob-{n}"));
    let mut file = std::fs::File::create(&path).expect("blob file");
    let feed = Arc::new(Feed::default());
    feed.attach(std::fs::File::open(&path).expect("reader"), 0);
    let (writer_feed, blob) = (feed.clone(), blob.clone());
    let writer = std::thread::spawn(move || {
        let mut done = 0;
        for chunk in blob.chunks(64 << 10) {
            file.write_all(chunk).expect("write");
            done += chunk.len() as u64;
            writer_feed.advance(done);
        }
        writer_feed.finish(true);
        drop(file);
        std::fs::remove_file(path).expect("remove blob");
    });
    (Follower::new(feed), writer)
}

fn extraction(c: &mut Criterion) {
    let tar = real_tar();
    let diff_id = Digest::of_bytes(&tar);
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("extract");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(tar.len() as u64));
    for (name, kind) in [
        ("plain", Compression::None),
        ("gzip", Compression::Gzip),
        ("zstd", Compression::Zstd),
    ] {
        let blob = compress(&tar, kind);
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        n += 1;
                        timed_unpack(scratch.path(), name, n, kind, &diff_id, || &blob[..])
                    })
                    .sum()
            })
        });
    }
    let blob = Arc::new(compress(&tar, Compression::Gzip));
    let mut n = 0u64;
    group.bench_function("gzip_while_written", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    n += 1;
                    let mut writer = None;
                    let took = timed_unpack(scratch.path(), "streamed", n, Compression::Gzip, &diff_id, || {
                        let (follower, w) = written_meanwhile(scratch.path(), &blob, n);
                        writer = Some(w);
                        follower
                    });
                    if let Some(w) = writer {
                        w.join().expect("writer");
                    }
                    took
                })
                .sum()
        })
    });
    group.finish();
}

fn dedup(c: &mut Criterion) {
    let base = real_tar();
    let top = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "app/config", &b"hello"[..]).expect("tar");
        b.into_inner().expect("tar")
    };
    let (base_id, top_id) = (Digest::of_bytes(&base), Digest::of_bytes(&top));
    let chain_top_a = Digest::of_bytes(format!("{base_id} {top_id}").as_bytes());
    let root = tempfile::tempdir().expect("tempdir");
    let mocker = mocker::Mocker::open(root.path()).expect("root");
    let build = |tar: &[u8], id: &Digest| {
        let tar = tar.to_vec();
        let id = id.clone();
        move |dir: &Path| {
            let u = unpack_layer(&tar[..], Compression::None, dir, &id, Limits::default(), "bench")?;
            Ok((u.file_bytes, u.implicit_dirs))
        }
    };
    // The first image: base + top.
    let (base_snapshot, _) = mocker
        .snapshots
        .ensure(&base_id, None, &base_id, build(&base, &base_id))
        .expect("base");
    mocker
        .snapshots
        .ensure(&chain_top_a, Some(&base_id), &top_id, build(&top, &top_id))
        .expect("top");
    let mut group = c.benchmark_group("dedup");
    group.sample_size(10);
    // A second image on the same base: the base is found, only its own layer is unpacked.
    let mut n = 0u64;
    group.bench_function("second_image_shared_base", |b| {
        b.iter(|| {
            n += 1;
            let other = Digest::of_bytes(format!("other-{n}").as_bytes());
            let (hit, built) = mocker
                .snapshots
                .ensure(&base_id, None, &base_id, build(&base, &base_id))
                .expect("base");
            assert!(!built && hit.id == base_snapshot.id);
            mocker
                .snapshots
                .ensure(&other, Some(&base_id), &top_id, build(&top, &top_id))
                .expect("top");
        })
    });
    group.finish();
    eprintln!(
        "dedup: base layer {} bytes unpacked once; each further image on it adds {} bytes instead of {}",
        base_snapshot.size,
        top.len(),
        base_snapshot.size + top.len() as u64
    );
}

criterion_group!(benches, decoding, extraction, dedup);
criterion_main!(benches);
