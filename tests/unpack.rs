//! Layer unpacking and the overlayfs snapshotter: what a container sees must
//! equal what `umoci unpack` produces for the same image, entry for entry.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::*;

/// Every entry under `root` with its type, permissions, owner, times,
/// content hash, link target, device number, hardlink group and xattrs.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let xattrs = xattrs_of(root);
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("symlink -> {}", std::fs::read_link(&path).unwrap().display())
            } else if ft.is_file() {
                let group = inodes
                    .entry((md.dev(), md.ino()))
                    .or_insert_with(|| rel.clone())
                    .clone();
                let hash = sha256_hex(&std::fs::read(&path).unwrap());
                format!(
                    "file size={} sha256={} nlink={} first={group}",
                    md.len(),
                    &hash[..16],
                    md.nlink()
                )
            } else if ft.is_char_device() {
                format!("char {}", md.rdev())
            } else if ft.is_block_device() {
                format!("block {}", md.rdev())
            } else if ft.is_fifo() {
                "fifo".into()
            } else {
                "socket".into()
            };
            // A symlink's own mode and times are not meaningful to compare.
            let common = if ft.is_symlink() {
                format!("uid={} gid={}", md.uid(), md.gid())
            } else {
                format!(
                    "mode={:o} uid={} gid={} mtime={}.{:09}",
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid(),
                    md.mtime(),
                    md.mtime_nsec()
                )
            };
            let x = xattrs.get(&rel).cloned().unwrap_or_default();
            out.insert(rel, format!("{kind} {common} {x}").trim().to_string());
        }
    }
    out
}

/// `getfattr -R` over the tree: path → "name=value …".
fn xattrs_of(root: &Path) -> BTreeMap<String, String> {
    let out = Command::new("getfattr")
        .args(["-R", "-h", "-d", "-m", "-", "--absolute-names", "-e", "hex"])
        .arg(root)
        .output()
        .expect("getfattr (Debian package attr)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(file) = line.strip_prefix("# file: ") {
            current = Path::new(file)
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
        } else if !line.is_empty() && !current.is_empty() {
            let entry = map.entry(current.clone()).or_default();
            entry.push_str(line);
            entry.push(' ');
        }
    }
    map
}

fn umoci_rootfs(tag: &str) -> tempfile::TempDir {
    let bundle = tempfile::tempdir().unwrap();
    let dir = bundle.path().join("b");
    let status = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:{tag}", env("MOCKER_TEST_OCI_LAYOUT"))])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("umoci");
    assert!(status.success(), "umoci unpack {tag}");
    bundle
}

fn assert_same_tree(ours: &Path, theirs: &Path, what: &str) {
    let (a, b) = (listing(ours), listing(theirs));
    let mut diffs = Vec::new();
    for key in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
        if a.get(key) != b.get(key) {
            diffs.push(format!("{key}\n  mocker: {:?}\n  umoci:  {:?}", a.get(key), b.get(key)));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} entries differ from umoci:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert!(a.len() > 10, "{what}: suspiciously small tree");
}

#[test]
fn rootfs_matches_umoci_for_every_test_image() {
    let root = Root::new();
    let cases = [
        ("busybox", "busybox"),
        ("busybox-docker", "busybox"),
        ("busybox-zstd", "busybox"),
        ("busybox-plain", "busybox"),
        ("multiarch", "busybox"),
        ("multi", "multi"),
        ("shared-a", "shared-a"),
        ("everything", "everything"),
        ("opaque", "opaque"),
        ("caps", "caps"),
    ];
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    for (remote, tag) in cases {
        let reference = image(remote);
        root.ok(&["pull", "-q", &reference]);
        let rootfs = mocker::rootfs::mount_image(&mocker, &reference).unwrap();
        let theirs = umoci_rootfs(tag);
        assert_same_tree(rootfs.path(), &theirs.path().join("b/rootfs"), remote);
        if remote == "caps" {
            // Its PAX record's value holds 0x0a: read by length, not by line.
            let caps = xattrs_of(rootfs.path()).remove("bin/ping").unwrap_or_default();
            assert!(
                caps.contains("security.capability=0x010000020a20"),
                "bin/ping lost its capability: {caps:?}"
            );
        }
        if remote == "opaque" {
            // The opaque directory hides the lower layer's d/a and d/b.
            let names = list(&rootfs.path().join("d"));
            assert_eq!(names, vec!["c".to_string()], "opaque directory leaked lower entries");
            assert!(rootfs.path().join("keep").is_file());
        }
    }
}

#[test]
fn images_with_60_and_200_layers_mount() {
    let root = Root::new();
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    for count in [60usize, 200] {
        let reference = image(&format!("layers-{count}"));
        root.ok(&["pull", "-q", &reference]);
        let rootfs = mocker::rootfs::mount_image(&mocker, &reference).unwrap();
        let files = std::fs::read_dir(rootfs.path().join("layers")).unwrap().count();
        assert_eq!(files, count + 1, "every layer's file (and `top`) is visible");
        let top = std::fs::read_to_string(rootfs.path().join("layers/top")).unwrap();
        assert_eq!(top, format!("top {}\n", count - 1), "the topmost layer wins");
        // Absolute lower paths would not fit in the one page of mount data.
        let absolute: usize = (0..count)
            .map(|_| root.path().join("snapshots/000/fs:").as_os_str().len())
            .sum();
        if count == 200 {
            assert!(
                absolute > 4096,
                "the 200-layer case must exceed the absolute-path limit ({absolute})"
            );
        }
        drop(rootfs);
        let theirs = umoci_rootfs(&format!("layers-{count}"));
        let rootfs = mocker::rootfs::mount_image(&mocker, &reference).unwrap();
        assert_same_tree(rootfs.path(), &theirs.path().join("b/rootfs"), &reference);
    }
}

#[test]
fn shared_base_is_unpacked_once_and_survives_rmi() {
    let root = Root::new();
    let (a, b) = (image("shared-a"), image("shared-b"));
    root.ok(&["pull", "-q", &a]);
    let after_a: Vec<String> = numbered(&root);
    root.ok(&["pull", "-q", &b]);
    let after_b: Vec<String> = numbered(&root);
    assert_eq!(after_a.len(), 2, "{after_a:?}");
    assert_eq!(after_b.len(), 3, "the shared base was unpacked again: {after_b:?}");
    let before = export_listing(&root, &b);
    assert!(before.len() > 10, "{before:?}");
    root.ok(&["rmi", &a]);
    assert_eq!(
        numbered(&root).len(),
        2,
        "a's own snapshot should be gone, base and b's kept"
    );
    assert!(
        export_listing(&root, &b) == before,
        "b's export changed when a was removed"
    );
    root.assert_healthy();
}

fn numbered(root: &Root) -> Vec<String> {
    list(&root.path().join("snapshots"))
        .into_iter()
        .filter(|n| n.parse::<u64>().is_ok())
        .collect()
}

/// `image export` as (path, type, mode, owner, mtime, size, content hash)
/// lines; the root entry is left out (it is the fresh upper directory).
fn export_listing(root: &Root, reference: &str) -> Vec<String> {
    let out = root.command().args(["image", "export", reference]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut lines = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        if path == "./" || path == "." {
            continue;
        }
        let h = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        lines.push(format!(
            "{path} {:?} {:o} {}:{} {} {} {}",
            h.entry_type(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mtime().unwrap(),
            data.len(),
            sha256_hex(&data)
        ));
    }
    lines.sort();
    lines
}
