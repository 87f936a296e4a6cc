//! A scripted HTTP/1.1 registry on 127.0.0.1 for faults a real registry will
//! not produce: malformed or oversized manifests, odd media types, slow
//! bodies. It speaks just enough of the distribution API for oci-client.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct Route {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Pause between 64 KiB chunks of the body.
    pub trickle: Option<Duration>,
    /// Send this many bytes of the body, then wait for the gate to open.
    pub hold: Option<(usize, Gate)>,
    /// More response headers (e.g. a `Location`).
    pub headers: Vec<(String, String)>,
}

/// Closed until `open`; a held body waits for it.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    pub fn open(&self) {
        *self.0 .0.lock().expect("lock") = true;
        self.0 .1.notify_all();
    }

    fn wait(&self) {
        let mut open = self.0 .0.lock().expect("lock");
        while !*open {
            open = self.0 .1.wait(open).expect("lock");
        }
    }
}

impl Route {
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Route {
            status: 200,
            content_type: content_type.into(),
            body: body.into(),
            trickle: None,
            hold: None,
            headers: Vec::new(),
        }
    }
}

pub struct FakeRegistry {
    pub addr: String,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    /// When set, every /v2/ request needs this bearer token, which /token
    /// hands out anonymously (Docker Hub's flow).
    token: Arc<Mutex<Option<String>>>,
}

impl FakeRegistry {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let token: Arc<Mutex<Option<String>>> = Arc::default();
        let (shared, shared_token, realm) = (routes.clone(), token.clone(), format!("http://{addr}/token"));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (routes, token, realm) = (shared.clone(), shared_token.clone(), realm.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &routes, &token, &realm);
                });
            }
        });
        FakeRegistry { addr, routes, token }
    }

    pub fn require_bearer(&self, token: &str) {
        *self.token.lock().expect("lock") = Some(token.to_string());
    }

    /// Serve `route` at `path` (e.g. `/v2/app/manifests/latest`).
    pub fn route(&self, path: &str, route: Route) {
        self.routes.lock().expect("lock").insert(path.to_string(), route);
    }

    pub fn manifest(&self, repo: &str, tag: &str, media_type: &str, body: &[u8]) {
        self.route(
            &format!("/v2/{repo}/manifests/{tag}"),
            Route::ok(media_type, body.to_vec()),
        );
    }

    pub fn blob(&self, repo: &str, body: &[u8]) -> String {
        let digest = format!("sha256:{}", super::sha256_hex(body));
        self.route(
            &format!("/v2/{repo}/blobs/{digest}"),
            Route::ok("application/octet-stream", body.to_vec()),
        );
        digest
    }

    /// A complete single-layer image under `repo:tag` whose layer is an
    /// uncompressed tar holding one file, `payload`, with `content`.
    pub fn image(&self, repo: &str, tag: &str, content: &[u8], trickle: Option<Duration>) -> String {
        let layer = super::tar_layer(&[("payload", content)]);
        self.image_with_layer(repo, tag, &layer, trickle)
    }

    /// A single-layer image whose layer is exactly `layer` (diff_id = its digest).
    pub fn image_with_layer(&self, repo: &str, tag: &str, layer: &[u8], trickle: Option<Duration>) -> String {
        let diff_id = format!("sha256:{}", super::sha256_hex(layer));
        self.image_with_layer_as(
            repo,
            tag,
            layer,
            &diff_id,
            "application/vnd.oci.image.layer.v1.tar",
            trickle,
        )
    }

    /// A single-layer image with the given layer bytes, declared diff_id and media type.
    pub fn image_with_layer_as(
        &self,
        repo: &str,
        tag: &str,
        layer: &[u8],
        diff_id: &str,
        media_type: &str,
        trickle: Option<Duration>,
    ) -> String {
        self.image_layers(
            repo,
            tag,
            &[(layer.to_vec(), diff_id.to_string(), media_type.to_string())],
            trickle,
        )
        .remove(0)
    }

    /// An image of several layers: (bytes, diff_id, media type) each.
    /// Returns the layer digests.
    pub fn image_layers(
        &self,
        repo: &str,
        tag: &str,
        layers: &[(Vec<u8>, String, String)],
        trickle: Option<Duration>,
    ) -> Vec<String> {
        let mut digests = Vec::new();
        let mut descriptors = Vec::new();
        for (layer, _, media_type) in layers {
            let digest = self.blob(repo, layer);
            if trickle.is_some() {
                let mut route = Route::ok("application/octet-stream", layer.clone());
                route.trickle = trickle;
                self.route(&format!("/v2/{repo}/blobs/{digest}"), route);
            }
            descriptors.push(format!(
                r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{}}}"#,
                layer.len()
            ));
            digests.push(digest);
        }
        let diff_ids: Vec<String> = layers.iter().map(|(_, d, _)| format!("\"{d}\"")).collect();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{}}}}"#,
            diff_ids.join(",")
        );
        let config_digest = self.blob(repo, config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},
            "layers":[{}]}}"#,
            config.len(),
            descriptors.join(",")
        );
        self.manifest(
            repo,
            tag,
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
        );
        digests
    }
}

fn serve(
    conn: TcpStream,
    routes: &Mutex<HashMap<String, Route>>,
    token: &Mutex<Option<String>>,
    realm: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range_start = 0usize;
    let mut authorization = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("authorization:") {
            authorization = line["authorization:".len()..].trim().to_string();
        }
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range_start = v
                .trim()
                .trim_end_matches('-')
                .split('-')
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("").split('?').next().unwrap_or("").to_string();
    let required = token.lock().expect("lock").clone();
    let mut out = conn;
    if let Some(required) = required {
        if path == "/token" {
            let body = format!(r#"{{"token":"{required}","access_token":"{required}","expires_in":300}}"#);
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            return out.write_all(body.as_bytes());
        }
        if authorization != format!("Bearer {required}") {
            let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake-registry\"\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            return out.write_all(body);
        }
    }
    let route = if path == "/v2/" || path == "/v2" {
        Some(Route::ok("application/json", b"{}".to_vec()))
    } else {
        routes.lock().expect("lock").get(&path).cloned()
    };
    let Some(route) = route else {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        write!(out, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
        return out.write_all(body);
    };
    let (status, body) = if route.status == 200 && range_start > 0 && range_start < route.body.len() {
        (206, &route.body[range_start..])
    } else {
        (route.status, &route.body[..])
    };
    let reason = match status {
        200 => "OK",
        201 => "Created",
        206 => "Partial Content",
        401 => "Unauthorized",
        _ => "Status",
    };
    let extra: String = route.headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        route.content_type,
        body.len()
    )?;
    if method == "HEAD" {
        return Ok(());
    }
    let body = match &route.hold {
        Some((at, gate)) if *at < body.len() => {
            out.write_all(&body[..*at])?;
            out.flush()?;
            gate.wait();
            &body[*at..]
        }
        _ => body,
    };
    match route.trickle {
        None => out.write_all(body),
        Some(pause) => {
            for chunk in body.chunks(64 * 1024) {
                out.write_all(chunk)?;
                out.flush()?;
                std::thread::sleep(pause);
            }
            Ok(())
        }
    }
}
