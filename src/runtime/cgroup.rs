//! Resource limits through cgroups (cgroups-rs picks v1 or v2): memory,
//! memory+swap, CPU quota and shares, and the number of processes. One
//! cgroup `mocker/<id>` per container, removed with it.

use cgroups_rs::fs::cgroup_builder::CgroupBuilder;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::{Cgroup, MaxValue};
use cgroups_rs::CgroupPid;

use super::RuntimeError;
use crate::error::Result;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// `--memory`, bytes.
    pub memory: Option<i64>,
    /// `--memory-swap`, bytes of memory plus swap (-1: unlimited swap).
    pub memory_swap: Option<i64>,
    /// `--cpus`, in CPUs (0.5 = half of one).
    pub cpus: Option<f64>,
    /// `--cpu-shares`, relative weight.
    pub cpu_shares: Option<u64>,
    /// `--pids-limit`.
    pub pids: Option<i64>,
}

/// docker's minimum for `--memory`.
const MIN_MEMORY: i64 = 6 << 20;
const CPU_PERIOD_US: u64 = 100_000;

/// docker's sizes: a number with an optional b, k, m or g (powers of 1024).
pub fn parse_bytes(input: &str) -> Result<i64> {
    let invalid = || crate::Error::from(RuntimeError::InvalidSize(input.to_string()));
    let lower = input.trim().to_ascii_lowercase();
    let (number, unit) = match lower.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let multiplier: f64 = match unit.trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(invalid()),
    };
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let bytes = value * multiplier;
    if !bytes.is_finite() || bytes < 0.0 || bytes > i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes as i64)
}

/// Check limits before anything is created.
pub fn validate(limits: &Limits) -> Result<()> {
    if let Some(m) = limits.memory {
        if m < MIN_MEMORY {
            return Err(RuntimeError::MemoryTooLow(m).into());
        }
    }
    if let (Some(swap), Some(m)) = (limits.memory_swap, limits.memory) {
        if swap != -1 && swap < m {
            return Err(RuntimeError::SwapBelowMemory.into());
        }
    }
    if limits.memory_swap.is_some() && limits.memory.is_none() {
        return Err(RuntimeError::SwapWithoutMemory.into());
    }
    if let Some(cpus) = limits.cpus {
        let available = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        if !(cpus > 0.0 && cpus <= available) {
            return Err(RuntimeError::InvalidCpus { cpus, available }.into());
        }
    }
    if limits.pids.is_some_and(|p| p == 0 || p < -1) {
        return Err(RuntimeError::InvalidPidsLimit.into());
    }
    Ok(())
}

/// docker's default device allow-list (character devices): null, zero,
/// full, random, urandom, tty, console, ptmx, every pts, tun and fuse.
const DEFAULT_DEVICES: &[(i64, i64)] = &[
    (1, 3),
    (1, 5),
    (1, 7),
    (1, 8),
    (1, 9),
    (5, 0),
    (5, 1),
    (5, 2),
    (136, -1),
    (10, 200),
    (10, 229),
];

/// A container's cgroup.
pub struct ContainerCgroup {
    cgroup: Cgroup,
}

impl ContainerCgroup {
    /// Create `mocker/<id>` with `limits`; unless `privileged`, only docker's
    /// default devices may be opened (any may be created with mknod).
    pub fn create(id: &str, limits: &Limits, privileged: bool) -> Result<Self> {
        validate(limits)?;
        let mut builder = CgroupBuilder::new(&format!("mocker/{id}"));
        // cgroup v2 has no devices files (it takes an eBPF program instead).
        if !privileged && !cgroups_rs::fs::hierarchies::is_cgroup2_unified_mode() {
            use cgroups_rs::fs::devices::{DevicePermissions as P, DeviceType as T};
            let rwm = || vec![P::Read, P::Write, P::MkNod];
            let mut devices = builder
                .devices()
                .device(-1, -1, T::All, false, rwm())
                .device(-1, -1, T::Char, true, vec![P::MkNod])
                .device(-1, -1, T::Block, true, vec![P::MkNod]);
            for (major, minor) in DEFAULT_DEVICES {
                devices = devices.device(*major, *minor, T::Char, true, rwm());
            }
            builder = devices.done();
        }
        if let Some(memory) = limits.memory {
            let mut mem = builder.memory().memory_hard_limit(memory);
            if let Some(swap) = limits.memory_swap {
                mem = mem.memory_swap_limit(swap);
            }
            builder = mem.done();
        }
        if limits.cpus.is_some() || limits.cpu_shares.is_some() {
            let mut cpu = builder.cpu();
            if let Some(cpus) = limits.cpus {
                cpu = cpu.period(CPU_PERIOD_US).quota((cpus * CPU_PERIOD_US as f64) as i64);
            }
            if let Some(shares) = limits.cpu_shares {
                cpu = cpu.shares(shares);
            }
            builder = cpu.done();
        }
        if let Some(pids) = limits.pids {
            let max = if pids < 0 { MaxValue::Max } else { MaxValue::Value(pids) };
            builder = builder.pid().maximum_number_of_processes(max).done();
        }
        let cgroup = builder
            .build(cgroups_rs::fs::hierarchies::auto())
            .map_err(cgroup_error("creating the cgroup"))?;
        Ok(ContainerCgroup { cgroup })
    }

