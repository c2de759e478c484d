//! Profile conformance of kim-cm's output where it counts: the outer mail as the
//! upstream MTA received it. kim-cm seals in front of a real Postfix + Dovecot; each
//! mail is fetched straight from Dovecot over POP3S (not through kim-cm) and handed
//! to `tests/clients/cms_conformance.py`, which parses it with an independent
//! ASN.1 parser (Python's asn1crypto, the CMS structures declared from the RFCs)
//! and the `openssl` command line, and checks every header field, OID and parameter
//! of gematik's KIM S/MIME profile (gemSMIME_KOMLE, gemSpec_CM_KOMLE).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::kimcm::{curl, url_with_login, write_file, KimCm};
use common::peers::{PeerUser, RealFachdienst};
use openssl::pkcs12::Pkcs12;

const ALICE: (&str, &str) = ("alice@praxis.kim.test", "alice-Secret-1");
const BOB: (&str, &str) = ("bob@praxis.kim.test", "bob-Secret-2");
const CAROL: (&str, &str) = ("carol@praxis.kim.test", "carol-Secret-3");

/// The checker, next to this test's sources.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/cms_conformance.py"
);

/// The distribution's Python, which has `python3-asn1crypto` (installed by
/// `.ci/run`); a `python3` earlier in PATH may be another installation without it.
fn system_python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// One account's certificates and keys as PEM files, for the checker.
struct Pems {
    address: &'static str,
    /// The encryption certificate as the directory holds it.
    enc_cert: PathBuf,
    enc_key: PathBuf,
    sign_cert: PathBuf,
}

fn pems(pki: &kim_cm::testbed::pki::TestPki, i: usize, address: &'static str, out: &Path) -> Pems {
    let password = std::fs::read_to_string(&pki.password_file).unwrap();
    let password = password.lines().next().unwrap_or_default();
    let open = |p: &Path| {
        Pkcs12::from_der(&std::fs::read(p).unwrap())
            .unwrap()
            .parse2(password)
            .unwrap()
    };
    let a = &pki.accounts[i];
    assert_eq!(a.address, address);
    let enc = open(&a.encryption_pkcs12);
    let sign = open(&a.signing_pkcs12);
    let enc_cert = pki.directory.join(format!("{address}.pem"));
    assert_eq!(
        std::fs::read(&enc_cert).unwrap(),
        enc.cert.as_ref().unwrap().to_pem().unwrap(),
        "the directory holds {address}'s encryption certificate"
    );
    Pems {
        address,
        enc_cert,
        enc_key: write_file(
            out,
            &format!("{address}.enc.key"),
            &enc.pkey.unwrap().private_key_to_pem_pkcs8().unwrap(),
        ),
        sign_cert: write_file(
            out,
            &format!("{address}.sign.pem"),
            &sign.cert.unwrap().to_pem().unwrap(),
        ),
    }
}

/// Runs the checker on `mail`, decrypting as `reader`; returns its report. Panics
/// with the report when it finds a violation.
fn conformance(
    mail: &Path,
    reader: &Pems,
    ca: &Path,
    signer: &Pems,
    recipients: &[&Pems],
    hidden: &[&str],
) -> serde_json::Value {
    let mut cmd = Command::new(system_python());
    cmd.arg(SCRIPT)
        .arg(mail)
        .arg(&reader.enc_cert)
        .arg(&reader.enc_key)
        .arg(ca)
        .arg("--signer")
        .arg(&signer.sign_cert);
    for r in recipients {
        cmd.arg("--recipient")
            .arg(format!("{}={}", r.address, r.enc_cert.display()));
    }
    for h in hidden {
        cmd.args(["--hidden", h]);
    }
    let out = cmd
        .output()
        .expect("python3 with asn1crypto (.ci/run installs python3-asn1crypto)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} does not conform to the KIM profile (read as {}):\n{report}\n{}",
        mail.display(),
        reader.address,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "conformance report for {} (read as {}):\n{report}",
        mail.display(),
        reader.address
    );
    serde_json::from_str(&report).unwrap()
}

fn submit(k: &KimCm, rf: &RealFachdienst, file: &Path, rcpt: &[&str]) {
    let url = url_with_login(
        "smtp",
        &k.smtp.unwrap().to_string(),
        &format!("{}#{}#1#KOM_LE#7", ALICE.0, rf.smtps_addr()),
        ALICE.1,
        "",
    );
    let mut args = vec![
        "--url",
        &url,
        "--mail-from",
        ALICE.0,
        "--upload-file",
        file.to_str().unwrap(),
    ];
    for r in rcpt {
        args.extend(["--mail-rcpt", r]);
    }
    let (code, _, err) = curl(&args);
    assert_eq!(code, 0, "{err}\n{}\n{}", k.log(), rf.log_text());
}

