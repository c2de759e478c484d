//! A simulated Helsenorge DigitaltAktivStatusEndringer with its token issuer,
//! over HTTPS on loopback with a certificate of the testbed CA:
//!
//! - `GET /.well-known/openid-configuration`: OIDC discovery, as HelseID has it.
//! - `POST /connect/token` (HelseID) and `POST /sts/v2/token` (Helsenorge STS
//!   v2): client credentials with a client assertion, checked as HelseID
//!   checks it: RS256 over the configured public key, `kid`, `iss` = `sub` =
//!   client id, `aud` = the endpoint or the issuer, `exp` at most 60 s after
//!   `iat`, not expired, not before `nbf`, and a `jti` never seen before.
//! - `GET /DigitaltAktiv/api/v1/DigitaltAktivStatusEndringer[?offset=…]`: the
//!   numbers changed after the offset, never older than three months, and a
//!   new offset (`yyyy-mm-ddThh:mm:ss.00000Z`). 400 for an offset that is no
//!   time, 401 without a known token, 403 `SEC-110000` for an expired one, with
//!   Helsenorge's `{"Code", "Message"}` body.
//!
//! Time comes from a [`Clock`], so tests can move it. Tests steer the
//! simulator through [`RunningHelsenorge`]: add changes, expire or revoke the
//! tokens issued so far, refuse the next calls, and read what it saw. The
//! changes it starts with can come from `changes.json` in its folder. Logs
//! name the endpoint and the status, never an assertion or a token.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::sign::Verifier;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::ca::TlsFiles;
use crate::sidecar::clock::{self, Clock};
use crate::sidecar::helsenorge::config::{DEFAULT_CHANGES_PATH, STS_V2_PATH};
use crate::sidecar::helsenorge::offset;

/// HelseID's token endpoint.
pub const TOKEN_PATH: &str = "/connect/token";
/// OIDC discovery.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// The client the simulator knows unless told otherwise.
pub const DEFAULT_CLIENT_ID: &str = "kim-cm-sandbox";
pub const DEFAULT_KID: &str = "kim-cm-sandbox-1";
/// The scope asked for (an assumption: Helsenorge's real scope name is given at
/// client registration).
pub const DEFAULT_SCOPE: &str = "helsenorge:digitaltaktiv";
/// How long a token lives unless told otherwise.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// HelseID: an assertion lives at most this long.
pub const MAX_ASSERTION_SECS: i64 = 60;
/// Clock difference allowed between client and issuer.
pub const CLOCK_SKEW_SECS: i64 = 10;
/// The largest request body read (a token request is a few KiB).
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
/// The client's private key the simulator writes for the sandbox.
pub const CLIENT_KEY_FILE: &str = "client-key.pem";
/// The changes it starts with, if the file exists: `[{"at": "...", "fnr": "..."}]`.
pub const CHANGES_FILE: &str = "changes.json";
/// The smallest step of an offset (five fractional digits).
const OFFSET_STEP: Duration = Duration::from_micros(10);

type SimResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One change: when, and whose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub at: OffsetDateTime,
    pub fnr: String,
}

/// A change as `changes.json` has it (`at` in RFC 3339 or the offset's form).
#[derive(Deserialize)]
struct ChangeEntry {
    at: String,
    fnr: String,
}

/// The one client the issuer knows.
#[derive(Clone)]
pub struct SimClient {
    pub client_id: String,
    pub kid: String,
    pub public_key: PKey<Public>,
    /// The scope a token request must ask for; None: any.
    pub scope: Option<String>,
}

/// How to start the simulator.
#[derive(Clone)]
pub struct SimSettings {
    pub client: SimClient,
    pub token_lifetime: Duration,
    pub changes: Vec<Change>,
}

/// What the simulator saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub tokens_issued: u32,
    pub token_refusals: u32,
    pub feed_calls: u32,
    /// The `offset` of every feed call that got past the token check (None:
    /// without one), as received.
    pub offsets_received: Vec<Option<String>>,
    /// The status of every feed call.
    pub feed_statuses: Vec<u16>,
    /// The offsets answered.
    pub offsets_sent: Vec<String>,
}

struct Issued {
    expires_at: OffsetDateTime,
    expired: bool,
    revoked: bool,
}

#[derive(Default)]
struct State {
    changes: Vec<Change>,
    tokens: HashMap<String, Issued>,
    /// jti → its exp, until it is past.
    jtis: HashMap<String, i64>,
    refuse_next: u32,
    next_offset: Option<String>,
    last_offset: Option<OffsetDateTime>,
    stats: Stats,
}

