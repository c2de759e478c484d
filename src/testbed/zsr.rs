//! A simulated SASIS ZSR-Webservice ("Sasis Register API v1.0", basePath
//! `/ApiGateway`) with its OpenID Connect token service, over TLS from the test
//! CA. It follows what the SASIS FAQ and the published swagger excerpt say:
//!
//! - OIDC discovery at `/auth/.well-known/openid-configuration`; the password
//!   grant with client id and secret and the fixed scope list; tokens that last
//!   five minutes; refresh tokens that rotate (a used one is refused with
//!   `invalid_grant`, and counted, so tests can show it never happens).
//! - `GET /ApiGateway/api/v1/numbers?searchOptions=..&offset=..&limit=..[&modifiedFrom=YYYY-MM-DD]`:
//!   the numbers, paged, `{"total": N, "items": [{"number": ".."}]}` (the
//!   BulkResponse's real shape is not published; kim-cm reads it tolerantly);
//!   numbers suspended for more than 10 years are not delivered.
//! - `GET /ApiGateway/api/v1/clearingnumbers?clearingnumbers=A&clearingnumbers=B`
//!   and `/employeenumbers?employeenumbers=..`: the whole records, at most 500
//!   numbers a request (more: 400 with `{"field": ["message"]}`, the swagger's
//!   error shape), unknown numbers left out.
//! - More than 1000 requests a minute: 503. A missing or expired token: 401.
//!
//! Time is a [`Clock`], so tests share a hand-driven one with the client. Tests
//! change the data between syncs ([`ZsrSim::mutate`]) and inject faults.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use time::{Date, OffsetDateTime};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::ca::TlsFiles;
use crate::sidecar::clock::Clock;
use crate::sidecar::zsr::config::SCOPE;
use crate::sidecar::zsr::number::{check_letter, parse, Kind, RemainderZero};

/// The API's base path.
pub const API_PATH: &str = "/ApiGateway/api/v1";
/// The token service's path (the OIDC authority).
pub const AUTH_PATH: &str = "/auth";
/// At most this many numbers per detail request (SASIS FAQ).
pub const MAX_DETAIL_NUMBERS: usize = 500;
/// The largest `limit` of a `/numbers` page the simulator accepts.
pub const MAX_PAGE: usize = 5000;
/// More requests than this within a minute are refused with 503.
pub const RATE_LIMIT: usize = 1000;
const MAX_FORM: usize = 16 * 1024;

/// The credentials the simulator accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
}

/// One number of the register.
#[derive(Debug, Clone)]
pub struct Entry {
    pub record: Value,
    /// Last modification (for `modifiedFrom`).
    pub modified: Date,
    /// Suspended for more than 10 years: no longer delivered.
    pub gone: bool,
}

/// One API request as the simulator saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: OffsetDateTime,
    pub path: String,
    /// Numbers asked for (detail requests).
    pub numbers: usize,
    pub status: u16,
}

/// What tests read back.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub password_grants: u32,
    pub refresh_grants: u32,
    /// Refresh tokens presented a second time (must stay 0).
    pub refresh_reused: u32,
    pub requests: Vec<Seen>,
}

/// Faults a test orders.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer the API request with this index (0-based, over all API requests)
    /// with this status instead.
    pub status_at: BTreeMap<usize, u16>,
    /// Delay every detail answer (real time; for the crash test only).
    pub detail_delay: Duration,
    /// Make every access token issued from now on expire after this long.
    pub token_lifetime: Option<Duration>,
}

