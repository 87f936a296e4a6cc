//! `images`: one summary row per name, docker's `REPOSITORY[:TAG]`
//! argument and `--filter` (with Go's `path.Match` glob), and an image's size.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::{ImageRecord, SnapshotRecord};
use crate::reference::{familiar_name, split_index_key, ImageRef};
use crate::timestamp::Timestamp;
use crate::Mocker;

/// One row of `mocker images`.
#[derive(Clone, Debug, Serialize)]
pub struct ImageSummary {
    pub repository: String,
    pub tag: String,
    /// docker's repo digest (`<none>` when the image has no name).
    pub digest: String,
    pub id: Digest,
    /// The config's `created`, if the builder wrote one that parses.
    #[serde(serialize_with = "crate::timestamp::optional::serialize")]
    pub created: Option<Timestamp>,
    pub size: u64,
}

/// An image's size as docker reports it: the bytes of its unpacked layers;
/// the bytes of its blobs if it is not (fully) unpacked.
pub fn image_size(snapshots: &BTreeMap<String, SnapshotRecord>, mocker: &Mocker, image: &ImageRecord) -> u64 {
    let unpacked: Option<u64> = image
        .chain_ids
        .iter()
        .map(|c| snapshots.get(c.as_str()).map(|r| r.size))
        .sum();
    unpacked.unwrap_or_else(|| image.blobs().iter().map(|d| mocker.store.size(d).unwrap_or(0)).sum())
}

/// `images [REPOSITORY[:TAG]]`: one row per tag; a pull-by-digest reference
/// shows as a `<none>` tag only when its repository has no tag for the image
/// (as docker lists them); untagged images last.
pub fn list(mocker: &Mocker, filter: Option<&str>) -> Result<Vec<ImageSummary>> {
    let (refs, images, snapshots) = mocker.index.session(|s| Ok((s.refs()?, s.images()?, s.snapshots()?)))?;
    let mut named: HashSet<&str> = HashSet::new();
    let tagged: HashSet<(&str, &str)> = refs
        .iter()
        .filter_map(|(key, m)| match split_index_key(key) {
            (name, Some(_), _) => Some((name, m.as_str())),
            _ => None,
        })
        .collect();
    let mut rows = Vec::new();
    for (key, manifest) in &refs {
        let Some(image) = images.get(manifest.as_str()) else {
            continue;
        };
        named.insert(manifest.as_str());
        let (name, tag, _) = split_index_key(key);
        if tag.is_none() && tagged.contains(&(name, manifest.as_str())) {
            continue;
        }
        rows.push(summary(
            mocker,
            &snapshots,
            image,
            familiar_name(name),
            tag.unwrap_or("<none>"),
        ));
    }
    for (manifest, image) in &images {
        if !named.contains(manifest.as_str()) {
            rows.push(summary(mocker, &snapshots, image, "<none>", "<none>"));
        }
    }
    if let Some(filter) = filter {
        rows.retain(|r| matches_filter(r, filter));
    }
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| a.repository.cmp(&b.repository))
            .then_with(|| a.tag.cmp(&b.tag))
    });
    Ok(rows)
}

/// `images --filter KEY=VALUE`: `dangling=true|false` (untagged images)
/// and `reference=PATTERN` (a glob over `name` or `name:tag`, `*` not
/// crossing `/`). Values of one key are alternatives; keys must all match.
#[derive(Debug, Default)]
pub struct Filter {
    dangling: Option<bool>,
    references: Vec<String>,
}

impl Filter {
    pub fn parse(specs: &[String]) -> Result<Filter> {
        let mut filter = Filter::default();
        for spec in specs {
            match spec.split_once('=') {
                Some(("dangling", v @ ("true" | "false" | "1" | "0"))) => {
                    filter.dangling = Some(v == "true" || v == "1")
                }
                Some(("reference", pattern)) => filter.references.push(pattern.to_string()),
                Some(("dangling", _)) => return Err(Error::InvalidFilter(spec.clone())),
                Some((key, _)) => return Err(Error::InvalidFilter(key.to_string())),
                None => return Err(Error::BadFilterFormat(spec.clone())),
            }
        }
        Ok(filter)
    }

    pub fn matches(&self, row: &ImageSummary) -> bool {
        let dangling = row.repository == "<none>";
        self.dangling.is_none_or(|d| d == dangling)
            && (self.references.is_empty()
                || !dangling
                    && self
                        .references
                        .iter()
                        .any(|p| glob(p, &row.repository) || glob(p, &format!("{}:{}", row.repository, row.tag))))
    }
}

/// Go's `path.Match` for `*` (any run without `/`) and `?` (one non-`/`).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // matched[j]: the pattern so far matches text[..j].
    let mut matched = vec![false; t.len() + 1];
    matched[0] = true;
    for &c in &p {
        let mut next = vec![false; t.len() + 1];
        for j in 0..=t.len() {
            match c {
                '*' => next[j] = matched[j] || (j > 0 && next[j - 1] && t[j - 1] != '/'),
                '?' => next[j] = j > 0 && matched[j - 1] && t[j - 1] != '/',
                _ => next[j] = j > 0 && matched[j - 1] && t[j - 1] == c,
            }
        }
        matched = next;
    }
    matched[t.len()]
}

/// docker's `images REPOSITORY[:TAG]` argument, in short or full form.
fn matches_filter(row: &ImageSummary, filter: &str) -> bool {
    let (repo, tag) = match filter.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        Some((r, t)) => (r, Some(t)),
        None => (filter, None),
    };
    let normal = ImageRef::parse(repo)
        .map(|r| familiar_name(&r.name()).to_string())
        .unwrap_or_else(|_| repo.to_string());
    (row.repository == repo || row.repository == normal) && tag.is_none_or(|t| row.tag == t)
}

fn summary(
    mocker: &Mocker,
    snapshots: &BTreeMap<String, SnapshotRecord>,
    image: &ImageRecord,
    repository: &str,
    tag: &str,
) -> ImageSummary {
    ImageSummary {
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest: if repository == "<none>" {
            "<none>".into()
        } else {
            image.repo_digest().to_string()
        },
        id: image.config_digest.clone(),
        created: image.created.as_deref().and_then(parse_created),
        size: image_size(snapshots, mocker, image),
    }
}

/// An image config's `created`: the builder's text, RFC 3339 in any
/// offset (None if it is not).
fn parse_created(text: &str) -> Option<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc())
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_is_go_path_match() {
        assert!(super::glob("busy*", "busybox"));
        assert!(super::glob("*box:lat?st", "busybox:latest"));
        assert!(!super::glob("*box", "library/busybox"));
        assert!(super::glob("*/busybox", "library/busybox"));
        assert!(!super::glob("busy", "busybox"));
        assert!(super::glob("", ""));
    }
}
