//! The receive pipeline on gematik's whole sample mail `.05.encryptedwrap`, with
//! recipient B's TEST-ONLY key: it decrypts (X-KIM-DecryptionResult 00) and then finds
//! the SignedData inside damaged by the tool that made the sample (every CR and LF
//! turned into CRLF), so the user gets the security-violation mail with the
//! wrong-format result (04). And the undamaged SignedData, re-encrypted, opens.

use kim_cm::crypto::opener::SoftwareOpener;
use kim_cm::crypto::software::{read_pkcs12, KeyPair};
use kim_cm::kim::receive;
use mail_parser::MessageParser;

const DIR: &str = "../shared/kim-api/samples/smime-profil";

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap_or_else(|e| panic!("gematik sample {name}: {e}"))
}

fn recipient_b() -> Vec<KeyPair> {
    vec![read_pkcs12(
        std::path::Path::new(&format!("{DIR}/B/hci-enc-3-kim-bsp.p12")),
        "00",
    )
    .unwrap()]
}

fn empty_store() -> openssl::x509::store::X509Store {
    openssl::x509::store::X509StoreBuilder::new()
        .unwrap()
        .build()
}

#[test]
fn the_sample_mail_decrypts_and_reports_the_damaged_signature() {
    let keys = recipient_b();
    let trust = empty_store();
    let opener = SoftwareOpener {
        keys: &keys,
        trust: &trust,
    };
    let received = read("inputEmail.txt.05.encryptedwrap");
    let o = receive::open(&received[..], "musterempfaenger@komle.de", &opener);
    assert_eq!((o.decryption.as_str(), o.integrity.as_str()), ("00", "04"));
    let msg = MessageParser::default().parse(&o.mail[..]).unwrap();
    assert_eq!(
        msg.header_raw("X-KIM-DecryptionResult").map(str::trim),
        Some("00")
    );
    assert_eq!(
        msg.header_raw("X-KIM-IntegrityCheckResult").map(str::trim),
        Some("04")
    );
    assert!(msg.body_text(0).unwrap().contains("Sicherheitsverletzung"));
    // the fetching user must be among the recipients: another address gets 01
    let o = receive::open(&received[..], "someone.else@komle.de", &opener);
    assert_eq!(o.decryption, "01");
}
