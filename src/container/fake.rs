//! A [`Host`] for unit tests: it records every effect asked of it, in
//! order, fails the ones a test names, runs a clock that advances only when
//! the logic pauses, and plays a monitor that lives for a number of polls
//! or until a given signal arrives. With it, and a temporary storage root,
//! the lifecycle runs without root, processes or a bridge.

use std::cell::{Cell, RefCell};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::error::ContainerError;
use super::host::Host;
use super::monitor::Attach;
use super::report::StartReport;
use super::state::State;
use crate::error::Result;
use crate::runtime::network::{Bridge, Endpoint};

pub(super) struct FakeHost {
    /// Every effect, as "name detail", in order.
    pub calls: RefCell<Vec<String>>,
    /// Effects (by name) that fail.
    pub failing: RefCell<Vec<&'static str>>,
    /// Polls of `monitor_alive` that find the monitor alive (`u32::MAX`:
    /// until it dies of `dies_on` or is killed).
    pub polls_left: Cell<u32>,
    pub dies_on: Cell<Option<Signal>>,
    pub sent: RefCell<Vec<Signal>>,
    pub monitor_killed: Cell<bool>,
    /// States `state` reports, last first; then the default (created).
    pub states: RefCell<Vec<State>>,
    /// Addresses claimed and not released, host-wide.
    pub claimed: RefCell<Vec<(String, Ipv4Addr)>>,
    /// What the next monitor reports.
    pub report: RefCell<Option<StartReport>>,
    start: Instant,
    pub elapsed: Cell<Duration>,
}

impl FakeHost {
    /// No monitor runs; every effect succeeds.
    pub fn new() -> FakeHost {
        FakeHost {
            calls: RefCell::default(),
            failing: RefCell::default(),
            polls_left: Cell::new(0),
            dies_on: Cell::new(None),
            sent: RefCell::default(),
            monitor_killed: Cell::new(false),
            states: RefCell::default(),
            claimed: RefCell::default(),
            report: RefCell::default(),
            start: Instant::now(),
            elapsed: Cell::new(Duration::ZERO),
        }
    }

    /// A monitor alive for `polls` polls, or until `dies_on` arrives.
    pub fn with_monitor(polls: u32, dies_on: Option<Signal>) -> FakeHost {
        let host = FakeHost::new();
        host.polls_left.set(polls);
        host.dies_on.set(dies_on);
        host
    }

    pub fn fail(&self, effect: &'static str) {
        self.failing.borrow_mut().push(effect);
    }

    /// The recorded effects whose name is `effect`.
    pub fn calls_to(&self, effect: &str) -> Vec<String> {
        let prefix = format!("{effect} ");
        self.calls
            .borrow()
            .iter()
            .filter(|c| c.starts_with(&prefix) || *c == effect)
            .cloned()
            .collect()
    }

    /// The names of the recorded effects, in order.
    pub fn effects(&self) -> Vec<String> {
        self.calls
            .borrow()
            .iter()
            .map(|c| c.split(' ').next().unwrap_or_default().to_string())
            .collect()
    }

    fn effect(&self, name: &'static str, detail: impl std::fmt::Display) -> Result<()> {
        self.calls.borrow_mut().push(format!("{name} {detail}"));
        if self.failing.borrow().contains(&name) {
            return Err(ContainerError::Sys {
                what: name,
                source: nix::errno::Errno::EIO,
            }
            .into());
        }
        Ok(())
    }
}

