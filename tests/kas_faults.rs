//! What goes wrong around the KIM Attachment Service, and what the client hears:
//! a full KAS (521, A_22419-01), a dead KAS (451 and the 4002 report), an MTA that
//! refuses after the upload (the data are deleted again), a client mail that
//! already carries an x-kas part (451, A_22341), and on receipt a download refused
//! as too frequent (4013), altered data (4007), a wrong hash (4012) and an account
//! without large-mail reception (4018). Driven with curl against the sandbox; a
//! second kim-cm from the sandbox's own config where a setting must differ.
//!
//! Each test runs on both backends (`software::…`, `konnektor::…`): software keys
//! with a folder directory, and as in the TI, smart cards in the simulated
//! Konnektor with the directory in OpenLDAP slapd.

mod common;

use std::process::Command;

use common::kimcm::{Backend, Sandbox};

on_both_backends!(
    a_full_kas_gets_521_and_nothing_is_sent,
    mail_data_over_the_kas_size_limit_get_552_and_nothing_is_sent,
    a_dead_kas_gets_451_and_the_sender_the_4002_report,
    a_large_client_mail_with_an_x_kas_part_is_refused,
    a_download_refused_as_too_frequent_gives_4013_and_is_tried_again,
    altered_mail_data_give_4007,
    a_wrong_hash_gives_4012,
    more_data_than_announced_are_not_downloaded,
    an_account_without_large_mail_reception_gets_4018_and_nothing_is_downloaded,
);
use common::mail::{big_mail, config_text, curl, fetch_via, header_value, second_kimcm, send_via};

const MIB: usize = 1024 * 1024;

