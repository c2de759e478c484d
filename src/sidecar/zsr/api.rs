//! The ZSR-Webservice's client: the token (password grant, then refresh grants
//! with the rotating refresh token, one at a time), the number list page by
//! page, and the details of at most 500 numbers per request, one request after
//! the other, each within the rate rules.
//!
//! What the service answers: 200 the data; 401 once gets a fresh token and one
//! more try; 503 a pause (five minutes) and the same request again, a few
//! times; 400 and 403 with their `{"field": ["message"]}` body become the
//! error's sentence. Connection failures and 500/502/504 are retried by
//! [`SidecarHttp`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde_json::Value;
use time::Date;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use super::config::{ListEncoding, ZsrConfig, SCOPE};
use super::number::Kind;
use super::window::Window;
use crate::http::client::HttpError;
use crate::http::url::HttpsUrl;
use crate::sidecar::clock::Clock;
use crate::sidecar::http::SidecarHttp;
use crate::sidecar::oauth::{
    discover_token_endpoint, token_request, Fetch, Token, TokenCache, TokenError, TokenSource,
};
use crate::sidecar::ratelimit::RateLimiter;

/// Numbers per detail request (SASIS: at most 500; more is refused with 400).
pub const DETAIL_BATCH: usize = 500;
/// A token is replaced this long before it expires (SASIS's sample: 1 minute).
pub const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// 503s in a row before a request is given up.
pub const MAX_BUSY: u32 = 3;
/// The largest answer read (500 whole records).
pub const MAX_ANSWER: usize = 64 * 1024 * 1024;
const SERVICE: &str = "the SASIS ZSR service";

/// Why the service did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ZsrError {
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("{SERVICE} refused the token twice (401): check that the SASIS user may use the web service, and its client id and secret")]
    Unauthorized,
    #[error("{SERVICE} refused {what} (403{fields}): the SASIS user lacks a subscription (Abo-Option) for it; ask SASIS")]
    Forbidden { what: String, fields: String },
    #[error("{SERVICE} refused {what} as invalid (400{fields}); this is a fault of kim-cm or its input, please report it")]
    BadRequest { what: String, fields: String },
    #[error("{SERVICE} is overloaded (503) even after {MAX_BUSY} pauses of {pause} s: run the sync again later, in the batch window")]
    Busy { pause: u64 },
    #[error("{SERVICE} answered {what} with HTTP {status}: try again later")]
    Status { what: String, status: u16 },
    #[error("{SERVICE}: {0}; check [zsr] base_url and the network, then try again")]
    Http(#[from] HttpError),
    #[error(
        "{SERVICE}'s answer to {what} cannot be read ({why}); report it to SASIS or to kim-cm"
    )]
    BadAnswer { what: String, why: String },
    #[error("{0}")]
    Config(String),
}

/// `{"field": ["message", ...]}` as `: field: message; ...`.
fn field_errors(body: &[u8]) -> String {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let parts: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            let msgs: Vec<String> = match v {
                Value::Array(a) => a
                    .iter()
                    .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                    .collect(),
                other => vec![other.to_string()],
            };
            format!("{k}: {}", msgs.join(", "))
        })
        .collect();
    let text: String = parts.join("; ").chars().take(500).collect();
    if text.is_empty() {
        text
    } else {
        format!(": {text}")
    }
}

/// The password and refresh grants of the SASIS token service.
struct ZsrAuth {
    http: SidecarHttp,
    authority: HttpsUrl,
    endpoint: OnceCell<HttpsUrl>,
    client_id: String,
    client_secret: Zeroizing<String>,
    username: String,
    password: Zeroizing<String>,
    clock: Arc<dyn Clock>,
}

impl ZsrAuth {
    async fn endpoint(&self) -> Result<&HttpsUrl, TokenError> {
        self.endpoint
            .get_or_try_init(|| discover_token_endpoint(&self.http, SERVICE, &self.authority))
            .await
    }

