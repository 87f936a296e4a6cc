//! What a container is made from: `create`'s options and the config
//! `start` reads back.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ContainerError;
use super::logs;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::runtime::cgroup::Limits;
use crate::runtime::init::{InitSpec, Volume};
use crate::runtime::network::{Endpoint, PortMapping};
use crate::runtime::security::SecurityOptions;
use crate::runtime::userns::IdMapping;
use crate::runtime::{Network, Overrides};

/// Everything a start needs, fixed at create.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: Digest,
    pub image_manifest: Digest,
    #[serde(with = "crate::timestamp::rfc3339")]
    pub created: crate::timestamp::Timestamp,
    pub init: InitSpec,
    pub network: Network,
    pub endpoint: Option<Endpoint>,
    pub ports: Vec<PortMapping>,
    pub limits: Limits,
    pub auto_remove: bool,
    pub open_stdin: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// The chain its writable snapshot is over (to rebuild the index).
    #[serde(default)]
    pub snapshot_parent: Option<Digest>,
    /// `--log-opt max-size/max-file`; None: the log grows unbounded.
    #[serde(default)]
    pub log_rotation: Option<logs::Rotation>,
    /// `--security-opt` as inspect shows it.
    #[serde(default)]
    pub security_opt: Vec<String>,
    /// Its Entrypoint, Cmd, Env, WorkingDir and User as docker's `Config`
    /// holds them (what `commit` records). None: created before it was kept.
    #[serde(default)]
    pub run: Option<crate::runtime::spec::RunConfig>,
}

impl ContainerConfig {
    pub fn load(dir: &Path) -> Result<ContainerConfig> {
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
        let mut config: ContainerConfig = serde_json::from_slice(&bytes).map_err(|e| Error::InvalidDocument {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        // Created before filters were: it gets the default one (and the
        // no_new_privs it had), never none.
        if config.init.security.predates_seccomp {
            let cache = dir
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("/"))
                .join("seccomp");
            config.init.security =
                SecurityOptions::default().apply(&config.init.process.capabilities, config.init.privileged, &cache)?;
        }
        Ok(config)
    }

    /// The id of its writable snapshot (its upper dir is `<id>/fs`).
    pub(super) fn snapshot_id(&self) -> Option<u64> {
        self.init.overlay.upper.split('/').next()?.parse().ok()
    }

    pub(super) fn save(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("config.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| ContainerError::Encode {
            path: tmp.clone(),
            source,
        })?;
        std::fs::write(&tmp, bytes).ctx(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join("config.json")).ctx(|| format!("renaming {}", tmp.display()))
    }
}

/// `create` / `run` options.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    pub overrides: Overrides,
    pub limits: Limits,
    pub volumes: Vec<Volume>,
    pub read_only: bool,
    pub network: Network,
    pub ports: Vec<PortMapping>,
    /// `--init`
    pub init: bool,
    /// `-t`
    pub tty: bool,
    /// `-i`
    pub open_stdin: bool,
    /// `--rm`
    pub auto_remove: bool,
    /// `--log-opt max-size=… max-file=…`
    pub log_rotation: Option<logs::Rotation>,
    /// `--security-opt`
    pub security: SecurityOptions,
    /// `--userns-remap`: the container's ids on the host.
    pub userns: Option<IdMapping>,
}

/// The user namespace a new container gets: `--userns host` opts out of
/// the root's `--userns-remap USER[:GROUP]`, as docker's does.
pub fn userns_mode(mode: Option<&str>, remap: Option<&str>) -> Result<Option<IdMapping>> {
    match (mode, remap) {
        (Some("host"), _) | (None, None) => Ok(None),
        (Some("") | None, Some(user)) => Ok(Some(IdMapping::for_user(user)?)),
        (Some(other), _) => Err(ContainerError::InvalidUserns { mode: other.into() }.into()),
    }
}
