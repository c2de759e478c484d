//! The fault matrix (issue 9, item 4): the Fachdienst killed or stalled at each step of
//! SMTP and POP3, one test per cell, each driving the real kim-cm binary.
//!
//! For every cell: what the client is told (never 250 for a mail the MTA did not
//! confirm, never a cut mail presented as complete), that every mail reached the
//! Fachdienst exactly once or the client was told it did not, that the client's retry
//! on a working connection delivers exactly once, that nothing is removed upstream
//! that the client did not delete with a completed QUIT, and that no spool or
//! plaintext file is left behind. A kill closes the TLS connection at that step; a
//! stall stops answering, and kim-cm's `upstream_timeout_secs` (2 here) ends the wait:
//! the assertions are about what happens, not how fast.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::fake_mta::{self, FakeMta};
use common::fake_pop3::{self, FakePop3};
use common::kimcm::KimCm;
use common::raw::{plain, Raw};

// ---------------------------------------------------------------- SMTP

const MAIL: &str = "From: alice@praxis-a.kim.test\r\nTo: bob@praxis-b.kim.test\r\nSubject: matrix\r\n\r\nhello\r\n";

/// Where the client hears about the fault.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Heard {
    /// At its AUTH: kim-cm logs in upstream there.
    Auth,
    /// After its final dot: kim-cm opens the upstream transaction only then (A_23554).
    Dot,
}

struct Cell {
    name: &'static str,
    fault: fake_mta::Fault,
    heard: Heard,
    /// The start of the reply the client must get.
    reply: &'static str,
    /// A piece of the one log line that says what happened.
    log: &'static str,
    /// A mail large enough that kim-cm's writes block on a peer that stopped reading.
    big: bool,
}

fn smtp_proxy(mta: &FakeMta) -> KimCm {
    KimCm::serve(&format!(
        "[proxy]\ndata_dir = \"{{dir}}/data\"\nallow_unsealed_for_testing = true\n\
         upstream_timeout_secs = 2\nspool_memory_limit = 4096\n\
         [[smtp_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
         [upstream]\nca_file = \"{}\"\n",
        mta.ca_file.display()
    ))
}

fn user_for(addr: SocketAddr) -> String {
    format!("alice@praxis-a.kim.test#{addr}#1#KOM_LE#7")
}

fn big_mail() -> String {
    // 6 MiB: more than the loopback socket buffers hold for a reader that stopped
    let mut m = String::from(MAIL);
    let line = "x".repeat(1022) + "\r\n";
    for _ in 0..6 * 1024 {
        m.push_str(&line);
    }
    m
}

/// What one client session saw: the AUTH reply, and the reply to the final dot when
/// the session got that far.
struct Attempt {
    auth: String,
    dot: Option<String>,
    client: Raw,
}

fn attempt(k: &KimCm, mta: SocketAddr, mail: &str) -> Attempt {
    let mut c = Raw::connect(k.smtp.unwrap());
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO client");
    let auth = c.cmd(&format!("AUTH PLAIN {}", plain(&user_for(mta), "pw")));
    if !auth.starts_with("235") {
        return Attempt {
            auth,
            dot: None,
            client: c,
        };
    }
    assert!(c
        .cmd("MAIL FROM:<alice@praxis-a.kim.test>")
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@praxis-b.kim.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(mail.as_bytes());
    c.send(b".\r\n");
    let dot = Some(c.reply());
    Attempt {
        auth,
        dot,
        client: c,
    }
}

fn spool_is_empty(k: &KimCm) -> bool {
    std::fs::read_dir(k.spool_dir()).map_or(true, |d| d.count() == 0)
}

/// One SMTP cell: the fault, what the client is told, nothing delivered, then the MTA
/// heals and the client's retry arrives exactly once; no spool file left.
fn smtp_cell(cell: Cell) {
    let name = cell.name;
    let mail = if cell.big {
        big_mail()
    } else {
        MAIL.to_string()
    };
    let mta = FakeMta::start(cell.fault);
    let k = smtp_proxy(&mta);

    let mut a = attempt(&k, mta.addr, &mail);
    let told = match cell.heard {
        Heard::Auth => {
            assert!(a.dot.is_none(), "[{name}] AUTH should fail, got {}", a.auth);
            a.auth.clone()
        }
        Heard::Dot => {
            assert!(a.auth.starts_with("235"), "[{name}] AUTH: {}", a.auth);
            a.dot.clone().unwrap()
        }
    };
    assert!(
        told.starts_with(cell.reply),
        "[{name}] expected {}, the client was told {told}\n{}",
        cell.reply,
        k.log()
    );
    assert!(!told.starts_with('2'), "[{name}] {told}");
    if told.starts_with("421") {
        // 421 closes the session (KOM-LE-A_2016)
        assert!(a.client.closed(), "[{name}] session still open after 421");
    } else {
        // the session goes on: the client may try again
        assert!(
            a.client.cmd("NOOP").starts_with("250"),
            "[{name}] session unusable"
        );
    }
    assert_eq!(mta.delivered.lock().unwrap().len(), 0, "[{name}] delivered");
    let log = k.wait_log(cell.log);
    assert!(
        log.lines().any(|l| l.contains(cell.log)),
        "[{name}] no log line with '{}':\n{log}",
        cell.log
    );

    // the MTA is back; the client sends again: exactly one copy arrives
    mta.heal();
    let again = attempt(&k, mta.addr, &mail);
    let r = again.dot.unwrap_or(again.auth);
    assert!(r.starts_with("250"), "[{name}] retry: {r}\n{}", k.log());
    let got = mta.delivered.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "[{name}] copies after the retry");
    assert_eq!(got[0], mail.as_bytes(), "[{name}] the mail changed");
    assert!(spool_is_empty(&k), "[{name}] spool left behind");
}

