//! kim-cm in front of a real mail system: Postfix (submission with SASL and TLS) and
//! Dovecot (POP3S, POP3 with STLS) started from configs in a temp folder on loopback,
//! driven by curl and Python's smtplib/poplib through kim-cm.

mod common;

use std::time::Duration;

use common::kimcm::{curl, python, url_with_login, write_file, KimCm};
use common::peers::{PeerUser, RealFachdienst};

const ALICE: (&str, &str) = ("alice@praxis.kim.test", "alice-Secret-1");
const BOB: (&str, &str) = ("bob@praxis.kim.test", "bob-Secret-2");

fn peers() -> RealFachdienst {
    RealFachdienst::start(&[PeerUser::new(ALICE.0, ALICE.1), PeerUser::new(BOB.0, BOB.1)])
        .expect("Postfix and Dovecot (installed by .ci/run)")
}

fn proxy(rf: &RealFachdienst, smtp_tls: &str, pop3_tls: &str) -> KimCm {
    KimCm::serve(&format!(
        "[proxy]\ndata_dir = \"{{dir}}/data\"\nallow_unsealed_for_testing = true\n\
         [[smtp_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
         [[pop3_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
         [upstream]\nca_file = \"{}\"\nsmtp_tls = \"{smtp_tls}\"\npop3_tls = \"{pop3_tls}\"\n",
        rf.ca_pem_path().display()
    ))
}

fn user(addr: &str, server: std::net::SocketAddr) -> String {
    format!("{addr}#{server}#1#KOM_LE#7")
}

/// The mail below the trace headers an MTA and an LDA put on top, with CRLF lines
/// (a Maildir stores LF).
fn body_below_trace(stored: &[u8]) -> Vec<u8> {
    let crlf = String::from_utf8_lossy(stored)
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    common::kimcm::strip_trace_headers(crlf.as_bytes())
}

#[test]
fn smtps_and_pop3s_round_trip_is_byte_identical() {
    let rf = peers();
    let k = proxy(&rf, "implicit", "implicit");
    let mail = format!(
        "From: <{a}>\r\nTo: <{b}>\r\nSubject: real peers\r\nMessage-ID: <rp-1@praxis.kim.test>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n\r\nzeile 1\r\n.zeile mit punkt\r\n..zwei punkte\r\nende\r\n",
        a = ALICE.0,
        b = BOB.0
    );
    let file = write_file(k.dir.path(), "m.eml", mail.as_bytes());
    let url = url_with_login(
        "smtp",
        &k.smtp.unwrap().to_string(),
        &user(ALICE.0, rf.smtps_addr()),
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
        "--upload-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}\n{}\n{}", k.log(), rf.log_text());

    let stored = rf.wait_for_messages(BOB.0, 1, Duration::from_secs(20));
    assert_eq!(stored.len(), 1, "{}", rf.log_text());
    assert_eq!(body_below_trace(&stored[0]), mail.as_bytes());

    // through kim-cm and straight from Dovecot: the same bytes
    let ca = rf.ca_pem_path().display().to_string();
    let via = url_with_login(
        "pop3",
        &k.pop3.unwrap().to_string(),
        &user(BOB.0, rf.pop3s_addr()),
        BOB.1,
        "/1",
    );
    let (code, got, err) = curl(&["--url", &via]);
    assert_eq!(code, 0, "{err}\n{}", k.log());
    let direct = url_with_login("pop3s", &rf.pop3s_addr().to_string(), BOB.0, BOB.1, "/1");
    let (code, want, err) = curl(&["--url", &direct, "--cacert", &ca]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(got, want);
    assert_eq!(body_below_trace(&got), mail.as_bytes());
}

const CLIENT: &str = r#"
import json, poplib, smtplib, sys
smtp_host, smtp_port, pop_host, pop_port, su, pu, pw, frm, to = sys.argv[1:10]
out = {}
s = smtplib.SMTP(smtp_host, int(smtp_port), timeout=60)
s.login(su, pw)
for i in range(3):
    s.sendmail(frm, [to], "From: <%s>\r\nTo: <%s>\r\nSubject: n%d\r\n\r\nmail %d\r\n" % (frm, to, i, i))
try:
    s.sendmail(frm, ["nobody@praxis.kim.test"], "Subject: x\r\n\r\nx\r\n")
except smtplib.SMTPException as e:
    out["unknown_rcpt"] = [getattr(e, "smtp_code", 0), repr(e)]
try:
    s.sendmail(to, [to], "Subject: x\r\n\r\nx\r\n")
except smtplib.SMTPException as e:
    out["forged_sender"] = [getattr(e, "smtp_code", 0), repr(e)]
s.quit()
try:
    s = smtplib.SMTP(smtp_host, int(smtp_port), timeout=60)
    s.login(su, pw + "-wrong")
except smtplib.SMTPAuthenticationError as e:
    out["wrong_password"] = [e.smtp_code, e.smtp_error.decode()]
print(json.dumps(out))
"#;

const POP: &str = r#"
import json, poplib, sys, time
host, port, user, pw, mode = sys.argv[1:6]
p = poplib.POP3(host, int(port), timeout=60)
p.user(user); p.pass_(pw)
out = {"stat": p.stat(), "uidl": [u.decode() for u in p.uidl()[1]]}
out["top"] = [l.decode() for l in p.top(1, 5)[1]]
if mode == "dele-quit":
    p.dele(1); p.quit()
elif mode == "dele-drop":
    p.dele(1); p.sock.close()
else:
    p.quit()
print(json.dumps(out))
"#;

#[test]
fn starttls_and_stls_upstream_with_smtplib_and_poplib() {
    let rf = peers();
    let k = proxy(&rf, "starttls", "starttls");
    let (ph, pp) = (
        k.smtp.unwrap().ip().to_string(),
        k.smtp.unwrap().port().to_string(),
    );
    let (qh, qp) = (
        k.pop3.unwrap().ip().to_string(),
        k.pop3.unwrap().port().to_string(),
    );
    let su = user(ALICE.0, rf.submission_addr());
    let pu = user(BOB.0, rf.pop3_addr());
    let (ok, out, err) = python(
        CLIENT,
        &[&ph, &pp, &qh, &qp, &su, &pu, ALICE.1, ALICE.0, BOB.0],
    );
    assert!(ok, "{err}\n{}", k.log());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Postfix's own refusals reach the client with their codes
    assert_eq!(v["unknown_rcpt"][0], 550, "{v}");
    assert_eq!(v["forged_sender"][0], 553, "{v}");
    assert_eq!(v["wrong_password"][0], 535, "{v}");
    assert!(
        v["wrong_password"][1]
            .as_str()
            .unwrap()
            .starts_with("5.7.8"),
        "{v}"
    );
    assert_eq!(
        rf.wait_for_messages(BOB.0, 3, Duration::from_secs(20))
            .len(),
        3
    );

    let pop = |mode: &str| -> serde_json::Value {
        let (ok, out, err) = python(POP, &[&qh, &qp, &pu, BOB.1, mode]);
        assert!(ok, "{err}\n{}", k.log());
        serde_json::from_str(&out).unwrap()
    };
    let first = pop("look");
    assert_eq!(first["stat"][0], 3);
    // TOP n 5 is forced to TOP n 0 (KOM-LE-A_2041): the header and no body line
    let top: Vec<String> = serde_json::from_value(first["top"].clone()).unwrap();
    // Postfix may deliver the three mails in any order
    assert!(top.iter().any(|l| l.starts_with("Subject: n")), "{top:?}");
    assert!(!top.iter().any(|l| l.starts_with("mail ")), "{top:?}");
    // UIDL is stable across sessions
    assert_eq!(pop("look")["uidl"], first["uidl"]);
    // DELE without QUIT deletes nothing upstream
    pop("dele-drop");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rf.maildir_messages(BOB.0).len(), 3);
    // DELE with QUIT deletes exactly one
    pop("dele-quit");
    assert_eq!(rf.maildir_messages(BOB.0).len(), 2);
    assert_eq!(pop("look")["stat"][0], 2);
}
