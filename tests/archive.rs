//! `history`, `save` and `load`, checked against tools nobody here wrote:
//! skopeo's docker-archive and oci-archive files load and run, mocker's
//! saves are read by skopeo, a save → rmi → load round trip keeps the image
//! ID and manifest digest, and broken archives fail in one line leaving
//! nothing behind.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `image inspect`'s (Id, manifest digest) of `name`.
fn ids(root: &Root, name: &str) -> (String, String) {
    let doc: serde_json::Value = serde_json::from_str(&root.ok(&["image", "inspect", name])).unwrap();
    (
        doc[0]["Id"].as_str().unwrap().to_string(),
        doc[0]["Descriptor"]["digest"].as_str().unwrap().to_string(),
    )
}

#[test]
fn history_shows_the_config_steps_newest_first() {
    let root = Root::new();
    let name = image("toolbox");
    root.ok(&["pull", "-q", &name]);
    let (id, _) = ids(&root, &name);
    let doc: serde_json::Value = serde_json::from_str(&root.ok(&["image", "inspect", &name])).unwrap();
    let steps = doc[0]["ImageConfig"]["history"]
        .as_array()
        .expect("toolbox has a history")
        .clone();
    assert!(steps.len() >= 3, "{steps:?}");

    let table = root.ok(&["history", &name]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE") && lines[0].contains("CREATED BY") && lines[0].ends_with("COMMENT"),
        "{table}"
    );
    assert_eq!(lines.len(), steps.len() + 1, "{table}");
    let short = &id["sha256:".len().."sha256:".len() + 12];
    assert!(lines[1].starts_with(short), "{table}");
    assert!(lines[2..].iter().all(|l| l.starts_with("<missing>")), "{table}");

    // Newest first, untruncated; empty layers 0B, the others their size.
    let rows = root.ok(&[
        "image",
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.CreatedBy}}|{{.Size}}",
        &name,
    ]);
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows[0][0], id);
    for (row, step) in rows.iter().zip(steps.iter().rev()) {
        assert_eq!(row[1], step["created_by"].as_str().unwrap_or(""));
        if step["empty_layer"].as_bool() == Some(true) {
            assert_eq!(row[2], "0B");
        } else {
            assert_ne!(row[2], "0B", "{row:?}");
        }
    }
    assert_eq!(root.ok(&["history", "-q", &name]).lines().count(), steps.len());
    let err = root.fails(&["history", "no-such-image"]);
    assert!(err.contains("no-such-image"), "{err}");
}

#[test]
fn skopeo_archives_load_and_run() {
    let work = tempfile::tempdir().unwrap();
    let docker_archive = work.path().join("busybox-docker.tar");
    let oci_archive = work.path().join("busybox-oci.tar");
    let source = format!("docker://{}", image("busybox"));
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &source,
        &format!("docker-archive:{}:loaded/busybox:v1", docker_archive.display()),
    ]);
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &source,
        &format!("oci-archive:{}", oci_archive.display()),
    ]);

    let root = Root::new();
    let out = root.ok(&["load", "-i", docker_archive.to_str().unwrap()]);
    assert_eq!(out, "Loaded image: loaded/busybox:v1\n");
    assert_eq!(
        root.ok(&["run", "--rm", "loaded/busybox:v1", "echo", "from docker-archive"]),
        "from docker-archive\n"
    );

    root.assert_healthy();

    // An OCI archive without a full name loads by ID. Into the same root:
    // the same config under a second manifest is still one image ID, which
    // runs, and inspects as one image, the named one.
    let out = root.ok(&["image", "load", "-q", "-i", oci_archive.to_str().unwrap()]);
    let id = out.strip_prefix("Loaded image ID: ").expect(&out).trim().to_string();
    // Both are busybox's config, byte for byte.
    assert_eq!(ids(&root, "loaded/busybox:v1").0, id);
    assert_eq!(
        root.ok(&["run", "--rm", &id, "echo", "from oci-archive"]),
        "from oci-archive\n"
    );
    let inspect = json(root.ok(&["image", "inspect", &id[..19]]).as_bytes());
    assert_eq!(inspect.as_array().unwrap().len(), 1, "{inspect}");
    assert_eq!(inspect[0]["RepoTags"], serde_json::json!(["loaded/busybox:v1"]));
    // Named through its other manifest too: inspect lists every name.
    let named_oci = work.path().join("busybox-oci-named.tar");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &source,
        &format!("oci-archive:{}:localhost/oci/busybox:v2", named_oci.display()),
    ]);
    root.ok(&["load", "-i", named_oci.to_str().unwrap()]);
    let inspect = json(root.ok(&["image", "inspect", "loaded/busybox:v1"]).as_bytes());
    assert_eq!(
        inspect[0]["RepoTags"],
        serde_json::json!(["loaded/busybox:v1", "localhost/oci/busybox:v2"])
    );
    root.assert_healthy();

    // Compressed archives, from standard input.
    let plain = std::fs::read(&docker_archive).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let fresh = Root::new();
    for compressed in [
        gz.finish().unwrap(),
        zstd::stream::encode_all(plain.as_slice(), 1).unwrap(),
    ] {
        let mut child = fresh
            .command()
            .arg("load")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&compressed).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Loaded image: loaded/busybox:v1\n"
        );
    }
    fresh.assert_healthy();
}

