//! A root filesystem made from an image: an active snapshot over the image's
//! layer chain, mounted with overlayfs. `image export` and the tests mount one
//! briefly; containers' roots are mounted by the runtime inside their namespace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{IoContext, Result};
use crate::index::ImageRecord;
use crate::lookup;
use crate::mount;
use crate::Mocker;

/// A mounted root filesystem; unmounted and removed on drop.
pub struct MountedRootfs {
    mocker: Mocker,
    key: String,
    path: PathBuf,
    mounted: bool,
}

impl MountedRootfs {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MountedRootfs {
    fn drop(&mut self) {
        // While mounted, its record keeps the lower layers from garbage
        // collection: keep it if the unmount failed.
        if self.mounted && mount::unmount(&self.path).is_err() {
            return;
        }
        let _ = std::fs::remove_dir(&self.path);
        let _ = self.mocker.snapshots.remove_active(&self.key);
    }
}

pub(crate) fn image_of(mocker: &Mocker, input: &str) -> Result<ImageRecord> {
    lookup::one(mocker, input)
}

/// Mount a fresh writable root filesystem of image `input` (its changes are
/// discarded on drop).
pub fn mount_image(mocker: &Mocker, input: &str) -> Result<MountedRootfs> {
    let image = image_of(mocker, input)?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!("mount-{}-{nanos}", std::process::id());
    let overlay = mocker.snapshots.prepare(&key, image.chain_ids.last())?;
    let mounts = mocker.root.join("mounts");
    let path = mounts.join(&key);
    let mut mounted = MountedRootfs {
        mocker: mocker.clone(),
        key,
        path: path.clone(),
        mounted: false,
    };
    std::fs::create_dir_all(&path).ctx(|| format!("creating {}", path.display()))?;
    // Mounted root filesystems hold setuid binaries and devices: root only.
    std::fs::set_permissions(&mounts, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .ctx(|| format!("chmod {}", mounts.display()))?;
    mount::mount_overlay(&overlay, &path)?;
    mounted.mounted = true;
    Ok(mounted)
}

/// docker's export: the merged root filesystem of `input` as a tar stream.
pub fn export_image(mocker: &Mocker, input: &str, out: impl Write) -> Result<()> {
    let rootfs = mount_image(mocker, input)?;
    crate::export::write_tree(rootfs.path(), input, out)
}
