//! What is wrong with an archive, in one line each.

/// A typed archive error, carried in [`crate::Error::Module`].
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("invalid tar archive: {0}")]
    Tar(#[source] crate::tarstream::TarError),
    #[error("unsafe path {0:?} in the archive (absolute or with `..`)")]
    UnsafePath(String),
    #[error("the archive holds {0:?} twice")]
    DuplicateMember(String),
    #[error("unsupported member {path:?} in the archive ({kind})")]
    UnsupportedMember { path: String, kind: String },
    #[error("{what} {path:?} is missing from the archive")]
    Missing { what: &'static str, path: String },
    #[error("the manifest of {image} names layer {layer} twice")]
    DuplicateLayer { image: String, layer: String },
    #[error("the archive has neither index.json nor manifest.json: not an image archive")]
    NotAnImageArchive,
    #[error("the archive holds no image")]
    Empty,
    #[error("invalid {what} in the archive: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<ArchiveError> for crate::Error {
    fn from(e: ArchiveError) -> Self {
        crate::Error::Module(Box::new(e))
    }
}

/// An io error while reading the archive or spooling it.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> crate::Error {
    let what = what.into();
    move |source| ArchiveError::Io { what, source }.into()
}