#[test]
fn save_is_read_by_skopeo_and_round_trips() {
    let root = Root::new();
    let name = image("toolbox");
    root.ok(&["pull", "-q", &name]);
    let before = ids(&root, &name);
    let work = tempfile::tempdir().unwrap();
    let saved = work.path().join("saved.tar");
    root.ok(&["save", "-o", saved.to_str().unwrap(), &name]);

    let inspected: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("docker-archive:{}", saved.display())])).unwrap();
    assert!(
        inspected["Layers"].as_array().is_some_and(|l| l.len() == 2),
        "{inspected}"
    );
    let layout = work.path().join("oci");
    skopeo(&[
        "copy",
        "-q",
        &format!("docker-archive:{}", saved.display()),
        &format!("oci:{}:copied", layout.display()),
    ]);
    assert!(layout.join("index.json").is_file());
    // The OCI half of the archive is a layout skopeo reads as it is, with
    // the manifest mocker pulled.
    let oci: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("oci-archive:{}", saved.display())])).unwrap();
    assert_eq!(oci["Digest"], before.1.as_str(), "{oci}");

    // To standard output when it is not a terminal: the same bytes.
    let out = root.command().args(["image", "save", &name]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&saved).unwrap());

    root.ok(&["rmi", &name]);
    assert!(root.ok(&["images", "-q"]).trim().is_empty());
    let out = root.ok(&["load", "-i", saved.to_str().unwrap()]);
    let short = mocker_name(&name);
    assert_eq!(out, format!("Loaded image: {short}\n"));
    assert_eq!(ids(&root, &name), before);
    assert_eq!(root.ok(&["run", "--rm", &name, "echo", "loaded"]), "loaded\n");
    root.assert_healthy();
}

/// `name:latest` as docker prints it (a loopback registry's names are full).
fn mocker_name(name: &str) -> String {
    format!("{name}:latest")
}

/// The members of a tar, in order: (path, type, link, bytes).
type Members = Vec<(String, tar::EntryType, Option<String>, Vec<u8>)>;

fn members(path: &Path) -> Members {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let link = e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            let kind = e.header().entry_type();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, kind, link, data)
        })
        .collect()
}

fn write_members(path: &Path, members: &Members) {
    let mut out = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, kind, link, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // Raw names: the builder itself refuses `..`.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        out.append(&h, data.as_slice()).unwrap();
    }
    out.finish().unwrap();
}

/// The path of the manifest's `n`th layer in a saved archive.
fn layer_path(members: &Members, n: usize) -> String {
    let manifest = members.iter().find(|m| m.0 == "manifest.json").unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&manifest.3).unwrap();
    doc[0]["Layers"][n].as_str().unwrap().to_string()
}

