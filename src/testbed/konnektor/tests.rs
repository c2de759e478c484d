//! The simulator's answers, called without a socket.

use hyper::StatusCode;
use roxmltree::Document;

use super::soap::*;
use super::*;
use crate::cms::recipient_emails;

const A: &str = "a@x.kim.test";
const B: &str = "b@x.kim.test";

fn ctx() -> SimContext {
    SimContext {
        mandant: "m1".into(),
        client_system: "cs1".into(),
        workplace: "wp1".into(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    sim: KonnektorSim,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::testbed::pki::make(&dir.path().join("pki"), &[A, B]).unwrap();
    let password = std::fs::read_to_string(&pki.password_file).unwrap();
    let mut config = SimConfig::from_pki(&pki, password.trim(), ctx());
    // B's card belongs to another Mandant
    config.cards[1].mandant = "m2".into();
    config.contexts.push(SimContext {
        mandant: "m2".into(),
        client_system: "cs1".into(),
        workplace: "wp1".into(),
    });
    let sim = KonnektorSim::new(&dir.path().join("sim"), config, "https://localhost:1").unwrap();
    Fixture { _dir: dir, sim }
}

fn call(sim: &KonnektorSim, op: Operation, body: &str, faults: &Faults) -> (StatusCode, String) {
    sim.call(
        op.service(),
        Some(op.soap_action()),
        body.as_bytes(),
        faults,
    )
}

fn code_of(text: &str) -> Option<u32> {
    let doc = Document::parse(text).unwrap();
    let c = doc
        .descendants()
        .find(|n| is(n, NS_GERROR, "Code"))
        .map(super::soap::text)?;
    c.parse().ok()
}

fn find_text(text: &str, ns: &str, name: &str) -> Option<String> {
    let doc = Document::parse(text).unwrap();
    let t = doc
        .descendants()
        .find(|n| is(n, ns, name))
        .map(super::soap::text);
    t
}

fn attr_for(sim: &KonnektorSim) -> Vec<u8> {
    let c = &sim.cards[0].encryption.cert;
    recipient_emails::attribute(&[(c.as_ref(), A)]).unwrap()
}

#[test]
fn get_cards_lists_the_mandants_cards_only() {
    let f = fixture();
    let (s, t) = call(
        &f.sim,
        Operation::GetCards,
        &requests::get_cards(&ctx(), Some("SMC-B")),
        &Faults::default(),
    );
    assert_eq!(s, StatusCode::OK, "{t}");
    assert!(t.contains("<CONN:CardHandle>SMC-B-1</CONN:CardHandle>"));
    assert!(!t.contains("SMC-B-2"));
    let (_, t) = call(
        &f.sim,
        Operation::GetCards,
        &requests::get_cards(&ctx(), Some("HBA")),
        &Faults::default(),
    );
    assert!(!t.contains("<CARD:Card>"));
    let removed = Faults {
        removed_cards: vec!["SMC-B-1".into()],
        ..Faults::default()
    };
    let (_, t) = call(
        &f.sim,
        Operation::GetCards,
        &requests::get_cards(&ctx(), None),
        &removed,
    );
    assert!(!t.contains("SMC-B-1"));
}

#[test]
fn context_faults_name_the_wrong_part() {
    let f = fixture();
    let cases = [
        ("mX", "cs1", "wp1", ops::UNKNOWN_MANDANT),
        ("m1", "csX", "wp1", ops::UNKNOWN_CLIENT_SYSTEM),
        ("m1", "cs1", "wpX", ops::UNKNOWN_WORKPLACE),
    ];
    for (m, c, w, code) in cases {
        let bad = SimContext {
            mandant: m.into(),
            client_system: c.into(),
            workplace: w.into(),
        };
        let (s, t) = call(
            &f.sim,
            Operation::GetCards,
            &requests::get_cards(&bad, None),
            &Faults::default(),
        );
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(code_of(&t), Some(code), "{t}");
    }
}

#[test]
fn a_card_of_another_mandant_is_an_invalid_handle() {
    let f = fixture();
    let (s, t) = call(
        &f.sim,
        Operation::GetPinStatus,
        &requests::get_pin_status(&ctx(), "SMC-B-2", "PIN.SMC"),
        &Faults::default(),
    );
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code_of(&t), Some(ops::INVALID_CARD_HANDLE));
}

#[test]
fn read_card_certificate_gives_each_certificate() {
    let f = fixture();
    let (s, t) = call(
        &f.sim,
        Operation::ReadCardCertificate,
        &requests::read_card_certificate(&ctx(), "SMC-B-1", &["C.ENC", "C.SIG"], "RSA"),
        &Faults::default(),
    );
    assert_eq!(s, StatusCode::OK, "{t}");
    let doc = Document::parse(&t).unwrap();
    let certs: Vec<Vec<u8>> = doc
        .descendants()
        .filter(|n| is(n, NS_CERTCMN, "X509Certificate"))
        .map(|n| unb64(&super::soap::text(n)).unwrap())
        .collect();
    assert_eq!(certs[0], f.sim.cards[0].encryption.cert.to_der().unwrap());
    assert_eq!(certs[1], f.sim.cards[0].signing.cert.to_der().unwrap());
    let (s, t) = call(
        &f.sim,
        Operation::ReadCardCertificate,
        &requests::read_card_certificate(&ctx(), "SMC-B-1", &["C.ENC"], "ECC"),
        &Faults::default(),
    );
    assert_eq!(s, StatusCode::OK);
    assert!(!t.contains("<CERTCMN:X509Data>"));
}

#[test]
fn sign_then_verify_and_a_flipped_byte_is_invalid() {
    let f = fixture();
    let content = b"Subject: hi\r\n\r\nhello\r\n";
    let attr = attr_for(&f.sim);
    let (s, t) = call(
        &f.sim,
        Operation::SignDocument,
        &requests::sign_document(&ctx(), "SMC-B-1", content, &attr),
        &Faults::default(),
    );
    assert_eq!(s, StatusCode::OK, "{t}");
    let signed = unb64(&find_text(&t, NS_DSS, "Base64Signature").unwrap()).unwrap();
    let v = crate::cms::verify(&signed, &f.sim.trust);
    assert_eq!(v.status, crate::cms::SignatureStatus::Valid);
    assert_eq!(v.content.as_deref(), Some(&content[..]));
    assert_eq!(v.recipient_emails.unwrap().attribute_der, attr);

    let (s, t) = call(
        &f.sim,
        Operation::VerifyDocument,
        &requests::verify_document(&ctx(), &signed),
        &Faults::default(),
    );
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        find_text(&t, NS_SIG, "HighLevelResult").as_deref(),
        Some("VALID")
    );
    let mut bad = signed.clone();
    let at = bad.windows(5).position(|w| w == b"hello").unwrap();
    bad[at] ^= 1;
    let (_, t) = call(
        &f.sim,
        Operation::VerifyDocument,
        &requests::verify_document(&ctx(), &bad),
        &Faults::default(),
    );
    assert_eq!(
        find_text(&t, NS_SIG, "HighLevelResult").as_deref(),
        Some("INVALID")
    );
    assert_eq!(find_text(&t, NS_CONN, "Result").as_deref(), Some("Warning"));
    assert_eq!(code_of(&t), Some(ops::SIG_INTEGRITY_VIOLATED));
    let (_, t) = call(
        &f.sim,
        Operation::VerifyDocument,
        &requests::verify_document(&ctx(), b"not cms"),
        &Faults::default(),
    );
    assert_eq!(code_of(&t), Some(ops::SIG_WRONG_FORMAT));
}

