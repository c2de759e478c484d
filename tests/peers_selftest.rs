//! Self-test of the real-Fachdienst harness (tests/common/peers.rs): Postfix and
//! Dovecot come up, take mail only from logged-in senders for known recipients, and
//! hand it out over POP3 with TLS; driven with curl as the client.

mod common;

use common::peers::{PeerUser, RealFachdienst};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const ALICE: &str = "alice@praxis.kim.test";
const BOB: &str = "bob@praxis.kim.test";
const ALICE_PW: &str = "alice-secret 1";
const BOB_PW: &str = "bob:secret-2";

fn users() -> Vec<PeerUser> {
    vec![PeerUser::new(ALICE, ALICE_PW), PeerUser::new(BOB, BOB_PW)]
}

fn start() -> RealFachdienst {
    let t = Instant::now();
    let f = RealFachdienst::start(&users()).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "RealFachdienst::start took {:?} ({})",
        t.elapsed(),
        f.dir().display()
    );
    f
}

fn curl(args: &[&str]) -> Output {
    Command::new("/usr/bin/curl")
        .args(["-sS", "-v", "--max-time", "30"])
        .args(args)
        .output()
        .expect("run curl")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[allow(clippy::too_many_arguments)] // a curl command line, spelled out
fn send(
    url: &str,
    ca: &Path,
    user: &str,
    pw: &str,
    from: &str,
    rcpt: &str,
    file: &Path,
    extra: &[&str],
) -> Output {
    let login = format!("{user}:{pw}");
    let mut args = vec![
        "--url",
        url,
        "--cacert",
        ca.to_str().unwrap(),
        "--user",
        &login,
        "--mail-from",
        from,
        "--mail-rcpt",
        rcpt,
        "--upload-file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    curl(&args)
}

/// The message as sent (CRLF), with a dot-leading line and 8-bit bytes in the body.
fn message(subject: &str) -> Vec<u8> {
    let mut m = format!(
        "From: <{ALICE}>\r\nTo: <{BOB}>\r\nSubject: {subject}\r\n\
         Date: Mon, 1 Jan 2024 10:00:00 +0100\r\nMessage-ID: <{subject}@praxis.kim.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(b"Hello Bob,\r\n.a line starting with a dot\r\n..two dots\r\n\r\n");
    m.extend_from_slice("Gr\u{fc}\u{df}e, \u{e4}\u{f6}\u{fc} \t trailing tab \t\r\n".as_bytes());
    m.extend_from_slice(b"-- \r\nAlice\r\n");
    m
}

fn lf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn body(msg: &[u8]) -> &[u8] {
    let pos = msg
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("header/body separator");
    &msg[pos + 2..]
}

#[test]
fn mail_goes_from_alice_to_bob_and_is_refused_where_it_should_be() {
    let f = start();
    let ca = f.ca_pem_path().to_path_buf();
    let host = f.host().to_string();
    assert_eq!(host, "127.0.0.2");
    let smtps = format!("smtps://{host}:{}", f.smtps_port());
    let submission = format!("smtp://{host}:{}", f.submission_port());
    let pop3s = format!("pop3s://{host}:{}", f.pop3s_port());
    let pop3 = format!("pop3://{host}:{}", f.pop3_port());

    let file = f.dir().join("mail1.eml");
    let sent = message("first");
    std::fs::write(&file, &sent).unwrap();

    // SMTPS, AUTH, alice -> bob.
    let o = send(&smtps, &ca, ALICE, ALICE_PW, ALICE, BOB, &file, &[]);
    assert!(
        o.status.success(),
        "smtps send: {}\n{}",
        text(&o),
        f.log_text()
    );

    let msgs = f.wait_for_messages(BOB, 1, Duration::from_secs(30));
    assert_eq!(msgs.len(), 1);
    let stored = &msgs[0];
    // Dovecot stores LF line ends; body byte-identical, and the whole submitted
    // message follows the trace headers unchanged.
    assert_eq!(
        body(stored),
        body(&lf(&sent)),
        "stored:\n{}",
        String::from_utf8_lossy(stored)
    );
    assert!(
        stored.ends_with(&lf(&sent)),
        "stored:\n{}",
        String::from_utf8_lossy(stored)
    );
    let head = String::from_utf8_lossy(&stored[..stored.len() - lf(&sent).len()]);
    assert!(
        head.starts_with(&format!("Return-Path: <{ALICE}>\n")),
        "{head}"
    );
    assert!(head.contains(&format!("Delivered-To: {BOB}\n")), "{head}");
    assert!(f.maildir_messages(ALICE).is_empty());

    // POP3S retrieval: CRLF on the wire, same body.
    let o = curl(&[
        &format!("{pop3s}/1"),
        "--cacert",
        ca.to_str().unwrap(),
        "--user",
        &format!("{BOB}:{BOB_PW}"),
    ]);
    assert!(
        o.status.success(),
        "pop3s retr: {}\n{}",
        text(&o),
        f.log_text()
    );
    assert!(
        o.stdout.ends_with(&sent),
        "pop3s got:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // UIDL in the configured format (%08Xu%08Xv: 16 hex digits).
    let o = curl(&[
        &pop3s,
        "-X",
        "UIDL",
        "--cacert",
        ca.to_str().unwrap(),
        "--user",
        &format!("{BOB}:{BOB_PW}"),
    ]);
    let uidl = String::from_utf8_lossy(&o.stdout).to_string();
    let uid = uidl
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(
        uid.len() == 16 && uid.bytes().all(|b| b.is_ascii_hexdigit()),
        "UIDL: {uidl:?}"
    );

    // POP3 with STLS works; without STLS the login is refused.
    let o = curl(&[
        &format!("{pop3}/1"),
        "--ssl-reqd",
        "--cacert",
        ca.to_str().unwrap(),
        "--user",
        &format!("{BOB}:{BOB_PW}"),
    ]);
    assert!(o.status.success(), "pop3+stls retr: {}", text(&o));
    assert!(o.stdout.ends_with(&sent));
    let o = curl(&[&format!("{pop3}/1"), "--user", &format!("{BOB}:{BOB_PW}")]);
    assert!(
        !o.status.success(),
        "pop3 login without STLS must fail: {}",
        text(&o)
    );

    // Wrong passwords.
    let o = curl(&[
        &format!("{pop3s}/1"),
        "--cacert",
        ca.to_str().unwrap(),
        "--user",
        &format!("{BOB}:wrong"),
    ]);
    assert!(!o.status.success(), "pop3s wrong password: {}", text(&o));
    let o = send(&smtps, &ca, ALICE, "wrong", ALICE, BOB, &file, &[]);
    assert!(!o.status.success(), "smtps wrong password: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("< 535"),
        "{}",
        text(&o)
    );

    // MAIL FROM must equal the login: 553 at MAIL FROM.
    let o = send(&smtps, &ca, ALICE, ALICE_PW, BOB, BOB, &file, &[]);
    assert!(!o.status.success(), "sender mismatch: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("< 553"),
        "{}",
        text(&o)
    );

    // Unknown recipient in our domain: 550 at RCPT; foreign domain: relay denied.
    let o = send(
        &smtps,
        &ca,
        ALICE,
        ALICE_PW,
        ALICE,
        "carol@praxis.kim.test",
        &file,
        &[],
    );
    assert!(!o.status.success(), "unknown recipient: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("< 550"),
        "{}",
        text(&o)
    );
    let o = send(
        &smtps,
        &ca,
        ALICE,
        ALICE_PW,
        ALICE,
        "someone@example.com",
        &file,
        &[],
    );
    assert!(!o.status.success(), "relay: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("< 554"),
        "{}",
        text(&o)
    );

    // Submission: without STARTTLS nothing goes; with STARTTLS it does.
    let o = send(&submission, &ca, ALICE, ALICE_PW, ALICE, BOB, &file, &[]);
    assert!(
        !o.status.success(),
        "submission without STARTTLS: {}",
        text(&o)
    );
    let file2 = f.dir().join("mail2.eml");
    let sent2 = message("second");
    std::fs::write(&file2, &sent2).unwrap();
    let o = send(
        &submission,
        &ca,
        ALICE,
        ALICE_PW,
        ALICE,
        BOB,
        &file2,
        &["--ssl-reqd"],
    );
    assert!(
        o.status.success(),
        "submission+starttls: {}\n{}",
        text(&o),
        f.log_text()
    );
    let msgs = f.wait_for_messages(BOB, 2, Duration::from_secs(30));
    assert_eq!(msgs.len(), 2);
    assert!(msgs.iter().any(|m| m.ends_with(&lf(&sent2))));

    // Nothing else arrived anywhere (e.g. no bounce to alice).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(f.maildir_messages(BOB).len(), 2);
    assert!(f.maildir_messages(ALICE).is_empty(), "{}", f.log_text());

    // The logs are there for debugging.
    let log = f.log_text();
    assert!(log.contains("postfix/smtps"), "{log}");
    assert!(log.contains("pop3-login"), "{log}");
}

#[test]
fn instances_run_side_by_side_and_clean_up() {
    let handles: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let u = [PeerUser::new(&format!("u{i}@praxis-{i}.kim.test"), "pw")];
                let f = RealFachdienst::start(&u).unwrap_or_else(|e| panic!("{e}"));
                let ports = [
                    f.smtps_port(),
                    f.submission_port(),
                    f.pop3s_port(),
                    f.pop3_port(),
                ];
                (f, ports)
            })
        })
        .collect();
    let started: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut all: Vec<u16> = started.iter().flat_map(|(_, p)| *p).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 12, "ports must be distinct");
    let dirs: Vec<_> = started.iter().map(|(f, _)| f.dir().to_path_buf()).collect();
    let pids: Vec<String> = started
        .iter()
        .flat_map(|(f, _)| {
            [
                f.dir().join("q/pid/master.pid"),
                f.dir().join("dv/master.pid"),
            ]
            .map(|p| std::fs::read_to_string(p).unwrap().trim().to_string())
        })
        .collect();
    drop(started);
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    for p in &pids {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "master {p} still running: {stat}"
        );
    }
}

#[test]
fn missing_users_are_an_error() {
    assert!(RealFachdienst::start(&[]).is_err());
}
