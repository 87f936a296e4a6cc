//! `mocker pull` against the real loopback registry.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::fake_registry::{Gate, Route};
use common::*;

#[test]
fn pull_stores_verified_blobs_and_prints_the_registry_digest() {
    let root = Root::new();
    let reference = image("busybox:latest");
    let out = root.run(&["pull", &reference]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = format!("sha256:{}", sha256_hex(&registry_manifest(&reference)));
    let stdout = stdout(&out);
    assert!(stdout.contains(&format!("Digest: {expected}")), "{stdout}");
    assert!(stdout.contains("Status: Downloaded newer image for"), "{stdout}");
    assert_eq!(stdout.lines().last(), Some(reference.as_str()));
    for layer in registry_layers(&reference) {
        assert!(
            root.blobs().contains(&hex_of(&layer).to_string()),
            "layer {layer} not stored"
        );
    }
    assert!(
        root.blobs().contains(&hex_of(&expected).to_string()),
        "manifest not stored"
    );
    root.assert_blobs_verified();
    assert!(root.ingest().is_empty(), "ingest left behind: {:?}", root.ingest());
    root.assert_healthy();
}

#[test]
fn repull_downloads_nothing() {
    let root = Root::new();
    let reference = image("multi");
    root.ok(&["pull", &reference]);
    let inode = |name: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(root.path().join("blobs/sha256").join(name))
            .unwrap()
            .ino()
    };
    let before: Vec<(String, u64)> = root.blobs().iter().map(|b| (b.clone(), inode(b))).collect();
    let out = root.run(&["pull", &reference]);
    assert!(out.status.success());
    // docker prints the progress on stdout.
    let progress = stdout(&out);
    let layers = registry_layers(&reference);
    assert_eq!(progress.matches("Already exists").count(), layers.len(), "{progress}");
    assert!(!progress.contains("Download complete"), "{progress}");
    assert!(
        stdout(&out).contains("Status: Image is up to date for"),
        "{}",
        stdout(&out)
    );
    let after: Vec<(String, u64)> = root.blobs().iter().map(|b| (b.clone(), inode(b))).collect();
    assert_eq!(before, after, "blobs were rewritten");
}

#[test]
fn docker_and_oci_forms_of_the_command_both_work() {
    let root = Root::new();
    root.ok(&["image", "pull", "-q", &image("busybox")]);
    let ls = root.ok(&["image", "ls"]);
    assert!(ls.contains("/busybox"), "{ls}");
    root.ok(&["image", "rm", &image("busybox")]);
    assert!(root.blobs().is_empty());
}