struct State {
    clock: Arc<dyn Clock>,
    creds: Credentials,
    data: Mutex<BTreeMap<String, Entry>>,
    access: Mutex<HashMap<String, OffsetDateTime>>,
    refresh: Mutex<HashSet<String>>,
    used_refresh: Mutex<HashSet<String>>,
    recent: Mutex<VecDeque<OffsetDateTime>>,
    stats: Mutex<Stats>,
    faults: Mutex<Faults>,
    base: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running simulator; dropping it stops it.
pub struct ZsrSim {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for ZsrSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Tokens last this long unless a test says otherwise (SASIS: 300 s).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

fn random_token() -> String {
    let mut b = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    hex::encode(b)
}

/// The `i`-th ZSR number of the generated register (valid check letter, never
/// on remainder 0).
pub fn zsr_number(i: usize) -> String {
    let mut n = (i * 7919 + 100_003) % 1_000_000;
    loop {
        let s = format!("{n:06}");
        let mut d = [0u8; 6];
        for (x, c) in d.iter_mut().zip(s.bytes()) {
            *x = c - b'0';
        }
        let (letter, zero) = check_letter(&d);
        if !zero {
            return format!("{letter}{s}");
        }
        n = (n + 1) % 1_000_000;
    }
}

/// A generated register of `n` numbers: four in five ZSR numbers, the rest K
/// numbers, each record with validity periods (placeholders among them),
/// elements with technical ids, reference data with a GUID key, and a field
/// kim-cm does not know.
pub fn generate(n: usize) -> BTreeMap<String, Entry> {
    let modified = time::macros::date!(2020 - 01 - 01);
    let mut out = BTreeMap::new();
    let mut i = 0;
    while out.len() < n {
        let number = if i % 5 == 4 {
            format!("{:06}K", 100_000 + i)
        } else {
            zsr_number(i)
        };
        let id = (i as u64) * 10;
        let record = if number.ends_with('K') {
            json!({
                "number": number,
                "employee": {"id": id + 1, "lastName": format!("Muster{i}"), "firstName": "Anna"},
                "validityPeriods": [{"id": id + 2, "validFrom": "2001-04-01", "validTo": "9999-12-31"}],
                "relatedClearingNumbers": [{"id": id + 3, "number": zsr_number(i.saturating_sub(1)),
                    "validityPeriods": [{"id": id + 4, "validFrom": "0001-01-01", "validTo": "9999-12-31"}]}],
                "employeeSurvey": {"unknownToClients": true}
            })
        } else {
            json!({
                "number": number,
                "correspondenceParty": {"id": id + 1, "name": format!("Praxis {i}"), "zipCode": format!("{}", 1000 + i % 9000)},
                "clearingNumberAccount": {"id": id + 2, "hasPaymentOrderReferenceNumber": i % 2 == 0},
                "validityPeriods": [
                    {"id": id + 3, "validFrom": "0001-01-01", "validTo": "2010-12-31"},
                    {"id": id + 4, "validFrom": "2012-01-01", "validTo": "9999-12-31"}
                ],
                "qualifications": [{"id": id + 5, "key": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                    "name": "Allgemeine Innere Medizin",
                    "validityPeriods": [{"id": id + 6, "validFrom": "1999-01-01", "validTo": "9999-12-31"}]}],
                "businessActivity": "Practice",
                "clearingNumberDummy": null,
                "futureField": {"addedIn": "v1.7"}
            })
        };
        out.insert(
            number,
            Entry {
                record,
                modified,
                gone: false,
            },
        );
        i += 1;
    }
    out
}

impl ZsrSim {
    /// Starts on `listener` with `data`, TLS from `tls`, time from `clock`.
    pub fn start(
        listener: TcpListener,
        tls: &TlsFiles,
        clock: Arc<dyn Clock>,
        creds: Credentials,
        data: BTreeMap<String, Entry>,
    ) -> Result<ZsrSim, Box<dyn std::error::Error + Send + Sync>> {
        let acceptor = Arc::new(crate::net::tls::acceptor(
            &tls.server_cert,
            &tls.server_key,
        )?);
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            clock,
            creds,
            data: Mutex::new(data),
            access: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashSet::new()),
            used_refresh: Mutex::new(HashSet::new()),
            recent: Mutex::new(VecDeque::new()),
            stats: Mutex::new(Stats::default()),
            faults: Mutex::new(Faults::default()),
            base: format!("https://localhost:{}", addr.port()),
        });
        let task = tokio::spawn(super::https::serve(
            listener,
            acceptor,
            state.clone(),
            |s, req| async move { answer(req, &s).await },
        ));
        Ok(ZsrSim { addr, state, task })
    }

    /// `https://localhost:port/auth`.
    pub fn authority_url(&self) -> String {
        format!("{}{AUTH_PATH}", self.state.base)
    }

    /// `https://localhost:port/ApiGateway`.
    pub fn base_url(&self) -> String {
        format!("{}/ApiGateway", self.state.base)
    }

    /// Changes the register; `modified` dates are the caller's to set (see
    /// [`ZsrSim::today`]).
    pub fn mutate<T>(&self, change: impl FnOnce(&mut BTreeMap<String, Entry>) -> T) -> T {
        change(&mut lock(&self.state.data))
    }

    /// The simulator's date now.
    pub fn today(&self) -> Date {
        self.state.clock.now().date()
    }

    /// The register as the service delivers it: number → record.
    pub fn delivered(&self) -> BTreeMap<String, Value> {
        lock(&self.state.data)
            .iter()
            .filter(|(_, e)| !e.gone)
            .map(|(k, e)| (k.clone(), e.record.clone()))
            .collect()
    }

    pub fn stats(&self) -> Stats {
        lock(&self.state.stats).clone()
    }

    pub fn set_faults(&self, f: Faults) {
        *lock(&self.state.faults) = f;
    }

    /// Every access token issued so far stops working (as after a restart of
    /// the token service).
    pub fn revoke_access_tokens(&self) {
        lock(&self.state.access).clear();
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn empty(status: StatusCode) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn field_error(field: &str, message: &str) -> Reply {
    reply(StatusCode::BAD_REQUEST, json!({ field: [message] }))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Reply {
    reply(
        status,
        json!({"error": error, "error_description": description}),
    )
}

async fn answer(req: Request<Incoming>, s: &State) -> Reply {
    let path = req.uri().path().to_string();
    if path == format!("{AUTH_PATH}/.well-known/openid-configuration") {
        return reply(
            StatusCode::OK,
            json!({
                "issuer": format!("{}{AUTH_PATH}", s.base),
                "token_endpoint": format!("{}{AUTH_PATH}/connect/token", s.base),
                "grant_types_supported": ["password", "refresh_token"]
            }),
        );
    }
    if path == format!("{AUTH_PATH}/connect/token") && req.method() == Method::POST {
        return token(req, s).await;
    }
    if let Some(endpoint) = path.strip_prefix(API_PATH) {
        let endpoint = endpoint.to_string();
        return api(req, &endpoint, s).await;
    }
    empty(StatusCode::NOT_FOUND)
}

fn basic_client(req: &Request<Incoming>) -> Option<(String, String)> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |x: &str| {
        form_urlencoded::parse(format!("x={x}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

async fn token(req: Request<Incoming>, s: &State) -> Reply {
    let basic = basic_client(&req);
    let Ok(body) = Limited::new(req.into_body(), MAX_FORM).collect().await else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "body too large");
    };
    let fields: HashMap<String, String> = form_urlencoded::parse(&body.to_bytes())
        .into_owned()
        .collect();
    let f = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
    let (id, secret) = basic.unwrap_or_else(|| (f("client_id").into(), f("client_secret").into()));
    if id != s.creds.client_id || secret != s.creds.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client");
    }
    let wanted: HashSet<&str> = SCOPE.split(' ').collect();
    let asked: HashSet<&str> = f("scope").split(' ').filter(|x| !x.is_empty()).collect();
    if asked != wanted {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "the scope must be the documented list",
        );
    }
    match f("grant_type") {
        "password" => {
            if f("username") != s.creds.username || f("password") != s.creds.password {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "invalid_username_or_password",
                );
            }
            lock(&s.stats).password_grants += 1;
        }
        "refresh_token" => {
            let presented = f("refresh_token").to_string();
            if !lock(&s.refresh).remove(&presented) {
                if lock(&s.used_refresh).contains(&presented) {
                    lock(&s.stats).refresh_reused += 1;
                }
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "invalid refresh token",
                );
            }
            lock(&s.used_refresh).insert(presented);
            lock(&s.stats).refresh_grants += 1;
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "password or refresh_token",
            )
        }
    }
    let lifetime = lock(&s.faults).token_lifetime.unwrap_or(TOKEN_LIFETIME);
    let (access, refresh) = (random_token(), random_token());
    lock(&s.access).insert(access.clone(), s.clock.now() + lifetime);
    lock(&s.refresh).insert(refresh.clone());
    reply(
        StatusCode::OK,
        json!({
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": lifetime.as_secs(),
            "scope": SCOPE
        }),
    )
}

