//! A simulated Danish NSP: the SOSI STS, BRS (`treatmentRelation`) and the
//! notification service (`notificationQuery`), over HTTPS on loopback with a
//! certificate of the testbed CA, on one port:
//!
//! - `POST /sts/services/NewSecurityTokenService` (WS-Trust Issue): checks
//!   the client's card as the STS does — the enveloped XML signature
//!   (exclusive C14N) with the certificate in it, that certificate issued by
//!   the simulator's test OCES CA, `OCESCertHash` its SHA-1, a level-3
//!   system card whose CVR is the certificate's, within its validity — and
//!   answers a new card signed with the STS's own key, or a SOAP fault (with
//!   HTTP 200, as the real STS does today).
//! - `POST /brs-nsp/service/brs` and `POST /gos/service/notification`: check
//!   the DGWS header (`wsse:Security` with timestamp and card,
//!   `medcom:Header` in order, SecurityLevel 3, a MessageID not seen before),
//!   the card (signed by the STS, not expired), the timestamp (within five
//!   minutes), the CVR's whitelisting, and answer from scenario data, or with
//!   a SOAP fault carrying the `medcom:FaultCode` of the BRS guide (HTTP 500).
//!
//! A follow-up BRS orders becomes a notification once its time limit has
//! passed on the simulator's clock; tests add notifications directly too.
//! Time is a [`Clock`], so tests share a hand-driven one with the client.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509NameBuilder, X509};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::ca::TlsFiles;
use crate::sidecar::brs::c14n::El;
use crate::sidecar::brs::client::{BRS_NS, NOTIFICATION_NS, PAGE_SIZE};
use crate::sidecar::brs::dgws::{MEDCOM, SOAP, WSSE, WSU};
use crate::sidecar::brs::dsig::{self, Algorithm, SigningKey};
use crate::sidecar::brs::idcard::{self, CardFields, CardInfo, Organisation, SAML, WSA, WST};
use crate::sidecar::brs::{local_text, parse_time, utc_text};
use crate::sidecar::clock::{self, Clock};

pub const STS_PATH: &str = "/sts/services/NewSecurityTokenService";
pub const BRS_PATH: &str = "/brs-nsp/service/brs";
pub const NOTIFICATION_PATH: &str = "/gos/service/notification";
/// The STS's name in the cards it issues.
pub const STS_ISSUER: &str = "TEST1-NSP-STS";
/// Cards live this long unless told otherwise (SOSI's maximum).
pub const CARD_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A message's timestamp may be this far from the simulator's time.
pub const TIMESTAMP_SKEW: Duration = Duration::from_secs(5 * 60);
/// The seed's CVR, whitelisted by [`start`].
pub const DEFAULT_CVR: &str = "31908574";
pub const DEFAULT_ORG: &str = "Lægehuset Testby";
/// The largest request read.
pub const MAX_REQUEST: usize = 1024 * 1024;
/// Files [`make_org_certificate`] writes.
pub const OCES_CA_FILE: &str = "oces-ca.pem";
pub const ORG_CERT_FILE: &str = "org.pem";
pub const ORG_KEY_FILE: &str = "org.key";

type SimResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The test OCES CA and an organisation certificate of it.
#[derive(Debug, Clone)]
pub struct OrgFiles {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn serial() -> SimResult<openssl::asn1::Asn1Integer> {
    let mut bn = BigNum::new()?;
    bn.rand(120, MsbOption::MAYBE_ZERO, false)?;
    Ok(bn.to_asn1_integer()?)
}

/// Makes a test OCES CA and a VOCES/FOCES stand-in for `cvr` in `dir`
/// (RSA 2048; subject `O=<org> // CVR:<cvr>` and `serialNumber=CVR:<cvr>-UID:…`
/// as OCES has them). Not for anything but tests and the sandbox.
pub fn make_org_certificate(dir: &Path, cvr: &str, org: &str) -> SimResult<OrgFiles> {
    std::fs::create_dir_all(dir)?;
    let ca_key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?;
    let mut n = X509NameBuilder::new()?;
    n.append_entry_by_nid(Nid::COUNTRYNAME, "DK")?;
    n.append_entry_by_nid(Nid::COMMONNAME, "kim-cm test OCES CA (not for production)")?;
    let ca_name = n.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    b.set_serial_number(serial()?.as_ref())?;
    b.set_subject_name(&ca_name)?;
    b.set_issuer_name(&ca_name)?;
    b.set_pubkey(&ca_key)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(3650)?.as_ref())?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    b.sign(&ca_key, MessageDigest::sha256())?;
    let ca = b.build();

    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?;
    let mut n = X509NameBuilder::new()?;
    n.append_entry_by_nid(Nid::COUNTRYNAME, "DK")?;
    n.append_entry_by_nid(Nid::ORGANIZATIONNAME, &format!("{org} // CVR:{cvr}"))?;
    n.append_entry_by_nid(Nid::COMMONNAME, "kim-cm test system")?;
    n.append_entry_by_nid(Nid::SERIALNUMBER, &format!("CVR:{cvr}-UID:1234567890"))?;
    let subject = n.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    b.set_serial_number(serial()?.as_ref())?;
    b.set_subject_name(&subject)?;
    b.set_issuer_name(ca.subject_name())?;
    b.set_pubkey(&key)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(730)?.as_ref())?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .non_repudiation()
            .key_encipherment()
            .build()?,
    )?;
    b.sign(&ca_key, MessageDigest::sha256())?;
    let cert = b.build();
    let files = OrgFiles {
        ca_cert: dir.join(OCES_CA_FILE),
        cert: dir.join(ORG_CERT_FILE),
        key: dir.join(ORG_KEY_FILE),
    };
    std::fs::write(&files.ca_cert, ca.to_pem()?)?;
    std::fs::write(&files.cert, cert.to_pem()?)?;
    super::ca::write_private(&files.key, &key.private_key_to_pem_pkcs8()?)?;
    Ok(files)
}

/// The STS's own key and a self-signed certificate (the federation certificate's stand-in).
fn make_sts_key() -> SimResult<SigningKey> {
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?;
    let mut n = X509NameBuilder::new()?;
    n.append_entry_by_nid(Nid::COMMONNAME, "kim-cm test SOSI STS (not for production)")?;
    let name = n.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    b.set_serial_number(serial()?.as_ref())?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(3650)?.as_ref())?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok(SigningKey::new(key, b.build(), Algorithm::RsaSha1)?)
}

/// A notification the service holds.
#[derive(Debug, Clone)]
pub struct SimNotification {
    pub serial: i64,
    pub queryable_cvr: String,
    /// Delivered from this time on.
    pub due: OffsetDateTime,
    pub external_reference_id: String,
    pub unique_id: String,
    pub org_element: String,
    pub org_value: String,
    pub patient_cpr: String,
    pub professional_cpr: String,
    pub time_limit: OffsetDateTime,
    pub acceptable: Vec<String>,
    pub actual: Vec<String>,
}

/// What the simulator saw, for tests.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Cards issued by the STS.
    pub cards_issued: u32,
    /// STS requests refused, with why.
    pub sts_refusals: Vec<String>,
    pub brs_calls: u32,
    /// The SerialNumber of each notificationQuery.
    pub notification_queries: Vec<i64>,
    /// Every fault code sent by BRS and the notification service.
    pub faults: Vec<String>,
    /// Every card the STS issued, as sent.
    pub issued_cards: Vec<String>,
    /// The last service request's envelope, as received.
    pub last_envelope: String,
}

/// What a test sets up.
pub struct NspSettings {
    /// Whitelisted CVRs.
    pub whitelist: HashSet<String>,
    pub card_lifetime: Duration,
    /// (patient, professional) → the relations BRS finds; none when absent.
    pub relations: HashMap<(String, String), Vec<String>>,
    /// The first serial number given to a notification.
    pub first_serial: i64,
}

impl Default for NspSettings {
    fn default() -> Self {
        NspSettings {
            whitelist: [DEFAULT_CVR.to_string()].into(),
            card_lifetime: CARD_LIFETIME,
            relations: HashMap::new(),
            first_serial: 1000,
        }
    }
}

struct State {
    notifications: BTreeMap<i64, SimNotification>,
    next_serial: i64,
    seen_messages: HashSet<String>,
    /// Faults to send instead of the next answers: (service path, code).
    forced: VecDeque<(String, String)>,
    stats: Stats,
    whitelist: HashSet<String>,
    relations: HashMap<(String, String), Vec<String>>,
    card_lifetime: Duration,
    /// Cards issued from now on claim to be expired already.
    issue_expired: bool,
}

