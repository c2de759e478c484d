//! The send rules through the running proxy (sandbox: simulated Fachdienst, test
//! PKI), driven by Python's smtplib and poplib: a recipient without an encryption
//! certificate is left out and reported to the sender (KOM-LE-A_2024-01, 4004), a
//! Bcc recipient gets the mail but stays hidden, a sender without a certificate
//! gets 553.
//!
//! Each test runs on both backends (`software::…`, `konnektor::…`): software keys
//! with a folder directory, and as in the TI, smart cards in the simulated
//! Konnektor with the directory in OpenLDAP slapd.

mod common;

use common::kimcm::{python, strip_trace_headers, Backend, Sandbox};

on_both_backends!(
    a_recipient_without_certificate_is_left_out_and_the_sender_gets_a_dsn,
    a_bcc_recipient_gets_the_mail_and_stays_hidden,
    refusals_before_anything_is_sent,
    a_forwarded_kim_mail_is_re_delivered_as_it_is,
    expires_follows_the_accounts_data_time_to_live,
    a_mail_over_max_mail_size_is_refused_with_552,
    an_oversized_kim_mail_is_passed_on_unopened,
);

/// Sends one mail with smtplib; prints the refusal as JSON, or {} when accepted.
const SEND: &str = r#"
import json, smtplib, sys
host, port, user, pw, sender, rcpts, mail = sys.argv[1:8]
s = smtplib.SMTP(host, int(port), timeout=60)
s.login(user, pw)
try:
    refused = s.sendmail(sender, rcpts.split(","), mail.encode())
    print(json.dumps({"refused": list(refused)}))
except smtplib.SMTPResponseException as e:
    print(json.dumps({"code": e.smtp_code, "text": e.smtp_error.decode()}))
s.quit()
"#;

/// Fetches every mail with poplib; prints them as a JSON list of strings.
const FETCH: &str = r#"
import json, poplib, sys
host, port, user, pw = sys.argv[1:5]
p = poplib.POP3(host, int(port), timeout=60)
p.user(user)
p.pass_(pw)
count, _ = p.stat()
out = [b"\r\n".join(p.retr(i)[1]).decode("utf-8", "replace") for i in range(1, count + 1)]
p.quit()
print(json.dumps(out))
"#;

fn send(sb: &Sandbox, i: usize, rcpts: &[&str], mail: &str) -> serde_json::Value {
    let (addr, pw, user, _) = sb.account(i);
    let proxy: std::net::SocketAddr = sb.addr("proxy_smtp").parse().unwrap();
    let (ok, out, err) = python(
        SEND,
        &[
            &proxy.ip().to_string(),
            &proxy.port().to_string(),
            &user,
            &pw,
            &addr,
            &rcpts.join(","),
            mail,
        ],
    );
    assert!(ok, "{err}\n{}", sb.log());
    serde_json::from_str(&out).unwrap()
}

fn fetch(sb: &Sandbox, i: usize) -> Vec<String> {
    let (_, pw, _, user) = sb.account(i);
    let proxy: std::net::SocketAddr = sb.addr("proxy_pop3").parse().unwrap();
    let (ok, out, err) = python(
        FETCH,
        &[
            &proxy.ip().to_string(),
            &proxy.port().to_string(),
            &user,
            &pw,
        ],
    );
    assert!(ok, "{err}\n{}", sb.log());
    serde_json::from_str(&out).unwrap()
}

