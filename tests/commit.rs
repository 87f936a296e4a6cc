//! `diff` and `commit`: a container that adds, changes and deletes files
//! and directories (a hard link, a setuid file, an xattr, a file replaced
//! by a directory, a deleted directory, a directory emptied and made
//! again) is listed by `diff` as docker lists it, and committed into an
//! image whose containers see exactly those changes. The layer itself is
//! checked entry by entry (whiteouts, opaque markers, hard links, PAX
//! xattrs, no overlayfs xattrs, no runtime mount points), and umoci, which
//! nobody here wrote, unpacks the committed image to the same tree.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::*;

/// What the container does to the toolbox image (busybox with every applet).
const CHANGES: &str = "set -e
echo new > /new.txt
echo changed >> /etc/passwd
rm /etc/group
mkdir -p /opt/app && echo data > /opt/app/f && ln /opt/app/f /opt/app/hard
cp /bin/busybox /opt/app/suid && chmod 4755 /opt/app/suid
rm -rf /www && mkdir /www && echo fresh > /www/other
rm -rf /home/bob
rm /bin/wc && mkdir /bin/wc && echo inside > /bin/wc/inside";

/// docker's listing of those changes.
const DIFF: &str = "C /bin
C /bin/wc
A /bin/wc/inside
C /etc
D /etc/group
C /etc/passwd
C /home
D /home/bob
A /new.txt
A /opt
A /opt/app
A /opt/app/f
A /opt/app/hard
A /opt/app/suid
C /www
D /www/index.html
A /www/other
";

/// Run inside a container of the committed image: what it must see.
const CHECK: &str = "test ! -e /etc/group && tail -n 1 /etc/passwd && test ! -e /home/bob && test -d /home
cat /www/other; ls /www; cat /bin/wc/inside; cat /new.txt
stat -c '%n %a %h' /opt/app/suid /opt/app/f /opt/app/hard
[ $(stat -c %i /opt/app/f) = $(stat -c %i /opt/app/hard) ] && echo same-inode";

const SEEN: &str = "changed
fresh
other
inside
new
/opt/app/suid 4755 1
/opt/app/f 644 2
/opt/app/hard 644 2
same-inode
";

/// A container `name` of the toolbox image that made `CHANGES`.
fn make_changes(root: &Root, name: &str) {
    root.ok(&[
        "run",
        "--name",
        name,
        "--network",
        "none",
        &image("toolbox"),
        "sh",
        "-c",
        CHANGES,
    ]);
}

