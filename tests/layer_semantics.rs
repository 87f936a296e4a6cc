//! Layer semantics (OCI image-spec layer.md): whiteouts hide only what the
//! layers below have, wherever they come in their layer; the root entry
//! `./` gives the image's root its metadata. Unit tests run the real
//! unpacker on hand-made tars; the merged view is checked on pulled images,
//! against `umoci unpack` of the same layers where umoci follows the spec.

mod common;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mocker::digest::Digest;
use mocker::manifest::Compression;
use mocker::unpack::{unpack_layer, Limits, Unpacked};

const MTIME: u64 = 1_600_000_000;

/// A tar written header by header (names such as `./` kept as they are).
#[derive(Default)]
struct Layer(Vec<u8>);

impl Layer {
    fn entry(&mut self, name: &str, kind: tar::EntryType, link: &str, data: &[u8], mode: u32) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(MTIME);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name, tar::EntryType::Regular, "", data, 0o644)
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name, tar::EntryType::Directory, "", b"", 0o755)
    }

    /// PAX records for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let body = pax_records(records.iter().copied());
        self.entry("pax", tar::EntryType::XHeader, "", &body, 0o644)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.0.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }

    fn diff_id(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.bytes()))
    }
}

/// Unpack one layer into a fresh directory.
fn unpack(layer: &Layer) -> (Unpacked, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let diff_id = Digest::parse(&layer.diff_id()).unwrap();
    let unpacked = unpack_layer(
        Cursor::new(layer.bytes()),
        Compression::None,
        dir.path(),
        &diff_id,
        Limits::default(),
        "sha256:test-layer",
    )
    .unwrap();
    (unpacked, dir)
}