#[test]
fn bad_archives_fail_in_one_line_and_leave_nothing() {
    let source = Root::new();
    let name = image("toolbox");
    source.ok(&["pull", "-q", &name]);
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good.tar");
    source.ok(&["save", "-o", good.to_str().unwrap(), &name]);
    let good_members = members(&good);
    let top = layer_path(&good_members, 1);

    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let build = |f: &dyn Fn(&mut Members)| {
        let mut m = good_members.clone();
        f(&mut m);
        let path = work.path().join("bad.tar");
        write_members(&path, &m);
        std::fs::read(&path).unwrap()
    };
    let missing = build(&|m| m.retain(|e| e.0 != top));
    let mismatch = build(&|m| {
        let e = m.iter_mut().find(|e| e.0 == top).unwrap();
        let mid = e.3.len() / 2;
        e.3[mid] ^= 0xff;
    });
    let escape = build(&|m| m.insert(0, ("../evil".into(), tar::EntryType::Regular, None, b"x".to_vec())));
    let twice = build(&|m| {
        // docker's layout alone, its manifest naming the base layer twice.
        m.retain(|e| e.0 != "index.json");
        let e = m.iter_mut().find(|e| e.0 == "manifest.json").unwrap();
        let mut doc: serde_json::Value = serde_json::from_slice(&e.3).unwrap();
        let base = doc[0]["Layers"][0].clone();
        doc[0]["Layers"][1] = base;
        e.3 = serde_json::to_vec(&doc).unwrap();
    });
    // A name pinned to a digest would make `name@digest` run these bytes.
    let pinned = build(&|m| {
        m.retain(|e| e.0 != "index.json");
        let e = m.iter_mut().find(|e| e.0 == "manifest.json").unwrap();
        let mut doc: serde_json::Value = serde_json::from_slice(&e.3).unwrap();
        doc[0]["RepoTags"] = serde_json::json!([format!("alpine@sha256:{}", "a".repeat(64))]);
        e.3 = serde_json::to_vec(&doc).unwrap();
    });
    let whole = std::fs::read(&good).unwrap();
    let truncated = whole[..whole.len() / 2].to_vec();
    cases.push(("missing blob", missing, "missing from the archive"));
    cases.push(("digest mismatch", mismatch, "digest mismatch"));
    cases.push(("`..` path", escape, "unsafe path \"../evil\""));
    cases.push(("layer named twice", twice, "twice"));
    cases.push(("truncated file", truncated, "ends inside"));
    cases.push(("digest-pinned name", pinned, "by tag, not by digest"));

    for (what, bytes, expected) in cases {
        let path = work.path().join("case.tar");
        std::fs::write(&path, bytes).unwrap();
        let root = Root::new();
        let err = root.fails(&["load", "-i", path.to_str().unwrap()]);
        assert!(err.contains(expected), "{what}: {err}");
        root.assert_nothing_left();
    }
}

#[test]
fn old_layout_layer_tars_are_read_through_their_links() {
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("skopeo.tar");
    let source = format!("docker://{}", image("toolbox"));
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &source,
        &format!("docker-archive:{}:old/toolbox:v1", archive.display()),
    ]);
    // skopeo writes `<id>/layer.tar` as links to `../<diff_id>.tar`: name
    // those in manifest.json, as docker's old layout does.
    let mut m = members(&archive);
    let links: Vec<(String, String)> = m
        .iter()
        .filter(|e| e.1 == tar::EntryType::Symlink)
        .map(|e| (e.2.clone().unwrap().trim_start_matches("../").to_string(), e.0.clone()))
        .collect();
    assert!(!links.is_empty(), "no <id>/layer.tar links in skopeo's archive");
    let manifest = m.iter_mut().find(|e| e.0 == "manifest.json").unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&manifest.3).unwrap();
    for layer in doc[0]["Layers"].as_array_mut().unwrap() {
        let (_, link) = links
            .iter()
            .find(|(target, _)| layer == target.as_str())
            .expect("a link per layer");
        *layer = serde_json::Value::from(link.clone());
    }
    manifest.3 = serde_json::to_vec(&doc).unwrap();
    let old = work.path().join("old.tar");
    write_members(&old, &m);

    let root = Root::new();
    assert_eq!(
        root.ok(&["load", "-i", old.to_str().unwrap()]),
        "Loaded image: old/toolbox:v1\n"
    );
    assert_eq!(
        root.ok(&["run", "--rm", "old/toolbox:v1", "cat", "/www/index.html"]),
        "hello-from-container\n"
    );
    root.assert_healthy();

    // A link that leaves the archive is refused.
    let first = m.iter_mut().find(|e| e.1 == tar::EntryType::Symlink).unwrap();
    first.2 = Some("../../../etc/passwd".into());
    let escaping = work.path().join("escaping.tar");
    write_members(&escaping, &m);
    let fresh = Root::new();
    let err = fresh.fails(&["load", "-i", escaping.to_str().unwrap()]);
    assert!(err.contains("unsafe path"), "{err}");
    fresh.assert_nothing_left();
}