struct Sim {
    clock: Arc<dyn Clock>,
    sts: SigningKey,
    oces_ca: X509,
    state: Mutex<State>,
}

impl Sim {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running simulator; dropping it stops it.
pub struct RunningNsp {
    pub addr: SocketAddr,
    pub base_url: String,
    pub tls_ca: PathBuf,
    pub org: OrgFiles,
    pub cvr: String,
    sim: Arc<Sim>,
    task: JoinHandle<()>,
}

impl Drop for RunningNsp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RunningNsp {
    /// A `[brs]` section for kim-cm's config that uses this simulator.
    pub fn config_toml(&self) -> String {
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        format!(
            "[brs]\nsts_url = \"{b}{STS_PATH}\"\nbrs_url = \"{b}{BRS_PATH}\"\nnotification_url = \"{b}{NOTIFICATION_PATH}\"\n\
             ca_file = {}\ncertificate_file = {}\nkey_file = {}\ncvr = \"{}\"\norganisation_name = \"{DEFAULT_ORG}\"\n",
            q(&self.tls_ca),
            q(&self.org.cert),
            q(&self.org.key),
            self.cvr,
            b = self.base_url,
        )
    }

    /// Writes the STS's certificate to `path` (for `sts_certificate_file`).
    pub fn write_sts_certificate(&self, path: &Path) -> SimResult<()> {
        std::fs::write(path, self.sim.sts.cert.to_pem()?)?;
        Ok(())
    }

    /// The STS's certificate (what a service trusts cards by).
    pub fn sts_certificate(&self) -> X509 {
        self.sim.sts.cert.clone()
    }

    pub fn stats(&self) -> Stats {
        self.sim.lock().stats.clone()
    }

    /// Answers the next call of `path` (BRS_PATH or NOTIFICATION_PATH) with
    /// the fault `code`, `times` times (after the header checks).
    pub fn fail_next(&self, path: &str, code: &str, times: usize) {
        let mut s = self.sim.lock();
        for _ in 0..times {
            s.forced.push_back((path.to_string(), code.to_string()));
        }
    }

    /// Takes `cvr` off the whitelist (or puts it on).
    pub fn whitelist(&self, cvr: &str, on: bool) {
        let mut s = self.sim.lock();
        if on {
            s.whitelist.insert(cvr.to_string());
        } else {
            s.whitelist.remove(cvr);
        }
    }

    /// Cards issued from now on live `d`.
    pub fn set_card_lifetime(&self, d: Duration) {
        self.sim.lock().card_lifetime = d;
    }

    /// Cards issued from now on are expired already (a broken STS clock).
    pub fn issue_expired_cards(&self, on: bool) {
        self.sim.lock().issue_expired = on;
    }

    /// The relations BRS finds for a patient and a professional.
    pub fn set_relations(&self, patient: &str, professional: &str, relations: &[&str]) {
        self.sim.lock().relations.insert(
            (patient.into(), professional.into()),
            relations.iter().map(|r| r.to_string()).collect(),
        );
    }

    /// Adds `n` notifications for `cvr`, due now; their serial numbers.
    pub fn add_notifications(&self, n: usize, cvr: &str) -> Vec<i64> {
        let now = self.sim.clock.now();
        let mut s = self.sim.lock();
        (0..n)
            .map(|i| {
                let serial = s.next_serial;
                s.next_serial += 1;
                s.notifications.insert(
                    serial,
                    SimNotification {
                        serial,
                        queryable_cvr: cvr.into(),
                        due: now,
                        external_reference_id: format!("ext-{serial}"),
                        unique_id: crate::sidecar::brs::new_uuid(),
                        org_element: "DoctorOrganisationIdentifier".into(),
                        org_value: "132435".into(),
                        patient_cpr: "0101601951".into(),
                        professional_cpr: "0101601803".into(),
                        time_limit: now,
                        acceptable: vec!["A".into(), "B".into()],
                        actual: vec![if i % 2 == 0 { "C" } else { "D" }.into()],
                    },
                );
                serial
            })
            .collect()
    }

