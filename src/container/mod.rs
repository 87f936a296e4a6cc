//! Containers and their lifecycle, daemonless as in podman: `create`
//! records one, `start` hands it to a monitor process, and every other
//! command reads what the monitor wrote.
//!
//! Where things live:
//! - the index: `container/<id>` (name, image, address), `name/<name>` and
//!   `ip/<bridge>/<addr>`, so names and addresses are claimed atomically;
//! - `containers/<id>/config.json`: everything a start needs, written once,
//!   last of all, by `create` (a record without it is "dead": cut short);
//! - `containers/<id>/state.json`: status, pids, exit code (see [`state`]);
//! - `containers/<id>/ctr.log`: output (see [`logs`]);
//! - `containers/<id>/monitor.lock`: held by the monitor while it lives;
//! - the writable snapshot `container-<id>` and the cgroup `mocker/<id>`.

mod check;
mod filter;
pub mod host;
mod inspect;
pub mod logs;
pub mod monitor;
pub mod names;
pub mod state;
mod usage;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::index::{Batch, ContainerRecord};
use crate::manifest::MAX_CONFIG_BYTES;
use crate::runtime::cgroup::{self, ContainerCgroup, Limits};
use crate::runtime::init::{InitSpec, Volume};
use crate::runtime::network::{self, Bridge, Endpoint, PortMapping};
use crate::runtime::security::SecurityOptions;
use crate::runtime::userns::IdMapping;
use crate::runtime::{self, Network, Overrides};
use crate::Mocker;

pub use check::{check, CheckFindings};
pub use filter::Filter;
use host::{Host, Linux};
pub use inspect::inspect;
pub use monitor::Attach;
pub use state::{State, Status};
pub use usage::{disk_usage, DiskUsage};

/// Everything a start needs, fixed at create.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: Digest,
    pub image_manifest: Digest,
    pub created: String,
    pub init: InitSpec,
    pub network: Network,
    pub endpoint: Option<Endpoint>,
    pub ports: Vec<PortMapping>,
    pub limits: Limits,
    pub auto_remove: bool,
    pub open_stdin: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// The chain its writable snapshot is over (to rebuild the index).
    #[serde(default)]
    pub snapshot_parent: Option<Digest>,
    /// `--log-opt max-size/max-file`; None: the log grows unbounded.
    #[serde(default)]
    pub log_rotation: Option<logs::Rotation>,
    /// `--security-opt` as inspect shows it.
    #[serde(default)]
    pub security_opt: Vec<String>,
}

impl ContainerConfig {
    pub fn load(dir: &Path) -> Result<ContainerConfig> {
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
        let mut config: ContainerConfig = serde_json::from_slice(&bytes).map_err(|e| Error::InvalidDocument {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        // Created before filters were: it gets the default one (and the
        // no_new_privs it had), never none.
        if config.init.security.predates_seccomp {
            let cache = dir
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("/"))
                .join("seccomp");
            config.init.security =
                SecurityOptions::default().apply(&config.init.process.capabilities, config.init.privileged, &cache)?;
        }
        Ok(config)
    }

    /// The id of its writable snapshot (its upper dir is `<id>/fs`).
    fn snapshot_id(&self) -> Option<u64> {
        self.init.overlay.upper.split('/').next()?.parse().ok()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("config.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Runtime(e.to_string()))?;
        std::fs::write(&tmp, bytes).ctx(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join("config.json")).ctx(|| format!("renaming {}", tmp.display()))
    }
}

/// `create` / `run` options.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    pub overrides: Overrides,
    pub limits: Limits,
    pub volumes: Vec<Volume>,
    pub read_only: bool,
    pub network: Network,
    pub ports: Vec<PortMapping>,
    /// `--init`
    pub init: bool,
    /// `-t`
    pub tty: bool,
    /// `-i`
    pub open_stdin: bool,
    /// `--rm`
    pub auto_remove: bool,
    /// `--log-opt max-size=… max-file=…`
    pub log_rotation: Option<logs::Rotation>,
    /// `--security-opt`
    pub security: SecurityOptions,
    /// `--userns-remap`: the container's ids on the host.
    pub userns: Option<IdMapping>,
}

/// The user namespace a new container gets: `--userns host` opts out of
/// the root's `--userns-remap USER[:GROUP]`, as docker's does.
pub fn userns_mode(mode: Option<&str>, remap: Option<&str>) -> Result<Option<IdMapping>> {
    match (mode, remap) {
        (Some("host"), _) | (None, None) => Ok(None),
        (Some("") | None, Some(user)) => Ok(Some(IdMapping::for_user(user)?)),
        (Some(other), _) => Err(Error::Runtime(format!(
            "invalid --userns {other:?}: only \"host\" is supported (give --userns-remap USER to remap)"
        ))),
    }
}

/// A container as the index, its config and its state describe it.
#[derive(Clone, Debug)]
pub struct Container {
    pub record: ContainerRecord,
    /// `None` when its creation was cut short.
    pub config: Option<ContainerConfig>,
    pub state: State,
}

impl Container {
    pub fn short_id(&self) -> &str {
        &self.record.id[..12]
    }

