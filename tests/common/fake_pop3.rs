//! A scripted POP3S server (the Fachdienst's mailbox) that misbehaves on purpose, for
//! fault tests: it serves a fixed set of mails, records every command, and removes a
//! mail only when a session that marked it reached QUIT (RFC 1939 6, the UPDATE
//! state), recording which ones. A fault applies to the first connection only, so
//! the client's second attempt shows what is left behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Behaves well.
    None,
    /// RETR of message `msg`: `+OK`, then `after` bytes of the (dot-stuffed) mail,
    /// then the connection is closed.
    KillInRetr { msg: usize, after: usize },
    /// RETR of message `msg`: `+OK`, then `after` bytes, then nothing more.
    StallInRetr { msg: usize, after: usize },
    /// DELE closes the connection without an answer.
    KillAtDele,
    /// DELE is answered `+OK`, then the connection is closed before QUIT.
    KillAfterDele,
    /// QUIT closes the connection without `+OK` and without removing anything.
    KillAtQuit,
}

/// One mail in the fake mailbox.
#[derive(Clone)]
struct Stored {
    uid: String,
    bytes: Vec<u8>,
    removed: bool,
}

pub struct FakePop3 {
    pub addr: SocketAddr,
    pub ca_file: PathBuf,
    /// Every command line received, `PASS` masked, per connection as `(n, line)`.
    pub commands: Arc<Mutex<Vec<(usize, String)>>>,
    /// UIDs removed in an UPDATE state (a QUIT after DELE), in order.
    pub committed: Arc<Mutex<Vec<String>>>,
    mails: Arc<Mutex<Vec<Stored>>>,
    _dir: tempfile::TempDir,
}

/// How long a stalled session holds its connection when the peer does not give up.
const STALL_HOLD: Duration = Duration::from_secs(60);

impl FakePop3 {
    /// Serves `mails` (CRLF line ends, each ending in CRLF) with UIDs `uid-1`, `uid-2`, ...
    pub fn start(mails: Vec<Vec<u8>>, fault: Fault) -> FakePop3 {
        let dir = tempfile::tempdir().unwrap();
        let tls = kim_cm::testbed::ca::make_tls_ca(dir.path(), &[]).unwrap();
        let acceptor =
            Arc::new(kim_cm::net::tls::acceptor(&tls.server_cert, &tls.server_key).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stored = mails
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| Stored {
                uid: format!("uid-{}", i + 1),
                bytes,
                removed: false,
            })
            .collect();
        let mails = Arc::new(Mutex::new(stored));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let committed = Arc::new(Mutex::new(Vec::new()));
        let (m, c, d) = (mails.clone(), commands.clone(), committed.clone());
        std::thread::spawn(move || {
            for (i, tcp) in listener.incoming().enumerate() {
                let Ok(tcp) = tcp else { continue };
                let (acceptor, m, c, d) = (acceptor.clone(), m.clone(), c.clone(), d.clone());
                let fault = if i == 0 { fault } else { Fault::None };
                std::thread::spawn(move || {
                    if let Ok(tls) = acceptor.accept(tcp) {
                        let _ = session(tls, i + 1, fault, &m, &c, &d);
                    }
                });
            }
        });
        FakePop3 {
            addr,
            ca_file: tls.ca_cert,
            commands,
            committed,
            mails,
            _dir: dir,
        }
    }

    /// UIDs of the mails still in the mailbox.
    pub fn remaining(&self) -> Vec<String> {
        let mails = self.mails.lock().unwrap();
        mails
            .iter()
            .filter(|m| !m.removed)
            .map(|m| m.uid.clone())
            .collect()
    }

