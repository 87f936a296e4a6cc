//! Local image operations over the index and the store, one file per verb:
//! `list` (images, filters), `tag`, `remove` (rmi), `prune` (system prune),
//! `inspect`, `usage` (system df), `history`. Finding images is [`crate::lookup`]'s,
//! garbage collection `gc`'s.

mod error;
mod history;
mod inspect;
mod list;
mod prune;
mod remove;
mod tag;
mod usage;

pub use error::ImageError;
pub use history::{history, HistoryRow};
pub use inspect::{details, inspect, Descriptor, ImageInspect};
pub use list::{image_size, list, Filter, ImageSummary};
pub use prune::{prune, Pruned};
pub use remove::{remove, Removed};
pub use tag::tag;
pub use usage::{disk_usage, DiskUsage};

/// Kept where callers found it before lookup moved below the runtime.
pub use crate::lookup::find;