    /// Serial numbers of every notification held.
    pub fn notification_serials(&self) -> Vec<i64> {
        self.sim.lock().notifications.keys().copied().collect()
    }
}

/// Starts the simulator for the sandbox on 127.0.0.1 at `port` (0: any free
/// port) with `tls`, the wall clock, the seed's CVR whitelisted with its
/// organisation certificate made in `dir` (kept when there), and the seed's
/// patient and professional related by `C`. [`RunningNsp::config_toml`] is
/// kim-cm's section for it.
pub async fn start(dir: &Path, tls: &TlsFiles, port: u16) -> SimResult<RunningNsp> {
    let org = if dir.join(ORG_KEY_FILE).exists() {
        OrgFiles {
            ca_cert: dir.join(OCES_CA_FILE),
            cert: dir.join(ORG_CERT_FILE),
            key: dir.join(ORG_KEY_FILE),
        }
    } else {
        make_org_certificate(dir, DEFAULT_CVR, DEFAULT_ORG)?
    };
    let mut settings = NspSettings::default();
    settings
        .relations
        .insert(("0101601951".into(), "0101601803".into()), vec!["C".into()]);
    start_with(tls, port, &org, DEFAULT_CVR, settings, clock::system()).await
}

/// Starts the simulator trusting `org`'s OCES CA, with `settings`, on `clock`.
pub async fn start_with(
    tls: &TlsFiles,
    port: u16,
    org: &OrgFiles,
    cvr: &str,
    settings: NspSettings,
    clock: Arc<dyn Clock>,
) -> SimResult<RunningNsp> {
    let acceptor = Arc::new(crate::net::tls::acceptor(
        &tls.server_cert,
        &tls.server_key,
    )?);
    let oces_ca = X509::from_pem(&std::fs::read(&org.ca_cert)?)?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(Sim {
        clock,
        sts: make_sts_key()?,
        oces_ca,
        state: Mutex::new(State {
            notifications: BTreeMap::new(),
            next_serial: settings.first_serial,
            seen_messages: HashSet::new(),
            forced: VecDeque::new(),
            stats: Stats::default(),
            whitelist: settings.whitelist,
            relations: settings.relations,
            card_lifetime: settings.card_lifetime,
            issue_expired: false,
        }),
    });
    let task = tokio::spawn(super::https::serve(
        listener,
        acceptor,
        sim.clone(),
        |s, req| async move { answer(req, &s).await },
    ));
    Ok(RunningNsp {
        addr,
        base_url: format!("https://localhost:{}", addr.port()),
        tls_ca: tls.ca_cert.clone(),
        org: org.clone(),
        cvr: cvr.to_string(),
        sim,
        task,
    })
}

type Reply = Response<Full<Bytes>>;

fn xml_reply(status: StatusCode, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    r
}

fn soap(header: Vec<El>, body: El) -> String {
    crate::sidecar::brs::dgws::envelope(header, body)
}

/// A SOAP fault; with a DGWS code in `detail` when `code` is given.
fn fault(status: StatusCode, code: Option<&str>, text: &str) -> Reply {
    let mut f = El::new("soapenv", SOAP, "Fault")
        .child(El::new("", "", "faultcode").text("soapenv:Server"))
        .child(El::new("", "", "faultstring").text(text));
    if let Some(c) = code {
        f.push(El::new("", "", "detail").child(El::new("medcom", MEDCOM, "FaultCode").text(c)));
    }
    xml_reply(status, soap(Vec::new(), f))
}

async fn answer(req: Request<Incoming>, sim: &Sim) -> Reply {
    let path = req.uri().path().to_string();
    if req.method() != Method::POST {
        return xml_reply(StatusCode::METHOD_NOT_ALLOWED, String::new());
    }
    let Ok(body) = Limited::new(req.into_body(), MAX_REQUEST).collect().await else {
        return fault(StatusCode::INTERNAL_SERVER_ERROR, None, "request too large");
    };
    let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    match path.as_str() {
        STS_PATH => sts(&text, sim),
        BRS_PATH | NOTIFICATION_PATH => service(&path, &text, sim),
        _ => xml_reply(StatusCode::NOT_FOUND, String::new()),
    }
}

fn by_name<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    ns: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    n.descendants()
        .find(|c| c.tag_name().name() == name && c.tag_name().namespace() == Some(ns))
}

fn sts_refuse(sim: &Sim, why: &str) -> Reply {
    sim.lock().stats.sts_refusals.push(why.to_string());
    // the STS answers faults with HTTP 200 today (trifork/unsealed)
    fault(StatusCode::OK, None, why)
}