    /// The container's existing cgroup, if it has one.
    pub fn load(id: &str) -> Option<Self> {
        let cgroup = Cgroup::load(cgroups_rs::fs::hierarchies::auto(), format!("mocker/{id}"));
        cgroup.exists().then_some(ContainerCgroup { cgroup })
    }

    /// SIGKILL every process left in the cgroup (its monitor is gone) and
    /// wait, bounded, until they have left it, so it can be removed.
    pub fn kill_all(&self) {
        for pid in self.cgroup.procs() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // A freeze a dead commit left: its tasks die only once thawed.
        if let Ok(freezer) = self.freezer() {
            let _ = freezer.thaw();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !self.cgroup.procs().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Move a process (and so its future children) into the cgroup.
    pub fn add(&self, pid: u32) -> Result<()> {
        self.cgroup
            .add_task_by_tgid(CgroupPid::from(pid as u64))
            .map_err(cgroup_error("joining the cgroup"))?;
        Ok(())
    }

    /// Freeze every process of the cgroup (docker's pause) and wait until
    /// the kernel says they are (v1 freezes asynchronously).
    pub fn freeze(&self) -> Result<()> {
        use cgroups_rs::FreezerState;
        let freezer = self.freezer()?;
        freezer.freeze().map_err(cgroup_error("freezing the cgroup"))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match freezer.state().map_err(cgroup_error("reading the freezer state"))? {
                FreezerState::Frozen => return Ok(()),
                _ if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(1)),
                _ => {
                    let _ = freezer.thaw();
                    return Err(RuntimeError::FreezeTimeout.into());
                }
            }
        }
    }

    /// Let frozen processes run again.
    pub fn thaw(&self) -> Result<()> {
        self.freezer()?.thaw().map_err(cgroup_error("thawing the cgroup"))?;
        Ok(())
    }

    fn freezer(&self) -> Result<&cgroups_rs::fs::freezer::FreezerController> {
        Ok(self
            .cgroup
            .controller_of::<cgroups_rs::fs::freezer::FreezerController>()
            .ok_or(RuntimeError::NoFreezer)?)
    }

    /// Whether the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        self.cgroup
            .controller_of::<MemController>()
            .map(|m| m.memory_stat().oom_control.oom_kill > 0)
            .unwrap_or(false)
    }

    /// Remove the (empty) cgroup.
    pub fn remove(self) -> Result<()> {
        self.cgroup.delete().map_err(cgroup_error("removing the cgroup"))?;
        Ok(())
    }
}

fn cgroup_error(what: &'static str) -> impl FnOnce(cgroups_rs::fs::error::Error) -> RuntimeError {
    move |error| RuntimeError::Cgroup { what, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(parse_bytes("20m").unwrap(), 20 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512K").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("1.5m").unwrap(), 3 << 19);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        for bad in ["", "m", "12x", "-5m", "abc"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_validated() {
        assert!(validate(&Limits {
            memory: Some(1 << 20),
            ..Default::default()
        })
        .is_err());
        assert!(validate(&Limits {
            memory: Some(64 << 20),
            memory_swap: Some(32 << 20),
            ..Default::default()
        })
        .is_err());
        assert!(validate(&Limits {
            cpus: Some(0.0),
            ..Default::default()
        })
        .is_err());
        assert!(validate(&Limits {
            cpus: Some(1000.0),
            ..Default::default()
        })
        .is_err());
        assert!(validate(&Limits {
            pids: Some(0),
            ..Default::default()
        })
        .is_err());
        assert!(validate(&Limits {
            memory: Some(64 << 20),
            cpus: Some(0.5),
            pids: Some(10),
            ..Default::default()
        })
        .is_ok());
    }
}