use fake_mta::Fault as M;

#[test]
fn smtp_greeting_kill() {
    smtp_cell(Cell {
        name: "greeting kill",
        fault: M::KillAtGreeting,
        heard: Heard::Auth,
        reply: "454 4.7.0",
        log: "cannot reach the MTA",
        big: false,
    });
}

#[test]
fn smtp_greeting_stall() {
    smtp_cell(Cell {
        name: "greeting stall",
        fault: M::StallAtGreeting,
        heard: Heard::Auth,
        reply: "421 4.4.2",
        log: "cannot reach the MTA: no answer from the server within 2s",
        big: false,
    });
}

#[test]
fn smtp_auth_kill() {
    smtp_cell(Cell {
        name: "AUTH kill",
        fault: M::KillAtAuth,
        heard: Heard::Auth,
        reply: "454 4.7.0",
        log: "login at the MTA failed",
        big: false,
    });
}

#[test]
fn smtp_auth_stall() {
    smtp_cell(Cell {
        name: "AUTH stall",
        fault: M::StallAtAuth,
        heard: Heard::Auth,
        reply: "421 4.4.2",
        log: "login at the MTA failed: no answer from the server within 2s",
        big: false,
    });
}

#[test]
fn smtp_mail_kill() {
    smtp_cell(Cell {
        name: "MAIL kill",
        fault: M::KillAtMail,
        heard: Heard::Dot,
        reply: "421 4.4.2 Connection to the Fachdienst MTA lost; the mail was not sent",
        log: "MTA connection failed before the data",
        big: false,
    });
}

#[test]
fn smtp_mail_stall() {
    smtp_cell(Cell {
        name: "MAIL stall",
        fault: M::StallAtMail,
        heard: Heard::Dot,
        reply: "421 4.4.2 The Fachdienst MTA did not answer in time; the mail was not sent",
        log: "MTA connection failed before the data: no answer from the server within 2s",
        big: false,
    });
}

#[test]
fn smtp_rcpt_kill() {
    smtp_cell(Cell {
        name: "RCPT kill",
        fault: M::KillAtRcpt,
        heard: Heard::Dot,
        reply: "421 4.4.2 Connection to the Fachdienst MTA lost; the mail was not sent",
        log: "MTA connection failed before the data",
        big: false,
    });
}

#[test]
fn smtp_rcpt_stall() {
    smtp_cell(Cell {
        name: "RCPT stall",
        fault: M::StallAtRcpt,
        heard: Heard::Dot,
        reply: "421 4.4.2 The Fachdienst MTA did not answer in time; the mail was not sent",
        log: "MTA connection failed before the data: no answer from the server within 2s",
        big: false,
    });
}

#[test]
fn smtp_data_command_kill() {
    smtp_cell(Cell {
        name: "DATA command kill",
        fault: M::KillAtData,
        heard: Heard::Dot,
        reply: "421 4.4.2 Connection to the Fachdienst MTA lost; the mail was not sent",
        log: "MTA connection failed before the data",
        big: false,
    });
}

