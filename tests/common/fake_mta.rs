//! A scripted SMTPS server that misbehaves on purpose, for fault tests: it can refuse
//! recipients, drop the connection in the middle of DATA, or stop answering.
//!
//! The kill and stall faults cover each step of a session (greeting, AUTH, MAIL,
//! RCPT, DATA, after the final dot): a kill closes the TLS connection there, a stall
//! stops answering and holds the connection until the peer gives up. A fault may be
//! lifted for later connections ([`FakeMta::heal`]) or apply to the first connection
//! only ([`FakeMta::start_first_connection`]), so a retry can be shown to arrive once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Behaves well: accepts everything.
    None,
    /// Refuses every RCPT with 550 5.1.1.
    RejectRcpt,
    /// Reads a few bytes of DATA, then closes the connection.
    CloseInData,
    /// Reads all of DATA, then never answers.
    SilentAfterData,
    /// Refuses AUTH with 535.
    RejectAuth,
    /// The first connection is closed after its AUTH (an MTA dropping an idle
    /// session); later connections behave well.
    DropFirstAfterAuth,
    /// TLS accepted, then closed before the 220 greeting.
    KillAtGreeting,
    /// TLS accepted, then no greeting at all.
    StallAtGreeting,
    /// Closes the connection when AUTH comes, without an answer.
    KillAtAuth,
    /// Never answers AUTH.
    StallAtAuth,
    /// Closes the connection when MAIL FROM comes, without an answer.
    KillAtMail,
    /// Never answers MAIL FROM.
    StallAtMail,
    /// Closes the connection when RCPT TO comes, without an answer.
    KillAtRcpt,
    /// Never answers RCPT TO.
    StallAtRcpt,
    /// Closes the connection when DATA comes, before the 354.
    KillAtData,
    /// Answers 354, reads a few bytes of the mail, then stops reading and answering.
    StallInData,
    /// Reads the whole mail with its final dot, then closes without a reply (the
    /// RFC 1047 window); the mail is not recorded as delivered.
    KillAfterData,
}

pub struct FakeMta {
    pub addr: SocketAddr,
    pub ca_file: PathBuf,
    /// Completed transactions (mail bytes as received, still dot-stuffed).
    pub delivered: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Every command line received (AUTH lines included, for secrecy checks).
    pub commands: Arc<Mutex<Vec<String>>>,
    /// The fault new connections get; [`FakeMta::heal`] sets it to [`Fault::None`].
    fault: Arc<Mutex<Fault>>,
    /// Connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    _dir: tempfile::TempDir,
}

/// How long a stalled session holds its connection at most when the peer does not
/// give up (the peer's timeout is expected to be far shorter).
const STALL_HOLD: std::time::Duration = std::time::Duration::from_secs(60);

impl FakeMta {
    pub fn start(fault: Fault) -> FakeMta {
        Self::start_scoped(fault, false)
    }

    /// Like [`start`](Self::start), but only the first connection has the fault.
    pub fn start_first_connection(fault: Fault) -> FakeMta {
        Self::start_scoped(fault, true)
    }

    /// Connections from now on behave well (a restarted MTA).
    pub fn heal(&self) {
        *self.fault.lock().unwrap() = Fault::None;
    }