fn a_recipient_without_certificate_is_left_out_and_the_sender_gets_a_dsn(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let carol = "carol@praxis-c.kim.test";
    let mail = format!(
        "From: <{alice}>\r\nTo: <{bob}>\r\nCc: Carol <{carol}>\r\nSubject: Befund 4004\r\n\
         Message-ID: <dsn-1@praxis-a.kim.test>\r\n\r\nmarker-4004\r\n"
    );
    let r = send(&sb, 0, &[&bob, carol], &mail);
    assert_eq!(r["refused"], serde_json::json!([]), "{r}\n{}", sb.log());

    // bob's copy: sealed at the Fachdienst without carol, opened fully by kim-cm
    let stored = String::from_utf8_lossy(&sb.stored_mails(&bob)[0]).into_owned();
    assert!(!stored.contains(carol), "{stored}");
    let got = fetch(&sb, 1);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains("X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("marker-4004") && !got[0].contains(carol));

    // alice's mailbox: the DSN (unsigned, unencrypted, passed through as it is)
    let notices = fetch(&sb, 0);
    assert_eq!(notices.len(), 1, "{notices:?}");
    let dsn = &notices[0];
    assert!(dsn.contains("X-KIM-Fehlermeldung: 4004\r\n"), "{dsn}");
    assert!(dsn.contains("report-type=delivery-status"));
    assert!(dsn.contains(&format!("Final-Recipient: rfc822; {carol}")));
    assert!(!dsn.contains("X-KOM-LE-Version") && !dsn.contains("marker-4004"));
    assert!(dsn.contains("Message-ID: <dsn-1@praxis-a.kim.test>"));
}

fn a_bcc_recipient_gets_the_mail_and_stays_hidden(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let mail = format!(
        "From: <{alice}>\r\nTo: <{alice}>\r\nBcc: <{bob}>\r\nSubject: Bcc\r\n\r\nmarker-bcc\r\n"
    );
    let r = send(&sb, 0, &[&alice, &bob], &mail);
    assert_eq!(r["refused"], serde_json::json!([]), "{r}");
    for (i, who) in [(0, &alice), (1, &bob)] {
        let stored = String::from_utf8_lossy(&sb.stored_mails(who)[0]).into_owned();
        // the outer header only: the body is base64, where "Bcc" turns up by
        // chance in about one mail of a hundred
        let head = stored.split("\r\n\r\n").next().unwrap();
        assert!(
            !head.to_ascii_lowercase().contains("bcc"),
            "no Bcc in the outer header: {head}"
        );
        let got = fetch(&sb, i);
        assert_eq!(got.len(), 1, "{who}");
        assert!(
            got[0].contains("X-KIM-DecryptionResult: 00"),
            "{who}: {}",
            got[0]
        );
        assert!(got[0].contains("marker-bcc"));
        assert!(!got[0].contains("Bcc:"), "{who}: {}", got[0]);
    }
}

fn refusals_before_anything_is_sent(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    // KOM-LE-A_2025: no recipient is encryptable: 451, nothing sent
    let nobody = "nobody@praxis-c.kim.test";
    let r = send(
        &sb,
        0,
        &[nobody],
        &format!("From: <{alice}>\r\nTo: <{nobody}>\r\n\r\nx\r\n"),
    );
    assert_eq!(r["code"], 451, "{r}");
    assert!(r["text"].as_str().unwrap().contains(nobody));
    assert!(sb.stored_mails(nobody).is_empty() && sb.stored_mails(&alice).is_empty());
    // A_22341: a client's mail with an x-kas part: 451, nothing sent
    let r = send(
        &sb,
        0,
        &[&bob],
        &format!(
            "From: <{alice}>\r\nTo: <{bob}>\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Disposition: x-kas\r\n\r\n{{\"link\":\"https://kas.test/a\"}}\r\n"
        ),
    );
    assert_eq!(r["code"], 451, "{r}");
    assert!(r["text"].as_str().unwrap().starts_with("4.6.0"), "{r}");
    assert!(sb.stored_mails(&bob).is_empty());
    // one line in the log for each refusal
    let log = sb.log();
    assert_eq!(log.matches("mail refused:").count(), 2, "{log}");
}

/// The sender has no encryption certificate in the directory: 553 (spec FAQ),
/// nothing sent. (The folder directory lets the test take the certificate away.)
#[test]
fn a_sender_without_encryption_certificate_gets_553() {
    let sb = Sandbox::start();
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    // the sender has no encryption certificate: 553 (spec FAQ)
    let dir = sb.dir.path().join("sb").join("pki").join("directory");
    std::fs::remove_file(dir.join(format!("{alice}.pem"))).unwrap();
    let r = send(
        &sb,
        0,
        &[&bob],
        &format!("From: <{alice}>\r\nTo: <{bob}>\r\n\r\nx\r\n"),
    );
    assert_eq!(r["code"], 553, "{r}");
    assert!(r["text"]
        .as_str()
        .unwrap()
        .contains("encryption certificate"));
    assert!(sb.stored_mails(&bob).is_empty());
    assert_eq!(sb.log().matches("mail refused:").count(), 1, "{}", sb.log());
}

/// KOM-LE-A_2029: a KIM mail forwarded to oneself as message/rfc822 goes to the MTA
/// as it is and opens on the next fetch; plaintext dressed up as a KIM mail does not
/// get past the sealing.
fn a_forwarded_kim_mail_is_re_delivered_as_it_is(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let r = send(
        &sb,
        0,
        &[&bob],
        &format!("From: <{alice}>\r\nTo: <{bob}>\r\nSubject: orig\r\n\r\nmarker-2029\r\n"),
    );
    assert_eq!(r["refused"], serde_json::json!([]), "{r}");
    let sealed = strip_trace_headers(&sb.stored_mails(&bob)[0]);
    let sealed = String::from_utf8(sealed).unwrap();
    let forward = |inner: &str| {
        format!(
            "From: <{bob}>\r\nTo: <{bob}>\r\nSubject: WG: orig\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"fw\"\r\n\r\n--fw\r\n\
             Content-Type: text/plain\r\n\r\nnochmal\r\n--fw\r\n\
             Content-Type: message/rfc822\r\n\r\n{inner}\r\n--fw--\r\n"
        )
    };
    let r = send(&sb, 1, &[&bob], &forward(&sealed));
    assert_eq!(r["refused"], serde_json::json!([]), "{r}");
    let stored = sb.stored_mails(&bob);
    assert_eq!(stored.len(), 2);
    // the MTA got the embedded KIM mail itself, byte for byte below its trace fields
    assert_eq!(strip_trace_headers(&stored[1]), sealed.as_bytes());
    let got = fetch(&sb, 1);
    assert_eq!(got.len(), 2);
    assert!(
        got[1].contains("X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01"),
        "{}",
        got[1]
    );
    assert!(got[1].contains("marker-2029") && got[1].contains("Subject: orig"));

    // plaintext with a KIM version field is not a KIM mail: it is sealed like any mail
    let fake = format!(
        "From: <{bob}>\r\nX-KOM-LE-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nfake-marker\r\n"
    );
    let r = send(&sb, 1, &[&bob], &forward(&fake));
    assert_eq!(r["refused"], serde_json::json!([]), "{r}");
    let stored = sb.stored_mails(&bob);
    let third = String::from_utf8_lossy(&stored[2]);
    assert!(
        third.contains("Subject: KOM-LE-Nachricht") && !third.contains("fake-marker"),
        "{third}"
    );
}

/// A_22417 with A_22416: the outer Expires is the send time plus the account's
/// dataTimeToLive from getLimits (the sandbox gives alice 30 days).
fn expires_follows_the_accounts_data_time_to_live(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let r = send(
        &sb,
        0,
        &[&bob],
        &format!("From: <{alice}>\r\nTo: <{bob}>\r\nSubject: ttl\r\n\r\nx\r\n"),
    );
    assert_eq!(r["refused"], serde_json::json!([]), "{r}\n{}", sb.log());
    let stored = sb.stored_mails(&bob);
    let parsed = mail_parser::MessageParser::default()
        .parse(&stored[0][..])
        .unwrap();
    let expires = parsed
        .header_raw("Expires")
        .and_then(|v| mail_parser::DateTime::parse_rfc822(v.trim()))
        .expect("an RFC 5322 Expires")
        .to_timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = (expires - now) as f64 / 86400.0;
    assert!((29.9..30.1).contains(&days), "Expires in {days} days");
    assert!(sb.log().contains("account limits fetched"), "{}", sb.log());
}

/// A_19355-01: a mail over the account's maxMailSize gets 552 before anything is
/// sealed or sent, and EHLO after login announces the account's limit. (The
/// AccountLimit yaml's minimum is 700 MiB; the simulator is given 1000 bytes here
/// so the test stays small: the rule is the same.)
fn a_mail_over_max_mail_size_is_refused_with_552(backend: Backend) {
    let bob_addr = "bob@praxis-b.kim.test";
    let sb = Sandbox::start_on_with_limits(
        backend,
        &serde_json::json!({ bob_addr: {"maxMailSize": 1000} }),
    );
    let (alice, ..) = sb.account(0);
    let (bob, pw, user, _) = sb.account(1);
    assert_eq!(bob, bob_addr);
    let proxy: std::net::SocketAddr = sb.addr("proxy_smtp").parse().unwrap();
    let script = r#"
import json, smtplib, sys
host, port, user, pw, frm, to = sys.argv[1:7]
s = smtplib.SMTP(host, int(port), timeout=60)
s.login(user, pw)
out = {}
try:
    s.sendmail(frm, [to], "Subject: big\r\n\r\n" + "x" * 2000 + "\r\n")
except smtplib.SMTPResponseException as e:
    out["big"] = [e.smtp_code, e.smtp_error.decode()]
s.ehlo("again")
out["size"] = s.esmtp_features.get("size")
out["small"] = s.sendmail(frm, [to], "Subject: small\r\n\r\nok\r\n") == {}
s.quit()
print(json.dumps(out))
"#;
    let (ok, out, err) = python(
        script,
        &[
            &proxy.ip().to_string(),
            &proxy.port().to_string(),
            &user,
            &pw,
            &bob,
            &alice,
        ],
    );
    assert!(ok, "{err}\n{}", sb.log());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["big"][0], 552, "{v}");
    assert!(v["big"][1].as_str().unwrap().starts_with("5.3.4"), "{v}");
    assert_eq!(v["size"], "1000", "{v}");
    assert_eq!(v["small"], true, "{v}");
    assert_eq!(
        sb.stored_mails(&alice).len(),
        1,
        "only the small mail went out"
    );
}

