//! Layer extraction throughput (MB/s of uncompressed tar) for gzip, zstd and
//! plain layers of real-looking content (this machine's Python standard
//! library: many small text files and some binaries), and the cost of a
//! second image whose base layer is already unpacked (dedup).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mocker::digest::Digest;
use mocker::manifest::Compression;
use mocker::unpack::{unpack_layer, Limits};

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
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let target = scratch.path().join(format!("{name}-{n}"));
                    std::fs::create_dir(&target).expect("mkdir");
                    let start = Instant::now();
                    unpack_layer(&blob[..], kind, &target, &diff_id, Limits::default(), name).expect("unpack");
                    total += start.elapsed();
                    // Cleanup and writeback stay outside the measurement, so
                    // each run starts from a quiet disk.
                    std::fs::remove_dir_all(&target).expect("cleanup");
                    nix::unistd::sync();
                }
                total
            })
        });
    }
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

criterion_group!(benches, extraction, dedup);
criterion_main!(benches);