    async fn password_grant(&self) -> Result<Token, TokenError> {
        let endpoint = self.endpoint().await?;
        tracing::debug!("ZSR: password grant");
        token_request(
            &self.http,
            SERVICE,
            endpoint,
            &[
                ("grant_type", "password"),
                ("client_id", &self.client_id),
                ("client_secret", &self.client_secret),
                ("username", &self.username),
                ("password", &self.password),
                ("scope", SCOPE),
            ],
            None,
            self.clock.now(),
        )
        .await
    }
}

impl TokenSource for ZsrAuth {
    fn fetch<'a>(&'a self, previous: Option<&'a Token>) -> Fetch<'a> {
        Box::pin(async move {
            let Some(refresh) = previous.and_then(|p| p.refresh.as_ref()) else {
                return self.password_grant().await;
            };
            let endpoint = self.endpoint().await?;
            tracing::debug!("ZSR: refresh grant");
            // as SASIS's sample: the client credentials as HTTP Basic
            let refreshed = token_request(
                &self.http,
                SERVICE,
                endpoint,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh),
                    ("scope", SCOPE),
                ],
                Some((&self.client_id, &self.client_secret)),
                self.clock.now(),
            )
            .await;
            match refreshed {
                Err(TokenError::Refused { error, .. }) if error == "invalid_grant" => {
                    tracing::info!("ZSR: the refresh token was refused; logging in anew");
                    self.password_grant().await
                }
                other => other,
            }
        })
    }
}

/// Counts for the summary and the benchmark.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub list_pages: u64,
    pub detail_requests: u64,
    pub busy_pauses: u64,
}

/// The client of one configured service.
pub struct ZsrApi {
    http: SidecarHttp,
    base: HttpsUrl,
    tokens: TokenCache,
    limiter: RateLimiter,
    window: Window,
    slow: u32,
    batch: u32,
    unlimited: bool,
    pause: Duration,
    search_options: String,
    page_size: u32,
    encoding: ListEncoding,
    clock: Arc<dyn Clock>,
    counts: Mutex<Counts>,
}

fn read_secret(path: &std::path::Path, key: &str) -> Result<Zeroizing<String>, ZsrError> {
    crate::sidecar::read_secret(path, &format!("[zsr] {key}")).map_err(ZsrError::Config)
}

