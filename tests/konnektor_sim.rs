//! The Konnektor simulator over real HTTPS: the service directory, every operation
//! of docs/konnektor.md, the context, card and PIN faults, runtime faults through
//! faults.json, and every logged request and answer validated with xmllint
//! against gematik's schemas.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use kim_cm::testbed::konnektor::soap::{self, Operation};
use kim_cm::testbed::konnektor::{ops, requests, start, SimConfig, SimContext};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use roxmltree::Document;

const A: &str = "a@x.kim.test";
const B: &str = "b@x.kim.test";

fn ctx() -> SimContext {
    SimContext {
        mandant: "Mandant1".into(),
        client_system: "KIM-CM".into(),
        workplace: "Praxis-PC".into(),
    }
}

/// One HTTP/1.1 exchange over TLS (verified against `ca`): (status, body); None
/// when the server closed without an answer.
fn https(
    ca: &Path,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(ca).unwrap();
    b.set_verify(SslVerifyMode::PEER);
    let connector = b.build();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut tls = connector.connect("localhost", tcp).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).ok()?;
    tls.write_all(body).ok()?;
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    if raw.is_empty() {
        return None;
    }
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Some((status, body.to_string()))
}

struct Client {
    ca: std::path::PathBuf,
    port: u16,
}

impl Client {
    fn soap(&self, op: Operation, body: &str) -> (u16, String) {
        self.soap_to(op.service(), op.soap_action(), body)
            .expect("an answer")
    }

    fn soap_to(&self, service: &str, action: &str, body: &str) -> Option<(u16, String)> {
        https(
            &self.ca,
            self.port,
            "POST",
            &format!("/ws/{service}"),
            &[
                ("Content-Type", "text/xml; charset=utf-8".into()),
                ("SOAPAction", format!("\"{action}\"")),
            ],
            body.as_bytes(),
        )
    }
}

fn find(text: &str, ns: &str, name: &str) -> Option<String> {
    let doc = Document::parse(text).unwrap();
    let t = doc
        .descendants()
        .find(|n| n.has_tag_name((ns, name)))
        .map(soap::text);
    t
}

fn code(text: &str) -> Option<u32> {
    find(text, soap::NS_GERROR, "Code").and_then(|c| c.parse().ok())
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap()
}

