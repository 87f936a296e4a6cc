//! What a container runs: the image config's Entrypoint, Cmd, Env,
//! WorkingDir and User, with docker's overrides applied. Pure logic.

use oci_spec::image::{Config, ImageConfiguration};
use serde::{Deserialize, Serialize};

use super::RuntimeError;
use crate::error::Result;

/// The process to start inside the container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// `user[:group]` by name or number ("" is root), resolved by init
    /// against the image's /etc/passwd and /etc/group.
    pub user: String,
    pub hostname: String,
    /// Capability names (`CAP_…`) the process keeps.
    pub capabilities: Vec<String>,
}

/// The user's overrides (`run` flags).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub entrypoint: Option<String>,
    /// Arguments after the image name; replace the image's Cmd.
    pub cmd: Vec<String>,
    /// `-e KEY=VALUE` (or `-e KEY`, taken from our environment as docker does).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
}

/// docker's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The capability set after `--privileged`, `--cap-add` and `--cap-drop`
/// (names with or without `CAP_`, any case; `ALL`).
pub fn capabilities(overrides: &Overrides) -> Result<Vec<String>> {
    let all: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    let normalize = |name: &str| -> Result<String> {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") || upper == "ALL" {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if full == "ALL" || all.contains(&full) {
            Ok(full)
        } else {
            Err(RuntimeError::UnknownCapability(name.to_string()).into())
        }
    };
    let mut set: Vec<String> = if overrides.privileged {
        all.clone()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    };
    for name in &overrides.cap_drop {
        match normalize(name)?.as_str() {
            "ALL" => set.clear(),
            cap => set.retain(|c| c != cap),
        }
    }
    for name in &overrides.cap_add {
        match normalize(name)?.as_str() {
            "ALL" => set = all.clone(),
            cap if !set.iter().any(|c| c == cap) => set.push(cap.to_string()),
            _ => {}
        }
    }
    set.sort();
    Ok(set)
}

/// HOST_NAME_MAX: sethostname(2) refuses longer names.
const MAX_HOSTNAME: usize = 64;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Combine an image's config (its `config` section) with overrides.
pub fn process_spec(image: &ImageConfiguration, overrides: &Overrides, container_id: &str) -> Result<ProcessSpec> {
    process_for(&run_config(image, overrides)?, overrides, container_id)
}

/// The container's own config as docker keeps it (inspect's `Config`): the
/// image's with the overrides applied, before the runtime adds HOSTNAME or
/// TERM. `commit` makes it the new image's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    /// "" when neither the image nor `-w` sets one.
    pub working_dir: String,
    pub user: String,
}

pub fn run_config(image: &ImageConfiguration, overrides: &Overrides) -> Result<RunConfig> {
    let none = Config::default();
    let config = image.config().as_ref().unwrap_or(&none);
    let (entrypoint, cmd) = command(config, overrides);
    Ok(RunConfig {
        entrypoint,
        cmd,
        env: environment(config, &overrides.env)?,
        working_dir: overrides
            .workdir
            .clone()
            .or_else(|| non_empty(config.working_dir()))
            .unwrap_or_default(),
        user: overrides
            .user
            .clone()
            .or_else(|| non_empty(config.user()))
            .unwrap_or_default(),
    })
}

/// The process `run` starts, checked as the kernel and init need it.
pub fn process_for(run: &RunConfig, overrides: &Overrides, container_id: &str) -> Result<ProcessSpec> {
    let args: Vec<String> = run.entrypoint.iter().chain(&run.cmd).cloned().collect();
    if args.is_empty() {
        return Err(RuntimeError::NoCommand.into());
    }
    // As docker's runtime, not its container config: a default PATH.
    let mut env = run.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let hostname = overrides
        .hostname
        .clone()
        .unwrap_or_else(|| container_id.chars().take(12).collect());
    // The kernel's limit: refused here rather than by every start.
    if hostname.is_empty() || hostname.len() > MAX_HOSTNAME || hostname.contains(['\0', '/']) {
        return Err(RuntimeError::InvalidHostname {
            name: hostname,
            max: MAX_HOSTNAME,
        }
        .into());
    }
    env.retain(|e| !e.starts_with("HOSTNAME="));
    env.push(format!("HOSTNAME={hostname}"));
    let cwd = match run.working_dir.as_str() {
        "" => "/".to_string(),
        dir => dir.to_string(),
    };
    if !cwd.starts_with('/') {
        return Err(RuntimeError::RelativeWorkdir(cwd).into());
    }
    let user = run.user.clone();
    if user.chars().any(|c| c.is_whitespace() || c == '/') || user.matches(':').count() > 1 {
        return Err(RuntimeError::InvalidUser(user).into());
    }
    let capabilities = capabilities(overrides)?;
    Ok(ProcessSpec {
        args,
        env,
        cwd,
        user,
        hostname,
        capabilities,
    })
}

