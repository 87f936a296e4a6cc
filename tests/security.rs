//! Security defaults as root: the default seccomp filter, the options that
//! change it, and that ordinary programs still run under it. `sysprobe`
//! (a static C program in the test image, see scripts/test-env.sh) makes
//! each call with harmless arguments and prints NAME=OK or NAME=<errno>.

mod common;

use std::collections::BTreeMap;

use common::*;

/// The calls docker's default profile forbids that the issue names;
/// `unshare` last, as once it succeeds the rest would run in a new user
/// namespace.
const PROBED: &[&str] = &[
    "keyctl",
    "add_key",
    "request_key",
    "personality",
    "clock_settime",
    "reboot",
    "kexec_load",
    "open_by_handle_at",
    "bpf",
    "userfaultfd",
    "perf_event_open",
    "mount",
    "unshare",
];

fn pulled() -> Root {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("toolbox")]);
    root
}

/// Each probed call's answer inside a container run with `options`.
fn probe(root: &Root, options: &[&str], calls: &[&str]) -> BTreeMap<String, String> {
    let toolbox = image("toolbox");
    let mut args = vec!["run", "--rm"];
    args.extend(options);
    args.push(&toolbox);
    args.push("sysprobe");
    args.extend(calls);
    root.ok(&args)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn status_field(root: &Root, options: &[&str], field: &str) -> String {
    let toolbox = image("toolbox");
    let mut args = vec!["run", "--rm"];
    args.extend(options);
    args.extend([toolbox.as_str(), "grep", field, "/proc/self/status"]);
    root.ok(&args).split_whitespace().nth(1).unwrap_or_default().to_string()
}

#[test]
fn the_default_filter_denies_what_docker_s_does_and_options_lift_it() {
    let root = pulled();
    let default = probe(&root, &[], PROBED);
    let unconfined = probe(&root, &["--security-opt", "seccomp=unconfined"], PROBED);
    let privileged = probe(&root, &["--privileged"], PROBED);
    let sys_admin = probe(&root, &["--cap-add", "SYS_ADMIN"], PROBED);
    eprintln!(
        "{:<18} {:<8} {:<11} {:<11} cap-add SYS_ADMIN",
        "call", "default", "unconfined", "privileged"
    );
    for call in PROBED {
        eprintln!(
            "{call:<18} {:<8} {:<11} {:<11} {}",
            default[*call], unconfined[*call], privileged[*call], sys_admin[*call]
        );
    }
    for call in PROBED {
        assert_eq!(default[*call], "EPERM", "{call} by default");
    }
    // What only the filter denied: without it the kernel answers (these
    // need no capability, or fail on their arguments before asking).
    for call in [
        "keyctl",
        "add_key",
        "request_key",
        "unshare",
        "personality",
        "clock_settime",
        "perf_event_open",
        "mount",
    ] {
        assert_ne!(unconfined[call], "EPERM", "{call} with seccomp=unconfined");
        assert_ne!(privileged[call], "EPERM", "{call} with --privileged");
    }
    // docker's capability-dependent extras: SYS_ADMIN brings mount and
    // namespaces, and nothing of the keyring.
    assert_eq!(sys_admin["mount"], "ENOENT");
    assert_eq!(sys_admin["unshare"], "OK");
    assert_eq!(sys_admin["keyctl"], "EPERM");

    assert_eq!(status_field(&root, &[], "Seccomp:"), "2");
    assert_eq!(status_field(&root, &["--privileged"], "Seccomp:"), "0");
    assert_eq!(
        status_field(&root, &["--security-opt", "seccomp=unconfined"], "Seccomp:"),
        "0"
    );
    assert_eq!(status_field(&root, &[], "NoNewPrivs:"), "1");
    assert_eq!(
        status_field(&root, &["--security-opt", "no-new-privileges=false"], "NoNewPrivs:"),
        "0"
    );
    // Without no_new_privs the filter is loaded before the capabilities
    // are dropped, and still holds.
    assert_eq!(
        status_field(&root, &["--security-opt", "no-new-privileges=false"], "Seccomp:"),
        "2"
    );
}

#[test]
fn exec_and_init_processes_get_the_container_s_filter() {
    let root = pulled();
    let toolbox = image("toolbox");
    let id = root.ok(&["run", "-d", "--init", &toolbox, "sleep", "300"]);
    let id = id.trim();
    let out = root.ok(&["exec", id, "sysprobe", "keyctl", "unshare"]);
    assert_eq!(out, "keyctl=EPERM\nunshare=EPERM\n");
    let out = root.ok(&["exec", id, "grep", "Seccomp:", "/proc/1/status"]);
    assert!(out.ends_with("2\n"), "the --init reaper: {out}");
    root.ok(&["rm", "-f", id]);
}

#[test]
fn a_custom_profile_in_docker_s_format_is_applied_and_shown() {
    let root = pulled();
    let toolbox = image("toolbox");
    let profile = root.path().join("no-mkdir.json");
    let json = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#;
    std::fs::write(&profile, json).unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = root.run(&["run", "--rm", "--security-opt", &opt, &toolbox, "mkdir", "/tmp/d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Permission denied"), "{}", stderr(&out));
    // The same call in a default container works.
    root.ok(&["run", "--rm", &toolbox, "mkdir", "/tmp/d"]);
    // What the profile allows, everything here, still runs.
    assert_eq!(probe(&root, &["--security-opt", &opt], &["keyctl"])["keyctl"], "OK");

    root.ok(&["create", "--name", "custom", "--security-opt", &opt, &toolbox, "true"]);
    let inspected = json_of(&root.ok(&["inspect", "custom"]));
    assert_eq!(
        inspected[0]["HostConfig"]["SecurityOpt"],
        serde_json::json!([format!("seccomp={json}")])
    );
    root.ok(&["create", "--name", "plain", &toolbox, "true"]);
    let inspected = json_of(&root.ok(&["inspect", "plain"]));
    assert!(inspected[0]["HostConfig"]["SecurityOpt"].is_null());
}

fn json_of(text: &str) -> serde_json::Value {
    json(text.as_bytes())
}

#[test]
fn bad_security_options_are_refused_at_create_with_one_line() {
    let root = pulled();
    let toolbox = image("toolbox");
    let bad = root.path().join("bad.json");
    std::fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_SOMETIMES"}"#).unwrap();
    let bad = format!("seccomp={}", bad.display());
    for (opt, expected) in [
        ("seccomp=/no/such/profile.json", "/no/such/profile.json"),
        (bad.as_str(), "unknown action \"SCMP_ACT_SOMETIMES\""),
        ("seccomp", "invalid --security-opt"),
        ("no-new-privileges=perhaps", "invalid --security-opt"),
        ("apparmor=docker-default", "not supported"),
    ] {
        let out = root.run(&["create", "--security-opt", opt, &toolbox, "true"]);
        assert_eq!(out.status.code(), Some(125), "{opt}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{opt}: {err}");
        assert!(err.contains(expected), "{opt}: {err}");
    }
    assert!(root.containers().is_empty());
}

#[test]
fn ordinary_programs_run_under_the_default_filter() {
    let root = pulled();
    let script = "set -e; ls / >/dev/null; ps >/dev/null; id -u; mkdir -p /tmp/a/b; echo x > /tmp/a/b/f; \
                  cp /tmp/a/b/f /tmp/g; sha256sum /tmp/g >/dev/null; tar -cf /tmp/t.tar -C /tmp a; \
                  gzip /tmp/t.tar; rm -r /tmp/a; sleep 0.01 & wait; \
                  (echo hi | nc -l -p 7000 >/dev/null &) ; ip addr show lo >/dev/null; \
                  su bob -s /bin/sh -c true 2>/dev/null || true; echo done";
    let out = root.ok(&["run", "--rm", &image("toolbox"), "sh", "-c", script]);
    assert_eq!(out, "0\ndone\n");
}

#[test]
fn a_debian_shell_with_apt_runs_under_the_default_filter() {
    let root = Root::new();
    let debian = image("debian:bookworm");
    root.ok(&["pull", "-q", &debian]);
    let script = "set -e; grep Seccomp: /proc/self/status; apt-get check -qq; \
                  apt-get install --simulate -qq hostname >/dev/null; dpkg-query -W bash >/dev/null; \
                  useradd -m tester; su tester -c 'id -un'; tar -cf /tmp/etc.tar /etc 2>/dev/null; echo done";
    let out = root.ok(&["run", "--rm", &debian, "bash", "-c", script]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["Seccomp:", "2", "tester", "done"],
        "{out}"
    );
}

#[test]
fn a_container_created_before_filters_gets_the_default_one() {
    let root = pulled();
    let out = root.ok(&["create", &image("toolbox"), "grep", "Seccomp:", "/proc/self/status"]);
    let id = out.trim();
    // A config.json as mocker wrote it before seccomp: no `security`.
    let path = root.path().join("containers").join(id).join("config.json");
    let mut config = json(&std::fs::read(&path).unwrap());
    config["init"].as_object_mut().unwrap().remove("security");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let out = root.ok(&["start", "-a", id]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["Seccomp:", "2"], "{out}");
}
