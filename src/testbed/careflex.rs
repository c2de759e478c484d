//! A simulated CareFlex incident interface (n4.de) over HTTPS on loopback with
//! a certificate of the testbed CA. It follows the vendor's SOAP page and
//! kim-cm's documented choices where the page is silent (docs/careflex.md):
//!
//! - EP1 `POST /careflex/oauth/token`: a JSON body
//!   `{"grant_type":"password","username":..,"password":..}` with
//!   `Content-Type: application/json` (else 415); the answer
//!   `{"access_token","token_type":"Bearer","expires_in":43200,"created_at"}`.
//!   Tokens look like the vendor's sample, `%§` included. A wrong user or
//!   secret: 401 `{"error":"invalid_grant"}`.
//! - EP2 `POST /careflex/soap` with `Authorization: Bearer <token>`. A missing,
//!   unknown or expired token: HTTP 401 with `WWW-Authenticate: Bearer
//!   error="invalid_token"` and a SOAP Fault (RFC 6750's answer).
//! - `NoIncidentRequest` in `http://n4.de/careflex` and `NewIncidentRequest` in
//!   `http://n4.de/careflex/2.0`, only the wrapper qualified (a qualified child
//!   is a Client fault). More than 100 incidents, none, or no
//!   `careflexId`/`apitoken`: a SOAP Fault over HTTP 500. The CareFlex ID is
//!   not checked against the API token (the vendor checks that after import).
//! - Each row is checked and answered in `incidentResponseList` with its
//!   `rowNumber`, an `incidentId` wrapped in whitespace as in the seed, and
//!   `incidentError{code 422, message}` when it is invalid (an unknown `type`
//!   gets the seed's very message).
//!
//! Time is a [`Clock`], so tests share a hand-driven one with the client.
//! Logs name the operation and the status, never a token or a body.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use roxmltree::{Document, Node};
use serde_json::json;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::ca::TlsFiles;
use crate::konnektor::xml::escape;
use crate::sidecar::careflex::input::{country_ok, date};
use crate::sidecar::careflex::soap::{NS_V1, NS_V2, SOAP_ENV};
use crate::sidecar::clock::Clock;

/// EP1.
pub const TOKEN_PATH: &str = "/careflex/oauth/token";
/// EP2.
pub const SOAP_PATH: &str = "/careflex/soap";
/// How long a token lives unless a test says otherwise (the vendor: 12 h).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(43200);
/// Incidents per request (the vendor: up to 100).
pub const MAX_INCIDENTS: usize = 100;
/// The largest request body read (a request of 100 incidents with master
/// data is about 150 KiB; more than 100 must still be read to be refused).
pub const MAX_REQUEST_BODY: usize = 8 * 1024 * 1024;
/// The incident types the simulator knows (the vendor's full list is not
/// public; these two are the seed's).
pub const KNOWN_TYPES: [&str; 2] = ["NEW", "RST"];
/// The sex values it takes.
pub const SEX_VALUES: [&str; 4] = ["m", "w", "d", "x"];
/// The message the seed shows for an unknown type.
pub const INVALID_TYPE: &str =
    "The validation failed: The content of the field 'type' is invalid with the reason: invalid value";

type SimResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The service user the simulator knows.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// The API token it hands the sandbox (any non-empty one is taken).
    pub apitoken: String,
}

/// Faults a test orders.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Tokens issued from now on live this long.
    pub token_lifetime: Option<Duration>,
    /// A SOAP call (past the token and shape checks) is answered with this
    /// fault (faultcode, faultstring) over HTTP 500, once ...
    pub fault_next: Option<(String, String)>,
    /// ... after this many calls were answered normally.
    pub fault_skip: usize,
    /// Rows of this employeeId get this error (code, message).
    pub row_errors: HashMap<String, (String, String)>,
}

/// One incident as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `plainIncident` or `newIncident`.
    pub element: String,
    pub employee_id: String,
    pub external_id: Option<String>,
    pub kind: String,
    pub valid_from: String,
    pub created_at: String,
    /// Master data fields by element name (leaves only).
    pub employee: HashMap<String, String>,
}

/// One imported `NewIncidentRequest`.
#[derive(Debug, Clone)]
pub struct Import {
    pub import_id: String,
    pub careflex_id: String,
    pub apitoken: String,
    pub incidents: Vec<Received>,
    pub refused_rows: usize,
}

