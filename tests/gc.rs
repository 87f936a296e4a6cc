//! Garbage collection after interruptions: what killed deletions and pulls
//! leave is reclaimed by the next `rmi` or `system prune`, never what a live
//! pull is building, and `system prune` reports what it freed.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;

/// Wait (bounded) until `done` holds.
fn await_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Entries of `snapshots/` other than the lock and empty directories.
fn snapshot_entries(root: &Root) -> Vec<String> {
    list(&root.path().join("snapshots"))
        .into_iter()
        .filter(|n| n != "locks" && n != "empty")
        .collect()
}

/// Bytes of regular files under `dir`.
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() && meta.nlink() == 1 {
                total += meta.len();
            }
        }
    }
    total
}

fn copy_tree(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "cp: {}", stderr(&out));
}

/// The snapshot directory of a pulled single-layer image.
fn snapshot_dir_of(root: &Root, reference: &str) -> (u64, String) {
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    let image = mocker::images::find(&mocker, reference).unwrap().remove(0);
    let chain = image.chain_ids.last().unwrap().clone();
    let record = mocker.snapshots.get(&chain).unwrap().unwrap();
    (record.id, chain.to_string())
}

/// A pulled image removed for real, with copies of its snapshot directory
/// put back as a killed `rmi` would have left them: `keep_meta` decides
/// whether the copy still has the meta.json a deletion removes first.
fn leftovers_of(root: &Root, reference: &str, names: &[(&str, bool)]) -> String {
    let (id, chain) = snapshot_dir_of(root, reference);
    let snapshots = root.path().join("snapshots");
    let saved = tempfile::tempdir().unwrap();
    copy_tree(&snapshots.join(id.to_string()), &saved.path().join("copy"));
    root.ok(&["rmi", reference]);
    assert!(!snapshots.join(id.to_string()).exists());
    for (name, keep_meta) in names {
        let name = name.replace("{id}", &id.to_string());
        copy_tree(&saved.path().join("copy"), &snapshots.join(&name));
        if !keep_meta {
            std::fs::remove_file(snapshots.join(&name).join("meta.json")).unwrap();
        }
    }
    chain
}

fn pulled_root(fake: &FakeRegistry, names: &[&str]) -> (Root, Vec<String>) {
    let root = Root::new();
    let refs: Vec<String> = names
        .iter()
        .map(|name| {
            fake.image(name, "v1", format!("content of {name}").repeat(5000).as_bytes(), None);
            let reference = format!("{}/{name}:v1", fake.addr);
            root.ok(&["pull", "-q", &reference]);
            reference
        })
        .collect();
    (root, refs)
}

#[test]
fn rmi_and_prune_finish_deletions_a_kill_cut_short() {
    for prune in [false, true] {
        let fake = FakeRegistry::start();
        let (root, refs) = pulled_root(&fake, &["keep", "gone", "other"]);
        // What kills of rmi after its index transaction leave: a directory
        // renamed to trash, or (as older versions left it) one still
        // numbered with its meta.json deleted.
        leftovers_of(
            &root,
            &refs[1],
            &[("trash-{id}", true), ("{id}", false), ("900001", false)],
        );
        assert_eq!(snapshot_entries(&root).len(), 2 + 3, "{:?}", snapshot_entries(&root));

        let expected = if prune {
            root.ok(&["system", "prune", "-a", "-f"]);
            Vec::new()
        } else {
            root.ok(&["rmi", &refs[2]]);
            vec![snapshot_dir_of(&root, &refs[0]).0.to_string()]
        };
        assert_eq!(
            snapshot_entries(&root),
            expected,
            "{} left interrupted deletions behind",
            if prune { "prune" } else { "rmi" }
        );
        if !prune {
            root.ok(&["image", "export", "-o", "/dev/null", &refs[0]]);
        }
        root.assert_healthy();
    }
}