#[test]
fn pulls_docker_schema2_zstd_and_uncompressed_images() {
    let root = Root::new();
    for (name, layer_type) in [
        ("busybox-docker", "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        ("busybox-zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("busybox-plain", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let reference = image(name);
        let manifest = json(&registry_manifest(&reference));
        assert_eq!(
            manifest["layers"][0]["mediaType"], layer_type,
            "fixture {name} has the wrong layer type"
        );
        root.ok(&["pull", "-q", &reference]);
        let inspect = json(root.ok(&["image", "inspect", &reference]).as_bytes());
        assert_eq!(inspect[0]["Manifest"]["layers"][0]["mediaType"], layer_type);
    }
    root.assert_blobs_verified();
    root.assert_healthy();
}

#[test]
fn index_resolves_to_host_platform_or_the_one_asked_for() {
    let root = Root::new();
    let reference = image("multiarch");
    let index = registry_manifest(&reference);
    let index_digest = format!("sha256:{}", sha256_hex(&index));
    let out = root.ok(&["pull", &reference]);
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    let inspect = json(root.ok(&["image", "inspect", &reference]).as_bytes());
    assert_eq!(inspect[0]["Architecture"], "amd64");

    root.ok(&["pull", "-q", "--platform", "linux/arm64/v8", &reference]);
    let inspect = json(root.ok(&["image", "inspect", &reference]).as_bytes());
    assert_eq!(inspect[0]["Architecture"], "arm64");
    assert!(inspect[0]["RepoDigests"][0].as_str().unwrap().ends_with(&index_digest));

    let err = root.fails(&["pull", "--platform", "linux/s390x", &reference]);
    assert!(err.contains("no matching manifest for linux/s390x"), "{err}");
    assert!(err.contains("linux/amd64") && err.contains("linux/arm64/v8"), "{err}");
    let err = root.fails(&["pull", "--platform", "linux", &reference]);
    assert!(err.contains("invalid platform"), "{err}");
}

#[test]
fn pull_by_digest_is_listed_untagged() {
    let root = Root::new();
    let digest = format!("sha256:{}", sha256_hex(&registry_manifest(&image("busybox"))));
    let by_digest = format!("{}@{digest}", image("busybox"));
    let out = root.ok(&["pull", &by_digest]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    let ls = root.ok(&["images", "--digests"]);
    let row = ls.lines().find(|l| l.contains("/busybox")).expect("row");
    assert!(row.contains("<none>") && row.contains(&digest), "{ls}");
}

#[test]
fn two_concurrent_pulls_both_succeed_and_store_each_blob_once() {
    let root = Root::new();
    let reference = image("multi");
    let spawn = || {
        root.command()
            .args(["pull", &reference])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let layers = registry_layers(&reference);
    // manifest + config + layers, each exactly once
    assert_eq!(root.blobs().len(), layers.len() + 2, "{:?}", root.blobs());
    root.assert_blobs_verified();
    assert!(root.ingest().is_empty());
    root.assert_healthy();
}

#[test]
fn images_works_while_a_pull_runs() {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("busybox")]);
    let mut pull = root
        .command()
        .args(["pull", "-q", &image("multi")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut listings = 0;
    loop {
        let ls = root.ok(&["images"]);
        assert!(ls.contains("/busybox"), "{ls}");
        listings += 1;
        if pull.try_wait().unwrap().is_some() {
            break;
        }
    }
    assert!(pull.wait().unwrap().success());
    assert!(listings >= 1);
    assert!(root.ok(&["images"]).contains("/multi"));
}

#[test]
fn interrupted_download_resumes_with_a_range_request() {
    let root = Root::new();
    let reference = image("multi");
    let layers = registry_layers(&reference);
    let biggest = layers
        .iter()
        .max_by_key(|l| std::fs::metadata(registry_blob_file(l)).unwrap().len())
        .unwrap();
    let bytes = std::fs::read(registry_blob_file(biggest)).unwrap();
    // What a killed pull leaves: the first part of the blob in ingest/.
    std::fs::create_dir_all(root.path().join("ingest")).unwrap();
    let half = bytes.len() / 2;
    std::fs::write(root.path().join("ingest").join(hex_of(biggest)), &bytes[..half]).unwrap();
    let out = root.run(&["pull", &reference]);
    assert!(out.status.success(), "{}", stderr(&out));
    let progress = stdout(&out);
    assert!(
        progress.contains(&format!("{}: Resuming download at byte {half}", &hex_of(biggest)[..12])),
        "{progress}"
    );
    root.assert_blobs_verified();
    assert!(root.ingest().is_empty());
}

#[test]
fn a_resumed_download_with_bad_partial_bytes_is_fetched_again_whole() {
    let root = Root::new();
    let reference = image("multi");
    let layers = registry_layers(&reference);
    let layer = layers.last().unwrap();
    let bytes = std::fs::read(registry_blob_file(layer)).unwrap();
    std::fs::create_dir_all(root.path().join("ingest")).unwrap();
    let mut garbage = bytes[..bytes.len() / 2].to_vec();
    garbage[0] ^= 0xff;
    std::fs::write(root.path().join("ingest").join(hex_of(layer)), &garbage).unwrap();
    root.ok(&["pull", &reference]);
    root.assert_blobs_verified();
    assert!(root.blobs().contains(&hex_of(layer).to_string()));
}

#[test]
fn ctrl_c_during_a_pull_leaves_nothing_visible_and_the_next_pull_completes() {
    let fake = FakeRegistry::start();
    let layer: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let layer_digest = fake.image("slow", "latest", &layer, Some(Duration::from_millis(40)));
    let root = Root::new();
    let reference = format!("{}/slow:latest", fake.addr);
    let child = root
        .command()
        .args(["pull", &reference])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ingest = root.path().join("ingest").join(hex_of(&layer_digest));
    let start = Instant::now();
    while std::fs::metadata(&ingest).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).lines().last().unwrap().contains("interrupted"),
        "{}",
        stderr(&out)
    );
    assert!(!root.blobs().contains(&hex_of(&layer_digest).to_string()));
    assert!(root.ok(&["images", "-q"]).trim().is_empty());

    let out = root.run(&["pull", &reference]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Resuming download at byte"), "{}", stdout(&out));
    root.assert_blobs_verified();
    root.assert_healthy();
}

#[test]
fn anonymous_bearer_token_flow_like_docker_hub() {
    let fake = FakeRegistry::start();
    fake.require_bearer("anon-token-123");
    let layer = b"not really a tar, but the pull only verifies bytes".to_vec();
    let layer_digest = fake.image("library/tokened", "latest", &layer, None);
    let root = Root::new();
    root.ok(&["pull", &format!("{}/library/tokened", fake.addr)]);
    assert!(root.blobs().contains(&hex_of(&layer_digest).to_string()));
    root.assert_blobs_verified();
}

/// Numbered (published) and `tmp-` (being built) snapshot directories.
fn snapshot_dirs(root: &Root) -> (Vec<String>, Vec<String>) {
    let names = list(&root.path().join("snapshots"));
    let published = names.iter().filter(|n| n.parse::<u64>().is_ok()).cloned().collect();
    let building = names.into_iter().filter(|n| n.starts_with("tmp-")).collect();
    (published, building)
}

#[test]
fn a_layer_unpacks_while_it_downloads_and_appears_only_once_verified() {
    let (root, fake) = (Root::new(), FakeRegistry::start());
    let filler = vec![7u8; 4 << 20];
    let layer = tar_layer(&[("first", b"here early"), ("filler", &filler)]);
    let digest = fake.image_with_layer("held", "latest", &layer, None);
    // The registry sends 64 KiB (all of `first`), then waits.
    let gate = Gate::default();
    let mut route = Route::ok("application/octet-stream", layer.clone());
    route.hold = Some((64 << 10, gate.clone()));
    fake.route(&format!("/v2/held/blobs/{digest}"), route);
    let reference = format!("{}/held:latest", fake.addr);
    let mut pull = root.spawn_quiet(&["pull", "-q", &reference]);

    let snapshots = root.path().join("snapshots");
    wait_until("the first file unpacked before the blob is complete", || {
        snapshot_dirs(&root)
            .1
            .iter()
            .any(|d| snapshots.join(d).join("fs/first").exists())
    });
    // Unverified: neither the blob nor the snapshot is visible yet.
    assert!(!root.blobs().contains(&hex_of(&digest).to_string()));
    assert!(snapshot_dirs(&root).0.is_empty(), "{:?}", snapshot_dirs(&root));
    gate.open();
    assert!(pull.wait().unwrap().success());

    let (published, building) = snapshot_dirs(&root);
    assert_eq!((published.len(), building.len()), (1, 0), "{published:?} {building:?}");
    let fs = snapshots.join(&published[0]).join("fs");
    assert_eq!(std::fs::read(fs.join("first")).unwrap(), b"here early");
    assert_eq!(std::fs::metadata(fs.join("filler")).unwrap().len(), filler.len() as u64);
    root.assert_blobs_verified();
    root.assert_healthy();
}

#[test]
fn a_streamed_layer_whose_blob_digest_is_wrong_leaves_nothing() {
    let (root, fake) = (Root::new(), FakeRegistry::start());
    // The bytes served unpack cleanly to the declared diff_id, but they are
    // not the blob the manifest names (same size, other digest): only the
    // blob's digest check can catch it, after the unpack finished.
    let layer = tar_layer(&[("payload", &vec![1u8; 1 << 20])]);
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let mut named = layer.clone();
    let last = named.len() - 1;
    named[last] ^= 1;
    let media = "application/vnd.oci.image.layer.v1.tar".to_string();
    let digest = fake
        .image_layers("liar", "latest", &[(named, diff_id, media)], None)
        .remove(0);
    fake.route(
        &format!("/v2/liar/blobs/{digest}"),
        Route::ok("application/octet-stream", layer),
    );
    let err = root.fails(&["pull", "-q", &format!("{}/liar:latest", fake.addr)]);
    assert!(err.contains(&digest), "{err}");
    assert_eq!(snapshot_dirs(&root), (vec![], vec![]));
    assert!(!root.blobs().contains(&hex_of(&digest).to_string()));
    assert!(root.ingest().is_empty(), "{:?}", root.ingest());
    assert!(root.ok(&["images", "-q"]).trim().is_empty());
}

#[test]
fn a_pull_makes_its_snapshots_durable_with_one_syncfs() {
    let root = Root::new();
    let reference = image("multi");
    assert!(
        registry_layers(&reference).len() >= 2,
        "the test needs a multi-layer image"
    );
    let trace = root.path().join("syncfs.trace");
    let mocker = root.command();
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=syncfs", "-o"])
        .arg(&trace)
        .arg(mocker.get_program())
        .args(mocker.get_args())
        .envs(mocker.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .args(["pull", "-q", &reference])
        .output()
        .expect("strace (installed by scripts/test-env.sh)");
    assert!(out.status.success(), "{}", stderr(&out));
    let calls = std::fs::read_to_string(&trace).unwrap();
    let syncs = calls.lines().filter(|l| l.contains("syncfs(")).count();
    // Every layer's snapshot in one sync, not one sync each.
    assert_eq!(syncs, 1, "{calls}");
    root.assert_healthy();
}
