//! The local admin page (issue 6): what an admin needs to see at a glance: the
//! accounts with their cached limits and what they sent and received since the
//! start, and whether every upstream answers. `kim-cm serve` offers it on the
//! loopback address of `[admin]`, over plain HTTP (it never leaves the machine;
//! from elsewhere it is reached through an SSH tunnel), behind its own login.
//!
//! Defences: requests whose Host is not the loopback address are refused (DNS
//! rebinding), sessions live in HttpOnly SameSite=Strict cookies, every form
//! carries the session's CSRF token, failed logins are bounded, answers are not
//! cached and may not be framed, and bodies are bounded.

pub mod account_page;
pub mod forms;
pub mod health;
pub mod page;
pub mod password;
pub mod registration;
pub mod session;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use self::account_page::AccountPage;
use self::forms::{Fields, Operation};
use self::health::{Probes, PROBE_TIMEOUT};
use self::page::{AccountRow, Dashboard};
use self::password::AdminPassword;
use self::registration::Registrations;
use self::session::{Sessions, COOKIE};
use crate::activity::Activity;
use crate::admin::ops::AdminOps;
use crate::config::Config;
use crate::limits::AccountLimit;
use crate::store::Store;

/// Bound on a form body.
pub const MAX_FORM_BODY: usize = 16 * 1024;
/// Bound on reading one request (headers and body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause after a failed login, so guessing is slow even below the bound.
const FAILED_LOGIN_PAUSE: Duration = Duration::from_millis(500);

/// What the page reads and who may see it.
pub struct AdminState {
    pub config: Arc<Config>,
    pub user: String,
    pub password: AdminPassword,
    pub sessions: Sessions,
    pub activity: Arc<Activity>,
    /// The SQLite store with the cached limits; none when kim-cm runs unsealed.
    pub store: Option<Arc<Store>>,
    pub probes: Probes,
    /// The account operations, or why the config does not allow them.
    pub ops: Result<AdminOps, String>,
    /// The registration states the operations saw.
    pub registrations: Registrations,
    /// The provider's password rules, once the Account Manager told them.
    pub password_rules: tokio::sync::OnceCell<Option<String>>,
    /// The address the page listens on (for the Host check).
    pub addr: SocketAddr,
}

/// Serves the page on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("admin page: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(req, &state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(REQUEST_TIMEOUT)
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn html(status: StatusCode, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(h);
    r
}

fn secure(h: &mut hyper::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

fn redirect(to: &'static str, cookie: Option<String>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    let h = r.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static(to));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    secure(h);
    r
}

fn plain(status: StatusCode, text: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(r.headers_mut());
    r
}

/// Whether the Host header names this loopback listener (and not a name an
/// attacker's DNS points at 127.0.0.1).
fn host_ok(req: &Request<Incoming>, addr: SocketAddr) -> bool {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let port = addr.port();
    [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(host))
}

fn session_token(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::from_cookie_header)
        .map(str::to_string)
}

