//! `login`: credentials checked against a registry, then stored in docker's
//! config.json. Sits above `registry` and `auth`, which know nothing of each other.

use std::path::PathBuf;

use oci_client::secrets::RegistryAuth;

use crate::error::Result;
use crate::reference::ImageRef;
use crate::registry::{Registry, RegistryOptions};

/// Check `user`/`password` against `registry`, then store them.
/// Existing credentials are left alone when the check fails.
pub async fn login(registry: &str, user: &str, password: &str, opts: &RegistryOptions) -> Result<PathBuf> {
    let probe = ImageRef::parse(&format!("{registry}/library/mocker-login-probe"))?;
    let opts = RegistryOptions {
        auth: Some(RegistryAuth::Basic(user.to_string(), password.to_string())),
        ..opts.clone()
    };
    Registry::new(&probe, &opts)?.authenticate().await?;
    crate::auth::store_login(registry, user, password)
}
