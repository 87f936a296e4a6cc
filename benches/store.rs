//! Content store throughput: digest verification (MB/s) and ingest of a
//! 256 MiB blob (stream → hash → fsync → rename), the two costs of every pull.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mocker::digest::{Digest, Hasher};
use mocker::store::{Begin, ContentStore};

/// Deterministic, incompressible-looking bytes.
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn digest_verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("digest");
    for size in [64 << 10, 4 << 20, 64 << 20] {
        let bytes = data(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &bytes, |b, bytes| {
            b.iter(|| {
                let mut h = Hasher::new();
                for chunk in bytes.chunks(64 << 10) {
                    h.update(chunk);
                }
                h.finish()
            })
        });
    }
    group.finish();
}

fn ingest_256mib(c: &mut Criterion) {
    const SIZE: usize = 256 << 20;
    let bytes = data(SIZE);
    let digest = Digest::of_bytes(&bytes);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ContentStore::open(dir.path()).expect("store");
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.bench_function("256MiB", |b| {
        b.iter(|| {
            store.delete(&digest).expect("delete");
            let Begin::Writer(mut w) = store.begin(&digest, Some(SIZE as u64), "bench").expect("begin") else {
                panic!("store busy")
            };
            // Network-sized chunks, as a registry stream delivers them.
            for chunk in bytes.chunks(64 << 10) {
                w.write(chunk).expect("write");
            }
            w.commit().expect("commit");
        })
    });
    group.finish();
}

criterion_group!(benches, digest_verification, ingest_256mib);
criterion_main!(benches);