#[test]
fn a_retried_rmi_deletes_the_blobs_a_killed_one_left() {
    let fake = FakeRegistry::start();
    let (root, refs) = pulled_root(&fake, &["keep", "gone"]);
    let before: std::collections::HashSet<String> = root.blobs().into_iter().collect();
    let blobs = root.path().join("blobs/sha256");
    let saved = tempfile::tempdir().unwrap();
    for blob in &before {
        std::fs::copy(blobs.join(blob), saved.path().join(blob)).unwrap();
    }
    root.ok(&["rmi", &refs[1]]);
    // A kill between rmi's index commit and its unlinks leaves the image's
    // blobs on disk with nothing naming them: put them back.
    let gone: Vec<String> = before.iter().filter(|b| !blobs.join(b).exists()).cloned().collect();
    assert!(!gone.is_empty());
    for blob in &gone {
        std::fs::copy(saved.path().join(blob), blobs.join(blob)).unwrap();
    }
    // The retry says there is no such image, and finishes the deletion.
    let err = root.fails(&["rmi", &refs[1]]);
    assert!(err.contains("no such image"), "{err}");
    for blob in &gone {
        assert!(!blobs.join(blob).exists(), "the retried rmi left blob {blob}");
    }
    root.assert_healthy();
    root.ok(&["image", "export", "-o", "/dev/null", &refs[0]]);
}

#[test]
fn unrecorded_snapshot_is_adopted_if_needed_and_kept_while_its_chain_is_locked() {
    let fake = FakeRegistry::start();
    let (root, refs) = pulled_root(&fake, &["needed", "locked"]);

    // A pull killed between publishing a snapshot and recording it: an image
    // needs it, so the GC records it instead of deleting it.
    let (needed_id, needed_chain) = snapshot_dir_of(&root, &refs[0]);
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    let chain = mocker::digest::Digest::parse(&needed_chain).unwrap();
    mocker
        .index
        .session(|s| {
            let mut batch = mocker::index::Batch::default();
            batch.del_snapshot(&chain);
            s.apply(&batch)
        })
        .unwrap();

    // A live pull that published a snapshot and is about to record it holds
    // its chain's lock: the GC must leave that directory alone.
    let chain = leftovers_of(&root, &refs[1], &[("{id}", true)]);
    let lock_path = root.path().join("snapshots/locks").join(hex_of(&chain));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let before = snapshot_entries(&root);
    assert_eq!(before.len(), 2, "{before:?}");

    let locked_id = before.iter().find(|n| **n != needed_id.to_string()).unwrap().clone();

    root.ok(&["system", "prune", "-f"]);
    let after = snapshot_entries(&root);
    assert!(
        after.contains(&locked_id),
        "a snapshot being published was swept: {after:?}"
    );
    assert!(
        after.contains(&needed_id.to_string()),
        "a snapshot an image needs was deleted, not adopted: {after:?}"
    );
    assert_eq!(snapshot_dir_of(&root, &refs[0]).0, needed_id);
    root.ok(&["image", "export", "-o", "/dev/null", &refs[0]]);

    drop(lock);
    root.ok(&["system", "prune", "-f"]);
    assert_eq!(snapshot_entries(&root), vec![needed_id.to_string()]);
    root.assert_healthy();
}

#[test]
fn writable_layers_the_index_does_not_know_are_left_to_check_repair() {
    let fake = FakeRegistry::start();
    let (root, refs) = pulled_root(&fake, &["base", "other"]);
    // A container's writable layer whose records an index rebuild lost:
    // only `system check --repair`, which knows containers, decides.
    let upper = root.path().join("snapshots/900002");
    std::fs::create_dir_all(upper.join("fs/etc")).unwrap();
    std::fs::create_dir_all(upper.join("work")).unwrap();
    std::fs::write(upper.join("fs/etc/changed"), b"a container's change").unwrap();
    root.ok(&["rmi", &refs[1]]);
    root.ok(&["system", "prune", "-f"]);
    assert!(upper.join("fs/etc/changed").exists(), "GC deleted a writable layer");
    let out = root.ok(&["system", "check", "--repair"]);
    assert!(out.contains("deleted writable snapshot directory 900002"), "{out}");
    assert!(!upper.exists());
    root.ok(&["image", "export", "-o", "/dev/null", &refs[0]]);
}

