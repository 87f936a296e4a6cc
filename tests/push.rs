//! `mocker push` to the real loopback registries (open and htpasswd).

mod common;

use std::path::Path;

use common::*;

/// A repository name no other test or run uses.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("pushed/{what}-{}-{nanos}", std::process::id())
}

fn skopeo_raw(reference: &str, creds: Option<&str>) -> Vec<u8> {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(creds) = creds {
        cmd.args(["--creds", creds]);
    }
    let out = cmd.arg(format!("docker://{reference}")).output().unwrap();
    assert!(out.status.success(), "skopeo inspect {reference}: {}", stderr(&out));
    out.stdout
}

#[test]
fn push_uploads_skips_and_mounts_and_keeps_the_digest() {
    let root = Root::new();
    let source = image("multi");
    root.ok(&["pull", "-q", &source]);
    let original = format!("sha256:{}", sha256_hex(&registry_manifest(&source)));
    let layers = registry_layers(&source);

    // The layers came from `multi` on this registry: docker mounts them
    // from there instead of uploading them.
    let first = format!("{}/{}:t1", registry(), unique("multi"));
    root.ok(&["tag", &source, &first]);
    let out = root.ok(&["push", &first]);
    let name = first.rsplit_once(':').unwrap().0;
    assert!(
        out.starts_with(&format!("The push refers to repository [{name}]")),
        "{out}"
    );
    for layer in &layers {
        let short = &hex_of(layer)[..12];
        assert!(out.contains(&format!("{short}: Preparing")), "{out}");
        assert!(out.contains(&format!("{short}: Mounted from multi")), "{out}");
    }
    let size = registry_manifest(&source).len();
    assert!(
        out.trim_end()
            .ends_with(&format!("t1: digest: {original} size: {size}")),
        "{out}"
    );
    // Pushed back unchanged: the registry holds the very same manifest.
    assert_eq!(skopeo_raw(&first, None), registry_manifest(&source));

    // Again: the repository has every blob.
    let out = root.ok(&["image", "push", &first]);
    assert_eq!(out.matches("Layer already exists").count(), layers.len(), "{out}");
    assert!(!out.contains("Mounted") && !out.contains("Pushed"), "{out}");
}

#[test]
fn push_of_a_name_that_is_not_local_is_one_line() {
    let root = Root::new();
    let missing = format!("{}/{}:nope", registry(), unique("missing"));
    let err = root.fails(&["push", &missing]);
    assert!(err.contains("an image does not exist locally with the tag"), "{err}");
}

#[test]
fn push_to_an_authenticated_registry_needs_login() {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("busybox")]);
    let server = env("MOCKER_TEST_AUTH_REGISTRY");
    let target = format!("{server}/{}:v1", unique("auth"));
    root.ok(&["tag", &image("busybox"), &target]);
    let err = root.fails(&["push", &target]);
    assert!(err.contains("unauthorized"), "{err}");

    let (user, password) = (env("MOCKER_TEST_AUTH_USER"), env("MOCKER_TEST_AUTH_PASSWORD"));
    assert!(root.login(&server, &user, &password).status.success());
    // Another registry: every layer is uploaded.
    let out = root.ok(&["push", &target]);
    for layer in registry_layers(&image("busybox")) {
        assert!(out.contains(&format!("{}: Pushed", &hex_of(&layer)[..12])), "{out}");
    }
    let creds = format!("{user}:{password}");
    assert_eq!(skopeo_raw(&target, Some(&creds)), registry_manifest(&image("busybox")));

    // A fresh root (logged in too) pulls what was pushed, whole.
    let other = Root::new();
    assert!(other.login(&server, &user, &password).status.success());
    other.ok(&["pull", "-q", &target]);
    other.ok(&["image", "export", "-o", "/dev/null", &target]);
    other.assert_healthy();
}

/// Repositories under one new top-level name that sorts before every test
/// image's ("busybox", "shared-a"), so that trying names in order would
/// reach them first.
fn early_namespace() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("aa-{}-{nanos}", std::process::id())
}