/// The simulator.
pub struct HelsenorgeSim {
    /// `https://localhost:PORT`: the issuer and the API's base URL.
    base: String,
    port: u16,
    client: SimClient,
    token_lifetime: Duration,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// An answer.
struct Reply {
    status: StatusCode,
    body: serde_json::Value,
}

impl Reply {
    fn json(status: StatusCode, body: serde_json::Value) -> Reply {
        Reply { status, body }
    }
    /// Helsenorge's error body.
    fn service(status: StatusCode, code: &str, message: &str) -> Reply {
        Reply::json(
            status,
            serde_json::json!({"Code": code, "Message": message}),
        )
    }
    /// OAuth's error body (RFC 6749 5.2).
    fn oauth(error: &str, description: impl Into<String>) -> Reply {
        Reply::json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": error, "error_description": description.into()}),
        )
    }
    fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::from(self.body.to_string())));
        *r.status_mut() = self.status;
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
        );
        r
    }
}

fn expired_token() -> Reply {
    Reply::service(
        StatusCode::FORBIDDEN,
        "SEC-110000",
        "Token is expired or invalid",
    )
}

/// `t` rounded up to the offset's step of 10 µs.
fn round_up(t: OffsetDateTime) -> OffsetDateTime {
    let step = OFFSET_STEP.as_nanos() as u32;
    let rest = t.nanosecond() % step;
    if rest == 0 {
        t
    } else {
        t + Duration::from_nanos(u64::from(step - rest))
    }
}

/// `claims[name]` as an integer.
fn int(claims: &serde_json::Value, name: &str) -> Result<i64, String> {
    claims[name]
        .as_i64()
        .ok_or_else(|| format!("the assertion has no numeric {name}"))
}

impl HelsenorgeSim {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn discovery(&self) -> Reply {
        Reply::json(
            StatusCode::OK,
            serde_json::json!({
                "issuer": self.base,
                "token_endpoint": format!("{}{TOKEN_PATH}", self.base),
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
            }),
        )
    }

    /// Checks a client assertion sent to `path`; its claims if it passes.
    fn check_assertion(&self, jwt: &str, path: &str) -> Result<(), String> {
        let parts: Vec<&str> = jwt.split('.').collect();
        let [h, c, s] = parts[..] else {
            return Err("the assertion is not a compact JWS".into());
        };
        let decode = |p: &str| -> Result<serde_json::Value, String> {
            let raw = URL_SAFE_NO_PAD
                .decode(p)
                .map_err(|_| "the assertion is not base64url")?;
            serde_json::from_slice(&raw).map_err(|_| "the assertion is not JSON".to_string())
        };
        let (header, claims) = (decode(h)?, decode(c)?);
        if header["alg"] != "RS256" {
            return Err(format!("alg {} is not RS256", header["alg"]));
        }
        if header["kid"] != self.client.kid.as_str() {
            return Err("unknown kid".into());
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "the signature is not base64url")?;
        let verified = Verifier::new(MessageDigest::sha256(), &self.client.public_key)
            .and_then(|mut v| {
                v.update(format!("{h}.{c}").as_bytes())?;
                v.verify(&sig)
            })
            .unwrap_or(false);
        if !verified {
            return Err("the signature does not verify with the client's key".into());
        }
        let id = self.client.client_id.as_str();
        if claims["iss"] != id || claims["sub"] != id {
            return Err("iss and sub must be the client id".into());
        }
        let audiences: Vec<String> = ["localhost", "127.0.0.1"]
            .iter()
            .flat_map(|host| {
                let root = format!("https://{host}:{}", self.port);
                [format!("{root}{path}"), root]
            })
            .collect();
        let aud_ok = match &claims["aud"] {
            serde_json::Value::String(a) => audiences.contains(a),
            serde_json::Value::Array(list) => list
                .iter()
                .any(|a| a.as_str().is_some_and(|a| audiences.iter().any(|x| x == a))),
            _ => false,
        };
        if !aud_ok {
            return Err("aud is not this token endpoint".into());
        }
        let (iat, nbf, exp) = (
            int(&claims, "iat")?,
            int(&claims, "nbf")?,
            int(&claims, "exp")?,
        );
        if exp - iat > MAX_ASSERTION_SECS {
            return Err(format!(
                "the assertion lives {} s, more than {MAX_ASSERTION_SECS} s",
                exp - iat
            ));
        }
        let now = self.clock.now().unix_timestamp();
        if exp + CLOCK_SKEW_SECS < now {
            return Err("the assertion has expired".into());
        }
        if nbf > now + CLOCK_SKEW_SECS || iat > now + CLOCK_SKEW_SECS {
            return Err("the assertion is not valid yet".into());
        }
        let jti = claims["jti"]
            .as_str()
            .filter(|j| !j.is_empty())
            .ok_or("the assertion has no jti")?;
        let mut st = self.lock();
        st.jtis.retain(|_, e| *e + CLOCK_SKEW_SECS >= now);
        if st.jtis.insert(jti.to_string(), exp).is_some() {
            return Err("the jti was used before".into());
        }
        Ok(())
    }

