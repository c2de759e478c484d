//! gematik's S/MIME sample (TEST-ONLY keys of recipients A and B): kim-cm's own CMS
//! reader opens the AuthEnvelopedData that Debian's OpenSSL 3.0 cannot parse.

use kim_cm::cms::{self, OpenError};
use openssl::pkey::PKey;
use openssl::x509::X509;

const DIR: &str = "../shared/kim-api/samples/smime-profil";

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap_or_else(|e| panic!("gematik sample {name}: {e}"))
}

fn key_of(dir: &str, stem: &str) -> (X509, PKey<openssl::pkey::Private>) {
    let cert = X509::from_pem(&read(&format!("{dir}/{stem}.pem"))).unwrap();
    let key = PKey::private_key_from_pem(&read(&format!("{dir}/{stem}.prv.pem"))).unwrap();
    (cert, key)
}

#[test]
fn both_recipients_decrypt_the_sample_to_the_signed_wrap_exactly() {
    let enc = read("inputEmail.txt.04.encryptedcms");
    let want = read("inputEmail.txt.03.signedwrap");
    for (dir, stem) in [("A", "hci-enc-2-kim-bsp"), ("B", "hci-enc-3-kim-bsp")] {
        let (cert, key) = key_of(dir, stem);
        let d = cms::decrypt(&enc, &cert, &key).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(d.content, want, "recipient {dir}");
        let re = d.recipient_emails.expect("unauthAttrs recipient-emails");
        assert_eq!(re.for_cert(&cert).len(), 1, "{dir}'s certificate is listed");
    }
}

#[test]
fn recipient_emails_name_both_parties_with_their_serials() {
    let enc = read("inputEmail.txt.04.encryptedcms");
    let re = cms::recipient_emails_of(&enc).unwrap().unwrap();
    let by_serial: Vec<(String, String)> = re
        .entries
        .iter()
        // INTEGER content: a leading 00 keeps a high first bit positive
        .map(|e| {
            (
                e.email.clone(),
                hex::encode_upper(e.serial.strip_prefix(&[0]).unwrap_or(&e.serial)),
            )
        })
        .collect();
    assert!(
        by_serial.contains(&("mustersender@komle.de".into(), "FF22A88FFD24".into())),
        "{by_serial:?}"
    );
    assert!(
        by_serial.contains(&("musterempfaenger@komle.de".into(), "9F52A80078E4".into())),
        "{by_serial:?}"
    );
    // the attribute's own bytes, for the comparison with the signed copy (KOM-LE-A_2127)
    assert_eq!(&re.attribute_der[..2], &[0x30, 0x82]);
}

#[test]
fn tampering_and_foreign_keys_give_errors_not_plaintext() {
    let enc = read("inputEmail.txt.04.encryptedcms");
    let (cert, key) = key_of("A", "hci-enc-2-kim-bsp");
    // a flipped byte in the ciphertext (well inside the encrypted content)
    let mut flipped = enc.clone();
    flipped[2000] ^= 0x01;
    assert_eq!(
        cms::decrypt(&flipped, &cert, &key).unwrap_err(),
        OpenError::Corrupted
    );
    // a certificate that is not among the recipients
    let other = tempfile::tempdir().unwrap();
    let pki = kim_cm::testbed::pki::make(other.path(), &["x@y.de"]).unwrap();
    let pw = std::fs::read_to_string(&pki.password_file).unwrap();
    let kp = kim_cm::crypto::software::read_pkcs12(&pki.accounts[0].encryption_pkcs12, pw.trim())
        .unwrap();
    assert_eq!(
        cms::decrypt(&enc, &kp.cert, &kp.key).unwrap_err(),
        OpenError::NotForThisKey
    );
    // A's certificate with B's key: the key unwrap fails
    let (_, key_b) = key_of("B", "hci-enc-3-kim-bsp");
    assert_eq!(
        cms::decrypt(&enc, &cert, &key_b).unwrap_err(),
        OpenError::Corrupted
    );
    // truncated and garbage input
    assert!(matches!(
        cms::decrypt(&enc[..1000], &cert, &key),
        Err(OpenError::WrongFormat(_))
    ));
    assert!(matches!(
        cms::decrypt(b"garbage", &cert, &key),
        Err(OpenError::WrongFormat(_))
    ));
}

