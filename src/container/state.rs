//! A container's changing state (`containers/<id>/state.json`), written
//! whole (temp file + rename) by whichever process changes it: the monitor
//! while it watches the container, the CLI when it finds the monitor gone.
//! How it reads in `ps` is pure logic here.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ContainerError;
use crate::error::{Error, IoContext, Result};
use crate::runtime::network::PortMapping;
use crate::timestamp::{age, Timestamp};

/// The time states and records are stamped with.
pub use crate::timestamp::now;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Exited,
    /// Its creation was cut short (no config.json): only `rm` applies.
    Dead,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// PID 1 of the container, as the host sees it (0 when not running).
    pub pid: u32,
    pub monitor_pid: u32,
    #[serde(default, with = "crate::timestamp::optional")]
    pub started_at: Option<Timestamp>,
    #[serde(default, with = "crate::timestamp::optional")]
    pub finished_at: Option<Timestamp>,
    pub exit_code: i32,
    pub oom_killed: bool,
    /// Why the last start failed, or why the container stopped unwatched.
    pub error: String,
    /// Published ports with the host ports actually bound.
    pub ports: Vec<PortMapping>,
}

/// Exit code recorded when the monitor died and took the container with it.
pub const EXIT_MONITOR_DIED: i32 = 137;

impl State {
    pub fn load(path: &Path) -> Result<State> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::InvalidDocument {
                what: path.display().to_string(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).ctx(|| format!("reading {}", path.display())),
        }
    }

    /// A container that has just started: PID 1 `pid` under the monitor
    /// `monitor_pid`, serving `ports`.
    pub fn running(pid: u32, monitor_pid: u32, ports: Vec<crate::runtime::network::PortMapping>) -> State {
        State {
            status: Status::Running,
            pid,
            monitor_pid,
            started_at: Some(now()),
            finished_at: None,
            exit_code: 0,
            oom_killed: false,
            error: String::new(),
            ports,
        }
    }

    /// Replace the file atomically: readers see the old state or the new.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let bytes = serde_json::to_vec(self).map_err(|source| ContainerError::Encode {
            path: tmp.clone(),
            source,
        })?;
        std::fs::write(&tmp, bytes).ctx(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).ctx(|| format!("renaming {}", tmp.display()))
    }

    /// What the state must become now that its monitor is known to be gone
    /// (`None`: nothing to correct). A container cannot outlive its monitor
    /// (it is killed with it), so "running" without one means it ended.
    pub fn settled(&self, monitor_alive: bool, now: &Timestamp) -> Option<State> {
        if self.status != Status::Running || monitor_alive {
            return None;
        }
        Some(State {
            status: Status::Exited,
            pid: 0,
            monitor_pid: 0,
            finished_at: Some(*now),
            exit_code: EXIT_MONITOR_DIED,
            error: "the container's monitor process died".into(),
            ..self.clone()
        })
    }

    /// docker's STATUS column: "Up 3 seconds", "Exited (0) 2 minutes ago".
    pub fn describe(&self, now: Timestamp) -> String {
        let since = |t: &Option<Timestamp>| t.map(|t| age(t, now)).unwrap_or(Duration::ZERO);
        match self.status {
            Status::Created => "Created".into(),
            Status::Dead => "Dead".into(),
            Status::Running => format!("Up {}", crate::units::human_duration(since(&self.started_at))),
            Status::Exited => format!(
                "Exited ({}) {} ago",
                self.exit_code,
                crate::units::human_duration(since(&self.finished_at))
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    #[test]
    fn a_running_state_without_a_monitor_settles_as_exited() {
        let running = State {
            status: Status::Running,
            pid: 42,
            monitor_pid: 41,
            started_at: Some(at("2026-01-01T00:00:00Z")),
            ..Default::default()
        };
        let now = at("2026-01-01T00:01:00Z");
        assert_eq!(running.settled(true, &now), None);
        let settled = running.settled(false, &now).unwrap();
        assert_eq!(
            (settled.status, settled.pid, settled.exit_code),
            (Status::Exited, 0, 137)
        );
        assert!(settled.error.contains("monitor"));
        assert_eq!(settled.started_at, running.started_at);
        // Nothing else changes without a monitor.
        for status in [Status::Created, Status::Exited, Status::Dead] {
            let s = State {
                status,
                ..Default::default()
            };
            assert_eq!(s.settled(false, &now), None);
        }
    }

    #[test]
    fn status_reads_like_docker_ps() {
        let now = at("2026-01-01T00:02:00Z");
        let up = State {
            status: Status::Running,
            started_at: Some(at("2026-01-01T00:01:57Z")),
            ..Default::default()
        };
        assert_eq!(up.describe(now), "Up 3 seconds");
        let exited = State {
            status: Status::Exited,
            exit_code: 3,
            finished_at: Some(at("2026-01-01T00:00:00.5Z")),
            ..Default::default()
        };
        assert_eq!(exited.describe(now), "Exited (3) About a minute ago");
        assert_eq!(State::default().describe(now), "Created");
    }

    #[test]
    fn reads_state_files_of_earlier_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(
            &path,
            br#"{"status":"exited","pid":0,"monitor_pid":0,"started_at":"2026-12-05T12:00:00.123456789Z","finished_at":null,"exit_code":3,"oom_killed":false,"error":"","ports":[]}"#,
        )
        .unwrap();
        let state = State::load(&path).unwrap();
        assert_eq!(state.started_at, Some(at("2026-12-05T12:00:00.123456789Z")));
        assert_eq!((state.finished_at, state.exit_code), (None, 3));
        state.save(&path).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(
            written.contains(r#""started_at":"2026-12-05T12:00:00.123456789Z","finished_at":null"#),
            "{written}"
        );
    }

    #[test]
    fn saves_atomically_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(State::load(&path).unwrap(), State::default());
        let s = State {
            status: Status::Exited,
            exit_code: 7,
            ..Default::default()
        };
        s.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), s);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&path, b"{").unwrap();
        assert!(State::load(&path).is_err());
    }
}