    fn token(&self, path: &str, body: &[u8]) -> Reply {
        let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        let field = |k: &str| form.get(k).map(String::as_str);
        let refused = |why: Reply| {
            self.lock().stats.token_refusals += 1;
            why
        };
        if field("grant_type") != Some("client_credentials") {
            return refused(Reply::oauth(
                "unsupported_grant_type",
                "only client_credentials",
            ));
        }
        if field("client_assertion_type")
            != Some(crate::sidecar::helsenorge::assertion::ASSERTION_TYPE)
        {
            return refused(Reply::oauth(
                "invalid_client",
                "client_assertion_type must be jwt-bearer",
            ));
        }
        if field("client_id").is_some_and(|c| c != self.client.client_id) {
            return refused(Reply::oauth("invalid_client", "unknown client_id"));
        }
        let Some(assertion) = field("client_assertion") else {
            return refused(Reply::oauth("invalid_client", "no client_assertion"));
        };
        if let Err(why) = self.check_assertion(assertion, path) {
            return refused(Reply::oauth("invalid_client", why));
        }
        if let Some(want) = &self.client.scope {
            if !field("scope").is_some_and(|s| s.split(' ').any(|x| x == want)) {
                return refused(Reply::oauth("invalid_scope", format!("ask for {want}")));
            }
        }
        let access = format!("hn-sim-{}", hex::encode(rand::random::<[u8; 24]>()));
        let now = self.clock.now();
        let mut st = self.lock();
        st.tokens.retain(|_, t| t.expires_at > now);
        st.tokens.insert(
            access.clone(),
            Issued {
                expires_at: now + self.token_lifetime,
                expired: false,
                revoked: false,
            },
        );
        st.stats.tokens_issued += 1;
        Reply::json(
            StatusCode::OK,
            serde_json::json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.token_lifetime.as_secs(),
                "scope": field("scope").unwrap_or_default(),
            }),
        )
    }

    fn feed(&self, parts: &hyper::http::request::Parts) -> Reply {
        let now = self.clock.now();
        let mut st = self.lock();
        st.stats.feed_calls += 1;
        let token = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string());
        let reply = (|| {
            let Some(token) = token else {
                return Reply::service(
                    StatusCode::UNAUTHORIZED,
                    "SEC-100000",
                    "Authorization header is missing",
                );
            };
            let Some(issued) = st.tokens.get(&token) else {
                return Reply::service(
                    StatusCode::UNAUTHORIZED,
                    "SEC-100001",
                    "The access token is not valid",
                );
            };
            if issued.revoked {
                return Reply::service(
                    StatusCode::UNAUTHORIZED,
                    "SEC-100001",
                    "The access token is not valid",
                );
            }
            if issued.expired || issued.expires_at <= now {
                return expired_token();
            }
            if st.refuse_next > 0 {
                st.refuse_next -= 1;
                return expired_token();
            }
            let query = parts.uri.query().unwrap_or("");
            let given = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "offset")
                .map(|(_, v)| v.into_owned());
            st.stats.offsets_received.push(given.clone());
            let after = match given.as_deref().filter(|o| !o.is_empty()) {
                None => None,
                Some(o) => match offset::parse(o) {
                    Some(t) => Some(t),
                    None => {
                        return Reply::service(
                            StatusCode::BAD_REQUEST,
                            "VAL-100000",
                            "offset must be yyyy-mm-ddThh:mm:ss.00000Z",
                        )
                    }
                },
            };
            let oldest = offset::window_start(now);
            let mut seen = HashSet::new();
            let mut latest = now.max(st.last_offset.unwrap_or(now));
            let mut fnr = Vec::new();
            for c in &st.changes {
                if c.at < oldest || after.is_some_and(|a| c.at <= a) {
                    continue;
                }
                latest = latest.max(c.at);
                if seen.insert(c.fnr.as_str()) {
                    fnr.push(c.fnr.clone());
                }
            }
            // rounded up to the offset's step, so that no change it covers
            // comes again next time
            let latest = round_up(latest);
            let new_offset = st
                .next_offset
                .take()
                .unwrap_or_else(|| offset::format(latest));
            st.last_offset = Some(latest);
            st.stats.offsets_sent.push(new_offset.clone());
            Reply::json(
                StatusCode::OK,
                serde_json::json!({"offset": new_offset, "fnr": fnr}),
            )
        })();
        st.stats.feed_statuses.push(reply.status.as_u16());
        reply
    }

    fn call(&self, parts: &hyper::http::request::Parts, body: &[u8]) -> Reply {
        let path = parts.uri.path();
        let reply = match (&parts.method, path) {
            (&Method::GET, DISCOVERY_PATH) => self.discovery(),
            (&Method::POST, TOKEN_PATH | STS_V2_PATH) => self.token(path, body),
            (&Method::GET, p) if p.eq_ignore_ascii_case(DEFAULT_CHANGES_PATH) => self.feed(parts),
            _ => Reply::service(StatusCode::NOT_FOUND, "NF-404", "no such resource"),
        };
        tracing::info!(path, status = reply.status.as_u16(), "helsenorge-sim call");
        reply
    }

    /// Adds a change of `fnr` now (later than every offset answered so far).
    pub fn add_change(&self, fnr: &str) {
        let now = self.clock.now();
        let mut st = self.lock();
        let at = match st.last_offset {
            Some(o) if o + OFFSET_STEP > now => o + OFFSET_STEP,
            _ => now,
        };
        st.changes.push(Change {
            at,
            fnr: fnr.to_string(),
        });
    }

    /// Adds a change of `fnr` at `at`.
    pub fn add_change_at(&self, at: OffsetDateTime, fnr: &str) {
        self.add_changes(vec![Change {
            at,
            fnr: fnr.to_string(),
        }]);
    }

    /// Adds many changes at once.
    pub fn add_changes(&self, changes: Vec<Change>) {
        let mut st = self.lock();
        st.changes.extend(changes);
        st.changes.sort_by_key(|c| c.at);
    }
}

