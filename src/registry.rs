//! The registry side of a pull and a push, over oci-client: credentials
//! (handed in by the caller), plain-HTTP policy, capped manifest fetches,
//! resumable blob streams, blob checks, mounts and uploads, and the mapping
//! of oci-client's errors onto ours. Knows nothing of the
//! store, the index or docker's config.json.

use std::time::Duration;

use futures_util::stream::BoxStream;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{ACCEPTED_MANIFEST_TYPES, MAX_MANIFEST_BYTES};
use crate::reference::ImageRef;

#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Hosts (`host[:port]`) reached over plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
    pub connect_timeout: Duration,
    /// Longest silence tolerated on an open connection.
    pub read_timeout: Duration,
    /// Credentials for the registry; None: the caller looks them up in
    /// docker's config.json (`pull` does, with `auth`), else anonymous.
    pub auth: Option<RegistryAuth>,
}

impl RegistryOptions {
    /// These options with credentials: the caller's, else those docker's
    /// config.json holds for the reference's registry.
    pub fn with_credentials(&self, reference: &ImageRef) -> Result<RegistryOptions> {
        let mut opts = self.clone();
        if opts.auth.is_none() {
            opts.auth = Some(crate::auth::registry_auth(reference.registry())?);
        }
        Ok(opts)
    }
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            auth: None,
        }
    }
}

/// A byte stream of (part of) a blob.
pub struct BlobStream {
    pub stream: BoxStream<'static, std::io::Result<bytes::Bytes>>,
    /// True when the registry honoured the Range request.
    pub resumed: bool,
}

pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    reference: ImageRef,
}