impl Host for FakeHost {
    fn monitor_alive(&self, _: &Path) -> bool {
        if self.monitor_killed.get() || self.sent.borrow().iter().any(|s| Some(*s) == self.dies_on.get()) {
            return false;
        }
        let left = self.polls_left.get();
        if left != u32::MAX {
            self.polls_left.set(left.saturating_sub(1));
        }
        left > 0
    }
    fn signal(&self, _: &Path, pid: u32, signal: Signal) -> Result<()> {
        self.sent.borrow_mut().push(signal);
        self.effect("signal", format!("{pid} {signal}"))
    }
    fn clear_cgroup(&self, id: &str) {
        let _ = self.effect("clear_cgroup", id);
    }
    fn state(&self, _: &Path) -> State {
        self.states.borrow_mut().pop().unwrap_or_default()
    }
    fn kill_monitor(&self, _: &Path) {
        self.monitor_killed.set(true);
        let _ = self.effect("kill_monitor", "");
    }
    fn pause(&self, d: Duration) {
        self.elapsed.set(self.elapsed.get() + d);
    }
    fn now(&self) -> Instant {
        self.start + self.elapsed.get()
    }
    fn claim_address(&self, _: &Path, bridge: &Bridge, id: &str, also_used: &[Ipv4Addr]) -> Result<Ipv4Addr> {
        self.effect("claim_address", id)?;
        let mut used: Vec<Ipv4Addr> = self.claimed.borrow().iter().map(|c| c.1).collect();
        used.extend_from_slice(also_used);
        let addr = bridge.subnet.allocate(&used)?;
        self.claimed.borrow_mut().push((bridge.name.clone(), addr));
        Ok(addr)
    }
    fn release_address(&self, _: &Path, id: &str, bridge: &str, addr: Ipv4Addr) -> Result<()> {
        self.effect("release_address", format!("{id} {addr}"))?;
        self.claimed.borrow_mut().retain(|c| *c != (bridge.to_string(), addr));
        Ok(())
    }
    fn detach_network(&self, endpoint: &Endpoint) -> Result<()> {
        self.effect("detach_network", &endpoint.host_veth)
    }
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<()> {
        self.effect("chown", format!("{} {uid}:{gid}", path.display()))
    }
    fn claim_for_removal(&self, _: &Path) -> bool {
        let free = !self.monitor_alive(Path::new(""));
        let _ = self.effect("claim_for_removal", free);
        free
    }
    fn wait_for_teardown(&self, _: &Path, timeout: Duration) -> bool {
        let done = self.effect("wait_for_teardown", "").is_ok();
        if !done {
            self.pause(timeout);
        }
        done
    }
    fn spawn_monitor(&self, _: &Path, id: &str, _: Attach) -> Result<(StartReport, Option<std::process::Child>)> {
        self.effect("spawn_monitor", id)?;
        let report = self
            .report
            .borrow_mut()
            .take()
            .expect("the test says what the monitor reports");
        Ok((report, None))
    }
}

/// The config of the one image of [`root_with_image`]: no layers.
const IMAGE_CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;

/// The image ID of [`root_with_image`]'s image.
pub fn image_id() -> String {
    crate::digest::Digest::of_bytes(IMAGE_CONFIG).to_string()
}

/// A storage root in a temporary directory with one image.
pub fn root_with_image() -> (tempfile::TempDir, crate::Mocker) {
    let tmp = tempfile::tempdir().unwrap();
    let mocker = crate::Mocker::open(tmp.path()).unwrap();
    let config = crate::digest::Digest::of_bytes(IMAGE_CONFIG);
    mocker.store.write_bytes(&config, IMAGE_CONFIG, "config").unwrap();
    let image = crate::index::ImageRecord {
        manifest_digest: crate::digest::Digest::of_bytes(b"a manifest"),
        manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        manifest_size: 10,
        index_digest: None,
        config_digest: config,
        config_size: IMAGE_CONFIG.len() as u64,
        layers: Vec::new(),
        diff_ids: Vec::new(),
        chain_ids: Vec::new(),
        platform: "linux/amd64".into(),
        created: None,
    };
    mocker
        .index
        .session(|s| {
            let mut batch = crate::index::Batch::default();
            batch.put_image(&image);
            s.apply(&batch)
        })
        .unwrap();
    (tmp, mocker)
}

/// `create`'s options for the image of [`root_with_image`] (no seccomp
/// filter to compile).
pub fn options(network: crate::runtime::Network) -> super::CreateOptions {
    super::CreateOptions {
        image: image_id(),
        network,
        security: crate::runtime::security::SecurityOptions {
            seccomp: crate::runtime::security::SeccompChoice::Unconfined,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A container created on `host`, on the bridge.
pub fn create(mocker: &crate::Mocker, host: &FakeHost) -> super::Container {
    super::create::create_on(host, mocker, &options(crate::runtime::Network::Bridge)).unwrap()
}

/// What the monitor writes once the container runs as `pid`.
pub fn mark_running(mocker: &crate::Mocker, id: &str, pid: u32) {
    let path = super::paths::dir_of(mocker, id).join("state.json");
    State::running(pid, 1, Vec::new()).save(&path).unwrap();
}

/// What of any container the root holds: records (container, writable
/// snapshot), container directories and numbered snapshot directories.
pub fn leftovers(mocker: &crate::Mocker) -> Vec<String> {
    let mut left: Vec<String> = mocker
        .index
        .session(|s| {
            let containers = s.containers()?.into_keys().map(|id| format!("record {id}"));
            let actives = s.actives()?.into_keys().map(|key| format!("active {key}"));
            Ok(containers.chain(actives).collect::<Vec<_>>())
        })
        .unwrap();
    if let Ok(entries) = std::fs::read_dir(mocker.root.join("containers")) {
        left.extend(
            entries
                .flatten()
                .map(|e| format!("dir {}", e.file_name().to_string_lossy())),
        );
    }
    let snapshots = mocker.snapshots.numbered_dirs().unwrap();
    left.extend(snapshots.into_iter().map(|(id, _)| format!("snapshot {id}")));
    left
}