#[test]
fn one_archive_holds_several_images_and_their_shared_layer_once() {
    let root = Root::new();
    let (busybox, toolbox) = (image("busybox"), image("toolbox"));
    root.ok(&["pull", "-q", &busybox]);
    root.ok(&["pull", "-q", &toolbox]);
    let work = tempfile::tempdir().unwrap();
    let saved = work.path().join("both.tar");
    root.ok(&["image", "save", "-o", saved.to_str().unwrap(), &busybox, &toolbox]);
    // toolbox is busybox plus a layer: the base layer's blob goes out once.
    let names: Vec<String> = members(&saved).into_iter().map(|m| m.0).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");

    let fresh = Root::new();
    let out = fresh.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(
        out,
        format!("Loaded image: {busybox}:latest\nLoaded image: {toolbox}:latest\n")
    );
    assert_eq!(ids(&fresh, &busybox), ids(&root, &busybox));
    assert_eq!(ids(&fresh, &toolbox), ids(&root, &toolbox));
    fresh.assert_healthy();
}

/// Run mocker with `input` on stdin; (status ok, stdout, stderr).
fn with_stdin(root: &Root, args: &[&str], input: &[u8]) -> (bool, String, String) {
    let mut child = root
        .command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// busybox's root filesystem as a tarball (mocker's `image export`).
fn busybox_rootfs() -> Vec<u8> {
    let source = Root::new();
    source.ok(&["pull", "-q", &image("busybox")]);
    let out = source
        .command()
        .args(["image", "export", &image("busybox")])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn import_makes_a_one_layer_image() {
    let rootfs = busybox_rootfs();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&rootfs).unwrap();
    let gz = gz.finish().unwrap();

    let root = Root::new();
    let (ok, out, err) = with_stdin(
        &root,
        &[
            "import",
            "-c",
            "CMD [\"/bin/sh\", \"-c\", \"echo imported $A\"]",
            "-c",
            "ENV A=1",
            "-",
            "imported:v1",
        ],
        &gz,
    );
    assert!(ok, "{err}");
    let id = out.trim();
    assert_eq!(root.ok(&["images", "-q", "--no-trunc", "imported:v1"]).trim(), id);
    assert_eq!(root.ok(&["run", "--rm", "imported:v1"]), "imported 1\n");
    let history = root.ok(&["history", "--format", "{{.Comment}}", "imported:v1"]);
    assert_eq!(history, "Imported from -\n");
    // Stored compressed, as it will be pushed; its diff_id is the tarball's.
    let inspect = json(root.ok(&["image", "inspect", "imported:v1"]).as_bytes());
    let layer = &inspect[0]["Manifest"]["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_ne!(layer["digest"], inspect[0]["RootFS"]["Layers"][0]);
    assert_eq!(
        inspect[0]["RootFS"]["Layers"][0].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(&rootfs))
    );
    root.assert_healthy();

    // A tarball with a `..` path: refused, nothing kept.
    let mut bad = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    bad.append(&h, &b"x"[..]).unwrap();
    let bad = bad.into_inner().unwrap();
    let fresh = Root::new();
    let (ok, _, err) = with_stdin(&fresh, &["import", "-", "bad:v1"], &bad);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    fresh.assert_nothing_left();
}

#[test]
fn import_reads_a_url() {
    let rootfs = busybox_rootfs();
    let zst = zstd::encode_all(&rootfs[..], 1).unwrap();
    // Any HTTP server will do: the fake registry serves a plain path.
    let server = FakeRegistry::start();
    server.route(
        "/rootfs.tar.zst",
        common::fake_registry::Route::ok("application/zstd", zst),
    );

    let root = Root::new();
    let url = format!("http://{}/rootfs.tar.zst", server.addr);
    let id = root.ok(&["import", "-c", "CMD [\"echo\", \"from a URL\"]", &url, "fromurl:v1"]);
    assert_eq!(root.ok(&["images", "-q", "--no-trunc", "fromurl:v1"]), id);
    assert_eq!(root.ok(&["run", "--rm", "fromurl:v1"]), "from a URL\n");
    let history = root.ok(&["history", "--format", "{{.Comment}}", "fromurl:v1"]);
    assert_eq!(history, format!("Imported from {url}\n"));
    root.assert_healthy();

    // A 404 (docker's words, without the body), and nothing left behind.
    let fresh = Root::new();
    let missing = format!("http://{}/missing.tar", server.addr);
    let err = fresh.fails(&["import", &missing, "missing:v1"]);
    assert_eq!(err, format!("Error: failed to GET {missing} with status 404 Not Found"));
    fresh.assert_nothing_left();
}
