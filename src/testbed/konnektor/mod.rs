//! A simulated gematik Konnektor: the SOAP operations kim-cm's Konnektor backend
//! calls (docs/konnektor.md), answered with software keys from the test PKI, so
//! that signing, encryption, decryption and verification "on the card" can be
//! tested on one machine.
//!
//! - `GET /connector.sds`: the service directory (ServiceDirectory v3.1).
//! - `POST /ws/<Service>` with the operation's SOAPAction: GetCards,
//!   ReadCardCertificate, SignDocument, VerifyDocument, EncryptDocument,
//!   DecryptDocument, GetPinStatus, ExternalAuthenticate ([`ops`]). Anything else, and every refused
//!   call, is a SOAP Fault with HTTP 500 and a `GERROR:Error` carrying the code.
//!
//! A card may hold an ECC encryption key beside its RSA one
//! ([`SimCard::ecc_encryption_pkcs12`]); EncryptDocument wraps content keys for
//! ECC certificates with the simulator's ECIES ([`ecies`]), and the service
//! directory announces versions with or without ECC support
//! ([`SimConfig::ecc`], A_17464).
//!
//! Tests that run kim-cm as a separate process steer the simulator through
//! `faults.json` in its folder, read on every request ([`Faults`]). Every request
//! envelope and every answer is kept in `requests/`, so a test can validate them
//! against the published schemas; the log has one line per call and never key
//! material or document content.

pub mod ecies;
pub mod ops;
pub mod requests;
pub mod soap;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use openssl::ssl::SslAcceptor;
use openssl::x509::store::X509Store;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::ca;
use super::pki::TestPki;
use crate::crypto::software::{read_pkcs12, KeyPair};
use crate::net::Conn;
use soap::{escape, Operation};

/// The largest request body read. Mails over 15 MiB go to the KAS (A_19357-02),
/// so the content kim-cm signs or encrypts is at most about that, 4/3 of it in
/// base64 plus the envelope; 64 MiB leaves room and bounds what one call costs.
pub const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;
/// How long a connection may idle (TLS handshake, reading a request).
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `delay_ms` of faults.json honoured, so a typo cannot hang a test
/// run for hours.
pub const MAX_DELAY: Duration = Duration::from_secs(600);
/// The simulated card terminal every card sits in.
pub const CARD_TERMINAL_ID: &str = "CT-SIM-1";
/// The folder of the request log, in the simulator's folder.
pub const REQUESTS_DIR: &str = "requests";
/// The runtime faults file, in the simulator's folder.
pub const FAULTS_FILE: &str = "faults.json";
/// The EncryptionService version of a Konnektor without ECC support (A_17464
/// asks for at least 6.1.1).
pub const ENCRYPTION_VERSION_WITHOUT_ECC: &str = "6.1.0";

type SimResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A call context the Konnektor's Infomodell allows (Mandant, client system,
/// workplace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimContext {
    pub mandant: String,
    pub client_system: String,
    pub workplace: String,
}

/// A simulated smart card with its keys as PKCS#12 files.
#[derive(Debug, Clone)]
pub struct SimCard {
    pub handle: String,
    /// 20 digits (CardServiceCommon.xsd `Iccsn`).
    pub iccsn: String,
    /// `SMC-B` or `HBA`.
    pub card_type: String,
    pub holder: String,
    /// The Mandant the card belongs to: only calls in its context see it.
    pub mandant: String,
    pub signing_pkcs12: PathBuf,
    pub encryption_pkcs12: PathBuf,
    /// The authentication key (C.AUT) for ExternalAuthenticate; a card without
    /// one refuses it.
    pub aut_pkcs12: Option<PathBuf>,
    /// The card's ECC encryption key and certificate (C.ENC_ECC, brainpoolP256r1),
    /// when it has one ([`crate::testbed::pki::ecc_encryption`]).
    pub ecc_encryption_pkcs12: Option<PathBuf>,
    pub pkcs12_password: String,
}

/// What the simulator offers.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub contexts: Vec<SimContext>,
    pub cards: Vec<SimCard>,
    /// PEM CA certificates VerifyDocument checks signer paths against.
    pub trust_ca: PathBuf,
    /// User and password every request must carry, when set (else 401).
    pub basic_auth: Option<(String, String)>,
    /// CA certificates (PEM) client certificates must chain to; when set, the TLS
    /// handshake fails without one (KOM-LE-A_2071).
    pub client_ca: Option<PathBuf>,
    /// Keep every request and answer in `requests/` (for the schema checks). The
    /// benchmark turns it off: creating two files per call is what costs most.
    pub log_requests: bool,
    /// List AuthSignatureService (ExternalAuthenticate) in the service directory;
    /// off, the simulator is a Konnektor without it (the service is optional).
    pub offer_auth_signature: bool,
    /// Whether the service directory announces a Konnektor with ECC support
    /// (A_17464: SignatureService >= 7.4.1 and EncryptionService >= 6.1.1); without
    /// it EncryptionService is 6.1.0 and EncryptDocument refuses ECC certificates.
    pub ecc: bool,
}