/// Message `n` of `user`'s mailbox straight from Dovecot (POP3S), not through kim-cm.
fn fetch_direct(rf: &RealFachdienst, user: (&str, &str), n: usize, out: &Path) -> PathBuf {
    let url = url_with_login(
        "pop3s",
        &rf.pop3s_addr().to_string(),
        user.0,
        user.1,
        &format!("/{n}"),
    );
    let ca = rf.ca_pem_path().display().to_string();
    let (code, mail, err) = curl(&["--url", &url, "--cacert", &ca]);
    assert_eq!(code, 0, "POP3S RETR {n} for {}: {err}", user.0);
    write_file(out, &format!("{}-{n}.eml", user.0), &mail)
}

fn sorted(v: &serde_json::Value) -> Vec<String> {
    let mut s: Vec<String> = serde_json::from_value(v.clone()).unwrap();
    s.sort();
    s
}

#[test]
fn sealed_mail_at_dovecot_conforms_to_the_kim_profile() {
    let rf = RealFachdienst::start(&[
        PeerUser::new(ALICE.0, ALICE.1),
        PeerUser::new(BOB.0, BOB.1),
        PeerUser::new(CAROL.0, CAROL.1),
    ])
    .expect("Postfix and Dovecot (installed by .ci/run)");
    let work = tempfile::tempdir().unwrap();
    let pki =
        kim_cm::testbed::pki::make(&work.path().join("pki"), &[ALICE.0, BOB.0, CAROL.0]).unwrap();
    let alice = pems(&pki, 0, ALICE.0, work.path());
    let bob = pems(&pki, 1, BOB.0, work.path());
    let carol = pems(&pki, 2, CAROL.0, work.path());

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
         [upstream]\nca_file = \"{}\"\nsmtp_tls = \"implicit\"\npop3_tls = \"implicit\"\n\
         [directory]\nfolder = \"{}\"\n[trust]\nca_file = \"{}\"\n{accounts}",
        rf.ca_pem_path().display(),
        pki.directory.display(),
        pki.ca_cert.display(),
    ));

    // 1: alice to bob; the sender gets a RecipientInfo too (KOM-LE-A_2111-01)
    let mail1 = format!(
        "From: Praxis Alice <{a}>\r\nTo: Dr. Bob <{b}>\r\nSubject: Befund 1\r\n\
         Date: Tue, 24 Nov 2026 10:00:00 +0100\r\nMessage-ID: <conformance-1@praxis.kim.test>\r\n\
         X-KIM-Sendersystem: kim-cm-conformance;1.0\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHallo Bob,\r\nanbei der Befund.\r\n",
        a = ALICE.0,
        b = BOB.0
    );
    let f1 = write_file(work.path(), "mail1.eml", mail1.as_bytes());
    submit(&k, &rf, &f1, &[BOB.0]);
    rf.wait_for_messages(BOB.0, 1, Duration::from_secs(30));
    let at_bob = fetch_direct(&rf, BOB, 1, work.path());
    let ca = pki.ca_cert.as_path();
    let r1 = conformance(&at_bob, &bob, ca, &alice, &[&alice, &bob], &[]);
    // the sender's own RecipientInfo opens the same mail
    let r1a = conformance(&at_bob, &alice, ca, &alice, &[&alice, &bob], &[]);
    let emails = sorted(&r1["auth_enveloped_data"]["recipient_emails"]);
    assert_eq!(emails, [ALICE.0, BOB.0], "{r1}");
    assert_eq!(
        r1["signed_data"]["signed_attributes"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(r1["inner"]["subject"], "Befund 1", "{r1}");
    assert_eq!(r1a["auth_enveloped_data"], r1["auth_enveloped_data"]);

    // 2: To bob, Cc alice herself, Bcc carol: three RecipientInfos, carol hidden
    let mail2 = format!(
        "From: Praxis Alice <{a}>\r\nTo: <{b}>\r\nCc: <{a}>\r\nBcc: <{c}>\r\nSubject: Befund 2\r\n\
         Date: Tue, 24 Nov 2026 10:05:00 +0100\r\nMessage-ID: <conformance-2@praxis.kim.test>\r\n\
         X-KIM-Dienstkennung: KIM-Mail;Default;V1.0\r\n\r\nmit Blindkopie\r\n",
        a = ALICE.0,
        b = BOB.0,
        c = CAROL.0
    );
    let f2 = write_file(work.path(), "mail2.eml", mail2.as_bytes());
    submit(&k, &rf, &f2, &[BOB.0, ALICE.0, CAROL.0]);
    rf.wait_for_messages(CAROL.0, 1, Duration::from_secs(30));
    let at_carol = fetch_direct(&rf, CAROL, 1, work.path());
    let r2 = conformance(
        &at_carol,
        &carol,
        ca,
        &alice,
        &[&alice, &bob, &carol],
        &[CAROL.0],
    );
    let emails = sorted(&r2["auth_enveloped_data"]["recipient_emails"]);
    assert_eq!(emails, [ALICE.0, BOB.0, CAROL.0], "{r2}");
    assert_eq!(r2["inner"]["subject"], "Befund 2", "{r2}");
    // a fresh nonce (and key) per mail
    assert_ne!(
        r1["auth_enveloped_data"]["gcm_nonce"],
        r2["auth_enveloped_data"]["gcm_nonce"]
    );
}
