//! Where a blob may be mounted from (cross-repository mount), as docker
//! chooses: at most [`MAX_MOUNT_ATTEMPTS`] repositories per blob
//! (`maxMountAttempts` in docker's push_v2.go), then an upload. Candidates
//! are the repositories of the target's registry that local names point
//! into and whose image holds the blob (another repository cannot be
//! expected to have it): the pushed image's own names first (where it was
//! pulled from or pushed to before), then the names most like the target
//! (leading path components in common, docker's likeness), then by name.

use std::collections::BTreeMap;

use crate::digest::Digest;

/// docker's limit of mount requests per blob.
pub const MAX_MOUNT_ATTEMPTS: usize = 3;

/// A local name in the target's registry: its repository, the manifest it
/// names and the blobs of that image.
pub(super) struct Named {
    pub repository: String,
    pub manifest: Digest,
    pub blobs: Vec<Digest>,
}

/// The repositories to try, in order, for each blob that has any.
#[derive(Debug, Default)]
pub(super) struct MountCandidates(BTreeMap<Digest, Vec<String>>);

impl MountCandidates {
    pub(super) fn for_blob(&self, digest: &Digest) -> &[String] {
        self.0.get(digest).map(Vec::as_slice).unwrap_or_default()
    }
}

/// Choose, for each blob of `image` (manifest `manifest`) pushed to
/// `target` (a repository), the repositories to mount it from.
pub(super) fn choose(target: &str, manifest: &Digest, blobs: &[Digest], named: &[Named]) -> MountCandidates {
    let target_parts: Vec<&str> = target.split('/').collect();
    let mut chosen = BTreeMap::new();
    for blob in blobs {
        // (other image, less alike, repository): the smallest key first.
        let mut keys: Vec<(bool, std::cmp::Reverse<usize>, &str)> = named
            .iter()
            .filter(|n| n.repository != target && n.blobs.contains(blob))
            .map(|n| {
                let alike = likeness(&n.repository, &target_parts);
                (n.manifest != *manifest, std::cmp::Reverse(alike), n.repository.as_str())
            })
            .collect();
        keys.sort();
        let mut repositories: Vec<String> = Vec::new();
        for (_, _, repository) in keys {
            if repositories.len() == MAX_MOUNT_ATTEMPTS {
                break;
            }
            if !repositories.iter().any(|r| r == repository) {
                repositories.push(repository.to_string());
            }
        }
        if !repositories.is_empty() {
            chosen.insert(blob.clone(), repositories);
        }
    }
    MountCandidates(chosen)
}

/// Leading path components `repository` shares with the target's.
fn likeness(repository: &str, target: &[&str]) -> usize {
    repository.split('/').zip(target).take_while(|(a, b)| a == *b).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of_bytes(&[n])
    }

    fn named(repository: &str, manifest: u8, blobs: &[u8]) -> Named {
        Named {
            repository: repository.into(),
            manifest: digest(manifest),
            blobs: blobs.iter().map(|b| digest(*b)).collect(),
        }
    }

    #[test]
    fn at_most_three_holders_of_the_blob_own_names_first() {
        let (image, layer, other_layer) = (digest(100), 1, 2);
        let names = [
            named("a/one", 7, &[layer]),
            named("a/two", 7, &[layer]),
            named("a/three", 7, &[layer]),
            named("a/four", 7, &[layer]),
            named("library/busybox", 100, &[layer]),
            named("unrelated", 8, &[other_layer]),
            named("me/app", 100, &[layer]),
        ];
        let chosen = choose("me/app", &image, &[digest(layer), digest(other_layer)], &names);
        // The image's own name first, then the others by likeness to the
        // target (none share "me"), then by name; the target never.
        assert_eq!(chosen.for_blob(&digest(layer)), ["library/busybox", "a/four", "a/one"]);
        assert_eq!(chosen.for_blob(&digest(other_layer)), ["unrelated"]);
        assert!(chosen.for_blob(&digest(3)).is_empty());
    }

    #[test]
    fn likeness_counts_leading_components() {
        let names = [
            named("x/y", 7, &[1]),
            named("me/base", 7, &[1]),
            named("me/app/old", 7, &[1]),
        ];
        let chosen = choose("me/app/new", &digest(100), &[digest(1)], &names);
        assert_eq!(chosen.for_blob(&digest(1)), ["me/app/old", "me/base", "x/y"]);
        assert_eq!(likeness("me/app/old", &["me", "app", "new"]), 2);
    }
}
