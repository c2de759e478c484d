//! The CareFlex client: the access token from EP1 (a JSON password grant, the
//! vendor's own shape, not form-encoded OAuth) cached for its 12 hours, one for
//! every company the managing company reports for; and the two SOAP calls to
//! EP2 with `Authorization: Bearer`.
//!
//! The SOAP POSTs are not idempotent (each `NewIncidentRequest` is a new
//! import), so they are not sent through [`SidecarHttp`]'s retries, which try
//! again after a timeout or an HTTP 500: the request may have been imported
//! then, and CareFlex answers a refused request with a SOAP Fault over HTTP
//! 500. They are tried again only when nothing can have reached the service
//! (the connection failed) or it said it took nothing (503), and once with a
//! new token after a 401. The token request, which changes nothing, uses
//! [`SidecarHttp`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::config::{read_secret, CareflexConfig, CONNECT_TIMEOUT};
use super::input::Incident;
use super::soap::{self, Fault, RowResult};
use crate::http::client::{request_with_limit, HttpError, HttpSettings};
use crate::http::url::HttpsUrl;
use crate::sidecar::clock::Clock;
use crate::sidecar::http::{SidecarHttp, ATTEMPTS, FIRST_BACKOFF, MAX_BACKOFF};
use crate::sidecar::oauth::{Fetch, Token, TokenCache, TokenError, TokenSource};

/// At most this many incidents in one `NewIncidentRequest` (the vendor: "Up
/// to 100 HR incidents can be transferred in a single request").
pub const MAX_BATCH: usize = 100;
/// A token lives this long when the answer does not say (the vendor: 12 h).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A token is replaced this long before it expires.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// The largest answer read (100 rows of a few hundred bytes each, and faults).
pub const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// 503 answers in a row before a call is given up.
pub const MAX_BUSY: u32 = 3;
const SERVICE: &str = "CareFlex";

/// Why a call did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CareflexError {
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("CareFlex refused a fresh access token as well (HTTP 401): check that the service user in [careflex] username may use the incident interface (CareFlex portal, Data import settings)")]
    Unauthorized,
    #[error("CareFlex refused {what} with a SOAP fault ({code}): {string}")]
    Fault {
        what: String,
        code: String,
        string: String,
    },
    #[error("CareFlex answered {what} with HTTP {status}{fault}: try again later; if it persists, ask CareFlex")]
    Status {
        what: String,
        status: u16,
        fault: String,
    },
    #[error("CareFlex: {0}; check [careflex] service_url and the network, then try again")]
    Http(#[from] HttpError),
    #[error(
        "CareFlex's answer to {what} cannot be read ({why}); report it to CareFlex or to kim-cm"
    )]
    BadAnswer { what: String, why: String },
    #[error("{0}")]
    Config(String),
}

impl CareflexError {
    fn fault(what: &str, f: Fault) -> CareflexError {
        CareflexError::Fault {
            what: what.into(),
            code: if f.code.is_empty() {
                "no faultcode".into()
            } else {
                f.code
            },
            string: if f.string.is_empty() {
                "no reason given".into()
            } else {
                f.string
            },
        }
    }
}

/// EP1's answer.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    created_at: Option<i64>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The password grant of EP1 with the service user.
struct PasswordGrant {
    http: SidecarHttp,
    url: HttpsUrl,
    username: String,
    password: Zeroizing<String>,
    clock: Arc<dyn Clock>,
    fetched: Arc<AtomicU64>,
}

