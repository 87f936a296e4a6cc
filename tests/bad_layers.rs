//! Broken layers fail the pull with an error naming the layer, and leave
//! nothing behind: no snapshot, no partial unpack, no blob, no image.

mod common;

use std::io::Write;

use common::*;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn zstd_compress(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 1).unwrap()
}

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

#[test]
fn broken_layers_are_refused_cleanly() {
    let fake = FakeRegistry::start();
    let good = tar_layer(&[("a", &[7u8; 5000]), ("b", b"hello")]);
    let good_diff = format!("sha256:{}", sha256_hex(&good));

    let mut truncated = good.clone();
    truncated.truncate(700);
    let mut bad_gzip = gzip(&good);
    let mid = bad_gzip.len() / 2;
    bad_gzip[mid] ^= 0xff;
    bad_gzip[mid + 1] ^= 0xff;
    let mut bad_zstd = zstd_compress(&good);
    let mid = bad_zstd.len() / 2;
    bad_zstd[mid] ^= 0xff;
    let mut liar = tar_layer(&[("big", &[1u8; 600])]);
    // Claim 1 MiB of data in the first header; the stream has 600 bytes.
    let mut header = tar::Header::from_byte_slice(&liar[..512]).clone();
    header.set_size(1 << 20);
    header.set_cksum();
    liar[..512].copy_from_slice(header.as_bytes());
    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect();

    let cases: Vec<(&str, Vec<u8>, String, &str, &str)> = vec![
        (
            "truncated",
            truncated.clone(),
            format!("sha256:{}", sha256_hex(&truncated)),
            TAR,
            "corrupt tar stream",
        ),
        ("badgzip", bad_gzip, good_diff.clone(), GZIP, "layer sha256:"),
        ("badzstd", bad_zstd, good_diff.clone(), ZSTD, "layer sha256:"),
        (
            "nottar",
            random.clone(),
            format!("sha256:{}", sha256_hex(&random)),
            TAR,
            "layer sha256:",
        ),
        (
            "liar",
            liar.clone(),
            format!("sha256:{}", sha256_hex(&liar)),
            TAR,
            "layer sha256:",
        ),
        (
            "wrongdiff",
            good.clone(),
            format!("sha256:{}", "0".repeat(64)),
            TAR,
            "diff_id",
        ),
    ];
    for (repo, layer, diff_id, media_type, expected) in cases {
        let digest = fake.image_with_layer_as(repo, "latest", &layer, &diff_id, media_type, None);
        let root = Root::new();
        let err = root.fails(&["pull", &format!("{}/{repo}", fake.addr)]);
        assert!(
            err.contains(&digest),
            "{repo}: error does not name layer {digest}: {err}"
        );
        assert!(err.contains(expected), "{repo}: {err}");
        root.assert_nothing_left();
    }
}

#[test]
fn decompression_bomb_is_bounded() {
    let fake = FakeRegistry::start();
    let zeros = vec![0u8; 20 << 20];
    let tar = tar_layer(&[("zeros", &zeros)]);
    let bomb = gzip(&tar);
    assert!(bomb.len() < (1 << 20), "the bomb should be small: {}", bomb.len());
    let digest = fake.image_with_layer_as(
        "bomb",
        "latest",
        &bomb,
        &format!("sha256:{}", sha256_hex(&tar)),
        GZIP,
        None,
    );
    let root = Root::new();
    let err = root.fails(&["pull", "--max-layer-size", "1000000", &format!("{}/bomb", fake.addr)]);
    assert!(err.contains(&digest) && err.contains("exceeds the limit"), "{err}");
    root.assert_nothing_left();
    // Within the limit it unpacks.
    root.ok(&["pull", "-q", &format!("{}/bomb", fake.addr)]);
}

#[test]
fn magic_bytes_win_over_a_lying_media_type() {
    let fake = FakeRegistry::start();
    let tar = tar_layer(&[("hello", b"world")]);
    let gz = gzip(&tar);
    fake.image_with_layer_as(
        "lies",
        "latest",
        &gz,
        &format!("sha256:{}", sha256_hex(&tar)),
        TAR,
        None,
    );
    let zs = zstd_compress(&tar);
    fake.image_with_layer_as(
        "lies2",
        "latest",
        &zs,
        &format!("sha256:{}", sha256_hex(&tar)),
        GZIP,
        None,
    );
    let root = Root::new();
    root.ok(&["pull", "-q", &format!("{}/lies", fake.addr)]);
    root.ok(&["pull", "-q", &format!("{}/lies2", fake.addr)]);
    let out = root
        .command()
        .args(["image", "export", &format!("{}/lies", fake.addr)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("hello")), "{names:?}");
}
