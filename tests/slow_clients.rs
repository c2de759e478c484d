//! Slow clients and password guessing (issue 9, item 5): a client that dribbles a
//! command one byte at a time (slowloris) is cut off once the whole line has not
//! come within the client timeout; a session that does not log in is closed at the
//! login deadline; a client that is slow but within bounds is served. Failed logins
//! are counted per client address across sessions, listeners and protocols: past
//! the bound, logins are refused without asking the Fachdienst.
//!
//! Timeouts are configured small (seconds) and the pauses well inside them; the
//! assertions are about what the client is told, not how fast.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::Duration;

use common::fake_mta::{FakeMta, Fault};
use common::kimcm::KimCm;
use common::raw::plain;
use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};

/// The pause between dribbled bytes: far inside every timeout configured here.
const DRIBBLE_PAUSE: Duration = Duration::from_millis(100);
/// The pause between the lines of a slow but well-behaved client.
const SLOW_PAUSE: Duration = Duration::from_millis(600);
/// A bound on how long a test waits for something that should come (not a
/// measurement: only so that a broken kim-cm fails the test instead of hanging it).
const GIVE_UP: Duration = Duration::from_secs(60);

// ---- a line client that may find the connection closed under it ----

struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        Client::wrap(TcpStream::connect(addr).expect("connect"))
    }

    /// Connects from `local` (another loopback address, e.g. 127.0.0.2).
    fn connect_from(local: IpAddr, addr: SocketAddr) -> Client {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let tcp = rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind(SocketAddr::new(local, 0))?;
            s.connect(addr).await?.into_std()
        });
        let tcp = tcp.expect("connect from another loopback address");
        tcp.set_nonblocking(false).unwrap();
        assert_eq!(tcp.local_addr().unwrap().ip(), local);
        Client::wrap(tcp)
    }

    fn wrap(tcp: TcpStream) -> Client {
        tcp.set_read_timeout(Some(GIVE_UP)).unwrap();
        Client {
            r: BufReader::new(tcp),
        }
    }

    fn writer(&self) -> TcpStream {
        self.r.get_ref().try_clone().unwrap()
    }

    /// Sends; a connection the server has closed is not an error here.
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.r.get_mut().write_all(bytes);
    }

    /// One line, or `None` when the server closed the connection.
    fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l.trim_end_matches(['\r', '\n']).to_string()),
        }
    }

    /// The last line of an SMTP reply ("" when the connection is closed).
    fn reply(&mut self) -> String {
        loop {
            let Some(l) = self.line() else {
                return String::new();
            };
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return l;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// A POP3 status line; a multi-line answer to CAPA is read to its end.
    fn pop3(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        let first = self.line().unwrap_or_default();
        if line == "CAPA" && first.starts_with("+OK") {
            while self.line().is_some_and(|l| l != ".") {}
        }
        first
    }

    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

/// Sends `line` one byte at a time from another thread; the flag is set once the
/// last byte went out.
fn dribble(c: &Client, line: &'static [u8]) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let (mut w, d) = (c.writer(), done.clone());
    std::thread::spawn(move || {
        for b in line {
            if w.write_all(&[*b]).is_err() {
                return;
            }
            sleep(DRIBBLE_PAUSE);
        }
        d.store(true, Ordering::SeqCst);
    });
    done
}

/// A command line that takes ~7 s to dribble: longer than the 2 s client timeout.
const LONG_NOOP: &[u8] = b"NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";

// ---- a minimal POP3S Fachdienst: one password is right, every command recorded ----

struct FakePop3 {
    addr: SocketAddr,
    commands: Arc<Mutex<Vec<String>>>,
}

const GOOD_PASSWORD: &str = "right";

impl FakePop3 {
    /// Serves with the certificate of `mta` (the files `make_tls_ca` wrote beside
    /// its CA), so that kim-cm's one `ca_file` trusts both.
    fn start(mta: &FakeMta) -> FakePop3 {
        let dir = mta.ca_file.parent().unwrap();
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        b.set_certificate_chain_file(dir.join("server.pem"))
            .unwrap();
        b.set_private_key_file(dir.join("server.key"), SslFiletype::PEM)
            .unwrap();
        let acceptor = Arc::new(b.build());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let c = commands.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let (acceptor, c) = (acceptor.clone(), c.clone());
                std::thread::spawn(move || {
                    if let Ok(tls) = acceptor.accept(tcp) {
                        let _ = pop3_session(tls, &c);
                    }
                });
            }
        });
        FakePop3 { addr, commands }
    }

    fn count(&self, verb: &str) -> usize {
        self.commands
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.to_ascii_uppercase().starts_with(verb))
            .count()
    }
}