fn upper_dir(root: &Root, container: &str) -> String {
    let inspect = json(root.ok(&["inspect", container]).as_bytes());
    inspect[0]["GraphDriver"]["Data"]["UpperDir"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The committed image's layers (compressed blobs), base first.
fn layers(root: &Root, image: &str) -> Vec<String> {
    let inspect = json(root.ok(&["image", "inspect", image]).as_bytes());
    inspect[0]["Manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Entries of a layer blob: name → (type, mode, link target, PAX keys).
fn entries(blob: &[u8]) -> BTreeMap<String, (char, u32, String, Vec<String>)> {
    let mut raw = Vec::new();
    if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(blob).read_to_end(&mut raw).unwrap();
    } else {
        zstd::stream::read::Decoder::new(blob)
            .unwrap()
            .read_to_end(&mut raw)
            .unwrap();
    }
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(raw.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let keys = match entry.pax_extensions().unwrap() {
            Some(pax) => pax.map(|p| p.unwrap().key().unwrap().to_string()).collect(),
            None => Vec::new(),
        };
        let header = entry.header();
        let kind = header.entry_type().as_byte() as char;
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        let mode = header.mode().unwrap();
        out.insert(entry.path().unwrap().display().to_string(), (kind, mode, link, keys));
    }
    out
}

fn blob(root: &Root, digest: &str) -> Vec<u8> {
    std::fs::read(root.path().join("blobs/sha256").join(hex_of(digest))).unwrap()
}

#[test]
fn commit_makes_an_image_of_exactly_the_changes() {
    let root = Root::new();
    let toolbox = image("toolbox");
    root.ok(&["pull", "-q", &toolbox]);
    make_changes(&root, "ctr");
    assert_eq!(root.ok(&["diff", "ctr"]), DIFF);
    assert_eq!(root.ok(&["container", "diff", "ctr"]), DIFF);
    // An xattr, set from the host on the writable layer.
    let upper = upper_dir(&root, "ctr");
    let set = Command::new("setfattr")
        .args(["-n", "user.note", "-v", "kept"])
        .arg(Path::new(&upper).join("new.txt"))
        .status()
        .unwrap();
    assert!(set.success());

    let id = root.ok(&[
        "commit",
        "-m",
        "the message",
        "-a",
        "someone",
        "-c",
        r#"CMD ["cat", "/new.txt"]"#,
        "-c",
        "ENV FOO=bar",
        "-c",
        "VOLUME /data",
        "ctr",
        "committed:v1",
    ]);
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let inspect = json(root.ok(&["image", "inspect", "committed:v1"]).as_bytes());
    assert_eq!(inspect[0]["Id"], id);
    let config = &inspect[0]["Config"];
    assert_eq!(config["Cmd"], serde_json::json!(["cat", "/new.txt"]));
    assert_eq!(config["Volumes"], serde_json::json!({"/data": {}}));
    let env = config["Env"].as_array().unwrap();
    assert!(env.contains(&serde_json::json!("FOO=bar")) && env.contains(&serde_json::json!("GREETING=hello")));
    let history = inspect[0]["ImageConfig"]["history"].as_array().unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        (&last["comment"], &last["author"]),
        (&serde_json::json!("the message"), &serde_json::json!("someone"))
    );

    // The new image runs at once, from its own snapshot.
    assert_eq!(root.ok(&["run", "--rm", "--network", "none", "committed:v1"]), "new\n");
    let seen = root.ok(&["run", "--rm", "--network", "none", "committed:v1", "sh", "-c", CHECK]);
    assert_eq!(seen, SEEN);

    // The layer: overlayfs' whiteouts and opaque directory in OCI form.
    let old_layers = layers(&root, &toolbox);
    let new_layers = layers(&root, "committed:v1");
    assert_eq!(new_layers[..new_layers.len() - 1], old_layers[..]);
    let layer = entries(&blob(&root, new_layers.last().unwrap()));
    for whiteout in [
        "etc/.wh.group",
        "home/.wh.bob",
        "www/.wh..wh..opq",
        "bin/wc/.wh..wh..opq",
    ] {
        assert_eq!(layer.get(whiteout).map(|e| e.0), Some('0'), "{whiteout} in {layer:?}");
    }
    assert_eq!(layer["opt/app/hard"].0, '1', "a hard link");
    assert_eq!(layer["opt/app/hard"].2, "opt/app/f");
    assert_eq!(layer["opt/app/suid"].1, 0o4755);
    assert!(
        layer["new.txt"].3.contains(&"SCHILY.xattr.user.note".to_string()),
        "{:?}",
        layer["new.txt"]
    );
    for (name, entry) in &layer {
        assert!(
            !entry.3.iter().any(|k| k.contains("trusted.overlay")),
            "{name}: {entry:?}"
        );
        for runtime in ["proc", "sys", "dev", "etc/hosts", "etc/hostname", "etc/resolv.conf"] {
            assert!(
                !name.trim_end_matches('/').eq(runtime),
                "runtime mount point {name} in the layer"
            );
        }
        assert!(!name.starts_with("www/index.html"), "{name}");
    }

    // umoci reads the committed image as we do.
    let bundle = umoci_unpack(&root, "committed:v1");
    let rootfs = bundle.path().join("b/rootfs");
    assert!(!rootfs.join("etc/group").exists() && !rootfs.join("home/bob").exists());
    assert!(!rootfs.join("www/index.html").exists());
    assert_eq!(std::fs::read_to_string(rootfs.join("www/other")).unwrap(), "fresh\n");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("bin/wc/inside")).unwrap(),
        "inside\n"
    );
    use std::os::unix::fs::MetadataExt;
    let (f, hard) = (rootfs.join("opt/app/f"), rootfs.join("opt/app/hard"));
    assert_eq!(
        std::fs::metadata(&f).unwrap().ino(),
        std::fs::metadata(&hard).unwrap().ino()
    );
    assert_eq!(
        std::fs::metadata(rootfs.join("opt/app/suid")).unwrap().mode() & 0o7777,
        0o4755
    );
    let note = Command::new("getfattr")
        .args(["--only-values", "-n", "user.note"])
        .arg(rootfs.join("new.txt"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&note.stdout), "kept");

    // A commit of a commit: the new layer goes over the committed one.
    root.ok(&[
        "run",
        "--name",
        "second",
        "--network",
        "none",
        "committed:v1",
        "rm",
        "/new.txt",
    ]);
    assert_eq!(root.ok(&["diff", "second"]), "D /new.txt\n");
    root.ok(&["commit", "second", "committed:v2"]);
    assert_eq!(layers(&root, "committed:v2").len(), new_layers.len() + 1);
    let out = root.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "committed:v2",
        "sh",
        "-c",
        "ls /new.txt; cat /www/other",
    ]);
    assert_eq!(out, "fresh\n");
    root.assert_healthy();
}