/// A mail that says X-KOM-LE-Version but is far larger than any sealed mail of the
/// profile (a sealed 15 MiB mail is about 21 MiB) is passed on as it came, still
/// encrypted, instead of being loaded whole into memory.
fn an_oversized_kim_mail_is_passed_on_unopened(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let (bob, bpw, _, bpop3) = sb.account(1);
    let mut mail = b"From: <x@praxis-c.kim.test>\r\nTo: <bob@praxis-b.kim.test>\r\nSubject: KOM-LE-Nachricht\r\nX-KOM-LE-Version: 1.0\r\n\r\n".to_vec();
    while mail.len() < 33 * 1024 * 1024 {
        mail.extend_from_slice(&[b'A'; 76]);
        mail.extend_from_slice(b"\r\n");
    }
    let store =
        kim_cm::testbed::mailstore::MailStore::new(sb.dir.path().join("sb/fachdienst/mail"))
            .unwrap();
    store.deliver(std::slice::from_ref(&bob), &mail).unwrap();
    let url = common::kimcm::url_with_login("pop3", &sb.addr("proxy_pop3"), &bpop3, &bpw, "/1");
    let (code, got, err) = common::kimcm::curl(&["--url", &url]);
    assert_eq!(code, 0, "{err}\n{}", sb.log());
    assert!(got == mail, "passed on byte for byte ({} bytes)", got.len());
    assert!(sb.log().contains("passed on unopened"), "{}", sb.log());
}
