//! A simulated KIM Attachment Service (AttachmentService.yaml 2.4.0, base path
//! `/attachments/v2.4`), with the Fachdienst's users and TLS:
//!
//! - `POST /attachment/` (addMailData): Basic auth, multipart/form-data with
//!   `messageID`, one `recipients` part per address, `expires` (RFC 5322) and
//!   `attachment` with its own `Content-Length`; the data is streamed to disk.
//!   201 with `sharedLink` (named after the `Host` the client reached it by,
//!   when that is `localhost:port`, so that a relay in front stays in the
//!   path); 400 for a malformed request, 401, 413 over the size limit, 507 over
//!   the account's KAS quota.
//! - `GET /attachment/{id}` (readMailData) with the `recipient` header: the data,
//!   streamed; 400 without the header, 403 for an address not among the
//!   recipients, 404 unknown, deleted or expired, 429 after [`DOWNLOAD_LIMIT`]
//!   downloads by one recipient.
//! - `HEAD /attachment/{id}`: 200 or 404.
//! - `DELETE /attachment/{id}` (deleteMailData): Basic auth as the uploader; 200,
//!   401, 404.
//!
//! Limits per account come from `limits.json` (`kasQuota` in bytes; without one,
//! unlimited; `kasMaxAttachment` in bytes, the size over which 413 comes, without
//! one [`MAX_ATTACHMENT`]). Neither is a field of the API: they set up the
//! simulated service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use openssl::ssl::SslAcceptor;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::users::Users;
use crate::net::Conn;

/// The service's base path (AttachmentService.yaml `servers`).
pub const BASE_PATH: &str = "/attachments/v2.4";
/// The largest attachment accepted: 700 MiB of mail, encrypted (IV and tag added).
pub const MAX_ATTACHMENT: u64 = 734_003_200 + 1024;
/// Downloads per recipient before 429.
pub const DOWNLOAD_LIMIT: u32 = 5;
const TIMEOUT: Duration = Duration::from_secs(300);
/// How much of a refused upload is still read, so the client sees the answer.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

type Body = BoxBody<Bytes, std::io::Error>;

/// What the simulator keeps about one upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    sender: String,
    message_id: String,
    recipients: Vec<String>,
    /// Unix seconds.
    expires: i64,
    size: u64,
    downloads: HashMap<String, u32>,
}

/// The simulator's state: uploads on disk, metadata in memory.
pub struct Kas {
    dir: PathBuf,
    users: Arc<Users>,
    quotas: HashMap<String, u64>,
    /// Per account: attachments over this get 413 (default [`MAX_ATTACHMENT`]).
    max_attachment: HashMap<String, u64>,
    meta: Mutex<HashMap<String, Meta>>,
    base_url: Mutex<String>,
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(
        status,
        serde_json::json!({"code": status.as_u16().to_string(), "message": message}),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn basic(req: &Request<Incoming>) -> Option<(String, String)> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_ascii_lowercase(), p.to_string()))
}

impl Kas {
    pub fn new(dir: &Path, users: Arc<Users>, limits: &HashMap<String, serde_json::Value>) -> Kas {
        let per_account = |field: &str| -> HashMap<String, u64> {
            limits
                .iter()
                .filter_map(|(a, v)| Some((a.to_ascii_lowercase(), v.get(field)?.as_u64()?)))
                .collect()
        };
        Kas {
            dir: dir.to_path_buf(),
            users,
            quotas: per_account("kasQuota"),
            max_attachment: per_account("kasMaxAttachment"),
            meta: Mutex::new(HashMap::new()),
            base_url: Mutex::new(String::new()),
        }
    }

