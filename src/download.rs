//! An `http://` or `https://` URL's body streamed into a writer, as docker's
//! daemon fetches `import URL`: each chunk is written as it arrives (a body
//! is never held whole), and a non-2xx answer is an error naming the URL
//! and the status. The client is the reqwest oci-client already builds, with
//! the features it enables (rustls, up to 10 redirects followed, never from
//! https to http; no system proxy).

use std::io::Write;
use std::time::Duration;

/// Why a download failed, in one line.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("failed to GET {url} with status {status}")]
    Status { url: String, status: reqwest::StatusCode },
    #[error("failed to GET {url}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("writing the body of {url}")]
    Write {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
}

impl From<DownloadError> for crate::Error {
    fn from(e: DownloadError) -> Self {
        crate::Error::Module(Box::new(e))
    }
}

/// `url` without its credentials, as it may be shown or recorded.
pub fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if is_url(url) => {
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// Whether an import source names a URL (docker's test: the scheme prefix).
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence tolerated while the body arrives.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// GET `url` and write its body to `out`; the bytes written.
pub fn download(url: &str, out: &mut dyn Write) -> Result<u64, DownloadError> {
    // The callers are synchronous: a runtime of their own thread suffices,
    // and blocking writes on it hold up nothing else.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DownloadError::Runtime)?;
    runtime.block_on(fetch(url, out))
}

async fn fetch(url: &str, out: &mut dyn Write) -> Result<u64, DownloadError> {
    let request = |source| DownloadError::Request {
        url: shown(url),
        source,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("mocker/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let downgrade =
                attempt.url().scheme() == "http" && attempt.previous().iter().any(|u| u.scheme() == "https");
            if downgrade {
                attempt.error("refusing a redirect from https to http")
            } else if attempt.previous().len() > 10 {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        }))
        .build()
        .map_err(request)?;
    let mut response = client.get(url).send().await.map_err(request)?;
    let status = response.status();
    if !status.is_success() {
        return Err(DownloadError::Status {
            url: shown(url),
            status,
        });
    }
    let mut written = 0u64;
    // A body shorter than its Content-Length is an error from `chunk`.
    while let Some(chunk) = response.chunk().await.map_err(request)? {
        out.write_all(&chunk).map_err(|source| DownloadError::Write {
            url: shown(url),
            source,
        })?;
        written += chunk.len() as u64;
    }
    out.flush().map_err(|source| DownloadError::Write {
        url: shown(url),
        source,
    })?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_by_their_scheme() {
        assert!(is_url("http://example.com/rootfs.tar"));
        assert!(is_url("https://example.com/rootfs.tar.gz"));
        assert!(!is_url("-"));
        assert!(!is_url("rootfs.tar"));
        assert!(!is_url("ftp://example.com/rootfs.tar"));
        assert_eq!(shown("http://me:secret@example.com/r.tar"), "http://example.com/r.tar");
    }
}