/// Upload sessions the registry holds for `repository` that nothing
/// completed: docker-registry answers a mount it cannot do by opening an
/// upload (202), which a client then abandons, while a completed upload's
/// session is removed. So: the failed mount attempts into `repository`.
fn abandoned_uploads(repository: &str) -> usize {
    let dir = Path::new(&env("MOCKER_TEST_REGISTRY_DATA"))
        .join("docker/registry/v2/repositories")
        .join(repository)
        .join("_uploads");
    list(&dir).len()
}

#[test]
fn push_tries_at_most_three_mounts_per_blob_then_uploads() {
    let root = Root::new();
    let source = image("busybox");
    root.ok(&["pull", "-q", &source]);
    // Four names of the image in repositories the registry lacks, and none
    // where it has the blobs: every mount fails.
    let ns = early_namespace();
    for n in 1..=4 {
        root.ok(&["tag", &source, &format!("{}/{ns}/gone{n}:v1", registry())]);
    }
    let target_repo = format!("{ns}/target");
    let target = format!("{}/{target_repo}:v1", registry());
    root.ok(&["tag", &source, &target]);
    root.ok(&["rmi", &source]);

    let out = root.ok(&["push", &target]);
    let layers = registry_layers(&source);
    for layer in &layers {
        assert!(out.contains(&format!("{}: Pushed", &hex_of(layer)[..12])), "{out}");
    }
    // Three attempts for each layer and the config, not one per name.
    assert_eq!(abandoned_uploads(&target_repo), 3 * (layers.len() + 1), "{out}");
    assert_eq!(skopeo_raw(&target, None), registry_manifest(&source));
}

#[test]
fn push_mounts_from_the_images_own_repository_first() {
    let root = Root::new();
    let (source, other) = (image("busybox"), image("shared-a"));
    root.ok(&["pull", "-q", &source]);
    root.ok(&["pull", "-q", &other]);
    // Names of another image that holds busybox's layer, in repositories
    // the registry lacks, more like the target and sorting first.
    let ns = early_namespace();
    for n in 1..=4 {
        root.ok(&["tag", &other, &format!("{}/{ns}/other{n}:v1", registry())]);
    }
    let target_repo = format!("{ns}/target");
    let target = format!("{}/{target_repo}:v1", registry());
    root.ok(&["tag", &source, &target]);

    let out = root.ok(&["push", &target]);
    for layer in registry_layers(&source) {
        assert!(
            out.contains(&format!("{}: Mounted from busybox", &hex_of(&layer)[..12])),
            "{out}"
        );
    }
    assert_eq!(abandoned_uploads(&target_repo), 0, "{out}");
}

#[test]
fn push_checks_the_digest_the_registry_stored_the_manifest_under() {
    let fake = FakeRegistry::start();
    fake.image("app", "v1", b"hello", None);
    let root = Root::new();
    let name = format!("{}/app:v1", fake.addr);
    root.ok(&["pull", "-q", &name]);
    let inspect = json(root.ok(&["image", "inspect", &name]).as_bytes());
    let sent = inspect[0]["Descriptor"]["digest"].as_str().unwrap().to_string();
    let sent = sent.as_str();

    // The registry answers the PUT with the URL of other bytes.
    let wrong = format!("sha256:{}", sha256_hex(b"other bytes"));
    let mut created = common::fake_registry::Route::ok("text/plain", Vec::new());
    created.status = 201;
    created.headers = vec![("Location".into(), format!("/v2/app/manifests/{wrong}"))];
    fake.route("/v2/app/manifests/v1", created.clone());
    let err = root.fails(&["push", &name]);
    assert!(err.contains(sent) && err.contains(&wrong), "{err}");

    // The same digest back: pushed.
    created.headers = vec![("Location".into(), format!("/v2/app/manifests/{sent}"))];
    fake.route("/v2/app/manifests/v1", created);
    let out = root.ok(&["push", &name]);
    assert!(out.contains(&format!("v1: digest: {sent} size: ")), "{out}");
}