#[test]
fn smtp_in_data_kill() {
    smtp_cell(Cell {
        name: "in DATA kill",
        fault: M::CloseInData,
        heard: Heard::Dot,
        // (which of the two texts depends on whether the final dot fitted into the
        // socket buffers before the MTA went; the 6 MiB mail makes it "not accepted")
        reply: "421 4.4.2 Connection to the Fachdienst MTA lost",
        log: "MTA connection failed while sending",
        big: true,
    });
}

#[test]
fn smtp_in_data_stall() {
    smtp_cell(Cell {
        name: "in DATA stall",
        fault: M::StallInData,
        heard: Heard::Dot,
        reply:
            "421 4.4.2 The Fachdienst MTA did not answer in time; the mail may not have been sent",
        log: "MTA connection failed while sending: no answer from the server within 2s",
        big: true,
    });
}

#[test]
fn smtp_after_data_kill() {
    smtp_cell(Cell {
        name: "after DATA kill",
        fault: M::KillAfterData,
        heard: Heard::Dot,
        // the RFC 1047 window: kim-cm cannot know, and says so
        reply: "421 4.4.2 Connection to the Fachdienst MTA lost before it confirmed the mail; it may have arrived",
        log: "MTA connection failed while sending: the server closed the connection after the mail's final dot",
        big: false,
    });
}

#[test]
fn smtp_after_data_stall() {
    smtp_cell(Cell {
        name: "after DATA stall",
        fault: M::SilentAfterData,
        heard: Heard::Dot,
        reply:
            "421 4.4.2 The Fachdienst MTA did not answer in time; the mail may not have been sent",
        log: "MTA connection failed while sending: no answer from the server within 2s",
        big: false,
    });
}

/// Before any mail byte went upstream (MAIL, RCPT, the DATA command), a connection
/// the MTA closed is replaced by a fresh login: the client hears 250 at once and the
/// mail arrives exactly once, over the second connection.
#[test]
fn smtp_kill_before_the_data_on_one_connection_is_retried_by_kim_cm_once() {
    for (name, fault) in [
        ("MAIL", M::KillAtMail),
        ("RCPT", M::KillAtRcpt),
        ("DATA command", M::KillAtData),
    ] {
        let mta = FakeMta::start_first_connection(fault);
        let k = smtp_proxy(&mta);
        let a = attempt(&k, mta.addr, MAIL);
        let r = a.dot.unwrap_or(a.auth);
        assert!(r.starts_with("250"), "[{name}] {r}\n{}", k.log());
        assert_eq!(mta.delivered.lock().unwrap().len(), 1, "[{name}] copies");
        assert_eq!(
            mta.connections.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "[{name}] connections"
        );
        let cmds = mta.commands.lock().unwrap().clone();
        assert_eq!(
            cmds.iter().filter(|c| c.starts_with("DATA")).count(),
            if fault == M::KillAtData { 2 } else { 1 },
            "[{name}] {cmds:?}"
        );
        assert!(spool_is_empty(&k), "[{name}] spool left behind");
    }
}

// ---------------------------------------------------------------- POP3

const RECIPIENT: &str = "empf@praxis-b.kim.test";
const SENDER: &str = "sender@praxis-a.kim.test";
const MARKER: &str = "marker-7c1e-plaintext-of-the-sealed-mail";

/// A mail that is no KIM mail (no X-KOM-LE-Version): passed on as it is. Large enough
/// to span many reads and move kim-cm's spool to a file, with lines to dot-stuff.
fn plain_mail() -> Vec<u8> {
    let mut m = format!("From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: plain\r\n\r\n").into_bytes();
    for i in 0..3000 {
        if i % 5 == 0 {
            m.push(b'.');
        }
        m.extend_from_slice(
            format!("line {i:05} of a mail cut in the middle of its RETR\r\n").as_bytes(),
        );
    }
    m
}

struct Pop3World {
    _pki_dir: tempfile::TempDir,
    fake: FakePop3,
    kimcm: KimCm,
    plain: Vec<u8>,
    sealed: Vec<u8>,
}

