//! `rm`: stopping what runs, then undoing everything `create` made.

use std::path::Path;

use super::address::release_address;
use super::config::ContainerConfig;
use super::error::{short, ContainerError};
use super::host::{Host, Linux};
use super::lookup::{get_on, Container};
use super::monitor;
use super::paths::{dir_of, snapshot_key};
use super::state::Status;
use super::stop::{force_stop, KILL_TIMEOUT};
use crate::error::{Error, IoContext, Result};
use crate::index::Batch;
use crate::Mocker;

/// Remove a container: its writable layer, cgroup, files and records
/// (the records last, so an interrupted removal can be run again).
pub fn remove(mocker: &Mocker, query: &str, force: bool) -> Result<String> {
    remove_container_on(&Linux, mocker, get_on(&Linux, mocker, query)?, force)
}

/// `remove` of a container already loaded.
pub fn remove_container(mocker: &Mocker, container: Container, force: bool) -> Result<String> {
    remove_container_on(&Linux, mocker, container, force)
}

pub(super) fn remove_container_on(
    host: &dyn Host,
    mocker: &Mocker,
    container: Container,
    force: bool,
) -> Result<String> {
    let dir = dir_of(mocker, &container.record.id);
    let refused = || {
        Error::from(ContainerError::RemoveRunning {
            name: container.record.name.clone(),
        })
    };
    if container.state.status == Status::Running && !force {
        return Err(refused());
    }
    if !host.claim_for_removal(&dir) {
        if !force {
            return Err(refused());
        }
        // Marked too: once it is stopped, no new start may begin.
        let _ = std::fs::File::create(monitor::removing_path(&dir));
        force_stop(host, &dir)?;
    }
    discard(host, mocker, &container.record.id, container.config.as_ref())?;
    Ok(container.record.id)
}

