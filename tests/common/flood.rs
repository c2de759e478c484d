//! A TLS server that answers every request with an endless or huge answer, for
//! the tests that kim-cm stops reading at its bounds (issue 9 item 5). It counts
//! the bytes it got rid of, so a test can show that kim-cm read about as much as
//! its bound allows and then hung up, instead of reading what it was given.
//!
//! Requests are read whole first (HTTP heads with their `Content-Length` or
//! chunked bodies; SMTP and POP3 command lines), so the flood is the answer, not
//! a write into a client still busy sending. A few paths can be given a proper
//! answer ([`Flood::answer`]) so that a test reaches the call it means to flood
//! (a discovery document before the token endpoint, a Konnektor's
//! `connector.sds` before an operation).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What every answer looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `HTTP/1.1 200` announcing a body of 1 TiB, streamed until the reader stops.
    HttpHugeBody,
    /// `HTTP/1.1 200` with a chunked body that never ends.
    HttpEndlessChunks,
    /// `HTTP/1.1 200` and a header line that never ends.
    HttpEndlessHeader,
    /// An SMTP greeting `220 xxx...` without an end of line.
    SmtpEndlessGreeting,
    /// A proper greeting, then an EHLO answer of endless `250-` lines.
    SmtpEndlessEhlo,
    /// A POP3 greeting `+OK xxx...` without an end of line.
    Pop3EndlessGreeting,
    /// A proper greeting, then a CAPA answer that never ends.
    Pop3EndlessCapa,
    /// A mailbox that logs in anyone; its LIST and UIDL answers never end.
    Pop3EndlessListing,
}

/// How much is written at a time.
const CHUNK: usize = 64 * 1024;
/// How many bytes the kernel may hold between the two ends of a loopback TCP
/// connection (send and receive buffers at their autotuned maximum, with room).
pub const SOCKET_SLACK: u64 = 16 * 1024 * 1024;
/// Paths with a proper answer: (path, body).
type Answers = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// How long [`Flood::wait_closed`] waits for kim-cm to hang up.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

pub struct Flood {
    pub addr: SocketAddr,
    /// The CA that signed the server's certificate.
    pub ca_file: PathBuf,
    sent: Arc<AtomicU64>,
    /// Bytes taken on each connection that has ended.
    per_connection: Arc<Mutex<Vec<u64>>>,
    opened: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    answers: Answers,
    _dir: Option<tempfile::TempDir>,
}

impl Flood {
    /// A flood server with its own test CA (certificate for localhost and 127.0.0.1).
    pub fn start(shape: Shape) -> Flood {
        let dir = tempfile::tempdir().unwrap();
        let tls = kim_cm::testbed::ca::make_tls_ca(dir.path(), &[]).unwrap();
        let mut f = Self::start_with(shape, &tls.ca_cert, &tls.server_cert, &tls.server_key);
        f._dir = Some(dir);
        f
    }

