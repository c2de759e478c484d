//! Hostile input at the sealing proxy (issue 9, item 5; more cases in
//! smtp_faults.rs, open_negative.rs and docs/smtp-smuggling.md): ten thousand
//! recipients, NUL bytes and invalid UTF-8 in headers, MIME nested thousands of
//! levels deep. Each gets a clear reply, the session goes on, and a mail that is
//! accepted comes back whole.

mod common;

use common::kimcm::{url_with_login, Sandbox};
use common::raw::{plain, Raw};

/// A session logged in as alice (sandbox account 0).
fn alice(sb: &Sandbox) -> Raw {
    let (_, pw, user, _) = sb.account(0);
    let mut c = Raw::connect(sb.addr("proxy_smtp").parse().unwrap());
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO hostile");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain(&user, &pw)));
    assert!(r.starts_with("235"), "{r}");
    c
}

/// Sends `mail` from alice to bob in `c`; the reply to the final dot.
fn send(c: &mut Raw, alice: &str, bob: &str, mail: &[u8]) -> String {
    assert!(c.cmd(&format!("MAIL FROM:<{alice}>")).starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{bob}>")).starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(mail);
    c.send(b"\r\n.\r\n");
    c.reply()
}

#[test]
fn ten_thousand_recipients_are_capped_and_the_session_goes_on() {
    let sb = Sandbox::start();
    let (alice_addr, ..) = sb.account(0);
    let mut c = alice(&sb);
    assert!(c
        .cmd(&format!("MAIL FROM:<{alice_addr}>"))
        .starts_with("250"));
    // all ten thousand at once, pipelined
    let mut batch = String::new();
    for i in 0..10_000 {
        batch.push_str(&format!("RCPT TO:<r{i}@praxis-b.kim.test>\r\n"));
    }
    c.send(batch.as_bytes());
    let replies: Vec<String> = (0..10_000).map(|_| c.reply()).collect();
    let capped = replies
        .iter()
        .filter(|r| r.starts_with("452 4.5.3"))
        .count();
    assert_eq!(
        capped, 9_000,
        "all beyond the 1000th refused with 452 4.5.3"
    );
    assert!(replies[..1000].iter().all(|r| !r.starts_with("452")));
    assert!(c.cmd("RSET").starts_with("250"));
    assert!(c.cmd("NOOP").starts_with("250"));
    assert!(c.cmd("QUIT").starts_with("221"));
}

#[test]
fn nul_bytes_and_invalid_utf8_in_headers_and_deep_mime_get_clear_replies() {
    let sb = Sandbox::start();
    let (alice_addr, ..) = sb.account(0);
    let (bob, bob_pw, _, bob_pop3) = sb.account(1);
    let mut c = alice(&sb);

    // a header with a NUL byte and bytes that are not UTF-8
    let mut mail =
        format!("From: <{alice_addr}>\r\nTo: <{bob}>\r\nSubject: bytes\r\nX-Odd: a").into_bytes();
    mail.extend_from_slice(b"\0b\xff\xfe\xc3(");
    mail.extend_from_slice(b"\r\n\r\nKoerper mit Bytes\r\n");
    let r = send(&mut c, &alice_addr, &bob, &mail);
    assert!(r.starts_with("250") || r.starts_with("5"), "{r}");
    let accepted_bytes = r.starts_with("250");
    assert!(c.cmd("NOOP").starts_with("250"), "the session goes on");

    // MIME nested 5000 levels deep
    let mut deep =
        format!("From: <{alice_addr}>\r\nTo: <{bob}>\r\nSubject: deep\r\nMIME-Version: 1.0\r\n");
    let depth = 5000;
    for i in 0..depth {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    deep.push_str("Content-Type: text/plain\r\n\r\ninnen\r\n");
    for i in (0..depth).rev() {
        deep.push_str(&format!("--b{i}--\r\n"));
    }
    let r = send(&mut c, &alice_addr, &bob, deep.as_bytes());
    assert!(r.starts_with("250") || r.starts_with("5"), "{r}");
    assert!(c.cmd("NOOP").starts_with("250"), "the session goes on");
    assert!(c.cmd("QUIT").starts_with("221"));

    // what was accepted comes back whole and opened
    let pop3 = sb.addr("proxy_pop3");
    let count = usize::from(accepted_bytes) + usize::from(r.starts_with("250"));
    for n in 1..=count {
        let url = url_with_login("pop3", &pop3, &bob_pop3, &bob_pw, &format!("/{n}"));
        let (code, got, err) = common::kimcm::curl(&["--url", &url]);
        assert_eq!(code, 0, "{err}");
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("X-KIM-DecryptionResult: 00"), "{text}");
        assert!(
            text.contains("Koerper mit Bytes") || text.contains("innen"),
            "{text}"
        );
    }
    // and kim-cm still serves a new client
    let mut again = alice(&sb);
    assert!(again.cmd("QUIT").starts_with("221"));
}

#[test]
fn one_address_holds_at_most_64_sessions_and_the_next_is_refused_at_once() {
    let sb = Sandbox::start();
    let addr = sb.addr("proxy_smtp").parse().unwrap();
    let mut held: Vec<Raw> = (0..kim_cm::listener::MAX_SESSIONS_PER_PEER)
        .map(|_| {
            let mut c = Raw::connect(addr);
            assert!(c.reply().starts_with("220"));
            c
        })
        .collect();
    let mut over = Raw::connect(addr);
    let r = over.reply();
    assert!(r.starts_with("421 4.7.0 Too many connections"), "{r}");
    assert!(over.closed());
    // one of them goes: there is room again
    held.pop().unwrap().cmd("QUIT");
    let mut again = None;
    for _ in 0..50 {
        let mut c = Raw::connect(addr);
        if c.reply().starts_with("220") {
            again = Some(c);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(again.is_some(), "a slot came free");
    assert!(sb.log().contains("sessions from this address already"));
}
