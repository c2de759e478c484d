//! Interop the other way (issue 3, point 16): what the `openssl cms` command line
//! seals with the profile's key options (RSASSA-PSS, RSAES-OAEP, AES-256-GCM),
//! kim-cm verifies, decrypts and opens.

use std::path::{Path, PathBuf};
use std::process::Command;

use kim_cm::cms::{self, ber, der};
use kim_cm::crypto::opener::SoftwareOpener;
use kim_cm::crypto::software::{AccountKeys, SoftwareKeys};
use kim_cm::kim::{receive, wrap};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

const INNER: &[u8] = b"From: <a@x.de>\r\nTo: <b@x.de>\r\nSubject: vom CLI\r\n\r\ncli-marker-77\r\n";

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Certificate and key of `pair` in one PEM file.
fn pem(dir: &Path, name: &str, pair: &kim_cm::crypto::software::KeyPair) -> String {
    let p: PathBuf = dir.join(name);
    let mut data = pair.cert.to_pem().unwrap();
    data.extend_from_slice(&pair.key.private_key_to_pem_pkcs8().unwrap());
    std::fs::write(&p, data).unwrap();
    p.display().to_string()
}

struct Cli {
    dir: tempfile::TempDir,
    a: AccountKeys,
    b: AccountKeys,
    ca: X509,
    signed: Vec<u8>,
    enveloped: Vec<u8>,
}