#[test]
fn encrypt_then_decrypt_round_trips() {
    let f = fixture();
    let content = b"secret content";
    let attr = attr_for(&f.sim);
    let cert = f.sim.cards[0].encryption.cert.to_der().unwrap();
    let (s, t) = call(
        &f.sim,
        Operation::EncryptDocument,
        &requests::encrypt_document(&ctx(), &[cert], content, &attr),
        &Faults::default(),
    );
    assert_eq!(s, StatusCode::OK, "{t}");
    let der = unb64(&find_text(&t, NS_DSS, "Base64Data").unwrap()).unwrap();
    let re = crate::cms::recipient_emails_of(&der).unwrap().unwrap();
    assert_eq!(re.attribute_der, attr);
    let (s, t) = call(
        &f.sim,
        Operation::DecryptDocument,
        &requests::decrypt_document(&ctx(), "SMC-B-1", &der),
        &Faults::default(),
    );
    assert_eq!(s, StatusCode::OK, "{t}");
    let plain = unb64(&find_text(&t, NS_DSS, "Base64Data").unwrap()).unwrap();
    assert_eq!(plain, content);
    let pin = Faults {
        pin_not_verified: vec!["SMC-B-1".into()],
        ..Faults::default()
    };
    let (s, t) = call(
        &f.sim,
        Operation::DecryptDocument,
        &requests::decrypt_document(&ctx(), "SMC-B-1", &der),
        &pin,
    );
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code_of(&t), Some(ops::PIN_NOT_VERIFIED));
    let (_, t) = call(
        &f.sim,
        Operation::GetPinStatus,
        &requests::get_pin_status(&ctx(), "SMC-B-1", "PIN.SMC"),
        &pin,
    );
    assert_eq!(
        find_text(&t, NS_CARD, "PinStatus").as_deref(),
        Some("VERIFIABLE")
    );
}

