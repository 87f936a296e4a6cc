//! Registry credentials in docker's `config.json` (`$DOCKER_CONFIG` or
//! `~/.docker`): read through the docker_credential crate (which also runs
//! credential helpers), written by `login`/`logout` the way docker writes them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use base64::Engine as _;
use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;
use serde_json::{Map, Value};

use crate::error::{Error, IoContext, Result};

/// The key docker uses in `auths` for a registry host.
pub fn server_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/".into(),
        other => other.to_string(),
    }
}

pub fn registry_auth(registry: &str) -> Result<RegistryAuth> {
    match docker_credential::get_credential(&server_key(registry)) {
        Ok(DockerCredential::UsernamePassword(user, pass)) => Ok(RegistryAuth::Basic(user, pass)),
        Ok(DockerCredential::IdentityToken(token)) => Ok(RegistryAuth::Bearer(token)),
        Err(
            CredentialRetrievalError::ConfigNotFound
            | CredentialRetrievalError::ConfigReadError
            | CredentialRetrievalError::NoCredentialConfigured,
        ) => Ok(RegistryAuth::Anonymous),
        Err(e) => Err(Error::Credentials(format!("for {registry}: {e}"))),
    }
}

pub fn config_path() -> Result<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .ok_or_else(|| Error::Credentials("neither DOCKER_CONFIG nor HOME is set".into()))?;
    Ok(dir.join("config.json"))
}

fn read_config(path: &PathBuf) -> Result<Map<String, Value>> {
    match fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(Error::Credentials(format!("{} is not a JSON object", path.display()))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Replace the file atomically, readable by its owner only (it holds secrets).
fn write_config(path: &PathBuf, config: &Map<String, Value>) -> Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    let bytes =
        serde_json::to_vec_pretty(&Value::Object(config.clone())).map_err(|e| Error::Credentials(e.to_string()))?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .ctx(|| format!("writing {}", tmp.display()))?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .ctx(|| format!("chmod {}", tmp.display()))?;
    file.write_all(&bytes)
        .and_then(|_| file.sync_all())
        .ctx(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).ctx(|| format!("replacing {}", path.display()))
}

/// Record `user:password` for `registry` under `auths`.
pub fn store_login(registry: &str, user: &str, password: &str) -> Result<PathBuf> {
    let path = config_path()?;
    let mut config = read_config(&path)?;
    let auths = config.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(auths) = auths else {
        return Err(Error::Credentials(format!(
            "{}: \"auths\" is not an object",
            path.display()
        )));
    };
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    auths.insert(server_key(registry), serde_json::json!({ "auth": token }));
    write_config(&path, &config)?;
    Ok(path)
}

/// Forget the credentials for `registry`; false when there were none.
pub fn remove_login(registry: &str) -> Result<bool> {
    let path = config_path()?;
    let mut config = read_config(&path)?;
    let removed = config
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .and_then(|auths| auths.remove(&server_key(registry)))
        .is_some();
    if removed {
        write_config(&path, &config)?;
    }
    Ok(removed)
}
