//! Damaged and manipulated KIM mails through the whole receive pipeline (issue 3,
//! point 18): each yields the spec's result fields or error mail, never a panic, and
//! never the plaintext outside the places the spec puts it.

use kim_cm::cms::{self, ber, der};
use kim_cm::crypto::opener::SoftwareOpener;
use kim_cm::crypto::sealer::SoftwareSealer;
use kim_cm::crypto::software::SoftwareKeys;
use kim_cm::kim::{header, receive, seal, send, wrap};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::X509;

const MARKER: &str = "marker-9f3a-plaintext";

struct World {
    _dir: tempfile::TempDir,
    keys: SoftwareKeys,
    trust: X509Store,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let addresses = ["a@x.de", "b@x.de", "c@x.de"];
    let pki = kim_cm::testbed::pki::make(dir.path(), &addresses).unwrap();
    let mut keys = SoftwareKeys::default();
    for (i, a) in addresses.iter().enumerate() {
        let acc = &pki.accounts[i];
        let k = SoftwareKeys::read_account(
            &acc.signing_pkcs12,
            &acc.encryption_pkcs12,
            Some(&pki.password_file),
        )
        .unwrap();
        keys.insert(a, k);
    }
    let mut b = X509StoreBuilder::new().unwrap();
    b.add_cert(X509::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap())
        .unwrap();
    World {
        _dir: dir,
        keys,
        trust: b.build(),
    }
}

impl World {
    fn cert(&self, a: &str) -> X509 {
        self.keys.account(a).unwrap().encryption[0].cert.clone()
    }

    /// A mail from a to b, sealed by kim-cm.
    fn sealed(&self) -> Vec<u8> {
        let mail = format!(
            "From: <a@x.de>\r\nTo: <b@x.de>\r\nSubject: Befund\r\nMessage-ID: <n@x.de>\r\n\r\n{MARKER}\r\n"
        );
        let certs = |a: &str| match self.keys.account(a) {
            Some(k) => vec![k.encryption[0].cert.clone()],
            None => Vec::new(),
        };
        let sealer = SoftwareSealer { keys: &self.keys };
        seal::seal(
            mail.into_bytes(),
            "a@x.de",
            &["b@x.de".into()],
            &certs,
            &sealer,
            &send::outer_fields(None, send::Version::Small),
        )
        .unwrap()
        .mail
    }

    fn open(&self, mail: &[u8], user: &str) -> receive::Opened {
        let opener = SoftwareOpener {
            keys: &self.keys.account(user).unwrap().encryption,
            trust: &self.trust,
        };
        receive::open(mail, user, &opener)
    }
}

fn split_mail(mail: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (_, body) = header::split(mail);
    (
        mail[..mail.len() - body.len()].to_vec(),
        wrap::decode_base64_lines(body).unwrap(),
    )
}

fn join_mail(head_and_blank: &[u8], der: &[u8]) -> Vec<u8> {
    let mut m = head_and_blank.to_vec();
    wrap::append_base64_lines(&mut m, der);
    m
}

/// The AuthEnvelopedData's fields (version, recipientInfos, authEncryptedContentInfo,
/// mac, unauthAttrs) as raw elements.
fn aed_fields(der: &[u8]) -> Vec<Vec<u8>> {
    let (ci, _) = ber::read(der).unwrap();
    let ci = ci.children().unwrap();
    ci[1].children().unwrap()[0]
        .children()
        .unwrap()
        .iter()
        .map(|t| t.raw.to_vec())
        .collect()
}

fn aed_from(fields: &[Vec<u8>]) -> Vec<u8> {
    let parts: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
    der::seq(&[
        &der::oid(cms::oid::AUTH_ENVELOPED_DATA),
        &der::tlv(0xa0, &der::seq(&parts)),
    ])
}

fn text(m: &receive::Opened) -> String {
    String::from_utf8_lossy(&m.mail).into_owned()
}

/// A decryption failure: the error mail, its code, no plaintext anywhere.
fn assert_not_decrypted(o: &receive::Opened, code: &str) {
    let t = text(o);
    assert_eq!(o.decryption, code, "{t}");
    assert!(o.integrity.is_empty());
    assert!(
        t.contains(&format!("X-KIM-DecryptionResult: {code}\r\n")),
        "{t}"
    );
    let parsed = mail_parser::MessageParser::default()
        .parse(&o.mail)
        .unwrap();
    assert_eq!(
        parsed.subject(),
        Some("Die Nachricht konnte nicht entschlüsselt werden"),
        "{t}"
    );
    assert!(!t.contains(MARKER), "plaintext in a failed decryption: {t}");
}

/// An integrity failure: decrypted, the codes, the security-violation text first.
fn assert_violation(o: &receive::Opened, codes: &[&str]) {
    let t = text(o);
    assert_eq!(o.decryption, "00", "{t}");
    assert_eq!(o.integrity, codes.join(","), "{t}");
    for c in codes {
        assert!(
            t.contains(&format!("X-KIM-IntegrityCheckResult: {c}\r\n")),
            "{t}"
        );
    }
    let warning = t
        .find("Sicherheitsverletzung")
        .expect("security-violation text");
    // the original comes only after the warning, inside the embedded part
    if let Some(at) = t.find(MARKER) {
        assert!(at > warning, "{t}");
    }
}

