//! docker's `inspect` document for a container: typed, in docker's field
//! order (serde_json keeps struct order), one builder per part.

use serde::Serialize;
use serde_json::Value;

use super::config::ContainerConfig;
use super::lookup::Container;
use super::paths::dir_of;
use super::state::State;
use super::state::Status;
use crate::error::{Error, Result};
use crate::runtime::network::PortMapping;
use crate::timestamp::{self, Timestamp};
use crate::Mocker;

/// A container as `inspect` shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum ContainerInspect {
    Complete(Box<Details>),
    /// Its creation was cut short: no config to describe.
    Unfinished(Unfinished),
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Unfinished {
    pub id: String,
    pub name: String,
    #[serde(with = "timestamp::rfc3339")]
    pub created: Timestamp,
    pub state: DeadState,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadState {
    pub status: &'static str,
    pub dead: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Details {
    pub id: String,
    #[serde(with = "timestamp::rfc3339")]
    pub created: Timestamp,
    pub path: Option<String>,
    pub args: Vec<String>,
    pub state: StateDoc,
    pub image: String,
    pub resolv_conf_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    pub log_path: String,
    pub name: String,
    pub restart_count: u32,
    pub driver: &'static str,
    pub host_config: HostConfig,
    pub graph_driver: GraphDriver,
    pub mounts: Vec<Mount>,
    pub config: Config,
    pub network_settings: NetworkSettings,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateDoc {
    pub status: &'static str,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: u32,
    pub exit_code: i32,
    pub error: String,
    /// Go's zero time until it has happened.
    pub started_at: String,
    pub finished_at: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    pub binds: Vec<String>,
    pub network_mode: &'static str,
    pub port_bindings: Keyed<Vec<PortBinding>>,
    pub auto_remove: bool,
    pub log_config: LogConfig,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// docker's: null unless options were given.
    pub security_opt: Option<Vec<String>>,
    pub readonly_rootfs: bool,
    pub init: bool,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_shares: u64,
    pub pids_limit: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub config: LogOptions,
}

/// json-file's options; `{}` when none were given.
#[derive(Clone, Debug, Serialize)]
pub struct LogOptions {
    #[serde(rename = "max-size", skip_serializing_if = "Option::is_none")]
    pub max_size: Option<String>,
    #[serde(rename = "max-file", skip_serializing_if = "Option::is_none")]
    pub max_file: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    pub name: &'static str,
    pub data: OverlayDirs,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OverlayDirs {
    pub lower_dir: String,
    pub upper_dir: String,
    pub work_dir: String,
    pub merged_dir: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub source: String,
    pub destination: String,
    pub mode: &'static str,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: &'static str,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    pub hostname: String,
    pub user: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub image: String,
    pub working_dir: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct NetworkSettings {
    #[serde(flatten)]
    pub address: Address,
    #[serde(rename = "Ports")]
    pub ports: Keyed<Vec<PortBinding>>,
    #[serde(rename = "Networks")]
    pub networks: Keyed<Endpoint>,
}

/// The container's address on its network (empty without one).
#[derive(Clone, Debug, Serialize)]
pub struct Address {
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "Gateway")]
    pub gateway: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    #[serde(flatten)]
    pub address: Address,
    #[serde(rename = "Bridge")]
    pub bridge: String,
}

/// docker's port and network maps: insertion order, a repeated key keeps
/// its first place and takes the last value (as serde_json's `Map`).
pub type Keyed<V> = indexmap::IndexMap<String, V>;

/// [`details`] as a JSON value, which the CLI prints with images'.
pub fn inspect(mocker: &Mocker, container: &Container) -> Result<Value> {
    serde_json::to_value(details(mocker, container)).map_err(|e| Error::InvalidDocument {
        what: format!("inspect document of container {}", container.record.id),
        reason: e.to_string(),
    })
}

/// docker's `inspect` document for a container.
pub fn details(mocker: &Mocker, container: &Container) -> ContainerInspect {
    let record = &container.record;
    let Some(config) = &container.config else {
        return ContainerInspect::Unfinished(Unfinished {
            id: record.id.clone(),
            name: format!("/{}", record.name),
            created: record.created,
            state: DeadState {
                status: Status::Dead.as_str(),
                dead: true,
            },
        });
    };
    let process = &config.init.process;
    let dir = dir_of(mocker, &record.id);
    let path = |name: &str| dir.join(name).display().to_string();
    ContainerInspect::Complete(Box::new(Details {
        id: record.id.clone(),
        created: record.created,
        path: process.args.first().cloned(),
        args: process.args.get(1..).unwrap_or_default().to_vec(),
        state: state_doc(&container.state),
        image: config.image_id.to_string(),
        resolv_conf_path: path("resolv.conf"),
        hostname_path: path("hostname"),
        hosts_path: path("hosts"),
        log_path: super::paths::log_path(&dir).display().to_string(),
        name: format!("/{}", record.name),
        restart_count: 0,
        driver: "overlay",
        host_config: host_config(config),
        graph_driver: graph_driver(config),
        mounts: mounts(config),
        config: Config {
            hostname: process.hostname.clone(),
            user: process.user.clone(),
            tty: config.init.tty,
            open_stdin: config.open_stdin,
            env: process.env.clone(),
            cmd: process.args.clone(),
            image: config.image.clone(),
            working_dir: process.cwd.clone(),
        },
        network_settings: network_settings(config, &container.state),
    }))
}

fn state_doc(state: &State) -> StateDoc {
    StateDoc {
        status: state.status.as_str(),
        running: state.status == Status::Running,
        paused: false,
        restarting: false,
        oom_killed: state.oom_killed,
        dead: state.status == Status::Dead,
        pid: state.pid,
        exit_code: state.exit_code,
        error: state.error.clone(),
        started_at: timestamp::format_or_zero(state.started_at.as_ref()),
        finished_at: timestamp::format_or_zero(state.finished_at.as_ref()),
    }
}

fn port_key(p: &PortMapping) -> String {
    format!("{}/{}", p.container_port, p.protocol)
}

fn host_config(config: &ContainerConfig) -> HostConfig {
    let binds = config
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
    // As asked for: port 0 (any) is "".
    let port_bindings = config
        .ports
        .iter()
        .map(|p| {
            let host_port = if p.host_port == 0 {
                String::new()
            } else {
                p.host_port.to_string()
            };
            (
                port_key(p),
                vec![PortBinding {
                    host_ip: p.host_ip.to_string(),
                    host_port,
                }],
            )
        })
        .collect();
    let limits = &config.limits;
    HostConfig {
        binds,
        network_mode: config.network.name(),
        port_bindings,
        auto_remove: config.auto_remove,
        log_config: LogConfig {
            kind: "json-file",
            config: LogOptions {
                max_size: config.log_rotation.map(|r| r.max_size.to_string()),
                max_file: config.log_rotation.map(|r| r.max_files.to_string()),
            },
        },
        cap_add: config.cap_add.clone(),
        cap_drop: config.cap_drop.clone(),
        privileged: config.init.privileged,
        security_opt: (!config.security_opt.is_empty()).then(|| config.security_opt.clone()),
        readonly_rootfs: config.init.read_only_root,
        init: config.init.init,
        memory: limits.memory.unwrap_or(0),
        memory_swap: limits.memory_swap.unwrap_or(0),
        nano_cpus: limits.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
        cpu_shares: limits.cpu_shares.unwrap_or(0),
        pids_limit: limits.pids,
    }
}

fn graph_driver(config: &ContainerConfig) -> GraphDriver {
    let overlay = &config.init.overlay;
    let abs = |p: &str| overlay.base.join(p).display().to_string();
    GraphDriver {
        name: "overlay",
        data: OverlayDirs {
            lower_dir: overlay.lower.iter().map(|l| abs(l)).collect::<Vec<_>>().join(":"),
            upper_dir: abs(&overlay.upper),
            work_dir: abs(&overlay.work),
            merged_dir: config.init.rootfs.display().to_string(),
        },
    }
}

fn mounts(config: &ContainerConfig) -> Vec<Mount> {
    config
        .init
        .volumes
        .iter()
        .map(|v| Mount {
            kind: "bind",
            source: v.source.display().to_string(),
            destination: v.target.clone(),
            mode: if v.read_only { "ro" } else { "" },
            rw: !v.read_only,
            propagation: "rprivate",
        })
        .collect()
}

/// Published ports show the port actually bound while running.
fn network_settings(config: &ContainerConfig, state: &State) -> NetworkSettings {
    let ports = config
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let bound = state
                .ports
                .get(i)
                .filter(|_| state.status == Status::Running)
                .unwrap_or(p);
            let binding = PortBinding {
                host_ip: p.host_ip.to_string(),
                host_port: bound.host_port.to_string(),
            };
            (port_key(p), vec![binding])
        })
        .collect();
    let (address, bridge) = match &config.endpoint {
        Some(e) => (
            Address {
                ip_address: e.address.to_string(),
                ip_prefix_len: e.bridge.subnet.prefix,
                gateway: e.bridge.subnet.gateway().to_string(),
            },
            e.bridge.name.clone(),
        ),
        None => (
            Address {
                ip_address: String::new(),
                ip_prefix_len: 0,
                gateway: String::new(),
            },
            String::new(),
        ),
    };
    let endpoint = Endpoint {
        address: address.clone(),
        bridge,
    };
    NetworkSettings {
        address,
        ports,
        networks: Keyed::from([(config.network.name().to_string(), endpoint)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_keeps_first_place_and_last_value() {
        let keyed: Keyed<u32> = [("b", 1), ("a", 2), ("b", 3)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(serde_json::to_string(&keyed).unwrap(), r#"{"b":3,"a":2}"#);
    }
}
