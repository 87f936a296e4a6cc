//! `mocker push` to the real loopback registries (open and htpasswd).

mod common;

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
