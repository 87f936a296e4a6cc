//! Several storage roots on one bridge at once (as root): addresses are
//! handed out host-wide, a published port reaches its own container, and a
//! prune in one root never removes a bridge another root's containers are on.

mod common;

use std::path::Path;

use common::*;

fn toolbox() -> String {
    image("toolbox")
}

/// A root on the bridge `name`/`subnet` (shared with other roots of the
/// same test), with the toolbox image pulled unless `empty`.
fn on_bridge(bridge: &str, subnet: &str, empty: bool) -> Root {
    let mut root = Root::new();
    root.bridge = bridge.to_string();
    root.subnet = subnet.to_string();
    if !empty {
        root.ok(&["pull", "-q", &toolbox()]);
    }
    root
}

/// A bridge name and a /24 of this test's own (`k` tells the tests apart;
/// the pid keeps concurrent runs of the suite apart).
fn shared_bridge(k: u32) -> (String, String) {
    let pid = std::process::id();
    (
        format!("mksh{}x{k}", pid % 10000),
        format!("10.24{k}.{}.0/24", pid % 250),
    )
}

fn address(root: &Root, name: &str) -> String {
    let doc = json(root.ok(&["inspect", name]).as_bytes());
    doc[0]["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("no address for {name}: {doc}"))
        .to_string()
}

fn bridge_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn rules_mention(subnet: &str, bridge: &str) -> bool {
    let nat = std::process::Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .unwrap();
    let filter = std::process::Command::new("iptables")
        .args(["-S", "FORWARD"])
        .output()
        .unwrap();
    stdout(&nat).contains(subnet) || stdout(&filter).contains(&format!(" {bridge} "))
}

#[test]
fn two_roots_on_one_bridge_get_distinct_addresses_and_their_own_pages() {
    let (bridge, subnet) = shared_bridge(1);
    let roots = [on_bridge(&bridge, &subnet, false), on_bridge(&bridge, &subnet, false)];
    // Both roots create and start containers at the same time.
    let ports: Vec<Vec<u16>> = std::thread::scope(|scope| {
        let workers: Vec<_> = roots
            .iter()
            .enumerate()
            .map(|(r, root)| {
                scope.spawn(move || {
                    let mut ports = Vec::new();
                    for i in 0..3 {
                        let port = free_port();
                        root.ok(&[
                            "run",
                            "-d",
                            "--name",
                            &format!("web{i}"),
                            "-p",
                            &format!("127.0.0.1:{port}:80"),
                            &toolbox(),
                            "sh",
                            "-c",
                            &format!("mkdir -p /w && echo page-{r}-{i} > /w/index.html && exec httpd -f -p 80 -h /w"),
                        ]);
                        ports.push(port);
                        // Created, never started: its address is taken too.
                        root.ok(&["create", "--name", &format!("idle{i}"), &toolbox(), "true"]);
                    }
                    ports
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut seen = std::collections::BTreeMap::new();
    for (r, root) in roots.iter().enumerate() {
        for name in ["web0", "web1", "web2", "idle0", "idle1", "idle2"] {
            let ip = address(root, name);
            if let Some(other) = seen.insert(ip.clone(), format!("root {r} {name}")) {
                panic!("{ip} handed to both {other} and root {r} {name}");
            }
        }
    }
    // Every published port answers with its own container's page.
    for (r, ports) in ports.iter().enumerate() {
        for (i, port) in ports.iter().enumerate() {
            let want = format!("page-{r}-{i}");
            wait_until(&format!("{want} on port {port}"), || {
                http_get(*port, "/index.html").is_ok_and(|b| b.contains("page-"))
            });
            let body = http_get(*port, "/index.html").unwrap();
            assert!(body.contains(&want), "port {port} should serve {want}, got: {body}");
        }
    }
}

#[test]
fn a_prune_in_another_root_leaves_a_bridge_in_use() {
    let (bridge, subnet) = shared_bridge(2);
    let running = on_bridge(&bridge, &subnet, false);
    let created = on_bridge(&bridge, &subnet, false);
    let empty = on_bridge(&bridge, &subnet, true);
    running.ok(&["run", "-d", "--name", "up", &toolbox(), "sleep", "1000"]);
    created.ok(&["create", "--name", "idle", &toolbox(), "true"]);
    assert!(bridge_exists(&bridge) && rules_mention(&subnet, &bridge));
    let check_kept = |why: &str| {
        let out = empty.ok(&["system", "prune", "-a", "-f"]);
        assert!(!out.contains("Deleted Networks"), "{why}: {out}");
        empty.ok(&["container", "prune", "-f"]);
        assert!(bridge_exists(&bridge), "{why}: the bridge was removed");
        assert!(
            rules_mention(&subnet, &bridge),
            "{why}: its iptables rules were removed"
        );
    };
    check_kept("a running and a created container");
    running.ok(&["rm", "-f", "up"]);
    check_kept("a created container");
    // An interface of someone else's enslaved to the bridge keeps it, even
    // once no root has an address on it.
    let veth = format!("mkdm{}", std::process::id() % 10000);
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
    };
    ip(&[
        "link",
        "add",
        &veth,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{veth}p"),
    ]);
    ip(&["link", "set", &veth, "master", &bridge]);
    created.ok(&["container", "prune", "-f"]);
    assert!(created.containers().is_empty());
    check_kept("an enslaved interface");
    ip(&["link", "del", &veth]);
    // Nobody left on it: the next prune removes it, and says so once.
    let out = empty.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted Networks:\nbridge"), "{out}");
    assert!(!bridge_exists(&bridge), "bridge left");
    assert!(!rules_mention(&subnet, &bridge), "rules left");
    let out = empty.ok(&["system", "prune", "-a", "-f"]);
    assert!(!out.contains("Deleted Networks"), "{out}");
}

#[test]
fn a_claim_of_a_deleted_root_gives_way_and_a_live_one_does_not() {
    // A /30 has one address for containers.
    let pid = std::process::id();
    let bridge = format!("mksh{}x3", pid % 10000);
    let subnet = format!("10.243.{}.0/30", pid % 250);
    let first = on_bridge(&bridge, &subnet, false);
    let second = on_bridge(&bridge, &subnet, false);
    first.ok(&["create", "--name", "holder", &toolbox(), "true"]);
    let err = second.fails(&["create", "--name", "late", &toolbox(), "true"]);
    assert!(err.contains("no free address"), "{err}");
    // The first root goes away without removing its container.
    std::fs::remove_dir_all(first.path()).unwrap();
    second.ok(&["create", "--name", "late", &toolbox(), "true"]);
    let mut want = subnet.trim_end_matches("0/30").to_string();
    want.push('2');
    assert_eq!(address(&second, "late"), want);
}

#[test]
fn check_repair_reclaims_a_restored_containers_address_or_reports_the_conflict() {
    let pid = std::process::id();
    let bridge = format!("mksh{}x4", pid % 10000);
    let subnet = format!("10.244.{}.0/30", pid % 250);
    let lost = on_bridge(&bridge, &subnet, false);
    let other = on_bridge(&bridge, &subnet, false);
    lost.ok(&["create", "--name", "keeper", &toolbox(), "true"]);
    let addr = address(&lost, "keeper");
    // Its index and its host-wide claim are lost (as after a reboot).
    std::fs::remove_dir_all(lost.path().join("index")).unwrap();
    let claim = Path::new("/run/mocker/ipam").join(&bridge).join(&addr);
    let _ = std::fs::remove_file(&claim);
    other.ok(&["create", "--name", "taker", &toolbox(), "true"]);
    assert_eq!(address(&other, "taker"), addr);
    let out = lost.ok(&["system", "check", "--repair"]);
    assert!(out.contains("restored container keeper"), "{out}");
    assert!(out.contains(&format!("{addr} on bridge {bridge} is held by")), "{out}");
    // Once the other container is gone, a repair claims it back.
    other.ok(&["rm", "taker"]);
    let out = lost.ok(&["system", "check", "--repair"]);
    assert!(out.contains(&format!("claimed {addr} on bridge {bridge}")), "{out}");
    let err = other.fails(&["create", "--name", "taker", &toolbox(), "true"]);
    assert!(err.contains("no free address"), "{err}");
}
