//! Credentials: `login`/`logout` write docker's config.json; pulls use it.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

#[test]
fn login_pull_logout() {
    let root = Root::new();
    let server = env("MOCKER_TEST_AUTH_REGISTRY");
    let private = format!("{server}/private/busybox");
    let config = root.docker_config.path().join("config.json");

    let out = root.login(&server, &env("MOCKER_TEST_AUTH_USER"), "wrong-password");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    let written = std::fs::read_to_string(&config).unwrap_or_default();
    assert!(!written.contains(&server), "bad credentials were kept: {written}");

    let out = root.login(
        &server,
        &env("MOCKER_TEST_AUTH_USER"),
        &env("MOCKER_TEST_AUTH_PASSWORD"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Login Succeeded"));
    let cfg = json(&std::fs::read(&config).unwrap());
    assert!(cfg["auths"][&server]["auth"].is_string(), "{cfg}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);

    root.ok(&["pull", "-q", &private]);
    root.assert_blobs_verified();

    assert!(root.ok(&["logout", &server]).contains("Removing login credentials"));
    let cfg = json(&std::fs::read(&config).unwrap());
    assert!(cfg["auths"].get(&server).is_none(), "{cfg}");
    root.ok(&["rmi", &private]);
    let err = root.fails(&["pull", &private]);
    assert!(err.contains("unauthorized"), "{err}");
}

/// `login`/`logout` touch only docker's config.json: a user who cannot
/// reach the storage root (here the default, root's) can still use them.
#[test]
fn login_logout_without_the_storage_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run mocker as another user");
        return;
    }
    let server = env("MOCKER_TEST_AUTH_REGISTRY");
    let config_dir = tempfile::tempdir().unwrap();
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    nix::unistd::chown(config_dir.path(), nobody, Some(nix::unistd::Gid::from_raw(65534))).unwrap();
    let as_nobody = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_mocker"),
            ])
            .args(args)
            .env("DOCKER_CONFIG", config_dir.path())
            .env("HOME", config_dir.path())
            .env_remove("MOCKER_ROOT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let user = env("MOCKER_TEST_AUTH_USER");
    let password = format!("{}\n", env("MOCKER_TEST_AUTH_PASSWORD"));
    let out = as_nobody(&["login", "-u", &user, "--password-stdin", &server], &password);
    assert!(out.status.success(), "{}", stderr(&out));
    let cfg = json(&std::fs::read(config_dir.path().join("config.json")).unwrap());
    assert!(cfg["auths"][&server]["auth"].is_string(), "{cfg}");
    let out = as_nobody(&["logout", &server], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Removing login credentials"), "{}", stdout(&out));
}
