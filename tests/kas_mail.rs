//! Mails over 15 MiB through the KIM Attachment Service, end to end: curl sends to
//! kim-cm's SMTP listener, kim-cm uploads the encrypted mail data to the simulated
//! KAS and seals the small KIM mail for the simulated Fachdienst; curl fetches it
//! back through kim-cm's POP3 listener, which downloads, decrypts and restores it.
//! The restored mail is compared byte for byte with what was sent.
//!
//! Each test runs on both backends (`software::…`, `konnektor::…`): software keys
//! with a folder directory, and as in the TI, smart cards in the simulated
//! Konnektor with the directory in OpenLDAP slapd.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::kimcm::{python, strip_trace_headers, url_with_login, Backend, Sandbox};

on_both_backends!(
    a_20_mib_mail_goes_through_the_kas_and_comes_back_whole,
    a_100_mib_mail_goes_through_the_kas_and_comes_back_whole,
    slow_a_700_mib_mail_goes_through_the_kas_and_comes_back_whole,
    the_servers_threshold_sends_a_smaller_mail_through_the_kas,
);

const MIB: usize = 1024 * 1024;

/// A client mail of about `size` bytes: a short text part and a base64 attachment
/// of pseudo-random bytes, written to `dir`. Returns (path, header, text, attachment
/// part as sent).
fn big_mail(dir: &Path, from: &str, to: &str, size: usize, id: &str) -> (PathBuf, String) {
    let head = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: MRT-Serie {id}\r\nMessage-ID: <{id}@praxis-a.kim.test>\r\n\
Date: Tue, 24 Nov 2026 08:00:00 +0100\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"kas-test-boundary\"\r\n"
    );
    let path = dir.join(format!("{id}.eml"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    f.write_all(head.as_bytes()).unwrap();
    f.write_all(b"\r\n--kas-test-boundary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAnbei die Serie.\r\n\
--kas-test-boundary\r\nContent-Type: application/octet-stream; name=\"serie.bin\"\r\n\
Content-Disposition: attachment; filename=\"serie.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
        .unwrap();
    // base64 lines of 76 characters from a cheap generator: 57 bytes per line
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ size as u64;
    let mut written = head.len() + 300;
    let mut line = [0u8; 78];
    line[76] = b'\r';
    line[77] = b'\n';
    while written < size {
        for c in line.iter_mut().take(76) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *c = alphabet[(x & 63) as usize];
        }
        f.write_all(&line).unwrap();
        written += 78;
    }
    f.write_all(b"--kas-test-boundary--\r\n").unwrap();
    f.flush().unwrap();
    (path, head)
}

fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "600"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn send(sb: &Sandbox, mail: &Path, rcpt: &str) -> (i32, String) {
    let (alice, apw, asmtp, _) = sb.account(0);
    let url = url_with_login("smtp", &sb.addr("proxy_smtp"), &asmtp, &apw, "");
    curl(&[
        "--url",
        &url,
        "--mail-from",
        &alice,
        "--mail-rcpt",
        rcpt,
        "--upload-file",
        mail.to_str().unwrap(),
    ])
}

/// RETR of message 1 of bob's mailbox into a file.
fn fetch(sb: &Sandbox, out: &Path) -> (i32, String) {
    let (_, bpw, _, bpop3) = sb.account(1);
    let url = url_with_login("pop3", &sb.addr("proxy_pop3"), &bpop3, &bpw, "/1");
    curl(&["--url", &url, "--output", out.to_str().unwrap()])
}

fn kas_files(sb: &Sandbox) -> usize {
    let dir = sb.dir.path().join("sb").join("fachdienst").join("kas");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
                .count()
        })
        .unwrap_or(0)
}