impl SimConfig {
    /// One context and one SMC-B per account of `pki`, handles `SMC-B-1`, ...,
    /// holder the account's address, all of the context's Mandant.
    pub fn from_pki(pki: &TestPki, password: &str, context: SimContext) -> SimConfig {
        let cards = pki
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| SimCard {
                handle: format!("SMC-B-{}", i + 1),
                iccsn: format!("80276{:015}", i + 1),
                card_type: "SMC-B".into(),
                holder: a.address.clone(),
                mandant: context.mandant.clone(),
                signing_pkcs12: a.signing_pkcs12.clone(),
                encryption_pkcs12: a.encryption_pkcs12.clone(),
                aut_pkcs12: Some(a.aut_pkcs12.clone()),
                ecc_encryption_pkcs12: None,
                pkcs12_password: password.to_string(),
            })
            .collect();
        SimConfig {
            contexts: vec![context],
            cards,
            trust_ca: pki.ca_cert.clone(),
            basic_auth: None,
            client_ca: None,
            log_requests: true,
            offer_auth_signature: true,
            ecc: true,
        }
    }
}

/// Runtime faults, from `faults.json` (every field optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Sleep this long before answering.
    pub delay_ms: u64,
    /// Cards pulled: absent from GetCards, 4008 on use.
    pub removed_cards: Vec<String>,
    /// Cards whose PIN is not verified: GetPinStatus VERIFIABLE, SignDocument and
    /// DecryptDocument refused.
    pub pin_not_verified: Vec<String>,
    /// Close every connection without an answer.
    pub down: bool,
    /// Cards whose RSA encryption key is not offered: ReadCardCertificate C.ENC
    /// with Crypt RSA answers without a certificate, DecryptDocument with Crypt RSA
    /// is refused. For a card that decrypts with its ECC key only.
    pub rsa_encryption_unavailable: Vec<String>,
}

impl Faults {
    /// The faults in `dir`; none when there is no file. A file that does not parse
    /// counts as none, with a warning.
    pub fn load(dir: &Path) -> Faults {
        let path = dir.join(FAULTS_FILE);
        match std::fs::read_to_string(&path) {
            Err(_) => Faults::default(),
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "konnektor-sim: faults file ignored");
                Faults::default()
            }),
        }
    }
}

/// A card with its keys loaded.
pub struct LoadedCard {
    pub card: SimCard,
    pub signing: KeyPair,
    pub encryption: KeyPair,
    pub aut: Option<KeyPair>,
    pub ecc_encryption: Option<KeyPair>,
}

/// The simulator's state.
pub struct KonnektorSim {
    pub config: SimConfig,
    pub cards: Vec<LoadedCard>,
    pub trust: X509Store,
    dir: PathBuf,
    /// The `https://localhost:PORT` the service directory points at.
    base_url: String,
    /// When the cards were "inserted" (xs:dateTime).
    started: String,
    seq: AtomicU64,
}

impl KonnektorSim {
    /// Loads the cards' keys and the trust anchors; state goes to `dir`.
    pub fn new(dir: &Path, config: SimConfig, base_url: &str) -> SimResult<KonnektorSim> {
        std::fs::create_dir_all(dir.join(REQUESTS_DIR))?;
        let mut cards = Vec::new();
        for c in &config.cards {
            cards.push(LoadedCard {
                signing: read_pkcs12(&c.signing_pkcs12, &c.pkcs12_password)?,
                encryption: read_pkcs12(&c.encryption_pkcs12, &c.pkcs12_password)?,
                aut: match &c.aut_pkcs12 {
                    Some(p) => Some(read_pkcs12(p, &c.pkcs12_password)?),
                    None => None,
                },
                ecc_encryption: match &c.ecc_encryption_pkcs12 {
                    Some(p) => Some(read_pkcs12(p, &c.pkcs12_password)?),
                    None => None,
                },
                card: c.clone(),
            });
        }
        let trust = crate::crypto::trust::load(Some(&config.trust_ca))?;
        Ok(KonnektorSim {
            config,
            cards,
            trust,
            dir: dir.to_path_buf(),
            base_url: base_url.trim_end_matches('/').to_string(),
            started: soap::now_rfc3339(),
            seq: AtomicU64::new(0),
        })
    }

