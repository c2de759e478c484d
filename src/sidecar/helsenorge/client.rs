//! One call of DigitaltAktivStatusEndringer: `GET …?offset=<offset>` with the
//! bearer token, and its answer `{"offset": "...", "fnr": [...]}`.
//!
//! Helsenorge answers an expired or revoked token with 401, or with 403 and a
//! `SEC-` code ("Token is expired or invalid", SEC-110000); it has no refresh
//! tokens. Such a refusal costs the cached token: one new token is fetched and
//! the call is made once more. A second refusal is a real authorization
//! problem and is reported, not tried again.

use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use super::auth;
use crate::http::client::HttpError;
use crate::http::url::HttpsUrl;
use crate::sidecar::http::SidecarHttp;
use crate::sidecar::oauth::TokenCache;

/// Characters of the offset sent as they are: the documented offset
/// (`2026-12-02T10:00:01.12345Z`) travels unescaped.
const QUERY_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');
/// How much of a server's error message is quoted.
const MAX_QUOTED: usize = 200;

/// The answer: where to go on from, and who may have changed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Changes {
    /// Opaque; sent back as it is.
    #[serde(alias = "Offset")]
    pub offset: String,
    /// Identity numbers, as the server wrote them.
    #[serde(alias = "Fnr", default)]
    pub fnr: Vec<String>,
}

/// Helsenorge's error body, `{"Code": "SEC-110000", "Message": "..."}` (keys
/// in any case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceError {
    pub code: String,
    pub message: String,
}

impl ServiceError {
    /// Reads the error body; empty fields where there is none.
    pub fn parse(body: &[u8]) -> ServiceError {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) else {
            return ServiceError::default();
        };
        let field = |name: &str| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_str())
                .map(|s| s.chars().take(MAX_QUOTED).collect())
                .unwrap_or_default()
        };
        ServiceError {
            code: field("code"),
            message: field("message"),
        }
    }

    fn describe(&self) -> String {
        match (self.code.is_empty(), self.message.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!(", {}", self.code),
            (true, false) => format!(", {}", self.message),
            (false, false) => format!(", {}: {}", self.code, self.message),
        }
    }
}

/// Why the call gave no answer; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("no token for Helsenorge: {0}")]
    Token(String),
    #[error("Helsenorge refused the access token twice (HTTP {status}{}), also a freshly fetched one: the client has no access to DigitaltAktivStatusEndringer; check client_id and scope in [helsenorge] and the client's access at HelseID/Helsenorge", .error.describe())]
    RefusedTwice { status: u16, error: ServiceError },
    #[error("Helsenorge denied access to DigitaltAktivStatusEndringer (HTTP 403{}): ask Helsenorge to grant the client access", .0.describe())]
    Forbidden(ServiceError),
    #[error("Helsenorge refused the request as invalid (HTTP 400{}); if it names the offset, the stored offset is not one Helsenorge accepts: run with --reset-offset to start over", .0.describe())]
    BadRequest(ServiceError),
    #[error("Helsenorge answered HTTP {status}{}: try again later", .error.describe())]
    Status { status: u16, error: ServiceError },
    #[error("Helsenorge could not be asked: {0}")]
    Http(#[from] HttpError),
    #[error("Helsenorge's answer is not the documented {{\"offset\", \"fnr\"}} object ({0}); nothing was stored, the next run asks again")]
    Answer(String),
}

/// The feed of one client.
pub struct ChangesClient {
    pub http: SidecarHttp,
    pub tokens: Arc<TokenCache>,
    pub url: HttpsUrl,
}

/// Whether the answer refuses the token (rather than the client).
fn refuses_token(status: StatusCode, e: &ServiceError) -> bool {
    status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN && e.code.to_ascii_uppercase().starts_with("SEC-")
}

impl ChangesClient {
    /// The feed's URL for `offset` (none: every change the service still keeps).
    pub fn url_for(&self, offset: Option<&str>) -> HttpsUrl {
        let mut url = self.url.clone();
        if let Some(o) = offset.filter(|o| !o.is_empty()) {
            url.path = format!("{}?offset={}", url.path, utf8_percent_encode(o, QUERY_KEEP));
        }
        url
    }

    async fn get(&self, url: &HttpsUrl) -> Result<(StatusCode, bytes::Bytes, String), FeedError> {
        let token = self
            .tokens
            .access()
            .await
            .map_err(|e| FeedError::Token(auth::explain(&e)))?;
        let mut bearer = HeaderValue::from_str(&format!("bearer {}", token.as_str()))
            .map_err(|_| FeedError::Token("the token cannot be sent in a header".into()))?;
        bearer.set_sensitive(true);
        let (status, body) = self
            .http
            .send(Method::GET, url, vec![("authorization", bearer)], None)
            .await?;
        Ok((status, body, token.to_string()))
    }

    /// The changes after `offset`.
    pub async fn changes(&self, offset: Option<&str>) -> Result<Changes, FeedError> {
        let url = self.url_for(offset);
        let (mut status, mut body, used) = self.get(&url).await?;
        let mut error = ServiceError::parse(&body);
        if refuses_token(status, &error) {
            tracing::info!(
                status = status.as_u16(),
                code = %error.code,
                "Helsenorge refused the access token; fetching a new one and trying once more"
            );
            self.tokens.invalidate(&used).await;
            let (s, b, _) = self.get(&url).await?;
            (status, body) = (s, b);
            error = ServiceError::parse(&body);
            if refuses_token(status, &error) {
                return Err(FeedError::RefusedTwice {
                    status: status.as_u16(),
                    error,
                });
            }
        }
        match status {
            StatusCode::OK => serde_json::from_slice::<Changes>(&body)
                .map_err(|e| FeedError::Answer(e.to_string().chars().take(MAX_QUOTED).collect())),
            StatusCode::BAD_REQUEST => Err(FeedError::BadRequest(error)),
            StatusCode::FORBIDDEN => Err(FeedError::Forbidden(error)),
            s => Err(FeedError::Status {
                status: s.as_u16(),
                error,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_in_any_case_and_what_counts_as_a_token_refusal() {
        let e = ServiceError::parse(
            br#"{"Code":"SEC-110000","Message":"Token is expired or invalid"}"#,
        );
        assert_eq!(e.code, "SEC-110000");
        assert!(refuses_token(StatusCode::FORBIDDEN, &e));
        let e2 = ServiceError::parse(br#"{"code":"sec-110000","message":"x"}"#);
        assert!(refuses_token(StatusCode::FORBIDDEN, &e2));
        let other = ServiceError::parse(br#"{"Code":"ACC-1","Message":"no access"}"#);
        assert!(!refuses_token(StatusCode::FORBIDDEN, &other));
        assert!(refuses_token(
            StatusCode::UNAUTHORIZED,
            &ServiceError::parse(b"")
        ));
        assert_eq!(ServiceError::parse(b"<html>"), ServiceError::default());
    }

    #[test]
    fn answers_in_the_documented_shape() {
        let c: Changes = serde_json::from_str(
            r#"{"offset":"2026-12-02T10:00:00.00000Z","fnr":["31129956715"]}"#,
        )
        .unwrap();
        assert_eq!(c.fnr, vec!["31129956715"]);
        let c: Changes = serde_json::from_str(r#"{"Offset":"x","Fnr":[]}"#).unwrap();
        assert_eq!(c.offset, "x");
    }
}