#[test]
fn the_konnektor_simulator_speaks_the_wire_contract() {
    let t0 = Instant::now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = kim_cm::testbed::pki::make(&dir.path().join("pki"), &[A, B]).unwrap();
    let password = std::fs::read_to_string(&pki.password_file).unwrap();
    let config = SimConfig::from_pki(&pki, password.trim(), ctx());
    let sim = rt
        .block_on(start(&dir.path().join("konnektor"), config))
        .unwrap();
    let c = Client {
        ca: sim.tls_ca.clone(),
        port: sim.addr.port(),
    };
    eprintln!("setup {:?}", t0.elapsed());

    // the service directory, kept beside the request log for validation
    let (s, sds) = https(&c.ca, c.port, "GET", "/connector.sds", &[], b"").unwrap();
    assert_eq!(s, 200);
    assert!(sim.sds_url.ends_with("/connector.sds"));
    for (name, _, _) in soap::SERVICES {
        assert!(
            sds.contains(&format!(
                "Location=\"https://localhost:{}/ws/{name}\"",
                c.port
            )),
            "{sds}"
        );
    }
    std::fs::write(sim.requests_dir().join("000000-sds.xml"), &sds).unwrap();

    // GetCards
    let (s, t) = c.soap(
        Operation::GetCards,
        &requests::get_cards(&ctx(), Some("SMC-B")),
    );
    assert_eq!(s, 200, "{t}");
    assert!(t.contains("SMC-B-1") && t.contains("SMC-B-2"), "{t}");
    assert!(t.contains(A));

    // ReadCardCertificate
    let (s, t) = c.soap(
        Operation::ReadCardCertificate,
        &requests::read_card_certificate(&ctx(), "SMC-B-1", &["C.ENC", "C.SIG"], "RSA"),
    );
    assert_eq!(s, 200, "{t}");
    let doc = Document::parse(&t).unwrap();
    let certs: Vec<openssl::x509::X509> = doc
        .descendants()
        .filter(|n| n.has_tag_name((soap::NS_CERTCMN, "X509Certificate")))
        .map(|n| openssl::x509::X509::from_der(&unb64(&soap::text(n))).unwrap())
        .collect();
    assert_eq!(certs.len(), 2);
    let enc_cert = certs[0].clone();
    let dir_pem = std::fs::read(pki.directory.join(format!("{A}.pem"))).unwrap();
    assert_eq!(
        enc_cert.to_der().unwrap(),
        openssl::x509::X509::from_pem(&dir_pem)
            .unwrap()
            .to_der()
            .unwrap()
    );
    let (s, t) = c.soap(
        Operation::ReadCardCertificate,
        &requests::read_card_certificate(&ctx(), "SMC-B-1", &["C.ENC"], "ECC"),
    );
    assert_eq!(s, 200, "{t}");
    assert!(!t.contains("X509Certificate"));

    // SignDocument, then VerifyDocument VALID, and INVALID after a flipped byte
    let attr = kim_cm::cms::recipient_emails::attribute(&[(enc_cert.as_ref(), A)]).unwrap();
    let content = b"From: a@x.kim.test\r\nSubject: Befund\r\n\r\nHallo\r\n";
    let (s, t) = c.soap(
        Operation::SignDocument,
        &requests::sign_document(&ctx(), "SMC-B-1", content, &attr),
    );
    assert_eq!(s, 200, "{t}");
    let signed = unb64(&find(&t, soap::NS_DSS, "Base64Signature").unwrap());
    let (s, t) = c.soap(
        Operation::VerifyDocument,
        &requests::verify_document(&ctx(), &signed),
    );
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        find(&t, soap::NS_SIG, "HighLevelResult").as_deref(),
        Some("VALID")
    );
    let mut flipped = signed.clone();
    let at = flipped.windows(5).position(|w| w == b"Hallo").unwrap();
    flipped[at] ^= 0x20;
    let (s, t) = c.soap(
        Operation::VerifyDocument,
        &requests::verify_document(&ctx(), &flipped),
    );
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        find(&t, soap::NS_SIG, "HighLevelResult").as_deref(),
        Some("INVALID")
    );
    assert_eq!(code(&t), Some(ops::SIG_INTEGRITY_VIOLATED));

    // EncryptDocument, then DecryptDocument
    let (s, t) = c.soap(
        Operation::EncryptDocument,
        &requests::encrypt_document(&ctx(), &[enc_cert.to_der().unwrap()], &signed, &attr),
    );
    assert_eq!(s, 200, "{t}");
    let enveloped = unb64(&find(&t, soap::NS_DSS, "Base64Data").unwrap());
    assert!(kim_cm::cms::addressed_to(&enveloped, &enc_cert));
    let (s, t) = c.soap(
        Operation::DecryptDocument,
        &requests::decrypt_document(&ctx(), "SMC-B-1", &enveloped),
    );
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        unb64(&find(&t, soap::NS_DSS, "Base64Data").unwrap()),
        signed
    );
    // B's card holds no key for it
    let (s, t) = c.soap(
        Operation::DecryptDocument,
        &requests::decrypt_document(&ctx(), "SMC-B-2", &enveloped),
    );
    assert_eq!(s, 500);
    assert_eq!(code(&t), Some(ops::DECRYPTION_FAILED));

    // GetPinStatus
    let (s, t) = c.soap(
        Operation::GetPinStatus,
        &requests::get_pin_status(&ctx(), "SMC-B-1", "PIN.SMC"),
    );
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        find(&t, soap::NS_CARD, "PinStatus").as_deref(),
        Some("VERIFIED")
    );

    // the context faults
    for (m, cs, w, expected) in [
        ("Other", "KIM-CM", "Praxis-PC", 4004),
        ("Mandant1", "Other", "Praxis-PC", 4005),
        ("Mandant1", "KIM-CM", "Other", 4006),
    ] {
        let bad = SimContext {
            mandant: m.into(),
            client_system: cs.into(),
            workplace: w.into(),
        };
        let (s, t) = c.soap(Operation::GetCards, &requests::get_cards(&bad, None));
        assert_eq!(s, 500, "{t}");
        assert_eq!(code(&t), Some(expected), "{t}");
        assert!(find(&t, soap::NS_SOAP, "Fault").is_some());
    }
    // an unknown card handle
    let (s, t) = c.soap(
        Operation::SignDocument,
        &requests::sign_document(&ctx(), "SMC-B-9", content, &attr),
    );
    assert_eq!(s, 500);
    assert_eq!(code(&t), Some(ops::INVALID_CARD_HANDLE));

    // runtime faults: a pulled card, an unverified PIN
    sim.set_faults(
        &serde_json::json!({"removed_cards": ["SMC-B-2"], "pin_not_verified": ["SMC-B-1"]}),
    )
    .unwrap();
    let (_, t) = c.soap(Operation::GetCards, &requests::get_cards(&ctx(), None));
    assert!(t.contains("SMC-B-1") && !t.contains("SMC-B-2"), "{t}");
    let (s, t) = c.soap(
        Operation::SignDocument,
        &requests::sign_document(&ctx(), "SMC-B-2", content, &attr),
    );
    assert_eq!(s, 500);
    assert_eq!(code(&t), Some(ops::CARD_NOT_INSERTED));
    let (s, t) = c.soap(
        Operation::SignDocument,
        &requests::sign_document(&ctx(), "SMC-B-1", content, &attr),
    );
    assert_eq!(s, 500);
    assert_eq!(code(&t), Some(ops::PIN_NOT_VERIFIED));
    let (s, t) = c.soap(
        Operation::DecryptDocument,
        &requests::decrypt_document(&ctx(), "SMC-B-1", &enveloped),
    );
    assert_eq!(s, 500);
    assert_eq!(code(&t), Some(ops::PIN_NOT_VERIFIED));
    let (_, t) = c.soap(
        Operation::GetPinStatus,
        &requests::get_pin_status(&ctx(), "SMC-B-1", "PIN.SMC"),
    );
    assert_eq!(
        find(&t, soap::NS_CARD, "PinStatus").as_deref(),
        Some("VERIFIABLE")
    );

    // delay, then down (no answer at all), then back
    sim.set_faults(&serde_json::json!({"delay_ms": 300}))
        .unwrap();
    let before = Instant::now();
    let (s, _) = c.soap(Operation::GetCards, &requests::get_cards(&ctx(), None));
    assert_eq!(s, 200);
    assert!(before.elapsed() >= Duration::from_millis(300));
    sim.set_faults(&serde_json::json!({"down": true})).unwrap();
    assert!(c
        .soap_to(
            "EventService",
            Operation::GetCards.soap_action(),
            &requests::get_cards(&ctx(), None)
        )
        .is_none());
    sim.set_faults(&serde_json::json!({})).unwrap();
    let (s, _) = c.soap(Operation::GetCards, &requests::get_cards(&ctx(), None));
    assert_eq!(s, 200);
    eprintln!("calls {:?}", t0.elapsed());

    // every request and answer against the schemas (the down call left a request
    // but no answer)
    let n = common::konnektor_schema::validate_all(&sim.requests_dir())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 40, "{n} documents validated");
    eprintln!("validated {n} documents {:?}", t0.elapsed());

    // the validator is not a rubber stamp: an element out of order fails
    let schemas = common::konnektor_schema::schemas();
    let wrong = dir.path().join("wrong.xml");
    let good = requests::read_card_certificate(&ctx(), "SMC-B-1", &["C.ENC"], "RSA");
    let ctx_xml = requests::context(&ctx());
    let reordered = good.replace(&ctx_xml, "").replace(
        "<CERT:ReadCardCertificate>",
        &format!("<CERT:ReadCardCertificate>{ctx_xml}"),
    );
    assert_ne!(reordered, good);
    std::fs::write(&wrong, &reordered).unwrap();
    assert!(common::konnektor_schema::validate(&schemas, &wrong).is_err());
    std::fs::write(&wrong, &good).unwrap();
    assert!(common::konnektor_schema::validate(&schemas, &wrong).is_ok());
    // an unknown element in a body is refused too (strict, not lax)
    std::fs::write(
        &wrong,
        good.replace("CERT:ReadCardCertificate", "CERT:ReadCardCertificates"),
    )
    .unwrap();
    assert!(common::konnektor_schema::validate(&schemas, &wrong).is_err());
    drop(sim);
}