impl ZsrApi {
    /// The client for `cfg`, with time from `clock`.
    pub fn new(cfg: &ZsrConfig, clock: Arc<dyn Clock>) -> Result<ZsrApi, ZsrError> {
        cfg.check().map_err(ZsrError::Config)?;
        let connector = match &cfg.ca_file {
            Some(ca) => crate::net::tls::connector(ca, None)
                .map_err(|e| ZsrError::Config(format!("[zsr] ca_file: {e}")))?,
            None => openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())
                .map_err(|e| ZsrError::Config(e.to_string()))?
                .build(),
        };
        let http = SidecarHttp {
            settings: crate::http::client::HttpSettings {
                connector: Arc::new(connector),
                connect_timeout: Duration::from_secs(15),
                timeout: Duration::from_secs(120),
            },
            max_body: MAX_ANSWER,
            clock: clock.clone(),
        };
        let url = |s: &str, what: &str| {
            HttpsUrl::parse(s).map_err(|e| ZsrError::Config(format!("[zsr] {what}: {e}")))
        };
        let auth = ZsrAuth {
            http: http.clone(),
            authority: url(&cfg.authority_url, "authority_url")?,
            endpoint: OnceCell::new(),
            client_id: cfg.client_id.clone(),
            client_secret: read_secret(&cfg.client_secret_file, "client_secret_file")?,
            username: cfg.username.clone(),
            password: read_secret(&cfg.password_file, "password_file")?,
            clock: clock.clone(),
        };
        Ok(ZsrApi {
            base: url(&cfg.base_url, "base_url")?,
            tokens: TokenCache::new(Box::new(auth), clock.clone(), TOKEN_MARGIN),
            limiter: RateLimiter::new(clock.clone()),
            window: super::window::Window::parse(&cfg.batch_window, &cfg.timezone)
                .map_err(ZsrError::Config)?,
            slow: cfg.slow_rate_per_minute,
            batch: cfg.batch_rate_per_minute,
            unlimited: cfg.unlimited_rate_for_testing,
            pause: cfg.pause_after_503(),
            search_options: cfg.search_options.clone(),
            page_size: cfg.page_size,
            encoding: cfg.list_encoding,
            http,
            clock,
            counts: Mutex::new(Counts::default()),
        })
    }

    pub fn window(&self) -> &Window {
        &self.window
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The requests a minute allowed now (`None`: no limit).
    pub fn rate_now(&self) -> Option<u32> {
        if self.unlimited {
            None
        } else if self.window.contains(self.clock.now()) {
            Some(self.batch)
        } else {
            Some(self.slow)
        }
    }

    /// `limit` of one number-list page.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// The rate outside the window.
    pub fn slow_rate(&self) -> u32 {
        self.slow
    }

    pub fn unlimited(&self) -> bool {
        self.unlimited
    }

    /// API requests sent so far.
    pub fn requests(&self) -> u64 {
        self.limiter.total()
    }

    pub fn counts(&self) -> Counts {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// `GET base + path_and_query` within the rules; the answer's body.
    async fn get(&self, path_and_query: &str, what: &str) -> Result<bytes::Bytes, ZsrError> {
        let url = self.base.join(path_and_query);
        let mut renewed = false;
        let mut busy = 0;
        loop {
            self.limiter.acquire(self.rate_now()).await;
            let token = self.tokens.access().await?;
            let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
                .map_err(|_| ZsrError::Config("the token cannot be sent in a header".into()))?;
            auth.set_sensitive(true);
            let (status, body) = self
                .http
                .send(Method::GET, &url, vec![("authorization", auth)], None)
                .await?;
            match status {
                StatusCode::OK => return Ok(body),
                StatusCode::UNAUTHORIZED if !renewed => {
                    tracing::info!("ZSR: the token was refused (401); getting a new one");
                    self.tokens.invalidate(&token).await;
                    renewed = true;
                }
                StatusCode::UNAUTHORIZED => return Err(ZsrError::Unauthorized),
                StatusCode::SERVICE_UNAVAILABLE if busy < MAX_BUSY => {
                    busy += 1;
                    self.count(|c| c.busy_pauses += 1);
                    tracing::warn!(
                        "ZSR: the service answered 503 (too many requests): pausing {} s as SASIS asks, then asking again",
                        self.pause.as_secs()
                    );
                    self.limiter.pause(self.pause);
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    return Err(ZsrError::Busy {
                        pause: self.pause.as_secs(),
                    })
                }
                StatusCode::FORBIDDEN => {
                    return Err(ZsrError::Forbidden {
                        what: what.into(),
                        fields: field_errors(&body),
                    })
                }
                StatusCode::BAD_REQUEST => {
                    return Err(ZsrError::BadRequest {
                        what: what.into(),
                        fields: field_errors(&body),
                    })
                }
                s => {
                    return Err(ZsrError::Status {
                        what: what.into(),
                        status: s.as_u16(),
                    })
                }
            }
        }
    }

    /// Every number of `/numbers` (modified since `since`, when given), page
    /// by page; `on_page` hears each page's size.
    pub async fn list(
        &self,
        since: Option<Date>,
        on_page: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<String>, ZsrError> {
        let mut all = Vec::new();
        let mut offset: u64 = 0;
        loop {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("searchOptions", &self.search_options)
                .append_pair("offset", &offset.to_string())
                .append_pair("limit", &self.page_size.to_string());
            if let Some(d) = since {
                q.append_pair("modifiedFrom", &date_text(d));
            }
            let body = self
                .get(
                    &format!("/api/v1/numbers?{}", q.finish()),
                    "the number list",
                )
                .await?;
            self.count(|c| c.list_pages += 1);
            let (numbers, total) = read_list(&body).map_err(|why| ZsrError::BadAnswer {
                what: "the number list".into(),
                why,
            })?;
            let got = numbers.len() as u64;
            on_page(numbers.len());
            all.extend(numbers);
            offset += got;
            let done = got < u64::from(self.page_size) || total.is_some_and(|t| offset >= t);
            if done || got == 0 {
                return Ok(all);
            }
        }
    }

    /// The whole records of `numbers` (at most [`DETAIL_BATCH`], all of
    /// `kind`): number → record. Numbers the service leaves out are missing.
    pub async fn details(
        &self,
        kind: Kind,
        numbers: &[String],
    ) -> Result<Vec<(String, Value)>, ZsrError> {
        assert!(numbers.len() <= DETAIL_BATCH, "a batch of at most 500");
        let field = match kind {
            Kind::Zsr => "clearingnumbers",
            Kind::K => "employeenumbers",
        };
        let mut q = form_urlencoded::Serializer::new(String::new());
        match self.encoding {
            ListEncoding::Repeat => {
                for n in numbers {
                    q.append_pair(field, n);
                }
            }
            ListEncoding::Comma => {
                q.append_pair(field, &numbers.join(","));
            }
        }
        let what = format!("the details of {} numbers", numbers.len());
        let body = self
            .get(&format!("/api/v1/{field}?{}", q.finish()), &what)
            .await?;
        self.count(|c| c.detail_requests += 1);
        read_records(&body).map_err(|why| ZsrError::BadAnswer { what, why })
    }
}

/// `modifiedFrom`'s format: the date (the FAQ's "Stichdatum").
pub fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The list of items in an answer: the answer itself when it is an array, else
/// its first array-valued field among the usual names, else its first
/// array-valued field at all (the BulkResponse's shape is not published).
fn items(v: &Value) -> Option<&Vec<Value>> {
    match v {
        Value::Array(a) => Some(a),
        Value::Object(o) => ["items", "numbers", "data", "results", "values"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_array))
            .or_else(|| o.values().find_map(Value::as_array)),
        _ => None,
    }
}

/// A record's number: its `number`, or the `number` of one of its objects
/// (`{"clearingNumber": {"number": ..}}`).
pub fn record_number(v: &Value) -> Option<String> {
    if let Some(n) = v.get("number").and_then(Value::as_str) {
        return Some(n.to_string());
    }
    v.as_object()?
        .values()
        .find_map(|x| x.get("number").and_then(Value::as_str))
        .map(str::to_string)
}

fn read_list(body: &[u8]) -> Result<(Vec<String>, Option<u64>), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let total = ["total", "totalCount", "count"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_u64));
    let items = items(&v).ok_or("no list of numbers in it")?;
    let numbers = items
        .iter()
        .filter_map(|i| match i {
            Value::String(s) => Some(s.clone()),
            other => record_number(other),
        })
        .collect();
    Ok((numbers, total))
}