    fn meta(&self) -> std::sync::MutexGuard<'_, HashMap<String, Meta>> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn authenticated(&self, req: &Request<Incoming>) -> Option<String> {
        let (user, password) = basic(req)?;
        self.users.check(&user, &password).then_some(user)
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let Some(rest) = path.strip_prefix(&format!("{BASE_PATH}/attachment/")) else {
            return error(StatusCode::NOT_FOUND, "no such resource");
        };
        let rest = rest.to_string();
        match (req.method().clone(), rest.is_empty()) {
            (Method::POST, true) => self.add(req).await,
            (Method::GET, false) => self.read(req, &rest, true).await,
            (Method::HEAD, false) => self.read(req, &rest, false).await,
            (Method::DELETE, false) => self.delete(&req, &rest),
            _ => error(StatusCode::NOT_FOUND, "no such resource"),
        }
    }

    async fn add(&self, req: Request<Incoming>) -> Response<Body> {
        let sender = self.authenticated(&req);
        // the link names the service as the client reached it (a KAS behind a
        // relay or load balancer publishes that name, not its own port); without a
        // usable Host header, the listener's
        let base = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| h.starts_with("localhost:") && h[10..].parse::<u16>().is_ok())
            .map(|h| format!("https://{h}"))
            .unwrap_or_else(|| self.base_url.lock().map(|u| u.clone()).unwrap_or_default());
        let has_length = req.headers().get("content-length").is_some();
        let Some(boundary) = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| multer::parse_boundary(ct).ok())
        else {
            return error(StatusCode::BAD_REQUEST, "multipart/form-data expected");
        };
        let stream = BodyStream::new(req.into_body())
            .try_filter_map(|f: Frame<Bytes>| async move { Ok(f.into_data().ok()) });
        let mut form = multer::Multipart::new(stream, boundary);
        let id = hex::encode(rand::random::<[u8; 16]>());
        let data_path = self.dir.join(format!("{id}.bin"));
        let result = match (sender, has_length) {
            (None, _) => Err(error(StatusCode::UNAUTHORIZED, "authentication failed")),
            (Some(_), false) => Err(error(StatusCode::BAD_REQUEST, "Content-Length is required")),
            (Some(sender), true) => self.receive(&mut form, sender, &data_path).await,
        };
        match result {
            Ok(meta) => {
                tracing::info!(
                    sender = %meta.sender,
                    recipients = %meta.recipients.join(","),
                    size = meta.size,
                    expires_in_days = (meta.expires - now() + 43_200) / 86_400,
                    "testbed KAS: upload stored"
                );
                self.meta().insert(id.clone(), meta);
                let link = format!("{base}{BASE_PATH}/attachment/{id}");
                json(
                    StatusCode::CREATED,
                    serde_json::json!({ "sharedLink": link }),
                )
            }
            Err(refusal) => {
                let _ = tokio::fs::remove_file(&data_path).await;
                // read what the client still sends (up to a bound), so that it sees
                // the answer instead of a reset connection
                let mut drained = 0usize;
                while drained < DRAIN_LIMIT {
                    match form.next_field().await {
                        Ok(Some(mut f)) => {
                            while let Ok(Some(c)) = f.chunk().await {
                                drained += c.len();
                                if drained >= DRAIN_LIMIT {
                                    break;
                                }
                            }
                        }
                        _ => break,
                    }
                }
                refusal
            }
        }
    }

    /// Reads the form of an upload by `sender`, the attachment into `data_path`.
    async fn receive(
        &self,
        form: &mut multer::Multipart<'_>,
        sender: String,
        data_path: &Path,
    ) -> Result<Meta, Response<Body>> {
        let bad = |why: &str| error(StatusCode::BAD_REQUEST, why);
        let (mut message_id, mut recipients, mut expires, mut size) =
            (None, Vec::new(), None, None);
        loop {
            let field = match form.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(bad(&format!("malformed multipart body: {e}"))),
            };
            match field.name().unwrap_or_default() {
                "messageID" => message_id = field.text().await.ok(),
                "recipients" => {
                    if let Ok(r) = field.text().await {
                        recipients.push(r.trim().to_ascii_lowercase());
                    }
                }
                "expires" => {
                    expires = field.text().await.ok().and_then(|t| {
                        mail_parser::DateTime::parse_rfc822(t.trim()).map(|d| d.to_timestamp())
                    })
                }
                "attachment" => {
                    let declared = field
                        .headers()
                        .get("content-length")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .ok_or_else(|| bad("the attachment part has no Content-Length"))?;
                    let max = self
                        .max_attachment
                        .get(&sender)
                        .copied()
                        .unwrap_or(MAX_ATTACHMENT);
                    if declared > max {
                        return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "attachment too large"));
                    }
                    let used: u64 = self
                        .meta()
                        .values()
                        .filter(|m| m.sender == sender)
                        .map(|m| m.size)
                        .sum();
                    if self
                        .quotas
                        .get(&sender)
                        .is_some_and(|q| used + declared > *q)
                    {
                        return Err(error(
                            StatusCode::INSUFFICIENT_STORAGE,
                            "KAS quota exhausted",
                        ));
                    }
                    match store(field, data_path).await {
                        Ok(n) if n == declared => size = Some(n),
                        Ok(n) => {
                            return Err(bad(&format!(
                                "attachment has {n} bytes, Content-Length said {declared}"
                            )))
                        }
                        Err(e) => return Err(bad(&format!("reading the attachment: {e}"))),
                    }
                }
                _ => {}
            }
        }
        let (Some(message_id), Some(expires), Some(size)) = (message_id, expires, size) else {
            return Err(bad(
                "messageID, recipients, expires and attachment are required",
            ));
        };
        if recipients.is_empty() || expires <= now() {
            return Err(bad("no recipients, or expires is not in the future"));
        }
        Ok(Meta {
            sender,
            message_id,
            recipients,
            expires,
            size,
            downloads: HashMap::new(),
        })
    }

    async fn read(&self, req: Request<Incoming>, id: &str, body: bool) -> Response<Body> {
        let Some(recipient) = req
            .headers()
            .get("recipient")
            .and_then(|v| v.to_str().ok())
            .map(|r| r.trim().to_ascii_lowercase())
        else {
            return error(StatusCode::BAD_REQUEST, "the recipient header is required");
        };
        {
            let mut meta = self.meta();
            let Some(m) = meta.get_mut(id).filter(|m| m.expires > now()) else {
                return error(StatusCode::NOT_FOUND, "not found");
            };
            if !m.recipients.contains(&recipient) {
                return error(StatusCode::FORBIDDEN, "not a recipient of this mail");
            }
            if !body {
                return Response::new(Full::new(Bytes::new()).map_err(|n| match n {}).boxed());
            }
            let n = m.downloads.entry(recipient).or_insert(0);
            if *n >= DOWNLOAD_LIMIT {
                return error(StatusCode::TOO_MANY_REQUESTS, "downloaded too many times");
            }
            *n += 1;
        }
        let file = match tokio::fs::File::open(self.dir.join(format!("{id}.bin"))).await {
            Ok(f) => f,
            Err(_) => return error(StatusCode::NOT_FOUND, "not found"),
        };
        let frames =
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map_ok(Frame::data);
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(frames)));
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/octet-stream"),
        );
        r
    }

    fn delete(&self, req: &Request<Incoming>, id: &str) -> Response<Body> {
        let Some(user) = self.authenticated(req) else {
            return error(StatusCode::UNAUTHORIZED, "authentication failed");
        };
        let mut meta = self.meta();
        if meta.get(id).is_none_or(|m| m.sender != user) {
            return error(StatusCode::NOT_FOUND, "not found");
        }
        meta.remove(id);
        let _ = std::fs::remove_file(self.dir.join(format!("{id}.bin")));
        json(StatusCode::OK, serde_json::json!({}))
    }

    /// How many uploads the service holds (for tests).
    pub fn count(&self) -> usize {
        self.meta().len()
    }
}

