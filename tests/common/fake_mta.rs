//! A scripted SMTPS server that misbehaves on purpose, for fault tests: it can refuse
//! recipients, drop the connection in the middle of DATA, or stop answering.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};

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
}

pub struct FakeMta {
    pub addr: SocketAddr,
    pub ca_file: PathBuf,
    /// Completed transactions (mail bytes as received, still dot-stuffed).
    pub delivered: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Every command line received (AUTH lines included, for secrecy checks).
    pub commands: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl FakeMta {
    pub fn start(fault: Fault) -> FakeMta {
        let dir = tempfile::tempdir().unwrap();
        let tls = kim_cm::testbed::ca::make_tls_ca(dir.path(), &[]).unwrap();
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        b.set_certificate_chain_file(&tls.server_cert).unwrap();
        b.set_private_key_file(&tls.server_key, SslFiletype::PEM)
            .unwrap();
        let acceptor = Arc::new(b.build());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let (d, c) = (delivered.clone(), commands.clone());
        std::thread::spawn(move || {
            for (i, tcp) in listener.incoming().enumerate() {
                let Ok(tcp) = tcp else { continue };
                let (acceptor, d, c) = (acceptor.clone(), d.clone(), c.clone());
                let fault = match fault {
                    Fault::DropFirstAfterAuth if i > 0 => Fault::None,
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
    say(&mut r, "220 fake.mta ESMTP\r\n")?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        commands.lock().unwrap().push(line.trim_end().to_string());
        let upper = line.to_ascii_uppercase();
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
