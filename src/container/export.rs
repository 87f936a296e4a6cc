//! `export`: a container's root filesystem as a tar stream.

use super::lookup::get;
use crate::error::{IoContext, Result};
use crate::Mocker;

/// The container's root filesystem (its changes over the image) as a tar
/// stream; works while it runs, through a read-only view of its layers.
pub fn export(mocker: &Mocker, query: &str, out: impl std::io::Write) -> Result<()> {
    let container = get(mocker, query)?;
    let config = container.config()?;
    let view = config.init.overlay.read_only_view();
    let mounts = mocker.root.join("mounts");
    let path = mounts.join(format!("export-{}-{}", container.short_id(), std::process::id()));
    std::fs::create_dir_all(&path).ctx(|| format!("creating {}", path.display()))?;
    std::fs::set_permissions(&mounts, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .ctx(|| format!("chmod {}", mounts.display()))?;
    let result = crate::mount::mount_overlay(&view, &path).and_then(|_| {
        let written = crate::export::write_tree(&path, query, out);
        let unmounted = crate::mount::unmount(&path);
        written.and(unmounted)
    });
    let _ = std::fs::remove_dir(&path);
    result
}
