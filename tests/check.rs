//! `system check` and `--repair`: the blobs are the truth, the index is rebuilt from them.

mod common;

use common::*;

#[test]
fn healthy_store_passes() {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("multi")]);
    root.ok(&["pull", "-q", &image("multiarch")]);
    let out = root.ok(&["system", "check"]);
    assert!(out.contains("no problems found"), "{out}");
}

#[test]
fn corrupt_blob_is_found_repaired_and_restored_by_a_pull() {
    let root = Root::new();
    let reference = image("multi");
    root.ok(&["pull", "-q", &reference]);
    let layer = registry_layers(&reference).pop().unwrap();
    let path = root.path().join("blobs/sha256").join(hex_of(&layer));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();

    let out = root.run(&["system", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&format!("blob {layer} is corrupt")),
        "{}",
        stdout(&out)
    );

    let out = root.ok(&["system", "check", "--repair"]);
    assert!(out.contains(&format!("deleted corrupt blob {layer}")), "{out}");
    assert!(!root.blobs().contains(&hex_of(&layer).to_string()));
    // Tags survive; the pull fetches exactly the missing layer.
    assert!(root.ok(&["images"]).contains("/multi"));
    let out = root.run(&["pull", &reference]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).matches("Download complete").count(), 1, "{}", stdout(&out));
    root.assert_blobs_verified();
    root.assert_healthy();
}

#[test]
fn deleted_index_is_rebuilt_from_blobs_and_lost_tags_are_reported() {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("shared-a")]);
    root.ok(&["pull", "-q", &image("multiarch")]);
    let ids_before = root.ok(&["images", "-q"]);
    std::fs::remove_dir_all(root.path().join("index")).unwrap();
    assert!(root.ok(&["images", "-q"]).trim().is_empty());

    let out = root.run(&["system", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("is on disk but not in the index"),
        "{}",
        stdout(&out)
    );

    let out = root.ok(&["system", "check", "--repair"]);
    assert_eq!(out.matches("restored image").count(), 2, "{out}");
    let mut before: Vec<&str> = ids_before.lines().collect();
    let after_out = root.ok(&["images", "-q"]);
    let mut after: Vec<&str> = after_out.lines().collect();
    before.sort();
    after.sort();
    assert_eq!(before, after);
    assert!(root.ok(&["images"]).contains("<none>"));
    root.assert_healthy();
    // The multi-platform image keeps its repo digest (from the index blob on disk).
    let index_digest = format!("sha256:{}", sha256_hex(&registry_manifest(&image("multiarch"))));
    let inspect = root.ok(&["image", "inspect", &after.join(" ")[..12]]);
    let restored_with_index = after.iter().any(|id| {
        let doc = json(root.ok(&["image", "inspect", id]).as_bytes());
        doc[0]["Descriptor"]["digest"].is_string() && root.ok(&["tag", id, "probe:x"]).is_empty() && {
            let d = root.ok(&["images", "--digests", "probe"]);
            root.ok(&["rmi", "probe:x"]);
            d.contains(&index_digest)
        }
    });
    assert!(restored_with_index, "the index digest was not restored: {inspect}");
}

#[test]
fn unreadable_index_is_set_aside_and_rebuilt() {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("busybox")]);
    let db = root.path().join("index/db");
    std::fs::write(&db, b"garbage that is not a sled log").unwrap();
    let err = root.fails(&["images"]);
    assert!(
        err.contains("cannot be opened") && err.contains("system check --repair"),
        "{err}"
    );
    let out = root.ok(&["system", "check", "--repair"]);
    assert!(
        out.contains("moved the unreadable index") && out.contains("lost: all tags"),
        "{out}"
    );
    assert_eq!(root.ok(&["images", "-q"]).lines().count(), 1);
    root.assert_healthy();
}