fn xattr(path: &Path, name: &str) -> Option<String> {
    let out = Command::new("getfattr")
        .args(["-h", "--only-values", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr (Debian package attr)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_opaque(path: &Path) -> bool {
    xattr(path, "trusted.overlay.opaque").as_deref() == Some("y")
}

#[test]
fn an_entry_then_its_whiteout_keeps_the_entry() {
    let (_, dir) = unpack(Layer::default().file("x", b"new").file(".wh.x", b""));
    assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"new");
}

#[test]
fn a_whiteout_then_a_new_directory_makes_it_opaque() {
    let (_, dir) = unpack(Layer::default().file(".wh.d", b"").dir("d").file("d/new", b"n"));
    let d = dir.path().join("d");
    assert!(d.is_dir() && is_opaque(&d), "d must be a new, opaque directory");
    assert!(d.join("new").is_file());
    // The same without a `d/` entry: the implied directory is new too.
    let (unpacked, dir) = unpack(Layer::default().file(".wh.d", b"").file("d/new", b"n"));
    assert!(is_opaque(&dir.path().join("d")) && dir.path().join("d/new").is_file());
    assert!(!unpacked.implicit_dirs.contains(&PathBuf::from("d")));
}

#[test]
fn whiteouts_and_opaque_markers_in_any_order() {
    let (unpacked, dir) = unpack(
        Layer::default()
            // A directory with children, then its whiteout.
            .dir("e")
            .file("e/new", b"n")
            .file(".wh.e", b"")
            // A whiteout, then a file of that name.
            .file(".wh.g", b"")
            .file("g", b"new")
            // Opaque markers after and before the directory's new entries.
            .dir("h")
            .file("h/new", b"n")
            .file("h/.wh..wh..opq", b"")
            .file("i/.wh..wh..opq", b"")
            .file("i/new", b"n"),
    );
    let p = |rel: &str| dir.path().join(rel);
    for d in ["e", "h", "i"] {
        assert!(is_opaque(&p(d)) && p(d).join("new").is_file(), "{d}");
    }
    assert_eq!(std::fs::read(p("g")).unwrap(), b"new");
    // `i` stands for the lower `i`: only its content is hidden.
    assert_eq!(unpacked.implicit_dirs, vec![PathBuf::new(), PathBuf::from("i")]);
}

#[test]
fn a_whiteout_of_an_implied_directory_keeps_it_as_a_new_one() {
    let (unpacked, dir) = unpack(
        Layer::default()
            .file("k/new", b"n")
            .file(".wh.k", b"")
            .file(".wh.n", b"")
            .file("n/sub/new", b"n"),
    );
    let p = |rel: &str| dir.path().join(rel);
    assert!(is_opaque(&p("k")) && p("k/new").is_file());
    assert!(is_opaque(&p("n")) && p("n/sub/new").is_file());
    // `k`, `n` and `n/sub` no longer stand for lower directories.
    assert_eq!(unpacked.implicit_dirs, vec![PathBuf::new()]);
}

#[test]
fn symlink_xattrs_are_applied_without_following() {
    let (_, dir) = unpack(
        Layer::default()
            .file("target", b"t")
            .pax(&[
                ("SCHILY.xattr.trusted.mocker", b"on-link"),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ])
            .entry("link", tar::EntryType::Symlink, "target", b"", 0o777),
    );
    let link = dir.path().join("link");
    assert_eq!(xattr(&link, "trusted.mocker").as_deref(), Some("on-link"));
    assert_eq!(
        xattr(&link, "trusted.overlay.opaque"),
        None,
        "a layer's overlay xattr was applied"
    );
    assert_eq!(
        xattr(&dir.path().join("target"), "trusted.mocker"),
        None,
        "followed the symlink"
    );
}

/// A layer whose `./` entry is mode 0750, owner 1000:1001, with an xattr.
fn root_layer() -> Layer {
    let mut layer = Layer::default();
    layer
        .pax(&[("uid", b"1000"), ("gid", b"1001"), ("SCHILY.xattr.user.root", b"r")])
        .entry("./", tar::EntryType::Directory, "", b"", 0o750)
        .file("a", b"a");
    layer
}

fn root_metadata(path: &Path) -> String {
    let md = std::fs::symlink_metadata(path).unwrap();
    let x = xattr(path, "user.root").unwrap_or_default();
    format!("{:o} {}:{} {} {x}", md.mode() & 0o7777, md.uid(), md.gid(), md.mtime())
}

const ROOT_METADATA: &str = "750 1000:1001 1600000000 r";

#[test]
fn the_root_entry_is_the_layer_roots_metadata() {
    let (unpacked, dir) = unpack(&root_layer());
    assert_eq!(root_metadata(dir.path()), ROOT_METADATA);
    assert!(unpacked.implicit_dirs.is_empty(), "{:?}", unpacked.implicit_dirs);
    let (unpacked, dir) = unpack(Layer::default().file("b", b"b"));
    assert_eq!(unpacked.implicit_dirs, vec![PathBuf::new()], "a root to inherit");
    assert_eq!(std::fs::metadata(dir.path()).unwrap().mode() & 0o7777, 0o755);
}

/// Serve `layers` as `repo:latest` from a fake registry and pull it.
fn pull(root: &Root, fake: &FakeRegistry, repo: &str, layers: &[&Layer]) -> String {
    let layers: Vec<(Vec<u8>, String, String)> = layers
        .iter()
        .map(|l| {
            (
                l.bytes(),
                l.diff_id(),
                "application/vnd.oci.image.layer.v1.tar".to_string(),
            )
        })
        .collect();
    fake.image_layers(repo, "latest", &layers, None);
    let reference = format!("{}/{repo}:latest", fake.addr);
    root.ok(&["pull", "-q", &reference]);
    reference
}

/// An OCI image layout of `layers` tagged `latest`, for umoci.
fn oci_layout(dir: &Path, layers: &[&Layer]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        format!(r#"{{"digest":"sha256:{hex}","size":{}"#, bytes.len())
    };
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("\"{}\"", l.diff_id())).collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{}}}}"#,
        diff_ids.join(",")
    );
    let descriptors: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{},"mediaType":"application/vnd.oci.image.layer.v1.tar"}}"#,
                blob(&l.bytes())
            )
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"mediaType":"application/vnd.oci.image.config.v1+json"}},"layers":[{}]}}"#,
        blob(config.as_bytes()),
        descriptors.join(",")
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{},"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#,
        blob(manifest.as_bytes())
    );
    std::fs::write(dir.join("index.json"), index).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// `umoci unpack` of `layers`; the bundle (its root filesystem is `rootfs`).
fn umoci_unpack(layers: &[&Layer]) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    oci_layout(&work.path().join("oci"), layers);
    let status = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", work.path().join("oci").display()))
        .arg(work.path().join("bundle"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("umoci");
    assert!(status.success(), "umoci unpack");
    work
}

/// Every path under `root`: its type, mode, owner and a file's content.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let what = if md.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if md.is_file() {
                format!("file {:?}", String::from_utf8_lossy(&std::fs::read(&path).unwrap()))
            } else {
                format!("other {:o}", md.mode())
            };
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(
                rel,
                format!("{what} {:o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid()),
            );
        }
    }
    out
}

/// The lower layer of the merged-view tests: `x`, `g`, and directories with
/// two old files each; `i` mode 0710, `k` 0750, `n/sub` 0700.
fn lower_layer() -> Layer {
    let mut layer = Layer::default();
    layer.file("x", b"lower").file("g", b"lower");
    for d in ["d", "e", "h", "i", "k", "m"] {
        layer
            .dir(d)
            .file(&format!("{d}/old1"), b"o")
            .file(&format!("{d}/old2"), b"o");
    }
    layer
        .entry("i", tar::EntryType::Directory, "", b"", 0o710)
        .entry("k", tar::EntryType::Directory, "", b"", 0o750)
        .dir("n")
        .entry("n/sub", tar::EntryType::Directory, "", b"", 0o700)
        .file("n/sub/old", b"o");
    layer
}