/// Counts the request in the last minute; whether it is over the limit.
fn over_rate(s: &State, now: OffsetDateTime) -> bool {
    let mut r = lock(&s.recent);
    while r
        .front()
        .is_some_and(|t| *t + Duration::from_secs(60) <= now)
    {
        r.pop_front();
    }
    r.push_back(now);
    r.len() > RATE_LIMIT
}

async fn api(req: Request<Incoming>, endpoint: &str, s: &State) -> Reply {
    let now = s.clock.now();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let index = lock(&s.stats).requests.len();
    let injected = lock(&s.faults).status_at.get(&index).copied();
    let (status, numbers, r) = if let Some(code) = injected {
        let st = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let r = match st {
            // the swagger's error shape
            StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN => reply(
                st,
                json!({"searchOptions": ["The customer has no subscription for this option."]}),
            ),
            _ => empty(st),
        };
        (st, 0, r)
    } else if over_rate(s, now) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            0,
            empty(StatusCode::SERVICE_UNAVAILABLE),
        )
    } else if !authorised(&req, s, now) {
        (StatusCode::UNAUTHORIZED, 0, empty(StatusCode::UNAUTHORIZED))
    } else {
        let (n, r) = match (req.method(), endpoint) {
            (&Method::GET, "/numbers") => (0, numbers_page(&query, s)),
            (&Method::GET, "/clearingnumbers") => {
                details(&query, "clearingnumbers", Kind::Zsr, s).await
            }
            (&Method::GET, "/employeenumbers") => {
                details(&query, "employeenumbers", Kind::K, s).await
            }
            _ => (0, empty(StatusCode::NOT_FOUND)),
        };
        (r.status(), n, r)
    };
    lock(&s.stats).requests.push(Seen {
        at: now,
        path: endpoint.to_string(),
        numbers,
        status: status.as_u16(),
    });
    r
}