impl PasswordGrant {
    async fn grant(&self) -> Result<Token, TokenError> {
        let failed = |why: String| TokenError::Failed {
            service: SERVICE,
            why,
        };
        let body = Zeroizing::new(
            serde_json::json!({
                "grant_type": "password",
                "username": self.username,
                "password": self.password.as_str(),
            })
            .to_string(),
        );
        tracing::debug!("CareFlex: asking for an access token");
        self.fetched.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        let (status, answer) = self
            .http
            .send(
                Method::POST,
                &self.url,
                vec![("content-type", HeaderValue::from_static("application/json"))],
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
                    expires_in,
                    created_at,
                    ..
                }),
            ) if !access.is_empty() => Ok(Token {
                access: Zeroizing::new(access),
                refresh: None,
                expires_at: expiry(now, expires_in, created_at),
            }),
            (StatusCode::OK, _) => Err(failed("EP1 answered without an access token".into())),
            (s, a) if s.is_client_error() => {
                let (error, description) = match a {
                    Some(TokenAnswer {
                        error: Some(e),
                        error_description,
                        ..
                    }) => (
                        e,
                        error_description
                            .map(|d| format!(": {}", d.chars().take(200).collect::<String>()))
                            .unwrap_or_default(),
                    ),
                    _ => (format!("HTTP {}", s.as_u16()), String::new()),
                };
                Err(TokenError::Refused {
                    service: SERVICE,
                    error,
                    description,
                })
            }
            (s, _) => Err(failed(format!("EP1 answered HTTP {}", s.as_u16()))),
        }
    }
}

/// When a token fetched at `now` expires: `created_at` plus `expires_in`, or
/// `now` plus `expires_in`, the earlier (a server clock ahead of ours must not
/// make us use a token after it expired); `created_at` is ignored when it
/// would leave the token less than twice the margin (a clock far off).
pub fn expiry(
    now: OffsetDateTime,
    expires_in: Option<u64>,
    created_at: Option<i64>,
) -> OffsetDateTime {
    let life = expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    let ours = now + life;
    let theirs = created_at
        .and_then(|c| OffsetDateTime::from_unix_timestamp(c).ok())
        .map(|c| c + life);
    match theirs {
        Some(t) if t < ours && t > now + 2 * TOKEN_MARGIN => t,
        Some(t) if t < ours => {
            tracing::warn!(
                "CareFlex: the token's created_at is far from this machine's clock; using the token for expires_in from now"
            );
            ours
        }
        _ => ours,
    }
}

impl TokenSource for PasswordGrant {
    fn fetch<'a>(&'a self, _previous: Option<&'a Token>) -> Fetch<'a> {
        Box::pin(self.grant())
    }
}

/// One row of a sent request, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowOutcome {
    pub line: usize,
    pub employee_id: String,
    pub external_id: Option<String>,
    /// The incident id, or the error's code and message.
    pub result: Result<String, (String, String)>,
}

/// One `NewIncidentRequest` and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub careflex_id: String,
    pub import_id: String,
    pub rows: Vec<RowOutcome>,
}

impl Imported {
    pub fn failed(&self) -> usize {
        self.rows.iter().filter(|r| r.result.is_err()).count()
    }
}

/// The client of one configured service.
pub struct CareflexClient {
    settings: HttpSettings,
    service: HttpsUrl,
    tokens: TokenCache,
    apitoken: Zeroizing<String>,
    clock: Arc<dyn Clock>,
    token_requests: Arc<AtomicU64>,
    soap_requests: AtomicU64,
}

