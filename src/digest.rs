//! Content digests. Only sha256 is accepted: it is what every registry and
//! image in use today produces, and one algorithm keeps the store layout flat.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

const PREFIX: &str = "sha256:";

impl Digest {
    /// Parse and validate a digest string (syntax via oci-spec, then the
    /// algorithm restriction).
    pub fn parse(input: &str) -> Result<Self> {
        let parsed: oci_spec::image::Digest =
            input
                .parse()
                .map_err(|e: oci_spec::OciSpecError| Error::InvalidDigest {
                    input: input.to_string(),
                    reason: e.to_string(),
                })?;
        match parsed.algorithm() {
            oci_spec::image::DigestAlgorithm::Sha256 => Ok(Digest(input.to_string())),
            other => Err(Error::UnsupportedDigestAlgorithm {
                input: input.to_string(),
                algorithm: other.to_string(),
            }),
        }
    }

    /// Build from a bare 64-char lowercase hex string (a file name in the store).
    pub fn from_hex(hex: &str) -> Result<Self> {
        Self::parse(&format!("{PREFIX}{hex}"))
    }

    pub fn of_bytes(bytes: &[u8]) -> Self {
        let mut h = Hasher::new();
        h.update(bytes);
        h.finish()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }

    /// The 12-hex-digit form docker prints for IDs and layers.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Digest {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

/// Incremental sha256 that yields a [`Digest`].
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Self {
        Hasher(Sha256::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Digest {
        Digest(format!("{PREFIX}{}", hex::encode(self.0.finalize())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_known_value() {
        assert_eq!(Digest::of_bytes(b"").as_str(), EMPTY);
    }

    #[test]
    fn parses_valid_digest() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn rejects_uppercase_short_and_garbage() {
        assert!(matches!(
            Digest::parse(&EMPTY.to_uppercase().replace("SHA256", "sha256")),
            Err(Error::InvalidDigest { .. })
        ));
        assert!(matches!(Digest::parse("sha256:abcd"), Err(Error::InvalidDigest { .. })));
        assert!(matches!(Digest::parse("nocolon"), Err(Error::InvalidDigest { .. })));
        assert!(matches!(Digest::parse("sha256:"), Err(Error::InvalidDigest { .. })));
    }

    #[test]
    fn rejects_other_algorithms_clearly() {
        let sha512 = format!("sha512:{}", "a".repeat(128));
        let err = Digest::parse(&sha512).unwrap_err();
        assert!(matches!(err, Error::UnsupportedDigestAlgorithm { .. }));
        assert!(err.to_string().contains("sha512"));
        let md5 = format!("md5:{}", "a".repeat(32));
        assert!(matches!(
            Digest::parse(&md5),
            Err(Error::UnsupportedDigestAlgorithm { .. })
        ));
    }

    #[test]
    fn serde_round_trip_validates() {
        let d: Digest = serde_json::from_str(&format!("\"{EMPTY}\"")).unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{EMPTY}\""));
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}

/// OCI chain IDs: chain(L1) = diff_id(L1); chain(Ln) = sha256(chain(Ln-1) + " " + diff_id(Ln)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => Digest::of_bytes(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of_bytes(b"a");
        let b = Digest::of_bytes(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], Digest::of_bytes(format!("{a} {b}").as_bytes()));
    }
}
