//! kill -9 of a pull at many points: afterwards nothing half-made is visible,
//! the next pull completes, and the store checks clean.

mod common;

use std::time::Duration;

use common::*;

/// Three layers of incompressible files, so that download and unpack both
/// take long enough to be interrupted.
fn layers() -> Vec<(Vec<u8>, String, String)> {
    (0..3u32)
        .map(|l| {
            let files: Vec<(String, Vec<u8>)> = (0..8u32)
                .map(|f| {
                    let data = (0..600_000u32)
                        .map(|i| ((i ^ (f << 8) ^ (l << 16)).wrapping_mul(2654435761) >> 11) as u8)
                        .collect();
                    (format!("layer{l}/file{f}"), data)
                })
                .collect();
            plain_layer(&files)
        })
        .collect()
}

#[test]
fn kill_9_at_any_point_of_a_pull_is_recovered_by_the_next_pull() {
    let fake = FakeRegistry::start();
    fake.image_layers("crashy", "latest", &layers(), Some(Duration::from_millis(2)));
    let reference = format!("{}/crashy:latest", fake.addr);
    let mut killed_mid_way = 0;
    for delay_ms in [5u64, 20, 40, 70, 100, 140, 190, 250, 320, 400, 500, 650] {
        let root = Root::new();
        let mut child = root.spawn_quiet(&["pull", "-q", &reference]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let finished = status.success();
        if !finished {
            killed_mid_way += 1;
        }

        // Nothing half-made is visible: either no image, or the whole image.
        let ids = root.ok(&["images", "-q"]);
        assert!(ids.lines().count() <= 1);
        if !ids.trim().is_empty() {
            root.ok(&["image", "export", "-o", "/dev/null", &reference]);
        }
        root.assert_blobs_verified();

        // The next pull completes, and leaves a store with nothing orphaned.
        let out = root.run(&["pull", &reference]);
        assert!(out.status.success(), "after a kill at {delay_ms} ms: {}", stderr(&out));
        let snapshots: Vec<String> = list(&root.path().join("snapshots"))
            .into_iter()
            .filter(|n| n.starts_with("tmp-"))
            .collect();
        assert!(
            snapshots.is_empty(),
            "partial unpacks left after a kill at {delay_ms} ms: {snapshots:?}"
        );
        let check = root.run(&["system", "check"]);
        assert!(
            check.status.success(),
            "after a kill at {delay_ms} ms: {}",
            stdout(&check)
        );
        let listing = root.command().args(["image", "export", &reference]).output().unwrap();
        let mut archive = tar::Archive::new(&listing.stdout[..]);
        let files = archive
            .entries()
            .unwrap()
            .filter(|e| e.as_ref().unwrap().header().entry_type().is_file())
            .count();
        assert_eq!(files, 24, "after a kill at {delay_ms} ms the image is incomplete");
    }
    assert!(
        killed_mid_way >= 6,
        "too few kills landed during the pull ({killed_mid_way}); the test lost its point"
    );
}

/// Two layers of many small files, so that deleting their snapshots takes
/// long enough to be interrupted.
fn many_files() -> Vec<(Vec<u8>, String, String)> {
    (0..2u32)
        .map(|l| {
            let files: Vec<(String, Vec<u8>)> = (0..15_000u32)
                .map(|f| (format!("l{l}/d{}/f{f}", f % 100), format!("{l}/{f}").into_bytes()))
                .collect();
            plain_layer(&files)
        })
        .collect()
}

/// A snapshot directory is being deleted: renamed to trash, or numbered
/// without its meta.json (which a deletion removes first).
fn deletion_under_way(root: &Root) -> bool {
    let snapshots = root.path().join("snapshots");
    list(&snapshots)
        .iter()
        .any(|n| n.starts_with("trash-") || (n.parse::<u64>().is_ok() && !snapshots.join(n).join("meta.json").exists()))
}

#[test]
fn kill_9_during_rmi_or_prune_is_finished_by_the_next_gc() {
    let fake = FakeRegistry::start();
    fake.image_layers("many", "latest", &many_files(), None);
    let reference = format!("{}/many:latest", fake.addr);
    for (gc, retry) in [
        (vec!["rmi", reference.as_str()], vec!["rmi", reference.as_str()]),
        (vec!["system", "prune", "-a", "-f"], vec!["system", "prune", "-a", "-f"]),
    ] {
        let root = Root::new();
        root.ok(&["pull", "-q", &reference]);
        let mut child = root.spawn_quiet(&gc);
        let start = std::time::Instant::now();
        while !deletion_under_way(&root) && child.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{gc:?} never started deleting"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.kill(); // SIGKILL
        assert!(!child.wait().unwrap().success(), "{gc:?} finished before the kill");
        assert!(
            deletion_under_way(&root),
            "the kill of {gc:?} left no deletion to finish"
        );

        // The retry finds the image gone (rmi says so) but finishes the job.
        let _ = root.run(&retry);
        let left: Vec<String> = list(&root.path().join("snapshots"))
            .into_iter()
            .filter(|n| n != "locks" && n != "empty")
            .collect();
        assert!(left.is_empty(), "{retry:?} after a killed {gc:?} left {left:?}");
        assert!(root.blobs().is_empty(), "{:?}", root.blobs());
        root.assert_healthy();
    }
}
