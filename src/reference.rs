//! Image references with docker's normalisation (`busybox` →
//! `docker.io/library/busybox:latest`). Parsing is oci-spec's; this adds the
//! digest algorithm check, the familiar short form docker prints, and the key
//! under which a reference is stored in the index.
//!
//! oci-spec's parser compiles a large Unicode regex on first use (about 40 ms,
//! paid by every mocker command that names an image: a third of a container
//! start). The common ASCII forms are therefore recognised by [`fast_split`],
//! a direct reading of the same grammar that accepts only what it is sure
//! of and defers everything else to oci-spec; the `reference` fuzz target
//! checks that the two agree wherever the fast path answers.

use std::fmt;

use oci_spec::distribution::Reference;

use crate::digest::Digest;
use crate::error::{Error, Result};

const DOCKER_HUB: &str = "docker.io";
const OFFICIAL_PREFIX: &str = "library/";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    inner: Reference,
    digest: Option<Digest>,
}

/// A reason more precise than the parser's "invalid reference format" for
/// the common mistakes: upper case in the repository, `.`/`..` or empty
/// path components.
fn diagnose(input: &str) -> Option<String> {
    let name = input.split(['@']).next().unwrap_or(input);
    let mut components: Vec<&str> = name.split('/').collect();
    let last = components.len() - 1;
    components[last] = components[last].split(':').next().unwrap_or_default();
    // The first component is a registry host if it looks like one.
    let path = match components.first() {
        Some(first)
            if components.len() > 1
                && !matches!(*first, "." | "..")
                && (first.contains(['.', ':']) || *first == "localhost") =>
        {
            &components[1..]
        }
        _ => &components[..],
    };
    if path.iter().any(|c| c.is_empty() || *c == "." || *c == "..") {
        return Some("path components must be non-empty and neither . nor ..".into());
    }
    if path.iter().any(|c| c.chars().any(|ch| ch.is_ascii_uppercase())) {
        return Some("repository name must be lowercase".into());
    }
    None
}