/// The form fields of a bounded url-encoded body.
async fn form(req: Request<Incoming>) -> Result<Vec<(String, String)>, Reply> {
    let body = Limited::new(req.into_body(), MAX_FORM_BODY);
    let bytes = match tokio::time::timeout(REQUEST_TIMEOUT, body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return Err(plain(StatusCode::PAYLOAD_TOO_LARGE, "form too large\n")),
        Err(_) => {
            return Err(plain(
                StatusCode::REQUEST_TIMEOUT,
                "form not received in time\n",
            ))
        }
    };
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

async fn answer(req: Request<Incoming>, state: &AdminState) -> Reply {
    if !host_ok(&req, state.addr) {
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "use http://127.0.0.1:<port>/ or http://localhost:<port>/\n",
        );
    }
    let token = session_token(&req);
    let csrf = token.as_deref().and_then(|t| state.sessions.check(t));
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/login") => html(StatusCode::OK, page::login(None, "")),
        // for monitoring, without login: loopback only, no content, no secret
        (Method::GET, "/metrics") => metrics(state).await,
        (Method::GET, "/healthz") => plain(StatusCode::OK, "ok\n"),
        (Method::GET, "/readyz") => ready(state).await,
        (Method::POST, "/login") => login(req, state).await,
        (Method::GET, "/") => match csrf {
            Some(csrf) => dashboard(state, &csrf, false).await,
            None => redirect("/login", None),
        },
        (Method::GET, "/account") => match csrf {
            Some(csrf) => {
                let query = req.uri().query().unwrap_or("").to_string();
                let address = form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == "address")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                account_page(state, &csrf, &address, None).await
            }
            None => redirect("/login", None),
        },
        (Method::POST, path) if path.starts_with("/account/") => {
            let Some(op) = Operation::from_slug(&path["/account/".len()..]) else {
                return plain(StatusCode::NOT_FOUND, "not found\n");
            };
            let (Some(token), Some(_)) = (token, csrf) else {
                return redirect("/login", None);
            };
            let fields = match form(req).await {
                Ok(f) => Fields::new(f),
                Err(r) => return r,
            };
            if !state.sessions.csrf_ok(&token, fields.get("csrf")) {
                return stale_form();
            }
            let csrf = state.sessions.check(&token).unwrap_or_default();
            operation(state, &csrf, op, &fields).await
        }
        (Method::POST, path @ ("/logout" | "/health")) => {
            let path = path.to_string();
            let (Some(token), Some(_)) = (token, csrf) else {
                return redirect("/login", None);
            };
            let fields = match form(req).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            if !state.sessions.csrf_ok(&token, field(&fields, "csrf")) {
                return stale_form();
            }
            if path == "/logout" {
                state.sessions.close(&token);
                return redirect(
                    "/login",
                    Some(format!(
                        "{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"
                    )),
                );
            }
            let csrf = state.sessions.check(&token).unwrap_or_default();
            dashboard(state, &csrf, true).await
        }
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `/metrics`: the registry, the upstreams' health (as the page last probed
/// them, at most HEALTH_CACHE old) and the sidecars' cursors.
async fn metrics(state: &AdminState) -> Reply {
    let (_, health) = state.probes.check(false).await;
    let mut gauges: Vec<crate::metrics::Gauge> = health
        .iter()
        .map(|h| crate::metrics::Gauge {
            name: "kimcm_upstream_up",
            labels: vec![("service", h.name.clone()), ("target", h.target.clone())],
            value: if h.ok { 1.0 } else { 0.0 },
        })
        .collect();
    if let Some(store) = &state.store {
        for (service, name, c) in crate::sidecar::cursor::all(store).unwrap_or_default() {
            gauges.push(crate::metrics::Gauge {
                name: "kimcm_sidecar_last_success_timestamp_seconds",
                labels: vec![("sidecar", service), ("cursor", name)],
                value: c.updated.unix_timestamp() as f64,
            });
        }
    }
    let mut r = Response::new(Full::new(Bytes::from(crate::metrics::render(&gauges))));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    secure(r.headers_mut());
    r
}

/// `/readyz`: 200 when every upstream answered its last probe, else 503, with
/// one line per upstream.
async fn ready(state: &AdminState) -> Reply {
    let (_, health) = state.probes.check(false).await;
    let text: String = health
        .iter()
        .map(|h| {
            format!(
                "{} {} {}: {}\n",
                if h.ok { "up" } else { "down" },
                h.name,
                h.target,
                h.detail
            )
        })
        .collect();
    let status = if health.iter().all(|h| h.ok) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(r.headers_mut());
    r
}

fn stale_form() -> Reply {
    plain(
        StatusCode::FORBIDDEN,
        "the form is out of date: reload the page and try again\n",
    )
}

/// The configured account's address as the config spells it.
fn configured(state: &AdminState, address: &str) -> Option<String> {
    state.config.account(address).map(|a| a.address.clone())
}

