//! `run`'s and `create`'s image: a local one, else pulled first (as docker
//! does). The pull itself is the caller's, who owns the progress display
//! and the async runtime.

use crate::container::{self, Container, CreateOptions};
use crate::error::{Error, Result};
use crate::reference::ImageRef;
use crate::Mocker;

/// Create the container of `opts`; if its image is not here, `pull` it and
/// try once more. A name that could not be pulled either is refused as an
/// invalid reference before `pull` is called.
pub fn create_pulling(
    mocker: &Mocker,
    opts: &CreateOptions,
    pull: impl FnOnce(&ImageRef) -> Result<()>,
) -> Result<Container> {
    match container::create(mocker, opts) {
        Err(Error::NoSuchImage(_)) => {
            pull(&ImageRef::parse(&opts.image)?)?;
            container::create(mocker, opts)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(image: &str) -> CreateOptions {
        CreateOptions {
            image: image.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_image_is_pulled_once_then_looked_up_again() {
        let dir = tempfile::tempdir().unwrap();
        let mocker = Mocker::open(dir.path()).unwrap();
        let mut pulled = Vec::new();
        let result = create_pulling(&mocker, &options("example.org/app:1"), |r| {
            pulled.push(r.index_key());
            Ok(())
        });
        assert_eq!(pulled, ["example.org/app:1"]);
        // The stand-in pull fetched nothing: the second lookup fails too.
        assert!(matches!(result, Err(Error::NoSuchImage(_))), "{result:?}");
    }

    #[test]
    fn a_failed_pull_is_the_error_and_a_bad_name_is_never_pulled() {
        let dir = tempfile::tempdir().unwrap();
        let mocker = Mocker::open(dir.path()).unwrap();
        let result = create_pulling(&mocker, &options("example.org/app:1"), |_| Err(Error::Interrupted));
        assert!(matches!(result, Err(Error::Interrupted)), "{result:?}");
        let result = create_pulling(&mocker, &options("UPPER/case"), |_| panic!("pulled a bad name"));
        assert!(matches!(result, Err(Error::InvalidReference { .. })), "{result:?}");
    }
}