/// An image config's string, where "" means unset.
fn non_empty(field: &Option<String>) -> Option<String> {
    field.clone().filter(|s| !s.is_empty())
}

/// Entrypoint and Cmd, as docker combines the image's with the overrides.
fn command(config: &Config, overrides: &Overrides) -> (Vec<String>, Vec<String>) {
    let entrypoint = match &overrides.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => config.entrypoint().clone().unwrap_or_default(),
    };
    // docker: --entrypoint resets the image's Cmd too.
    let cmd = if !overrides.cmd.is_empty() {
        overrides.cmd.clone()
    } else if overrides.entrypoint.is_some() {
        Vec::new()
    } else {
        config.cmd().clone().unwrap_or_default()
    };
    (entrypoint, cmd)
}

/// The image's Env and then `-e` overrides: `KEY=VALUE`
/// replaces KEY, a bare `KEY` takes our own value (or is dropped).
fn environment(config: &Config, overrides: &[String]) -> Result<Vec<String>> {
    let mut env = config.env().clone().unwrap_or_default();
    for var in overrides {
        if var.is_empty() || var.starts_with('=') {
            return Err(RuntimeError::InvalidEnv(var.clone()).into());
        }
        let assignment = match var.split_once('=') {
            Some(_) => var.clone(),
            None => match std::env::var(var) {
                Ok(value) => format!("{var}={value}"),
                Err(_) => continue,
            },
        };
        let key = assignment.split('=').next().unwrap_or_default().to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(assignment);
    }
    Ok(env)
}

