//! `start`: a container handed to a new monitor.

use std::path::Path;

use super::error::{short, ContainerError};
use super::host::{Host, Linux};
use super::lookup::{get_on, Container};
use super::monitor::{self, Attach};
use super::report::StartReport;
use super::state::Status;
use crate::error::{Error, Result};
use crate::runtime;
use crate::Mocker;

/// A started container: its PID 1 (callers wait on the monitor's lock).
pub struct Started {
    pub pid: u32,
    /// The monitor, when this call started it: it exits with the
    /// container's code (see `wait_attached`).
    pub monitor: Option<std::process::Child>,
}

/// Start a created or exited container under a new monitor.
pub fn start(mocker: &Mocker, query: &str, attach: Attach) -> Result<Started> {
    start_container(mocker, &get_on(&Linux, mocker, query)?, attach)
}

/// `start` of a container already loaded.
pub fn start_container(mocker: &Mocker, container: &Container, attach: Attach) -> Result<Started> {
    start_on(&Linux, mocker, container, attach)
}

/// A running container is left as it is; any other gets a monitor, whose
/// report says whether it runs. (The monitor records the outcome itself.)
pub(super) fn start_on(host: &dyn Host, mocker: &Mocker, container: &Container, attach: Attach) -> Result<Started> {
    let config = container.config()?;
    if container.state.status == Status::Running {
        return Ok(Started {
            pid: container.state.pid,
            monitor: None,
        });
    }
    match host.spawn_monitor(&mocker.root, &config.id, attach)? {
        (StartReport::Started { pid }, monitor) => Ok(Started { pid, monitor }),
        (StartReport::Failed { code, message }, _) => Err(Error::StartFailed { code, message }),
    }
}

/// Run `mocker __monitor` for container `id` of `root` and read its start
/// report on a pipe; a monitor that reported no start has exited and is
/// reaped here.
pub(super) fn spawn_monitor(
    root: &Path,
    id: &str,
    attach: Attach,
) -> Result<(StartReport, Option<std::process::Child>)> {
    let (status_read, status_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|source| ContainerError::Sys {
            what: "creating the monitor's status pipe",
            source,
        })?;
    let status_fd = std::os::fd::AsRawFd::as_raw_fd(&status_write);
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let root_text = root.display().to_string();
    let env = [
        ("PATH", path.as_str()),
        (monitor::ROOT_ENV, root_text.as_str()),
        (monitor::ID_ENV, id),
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
        &root.join("mounts"),
        "__monitor",
        &[id],
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
        .map_err(|source| ContainerError::SpawnMonitor { id: short(id), source })?;
    drop(status_write);
    let report = StartReport::receive(std::fs::File::from(status_read), &short(id));
    if matches!(report, Ok(StartReport::Started { .. })) {
        return Ok((report?, Some(child)));
    }
    // It exits once it has reported a failure: reaped here.
    let _ = child.wait();
    Ok((report?, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::fake::{self, FakeHost};
    use crate::container::lookup::get_on;

    #[test]
    fn start_runs_a_monitor_and_says_what_it_reported() {
        let (_tmp, mocker) = fake::root_with_image();
        let container = fake::create(&mocker, &FakeHost::new());
        let id = container.record.id.clone();
        let host = FakeHost::new();
        *host.report.borrow_mut() = Some(StartReport::Started { pid: 42 });
        let started = start_on(&host, &mocker, &container, Attach::default()).unwrap();
        assert_eq!(
            (started.pid, host.calls_to("spawn_monitor")),
            (42, vec![format!("spawn_monitor {id}")])
        );
        // A failed start is docker's code and the monitor's reason.
        let host = FakeHost::new();
        *host.report.borrow_mut() = Some(StartReport::Failed {
            code: 127,
            message: "exec: \"nope\": executable file not found in $PATH".into(),
        });
        match start_on(&host, &mocker, &container, Attach::default()) {
            Err(Error::StartFailed { code: 127, message }) => assert!(message.contains("nope"), "{message}"),
            other => panic!("{:?}", other.map(|s| s.pid)),
        }
        // A monitor that cannot be run: its error, nothing else.
        let host = FakeHost::new();
        host.fail("spawn_monitor");
        assert!(start_on(&host, &mocker, &container, Attach::default()).is_err());
        assert_eq!(host.effects(), ["spawn_monitor"]);
    }

    #[test]
    fn a_running_container_gets_no_second_monitor_and_an_unfinished_one_none() {
        let (_tmp, mocker) = fake::root_with_image();
        let id = fake::create(&mocker, &FakeHost::new()).record.id;
        fake::mark_running(&mocker, &id, 42);
        let host = FakeHost::with_monitor(u32::MAX, None);
        let container = get_on(&host, &mocker, &id).unwrap();
        let started = start_on(&host, &mocker, &container, Attach::default()).unwrap();
        assert_eq!(started.pid, 42);
        assert!(host.calls_to("spawn_monitor").is_empty() && started.monitor.is_none());
        // A create cut short (no config.json): refused, no monitor.
        std::fs::remove_file(crate::container::paths::dir_of(&mocker, &id).join("config.json")).unwrap();
        let container = get_on(&host, &mocker, &id).unwrap();
        let err = start_on(&host, &mocker, &container, Attach::default()).err().unwrap();
        assert!(err.to_string().contains("was not fully created"), "{err}");
        assert!(host.calls_to("spawn_monitor").is_empty());
    }
}