fn pop3_session<S: Read + Write>(s: S, commands: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut r = BufReader::new(s);
    let say = |r: &mut BufReader<S>, t: &str| -> std::io::Result<()> {
        r.get_mut().write_all(t.as_bytes())?;
        r.get_mut().flush()
    };
    say(&mut r, "+OK fake pop3 ready\r\n")?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end().to_string();
        commands.lock().unwrap().push(line.clone());
        let upper = line.to_ascii_uppercase();
        let answer = if upper == "CAPA" {
            "+OK\r\nUSER\r\nUIDL\r\n.\r\n".to_string()
        } else if upper.starts_with("PASS ") {
            if line[5..] == *GOOD_PASSWORD {
                "+OK logged in\r\n".into()
            } else {
                "-ERR [AUTH] invalid user name or password\r\n".into()
            }
        } else if upper == "STAT" {
            "+OK 0 0\r\n".into()
        } else if upper == "UIDL" || upper == "LIST" {
            "+OK\r\n.\r\n".into()
        } else if upper == "QUIT" {
            say(&mut r, "+OK bye\r\n")?;
            return Ok(());
        } else {
            "+OK\r\n".into()
        };
        say(&mut r, &answer)?;
    }
}

// ---- kim-cm with an SMTP and a POP3 listener ----

/// kim-cm in front of `mta` and a [`FakePop3`] with its certificate.
fn proxy(mta: &FakeMta, client_timeout: u64, login_timeout: u64) -> KimCm {
    KimCm::serve(&format!(
        "[proxy]\ndata_dir = \"{{dir}}/data\"\nallow_unsealed_for_testing = true\n\
         client_timeout_secs = {client_timeout}\nlogin_timeout_secs = {login_timeout}\n\
         [[smtp_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
         [[pop3_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
         [upstream]\nca_file = \"{}\"\npop3_tls = \"implicit\"\n",
        mta.ca_file.display()
    ))
}

fn smtp_user(mta: &FakeMta) -> String {
    format!("alice@praxis-a.kim.test#{}#1#KOM_LE#7", mta.addr)
}

fn pop3_user(pop: &FakePop3) -> String {
    format!("bob@praxis-b.kim.test#{}#1#KOM_LE#7", pop.addr)
}

fn smtp_session(k: &KimCm) -> Client {
    let mut c = Client::connect(k.smtp.unwrap());
    assert!(c.reply().starts_with("220"));
    c
}

fn pop3_session_at(k: &KimCm, from: Option<IpAddr>) -> Client {
    let addr = k.pop3.unwrap();
    let mut c = match from {
        Some(ip) => Client::connect_from(ip, addr),
        None => Client::connect(addr),
    };
    assert!(c.line().unwrap_or_default().starts_with("+OK"));
    c
}

/// The number of `smtp/pop3 session ended` lines with `outcome`.
fn sessions_ended_with(k: &KimCm, outcome: &str) -> usize {
    k.log()
        .lines()
        .filter(|l| l.contains("session ended") && l.contains(outcome))
        .count()
}

// ---- slowloris ----

#[test]
fn a_command_dribbled_byte_by_byte_is_cut_off_at_the_line_deadline() {
    let mta = FakeMta::start(Fault::None);
    let pop = FakePop3::start(&mta);
    let k = proxy(&mta, 2, 120);

    // SMTP: each byte comes well inside the timeout, the line does not
    let mut c = smtp_session(&k);
    let done = dribble(&c, LONG_NOOP);
    let r = c.reply();
    assert!(
        !done.load(Ordering::SeqCst),
        "the whole line went out before the reply: {r}"
    );
    assert!(r.starts_with("421 4.4.2") && r.contains("Timeout"), "{r}");
    assert!(c.closed());
    k.wait_log("client timed out");
    assert_eq!(
        sessions_ended_with(&k, "client timed out"),
        1,
        "{}",
        k.log()
    );

    // POP3: the autologout timer closes without a word (RFC 1939 3)
    let mut c = pop3_session_at(&k, None);
    let done = dribble(
        &c,
        b"USER bob@praxis-b.kim.test#xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
    );
    assert_eq!(c.line(), None, "POP3 closes without an answer");
    assert!(
        !done.load(Ordering::SeqCst),
        "cut off before the line was whole"
    );
    k.wait_log("pop3 session ended");
    assert_eq!(
        sessions_ended_with(&k, "client timed out"),
        2,
        "{}",
        k.log()
    );
    assert_eq!(pop.count(""), 0, "nothing reached the Fachdienst");
}

#[test]
fn a_mail_line_dribbled_in_data_is_cut_off_and_nothing_is_sent() {
    let mta = FakeMta::start(Fault::None);
    let k = proxy(&mta, 2, 120);
    let mut c = smtp_session(&k);
    c.cmd("EHLO slow");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain(&smtp_user(&mta), "pw")));
    assert!(r.starts_with("235"), "{r}");
    assert!(c
        .cmd("MAIL FROM:<alice@praxis-a.kim.test>")
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@praxis-b.kim.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"From: alice@praxis-a.kim.test\r\nTo: bob@praxis-b.kim.test\r\n");
    let done = dribble(
        &c,
        b"Subject: one byte at a time, xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n\r\nhi\r\n.\r\n",
    );
    let r = c.reply();
    assert!(!done.load(Ordering::SeqCst), "the mail went out whole: {r}");
    assert!(r.starts_with("421 4.4.2") && r.contains("Timeout"), "{r}");
    assert!(c.closed());
    k.wait_log("smtp session ended");
    assert!(mta.delivered.lock().unwrap().is_empty());
    let cmds = mta.commands.lock().unwrap().clone();
    assert!(
        !cmds.iter().any(|c| c.eq_ignore_ascii_case("DATA")),
        "{cmds:?}"
    );
    let spool: Vec<_> = std::fs::read_dir(k.spool_dir()).unwrap().collect();
    assert!(spool.is_empty(), "spool left behind: {spool:?}");
}

