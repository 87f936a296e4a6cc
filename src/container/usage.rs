//! Containers in `system df`.

use std::path::Path;

use super::{list, Status};
use crate::error::Result;
use crate::Mocker;

/// `system df`'s containers line.
#[derive(Debug, Default, serde::Serialize)]
pub struct DiskUsage {
    pub containers: usize,
    pub running: usize,
    /// Bytes in the containers' writable layers.
    pub size: u64,
    /// Of which in containers that are not running.
    pub reclaimable: u64,
}

pub fn disk_usage(mocker: &Mocker) -> Result<DiskUsage> {
    let mut usage = DiskUsage::default();
    for container in list(mocker, true)? {
        let upper = container
            .config
            .as_ref()
            .map(|c| c.init.overlay.base.join(&c.init.overlay.upper));
        let size = upper.map(|u| tree_size(&u)).unwrap_or(0);
        usage.containers += 1;
        usage.size += size;
        if container.state.status == Status::Running {
            usage.running += 1;
        } else {
            usage.reclaimable += size;
        }
    }
    Ok(usage)
}

/// Bytes of regular files under `dir` (symlinks not followed).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => pending.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}
