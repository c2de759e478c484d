//! Stopping and reloading `kim-cm serve` (issue 9, item 2), against the
//! simulated Fachdienst: SIGTERM lets a mail in DATA finish and reach the
//! Fachdienst once, tells idle SMTP sessions 421 and POP3 sessions -ERR without
//! deleting what they marked, refuses new clients, empties the spool and ends
//! the process; SIGHUP takes a changed config for new sessions while a session
//! in flight completes its mail, and keeps the running config when the new one
//! is broken.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::kimcm::KimCm;
use common::raw::{plain, Raw};
use kim_cm::testbed::fachdienst::{self, Fachdienst};

const ALICE: &str = "alice@praxis-a.kim.test";
const BOB: &str = "bob@praxis-b.kim.test";
/// Well within the grace of 30 s: how long the test waits for an effect.
const EFFECT: Duration = Duration::from_secs(15);

struct Bed {
    _rt: tokio::runtime::Runtime,
    fd: Fachdienst,
    _dir: tempfile::TempDir,
}

fn fachdienst() -> Bed {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fd = rt
        .block_on(fachdienst::start(
            &dir.path().join("fd"),
            0,
            0,
            &[ALICE, BOB],
        ))
        .unwrap();
    Bed {
        _rt: rt,
        fd,
        _dir: dir,
    }
}

impl Bed {
    fn password(&self, address: &str) -> String {
        self.fd
            .accounts
            .iter()
            .find(|a| a.address == address)
            .unwrap()
            .password
            .clone()
    }