fn kas_url(sb: &Sandbox) -> String {
    let text = config_text(sb);
    let line = text.lines().find(|l| l.starts_with("kas_url")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

fn a_full_kas_gets_521_and_nothing_is_sent(backend: Backend) {
    let sb = Sandbox::start_on_with_limits(
        backend,
        &serde_json::json!({
            "alice@praxis-a.kim.test": {"kasQuota": 1_000_000}
        }),
    );
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    assert_eq!(
        alice, "alice@praxis-a.kim.test",
        "the sandbox's first account"
    );
    let mail = big_mail(sb.dir.path(), &alice, &bob, 20 * MIB, "");
    let (code, err) = send_via(&sb, &sb.addr("proxy_smtp"), &mail, &bob);
    assert_ne!(code, 0);
    assert!(err.contains("< 521 5.2.2"), "{err}");
    assert!(sb.stored_mails(&bob).is_empty());
    assert!(sb.kas_ids().is_empty());
    assert!(sb.log().contains("KAS upload failed"), "{}", sb.log());
}

fn mail_data_over_the_kas_size_limit_get_552_and_nothing_is_sent(backend: Backend) {
    // the account may send 700 MiB (maxMailSize), the KAS takes only 1 MB: 413
    let sb = Sandbox::start_on_with_limits(
        backend,
        &serde_json::json!({
            "alice@praxis-a.kim.test": {"kasMaxAttachment": 1_000_000}
        }),
    );
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let mail = big_mail(sb.dir.path(), &alice, &bob, 16 * MIB, "");
    let (code, err) = send_via(&sb, &sb.addr("proxy_smtp"), &mail, &bob);
    assert_ne!(code, 0);
    // a permanent refusal: sending again cannot help
    assert!(err.contains("< 552 5.3.4"), "{err}");
    assert!(err.contains("does not take mail data this large"), "{err}");
    assert!(sb.stored_mails(&bob).is_empty());
    assert!(
        sb.stored_mails(&alice).is_empty(),
        "no 4002 report: not a failure to retry"
    );
    assert!(sb.kas_ids().is_empty());
    assert!(sb.log().contains("KAS upload failed"), "{}", sb.log());
}

fn a_dead_kas_gets_451_and_the_sender_the_4002_report(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let url = kas_url(&sb);
    let k = second_kimcm(&sb, |t| {
        t.replace(&url, &format!("https://localhost:{port}/attachments/v2.4"))
    });
    let mail = big_mail(sb.dir.path(), &alice, &bob, 16 * MIB, "");
    let (code, err) = send_via(&sb, &k.smtp.unwrap().to_string(), &mail, &bob);
    assert_ne!(code, 0);
    assert!(err.contains("< 451 4.4.0"), "{err}");
    assert!(sb.stored_mails(&bob).is_empty(), "nothing went to bob");
    // A_19363-03: the report to the sender, through the Fachdienst
    let reports = sb.stored_mails(&alice);
    assert_eq!(reports.len(), 1, "{}", k.log());
    assert_eq!(
        header_value(&reports[0], "X-KIM-Fehlermeldung").as_deref(),
        Some("4002")
    );
    assert!(
        String::from_utf8_lossy(&reports[0]).contains(&format!("Final-Recipient: rfc822; {bob}"))
    );
    let log = k.log();
    assert!(log.contains("KAS upload failed"), "{log}");
    assert!(!log.contains(&sb.account(0).1), "no password in the log");
}

#[test]
fn an_mta_refusal_after_the_upload_deletes_the_kas_data() {
    let sb = Sandbox::start();
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    // a recipient the directory knows and the Fachdienst does not
    let ghost = "ghost@praxis-b.kim.test";
    let directory = sb.dir.path().join("sb").join("pki").join("directory");
    std::fs::copy(
        directory.join(format!("{bob}.pem")),
        directory.join(format!("{ghost}.pem")),
    )
    .unwrap();
    let mail = big_mail(sb.dir.path(), &alice, ghost, 16 * MIB, "");
    let (code, err) = send_via(&sb, &sb.addr("proxy_smtp"), &mail, ghost);
    assert_ne!(code, 0);
    assert!(err.contains("< 550 5.1.1"), "{err}");
    assert!(sb.kas_ids().is_empty(), "the upload was deleted again");
    assert!(
        sb.log().contains("mail data deleted from the KAS"),
        "{}",
        sb.log()
    );
}

fn a_large_client_mail_with_an_x_kas_part_is_refused(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let part = "--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: x-kas\r\n\r\n{\"link\":\"https://evil/x\",\"k\":\"a\",\"hash\":\"b\",\"size\":1}\r\n";
    let mail = big_mail(sb.dir.path(), &alice, &bob, 16 * MIB, part);
    let (code, err) = send_via(&sb, &sb.addr("proxy_smtp"), &mail, &bob);
    assert_ne!(code, 0);
    assert!(err.contains("< 451 4.6.0"), "{err}");
    assert!(sb.kas_ids().is_empty());
}

/// Sends one 16 MiB mail from alice to bob through the sandbox; the KAS id.
fn sent_kas_mail(sb: &Sandbox) -> String {
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let mail = big_mail(sb.dir.path(), &alice, &bob, 16 * MIB, "");
    let (code, err) = send_via(sb, &sb.addr("proxy_smtp"), &mail, &bob);
    assert_eq!(code, 0, "{err}\n{}", sb.log());
    let ids = sb.kas_ids();
    assert_eq!(ids.len(), 1);
    ids[0].clone()
}

fn a_download_refused_as_too_frequent_gives_4013_and_is_tried_again(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let id = sent_kas_mail(&sb);
    let (bob, ..) = sb.account(1);
    // someone used up bob's downloads
    let link = format!("{}/attachment/{id}", kas_url(&sb));
    let mut refused = false;
    for _ in 0..10 {
        let (code, _, _) = curl(&[
            "--cacert",
            &sb.ca_file(),
            "-H",
            &format!("recipient: {bob}"),
            "-o",
            "/dev/null",
            "-f",
            &link,
        ]);
        refused |= code != 0;
    }
    assert!(refused, "the KAS limits downloads");
    let got = fetch_via(&sb, &sb.addr("proxy_pop3"));
    assert_eq!(
        header_value(&got, "X-KIM-Fehlermeldung").as_deref(),
        Some("4013")
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("Content-Type: message/rfc822"),
        "the KIM mail is attached"
    );
    assert!(text.contains("X-KOM-LE-Version: 1.5"));
    // not kept: the next RETR tries again (and is refused again)
    let again = fetch_via(&sb, &sb.addr("proxy_pop3"));
    assert_eq!(
        header_value(&again, "X-KIM-Fehlermeldung").as_deref(),
        Some("4013")
    );
    assert_eq!(
        sb.log().matches("KAS download failed").count(),
        2,
        "{}",
        sb.log()
    );
}

fn altered_mail_data_give_4007(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let id = sent_kas_mail(&sb);
    let blob = sb.kas_dir().join(format!("{id}.bin"));
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&blob, bytes).unwrap();
    let got = fetch_via(&sb, &sb.addr("proxy_pop3"));
    assert_eq!(
        header_value(&got, "X-KIM-Fehlermeldung").as_deref(),
        Some("4007")
    );
    assert_eq!(
        header_value(&got, "Subject").as_deref(),
        Some("Befund gross")
    );
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("Abgerufene E-Mail-Daten konnten nicht entschlüsselt werden"));
    assert!(
        !text.contains("QQQQQQQQ") && !text.contains("Anbei."),
        "no unverified plaintext"
    );
    // the bad blob is not kept
    let cache = sb.dir.path().join("sb").join("proxy").join("kas-cache");
    assert_eq!(std::fs::read_dir(cache).unwrap().count(), 0);
}