fn sts(text: &str, sim: &Sim) -> Reply {
    let now = sim.clock.now();
    let Ok(doc) = roxmltree::Document::parse(text) else {
        return sts_refuse(sim, "the request is not XML");
    };
    let Some(rst) = by_name(doc.root(), WST, "RequestSecurityToken") else {
        return sts_refuse(sim, "no wst:RequestSecurityToken");
    };
    let Some(card) = by_name(rst, WST, "Claims").and_then(|c| by_name(c, SAML, "Assertion")) else {
        return sts_refuse(sim, "no ID card in wst:Claims");
    };
    let signer = match dsig::verify_enveloped(&doc, idcard::CARD_ID) {
        Ok(c) => c,
        Err(e) => return sts_refuse(sim, &format!("Signature could not be validated: {e}")),
    };
    let Ok(ca_key) = sim.oces_ca.public_key() else {
        return sts_refuse(sim, "no CA key");
    };
    if !signer.verify(&ca_key).unwrap_or(false) {
        return sts_refuse(sim, "the certificate is not issued by a trusted OCES CA");
    }
    let info = match CardInfo::read(card) {
        Ok(i) => i,
        Err(e) => return sts_refuse(sim, &e),
    };
    if info.cert_hash != idcard::cert_hash(&signer.to_der().unwrap_or_default()) {
        return sts_refuse(
            sim,
            "OCESCertHash is not the hash of the signing certificate",
        );
    }
    if info.card_type != "system" || info.level != "3" {
        return sts_refuse(sim, "only level-3 system cards are issued here");
    }
    let cert_cvr = crate::sidecar::brs::config::cvr_of_certificate(&signer);
    if cert_cvr.as_deref() != Some(info.cvr.as_str()) || info.care_provider != info.cvr {
        return sts_refuse(sim, "the card's CVR is not the certificate's");
    }
    if info.not_before > now + TIMESTAMP_SKEW || info.not_on_or_after <= now {
        return sts_refuse(sim, "the card is not valid now");
    }
    let (lifetime, expired) = {
        let s = sim.lock();
        (s.card_lifetime, s.issue_expired)
    };
    let (not_before, not_on_or_after) = if expired {
        (
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
        )
    } else {
        (now - idcard::BACKDATE, now + lifetime)
    };
    let fields = CardFields {
        org: Organisation {
            cvr: info.cvr.clone(),
            name: info.care_provider_name.clone(),
            it_system: info.it_system.clone(),
        },
        card_id: crate::sidecar::brs::new_uuid(),
        issuer: STS_ISSUER.into(),
        issued: now,
        not_before,
        not_on_or_after,
        cert_hash: info.cert_hash.clone(),
    };
    let issued = match idcard::sign_card(&fields, &sim.sts) {
        Ok(c) => c,
        Err(e) => return sts_refuse(sim, &e),
    };
    {
        let mut s = sim.lock();
        s.stats.cards_issued += 1;
        s.stats.issued_cards.push(issued.clone());
    }
    let wst = |n: &str| El::new("wst", WST, n);
    let body =
        wst("RequestSecurityTokenResponse")
            .attr("Context", "www.sosi.dk")
            .child(wst("TokenType").text("urn:oasis:names:tc:SAML:2.0:assertion:"))
            .child(wst("RequestedSecurityToken").raw(&issued))
            .child(wst("Status").child(
                wst("Code").text("http://schemas.xmlsoap.org/ws/2005/02/trust/status/valid"),
            ))
            .child(wst("Issuer").child(El::new("wsa", WSA, "Address").text(STS_ISSUER)))
            .child(
                wst("Lifetime")
                    .child(El::new("wsu", WSU, "Created").text(&utc_text(not_before)))
                    .child(El::new("wsu", WSU, "Expires").text(&utc_text(not_on_or_after))),
            );
    xml_reply(
        StatusCode::OK,
        soap(vec![crate::sidecar::brs::dgws::security(now, None)], body),
    )
}

fn dgws_fault(sim: &Sim, code: &str, text: &str) -> Reply {
    sim.lock().stats.faults.push(code.to_string());
    fault(StatusCode::INTERNAL_SERVER_ERROR, Some(code), text)
}

/// The element children's local names of `n`.
fn child_names(n: roxmltree::Node<'_, '_>) -> Vec<String> {
    n.children()
        .filter(|c| c.is_element())
        .map(|c| c.tag_name().name().to_string())
        .collect()
}