/// The page of one configured account, with the answer of an operation.
async fn account_page(
    state: &AdminState,
    csrf: &str,
    address: &str,
    answer: Option<(Operation, forms::Answer)>,
) -> Reply {
    let Some(address) = configured(state, address) else {
        return plain(
            StatusCode::NOT_FOUND,
            "no such account in the config file: open it from the overview\n",
        );
    };
    let page = AccountPage {
        csrf,
        address: &address,
        registration: state.registrations.of(&address),
        password_rules: password_rules(state).await,
        answer,
        unavailable: state.ops.as_ref().err().cloned(),
    };
    html(StatusCode::OK, account_page::account(&page))
}

/// The provider's password rules in words (serviceinfo), asked once; while
/// the Account Manager does not answer, asked again at the next page view.
async fn password_rules(state: &AdminState) -> Option<String> {
    let Ok(ops) = &state.ops else { return None };
    state
        .password_rules
        .get_or_try_init(|| async {
            match tokio::time::timeout(PROBE_TIMEOUT, ops.service_info()).await {
                Ok(Ok(info)) => Ok(info.0.password_policy_display),
                _ => Err(()),
            }
        })
        .await
        .ok()
        .cloned()
        .flatten()
}

/// Runs a posted operation and shows its answer on the account's page.
async fn operation(state: &AdminState, csrf: &str, op: Operation, fields: &Fields) -> Reply {
    let Some(address) = configured(state, fields.get("account")) else {
        return plain(
            StatusCode::NOT_FOUND,
            "no such account in the config file: open it from the overview\n",
        );
    };
    let answer = match &state.ops {
        Ok(ops) => forms::run(ops, op, &address, fields, &state.registrations).await,
        Err(why) => Err(why.clone()),
    };
    match &answer {
        Ok(_) => tracing::info!(account = %address, operation = op.slug(), "admin page: done"),
        Err(why) => {
            tracing::warn!(account = %address, operation = op.slug(), "admin page: not done: {why}")
        }
    }
    account_page(state, csrf, &address, Some((op, answer))).await
}

async fn login(req: Request<Incoming>, state: &AdminState) -> Reply {
    if !state.sessions.login_allowed() {
        tracing::warn!("admin page: too many failed logins, logins paused");
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            page::login(
                Some(&format!(
                    "Too many failed logins. Wait {} seconds and try again.",
                    session::LOGIN_WINDOW.as_secs()
                )),
                "",
            ),
        );
    }
    let fields = match form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let user = field(&fields, "user");
    let password = zeroize::Zeroizing::new(field(&fields, "password").to_string());
    let verifier = state.password.clone();
    // Argon2 takes a while: off the runtime's threads
    let hash_ok = tokio::task::spawn_blocking(move || verifier.verify(&password))
        .await
        .unwrap_or(false);
    let check = hash_ok && user == state.user;
    if !check {
        state.sessions.login_failed();
        tracing::warn!("admin page: failed login");
        tokio::time::sleep(FAILED_LOGIN_PAUSE).await;
        return html(
            StatusCode::UNAUTHORIZED,
            page::login(Some("Wrong user name or password."), user),
        );
    }
    tracing::info!(user = %state.user, "admin page: logged in");
    let token = state.sessions.open();
    redirect(
        "/",
        Some(format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
        )),
    )
}

async fn dashboard(state: &AdminState, csrf: &str, fresh: bool) -> Reply {
    let (health_at, health) = state.probes.check(fresh).await;
    let accounts = state
        .config
        .account
        .iter()
        .map(|a| {
            let limits = state.store.as_ref().and_then(|s| {
                let (json, fetched) = s.account_limit(&a.address).ok()??;
                let l: AccountLimit = serde_json::from_str(&json).ok()?;
                Some((l, fetched))
            });
            AccountRow {
                address: a.address.clone(),
                keys: match &a.konnektor {
                    Some(id) => format!("smart card in Konnektor '{id}'"),
                    None if a.signing_pkcs12.is_some() => "PKCS#12 files".into(),
                    None => "none configured".into(),
                },
                limits,
                registration: state.registrations.of(&a.address),
                activity: state.activity.of(&a.address),
            }
        })
        .collect();
    let d = Dashboard {
        user: &state.user,
        csrf,
        accounts,
        health_at,
        health,
    };
    html(StatusCode::OK, page::dashboard(&d))
}
