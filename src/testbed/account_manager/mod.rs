//! A simulated KIM Account Manager (AccountManager.yaml 2.4.0, base path
//! `/AccountMgmt/v2.4/`) with the ServiceInformation interface beside it
//! (ServiceInformation.yaml 1.0.3, `/ServiceInformation/v1.0/serviceinfo`), over
//! HTTPS with a certificate of the testbed CA.
//!
//! It follows the yaml rather than KIM_API.adoc where the two differ
//! (docs/kim-interfaces.md lists the differences): base64 secret headers, JSON
//! bodies with the schemas' field names, the documented statuses with the
//! `{message, traceId}` Error object, a Bearer JWT on every Account Manager
//! operation ([`bearer`]).
//!
//! Its state is [`state::STATE_FILE`] in its folder, read and written on every
//! request, so that tests can inspect and steer it; `faults.json` beside it
//! ([`Faults`], also read per request) makes it slow, answer a fixed status, or
//! find the directory unreachable. Logs name the operation and the status, never
//! a password, OTP or token.

pub mod bearer;
pub mod cert;
pub mod input;
pub mod ops;
pub mod reply;
pub mod routes;
pub mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use openssl::ssl::SslAcceptor;
use openssl::x509::store::X509Store;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::ca::{self, TlsFiles};
use crate::net::Conn;
pub use cert::Issuer;
use reply::Reply;
pub use state::{Registration, Settings, SimAccount, State};

/// The largest request body read (the schemas' strings are at most a few KiB).
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
/// How long a connection may idle (TLS handshake, reading a request).
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `delay_ms` of faults.json honoured.
pub const MAX_DELAY: Duration = Duration::from_secs(600);
/// The runtime faults file, in the simulator's folder.
pub const FAULTS_FILE: &str = "faults.json";

type SimResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Runtime faults, from `faults.json` (every field optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Sleep this long before answering.
    pub delay_ms: u64,
    /// Answer every request with this status and an Error object (500, 503, ...).
    pub status: Option<u16>,
    /// The directory (VZD) and the CMP service cannot be reached: operations whose
    /// yaml lists 502 answer it.
    pub directory_unreachable: bool,
}

impl Faults {
    /// The faults in `dir`; none without a file. A file that does not parse counts
    /// as none, with a warning.
    pub fn load(dir: &Path) -> Faults {
        let path = dir.join(FAULTS_FILE);
        match std::fs::read_to_string(&path) {
            Err(_) => Faults::default(),
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "account-manager-sim: faults file ignored");
                Faults::default()
            }),
        }
    }
}

/// How to start the simulator.
#[derive(Debug, Clone, Default)]
pub struct AmConfig {
    /// The server certificate; without one a CA and certificate are made in
    /// `dir/tls`.
    pub tls: Option<TlsFiles>,
    /// The CA createCert issues from (without one, createCert answers 500).
    pub issuer: Option<Issuer>,
    /// CA certificates (PEM) the tokens' `x5c` certificates must chain to; without
    /// them any certificate is taken.
    pub token_ca: Option<PathBuf>,
    /// The accounts as the provider set them up, and the settings: written to the
    /// state file when the folder has none yet (a kept state wins).
    pub initial: State,
}

