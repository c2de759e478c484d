//! The directory as the TI has it: a real OpenLDAP `slapd` over LDAPS holding
//! VZD-like entries, and a kim-cm that finds every party's encryption certificates
//! and KIM version there. Shown: mails sealed with certificates from LDAP, kept for
//! TTL_ENC_CERT so a directory that goes down stops no mail to known parties; the
//! rules on `komLeData` (A_19356-06 recipients without `+` removed from a large
//! mail with 4001, A_21387-01 an outdated Clientmodul told with 4017, A_23512 a
//! large mail for an account without `+` gives 4018); a recipient whose
//! certificates name two Telematik-IDs gets nothing (KOM-LE-A_2178, 4005); and the
//! directory's TLS with a client certificate when it demands one (A_21223-01).

mod common;

use std::path::{Path, PathBuf};

use common::kimcm::{write_file, KimCm, Sandbox};
use common::ldap::{pem_certs, with_ldap, Slapd, SlapdTls, VzdEntry};
use common::mail::{big_mail, fetch_as, header_value, second_kimcm, send_as};
use kim_cm::crypto::admission::telematik_id;
use kim_cm::testbed::ca::{make_tls_ca, TlsFiles};
use kim_cm::testbed::pki::extra_encryption_cert;

const MIB: usize = 1024 * 1024;

/// The encryption certificate(s) the sandbox made for `address`.
fn certs_of(sb: &Sandbox, address: &str) -> Vec<Vec<u8>> {
    pem_certs(&pki_dir(sb).join("directory").join(format!("{address}.pem")))
}

fn pki_dir(sb: &Sandbox) -> PathBuf {
    sb.dir.path().join("sb").join("pki")
}

/// slapd over LDAPS with `entries`, its TLS CA and server certificate in a temp
/// folder (kept alive by the first value); client certificates demanded when
/// `client_ca` is given.
fn start_slapd(
    entries: &[VzdEntry],
    client_ca: Option<&Path>,
) -> (tempfile::TempDir, TlsFiles, Slapd) {
    let dir = tempfile::tempdir().unwrap();
    let t = make_tls_ca(dir.path(), &[]).unwrap();
    let stls = SlapdTls {
        cert: &t.server_cert,
        key: &t.server_key,
        client_ca,
    };
    let slapd = Slapd::start(entries, &stls).unwrap();
    (dir, t, slapd)
}

/// The sandbox's two accounts in the directory with the given KIM versions; bob's
/// certificate on a child entry, as the VZD keeps them.
fn vzd(sb: &Sandbox, alice_version: Option<&str>, bob_version: Option<&str>) -> Vec<VzdEntry> {
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let mut b = VzdEntry::new(&bob, bob_version, Vec::new());
    b.child_certs = certs_of(sb, &bob);
    vec![
        VzdEntry::new(&alice, alice_version, certs_of(sb, &alice)),
        b,
    ]
}

fn small_mail(sb: &Sandbox, to: &str, subject: &str) -> PathBuf {
    let (alice, ..) = sb.account(0);
    let mail = format!(
        "From: <{alice}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@praxis-a.kim.test>\r\n\r\nBefund anbei.\r\n"
    );
    write_file(sb.dir.path(), &format!("{subject}.eml"), mail.as_bytes())
}

fn smtp(k: &KimCm) -> String {
    k.smtp.unwrap().to_string()
}

/// The stored mails of `address` that carry `X-KIM-Fehlermeldung: code`.
fn reports(sb: &Sandbox, address: &str, code: &str) -> Vec<String> {
    sb.stored_mails(address)
        .iter()
        .filter(|m| header_value(m, "X-KIM-Fehlermeldung").as_deref() == Some(code))
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect()
}

