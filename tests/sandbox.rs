//! kim-cm as a user meets it: the sandbox (simulated Fachdienst + proxy, from the real
//! binary), driven by curl and Python's smtplib/poplib.
//!
//! Each test runs on both backends (`software::…`, `konnektor::…`): software keys
//! with a folder directory, and as in the TI, smart cards in the simulated
//! Konnektor with the directory in OpenLDAP slapd.

mod common;

use std::process::Command;

use common::kimcm::{
    bin, curl, python, strip_trace_headers, url_with_login, write_file, Backend, Sandbox,
};
use common::raw::Raw;

on_both_backends!(
    curl_round_trip_seals_and_opens,
    smtplib_sees_the_spec_dialogue,
    over_long_line_and_size_and_session_goes_on,
    passwords_never_appear_in_logs,
);

#[test]
fn sandbox_demo_sends_and_fetches_one_mail() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["sandbox", "--demo", "--any-ports", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("This arrived in bob's mailbox through kim-cm"),
        "{stdout}"
    );
    assert!(stdout.contains("Subject: Befund"), "{stdout}");
    // the dot-led line survived both directions
    assert!(
        stdout.contains("\n.Eine Zeile mit Punkt am Anfang."),
        "{stdout}"
    );
    let json = std::fs::read_to_string(dir.path().join("sandbox.json")).unwrap();
    assert!(json.contains("alice@praxis-a.kim.test") && json.contains("ca_file"));
}