    fn config(&self) -> Result<&ContainerConfig> {
        self.config.as_ref().ok_or_else(|| {
            Error::Runtime(format!(
                "container {} was not fully created: remove it with `mocker rm`",
                self.short_id()
            ))
        })
    }
}

fn dir_of(mocker: &Mocker, id: &str) -> PathBuf {
    mocker.root.join("containers").join(id)
}

fn snapshot_key(id: &str) -> String {
    format!("container-{id}")
}

/// Create a container from a local image (state "created").
pub fn create(mocker: &Mocker, opts: &CreateOptions) -> Result<Container> {
    let name = opts.name.as_deref().map(names::validate).transpose()?;
    let id = runtime::new_id()?;
    let bridge = match opts.network {
        Network::Bridge => Some(Bridge::from_env()?),
        _ => None,
    };
    let security = check_options(mocker, opts)?;
    let claimed = claim(mocker, opts, &id, name.as_ref(), bridge.as_ref())?;
    let record = claimed.record.clone();
    match materialize(mocker, opts, claimed, bridge.as_ref(), security) {
        Ok(config) => Ok(Container {
            record,
            config: Some(config),
            state: State::default(),
        }),
        Err(e) => {
            let _ = discard(mocker, &record.id, None);
            Err(e)
        }
    }
}

/// What `create` claims in the index before it makes anything on disk.
struct Claimed {
    record: ContainerRecord,
    image: crate::index::ImageRecord,
    process: runtime::spec::ProcessSpec,
    reserved: crate::snapshot::Reserved,
}

/// One session: the image, its config, the name, the address and the
/// writable snapshot are found, checked and claimed together.
fn claim(
    mocker: &Mocker,
    opts: &CreateOptions,
    id: &str,
    name: Option<&String>,
    bridge: Option<&Bridge>,
) -> Result<Claimed> {
    let seed = hex::decode(id).unwrap_or_default();
    mocker.index.session(|s| {
        let mut found = crate::lookup::find_in(s, &opts.image)?;
        if found.len() != 1 {
            return Err(Error::AmbiguousImageId(opts.image.clone()));
        }
        let image = found.remove(0);
        let process = image_process(mocker, &image, opts, id)?;
        let name = claim_name(s, name, &seed)?;
        let mut batch = Batch::default();
        let reserved = mocker
            .snapshots
            .reserve(s, &snapshot_key(id), image.chain_ids.last(), &mut batch)?;
        // Last before the commit: the address is claimed host-wide (other
        // roots share the bridge), and released if the commit fails.
        let address = match bridge {
            Some(b) => Some((b.name.clone(), claim_address(mocker, s, b, id)?)),
            None => None,
        };
        let record = ContainerRecord {
            id: id.to_string(),
            name,
            image_manifest: image.manifest_digest.clone(),
            created: state::now(),
            address,
        };
        batch.put_container(&record);
        if let Err(e) = s.apply(&batch) {
            release_address(mocker, id, record.address.as_ref());
            let _ = std::fs::remove_dir(dir_of(mocker, id));
            return Err(e);
        }
        Ok(Claimed {
            record,
            image,
            process,
            reserved,
        })
    })
}

/// The container's directory, /etc files and writable snapshot, then its
/// config.json — last: its presence is what makes the container complete.
fn materialize(
    mocker: &Mocker,
    opts: &CreateOptions,
    claimed: Claimed,
    bridge: Option<&Bridge>,
    security: crate::runtime::security::Security,
) -> Result<ContainerConfig> {
    let Claimed {
        record,
        image,
        process,
        reserved,
    } = claimed;
    let id = &record.id;
    let dir = dir_of(mocker, id);
    let endpoint = match (bridge, &record.address) {
        (Some(b), Some((_, ip))) => Some(Endpoint::new(b.clone(), *ip, id)),
        _ => None,
    };
    make_dir(mocker, id)?;
    std::fs::create_dir_all(dir.join("rootfs")).ctx(|| format!("creating {}", dir.display()))?;
    let files = write_etc_files(
        &dir,
        &process.hostname,
        endpoint.as_ref().map(|e| e.address),
        opts.network,
    )?;
    let overlay = mocker.snapshots.make_active(&snapshot_key(id), reserved)?;
    if let Some(mapping) = &opts.userns {
        give_to_container_root(mapping, &overlay, &files)?;
    }
    let init = InitSpec {
        process,
        overlay,
        rootfs: dir.join("rootfs"),
        privileged: opts.overrides.privileged,
        security,
        volumes: opts.volumes.clone(),
        files,
        read_only_root: opts.read_only,
        host_network: opts.network == Network::Host,
        init: opts.init,
        tty: opts.tty,
        userns: opts.userns,
    };
    let config = ContainerConfig {
        id: id.clone(),
        name: record.name.clone(),
        image: opts.image.clone(),
        image_id: image.config_digest.clone(),
        image_manifest: image.manifest_digest.clone(),
        created: record.created.clone(),
        init,
        network: opts.network,
        endpoint,
        ports: opts.ports.clone(),
        limits: opts.limits.clone(),
        auto_remove: opts.auto_remove,
        log_rotation: opts.log_rotation,
        open_stdin: opts.open_stdin,
        cap_add: opts.overrides.cap_add.clone(),
        cap_drop: opts.overrides.cap_drop.clone(),
        snapshot_parent: image.chain_ids.last().cloned(),
        security_opt: opts.security.shown.clone(),
    };
    config.save(&dir)?;
    Ok(config)
}

/// Options that are wrong whatever the image: refused before anything is
/// claimed. The seccomp filter the container gets.
fn check_options(mocker: &Mocker, opts: &CreateOptions) -> Result<crate::runtime::security::Security> {
    cgroup::validate(&opts.limits)?;
    if !opts.ports.is_empty() && opts.network != Network::Bridge {
        return Err(Error::Runtime(format!(
            "publishing ports needs the bridge network, not --network {}",
            opts.network.name()
        )));
    }
    // As docker's: neither can be confined to the container's ids.
    if opts.userns.is_some() && (opts.overrides.privileged || opts.network == Network::Host) {
        let what = if opts.overrides.privileged {
            "--privileged"
        } else {
            "--network host"
        };
        return Err(Error::Runtime(format!(
            "{what} cannot be combined with --userns-remap: add --userns host"
        )));
    }
    Ok(opts.security.apply(
        &runtime::spec::capabilities(&opts.overrides)?,
        opts.overrides.privileged,
        &mocker.root.join("seccomp"),
    )?)
}

/// The name asked for, if free, or a random one that is.
fn claim_name(s: &crate::index::Session, name: Option<&String>, seed: &[u8]) -> Result<String> {
    Ok(match name {
        Some(n) => {
            if let Some(holder) = s.container_named(n)? {
                return Err(Error::Runtime(format!(
                    "Conflict. The container name \"/{n}\" is already in use by container \"{holder}\". \
                     You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            n.clone()
        }
        None => {
            let mut attempt = 0;
            loop {
                let candidate = names::random(seed, attempt);
                if s.container_named(&candidate)?.is_none() {
                    break candidate;
                }
                attempt += 1;
            }
        }
    })
}

/// What the container runs: the image's config with the options applied.
fn image_process(
    mocker: &Mocker,
    image: &crate::index::ImageRecord,
    opts: &CreateOptions,
    id: &str,
) -> Result<runtime::spec::ProcessSpec> {
    let image_config = mocker.store.read_small(&image.config_digest, MAX_CONFIG_BYTES)?;
    let image_config: serde_json::Value =
        serde_json::from_slice(&image_config).map_err(|e| Error::InvalidDocument {
            what: format!("config {}", image.config_digest),
            reason: e.to_string(),
        })?;
    let mut process = runtime::spec::process_spec(
        image_config.get("config").unwrap_or(&serde_json::Value::Null),
        &opts.overrides,
        id,
    )?;
    if opts.tty {
        with_term(&mut process.env);
    }
    Ok(process)
}

/// Delete the directories of creates killed before their index commit (a
/// create makes its directory first, for its host-wide address claim): no
/// record and no `config.json`. Only a create holding an index session can
/// have such a directory legitimately, so this runs inside one. A directory
/// with a `config.json` but no record is a container `system check
/// --repair` can restore: kept.
fn sweep_unfinished_creates(mocker: &Mocker, s: &crate::index::Session) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(mocker.root.join("containers")) else {
        return Ok(());
    };
    let records = s.containers()?;
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        if !records.contains_key(id.as_str()) && !entry.path().join("config.json").exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// The container's directory (in `containers/`, private to root).
fn make_dir(mocker: &Mocker, id: &str) -> Result<()> {
    let dir = dir_of(mocker, id);
    std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let containers = mocker.root.join("containers");
    std::fs::set_permissions(&containers, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .ctx(|| format!("chmod {}", containers.display()))
}

/// Claim a free address on `bridge` for container `id`, host-wide, under
/// the network lock (inside `s`, the caller's index session: the index
/// lock is always taken before the network lock). Free means: no live
/// claim of any root, no address of this root's index (a claim lost at
/// reboot), no live neighbour on the bridge. The container's directory is
/// made first, as a claim without one is stale.
fn claim_address(mocker: &Mocker, s: &crate::index::Session, bridge: &Bridge, id: &str) -> Result<std::net::Ipv4Addr> {
    make_dir(mocker, id)?;
    let ours = s.addresses(&bridge.name)?;
    let claimant = network::Claimant::new(&mocker.root, id)?;
    let claimed = network::lock().and_then(|lock| lock.claim_free(bridge, &claimant, &ours));
    if claimed.is_err() {
        let _ = std::fs::remove_dir(dir_of(mocker, id));
    }
    claimed
}

/// Drop container `id`'s host-wide claim of `address`. Best effort: a
/// claim left behind is stale once the container's directory is gone, and
/// the next allocation on that bridge reclaims it.
fn release_address(mocker: &Mocker, id: &str, address: Option<&(String, std::net::Ipv4Addr)>) {
    let Some((bridge, addr)) = address else {
        return;
    };
    let released = network::Claimant::new(&mocker.root, id)
        .and_then(|claimant| network::lock()?.release(bridge, *addr, &claimant));
    if let Err(e) = released {
        eprintln!("warning: releasing {addr} on bridge {bridge}: {e}");
    }
}

/// With a user namespace, the writable layer's root (what `/` is inside)
/// and the container's /etc files belong to the container's root, as
/// docker's userns-remap makes them; the image's layers stay root's.
fn give_to_container_root(mapping: &IdMapping, overlay: &crate::mount::Overlay, files: &[Volume]) -> Result<()> {
    let (uid, gid) = mapping.root();
    let upper = overlay.base.join(&overlay.upper);
    for path in std::iter::once(upper.as_path()).chain(files.iter().map(|f| f.source.as_path())) {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).ctx(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// docker's `TERM=xterm` for a process with a terminal, unless set.
fn with_term(env: &mut Vec<String>) {
    if !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
}

/// `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` for the container,
/// bind-mounted over the image's.
fn write_etc_files(
    dir: &Path,
    hostname: &str,
    address: Option<std::net::Ipv4Addr>,
    network: Network,
) -> Result<Vec<Volume>> {
    let hosts = match network {
        Network::Host => std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        _ => {
            let mut hosts = String::from(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
                 ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
            );
            if let Some(ip) = address {
                hosts.push_str(&format!("{ip}\t{hostname}\n"));
            }
            hosts
        }
    };
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = match network {
        Network::Host => host_resolv,
        // The host's loopback resolvers cannot be reached from the container.
        _ => {
            let kept: Vec<&str> = host_resolv
                .lines()
                .filter(|l| !(l.starts_with("nameserver") && (l.contains(" 127.") || l.contains(" ::1"))))
                .collect();
            let mut resolv = kept.join("\n");
            if !kept.iter().any(|l| l.starts_with("nameserver")) {
                resolv.push_str("\nnameserver 8.8.8.8\nnameserver 8.8.4.4");
            }
            resolv.trim_start().to_string() + "\n"
        }
    };
    let mut files = Vec::new();
    for (name, contents) in [
        ("hosts", hosts),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, contents).ctx(|| format!("writing {}", path.display()))?;
        files.push(Volume {
            source: path,
            target: format!("/etc/{name}"),
            read_only: false,
        });
    }
    Ok(files)
}

/// Find a container by full id, name or unique id prefix.
pub fn find(mocker: &Mocker, query: &str) -> Result<ContainerRecord> {
    let query = query.strip_prefix('/').unwrap_or(query);
    mocker.index.session(|s| {
        if let Some(record) = s.get_container(query)? {
            return Ok(record);
        }
        if let Some(id) = s.container_named(query)? {
            if let Some(record) = s.get_container(&id)? {
                return Ok(record);
            }
        }
        if query.is_empty() || !query.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::NoSuchContainer(query.to_string()));
        }
        let mut matches: Vec<ContainerRecord> = s
            .containers()?
            .into_values()
            .filter(|r| r.id.starts_with(query))
            .collect();
        match matches.len() {
            0 => Err(Error::NoSuchContainer(query.to_string())),
            1 => Ok(matches.remove(0)),
            _ => Err(Error::Runtime(format!(
                "multiple containers found with provided prefix: {query}"
            ))),
        }
    })
}

/// Read a container's config and state, correcting a state whose monitor
/// died (its processes are killed and its cgroup removed).
pub fn load(mocker: &Mocker, record: ContainerRecord) -> Result<Container> {
    let dir = dir_of(mocker, &record.id);
    let config = match ContainerConfig::load(&dir) {
        Ok(c) => Some(c),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let state_path = dir.join("state.json");
    let mut state = State::load(&state_path)?;
    if config.is_none() {
        state.status = Status::Dead;
    } else {
        state = host::settle(&Linux, &record.id, &dir, state)?;
    }
    Ok(Container { record, config, state })
}

/// The container's state as its files say, without an index session (for
/// a caller that knows the id, e.g. after waiting for its monitor).
pub fn state_of(mocker: &Mocker, id: &str) -> Result<State> {
    let dir = dir_of(mocker, id);
    host::settle(&Linux, id, &dir, State::load(&dir.join("state.json"))?)
}

/// Whether the container's monitor (and so the container) lives: a lock
/// check, no index session.
pub fn is_running(mocker: &Mocker, id: &str) -> bool {
    Linux.monitor_alive(&dir_of(mocker, id))
}

/// Look a container up and load it.
pub fn get(mocker: &Mocker, query: &str) -> Result<Container> {
    load(mocker, find(mocker, query)?)
}

/// All containers (only running ones unless `all`), newest first.
pub fn list(mocker: &Mocker, all: bool) -> Result<Vec<Container>> {
    let records = mocker.index.session(|s| s.containers())?;
    let mut out = Vec::new();
    for record in records.into_values() {
        let container = load(mocker, record)?;
        if all || container.state.status == Status::Running {
            out.push(container);
        }
    }
    out.sort_by(|a, b| b.record.created.cmp(&a.record.created));
    Ok(out)
}

/// A started container: its PID 1 (callers wait on the monitor's lock).
pub struct Started {
    pub pid: u32,
    /// The monitor, when this call started it: it exits with the
    /// container's code (see `wait_attached`).
    pub monitor: Option<std::process::Child>,
}

/// Start a created or exited container under a new monitor.
pub fn start(mocker: &Mocker, query: &str, attach: Attach) -> Result<Started> {
    start_container(mocker, &get(mocker, query)?, attach)
}

/// `start` of a container already loaded.
pub fn start_container(mocker: &Mocker, container: &Container, attach: Attach) -> Result<Started> {
    let config = container.config()?;
    if container.state.status == Status::Running {
        return Ok(Started {
            pid: container.state.pid,
            monitor: None,
        });
    }
    let (status_read, status_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Runtime(format!("pipe: {e}")))?;
    let status_fd = std::os::fd::AsRawFd::as_raw_fd(&status_write);
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let root = mocker.root.display().to_string();
    let env = [
        ("PATH", path.as_str()),
        (monitor::ROOT_ENV, root.as_str()),
        (monitor::ID_ENV, config.id.as_str()),
        (monitor::STATUS_FD_ENV, &status_fd.to_string()),
        (
            monitor::ATTACH_ENV,
            match (attach.output, attach.stdin) {
                (true, true) => "io",
                (true, false) => "o",
                _ => "",
            },
        ),
    ];
    // The monitor makes a session of its own first thing (see
    // `monitor::main`).
    let (mut command, _binary) = runtime::self_command(
        &mocker.root.join("mounts"),
        "__monitor",
        &[&config.id],
        &env,
        std::os::fd::AsFd::as_fd(&status_write),
    )?;
    if !attach.output {
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    }
    if !attach.stdin {
        command.stdin(std::process::Stdio::null());
    }
    let mut child = command
        .spawn()
        .map_err(|e| Error::Runtime(format!("starting the container's monitor: {e}")))?;
    drop(status_write);
    let mut report = String::new();
    let _ = std::fs::File::from(status_read).read_to_string(&mut report);
    let report = report.trim_end();
    if let Some(pid) = report.strip_prefix("ok ") {
        return Ok(Started {
            pid: pid.parse().unwrap_or(0),
            monitor: Some(child),
        });
    }
    let _ = child.wait();
    match report.strip_prefix("error ").and_then(|r| r.split_once(' ')) {
        Some((code, message)) => Err(Error::StartFailed {
            code: code.parse().unwrap_or(runtime::init::EXIT_RUNTIME_FAILED),
            message: message.to_string(),
        }),
        None => Err(Error::Runtime(
            "the container's monitor exited before starting it".into(),
        )),
    }
}

/// Wait for a container started attached (`run` without `-d`, `start -a`)
/// to end; its exit code. For `--rm`, its monitor removes it and then exits
/// with that code, as docker's daemon does, so a killed CLI leaves nothing;
/// if the monitor was killed first, the state tells the code and the
/// removal is ours.
pub fn wait_attached(mocker: &Mocker, container: Container, started: Started) -> Result<i32> {
    let id = container.record.id.clone();
    let auto_remove = container.config()?.auto_remove;
    let Some(mut monitor) = started.monitor.filter(|_| auto_remove) else {
        // Its lock goes once the exit is recorded, before the network is
        // tidied up: no need to wait for the monitor's own end.
        return Ok(wait_for_exit(mocker, &id)?.exit_code);
    };
    if let Some(code) = monitor.wait().ok().and_then(|s| s.code()) {
        return Ok(code);
    }
    let state = wait_for_exit(mocker, &id)?;
    let code = state.exit_code;
    remove_container(mocker, Container { state, ..container }, true)?;
    Ok(code)
}

/// Block until the container is not running; its exit code.
pub fn wait(mocker: &Mocker, query: &str) -> Result<i32> {
    let record = find(mocker, query)?;
    Ok(wait_for_exit(mocker, &record.id)?.exit_code)
}

/// Block until the monitor of container `id` (a full id) has recorded its
/// exit and let go of its lock; its state then. No index session.
pub fn wait_for_exit(mocker: &Mocker, id: &str) -> Result<State> {
    let dir = dir_of(mocker, id);
    // Held until the exit is read: a `--rm` container's monitor waits for
    // it before removing the container.
    // (Opened, never created: a file made here could land in a directory
    // a removal is emptying.)
    let _reading = std::fs::File::open(monitor::waiters_lock_path(&dir))
        .ok()
        .and_then(|f| nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockShared).ok());
    monitor::wait_for_lock(&monitor::lock_path(&dir));
    if !dir.exists() {
        // Removed (by `rm -f`, or a `--rm` monitor we came too late for).
        return Err(Error::NoSuchContainer(id.to_string()));
    }
    state_of(mocker, id)
}

/// docker's stop: SIGTERM, then SIGKILL after `timeout`.
pub fn stop(mocker: &Mocker, query: &str, timeout: Duration) -> Result<()> {
    let container = get(mocker, query)?;
    if container.state.status != Status::Running {
        return Ok(());
    }
    let dir = dir_of(mocker, &container.record.id);
    host::terminate(&Linux, &dir, container.state.pid, timeout)
}

/// The running container `id`'s PID 1 as a pidfd, if it still runs as
/// `pid` (see [`host::pid1`]); ENOSYS before Linux 5.3.
pub fn pid1(mocker: &Mocker, id: &str, pid: u32) -> std::io::Result<Option<crate::runtime::pidfd::Pidfd>> {
    host::pid1(&dir_of(mocker, id), pid)
}

/// Send a signal to the container's PID 1.
pub fn kill(mocker: &Mocker, query: &str, signal: Signal) -> Result<()> {
    let container = get(mocker, query)?;
    if container.state.status != Status::Running {
        return Err(Error::Runtime(format!(
            "cannot kill container: {query}: container {} is not running",
            container.record.id
        )));
    }
    Linux.signal(&dir_of(mocker, &container.record.id), container.state.pid, signal)
}

/// Remove a container: its writable layer, cgroup, files and records
/// (the records last, so an interrupted removal can be run again).
pub fn remove(mocker: &Mocker, query: &str, force: bool) -> Result<String> {
    remove_container(mocker, get(mocker, query)?, force)
}

/// `remove` of a container already loaded.
pub fn remove_container(mocker: &Mocker, container: Container, force: bool) -> Result<String> {
    let dir = dir_of(mocker, &container.record.id);
    let refused = || {
        Error::Runtime(format!(
            "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
            container.record.name
        ))
    };
    if container.state.status == Status::Running && !force {
        return Err(refused());
    }
    if !claim_for_removal(&dir) {
        if !force {
            return Err(refused());
        }
        // Marked too: once it is stopped, no new start may begin.
        let _ = std::fs::File::create(monitor::removing_path(&dir));
        host::force_stop(&Linux, &dir)?;
    }
    discard(mocker, &container.record.id, container.config.as_ref())?;
    Ok(container.record.id)
}

/// Whether no monitor lives for the container in `dir`; if none, it is
/// marked as being removed. The mark is made while holding `monitor.lock`,
/// so a monitor that starts later sees it and does not run the container
/// (see `monitor::removing_path`): a removal never races a start into a
/// container nobody stops, and a live monitor never sees a mark that a
/// removal then takes back.
fn claim_for_removal(dir: &Path) -> bool {
    // Created if missing, so a first start cannot slip in unlocked.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(monitor::lock_path(dir));
    let lock = match file {
        Ok(file) => match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Some(lock),
            Err(_) => return false,
        },
        // A cut-short create without a directory: nothing can start it.
        Err(_) => None,
    };
    let _ = std::fs::File::create(monitor::removing_path(dir));
    drop(lock);
    true
}

/// Undo everything `create` made for `record`; tolerant of what is missing.
/// Order: cgroup and veth, the writable snapshot's directory out of the
/// numbered namespace, the container's directory, the snapshot's files, and
/// last one transaction dropping the snapshot and container records — so a
/// kill at any point leaves a (dead) container that `rm` can finish.
/// The record is read in that last transaction, so the caller needs none.
fn discard(mocker: &Mocker, id: &str, config: Option<&ContainerConfig>) -> Result<()> {
    let dir = dir_of(mocker, id);
    let key = snapshot_key(id);
    Linux.clear_cgroup(id);
    if let Some(endpoint) = config.and_then(|c| c.endpoint.as_ref()) {
        network::detach(endpoint)?;
    }
    // Its mounts must be gone before their directories go. Bounded: the
    // callers made sure no monitor runs it, so this is only the one that
    // just ended letting go of its namespaces.
    if !monitor::wait_for_lock_until(&monitor::teardown_lock_path(&dir), host::KILL_TIMEOUT) {
        return Err(Error::Runtime(format!(
            "container {id} is still held by its monitor (pid {}): run `mocker rm -f {}` again",
            monitor::monitor_pid(&dir)
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into()),
            &id[..12.min(id.len())]
        )));
    }
    // The snapshot id is in the config; without one, ask the index.
    let snapshot_id = config.and_then(ContainerConfig::snapshot_id);
    let trash = match snapshot_id {
        Some(id) => Some(mocker.snapshots.discard_dir(id)?),
        None => {
            mocker.snapshots.remove_active(&key)?;
            None
        }
    };
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).ctx(|| format!("removing {}", dir.display())),
    }
    if let Some(trash) = &trash {
        crate::safefs::remove_tree(trash).ctx(|| format!("removing {}", trash.display()))?;
    }
    // The records go last: until then `rm` can find the container again
    // (as dead) and finish, whatever point a kill stopped it at.
    let record = mocker.index.session(|s| {
        let mut batch = Batch::default();
        let record = s.get_container(id)?;
        if let Some(record) = &record {
            batch.del_container(record);
        }
        if trash.is_some() {
            batch.del_active(&key);
        }
        s.apply(&batch)?;
        s.flush()?;
        sweep_unfinished_creates(mocker, s)?;
        Ok(record)
    })?;
    // After the records: a kill before this leaves a claim whose directory
    // is gone, i.e. stale.
    release_address(mocker, id, record.as_ref().and_then(|r| r.address.as_ref()));
    // What an earlier, interrupted removal left.
    mocker.snapshots.sweep_partial_builds();
    Ok(())
}

/// Remove every container that is not running, then the bridge if no
/// container is left on it; the containers' ids.
pub fn prune(mocker: &Mocker) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for container in list(mocker, true)? {
        let dir = dir_of(mocker, &container.record.id);
        if container.state.status == Status::Running {
            continue;
        }
        if !claim_for_removal(&dir) {
            // Being started right now: not a stopped container.
            continue;
        }
        discard(mocker, &container.record.id, container.config.as_ref())?;
        removed.push(container.record.id);
    }
    remove_unused_bridge(mocker)?;
    Ok(removed)
}