/// docker's `--env-file`: KEY=VALUE lines; `#` comments and blank lines
/// skipped; a bare KEY takes our own value (or is dropped if we have none).
pub fn parse_env_file(contents: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (n, line) in contents.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split('=').next().unwrap_or_default();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(RuntimeError::EnvFileLine {
                line: n + 1,
                key: key.to_string(),
            }
            .into());
        }
        out.push(line.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// An image config document whose `config` section is `config`.
    fn image(config: Value) -> ImageConfiguration {
        serde_json::from_value(json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": config,
        }))
        .unwrap()
    }

    #[test]
    fn image_config_with_overrides() {
        let config = image(
            json!({"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["A=1", "PATH=/bin"], "WorkingDir": "/srv", "User": "10:20"}),
        );
        let spec = process_spec(&config, &Overrides::default(), "0123456789abcdef").unwrap();
        assert_eq!(spec.args, vec!["/bin/app", "--serve"]);
        assert_eq!(
            (spec.user.as_str(), spec.cwd.as_str(), spec.hostname.as_str()),
            ("10:20", "/srv", "0123456789ab")
        );
        assert!(spec.env.contains(&"A=1".to_string()) && spec.env.contains(&"PATH=/bin".to_string()));

        let o = Overrides {
            cmd: vec!["x".into()],
            env: vec!["A=2".into()],
            workdir: Some("/tmp".into()),
            user: Some("5".into()),
            ..Default::default()
        };
        let spec = process_spec(&config, &o, "id").unwrap();
        assert_eq!(spec.args, vec!["/bin/app", "x"]);
        assert!(spec.env.contains(&"A=2".to_string()) && !spec.env.contains(&"A=1".to_string()));
        assert_eq!((spec.user.as_str(), spec.cwd.as_str()), ("5", "/tmp"));

        let o = Overrides {
            entrypoint: Some("/bin/sh".into()),
            ..Default::default()
        };
        assert_eq!(process_spec(&config, &o, "id").unwrap().args, vec!["/bin/sh"]);
    }

    #[test]
    fn image_config_as_builders_write_it() {
        // Unset fields are null or "", unknown ones are ignored.
        let doc = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
            "config":{"User":"app:staff","Env":["PATH=/usr/bin:/bin","LANG=C.UTF-8"],
            "Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx","-g","daemon off;"],
            "WorkingDir":"/srv","Labels":null,"OnBuild":null,"Shell":["/bin/sh","-c"]}}"#;
        let config: ImageConfiguration = serde_json::from_slice(doc).unwrap();
        let o = Overrides {
            env: vec!["LANG=en".into()],
            ..Default::default()
        };
        let spec = process_spec(&config, &o, "0123456789abcdef").unwrap();
        let expected = ProcessSpec {
            args: ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
                .map(String::from)
                .to_vec(),
            env: ["PATH=/usr/bin:/bin", "LANG=en", "HOSTNAME=0123456789ab"]
                .map(String::from)
                .to_vec(),
            cwd: "/srv".into(),
            user: "app:staff".into(),
            hostname: "0123456789ab".into(),
            capabilities: capabilities(&Overrides::default()).unwrap(),
        };
        assert_eq!(spec, expected);

        let unset = image(json!({"Cmd": ["sh"], "WorkingDir": "", "User": "", "Env": null}));
        let spec = process_spec(&unset, &Overrides::default(), "id").unwrap();
        assert_eq!((spec.cwd.as_str(), spec.user.as_str()), ("/", ""));
        assert_eq!(spec.env, vec![DEFAULT_PATH.to_string(), "HOSTNAME=id".into()]);
        let mut no_config = image(json!({}));
        no_config.set_config(None);
        let err = process_spec(&no_config, &Overrides::default(), "id").unwrap_err();
        assert!(err.to_string().starts_with("no command specified"), "{err}");
    }

    #[test]
    fn capability_sets() {
        let default = capabilities(&Overrides::default()).unwrap();
        assert_eq!(default.len(), DEFAULT_CAPABILITIES.len());
        assert!(!default.contains(&"CAP_SYS_ADMIN".to_string()));
        let o = Overrides {
            cap_add: vec!["net_admin".into()],
            cap_drop: vec!["CAP_CHOWN".into()],
            ..Default::default()
        };
        let set = capabilities(&o).unwrap();
        assert!(set.contains(&"CAP_NET_ADMIN".to_string()) && !set.contains(&"CAP_CHOWN".to_string()));
        let o = Overrides {
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["KILL".into()],
            ..Default::default()
        };
        assert_eq!(capabilities(&o).unwrap(), vec!["CAP_KILL".to_string()]);
        assert!(capabilities(&Overrides {
            privileged: true,
            ..Default::default()
        })
        .unwrap()
        .contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(capabilities(&Overrides {
            cap_add: vec!["FLY".into()],
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn defaults_and_errors() {
        let spec = process_spec(&image(json!({"Cmd": ["sh"]})), &Overrides::default(), "id").unwrap();
        assert!(spec.env[0].starts_with("PATH="));
        assert_eq!(spec.cwd, "/");
        assert!(process_spec(&image(json!({})), &Overrides::default(), "id").is_err());
        let o = Overrides {
            user: Some("a:b:c".into()),
            ..Default::default()
        };
        assert!(process_spec(&image(json!({"Cmd": ["sh"]})), &o, "id")
            .unwrap_err()
            .to_string()
            .contains("invalid user"));
        let parsed = parse_env_file("# comment\n\nA=1\n  B=two words\nC\n").unwrap();
        assert_eq!(parsed, vec!["A=1", "B=two words", "C"]);
        assert!(parse_env_file("bad key=1").is_err());
        let o = Overrides {
            workdir: Some("rel".into()),
            ..Default::default()
        };
        assert!(process_spec(&image(json!({"Cmd": ["sh"]})), &o, "id").is_err());
        for env in ["=x", ""] {
            let o = Overrides {
                env: vec![env.into()],
                ..Default::default()
            };
            let err = process_spec(&image(json!({"Cmd": ["sh"]})), &o, "id")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("invalid environment variable"), "{err}");
        }
        for (hostname, ok) in [("h".repeat(64), true), ("h".repeat(65), false), (String::new(), false)] {
            let o = Overrides {
                hostname: Some(hostname.clone()),
                ..Default::default()
            };
            assert_eq!(
                process_spec(&image(json!({"Cmd": ["sh"]})), &o, "id").is_ok(),
                ok,
                "{hostname}"
            );
        }
    }
}