fn curl_round_trip_seals_and_opens(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let (alice, apw, asmtp, _) = sb.account(0);
    let (bob, bpw, _, bpop3) = sb.account(1);
    let head = format!(
        "From: <{alice}>\r\nTo: <{bob}>\r\nSubject: curl\r\nMessage-ID: <curl-1@praxis-a.kim.test>\r\n"
    );
    let body = "line one\r\n.starts with a dot\r\n..two dots\r\n\r\n\u{00e4}\u{00f6}\u{00fc} 8bit\r\nlast line\r\n";
    let mail = format!("{head}\r\n{body}");
    let file = write_file(sb.dir.path(), "mail.eml", mail.as_bytes());
    let url = url_with_login("smtp", &sb.addr("proxy_smtp"), &asmtp, &apw, "");
    let (code, _, err) = curl(&[
        "--url",
        &url,
        "--mail-from",
        &alice,
        "--mail-rcpt",
        &bob,
        "--upload-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "curl smtp: {err}\n{}", sb.log());

    // what the Fachdienst stored is a sealed KIM mail: no plaintext on the way
    let stored = sb.stored_mails(&bob);
    assert_eq!(stored.len(), 1);
    let sealed = String::from_utf8_lossy(&stored[0]).into_owned();
    assert!(
        sealed.contains("\r\nSubject: KOM-LE-Nachricht\r\n"),
        "{sealed}"
    );
    assert!(sealed.contains("smime-type=authenticated-enveloped-data"));
    assert!(!sealed.contains("line one") && !sealed.contains("Subject: curl"));

    // fetched back through the proxy: opened, with the results on top and the
    // client's bytes (dots, 8-bit) unchanged below
    let url = url_with_login("pop3", &sb.addr("proxy_pop3"), &bpop3, &bpw, "/1");
    let (code, got, err) = curl(&["--url", &url]);
    assert_eq!(code, 0, "curl pop3: {err}\n{}", sb.log());
    let opened = strip_trace_headers(&got);
    let want = format!(
        "X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\n{head}\
         X-KIM-Dienstkennung: KIM-Mail;Default;V1.0\r\n\r\n{body}"
    );
    assert!(
        opened.starts_with(want.as_bytes()),
        "{}",
        String::from_utf8_lossy(&opened)
    );
    let notes = String::from_utf8_lossy(&opened[want.len()..]).into_owned();
    assert!(
        notes.contains("Die Nachricht wurde entschlüsselt.")
            && notes.contains("Die Signatur wurde erfolgreich geprüft."),
        "{notes}"
    );

    // the same RETR again: the same bytes, and LIST said that size
    let (_, again, _) = curl(&["--url", &url]);
    assert_eq!(again, got);
    let list_url = url_with_login("pop3", &sb.addr("proxy_pop3"), &bpop3, &bpw, "");
    let (code, list, err) = curl(&["--url", &list_url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        String::from_utf8_lossy(&list).trim(),
        format!("1 {}", got.len()),
        "LIST reports the size the client receives"
    );
}

fn smtplib_sees_the_spec_dialogue(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let (alice, apw, asmtp, _) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let addr: std::net::SocketAddr = sb.addr("proxy_smtp").parse().unwrap();
    let script = std::fs::read_to_string("tests/clients/smtp_checks.py").unwrap();
    let (ok, out, err) = python(
        &script,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            &asmtp,
            &apw,
            &alice,
            &bob,
        ],
    );
    assert!(ok, "{err}\n{}", sb.log());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let code = |k: &str| v[k][0].as_i64().unwrap_or(-1);
    let text = |k: &str| v[k][1].as_str().unwrap_or("").to_string();

    let ehlo = text("ehlo");
    for ext in [
        "SIZE 734003200",
        "AUTH PLAIN LOGIN",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "PIPELINING",
        "DSN",
    ] {
        assert!(ehlo.lines().any(|l| l == ext), "EHLO lacks {ext}: {ehlo}");
    }
    // Tab_SMTP_Ant_Init
    for k in ["mail_before_auth", "rcpt_before_auth", "data_before_auth"] {
        assert_eq!(
            (code(k), text(k).starts_with("5.7.0")),
            (530, true),
            "{k}: {}",
            text(k)
        );
    }
    assert_eq!(
        (code("unknown"), text("unknown").starts_with("5.5.1")),
        (502, true)
    );
    assert_eq!(
        (code("cram"), text("cram").starts_with("5.7.4")),
        (504, true)
    );
    assert_eq!(code("noop"), 250);
    assert_eq!(code("rset"), 250);
    assert_eq!(code("helo"), 250);
    // Tab_SMTP_Verbindung
    assert_eq!(
        (code("incomplete"), text("incomplete").starts_with("5.5.4")),
        (501, true),
        "{}",
        text("incomplete")
    );
    assert_eq!(code("bad_b64"), 501);
    assert_eq!(
        (
            code("wrong_password"),
            text("wrong_password").starts_with("5.7.8")
        ),
        (535, true)
    );
    assert_eq!(
        (
            code("unknown_plain_address"),
            text("unknown_plain_address").starts_with("5.5.4")
        ),
        (501, true)
    );
    assert_eq!(code("auth_login"), 235);
    assert_eq!(v["send_login"], true);
    assert_eq!(
        (
            code("mail_size_too_big"),
            text("mail_size_too_big").starts_with("5.3.4")
        ),
        (552, true)
    );
    // the Fachdienst's refusals reach the client with their codes
    assert_eq!(code("wrong_sender"), 553, "{}", v["wrong_sender"]);
    // KOM-LE-A_2025: nobody to encrypt for: 451, nothing goes to the MTA
    assert_eq!(code("unknown_rcpt"), 451, "{}", v["unknown_rcpt"]);
    assert!(
        text("unknown_rcpt").starts_with("4.7.5")
            && text("unknown_rcpt").contains("nobody@praxis-b.kim.test")
    );
    assert_eq!(code("quit"), 221);
    assert_eq!(v["send_plain_address"], true);
    // exactly the two good mails arrived, nothing from the refused ones
    let stored = sb.stored_mails(&bob);
    assert_eq!(stored.len(), 2, "{}", sb.log());
}

fn over_long_line_and_size_and_session_goes_on(backend: Backend) {
    let sb = Sandbox::start_on(backend);
    let mut c = Raw::connect(sb.addr("proxy_smtp").parse().unwrap());
    assert!(c.reply().starts_with("220 kim-cm-sandbox ESMTP"));
    let long = format!("NOOP {}", "x".repeat(10_000));
    assert!(c.cmd(&long).starts_with("500 5.5.2"));
    assert!(c.cmd("NOOP").starts_with("250"));
    assert!(c.cmd("QUIT").starts_with("221"));
}

fn passwords_never_appear_in_logs(backend: Backend) {
    let sb = Sandbox::start_on_with_env(backend, &[("RUST_LOG", "trace")]);
    let (alice, apw, asmtp, apop3) = sb.account(0);
    let file = write_file(
        sb.dir.path(),
        "m.eml",
        b"Subject: secret test\r\n\r\nbody\r\n",
    );
    let smtp_url = url_with_login("smtp", &sb.addr("proxy_smtp"), &asmtp, &apw, "");
    let (code, _, err) = curl(&[
        "--url",
        &smtp_url,
        "--mail-from",
        &alice,
        "--mail-rcpt",
        &alice,
        "--upload-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = curl(&[
        "--url",
        &url_with_login("pop3", &sb.addr("proxy_pop3"), &apop3, &apw, "/1"),
    ]);
    assert_eq!(code, 0, "{err}");
    // a failed login too
    let (code, _, _) = curl(&[
        "--url",
        &url_with_login(
            "pop3",
            &sb.addr("proxy_pop3"),
            &apop3,
            &format!("{apw}-wrong"),
            "/1",
        ),
    ]);
    assert_ne!(code, 0);
    let log = sb.log();
    assert!(
        log.contains("smtp session ended"),
        "trace logging was on: {log}"
    );
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    for secret in [
        apw.clone(),
        b64.encode(apw.as_bytes()),
        b64.encode(format!("\0{asmtp}\0{apw}")),
        b64.encode(format!("\0{alice}\0{apw}")),
    ] {
        assert!(
            !log.contains(&secret),
            "password material in the log: {secret}"
        );
    }
}

/// Issue 7 item 9 and issue 8 item 9: the sandbox starts the simulated
/// ZSR-Webservice, Helsenorge change feed and CareFlex service and configures
/// kim-cm for them, so the sidecar commands work on its config as they stand.
#[test]
fn the_sandbox_serves_the_sidecars() {
    let sb = Sandbox::start();
    let config = sb.addr("config_file");
    let run = |args: &[&str]| {
        let out = Command::new(common::kimcm::bin())
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["zsr", "sync", "--no-progress", "--config", &config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("new                2000"), "{out}");
    let (code, out, err) = run(&["zsr", "sync", "--config", &config]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ZSR sync (delta)") && out.contains("unchanged"),
        "{out}"
    );

    let patients = sb.addr("patients_file");
    let listed: Vec<String> = std::fs::read_to_string(&patients)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let (code, out, err) = run(&[
        "helsenorge",
        "changes",
        "--config",
        &config,
        "--patients",
        &patients,
    ]);
    assert_eq!(code, 0, "{err}");
    let recheck: Vec<&str> = out.lines().collect();
    assert!(!recheck.is_empty() && recheck.len() < listed.len(), "{out}");
    assert!(
        recheck.iter().all(|p| listed.iter().any(|l| l == p)),
        "{out}"
    );
    // the offset is kept: nothing new the second time
    let (code, out, err) = run(&[
        "helsenorge",
        "changes",
        "--config",
        &config,
        "--patients",
        &patients,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "", "{out}");

    // CareFlex: an empty report for last month
    let last_month = {
        let t = time::OffsetDateTime::now_utc().date();
        let (y, m) = match t.month() {
            time::Month::January => (t.year() - 1, 12),
            m => (t.year(), u8::from(m) - 1),
        };
        format!("{y:04}-{m:02}")
    };
    let (code, out, err) = run(&[
        "careflex",
        "none",
        "--config",
        &config,
        "--careflex-id",
        "09ce3580d84bf087",
        "--month",
        &last_month,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");

    // NSP: the notifications from the start
    let (code, out, err) = run(&["brs", "notifications", "--config", &config]);
    assert_eq!(code, 0, "{out}\n{err}");
}