/// Pull `lower` + `upper`; the merged view, and umoci's of the same layers.
fn merged_views(repo: &str, upper: &Layer) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let (root, fake, lower) = (Root::new(), FakeRegistry::start(), lower_layer());
    let reference = pull(&root, &fake, repo, &[&lower, upper]);
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    let rootfs = mocker::rootfs::mount_image(&mocker, &reference).unwrap();
    let theirs = umoci_unpack(&[&lower, upper]);
    (tree(rootfs.path()), tree(&theirs.path().join("bundle/rootfs")))
}

#[test]
fn the_merged_view_hides_only_the_lower_layers() {
    let mut upper = Layer::default();
    upper
        .file("x", b"upper")
        .file(".wh.x", b"")
        .file(".wh.d", b"")
        .dir("d")
        .file("d/new", b"n")
        .dir("e")
        .file("e/new", b"n")
        .file(".wh.e", b"")
        .file(".wh.g", b"")
        .file("g", b"upper")
        .dir("h")
        .file("h/new", b"n")
        .file("h/.wh..wh..opq", b"")
        .file("i/.wh..wh..opq", b"")
        .file("i/new", b"n");
    let (ours, theirs) = merged_views("whiteouts", &upper);
    let names: Vec<&str> = ours.keys().map(String::as_str).collect();
    let expected = ["d", "d/new", "e", "e/new", "g", "h", "h/new", "i", "i/new", "k"];
    assert_eq!(names[..10], expected, "{names:?}");
    assert!(ours["x"].starts_with("file \"upper\"") && ours["g"].starts_with("file \"upper\""));
    // `i` is the lower `i`, only its content hidden.
    assert!(ours["i"].starts_with("dir 710 "), "{}", ours["i"]);
    assert_eq!(ours, theirs, "merged view differs from umoci's");
}

#[test]
fn the_merged_view_of_whited_out_implied_directories() {
    let mut upper = Layer::default();
    upper
        .file("k/new", b"n")
        .file(".wh.k", b"")
        .file(".wh.m", b"")
        .file("m/new", b"n")
        .file(".wh.n", b"")
        .file("n/sub/new", b"n");
    let (ours, mut theirs) = merged_views("implied", &upper);
    for (d, new) in [("k", &["k/new"][..]), ("m", &["m/new"]), ("n", &["n/sub", "n/sub/new"])] {
        let inside: Vec<&String> = ours.keys().filter(|p| p.starts_with(&format!("{d}/"))).collect();
        assert_eq!(inside, new, "{d}");
    }
    // New, not the lower's: the default mode.
    assert!(ours["k"].starts_with("dir 755 ") && ours["n/sub"].starts_with("dir 755 "));
    // Departure: umoci gives `k/new, .wh.k`'s new `k` the mode of the lower
    // `k` it unpacked first, but `.wh.m, m/new`'s `m` the default one.
    assert_eq!(theirs.insert("k".into(), ours["k"].clone()), Some("dir 750 0:0".into()));
    assert_eq!(ours, theirs, "merged view differs from umoci's");
}

#[test]
fn a_directory_implied_below_a_lower_opaque_one_is_new() {
    // Layer 1 has p/q (0700); layer 2 makes p opaque; layer 3 implies p/q
    // again. The p/q a container sees is layer 3's, new: not layer 1's.
    let (root, fake) = (Root::new(), FakeRegistry::start());
    let (mut first, mut second, mut third) = (Layer::default(), Layer::default(), Layer::default());
    first
        .dir("p")
        .entry("p/q", tar::EntryType::Directory, "", b"", 0o700)
        .file("p/q/old", b"o");
    second.dir("p").file("p/.wh..wh..opq", b"").file("p/kept", b"k");
    third.file("p/q/new", b"n");
    let reference = pull(&root, &fake, "opaque-below", &[&first, &second, &third]);
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    let rootfs = mocker::rootfs::mount_image(&mocker, &reference).unwrap();
    let ours = tree(rootfs.path());
    assert!(ours["p/q"].starts_with("dir 755 "), "{}", ours["p/q"]);
    assert!(!ours.contains_key("p/q/old"));
    let theirs = umoci_unpack(&[&first, &second, &third]);
    assert_eq!(
        ours,
        tree(&theirs.path().join("bundle/rootfs")),
        "merged view differs from umoci's"
    );
}