/// a signs and encrypts for b with the CLI.
fn cli_sealed() -> Cli {
    let dir = tempfile::tempdir().unwrap();
    let pki = kim_cm::testbed::pki::make(dir.path(), &["a@x.de", "b@x.de"]).unwrap();
    let read = |i: usize| {
        let acc = &pki.accounts[i];
        SoftwareKeys::read_account(
            &acc.signing_pkcs12,
            &acc.encryption_pkcs12,
            Some(&pki.password_file),
        )
        .unwrap()
    };
    let (a, b) = (read(0), read(1));
    let d = dir.path();
    let content = d.join("content");
    std::fs::write(&content, wrap::rfc822_wrap(INNER)).unwrap();
    let signer = pem(d, "a.sig.pem", &a.signing);
    let signed = d.join("signed.der");
    // -keyopt applies to the -signer before it
    openssl(&[
        "cms",
        "-sign",
        "-binary",
        "-nodetach",
        "-outform",
        "DER",
        "-md",
        "sha256",
        "-signer",
        &signer,
        "-inkey",
        &signer,
        "-keyopt",
        "rsa_padding_mode:pss",
        "-keyopt",
        "rsa_pss_saltlen:32",
        "-in",
        content.to_str().unwrap(),
        "-out",
        signed.to_str().unwrap(),
    ]);
    let signed = std::fs::read(&signed).unwrap();
    let wrapped = d.join("signedwrap");
    std::fs::write(&wrapped, wrap::signed_wrap(&signed)).unwrap();
    let recip = pem(d, "b.enc.pem", &b.encryption[0]);
    let enc = d.join("enc.der");
    openssl(&[
        "cms",
        "-encrypt",
        "-binary",
        "-aes-256-gcm",
        "-outform",
        "DER",
        "-recip",
        &recip,
        "-keyopt",
        "rsa_padding_mode:oaep",
        "-keyopt",
        "rsa_oaep_md:sha256",
        "-keyopt",
        "rsa_mgf1_md:sha256",
        "-in",
        wrapped.to_str().unwrap(),
        "-out",
        enc.to_str().unwrap(),
    ]);
    let enveloped = std::fs::read(&enc).unwrap();
    let ca = X509::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap();
    Cli {
        dir,
        a,
        b,
        ca,
        signed,
        enveloped,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn kim_cm_verifies_the_clis_pss_signature() {
    let c = cli_sealed();
    // what the CLI wrote really is RSASSA-PSS with SHA-256 and MGF1-SHA-256
    assert!(contains(&c.signed, &der::oid(cms::oid::RSASSA_PSS)));
    let mut store = X509StoreBuilder::new().unwrap();
    store.add_cert(c.ca.clone()).unwrap();
    let v = cms::verify(&c.signed, &store.build());
    assert_eq!(v.status, cms::SignatureStatus::Valid);
    assert_eq!(v.content.unwrap(), wrap::rfc822_wrap(INNER));
    assert_eq!(
        v.signer.unwrap().to_der().unwrap(),
        c.a.signing.cert.to_der().unwrap()
    );
    // without the CA the path fails, the mathematics does not
    let v = cms::verify(&c.signed, &X509StoreBuilder::new().unwrap().build());
    assert_eq!(v.status, cms::SignatureStatus::CertPathInvalid);
    drop(c.dir);
}

#[test]
fn kim_cm_decrypts_the_clis_oaep_gcm_structure() {
    let c = cli_sealed();
    assert!(contains(
        &c.enveloped,
        &der::oid(cms::oid::AUTH_ENVELOPED_DATA)
    ));
    assert!(contains(&c.enveloped, &der::oid(cms::oid::RSAES_OAEP)));
    assert!(contains(&c.enveloped, &der::oid(cms::oid::AES256_GCM)));
    let k = &c.b.encryption[0];
    let d = cms::decrypt(&c.enveloped, &k.cert, &k.key).unwrap();
    assert_eq!(d.content, wrap::signed_wrap(&c.signed));
    // the CLI writes no recipient-emails (it cannot)
    assert!(d.recipient_emails.is_none());
    // not for a's key
    let ka = &c.a.encryption[0];
    assert_eq!(
        cms::decrypt(&c.enveloped, &ka.cert, &ka.key).unwrap_err(),
        cms::OpenError::NotForThisKey
    );
}

#[test]
fn the_whole_receive_pipeline_on_the_clis_mail() {
    // The CLI can write neither the unprotected nor the signed recipient-emails
    // attribute. Give the structure the unprotected one (as a KIM sender would) and
    // open it: decrypted (00), the signature valid, and the missing signed attribute
    // reported as the recipient-emails mismatch (09) with the security-violation
    // mail. That is the right verdict for a signature made without the attribute.
    let c = cli_sealed();
    let (ci, _) = ber::read(&c.enveloped).unwrap();
    let ci = ci.children().unwrap();
    let fields: Vec<&[u8]> = ci[1].children().unwrap()[0]
        .children()
        .unwrap()
        .iter()
        .map(|t| t.raw)
        .collect();
    let attr =
        cms::recipient_emails::attribute(&[(c.b.encryption[0].cert.as_ref(), "b@x.de")]).unwrap();
    let unauth = der::tlv(0xa2, &attr);
    let mut with_attr = fields.clone();
    with_attr.push(&unauth);
    let aed = der::seq(&[ci[0].raw, &der::tlv(0xa0, &der::seq(&with_attr))]);
    let mut mail = b"From: <a@x.de>\r\nTo: <b@x.de>\r\nSubject: KOM-LE-Nachricht\r\n\
X-KOM-LE-Version: 1.0\r\nMIME-Version: 1.0\r\n\
Content-Type: application/pkcs7-mime; smime-type=authenticated-enveloped-data; name=smime.p7m\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    wrap::append_base64_lines(&mut mail, &aed);

    let mut store = X509StoreBuilder::new().unwrap();
    store.add_cert(c.ca.clone()).unwrap();
    let trust = store.build();
    let opener = SoftwareOpener {
        keys: &c.b.encryption,
        trust: &trust,
    };
    let o = receive::open(&mail[..], "b@x.de", &opener);
    assert_eq!((o.decryption.as_str(), o.integrity.as_str()), ("00", "09"));
    let text = String::from_utf8_lossy(&o.mail);
    assert!(text.contains("Sicherheitsverletzung") && text.contains("cli-marker-77"));
}