#[test]
fn the_undamaged_mail_opens() {
    let w = world();
    let o = w.open(&w.sealed(), "b@x.de");
    assert_eq!((o.decryption.as_str(), o.integrity.as_str()), ("00", "01"));
    assert!(text(&o).contains(MARKER));
}

#[test]
fn a_flipped_ciphertext_byte_is_caught_by_the_tag() {
    let w = world();
    let (head, der) = split_mail(&w.sealed());
    let mut f = aed_fields(&der);
    // authEncryptedContentInfo: flip a byte in the middle of its [0] content
    let eci = &mut f[2];
    let at = eci.len() / 2;
    eci[at] ^= 0x01;
    let o = w.open(&join_mail(&head, &aed_from(&f)), "b@x.de");
    assert_not_decrypted(&o, "02");
}

#[test]
fn a_flipped_signature_byte_is_an_integrity_violation() {
    let w = world();
    let (head, der) = split_mail(&w.sealed());
    let b = w.keys.account("b@x.de").unwrap();
    let d = cms::decrypt(&der, &b.encryption[0].cert, &b.encryption[0].key).unwrap();
    let attr = d.recipient_emails.unwrap().attribute_der;
    let mut signed = wrap::signed_unwrap(&d.content).unwrap().into_owned();
    // the signature is the last OCTET STRING of the SignedData: flip its last byte
    let n = signed.len();
    signed[n - 1] ^= 0x01;
    let enveloped =
        cms::encrypt(&[&wrap::signed_wrap(&signed)], &[&w.cert("b@x.de")], &attr).unwrap();
    let o = w.open(&join_mail(&head, &enveloped), "b@x.de");
    assert_violation(&o, &["02"]);
}

#[test]
fn a_mail_for_others_does_not_open_with_another_key() {
    let w = world();
    let o = w.open(&w.sealed(), "c@x.de");
    assert_not_decrypted(&o, "01");
}

#[test]
fn truncated_cms_garbage_base64_and_empty_bodies_are_wrong_format() {
    let w = world();
    let sealed = w.sealed();
    let (head, body) = header::split(&sealed);
    let head_len = sealed.len() - body.len();
    // half the base64 lines
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    let mut truncated = sealed[..head_len].to_vec();
    for l in &lines[..lines.len() / 2] {
        truncated.extend_from_slice(l);
        truncated.push(b'\n');
    }
    let mut garbage = sealed[..head_len].to_vec();
    garbage.extend_from_slice(b"!!!not base64!!!\r\n");
    let empty = sealed[..head_len].to_vec();
    let mut crlf = sealed[..head_len].to_vec();
    crlf.extend_from_slice(b"\r\n\r\n");
    for (what, m) in [
        ("truncated", truncated),
        ("garbage", garbage),
        ("empty", empty),
        ("crlf", crlf),
    ] {
        let o = w.open(&m, "b@x.de");
        assert_eq!(o.decryption, "02", "{what}: {}", text(&o));
        assert_not_decrypted(&o, "02");
    }
    assert!(header::find(head, "X-KOM-LE-Version").is_some());
}

#[test]
fn a_manipulated_outer_from_is_a_header_mismatch() {
    let w = world();
    let sealed = String::from_utf8(w.sealed()).unwrap();
    let forged = sealed.replacen("From: <a@x.de>", "From: <chef@bank.de>", 1);
    assert_ne!(forged, sealed);
    let o = w.open(forged.as_bytes(), "b@x.de");
    assert_violation(&o, &["08"]);
}

#[test]
fn manipulated_recipient_emails() {
    let w = world();
    let (head, der) = split_mail(&w.sealed());
    let mut f = aed_fields(&der);
    assert_eq!(f[4][0], 0xa2, "unauthAttrs last");

    // b's certificate listed for another address: b is not a listed recipient any
    // more, so b's key is not used (KOM-LE-A_2043)
    let b_cert = w.cert("b@x.de");
    let a_cert = w.cert("a@x.de");
    let other = cms::recipient_emails::attribute(&[
        (a_cert.as_ref(), "a@x.de"),
        (b_cert.as_ref(), "c@x.de"),
    ])
    .unwrap();
    f[4] = der::tlv(0xa2, &other);
    let o = w.open(&join_mail(&head, &aed_from(&f)), "b@x.de");
    assert_not_decrypted(&o, "01");

    // an extra entry: b still listed, but the unprotected copy differs from the signed
    let c_cert = w.cert("c@x.de");
    let extra = cms::recipient_emails::attribute(&[
        (a_cert.as_ref(), "a@x.de"),
        (b_cert.as_ref(), "b@x.de"),
        (c_cert.as_ref(), "c@x.de"),
    ])
    .unwrap();
    f[4] = der::tlv(0xa2, &extra);
    let o = w.open(&join_mail(&head, &aed_from(&f)), "b@x.de");
    assert_violation(&o, &["09"]);

    // no unauthAttrs at all (KOM-LE-A_2107): wrong format
    f.truncate(4);
    let o = w.open(&join_mail(&head, &aed_from(&f)), "b@x.de");
    assert_not_decrypted(&o, "02");
}
