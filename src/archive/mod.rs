//! Images in and out of tar archives, as `docker save` and `docker load`
//! move them: `save` writes both docker's `manifest.json` layout and an OCI
//! image layout in one tar (what docker 25+ writes); `load` reads either
//! (and the old `<id>/layer.tar` layout), verifying everything as a pull
//! does; `import` makes a one-layer image of a root filesystem tarball. See
//! DESIGN.md, "Save and load".

mod error;
mod import;
mod layout;
mod load;
mod members;
mod plan;
mod save;

pub use error::ArchiveError;
pub use import::{import, ImportOptions, ImportSource};
pub use load::{load, Loaded};
pub use save::save;