/// A test PKI, a KIM mail sealed by kim-cm's own sealer for the recipient, the fake
/// mailbox serving [plain, sealed] with `fault`, and kim-cm in front of it with the
/// recipient's software keys.
fn pop3_world(fault: impl FnOnce(&[u8], &[u8]) -> fake_pop3::Fault) -> Pop3World {
    use kim_cm::crypto::sealer::SoftwareSealer;
    use kim_cm::crypto::software::SoftwareKeys;
    use kim_cm::kim::{seal, send};

    let pki_dir = tempfile::tempdir().unwrap();
    let pki = kim_cm::testbed::pki::make(pki_dir.path(), &[SENDER, RECIPIENT]).unwrap();
    let mut keys = SoftwareKeys::default();
    for acc in &pki.accounts {
        let k = SoftwareKeys::read_account(
            &acc.signing_pkcs12,
            &acc.encryption_pkcs12,
            Some(&pki.password_file),
        )
        .unwrap();
        keys.insert(&acc.address, k);
    }
    let content = format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: Befund\r\nMessage-ID: <m@praxis-a.kim.test>\r\n\r\n{MARKER}\r\n.a line to stuff\r\n"
    );
    let certs = |a: &str| match keys.account(a) {
        Some(k) => vec![k.encryption[0].cert.clone()],
        None => Vec::new(),
    };
    let sealed = seal::seal(
        content.into_bytes(),
        SENDER,
        &[RECIPIENT.into()],
        &certs,
        &SoftwareSealer { keys: &keys },
        &send::outer_fields(None, send::Version::Small),
    )
    .unwrap()
    .mail;
    assert!(!sealed.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()));
    let plain = plain_mail();
    let fault = fault(&plain, &sealed);
    let fake = FakePop3::start(vec![plain.clone(), sealed.clone()], fault);
    let acc = pki
        .accounts
        .iter()
        .find(|a| a.address == RECIPIENT)
        .unwrap();
    let kimcm = KimCm::serve(&format!(
        "[proxy]\ndata_dir = \"{{dir}}/data\"\nupstream_timeout_secs = 2\nspool_memory_limit = 4096\n\
         [[pop3_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
         [upstream]\nca_file = \"{}\"\npop3_tls = \"implicit\"\n\
         [directory]\nfolder = \"{}\"\n[trust]\nca_file = \"{}\"\n\
         [[account]]\naddress = \"{RECIPIENT}\"\nsmtp_server = \"127.0.0.1:1\"\npop3_server = \"{}\"\n\
         signing_pkcs12 = \"{}\"\nencryption_pkcs12 = \"{}\"\npkcs12_password_file = \"{}\"\n",
        fake.ca_file.display(),
        pki.directory.display(),
        pki.ca_cert.display(),
        fake.addr,
        acc.signing_pkcs12.display(),
        acc.encryption_pkcs12.display(),
        pki.password_file.display(),
    ));
    Pop3World {
        _pki_dir: pki_dir,
        fake,
        kimcm,
        plain,
        sealed,
    }
}

/// A POP3 client that tells a complete multi-line answer from one cut short.
struct Pop {
    r: BufReader<TcpStream>,
}

#[derive(Debug)]
enum Answer {
    /// `-ERR` and its text.
    Err(String),
    /// `+OK`, the lines and the final `.`: the mail un-stuffed.
    Complete(Vec<u8>),
    /// `+OK` and lines, but the connection ended before the final `.`.
    Cut(Vec<u8>),
    /// The connection ended before any status line.
    Gone,
}

impl Pop {
    fn login(addr: SocketAddr) -> Pop {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut p = Pop {
            r: BufReader::new(s),
        };
        assert!(p.line().unwrap().starts_with(b"+OK"));
        assert!(p.cmd(&format!("USER {RECIPIENT}")).starts_with("+OK"));
        let r = p.cmd("PASS pw");
        assert!(r.starts_with("+OK"), "{r}");
        p
    }

