//! `exec`: a command joining a running container.

use super::create::with_term;
use super::error::ContainerError;
use super::lookup::get;
use super::state::Status;
use crate::error::Result;
use crate::runtime::cgroup::ContainerCgroup;
use crate::runtime::{self, Overrides};
use crate::Mocker;

/// `exec` options.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Keep our stdin for the command (`-i`); otherwise it reads /dev/null.
    pub stdin: bool,
    /// `-t`: a terminal of the container's own.
    pub tty: bool,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
}

/// Run a command in a running container with our stdin, stdout and
/// stderr; its exit code.
pub fn exec(mocker: &Mocker, query: &str, opts: &ExecOptions) -> Result<i32> {
    let container = get(mocker, query)?;
    let config = container.config()?;
    if container.state.status != Status::Running {
        return Err(ContainerError::NotRunning {
            id: container.record.id.clone(),
        }
        .into());
    }
    if opts.command.is_empty() {
        return Err(ContainerError::NoCommand.into());
    }
    let mut process = config.init.process.clone();
    process.args = opts.command.clone();
    for var in &opts.env {
        let key = var.split('=').next().unwrap_or_default();
        process.env.retain(|e| e.split('=').next() != Some(key));
        process.env.push(var.clone());
    }
    if let Some(w) = &opts.workdir {
        process.cwd = w.clone();
    }
    if let Some(u) = &opts.user {
        process.user = u.clone();
    }
    if opts.tty {
        with_term(&mut process.env);
    }
    let privileged = config.init.privileged || opts.privileged;
    if opts.privileged {
        process.capabilities = runtime::spec::capabilities(&Overrides {
            privileged: true,
            ..Default::default()
        })?;
    }
    let spec = runtime::exec::ExecSpec {
        pid: container.state.pid,
        process,
        privileged,
        security: config.init.security.clone(),
        tty: opts.tty,
        stdin: opts.stdin,
    };
    let cgroup = ContainerCgroup::load(&container.record.id);
    runtime::exec::run(&spec, &mocker.root.join("mounts"), |pid| match &cgroup {
        Some(c) => c.add(pid),
        None => Err(ContainerError::CgroupGone {
            id: container.short_id().to_string(),
        }
        .into()),
    })
}