/// Sends a mail of `size` through kim-cm and the KAS and fetches it back; the
/// restored mail must be the sent one with the results on top and the notes in
/// its text part, every other byte unchanged.
fn round_trip(backend: Backend, size: usize) {
    let sb = Sandbox::start_on(backend);
    let (alice, _, _, _) = sb.account(0);
    let (bob, bpw, _, bpop3) = sb.account(1);
    let (mail, head) = big_mail(
        sb.dir.path(),
        &alice,
        &bob,
        size,
        &format!("kas-{}", size / MIB),
    );
    let (code, err) = send(&sb, &mail, &bob);
    assert_eq!(code, 0, "curl smtp: {err}\n{}", sb.log());

    // the Fachdienst holds a small sealed KIM 1.5 mail; the KAS holds the data
    let stored = sb.stored_mails(&bob);
    assert_eq!(stored.len(), 1);
    let sealed = String::from_utf8_lossy(&stored[0]).into_owned();
    assert!(
        stored[0].len() < 64 * 1024,
        "the KIM mail is small: {}",
        stored[0].len()
    );
    assert!(sealed.contains("\r\nX-KOM-LE-Version: 1.5\r\n"), "{sealed}");
    assert!(sealed.contains("\r\nX-KIM-KAS-Size: "), "{sealed}");
    assert!(!sealed.contains("MRT-Serie"));
    assert_eq!(kas_files(&sb), 1);
    // A_19385-02: the KAS deletes the data after alice's dataTimeToLive (30 days
    // in the sandbox); bob and alice may download
    let log = sb.log();
    let upload = log
        .lines()
        .find(|l| l.contains("testbed KAS: upload stored"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(upload.contains("expires_in_days=30"), "{upload}");
    assert!(
        upload.contains(&format!("recipients={bob},{alice}")),
        "{upload}"
    );

    // as a mail client fetches: LIST, then RETR (Python's poplib)
    let got_path = sb.dir.path().join("got.eml");
    let (ok, out, err) = python(
        "import poplib, sys\n\
host, port = sys.argv[1].rsplit(':', 1)\n\
p = poplib.POP3(host, int(port), timeout=600)\n\
p.user(sys.argv[2]); p.pass_(sys.argv[3])\n\
_, listing, _ = p.list()\n\
_, lines, _ = p.retr(1)\n\
open(sys.argv[4], 'wb').write(b'\\r\\n'.join(lines) + b'\\r\\n')\n\
p.quit()\n\
print(listing[0].decode())\n",
        &[
            &sb.addr("proxy_pop3"),
            &bpop3,
            &bpw,
            got_path.to_str().unwrap(),
        ],
    );
    assert!(ok, "poplib: {err}\n{}", sb.log());
    let got = std::fs::read(&got_path).unwrap();
    assert_eq!(
        out.trim(),
        format!("1 {}", got.len()),
        "LIST gave the size RETR sent"
    );
    // LIST opened and restored it, RETR sent what LIST had opened
    assert_eq!(sb.log().matches("KIM mail with KAS data opened").count(), 1);
    let opened = strip_trace_headers(&got);
    let sent = std::fs::read(&mail).unwrap();
    let want_head = format!(
        "X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\n{head}X-KIM-Dienstkennung: KIM-Mail;Default;V1.0\r\n\r\n"
    );
    assert!(
        opened.starts_with(want_head.as_bytes()),
        "{}",
        String::from_utf8_lossy(&opened[..2000.min(opened.len())])
    );
    // the text part with the notes, then the attachment byte for byte
    let text_end = b"Anbei die Serie.\r\n";
    let at = sent
        .windows(text_end.len())
        .position(|w| w == text_end)
        .unwrap()
        + text_end.len();
    let body_at = want_head.len();
    let sent_body_at = head.len() + 2;
    assert_eq!(
        &opened[body_at..body_at + (at - sent_body_at)],
        &sent[sent_body_at..at]
    );
    let notes = "---------------------------------------------\r\nDie Nachricht wurde entschlüsselt.\r\nDie Signatur wurde erfolgreich geprüft.\r\n";
    let after_notes = body_at + (at - sent_body_at) + notes.len();
    assert_eq!(
        String::from_utf8_lossy(&opened[body_at + (at - sent_body_at)..after_notes]),
        notes
    );
    assert!(
        opened[after_notes..] == sent[at..],
        "the rest of the mail is unchanged"
    );
    drop(opened);

    // again: the same bytes, without a second download; LIST gives that size
    let again_path = sb.dir.path().join("again.eml");
    let (code, err) = fetch(&sb, &again_path);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(&again_path).unwrap() == got);
    let log = sb.log();
    assert_eq!(
        log.matches("mail data downloaded from the KAS").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("KIM mail with KAS data opened").count(), 2);
    // no plaintext left behind: spools are unnamed, the cache holds one blob
    let proxy_dir = sb.dir.path().join("sb").join("proxy");
    assert_eq!(
        std::fs::read_dir(proxy_dir.join("spool")).unwrap().count(),
        0
    );
    let cached: Vec<_> = std::fs::read_dir(proxy_dir.join("kas-cache"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1);
}

fn a_20_mib_mail_goes_through_the_kas_and_comes_back_whole(backend: Backend) {
    round_trip(backend, 20 * MIB);
}

fn a_100_mib_mail_goes_through_the_kas_and_comes_back_whole(backend: Backend) {
    round_trip(backend, 100 * MIB);
}

/// Slow (about a minute on two cores), run by CI all the same.
fn slow_a_700_mib_mail_goes_through_the_kas_and_comes_back_whole(backend: Backend) {
    round_trip(backend, 699 * MIB);
}

/// A `kasMailSizeThreshold` from getLimits takes precedence over 15 MiB: with
/// 2 MiB, a 3 MiB mail goes through the KAS and comes back whole.
fn the_servers_threshold_sends_a_smaller_mail_through_the_kas(backend: Backend) {
    let sb = Sandbox::start_on_with_limits(
        backend,
        &serde_json::json!({
            "alice@praxis-a.kim.test": {"kasMailSizeThreshold": 2 * MIB}
        }),
    );
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let (mail, head) = big_mail(sb.dir.path(), &alice, &bob, 3 * MIB, "kas-threshold");
    let (code, err) = send(&sb, &mail, &bob);
    assert_eq!(code, 0, "{err}\n{}", sb.log());
    assert_eq!(kas_files(&sb), 1, "{}", sb.log());
    let stored = sb.stored_mails(&bob).remove(0);
    assert!(String::from_utf8_lossy(&stored).contains("\r\nX-KOM-LE-Version: 1.5\r\n"));
    let got_path = sb.dir.path().join("got.eml");
    let (code, err) = fetch(&sb, &got_path);
    assert_eq!(code, 0, "{err}");
    let got = strip_trace_headers(&std::fs::read(&got_path).unwrap());
    let sent = std::fs::read(&mail).unwrap();
    let tail = 1024 * 1024;
    assert!(
        got.ends_with(&sent[sent.len() - tail..]),
        "the attachment's end arrived unchanged"
    );
    assert!(String::from_utf8_lossy(&got[..4096]).contains(head.lines().next().unwrap()));
}
