//! `commit -c INSTRUCTION`: the Dockerfile instructions docker's commit
//! takes (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER,
//! VOLUME, WORKDIR),
//! parsed before anything is written and applied to the config's JSON
//! (docker's keys; whatever else the parent config holds is kept).

use serde_json::{json, Map, Value};

use super::CommitError;

#[derive(Clone, Debug, PartialEq)]
pub enum Instruction {
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    Env(Vec<(String, String)>),
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    StopSignal(String),
    User(String),
    Workdir(String),
    Volume(Vec<String>),
    /// A trigger for a later build, kept as written.
    OnBuild(String),
}

/// Parse one `-c` value.
pub fn parse(change: &str) -> Result<Instruction, CommitError> {
    let bad = |reason: String| CommitError::BadChange {
        change: change.to_string(),
        reason,
    };
    let trimmed = change.trim();
    let (word, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
    let rest = rest.trim();
    let keyword = word.to_ascii_uppercase();
    if rest.is_empty() {
        return Err(bad(format!("{keyword} requires an argument")));
    }
    Ok(match keyword.as_str() {
        "CMD" => Instruction::Cmd(command(rest)),
        "ENTRYPOINT" => Instruction::Entrypoint(command(rest)),
        "ENV" => Instruction::Env(pairs(rest, true).map_err(bad)?),
        "LABEL" => Instruction::Label(pairs(rest, false).map_err(bad)?),
        "EXPOSE" => Instruction::Expose(
            words(rest)
                .map_err(&bad)?
                .iter()
                .map(|p| port(p))
                .collect::<Result<_, _>>()
                .map_err(bad)?,
        ),
        "STOPSIGNAL" => Instruction::StopSignal(signal(rest).map_err(bad)?),
        "USER" => Instruction::User(rest.to_string()),
        "WORKDIR" => Instruction::Workdir(rest.to_string()),
        "VOLUME" => Instruction::Volume(volumes(rest).map_err(bad)?),
        "ONBUILD" => Instruction::OnBuild(trigger(rest).map_err(bad)?),
        _ => {
            return Err(bad(format!(
                "unknown instruction {word} (commit takes CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, \
                 STOPSIGNAL, USER, VOLUME, WORKDIR)"
            )))
        }
    })
}

/// The exec form (a JSON array of strings), else the shell form.
fn command(rest: &str) -> Vec<String> {
    if rest.starts_with('[') {
        if let Ok(args) = serde_json::from_str::<Vec<String>>(rest) {
            return args;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), rest.into()]
}

/// `K=V K2="v 2"`, or for ENV the old `K value with spaces`.
fn pairs(rest: &str, legacy: bool) -> Result<Vec<(String, String)>, String> {
    let words = words(rest)?;
    let first = words.first().map(String::as_str).unwrap_or("");
    if !first.contains('=') {
        if legacy {
            let (key, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if value.trim().is_empty() {
                return Err(format!("ENV {key} needs a value (ENV {key}=VALUE)"));
            }
            return Ok(vec![(key.to_string(), value.trim().to_string())]);
        }
        return Err(format!("{first:?} is not KEY=VALUE"));
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{w:?} is not KEY=VALUE")),
        })
        .collect()
}

/// Split on unquoted whitespace; quotes group and are removed, a backslash
/// escapes the next character (outside single quotes).
fn words(rest: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.get_or_insert_with(String::new).push(c),
            (_, '\\') => word.get_or_insert_with(String::new).extend(chars.next()),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => out.extend(word.take()),
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    out.extend(word);
    Ok(out)
}

/// `VOLUME ["/a", "/b"]` or `VOLUME /a /b` (split on whitespace); as
/// docker's, any path but an empty one.
fn volumes(rest: &str) -> Result<Vec<String>, String> {
    let paths = match serde_json::from_str::<Vec<String>>(rest) {
        Ok(paths) if rest.starts_with('[') => paths,
        _ => rest.split_whitespace().map(str::to_string).collect(),
    };
    if paths.is_empty() || paths.iter().any(|p| p.trim().is_empty()) {
        return Err("VOLUME specified can not be an empty string".into());
    }
    Ok(paths)
}

/// An ONBUILD trigger: any instruction but the ones docker refuses there.
fn trigger(rest: &str) -> Result<String, String> {
    let word = rest.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    match word.as_str() {
        "ONBUILD" => Err("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        "FROM" | "MAINTAINER" => Err(format!("{word} isn't allowed as an ONBUILD trigger")),
        _ => Ok(rest.to_string()),
    }
}

/// `80`, `80/tcp`, `53/udp` as docker keys them (`80/tcp`).
fn port(spec: &str) -> Result<String, String> {
    let (number, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let valid = number.parse::<u16>().is_ok_and(|n| n > 0) && matches!(proto.as_str(), "tcp" | "udp" | "sctp");
    if !valid {
        return Err(format!("invalid port {spec:?} (PORT[/tcp|udp|sctp])"));
    }
    Ok(format!("{number}/{proto}"))
}

/// A signal name (`SIGTERM`, `TERM`) or number, as docker checks it.
fn signal(rest: &str) -> Result<String, String> {
    if let Ok(n) = rest.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(rest.to_string());
        }
    }
    let upper = rest.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    let realtime = name
        .strip_prefix("SIGRTMIN")
        .or_else(|| name.strip_prefix("SIGRTMAX"))
        .is_some();
    if realtime || name.parse::<nix::sys::signal::Signal>().is_ok() {
        return Ok(rest.to_string());
    }
    Err(format!("invalid signal {rest:?}"))
}

/// Apply `changes`, in order, to the `config` object of an image config.
pub fn apply(image_config: &mut Map<String, Value>, changes: &[Instruction]) {
    let config = image_config.entry("config").or_insert_with(|| json!({}));
    if !config.is_object() {
        *config = json!({});
    }
    let Some(config) = config.as_object_mut() else { return };
    let cmd_set = changes.iter().any(|c| matches!(c, Instruction::Cmd(_)));
    for change in changes {
        match change {
            Instruction::Cmd(args) => {
                config.insert("Cmd".into(), json!(args));
            }
            Instruction::Entrypoint(args) => {
                config.insert("Entrypoint".into(), json!(args));
                // As in a Dockerfile: a new entrypoint drops the inherited CMD.
                if !cmd_set {
                    config.insert("Cmd".into(), Value::Null);
                }
            }
            Instruction::Env(vars) => set_env(config, vars),
            Instruction::Expose(ports) => {
                let exposed = object_at(config, "ExposedPorts");
                for p in ports {
                    exposed.insert(p.clone(), json!({}));
                }
            }
            Instruction::Label(labels) => {
                let map = object_at(config, "Labels");
                for (k, v) in labels {
                    map.insert(k.clone(), json!(v));
                }
            }
            Instruction::StopSignal(s) => {
                config.insert("StopSignal".into(), json!(s));
            }
            Instruction::User(u) => {
                config.insert("User".into(), json!(u));
            }
            Instruction::Volume(paths) => {
                let map = object_at(config, "Volumes");
                for p in paths {
                    map.insert(p.clone(), json!({}));
                }
            }
            Instruction::OnBuild(trigger) => {
                let slot = config.entry("OnBuild").or_insert_with(|| json!([]));
                if !slot.is_array() {
                    *slot = json!([]);
                }
                if let Some(list) = slot.as_array_mut() {
                    list.push(json!(trigger));
                }
            }
            Instruction::Workdir(dir) => {
                let base = config.get("WorkingDir").and_then(Value::as_str).unwrap_or("/");
                let joined = std::path::Path::new(if base.is_empty() { "/" } else { base }).join(dir);
                config.insert("WorkingDir".into(), json!(joined.to_string_lossy()));
            }
        }
    }
}

/// The object under `key`, made if missing or not an object.
fn object_at<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = config.entry(key.to_string()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("made an object above")
}

/// ENV: replace a variable of the same name, else append.
fn set_env(config: &mut Map<String, Value>, vars: &[(String, String)]) {
    let mut env: Vec<String> = config
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    for (key, value) in vars {
        let line = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key.as_str())
        {
            Some(existing) => *existing = line,
            None => env.push(line),
        }
    }
    config.insert("Env".into(), json!(env));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_parse_as_dockerfile_lines() {
        assert_eq!(
            parse(r#"CMD ["echo", "hi"]"#).unwrap(),
            Instruction::Cmd(vec!["echo".into(), "hi".into()])
        );
        assert_eq!(
            parse("cmd echo hi").unwrap(),
            Instruction::Cmd(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(
            parse(r#"ENV A=1 B="two words""#).unwrap(),
            Instruction::Env(vec![("A".into(), "1".into()), ("B".into(), "two words".into())])
        );
        assert_eq!(
            parse("ENV A one two").unwrap(),
            Instruction::Env(vec![("A".into(), "one two".into())])
        );
        assert_eq!(
            parse("EXPOSE 80 53/udp").unwrap(),
            Instruction::Expose(vec!["80/tcp".into(), "53/udp".into()])
        );
        assert_eq!(
            parse("STOPSIGNAL SIGINT").unwrap(),
            Instruction::StopSignal("SIGINT".into())
        );
        for bad in [
            "FROM busybox",
            "CMD",
            "EXPOSE http",
            "STOPSIGNAL NOPE",
            "LABEL novalue",
            "ENV A",
            "LABEL a=\"x",
            r#"VOLUME [""]"#,
            "ONBUILD ONBUILD RUN x",
            "ONBUILD FROM busybox",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn changes_apply_to_the_config() {
        let mut image = json!({"config": {"Env": ["PATH=/bin", "A=0"], "Cmd": ["sh"], "WorkingDir": "/app"}});
        let changes = [
            parse("ENV A=1 B=2").unwrap(),
            parse("ENTRYPOINT [\"/bin/app\"]").unwrap(),
            parse("WORKDIR sub").unwrap(),
            parse("LABEL x=y").unwrap(),
            parse(r#"VOLUME ["/data", "/logs"]"#).unwrap(),
            parse("VOLUME /cache").unwrap(),
            parse("ONBUILD RUN make").unwrap(),
        ];
        apply(image.as_object_mut().unwrap(), &changes);
        let config = &image["config"];
        assert_eq!(config["Env"], json!(["PATH=/bin", "A=1", "B=2"]));
        assert_eq!(config["Entrypoint"], json!(["/bin/app"]));
        assert_eq!(config["Cmd"], Value::Null);
        assert_eq!(config["WorkingDir"], json!("/app/sub"));
        assert_eq!(config["Labels"], json!({"x": "y"}));
        assert_eq!(config["Volumes"], json!({"/data": {}, "/logs": {}, "/cache": {}}));
        assert_eq!(config["OnBuild"], json!(["RUN make"]));
    }
}
