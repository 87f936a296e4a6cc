//! The library's error type. Every variant renders as one line that names
//! what was wrong, so the CLI can print it as-is.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: String },

    #[error("unsupported digest algorithm {algorithm:?} in {input:?} (only sha256 is supported)")]
    UnsupportedDigestAlgorithm { input: String, algorithm: String },

    #[error("invalid reference format {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },

    #[error("invalid platform {input:?}: expected os/arch[/variant], e.g. linux/arm64/v8")]
    InvalidPlatform { input: String },

    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },

    #[error("{what} is too large: {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { what: String, size: u64, limit: u64 },

    #[error("invalid {what}: {reason}")]
    InvalidDocument { what: String, reason: String },

    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType { what: String, media_type: String },

    #[error("no matching manifest for {wanted} in the manifest list entries (available: {available})")]
    NoMatchingPlatform { wanted: String, available: String },

    #[error("registry {registry} is unreachable: {reason}")]
    Unreachable { registry: String, reason: String },

    #[error("{reference}: not found: {reason}")]
    NotFound { reference: String, reason: String },

    #[error("unauthorized: access to {reference} was denied (run `mocker login {registry}` if it needs credentials)")]
    Unauthorized { reference: String, registry: String },

    #[error("registry error for {reference}: {reason}")]
    Registry { reference: String, reason: String },

    #[error("layer {layer}: {reason}")]
    Layer { layer: String, reason: String },

    #[error("No such container: {0}")]
    NoSuchContainer(String),

    /// The container's command did not start; `code` is docker's exit code.
    #[error("{message}")]
    StartFailed { code: i32, message: String },

    #[error("invalid filter '{0}'")]
    InvalidFilter(String),

    #[error("bad format of filter {0:?} (expected name=value)")]
    BadFilterFormat(String),

    #[error("no such image: {0}")]
    NoSuchImage(String),

    #[error("conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories")]
    ImageReferencedMultiple { id: String },

    #[error("ambiguous image id prefix {0:?}: it matches more than one image")]
    AmbiguousImageId(String),

    #[error("no space left on device while writing {what}")]
    DiskFull { what: String },

    #[error("interrupted")]
    Interrupted,

    #[error("index at {path} is busy: another mocker command held its lock for more than {waited_secs}s (retry once it ends; `fuser -v {path}.lock` names it)")]
    IndexBusy { path: PathBuf, waited_secs: u64 },

    #[error("index at {path} cannot be opened: {reason} (run `mocker system check --repair`)")]
    IndexUnreadable { path: PathBuf, reason: String },

    #[error("index at {path} has schema version {found}, this mocker understands {expected} (use the mocker that wrote it, or another --root)")]
    IndexSchema {
        path: PathBuf,
        found: String,
        expected: u32,
    },

    #[error("index: {0}")]
    Index(String),

    #[error("credentials: {0}")]
    Credentials(String),

    /// A lower module's own typed error (seccomp, security options, user
    /// namespaces), kept whole: `downcast_ref` reaches it. Boxed so that
    /// this module need not import the ones it aggregates.
    #[error(transparent)]
    Module(Box<dyn std::error::Error + Send + Sync>),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Index(e.to_string())
    }
}

impl From<sled::transaction::TransactionError<Error>> for Error {
    fn from(e: sled::transaction::TransactionError<Error>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => e.into(),
        }
    }
}

/// Attach a context to std::io results without repeating the closure shape.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