/// Replaces bob's stored KIM mail by one from a sender that lies in its
/// KIM-Attachment structure: the mail as bob opens it, `forge` applied to its
/// text, sealed again with alice's key.
fn forge_stored(sb: &Sandbox, forge: impl Fn(&mut String)) {
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let pki = sb.dir.path().join("sb").join("pki");
    let stored = sb.stored_mails(&bob).remove(0);
    let stored_path = sb.dir.path().join("stored.eml");
    std::fs::write(&stored_path, &stored).unwrap();
    let opened = Command::new(common::kimcm::bin())
        .args(["message", "open", "--key"])
        .arg(pki.join(&bob).join("encryption.p12"))
        .arg("--password-file")
        .arg(pki.join("pkcs12.pass"))
        .arg("--trust")
        .arg(pki.join("ca.pem"))
        .arg(&stored_path)
        .output()
        .unwrap();
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    let text = String::from_utf8(opened.stdout).unwrap();
    let inner_start = text.find("From: ").unwrap();
    let mut inner = text[inner_start..].to_string();
    forge(&mut inner);
    let forged_path = sb.dir.path().join("forged.eml");
    std::fs::write(
        &forged_path,
        inner.replace("\r\n", "\n").replace('\n', "\r\n"),
    )
    .unwrap();
    let sealed = Command::new(common::kimcm::bin())
        .args(["message", "seal", "--key"])
        .arg(pki.join(&alice).join("signing.p12"))
        .arg("--password-file")
        .arg(pki.join("pkcs12.pass"))
        .arg("--cert-dir")
        .arg(pki.join("directory"))
        .arg(&forged_path)
        .output()
        .unwrap();
    assert!(
        sealed.status.success(),
        "{}",
        String::from_utf8_lossy(&sealed.stderr)
    );
    // it replaces the mail in bob's mailbox at the Fachdienst
    let mailbox = sb
        .dir
        .path()
        .join("sb")
        .join("fachdienst")
        .join("mail")
        .join(&bob);
    let file = std::fs::read_dir(&mailbox)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&file, sealed.stdout).unwrap();
}

/// Replaces the value of `"field":` in the JSON structure of `inner`.
fn replace_json(inner: &mut String, field: &str, value: &str) {
    let key = format!("\"{field}\":");
    let at = inner.find(&key).unwrap() + key.len();
    let end = at + inner[at..].find([',', '}']).unwrap();
    inner.replace_range(at..end, value);
}

fn a_wrong_hash_gives_4012(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    sent_kas_mail(&sb);
    forge_stored(&sb, |inner| {
        replace_json(
            inner,
            "hash",
            "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"",
        )
    });
    let got = fetch_via(&sb, &sb.addr("proxy_pop3"));
    assert_eq!(
        header_value(&got, "X-KIM-Fehlermeldung").as_deref(),
        Some("4012"),
        "{}",
        String::from_utf8_lossy(&got[..2000.min(got.len())])
    );
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("Sicherheitsverletzung") && text.contains("Bitte antworten Sie nicht"));
    assert!(
        !text.contains("QQQQQQQQ"),
        "no content of the mismatching data"
    );
}

fn more_data_than_announced_are_not_downloaded(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    sent_kas_mail(&sb);
    forge_stored(&sb, |inner| replace_json(inner, "size", "1000"));
    let got = fetch_via(&sb, &sb.addr("proxy_pop3"));
    assert_eq!(
        header_value(&got, "X-KIM-Fehlermeldung").as_deref(),
        Some("4006")
    );
    assert!(
        sb.log()
            .contains("the KAS sent more than the announced 1028 bytes"),
        "{}",
        sb.log()
    );
    let cache = sb.dir.path().join("sb").join("proxy").join("kas-cache");
    assert_eq!(
        std::fs::read_dir(cache).unwrap().count(),
        0,
        "no partial file left"
    );
}

fn an_account_without_large_mail_reception_gets_4018_and_nothing_is_downloaded(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    sent_kas_mail(&sb);
    let (bob, ..) = sb.account(1);
    let k = second_kimcm(&sb, |t| {
        t.replace(
            &format!("address = \"{bob}\"\n"),
            &format!("address = \"{bob}\"\nreceive_large_mails = false\n"),
        )
    });
    let got = fetch_via(&sb, &k.pop3.unwrap().to_string());
    assert_eq!(
        header_value(&got, "X-KIM-Fehlermeldung").as_deref(),
        Some("4018")
    );
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("Content-Type: message/rfc822"));
    assert!(
        !k.log().contains("mail data downloaded from the KAS"),
        "{}",
        k.log()
    );
}
