//! Where a container's files are.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::Mocker;

pub(super) fn dir_of(mocker: &Mocker, id: &str) -> PathBuf {
    mocker.root.join("containers").join(id)
}

/// The short id of the container whose directory is `dir`, for messages.
pub(super) fn short_id_of(dir: &Path) -> String {
    let name = dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    super::error::short(&name)
}

/// The container's output log (rotated files beside it, see `logs`).
pub(super) fn log_path(dir: &Path) -> PathBuf {
    dir.join("ctr.log")
}

pub(super) fn snapshot_key(id: &str) -> String {
    format!("container-{id}")
}

/// The container's directory (in `containers/`, private to root).
pub(super) fn make_dir(mocker: &Mocker, id: &str) -> Result<()> {
    let dir = dir_of(mocker, id);
    std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let containers = mocker.root.join("containers");
    std::fs::set_permissions(&containers, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .ctx(|| format!("chmod {}", containers.display()))
}

/// Open a lock file of a container's directory for writing, never
/// truncated (a monitor's pid may be in it); made if `create`.
pub(super) fn open_lock_file(path: &Path, create: bool) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(create)
        .truncate(false)
        .write(true)
        .open(path)
}
