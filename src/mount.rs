//! overlayfs mounts. Lower directories are given relative to the snapshots
//! directory (as containerd does) so that even 200 layers fit in the one page
//! of mount data the kernel accepts; the mount runs on a helper thread that
//! unshares its filesystem context (CLONE_FS) to chdir without moving the
//! rest of the process.

use std::path::{Path, PathBuf};

use sys_mount::{FilesystemType, Mount, MountFlags, UnmountFlags};

use crate::error::{Error, Result};

/// One overlay mount, paths relative to `base`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Overlay {
    pub base: PathBuf,
    /// Topmost first.
    pub lower: Vec<String>,
    pub upper: String,
    pub work: String,
}

impl Overlay {
    /// The merged view without a writable layer: the upper directory becomes
    /// the topmost lower one, so it can be mounted while the container runs.
    pub fn read_only_view(&self) -> Overlay {
        Overlay {
            base: self.base.clone(),
            lower: std::iter::once(self.upper.clone())
                .chain(self.lower.iter().cloned())
                .collect(),
            upper: String::new(),
            work: String::new(),
        }
    }

    pub fn options(&self) -> String {
        if self.upper.is_empty() {
            return format!("lowerdir={}", self.lower.join(":"));
        }
        format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.join(":"),
            self.upper,
            self.work
        )
    }
}

/// The kernel copies at most one page of mount data.
const MOUNT_DATA_LIMIT: usize = 4096;

/// Mount `overlay` at `target`, nodev and nosuid: a view for the host to read.
pub fn mount_overlay(overlay: &Overlay, target: &Path) -> Result<()> {
    let options = overlay.options();
    if options.len() >= MOUNT_DATA_LIMIT {
        return Err(Error::io(
            format!("mounting {}", target.display()),
            std::io::Error::other(format!(
                "overlay options are {} bytes, over the {MOUNT_DATA_LIMIT}-byte limit",
                options.len()
            )),
        ));
    }
    let base = overlay.base.clone();
    let target_abs =
        std::path::absolute(target).map_err(|e| Error::io(format!("resolving {}", target.display()), e))?;
    let context = format!("mounting overlay at {}", target.display());
    std::thread::spawn(move || -> std::io::Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
        std::env::set_current_dir(&base)?;
        // Host-side views (export, tests): a device node or setuid binary
        // a layer or a container put there must not work through them.
        Mount::builder()
            .fstype(FilesystemType::Manual("overlay"))
            .flags(MountFlags::NODEV | MountFlags::NOSUID)
            .data(&options)
            .mount("overlay", &target_abs)?;
        Ok(())
    })
    .join()
    .map_err(|_| Error::io(context.clone(), std::io::Error::other("mount thread panicked")))?
    .map_err(|e| Error::io(context, e))
}

pub fn unmount(target: &Path) -> Result<()> {
    sys_mount::unmount(target, UnmountFlags::empty())
        .map_err(|e| Error::io(format!("unmounting {}", target.display()), e))
}