    /// The service directory (ServiceDirectory.xsd `ConnectorServices`).
    pub fn sds(&self) -> String {
        let mut services = String::new();
        for (name, version, ns) in soap::SERVICES {
            if *name == soap::AUTH_SIGNATURE_SERVICE && !self.config.offer_auth_signature {
                continue;
            }
            let version = match *name {
                "EncryptionService" if !self.config.ecc => ENCRYPTION_VERSION_WITHOUT_ECC,
                _ => version,
            };
            services.push_str(&format!(
                "<SI:Service Name=\"{name}\"><SI:Abstract>{name}</SI:Abstract><SI:Versions>\
                 <SI:Version TargetNamespace=\"{ns}\" Version=\"{version}\"><SI:Abstract>{name} {version}</SI:Abstract>\
                 <SI:EndpointTLS Location=\"{}/ws/{name}\"/></SI:Version></SI:Versions></SI:Service>",
                escape(&self.base_url)
            ));
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SDS:ConnectorServices xmlns:SDS=\"{}\" xmlns:SI=\"{}\" xmlns:PI=\"{}\">\
             <PI:ProductInformation><PI:InformationDate>{}</PI:InformationDate>\
             <PI:ProductTypeInformation><PI:ProductType>Konnektor</PI:ProductType><PI:ProductTypeVersion>5.0.0</PI:ProductTypeVersion></PI:ProductTypeInformation>\
             <PI:ProductIdentification><PI:ProductVendorID>KIMCM</PI:ProductVendorID><PI:ProductCode>KSIM</PI:ProductCode>\
             <PI:ProductVersion><PI:Local><PI:HWVersion>1.0.0</PI:HWVersion><PI:FWVersion>{}</PI:FWVersion></PI:Local></PI:ProductVersion></PI:ProductIdentification>\
             <PI:ProductMiscellaneous><PI:ProductVendorName>kim-cm testbed</PI:ProductVendorName><PI:ProductName>Konnektor simulator (not for production)</PI:ProductName></PI:ProductMiscellaneous>\
             </PI:ProductInformation><SDS:TLSMandatory>true</SDS:TLSMandatory><SDS:ClientAutMandatory>{}</SDS:ClientAutMandatory>\
             <SI:ServiceInformation>{services}</SI:ServiceInformation></SDS:ConnectorServices>\n",
            soap::NS_SDS,
            soap::NS_SI,
            soap::NS_PI,
            self.started,
            env!("CARGO_PKG_VERSION"),
            self.config.basic_auth.is_some()
        )
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn log_file(&self, seq: u64, name: &str, data: &[u8]) {
        if !self.config.log_requests {
            return;
        }
        let path = self
            .dir
            .join(REQUESTS_DIR)
            .join(format!("{seq:06}-{name}.xml"));
        if let Err(e) = std::fs::write(&path, data) {
            tracing::warn!(file = %path.display(), error = %e, "konnektor-sim: cannot keep the request");
        }
    }

    /// Answers one SOAP call to `/ws/<service>` with `action`: (HTTP status, body).
    /// The request and the answer are kept in the request log.
    pub fn call(
        &self,
        service: &str,
        action: Option<&str>,
        body: &[u8],
        faults: &Faults,
    ) -> (StatusCode, String) {
        let seq = self.next_seq();
        let op = action.and_then(Operation::from_soap_action);
        let name = op.map(|o| o.name()).unwrap_or("Unknown");
        self.log_file(seq, name, body);
        let (status, text, card, code) = self.dispatch(service, op, body, faults);
        tracing::info!(
            operation = name,
            card = card.as_deref().unwrap_or("-"),
            result = code.map(|c| c.to_string()).as_deref().unwrap_or("OK"),
            "konnektor-sim call"
        );
        self.log_file(seq, &format!("{name}-response"), text.as_bytes());
        (status, text)
    }

    /// (status, body, card handle, code) of one call.
    fn dispatch(
        &self,
        service: &str,
        op: Option<Operation>,
        body: &[u8],
        faults: &Faults,
    ) -> (StatusCode, String, Option<String>, Option<u32>) {
        let client_fault = |text: &str| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                soap::fault_with("soap:Client", ops::SYNTAX_ERROR, text),
                None,
                Some(ops::SYNTAX_ERROR),
            )
        };
        let Some(op) = op else {
            return client_fault("unknown SOAPAction");
        };
        if op.service() != service {
            return client_fault("the SOAPAction is not an operation of this service");
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return client_fault("the request is not UTF-8");
        };
        let doc = match soap::parse(text) {
            Ok(d) => d,
            Err(e) => return client_fault(&e.0),
        };
        let req = match soap::request_element(&doc) {
            Ok(r) => r,
            Err(e) => return client_fault(&e.0),
        };
        if !soap::is(&req, op.namespace(), op.name()) {
            return client_fault("the body is not the request the SOAPAction names");
        }
        let handle = req
            .descendants()
            .find(|n| soap::is(n, soap::NS_CONN, "CardHandle"))
            .map(soap::text);
        match ops::answer(self, faults, op, req) {
            Ok(a) => (
                StatusCode::OK,
                soap::envelope(&a.body),
                a.card.or(handle),
                a.code,
            ),
            Err(r) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                soap::fault(r.code, &r.text),
                handle,
                Some(r.code),
            ),
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some((user, password)) = &self.config.basic_auth else {
            return true;
        };
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|raw| String::from_utf8(raw).ok());
        given.is_some_and(|g| g.split_once(':') == Some((user.as_str(), password.as_str())))
    }
}