impl CareflexClient {
    /// The client for `cfg` (paths resolved), with time from `clock`.
    pub fn new(
        cfg: &CareflexConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<CareflexClient, CareflexError> {
        cfg.check().map_err(CareflexError::Config)?;
        let connector = match &cfg.ca_file {
            Some(ca) => crate::net::tls::connector(ca, None)
                .map_err(|e| CareflexError::Config(format!("[careflex] ca_file: {e}")))?,
            None => openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())
                .map_err(|e| CareflexError::Config(e.to_string()))?
                .build(),
        };
        let settings = HttpSettings {
            connector: Arc::new(connector),
            connect_timeout: CONNECT_TIMEOUT,
            timeout: cfg.timeout(),
        };
        let url = |s: &str, key: &str| {
            HttpsUrl::parse(s).map_err(|e| CareflexError::Config(format!("[careflex] {key}: {e}")))
        };
        let fetched = Arc::new(AtomicU64::new(0));
        let grant = PasswordGrant {
            http: SidecarHttp {
                settings: settings.clone(),
                max_body: MAX_ANSWER,
                clock: clock.clone(),
            },
            url: url(&cfg.token_url, "token_url")?,
            username: cfg.username.clone(),
            password: read_secret(&cfg.password_file, "password_file")
                .map_err(CareflexError::Config)?,
            clock: clock.clone(),
            fetched: fetched.clone(),
        };
        Ok(CareflexClient {
            settings,
            service: url(&cfg.service_url, "service_url")?,
            tokens: TokenCache::new(Box::new(grant), clock.clone(), TOKEN_MARGIN),
            apitoken: read_secret(&cfg.apitoken_file, "apitoken_file")
                .map_err(CareflexError::Config)?,
            clock,
            token_requests: fetched,
            soap_requests: AtomicU64::new(0),
        })
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Token requests sent so far.
    pub fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    /// SOAP requests sent so far.
    pub fn soap_requests(&self) -> u64 {
        self.soap_requests.load(Ordering::Relaxed)
    }

    /// One POST of `envelope` to EP2, tried again only where that cannot
    /// import twice (see the module docs); the 200 answer's body.
    async fn post(&self, envelope: &Zeroizing<String>, what: &str) -> Result<Bytes, CareflexError> {
        let body = Bytes::from(envelope.as_bytes().to_vec());
        let mut renewed = false;
        let (mut failures, mut busy) = (1, 0);
        let mut pause = FIRST_BACKOFF;
        loop {
            let token = self.tokens.access().await?;
            let mut bearer = Zeroizing::new(b"Bearer ".to_vec());
            bearer.extend_from_slice(token.as_bytes());
            // the vendor's sample token has a '§': sent as its UTF-8 bytes
            let mut auth = HeaderValue::from_bytes(&bearer).map_err(|_| {
                CareflexError::Config("the access token cannot be sent in a header".into())
            })?;
            auth.set_sensitive(true);
            let headers = vec![
                ("authorization", auth),
                (
                    "content-type",
                    HeaderValue::from_static("text/xml;charset=UTF-8"),
                ),
                ("soapaction", HeaderValue::from_static("\"\"")),
            ];
            self.soap_requests.fetch_add(1, Ordering::Relaxed);
            let sent = request_with_limit(
                Method::POST,
                &self.service,
                headers,
                Some(body.clone()),
                MAX_ANSWER,
                &self.settings,
            )
            .await;
            let wait = match sent {
                Ok((StatusCode::OK, answer)) => return Ok(answer),
                Ok((StatusCode::UNAUTHORIZED, _)) if !renewed => {
                    tracing::info!(
                        "CareFlex: the access token was refused (401); getting a new one"
                    );
                    self.tokens.invalidate(&token).await;
                    renewed = true;
                    continue;
                }
                Ok((StatusCode::UNAUTHORIZED, _)) => return Err(CareflexError::Unauthorized),
                Ok((StatusCode::SERVICE_UNAVAILABLE, _)) if busy < MAX_BUSY => {
                    busy += 1;
                    tracing::warn!("CareFlex: the service is unavailable (503) for {what}; trying again in {} s", pause.as_secs());
                    true
                }
                Ok((status, answer)) => {
                    return Err(match soap::fault(&answer) {
                        Some(f)
                            if status == StatusCode::INTERNAL_SERVER_ERROR
                                || status.is_client_error() =>
                        {
                            CareflexError::fault(what, f)
                        }
                        f => CareflexError::Status {
                            what: what.into(),
                            status: status.as_u16(),
                            fault: f
                                .map(|f| format!(" ({}: {})", f.code, f.string))
                                .unwrap_or_default(),
                        },
                    })
                }
                Err(e @ HttpError::Connect { .. }) if failures < ATTEMPTS => {
                    failures += 1;
                    tracing::warn!("CareFlex: {e}; trying again in {} s", pause.as_secs());
                    true
                }
                Err(e) => return Err(e.into()),
            };
            if wait {
                self.clock.sleep(pause).await;
                pause = (pause * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Sends `incidents` (at most [`MAX_BATCH`], all for `careflex_id`) in one
    /// `NewIncidentRequest`; the importId and each row's outcome, in order.
    pub async fn new_incidents(
        &self,
        careflex_id: &str,
        incidents: &[&Incident],
    ) -> Result<Imported, CareflexError> {
        assert!(
            !incidents.is_empty() && incidents.len() <= MAX_BATCH,
            "a request of 1 to {MAX_BATCH} incidents"
        );
        let what = format!(
            "the report of {} incidents for {careflex_id}",
            incidents.len()
        );
        let envelope = soap::new_incident_request(careflex_id, &self.apitoken, incidents);
        let answer = self.post(&envelope, &what).await?;
        let response = soap::read_new_incident_response(&answer)
            .map_err(|why| CareflexError::BadAnswer {
                what: what.clone(),
                why,
            })?
            .map_err(|f| CareflexError::fault(&what, f))?;
        Ok(Imported {
            careflex_id: careflex_id.to_string(),
            import_id: response.import_id.clone(),
            rows: match_rows(incidents, &response.rows),
        })
    }

    /// Sends `NoIncidentRequest` for `careflex_id` with `createdAt`.
    pub async fn no_incident(
        &self,
        careflex_id: &str,
        created_at: time::Date,
    ) -> Result<(), CareflexError> {
        let what = format!("the empty report for {careflex_id}");
        let envelope = soap::no_incident_request(careflex_id, &self.apitoken, created_at);
        let answer = self.post(&envelope, &what).await?;
        soap::read_no_incident_response(&answer)
            .map_err(|why| CareflexError::BadAnswer {
                what: what.clone(),
                why,
            })?
            .map_err(|f| CareflexError::fault(&what, f))
    }
}

/// Each sent incident with its row of the answer (by `rowNumber`); a row the
/// answer lacks is an error, since its fate is unknown.
fn match_rows(incidents: &[&Incident], rows: &[RowResult]) -> Vec<RowOutcome> {
    incidents
        .iter()
        .enumerate()
        .map(|(i, inc)| {
            let row = rows.iter().find(|r| r.row_number == i);
            let result = match row {
                Some(RowResult {
                    error: Some((code, message)),
                    ..
                }) => Err((code.clone(), message.clone())),
                Some(RowResult {
                    incident_id: Some(id),
                    ..
                }) => Ok(id.clone()),
                Some(_) => Err((
                    "-".into(),
                    "the answer has neither an incidentId nor an error for this row; check it in the CareFlex portal".into(),
                )),
                None => Err((
                    "-".into(),
                    "the answer has no row for this incident; check it in the CareFlex portal".into(),
                )),
            };
            RowOutcome {
                line: inc.line,
                employee_id: inc.employee_id.clone(),
                external_id: inc.external_id.clone(),
                result,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_token_lasts_until_the_earlier_of_both_clocks() {
        let now = datetime!(2026-12-02 10:00 UTC);
        let twelve = Duration::from_secs(43200);
        assert_eq!(expiry(now, Some(43200), None), now + twelve);
        assert_eq!(expiry(now, None, None), now + twelve);
        // created a minute before our now (a server behind): its expiry
        let c = (now - Duration::from_secs(60)).unix_timestamp();
        assert_eq!(
            expiry(now, Some(43200), Some(c)),
            now + twelve - Duration::from_secs(60)
        );
        // a server ahead: ours
        let c = (now + Duration::from_secs(60)).unix_timestamp();
        assert_eq!(expiry(now, Some(43200), Some(c)), now + twelve);
        // a server a day behind: ignored
        let c = (now - Duration::from_secs(86400)).unix_timestamp();
        assert_eq!(expiry(now, Some(43200), Some(c)), now + twelve);
    }
}