async fn handle(
    sim: Arc<HelsenorgeSim>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(Reply::service(
                StatusCode::PAYLOAD_TOO_LARGE,
                "VAL-413",
                "the request body is too large",
            )
            .into_response())
        }
    };
    // signature checks are blocking work
    let answer = tokio::task::spawn_blocking(move || sim.call(&parts, &body)).await;
    Ok(answer
        .unwrap_or_else(|_| {
            Reply::service(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR-500",
                "internal error",
            )
        })
        .into_response())
}

/// A running simulator. Dropping it stops it.
pub struct RunningHelsenorge {
    pub addr: SocketAddr,
    /// `https://localhost:PORT`: the API's base URL and HelseID's authority.
    pub base_url: String,
    /// The CA of its TLS certificate (PEM).
    pub tls_ca: PathBuf,
    /// Its folder.
    pub dir: PathBuf,
    /// The client's private key, when [`start`] made it.
    pub client_key: Option<PathBuf>,
    pub client_id: String,
    pub kid: String,
    pub scope: Option<String>,
    pub sim: Arc<HelsenorgeSim>,
    task: JoinHandle<()>,
}

impl Drop for RunningHelsenorge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RunningHelsenorge {
    /// Adds a change of `fnr` now.
    pub fn add_change(&self, fnr: &str) {
        self.sim.add_change(fnr);
    }

    /// Adds a change of `fnr` at `at`.
    pub fn add_change_at(&self, at: OffsetDateTime, fnr: &str) {
        self.sim.add_change_at(at, fnr);
    }

    /// Adds many changes at once.
    pub fn add_changes(&self, changes: Vec<Change>) {
        self.sim.add_changes(changes);
    }

    /// Every token issued so far counts as expired (403 SEC-110000).
    pub fn expire_tokens(&self) {
        for t in self.sim.lock().tokens.values_mut() {
            t.expired = true;
        }
    }

    /// Every token issued so far is unknown from now on (401).
    pub fn revoke_tokens(&self) {
        for t in self.sim.lock().tokens.values_mut() {
            t.revoked = true;
        }
    }

    /// The next `n` feed calls are refused with 403 SEC-110000, whatever token.
    pub fn refuse_next(&self, n: u32) {
        self.sim.lock().refuse_next = n;
    }

    /// The next answer carries `offset` instead of one of its own.
    pub fn set_next_offset(&self, offset: &str) {
        self.sim.lock().next_offset = Some(offset.to_string());
    }