fn authorised(req: &Request<Incoming>, s: &State, now: OffsetDateTime) -> bool {
    let Some(token) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return false;
    };
    lock(&s.access).get(token).is_some_and(|exp| *exp > now)
}

fn numbers_page(query: &[(String, String)], s: &State) -> Reply {
    let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str());
    if get("searchOptions").is_none_or(str::is_empty) {
        return field_error("searchOptions", "The searchOptions field is required.");
    }
    let offset: usize = match get("offset").unwrap_or("0").parse() {
        Ok(o) => o,
        Err(_) => return field_error("offset", "The value is not valid."),
    };
    let limit: usize = match get("limit").unwrap_or("10").parse() {
        Ok(l) if (1..=MAX_PAGE).contains(&l) => l,
        _ => return field_error("limit", "The limit must be between 1 and 5000."),
    };
    let since = match get("modifiedFrom") {
        None => None,
        Some(d) => {
            match Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")) {
                Ok(d) => Some(d),
                Err(_) => return field_error("modifiedFrom", "The value is not a valid date."),
            }
        }
    };
    let data = lock(&s.data);
    let matching: Vec<&String> = data
        .iter()
        .filter(|(_, e)| !e.gone && since.is_none_or(|d| e.modified >= d))
        .map(|(k, _)| k)
        .collect();
    let items: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|n| json!({"number": n}))
        .collect();
    reply(
        StatusCode::OK,
        json!({"total": matching.len(), "offset": offset, "limit": limit, "items": items}),
    )
}

async fn details(query: &[(String, String)], field: &str, kind: Kind, s: &State) -> (usize, Reply) {
    let asked: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == field)
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|x| x.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|x| !x.is_empty())
        .collect();
    if asked.is_empty() {
        return (0, field_error(field, "At least one number is required."));
    }
    if asked.len() > MAX_DETAIL_NUMBERS {
        return (
            asked.len(),
            field_error(field, "A maximum of 500 numbers is allowed per request."),
        );
    }
    for n in &asked {
        if !parse(n, RemainderZero::Z).is_ok_and(|p| p.kind == kind && p.text == *n) {
            return (
                asked.len(),
                field_error(field, &format!("'{n}' is not a valid number.")),
            );
        }
    }
    let delay = lock(&s.faults).detail_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let data = lock(&s.data);
    let records: Vec<Value> = asked
        .iter()
        .filter_map(|n| data.get(n).filter(|e| !e.gone).map(|e| e.record.clone()))
        .collect();
    (asked.len(), reply(StatusCode::OK, Value::Array(records)))
}
