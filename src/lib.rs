//! mocker: a small, daemonless container engine.
//!
//! Data flows one way: [`registry`] → [`store`] → [`unpack`] → [`snapshot`]
//! → runtime → [`container`]. [`index`] records what the store's blobs mean;
//! [`lookup`] finds images in it and `gc` collects what nothing references,
//! both below their users. The modules at the top ([`pull`], [`login`],
//! [`images`], [`check`]) compose the lower ones; no lower module imports a
//! higher one (`tests/layering.rs` checks it). The CLI in `src/cli/` only
//! parses and prints.

pub mod archive;
pub mod auth;
pub mod check;
pub mod commit;
pub mod container;
pub mod digest;
pub mod download;
pub mod durable;
pub mod error;
pub mod export;
pub(crate) mod gc;
pub mod images;
pub mod index;
pub mod login;
pub mod lookup;
pub mod manifest;
pub mod mount;
pub mod newlayer;
pub mod outfile;
pub mod platform;
pub mod pull;
pub mod push;
pub mod records;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod run;
pub mod runtime;
pub mod safefs;
pub mod snapshot;
pub mod startup;
pub mod store;
pub mod system;
pub mod tarstream;
pub mod timestamp;
pub mod units;
pub mod unpack;

use std::path::{Path, PathBuf};

pub use error::{Error, Result};

use error::IoContext;

/// The default storage root, as docker's /var/lib/docker.
pub const DEFAULT_ROOT: &str = "/var/lib/mocker";

/// An opened storage root: the content store and the index beside it.
#[derive(Clone, Debug)]
pub struct Mocker {
    pub root: PathBuf,
    pub store: store::ContentStore,
    pub index: index::Index,
    pub snapshots: snapshot::Snapshotter,
}

impl Mocker {
    /// Open (creating on first use) the storage root.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).ctx(|| format!("creating storage root {}", root.display()))?;
        // Others may traverse (as into /var/lib/docker) but not list it.
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .ctx(|| format!("chmod {}", root.display()))?;
        let index = index::Index::new(root);
        Ok(Mocker {
            root: root.to_path_buf(),
            store: store::ContentStore::open(root)?,
            snapshots: snapshot::Snapshotter::open(root, index.clone())?,
            index,
        })
    }
}