fn service(path: &str, text: &str, sim: &Sim) -> Reply {
    let now = sim.clock.now();
    sim.lock().stats.last_envelope = text.to_string();
    let Ok(doc) = roxmltree::Document::parse(text) else {
        return dgws_fault(sim, "processing_problem", "the request is not XML");
    };
    let header = by_name(doc.root(), SOAP, "Header");
    let security = header.and_then(|h| by_name(h, WSSE, "Security"));
    let created = security
        .and_then(|s| by_name(s, WSU, "Timestamp"))
        .and_then(|t| by_name(t, WSU, "Created"))
        .and_then(|c| c.text())
        .and_then(parse_time);
    let card = security.and_then(|s| by_name(s, SAML, "Assertion"));
    let medcom = header.and_then(|h| by_name(h, MEDCOM, "Header"));
    let (Some(created), Some(card), Some(medcom)) = (created, card, medcom) else {
        return dgws_fault(
            sim,
            "missing_required_header",
            "wsse:Security with a timestamp and an ID card, and medcom:Header, are required",
        );
    };
    // medcom.xsd's sequence
    let order = child_names(medcom);
    let rank = |n: &str| {
        [
            "SecurityLevel",
            "TimeOut",
            "Linking",
            "FlowStatus",
            "Priority",
            "RequireNonRepudiationReceipt",
        ]
        .iter()
        .position(|x| *x == n)
    };
    let ranks: Vec<Option<usize>> = order.iter().map(|n| rank(n)).collect();
    if ranks.iter().any(Option::is_none) || ranks.windows(2).any(|w| w[0] >= w[1]) {
        return dgws_fault(
            sim,
            "processing_problem",
            "medcom:Header is not in the schema's order",
        );
    }
    let level = by_name(medcom, MEDCOM, "SecurityLevel").and_then(|l| l.text());
    let message_id = by_name(medcom, MEDCOM, "Linking")
        .and_then(|l| by_name(l, MEDCOM, "MessageID"))
        .and_then(|m| m.text())
        .map(str::to_string);
    let Some(message_id) = message_id else {
        return dgws_fault(
            sim,
            "missing_required_header",
            "medcom:Linking/MessageID is required",
        );
    };
    if level.map(str::trim) != Some("3") {
        return dgws_fault(
            sim,
            "security_level_failed",
            "the service requires security level 3",
        );
    }
    let signer = match dsig::verify_enveloped(&doc, idcard::CARD_ID) {
        Ok(c) => c,
        Err(e) => return dgws_fault(sim, "invalid_idcard", &format!("ID card signature: {e}")),
    };
    if signer.to_der().ok() != sim.sts.cert.to_der().ok() {
        return dgws_fault(
            sim,
            "invalid_idcard",
            "the ID card is not issued by the SOSI STS",
        );
    }
    let info = match CardInfo::read(card) {
        Ok(i) => i,
        Err(e) => return dgws_fault(sim, "invalid_idcard", &e),
    };
    if info.level != "3" {
        return dgws_fault(
            sim,
            "security_level_failed",
            "the ID card is not of level 3",
        );
    }
    if info.not_on_or_after <= now || info.not_before > now + TIMESTAMP_SKEW {
        return dgws_fault(sim, "expired_idcard", "Id-kortet er udløbet");
    }
    if created > now + TIMESTAMP_SKEW || created + TIMESTAMP_SKEW < now {
        return dgws_fault(
            sim,
            "processing_problem",
            "the message timestamp is more than 5 minutes off",
        );
    }
    if !sim.lock().whitelist.contains(&info.cvr) {
        return dgws_fault(
            sim,
            "not_authorized",
            &format!("CVR {} er ikke whitelistet", info.cvr),
        );
    }
    if !sim.lock().seen_messages.insert(message_id.clone()) {
        return dgws_fault(sim, "processing_problem", "MessageID has been used before");
    }
    let forced = {
        let mut s = sim.lock();
        match s.forced.iter().position(|(p, _)| p == path) {
            Some(i) => s.forced.remove(i).map(|(_, c)| c),
            None => None,
        }
    };
    if let Some(code) = forced {
        return dgws_fault(sim, &code, "a fault the test ordered");
    }
    let Some(body) = by_name(doc.root(), SOAP, "Body").and_then(|b| b.first_element_child()) else {
        return dgws_fault(sim, "processing_problem", "the body is empty");
    };
    let reply_body = if path == BRS_PATH {
        brs_answer(body, &info, sim, now)
    } else {
        notification_answer(body, &info, sim, now)
    };
    match reply_body {
        Err(why) => dgws_fault(sim, "processing_problem", &why),
        Ok(b) => {
            let m = |n: &str| El::new("medcom", MEDCOM, n);
            let header = m("Header")
                .child(m("SecurityLevel").text("3"))
                .child(
                    m("Linking")
                        .child(m("MessageID").text(&crate::sidecar::brs::new_uuid()))
                        .child(m("InResponseToMessageID").text(&message_id)),
                )
                .child(m("FlowStatus").text("flow_finalized_succesfully"));
            xml_reply(
                StatusCode::OK,
                soap(
                    vec![crate::sidecar::brs::dgws::security(now, None), header],
                    b,
                ),
            )
        }
    }
}

