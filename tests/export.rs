//! `image export` and `export`: the tar must rebuild the tree it was made
//! from — with GNU tar, with umoci and with mocker itself — entry for entry:
//! hard-link groups, times before 1970, past 2242 and with nanoseconds,
//! xattrs (security.capability too), owners small and large, special modes,
//! devices, fifos, symlinks, long names and targets, deep paths. Whiteouts
//! the merged tree hides must neither fail the export nor appear in it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::*;
use tar::EntryType;

/// `setcap cap_net_raw+ep`: VFS_CAP_REVISION_2, effective, permitted bit 13.
/// (No 0x0a byte: the unpacker's PAX reader still splits records on it.)
const CAP_NET_RAW: [u8; 20] = [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// 2500-01-01: past what ustar's 11 octal digits hold (ext4 keeps 2446 of it).
const YEAR_2500: i64 = 16_725_225_600;
const BIG_FILE: usize = 1 << 20;

/// A tar written header by header, with the PAX records a test wants.
#[derive(Default)]
struct Layer(Vec<u8>);

struct E<'a> {
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    link: &'a str,
    dev: (u32, u32),
    pax: Vec<(&'a str, Vec<u8>)>,
}

fn e(kind: EntryType, mode: u32) -> E<'static> {
    E {
        kind,
        mode,
        uid: 0,
        gid: 0,
        link: "",
        dev: (0, 0),
        pax: Vec::new(),
    }
}

impl Layer {
    fn add(&mut self, name: &str, entry: E, data: &[u8]) -> &mut Self {
        let mut pax = entry.pax;
        let mut h = tar::Header::new_ustar();
        if name.len() > 100 {
            pax.push(("path", name.as_bytes().to_vec()));
        } else {
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        }
        if entry.link.len() > 100 {
            pax.push(("linkpath", entry.link.as_bytes().to_vec()));
        } else {
            h.as_old_mut().linkname[..entry.link.len()].copy_from_slice(entry.link.as_bytes());
        }
        for (key, value) in [("uid", entry.uid), ("gid", entry.gid)] {
            if value > 0o7777777 {
                pax.push((key, value.to_string().into_bytes()));
            }
        }
        if !pax.is_empty() {
            self.pax(&pax);
        }
        h.set_entry_type(entry.kind);
        h.set_mode(entry.mode);
        h.set_uid(if entry.uid > 0o7777777 { 0 } else { entry.uid });
        h.set_gid(if entry.gid > 0o7777777 { 0 } else { entry.gid });
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        h.set_device_major(entry.dev.0).unwrap();
        h.set_device_minor(entry.dev.1).unwrap();
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.data(data);
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.add(name, e(EntryType::Regular, 0o644), data)
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.add(name, e(EntryType::Directory, 0o755), b"")
    }

    /// A 0/0 character device under an ordinary name: overlayfs' whiteout.
    fn whiteout(&mut self, name: &str) -> &mut Self {
        self.add(name, e(EntryType::Char, 0), b"")
    }

    fn pax(&mut self, records: &[(&str, Vec<u8>)]) {
        let body = pax_records(records.iter().map(|(k, v)| (*k, v.as_slice())));
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..3].copy_from_slice(b"pax");
        h.set_entry_type(EntryType::XHeader);
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.data(&body);
    }

    fn data(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
        self.0.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
    }

    fn layer(&self) -> (Vec<u8>, String, String) {
        let mut bytes = self.0.clone();
        bytes.extend(std::iter::repeat_n(0u8, 1024));
        let diff_id = format!("sha256:{}", sha256_hex(&bytes));
        (bytes, diff_id, "application/vnd.oci.image.layer.v1.tar".to_string())
    }
}

fn with_time(kind: EntryType, mode: u32, mtime: &str) -> E<'static> {
    E {
        pax: vec![("mtime", mtime.as_bytes().to_vec())],
        ..e(kind, mode)
    }
}

fn owned(mode: u32, uid: u64, gid: u64) -> E<'static> {
    E {
        uid,
        gid,
        ..e(EntryType::Regular, mode)
    }
}

/// The lower layer: what the upper one hides, and plain content.
fn lower_layer() -> Layer {
    let mut l = Layer::default();
    l.file("topfile", b"top\n").dir("lower").file("lower/keep", b"keep\n");
    l.file("lower/gone", b"hidden by the upper layer\n");
    l.dir("opq").file("opq/old", b"hidden by the opaque marker\n");
    l
}