    /// One line without its CRLF; None at the end of the connection.
    fn line(&mut self) -> Option<Vec<u8>> {
        let mut l = Vec::new();
        match self.r.read_until(b'\n', &mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) if !l.ends_with(b"\n") => None,
            Ok(_) => {
                l.truncate(l.len() - 1);
                if l.ends_with(b"\r") {
                    l.pop();
                }
                Some(l)
            }
        }
    }

    /// A command and its status line ("" when the connection ended).
    fn cmd(&mut self, line: &str) -> String {
        let _ = self.r.get_mut().write_all(format!("{line}\r\n").as_bytes());
        self.line()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default()
    }

    fn multiline(&mut self, line: &str) -> Answer {
        let status = self.cmd(line);
        if status.starts_with("-ERR") {
            return Answer::Err(status);
        }
        if !status.starts_with("+OK") {
            return Answer::Gone;
        }
        let mut body = Vec::new();
        loop {
            let Some(l) = self.line() else {
                return Answer::Cut(body);
            };
            if l == b"." {
                return Answer::Complete(body);
            }
            body.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
            body.extend_from_slice(b"\r\n");
        }
    }

    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

/// No file under kim-cm's data folder holds the sealed mail's plaintext, and the
/// spool folder is empty.
fn no_leftovers(k: &KimCm, cell: &str) {
    assert!(spool_is_empty(k), "[{cell}] spool left behind");
    fn walk(p: &Path, cell: &str) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, cell);
            } else if let Ok(bytes) = std::fs::read(&path) {
                assert!(
                    !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
                    "[{cell}] plaintext in {}",
                    path.display()
                );
            }
        }
    }
    walk(&k.dir.path().join("data"), cell);
}

/// What the client must get for the sealed mail: opened, verified, whole.
fn assert_opened(mail: &[u8], cell: &str) {
    let text = String::from_utf8_lossy(mail);
    assert!(
        text.contains("X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\n"),
        "[{cell}] {text}"
    );
    assert!(
        text.contains(&format!("\r\n\r\n{MARKER}\r\n.a line to stuff\r\n")),
        "[{cell}] {text}"
    );
}

/// A RETR cut upstream: the client gets -ERR and the connection ends, never a cut mail
/// as complete; nothing is removed upstream and no QUIT was sent; the next session's
/// LIST and RETR give the whole mail, twice the same.
fn pop3_retr_cell(cell: &str, msg: usize, stall: bool) {
    let w = pop3_world(|plain, sealed| {
        let len = if msg == 1 { plain.len() } else { sealed.len() };
        let after = len / 2;
        if stall {
            fake_pop3::Fault::StallInRetr { msg, after }
        } else {
            fake_pop3::Fault::KillInRetr { msg, after }
        }
    });
    let k = &w.kimcm;
    let mut p = Pop::login(k.pop3.unwrap());
    match p.multiline(&format!("RETR {msg}")) {
        Answer::Err(t) => assert!(
            t.contains("[SYS/TEMP] lost the connection to the Fachdienst POP3 server"),
            "[{cell}] {t}"
        ),
        // not presented as complete, but kim-cm spools the whole mail before its +OK
        Answer::Cut(b) => panic!("[{cell}] +OK and {} bytes, then the end", b.len()),
        other => panic!("[{cell}] expected -ERR, got {other:?}\n{}", k.log()),
    }
    assert!(p.closed(), "[{cell}] session still open after the loss");
    let needle = if stall {
        "Fachdienst POP3 connection lost: no answer from the server within 2s"
    } else {
        "Fachdienst POP3 connection lost: the server closed the connection"
    };
    let log = k.wait_log(needle);
    assert!(log.lines().any(|l| l.contains(needle)), "[{cell}] {log}");
    assert!(
        !w.fake.commands_of(1).iter().any(|c| c == "QUIT"),
        "[{cell}] QUIT sent on the broken connection: {:?}",
        w.fake.commands_of(1)
    );
    no_leftovers(k, cell);

    // the client comes back: the whole mail, and LIST agrees with it
    let mut p = Pop::login(k.pop3.unwrap());
    let list = p.cmd(&format!("LIST {msg}"));
    let size: usize = list
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("[{cell}] LIST: {list}"));
    let first = match p.multiline(&format!("RETR {msg}")) {
        Answer::Complete(m) => m,
        other => panic!("[{cell}] second RETR: {other:?}"),
    };
    assert_eq!(first.len(), size, "[{cell}] LIST size and RETR differ");
    if msg == 1 {
        assert_eq!(first, w.plain, "[{cell}] the plain mail changed");
    } else {
        assert_opened(&first, cell);
    }
    let second = match p.multiline(&format!("RETR {msg}")) {
        Answer::Complete(m) => m,
        other => panic!("[{cell}] third RETR: {other:?}"),
    };
    assert_eq!(first, second, "[{cell}] RETR not repeatable");
    assert!(p.cmd("QUIT").starts_with("+OK"), "[{cell}]");
    assert!(
        w.fake.committed.lock().unwrap().is_empty(),
        "[{cell}] removed upstream without a DELE"
    );
    assert_eq!(w.fake.remaining(), ["uid-1", "uid-2"], "[{cell}]");
    no_leftovers(k, cell);
}