    /// A flood server with the given certificate and key (e.g. a sandbox's, so the
    /// config's `ca_file` keys can stay as they are).
    pub fn start_with(shape: Shape, ca: &Path, cert: &Path, key: &Path) -> Flood {
        let acceptor = Arc::new(kim_cm::net::tls::acceptor(cert, key).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let f = Flood {
            addr,
            ca_file: ca.to_path_buf(),
            sent: Arc::default(),
            per_connection: Arc::default(),
            opened: Arc::default(),
            closed: Arc::default(),
            answers: Arc::default(),
            _dir: None,
        };
        let (sent, per_connection, opened, closed, answers) = (
            f.sent.clone(),
            f.per_connection.clone(),
            f.opened.clone(),
            f.closed.clone(),
            f.answers.clone(),
        );
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let (acceptor, sent, per_connection, closed, answers) = (
                    acceptor.clone(),
                    sent.clone(),
                    per_connection.clone(),
                    closed.clone(),
                    answers.clone(),
                );
                opened.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    if let Ok(tls) = acceptor.accept(tcp) {
                        let mut w = Counting {
                            inner: tls,
                            sent,
                            here: 0,
                        };
                        let _ = session(&mut w, shape, &answers);
                        per_connection.lock().unwrap().push(w.here);
                    }
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        f
    }

    /// `https://localhost:PORT`
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Answers `GET path` (exactly, without the query) with `200` and `body`
    /// instead of the flood.
    pub fn answer(&self, path: &str, body: &[u8]) {
        self.answers
            .lock()
            .unwrap()
            .push((path.to_string(), body.to_vec()));
    }

    /// The bytes of answers the kernel took so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }

    /// Waits until every accepted connection has ended (kim-cm hung up); false
    /// when one is still open after a while.
    pub fn wait_closed(&self) -> bool {
        let end = Instant::now() + CLOSE_WAIT;
        while Instant::now() < end {
            let opened = self.opened.load(Ordering::SeqCst);
            if opened > 0 && self.closed.load(Ordering::SeqCst) == opened {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Asserts that kim-cm hung up every flooded connection, each after taking
    /// at most four times `bound` plus what the sockets hold.
    pub fn assert_stopped_near(&self, bound: u64) {
        assert!(self.wait_closed(), "kim-cm kept a flooded connection open");
        let each = self.per_connection.lock().unwrap().clone();
        eprintln!("flood: bytes taken per connection {each:?} (bound {bound})");
        for sent in each {
            assert!(
                sent <= 4 * bound + SOCKET_SLACK,
                "kim-cm read {sent} bytes, the bound is {bound}"
            );
        }
    }
}

/// A stream that counts what was written into it.
struct Counting<S> {
    inner: S,
    sent: Arc<AtomicU64>,
    /// What this connection took.
    here: u64,
}

impl<S: Read> Read for Counting<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Counting<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sent.fetch_add(n as u64, Ordering::SeqCst);
        self.here += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn session<S: Read + Write>(
    s: &mut S,
    shape: Shape,
    answers: &Mutex<Vec<(String, Vec<u8>)>>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(s);
    match shape {
        Shape::HttpHugeBody | Shape::HttpEndlessChunks | Shape::HttpEndlessHeader => loop {
            let Some(path) = read_http_request(&mut r)? else {
                return Ok(());
            };
            let known = answers
                .lock()
                .unwrap()
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, b)| b.clone());
            let w = r.get_mut();
            match known {
                Some(body) => {
                    write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )?;
                    w.write_all(&body)?;
                    w.flush()?;
                }
                None => return http_flood(w, shape),
            }
        },
        Shape::SmtpEndlessGreeting => endless(r.get_mut(), b"220 ", b"x", None),
        Shape::SmtpEndlessEhlo => {
            r.get_mut().write_all(b"220 flood ESMTP\r\n")?;
            let mut line = String::new();
            r.read_line(&mut line)?;
            endless(r.get_mut(), b"", b"250-flood\r\n", None)
        }
        Shape::Pop3EndlessGreeting => endless(r.get_mut(), b"+OK ", b"x", None),
        Shape::Pop3EndlessCapa | Shape::Pop3EndlessListing => {
            r.get_mut().write_all(b"+OK flood POP3\r\n")?;
            let mut n = 0u64;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let cmd = line
                    .split_ascii_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                let w = r.get_mut();
                match (shape, cmd.as_str()) {
                    (Shape::Pop3EndlessCapa, "CAPA") => {
                        return endless(w, b"+OK\r\n", b"X-FLOOD\r\n", None)
                    }
                    (_, "CAPA") => w.write_all(b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")?,
                    (_, "STAT") => w.write_all(b"+OK 1 100\r\n")?,
                    (_, "LIST" | "UIDL") => {
                        return endless(w, b"+OK\r\n", b"", Some(&mut n));
                    }
                    (_, "QUIT") => {
                        w.write_all(b"+OK bye\r\n")?;
                        return Ok(());
                    }
                    _ => w.write_all(b"+OK\r\n")?,
                }
            }
        }
    }
}

/// `head`, then `unit` over and over (or numbered listing lines `N uidN` when
/// `count` is given) until the reader hangs up.
fn endless<W: Write>(
    w: &mut W,
    head: &[u8],
    unit: &[u8],
    mut count: Option<&mut u64>,
) -> std::io::Result<()> {
    w.write_all(head)?;
    let block = unit.repeat(CHUNK / unit.len().max(1));
    loop {
        match count.as_deref_mut() {
            Some(n) => {
                let mut b = Vec::with_capacity(CHUNK);
                while b.len() < CHUNK {
                    *n += 1;
                    b.extend_from_slice(format!("{n} {n}\r\n").as_bytes());
                }
                w.write_all(&b)?;
            }
            None => w.write_all(&block)?,
        }
    }
}

fn http_flood<W: Write>(w: &mut W, shape: Shape) -> std::io::Result<()> {
    match shape {
        Shape::HttpHugeBody => endless(
            w,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n",
            b" ",
            None,
        ),
        Shape::HttpEndlessChunks => {
            w.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            )?;
            let chunk = format!("{:x}\r\n{}\r\n", CHUNK, " ".repeat(CHUNK));
            loop {
                w.write_all(chunk.as_bytes())?;
            }
        }
        _ => endless(w, b"HTTP/1.1 200 OK\r\nX-Flood: ", b"x", None),
    }
}

/// Reads one HTTP request (head and body); its path without the query, or
/// `None` at the end of the connection.
fn read_http_request<R: BufRead>(r: &mut R) -> std::io::Result<Option<String>> {
    let mut request_line = String::new();
    if r.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let path = request_line
        .split_ascii_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_string();
    let (mut length, mut chunked) = (0u64, false);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n =
                u64::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            std::io::copy(&mut r.by_ref().take(n + 2), &mut std::io::sink())?;
            if n == 0 {
                break;
            }
        }
    } else {
        std::io::copy(&mut r.by_ref().take(length), &mut std::io::sink())?;
    }
    Ok(Some(path))
}