/// The upper layer: every kind of entry export must keep.
fn content_layer() -> Layer {
    let mut l = Layer::default();
    let big: Vec<u8> = (0..BIG_FILE).map(|i| (i * 7 % 251) as u8).collect();
    l.whiteout("lower/gone")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"new\n");
    // A directory only this layer has: overlayfs lists its whiteout in readdir.
    l.dir("lonely")
        .whiteout("lonely/nothing-below")
        .file("lonely/real", b"real\n");
    l.dir("hl").dir("other").file("hl/a", &big);
    l.add(
        "hl/b",
        E {
            link: "hl/a",
            ..e(EntryType::Link, 0o644)
        },
        b"",
    );
    l.add(
        "other/c",
        E {
            link: "hl/a",
            ..e(EntryType::Link, 0o644)
        },
        b"",
    );
    l.dir("times")
        .add("times/old", with_time(EntryType::Regular, 0o644, "-86400"), b"old\n");
    l.add(
        "times/frac",
        with_time(EntryType::Regular, 0o644, "1700000000.123456789"),
        b"f\n",
    );
    l.add(
        "times/future",
        with_time(EntryType::Regular, 0o644, &YEAR_2500.to_string()),
        b"f\n",
    );
    l.add("times/dir", with_time(EntryType::Directory, 0o755, "-1.5"), b"");
    let cap = vec![("SCHILY.xattr.security.capability", CAP_NET_RAW.to_vec())];
    l.dir("caps").add(
        "caps/ping",
        E {
            pax: cap,
            ..e(EntryType::Regular, 0o755)
        },
        b"ping",
    );
    let user = vec![("SCHILY.xattr.user.x", b"hello world".to_vec())];
    l.add(
        "caps/user",
        E {
            pax: user.clone(),
            ..e(EntryType::Regular, 0o644)
        },
        b"u",
    );
    l.add(
        "caps/dir",
        E {
            pax: user,
            ..e(EntryType::Directory, 0o755)
        },
        b"",
    );
    l.dir("modes").add("modes/suid", e(EntryType::Regular, 0o4755), b"s");
    l.add("modes/sgid", e(EntryType::Regular, 0o2711), b"g");
    l.add("modes/sticky", e(EntryType::Directory, 0o1777), b"");
    l.dir("owners").add("owners/small", owned(0o640, 1000, 2000), b"o");
    l.add("owners/big", owned(0o600, 70000, 70001), b"o");
    l.add("owners/huge", owned(0o600, 3_000_000, 3_000_001), b"o");
    l.dir("dev").add(
        "dev/null",
        E {
            dev: (1, 3),
            ..e(EntryType::Char, 0o666)
        },
        b"",
    );
    l.add(
        "dev/loop0",
        E {
            dev: (7, 0),
            ..e(EntryType::Block, 0o660)
        },
        b"",
    );
    l.add("dev/fifo", e(EntryType::Fifo, 0o600), b"");
    let long_target = format!("/{}", "target/".repeat(20));
    l.dir("links").add(
        "links/abs",
        E {
            link: "/etc/passwd",
            ..e(EntryType::Symlink, 0o777)
        },
        b"",
    );
    l.add(
        "links/rel",
        E {
            link: "../hl/a",
            ..e(EntryType::Symlink, 0o777)
        },
        b"",
    );
    l.add(
        "links/long",
        E {
            link: &long_target,
            ..e(EntryType::Symlink, 0o777)
        },
        b"",
    );
    l.dir("long").file(&format!("long/{}", "n".repeat(150)), b"long name\n");
    l.file(&format!("deep/{}file", "d/".repeat(60)), b"deep\n");
    l
}

/// A root with the two-layer test image pulled; its reference.
fn pulled(root: &Root, fake: &FakeRegistry) -> String {
    fake.image_layers("exp", "latest", &[lower_layer().layer(), content_layer().layer()], None);
    let reference = format!("{}/exp:latest", fake.addr);
    root.ok(&["pull", "-q", &reference]);
    reference
}

fn export(root: &Root, args: &[&str]) -> Vec<u8> {
    let out = root.command().args(args).output().unwrap();
    assert!(out.status.success(), "mocker {args:?}: {}", stderr(&out));
    out.stdout
}

/// `tar -tvf` must read it without a word on stderr.
fn assert_gnu_tar_lists(tar: &[u8]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), tar).unwrap();
    let out = Command::new("tar").arg("-tvf").arg(file.path()).output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "tar -tvf: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// GNU tar's extraction, as root, with owners, modes and every xattr.