fn xml_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    r
}

/// The simulator refuses to answer (faults.json `down`): the connection closes.
#[derive(Debug)]
struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the simulated Konnektor is down")
    }
}

impl std::error::Error for Down {}

async fn handle(
    sim: Arc<KonnektorSim>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Down> {
    let faults = Faults::load(&sim.dir);
    if faults.down {
        return Err(Down);
    }
    if faults.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.delay_ms).min(MAX_DELAY)).await;
    }
    if !sim.authorized(&req) {
        let mut r = xml_response(StatusCode::UNAUTHORIZED, String::new());
        r.headers_mut().insert(
            "www-authenticate",
            hyper::header::HeaderValue::from_static("Basic realm=\"Konnektor\""),
        );
        return Ok(r);
    }
    let path = req.uri().path().to_string();
    if req.method() == Method::GET && path == "/connector.sds" {
        return Ok(xml_response(StatusCode::OK, sim.sds()));
    }
    let Some(service) = path.strip_prefix("/ws/").map(str::to_string) else {
        return Ok(xml_response(StatusCode::NOT_FOUND, String::new()));
    };
    if req.method() != Method::POST {
        return Ok(xml_response(StatusCode::METHOD_NOT_ALLOWED, String::new()));
    }
    let action = req
        .headers()
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(xml_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                soap::fault_with(
                    "soap:Client",
                    ops::SYNTAX_ERROR,
                    "the request is too large or was cut off",
                ),
            ))
        }
    };
    // the cryptography is CPU work: off the async workers
    let answer =
        tokio::task::spawn_blocking(move || sim.call(&service, action.as_deref(), &body, &faults))
            .await;
    Ok(match answer {
        Ok((status, text)) => xml_response(status, text),
        Err(_) => xml_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            soap::fault(ops::SYNTAX_ERROR, "internal error"),
        ),
    })
}

/// Serves on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, acceptor: Arc<SslAcceptor>, sim: Arc<KonnektorSim>) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        // an answer is one small write after the request: without this, Nagle and
        // the peer's delayed ACK hold each SOAP answer back for ~40 ms
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
pub struct RunningSim {
    pub addr: SocketAddr,
    /// `https://localhost:PORT/connector.sds`.
    pub sds_url: String,
    /// The CA of the simulator's TLS certificate (PEM).
    pub tls_ca: PathBuf,
    /// The simulator's folder (faults.json, requests/).
    pub dir: PathBuf,
    pub sim: Arc<KonnektorSim>,
    task: JoinHandle<()>,
}

impl RunningSim {
    /// Where the request log is.
    pub fn requests_dir(&self) -> PathBuf {
        self.dir.join(REQUESTS_DIR)
    }

    /// Writes `faults.json` (an empty object clears every fault).
    pub fn set_faults(&self, json: &serde_json::Value) -> std::io::Result<()> {
        std::fs::write(self.dir.join(FAULTS_FILE), json.to_string())
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the simulator with state in `dir` on 127.0.0.1 (any free port), with a
/// TLS CA and server certificate of its own made in `dir/tls`.
pub async fn start(dir: &Path, config: SimConfig) -> SimResult<RunningSim> {
    std::fs::create_dir_all(dir)?;
    let tls = ca::make_tls_ca(&dir.join("tls"), &[])?;
    let acceptor = Arc::new(match &config.client_ca {
        // KOM-LE-A_2071: a Konnektor that authenticates its clients by certificate
        Some(ca) => {
            crate::net::tls::acceptor_requiring_client(&tls.server_cert, &tls.server_key, ca)?
        }
        None => crate::net::tls::acceptor(&tls.server_cert, &tls.server_key)?,
    });
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let base = format!("https://localhost:{}", addr.port());
    let sim = Arc::new(KonnektorSim::new(dir, config, &base)?);
    let task = tokio::spawn(serve(listener, acceptor, sim.clone()));
    Ok(RunningSim {
        addr,
        sds_url: format!("{base}/connector.sds"),
        tls_ca: tls.ca_cert,
        dir: dir.to_path_buf(),
        sim,
        task,
    })
}

#[cfg(test)]
mod ecc_tests;
#[cfg(test)]
mod tests;