#[test]
fn mails_are_sealed_for_certificates_from_ldap_and_the_cache_outlives_the_directory() {
    let sb = Sandbox::start();
    let (bob, ..) = sb.account(1);
    let (_tls, t, mut slapd) = start_slapd(&vzd(&sb, Some("1.5+"), Some("1.5+")), None);
    let k = second_kimcm(&sb, |text| with_ldap(text, &slapd, &t.ca_cert, None));
    assert!(!k.log().contains("folder"), "no folder directory in use");

    let (code, err) = send_as(&sb, 0, &smtp(&k), &small_mail(&sb, &bob, "ldap-1"), &[&bob]);
    assert_eq!(code, 0, "{err}\n{}\n{}", k.log(), slapd.log());
    // bob opens it through the sandbox's own kim-cm: sealed for his key from LDAP
    let got = fetch_as(&sb, 1, &sb.addr("proxy_pop3"), 1);
    let text = String::from_utf8_lossy(&got);
    assert_eq!(
        header_value(&got, "X-KIM-DecryptionResult").as_deref(),
        Some("00"),
        "{text}"
    );
    assert!(text.contains("Befund anbei."));

    // the directory goes down: known parties come from the cache (TTL_ENC_CERT)
    slapd.stop();
    let (code, err) = send_as(&sb, 0, &smtp(&k), &small_mail(&sb, &bob, "ldap-2"), &[&bob]);
    assert_eq!(code, 0, "cached certificates are used: {err}\n{}", k.log());
    assert_eq!(sb.stored_mails(&bob).len(), 2);
    // a party not seen before cannot be looked up: a temporary error, nothing sent
    let carol = "carol@praxis-c.kim.test";
    let (code, err) = send_as(
        &sb,
        0,
        &smtp(&k),
        &small_mail(&sb, carol, "ldap-3"),
        &[carol],
    );
    assert_ne!(code, 0);
    assert!(err.contains("451 4.4.3"), "{err}");
    assert!(k.log().contains("directory lookup failed"), "{}", k.log());
    assert_eq!(sb.stored_mails(&bob).len(), 2);
}

/// Issue 9's fault matrix: a directory that hangs (slapd frozen with SIGSTOP:
/// connections are taken, nothing is answered) costs the client a temporary
/// error within the configured bound, never a 250; once it answers again the
/// client's retry arrives exactly once.
#[test]
fn a_hung_directory_gives_451_and_the_retry_arrives_once() {
    let sb = Sandbox::start();
    let (bob, ..) = sb.account(1);
    let (_tls, t, slapd) = start_slapd(&vzd(&sb, Some("1.5+"), Some("1.5+")), None);
    let k = second_kimcm(&sb, |text| {
        with_ldap(text, &slapd, &t.ca_cert, None).replace(
            "data_dir = \"{dir}/data\"\n",
            "data_dir = \"{dir}/data\"\nconnect_timeout_secs = 1\n",
        )
    });
    slapd.pause();
    let mail = small_mail(&sb, &bob, "ldap-hung");
    let (code, err) = send_as(&sb, 0, &smtp(&k), &mail, &[&bob]);
    slapd.resume();
    assert_ne!(code, 0, "no 250 while the directory hangs");
    assert!(err.contains("451 4.4.3"), "{err}\n{}", k.log());
    let log = k.log();
    // the hang is in the TLS handshake: connect_timeout_secs bounds it
    assert!(
        log.contains("directory lookup failed: the directory is unavailable"),
        "{log}"
    );
    assert!(
        sb.stored_mails(&bob).is_empty(),
        "nothing reached the Fachdienst"
    );

    let (code, err) = send_as(&sb, 0, &smtp(&k), &mail, &[&bob]);
    assert_eq!(code, 0, "{err}\n{}", k.log());
    assert_eq!(sb.stored_mails(&bob).len(), 1, "the retry arrives once");
}