    /// What it saw so far.
    pub fn stats(&self) -> Stats {
        self.sim.lock().stats.clone()
    }

    /// The access tokens issued and still kept (for tests that look for them
    /// where they must not be).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.sim.lock().tokens.keys().cloned().collect()
    }

    /// A `[helsenorge]` section for kim-cm's config that uses this simulator
    /// with HelseID-style tokens (the client key [`start`] made).
    pub fn config_toml(&self) -> String {
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let mut s = format!(
            "[helsenorge]\nbase_url = \"{}\"\nca_file = {}\nauth = \"helseid\"\nhelseid_authority = \"{}\"\nclient_id = \"{}\"\nkey_id = \"{}\"\nsynthetic = true\n",
            self.base_url,
            q(&self.tls_ca),
            self.base_url,
            self.client_id,
            self.kid,
        );
        if let Some(k) = &self.client_key {
            s.push_str(&format!("key_file = {}\n", q(k)));
        }
        if let Some(scope) = &self.scope {
            s.push_str(&format!("scope = \"{scope}\"\n"));
        }
        s
    }
}

/// The changes in `dir/changes.json`, if there is one.
fn load_changes(dir: &Path) -> SimResult<Vec<Change>> {
    match std::fs::read_to_string(dir.join(CHANGES_FILE)) {
        Err(_) => Ok(Vec::new()),
        Ok(text) => {
            let file = dir.join(CHANGES_FILE).display().to_string();
            let entries: Vec<ChangeEntry> =
                serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
            entries
                .into_iter()
                .map(|e| match offset::parse(&e.at) {
                    Some(at) => Ok(Change { at, fnr: e.fnr }),
                    None => Err(format!("{file}: {:?} is no time", e.at).into()),
                })
                .collect()
        }
    }
}

/// Starts the simulator for the sandbox on 127.0.0.1 at `port` (0: any free
/// port) with `tls`, the wall clock, the default client (its key made in
/// `dir/client-key.pem` unless there is one) and the changes of
/// `dir/changes.json`. [`RunningHelsenorge::config_toml`] is kim-cm's section
/// for it.
pub async fn start(dir: &Path, tls: &TlsFiles, port: u16) -> SimResult<RunningHelsenorge> {
    std::fs::create_dir_all(dir)?;
    let key_path = dir.join(CLIENT_KEY_FILE);
    let key = if key_path.exists() {
        PKey::private_key_from_pem(&std::fs::read(&key_path)?)?
    } else {
        let k = PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?;
        super::ca::write_private(&key_path, &k.private_key_to_pem_pkcs8()?)?;
        k
    };
    let public_key = PKey::public_key_from_pem(&key.public_key_to_pem()?)?;
    let settings = SimSettings {
        client: SimClient {
            client_id: DEFAULT_CLIENT_ID.into(),
            kid: DEFAULT_KID.into(),
            public_key,
            scope: Some(DEFAULT_SCOPE.into()),
        },
        token_lifetime: DEFAULT_TOKEN_LIFETIME,
        changes: load_changes(dir)?,
    };
    let mut running = start_with(dir, tls, port, settings, clock::system()).await?;
    running.client_key = Some(key_path);
    Ok(running)
}

/// Starts the simulator with `settings` on `clock`.
pub async fn start_with(
    dir: &Path,
    tls: &TlsFiles,
    port: u16,
    settings: SimSettings,
    clock: Arc<dyn Clock>,
) -> SimResult<RunningHelsenorge> {
    std::fs::create_dir_all(dir)?;
    let acceptor = Arc::new(crate::net::tls::acceptor(
        &tls.server_cert,
        &tls.server_key,
    )?);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let base_url = format!("https://localhost:{}", addr.port());
    let mut changes = settings.changes;
    changes.sort_by_key(|c| c.at);
    let sim = Arc::new(HelsenorgeSim {
        base: base_url.clone(),
        port: addr.port(),
        client: settings.client.clone(),
        token_lifetime: settings.token_lifetime,
        clock,
        state: Mutex::new(State {
            changes,
            ..State::default()
        }),
    });
    let task = tokio::spawn(super::https::serve(
        listener,
        acceptor,
        sim.clone(),
        |s, req| async move { handle(s, req).await.unwrap_or_else(|e| match e {}) },
    ));
    Ok(RunningHelsenorge {
        addr,
        base_url,
        tls_ca: tls.ca_cert.clone(),
        dir: dir.to_path_buf(),
        client_key: None,
        client_id: settings.client.client_id,
        kid: settings.client.kid,
        scope: settings.client.scope,
        sim,
        task,
    })
}