/// The simulator's fixed parts; the changing ones are in the state file.
pub struct AccountManagerSim {
    dir: PathBuf,
    issuer: Option<Issuer>,
    token_trust: Option<X509Store>,
    /// Serialises read-modify-write of the state file.
    lock: Mutex<()>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl AccountManagerSim {
    /// Answers one request whose body has been read.
    fn call(&self, parts: &hyper::http::request::Parts, body: &[u8], faults: &Faults) -> Reply {
        if let Some(code) = faults.status {
            return Reply::error(reply::status(code), "fault injected by faults.json");
        }
        let (op, username) = match routes::route(&parts.method, parts.uri.path()) {
            Ok(r) => r,
            Err((status, why)) => return Reply::error(status, why),
        };
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = match State::load(&self.dir) {
            Ok(s) => s,
            Err(e) => return Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
        let now = now();
        let bearer = if op.needs_bearer() {
            let check = bearer::BearerCheck {
                jwt_expiration: state.settings.service_info.jwt_expiration,
                trust: self.token_trust.as_ref(),
            };
            let header = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            match check.check(header, now) {
                Ok(b) => Some(b),
                Err(why) => {
                    let r = Reply::error(StatusCode::UNAUTHORIZED, why);
                    log(op, username.as_deref(), &r);
                    return r;
                }
            }
        } else {
            None
        };
        let call = ops::Call {
            op,
            username: username.as_deref(),
            headers: &parts.headers,
            body,
            bearer: bearer.as_ref(),
            directory_unreachable: faults.directory_unreachable,
            now,
        };
        let services = ops::Services {
            issuer: self.issuer.as_ref(),
        };
        let r = ops::answer(&mut state, &services, &call);
        if let Err(e) = state.save(&self.dir) {
            return Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e);
        }
        log(op, username.as_deref(), &r);
        r
    }
}

fn log(op: routes::Operation, user: Option<&str>, r: &Reply) {
    tracing::info!(
        operation = op.name(),
        account = user.unwrap_or("-"),
        status = r.status.as_u16(),
        "account-manager-sim call"
    );
}

async fn handle(
    sim: Arc<AccountManagerSim>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let faults = Faults::load(&sim.dir);
    if faults.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.delay_ms).min(MAX_DELAY)).await;
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(Reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large or was cut off",
            )
            .into_response())
        }
    };
    // the state file and createCert's key generation are blocking work
    let answer = tokio::task::spawn_blocking(move || sim.call(&parts, &body, &faults)).await;
    Ok(answer
        .unwrap_or_else(|_| Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
        .into_response())
}

/// Serves on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, acceptor: Arc<SslAcceptor>, sim: Arc<AccountManagerSim>) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, sim) = (acceptor.clone(), sim.clone());
        tokio::spawn(async move {
            let mut conn = Conn::new(crate::net::conn::Stream::Plain(tcp), peer, TIMEOUT);
            if conn.accept_tls(&acceptor).await.is_err() {
                return;
            }
            let Some(stream) = conn.into_stream() else {
                return;
            };
            let service = hyper::service::service_fn(move |req| handle(sim.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(TIMEOUT)
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A running simulator. Dropping it stops it.
pub struct RunningAccountManager {
    pub addr: SocketAddr,
    /// `https://localhost:PORT`: the root the yaml's server URLs go under.
    pub base_url: String,
    /// The CA of the simulator's TLS certificate (PEM).
    pub tls_ca: PathBuf,
    /// The simulator's folder (state.json, faults.json).
    pub dir: PathBuf,
    task: JoinHandle<()>,
}

impl RunningAccountManager {
    /// The state as it is now.
    pub fn state(&self) -> Result<State, String> {
        State::load(&self.dir)
    }

    /// Changes the state file (between requests).
    pub fn update(&self, change: impl FnOnce(&mut State)) -> Result<(), String> {
        let mut s = State::load(&self.dir)?;
        change(&mut s);
        s.save(&self.dir)
    }

    /// Writes `faults.json` (an empty object clears every fault).
    pub fn set_faults(&self, json: &serde_json::Value) -> std::io::Result<()> {
        std::fs::write(self.dir.join(FAULTS_FILE), json.to_string())
    }
}

impl Drop for RunningAccountManager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the simulator with state in `dir` on 127.0.0.1 at `port` (0: any free
/// port).
pub async fn start(dir: &Path, port: u16, config: AmConfig) -> SimResult<RunningAccountManager> {
    std::fs::create_dir_all(dir)?;
    let tls = match config.tls {
        Some(t) => t,
        None => ca::make_tls_ca(&dir.join("tls"), &[])?,
    };
    if !dir.join(state::STATE_FILE).exists() {
        config.initial.save(dir)?;
    }
    State::load(dir)?;
    let token_trust = match &config.token_ca {
        Some(p) => Some(crate::crypto::trust::load(Some(p))?),
        None => None,
    };
    let acceptor = Arc::new(crate::net::tls::acceptor(
        &tls.server_cert,
        &tls.server_key,
    )?);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(AccountManagerSim {
        dir: dir.to_path_buf(),
        issuer: config.issuer,
        token_trust,
        lock: Mutex::new(()),
    });
    let task = tokio::spawn(serve(listener, acceptor, sim));
    Ok(RunningAccountManager {
        addr,
        base_url: format!("https://localhost:{}", addr.port()),
        tls_ca: tls.ca_cert,
        dir: dir.to_path_buf(),
        task,
    })
}
