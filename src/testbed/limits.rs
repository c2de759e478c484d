//! A simulated AccountLimit service (AccountLimit.yaml 1.1.4, `GET
//! /AccountLimit/v1.1/limit`), with the Fachdienst's users and TLS: Basic auth with
//! the mail account, 401 for a wrong login, 404 for an unknown account, the
//! AccountLimit JSON otherwise. The limits per account come from `limits.json` in
//! the Fachdienst's folder (address → object), else the yaml's defaults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use openssl::ssl::SslAcceptor;
use tokio::net::TcpListener;

use super::users::Users;
use crate::net::Conn;

/// The service's base path (AccountLimit.yaml `servers`).
pub const BASE_PATH: &str = "/AccountLimit/v1.1";
const TIMEOUT: Duration = Duration::from_secs(30);

/// The yaml's defaults: dataTimeToLive 90 days, maxMailSize 700 MiB, no quota.
pub fn default_limit() -> serde_json::Value {
    serde_json::json!({
        "dataTimeToLive": 90,
        "maxMailSize": 734003200u64,
        "quota": -1,
        "remainQuota": -1
    })
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        serde_json::json!({"code": status.as_u16().to_string(), "message": message}),
    )
}

fn basic(req: &Request<Incoming>) -> Option<(String, String)> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn answer(
    req: &Request<Incoming>,
    users: &Users,
    limits: &HashMap<String, serde_json::Value>,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET || req.uri().path() != format!("{BASE_PATH}/limit") {
        return error(StatusCode::NOT_FOUND, "no such resource");
    }
    let Some((user, password)) = basic(req) else {
        return error(StatusCode::UNAUTHORIZED, "Basic authentication required");
    };
    if !users.exists(&user) {
        return error(StatusCode::NOT_FOUND, "account not found");
    }
    if !users.check(&user, &password) {
        return error(StatusCode::UNAUTHORIZED, "authentication failed");
    }
    let mut body = default_limit();
    if let (Some(over), Some(obj)) = (limits.get(&user.to_ascii_lowercase()), body.as_object_mut())
    {
        if let Some(o) = over.as_object() {
            for (k, v) in o {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    reply(StatusCode::OK, body)
}

/// Serves on `listener` until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    acceptor: Arc<SslAcceptor>,
    users: Arc<Users>,
    limits: Arc<HashMap<String, serde_json::Value>>,
) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let (acceptor, users, limits) = (acceptor.clone(), users.clone(), limits.clone());
        tokio::spawn(async move {
            let mut conn = Conn::new(crate::net::conn::Stream::Plain(tcp), peer, TIMEOUT);
            if conn.accept_tls(&acceptor).await.is_err() {
                return;
            }
            let Some(stream) = conn.into_stream() else {
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = answer(&req, &users, &limits);
                async move { Ok::<_, std::convert::Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The per-account limits from `limits.json` in `dir`, if there is one.
pub fn load(dir: &std::path::Path) -> HashMap<String, serde_json::Value> {
    std::fs::read_to_string(dir.join("limits.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<HashMap<String, serde_json::Value>>(&t).ok())
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect()
        })
        .unwrap_or_default()
}

/// The address the service listens on, as the `https://` base URL.
pub fn base_url(addr: SocketAddr) -> String {
    format!("https://localhost:{}{BASE_PATH}", addr.port())
}