#[test]
fn a_session_that_does_not_log_in_is_closed_at_the_login_deadline() {
    let mta = FakeMta::start(Fault::None);
    // the client timeout is long: only the login deadline can end these sessions
    let k = proxy(&mta, 60, 2);

    // SMTP: busy with NOOPs, each answered, but never logging in
    let mut c = smtp_session(&k);
    assert!(c.cmd("EHLO idle").starts_with("250"));
    let mut told = None;
    for _ in 0..(GIVE_UP.as_millis() / SLOW_PAUSE.as_millis()) {
        let r = c.cmd("NOOP");
        if !r.starts_with("250") {
            told = Some(r);
            break;
        }
        sleep(SLOW_PAUSE);
    }
    let r = told.expect("the session was never closed");
    assert!(
        r.starts_with("421 4.4.2") && r.contains("No login within 2 seconds"),
        "{r}"
    );
    assert!(c.closed());

    // POP3: the same with CAPA
    let mut c = pop3_session_at(&k, None);
    let mut told = None;
    for _ in 0..(GIVE_UP.as_millis() / SLOW_PAUSE.as_millis()) {
        let r = c.pop3("CAPA");
        if !r.starts_with("+OK") {
            told = Some(r);
            break;
        }
        sleep(SLOW_PAUSE);
    }
    let r = told.expect("the session was never closed");
    assert!(
        r.starts_with("-ERR [SYS/TEMP] no login within 2 seconds"),
        "{r}"
    );
    assert!(c.closed());

    k.wait_log("pop3 session ended");
    assert_eq!(
        sessions_ended_with(&k, "no login within login_timeout_secs"),
        2,
        "{}",
        k.log()
    );
}