/// Streams one multipart field to `path`; returns the byte count.
async fn store(mut field: multer::Field<'_>, path: &Path) -> std::io::Result<u64> {
    let mut f = tokio::fs::File::create(path).await?;
    let mut n = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(std::io::Error::other)? {
        n += chunk.len() as u64;
        if n > MAX_ATTACHMENT {
            return Err(std::io::Error::other("attachment larger than declared"));
        }
        f.write_all(&chunk).await?;
    }
    f.flush().await?;
    Ok(n)
}

/// Serves on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, acceptor: Arc<SslAcceptor>, kas: Arc<Kas>) {
    if let Ok(addr) = listener.local_addr() {
        if let Ok(mut u) = kas.base_url.lock() {
            *u = format!("https://localhost:{}", addr.port());
        }
    }
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let (acceptor, kas) = (acceptor.clone(), kas.clone());
        tokio::spawn(async move {
            let mut conn = Conn::new(crate::net::conn::Stream::Plain(tcp), peer, TIMEOUT);
            if conn.accept_tls(&acceptor).await.is_err() {
                return;
            }
            let Some(stream) = conn.into_stream() else {
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let kas = kas.clone();
                async move { Ok::<_, std::convert::Infallible>(kas.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The `https://` base URL of a KAS listening on `addr`.
pub fn base_url(addr: SocketAddr) -> String {
    format!("https://localhost:{}{BASE_PATH}", addr.port())
}
