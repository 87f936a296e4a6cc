//! `tag SRC DST`.

use crate::error::{Error, Result};
use crate::index::Batch;
use crate::lookup::{resolve, Target};
use crate::reference::ImageRef;
use crate::Mocker;

/// `tag SRC DST`: point DST at the image SRC names.
pub fn tag(mocker: &Mocker, source: &str, target: &str) -> Result<()> {
    let target = ImageRef::parse(target)?;
    if target.digest().is_some() {
        return Err(Error::InvalidReference {
            input: target.to_string(),
            reason: "a tag target cannot contain a digest".into(),
        });
    }
    mocker.index.session(|s| {
        let manifest = match resolve(s, source)? {
            Target::Ref(_, m) => m,
            Target::Images(_) => crate::lookup::one_in(s, source)?.manifest_digest,
        };
        let mut batch = Batch::default();
        batch.put_ref(&target.index_key(), &manifest);
        s.apply(&batch)
    })
}
