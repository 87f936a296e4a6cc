//! Container lifecycle as root: create/start/ps/stop/kill/rm/logs/inspect/
//! exec/wait/export, the monitor, bridge networking and published ports,
//! and what is left behind (nothing) after each.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn toolbox() -> String {
    image("toolbox")
}

fn pulled() -> Root {
    let root = Root::new();
    root.ok(&["pull", "-q", &toolbox()]);
    root
}

fn inspect(root: &Root, name: &str) -> serde_json::Value {
    let docs = json(root.ok(&["inspect", name]).as_bytes());
    docs[0].clone()
}

/// The STATUS column of container `name`, if `ps -a` lists it.
fn listed_status(root: &Root, name: &str) -> Option<String> {
    let out = root.ok(&["ps", "-a", "--format", "json"]);
    out.lines()
        .map(|l| json(l.as_bytes()))
        .find(|c| c["Names"] == name)
        .map(|c| c["Status"].as_str().unwrap_or_default().to_string())
}

fn status_of(root: &Root, name: &str) -> String {
    listed_status(root, name).unwrap_or_else(|| panic!("{name} not in ps -a"))
}

/// Like `status_of`, but "" while the container is not listed yet.
fn status_of_any(root: &Root, name: &str) -> String {
    listed_status(root, name).unwrap_or_default()
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Everything a container owns outside its directory is gone.
fn assert_no_trace(root: &Root, id: &str) {
    assert!(!root.path().join("containers").join(id).exists(), "container dir left");
    for controller in ["memory", "pids", "cpu", "unified"] {
        let cg = Path::new("/sys/fs/cgroup").join(controller).join("mocker").join(id);
        assert!(!cg.exists(), "cgroup left: {}", cg.display());
    }
    let veth = format!("mk{}", &id[..12]);
    assert!(!Path::new("/sys/class/net").join(&veth).exists(), "veth {veth} left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(id), "a mount of {id} is left");
    let index_actives = root.ok(&["system", "check"]);
    assert!(index_actives.contains("no problems found"), "{index_actives}");
    assert!(
        !std::fs::read_dir(root.path().join("snapshots"))
            .unwrap()
            .flatten()
            .any(|e| std::fs::read_to_string(e.path().join("meta.json")).is_ok_and(|m| m.contains(id))),
        "writable snapshot of {id} left"
    );
}

#[test]
fn lifecycle_create_start_stop_rm() {
    let root = pulled();
    let id = root
        .ok(&[
            "create",
            "--name",
            "app",
            &toolbox(),
            "sh",
            "-c",
            "echo out; echo err >&2; exec sleep 1000",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(status_of(&root, "app"), "Created");
    assert!(root.ok(&["ps", "-q"]).is_empty(), "a created container is not running");
    let err = root.fails(&["create", "--name", "app", &toolbox(), "true"]);
    assert!(err.contains("is already in use by container"), "{err}");

    root.ok(&["start", "app"]);
    assert!(
        status_of(&root, "app").starts_with("Up "),
        "{}",
        status_of(&root, "app")
    );
    assert_eq!(root.ok(&["ps", "-q"]).trim(), &id[..12]);
    // Unique prefixes and names both find it.
    let doc = inspect(&root, &id[..5]);
    assert_eq!(doc["Id"], id.as_str());
    assert_eq!(doc["Name"], "/app");
    assert_eq!(doc["State"]["Running"], true);
    let pid = doc["State"]["Pid"].as_u64().unwrap();
    assert!(alive(pid));
    // Each stream is copied on its own: wait for both, not the first.
    wait_until("both streams in the log", || {
        let logs = root.run(&["logs", "app"]);
        stdout(&logs).contains("out") && stderr(&logs).contains("err")
    });
    let logs = root.run(&["logs", "app"]);
    assert_eq!((stdout(&logs).as_str(), stderr(&logs).as_str()), ("out\n", "err\n"));
    let stamped = root.ok(&["logs", "-t", "app"]);
    let (time, text) = stamped.split_once(' ').unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok() && text == "out\n",
        "{stamped}"
    );
    // The two streams are copied independently, so their order in the log
    // is not fixed; the tail is one line of the two.
    let tail = root.run(&["logs", "--tail", "1", "app"]);
    let lines = format!("{}{}", stdout(&tail), stderr(&tail));
    assert!(lines == "out\n" || lines == "err\n", "{lines}");

    let err = root.fails(&["rm", "app"]);
    assert!(err.contains("container is running"), "{err}");
    // sleep as PID 1 ignores SIGTERM: stop kills it after -t.
    let started = Instant::now();
    root.ok(&["stop", "-t", "1", "app"]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(!alive(pid));
    assert!(
        status_of(&root, "app").starts_with("Exited (137) "),
        "{}",
        status_of(&root, "app")
    );
    assert_eq!(root.ok(&["wait", "app"]).trim(), "137");
    // It starts again.
    root.ok(&["start", "app"]);
    assert!(status_of(&root, "app").starts_with("Up "));
    root.ok(&["rm", "-f", "app"]);
    assert!(root.containers().is_empty());
    assert_no_trace(&root, &id);
    let err = root.fails(&["rm", "app"]);
    assert!(err.contains("No such container: app"), "{err}");

    // With --init, SIGTERM reaches the command (exit 143).
    let id = root
        .ok(&["run", "-d", "--init", &toolbox(), "sleep", "1000"])
        .trim()
        .to_string();
    let ps = root.ok(&["exec", &id, "ps", "-o", "pid,comm"]);
    assert!(ps.contains("    1 mocker-init") && ps.contains("sleep"), "{ps}");
    let started = Instant::now();
    root.ok(&["stop", "-t", "10", &id]);
    assert!(started.elapsed() < Duration::from_secs(5), "SIGTERM was not forwarded");
    assert!(status_of(&root, &inspect(&root, &id)["Name"].as_str().unwrap()[1..]).starts_with("Exited (143)"));
    root.ok(&["container", "prune", "-f"]);
    assert!(root.containers().is_empty());
    assert_no_trace(&root, &id);
}

#[test]
fn run_attached_detached_and_auto_removed() {
    let root = pulled();
    // Foreground: output, exit code, and the container is kept (no --rm).
    let out = root.run(&["run", "--name", "fg", &toolbox(), "sh", "-c", "echo hi; exit 4"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(4), "hi\n"));
    assert!(status_of(&root, "fg").starts_with("Exited (4)"));
    assert_eq!(root.ok(&["logs", "fg"]), "hi\n");
    // Detached --rm: the monitor removes it when it exits.
    let id = root
        .ok(&["run", "-d", "--rm", &toolbox(), "sh", "-c", "sleep 0.3"])
        .trim()
        .to_string();
    wait_until("the --rm container to go", || !root.containers().contains(&id));
    assert_no_trace(&root, &id);
    // `wait` gets a --rm container's code, though the monitor removes it
    // right after.
    let id = root
        .ok(&["run", "-d", "--rm", &toolbox(), "sh", "-c", "sleep 0.3; exit 7"])
        .trim()
        .to_string();
    assert_eq!(root.ok(&["wait", &id]), "7\n");
    wait_until("the waited-for --rm container to go", || {
        !root.containers().contains(&id)
    });
    // Attached --rm whose CLI is killed: the monitor still removes it.
    let mut cli = root
        .command()
        .args(["run", "--rm", "--name", "orphan", &toolbox(), "sleep", "1"])
        .spawn()
        .unwrap();
    wait_until("orphan to run", || status_of_any(&root, "orphan").starts_with("Up"));
    let id = inspect(&root, "orphan")["Id"].as_str().unwrap().to_string();
    cli.kill().unwrap();
    cli.wait().unwrap();
    wait_until("the orphaned --rm container to go", || !root.containers().contains(&id));
    assert_no_trace(&root, &id);
    // Attached --rm whose monitor is killed: the CLI reports 137 and
    // removes it.
    let cli = root
        .command()
        .args(["run", "--rm", "--name", "unmonitored", &toolbox(), "sleep", "100"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("unmonitored to run", || {
        status_of_any(&root, "unmonitored").starts_with("Up")
    });
    let id = inspect(&root, "unmonitored")["Id"].as_str().unwrap().to_string();
    let state = json(&std::fs::read(root.path().join("containers").join(&id).join("state.json")).unwrap());
    let monitor = state["monitor_pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = cli.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137));
    assert!(!root.containers().contains(&id));
    assert_no_trace(&root, &id);
    // logs -f follows until the container exits.
    root.ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        &toolbox(),
        "sh",
        "-c",
        "for i in 1 2 3; do echo $i; sleep 0.2; done",
    ]);
    assert_eq!(root.ok(&["logs", "-f", "counter"]), "1\n2\n3\n");
    // -i passes stdin; -t gives the container a terminal of its own.
    let mut child = root
        .command()
        .args(["run", "--rm", "-i", &toolbox(), "sh", "-c", "read line; echo got:$line"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"typed\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "got:typed\n");
    let out = root.ok(&["run", "--rm", "-t", &toolbox(), "sh", "-c", "tty; echo $TERM"]);
    assert_eq!(out.replace('\r', ""), "/dev/pts/0\nxterm\n");
    // Environment, users from the image's /etc/passwd, --env-file.
    let env_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(env_file.path(), "# comment\nFROM_FILE=yes\n").unwrap();
    let out = root.ok(&[
        "run",
        "--rm",
        "--env-file",
        &env_file.path().display().to_string(),
        "-u",
        "www-data",
        &toolbox(),
        "sh",
        "-c",
        "echo $FROM_FILE $GREETING $HOME; id",
    ]);
    assert_eq!(
        out,
        "yes hello /var/www\nuid=33(www-data) gid=33(www-data) groups=33(www-data)\n"
    );
    let out = root.ok(&["run", "--rm", "-u", "bob", &toolbox(), "id"]);
    assert_eq!(out, "uid=1000(bob) gid=1000(bob) groups=29(audio),1000(bob)\n");
    let out = root.run(&["run", "--rm", "-u", "nobody", &toolbox(), "id"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("unable to find user nobody"), "{}", stderr(&out));
    // /etc/hostname and /etc/hosts are the container's.
    let out = root.ok(&[
        "run",
        "--rm",
        "--hostname",
        "box",
        &toolbox(),
        "sh",
        "-c",
        "cat /etc/hostname; grep -c box /etc/hosts",
    ]);
    assert_eq!(out, "box\n1\n");
}

#[test]
fn exec_enters_the_running_container() {
    let root = pulled();
    root.ok(&[
        "run",
        "-d",
        "--name",
        "target",
        "-e",
        "MODE=test",
        &toolbox(),
        "sleep",
        "1000",
    ]);
    let out = root.ok(&[
        "exec",
        "target",
        "sh",
        "-c",
        "echo $MODE $$; ps -o pid,comm | grep -c sleep; hostname",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    let id = inspect(&root, "target")["Id"].as_str().unwrap().to_string();
    assert!(lines[0].starts_with("test "), "{out}");
    assert_ne!(lines[0], "test 1", "exec must not be PID 1");
    assert_eq!(lines[1], "1", "exec does not see the container's processes: {out}");
    assert_eq!(lines[2], &id[..12]);
    let out = root.run(&["exec", "target", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = root.ok(&["exec", "-u", "bob", "-w", "/tmp", "target", "sh", "-c", "id -u; pwd"]);
    assert_eq!(out, "1000\n/tmp\n");
    // The exec'd process is in the container's cgroup.
    let out = root.ok(&["exec", "target", "cat", "/proc/self/cgroup"]);
    assert!(out.contains(&format!("mocker/{id}")), "{out}");
    let out = root.run(&["exec", "target", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    // -t: a terminal of the container's own devpts; -i feeds it.
    assert_eq!(root.ok(&["exec", "-t", "target", "tty"]), "/dev/pts/0\r\n");
    assert_eq!(stdout(&root.run(&["exec", "target", "tty"])).trim_end(), "not a tty");
    let mut child = root
        .command()
        .args(["exec", "-i", "-t", "target", "sh"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo typed-$((6*7))\nexit 5\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(stdout(&out).contains("typed-42"), "{}", stdout(&out));
    root.ok(&["kill", "target"]);
    wait_until("the kill", || status_of(&root, "target").starts_with("Exited (137)"));
    let err = root.fails(&["exec", "target", "true"]);
    assert!(err.contains("is not running"), "{err}");
    let err = root.fails(&["kill", "target"]);
    assert!(err.contains("is not running"), "{err}");
}

#[test]
fn killing_the_monitor_or_the_container_never_leaves_it_running() {
    let root = pulled();
    let id = root
        .ok(&["run", "-d", "--name", "victim", &toolbox(), "sleep", "1000"])
        .trim()
        .to_string();
    let state: serde_json::Value =
        json(&std::fs::read(root.path().join("containers").join(&id).join("state.json")).unwrap());
    let (monitor, pid) = (state["monitor_pid"].as_u64().unwrap(), state["pid"].as_u64().unwrap());
    // CVE-2019-5736: what runs mocker's code beside a container runs a binary
    // no one can write through /proc/<pid>/exe (a read-only mount, or a
    // sealed memfd).
    let exe = format!("/proc/{monitor}/exe");
    let target = std::fs::read_link(&exe).unwrap().display().to_string();
    let read_only = nix::sys::statvfs::statvfs(exe.as_str())
        .unwrap()
        .flags()
        .contains(nix::sys::statvfs::FsFlags::ST_RDONLY);
    assert!(
        read_only || target.starts_with("/memfd:"),
        "monitor runs a writable binary: {target}"
    );
    let err = std::fs::OpenOptions::new().write(true).open(&exe).unwrap_err();
    assert!(
        matches!(
            err.raw_os_error(),
            Some(nix::libc::EROFS | nix::libc::ETXTBSY | nix::libc::EPERM)
        ),
        "{err}"
    );
    std::process::Command::new("kill")
        .args(["-9", &monitor.to_string()])
        .status()
        .unwrap();
    wait_until("the container to die with its monitor", || !alive(pid));
    assert!(
        status_of(&root, "victim").starts_with("Exited (137)"),
        "{}",
        status_of(&root, "victim")
    );
    assert_eq!(inspect(&root, "victim")["State"]["Running"], false);
    root.ok(&["rm", "victim"]);
    assert_no_trace(&root, &id);

    root.ok(&["run", "-d", "--name", "victim2", &toolbox(), "sleep", "1000"]);
    let pid = inspect(&root, "victim2")["State"]["Pid"].as_u64().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_until("the monitor to record the kill", || {
        status_of(&root, "victim2").starts_with("Exited (137)")
    });
    // An OOM kill says so.
    root.ok(&[
        "run",
        "-d",
        "--name",
        "hog",
        "-m",
        "8m",
        "--memory-swap",
        "8m",
        &toolbox(),
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(root.ok(&["wait", "hog"]).trim(), "137");
    let doc = inspect(&root, "hog");
    assert_eq!(
        (doc["State"]["OOMKilled"].as_bool(), doc["State"]["ExitCode"].as_i64()),
        (Some(true), Some(137))
    );
}

#[test]
fn bridge_network_ports_and_container_to_container() {
    let root = pulled();
    let port = free_port();
    let id = root
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            &toolbox(),
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ])
        .trim()
        .to_string();
    let doc = inspect(&root, "web");
    let ip = doc["NetworkSettings"]["IPAddress"].as_str().unwrap().to_string();
    let subnet_prefix = root.subnet.rsplit_once('.').unwrap().0;
    assert!(ip.starts_with(subnet_prefix), "{ip} not in {}", root.subnet);
    assert_eq!(
        doc["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    wait_until("httpd to serve", || {
        http_get(port, "/index.html").is_ok_and(|b| b.contains("hello-from-container"))
    });
    assert!(root.ok(&["ps"]).contains(&format!("127.0.0.1:{port}->80/tcp")));
    // UDP: the proxy relays each client's datagrams and the replies.
    let udp_port = free_port();
    root.ok(&[
        "run",
        "-d",
        "--name",
        "echo",
        "-p",
        &format!("127.0.0.1:{udp_port}:7/udp"),
        &toolbox(),
        "udp-echo",
        "7",
    ]);
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut reply = [0u8; 64];
    wait_until("the UDP echo through the proxy", || {
        client.send_to(b"ping", ("127.0.0.1", udp_port)).unwrap();
        client.recv(&mut reply).is_ok_and(|n| &reply[..n] == b"ping")
    });
    let second = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    second.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    second.send_to(b"pong", ("127.0.0.1", udp_port)).unwrap();
    let n = second.recv(&mut reply).unwrap();
    assert_eq!(&reply[..n], b"pong");
    root.ok(&["rm", "-f", "echo"]);
    // A second container reaches the first by address over the bridge.
    let out = root.ok(&[
        "run",
        "--rm",
        &toolbox(),
        "wget",
        "-qO-",
        &format!("http://{ip}/index.html"),
    ]);
    assert_eq!(out, "hello-from-container\n");
    let out = root.ok(&["run", "--rm", &toolbox(), "sh", "-c", "ip -4 route; ls /sys/class/net"]);
    assert!(out.contains("default via"), "{out}");
    assert!(out.contains("eth0") && out.contains("lo"), "{out}");
    let out = root.ok(&["run", "--rm", "--network", "none", &toolbox(), "ls", "/sys/class/net"]);
    assert_eq!(out, "lo\n");
    // A taken port fails the run with one error and leaves nothing.
    let before = root.containers();
    let out = root.run(&["run", "-d", "-p", &format!("127.0.0.1:{port}:80"), &toolbox(), "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("port is already allocated"), "{}", stderr(&out));
    assert_eq!(root.containers(), before);
    let err = root.fails(&["run", "--network", "none", "-p", "80", &toolbox(), "true"]);
    assert!(err.contains("bridge network"), "{err}");
    root.ok(&["rm", "-f", "web"]);
    assert!(http_get(port, "/").is_err(), "the port is still published");
    assert_no_trace(&root, &id);
    // The bridge stays (as docker0 does) until a prune finds it unused.
    assert!(Path::new("/sys/class/net").join(&root.bridge).exists());
    root.ok(&["container", "prune", "-f"]);
    assert!(!Path::new("/sys/class/net").join(&root.bridge).exists(), "bridge left");
    let rules = std::process::Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .unwrap();
    assert!(!stdout(&rules).contains(&root.subnet), "masquerade rule left");
}

#[test]
fn images_in_use_and_export() {
    let root = pulled();
    root.ok(&[
        "run",
        "--name",
        "writer",
        &toolbox(),
        "sh",
        "-c",
        "echo made > /made-here; rm -f /www/index.html",
    ]);
    let err = root.fails(&["rmi", &toolbox()]);
    assert!(
        err.contains("must force") && err.contains("is using its referenced image"),
        "{err}"
    );
    let tar = root.command().args(["export", "writer"]).output().unwrap();
    assert!(tar.status.success(), "{}", stderr(&tar));
    let mut archive = tar::Archive::new(&tar.stdout[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("made-here")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("bin/busybox")));
    assert!(
        !names.iter().any(|n| n.ends_with("www/index.html")),
        "deleted file exported"
    );
    // -f untags; the container keeps working from its layers.
    root.ok(&["rmi", "-f", &toolbox()]);
    root.ok(&["start", "-a", "writer"]);
    root.ok(&["rm", "writer"]);
    root.ok(&["system", "prune", "-af"]);
    root.assert_healthy();
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let root = pulled();
    // A bridge subnet that overlaps one of the host's routes (read, never
    // changed) is refused before anything is created.
    let routes = std::fs::read_to_string("/proc/net/route").unwrap();
    let (dest, mask) = routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f[1] != "00000000")
        .map(|f| {
            (
                u32::from_str_radix(f[1], 16).unwrap(),
                u32::from_str_radix(f[7], 16).unwrap(),
            )
        })
        .expect("the host has a non-default route");
    let network = std::net::Ipv4Addr::from(u32::from_be(dest));
    let prefix = mask.count_ones();
    let out = root
        .command()
        .env("MOCKER_BRIDGE_SUBNET", format!("{network}/{prefix}"))
        .args(["run", "--rm", &toolbox(), "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("conflicts with the host route"),
        "{}",
        stderr(&out)
    );
    assert!(!Path::new("/sys/class/net").join(&root.bridge).exists());
    assert!(root.containers().is_empty());
    for (args, expected) in [
        (vec!["create", "--memory", "lots", &toolbox()], "invalid size"),
        (vec!["create", "--cpus=-1", &toolbox()], "cpus"),
        (
            vec!["create", "--name", "bad name", &toolbox()],
            "invalid container name",
        ),
        (vec!["create", "-p", "http", &toolbox()], "invalid port mapping"),
        (
            vec!["create", "--network", "nowhere", &toolbox()],
            "network nowhere not found",
        ),
        (vec!["start", "nothing"], "No such container: nothing"),
        (vec!["logs", "nothing"], "No such container: nothing"),
    ] {
        let err = root.fails(&args);
        assert!(err.to_lowercase().contains(&expected.to_lowercase()), "{args:?}: {err}");
    }
    let out = root.run(&["run", "--rm", &toolbox(), "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(root.containers().is_empty());
    assert!(std::fs::read_dir(root.path().join("containers"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn bad_values_exit_125_with_one_line_naming_them() {
    let root = pulled();
    let toolbox = toolbox();
    let long_hostname = "h".repeat(65);
    let upper = image("BusyBox");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["create", "--memory", "-1", &toolbox], "memory"),
        (vec!["create", "--cpus", "-1", &toolbox], "--cpus"),
        (vec!["create", "--cpus", "abc", &toolbox], "--cpus"),
        (vec!["create", "-c", "-5", &toolbox], "--cpu-shares"),
        (vec!["create", "--pids-limit", "abc", &toolbox], "--pids-limit"),
        (vec!["create", "--no-such-flag", &toolbox], "--no-such-flag"),
        (vec!["create", "-e", "=x", &toolbox], "invalid environment variable: =x"),
        (
            vec!["create", "--hostname", &long_hostname, &toolbox],
            "invalid hostname",
        ),
        (vec!["create", "-v", "/tmp:/proc", &toolbox], "invalid volume"),
        (vec!["create", "-v", "/tmp:/sys/", &toolbox], "invalid volume"),
        (vec!["create", "-v", "/tmp://dev", &toolbox], "invalid volume"),
        (vec!["create", "-v", "/tmp:/proc/sys", &toolbox], "inside /proc"),
        (vec!["run", "--rm", &upper, "true"], "must be lowercase"),
        (vec!["run", "--rm", "../x", "true"], "invalid reference format"),
    ];
    for (args, expected) in cases {
        let out = root.run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("Error: ") && err.contains(expected), "{args:?}: {err}");
    }
    assert!(root.containers().is_empty());
    // A root that cannot be created names the OS error once.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mocker"))
        .args(["--root", "/proc/no/such/root", "images"])
        .output()
        .unwrap();
    assert_eq!(
        stderr(&out).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&out)
    );
}

#[test]
fn kill_9_during_create_start_and_rm_leaves_a_consistent_state() {
    use std::os::unix::process::ExitStatusExt;
    let root = pulled();
    // Kills that hit a command still running (not one already done).
    let mut landed = 0;
    for delay_ms in [2u64, 5, 10, 20, 40, 80, 160] {
        for args in [
            vec!["run", "-d", &toolbox() as &str, "sleep", "100"],
            vec!["create", &toolbox() as &str, "true"],
        ] {
            let mut child = root
                .command()
                .args(&args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay_ms));
            let _ = child.kill();
            landed += usize::from(child.wait().unwrap().signal() == Some(9));
            // Every command works afterwards and rm -f cleans up everything.
            root.ok(&["ps", "-a"]);
        }
        for id in root.containers() {
            let mut rm = root
                .command()
                .args(["rm", "-f", &id])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay_ms / 2));
            let _ = rm.kill();
            landed += usize::from(rm.wait().unwrap().signal() == Some(9));
        }
        for id in root.containers() {
            root.ok(&["rm", "-f", &id]);
        }
        // A create killed before its record left a directory no `rm` can
        // name (and maybe no container was left to `rm`): prune takes it.
        root.ok(&["container", "prune", "-f"]);
        assert!(root.containers().is_empty());
        let left: Vec<_> = std::fs::read_dir(root.path().join("containers"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "container files left after kill -9 at {delay_ms} ms: {left:?}"
        );
        root.assert_healthy();
    }
    assert!(
        landed >= 5,
        "only {landed} kills hit a running command: the sweep proved little"
    );
}

#[test]
fn a_lost_index_gives_containers_back_with_their_changes() {
    let root = pulled();
    root.ok(&[
        "run",
        "--name",
        "keeper",
        "--network",
        "none",
        &toolbox(),
        "sh",
        "-c",
        "echo kept > /data",
    ]);
    let id = inspect(&root, "keeper")["Id"].as_str().unwrap().to_string();
    std::fs::remove_dir_all(root.path().join("index")).unwrap();
    let out = root.run(&["system", "check"]);
    assert!(stdout(&out).contains("is not in the index"), "{}", stdout(&out));
    let out = root.ok(&["system", "check", "--repair"]);
    assert!(out.contains("restored container keeper"), "{out}");
    // The image comes back untagged (tags lived only in the index); the
    // container, its name and its writable layer come back whole.
    assert_eq!(inspect(&root, "keeper")["Id"], id.as_str());
    let exported = root.command().args(["export", "keeper"]).output().unwrap();
    let mut archive = tar::Archive::new(&exported.stdout[..]);
    let data = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().ends_with("data"))
        .map(|mut e| {
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            s
        });
    assert_eq!(data.as_deref(), Some("kept\n"));
    // And it runs again.
    root.ok(&["start", "-a", "keeper"]);
    assert!(status_of(&root, "keeper").starts_with("Exited (0)"));
    root.ok(&["rm", "keeper"]);
    root.assert_healthy();
}

#[test]
fn signals_to_an_attached_run_reach_the_container() {
    let root = pulled();
    // docker's sig-proxy: SIGTERM to `mocker run` is forwarded to PID 1.
    let mut child = root
        .command()
        .args([
            "run",
            "--rm",
            "--name",
            "proxied",
            "--network",
            "none",
            &toolbox(),
            "sh",
            "-c",
            "trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    // Read on a thread: a signal that is not forwarded must fail the test,
    // not hang it.
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        let _ = sent.send(rest);
    });
    let rest = received
        .recv_timeout(Duration::from_secs(20))
        .expect("SIGTERM never reached the container");
    assert_eq!(rest, "got TERM\n");
    assert_eq!(child.wait().unwrap().code(), Some(3));
    assert!(root.containers().is_empty(), "--rm left the container");
}

/// Runs `args` on a new terminal (its controlling one, as a shell's would
/// be), resizes that terminal, and returns once the container printed the
/// new size — `stty size` after every line it reads.
fn follows_a_resize(root: &Root, args: &[&str]) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let size = |rows, cols| nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size(24, 80)), None).unwrap();
    // Ours alone: a master end inherited by the CLI would keep the
    // terminal open after the test.
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).unwrap();
    }
    let slave = std::fs::File::from(pty.slave);
    let mut cli = root.command();
    cli.args(args)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: setsid and an ioctl between fork and exec.
    unsafe {
        cli.pre_exec(|| {
            nix::unistd::setsid()?;
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut cli = cli.spawn().unwrap();
    drop(slave);
    let master = std::fs::File::from(pty.master);
    let (seen_tx, seen) = std::sync::mpsc::channel::<String>();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen_tx.send(all.clone()).is_err() {
                break;
            }
        }
    });
    let wait_for = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match seen.recv_timeout(left) {
                Ok(all) if all.contains(text) => return,
                Ok(_) => {}
                Err(_) => panic!("{text:?} never appeared on the terminal"),
            }
        }
    };
    wait_for("24 80");
    // SAFETY: TIOCSWINSZ reads a winsize; the kernel sends SIGWINCH to
    // the terminal's foreground process group: the CLI's.
    assert_eq!(
        unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, &size(40, 132)) },
        0
    );
    let mut writer = master.try_clone().unwrap();
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let nudger = std::thread::spawn(move || {
        // A line now and then: the resize travels by signal, the line by
        // the terminal, and the order in which they arrive is not ours.
        while done.recv_timeout(Duration::from_millis(200)).is_err() {
            if writer.write_all(b"\n").is_err() {
                break;
            }
        }
    });
    wait_for("40 132");
    done_tx.send(()).unwrap();
    nudger.join().unwrap();
    let mut writer = master.try_clone().unwrap();
    writer.write_all(b"q\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = cli.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = cli.kill();
            panic!("{args:?} did not end after q");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{args:?}");
}

#[test]
fn a_terminal_follows_the_window_size() {
    let root = pulled();
    let image = toolbox();
    let script = "stty size; while read line; do stty size; [ \"$line\" = q ] && exit 0; done";
    follows_a_resize(
        &root,
        &["run", "-it", "--rm", "--name", "sized", &image, "sh", "-c", script],
    );
    root.ok(&["run", "-d", "--name", "host", &image, "sleep", "1000"]);
    follows_a_resize(&root, &["exec", "-it", "host", "sh", "-c", script]);
    root.ok(&["rm", "-f", "host"]);
    wait_until("the --rm container to go", || root.containers().is_empty());
}

#[test]
fn ps_and_images_filter_and_format_like_docker() {
    let root = pulled();
    let image = toolbox();
    root.ok(&["run", "-d", "--name", "web-1", &image, "sleep", "1000"]);
    root.run(&["run", "--name", "failed", &image, "sh", "-c", "exit 3"]);
    root.ok(&["create", "--name", "fresh", &image, "true"]);
    let names = |args: &[&str]| {
        let mut all = vec!["ps", "--format", "{{.Names}}"];
        all.extend_from_slice(args);
        let mut names: Vec<String> = root.ok(&all).lines().map(str::to_string).collect();
        names.sort();
        names
    };
    assert_eq!(names(&[]), ["web-1"]);
    // A status filter lists stopped containers without -a, as docker's.
    assert_eq!(names(&["-f", "status=exited"]), ["failed"]);
    assert_eq!(
        names(&["-f", "status=exited", "-f", "status=created"]),
        ["failed", "fresh"]
    );
    assert_eq!(names(&["-a", "-f", "exited=3"]), ["failed"]);
    assert_eq!(names(&["-a", "-f", "name=^web"]), ["web-1"]);
    assert_eq!(names(&["-a", "-f", "name=e", "-f", "status=created"]), ["fresh"]);
    assert_eq!(
        names(&["-a", "-f", &format!("ancestor={image}")]),
        ["failed", "fresh", "web-1"]
    );
    let id = inspect(&root, "failed")["Id"].as_str().unwrap().to_string();
    assert_eq!(names(&["-a", "-f", &format!("id={}", &id[..10])]), ["failed"]);
    assert_eq!(root.ok(&["ps", "-aq", "-f", "name=fresh"]).trim().len(), 12);
    // A newline in a command is escaped, as docker quotes it: one row.
    root.ok(&["create", "--name", "two-lines", &image, "sh", "-c", "true\ntrue"]);
    let out = root.ok(&["ps", "-a", "-f", "name=two-lines"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains(r#""sh -c true\ntrue""#), "{out}");
    root.ok(&["rm", "two-lines"]);
    // --last/--latest: the newest, whatever their state.
    assert_eq!(names(&["-l"]), ["fresh"]);
    assert_eq!(names(&["-n", "2"]), ["failed", "fresh"]);
    // Templates: fields, json, and `table` with docker's headers.
    let out = root.ok(&[
        "ps",
        "-f",
        "name=web",
        "--format",
        "{{.Names}}: {{.State}} {{json .Names}}",
    ]);
    assert_eq!(out, "web-1: running \"web-1\"\n");
    let out = root.ok(&[
        "ps",
        "-a",
        "-f",
        "status=created",
        "--format",
        "table {{.Names}}\\t{{.State}}",
    ]);
    assert_eq!(out, "NAMES     STATE\nfresh     created\n");
    // Bad filters and templates: one clear error, exit 1.
    for (args, expected) in [
        (vec!["ps", "-f", "colour=red"], "invalid filter 'colour'"),
        (vec!["ps", "-f", "status=sleeping"], "invalid filter 'status=sleeping'"),
        (vec!["ps", "-f", "status"], "bad format of filter"),
        (vec!["ps", "--format", "{{.Nope}}"], "can't evaluate field Nope"),
        (
            vec!["images", "-f", "dangling=maybe"],
            "invalid filter 'dangling=maybe'",
        ),
    ] {
        let out = root.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }
    // images: a tagged image is not dangling; a reference glob; templates.
    assert_eq!(root.ok(&["images", "-q", "-f", "dangling=true"]), "");
    let repo = image.trim_end_matches(":latest");
    let out = root.ok(&[
        "images",
        "-f",
        "reference=*/toolbox",
        "--format",
        "{{.Repository}} {{.Tag}}",
    ]);
    assert_eq!(out, format!("{repo} latest\n"));
    assert_eq!(
        root.ok(&["images", "-f", "reference=*/nothing*", "--format", "{{.ID}}"]),
        ""
    );
    root.ok(&["rm", "-f", "web-1", "failed", "fresh"]);
}

#[test]
fn logs_rotate_with_log_opts() {
    let root = pulled();
    let out = root.run(&[
        "run",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        "--name",
        "chatty",
        &toolbox(),
        "sh",
        "-c",
        "for i in $(seq 1 100); do echo line $i; done",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = inspect(&root, "chatty")["Id"].as_str().unwrap().to_string();
    let dir = root.path().join("containers").join(&id);
    for file in ["ctr.log", "ctr.log.1"] {
        let size = std::fs::metadata(dir.join(file)).unwrap().len();
        assert!(size > 0 && size <= 1024, "{file}: {size} bytes");
    }
    assert!(!dir.join("ctr.log.2").exists());
    let log_config = &inspect(&root, "chatty")["HostConfig"]["LogConfig"];
    assert_eq!(log_config["Config"]["max-file"], "2", "{log_config}");
    // What is kept comes back in order and ends with the last line.
    let logs = root.ok(&["logs", "chatty"]);
    let numbers: Vec<u32> = logs
        .lines()
        .map(|l| l.trim_start_matches("line ").parse().unwrap())
        .collect();
    assert_eq!(numbers.last(), Some(&100));
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert!(numbers.len() < 100 && numbers.len() > 10, "{numbers:?}");
    assert_eq!(root.ok(&["logs", "--tail", "2", "chatty"]), "line 99\nline 100\n");
    let err = root.run(&["create", "--log-opt", "colour=red", &toolbox(), "true"]);
    assert_eq!(err.status.code(), Some(125));
    assert!(stderr(&err).contains("unknown log opt 'colour'"), "{}", stderr(&err));
    root.ok(&["rm", "chatty"]);
    assert!(root.containers().is_empty());
}
