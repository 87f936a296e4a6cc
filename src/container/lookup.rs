//! Finding containers and reading what their files say.

use std::path::Path;

use super::config::ContainerConfig;
use super::error::ContainerError;
use super::host::{Host, Linux};
use super::paths::dir_of;
use super::state::{State, Status};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::ContainerRecord;
use crate::Mocker;

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
        self.record.id.get(..12).unwrap_or(&self.record.id)
    }

    pub(super) fn config(&self) -> Result<&ContainerConfig> {
        self.config.as_ref().ok_or_else(|| {
            ContainerError::NotFullyCreated {
                id: self.short_id().to_string(),
            }
            .into()
        })
    }
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
            _ => Err(ContainerError::AmbiguousPrefix { prefix: query.into() }.into()),
        }
    })
}

/// Read a container's config and state, correcting a state whose monitor
/// died (its processes are killed and its cgroup removed).
pub fn load(mocker: &Mocker, record: ContainerRecord) -> Result<Container> {
    load_on(&Linux, mocker, record)
}

pub(super) fn load_on(host: &dyn Host, mocker: &Mocker, record: ContainerRecord) -> Result<Container> {
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
        state = settle(host, &record.id, &dir, state)?;
    }
    Ok(Container { record, config, state })
}

/// The state as it really is: "running" with its monitor gone means the
/// container died with it; whatever is left of it is killed and the
/// correction saved.
pub(super) fn settle(host: &dyn Host, id: &str, dir: &Path, state: State) -> Result<State> {
    match state.settled(host.monitor_alive(dir), &super::state::now()) {
        None => Ok(state),
        Some(settled) => {
            host.clear_cgroup(id);
            settled.save(&dir.join("state.json"))?;
            Ok(settled)
        }
    }
}

/// The container's state as its files say, without an index session (for
/// a caller that knows the id, e.g. after waiting for its monitor).
pub fn state_of(mocker: &Mocker, id: &str) -> Result<State> {
    let dir = dir_of(mocker, id);
    settle(&Linux, id, &dir, State::load(&dir.join("state.json"))?)
}

/// Whether the container's monitor (and so the container) lives: a lock
/// check, no index session.
pub fn is_running(mocker: &Mocker, id: &str) -> bool {
    Linux.monitor_alive(&dir_of(mocker, id))
}

/// Look a container up and load it.
pub fn get(mocker: &Mocker, query: &str) -> Result<Container> {
    get_on(&Linux, mocker, query)
}

pub(super) fn get_on(host: &dyn Host, mocker: &Mocker, query: &str) -> Result<Container> {
    load_on(host, mocker, find(mocker, query)?)
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
    out.sort_by_key(|c| std::cmp::Reverse(c.record.created));
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::fake::FakeHost;

    #[test]
    fn a_dead_monitor_settles_the_state_and_clears_the_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let running = State {
            status: Status::Running,
            pid: 10,
            monitor_pid: 9,
            ..Default::default()
        };
        let host = FakeHost::with_monitor(1, None);
        // Monitor alive: nothing changes, nothing is killed.
        assert_eq!(settle(&host, "c1", dir.path(), running.clone()).unwrap(), running);
        assert!(host.calls.borrow().is_empty());
        // Monitor gone: exited 137, cgroup cleared, saved for everyone.
        let settled = settle(&host, "c1", dir.path(), running).unwrap();
        assert_eq!((settled.status, settled.exit_code), (Status::Exited, 137));
        assert_eq!(host.calls_to("clear_cgroup"), ["clear_cgroup c1"]);
        assert_eq!(State::load(&dir.path().join("state.json")).unwrap(), settled);
    }
}
