//! Containers in `system check`: their directories against the index, and
//! their restoration from `config.json` when the index was lost.

use super::config::ContainerConfig;
use super::error::{short, ContainerError};
use super::host::{Host, Linux};
use super::lookup::load;
use super::paths::{dir_of, snapshot_key};
use super::remove::discard;
use super::state::Status;
use crate::error::{IoContext, Result};
use crate::index::{Batch, ContainerRecord};
use crate::runtime::network::{self, Claim, Claimant};
use crate::Mocker;

/// What `system check` found about containers, and what `--repair` did.
#[derive(Debug, Default)]
pub struct CheckFindings {
    pub problems: Vec<String>,
    pub repaired: Vec<String>,
}

/// Containers against their directories: a directory with a complete
/// `config.json` but no record (an index that was rebuilt) gets its records
/// back — container, name, address and writable snapshot — so its writable
/// layer is kept; a directory without `config.json` and no record is what a
/// killed create left; a record without a complete directory is a dead
/// container. Run before the snapshot check, which would otherwise delete
/// the writable layer of a container it does not know.
pub fn check(mocker: &Mocker, repair: bool) -> Result<CheckFindings> {
    let mut found = CheckFindings::default();
    let records = mocker.index.session(|s| s.containers())?;
    let dirs: Vec<String> = match std::fs::read_dir(mocker.root.join("containers")) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).ctx(|| "listing containers".into()),
    };
    for id in dirs.iter().filter(|d| !records.contains_key(d.as_str())) {
        check_unrecorded(mocker, id, repair, &mut found)?;
    }
    for record in records.into_values() {
        check_recorded(mocker, record, repair, &mut found)?;
    }
    Ok(found)
}

/// A directory without a record: restored when complete, else removed.
fn check_unrecorded(mocker: &Mocker, id: &str, repair: bool, found: &mut CheckFindings) -> Result<()> {
    let dir = dir_of(mocker, id);
    let Ok(config) = ContainerConfig::load(&dir) else {
        found
            .problems
            .push(format!("directory of an unfinished container {id} is left"));
        if repair {
            std::fs::remove_dir_all(&dir).ctx(|| format!("removing {}", dir.display()))?;
            found
                .repaired
                .push(format!("removed the unfinished container directory {id}"));
        }
        return Ok(());
    };
    found
        .problems
        .push(format!("container {} ({}) is not in the index", short(id), config.name));
    if repair {
        restore(mocker, &config)?;
        found
            .repaired
            .push(format!("restored container {} from its directory", config.name));
        if let Some(endpoint) = &config.endpoint {
            let address = (endpoint.bridge.name.as_str(), endpoint.address);
            check_claim(mocker, id, &config.name, address, true, found)?;
        }
    }
    Ok(())
}

/// A recorded container: a stuck start, its address claim, and whether it
/// was ever completed (removed by `--repair` if not).
fn check_recorded(mocker: &Mocker, record: ContainerRecord, repair: bool, found: &mut CheckFindings) -> Result<()> {
    let container = load(mocker, record)?;
    if let Some(stuck) = stuck_start(&dir_of(mocker, &container.record.id), &container) {
        found.problems.push(stuck);
    }
    if container.state.status != Status::Dead {
        if let Some((bridge, addr)) = &container.record.address {
            let (id, name) = (&container.record.id, &container.record.name);
            check_claim(mocker, id, name, (bridge, *addr), repair, found)?;
        }
        return Ok(());
    }
    found.problems.push(format!(
        "container {} ({}) was not fully created",
        container.short_id(),
        container.record.name
    ));
    if repair {
        discard(&Linux, mocker, &container.record.id, None)?;
        found
            .repaired
            .push(format!("removed the unfinished container {}", container.record.name));
    }
    Ok(())
}

/// A start that has not ended within [`START_TIMEOUT`]: its monitor lives
/// (since its lock file's mtime, when it wrote its pid there) but has not
/// written the state since (a monitor tearing down has).
fn stuck_start(dir: &std::path::Path, container: &super::Container) -> Option<String> {
    use super::stop::START_TIMEOUT;
    if container.state.status == Status::Running || !Linux.monitor_alive(dir) {
        return None;
    }
    let since = std::fs::metadata(super::monitor::lock_path(dir))
        .ok()?
        .modified()
        .ok()?;
    let state_written = std::fs::metadata(dir.join("state.json")).and_then(|m| m.modified());
    if state_written.is_ok_and(|t| t >= since) {
        return None;
    }
    let age = since.elapsed().ok()?;
    (age > START_TIMEOUT).then(|| {
        format!(
            "container {} ({}) has been starting for {} s: its monitor (pid {}) is stuck; `mocker rm -f {}` removes it",
            container.short_id(),
            container.record.name,
            age.as_secs(),
            super::monitor::monitor_pid(dir)
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into()),
            container.short_id()
        )
    })
}

/// A container's address against the host-wide claims: another live
/// container's claim of it is a problem no repair can settle (one of them
/// must be re-created); a missing claim (lost at reboot, or with the index)
/// is claimed by `--repair` and otherwise left for the next start, which
/// claims it too.
fn check_claim(
    mocker: &Mocker,
    id: &str,
    name: &str,
    (bridge, addr): (&str, std::net::Ipv4Addr),
    repair: bool,
    found: &mut CheckFindings,
) -> Result<()> {
    let claimant = Claimant::new(&mocker.root, id)?;
    let lock = network::lock()?;
    match lock.claim_of(bridge, addr, &claimant)? {
        Claim::Ours => {}
        Claim::Free if repair => {
            lock.reclaim(bridge, addr, &claimant)?;
            found
                .repaired
                .push(format!("claimed {addr} on bridge {bridge} for container {name}"));
        }
        Claim::Free => {}
        Claim::Held(holder) => found.problems.push(format!(
            "container {name}: its address {addr} on bridge {bridge} is held by container {} of the root {}: \
             remove one of them and create it again",
            short(&holder.id),
            holder.root.display()
        )),
    }
    Ok(())
}

/// Put back the index records of a container from its `config.json`.
fn restore(mocker: &Mocker, config: &ContainerConfig) -> Result<()> {
    let snapshot_id = config.snapshot_id().ok_or_else(|| ContainerError::NoWritableSnapshot {
        id: config.id.clone(),
        name: config.name.clone(),
    })?;
    mocker.index.session(|s| {
        let mut name = config.name.clone();
        if s.container_named(&name)?.is_some() {
            name = format!("{}-restored", config.name);
        }
        let mut batch = Batch::default();
        batch.put_container(&ContainerRecord {
            id: config.id.clone(),
            name,
            image_manifest: config.image_manifest.clone(),
            created: config.created,
            address: config.endpoint.as_ref().map(|e| (e.bridge.name.clone(), e.address)),
        });
        if s.get_active(&snapshot_key(&config.id))?.is_none() {
            batch.put_active(&crate::index::ActiveRecord {
                id: snapshot_id,
                key: snapshot_key(&config.id),
                parent: config.snapshot_parent.clone(),
            });
        }
        s.apply(&batch)?;
        s.flush()
    })
}