fn store_of(certs: &[&str]) -> openssl::x509::store::X509Store {
    let mut b = openssl::x509::store::X509StoreBuilder::new().unwrap();
    for c in certs {
        b.add_cert(X509::from_pem(&read(c)).unwrap()).unwrap();
    }
    b.build()
}

#[test]
fn the_signed_sample_verifies_to_the_rfc822_wrap_exactly() {
    // The signer's CA (GEM.SMCB-CA24 TEST-ONLY) is not in the sample; the trust anchor
    // given is the sample's root GEM.RCA2-TEST-ONLY, so the path cannot be built and
    // the verdict is "math right, path not valid" (05).
    let der = read("inputEmail.txt.02.signedcms");
    let v = cms::verify(&der, &store_of(&["A/GEM.RCA2-TEST-ONLY.pem"]));
    assert_eq!(v.status, cms::SignatureStatus::CertPathInvalid);
    assert_eq!(
        *v.content.unwrap(),
        read("inputEmail.txt.01.rfc822wrap")[..]
    );
    // the signed recipient-emails equals the unprotected one of .04 byte for byte
    let signed = v.recipient_emails.unwrap();
    let unprotected = cms::recipient_emails_of(&read("inputEmail.txt.04.encryptedcms"))
        .unwrap()
        .unwrap();
    assert_eq!(signed.attribute_der, unprotected.attribute_der);
    assert!(v.signer.is_some());
}

#[test]
fn the_damaged_signed_data_inside_the_sample_is_wrong_format() {
    // inside .03 the tool that made the sample turned every CR and LF into CRLF
    let wrapped = read("inputEmail.txt.03.signedwrap");
    let der = kim_cm::kim::wrap::signed_unwrap(&wrapped).unwrap();
    assert_eq!(
        cms::verify(&der, &store_of(&[])).status,
        cms::SignatureStatus::WrongFormat
    );
    // a flipped byte in the undamaged signature: integrity violated
    let mut good = read("inputEmail.txt.02.signedcms");
    let n = good.len();
    good[n - 10] ^= 0x01;
    assert_eq!(
        cms::verify(&good, &store_of(&[])).status,
        cms::SignatureStatus::IntegrityViolated
    );
}

fn sample_key_a() -> kim_cm::crypto::software::KeyPair {
    kim_cm::crypto::software::read_pkcs12(
        std::path::Path::new(&format!("{DIR}/A/hci-enc-2-kim-bsp.p12")),
        "00",
    )
    .unwrap()
}

#[test]
fn kim_cm_encrypts_and_every_recipient_opens() {
    let dir = tempfile::tempdir().unwrap();
    let pki = kim_cm::testbed::pki::make(dir.path(), &["a@x.de", "b@x.de"]).unwrap();
    let pw = std::fs::read_to_string(&pki.password_file).unwrap();
    let keys: Vec<_> = pki
        .accounts
        .iter()
        .map(|a| kim_cm::crypto::software::read_pkcs12(&a.encryption_pkcs12, pw.trim()).unwrap())
        .collect();
    // the attribute of gematik's sample stands in for a real one here
    let attr = cms::recipient_emails_of(&read("inputEmail.txt.04.encryptedcms"))
        .unwrap()
        .unwrap()
        .attribute_der;
    let content = b"Content-Type: text/plain\r\n\r\nsecret".to_vec();
    let der = cms::encrypt(&[&content], &[&keys[0].cert, &keys[1].cert], &attr).unwrap();
    for k in &keys {
        let d = cms::decrypt(&der, &k.cert, &k.key).unwrap();
        assert_eq!(d.content, content);
        assert_eq!(d.recipient_emails.unwrap().attribute_der, attr);
    }
    // two encryptions of the same content differ (fresh key and nonce)
    assert_ne!(
        der,
        cms::encrypt(&[&content], &[&keys[0].cert], &attr).unwrap()
    );
}