fn text_in(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
}

fn list_in(n: roxmltree::Node<'_, '_>, name: &str) -> Vec<String> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
        .map(|l| {
            l.children()
                .filter(|c| c.is_element())
                .filter_map(|c| c.text().map(|t| t.trim().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The guide's format: `+hh:mm`, no `Z`, no fraction.
fn guide_time(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    let ok = b.len() == 25 && (b[19] == b'+' || b[19] == b'-') && b[22] == b':';
    ok.then(|| parse_time(s)).flatten()
}

fn brs_answer(
    body: roxmltree::Node<'_, '_>,
    card: &CardInfo,
    sim: &Sim,
    now: OffsetDateTime,
) -> Result<El, String> {
    if body.tag_name().name() != "treatmentRelationRequestBody"
        || body.tag_name().namespace() != Some(BRS_NS)
    {
        return Err("expected treatmentRelationRequestBody".into());
    }
    let names = child_names(body);
    let expected = [
        "OrganisationIdentifier",
        "PatientCpr",
        "HealthProfessionalCpr",
        "RelationLookupTimeInterval",
        "TimeLimit",
        "ExternalReferenceId",
        "QueryableCvr",
        "AcceptableRelations",
        "FollowupRelations",
        "AuthorisationIdentifier",
        "ServiceProvider",
    ];
    if names != expected {
        return Err(format!(
            "the request's elements are not the schema's sequence: {names:?}"
        ));
    }
    let org = body
        .children()
        .find(|c| c.tag_name().name() == "OrganisationIdentifier")
        .and_then(|o| o.first_element_child())
        .ok_or("OrganisationIdentifier is empty")?;
    let patient = text_in(body, "PatientCpr").unwrap_or_default();
    let professional = text_in(body, "HealthProfessionalCpr").unwrap_or_default();
    for c in [&patient, &professional] {
        crate::sidecar::brs::ids::cpr(c)?;
    }
    let interval = body
        .children()
        .find(|c| c.tag_name().name() == "RelationLookupTimeInterval")
        .ok_or("no interval")?;
    for t in [
        text_in(interval, "start"),
        text_in(interval, "end"),
        text_in(body, "TimeLimit"),
    ] {
        guide_time(t.as_deref().unwrap_or(""))
            .ok_or("a timestamp is not YYYY-MM-DDThh:mm:ss+hh:mm")?;
    }
    let time_limit =
        guide_time(&text_in(body, "TimeLimit").unwrap_or_default()).ok_or("TimeLimit")?;
    let queryable = text_in(body, "QueryableCvr").unwrap_or_default();
    crate::sidecar::brs::ids::cvr(&queryable)?;
    let acceptable = list_in(body, "AcceptableRelations");
    let followup = list_in(body, "FollowupRelations");
    let all = body
        .children()
        .find(|c| c.tag_name().name() == "FollowupRelations")
        .is_some_and(|f| f.children().any(|c| c.tag_name().name() == "All"));
    let mut s = sim.lock();
    s.stats.brs_calls += 1;
    let actual = s
        .relations
        .get(&(patient.clone(), professional.clone()))
        .cloned()
        .unwrap_or_default();
    let sufficient = actual.iter().any(|a| acceptable.contains(a));
    let followup_ordered = !sufficient && (all || actual.iter().any(|a| followup.contains(a)));
    let unique = crate::sidecar::brs::new_uuid();
    let external = text_in(body, "ExternalReferenceId")
        .filter(|e| !e.is_empty())
        .unwrap_or_else(crate::sidecar::brs::new_uuid);
    if followup_ordered {
        let serial = s.next_serial;
        s.next_serial += 1;
        s.notifications.insert(
            serial,
            SimNotification {
                serial,
                queryable_cvr: queryable,
                due: time_limit,
                external_reference_id: external.clone(),
                unique_id: unique.clone(),
                org_element: org.tag_name().name().to_string(),
                org_value: org.text().unwrap_or("").trim().to_string(),
                patient_cpr: patient,
                professional_cpr: professional,
                time_limit,
                acceptable,
                actual: actual.clone(),
            },
        );
    }
    let _ = (card, now);
    let b = |n: &str| El::new("ns6", BRS_NS, n);
    let mut rel = b("ActualRelations");
    for a in &actual {
        rel.push(b("Relation").text(a));
    }
    Ok(b("treatmentRelationResponseBody")
        .child(b("SufficientRelation").text(if sufficient { "true" } else { "false" }))
        .child(rel)
        .child(b("FollowupOrdered").text(if followup_ordered { "true" } else { "false" }))
        .child(b("UniqueReferenceId").text(&unique))
        .child(b("ExternalReferenceId").text(&external)))
}

fn notification_answer(
    body: roxmltree::Node<'_, '_>,
    card: &CardInfo,
    sim: &Sim,
    now: OffsetDateTime,
) -> Result<El, String> {
    if body.tag_name().name() != "NotificationQueryRequestBody"
        || body.tag_name().namespace() != Some(NOTIFICATION_NS)
    {
        return Err("expected NotificationQueryRequestBody".into());
    }
    if text_in(body, "Type").as_deref() != Some("BRS") {
        return Err("Type must be BRS".into());
    }
    let serial: i64 = text_in(body, "SerialNumber")
        .and_then(|s| s.parse().ok())
        .ok_or("SerialNumber is not a number")?;
    let mut s = sim.lock();
    s.stats.notification_queries.push(serial);
    let tz = jiff::tz::TimeZone::get("Europe/Copenhagen").unwrap_or(jiff::tz::TimeZone::UTC);
    let n5 = |n: &str| El::new("ns5", NOTIFICATION_NS, n);
    let a = |n: &str| El::new("", BRS_NS, n);
    let mut out = n5("NotificationQueryResponseBody");
    for n in s
        .notifications
        .range(serial..)
        .map(|(_, n)| n)
        .filter(|n| n.queryable_cvr == card.cvr && n.due <= now)
        .take(PAGE_SIZE)
    {
        let mut acceptable = a("AcceptableRelations");
        for r in &n.acceptable {
            acceptable.push(a("Relation").text(r));
        }
        let mut actual = a("ActualRelations");
        for r in &n.actual {
            actual.push(a("Relation").text(r));
        }
        let alarm = El::new(
            "TreatmentRelationAlarmType",
            BRS_NS,
            "TreatmentRelationAlarmType",
        )
        .child(
            a("TreatmentRelationFollowup")
                .child(
                    a("TreatmentRelationRelayerData")
                        .child(
                            a("OrganisationIdentifier").child(a(&n.org_element).text(&n.org_value)),
                        )
                        .child(a("PatientCpr").text(&n.patient_cpr))
                        .child(a("HealthProfessionalCpr").text(&n.professional_cpr)),
                )
                .child(a("TimeLimit").text(&local_text(n.time_limit, &tz)))
                .child(a("ExternalReferenceId").text(&n.external_reference_id))
                .child(a("QueryableCvr").text(&n.queryable_cvr))
                .child(acceptable)
                .child(
                    a("TreatmentRelationFollowupSerialNumber").text(&(n.serial + 100).to_string()),
                )
                .child(a("UniqueId").text(&n.unique_id)),
        )
        .child(actual);
        out.push(
            n5("Notifications")
                .child(n5("Type").text("BRS"))
                .child(n5("SerialNumber").text(&n.serial.to_string()))
                .child(n5("ExternalReferenceId").text(&n.external_reference_id))
                .child(n5("QueryableCvr").text(&n.queryable_cvr))
                .child(alarm),
        );
    }
    Ok(out)
}
