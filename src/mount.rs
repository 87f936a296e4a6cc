//! Mounts: the one place mount(2) is called (overlayfs views here, and
//! everything PID 1 mounts in `runtime::init`), so every mount gets the
//! same check of its data. Lower directories are given relative to the
//! snapshots directory (as containerd does) so that even 200 layers fit in
//! the one page of mount data the kernel accepts; a host-side overlay mount
//! runs on a helper thread that unshares its filesystem context (CLONE_FS)
//! to chdir without moving the rest of the process.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::NixPath;

use crate::error::{Error, Result};

/// Why a mount failed: data the kernel would truncate, or its errno.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount options are {len} bytes, over the {MOUNT_DATA_LIMIT}-byte limit")]
    DataTooLarge { len: usize },
    #[error(transparent)]
    Sys(#[from] nix::errno::Errno),
}

impl From<MountError> for std::io::Error {
    fn from(e: MountError) -> Self {
        match e {
            MountError::Sys(errno) => errno.into(),
            other => std::io::Error::other(other),
        }
    }
}

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

/// The kernel copies at most one page of mount data (and silently drops
/// the rest).
const MOUNT_DATA_LIMIT: usize = 4096;

/// mount(2), refusing data the kernel would truncate.
pub fn mount<P: ?Sized + NixPath>(
    source: Option<&str>,
    target: &P,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> std::result::Result<(), MountError> {
    if let Some(len) = data.map(str::len).filter(|&len| len >= MOUNT_DATA_LIMIT) {
        return Err(MountError::DataTooLarge { len });
    }
    Ok(nix::mount::mount(source, target, fstype, flags, data)?)
}

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
        mount(
            Some("overlay"),
            &target_abs,
            Some("overlay"),
            MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
            Some(&options),
        )?;
        Ok(())
    })
    .join()
    .map_err(|_| Error::io(context.clone(), std::io::Error::other("mount thread panicked")))?
    .map_err(|e| Error::io(context, e))
}

pub fn unmount(target: &Path) -> Result<()> {
    nix::mount::umount2(target, MntFlags::empty())
        .map_err(|e| Error::io(format!("unmounting {}", target.display()), e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_the_kernel_would_truncate_is_refused_before_the_call() {
        let data = "x".repeat(MOUNT_DATA_LIMIT);
        let result = mount(None, "/nonexistent", None, MsFlags::empty(), Some(data.as_str()));
        assert!(matches!(
            result,
            Err(MountError::DataTooLarge { len: MOUNT_DATA_LIMIT })
        ));
    }
}
