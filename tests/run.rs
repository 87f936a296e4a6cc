//! `mocker run --rm`: a real container from a pulled image, as root: what
//! the process sees and what isolates it.

mod common;

use common::*;

fn pulled() -> Root {
    let root = Root::new();
    root.ok(&["pull", "-q", &image("busybox")]);
    root
}

fn run(root: &Root, args: &[&str]) -> (i32, String, String) {
    let busybox = image("busybox");
    let mut all = vec!["run", "--rm"];
    let (flags, command): (Vec<&str>, Vec<&str>) = match args.iter().position(|a| *a == "--") {
        Some(i) => (args[..i].to_vec(), args[i + 1..].to_vec()),
        None => (Vec::new(), args.to_vec()),
    };
    all.extend(flags);
    all.push(&busybox);
    all.extend(command);
    let out = root.run(&all);
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

/// `run --rm FLAGS busybox true` must fail as docker does (125).
fn refused(root: &Root, flags: &[&str]) -> std::process::Output {
    let busybox = image("busybox");
    let mut args = vec!["run", "--rm"];
    args.extend(flags);
    args.extend([busybox.as_str(), "true"]);
    let out = root.run(&args);
    assert_eq!(out.status.code(), Some(125), "{flags:?}");
    out
}

#[test]
fn runs_the_command_and_returns_its_exit_code() {
    let root = pulled();
    assert_eq!(
        run(&root, &["echo", "hello"]),
        (0, "hello\n".to_string(), String::new())
    );
    assert_eq!(run(&root, &["sh", "-c", "exit 3"]).0, 3);
    let (code, _, err) = run(&root, &["no-such-command"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("executable file not found"), "{err}");
    // One line: PID 1 exits cleanly after the failed exec (it once closed
    // fds twice there, and a debug build aborted with a second message).
    assert_eq!(err.lines().count(), 1, "{err}");
    let (code, _, err) = run(&root, &["/etc/passwd"]);
    assert_eq!(code, 126, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // A missing image is pulled first (from the test registry only).
    let out = root.run(&["run", "--rm", &image("no-such-image"), "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("Unable to find image"), "{}", stderr(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    // A failed run leaves no container behind.
    assert!(root.containers().is_empty(), "{:?}", root.containers());
}

#[test]
fn the_command_is_pid_1_and_sees_nothing_of_the_host() {
    let root = pulled();
    let script = "echo pid=$$; ls /proc | grep -c '^[0-9]'; ls /sys/class/net; cat /proc/self/mounts";
    let (code, out, err) = run(&root, &["--network", "none", "--", "sh", "-c", script]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("pid=1"));
    let processes: usize = lines.next().unwrap().trim().parse().unwrap();
    assert!(processes <= 3, "host processes are visible: {processes}");
    assert_eq!(
        lines.next(),
        Some("lo"),
        "network namespace has more than loopback: {out}"
    );
    let mounts: Vec<&str> = lines.collect();
    let root_path = root.path().display().to_string();
    assert!(
        mounts.iter().all(|m| !m.contains(&root_path)),
        "host paths visible in mounts: {mounts:?}"
    );
    let mounted = |point: &str, fstype: &str| {
        mounts.iter().find(|m| {
            let fields: Vec<&str> = m.split(' ').collect();
            fields.len() > 3 && fields[1] == point && fields[2] == fstype
        })
    };
    for (point, fstype) in [
        ("/", "overlay"),
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/sys", "sysfs"),
    ] {
        assert!(
            mounted(point, fstype).is_some(),
            "{point} ({fstype}) is not mounted: {mounts:?}"
        );
    }
    let sys_options = mounted("/sys", "sysfs").unwrap().split(' ').nth(3).unwrap().to_string();
    assert!(
        sys_options.split(',').any(|o| o == "ro"),
        "/sys is writable: {sys_options}"
    );
    let (_, flags, _) = run(&root, &["cat", "/sys/class/net/lo/flags"]);
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "loopback is down");
    let (_, devs, _) = run(&root, &["ls", "/dev"]);
    for node in ["null", "zero", "urandom", "tty", "pts", "shm"] {
        assert!(devs.lines().any(|l| l == node), "/dev/{node} missing: {devs}");
    }
}

#[test]
fn env_workdir_user_and_hostname() {
    let root = pulled();
    let (code, out, err) = run(
        &root,
        &[
            "-e",
            "FOO=bar",
            "-w",
            "/work/here",
            "-u",
            "1000:1001",
            "--hostname",
            "box",
            "--",
            "sh",
            "-c",
            "echo $FOO; pwd; id -u; id -g; hostname; echo $PATH",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..5], &["bar", "/work/here", "1000", "1001", "box"]);
    assert!(lines[5].contains("/bin"), "{out}");
    let (_, out, _) = run(&root, &["--entrypoint", "echo", "--", "from", "entrypoint"]);
    assert_eq!(out, "from entrypoint\n");
}

#[test]
fn containers_are_removed_and_leave_nothing_behind() {
    let root = pulled();
    let numbered = || {
        list(&root.path().join("snapshots"))
            .into_iter()
            .filter(|n| n.parse::<u64>().is_ok())
            .count()
    };
    let layers = numbered();
    let (code, _, err) = run(&root, &["sh", "-c", "echo data > /created && cat /created"]);
    assert_eq!(code, 0, "{err}");
    // A fresh container does not see what the last one wrote.
    let (code, _, _) = run(&root, &["cat", "/created"]);
    assert_ne!(code, 0);
    assert_eq!(numbered(), layers, "a writable layer was left behind");
    assert!(list(&root.path().join("containers")).is_empty());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&root.path().display().to_string()),
        "a mount was left on the host"
    );
    root.assert_healthy();
}

fn status_field(root: &Root, flags: &[&str], field: &str) -> String {
    let mut args: Vec<&str> = flags.to_vec();
    args.extend(["--", "cat", "/proc/self/status"]);
    let (code, out, err) = run(root, &args);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with(field)).unwrap_or_default();
    line.split_whitespace().nth(1).unwrap_or_default().to_string()
}

#[test]
fn docker_default_privileges() {
    let root = pulled();
    // docker's default capability set, in /proc's hex form.
    assert_eq!(status_field(&root, &[], "CapEff:"), "00000000a80425fb");
    assert_eq!(status_field(&root, &[], "CapBnd:"), "00000000a80425fb");
    assert_eq!(status_field(&root, &[], "NoNewPrivs:"), "1");
    assert_eq!(
        status_field(&root, &["--cap-drop", "ALL"], "CapEff:"),
        "0000000000000000"
    );
    assert_eq!(status_field(&root, &["-u", "1000"], "CapEff:"), "0000000000000000");
    let added = u64::from_str_radix(&status_field(&root, &["--cap-add", "NET_ADMIN"], "CapEff:"), 16).unwrap();
    assert_eq!(added, 0xa80425fb | (1 << 12), "CAP_NET_ADMIN is bit 12");
    let privileged = u64::from_str_radix(&status_field(&root, &["--privileged"], "CapEff:"), 16).unwrap();
    assert!(privileged & (1 << 21) != 0, "--privileged lacks CAP_SYS_ADMIN");
    assert_eq!(status_field(&root, &["--privileged"], "NoNewPrivs:"), "0");
    let err = root.run(&["run", "--rm", "--cap-add", "FLY", &image("busybox"), "true"]);
    assert_eq!(err.status.code(), Some(125));
    // Device nodes may be made but, beyond docker's allow-list, not opened
    // (the host's disk here; the node's existence proves mknod worked).
    let script = "busybox mknod /dev/disk b 8 0 && cat /dev/disk > /dev/null; echo opened=$?; echo x > /dev/null && echo null-ok";
    let (code, out, err) = run(&root, &["--network", "none", "--", "sh", "-c", script]);
    assert_eq!((code, out.as_str()), (0, "opened=1\nnull-ok\n"));
    assert!(err.contains("Operation not permitted"), "{err}");
    let (_, out, err) = run(&root, &["--privileged", "--network", "none", "--", "sh", "-c", script]);
    assert!(
        !err.contains("Operation not permitted"),
        "--privileged is held to the allow-list: {out} {err}"
    );
}

#[test]
fn masked_and_read_only_kernel_paths() {
    let root = pulled();
    let script = "ls -A /sys/firmware | wc -l; cat /proc/timer_list | wc -c; echo x > /proc/sys/kernel/domainname && echo writable";
    let (_, out, err) = run(&root, &["sh", "-c", script]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(&lines[..2], &["0", "0"], "masked paths are readable: {out}");
    assert!(
        !out.contains("writable") && err.contains("Read-only file system"),
        "{out} {err}"
    );
}

/// Container cgroups under every mounted hierarchy (v1 controllers or v2).
fn container_cgroups() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let Ok(entries) = std::fs::read_dir(base) else { continue };
        for controller in entries.flatten() {
            let dir = controller.path().join("mocker");
            let candidates = if controller.path().join("mocker").is_dir() {
                vec![dir]
            } else {
                Vec::new()
            };
            for parent in candidates {
                for child in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                    if child.path().is_dir() {
                        out.push(child.path());
                    }
                }
            }
        }
    }
    out
}