/// An OCI layout of `image` made from the root's blobs, unpacked by umoci.
fn umoci_unpack(root: &Root, image: &str) -> tempfile::TempDir {
    let inspect = json(root.ok(&["image", "inspect", image]).as_bytes());
    let manifest = inspect[0]["Descriptor"]["digest"].as_str().unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let manifest_bytes = blob(root, &manifest);
    let parsed = json(&manifest_bytes);
    let mut digests = vec![
        manifest.clone(),
        parsed["config"]["digest"].as_str().unwrap().to_string(),
    ];
    digests.extend(layers(root, image));
    for digest in &digests {
        std::fs::write(blobs.join(hex_of(digest)), blob(root, digest)).unwrap();
    }
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest, "size": manifest_bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": "t"}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    umoci_unpack_layout(&layout, "t", &work.path().join("b"));
    work
}

#[test]
fn a_running_container_is_committed_paused_and_goes_on() {
    let root = Root::new();
    let toolbox = image("toolbox");
    root.ok(&["pull", "-q", &toolbox]);
    let id = root.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        &toolbox,
        "sh",
        "-c",
        "echo live > /live.txt; exec sleep 1000",
    ]);
    let id = id.trim();
    wait_until("the file", || root.ok(&["diff", id]).contains("A /live.txt"));
    root.ok(&["commit", "--compression", "zstd", id, "live:v1"]);
    // Thawed: it still answers.
    assert_eq!(root.ok(&["exec", id, "cat", "/live.txt"]), "live\n");
    let layer = blob(&root, layers(&root, "live:v1").last().unwrap());
    assert!(layer.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), "a zstd layer");
    assert!(entries(&layer).contains_key("live.txt"));
    assert_eq!(
        root.ok(&["run", "--rm", "--network", "none", "live:v1", "cat", "/live.txt"]),
        "live\n"
    );
}