#[test]
fn pop3_kill_in_retr_of_a_plain_mail() {
    pop3_retr_cell("RETR kill, plain mail", 1, false);
}

#[test]
fn pop3_kill_in_retr_of_a_sealed_mail() {
    pop3_retr_cell("RETR kill, KIM mail", 2, false);
}

#[test]
fn pop3_stall_in_retr_of_a_sealed_mail() {
    pop3_retr_cell("RETR stall, KIM mail", 2, true);
}

/// The Fachdienst lost around DELE or QUIT: the client is told the deletion did not
/// happen, nothing is removed, and a later DELE+QUIT removes exactly that mail once.
fn pop3_dele_cell(cell: &str, fault: fake_pop3::Fault) {
    let w = pop3_world(|_, _| fault);
    let k = &w.kimcm;
    let mut p = Pop::login(k.pop3.unwrap());
    let got = match p.multiline("RETR 1") {
        Answer::Complete(m) => m,
        other => panic!("[{cell}] RETR: {other:?}"),
    };
    assert_eq!(got, w.plain, "[{cell}]");
    let dele = p.cmd("DELE 1");
    match fault {
        fake_pop3::Fault::KillAtDele => {
            assert!(dele.starts_with("-ERR [SYS/TEMP]"), "[{cell}] DELE: {dele}");
            assert!(p.closed(), "[{cell}] session still open after the loss");
        }
        _ => {
            // the Fachdienst said +OK; the loss shows at QUIT
            assert!(dele.starts_with("+OK"), "[{cell}] DELE: {dele}");
            let quit = p.cmd("QUIT");
            assert!(
                quit.starts_with("-ERR [SYS/TEMP] some deleted messages not removed"),
                "[{cell}] QUIT: {quit}\n{}",
                k.log()
            );
        }
    }
    assert!(
        w.fake.committed.lock().unwrap().is_empty(),
        "[{cell}] removed although the QUIT did not complete"
    );
    assert_eq!(w.fake.remaining(), ["uid-1", "uid-2"], "[{cell}]");
    no_leftovers(k, cell);

    // the client comes back, deletes again and quits: exactly that mail goes
    let mut p = Pop::login(k.pop3.unwrap());
    assert!(p.cmd("STAT").starts_with("+OK 2 "), "[{cell}]");
    match p.multiline("RETR 1") {
        Answer::Complete(m) => assert_eq!(m, w.plain, "[{cell}]"),
        other => panic!("[{cell}] RETR after reconnecting: {other:?}"),
    }
    assert!(p.cmd("DELE 1").starts_with("+OK"), "[{cell}]");
    assert!(p.cmd("QUIT").starts_with("+OK"), "[{cell}]");
    assert_eq!(*w.fake.committed.lock().unwrap(), ["uid-1"], "[{cell}]");
    assert_eq!(w.fake.remaining(), ["uid-2"], "[{cell}]");

    // and the other one is still there, whole
    let mut p = Pop::login(k.pop3.unwrap());
    assert!(p.cmd("STAT").starts_with("+OK 1 "), "[{cell}]");
    match p.multiline("RETR 1") {
        Answer::Complete(m) => assert_opened(&m, cell),
        other => panic!("[{cell}] RETR of the KIM mail: {other:?}"),
    }
    assert!(p.cmd("QUIT").starts_with("+OK"), "[{cell}]");
    assert_eq!(w.fake.committed.lock().unwrap().len(), 1, "[{cell}]");
    let _ = &w.sealed;
    no_leftovers(k, cell);
}

#[test]
fn pop3_kill_at_dele() {
    pop3_dele_cell("DELE kill", fake_pop3::Fault::KillAtDele);
}

#[test]
fn pop3_kill_after_dele_before_quit() {
    pop3_dele_cell("kill after DELE", fake_pop3::Fault::KillAfterDele);
}

#[test]
fn pop3_kill_at_quit_before_ok() {
    pop3_dele_cell("QUIT kill", fake_pop3::Fault::KillAtQuit);
}