#[test]
fn openssl_cms_decrypts_what_kim_cm_encrypts() {
    let dir = tempfile::tempdir().unwrap();
    let a = sample_key_a();
    let attr = cms::recipient_emails_of(&read("inputEmail.txt.04.encryptedcms"))
        .unwrap()
        .unwrap()
        .attribute_der;
    let content = read("inputEmail.txt.03.signedwrap");
    let der = cms::encrypt(&[&content], &[&a.cert], &attr).unwrap();
    // Debian's OpenSSL 3.0.19 cannot parse AuthEnvelopedData with unauthAttrs (openssl
    // issue 26101; see docs): hand it the same structure without them.
    let (ci, _) = cms::ber::read(&der).unwrap();
    let ci = ci.children().unwrap();
    let aed = ci[1].children().unwrap()[0].children().unwrap();
    let kept: Vec<&[u8]> = aed
        .iter()
        .filter(|t| t.tag != 0xa2)
        .map(|t| t.raw)
        .collect();
    let stripped = cms::der::seq(&[ci[0].raw, &cms::der::tlv(0xa0, &cms::der::seq(&kept))]);
    let input = dir.path().join("m.der");
    std::fs::write(&input, stripped).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["cms", "-decrypt", "-binary", "-inform", "DER", "-in"])
        .arg(&input)
        .args([
            "-inkey",
            &format!("{DIR}/A/hci-enc-2-kim-bsp.prv.pem"),
            "-recip",
            &format!("{DIR}/A/hci-enc-2-kim-bsp.pem"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, content);
}

#[test]
fn the_undamaged_signed_sample_re_encrypted_opens_fully() {
    // .02 (undamaged) wrapped as in .03, encrypted by kim-cm for A's certificate with the
    // signed recipient-emails attribute of .02, under the outer header of .05
    let a = sample_key_a();
    let signed = read("inputEmail.txt.02.signedcms");
    let wrapped = kim_cm::kim::wrap::signed_wrap(&signed);
    let no_trust = store_of(&[]);
    let attr = cms::verify(&signed, &no_trust)
        .recipient_emails
        .unwrap()
        .attribute_der;
    let enveloped = cms::encrypt(&[&wrapped], &[&a.cert], &attr).unwrap();
    let outer_sample = read("inputEmail.txt.05.encryptedwrap");
    let (head, _) = kim_cm::kim::header::split(&outer_sample);
    let mut mail = head.to_vec();
    mail.extend_from_slice(b"\r\n");
    kim_cm::kim::wrap::append_base64_lines(&mut mail, &enveloped);

    // Trust anchor: the signer's own certificate, taken from the SignedData, accepted as
    // a partial chain (the sample does not contain its CA, GEM.SMCB-CA24 TEST-ONLY).
    // The certificate expired in 2023, so the path is checked at the sample's signing
    // time, 2020-06-20 12:58:26 +0200.
    let signer = cms::verify(&signed, &no_trust).signer.unwrap();
    let mut b = openssl::x509::store::X509StoreBuilder::new().unwrap();
    b.add_cert(signer).unwrap();
    let mut param = openssl::x509::verify::X509VerifyParam::new().unwrap();
    param
        .set_flags(openssl::x509::verify::X509VerifyFlags::PARTIAL_CHAIN)
        .unwrap();
    param.set_time(1_592_650_706);
    b.set_param(&param).unwrap();
    let trust = b.build();
    let keys = vec![a];
    let opener = kim_cm::crypto::opener::SoftwareOpener {
        keys: &keys,
        trust: &trust,
    };
    let o = kim_cm::kim::receive::open(&mail[..], "mustersender@komle.de", &opener);
    assert_eq!(
        (o.decryption.as_str(), o.integrity.as_str()),
        ("00", "01"),
        "{}",
        String::from_utf8_lossy(&o.mail)
    );
    let text = String::from_utf8_lossy(&o.mail);
    assert!(text.contains("This is a message just to say hello."));
    assert!(text.contains("Die Nachricht wurde entschl"));
    assert!(
        text.starts_with("X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\n"),
        "{text}"
    );
}
