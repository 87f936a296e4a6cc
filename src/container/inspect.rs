//! docker's `inspect` document for a container.

use super::{dir_of, Container, Status};
use crate::Mocker;

/// docker's `inspect` document for a container.
pub fn inspect(mocker: &Mocker, container: &Container) -> serde_json::Value {
    use serde_json::json;
    let record = &container.record;
    let state = &container.state;
    let Some(config) = &container.config else {
        return json!({
            "Id": record.id,
            "Name": format!("/{}", record.name),
            "Created": record.created,
            "State": {"Status": "dead", "Dead": true},
        });
    };
    let process = &config.init.process;
    let ports: serde_json::Map<String, serde_json::Value> = config
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let bound = state
                .ports
                .get(i)
                .filter(|_| state.status == Status::Running)
                .unwrap_or(p);
            (
                format!("{}/{}", p.container_port, p.protocol),
                json!([{"HostIp": p.host_ip.to_string(), "HostPort": bound.host_port.to_string()}]),
            )
        })
        .collect();
    let (ip, gateway, prefix, mac_network) = match &config.endpoint {
        Some(e) => (
            e.address.to_string(),
            e.bridge.subnet.gateway().to_string(),
            e.bridge.subnet.prefix,
            e.bridge.name.clone(),
        ),
        None => (String::new(), String::new(), 0, String::new()),
    };
    let mounts: Vec<serde_json::Value> = config
        .init
        .volumes
        .iter()
        .map(|v| {
            json!({
                "Type": "bind",
                "Source": v.source,
                "Destination": v.target,
                "Mode": if v.read_only { "ro" } else { "" },
                "RW": !v.read_only,
                "Propagation": "rprivate",
            })
        })
        .collect();
    let dir = dir_of(mocker, &record.id);
    let overlay = &config.init.overlay;
    let abs = |p: &str| overlay.base.join(p).display().to_string();
    json!({
        "Id": record.id,
        "Created": record.created,
        "Path": process.args.first(),
        "Args": process.args.get(1..).unwrap_or_default(),
        "State": {
            "Status": state.status.as_str(),
            "Running": state.status == Status::Running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": state.oom_killed,
            "Dead": state.status == Status::Dead,
            "Pid": state.pid,
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": state.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": state.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
        "Image": config.image_id.to_string(),
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": dir.join("ctr.log"),
        "Name": format!("/{}", record.name),
        "RestartCount": 0,
        "Driver": "overlay",
        "HostConfig": {
            "Binds": config.init.volumes.iter().map(|v| format!("{}:{}{}", v.source.display(), v.target, if v.read_only { ":ro" } else { "" })).collect::<Vec<_>>(),
            "NetworkMode": config.network.name(),
            "PortBindings": config.ports.iter().map(|p| (format!("{}/{}", p.container_port, p.protocol), json!([{"HostIp": p.host_ip.to_string(), "HostPort": if p.host_port == 0 { String::new() } else { p.host_port.to_string() }}]))).collect::<serde_json::Map<_, _>>(),
            "AutoRemove": config.auto_remove,
            "LogConfig": {
                "Type": "json-file",
                "Config": config.log_rotation.map(|r| json!({"max-size": r.max_size.to_string(), "max-file": r.max_files.to_string()})).unwrap_or_else(|| json!({})),
            },
            "CapAdd": config.cap_add,
            "CapDrop": config.cap_drop,
            "Privileged": config.init.privileged,
            // docker's: null unless options were given.
            "SecurityOpt": (!config.security_opt.is_empty()).then_some(&config.security_opt),
            "ReadonlyRootfs": config.init.read_only_root,
            "Init": config.init.init,
            "Memory": config.limits.memory.unwrap_or(0),
            "MemorySwap": config.limits.memory_swap.unwrap_or(0),
            "NanoCpus": config.limits.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
            "CpuShares": config.limits.cpu_shares.unwrap_or(0),
            "PidsLimit": config.limits.pids,
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "LowerDir": overlay.lower.iter().map(|l| abs(l)).collect::<Vec<_>>().join(":"),
                "UpperDir": abs(&overlay.upper),
                "WorkDir": abs(&overlay.work),
                "MergedDir": config.init.rootfs,
            },
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": process.hostname,
            "User": process.user,
            "Tty": config.init.tty,
            "OpenStdin": config.open_stdin,
            "Env": process.env,
            "Cmd": process.args,
            "Image": config.image,
            "WorkingDir": process.cwd,
        },
        "NetworkSettings": {
            "IPAddress": ip,
            "IPPrefixLen": prefix,
            "Gateway": gateway,
            "Ports": ports,
            "Networks": {
                config.network.name(): {
                    "IPAddress": ip,
                    "IPPrefixLen": prefix,
                    "Gateway": gateway,
                    "Bridge": mac_network,
                }
            },
        },
    })
}
