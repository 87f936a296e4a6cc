//! Durability in one step. A pull writes its snapshot trees without an
//! fsync per file, then makes them durable with one `syncfs` before any is
//! renamed into view. `syncfs` reports a writeback error only to a file
//! descriptor opened before the error (Linux 5.8+), and writeback starts
//! while the files are still being written, so the descriptor is a
//! [`Watch`] opened before the first write.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// A descriptor on a filesystem, opened before the writes it will sync.
#[derive(Debug)]
pub struct Watch {
    dir: File,
    path: std::path::PathBuf,
}

impl Watch {
    /// Start watching the filesystem that holds `dir`.
    pub fn open(dir: &Path) -> Result<Watch> {
        Ok(Watch {
            dir: File::open(dir).ctx(|| format!("opening {}", dir.display()))?,
            path: dir.to_path_buf(),
        })
    }

    /// Write everything dirty on the filesystem to disk; fails if any
    /// writeback on it failed since the watch was opened.
    pub fn sync(&self) -> Result<()> {
        nix::unistd::syncfs(&self.dir).map_err(|e| Error::io(format!("syncing {}", self.path.display()), e.into()))
    }
}

/// fsync a directory so a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}
