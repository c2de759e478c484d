//! kim-cm seals with software keys and opens what it sealed; `openssl cms` (an
//! independent implementation) decrypts and verifies what kim-cm sealed.

use std::path::Path;
use std::process::Command;

use kim_cm::cms;
use kim_cm::crypto::opener::SoftwareOpener;
use kim_cm::crypto::sealer::SoftwareSealer;
use kim_cm::crypto::software::{AccountKeys, SoftwareKeys};
use kim_cm::kim::{header, receive, seal, wrap};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::X509;

const MAIL: &[u8] = b"From: Praxis A <a@x.de>\r\nTo: \"Dr. B\" <b@x.de>\r\nCc: c@x.de\r\n\
Subject: Befund\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\nMessage-ID: <1@x.de>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo B, anbei der Befund.\r\n";

const FIELDS: wrap::OuterFields<'static> = wrap::OuterFields {
    kom_le_version: "1.0",
    cm_version: "KIMCM_0.1.0",
    pt_version: "1.5.2",
    expires: Some("Thu, 24 Dec 2026 10:00:00 +0000"),
};

struct World {
    dir: tempfile::TempDir,
    pki: kim_cm::testbed::pki::TestPki,
    keys: SoftwareKeys,
    trust: X509Store,
}

fn account(pki: &kim_cm::testbed::pki::TestPki, i: usize) -> AccountKeys {
    let a = &pki.accounts[i];
    SoftwareKeys::read_account(
        &a.signing_pkcs12,
        &a.encryption_pkcs12,
        Some(&pki.password_file),
    )
    .unwrap()
}

fn world(addresses: &[&str]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let pki = kim_cm::testbed::pki::make(dir.path(), addresses).unwrap();
    let mut keys = SoftwareKeys::default();
    for (i, a) in addresses.iter().enumerate() {
        keys.insert(a, account(&pki, i));
    }
    let mut b = X509StoreBuilder::new().unwrap();
    b.add_cert(X509::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap())
        .unwrap();
    World {
        dir,
        pki,
        keys,
        trust: b.build(),
    }
}

impl World {
    fn certs(&self) -> impl Fn(&str) -> Vec<X509> + '_ {
        |a: &str| match self.keys.account(a) {
            Some(k) => k.encryption.iter().map(|p| p.cert.clone()).collect(),
            None => Vec::new(),
        }
    }

    fn seal(&self, mail: &[u8], from: &str, rcpt: &[&str]) -> seal::Sealed {
        let rcpt: Vec<String> = rcpt.iter().map(|s| s.to_string()).collect();
        let sealer = SoftwareSealer { keys: &self.keys };
        seal::seal(mail.to_vec(), from, &rcpt, &self.certs(), &sealer, &FIELDS).unwrap()
    }

    fn open(&self, mail: &[u8], user: &str) -> receive::Opened {
        let opener = SoftwareOpener {
            keys: &self.keys.account(user).unwrap().encryption,
            trust: &self.trust,
        };
        receive::open(mail, user, &opener)
    }

    /// Writes `user`'s encryption (or signing) certificate and key as PEM files.
    fn pem_files(&self, user: &str, signing: bool) -> (String, String) {
        let k = self.keys.account(user).unwrap();
        let pair = if signing {
            &k.signing
        } else {
            &k.encryption[0]
        };
        let role = if signing { "sig" } else { "enc" };
        let cert = self.dir.path().join(format!("{user}.{role}.pem"));
        let key = self.dir.path().join(format!("{user}.{role}.key"));
        std::fs::write(&cert, pair.cert.to_pem().unwrap()).unwrap();
        std::fs::write(&key, pair.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        (cert.display().to_string(), key.display().to_string())
    }
}