/// One `NoIncidentRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoIncident {
    pub careflex_id: String,
    pub apitoken: String,
    pub created_at: String,
}

/// What the simulator saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub tokens_issued: u32,
    pub token_refusals: u32,
    /// SOAP calls refused for their token (401).
    pub bearer_refusals: u32,
    /// Every SOAP call: (operation or "?", HTTP status).
    pub calls: Vec<(String, u16)>,
    /// Incidents per `NewIncidentRequest` received, faulted ones included.
    pub batch_sizes: Vec<usize>,
    pub imports: Vec<Import>,
    pub nones: Vec<NoIncident>,
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, OffsetDateTime>,
    faults: Faults,
    stats: Stats,
}

struct Sim {
    creds: Credentials,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl Sim {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running simulator; dropping it stops it.
pub struct CareflexSim {
    pub addr: SocketAddr,
    /// `https://localhost:PORT`.
    pub base_url: String,
    /// The CA of its TLS certificate (PEM).
    pub tls_ca: PathBuf,
    sim: Arc<Sim>,
    task: JoinHandle<()>,
}

impl Drop for CareflexSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    hex::encode(b)
}

/// A random UUID (version 4).
pub fn uuid() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl CareflexSim {
    /// Starts on `listener` with TLS from `tls`, time from `clock`, knowing
    /// the service user `creds`.
    pub fn start(
        listener: TcpListener,
        tls: &TlsFiles,
        clock: Arc<dyn Clock>,
        creds: Credentials,
    ) -> SimResult<CareflexSim> {
        let acceptor = Arc::new(crate::net::tls::acceptor(
            &tls.server_cert,
            &tls.server_key,
        )?);
        let addr = listener.local_addr()?;
        let sim = Arc::new(Sim {
            creds,
            clock,
            state: Mutex::new(State::default()),
        });
        let task = tokio::spawn(super::https::serve(
            listener,
            acceptor,
            sim.clone(),
            |s, req| async move { handle(&s, req).await },
        ));
        Ok(CareflexSim {
            addr,
            base_url: format!("https://localhost:{}", addr.port()),
            tls_ca: tls.ca_cert.clone(),
            sim,
            task,
        })
    }

    /// EP1's URL.
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.base_url)
    }

    /// EP2's URL.
    pub fn service_url(&self) -> String {
        format!("{}{SOAP_PATH}", self.base_url)
    }

    /// A `[careflex]` section for kim-cm's config that uses this simulator:
    /// the service user's secret and the API token are written to
    /// `secrets_dir` (readable by the owner only); `careflex_id` is the
    /// managing company, `companies` the others.
    pub fn config_section(
        &self,
        secrets_dir: &Path,
        careflex_id: &str,
        companies: &[&str],
    ) -> std::io::Result<String> {
        std::fs::create_dir_all(secrets_dir)?;
        let password = secrets_dir.join("careflex-password");
        let apitoken = secrets_dir.join("careflex-apitoken");
        super::ca::write_private(
            &password,
            format!("{}\n", self.sim.creds.password).as_bytes(),
        )?;
        super::ca::write_private(
            &apitoken,
            format!("{}\n", self.sim.creds.apitoken).as_bytes(),
        )?;
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let list: Vec<String> = companies.iter().map(|c| format!("{c:?}")).collect();
        Ok(format!(
            "[careflex]\ntoken_url = \"{}\"\nservice_url = \"{}\"\nusername = {:?}\npassword_file = {}\napitoken_file = {}\ncareflex_id = {careflex_id:?}\ncompanies = [{}]\nca_file = {}\n",
            self.token_url(),
            self.service_url(),
            self.sim.creds.username,
            q(&password),
            q(&apitoken),
            list.join(", "),
            q(&self.tls_ca),
        ))
    }

    pub fn set_faults(&self, f: Faults) {
        self.sim.lock().faults = f;
    }

    pub fn stats(&self) -> Stats {
        self.sim.lock().stats.clone()
    }

    /// Every token issued so far is unknown from now on.
    pub fn revoke_tokens(&self) {
        self.sim.lock().tokens.clear();
    }

    /// The access tokens issued and still known (for tests that look for them
    /// where they must not be).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.sim.lock().tokens.keys().cloned().collect()
    }
}