#[test]
fn a_large_mail_leaves_out_recipients_whose_kim_version_has_no_plus() {
    let sb = Sandbox::start();
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    // bob's Clientmodul is 1.5 without '+': it cannot receive large mails
    let (_tls, t, slapd) = start_slapd(&vzd(&sb, Some("1.5+"), Some("1.5")), None);
    let k = second_kimcm(&sb, |text| with_ldap(text, &slapd, &t.ca_cert, None));

    // A_19356-06: bob is removed, alice (also a recipient) gets the mail
    let mail = big_mail(sb.dir.path(), &alice, &bob, 16 * MIB, "");
    let (code, err) = send_as(&sb, 0, &smtp(&k), &mail, &[&bob, &alice]);
    assert_eq!(code, 0, "{err}\n{}", k.log());
    assert!(sb.stored_mails(&bob).is_empty(), "bob got nothing");
    let removed = reports(&sb, &alice, "4001");
    assert_eq!(removed.len(), 1, "the sender hears of the removal");
    assert!(
        removed[0].contains(&format!("Final-Recipient: rfc822; {bob}")),
        "{}",
        removed[0]
    );
    let kas_mails = sb
        .stored_mails(&alice)
        .iter()
        .filter(|m| header_value(m, "X-KOM-LE-Version").as_deref() == Some("1.5"))
        .count();
    assert_eq!(kas_mails, 1, "alice got the large mail");

    // nobody left: 451, and again the report
    let (code, err) = send_as(&sb, 0, &smtp(&k), &mail, &[&bob]);
    assert_ne!(code, 0);
    assert!(err.contains("451 4.3.4"), "{err}");
    assert_eq!(reports(&sb, &alice, "4001").len(), 2);
    assert!(sb.stored_mails(&bob).is_empty());
    assert!(k.log().contains("A_19356-06"), "one log line says why");
}

#[test]
fn an_outdated_clientmodul_tells_the_sender_and_still_sends() {
    let sb = Sandbox::start();
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    // the directory says alice's practice runs KIM 1.6: newer than this module
    let (_tls, t, slapd) = start_slapd(&vzd(&sb, Some("1.6+"), Some("1.5+")), None);
    let k = second_kimcm(&sb, |text| with_ldap(text, &slapd, &t.ca_cert, None));
    let (code, err) = send_as(
        &sb,
        0,
        &smtp(&k),
        &small_mail(&sb, &bob, "outdated"),
        &[&bob],
    );
    assert_eq!(code, 0, "{err}\n{}", k.log());
    assert_eq!(sb.stored_mails(&bob).len(), 1, "the mail went out");
    let told = reports(&sb, &alice, "4017");
    assert_eq!(told.len(), 1, "A_21387-01: the sender is told");
    assert!(
        told[0].contains("1.6+") && told[0].contains("veraltet"),
        "{}",
        told[0]
    );
    // unsigned and unencrypted (a DSN)
    assert!(!told[0].contains("application/pkcs7-mime"));
}

#[test]
fn a_large_mail_for_an_account_without_plus_in_the_directory_gives_4018() {
    let sb = Sandbox::start();
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    // sent through the sandbox's own kim-cm (a folder directory: no versions)
    let mail = big_mail(sb.dir.path(), &alice, &bob, 16 * MIB, "");
    let (code, err) = send_as(&sb, 0, &sb.addr("proxy_smtp"), &mail, &[&bob]);
    assert_eq!(code, 0, "{err}");
    let (_tls, t, slapd) = start_slapd(&vzd(&sb, Some("1.5+"), Some("1.5")), None);
    // bob's kim-cm allows large mails in its config; the directory does not
    let k = second_kimcm(&sb, |text| with_ldap(text, &slapd, &t.ca_cert, None));
    let got = fetch_as(&sb, 1, &k.pop3.unwrap().to_string(), 1);
    assert_eq!(
        header_value(&got, "X-KIM-Fehlermeldung").as_deref(),
        Some("4018")
    );
    assert!(
        !k.log().contains("mail data downloaded from the KAS"),
        "{}",
        k.log()
    );
}

