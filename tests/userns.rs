//! `--userns-remap` as root: container root is the first id of the
//! `mockremap` user's subordinate range (420000, set up by
//! scripts/test-env.sh), on the host its processes and the files they make
//! belong to that range, and its capabilities stop at its namespace.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;

const REMAP: &str = "mockremap";
/// The first id of `mockremap`'s range in /etc/subuid and /etc/subgid.
const BASE: u32 = 420000;

fn remapped(root: &Root, args: &[&str]) -> String {
    let mut all = vec!["--userns-remap", REMAP];
    all.extend(args);
    root.ok(&all)
}

#[test]
fn container_root_is_an_unprivileged_host_id() {
    let root = Root::new();
    let toolbox = image("toolbox");
    root.ok(&["pull", "-q", &toolbox]);

    // Inside: root, with the image's files owned by root.
    let out = remapped(
        &root,
        &[
            "run",
            "--rm",
            &toolbox,
            "sh",
            "-c",
            "id -u; id -g; stat -c %u:%g /bin/busybox /etc/passwd /",
        ],
    );
    assert_eq!(out, "0\n0\n0:0\n0:0\n0:0\n");

    // Outside: its processes, and what it writes to its layer and a volume.
    let volume = tempfile::tempdir().unwrap();
    std::fs::set_permissions(volume.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let bind = format!("{}:/vol", volume.path().display());
    let id = remapped(
        &root,
        &[
            "run",
            "-d",
            "-v",
            &bind,
            &toolbox,
            "sh",
            "-c",
            "echo x > /made; echo y > /vol/made; exec sleep 300",
        ],
    );
    let id = id.trim();
    let inspected = json(root.ok(&["inspect", id]).as_bytes());
    let pid = inspected[0]["State"]["Pid"].as_u64().unwrap();
    let upper = inspected[0]["GraphDriver"]["Data"]["UpperDir"]
        .as_str()
        .unwrap()
        .to_string();
    let made = std::path::Path::new(&upper).join("made");
    wait_until("the container to write its files", || {
        made.exists() && volume.path().join("made").exists()
    });
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids: Vec<&str> = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(uids[1..].iter().all(|u| *u == BASE.to_string()), "{status}");
    for file in [made.clone(), volume.path().join("made")] {
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (BASE, BASE), "{}", file.display());
    }
    // exec joins the same namespace.
    assert_eq!(
        root.ok(&["exec", id, "sh", "-c", "id -u; cat /proc/self/uid_map"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "0", &BASE.to_string(), "65536"]
    );
    // The image's layers on disk stay root's: shared, not copied or chowned.
    let lower = inspected[0]["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(std::fs::metadata(&lower).unwrap().uid(), 0);
    root.ok(&["rm", "-f", id]);

    // What mocker makes for a volume (a missing host directory, a mount
    // point the image lacks) is container root's, as docker makes it.
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("made/by/mocker");
    let bind = format!("{}:/new/mount", missing.display());
    let out = remapped(
        &root,
        &[
            "run",
            "--rm",
            "-v",
            &bind,
            &toolbox,
            "sh",
            "-c",
            "stat -c %u /new /new/mount; touch /new/mount/f && echo wrote",
        ],
    );
    assert_eq!(out, "0\n0\nwrote\n");
    for dir in [parent.path().join("made"), missing.clone()] {
        assert_eq!(std::fs::metadata(&dir).unwrap().uid(), BASE, "{}", dir.display());
    }
    assert_eq!(std::fs::metadata(parent.path()).unwrap().uid(), 0);
}

#[test]
fn capabilities_stop_at_the_user_namespace() {
    let root = Root::new();
    let toolbox = image("toolbox");
    root.ok(&["pull", "-q", &toolbox]);
    // A host directory of host root's, writable only by it.
    let hostdir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(hostdir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bind = format!("{}:/host", hostdir.path().display());
    let script = "touch /host/f 2>/dev/null && echo wrote || echo refused; \
                  touch /mine && echo layer-ok";
    let out = remapped(&root, &["run", "--rm", "-v", &bind, &toolbox, "sh", "-c", script]);
    assert_eq!(out, "refused\nlayer-ok\n");
    assert!(!hostdir.path().join("f").exists());
    // Without the remap, container root is host root there.
    let out = root.ok(&["run", "--rm", "-v", &bind, &toolbox, "sh", "-c", script]);
    assert_eq!(out, "wrote\nlayer-ok\n");
    // Its network capabilities are its own: a raw socket (ping) and a
    // privileged port on its network namespace.
    let out = remapped(&root, &["run", "--rm", &toolbox, "sh", "-c", "ping -c1 -W2 127.0.0.1 >/dev/null && echo ping-ok; \
        (httpd -f -p 80 &) ; for i in $(seq 50); do wget -q -O- http://127.0.0.1:80/index.html 2>/dev/null && break; sleep 0.1; done"]);
    assert_eq!(out, "ping-ok\nhello-from-container\n");
}

#[test]
fn bad_remaps_are_refused_at_create() {
    let root = Root::new();
    let toolbox = image("toolbox");
    root.ok(&["pull", "-q", &toolbox]);
    let err = root.fails(&["--userns-remap", "no-such-remap-user", "create", &toolbox]);
    assert!(
        err.contains("no subordinate uid range") && err.contains("/etc/subuid"),
        "{err}"
    );
    for option in ["--privileged", "--network=host"] {
        let err = root.fails(&["--userns-remap", REMAP, "create", option, &toolbox]);
        assert!(
            err.contains("cannot be combined") && err.contains("--userns host"),
            "{err}"
        );
    }
    let err = root.fails(&["create", "--userns", "private", &toolbox]);
    assert!(err.contains("invalid --userns"), "{err}");
    // --userns host opts out.
    let out = root.ok(&[
        "--userns-remap",
        REMAP,
        "run",
        "--rm",
        "--userns",
        "host",
        &toolbox,
        "cat",
        "/proc/self/uid_map",
    ]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "0", "4294967295"]);
    assert!(root.containers().is_empty());
}