#[test]
fn malformed_calls_and_basic_auth() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = kim_cm::testbed::pki::make(&dir.path().join("pki"), &[A]).unwrap();
    let password = std::fs::read_to_string(&pki.password_file).unwrap();
    let mut config = SimConfig::from_pki(&pki, password.trim(), ctx());
    config.basic_auth = Some(("kim".into(), "geheim".into()));
    let sim = rt
        .block_on(start(&dir.path().join("konnektor"), config))
        .unwrap();
    let port = sim.addr.port();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("kim:geheim")
    );
    let good = requests::get_cards(&ctx(), None);
    let post = |service: &str, action: &str, auth: Option<&str>, body: &str| {
        let mut h = vec![("SOAPAction", format!("\"{action}\""))];
        if let Some(a) = auth {
            h.push(("Authorization", a.to_string()));
        }
        https(
            &sim.tls_ca,
            port,
            "POST",
            &format!("/ws/{service}"),
            &h,
            body.as_bytes(),
        )
        .unwrap()
    };
    let action = Operation::GetCards.soap_action();
    assert_eq!(post("EventService", action, None, &good).0, 401);
    assert_eq!(
        post("EventService", action, Some("Basic a2ltOng="), &good).0,
        401
    );
    assert_eq!(post("EventService", action, Some(&auth), &good).0, 200);
    assert_eq!(
        https(
            &sim.tls_ca,
            port,
            "GET",
            "/connector.sds",
            &[("Authorization", auth.clone())],
            b""
        )
        .unwrap()
        .0,
        200
    );
    for (service, action, body) in [
        ("EventService", "urn:wrong", good.as_str()),
        ("CardService", action, good.as_str()),
        ("EventService", action, "<soap:Envelope"),
        ("EventService", action, "<x/>"),
        (
            "EventService",
            Operation::GetPinStatus.soap_action(),
            good.as_str(),
        ),
    ] {
        let (s, t) = post(service, action, Some(&auth), body);
        assert_eq!(s, 500, "{service} {action}: {t}");
        assert_eq!(code(&t), Some(ops::SYNTAX_ERROR), "{t}");
    }
    // still serving after all of that
    assert_eq!(post("EventService", action, Some(&auth), &good).0, 200);
}