/// Remove the bridge (`MOCKER_BRIDGE`) and its rules when no container of
/// this root has an address on it, no root on the host holds a live claim
/// on it and nothing is enslaved to it (decided under the network lock);
/// whether this call removed it. Like docker0 it otherwise stays.
pub fn remove_unused_bridge(mocker: &Mocker) -> Result<bool> {
    let bridge = Bridge::from_env()?;
    // This root's records also cover claims lost at reboot; the claims
    // cover every root (this one's later creates included).
    if !Path::new("/sys/class/net").join(&bridge.name).exists()
        || !mocker.index.session(|s| s.addresses(&bridge.name))?.is_empty()
    {
        return Ok(false);
    }
    network::remove_bridge_if_unused(&network::lock()?, &bridge)
}

/// `exec` options.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Keep our stdin for the command (`-i`); otherwise it reads /dev/null.
    pub stdin: bool,
    /// `-t`: a terminal of the container's own.
    pub tty: bool,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
}

/// Run a command in a running container with our stdin, stdout and
/// stderr; its exit code.
pub fn exec(mocker: &Mocker, query: &str, opts: &ExecOptions) -> Result<i32> {
    let container = get(mocker, query)?;
    let config = container.config()?;
    if container.state.status != Status::Running {
        return Err(Error::Runtime(format!(
            "container {} is not running",
            container.record.id
        )));
    }
    if opts.command.is_empty() {
        return Err(Error::Runtime("exec needs a command".into()));
    }
    let mut process = config.init.process.clone();
    process.args = opts.command.clone();
    for var in &opts.env {
        let key = var.split('=').next().unwrap_or_default();
        process.env.retain(|e| e.split('=').next() != Some(key));
        process.env.push(var.clone());
    }
    if let Some(w) = &opts.workdir {
        process.cwd = w.clone();
    }
    if let Some(u) = &opts.user {
        process.user = u.clone();
    }
    if opts.tty {
        with_term(&mut process.env);
    }
    let privileged = config.init.privileged || opts.privileged;
    if opts.privileged {
        process.capabilities = runtime::spec::capabilities(&Overrides {
            privileged: true,
            ..Default::default()
        })?;
    }
    let spec = runtime::exec::ExecSpec {
        pid: container.state.pid,
        process,
        privileged,
        security: config.init.security.clone(),
        tty: opts.tty,
    };
    let cgroup = ContainerCgroup::load(&container.record.id);
    runtime::exec::run(&spec, &mocker.root.join("mounts"), opts.stdin, |pid| match &cgroup {
        Some(c) => c.add(pid),
        None => Err(Error::Runtime("the container's cgroup is gone".into())),
    })
}

