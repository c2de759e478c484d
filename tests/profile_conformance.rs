//! Issue 3, point 17: kim-cm's output, as it reaches a real MTA (Postfix, delivered by
//! Dovecot and fetched from Dovecot directly, not through kim-cm), checked against
//! every OID and parameter of gematik's KIM S/MIME profile by an independent ASN.1
//! parser (Python's asn1crypto, `tests/clients/kim_profile_check.py`) and the
//! `openssl cms` command line.

mod common;

use std::process::Command;
use std::time::Duration;

use common::kimcm::{curl, url_with_login, write_file, KimCm};
use common::peers::{PeerUser, RealFachdienst};

const ALICE: (&str, &str) = ("alice@praxis.kim.test", "alice-Secret-1");
const BOB: (&str, &str) = ("bob@praxis.kim.test", "bob-Secret-2");

/// The distribution's Python, which has `python3-asn1crypto` from `.ci/run`.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

#[test]
fn the_mail_at_dovecot_conforms_to_the_profile() {
    let rf = RealFachdienst::start(&[PeerUser::new(ALICE.0, ALICE.1), PeerUser::new(BOB.0, BOB.1)])
        .expect("Postfix and Dovecot (installed by .ci/run)");
    let work = tempfile::tempdir().unwrap();
    let pki = kim_cm::testbed::pki::make(&work.path().join("pki"), &[ALICE.0, BOB.0]).unwrap();
    let mut accounts = String::new();
    for a in &pki.accounts {
        accounts.push_str(&format!(
            "[[account]]\naddress = \"{}\"\nsmtp_server = \"{}\"\npop3_server = \"{}\"\n\
             signing_pkcs12 = \"{}\"\nencryption_pkcs12 = \"{}\"\npkcs12_password_file = \"{}\"\n",
            a.address,
            rf.smtps_addr(),
            rf.pop3s_addr(),
            a.signing_pkcs12.display(),
            a.encryption_pkcs12.display(),
            pki.password_file.display()
        ));
    }
    let k = KimCm::serve(&format!(
        "[proxy]\ndata_dir = \"{{dir}}/data\"\n\
         [[smtp_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
         [[pop3_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
         [upstream]\nca_file = \"{}\"\nsmtp_tls = \"implicit\"\npop3_tls = \"implicit\"\n\
         [directory]\nfolder = \"{}\"\n[trust]\nca_file = \"{}\"\n{accounts}",
        rf.ca_pem_path().display(),
        pki.directory.display(),
        pki.ca_cert.display(),
    ));

    // To bob, Bcc alice herself: two RecipientInfos, no Bcc in the outer header
    let mail = format!(
        "From: Praxis Alice <{a}>\r\nTo: <{b}>\r\nBcc: <{a}>\r\nSubject: Konformanz\r\n\
         Date: Tue, 24 Nov 2026 10:00:00 +0100\r\nMessage-ID: <conf-1@praxis.kim.test>\r\n\
         X-KIM-Sendersystem: kim-cm-test;1.0\r\n\r\nconformance body\r\n",
        a = ALICE.0,
        b = BOB.0
    );
    let file = write_file(k.dir.path(), "m.eml", mail.as_bytes());
    let url = url_with_login(
        "smtp",
        &k.smtp.unwrap().to_string(),
        &format!("{}#{}#1#KOM_LE#7", ALICE.0, rf.smtps_addr()),
        ALICE.1,
        "",
    );
    let (code, _, err) = curl(&[
        "--url",
        &url,
        "--mail-from",
        ALICE.0,
        "--mail-rcpt",
        BOB.0,
        "--mail-rcpt",
        ALICE.0,
        "--upload-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}\n{}\n{}", k.log(), rf.log_text());
    rf.wait_for_messages(BOB.0, 1, Duration::from_secs(20));

    // bob's copy straight from Dovecot (POP3S), not through kim-cm
    let direct = url_with_login("pop3s", &rf.pop3s_addr().to_string(), BOB.0, BOB.1, "/1");
    let ca = rf.ca_pem_path().display().to_string();
    let (code, got, err) = curl(&["--url", &direct, "--cacert", &ca]);
    assert_eq!(code, 0, "{err}");
    let mail_file = write_file(work.path(), "at-dovecot.eml", &got);

    // bob's encryption key for the CLI's decryption
    let bob = kim_cm::crypto::software::SoftwareKeys::read_account(
        &pki.accounts[1].signing_pkcs12,
        &pki.accounts[1].encryption_pkcs12,
        Some(&pki.password_file),
    )
    .unwrap();
    let mut pem = bob.encryption[0].cert.to_pem().unwrap();
    pem.extend_from_slice(&bob.encryption[0].key.private_key_to_pem_pkcs8().unwrap());
    let key_file = write_file(work.path(), "bob.enc.pem", &pem);

    let out = Command::new(SYSTEM_PYTHON)
        .arg("tests/clients/kim_profile_check.py")
        .args([&mail_file, &key_file, &pki.ca_cert])
        .arg("2")
        .output()
        .expect("python3 with asn1crypto (.ci/run installs python3-asn1crypto)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "profile violations:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["violations"], serde_json::json!([]));
    assert_eq!(
        v["recipient_emails"],
        serde_json::json!([ALICE.0, BOB.0]),
        "{report}"
    );
    assert_eq!(v["signed_attributes"].as_array().unwrap().len(), 6);
}