#[test]
fn a_directory_replaced_by_a_symlink_takes_its_implied_children_with_it() {
    // The upper layer implies a/b (for a/b/f), then turns a into a symlink
    // to c, then makes c/b itself: c/b keeps its own metadata, and nothing
    // of the lower a/b reaches it through the symlink.
    let (root, fake) = (Root::new(), FakeRegistry::start());
    let (mut lower, mut upper) = (Layer::default(), Layer::default());
    lower.dir("a").entry("a/b", tar::EntryType::Directory, "", b"", 0o700);
    upper
        .file("a/b/f", b"f")
        .entry("a", tar::EntryType::Symlink, "c", b"", 0o777)
        .dir("c")
        .entry("c/b", tar::EntryType::Directory, "", b"", 0o750);
    let reference = pull(&root, &fake, "replaced", &[&lower, &upper]);
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    let rootfs = mocker::rootfs::mount_image(&mocker, &reference).unwrap();
    let ours = tree(rootfs.path());
    assert!(ours["c/b"].starts_with("dir 750 "), "{}", ours["c/b"]);
    let theirs = umoci_unpack(&[&lower, &upper]);
    assert_eq!(
        ours,
        tree(&theirs.path().join("bundle/rootfs")),
        "merged view differs from umoci's"
    );
}

#[test]
fn user_xattrs_the_kernel_refuses_on_symlinks_are_skipped_as_docker_does() {
    let (_, dir) = unpack(
        Layer::default()
            .file("target", b"t")
            .pax(&[("SCHILY.xattr.user.note", b"on-link")])
            .entry("link", tar::EntryType::Symlink, "target", b"", 0o777)
            .file("after", b"a"),
    );
    assert!(dir.path().join("link").is_symlink() && dir.path().join("after").is_file());
    assert_eq!(
        xattr(&dir.path().join("target"), "user.note"),
        None,
        "followed the symlink"
    );
}

#[test]
fn the_root_entry_is_the_images_root_and_a_later_layer_keeps_it() {
    let (root, fake) = (Root::new(), FakeRegistry::start());
    let (first, mut second) = (root_layer(), Layer::default());
    second.file("b", b"b");
    let reference = pull(&root, &fake, "rooted", &[&first, &second]);
    let mocker = mocker::Mocker::open(root.path()).unwrap();
    let rootfs = mocker::rootfs::mount_image(&mocker, &reference).unwrap();
    assert_eq!(root_metadata(rootfs.path()), ROOT_METADATA);
    drop(rootfs);
    let theirs = umoci_unpack(&[&first, &second]);
    assert_eq!(root_metadata(&theirs.path().join("bundle/rootfs")), ROOT_METADATA);
    // `image export`'s root entry is the image's root.
    let out = root.command().args(["image", "export", &reference]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let first_entry = archive.entries().unwrap().next().unwrap().unwrap();
    let h = first_entry.header();
    assert_eq!(first_entry.path().unwrap(), Path::new("./"));
    let seen = (
        h.mode().unwrap() & 0o7777,
        h.uid().unwrap(),
        h.gid().unwrap(),
        h.mtime().unwrap(),
    );
    assert_eq!(seen, (0o750, 1000, 1001, MTIME));
}

/// The busybox test image's layers (bytes, diff_id, media type), from the
/// test registry's storage.
fn busybox_layers() -> Vec<(Vec<u8>, String, String)> {
    let manifest = json(&registry_manifest(&image("busybox")));
    let config_file = registry_blob_file(manifest["config"]["digest"].as_str().unwrap());
    let config = json(&std::fs::read(config_file).unwrap());
    let layers = manifest["layers"].as_array().unwrap();
    layers
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
        .map(|(layer, diff_id)| {
            let bytes = std::fs::read(registry_blob_file(layer["digest"].as_str().unwrap())).unwrap();
            let media_type = layer["mediaType"].as_str().unwrap().to_string();
            (bytes, diff_id.as_str().unwrap().to_string(), media_type)
        })
        .collect()
}

#[test]
fn a_container_sees_the_images_root() {
    let (root, fake) = (Root::new(), FakeRegistry::start());
    let mut layers = busybox_layers();
    let top = root_layer();
    layers.push((
        top.bytes(),
        top.diff_id(),
        "application/vnd.oci.image.layer.v1.tar".into(),
    ));
    fake.image_layers("rootbox", "latest", &layers, None);
    let reference = format!("{}/rootbox:latest", fake.addr);
    root.ok(&["pull", "-q", &reference]);
    let out = root.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &reference,
        "/bin/busybox",
        "stat",
        "-c",
        "%a %u %g",
        "/",
    ]);
    assert_eq!(out.trim(), "750 1000 1001");
}
