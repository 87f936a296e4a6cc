//! Shared test helpers: the real test registry (started by
//! scripts/test-env.sh), a scratch storage root, running the real binary, and
//! a tiny scripted HTTP registry for faults a real registry will not produce.
#![allow(dead_code)]

pub mod fake_registry;

#[allow(unused_imports)]
pub use fake_registry::FakeRegistry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};

/// `host:port` of the real registry; the suite fails loudly without it.
pub fn registry() -> String {
    std::env::var("MOCKER_TEST_REGISTRY")
        .expect("MOCKER_TEST_REGISTRY is not set: run the suite with scripts/test.sh, which starts the test registry")
}

/// Wait (20 s at most) until `done`, polling: for conditions no event
/// announces (a file appearing, a process going).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A GET of `path` on a loopback port; the whole response.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// A loopback TCP port nothing listens on (now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binding a free port")
        .local_addr()
        .expect("its address")
        .port()
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the suite with scripts/test.sh"))
}

pub fn image(name: &str) -> String {
    format!("{}/{name}", registry())
}

/// A storage root in a temporary directory, removed at the end of the test
/// with every container it holds. Each root has a bridge and subnet of its
/// own, as tests run in parallel and each root keeps its own IPAM.
pub struct Root {
    pub dir: tempfile::TempDir,
    pub docker_config: tempfile::TempDir,
    pub bridge: String,
    pub subnet: String,
}

static ROOTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Root {
    pub fn new() -> Self {
        let n = ROOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        Root {
            dir: tempfile::tempdir().expect("tempdir"),
            docker_config: tempfile::tempdir().expect("tempdir"),
            bridge: format!("mkt{}x{n}", pid % 10000),
            subnet: format!("10.{}.{}.0/24", 150 + n % 100, pid % 250),
        }
    }

    /// Ids of every container in this root.
    pub fn containers(&self) -> Vec<String> {
        let out = self.run(&["ps", "-aq", "--no-trunc"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mocker"));
        cmd.arg("--root").arg(self.path());
        cmd.env("DOCKER_CONFIG", self.docker_config.path());
        cmd.env("MOCKER_BRIDGE", &self.bridge);
        cmd.env("MOCKER_BRIDGE_SUBNET", &self.subnet);
        cmd.env_remove("MOCKER_ROOT");
        cmd
    }

    /// Run mocker with `args` and return its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("running mocker")
    }

    /// Start mocker with `args`, its output discarded (to kill it mid-way).
    pub fn spawn_quiet(&self, args: &[&str]) -> std::process::Child {
        self.command()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting mocker")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "mocker {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run and require failure; returns stderr, which must be one line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "mocker {args:?} unexpectedly succeeded: {stderr}"
        );
        let last = stderr.lines().last().unwrap_or("").to_string();
        assert!(last.starts_with("Error: "), "no one-line error from {args:?}: {stderr}");
        last
    }

    /// Nothing of a failed pull, load or import is left: no snapshot, blob,
    /// ingest file, spool or image, and the store checks clean.
    pub fn assert_nothing_left(&self) {
        let snapshots: Vec<String> = list(&self.path().join("snapshots"))
            .into_iter()
            .filter(|n| n != "locks" && n != "empty")
            .collect();
        assert!(snapshots.is_empty(), "snapshots left behind: {snapshots:?}");
        assert!(self.blobs().is_empty(), "blobs left behind: {:?}", self.blobs());
        assert!(self.ingest().is_empty(), "ingest left behind: {:?}", self.ingest());
        let spools: Vec<String> = list(self.path())
            .into_iter()
            .filter(|n| n.starts_with("tmp-load-"))
            .collect();
        assert!(spools.is_empty(), "spool left behind: {spools:?}");
        assert!(self.ok(&["images", "-q"]).trim().is_empty());
        self.assert_healthy();
    }

    /// `mocker login -u USER --password-stdin SERVER` with `password`.
    pub fn login(&self, server: &str, user: &str, password: &str) -> Output {
        let mut child = self
            .command()
            .args(["login", "-u", user, "--password-stdin", server])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running mocker login");
        std::io::Write::write_all(
            &mut child.stdin.take().expect("stdin"),
            format!("{password}\n").as_bytes(),
        )
        .expect("writing the password");
        child.wait_with_output().expect("mocker login")
    }

    pub fn blobs(&self) -> Vec<String> {
        list(&self.path().join("blobs/sha256"))
    }

    /// The bytes of every committed blob.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs()
            .iter()
            .map(|b| std::fs::metadata(self.path().join("blobs/sha256").join(b)).map_or(0, |m| m.len()))
            .sum()
    }

    pub fn ingest(&self) -> Vec<String> {
        list(&self.path().join("ingest"))
    }

    /// Every committed blob hashes to its own name.
    pub fn assert_blobs_verified(&self) {
        for name in self.blobs() {
            let bytes = std::fs::read(self.path().join("blobs/sha256").join(&name)).expect("read blob");
            assert_eq!(sha256_hex(&bytes), name, "blob {name} does not match its digest");
        }
    }

    pub fn assert_healthy(&self) {
        let out = self.ok(&["system", "check"]);
        assert!(out.contains("no problems found"), "{out}");
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // Containers hold cgroups, bridges and monitors outside the directory.
        if self.path().join("containers").exists() {
            for id in self.containers() {
                let _ = self.run(&["rm", "-f", &id]);
            }
            // The bridge outlives containers, as docker0 does.
            let _ = self.run(&["container", "prune", "-f"]);
        }
    }
}

pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// `umoci unpack` of `layout:tag` into the bundle `dest` (an independent
/// reading of an image mocker wrote).
pub fn umoci_unpack_layout(layout: &Path, tag: &str, dest: &Path) {
    let out = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:{tag}", layout.display())])
        .arg(dest)
        .output()
        .expect("umoci");
    assert!(out.status.success(), "umoci unpack: {}", stderr(&out));
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The raw manifest (or index) the registry serves, fetched by skopeo.
pub fn registry_manifest(reference: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ])
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// Digests of an image's layers as the registry lists them.
pub fn registry_layers(reference: &str) -> Vec<String> {
    json(&registry_manifest(reference))["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The registry's storage file for a blob.
pub fn registry_blob_file(digest: &str) -> PathBuf {
    let hex = hex_of(digest);
    PathBuf::from(env("MOCKER_TEST_REGISTRY_DATA"))
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An uncompressed tar of regular files (root-owned, mode 0644).
/// An uncompressed layer of `files`: its bytes, diff_id and media type.
pub fn plain_layer(files: &[(String, Vec<u8>)]) -> (Vec<u8>, String, String) {
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let tar = tar_layer(&refs);
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    (tar, diff_id, "application/vnd.oci.image.layer.v1.tar".to_string())
}

pub fn tar_layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, *content).expect("tar entry");
    }
    builder.into_inner().expect("tar")
}

/// PAX extended header records, `LEN key=value\n` each, LEN counting the
/// whole record in bytes (its own digits too); values are raw bytes.
pub fn pax_records<'a>(records: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in records {
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len.to_string().len() + rest != len {
            len += 1;
        }
        body.extend_from_slice(format!("{len} {key}=").as_bytes());
        body.extend_from_slice(value);
        body.push(b'\n');
    }
    body
}