fn gnu_extract(tar: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.tar");
    std::fs::write(&file, tar).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--warning=no-timestamp", "-xpf"])
        .arg(&file)
        .arg("-C")
        .arg(&tree)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "tar -x: {}",
        stderr(&out)
    );
    std::fs::remove_file(file).unwrap();
    dir
}

/// Every entry under `root`: type, mode, owner, mtime (s and ns), size,
/// content hash, link target, device, hard-link group and xattrs. Names
/// the directory lists but a lookup does not find (whiteouts) are left out.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // Hard-link groups by inode, named by their first path in sorted order.
    let mut inodes: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if md.is_dir() {
                stack.push(path.clone());
            } else if md.nlink() > 1 {
                inodes.insert(rel.clone(), (md.dev(), md.ino(), md.nlink()));
            }
            out.insert(rel, describe(&path, &md));
        }
    }
    let mut first: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for (rel, (dev, ino, _)) in &inodes {
        first.entry((*dev, *ino)).or_insert_with(|| rel.clone());
    }
    for (rel, (dev, ino, nlink)) in inodes {
        let line = out.get_mut(&rel).unwrap();
        *line = format!("{line} nlink={nlink} first={}", first[&(dev, ino)]);
    }
    out
}

fn describe(path: &Path, md: &std::fs::Metadata) -> String {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        "dir".to_string()
    } else if ft.is_symlink() {
        format!("symlink -> {}", std::fs::read_link(path).unwrap().display())
    } else if ft.is_file() {
        let hash = sha256_hex(&std::fs::read(path).unwrap());
        format!("file size={} sha256={}", md.len(), &hash[..16])
    } else if ft.is_char_device() {
        format!("char {}", md.rdev())
    } else if ft.is_block_device() {
        format!("block {}", md.rdev())
    } else if ft.is_fifo() {
        "fifo".into()
    } else {
        "socket".into()
    };
    let mode = if ft.is_symlink() { 0 } else { md.mode() & 0o7777 };
    let line = format!(
        "{kind} mode={mode:o} uid={} gid={} mtime={}.{:09} {}",
        md.uid(),
        md.gid(),
        md.mtime(),
        md.mtime_nsec(),
        xattrs(path)
    );
    line.trim().to_string()
}

/// `name=hex` of every xattr of `path` (not following it).
fn xattrs(path: &Path) -> String {
    let out = Command::new("getfattr")
        .args(["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names"])
        .arg(path)
        .output()
        .expect("getfattr (Debian package attr)");
    let text = stdout(&out);
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    lines.sort();
    lines.join(" ")
}

fn assert_same_tree(expected: &BTreeMap<String, String>, actual: &Path, what: &str) {
    assert_same_listing(expected, &listing(actual), what);
}