#[test]
fn malformed_calls_are_faults_not_panics() {
    let f = fixture();
    let good = requests::get_cards(&ctx(), None);
    let cases: Vec<(&str, Option<&str>, String)> = vec![
        // unknown SOAPAction
        ("EventService", Some("urn:nothing"), good.clone()),
        ("EventService", None, good.clone()),
        // an action of another service
        (
            "CardService",
            Some(Operation::GetCards.soap_action()),
            good.clone(),
        ),
        // a body that is not the named operation
        (
            "CardService",
            Some(Operation::GetPinStatus.soap_action()),
            good.clone(),
        ),
        (
            "EventService",
            Some(Operation::GetCards.soap_action()),
            "<a><b></a>".into(),
        ),
        (
            "EventService",
            Some(Operation::GetCards.soap_action()),
            "".into(),
        ),
        (
            "EventService",
            Some(Operation::GetCards.soap_action()),
            good.replace("<CCTX:Context>", "<CCTX:Kontext>")
                .replace("</CCTX:Context>", "</CCTX:Kontext>"),
        ),
        (
            "SignatureService",
            Some(Operation::SignDocument.soap_action()),
            requests::sign_document(&ctx(), "SMC-B-1", b"x", b"\x30\x00junk"),
        ),
        (
            "SignatureService",
            Some(Operation::SignDocument.soap_action()),
            requests::sign_document(&ctx(), "nope", b"x", &attr_for(&f.sim)),
        ),
    ];
    for (service, action, body) in cases {
        let (s, t) = f
            .sim
            .call(service, action, body.as_bytes(), &Faults::default());
        assert_eq!(
            s,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{service} {action:?}: {t}"
        );
        assert!(code_of(&t).is_some(), "{t}");
    }
    // invalid UTF-8
    let (s, _) = f.sim.call(
        "EventService",
        Some(Operation::GetCards.soap_action()),
        &[0xff, 0xfe],
        &Faults::default(),
    );
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn the_service_directory_points_at_each_service() {
    let f = fixture();
    let sds = f.sim.sds();
    let doc = Document::parse(&sds).unwrap();
    let locations: Vec<_> = doc
        .descendants()
        .filter(|n| is(n, NS_SI, "EndpointTLS"))
        .filter_map(|n| n.attribute("Location"))
        .collect();
    assert_eq!(locations.len(), 6);
    assert!(locations.contains(&"https://localhost:1/ws/SignatureService"));
    assert!(locations.contains(&"https://localhost:1/ws/AuthSignatureService"));
    // a Konnektor without the optional AuthSignatureService
    let mut config = f.sim.config.clone();
    config.offer_auth_signature = false;
    let dir = tempfile::tempdir().unwrap();
    let without = KonnektorSim::new(dir.path(), config, "https://localhost:1").unwrap();
    assert!(!without.sds().contains("AuthSignatureService"));
}

#[test]
fn external_authenticate_signs_the_hash_with_the_cards_aut_key() {
    use openssl::hash::MessageDigest;
    use openssl::rsa::Padding;
    use openssl::sign::{RsaPssSaltlen, Verifier};
    let f = fixture();
    let none = Faults::default();
    // ReadCardCertificate C.AUT gives the AUT certificate
    let (s, t) = call(
        &f.sim,
        Operation::ReadCardCertificate,
        &requests::read_card_certificate(&ctx(), "SMC-B-1", &["C.AUT"], "RSA"),
        &none,
    );
    assert_eq!(s, StatusCode::OK, "{t}");
    let der = unb64(&find_text(&t, NS_CERTCMN, "X509Certificate").unwrap()).unwrap();
    let aut = &f.sim.cards[0].aut.as_ref().unwrap().cert;
    assert_eq!(der, aut.to_der().unwrap());
    // the signature verifies as RSASSA-PSS over the message whose hash was sent
    let message = b"header.body";
    let hash = openssl::sha::sha256(message);
    let (s, t) = call(
        &f.sim,
        Operation::ExternalAuthenticate,
        &requests::external_authenticate(&ctx(), "SMC-B-1", &hash),
        &none,
    );
    assert_eq!(s, StatusCode::OK, "{t}");
    let sig = unb64(&find_text(&t, NS_DSS, "Base64Signature").unwrap()).unwrap();
    let key = aut.public_key().unwrap();
    let mut v = Verifier::new(MessageDigest::sha256(), &key).unwrap();
    v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
    v.set_rsa_mgf1_md(MessageDigest::sha256()).unwrap();
    v.set_rsa_pss_saltlen(RsaPssSaltlen::custom(32)).unwrap();
    v.update(message).unwrap();
    assert!(v.verify(&sig).unwrap());
    // refusals: not a SHA-256 hash, a pulled card, a PIN not verified, another
    // Mandant's card
    let short = requests::external_authenticate(&ctx(), "SMC-B-1", &hash[..20]);
    let (s, t) = call(&f.sim, Operation::ExternalAuthenticate, &short, &none);
    assert_eq!(
        (s, code_of(&t)),
        (StatusCode::INTERNAL_SERVER_ERROR, Some(ops::SYNTAX_ERROR))
    );
    let req = requests::external_authenticate(&ctx(), "SMC-B-1", &hash);
    for (faults, code) in [
        (
            Faults {
                removed_cards: vec!["SMC-B-1".into()],
                ..Faults::default()
            },
            ops::CARD_NOT_INSERTED,
        ),
        (
            Faults {
                pin_not_verified: vec!["SMC-B-1".into()],
                ..Faults::default()
            },
            ops::PIN_NOT_VERIFIED,
        ),
    ] {
        let (_, t) = call(&f.sim, Operation::ExternalAuthenticate, &req, &faults);
        assert_eq!(code_of(&t), Some(code), "{t}");
    }
    let other = requests::external_authenticate(&ctx(), "SMC-B-2", &hash);
    let (_, t) = call(&f.sim, Operation::ExternalAuthenticate, &other, &none);
    assert_eq!(code_of(&t), Some(ops::INVALID_CARD_HANDLE), "{t}");
}

#[test]
fn every_call_is_logged_with_its_answer() {
    let f = fixture();
    call(
        &f.sim,
        Operation::GetCards,
        &requests::get_cards(&ctx(), None),
        &Faults::default(),
    );
    let dir = f.sim.dir.join(REQUESTS_DIR);
    assert!(dir.join("000001-GetCards.xml").exists());
    assert!(dir.join("000001-GetCards-response.xml").exists());
}

#[test]
fn faults_file_is_optional_and_tolerant() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!Faults::load(dir.path()).down);
    std::fs::write(
        dir.path().join(FAULTS_FILE),
        r#"{"down": true, "delay_ms": 5}"#,
    )
    .unwrap();
    let f = Faults::load(dir.path());
    assert!(f.down);
    assert_eq!(f.delay_ms, 5);
    std::fs::write(dir.path().join(FAULTS_FILE), "{not json").unwrap();
    assert!(!Faults::load(dir.path()).down);
}
