//! `--security-opt`: the seccomp profile and no_new_privs, decided at
//! create into what PID 1 and every `exec` apply before their exec.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::seccomp::{self, Program, SeccompError};

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("invalid --security-opt {0:?}: expected seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges[=true|false]")]
    Invalid(String),
    #[error("--security-opt {0:?} is not supported: this host runs neither AppArmor nor SELinux for containers")]
    Unsupported(String),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
}

/// Which seccomp profile a container gets.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum SeccompChoice {
    #[default]
    Default,
    Unconfined,
    /// A profile in docker's JSON format (the file's contents).
    Profile(String),
}

/// `--security-opt` as given.
#[derive(Clone, Debug, Default)]
pub struct SecurityOptions {
    pub seccomp: SeccompChoice,
    /// `no-new-privileges=false` lets setuid programs gain privileges again
    /// (mocker sets no_new_privs by default, unless `--privileged`).
    pub allow_new_privileges: bool,
    /// What `inspect` shows as HostConfig.SecurityOpt (a profile file by
    /// its contents, as docker's CLI sends it).
    pub shown: Vec<String>,
}

/// What a container's processes get before their exec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Security {
    #[serde(default)]
    pub allow_new_privileges: bool,
    /// The compiled filter; None: unconfined.
    #[serde(default)]
    pub seccomp: Option<Program>,
    /// Read from a config written before filters existed (see
    /// [`Security::predating`]); never stored.
    #[serde(skip)]
    pub predates_seccomp: bool,
}

impl Security {
    /// What a config without `security` deserializes to: marked, so the
    /// loader can give it the default filter rather than none.
    pub fn predating() -> Security {
        Security {
            predates_seccomp: true,
            ..Security::default()
        }
    }
}

impl SecurityOptions {
    /// docker's forms: `seccomp=unconfined|builtin|FILE`,
    /// `no-new-privileges[=|:true|false]` (`:` as well as `=`).
    pub fn parse(options: &[String]) -> Result<SecurityOptions, SecurityError> {
        let mut parsed = SecurityOptions::default();
        for option in options {
            let (key, value) = match option.split_once(['=', ':']) {
                Some((k, v)) => (k, Some(v)),
                None => (option.as_str(), None),
            };
            let mut shown = option.clone();
            match (key, value) {
                ("seccomp", Some("unconfined")) => parsed.seccomp = SeccompChoice::Unconfined,
                ("seccomp", Some("builtin")) => parsed.seccomp = SeccompChoice::Default,
                ("seccomp", Some(path)) if !path.is_empty() => {
                    let json = std::fs::read_to_string(path).map_err(|source| SeccompError::ReadProfile {
                        path: path.to_string(),
                        source,
                    })?;
                    // Refused here, at create, rather than at every start.
                    seccomp::Profile::parse(&json)?;
                    shown = format!("seccomp={json}");
                    parsed.seccomp = SeccompChoice::Profile(json);
                }
                ("no-new-privileges", None | Some("true")) => parsed.allow_new_privileges = false,
                ("no-new-privileges", Some("false")) => parsed.allow_new_privileges = true,
                // Common in docker command lines; nothing to lift where
                // neither runs. A named profile or label cannot be honoured.
                ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
                ("apparmor" | "label", Some(_)) => return Err(SecurityError::Unsupported(option.clone())),
                _ => return Err(SecurityError::Invalid(option.clone())),
            }
            parsed.shown.push(shown);
        }
        Ok(parsed)
    }

    /// The filter and flags for a container holding `capabilities`;
    /// `--privileged` runs unconfined, as docker's does. Compiled filters
    /// are kept in `cache` (see [`seccomp::compile_cached`]).
    pub fn apply(&self, capabilities: &[String], privileged: bool, cache: &Path) -> Result<Security, SecurityError> {
        let profile = match &self.seccomp {
            _ if privileged => None,
            SeccompChoice::Unconfined => None,
            SeccompChoice::Default => Some(seccomp::DEFAULT_PROFILE),
            SeccompChoice::Profile(json) => Some(json.as_str()),
        };
        Ok(Security {
            predates_seccomp: false,
            allow_new_privileges: self.allow_new_privileges,
            seccomp: profile
                .map(|p| seccomp::compile_cached(cache, p, capabilities))
                .transpose()?,
        })
    }
}

impl From<SecurityError> for crate::Error {
    fn from(e: SecurityError) -> Self {
        crate::Error::Module(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(options: &[&str]) -> Result<SecurityOptions, SecurityError> {
        SecurityOptions::parse(&options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn docker_forms() {
        assert_eq!(parse(&[]).unwrap().seccomp, SeccompChoice::Default);
        assert_eq!(
            parse(&["seccomp=unconfined"]).unwrap().seccomp,
            SeccompChoice::Unconfined
        );
        assert_eq!(
            parse(&["seccomp:unconfined"]).unwrap().seccomp,
            SeccompChoice::Unconfined
        );
        assert!(!parse(&["no-new-privileges"]).unwrap().allow_new_privileges);
        assert!(parse(&["no-new-privileges=false"]).unwrap().allow_new_privileges);
        assert!(!parse(&["no-new-privileges:true"]).unwrap().allow_new_privileges);
        assert!(matches!(parse(&["seccomp"]), Err(SecurityError::Invalid(_))));
        assert!(matches!(
            parse(&["no-new-privileges=maybe"]),
            Err(SecurityError::Invalid(_))
        ));
        assert!(matches!(parse(&["apparmor=x"]), Err(SecurityError::Unsupported(_))));
        assert!(parse(&["apparmor=unconfined", "label=disable"]).is_ok());
        let missing = parse(&["seccomp=/nonexistent/profile.json"]).unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/profile.json"), "{missing}");
    }

    #[test]
    fn a_profile_file_is_read_and_checked_at_parse() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
        let opts = parse(&[&format!("seccomp={}", good.display())]).unwrap();
        assert!(matches!(&opts.seccomp, SeccompChoice::Profile(j) if j.contains("SCMP_ACT_ALLOW")));
        assert_eq!(opts.shown, [r#"seccomp={"defaultAction": "SCMP_ACT_ALLOW"}"#]);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        let err = parse(&[&format!("seccomp={}", bad.display())]).unwrap_err().to_string();
        assert!(err.starts_with("invalid seccomp profile"), "{err}");
    }

    #[test]
    fn privileged_and_unconfined_get_no_filter() {
        let caps = vec!["CAP_CHOWN".to_string()];
        let cache = tempfile::tempdir().unwrap();
        let cache = cache.path();
        assert!(parse(&[])
            .unwrap()
            .apply(&caps, false, cache)
            .unwrap()
            .seccomp
            .is_some());
        assert!(parse(&[]).unwrap().apply(&caps, true, cache).unwrap().seccomp.is_none());
        let unconfined = parse(&["seccomp=unconfined"]).unwrap();
        assert!(unconfined.apply(&caps, false, cache).unwrap().seccomp.is_none());
    }
}