fn assert_same_listing(expected: &BTreeMap<String, String>, actual: &BTreeMap<String, String>, what: &str) {
    let keys: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| expected.get(*k) != actual.get(*k))
        .map(|k| format!("{k}\n  image:  {:?}\n  {what}: {:?}", expected.get(k), actual.get(k)))
        .collect();
    assert!(
        diffs.is_empty(),
        "{what}: {} entries differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// The image's merged tree, checked against what the layers say so that
/// the comparisons below are not vacuous.
fn expected_tree(root: &Root, reference: &str) -> BTreeMap<String, String> {
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    let rootfs = mocker::rootfs::mount_image(&mocker, reference).unwrap();
    let tree = listing(rootfs.path());
    let has = |path: &str, part: &str| {
        let line = tree
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from the image: {tree:#?}"));
        assert!(line.contains(part), "{path}: {line:?} lacks {part:?}");
    };
    for name in ["lower/gone", "opq/old", "lonely/nothing-below"] {
        assert!(!tree.contains_key(name), "{name} should be hidden");
    }
    has("hl/a", "nlink=3 first=hl/a");
    has("hl/b", "nlink=3 first=hl/a");
    has("other/c", "nlink=3 first=hl/a");
    has("times/old", "mtime=-86400.000000000");
    has("times/frac", "mtime=1700000000.123456789");
    has("times/dir", "mtime=-2.500000000");
    has("caps/ping", "security.capability=0x0100000200200000");
    has("caps/user", "user.x=0x68656c6c6f20776f726c64");
    has("caps/dir", "user.x=");
    has("modes/suid", "mode=4755");
    has("modes/sticky", "mode=1777");
    has("owners/huge", "uid=3000000 gid=3000001");
    has("dev/loop0", "block 1792");
    has("links/long", "symlink -> /target/target/");
    let future = tree["times/future"].split("mtime=").nth(1).unwrap();
    let secs: i64 = future.split('.').next().unwrap().parse().unwrap();
    assert!(secs > 0o77777777777, "far-future time came out as {secs}");
    tree
}

#[test]
fn image_export_is_rebuilt_by_gnu_tar() {
    let (root, fake) = (Root::new(), FakeRegistry::start());
    let reference = pulled(&root, &fake);
    let expected = expected_tree(&root, &reference);
    let tar = export(&root, &["image", "export", &reference]);
    let listed = assert_gnu_tar_lists(&tar);
    assert!(listed.contains("hl/b link to hl/a"), "{listed}");
    let extracted = gnu_extract(&tar);
    assert_same_tree(&expected, &extracted.path().join("tree"), "GNU tar");
    // One copy of the 1 MiB file, not three.
    assert!(
        tar.len() < 2 * BIG_FILE,
        "export of {} bytes duplicates hard links",
        tar.len()
    );
}

#[test]
fn image_export_round_trips_through_mocker_and_umoci() {
    let (root, fake) = (Root::new(), FakeRegistry::start());
    let reference = pulled(&root, &fake);
    let expected = expected_tree(&root, &reference);
    let tar = export(&root, &["image", "export", &reference]);

    let again = format!("{}/again:latest", fake.addr);
    fake.image_with_layer("again", "latest", &tar, None);
    root.ok(&["pull", "-q", &again]);
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    let rootfs = mocker::rootfs::mount_image(&mocker, &again).unwrap();
    assert_same_tree(&expected, rootfs.path(), "mocker");

    let bundle = umoci_unpack(&tar);
    let mut theirs = listing(&bundle.path().join("b/rootfs"));
    // umoci 0.4.7 turns every time past 2262 (Go's UnixNano range) into
    // -2^31, its own repacked layers' too: that one mtime is not compared.
    let mut expected = expected.clone();
    for tree in [&mut expected, &mut theirs] {
        let line = tree.get_mut("times/future").unwrap();
        let (head, tail) = line.split_once(" mtime=").unwrap();
        *line = format!("{head} {}", tail.split_once(' ').map_or("", |(_, rest)| rest));
    }
    assert_same_listing(&expected, &theirs, "umoci");
}

/// `umoci unpack` of a one-layer image whose layer is `layer`, from an
/// OCI layout written here.
fn umoci_unpack(layer: &[u8]) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let (layer_digest, layer_size) = blob(layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let (config_digest, config_size) = blob(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{layer_size}}}]}}"#
    );
    let (manifest_digest, manifest_size) = blob(manifest.as_bytes());
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#
    );
    std::fs::write(layout.join("index.json"), index).unwrap();
    umoci_unpack_layout(&layout, "t", &work.path().join("b"));
    work
}

#[test]
fn whiteout_alone_in_its_layer_is_not_exported() {
    let (root, fake) = (Root::new(), FakeRegistry::start());
    let mut l = Layer::default();
    l.dir("d").whiteout("d/ghost").whiteout("top-ghost").file("d/f", b"f\n");
    fake.image_layers("ghost", "latest", &[l.layer()], None);
    let reference = format!("{}/ghost:latest", fake.addr);
    root.ok(&["pull", "-q", &reference]);
    let tar = export(&root, &["image", "export", &reference]);
    assert_eq!(names(&tar), ["./", "d/", "d/f"]);
}