/// Whether no monitor lives for the container in `dir`; if none, it is
/// marked as being removed. The mark is made while holding `monitor.lock`,
/// so a monitor that starts later sees it and does not run the container
/// (see `monitor::removing_path`): a removal never races a start into a
/// container nobody stops, and a live monitor never sees a mark that a
/// removal then takes back.
pub(super) fn claim_for_removal(dir: &Path) -> bool {
    // Created if missing, so a first start cannot slip in unlocked.
    let file = super::paths::open_lock_file(&monitor::lock_path(dir), true);
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
pub(super) fn discard(host: &dyn Host, mocker: &Mocker, id: &str, config: Option<&ContainerConfig>) -> Result<()> {
    let dir = dir_of(mocker, id);
    let key = snapshot_key(id);
    // A `diff` or `commit` reading the layer finishes first.
    let _readers = super::readers::exclude(&dir);
    host.clear_cgroup(id);
    if let Some(endpoint) = config.and_then(|c| c.endpoint.as_ref()) {
        host.detach_network(endpoint)?;
    }
    // Its mounts must be gone before their directories go. Bounded: the
    // callers made sure no monitor runs it, so this is only the one that
    // just ended letting go of its namespaces.
    if !host.wait_for_teardown(&dir, KILL_TIMEOUT) {
        return Err(ContainerError::StillHeld {
            id: short(id),
            monitor_pid: monitor::monitor_pid(&dir),
        }
        .into());
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
    // config.json before readers.lock: a reader that finds the lock gone
    // then finds the container gone, and makes no new lock in its place.
    let _ = std::fs::remove_file(dir.join("config.json"));
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
    release_address(host, mocker, id, record.as_ref().and_then(|r| r.address.as_ref()));
    // What an earlier, interrupted removal left.
    mocker.snapshots.sweep_partial_builds();
    Ok(())
}

/// Delete the directories of creates killed before their index commit (a
/// create makes its directory first, for its host-wide address claim): no
/// record and no `config.json`. Only a create holding an index session can
/// have such a directory legitimately, so this runs inside one. A directory
/// with a `config.json` but no record is a container `system check
/// --repair` can restore: kept.
pub(super) fn sweep_unfinished_creates(mocker: &Mocker, s: &crate::index::Session) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::fake::{self, FakeHost};
    use crate::container::lookup::get_on;
    use crate::container::state::State;
    use nix::sys::signal::Signal;

    #[test]
    fn rm_refuses_a_running_container_and_keeps_all_of_it() {
        let (_tmp, mocker) = fake::root_with_image();
        let creator = FakeHost::new();
        let id = fake::create(&mocker, &creator).record.id;
        fake::mark_running(&mocker, &id, 42);
        let before = fake::leftovers(&mocker);
        let host = FakeHost::with_monitor(u32::MAX, None);
        let err = remove_container_on(&host, &mocker, get_on(&host, &mocker, &id).unwrap(), false).unwrap_err();
        assert!(err.to_string().starts_with("cannot remove container"), "{err}");
        assert!(host.calls.borrow().is_empty());
        // Recorded as created, but its monitor is starting it: refused too.
        std::fs::remove_file(dir_of(&mocker, &id).join("state.json")).unwrap();
        let container = get_on(&host, &mocker, &id).unwrap();
        assert!(remove_container_on(&host, &mocker, container, false).is_err());
        assert_eq!(host.effects(), ["claim_for_removal"]);
        assert_eq!(fake::leftovers(&mocker), before);
        assert_eq!(creator.claimed.borrow().len(), 1);
    }

    #[test]
    fn rm_force_stops_first_then_removes_everything_records_last() {
        let (_tmp, mocker) = fake::root_with_image();
        let id = fake::create(&mocker, &FakeHost::new()).record.id;
        fake::mark_running(&mocker, &id, 42);
        let host = FakeHost::with_monitor(u32::MAX, Some(Signal::SIGKILL));
        let container = get_on(&host, &mocker, &id).unwrap();
        host.states.borrow_mut().push(container.state.clone());
        let address = container.record.address.clone().unwrap();
        host.claimed.borrow_mut().push(address.clone());
        assert_eq!(remove_container_on(&host, &mocker, container, true).unwrap(), id);
        assert_eq!(
            host.effects(),
            [
                "claim_for_removal",
                "signal",
                "clear_cgroup",
                "detach_network",
                "wait_for_teardown",
                "release_address"
            ]
        );
        assert_eq!(host.calls_to("signal"), ["signal 42 SIGKILL"]);
        assert_eq!(
            host.calls_to("release_address"),
            [format!("release_address {id} {}", address.1)]
        );
        assert!(host.claimed.borrow().is_empty());
        assert_eq!(fake::leftovers(&mocker), Vec::<String>::new());
    }

    #[test]
    fn rm_of_a_stopped_container_signals_nothing_and_a_held_one_is_kept_for_a_retry() {
        let (_tmp, mocker) = fake::root_with_image();
        let id = fake::create(&mocker, &FakeHost::new()).record.id;
        let exited = State {
            status: Status::Exited,
            exit_code: 3,
            ..Default::default()
        };
        exited.save(&dir_of(&mocker, &id).join("state.json")).unwrap();
        // The monitor that just ended still holds the namespaces: the
        // records stay, so `rm` finds the container again.
        let host = FakeHost::new();
        host.fail("wait_for_teardown");
        let container = get_on(&host, &mocker, &id).unwrap();
        let err = remove_container_on(&host, &mocker, container, false).unwrap_err();
        assert!(err.to_string().contains("still held by its monitor"), "{err}");
        assert!(fake::leftovers(&mocker).contains(&format!("record {id}")));
        assert!(dir_of(&mocker, &id).join("config.json").exists());
        // Once it has let go: removed, without a signal.
        let host = FakeHost::new();
        let container = get_on(&host, &mocker, &id).unwrap();
        remove_container_on(&host, &mocker, container, false).unwrap();
        assert!(host.sent.borrow().is_empty());
        assert_eq!(fake::leftovers(&mocker), Vec::<String>::new());
    }
}