#[test]
fn a_recipient_with_certificates_of_two_telematik_ids_gets_nothing_and_the_sender_hears_why() {
    let sb = Sandbox::start();
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    // a second encryption certificate under bob's address, of another practice
    let foreign = extra_encryption_cert(&pki_dir(&sb), &bob, "1-another-practice").unwrap();
    let mut entries = vzd(&sb, Some("1.5+"), Some("1.5+"));
    let own = openssl::x509::X509::from_der(&entries[1].child_certs[0]).unwrap();
    assert_ne!(telematik_id(&own), telematik_id(&foreign));
    entries[1].child_certs.push(foreign.to_der().unwrap());
    let (_tls, t, slapd) = start_slapd(&entries, None);
    let k = second_kimcm(&sb, |text| with_ldap(text, &slapd, &t.ca_cert, None));
    let sealed_for_alice = |sb: &Sandbox| {
        sb.stored_mails(&alice)
            .iter()
            .filter(|m| header_value(m, "X-KIM-Fehlermeldung").is_none())
            .count()
    };

    // KOM-LE-A_2178: bob is left out, alice (also a recipient) gets the mail
    let mail = small_mail(&sb, &bob, "two-ids");
    let (code, err) = send_as(&sb, 0, &smtp(&k), &mail, &[&bob, &alice]);
    assert_eq!(code, 0, "{err}\n{}", k.log());
    assert!(sb.stored_mails(&bob).is_empty(), "bob got nothing");
    assert_eq!(sealed_for_alice(&sb), 1);
    // KOM-LE-A_2192-01: the sender is told, in a DSN
    let told = reports(&sb, &alice, "4005");
    assert_eq!(told.len(), 1, "the sender hears of it");
    assert!(
        told[0].contains(&format!("Final-Recipient: rfc822; {bob}")),
        "{}",
        told[0]
    );
    assert!(told[0].contains("report-type=delivery-status"));
    assert!(!told[0].contains("application/pkcs7-mime"));

    // the same through the KAS (a large mail)
    let large = big_mail(sb.dir.path(), &alice, &bob, 16 * MIB, "");
    let (code, err) = send_as(&sb, 0, &smtp(&k), &large, &[&bob, &alice]);
    assert_eq!(code, 0, "{err}\n{}", k.log());
    assert!(sb.stored_mails(&bob).is_empty());
    assert_eq!(sealed_for_alice(&sb), 2);
    assert_eq!(reports(&sb, &alice, "4005").len(), 2);

    // bob alone: nobody left, a temporary error, and the report again
    let (code, err) = send_as(&sb, 0, &smtp(&k), &mail, &[&bob]);
    assert_ne!(code, 0);
    assert!(err.contains("451 4.3.4"), "{err}");
    assert!(err.contains("Telematik-IDs"), "{err}");
    assert_eq!(reports(&sb, &alice, "4005").len(), 3);
    assert!(sb.stored_mails(&bob).is_empty());
    assert!(k.log().contains("KOM-LE-A_2178"), "one log line says why");
}

#[test]
fn a_directory_that_demands_a_client_certificate_gets_the_configured_one() {
    let sb = Sandbox::start();
    let (bob, ..) = sb.account(1);
    // client certificates must chain to the sandbox's PKI CA
    let client_ca = pki_dir(&sb).join("ca.pem");
    let (_tls, t, slapd) = start_slapd(&vzd(&sb, Some("1.5+"), Some("1.5+")), Some(&client_ca));

    let without = second_kimcm(&sb, |text| with_ldap(text, &slapd, &t.ca_cert, None));
    let (code, err) = send_as(
        &sb,
        0,
        &smtp(&without),
        &small_mail(&sb, &bob, "nocert"),
        &[&bob],
    );
    assert_ne!(code, 0, "no client certificate, no directory");
    assert!(err.contains("451 4.4.3"), "{err}");

    let (alice, ..) = sb.account(0);
    let p12 = pki_dir(&sb).join(&alice).join("signing.p12");
    let pw = pki_dir(&sb).join("pkcs12.pass");
    let with = second_kimcm(&sb, |text| {
        with_ldap(text, &slapd, &t.ca_cert, Some((&p12, &pw)))
    });
    let (code, err) = send_as(
        &sb,
        0,
        &smtp(&with),
        &small_mail(&sb, &bob, "cert"),
        &[&bob],
    );
    assert_eq!(code, 0, "{err}\n{}\n{}", with.log(), slapd.log());
    assert_eq!(sb.stored_mails(&bob).len(), 1);
}