    fn mails_of(&self, address: &str) -> usize {
        std::fs::read_dir(self.fd.dir.join("mail").join(address))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn config(&self, smtp: &str, name: &str) -> String {
        format!(
            "[proxy]\ndata_dir = \"{{dir}}/data\"\nallow_unsealed_for_testing = true\nname = \"{name}\"\n\
             [[smtp_listener]]\naddress = \"{smtp}\"\ntls = \"plain\"\n\
             [[pop3_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
             [upstream]\nca_file = \"{}\"\n",
            self.fd.tls.ca_cert.display()
        )
    }
}

fn login(address: &str, server: SocketAddr) -> String {
    format!("{address}#{server}#1#KOM_LE#7")
}

/// An SMTP session logged in as alice, with bob as recipient.
fn envelope(bed: &Bed, proxy: SocketAddr) -> Raw {
    let mut c = Raw::connect(proxy);
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO client");
    let auth = c.cmd(&format!(
        "AUTH PLAIN {}",
        plain(&login(ALICE, bed.fd.smtps), &bed.password(ALICE))
    ));
    assert!(auth.starts_with("235"), "{auth}");
    assert!(c.cmd(&format!("MAIL FROM:<{ALICE}>")).starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{BOB}>")).starts_with("250"));
    c
}

fn mail(subject: &str) -> String {
    format!("From: <{ALICE}>\r\nTo: <{BOB}>\r\nSubject: {subject}\r\n\r\nBefund folgt.\r\n")
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + EFFECT;
    while !done() {
        assert!(std::time::Instant::now() < end, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spool_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn sigterm_finishes_a_mail_in_data_tells_idle_sessions_and_loses_nothing() {
    let bed = fachdienst();
    let mut k = KimCm::serve(&bed.config("127.0.0.1:0", "proxy.kim.test"));
    let (smtp, pop3) = (k.smtp.unwrap(), k.pop3.unwrap());

    // a mail for bob, delivered before anything else happens
    let mut c = envelope(&bed, smtp);
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("{}.\r\n", mail("first")).as_bytes());
    assert!(c.reply().starts_with("250"));
    c.cmd("QUIT");
    assert_eq!(bed.mails_of(BOB), 1);

    // bob's POP3 session marks it deleted and waits
    let mut p = Raw::connect(pop3);
    assert!(p.line().starts_with("+OK"));
    assert!(p
        .cmd(&format!("USER {}", login(BOB, bed.fd.pop3s)))
        .starts_with("+OK"));
    let r = p.cmd(&format!("PASS {}", bed.password(BOB)));
    assert!(r.starts_with("+OK"), "{r}");
    assert!(p.cmd("DELE 1").starts_with("+OK"));
    // alice is half way through a second mail; another client idles
    let mut a = envelope(&bed, smtp);
    assert!(a.cmd("DATA").starts_with("354"));
    let second = mail("second");
    let (head, tail) = second.split_at(20);
    a.send(head.as_bytes());
    let mut idle = Raw::connect(smtp);
    assert!(idle.reply().starts_with("220"));
    idle.cmd("EHLO idle");

    k.signal("TERM");
    // the idle SMTP client hears 421, the POP3 client -ERR, and both are closed
    let said = idle.reply();
    assert!(
        said.starts_with("421 4.3.2") && said.contains("shutting down"),
        "{said}"
    );
    assert!(idle.closed());
    let said = p.line();
    assert!(said.starts_with("-ERR [SYS/TEMP]"), "{said}");
    assert!(p.closed());
    // new clients are refused
    wait_for("new connections refused after SIGTERM", || {
        std::net::TcpStream::connect_timeout(&smtp, Duration::from_millis(200)).is_err()
    });
    // the mail in DATA is finished and accepted, then the session is closed
    a.send(format!("{tail}.\r\n").as_bytes());
    let r = a.reply();
    assert!(r.starts_with("250"), "{r}");
    assert!(a.reply().starts_with("421 4.3.2"));

    assert_eq!(k.wait_exit(EFFECT), Some(0), "{}", k.log());
    let log = k.log();
    assert!(log.contains("shutting down: no new sessions"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("were cut at shutdown"), "{log}");
    // nothing lost, nothing doubled, nothing deleted that was only marked
    assert_eq!(bed.mails_of(BOB), 2, "the first mail kept, the second once");
    assert_eq!(spool_files(&k.spool_dir()), 0);
}

/// A free loopback port (bound and released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn sighup_reloads_the_config_while_a_session_in_flight_completes() {
    let bed = fachdienst();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let k = KimCm::serve(&bed.config(&address, "before.kim.test"));
    let smtp: SocketAddr = address.parse().unwrap();
    let mut a = envelope(&bed, smtp);

    // the greeting name changes; the config is re-read on SIGHUP
    let text = std::fs::read_to_string(k.config_path()).unwrap();
    std::fs::write(
        k.config_path(),
        text.replace("before.kim.test", "after.kim.test"),
    )
    .unwrap();
    k.signal("HUP");
    k.wait_log("SIGHUP: config reloaded");
    let mut b = Raw::connect(smtp);
    let greeting = b.reply();
    assert!(greeting.contains("after.kim.test"), "{greeting}");
    b.cmd("QUIT");

    // the session from before goes on and delivers its mail
    assert!(a.cmd("DATA").starts_with("354"));
    a.send(format!("{}.\r\n", mail("across the reload")).as_bytes());
    let r = a.reply();
    assert!(r.starts_with("250"), "{r}");
    assert!(a.cmd("QUIT").starts_with("221"));
    assert_eq!(bed.mails_of(BOB), 1);

    // a broken config is refused and the running one stays
    std::fs::write(k.config_path(), "[proxy\nthis is not toml").unwrap();
    k.signal("HUP");
    k.wait_log("SIGHUP: the config was not reloaded");
    let mut c = Raw::connect(smtp);
    assert!(c.reply().contains("after.kim.test"));
    c.cmd("QUIT");
}

#[test]
fn killed_in_the_middle_of_a_mail_the_client_is_not_told_250_and_its_retry_arrives_once() {
    let bed = fachdienst();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let config = bed.config(&address, "proxy.kim.test");
    let smtp: SocketAddr = address.parse().unwrap();
    let k = KimCm::serve(&config);
    let mut a = envelope(&bed, smtp);
    assert!(a.cmd("DATA").starts_with("354"));
    let m = mail("interrupted");
    a.send(&m.as_bytes()[..20]);
    // kill -9: no goodbye, no 250
    drop(k);
    assert!(
        a.closed(),
        "the client sees the connection end without a reply"
    );
    assert_eq!(
        bed.mails_of(BOB),
        0,
        "nothing half-sent reached the Fachdienst"
    );
    // kim-cm comes back; the client sends again: exactly one copy arrives
    let _k = KimCm::serve(&config);
    let mut again = envelope(&bed, smtp);
    assert!(again.cmd("DATA").starts_with("354"));
    again.send(format!("{m}.\r\n").as_bytes());
    assert!(again.reply().starts_with("250"));
    again.cmd("QUIT");
    assert_eq!(bed.mails_of(BOB), 1);
}