impl Registry {
    pub fn new(reference: &ImageRef, opts: &RegistryOptions) -> Result<Self> {
        let protocol = if reference.is_insecure(&opts.insecure_registries) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            platform_resolver: None,
            connect_timeout: Some(opts.connect_timeout),
            read_timeout: Some(opts.read_timeout),
            user_agent: concat!("mocker/", env!("CARGO_PKG_VERSION")),
            // One streamed PUT per blob: PATCHes of 4 MiB, each a round
            // trip, made a push 1.2 times skopeo's.
            use_monolithic_push: true,
            ..Default::default()
        };
        Ok(Registry {
            client: Client::new(config),
            auth: opts.auth.clone().unwrap_or(RegistryAuth::Anonymous),
            reference: reference.clone(),
        })
    }

    /// Fetch a manifest or index by tag or digest. Returns its bytes and the
    /// digest we computed over them, which must equal any digest asked for.
    pub async fn manifest(&self, wire: &Reference) -> Result<(bytes::Bytes, Digest)> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(wire, &self.auth, ACCEPTED_MANIFEST_TYPES)
            .await
            .map_err(|e| self.map_error(e))?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::TooLarge {
                what: format!("manifest for {wire}"),
                size: bytes.len() as u64,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let actual = Digest::of_bytes(&bytes);
        if let Some(expected) = wire.digest() {
            if expected != actual.as_str() {
                return Err(Error::DigestMismatch {
                    what: format!("manifest {wire}"),
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        Ok((bytes, actual))
    }

    /// Stream a blob from byte `offset` (a Range request when non-zero).
    pub async fn blob(&self, digest: &Digest, size: u64, media_type: &str, offset: u64) -> Result<BlobStream> {
        let desc = OciDescriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size: size as i64,
            ..Default::default()
        };
        // Always a Range request (from 0 for a fresh download): a 206 answer
        // is streamed as-is and verified by the store, which names both
        // digests on a mismatch; oci-client verifies only 200 answers.
        match self
            .client
            .pull_blob_stream_partial(self.reference.wire(), &desc, offset, None)
            .await
            .map_err(|e| self.map_error(e))?
        {
            BlobResponse::Full(s) => Ok(BlobStream {
                stream: s.stream,
                resumed: false,
            }),
            BlobResponse::Partial(s) => Ok(BlobStream {
                stream: s.stream,
                resumed: offset > 0,
            }),
        }
    }

    /// Check the credentials in use against the registry (for `login`).
    pub async fn authenticate(&self) -> Result<()> {
        let token = self
            .client
            .auth(self.reference.wire(), &self.auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| self.map_error(e))?;
        if token.is_some() {
            // A token service checked the credentials to issue this token.
            return Ok(());
        }
        // Basic-auth registries check them on each request: a request for a
        // name that need not exist answers 404 when accepted, 401 when not.
        match self.manifest(self.reference.wire()).await {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Take credentials (and, from a token service, tokens) for the
    /// requests of a push: HEAD checks are pull requests, uploads and
    /// mounts push requests, and oci-client keeps credentials per kind.
    pub async fn authenticate_push(&self) -> Result<()> {
        let wire = self.reference.wire();
        self.client
            .store_auth_if_needed(wire.resolve_registry(), &self.auth)
            .await;
        for operation in [oci_client::RegistryOperation::Pull, oci_client::RegistryOperation::Push] {
            self.client
                .auth(wire, &self.auth, operation)
                .await
                .map_err(|e| self.map_error(e))?;
        }
        Ok(())
    }

    /// Whether the repository has the blob (a HEAD request).
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        self.client
            .blob_exists(self.reference.wire(), digest.as_str())
            .await
            .map_err(|e| self.map_error(e))
    }

    /// Ask the registry to mount the blob from another repository of it
    /// (no bytes move). False when it would not (it lacks the blob there,
    /// or the credentials cannot read that repository).
    pub async fn mount_blob(&self, digest: &Digest, from_repository: &str) -> bool {
        let wire = self.reference.wire();
        let source = Reference::with_tag(
            wire.registry().to_string(),
            from_repository.to_string(),
            "latest".into(),
        );
        self.client.mount_blob(wire, &source, digest.as_str()).await.is_ok()
    }

    /// Upload a blob of `size` bytes: POST, then one PUT naming its digest
    /// (which the registry checks) whose body is `stream`.
    pub async fn push_blob(
        &self,
        digest: &Digest,
        size: u64,
        stream: impl futures_util::Stream<Item = std::result::Result<bytes::Bytes, OciDistributionError>> + Send + 'static,
    ) -> Result<()> {
        self.client
            .push_blob_stream(self.reference.wire(), stream, digest.as_str(), Some(size))
            .await
            .map_err(|e| self.map_error(e))?;
        Ok(())
    }

    /// PUT the manifest's exact bytes under the reference's tag, and check
    /// the digest the registry says it stored them under.
    pub async fn push_manifest(&self, bytes: bytes::Bytes, media_type: &str) -> Result<()> {
        let content_type = media_type.parse().map_err(|_| Error::InvalidDocument {
            what: format!("manifest of {}", self.reference),
            reason: format!("media type {media_type:?} is not a valid header value"),
        })?;
        let sent = Digest::of_bytes(&bytes);
        let location = self
            .client
            .push_manifest_raw(self.reference.wire(), bytes, content_type)
            .await
            .map_err(|e| self.map_error(e))?;
        // oci-client keeps the Docker-Content-Digest header to itself and
        // returns the Location, which registries (docker's distribution
        // among them) answer with the manifest's URL by the digest they
        // computed.
        match location_digest(&location) {
            Some(stored) if stored != sent.as_str() => Err(Error::DigestMismatch {
                what: format!(
                    "the manifest pushed to {} (sent vs. the registry's Location)",
                    self.reference
                ),
                expected: sent.to_string(),
                actual: stored.to_string(),
            }),
            _ => Ok(()),
        }
    }

    pub fn map_error(&self, e: OciDistributionError) -> Error {
        let reference = self.reference.to_string();
        let registry = self.reference.registry().to_string();
        let not_found = |reason: String| Error::NotFound {
            reference: reference.clone(),
            reason,
        };
        match e {
            OciDistributionError::RequestError(e) => {
                let status = e.status().map(|s| s.as_u16());
                if matches!(status, Some(401 | 403)) {
                    // A HEAD answered without a body: no error envelope.
                    Error::Unauthorized { reference, registry }
                } else if e.is_connect() || e.is_timeout() {
                    Error::Unreachable {
                        registry,
                        reason: error_chain(&e),
                    }
                } else {
                    Error::Registry {
                        reference,
                        reason: error_chain(&e),
                    }
                }
            }
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                Error::Unauthorized { reference, registry }
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                use oci_client::errors::OciErrorCode as C;
                let message = envelope
                    .errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                let any = |f: fn(&C) -> bool| envelope.errors.iter().any(|e| f(&e.code));
                if any(|c| matches!(c, C::Unauthorized | C::Denied)) {
                    Error::Unauthorized { reference, registry }
                } else if any(|c| {
                    matches!(
                        c,
                        C::ManifestUnknown | C::NameUnknown | C::BlobUnknown | C::ManifestBlobUnknown | C::NotFound
                    )
                }) {
                    not_found(message)
                } else {
                    Error::Registry {
                        reference,
                        reason: message,
                    }
                }
            }
            OciDistributionError::ServerError { code: 404, message, .. } => not_found(short(&message)),
            OciDistributionError::ServerError { code: 401 | 403, .. } => Error::Unauthorized { reference, registry },
            OciDistributionError::ServerError { code, message, .. } => Error::Registry {
                reference,
                reason: format!("HTTP {code}: {}", short(&message)),
            },
            OciDistributionError::ImageManifestNotFoundError(m) => not_found(m),
            OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
                expected,
                actual,
            }) => Error::DigestMismatch {
                what: format!("manifest {reference}"),
                expected,
                actual,
            },
            OciDistributionError::DigestError(d) => Error::Registry {
                reference,
                reason: d.to_string(),
            },
            other => Error::Registry {
                reference,
                reason: other.to_string(),
            },
        }
    }
}

/// The sha256 digest a manifest URL (`…/manifests/sha256:…`) names, if any;
/// a URL by tag names none.
fn location_digest(location: &str) -> Option<&str> {
    let (_, tail) = location.rsplit_once("/manifests/")?;
    let reference = tail.split(['?', '#']).next()?;
    reference.starts_with("sha256:").then_some(reference)
}

fn short(message: &str) -> String {
    let line = message.lines().next().unwrap_or("").trim();
    line.chars().take(200).collect()
}

/// reqwest hides the useful cause ("Connection refused") a few sources down.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::location_digest;

    #[test]
    fn a_manifest_url_names_its_digest() {
        let d = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";
        let by_digest = format!("http://127.0.0.1:5000/v2/me/app/manifests/{d}");
        assert_eq!(location_digest(&by_digest), Some(d));
        assert_eq!(location_digest(&format!("/v2/me/app/manifests/{d}?x=1")), Some(d));
        assert_eq!(location_digest("http://r/v2/me/app/manifests/latest"), None);
        assert_eq!(location_digest("http://r/v2/me/app/blobs/uploads/x"), None);
    }
}
