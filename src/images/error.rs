//! Errors of image operations that no lower module reports.

/// A typed image error, carried in [`crate::Error::Module`].
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// `rmi` without `-f` of an image a container was created from.
    #[error(
        "conflict: unable to remove {input:?} (must force) - container {container} is using its referenced image {image}"
    )]
    UsedByContainer {
        input: String,
        /// The container's short id.
        container: String,
        /// The image's short id.
        image: String,
    },
}

impl From<ImageError> for crate::Error {
    fn from(e: ImageError) -> Self {
        crate::Error::Module(Box::new(e))
    }
}