    /// The commands of connection `n` (1-based).
    pub fn commands_of(&self, n: usize) -> Vec<String> {
        let all = self.commands.lock().unwrap();
        all.iter()
            .filter(|(c, _)| *c == n)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

/// A mail as a POP3 multi-line answer body: dot-stuffed, with the final `.` line.
fn stuffed(mail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mail.len() + 16);
    for line in mail.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn session<S: Read + Write>(
    s: S,
    conn: usize,
    fault: Fault,
    mails: &Mutex<Vec<Stored>>,
    commands: &Mutex<Vec<(usize, String)>>,
    committed: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(s);
    let say = |r: &mut BufReader<S>, t: &[u8]| -> std::io::Result<()> {
        r.get_mut().write_all(t)?;
        r.get_mut().flush()
    };
    // the maildrop as this session sees it: numbers 1.. over the mails present now
    let view: Vec<Stored> = mails
        .lock()
        .unwrap()
        .iter()
        .filter(|m| !m.removed)
        .cloned()
        .collect();
    let mut marked = vec![false; view.len()];
    let get = |n: &str, marked: &[bool]| -> Option<usize> {
        let i = n.trim().parse::<usize>().ok()?.checked_sub(1)?;
        (i < view.len() && !marked[i]).then_some(i)
    };
    say(&mut r, b"+OK fake.pop3 ready\r\n")?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end().to_string();
        let upper = line.to_ascii_uppercase();
        let shown = if upper.starts_with("PASS") {
            "PASS ***".to_string()
        } else {
            line.clone()
        };
        commands.lock().unwrap().push((conn, shown));
        let (verb, arg) = match upper.split_once(' ') {
            Some((v, _)) => (v.to_string(), line[v.len() + 1..].to_string()),
            None => (upper.clone(), String::new()),
        };
        match verb.as_str() {
            "CAPA" => say(&mut r, b"+OK\r\nUSER\r\nUIDL\r\nTOP\r\n.\r\n")?,
            "USER" | "PASS" | "NOOP" => say(&mut r, b"+OK\r\n")?,
            "STAT" => {
                let live: Vec<_> = view
                    .iter()
                    .zip(&marked)
                    .filter(|(_, d)| !**d)
                    .map(|(m, _)| m.bytes.len())
                    .collect();
                let t = format!("+OK {} {}\r\n", live.len(), live.iter().sum::<usize>());
                say(&mut r, t.as_bytes())?;
            }
            "LIST" | "UIDL" => {
                let item = |i: usize| -> String {
                    if verb == "LIST" {
                        format!("{} {}", i + 1, view[i].bytes.len())
                    } else {
                        format!("{} {}", i + 1, view[i].uid)
                    }
                };
                if arg.is_empty() {
                    let mut t = b"+OK\r\n".to_vec();
                    for i in (0..view.len()).filter(|i| !marked[*i]) {
                        t.extend_from_slice(format!("{}\r\n", item(i)).as_bytes());
                    }
                    t.extend_from_slice(b".\r\n");
                    say(&mut r, &t)?;
                } else if let Some(i) = get(&arg, &marked) {
                    say(&mut r, format!("+OK {}\r\n", item(i)).as_bytes())?;
                } else {
                    say(&mut r, b"-ERR no such message\r\n")?;
                }
            }
            "RETR" | "TOP" => {
                let n = arg.split_whitespace().next().unwrap_or("");
                let Some(i) = get(n, &marked) else {
                    say(&mut r, b"-ERR no such message\r\n")?;
                    continue;
                };
                let mut body = stuffed(&view[i].bytes);
                if verb == "TOP" {
                    let head_end = view[i]
                        .bytes
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(view[i].bytes.len(), |p| p + 4);
                    body = stuffed(&view[i].bytes[..head_end]);
                }
                say(&mut r, b"+OK message follows\r\n")?;
                match fault {
                    Fault::KillInRetr { msg, after } if verb == "RETR" && msg == i + 1 => {
                        say(&mut r, &body[..after.min(body.len())])?;
                        return Ok(());
                    }
                    Fault::StallInRetr { msg, after } if verb == "RETR" && msg == i + 1 => {
                        say(&mut r, &body[..after.min(body.len())])?;
                        return hold(r);
                    }
                    _ => say(&mut r, &body)?,
                }
            }
            "DELE" => {
                if fault == Fault::KillAtDele {
                    return Ok(());
                }
                match get(&arg, &marked) {
                    Some(i) => {
                        marked[i] = true;
                        say(&mut r, b"+OK marked\r\n")?;
                    }
                    None => say(&mut r, b"-ERR no such message\r\n")?,
                }
                if fault == Fault::KillAfterDele {
                    return Ok(());
                }
            }
            "RSET" => {
                marked.iter_mut().for_each(|m| *m = false);
                say(&mut r, b"+OK\r\n")?;
            }
            "QUIT" => {
                if fault == Fault::KillAtQuit {
                    return Ok(());
                }
                // the UPDATE state: the marked mails go now
                let mut all = mails.lock().unwrap();
                for (m, _) in view.iter().zip(&marked).filter(|(_, d)| **d) {
                    if let Some(s) = all.iter_mut().find(|s| s.uid == m.uid && !s.removed) {
                        s.removed = true;
                        committed.lock().unwrap().push(s.uid.clone());
                    }
                }
                drop(all);
                say(&mut r, b"+OK bye\r\n")?;
                return Ok(());
            }
            _ => say(&mut r, b"-ERR unknown command\r\n")?,
        }
    }
}

/// A stalled session: answers nothing, reads (and drops) whatever comes until the peer
/// closes, or [`STALL_HOLD`] passes.
fn hold<S: Read + Write>(r: BufReader<S>) -> std::io::Result<()> {
    let end = Instant::now() + STALL_HOLD;
    let mut s = r.into_inner();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
    Ok(())
}
