//! Finding image records in the index by what a user typed: a name (short
//! or full, with tag or digest), an image ID or a unique prefix of one, or
//! a repository's digest of an image pulled by tag.

use std::collections::HashSet;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::{ImageRecord, Session};
use crate::reference::{split_index_key, ImageRef};
use crate::Mocker;

/// What [`resolve`] found for a user's argument.
pub(crate) enum Target {
    /// A stored reference (index key) and the image it names.
    Ref(String, Digest),
    /// Images selected by ID (config digest) or digest, with no name given.
    Images(Vec<Digest>),
}

/// The reference or the manifests `input` names; `NoSuchImage` if none.
pub(crate) fn resolve(session: &Session, input: &str) -> Result<Target> {
    if let Ok(reference) = ImageRef::parse(input) {
        let key = reference.index_key();
        if let Some(manifest) = session.get_ref(&key)? {
            return Ok(Target::Ref(key, manifest));
        }
        // `name@digest` of an image pulled by tag: docker accepts its repo digest.
        if let Some(digest) = reference.digest() {
            if let Some(manifest) = by_repo_digest(session, &reference.name(), digest)? {
                return Ok(Target::Images(vec![manifest]));
            }
        }
    }
    if let Some(manifests) = by_id_prefix(session, input)? {
        return Ok(Target::Images(manifests));
    }
    Err(Error::NoSuchImage(input.to_string()))
}

/// The manifest of a stored reference in repository `name` whose image has
/// `digest` as repo digest or manifest digest.
fn by_repo_digest(session: &Session, name: &str, digest: &Digest) -> Result<Option<Digest>> {
    let refs = session.refs()?;
    let images = session.images()?;
    for (key, manifest) in &refs {
        let Some(image) = images.get(manifest.as_str()) else {
            continue;
        };
        if split_index_key(key).0 == name && (image.repo_digest() == digest || &image.manifest_digest == digest) {
            return Ok(Some(manifest.clone()));
        }
    }
    Ok(None)
}

/// The manifests of the one image ID (config digest) that `input`, an ID or
/// a prefix of one as docker allows, names; an error if it names several.
fn by_id_prefix(session: &Session, input: &str) -> Result<Option<Vec<Digest>>> {
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    if hex.is_empty() || hex.len() > 64 || !hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
        return Ok(None);
    }
    let images = session.images()?;
    let matches: Vec<&ImageRecord> = images
        .values()
        .filter(|i| i.config_digest.hex().starts_with(hex))
        .collect();
    let ids: HashSet<&Digest> = matches.iter().map(|i| &i.config_digest).collect();
    match ids.len() {
        0 => Ok(None),
        1 => Ok(Some(matches.iter().map(|i| i.manifest_digest.clone()).collect())),
        _ => Err(Error::AmbiguousImageId(input.to_string())),
    }
}

/// The image record(s) an argument names.
pub fn find(mocker: &Mocker, input: &str) -> Result<Vec<ImageRecord>> {
    mocker.index.session(|s| find_in(s, input))
}

/// `find` inside the caller's session.
pub fn find_in(s: &Session, input: &str) -> Result<Vec<ImageRecord>> {
    let manifests = match resolve(s, input)? {
        Target::Ref(_, m) => vec![m],
        Target::Images(ms) => ms,
    };
    manifests
        .iter()
        .map(|m| s.get_image(m)?.ok_or_else(|| Error::NoSuchImage(input.to_string())))
        .collect()
}

/// The one image `input` names. An image ID can have several manifests
/// (the same config and layers loaded from a docker archive and from an
/// OCI one, compressed differently): they run the same, so the one a name
/// points at is taken, else the first by digest.
pub fn one_in(s: &Session, input: &str) -> Result<ImageRecord> {
    let mut found = find_in(s, input)?;
    if found.len() > 1 {
        let named: HashSet<Digest> = s.refs()?.into_values().collect();
        found.sort_by_key(|i| (!named.contains(&i.manifest_digest), i.manifest_digest.to_string()));
    }
    found
        .into_iter()
        .next()
        .ok_or_else(|| Error::NoSuchImage(input.to_string()))
}

/// [`one_in`] in a session of its own.
pub fn one(mocker: &Mocker, input: &str) -> Result<ImageRecord> {
    mocker.index.session(|s| one_in(s, input))
}