impl ImageRef {
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidReference {
            input: input.to_string(),
            reason,
        };
        if input.trim() != input || input.is_empty() {
            return Err(invalid("must be non-empty and without spaces".into()));
        }
        let inner: Reference = match fast_split(input) {
            Some(reference) => reference,
            None => input
                .parse()
                .map_err(|e: oci_spec::distribution::ParseError| invalid(diagnose(input).unwrap_or(e.to_string())))?,
        };
        // oci-spec moves an upper-case first component without '.' or ':'
        // into the Docker Hub repository instead of rejecting it as docker does.
        if inner.repository().chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase".into()));
        }
        let digest = match inner.digest() {
            Some(d) => Some(Digest::parse(d)?),
            None => None,
        };
        Ok(ImageRef { inner, digest })
    }

    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.inner.registry(), self.inner.repository())
    }

    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The oci-client reference used on the wire.
    pub fn wire(&self) -> &Reference {
        &self.inner
    }

    /// What the index stores: `name:tag`, or `name@digest` for a pull by
    /// digest (docker ignores the tag then, and lists the image untagged).
    pub fn index_key(&self) -> String {
        match (&self.digest, self.tag()) {
            (Some(d), _) => format!("{}@{}", self.name(), d),
            (None, Some(t)) => format!("{}:{}", self.name(), t),
            (None, None) => format!("{}:latest", self.name()),
        }
    }

    /// Whether plain HTTP is used: loopback hosts (docker's default insecure
    /// range 127.0.0.0/8, plus localhost and ::1) or a host the user named.
    pub fn is_insecure(&self, insecure_registries: &[String]) -> bool {
        let registry = self.registry();
        if insecure_registries.iter().any(|r| r == registry) {
            return true;
        }
        let host = host_of(registry);
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-` (distribution's
/// path-component rule).
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// `host(.host)*(:port)?` with hosts `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`.
fn is_domain(d: &str) -> bool {
    let (hosts, port) = match d.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let host_ok = |h: &str| {
        let b = h.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
    };
    hosts.split('.').all(host_ok) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|x| x.is_ascii_digit()))
}

/// The common ASCII forms of a reference, split as oci-spec would split
/// them; `None` for anything else (oci-spec then decides).
pub fn fast_split(input: &str) -> Option<Reference> {
    if input.len() > 255 || !input.is_ascii() {
        return None;
    }
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => {
            let hex = d.strip_prefix("sha256:")?;
            if hex.len() != 64 || !hex.bytes().all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(&x)) {
                return None;
            }
            (r, Some(d))
        }
        None => (input, None),
    };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[slash..].find(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let b = t.as_bytes();
        let word = |x: &u8| x.is_ascii_alphanumeric() || *x == b'_';
        if b.is_empty() || b.len() > 128 || !word(&b[0]) || !b.iter().all(|x| word(x) || *x == b'.' || *x == b'-') {
            return None;
        }
    }
    let components: Vec<&str> = name.split('/').collect();
    let all_paths = components.iter().all(|c| is_path_component(c));
    let with_domain =
        components.len() > 1 && is_domain(components[0]) && components[1..].iter().all(|c| is_path_component(c));
    if !all_paths && !with_domain {
        return None;
    }
    let first = components[0];
    let (mut registry, mut repository) =
        if components.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost") {
            (first.to_string(), components[1..].join("/"))
        } else {
            (DOCKER_HUB.to_string(), name.to_string())
        };
    if registry == "index.docker.io" {
        registry = DOCKER_HUB.to_string();
    }
    if registry == DOCKER_HUB && !repository.contains('/') {
        repository = format!("{OFFICIAL_PREFIX}{repository}");
    }
    if repository.len() > 255 {
        return None;
    }
    Some(match (tag, digest) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repository, t.into(), d.into()),
        (None, Some(d)) => Reference::with_digest(registry, repository, d.into()),
        (Some(t), None) => Reference::with_tag(registry, repository, t.into()),
        (None, None) => Reference::with_tag(registry, repository, "latest".into()),
    })
}

/// Whether the fast path and oci-spec agree on `input` (where the fast
/// path answers): what the fuzz target and the tests check.
pub fn fast_split_agrees(input: &str) -> bool {
    let Some(fast) = fast_split(input) else {
        return true;
    };
    match input.parse::<Reference>() {
        Ok(slow) => {
            fast.registry() == slow.registry()
                && fast.repository() == slow.repository()
                && fast.tag() == slow.tag()
                && fast.digest() == slow.digest()
        }
        Err(_) => false,
    }
}

fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

/// Docker's short form of a stored name: `docker.io/library/busybox` →
/// `busybox`, `docker.io/user/app` → `user/app`, others unchanged.
pub fn familiar_name(name: &str) -> &str {
    match name.strip_prefix(DOCKER_HUB).and_then(|r| r.strip_prefix('/')) {
        Some(rest) => rest.strip_prefix(OFFICIAL_PREFIX).unwrap_or(rest),
        None => name,
    }
}

/// Split an index key into (name, tag, digest).
pub fn split_index_key(key: &str) -> (&str, Option<&str>, Option<&str>) {
    if let Some((name, digest)) = key.split_once('@') {
        return (name, None, Some(digest));
    }
    // The tag follows the last ':' after the last '/' (a port has a '/' after it).
    let slash = key.rfind('/').unwrap_or(0);
    match key[slash..].rfind(':') {
        Some(i) => (&key[..slash + i], Some(&key[slash + i + 1..]), None),
        None => (key, None, None),
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.index_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.index_key(), "docker.io/library/busybox:latest");
        assert_eq!(familiar_name(&r.name()), "busybox");

        let r = ImageRef::parse("user/app").unwrap();
        assert_eq!(r.index_key(), "docker.io/user/app:latest");
        assert_eq!(familiar_name(&r.name()), "user/app");

        let r = ImageRef::parse("127.0.0.1:5000/ns/app:v1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "ns/app");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(familiar_name(&r.name()), "127.0.0.1:5000/ns/app");
    }

    #[test]
    fn digest_references() {
        let r = ImageRef::parse(&format!("app@{D}")).unwrap();
        assert_eq!(r.digest().unwrap().as_str(), D);
        assert_eq!(r.index_key(), format!("docker.io/library/app@{D}"));
        let r = ImageRef::parse(&format!("app:tag@{D}")).unwrap();
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.index_key(), format!("docker.io/library/app@{D}"));
    }

    #[test]
    fn invalid_references_are_clear_errors() {
        for bad in ["", "Busybox", "a b", "app@sha256:1234", "app:", "-app", "app:tag:tag"] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(err.to_string().contains("invalid reference format"), "{bad}: {err}");
        }
        let md5 = format!("app@md5:{}", "a".repeat(32));
        assert!(ImageRef::parse(&md5).is_err());
        let upper = format!("app@sha256:{}", "A".repeat(64));
        assert!(ImageRef::parse(&upper).is_err());
        for (bad, reason) in [
            ("127.0.0.1:5000/BusyBox", "must be lowercase"),
            ("reg.lan/ns/App:v1", "must be lowercase"),
            ("../x", "neither . nor .."),
            ("reg.lan/a/../b", "neither . nor .."),
            ("a//b", "non-empty"),
        ] {
            let err = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }

    #[test]
    fn insecure_detection() {
        assert!(ImageRef::parse("127.0.0.1:5000/a").unwrap().is_insecure(&[]));
        assert!(ImageRef::parse("127.8.9.1/a").unwrap().is_insecure(&[]));
        assert!(ImageRef::parse("localhost:5000/a").unwrap().is_insecure(&[]));
        assert!(!ImageRef::parse("quay.io/a").unwrap().is_insecure(&[]));
        assert!(ImageRef::parse("reg.lan:5000/a")
            .unwrap()
            .is_insecure(&["reg.lan:5000".to_string()]));
    }

    #[test]
    fn splits_index_keys() {
        assert_eq!(
            split_index_key("127.0.0.1:5000/app:v1"),
            ("127.0.0.1:5000/app", Some("v1"), None)
        );
        assert_eq!(
            split_index_key(&format!("docker.io/a@{D}")),
            ("docker.io/a", None, Some(D))
        );
    }
}
#[cfg(test)]
mod fast_path {
    use super::*;

    #[test]
    fn agrees_with_oci_spec() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let answered = [
            "busybox".to_string(),
            "busybox:1.36".into(),
            "user/app".into(),
            "docker.io/busybox".into(),
            "index.docker.io/library/busybox:x".into(),
            "127.0.0.1:5000/ns/app:v1".into(),
            "localhost/app".into(),
            "reg.example.com/a/b/c:T_a.g-1".into(),
            "a__b/c-d---e/f.g_h".into(),
            format!("app@{d}"),
            format!("127.0.0.1:5000/app:tag@{d}"),
            "Reg.Example:5000/app".into(),
        ];
        for input in &answered {
            assert!(fast_split(input).is_some(), "{input} not answered");
            assert!(fast_split_agrees(input), "{input}");
        }
        // Deferred to oci-spec: not for the fast path to judge.
        for input in [
            "",
            "-app",
            "app:",
            "a b",
            "app@md5:abc",
            "Busybox",
            "a___b",
            "héllo",
            "app:tag:tag",
            "a/",
        ] {
            assert!(fast_split(input).is_none(), "{input} answered");
        }
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    #[test]
    fn uppercase_hub_namespace_is_rejected_like_docker() {
        // Found by fuzzing: it parsed, but its own index key did not.
        let err = ImageRef::parse("bYusy/f4c8996fb92427ae4a").unwrap_err();
        assert!(err.to_string().contains("must be lowercase"), "{err}");
        let r = ImageRef::parse("Reg.Example:5000/app").unwrap();
        assert_eq!(ImageRef::parse(&r.index_key()).unwrap().index_key(), r.index_key());
    }
}
