//! One HTTP/1.1 request over a fresh verified TLS connection, with a bounded
//! response body. The services kim-cm calls are called rarely (limits once a day per
//! account), so connections are not pooled.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderValue, AUTHORIZATION, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use openssl::ssl::SslConnector;

use super::url::HttpsUrl;
use crate::net::Conn;

/// The largest response body kim-cm reads from a JSON service.
pub const MAX_JSON_BODY: usize = 256 * 1024;
/// The longest answer head (status line and header fields) kim-cm reads from
/// any HTTPS service; hyper's read buffer is bounded by it.
pub const MAX_ANSWER_HEAD: usize = 256 * 1024;

/// Why reading an answer's body failed; says so when it was over `max` bytes.
pub fn body_error(e: &(dyn std::error::Error + Send + Sync + 'static), max: usize) -> String {
    if e.downcast_ref::<http_body_util::LengthLimitError>()
        .is_some()
    {
        format!("the answer is too large: over {max} bytes")
    } else {
        format!("reading the answer: {}", with_cause(e))
    }
}

/// Why sending a request or reading its answer's head failed; says so when
/// the head was over [`MAX_ANSWER_HEAD`].
pub fn send_error(e: &hyper::Error) -> String {
    if e.is_parse_too_large() {
        format!("the answer's head is too large: over {MAX_ANSWER_HEAD} bytes")
    } else {
        with_cause(e)
    }
}

/// An error with the chain of its causes ("connection error: the peer was
/// silent for 5 s"): hyper's own text alone rarely says what happened.
pub fn with_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Ends the connection's task when dropped, on every way out of an exchange,
/// so an answer abandoned half-read does not keep its connection open.
pub struct AbortOnDrop(pub Driver);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a request failed; says which service.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot reach {url}: {why}")]
    Connect { url: String, why: String },
    #[error("{url} did not answer in time")]
    Timeout { url: String },
    #[error("{url}: {why}")]
    Protocol { url: String, why: String },
}

/// Settings for calls to one service.
#[derive(Clone)]
pub struct HttpSettings {
    pub connector: std::sync::Arc<SslConnector>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

/// The task that drives one HTTP/1.1 connection; aborted when the exchange is done.
pub type Driver = tokio::task::JoinHandle<Result<(), hyper::Error>>;

/// A fresh verified TLS connection to `url`'s host with an HTTP/1.1 handshake done,
/// for requests with bodies of type `B`. `Err` says why, for the caller's error.
/// The caller bounds the exchange's time.
pub async fn connect<B>(
    url: &HttpsUrl,
    s: &HttpSettings,
) -> Result<(hyper::client::conn::http1::SendRequest<B>, Driver), String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    handshake(open(url, s).await?).await
}

/// As [`connect`], for transfers whose whole time cannot be bounded (the KAS's
/// mail data, up to 700 MiB): the connection fails when the service is silent for
/// `s.timeout` in the middle. hyper has no timeouts of its own, and a KAS stalled
/// in an upload or a download would otherwise hold the session for ever.
pub async fn connect_watched<B>(
    url: &HttpsUrl,
    s: &HttpSettings,
) -> Result<(hyper::client::conn::http1::SendRequest<B>, Driver), String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = open(url, s).await?;
    handshake(crate::net::idle::IdleTimeout::new(stream, s.timeout)).await
}

/// TCP and TLS to `url`'s host, the certificate verified.
async fn open(url: &HttpsUrl, s: &HttpSettings) -> Result<crate::net::Stream, String> {
    let conn = Conn::connect_upstream(
        &url.authority(),
        &url.host,
        true,
        &s.connector,
        s.connect_timeout,
        s.timeout,
    )
    .await
    .map_err(|e| e.to_string())?;
    conn.into_stream()
        .ok_or_else(|| "connection not usable".to_string())
}

/// The HTTP/1.1 handshake over `stream`, its connection driven by a task; an
/// answer head over [`MAX_ANSWER_HEAD`] fails the exchange.
async fn handshake<B, S>(
    stream: S,
) -> Result<(hyper::client::conn::http1::SendRequest<B>, Driver), String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_ANSWER_HEAD)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    Ok((sender, tokio::spawn(connection)))
}

/// `GET url` with Basic auth; the status and the body (at most [`MAX_JSON_BODY`]).
pub async fn get_basic(
    url: &HttpsUrl,
    user: &str,
    password: &str,
    s: &HttpSettings,
) -> Result<(StatusCode, Bytes), HttpError> {
    request_basic(Method::GET, url, user, password, s).await
}

/// `method url` without a body, with Basic auth; the status and the body (at most
/// [`MAX_JSON_BODY`]).
pub async fn request_basic(
    method: Method,
    url: &HttpsUrl,
    user: &str,
    password: &str,
    s: &HttpSettings,
) -> Result<(StatusCode, Bytes), HttpError> {
    let u = url.to_string();
    let work = async {
        let (mut sender, driver) = connect(url, s).await.map_err(|why| HttpError::Connect {
            url: u.clone(),
            why,
        })?;
        let _driver = AbortOnDrop(driver);
        let credentials = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
        );
        let mut auth =
            HeaderValue::from_str(&format!("Basic {}", &*credentials)).map_err(|_| {
                HttpError::Protocol {
                    url: u.clone(),
                    why: "the user name cannot be sent in a header".into(),
                }
            })?;
        auth.set_sensitive(true);
        let req = Request::builder()
            .method(method)
            .uri(&url.path)
            .header(HOST, url.authority())
            .header(AUTHORIZATION, auth)
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| HttpError::Protocol {
                url: u.clone(),
                why: e.to_string(),
            })?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| HttpError::Protocol {
                url: u.clone(),
                why: send_error(&e),
            })?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_JSON_BODY)
            .collect()
            .await
            .map_err(|e| HttpError::Protocol {
                url: u.clone(),
                why: body_error(&*e, MAX_JSON_BODY),
            })?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(s.connect_timeout + s.timeout, work)
        .await
        .map_err(|_| HttpError::Timeout { url: u.clone() })?
}

/// `method url` with `headers` and an optional `body` (the caller sets its
/// content type among the headers); the status and the body (at most
/// [`MAX_JSON_BODY`]). Header values marked sensitive stay out of debug output.
pub async fn request(
    method: Method,
    url: &HttpsUrl,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Option<Bytes>,
    s: &HttpSettings,
) -> Result<(StatusCode, Bytes), HttpError> {
    request_with_limit(method, url, headers, body, MAX_JSON_BODY, s).await
}

/// [`request`] with the response body bounded by `max_body` instead.
pub async fn request_with_limit(
    method: Method,
    url: &HttpsUrl,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Option<Bytes>,
    max_body: usize,
    s: &HttpSettings,
) -> Result<(StatusCode, Bytes), HttpError> {
    let u = url.to_string();
    let protocol = |why: String| HttpError::Protocol {
        url: u.clone(),
        why,
    };
    let work = async {
        let (mut sender, driver) = connect::<http_body_util::Full<Bytes>>(url, s)
            .await
            .map_err(|why| HttpError::Connect {
                url: u.clone(),
                why,
            })?;
        let _driver = AbortOnDrop(driver);
        let mut req = Request::builder()
            .method(method)
            .uri(&url.path)
            .header(HOST, url.authority())
            .header("accept", "application/json");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let req = req
            .body(http_body_util::Full::new(body.unwrap_or_default()))
            .map_err(|e| protocol(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| protocol(send_error(&e)))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| protocol(body_error(&*e, max_body)))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(s.connect_timeout + s.timeout, work)
        .await
        .map_err(|_| HttpError::Timeout { url: u.clone() })?
}