#[test]
fn a_slow_client_within_the_bounds_is_served() {
    let mta = FakeMta::start(Fault::None);
    let pop = FakePop3::start(&mta);
    // every line comes within 3 s; each session lasts longer than the login
    // deadline and a mail longer than the client timeout
    let k = proxy(&mta, 3, 4);
    let mut c = smtp_session(&k);
    c.cmd("EHLO slow");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain(&smtp_user(&mta), "pw")));
    assert!(r.starts_with("235"), "{r}");
    for _ in 0..10 {
        sleep(SLOW_PAUSE);
        assert!(c.cmd("NOOP").starts_with("250"));
    }
    assert!(c
        .cmd("MAIL FROM:<alice@praxis-a.kim.test>")
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@praxis-b.kim.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let lines = [
        "From: alice@praxis-a.kim.test\r\n",
        "To: bob@praxis-b.kim.test\r\n",
        "Subject: slow\r\n",
        "\r\n",
        "line one\r\n",
        "line two\r\n",
        "line three\r\n",
        "line four\r\n",
    ];
    for l in lines {
        // a line in two pieces, then a pause: slow, never past the timeout
        let (a, b) = l.split_at(l.len() / 2);
        c.send(a.as_bytes());
        sleep(SLOW_PAUSE / 2);
        c.send(b.as_bytes());
        sleep(SLOW_PAUSE);
    }
    c.send(b".\r\n");
    let r = c.reply();
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("QUIT").starts_with("221"));
    let delivered = mta.delivered.lock().unwrap().clone();
    assert_eq!(delivered, vec![lines.concat().into_bytes()]);

    // POP3: logged in, then slow
    let mut c = pop3_session_at(&k, None);
    assert!(c
        .pop3(&format!("USER {}", pop3_user(&pop)))
        .starts_with("+OK"));
    let r = c.pop3(&format!("PASS {GOOD_PASSWORD}"));
    assert!(r.starts_with("+OK"), "{r}");
    for _ in 0..10 {
        sleep(SLOW_PAUSE);
        let r = c.pop3("STAT");
        assert!(r.starts_with("+OK 0 0"), "{r}");
    }
    assert!(c.pop3("QUIT").starts_with("+OK"));
    k.wait_log("pop3 session ended");
    assert_eq!(
        sessions_ended_with(&k, "outcome=\"quit\""),
        2,
        "{}",
        k.log()
    );
}

// ---- failed logins across sessions ----

/// `n` failed SMTP logins from 127.0.0.1, in as many sessions as it takes (each
/// closes after 3); every one is refused by the MTA with 535.
fn fail_smtp_logins(k: &KimCm, mta: &FakeMta, n: usize) {
    let mut c = smtp_session(k);
    for i in 0..n {
        if i > 0 && i % 3 == 0 {
            c = smtp_session(k);
        }
        let r = c.cmd(&format!("AUTH PLAIN {}", plain(&smtp_user(mta), "guess")));
        assert!(r.starts_with("535"), "attempt {}: {r}", i + 1);
    }
}

/// The same over POP3 USER/PASS.
fn fail_pop3_logins(k: &KimCm, pop: &FakePop3, n: usize) {
    let mut c = pop3_session_at(k, None);
    for i in 0..n {
        if i > 0 && i % 3 == 0 {
            c = pop3_session_at(k, None);
        }
        assert!(c
            .pop3(&format!("USER {}", pop3_user(pop)))
            .starts_with("+OK"));
        let r = c.pop3("PASS guess");
        assert!(r.starts_with("-ERR [AUTH]"), "attempt {}: {r}", i + 1);
    }
}

fn smtp_auths(mta: &FakeMta) -> usize {
    mta.commands
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.to_ascii_uppercase().starts_with("AUTH"))
        .count()
}