/// docker's commit: the image runs what the container ran, `run` flags
/// included, and its history names the container's command.
#[test]
fn a_commit_keeps_what_the_container_ran() {
    let root = Root::new();
    let toolbox = image("toolbox");
    root.ok(&["pull", "-q", &toolbox]);
    let script = "mkdir -p /srv && echo $MODE-$(pwd) >> /srv/out; cat /srv/out";
    root.ok(&[
        "run",
        "--name",
        "ctr",
        "--network",
        "none",
        "-e",
        "MODE=kept",
        "-w",
        "/srv",
        &toolbox,
        "sh",
        "-c",
        script,
    ]);
    root.ok(&["commit", "ctr", "kept:v1"]);
    let inspect = json(root.ok(&["image", "inspect", "kept:v1"]).as_bytes());
    let config = &inspect[0]["Config"];
    assert_eq!(config["Cmd"], serde_json::json!(["sh", "-c", script]));
    assert_eq!(config["WorkingDir"], "/srv");
    let env = config["Env"].as_array().unwrap();
    assert!(env.contains(&serde_json::json!("MODE=kept")), "{env:?}");
    assert!(
        !env.iter().any(|e| e.as_str().unwrap().starts_with("HOSTNAME=")),
        "{env:?}"
    );
    let history = inspect[0]["ImageConfig"]["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["created_by"], format!("sh -c {script}"));
    // Run bare, it does it again over what the container left.
    assert_eq!(
        root.ok(&["run", "--rm", "--network", "none", "kept:v1"]),
        "kept-/srv\nkept-/srv\n"
    );
}

/// A layer of 40 files of 3 MiB of noise: long enough to commit that a
/// test can act while the commit reads it.
const NOISE: &str = "for i in $(seq 40); do dd if=/dev/urandom of=/f$i bs=1M count=3 2>/dev/null; done";

fn freezer_state(id: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/freezer/mocker/{id}/freezer.state")).unwrap_or_default()
}

/// A running container of `NOISE`, its layer written; its id.
fn noisy(root: &Root) -> String {
    let toolbox = image("toolbox");
    root.ok(&["pull", "-q", &toolbox]);
    let script = format!("{NOISE}; touch /done; exec sleep 1000");
    let id = root.ok(&["run", "-d", "--network", "none", &toolbox, "sh", "-c", &script]);
    let id = id.trim().to_string();
    wait_until("the noise", || root.ok(&["diff", &id]).contains("A /done"));
    id
}

/// A commit of `id` in a process group of its own, once it has frozen it.
fn commit_frozen(root: &Root, id: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let commit = root
        .command()
        .args(["commit", id, "killed:v1"])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the freeze", || freezer_state(id).trim() == "FROZEN");
    commit
}

/// A commit killed (SIGKILL) while its container is paused: its watchdog
/// thaws the container.
#[test]
fn a_commit_killed_while_its_container_is_paused_does_not_leave_it_frozen() {
    let root = Root::new();
    let id = noisy(&root);
    let mut commit = commit_frozen(&root, &id);
    commit.kill().unwrap();
    commit.wait().unwrap();
    wait_until("the thaw", || freezer_state(&id).trim() == "THAWED");
    assert_eq!(root.ok(&["exec", &id, "cat", "/done"]), "");
    root.ok(&["rm", "-f", &id]);
}

/// Should the watchdog die with the commit (a SIGKILL to the whole process
/// group), the cgroup stays frozen, where v1 tasks take no signal, not even
/// SIGKILL; the next signal thaws it, so `stop` works at once instead of
/// giving up after 30 s.
#[test]
fn a_container_left_frozen_by_a_killed_commit_still_stops() {
    let root = Root::new();
    let id = noisy(&root);
    let mut commit = commit_frozen(&root, &id);
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(commit.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    commit.wait().unwrap();
    assert_eq!(freezer_state(&id).trim(), "FROZEN", "left frozen");
    let started = std::time::Instant::now();
    root.ok(&["stop", "-t", "1", &id]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let inspect = json(root.ok(&["inspect", &id]).as_bytes());
    assert_eq!(inspect[0]["State"]["Status"], "exited");
    root.ok(&["rm", &id]);
}

/// `rm` of a container a commit is reading waits for the commit, which
/// makes the whole layer.
#[test]
fn rm_waits_for_a_commit_reading_the_layer() {
    let root = Root::new();
    let toolbox = image("toolbox");
    root.ok(&["pull", "-q", &toolbox]);
    root.ok(&["run", "--name", "ctr", "--network", "none", &toolbox, "sh", "-c", NOISE]);
    let commit = root
        .command()
        .args(["commit", "ctr", "whole:v1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the commit's blob", || !root.ingest().is_empty());
    root.ok(&["rm", "ctr"]);
    let out = commit.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = root.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "whole:v1",
        "sh",
        "-c",
        "cat /f* | wc -c",
    ]);
    assert_eq!(seen.trim(), ((40u64 * 3) << 20).to_string());
    assert!(root.containers().is_empty(), "{:?}", root.containers());
}

#[test]
fn a_bad_change_leaves_nothing() {
    let root = Root::new();
    let busybox = image("busybox");
    root.ok(&["pull", "-q", &busybox]);
    root.ok(&["create", "--name", "ctr", "--network", "none", &busybox]);
    let (blobs, snapshots, images) = (
        root.blobs(),
        list(&root.path().join("snapshots")),
        root.ok(&["images", "-q"]),
    );
    for bad in ["FROM busybox", "EXPOSE http", "STOPSIGNAL NOPE", "ENV A"] {
        let error = root.fails(&["commit", "-c", bad, "ctr", "bad:v1"]);
        assert!(error.contains(bad.split(' ').next().unwrap()), "{error}");
    }
    root.fails(&[
        "commit",
        "ctr",
        "bad@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ]);
    assert_eq!(root.blobs(), blobs);
    assert_eq!(list(&root.path().join("snapshots")), snapshots);
    assert_eq!(root.ok(&["images", "-q"]), images);
    assert!(root.ingest().is_empty(), "{:?}", root.ingest());
    // A commit without a name is listed untagged; the empty diff is empty.
    assert_eq!(root.ok(&["diff", "ctr"]), "");
    let id = root.ok(&["commit", "ctr"]);
    let inspect = json(root.ok(&["image", "inspect", id.trim()]).as_bytes());
    assert_eq!(inspect[0]["RepoTags"], serde_json::json!([]));
}

/// Path → (kind, permission bits) of a directory tree, not following links.
fn tree_of_dir(top: &Path) -> BTreeMap<String, (char, u32)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut out = BTreeMap::new();
    let mut pending = vec![top.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let t = meta.file_type();
            let kind = match () {
                _ if t.is_dir() => 'd',
                _ if t.is_symlink() => 'l',
                _ if t.is_char_device() => 'c',
                _ if t.is_block_device() => 'b',
                _ if t.is_fifo() => 'p',
                _ => 'f',
            };
            if kind == 'd' {
                pending.push(path.clone());
            }
            let mode = if kind == 'l' {
                0
            } else {
                meta.permissions().mode() & 0o7777
            };
            let rel = path.strip_prefix(top).unwrap().to_string_lossy().into_owned();
            out.insert(rel, (kind, mode));
        }
    }
    out
}

/// The same for a tar stream (hard links are files, as on disk).
fn tree_of_tar(bytes: &[u8]) -> BTreeMap<String, (char, u32)> {
    let mut out = BTreeMap::new();
    for entry in tar::Archive::new(bytes).entries().unwrap() {
        let entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let rel = path.trim_start_matches("./").trim_end_matches('/').to_string();
        if rel.is_empty() || rel == "." {
            continue;
        }
        let kind = match entry.header().entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Char => 'c',
            tar::EntryType::Block => 'b',
            tar::EntryType::Fifo => 'p',
            _ => 'f',
        };
        let mode = if kind == 'l' {
            0
        } else {
            entry.header().mode().unwrap() & 0o7777
        };
        out.insert(rel, (kind, mode));
    }
    out
}

/// The issue's round trip with tools nobody here wrote: commit → push →
/// rmi → pull into a fresh root → run sees exactly the changes; and
/// `skopeo copy` of the pushed image, unpacked by umoci, is the same tree
/// as mocker's export of it.
#[test]
fn a_committed_image_survives_push_rmi_and_pull() {
    let root = Root::new();
    let toolbox = image("toolbox");
    root.ok(&["pull", "-q", &toolbox]);
    make_changes(&root, "rt");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let target = format!("{}/roundtrip/committed-{nanos}:v1", registry());
    root.ok(&["commit", "rt", &target]);
    root.ok(&["push", &target]);
    root.ok(&["rm", "rt"]);
    root.ok(&["rmi", &target]);

    let fresh = Root::new();
    fresh.ok(&["pull", "-q", &target]);
    let seen = fresh.ok(&["run", "--rm", "--network", "none", &target, "sh", "-c", CHECK]);
    assert_eq!(seen, SEEN);

    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let copied = Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{target}"))
        .arg(format!("oci:{}:t", layout.display()))
        .output()
        .unwrap();
    assert!(copied.status.success(), "skopeo copy: {}", stderr(&copied));
    umoci_unpack_layout(&layout, "t", &work.path().join("bundle"));
    let exported = fresh.command().args(["image", "export", &target]).output().unwrap();
    assert!(exported.status.success(), "{}", stderr(&exported));
    let ours = tree_of_tar(&exported.stdout);
    let umoci = tree_of_dir(&work.path().join("bundle/rootfs"));
    let differ: Vec<_> = ours
        .iter()
        .filter(|(p, v)| umoci.get(*p) != Some(v))
        .map(|(p, v)| format!("{p}: mocker {v:?}, umoci {:?}", umoci.get(p)))
        .chain(
            umoci
                .keys()
                .filter(|p| !ours.contains_key(*p))
                .map(|p| format!("{p}: only umoci")),
        )
        .collect();
    assert!(differ.is_empty(), "{differ:#?}");
    assert!(ours.contains_key("opt/app/suid") && !ours.contains_key("etc/group"));
    fresh.assert_healthy();
}
