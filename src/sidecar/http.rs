//! HTTP calls of the sidecars: one request over kim-cm's verified TLS
//! ([`crate::http::client`]), tried again with growing pauses when the
//! connection fails, times out or the server answers 500, 502 or 504. Other
//! answers, 503 among them (whose meaning each service defines), go back to
//! the caller as they are.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};

use super::clock::Clock;
use crate::http::client::{request_with_limit, HttpError, HttpSettings};
use crate::http::url::HttpsUrl;

/// Tries of one request in all.
pub const ATTEMPTS: u32 = 4;
/// The pause after the first failed try; doubled after each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest pause between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How one sidecar calls its service.
#[derive(Clone)]
pub struct SidecarHttp {
    pub settings: HttpSettings,
    /// The largest answer read.
    pub max_body: usize,
    pub clock: Arc<dyn Clock>,
}

/// Whether an answer is worth another try.
fn transient(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
    )
}

impl SidecarHttp {
    /// The same calls with answers bounded by `max` bytes at most.
    pub fn bounded(&self, max: usize) -> SidecarHttp {
        let mut h = self.clone();
        h.max_body = h.max_body.min(max);
        h
    }

    /// Sends the request, again after a pause while it fails in passing; the
    /// last answer or error otherwise.
    pub async fn send(
        &self,
        method: Method,
        url: &HttpsUrl,
        headers: Vec<(&'static str, HeaderValue)>,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let mut pause = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let result = request_with_limit(
                method.clone(),
                url,
                headers.clone(),
                body.clone(),
                self.max_body,
                &self.settings,
            )
            .await;
            let again = match &result {
                Ok((status, _)) => transient(*status),
                Err(HttpError::Connect { .. } | HttpError::Timeout { .. }) => true,
                Err(HttpError::Protocol { .. }) => false,
            };
            if !again || attempt >= ATTEMPTS {
                return result;
            }
            let what = match &result {
                Ok((status, _)) => format!("HTTP {status}"),
                Err(e) => e.to_string(),
            };
            tracing::warn!(url = %url, attempt, "{what}; trying again in {} s", pause.as_secs());
            self.clock.sleep(pause).await;
            pause = (pause * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }
}