    fn start_scoped(fault: Fault, first_only: bool) -> FakeMta {
        let dir = tempfile::tempdir().unwrap();
        let tls = kim_cm::testbed::ca::make_tls_ca(dir.path(), &[]).unwrap();
        let acceptor =
            Arc::new(kim_cm::net::tls::acceptor(&tls.server_cert, &tls.server_key).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let shared_fault = Arc::new(Mutex::new(fault));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (d, c, f, n) = (
            delivered.clone(),
            commands.clone(),
            shared_fault.clone(),
            connections.clone(),
        );
        std::thread::spawn(move || {
            for (i, tcp) in listener.incoming().enumerate() {
                let Ok(tcp) = tcp else { continue };
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (acceptor, d, c) = (acceptor.clone(), d.clone(), c.clone());
                let fault = match *f.lock().unwrap() {
                    Fault::DropFirstAfterAuth if i > 0 => Fault::None,
                    _ if first_only && i > 0 => Fault::None,
                    f => f,
                };
                std::thread::spawn(move || {
                    if let Ok(tls) = acceptor.accept(tcp) {
                        let _ = session(tls, fault, &d, &c);
                    }
                });
            }
        });
        FakeMta {
            addr,
            ca_file: tls.ca_cert,
            delivered,
            commands,
            fault: shared_fault,
            connections,
            _dir: dir,
        }
    }
}

fn session<S: Read + Write>(
    s: S,
    fault: Fault,
    delivered: &Mutex<Vec<Vec<u8>>>,
    commands: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(s);
    let say = |r: &mut BufReader<S>, t: &str| -> std::io::Result<()> {
        r.get_mut().write_all(t.as_bytes())?;
        r.get_mut().flush()
    };
    match fault {
        Fault::KillAtGreeting => return Ok(()),
        Fault::StallAtGreeting => return hold(r),
        _ => {}
    }
    say(&mut r, "220 fake.mta ESMTP\r\n")?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        commands.lock().unwrap().push(line.trim_end().to_string());
        let upper = line.to_ascii_uppercase();
        let step = |kill: Fault, stall: Fault| {
            if fault == kill {
                Some(false)
            } else if fault == stall {
                Some(true)
            } else {
                None
            }
        };
        // Some(false): kill here; Some(true): stall here
        let at = if upper.starts_with("AUTH") {
            step(Fault::KillAtAuth, Fault::StallAtAuth)
        } else if upper.starts_with("MAIL") {
            step(Fault::KillAtMail, Fault::StallAtMail)
        } else if upper.starts_with("RCPT") {
            step(Fault::KillAtRcpt, Fault::StallAtRcpt)
        } else if upper.starts_with("DATA") {
            (fault == Fault::KillAtData).then_some(false)
        } else {
            None
        };
        match at {
            Some(false) => return Ok(()),
            Some(true) => return hold(r),
            None => {}
        }
        if upper.starts_with("EHLO") {
            say(&mut r, "250-fake.mta\r\n250-SIZE 1000000000\r\n250-AUTH PLAIN LOGIN\r\n250-DSN\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("AUTH") {
            if fault == Fault::RejectAuth {
                say(&mut r, "535 5.7.8 Error: authentication failed\r\n")?;
            } else if fault == Fault::DropFirstAfterAuth {
                say(&mut r, "235 2.7.0 Authentication successful\r\n")?;
                let mut next = String::new();
                r.read_line(&mut next)?;
                commands
                    .lock()
                    .unwrap()
                    .push(format!("(dropped) {}", next.trim_end()));
                return Ok(());
            } else {
                say(&mut r, "235 2.7.0 Authentication successful\r\n")?;
            }
        } else if upper.starts_with("RCPT") && fault == Fault::RejectRcpt {
            say(
                &mut r,
                "550 5.1.1 <x>: Recipient address rejected: User unknown\r\n",
            )?;
        } else if upper.starts_with("DATA") {
            say(&mut r, "354 go ahead\r\n")?;
            if fault == Fault::CloseInData {
                let mut buf = [0u8; 16];
                r.read_exact(&mut buf)?;
                return Ok(());
            }
            if fault == Fault::StallInData {
                let mut buf = [0u8; 16];
                r.read_exact(&mut buf)?;
                // neither reads nor answers: the peer's writes or its wait must time out
                std::thread::sleep(STALL_HOLD);
                return Ok(());
            }
            let mut mail = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l)? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                mail.extend_from_slice(&l);
            }
            if fault == Fault::SilentAfterData {
                std::thread::sleep(std::time::Duration::from_secs(30));
                return Ok(());
            }
            if fault == Fault::KillAfterData {
                // a real MTA may have queued the mail here before it died (RFC 1047)
                commands
                    .lock()
                    .unwrap()
                    .push("(killed after the final dot)".into());
                return Ok(());
            }
            delivered.lock().unwrap().push(mail);
            say(&mut r, "250 2.0.0 Ok: queued\r\n")?;
        } else if upper.starts_with("QUIT") {
            say(&mut r, "221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            say(&mut r, "250 2.0.0 Ok\r\n")?;
        }
    }
}

/// A stalled session: answers nothing, reads (and drops) whatever comes until the peer
/// closes, or [`STALL_HOLD`] passes.
fn hold<S: Read + Write>(r: BufReader<S>) -> std::io::Result<()> {
    let end = std::time::Instant::now() + STALL_HOLD;
    let mut s = r.into_inner();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
    Ok(())
}