/// The container's root filesystem (its changes over the image) as a tar
/// stream; works while it runs, through a read-only view of its layers.
pub fn export(mocker: &Mocker, query: &str, out: impl std::io::Write) -> Result<()> {
    let container = get(mocker, query)?;
    let config = container.config()?;
    let view = config.init.overlay.read_only_view();
    let mounts = mocker.root.join("mounts");
    let path = mounts.join(format!("export-{}-{}", container.short_id(), std::process::id()));
    std::fs::create_dir_all(&path).ctx(|| format!("creating {}", path.display()))?;
    std::fs::set_permissions(&mounts, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .ctx(|| format!("chmod {}", mounts.display()))?;
    let result = crate::mount::mount_overlay(&view, &path).and_then(|_| {
        let written = crate::export::write_tree(&path, query, out);
        let unmounted = crate::mount::unmount(&path);
        written.and(unmounted)
    });
    let _ = std::fs::remove_dir(&path);
    result
}

/// Images that containers were created from (by manifest digest): `rmi`
/// needs `-f` for these.
pub fn users_of_image(mocker: &Mocker, manifest: &Digest) -> Result<Vec<ContainerRecord>> {
    Ok(mocker
        .index
        .session(|s| s.containers())?
        .into_values()
        .filter(|r| &r.image_manifest == manifest)
        .collect())
}