#[test]
fn ten_failed_smtp_logins_throttle_the_address_on_smtp_and_pop3() {
    let mta = FakeMta::start(Fault::RejectAuth);
    let pop = FakePop3::start(&mta);
    let k = proxy(&mta, 30, 120);
    fail_smtp_logins(&k, &mta, 10);
    assert_eq!(smtp_auths(&mta), 10);

    // the 11th is refused by kim-cm, the MTA is not asked
    let mut c = smtp_session(&k);
    let r = c.cmd(&format!("AUTH PLAIN {}", plain(&smtp_user(&mta), "guess")));
    assert_eq!(
        r,
        "454 4.7.0 Too many failed logins from your address; try again in 15 minutes"
    );
    assert!(c.cmd("NOOP").starts_with("250"), "the session goes on");
    // AUTH LOGIN too, before the user name is even asked for
    assert!(c.cmd("AUTH LOGIN").starts_with("454 4.7.0"));
    assert_eq!(smtp_auths(&mta), 10, "the MTA got exactly 10 AUTH attempts");

    // POP3 shares the count: refused without asking the Fachdienst
    let mut p = pop3_session_at(&k, None);
    assert!(p
        .pop3(&format!("USER {}", pop3_user(&pop)))
        .starts_with("+OK"));
    let r = p.pop3(&format!("PASS {GOOD_PASSWORD}"));
    assert!(
        r.starts_with(
            "-ERR [AUTH] too many failed logins from your address; try again in 15 minutes"
        ),
        "{r}"
    );
    assert_eq!(pop.count("PASS"), 0, "{:?}", pop.commands.lock().unwrap());

    // another client address is not throttled: its login reaches the MTA
    let mut other = Client::connect_from("127.0.0.2".parse().unwrap(), k.smtp.unwrap());
    assert!(other.reply().starts_with("220"));
    let r = other.cmd(&format!("AUTH PLAIN {}", plain(&smtp_user(&mta), "guess")));
    assert!(r.starts_with("535"), "{r}");
    assert_eq!(smtp_auths(&mta), 11);

    // one log line says the address was throttled; no password in the log
    let log = k.wait_log("login throttled");
    let throttled: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("login throttled"))
        .collect();
    assert_eq!(throttled.len(), 1, "{log}");
    assert!(throttled[0].contains("127.0.0.1"), "{}", throttled[0]);
    assert!(!log.contains("guess") && !log.contains(&plain(&smtp_user(&mta), "guess")));
}

#[test]
fn ten_failed_pop3_logins_throttle_the_address_and_a_good_login_resets_nothing() {
    let mta = FakeMta::start(Fault::None);
    let pop = FakePop3::start(&mta);
    let k = proxy(&mta, 30, 120);
    fail_pop3_logins(&k, &pop, 9);
    // a successful login in between does not reset the count
    let mut c = pop3_session_at(&k, None);
    assert!(c
        .pop3(&format!("USER {}", pop3_user(&pop)))
        .starts_with("+OK"));
    assert!(c.pop3(&format!("PASS {GOOD_PASSWORD}")).starts_with("+OK"));
    assert!(c.pop3("QUIT").starts_with("+OK"));
    fail_pop3_logins(&k, &pop, 1);
    assert_eq!(pop.count("PASS"), 11);

    // the next login from the address, right password or not, is refused here
    let mut c = pop3_session_at(&k, None);
    assert!(c
        .pop3(&format!("USER {}", pop3_user(&pop)))
        .starts_with("+OK"));
    let r = c.pop3(&format!("PASS {GOOD_PASSWORD}"));
    assert!(
        r.starts_with(
            "-ERR [AUTH] too many failed logins from your address; try again in 15 minutes"
        ),
        "{r}"
    );
    // AUTH PLAIN as well
    let r = c.pop3(&format!(
        "AUTH PLAIN {}",
        plain(&pop3_user(&pop), GOOD_PASSWORD)
    ));
    assert!(r.starts_with("-ERR [AUTH] too many failed logins"), "{r}");
    assert_eq!(
        pop.count("PASS"),
        11,
        "the Fachdienst got exactly 11 PASS (10 refused)"
    );

    // and SMTP from the same address, without asking the MTA
    let mut s = smtp_session(&k);
    let r = s.cmd(&format!("AUTH PLAIN {}", plain(&smtp_user(&mta), "pw")));
    assert!(r.starts_with("454 4.7.0 Too many failed logins"), "{r}");
    assert_eq!(smtp_auths(&mta), 0);

    // another client address logs in as usual
    let mut other = pop3_session_at(&k, Some("127.0.0.2".parse().unwrap()));
    assert!(other
        .pop3(&format!("USER {}", pop3_user(&pop)))
        .starts_with("+OK"));
    assert!(other
        .pop3(&format!("PASS {GOOD_PASSWORD}"))
        .starts_with("+OK"));
    assert!(other.pop3("QUIT").starts_with("+OK"));
    assert_eq!(pop.count("PASS"), 12);
    let log = k.wait_log("login throttled");
    assert_eq!(log.matches("login throttled").count(), 1, "{log}");
}
