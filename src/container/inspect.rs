//! docker's `inspect` document for a container, one part per function.

use serde_json::{json, Value};

use super::config::ContainerConfig;
use super::lookup::Container;
use super::paths::dir_of;
use super::state::State;
use super::state::Status;
use crate::timestamp;
use crate::Mocker;

/// docker's `inspect` document for a container.
pub fn inspect(mocker: &Mocker, container: &Container) -> Value {
    let record = &container.record;
    let state = &container.state;
    let Some(config) = &container.config else {
        return json!({
            "Id": record.id,
            "Name": format!("/{}", record.name),
            "Created": timestamp::format(&record.created),
            "State": {"Status": "dead", "Dead": true},
        });
    };
    let process = &config.init.process;
    let dir = dir_of(mocker, &record.id);
    json!({
        "Id": record.id,
        "Created": timestamp::format(&record.created),
        "Path": process.args.first(),
        "Args": process.args.get(1..).unwrap_or_default(),
        "State": state_json(state),
        "Image": config.image_id.to_string(),
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": super::paths::log_path(&dir),
        "Name": format!("/{}", record.name),
        "RestartCount": 0,
        "Driver": "overlay",
        "HostConfig": host_config_json(config),
        "GraphDriver": graph_driver_json(config),
        "Mounts": mounts_json(config),
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
        "NetworkSettings": network_settings_json(config, state),
    })
}

fn state_json(state: &State) -> Value {
    json!({
        "Status": state.status.as_str(),
        "Running": state.status == Status::Running,
        "Paused": false,
        "Restarting": false,
        "OOMKilled": state.oom_killed,
        "Dead": state.status == Status::Dead,
        "Pid": state.pid,
        "ExitCode": state.exit_code,
        "Error": state.error,
        "StartedAt": timestamp::format_or_zero(state.started_at.as_ref()),
        "FinishedAt": timestamp::format_or_zero(state.finished_at.as_ref()),
    })
}

fn host_config_json(config: &ContainerConfig) -> Value {
    let binds: Vec<String> = config
        .init
        .volumes
        .iter()
        .map(|v| {
            format!(
                "{}:{}{}",
                v.source.display(),
                v.target,
                if v.read_only { ":ro" } else { "" }
            )
        })
        .collect();
    let port_bindings: serde_json::Map<String, Value> = config
        .ports
        .iter()
        .map(|p| {
            let host_port = if p.host_port == 0 {
                String::new()
            } else {
                p.host_port.to_string()
            };
            (
                format!("{}/{}", p.container_port, p.protocol),
                json!([{"HostIp": p.host_ip.to_string(), "HostPort": host_port}]),
            )
        })
        .collect();
    let log_config = config
        .log_rotation
        .map(|r| json!({"max-size": r.max_size.to_string(), "max-file": r.max_files.to_string()}))
        .unwrap_or_else(|| json!({}));
    json!({
        "Binds": binds,
        "NetworkMode": config.network.name(),
        "PortBindings": port_bindings,
        "AutoRemove": config.auto_remove,
        "LogConfig": {"Type": "json-file", "Config": log_config},
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
    })
}

fn graph_driver_json(config: &ContainerConfig) -> Value {
    let overlay = &config.init.overlay;
    let abs = |p: &str| overlay.base.join(p).display().to_string();
    json!({
        "Name": "overlay",
        "Data": {
            "LowerDir": overlay.lower.iter().map(|l| abs(l)).collect::<Vec<_>>().join(":"),
            "UpperDir": abs(&overlay.upper),
            "WorkDir": abs(&overlay.work),
            "MergedDir": config.init.rootfs,
        },
    })
}

fn mounts_json(config: &ContainerConfig) -> Vec<Value> {
    config
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
        .collect()
}

/// Published ports show the port actually bound while running.
fn network_settings_json(config: &ContainerConfig, state: &State) -> Value {
    let ports: serde_json::Map<String, Value> = config
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
    let (ip, gateway, prefix, bridge) = match &config.endpoint {
        Some(e) => (
            e.address.to_string(),
            e.bridge.subnet.gateway().to_string(),
            e.bridge.subnet.prefix,
            e.bridge.name.clone(),
        ),
        None => (String::new(), String::new(), 0, String::new()),
    };
    json!({
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "Gateway": gateway,
        "Ports": ports,
        "Networks": {
            config.network.name(): {
                "IPAddress": ip,
                "IPPrefixLen": prefix,
                "Gateway": gateway,
                "Bridge": bridge,
            }
        },
    })
}
