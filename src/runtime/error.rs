//! The runtime's errors. User-input variants render as docker's messages
//! (tests match their first words); system-call variants keep the errno or
//! io error as their source, and name it in their message too, so that the
//! report PID 1 writes (its Display, no chain) is whole.

use nix::errno::Errno;

use super::seccomp::SeccompError;
use super::users::UserError;
use crate::mount::MountError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("network {0} not found: use bridge, none or host")]
    UnknownNetwork(String),

    #[error("invalid volume {input:?}: {reason}")]
    InvalidVolume { input: String, reason: &'static str },

    #[error("volume target {0}: it names no file")]
    InvalidVolumeTarget(String),

    #[error("unknown capability {0:?}: use a name from capabilities(7), e.g. NET_ADMIN, or ALL")]
    UnknownCapability(String),

    #[error("no command specified: the image has no Entrypoint or Cmd (give one after the image name)")]
    NoCommand,

    #[error("invalid environment variable: {0}")]
    InvalidEnv(String),

    #[error("invalid hostname {name:?}: it must be 1 to {max} bytes, without / or NUL")]
    InvalidHostname { name: String, max: usize },

    #[error("the working directory {0:?} is not an absolute path")]
    RelativeWorkdir(String),

    #[error("invalid user {0:?}: expected user[:group] (names or numbers)")]
    InvalidUser(String),

    #[error("env file line {line}: variable {key:?} contains whitespaces or is empty")]
    EnvFileLine { line: usize, key: String },

    #[error("invalid size {0:?}: use a number with an optional unit b, k, m or g")]
    InvalidSize(String),

    #[error("minimum memory limit allowed is 6MB (got {0} bytes)")]
    MemoryTooLow(i64),

    #[error("--memory-swap must be at least --memory (or -1 for unlimited swap)")]
    SwapBelowMemory,

    #[error("--memory-swap needs --memory: give both, or neither")]
    SwapWithoutMemory,

    #[error("--cpus must be more than 0 and at most {available} (got {cpus})")]
    InvalidCpus { cpus: f64, available: f64 },

    #[error("--pids-limit must be positive (or -1 for unlimited)")]
    InvalidPidsLimit,

    #[error("{0:?}: executable file not found in $PATH")]
    NotInPath(String),

    #[error("cannot run {program:?}: {source}")]
    CannotRun {
        program: String,
        #[source]
        source: Errno,
    },

    #[error("NUL byte in {0:?}")]
    NulByte(String),

    #[error(transparent)]
    User(#[from] UserError),

    #[error("capability {name}: {source}")]
    BadCapability {
        name: String,
        #[source]
        source: caps::errors::CapsError,
    },

    #[error("{what}: {source}")]
    Capabilities {
        what: String,
        #[source]
        source: caps::errors::CapsError,
    },

    #[error("working directory {path}: {source}")]
    WorkingDirectory {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("working directory is outside the container")]
    WorkingDirectoryOutside,

    #[error("the monitor gave up before the start")]
    MonitorGaveUp,

    #[error("the container sent no terminal")]
    NoTerminal,

    #[error("the bound binary is not read-only")]
    SelfNotReadOnly,

    #[error("encoding the exec request: {0}")]
    EncodeExec(#[source] serde_json::Error),

    #[error(transparent)]
    Seccomp(#[from] SeccompError),

    /// Not a `#[source]`: its Display already prints its cause, which the
    /// CLI would then print a second time.
    #[error("{what}: {error}")]
    Cgroup {
        what: &'static str,
        error: cgroups_rs::fs::error::Error,
    },

    #[error("the container's cgroup has no freezer (pause it yourself, or commit with --pause=false)")]
    NoFreezer,

    #[error("the container's processes did not freeze within 10 s (commit with --pause=false to read it unpaused)")]
    FreezeTimeout,

    #[error("{what}: {source}")]
    Mount {
        what: String,
        #[source]
        source: MountError,
    },

    #[error("{what}: {source}")]
    Syscall {
        what: String,
        #[source]
        source: Errno,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// `map_err` for a failed system call: what we were doing, and its errno.
    pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> RuntimeError {
        move |source| RuntimeError::Syscall {
            what: what.into(),
            source,
        }
    }

    /// `map_err` for a failed std::io call.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
        move |source| RuntimeError::Io {
            what: what.into(),
            source,
        }
    }

    /// `map_err` for a failed mount.
    pub(crate) fn mount(what: impl Into<String>) -> impl FnOnce(MountError) -> RuntimeError {
        move |source| RuntimeError::Mount {
            what: what.into(),
            source,
        }
    }
}

impl From<RuntimeError> for crate::Error {
    fn from(e: RuntimeError) -> Self {
        crate::Error::Module(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the CLI prints a chain: each source appended unless already said.
    fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
        let mut line = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            if !line.contains(&s.to_string()) {
                line = format!("{line}: {s}");
            }
            source = s.source();
        }
        line
    }

    #[test]
    fn user_input_errors_can_be_matched_and_keep_their_messages() {
        let e = crate::runtime::init::Volume::parse("/x:/proc").unwrap_err();
        let crate::Error::Module(inner) = &e else {
            panic!("{e:?}");
        };
        assert!(matches!(
            inner.downcast_ref::<RuntimeError>(),
            Some(RuntimeError::InvalidVolume { .. })
        ));
        assert!(e.to_string().starts_with("invalid volume \"/x:/proc\": "), "{e}");
    }

    #[test]
    fn a_system_call_error_keeps_its_errno_and_says_it_once() {
        let e: crate::Error = RuntimeError::sys("pipe")(Errno::EMFILE).into();
        assert_eq!(one_line(&e), format!("pipe: {}", Errno::EMFILE));
        let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<Errno>());
        assert_eq!(source, Some(&Errno::EMFILE));
    }
}
