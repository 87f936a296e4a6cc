//! Every pull failure is one line on stderr, a non-zero exit, and leaves
//! nothing partial visible in the store or the index.

mod common;

use std::time::{Duration, Instant};

use common::fake_registry::Route;
use common::*;

/// After a failed pull: no image, no ingest file, no blob of the bad layer.
fn assert_nothing_visible(root: &Root) {
    assert!(root.ok(&["images", "-q"]).trim().is_empty(), "an image became visible");
    assert!(root.ingest().is_empty(), "ingest left behind: {:?}", root.ingest());
    root.assert_blobs_verified();
}

#[test]
fn invalid_reference_fails_before_any_network_call() {
    let root = Root::new();
    // Port 1 is closed: had mocker tried the network, the error would say so.
    for bad in [
        "127.0.0.1:1/UPPER",
        "127.0.0.1:1/app:",
        "127.0.0.1:1/a@sha256:abc",
        "127.0.0.1:1/a b",
    ] {
        let err = root.fails(&["pull", bad]);
        assert!(err.contains("invalid reference format"), "{bad}: {err}");
    }
    let err = root.fails(&["pull", &format!("127.0.0.1:1/a@md5:{}", "a".repeat(32))]);
    assert!(
        err.contains("invalid reference format") || err.contains("unsupported digest"),
        "{err}"
    );
}

#[test]
fn unreachable_registry_fails_quickly() {
    let root = Root::new();
    // A socket bound but never listening: connections to its port are
    // refused, and no other process can take the port while it is held.
    use nix::sys::socket::{bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let held = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    bind(held.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
    let port = getsockname::<SockaddrIn>(held.as_raw_fd()).unwrap().port();
    let start = Instant::now();
    let err = root.fails(&["pull", "--connect-timeout", "3", &format!("127.0.0.1:{port}/busybox")]);
    assert!(start.elapsed() < Duration::from_secs(15));
    assert!(
        err.contains(&format!("registry 127.0.0.1:{port} is unreachable")),
        "{err}"
    );
    assert_nothing_visible(&root);
}

#[test]
fn unknown_repository_and_tag_are_not_found() {
    let root = Root::new();
    let err = root.fails(&["pull", &image("no-such-repo")]);
    assert!(err.contains("not found"), "{err}");
    let err = root.fails(&["pull", &image("busybox:no-such-tag")]);
    assert!(err.contains("busybox:no-such-tag: not found"), "{err}");
    assert_nothing_visible(&root);
}

#[test]
fn unauthorized_without_credentials() {
    let root = Root::new();
    let err = root.fails(&["pull", &format!("{}/private/busybox", env("MOCKER_TEST_AUTH_REGISTRY"))]);
    assert!(err.contains("unauthorized"), "{err}");
    assert_nothing_visible(&root);
}

#[test]
fn digest_mismatch_names_both_digests() {
    let root = Root::new();
    let reference = image("corrupt");
    let bad_layer = registry_layers(&reference).pop().unwrap();
    let err = root.fails(&["pull", &reference]);
    assert!(err.contains("digest mismatch") && err.contains(&bad_layer), "{err}");
    let served = sha256_hex(&std::fs::read(registry_blob_file(&bad_layer)).unwrap());
    assert!(
        err.contains(&served),
        "error should name the digest of what was served: {err}"
    );
    assert!(!root.blobs().contains(&hex_of(&bad_layer).to_string()));
    assert_nothing_visible(&root);
}

#[test]
fn size_mismatch_is_reported() {
    let root = Root::new();
    let reference = image("truncated");
    let bad_layer = registry_layers(&reference).pop().unwrap();
    let err = root.fails(&["pull", &reference]);
    assert!(err.contains("size mismatch") && err.contains(&bad_layer), "{err}");
    assert_nothing_visible(&root);
}

#[test]
fn malformed_documents_are_rejected() {
    let fake = FakeRegistry::start();
    let oci = "application/vnd.oci.image.manifest.v1+json";
    fake.manifest("badjson", "latest", oci, b"{\"schemaVersion\": 2, \"config\": ");
    fake.manifest("huge", "latest", oci, &vec![b' '; 5 << 20]);
    let layer_digest = format!("sha256:{}", "1".repeat(64));
    let weird = format!(
        r#"{{"schemaVersion":2,"mediaType":"{oci}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{layer_digest}","size":2}},
        "layers":[{{"mediaType":"application/vnd.example.lz4","digest":"{layer_digest}","size":2}}]}}"#
    );
    fake.manifest("weird", "latest", oci, weird.as_bytes());
    let ambiguous = weird.replace("\"layers\"", "\"manifests\":[],\"layers\"");
    fake.manifest("ambiguous", "latest", oci, ambiguous.as_bytes());
    let artifact = weird.replace(
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.cncf.helm.config.v1+json",
    );
    fake.manifest("artifact", "latest", oci, artifact.as_bytes());

    // A well-formed manifest whose config blob is not JSON.
    let config = b"this is not json".to_vec();
    let config_digest = fake.blob("badconfig", &config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{oci}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    fake.manifest("badconfig", "latest", oci, manifest.as_bytes());
    fake.route(
        "/v2/locked/manifests/latest",
        Route {
            status: 401,
            content_type: "application/json".into(),
            body: b"{}".to_vec(),
            trickle: None,
            hold: None,
            headers: Vec::new(),
        },
    );

    let root = Root::new();
    let cases = [
        ("badjson", "not valid JSON"),
        ("huge", "too large"),
        ("weird", "unsupported media type \"application/vnd.example.lz4\""),
        ("ambiguous", "ambiguous document"),
        ("artifact", "not a container image"),
        ("badconfig", "not a valid image config"),
        ("locked", "unauthorized"),
    ];
    for (repo, expected) in cases {
        let err = root.fails(&["pull", &format!("{}/{repo}", fake.addr)]);
        assert!(err.contains(expected), "{repo}: {err}");
    }
    assert!(root.ok(&["images", "-q"]).trim().is_empty());
    assert!(root.ingest().is_empty());
    // The config that failed to parse was verified bytes, but no image uses it.
    root.ok(&["system", "check", "--repair"]);
    assert!(root.blobs().is_empty(), "{:?}", root.blobs());
}

#[test]
fn disk_full_is_reported_and_frees_the_partial_blob() {
    let root = Root::new();
    let mount = root.path().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1500k", "tmpfs"])
        .arg(&mount)
        .status()
        .expect("mount");
    assert!(status.success(), "mounting a small tmpfs needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mount.clone());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mocker"))
        .arg("--root")
        .arg(&mount)
        .args(["pull", &image("multi")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.lines().last().unwrap().contains("no space left on device"), "{err}");
    assert!(
        common::list(&mount.join("ingest")).is_empty(),
        "partial blob kept on a full disk"
    );
    let images = std::process::Command::new(env!("CARGO_BIN_EXE_mocker"))
        .arg("--root")
        .arg(&mount)
        .args(["images", "-q"])
        .output()
        .unwrap();
    assert!(stdout(&images).trim().is_empty());
}