#[test]
fn an_xattr_name_a_tar_cannot_hold_fails_the_export_by_name() {
    // A container can name an xattr `user.a=b`; a PAX key ends at its '=',
    // so it would read back as `user.a`: the export refuses, naming it.
    let (root, fake) = (Root::new(), FakeRegistry::start());
    let reference = pulled(&root, &fake);
    root.ok(&["create", "--network", "none", "--name", "odd", &reference, "/nothing"]);
    let inspect = json(root.ok(&["inspect", "odd"]).as_bytes());
    let upper = Path::new(inspect[0]["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap()).to_path_buf();
    std::fs::write(upper.join("odd"), b"x").unwrap();
    let status = Command::new("setfattr")
        .args(["-n", "user.a=b", "-v", "v"])
        .arg(upper.join("odd"))
        .status()
        .unwrap();
    assert!(status.success());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("odd.tar");
    let err = root.fails(&["export", "-o", out.to_str().unwrap(), "odd"]);
    assert!(err.contains("\"odd\"") && err.contains("user.a=b"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Nothing half-written is left: no odd.tar, no temporary file.
    assert!(list(dir.path()).is_empty(), "{:?}", list(dir.path()));
    // A good export appears whole, with the usual permissions.
    std::fs::remove_file(upper.join("odd")).unwrap();
    root.ok(&["export", "-o", out.to_str().unwrap(), "odd"]);
    assert_eq!(list(dir.path()), ["odd.tar"]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&out).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn export_to_a_device_writes_through_it() {
    // `-o /dev/null` (the tests' own habit) once renamed a regular file over
    // the host's /dev/null. A null device made here stands in for it.
    use std::os::unix::fs::FileTypeExt;
    let (root, fake) = (Root::new(), FakeRegistry::start());
    let reference = pulled(&root, &fake);
    let dir = tempfile::tempdir().unwrap();
    let null = dir.path().join("null");
    let dev = nix::sys::stat::makedev(1, 3);
    nix::sys::stat::mknod(
        &null,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        dev,
    )
    .unwrap();
    root.ok(&["image", "export", "-o", null.to_str().unwrap(), &reference]);
    let meta = std::fs::symlink_metadata(&null).unwrap();
    assert!(meta.file_type().is_char_device(), "{meta:?}");
    assert_eq!(list(dir.path()), ["null"]);
}

#[test]
fn host_views_do_not_open_devices() {
    // A layer's device node, seen through `image export`'s mount: nodev.
    let (root, fake) = (Root::new(), FakeRegistry::start());
    let mut l = Layer::default();
    let mut null = e(EntryType::Char, 0o666);
    null.dev = (1, 3);
    l.add("null", null, b"");
    fake.image_layers("devnode", "latest", &[l.layer()], None);
    let reference = format!("{}/devnode:latest", fake.addr);
    root.ok(&["pull", "-q", &reference]);
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    let rootfs = mocker::rootfs::mount_image(&mocker, &reference).unwrap();
    let err = std::fs::File::open(rootfs.path().join("null")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EACCES), "{err}");
}

#[test]
fn container_export_has_its_changes_and_no_sockets() {
    let (root, fake) = (Root::new(), FakeRegistry::start());
    let reference = pulled(&root, &fake);
    let image_tar = export(&root, &["image", "export", &reference]);
    root.ok(&["create", "--network", "none", "--name", "ctr", &reference, "/nothing"]);
    let inspect = json(root.ok(&["inspect", "ctr"]).as_bytes());
    let upper = inspect[0]["GraphDriver"]["Data"]["UpperDir"]
        .as_str()
        .unwrap()
        .to_string();
    let upper = Path::new(&upper);
    // What a running container would leave: a socket, a new file, a
    // deleted one (overlayfs' whiteout in the upper directory).
    let _socket = std::os::unix::net::UnixListener::bind(upper.join("sock")).unwrap();
    std::fs::write(upper.join("newfile"), b"made in the container\n").unwrap();
    nix::sys::stat::mknod(
        &upper.join("topfile"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    let tar = export(&root, &["export", "ctr"]);
    assert_gnu_tar_lists(&tar);
    let mut want: Vec<String> = names(&image_tar).into_iter().filter(|n| n != "topfile").collect();
    want.push("newfile".into());
    tree_order(&mut want);
    assert_eq!(names(&tar), want);
    // The rest is the image's, byte for byte.
    let image_tree = gnu_extract(&image_tar);
    let container_tree = gnu_extract(&tar);
    let mut expected = listing(&image_tree.path().join("tree"));
    expected.remove("topfile");
    expected.insert(
        "newfile".into(),
        listing(&container_tree.path().join("tree"))["newfile"].clone(),
    );
    assert_same_tree(&expected, &container_tree.path().join("tree"), "container export");
}

/// Entry names in archive order (which must also be sorted order, parents
/// first, as docker writes them).
fn names(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    let mut sorted = names.clone();
    tree_order(&mut sorted);
    assert_eq!(names, sorted, "entries out of order");
    names
}

/// Parents first, then their entries by name, depth first.
fn tree_order(names: &mut [String]) {
    names.sort_by_key(|n| {
        n.trim_end_matches('/')
            .split('/')
            .map(str::to_string)
            .collect::<Vec<_>>()
    });
}