/// Starts the simulator for the sandbox on 127.0.0.1 at `port` (0: any free
/// port) with the wall clock and `creds`; [`CareflexSim::config_section`] is
/// kim-cm's section for it.
pub async fn start(tls: &TlsFiles, port: u16, creds: Credentials) -> SimResult<CareflexSim> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    CareflexSim::start(listener, tls, crate::sidecar::clock::system(), creds)
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn json_reply(status: StatusCode, body: serde_json::Value) -> Reply {
    reply(status, "application/json", body.to_string())
}

fn soap_reply(status: StatusCode, body: &str) -> Reply {
    reply(
        status,
        "text/xml;charset=UTF-8",
        format!(
            "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"{SOAP_ENV}\"><SOAP-ENV:Header/><SOAP-ENV:Body>{body}</SOAP-ENV:Body></SOAP-ENV:Envelope>"
        ),
    )
}

/// A SOAP 1.1 Fault over HTTP 500 (`Client` or `Server`).
fn fault(code: &str, string: &str) -> Reply {
    soap_reply(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!(
            "<SOAP-ENV:Fault><faultcode>SOAP-ENV:{}</faultcode><faultstring xml:lang=\"en\">{}</faultstring></SOAP-ENV:Fault>",
            escape(code),
            escape(string)
        ),
    )
}

async fn handle(sim: &Sim, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", String::new()),
    };
    let answer = match (&parts.method, parts.uri.path()) {
        (&Method::POST, TOKEN_PATH) => token(sim, &parts, &body),
        (&Method::POST, SOAP_PATH) => soap(sim, &parts, &body),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", String::new()),
    };
    tracing::debug!(
        path = parts.uri.path(),
        status = answer.status().as_u16(),
        "CareFlex simulator"
    );
    answer
}

fn token(sim: &Sim, parts: &hyper::http::request::Parts, body: &[u8]) -> Reply {
    let refuse = |status, error: &str, description: &str| {
        sim.lock().stats.token_refusals += 1;
        json_reply(
            status,
            json!({"error": error, "error_description": description}),
        )
    };
    let json_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json_type {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "Content-Type must be application/json",
        );
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is not JSON",
        );
    };
    let f = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
    if f("grant_type") != "password" {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be password",
        );
    }
    if f("username") != sim.creds.username || f("password") != sim.creds.password {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
            "invalid service user or secret",
        );
    }
    let now = sim.clock.now();
    let mut st = sim.lock();
    let life = st.faults.token_lifetime.unwrap_or(TOKEN_LIFETIME);
    // shaped like the vendor's sample, '%§' included
    let access = format!("{}%§{}", random_hex(11), random_hex(7));
    st.tokens.insert(access.clone(), now + life);
    st.stats.tokens_issued += 1;
    json_reply(
        StatusCode::OK,
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": life.as_secs(),
            "created_at": now.unix_timestamp(),
        }),
    )
}

fn authorised(sim: &Sim, parts: &hyper::http::request::Parts) -> bool {
    let Some(v) = parts.headers.get("authorization") else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(v.as_bytes()) else {
        return false;
    };
    let Some(token) = text.strip_prefix("Bearer ") else {
        return false;
    };
    let now = sim.clock.now();
    sim.lock().tokens.get(token).is_some_and(|exp| *exp > now)
}

fn local<'a>(n: &Node<'a, '_>) -> &'a str {
    n.tag_name().name()
}

fn elements<'a, 'i>(n: &Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(Node::is_element)
}

fn child_text(n: &Node<'_, '_>, name: &str) -> Option<String> {
    elements(n)
        .find(|c| local(c) == name)
        .map(|c| c.text().unwrap_or("").trim().to_string())
        .filter(|t| !t.is_empty())
}

