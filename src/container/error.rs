//! The container lifecycle's errors. The texts are docker's where docker
//! has one (tests and scripts match their first words); the others say what
//! happened to which container and what to do about it.

use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::signal::Signal;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName { name: String },

    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{holder}\". \
         You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, holder: String },

    #[error("multiple containers found with provided prefix: {prefix}")]
    AmbiguousPrefix { prefix: String },

    /// Neither a container nor an image (`inspect`).
    #[error("No such object: {name}")]
    NoSuchObject { name: String },

    #[error("invalid --userns {mode:?}: only \"host\" is supported (give --userns-remap USER to remap)")]
    InvalidUserns { mode: String },

    /// `option` is `--privileged` or `--network host`.
    #[error("{option} cannot be combined with --userns-remap: add --userns host")]
    UsernsConflict { option: &'static str },

    #[error("publishing ports needs the bridge network, not --network {network}")]
    PortsNeedBridge { network: String },

    #[error("invalid --log-opt {opt:?}: {reason}")]
    InvalidLogOpt { opt: String, reason: &'static str },

    #[error("unknown log opt '{key}' for json-file log driver")]
    UnknownLogOpt { key: String },

    #[error("max-file cannot be set without max-size")]
    MaxFileWithoutMaxSize,

    #[error("exec needs a command")]
    NoCommand,

    /// A record whose `config.json` was never written: a create cut short.
    #[error("container {id} was not fully created: remove it with `mocker rm`")]
    NotFullyCreated { id: String },

    /// `system check --repair` found its directory but cannot restore it.
    #[error(
        "container {} ({name}) cannot be restored: its config.json names no writable snapshot; \
         delete its directory containers/{id} under the root to drop it",
        short(id)
    )]
    NoWritableSnapshot { id: String, name: String },

    #[error("container {id} is not running")]
    NotRunning { id: String },

    /// docker's wording for `kill`, which names the container as given.
    #[error("cannot kill container: {query}: container {id} is not running")]
    KillNotRunning { query: String, id: String },

    #[error(
        "cannot remove container \"/{name}\": container is running: stop the container before removing or force remove"
    )]
    RemoveRunning { name: String },

    /// A second monitor for a container that has one.
    #[error("container {id} is already running")]
    AlreadyRunning { id: String },

    #[error("container {id} is being removed: `mocker rm -f {id}` finishes that")]
    BeingRemoved { id: String },

    #[error("container {id} is still held by its monitor (pid {}): run `mocker rm -f {id}` again", pid_text(*.monitor_pid))]
    StillHeld { id: String, monitor_pid: Option<u32> },

    #[error(
        "container {id} did not stop {waited_secs} s after SIGKILL: a process of it is stuck in the kernel \
         (e.g. on a hung mount); `mocker rm -f {id}` tries again"
    )]
    DidNotStop { id: String, waited_secs: u64 },

    #[error(
        "the monitor of container {id} survived SIGKILL for {waited_secs} s: it is stuck in the kernel; \
         `mocker rm -f {id}` tries again"
    )]
    MonitorSurvived { id: String, waited_secs: u64 },

    #[error(
        "the cgroup of container {id} is gone (the container is exiting, or its cgroup was removed outside mocker): \
         `mocker stop {id}` then `mocker start {id}` gives it a new one"
    )]
    CgroupGone { id: String },

    #[error("sending {signal} to container {id}: {source}")]
    Signal {
        id: String,
        signal: Signal,
        #[source]
        source: std::io::Error,
    },

    #[error("starting the monitor of container {id}: {source}")]
    SpawnMonitor {
        id: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the monitor of container {id} exited before starting it (it was killed, or failed before it could say why): \
         `mocker start {id}` tries again; `mocker logs {id}` shows what the container wrote"
    )]
    MonitorExited { id: String },

    #[error("the monitor of container {id} sent a report this mocker cannot read ({report:?}): {source}")]
    GarbledReport {
        id: String,
        report: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("the network thread of the monitor panicked")]
    NetworkThreadPanicked,

    /// A pipe, socket pair or dup the monitor needs.
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: Errno,
    },

    #[error("encoding {path}: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map_or_else(|| "unknown".into(), |p| p.to_string())
}

/// The id as users see it in `ps` (and type it back).
pub(super) fn short(id: &str) -> String {
    id.get(..12).unwrap_or(id).to_string()
}

impl From<ContainerError> for crate::Error {
    fn from(e: ContainerError) -> Self {
        crate::Error::Module(Box::new(e))
    }
}
