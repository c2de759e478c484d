//! kim-cm killed (kill -9) in the middle of a POP3 RETR of a KIM mail (one
//! whose attachment went through the KAS) and
//! started again on the same data directory (issue 9's fault matrix, "restarts
//! kim-cm in the middle of a session"): the client never sees the answer's end
//! marker, so it cannot take the cut-off mail for a whole one; the mail stays at
//! the Fachdienst (nobody asked to delete it); the next RETR after the restart
//! gives the whole mail, byte for byte what an undisturbed kim-cm gives; and no
//! plaintext of it is left in the data directory.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::kimcm::{strip_trace_headers, KimCm, Sandbox};
use common::mail::{big_mail, config_text, fetch_as, send_as};

const MIB: usize = 1024 * 1024;
/// A line of the attachment `big_mail` writes: its plaintext marker.
const MARKER: &[u8] = b"QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";

/// The sandbox's config for a kim-cm of its own, on ports of its own, with its
/// data directory at `data` (so a restart finds what the first run kept).
fn config_on(sb: &Sandbox, data: &std::path::Path) -> String {
    let mut text = String::new();
    for line in config_text(sb).lines() {
        if line.starts_with("address = \"127.0.0.1:") {
            text.push_str("address = \"127.0.0.1:0\"\n");
        } else if line.starts_with("data_dir") {
            text.push_str(&format!("data_dir = \"{}\"\n", data.display()));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// Files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(p.display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn killed_in_the_middle_of_a_retr_the_mail_stays_and_the_retr_after_the_restart_is_whole() {
    let sb = Sandbox::start();
    let (alice, ..) = sb.account(0);
    let (bob, bob_pw, _, bob_pop3) = sb.account(1);
    // over 15 MiB: through the KAS, and larger than what socket buffers can hold
    let mail = big_mail(sb.dir.path(), &alice, &bob, 24 * MIB, "");
    let (code, err) = send_as(&sb, 0, &sb.addr("proxy_smtp"), &mail, &[&bob]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(sb.stored_mails(&bob).len(), 1);

    let data = tempfile::tempdir().unwrap();
    let config = config_on(&sb, data.path());
    let k = KimCm::serve(&config);
    let tcp = TcpStream::connect(k.pop3.unwrap()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = tcp.try_clone().unwrap();
    let mut r = BufReader::new(tcp);
    let mut line = String::new();
    let mut next = |r: &mut BufReader<TcpStream>| {
        line.clear();
        r.read_line(&mut line).unwrap();
        line.clone()
    };
    assert!(next(&mut r).starts_with("+OK"));
    w.write_all(format!("USER {bob_pop3}\r\n").as_bytes())
        .unwrap();
    assert!(next(&mut r).starts_with("+OK"));
    w.write_all(format!("PASS {bob_pw}\r\n").as_bytes())
        .unwrap();
    assert!(next(&mut r).starts_with("+OK"), "login");
    w.write_all(b"RETR 1\r\n").unwrap();
    assert!(next(&mut r).starts_with("+OK"), "RETR answered");
    // a little of the mail has arrived; the rest (megabytes) is still to come
    let mut head = vec![0u8; 64 * 1024];
    r.read_exact(&mut head).unwrap();

    drop(k); // kill -9 in the middle of the answer

    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest); // EOF or a reset: either ends the answer
    let mut got = head;
    got.extend_from_slice(&rest);
    assert!(
        !got.ends_with(b"\r\n.\r\n"),
        "the cut-off answer must not end with the end marker ({} bytes came)",
        got.len()
    );
    assert_eq!(
        sb.stored_mails(&bob).len(),
        1,
        "the mail is still at the Fachdienst"
    );

    // kim-cm comes back on the same data directory
    let k = KimCm::serve(&config);
    let after = fetch_via_user(&sb, &k, &bob_pop3, &bob_pw);
    let reference = fetch_as(&sb, 1, &sb.addr("proxy_pop3"), 1);
    assert_eq!(
        strip_trace_headers(&after),
        strip_trace_headers(&reference),
        "the RETR after the restart gives the whole mail"
    );
    assert!(String::from_utf8_lossy(&after).contains("X-KIM-DecryptionResult: 00"));
    assert_eq!(sb.stored_mails(&bob).len(), 1, "and it is still there");
    drop(k);
    let leaks = files_containing(data.path(), MARKER);
    assert!(
        leaks.is_empty(),
        "plaintext left in the data dir: {leaks:?}"
    );
}

/// Bob's message 1 through kim-cm `k`, with curl as the client.
fn fetch_via_user(sb: &Sandbox, k: &KimCm, user: &str, pw: &str) -> Vec<u8> {
    let url = common::kimcm::url_with_login("pop3", &k.pop3.unwrap().to_string(), user, pw, "/1");
    let (code, got, err) = common::kimcm::curl(&["--url", &url]);
    assert_eq!(code, 0, "curl pop3: {err}\n{}", sb.log());
    got
}
