//! Images in and out of tar archives, as `docker save` and `docker load`
//! move them: `save` writes both docker's `manifest.json` layout and an OCI
//! image layout in one tar (what docker 25+ writes); `load` reads either
//! (and the old `<id>/layer.tar` layout), verifying everything as a pull
//! does. See DESIGN.md, "Save and load".

mod error;
mod layout;
mod load;
mod members;
mod plan;
mod save;

pub use error::ArchiveError;
pub use load::{load, Loaded};
pub use save::save;