fn openssl(args: &[&str], input: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .arg("-in")
        .arg(input)
        .output()
        .expect("openssl on PATH");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The AuthEnvelopedData without its unauthAttrs: Debian's OpenSSL 3.0 cannot parse
/// them (openssl issue 26101), so the CLI gets the structure without.
fn without_unauth_attrs(der: &[u8]) -> Vec<u8> {
    let (ci, _) = cms::ber::read(der).unwrap();
    let ci = ci.children().unwrap();
    let aed = ci[1].children().unwrap()[0].children().unwrap();
    let kept: Vec<&[u8]> = aed
        .iter()
        .filter(|t| t.tag != 0xa2)
        .map(|t| t.raw)
        .collect();
    assert_eq!(kept.len() + 1, aed.len(), "unauthAttrs present");
    cms::der::seq(&[ci[0].raw, &cms::der::tlv(0xa0, &cms::der::seq(&kept))])
}

#[test]
fn every_recipient_and_the_sender_open_what_kim_cm_sealed() {
    let w = world(&["a@x.de", "b@x.de", "c@x.de"]);
    let sealed = w.seal(MAIL, "a@x.de", &["b@x.de", "c@x.de"]);
    assert_eq!(sealed.recipients, vec!["b@x.de", "c@x.de"]);
    let (outer, _) = header::split(&sealed.mail);
    assert_eq!(header::value(outer, "Subject").unwrap(), "KOM-LE-Nachricht");
    assert_eq!(header::value(outer, "X-KOM-LE-Version").unwrap(), "1.0");
    assert_eq!(
        header::value(outer, "X-KIM-Dienstkennung").unwrap(),
        "KIM-Mail;Default;V1.0"
    );
    assert!(
        !sealed.mail.windows(6).any(|w| w == b"Befund"),
        "no plaintext outside"
    );
    for user in ["b@x.de", "c@x.de", "a@x.de"] {
        let opened = w.open(&sealed.mail, user);
        assert_eq!(
            (opened.decryption.as_str(), opened.integrity.as_str()),
            ("00", "01"),
            "{user}: {}",
            String::from_utf8_lossy(&opened.mail)
        );
        let (h, body) = header::split(&opened.mail);
        assert_eq!(header::value(h, "Subject").unwrap(), "Befund");
        assert!(body.starts_with(b"Hallo B, anbei der Befund.\r\n"));
    }
}

#[test]
fn a_mail_for_others_does_not_open_with_a_third_key() {
    let w = world(&["a@x.de", "b@x.de", "d@x.de"]);
    let sealed = w.seal(MAIL, "a@x.de", &["b@x.de"]);
    let opened = w.open(&sealed.mail, "d@x.de");
    assert_ne!(opened.decryption, "00");
    assert!(!opened.mail.windows(6).any(|w| w == b"Befund"));
}

#[test]
fn openssl_cms_decrypts_and_verifies_what_kim_cm_sealed() {
    let w = world(&["a@x.de", "b@x.de", "c@x.de"]);
    let sealed = w.seal(MAIL, "a@x.de", &["b@x.de", "c@x.de"]);
    let (_, body) = header::split(&sealed.mail);
    let enveloped = wrap::decode_base64_lines(body).unwrap();
    let input = w.dir.path().join("enveloped.der");
    std::fs::write(&input, without_unauth_attrs(&enveloped)).unwrap();

    let (cert, key) = w.pem_files("c@x.de", false);
    let signed_wrap = openssl(
        &[
            "cms", "-decrypt", "-binary", "-inform", "DER", "-recip", &cert, "-inkey", &key,
        ],
        &input,
    );
    let signed = wrap::signed_unwrap(&signed_wrap).expect("signed-data entity");
    let signed_file = w.dir.path().join("signed.der");
    std::fs::write(&signed_file, &signed).unwrap();
    let ca = w.pki.ca_cert.display().to_string();
    let content = openssl(
        &[
            "cms", "-verify", "-binary", "-inform", "DER", "-CAfile", &ca, "-purpose", "any",
        ],
        &signed_file,
    );
    assert_eq!(content, wrap::rfc822_wrap(&wrap::with_dienstkennung(MAIL)));

    // the signer certificate the CLI reports is a's signing certificate
    let signer_out = w.dir.path().join("signer.pem");
    let out = Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-noverify"])
        .arg("-in")
        .arg(&signed_file)
        .arg("-signer")
        .arg(&signer_out)
        .output()
        .unwrap();
    assert!(out.status.success());
    let signer = X509::from_pem(&std::fs::read(&signer_out).unwrap()).unwrap();
    let a = w.keys.account("a@x.de").unwrap();
    assert_eq!(signer.to_der().unwrap(), a.signing.cert.to_der().unwrap());
}

#[test]
fn openssl_cms_refuses_a_signature_kim_cm_made_over_other_content() {
    // the CLI is not a rubber stamp: change one content byte and it refuses
    let w = world(&["a@x.de", "b@x.de"]);
    let a = w.keys.account("a@x.de").unwrap();
    let attr = cms::recipient_emails::attribute(&[(&a.encryption[0].cert, "a@x.de")]).unwrap();
    let mut der = cms::sign(
        &[
            b"Content-Type: message/rfc822\r\n\r\n",
            b"Subject: x\r\n\r\nbody\r\n",
        ],
        &a.signing.cert,
        &a.signing.key,
        &attr,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let at = der.windows(4).position(|w| w == b"body").unwrap();
    der[at] = b'B';
    let input = w.dir.path().join("bad.der");
    std::fs::write(&input, &der).unwrap();
    let ca = w.pki.ca_cert.display().to_string();
    let out = Command::new("openssl")
        .args([
            "cms", "-verify", "-binary", "-inform", "DER", "-CAfile", &ca,
        ])
        .args(["-purpose", "any", "-in"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        cms::verify(&der, &w.trust).status,
        cms::SignatureStatus::IntegrityViolated
    );
}
