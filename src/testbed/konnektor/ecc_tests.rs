//! The simulator with ECC encryption keys on its cards (C.ENC_ECC), called
//! without a socket: ReadCardCertificate with Crypt ECC, EncryptDocument with the
//! ECIES RecipientInfo, DecryptDocument with the key the request names, and the
//! service directory with and without ECC support (A_17464).

use hyper::StatusCode;
use roxmltree::Document;

use super::soap::*;
use super::*;
use crate::cms::{self, recipient_emails};
use crate::konnektor::sds;

const A: &str = "a@x.kim.test";

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

/// One card with an RSA and an ECC encryption key; `ecc` the Konnektor's support.
fn fixture(ecc: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let pki = crate::testbed::pki::make(&pki_dir, &[A]).unwrap();
    let p12 = crate::testbed::pki::ecc_encryption(&pki_dir, A, false).unwrap();
    let password = std::fs::read_to_string(&pki.password_file).unwrap();
    let mut config = SimConfig::from_pki(&pki, password.trim(), ctx());
    config.cards[0].ecc_encryption_pkcs12 = Some(p12);
    config.ecc = ecc;
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

fn base64_of(text: &str, name: &str) -> Vec<u8> {
    let doc = Document::parse(text).unwrap();
    let n = doc
        .descendants()
        .find(|n| n.tag_name().name() == name)
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    unb64(&super::soap::text(n)).unwrap()
}

fn code_of(text: &str) -> Option<u32> {
    let doc = Document::parse(text).unwrap();
    let c = doc
        .descendants()
        .find(|n| is(n, NS_GERROR, "Code"))
        .map(super::soap::text)?;
    c.parse().ok()
}

fn decrypt(sim: &KonnektorSim, crypt: &str, der: &[u8], faults: &Faults) -> (StatusCode, String) {
    let body = requests::decrypt_document(&ctx(), "SMC-B-1", der).replace(
        "<CRYPT:Crypt>RSA</CRYPT:Crypt>",
        &format!("<CRYPT:Crypt>{crypt}</CRYPT:Crypt>"),
    );
    call(sim, Operation::DecryptDocument, &body, faults)
}

/// EncryptDocument for the card's RSA and ECC certificates.
fn encrypt_for_both(sim: &KonnektorSim) -> Result<Vec<u8>, String> {
    let card = &sim.cards[0];
    let ecc = &card.ecc_encryption.as_ref().unwrap().cert;
    let rsa = &card.encryption.cert;
    let attr = recipient_emails::attribute(&[(rsa.as_ref(), A), (ecc.as_ref(), A)]).unwrap();
    let certs = vec![rsa.to_der().unwrap(), ecc.to_der().unwrap()];
    let (s, t) = call(
        sim,
        Operation::EncryptDocument,
        &requests::encrypt_document(&ctx(), &certs, b"geheim", &attr),
        &Faults::default(),
    );
    if s == StatusCode::OK {
        Ok(base64_of(&t, "Base64Data"))
    } else {
        Err(t)
    }
}

#[test]
fn read_card_certificate_with_ecc_gives_the_ecc_certificate() {
    let f = fixture(true);
    let read = |crypt: &str, faults: &Faults| {
        call(
            &f.sim,
            Operation::ReadCardCertificate,
            &requests::read_card_certificate(&ctx(), "SMC-B-1", &["C.ENC"], crypt),
            faults,
        )
    };
    let (s, t) = read("ECC", &Faults::default());
    assert_eq!(s, StatusCode::OK, "{t}");
    let ecc = f.sim.cards[0].ecc_encryption.as_ref().unwrap();
    assert_eq!(base64_of(&t, "X509Certificate"), ecc.cert.to_der().unwrap());
    // the RSA key withheld: no RSA certificate, the ECC one still there
    let no_rsa = Faults {
        rsa_encryption_unavailable: vec!["SMC-B-1".into()],
        ..Faults::default()
    };
    let (_, t) = read("RSA", &no_rsa);
    assert!(!t.contains("<CERTCMN:X509Data>"), "{t}");
    let (_, t) = read("ECC", &no_rsa);
    assert!(t.contains("<CERTCMN:X509Data>"), "{t}");
}

#[test]
fn encrypt_document_wraps_for_ecc_with_ecies_and_decrypt_needs_the_named_key() {
    let f = fixture(true);
    let der = encrypt_for_both(&f.sim).unwrap();
    let card = &f.sim.cards[0];
    let ecc = &card.ecc_encryption.as_ref().unwrap().cert;
    let infos = cms::key_trans_infos(&der).unwrap();
    assert_eq!(infos.len(), 2);
    let alg_for = |c| {
        infos
            .iter()
            .find(|i| i.is_for(c))
            .map(|i| i.algorithm.as_slice())
    };
    // (a DER SET OF: the order is the encoding's, not the request's)
    assert_eq!(alg_for(&card.encryption.cert), Some(cms::oid::RSAES_OAEP));
    assert_eq!(alg_for(ecc), Some(cms::oid::TI_ECIES));

    // either key opens it
    for crypt in ["RSA", "ECC", "RSA_ECC"] {
        let (s, t) = decrypt(&f.sim, crypt, &der, &Faults::default());
        assert_eq!(s, StatusCode::OK, "{crypt}: {t}");
        assert_eq!(base64_of(&t, "Base64Data"), b"geheim");
    }
    // the RSA key withheld: RSA is refused, ECC opens it
    let no_rsa = Faults {
        rsa_encryption_unavailable: vec!["SMC-B-1".into()],
        ..Faults::default()
    };
    let (s, t) = decrypt(&f.sim, "RSA", &der, &no_rsa);
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code_of(&t), Some(ops::DECRYPTION_FAILED), "{t}");
    let (s, _) = decrypt(&f.sim, "ECC", &der, &no_rsa);
    assert_eq!(s, StatusCode::OK);

    // a document for the RSA key only: Crypt ECC is the wrong key, a fault
    let attr = recipient_emails::attribute(&[(card.encryption.cert.as_ref(), A)]).unwrap();
    let (_, t) = call(
        &f.sim,
        Operation::EncryptDocument,
        &requests::encrypt_document(
            &ctx(),
            &[card.encryption.cert.to_der().unwrap()],
            b"nur RSA",
            &attr,
        ),
        &Faults::default(),
    );
    let rsa_only = base64_of(&t, "Base64Data");
    let (s, t) = decrypt(&f.sim, "ECC", &rsa_only, &Faults::default());
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code_of(&t), Some(ops::DECRYPTION_FAILED), "{t}");
    assert!(t.contains("ECC-Schlüssel"), "{t}");
}

#[test]
fn a_konnektor_without_ecc_announces_it_and_refuses_ecc() {
    let with = fixture(true);
    let without = fixture(false);
    let ecc_of = |sim: &KonnektorSim| sds::parse(&sim.sds()).unwrap().ecc;
    assert!(ecc_of(&with.sim));
    assert!(!ecc_of(&without.sim), "{}", without.sim.sds());
    let t = encrypt_for_both(&without.sim).unwrap_err();
    assert!(t.contains("does not support ECC"), "{t}");
    let der = encrypt_for_both(&with.sim).unwrap();
    let (s, t) = decrypt(&without.sim, "ECC", &der, &Faults::default());
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{t}");
}