#[test]
fn cgroup_limits_are_enforced_and_removed() {
    let root = pulled();
    // Over its memory limit, the container is OOM-killed: 137, like docker.
    let (code, out, _) = run(
        &root,
        &[
            "-m",
            "20m",
            "--",
            "sh",
            "-c",
            "head -c 60000000 /dev/zero > /dev/shm/fill; echo survived",
        ],
    );
    assert_eq!(code, 137, "{out}");
    assert!(!out.contains("survived"));
    // A fork bomb under --pids-limit is contained.
    let (_, _, err) = run(
        &root,
        &[
            "--pids-limit",
            "8",
            "--",
            "sh",
            "-c",
            "i=0; while [ $i -lt 20 ]; do sleep 1 & i=$((i+1)); done; wait",
        ],
    );
    assert!(err.contains("can't fork"), "{err}");
    // --cpus becomes a CFS quota while the container runs.
    // It runs until told to stop, so the search below cannot miss it.
    let mut child = root
        .command()
        .args(["run", "--rm", "--name", "cpu-quota", "--cpus", "0.5", &image("busybox")])
        .args(["sh", "-c", "until [ -e /tmp/go ]; do sleep 1; done"])
        .spawn()
        .unwrap();
    // Other tests run containers at the same time: look for ours by its quota.
    let mut ours = None;
    wait_until("a container cgroup with a 0.5 CPU quota", || {
        ours = container_cgroups().into_iter().find(|c| {
            let quota = std::fs::read_to_string(c.join("cpu.cfs_quota_us"))
                .or_else(|_| std::fs::read_to_string(c.join("cpu.max")));
            quota.is_ok_and(|q| q.trim() == "50000" || q.trim().starts_with("50000 "))
        });
        ours.is_some()
    });
    // The cgroup exists a moment before the container is recorded running.
    wait_until("cpu-quota to be running", || {
        let out = root.ok(&["inspect", "cpu-quota"]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["State"]["Status"] == "running"
    });
    root.ok(&["exec", "cpu-quota", "touch", "/tmp/go"]);
    assert!(child.wait().unwrap().success());
    let ours = ours.expect("found above");
    let id = ours.file_name().unwrap().to_owned();
    let left: Vec<_> = container_cgroups()
        .into_iter()
        .filter(|c| c.file_name() == Some(&id))
        .collect();
    assert!(left.is_empty(), "the container's cgroups were left behind: {left:?}");
    for bad in [
        &["-m", "1k"][..],
        &["--cpus", "0"],
        &["-m", "lots"],
        &["--pids-limit", "0"],
    ] {
        let out = refused(&root, bad);
        assert!(stderr(&out).starts_with("Error: "), "{}", stderr(&out));
    }
}

#[test]
fn volumes_read_only_root_and_network_modes() {
    let root = pulled();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), b"from the host\n").unwrap();
    let dir = host.path().display().to_string();
    let (code, out, err) = run(
        &root,
        &[
            "-v",
            &format!("{dir}:/data"),
            "--",
            "sh",
            "-c",
            "cat /data/in; echo from the container > /data/out",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "from the host\n"), "{err}");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "from the container\n"
    );
    let (code, _, err) = run(
        &root,
        &[
            "-v",
            &format!("{dir}:/data:ro"),
            "--",
            "sh",
            "-c",
            "echo x > /data/nope",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!host.path().join("nope").exists());
    let (_, out, _) = run(
        &root,
        &["-v", &format!("{dir}/in:/etc/single:ro"), "--", "cat", "/etc/single"],
    );
    assert_eq!(out, "from the host\n");

    let (_, out, err) = run(
        &root,
        &[
            "--read-only",
            "--",
            "sh",
            "-c",
            "touch /x; echo tmp > /dev/shm/y && cat /dev/shm/y",
        ],
    );
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(out, "tmp\n");

    let host_interfaces = std::fs::read_dir("/sys/class/net").unwrap().count();
    let (_, out, _) = run(&root, &["--network", "host", "--", "ls", "/sys/class/net"]);
    assert_eq!(out.lines().count(), host_interfaces, "{out}");
    let (_, out, _) = run(&root, &["--network", "none", "--", "ls", "/sys/class/net"]);
    assert_eq!(out.trim(), "lo");
    for bad in [&["--network", "weird"][..], &["-v", "named:/x"], &["-v", "/tmp:/x:rx"]] {
        refused(&root, bad);
    }
}
