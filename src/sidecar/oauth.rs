//! OAuth 2.0 tokens for the sidecars: the token endpoint's answer, OIDC
//! discovery, and a cache that hands out the current access token, gets a new
//! one shortly before it expires, and never runs two fetches at once (SASIS
//! rotates refresh tokens: two refreshes with the same one would burn it).
//! Tokens are `Zeroizing` and never logged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::clock::Clock;
use super::http::SidecarHttp;
use crate::http::url::HttpsUrl;

/// Why no token came.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint refused the credentials (OAuth `error`, e.g.
    /// invalid_client, invalid_grant): a person has to fix them.
    #[error("{service} refused the login ({error}{description}): check the client id, client secret, user name and password in the config")]
    Refused {
        service: &'static str,
        error: String,
        description: String,
    },
    /// The endpoint could not be reached or answered something else.
    #[error("{service}: no token ({why})")]
    Failed { service: &'static str, why: String },
}

/// An access token, maybe with a refresh token, and when it expires.
#[derive(Clone)]
pub struct Token {
    pub access: Zeroizing<String>,
    pub refresh: Option<Zeroizing<String>>,
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The future a [`TokenSource`] returns.
pub type Fetch<'a> = Pin<Box<dyn Future<Output = Result<Token, TokenError>> + Send + 'a>>;

/// Where tokens come from; `previous` is the token being replaced (for a
/// refresh grant), none at first or after an invalidation.
pub trait TokenSource: Send + Sync {
    fn fetch<'a>(&'a self, previous: Option<&'a Token>) -> Fetch<'a>;
}

/// The current token of one service.
pub struct TokenCache {
    source: Box<dyn TokenSource>,
    clock: Arc<dyn Clock>,
    /// A token is replaced this long before it expires.
    margin: Duration,
    current: tokio::sync::Mutex<Option<Token>>,
}

impl TokenCache {
    pub fn new(
        source: Box<dyn TokenSource>,
        clock: Arc<dyn Clock>,
        margin: Duration,
    ) -> TokenCache {
        TokenCache {
            source,
            clock,
            margin,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The access token to send now. Whoever finds it due fetches the next one
    /// while holding the lock, so every other caller waits for that one.
    pub async fn access(&self) -> Result<Zeroizing<String>, TokenError> {
        let mut current = self.current.lock().await;
        let fresh = current
            .as_ref()
            .is_some_and(|t| t.expires_at - self.margin > self.clock.now());
        if !fresh {
            let next = self.source.fetch(current.as_ref()).await?;
            *current = Some(next);
        }
        Ok(current.as_ref().expect("set above").access.clone())
    }

    /// Forgets `access` after the service refused it, unless another caller
    /// has replaced it already; the next [`access`](Self::access) gets a new
    /// token with the source's first grant (no refresh).
    pub async fn invalidate(&self, access: &str) {
        let mut current = self.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|t| t.access.as_str() == access)
        {
            *current = None;
        }
    }
}

/// A token endpoint's JSON answer (RFC 6749 5.1 and 5.2).
#[derive(Deserialize)]
pub struct TokenAnswer {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// How long a token without `expires_in` is used.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The largest answer read from a token endpoint or a discovery document: a
/// token answer (RFC 6749 5.1) is a few KiB, a JWT access token included.
pub const MAX_TOKEN_ANSWER: usize = 256 * 1024;

/// Posts `fields` form-encoded to the token endpoint (with HTTP Basic client
/// authentication when `basic` is given) and reads the token.
pub async fn token_request(
    http: &SidecarHttp,
    service: &'static str,
    endpoint: &HttpsUrl,
    fields: &[(&str, &str)],
    basic: Option<(&str, &str)>,
    now: OffsetDateTime,
) -> Result<Token, TokenError> {
    let failed = |why: String| TokenError::Failed { service, why };
    let http = &http.bounded(MAX_TOKEN_ANSWER);
    let body = Zeroizing::new(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish(),
    );
    let mut headers = vec![(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    )];
    if let Some((id, secret)) = basic {
        use base64::Engine;
        // RFC 6749 2.3.1: both form-encoded before Basic
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = Zeroizing::new(format!("{}:{}", enc(id), enc(secret)));
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
        let mut v = HeaderValue::from_str(&format!("Basic {}", b64.as_str()))
            .map_err(|_| failed("the client id cannot be sent in a header".into()))?;
        v.set_sensitive(true);
        headers.push(("authorization", v));
    }
    let (status, answer) = http
        .send(
            Method::POST,
            endpoint,
            headers,
            Some(Bytes::from(body.as_bytes().to_vec())),
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
    let parsed: Option<TokenAnswer> = serde_json::from_slice(&answer).ok();
    match (status, parsed) {
        (
            StatusCode::OK,
            Some(TokenAnswer {
                access_token: Some(access),
                refresh_token,
                expires_in,
                ..
            }),
        ) => {
            let lifetime = expires_in
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_LIFETIME);
            Ok(Token {
                access: Zeroizing::new(access),
                refresh: refresh_token.map(Zeroizing::new),
                expires_at: now + lifetime,
            })
        }
        (
            s,
            Some(TokenAnswer {
                error: Some(error),
                error_description,
                ..
            }),
        ) if s.is_client_error() => Err(TokenError::Refused {
            service,
            error,
            description: error_description
                .map(|d| format!(": {}", d.chars().take(200).collect::<String>()))
                .unwrap_or_default(),
        }),
        (s, _) => Err(failed(format!("the token endpoint answered HTTP {s}"))),
    }
}

/// The token endpoint named by the OIDC discovery document under `authority`
/// (`/.well-known/openid-configuration`).
pub async fn discover_token_endpoint(
    http: &SidecarHttp,
    service: &'static str,
    authority: &HttpsUrl,
) -> Result<HttpsUrl, TokenError> {
    let failed = |why: String| TokenError::Failed { service, why };
    let http = &http.bounded(MAX_TOKEN_ANSWER);
    let url = authority.join("/.well-known/openid-configuration");
    let (status, body) = http
        .send(Method::GET, &url, Vec::new(), None)
        .await
        .map_err(|e| failed(e.to_string()))?;
    if status != StatusCode::OK {
        return Err(failed(format!("{url} answered HTTP {status}")));
    }
    #[derive(Deserialize)]
    struct Discovery {
        token_endpoint: Option<String>,
    }
    let d: Discovery = serde_json::from_slice(&body)
        .map_err(|e| failed(format!("{url} is not a discovery document: {e}")))?;
    let endpoint = d
        .token_endpoint
        .ok_or_else(|| failed(format!("{url} names no token_endpoint")))?;
    HttpsUrl::parse(&endpoint).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::clock::ManualClock;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Counting {
        fetched: AtomicU32,
        refreshed: AtomicU32,
        clock: Arc<ManualClock>,
    }

    impl TokenSource for Arc<Counting> {
        fn fetch<'a>(&'a self, previous: Option<&'a Token>) -> Fetch<'a> {
            Box::pin(async move {
                if previous.is_some() {
                    self.refreshed.fetch_add(1, Ordering::SeqCst);
                }
                let n = self.fetched.fetch_add(1, Ordering::SeqCst);
                // slow, so that parallel callers would overlap
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(Token {
                    access: Zeroizing::new(format!("token-{n}")),
                    refresh: Some(Zeroizing::new(format!("refresh-{n}"))),
                    expires_at: self.clock.now() + Duration::from_secs(300),
                })
            })
        }
    }

    #[tokio::test]
    async fn one_fetch_for_many_callers_and_a_refresh_before_expiry() {
        let clock = ManualClock::new(time::macros::datetime!(2026-12-02 10:00 UTC));
        let source = Arc::new(Counting {
            fetched: AtomicU32::new(0),
            refreshed: AtomicU32::new(0),
            clock: clock.clone(),
        });
        let cache = Arc::new(TokenCache::new(
            Box::new(source.clone()),
            clock.clone(),
            Duration::from_secs(60),
        ));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.access().await.unwrap().to_string() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), "token-0");
        }
        assert_eq!(source.fetched.load(Ordering::SeqCst), 1, "single flight");
        // within the margin before expiry: replaced, with the previous token
        clock.advance(Duration::from_secs(241));
        assert_eq!(*cache.access().await.unwrap(), "token-1");
        assert_eq!(source.refreshed.load(Ordering::SeqCst), 1);
        // refused by the service: forgotten, the next is a first grant again
        cache.invalidate("token-1").await;
        assert_eq!(*cache.access().await.unwrap(), "token-2");
        assert_eq!(source.refreshed.load(Ordering::SeqCst), 1);
        // an outdated invalidation does not drop the current token
        cache.invalidate("token-1").await;
        assert_eq!(*cache.access().await.unwrap(), "token-2");
    }
}
