//! Untrusted layers: hand-made tars that try to reach outside the snapshot.
//! Each runs the real unpacker on a fresh snapshot directory beside a
//! sentinel directory that must come out exactly as it went in.

mod common;

use std::io::Cursor;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::sha256_hex;
use mocker::digest::Digest;
use mocker::manifest::Compression;
use mocker::unpack::{unpack_layer, Limits, Unpacked};

/// A tar written header by header, so names the tar crate would refuse
/// (`..`, absolute) can be made.
#[derive(Default)]
struct RawTar(Vec<u8>);

impl RawTar {
    fn header(&mut self, name: &[u8], kind: tar::EntryType, link: &[u8], size: u64, mode: u32) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
    }

    fn data(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.header(name.as_bytes(), tar::EntryType::Regular, b"", data.len() as u64, 0o644);
        self.data(data);
        self
    }

    fn file_mode(&mut self, name: &str, mode: u32) -> &mut Self {
        self.header(name.as_bytes(), tar::EntryType::Regular, b"", 1, mode);
        self.data(b"x");
        self
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.header(name.as_bytes(), tar::EntryType::Directory, b"", 0, 0o755);
        self
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.header(name.as_bytes(), tar::EntryType::Symlink, target.as_bytes(), 0, 0o777);
        self
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.header(name.as_bytes(), tar::EntryType::Link, target.as_bytes(), 0, 0o644);
        self
    }

    /// A PAX header ('x' for the next entry, 'g' global).
    fn pax(&mut self, kind: tar::EntryType, records: &[(&str, &[u8])]) -> &mut Self {
        let body = common::pax_records(records.iter().copied());
        self.header(b"pax", kind, b"", body.len() as u64, 0o644);
        self.data(&body);
        self
    }

    fn gnu_long_name(&mut self, name: &str) -> &mut Self {
        let mut body = name.as_bytes().to_vec();
        body.push(0);
        self.header(
            b"././@LongLink",
            tar::EntryType::GNULongName,
            b"",
            body.len() as u64,
            0o644,
        );
        self.data(&body);
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.0.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

/// A directory outside every snapshot, and a fingerprint of it.
struct Sentinel {
    dir: tempfile::TempDir,
}

impl Sentinel {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), b"keep me").unwrap();
        std::fs::set_permissions(
            dir.path().join("secret"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        Sentinel { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Relative form (no leading '/') for building absolute-looking names.
    fn rel(&self) -> String {
        self.path().strip_prefix("/").unwrap().display().to_string()
    }

    fn fingerprint(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.path().to_path_buf()];
        while let Some(p) = stack.pop() {
            let md = std::fs::symlink_metadata(&p).unwrap();
            let xattrs = std::process::Command::new("getfattr")
                .args(["-h", "-d", "-m", "-"])
                .arg(&p)
                .output()
                .unwrap()
                .stdout;
            out.push(format!(
                "{} {:o} {} {} {}",
                p.display(),
                md.mode(),
                md.nlink(),
                md.mtime(),
                String::from_utf8_lossy(&xattrs)
            ));
            if md.is_dir() {
                for e in std::fs::read_dir(&p).unwrap() {
                    stack.push(e.unwrap().path());
                }
            } else if md.is_file() {
                out.push(sha256_hex(&std::fs::read(&p).unwrap()));
            }
        }
        out.sort();
        out
    }
}

struct Outcome {
    result: mocker::Result<Unpacked>,
    target: PathBuf,
    _dir: tempfile::TempDir,
}

/// Unpack `tar` into a fresh snapshot; the sentinel must not change.
fn unpack_beside(sentinel: &Sentinel, tar: &RawTar) -> Outcome {
    let before = sentinel.fingerprint();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("fs");
    std::fs::create_dir(&target).unwrap();
    let bytes = tar.bytes();
    let diff_id = Digest::parse(&format!("sha256:{}", sha256_hex(&bytes))).unwrap();
    let result = unpack_layer(
        Cursor::new(bytes),
        Compression::None,
        &target,
        &diff_id,
        Limits::default(),
        "sha256:test-layer",
    );
    assert_eq!(
        sentinel.fingerprint(),
        before,
        "the sentinel outside the snapshot changed"
    );
    Outcome {
        result,
        target,
        _dir: dir,
    }
}

fn assert_refused(outcome: &Outcome, entry: &str) {
    let err = match &outcome.result {
        Ok(_) => panic!("entry {entry:?} was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("sha256:test-layer"),
        "error does not name the layer: {err}"
    );
    assert!(err.contains(entry), "error does not name the entry {entry:?}: {err}");
}

#[test]
fn dotdot_entries_are_refused() {
    let s = Sentinel::new();
    let out = unpack_beside(&s, RawTar::default().file("../escape", b"x"));
    assert_refused(&out, "../escape");
    let deep = format!("../../../../../../../../{}/pwned", s.rel());
    let out = unpack_beside(&s, RawTar::default().file(&deep, b"x"));
    assert_refused(&out, "pwned");
    let out = unpack_beside(
        &s,
        RawTar::default()
            .pax(tar::EntryType::XHeader, &[("path", b"../../pax-escape")])
            .file("innocent", b"x"),
    );
    assert_refused(&out, "pax-escape");
    let out = unpack_beside(
        &s,
        RawTar::default()
            .gnu_long_name(&format!("{}/../../../long-escape", "d".repeat(120)))
            .file("short", b"x"),
    );
    assert_refused(&out, "long-escape");
}

#[test]
fn absolute_paths_stay_inside_the_snapshot() {
    let s = Sentinel::new();
    let name = format!("{}/pwned", s.path().display());
    let out = unpack_beside(&s, RawTar::default().file(&name, b"x"));
    out.result.as_ref().unwrap();
    assert!(out.target.join(s.rel()).join("pwned").is_file());
}

#[test]
fn symlinks_cannot_redirect_later_entries_outside() {
    let s = Sentinel::new();
    // Absolute symlink to the sentinel, then a file "through" it.
    let out = unpack_beside(
        &s,
        RawTar::default()
            .symlink("link", &s.path().display().to_string())
            .file("link/pwned", b"x"),
    );
    if out.result.is_ok() {
        assert!(out.target.join(s.rel()).join("pwned").is_file());
    }
    // Relative symlink climbing out, then a file through it: lands at the root.
    let out = unpack_beside(
        &s,
        RawTar::default()
            .symlink("up", "../../../../../../..")
            .file("up/pwned", b"x"),
    );
    out.result.as_ref().unwrap();
    assert!(out.target.join("pwned").is_file());
    // A symlink placed in a directory, then a directory entry through it.
    let out = unpack_beside(
        &s,
        RawTar::default()
            .dir("x")
            .symlink("x/y", &s.path().display().to_string())
            .dir("x/y/sub2")
            .file("x/y/sub2/f", b"x"),
    );
    let _ = out.result;
}

#[test]
fn hardlinks_cannot_reach_outside() {
    let s = Sentinel::new();
    let out = unpack_beside(
        &s,
        RawTar::default().hardlink("hl", &format!("../../../../../../{}/secret", s.rel())),
    );
    assert_refused(&out, "hl");
    let out = unpack_beside(
        &s,
        RawTar::default().hardlink("hl2", &format!("{}/secret", s.path().display())),
    );
    assert_refused(&out, "hl2");
    // Through a symlink: the link is to the symlink itself, never its target.
    let out = unpack_beside(
        &s,
        RawTar::default()
            .symlink("sl", &format!("{}/secret", s.path().display()))
            .hardlink("hl3", "sl"),
    );
    out.result.as_ref().unwrap();
    assert!(std::fs::symlink_metadata(out.target.join("hl3"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn whiteouts_and_opaque_markers_cannot_act_outside() {
    let s = Sentinel::new();
    let abs = s.path().display().to_string();
    let out = unpack_beside(&s, RawTar::default().symlink("d", &abs).file("d/.wh.secret", b""));
    let _ = out.result;
    let out = unpack_beside(&s, RawTar::default().symlink("o", &abs).file("o/.wh..wh..opq", b""));
    let _ = out.result;
    let out = unpack_beside(&s, RawTar::default().file("../.wh.secret", b""));
    assert_refused(&out, ".wh.secret");
    // A layer cannot forge overlayfs' own markers through PAX xattrs.
    let out = unpack_beside(
        &s,
        RawTar::default()
            .pax(
                tar::EntryType::XHeader,
                &[("SCHILY.xattr.trusted.overlay.opaque", b"y")],
            )
            .dir("forged"),
    );
    out.result.as_ref().unwrap();
    let x = std::process::Command::new("getfattr")
        .args(["-d", "-m", "-"])
        .arg(out.target.join("forged"))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&x.stdout).contains("overlay"),
        "forged overlay xattr applied"
    );
}

#[test]
fn metadata_changes_never_follow_symlinks() {
    // containerd's CVE-2021-32760: a chmod through a symlink.
    let s = Sentinel::new();
    let secret = format!("{}/secret", s.path().display());
    let out = unpack_beside(&s, RawTar::default().symlink("c", &secret).file_mode("c", 0o4777));
    out.result.as_ref().unwrap();
    let md = std::fs::symlink_metadata(out.target.join("c")).unwrap();
    assert!(md.is_file() && md.mode() & 0o7777 == 0o4777);
    let out = unpack_beside(
        &s,
        RawTar::default().symlink("e", &s.path().display().to_string()).dir("e"),
    );
    out.result.as_ref().unwrap();
}

#[test]
fn spec_rules_where_umoci_departs() {
    let s = Sentinel::new();
    // An xattr with an empty value is applied (umoci drops it).
    let out = unpack_beside(
        &s,
        RawTar::default()
            // A PAX global header (git archive writes one) is accepted and,
            // as in Go and so docker, applies to no file (umoci fails on it).
            .pax(
                tar::EntryType::XGlobalHeader,
                &[("comment", b"made by git archive"), ("SCHILY.xattr.user.global", b"g")],
            )
            .pax(tar::EntryType::XHeader, &[("SCHILY.xattr.user.empty", b"")])
            .file("f", b"x"),
    );
    out.result.as_ref().unwrap();
    let x = std::process::Command::new("getfattr")
        .args(["-d", "-m", "-"])
        .arg(out.target.join("f"))
        .output()
        .unwrap();
    let x = String::from_utf8_lossy(&x.stdout);
    assert!(x.contains("user.empty=\"\"") || x.contains("user.empty\n"), "{x}");
    assert!(!x.contains("user.global"), "{x}");
    assert!(!out.target.join("pax").exists() && !out.target.join("pax_global_header").exists());
}

#[test]
fn sparse_files_huge_owners_and_aufs_metadata() {
    let s = Sentinel::new();
    // A GNU sparse entry of 8 GiB of holes becomes holes, not 8 GiB of disk
    // (the size limit counting them is tested in tests/tar_input.rs).
    let mut sparse = RawTar::default();
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..5].copy_from_slice(b"holes");
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.realsize.copy_from_slice(b"77777777777\0");
    // One empty chunk at the very end: everything before it is a hole.
    gnu.sparse[0].offset.copy_from_slice(b"77777777777\0");
    gnu.sparse[0].numbytes.copy_from_slice(b"00000000000\0");
    h.set_cksum();
    sparse.0.extend_from_slice(h.as_bytes());
    let out = unpack_beside(&s, &sparse);
    out.result.as_ref().unwrap();
    let holes = std::fs::metadata(out.target.join("holes")).unwrap();
    assert_eq!((holes.len(), holes.blocks()), (0o77777777777, 0));
    // An owner past u32 would be truncated (2^32 becomes root): refused.
    let out = unpack_beside(
        &s,
        RawTar::default()
            .pax(tar::EntryType::XHeader, &[("uid", b"4294967296")])
            .file("owned", b"x"),
    );
    assert_refused(&out, "owned");
    // AUFS bookkeeping is not a whiteout of a file named "wh.plnk".
    let out = unpack_beside(&s, RawTar::default().dir(".wh..wh.plnk").file("kept", b"x"));
    out.result.as_ref().unwrap();
    assert!(!out.target.join(".wh..wh.plnk").exists());
    assert!(!out.target.join(".wh.plnk").exists() && !out.target.join("wh.plnk").exists());
    assert!(out.target.join("kept").is_file());
}

#[test]
fn storage_root_and_snapshots_are_closed_to_other_users() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("store");
    mocker::Mocker::open(&path).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&path), 0o711);
    assert_eq!(mode(&path.join("snapshots")), 0o700);
}
