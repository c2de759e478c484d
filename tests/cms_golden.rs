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
    let v = cms::verify(
        &read("inputEmail.txt.02.signedcms"),
        &store_of(&["A/GEM.RCA2-TEST-ONLY.pem"]),
    );
    assert_eq!(v.status, cms::SignatureStatus::CertPathInvalid);
    assert_eq!(v.content.unwrap(), read("inputEmail.txt.01.rfc822wrap"));
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