/// A pull that stays in its download for a while.
fn slow_pull(root: &Root, fake: &FakeRegistry, name: &str, trickle_ms: u64) -> (Child, String) {
    let seed = name.len() as u32 * 7919 + name.bytes().map(u32::from).sum::<u32>();
    let payload: Vec<u8> = (0..4_000_000u32)
        .map(|i| ((i ^ seed).wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let layer = fake.image(name, "v1", &payload, Some(Duration::from_millis(trickle_ms)));
    let reference = format!("{}/{name}:v1", fake.addr);
    let child = root.spawn_quiet(&["pull", "-q", &reference]);
    // The lease is written before any blob is fetched.
    await_until("the pull's download", || {
        root.ingest().contains(&hex_of(&layer).to_string())
    });
    (child, reference)
}

fn leases(root: &Root) -> Vec<String> {
    list(&root.path().join("leases"))
}

fn lease_records(root: &Root) -> usize {
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    mocker.index.session(|s| s.leases()).unwrap().len()
}

#[test]
fn dead_pull_leases_are_removed_by_gc_and_repair_and_live_ones_kept() {
    let fake = FakeRegistry::start();
    let root = Root::new();
    let gcs: [&[&str]; 3] = [
        &["system", "prune", "-a", "-f"],
        &["rmi", "nothing-here"],
        &["system", "check", "--repair"],
    ];
    for (n, gc) in gcs.into_iter().enumerate() {
        let (mut child, _) = slow_pull(&root, &fake, &format!("killed{n}"), 5);
        child.kill().unwrap();
        assert!(!child.wait().unwrap().success());
        assert_eq!(leases(&root).len(), 1, "the killed pull left no lease to test with");
        assert_eq!(lease_records(&root), 1);
        let _ = root.run(gc);
        assert!(leases(&root).is_empty(), "{gc:?} left dead leases: {:?}", leases(&root));
        assert_eq!(lease_records(&root), 0, "{gc:?} left the record of a dead lease");
    }

    // A live pull's lease survives a GC, and the pull completes.
    let (mut child, reference) = slow_pull(&root, &fake, "live", 40);
    root.ok(&["system", "prune", "-a", "-f"]);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the pull ended before the GC ran: the test lost its point"
    );
    assert_eq!(leases(&root).len(), 1, "GC removed a live pull's lease");
    assert_eq!(lease_records(&root), 1);
    assert!(child.wait().unwrap().success());
    root.ok(&["image", "export", "-o", "/dev/null", &reference]);
    assert!(leases(&root).is_empty());
    root.assert_healthy();
}

/// Bytes from docker's human size (`4.26MB`); three significant digits.
fn parse_human(size: &str) -> f64 {
    let split = size.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let (number, unit) = size.split_at(split);
    let scale = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unit {other}"),
    };
    number.parse::<f64>().unwrap() * scale
}

#[test]
fn system_prune_reports_the_space_it_freed() {
    let fake = FakeRegistry::start();
    let root = Root::new();
    let payload: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    fake.image("big", "v1", &payload, None);
    root.ok(&["pull", "-q", &format!("{}/big:v1", fake.addr)]);
    let blobs: u64 = root.blob_bytes();
    let unpacked = tree_bytes(&root.path().join("snapshots"));
    assert!(blobs > 3_000_000 && unpacked >= 3_000_000, "{blobs} {unpacked}");

    let out = root.ok(&["system", "prune", "-a", "-f"]);
    assert!(root.blobs().is_empty());
    let shown = out
        .lines()
        .find_map(|l| l.strip_prefix("Total reclaimed space: "))
        .unwrap_or_else(|| panic!("{out}"));
    let reclaimed = parse_human(shown.trim());
    let exact = (blobs + unpacked) as f64;
    assert!(
        (reclaimed - exact).abs() <= exact * 0.01,
        "reclaimed {shown}, but {blobs} bytes of blobs and {unpacked} of snapshots were freed"
    );
}