fn soap(sim: &Sim, parts: &hyper::http::request::Parts, body: &[u8]) -> Reply {
    if !authorised(sim, parts) {
        let mut st = sim.lock();
        st.stats.bearer_refusals += 1;
        st.stats.calls.push(("?".into(), 401));
        drop(st);
        let mut r = soap_reply(
            StatusCode::UNAUTHORIZED,
            "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>Unauthorized: the access token is missing, invalid or expired</faultstring></SOAP-ENV:Fault>",
        );
        r.headers_mut().insert(
            "www-authenticate",
            hyper::header::HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return r;
    }
    let (operation, answer) = operation(sim, body);
    sim.lock()
        .stats
        .calls
        .push((operation, answer.status().as_u16()));
    answer
}

/// The operation's name and its answer.
fn operation(sim: &Sim, body: &[u8]) -> (String, Reply) {
    let Ok(text) = std::str::from_utf8(body) else {
        return ("?".into(), fault("Client", "the request is not UTF-8"));
    };
    let Ok(doc) = Document::parse(text) else {
        return (
            "?".into(),
            fault("Client", "the request is not well-formed XML"),
        );
    };
    let env = doc.root_element();
    let body = (local(&env) == "Envelope" && env.tag_name().namespace() == Some(SOAP_ENV))
        .then(|| {
            elements(&env)
                .find(|c| local(c) == "Body" && c.tag_name().namespace() == Some(SOAP_ENV))
        })
        .flatten();
    let Some(op) = body.and_then(|b| elements(&b).next()) else {
        return (
            "?".into(),
            fault("Client", "no SOAP 1.1 envelope with a Body"),
        );
    };
    let name = local(&op).to_string();
    if let Some(bad) = op
        .descendants()
        .skip(1)
        .find(|d| d.is_element() && d.tag_name().namespace().is_some())
    {
        return (
            name,
            fault(
                "Client",
                &format!(
                    "Unmarshalling Error: unexpected element (uri:\"{}\", local:\"{}\")",
                    bad.tag_name().namespace().unwrap_or(""),
                    local(&bad)
                ),
            ),
        );
    }
    let careflex_id = child_text(&op, "careflexId");
    let apitoken = child_text(&op, "apitoken");
    let (Some(careflex_id), Some(apitoken)) = (careflex_id, apitoken) else {
        return (
            name,
            fault("Client", "careflexId and apitoken are required"),
        );
    };
    let ns = op.tag_name().namespace();
    match (ns, name.as_str()) {
        (Some(NS_V1), "NoIncidentRequest") => {
            let Some(created_at) = child_text(&op, "createdAt").filter(|d| date(d).is_some())
            else {
                return (
                    name,
                    fault("Client", "createdAt must be a date (YYYY-MM-DD)"),
                );
            };
            if let Some((c, s)) = take_fault(sim) {
                return (name, fault(&c, &s));
            }
            sim.lock().stats.nones.push(NoIncident {
                careflex_id,
                apitoken,
                created_at,
            });
            (
                name,
                soap_reply(
                    StatusCode::OK,
                    &format!("<ns3:NoIncidentResponse xmlns:ns3=\"{NS_V1}\"/>"),
                ),
            )
        }
        (Some(NS_V2), "NewIncidentRequest") => {
            let answer = new_incidents(sim, &op, careflex_id, apitoken);
            (name, answer)
        }
        _ => (
            name.clone(),
            fault(
                "Client",
                &format!(
                    "unknown operation {name} in namespace {}",
                    ns.unwrap_or("(none)")
                ),
            ),
        ),
    }
}

fn new_incidents(sim: &Sim, op: &Node<'_, '_>, careflex_id: String, apitoken: String) -> Reply {
    let list: Vec<Node<'_, '_>> = elements(op)
        .find(|c| local(c) == "incidentList")
        .map(|l| elements(&l).collect())
        .unwrap_or_default();
    sim.lock().stats.batch_sizes.push(list.len());
    if list.is_empty() {
        return fault("Client", "incidentList must hold at least one incident");
    }
    if list.len() > MAX_INCIDENTS {
        return fault(
            "Client",
            &format!(
                "The request contains {} incidents; at most {MAX_INCIDENTS} incidents are allowed per request",
                list.len()
            ),
        );
    }
    if let Some((c, s)) = take_fault(sim) {
        return fault(&c, &s);
    }
    let row_errors = sim.lock().faults.row_errors.clone();
    let import_id = uuid();
    let mut rows = String::new();
    let mut received = Vec::new();
    let mut refused = 0;
    for (i, n) in list.iter().enumerate() {
        let r = read_incident(n);
        let error = match &r {
            Err(e) => Some(("422".to_string(), e.clone())),
            Ok(inc) => row_errors.get(&inc.employee_id).cloned(),
        };
        let inc = r.unwrap_or_else(|_| Received {
            element: local(n).to_string(),
            employee_id: child_text(n, "employeeId").unwrap_or_default(),
            external_id: child_text(n, "externalId"),
            kind: child_text(n, "type").unwrap_or_default(),
            valid_from: String::new(),
            created_at: String::new(),
            employee: HashMap::new(),
        });
        rows.push_str(&format!(
            "<incident><rowNumber>{i}</rowNumber><incidentId>\n{}\n</incidentId>",
            uuid()
        ));
        if let Some(x) = &inc.external_id {
            rows.push_str(&format!("<externalId>{}</externalId>", escape(x)));
        }
        rows.push_str(&format!(
            "<employeeId>{}</employeeId><type>{}</type>",
            escape(&inc.employee_id),
            escape(&inc.kind)
        ));
        if let Some((code, message)) = error {
            refused += 1;
            rows.push_str(&format!(
                "<incidentError><code>{}</code><message>{}</message></incidentError>",
                escape(&code),
                escape(&message)
            ));
        }
        rows.push_str("</incident>");
        received.push(inc);
    }
    sim.lock().stats.imports.push(Import {
        import_id: import_id.clone(),
        careflex_id,
        apitoken,
        incidents: received,
        refused_rows: refused,
    });
    soap_reply(
        StatusCode::OK,
        &format!(
            "<ns3:NewIncidentResponse xmlns:ns3=\"{NS_V2}\">\n<importId>{import_id}</importId>\n<incidentResponseList>{rows}</incidentResponseList></ns3:NewIncidentResponse>"
        ),
    )
}

/// The ordered fault, if it is due now.
fn take_fault(sim: &Sim) -> Option<(String, String)> {
    let mut st = sim.lock();
    st.faults.fault_next.as_ref()?;
    if st.faults.fault_skip > 0 {
        st.faults.fault_skip -= 1;
        return None;
    }
    st.faults.fault_next.take()
}

fn invalid(field: &str, reason: &str) -> String {
    format!("The validation failed: The content of the field '{field}' is invalid with the reason: {reason}")
}

fn missing(field: &str) -> String {
    format!("The validation failed: The field '{field}' is required")
}

/// One incident element, checked as the simulator reads the service's rules.
fn read_incident(n: &Node<'_, '_>) -> Result<Received, String> {
    let element = local(n).to_string();
    if element != "plainIncident" && element != "newIncident" {
        return Err(invalid(
            "incidentList",
            &format!("unknown element {element}"),
        ));
    }
    let need = |k: &str| child_text(n, k).ok_or_else(|| missing(k));
    let employee_id = need("employeeId")?;
    let valid_from = need("validFrom")?;
    let created_at = need("createdAt")?;
    let kind = need("type")?;
    for (k, v) in [("validFrom", &valid_from), ("createdAt", &created_at)] {
        if date(v).is_none() {
            return Err(invalid(k, "invalid date"));
        }
    }
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        return Err(INVALID_TYPE.into());
    }
    let mut employee = HashMap::new();
    if element == "newIncident" {
        let e = elements(n)
            .find(|c| local(c) == "employee")
            .ok_or_else(|| missing("employee"))?;
        for d in e
            .descendants()
            .filter(|d| d.is_element() && elements(d).next().is_none())
        {
            employee.insert(
                local(&d).to_string(),
                d.text().unwrap_or("").trim().to_string(),
            );
        }
        for k in [
            "firstName",
            "lastName",
            "birthday",
            "sex",
            "street",
            "houseNumber",
            "zipCode",
            "city",
            "country",
            "employmentSite",
            "employmentStatus",
            "startOfEmployment",
            "personnelNumber",
            "management",
        ] {
            if employee.get(k).is_none_or(|v| v.is_empty()) {
                return Err(missing(k));
            }
        }
        for k in ["birthday", "startOfEmployment"] {
            if date(&employee[k]).is_none() {
                return Err(invalid(k, "invalid date"));
            }
        }
        if !SEX_VALUES.contains(&employee["sex"].as_str()) {
            return Err(invalid("sex", "invalid value"));
        }
        if !country_ok(&employee["country"]) {
            return Err(invalid("country", "invalid value"));
        }
        if !matches!(employee["management"].as_str(), "true" | "false") {
            return Err(invalid("management", "invalid value"));
        }
    } else if kind == "NEW" {
        return Err(missing("employee"));
    }
    Ok(Received {
        element,
        employee_id,
        external_id: child_text(n, "externalId"),
        kind,
        valid_from,
        created_at,
        employee,
    })
}