fn read_records(body: &[u8]) -> Result<Vec<(String, Value)>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let items = items(&v).ok_or("no list of records in it")?;
    items
        .iter()
        .map(|r| {
            record_number(r)
                .map(|n| (n, r.clone()))
                .ok_or_else(|| "a record without a number".to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_records_are_read_whatever_their_wrapping() {
        let (n, t) =
            read_list(br#"{"total": 2, "items": [{"number": "L248519"}, "123456K"]}"#).unwrap();
        assert_eq!(
            (n, t),
            (vec!["L248519".to_string(), "123456K".to_string()], Some(2))
        );
        let (n, _) = read_list(br#"[{"clearingNumber": {"number": "Y274589"}}]"#).unwrap();
        assert_eq!(n, vec!["Y274589"]);
        let r = read_records(br#"{"clearingNumbers": [{"number": "L248519", "x": 1}]}"#).unwrap();
        assert_eq!(r[0].0, "L248519");
        assert!(read_records(br#"[{"nothing": 1}]"#).is_err());
        assert_eq!(
            field_errors(
                br#"{"clearingnumbers": ["A maximum of 500 numbers"], "limit": ["too big"]}"#
            ),
            ": clearingnumbers: A maximum of 500 numbers; limit: too big"
        );
        assert_eq!(field_errors(b""), "");
    }
}
