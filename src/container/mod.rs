//! Containers and their lifecycle, daemonless as in podman: `create`
//! records one, `start` hands it to a monitor process, and every other
//! command reads what the monitor wrote. One file per verb, as in youki;
//! the on-disk layout is in DESIGN.md.

mod address;
mod attach;
mod bridge;
mod check;
mod config;
mod create;
mod diff;
mod error;
mod etc_files;
mod exec;
mod export;
#[cfg(test)]
mod fake;
mod filter;
pub mod host;
mod inspect;
mod kill;
pub mod logs;
mod lookup;
pub mod monitor;
pub mod names;
mod paths;
pub mod pause;
mod prune;
mod readers;
mod remove;
mod report;
mod start;
pub mod state;
mod stop;
mod usage;
mod wait;

pub use attach::{start_attached, start_detached, Attached, OnFailedStart, RawTerminal};
pub use bridge::remove_unused_bridge;
pub use check::{check, CheckFindings};
pub use config::{userns_mode, ContainerConfig, CreateOptions};
pub use create::create;
pub use diff::{diff, writable, Change, ChangeKind, Writable};
pub use error::ContainerError;
pub use exec::{exec, ExecOptions};
pub use export::export;
pub use filter::Filter;
pub use inspect::inspect;
pub use kill::kill;
pub use lookup::{find, get, is_running, list, load, state_of, users_of_image, Container};
pub use monitor::Attach;
pub use prune::prune;
pub use readers::Reading;
pub use remove::{remove, remove_container};
pub use start::{start, start_container, Started};
pub use state::{State, Status};
pub use stop::{pid1, stop};
pub use usage::{disk_usage, DiskUsage};
pub use wait::{wait, wait_attached, wait_for_exit};
