//! The client side of POP3: kim-cm fetching from the Fachdienst's mailbox as a mail
//! client would (KOM-LE-A_2034: login with the KIM address and the client's
//! password), always over TLS (KOM-LE-A_2074): POP3S by default, STLS where
//! configured. Credentials are never sent on a connection without TLS.
//!
//! Status lines are read as bounded lines; message bodies are read in chunks and
//! un-stuffed by [`MultilineDecoder`] straight into a [`Spool`], so a mail of any
//! size passes without being held in memory or read as one "line".

use std::io;
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::SslConnector;

use super::multiline::MultilineDecoder;
use crate::kim::login::Server;
use crate::net::{Conn, ReadError, TlsMode, UpstreamError};
use crate::smtp::auth;
use crate::spool::Spool;

/// Longest status or listing line accepted from a server (RFC 2449 allows 512).
pub const MAX_RESPONSE_LINE: usize = 4096;
/// Most lines in a LIST or UIDL answer.
pub const MAX_LISTING_LINES: usize = 1_000_000;
/// Most lines in a CAPA answer (RFC 2449 knows about a dozen capabilities).
pub const MAX_CAPA_LINES: usize = 100;

/// How to reach and talk to the Fachdienst's POP3 server.
#[derive(Clone)]
pub struct ClientSettings {
    /// `Implicit` (POP3S) or `Starttls` (STLS); never `Plain` (the config refuses it).
    pub tls: TlsMode,
    pub connector: Arc<SslConnector>,
    pub connect_timeout: Duration,
    /// POP3_TIMEOUT_SERVER: how long to wait for any answer.
    pub timeout: Duration,
}

/// What went wrong with the upstream server, sorted by what the client must be told.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {server}: {source}")]
    Connect { server: String, source: io::Error },
    #[error("TLS with {server} failed: {source}")]
    Tls { server: String, source: io::Error },
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server's answer is not POP3: {0}")]
    Protocol(String),
    /// Over [`MAX_RESPONSE_LINE`] or a listing's bound: kim-cm stopped reading.
    #[error("the server's answer is too large: {0}")]
    TooLarge(String),
    /// `-ERR` and its text; the connection is still usable.
    #[error("the server refused: {0}")]
    Rejected(String),
    /// A message could not be written to the spool; the connection is still usable.
    #[error("writing the message to the spool failed: {0}")]
    Spool(io::Error),
}

impl ClientError {
    /// The RFC 2449 response code of a refusal (`AUTH`, `IN-USE`, `SYS/TEMP`, ...).
    pub fn resp_code(&self) -> Option<&str> {
        match self {
            ClientError::Rejected(text) => resp_code(text),
            _ => None,
        }
    }
}

/// The response code at the start of an `-ERR`/`+OK` text: `[SYS/TEMP] ...` gives `SYS/TEMP`.
pub fn resp_code(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('[')?;
    let end = rest.find(']')?;
    Some(&rest[..end]).filter(|c| !c.is_empty() && !c.contains(' '))
}

impl From<ReadError> for ClientError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Timeout(d) => ClientError::Timeout(d),
            ReadError::Closed => ClientError::Closed,
            ReadError::TooLong(n) => ClientError::TooLarge(format!("a line over {n} bytes")),
            ReadError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
                ClientError::Timeout(Duration::ZERO)
            }
            ReadError::Io(_) => ClientError::Closed,
        }
    }
}

/// A failed write: a write that timed out is reported with the connection's timeout
/// (the log then says how long kim-cm waited, not "0ns").
fn write_err(e: io::Error, timeout: Duration) -> ClientError {
    if e.kind() == io::ErrorKind::TimedOut {
        ClientError::Timeout(timeout)
    } else {
        ClientError::Closed
    }
}

/// One status line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Ok(String),
    Err(String),
    /// `+ ` SASL continuation.
    Continue,
}

fn parse_status(line: &[u8]) -> Result<Status, ClientError> {
    let text = |rest: &[u8]| String::from_utf8_lossy(rest).trim().to_string();
    if line == b"+OK" || line.starts_with(b"+OK ") {
        Ok(Status::Ok(text(&line[3..])))
    } else if line == b"-ERR" || line.starts_with(b"-ERR ") {
        Ok(Status::Err(text(&line[4..])))
    } else if line == b"+" || line.starts_with(b"+ ") {
        Ok(Status::Continue)
    } else {
        let shown: String = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
        Err(ClientError::Protocol(format!(
            "unexpected status line '{shown}'"
        )))
    }
}

/// Two numbers at the start of a `+OK` text or a listing line: `2 320`.
fn two_numbers(text: &str) -> Result<(usize, u64), ClientError> {
    let mut w = text.split_ascii_whitespace();
    match (
        w.next().and_then(|a| a.parse().ok()),
        w.next().and_then(|b| b.parse().ok()),
    ) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(ClientError::Protocol(format!(
            "expected 'number size', got '{text}'"
        ))),
    }
}

/// A number and a unique id: `1 whqtswO00WBw418f9t5JxYwZ` (RFC 1939 7: 1..70 printable).
fn number_and_uid(text: &str) -> Result<(usize, String), ClientError> {
    let mut w = text.split_ascii_whitespace();
    match (w.next().and_then(|a| a.parse().ok()), w.next()) {
        (Some(n), Some(uid))
            if uid.len() <= 70 && uid.bytes().all(|b| (0x21..=0x7e).contains(&b)) =>
        {
            Ok((n, uid.to_string()))
        }
        _ => Err(ClientError::Protocol(format!(
            "expected 'number unique-id', got '{text}'"
        ))),
    }
}

/// A POP3 connection to the Fachdienst, in the AUTHORIZATION state until [`login`](Pop3Client::login).
pub struct Pop3Client {
    conn: Conn,
    server: Server,
    capabilities: Vec<String>,
}

impl Pop3Client {
    /// Connects, does TLS (implicit or STLS, the certificate verified for the host),
    /// reads the greeting and the capabilities.
    pub async fn connect(server: &Server, s: &ClientSettings) -> Result<Pop3Client, ClientError> {
        let addr = server.socket_addr();
        let implicit = s.tls == TlsMode::Implicit;
        let conn = Conn::connect_upstream(
            &addr,
            &server.host,
            implicit,
            &s.connector,
            s.connect_timeout,
            s.timeout,
        )
        .await
        .map_err(|e| match e {
            UpstreamError::Connect(source) => ClientError::Connect {
                server: addr.clone(),
                source,
            },
            UpstreamError::Tls(source) => ClientError::Tls {
                server: addr.clone(),
                source,
            },
        })?;
        let tls_err = |source| ClientError::Tls {
            server: addr.clone(),
            source,
        };
        let mut c = Pop3Client {
            conn,
            server: server.clone(),
            capabilities: Vec::new(),
        };
        match c.read_status().await? {
            Status::Ok(_) => {}
            Status::Err(text) => return Err(ClientError::Rejected(text)),
            Status::Continue => {
                return Err(ClientError::Protocol("greeting is a continuation".into()))
            }
        }
        if s.tls != TlsMode::Implicit {
            // STLS (RFC 2595 4); a server without CAPA may still know STLS, so just try
            c.refresh_capabilities().await?;
            match c.command("STLS").await? {
                Status::Ok(_) => {}
                Status::Err(text) => {
                    return Err(tls_err(io::Error::other(format!(
                        "the server refused STLS: {text}"
                    ))));
                }
                Status::Continue => {
                    return Err(ClientError::Protocol(
                        "unexpected continuation to STLS".into(),
                    ))
                }
            }
            // connect_tls refuses if the server sent anything after its +OK (injection)
            c.conn
                .connect_tls(&s.connector, &server.host)
                .await
                .map_err(tls_err)?;
        }
        // RFC 2595 4: capabilities learnt before TLS are forgotten
        c.refresh_capabilities().await?;
        Ok(c)
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The CAPA lines of the server (empty when it has no CAPA).
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// True when CAPA listed `name` as the first word of a line.
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|l| {
            l.split_ascii_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(name))
        })
    }

    async fn refresh_capabilities(&mut self) -> Result<(), ClientError> {
        self.capabilities = match self.command("CAPA").await? {
            Status::Ok(_) => self.read_listing(MAX_CAPA_LINES, "a CAPA answer").await?,
            _ => Vec::new(),
        };
        Ok(())
    }

    /// USER/PASS, or AUTH PLAIN when the server refuses USER (KOM-LE-A_2034). Only
    /// over TLS: credentials never cross a plain connection.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        if !self.conn.is_tls() {
            return Err(ClientError::Protocol(
                "refusing to send credentials without TLS".into(),
            ));
        }
        match self.command(&format!("USER {user}")).await? {
            Status::Ok(_) => return self.expect_ok_secret(&format!("PASS {password}")).await,
            Status::Err(text) if !self.sasl_plain_offered() => {
                return Err(ClientError::Rejected(text))
            }
            _ => {}
        }
        let resp = auth::encode_plain(user, password);
        match self
            .command_secret(&format!("AUTH PLAIN {}", &*resp))
            .await?
        {
            Status::Ok(_) => Ok(()),
            Status::Err(text) => Err(ClientError::Rejected(text)),
            // a server that wants the response after an empty challenge
            Status::Continue => self.expect_ok_secret(&resp).await,
        }
    }

    fn sasl_plain_offered(&self) -> bool {
        self.capabilities.is_empty()
            || self.capabilities.iter().any(|l| {
                let mut w = l.split_ascii_whitespace();
                w.next().is_some_and(|w| w.eq_ignore_ascii_case("SASL"))
                    && w.any(|m| m.eq_ignore_ascii_case("PLAIN"))
            })
    }

    /// STAT: number of messages and their total size.
    pub async fn stat(&mut self) -> Result<(usize, u64), ClientError> {
        let text = self.expect_ok("STAT").await?;
        two_numbers(&text)
    }

    /// LIST of one message or all: `(number, size)`.
    pub async fn list(&mut self, n: Option<usize>) -> Result<Vec<(usize, u64)>, ClientError> {
        match n {
            Some(n) => Ok(vec![two_numbers(
                &self.expect_ok(&format!("LIST {n}")).await?,
            )?]),
            None => {
                self.expect_ok("LIST").await?;
                self.read_listing(MAX_LISTING_LINES, "a listing")
                    .await?
                    .iter()
                    .map(|l| two_numbers(l))
                    .collect()
            }
        }
    }

    /// UIDL of one message or all: `(number, unique id)`.
    pub async fn uidl(&mut self, n: Option<usize>) -> Result<Vec<(usize, String)>, ClientError> {
        match n {
            Some(n) => Ok(vec![number_and_uid(
                &self.expect_ok(&format!("UIDL {n}")).await?,
            )?]),
            None => {
                self.expect_ok("UIDL").await?;
                self.read_listing(MAX_LISTING_LINES, "a listing")
                    .await?
                    .iter()
                    .map(|l| number_and_uid(l))
                    .collect()
            }
        }
    }

    /// RETR: the message, un-stuffed, into `spool`.
    pub async fn retr_into(&mut self, n: usize, spool: &mut Spool) -> Result<(), ClientError> {
        self.expect_ok(&format!("RETR {n}")).await?;
        self.read_body(spool).await
    }

    /// TOP: the header and `lines` lines of the body, un-stuffed, into `spool`.
    pub async fn top_into(
        &mut self,
        n: usize,
        lines: usize,
        spool: &mut Spool,
    ) -> Result<(), ClientError> {
        self.expect_ok(&format!("TOP {n} {lines}")).await?;
        self.read_body(spool).await
    }

    pub async fn dele(&mut self, n: usize) -> Result<(), ClientError> {
        self.expect_ok(&format!("DELE {n}")).await.map(drop)
    }

    pub async fn rset(&mut self) -> Result<(), ClientError> {
        self.expect_ok("RSET").await.map(drop)
    }

    pub async fn noop(&mut self) -> Result<(), ClientError> {
        self.expect_ok("NOOP").await.map(drop)
    }

    /// QUIT: the server deletes the messages marked in this session (UPDATE state).
    /// `Ok` only when the server confirmed.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        let r = self.expect_ok("QUIT").await.map(drop);
        self.conn.shutdown().await;
        r
    }

    /// Closes the connection without QUIT: the server deletes nothing (RFC 1939 6).
    pub async fn abandon(mut self) {
        self.conn.set_timeout(Duration::from_secs(2));
        self.conn.shutdown().await;
    }

    /// Sends one command line and reads its status line.
    async fn command(&mut self, line: &str) -> Result<Status, ClientError> {
        tracing::trace!(server = %self.server, "C: {line}");
        self.command_secret(line).await
    }

    /// Like [`command`](Self::command), but the line is never logged.
    async fn command_secret(&mut self, line: &str) -> Result<Status, ClientError> {
        let mut wire = zeroize::Zeroizing::new(Vec::with_capacity(line.len() + 2));
        wire.extend_from_slice(line.as_bytes());
        wire.extend_from_slice(b"\r\n");
        let t = self.conn.timeout();
        self.conn.send(&wire).await.map_err(|e| write_err(e, t))?;
        self.read_status().await
    }

    async fn expect_ok(&mut self, line: &str) -> Result<String, ClientError> {
        tracing::trace!(server = %self.server, "C: {line}");
        match self.command_secret(line).await? {
            Status::Ok(text) => Ok(text),
            Status::Err(text) => Err(ClientError::Rejected(text)),
            Status::Continue => Err(ClientError::Protocol(format!(
                "unexpected continuation to {line}"
            ))),
        }
    }

    async fn expect_ok_secret(&mut self, line: &str) -> Result<(), ClientError> {
        match self.command_secret(line).await? {
            Status::Ok(_) => Ok(()),
            Status::Err(text) => Err(ClientError::Rejected(text)),
            Status::Continue => Err(ClientError::Protocol("unexpected continuation".into())),
        }
    }

    async fn read_status(&mut self) -> Result<Status, ClientError> {
        let line = self.conn.read_line_within(MAX_RESPONSE_LINE).await?;
        parse_status(&line)
    }

    /// The lines of a short multi-line answer (CAPA, LIST, UIDL), un-stuffed.
    /// At most `max_lines` lines, else an error naming `what`.
    async fn read_listing(
        &mut self,
        max_lines: usize,
        what: &str,
    ) -> Result<Vec<String>, ClientError> {
        let mut lines = Vec::new();
        loop {
            let line = self.conn.read_line_within(MAX_RESPONSE_LINE).await?;
            if line == b"." {
                return Ok(lines);
            }
            if lines.len() >= max_lines {
                return Err(ClientError::TooLarge(format!(
                    "more than {max_lines} lines in {what}"
                )));
            }
            let line = line.strip_prefix(b".").unwrap_or(&line);
            lines.push(String::from_utf8_lossy(line).into_owned());
        }
    }

    /// A message body in chunks into `spool`. When the spool fails, the rest of the
    /// answer is still read (and dropped), so the connection stays usable.
    async fn read_body(&mut self, spool: &mut Spool) -> Result<(), ClientError> {
        let mut dec = MultilineDecoder::new();
        let mut out = Vec::with_capacity(64 * 1024);
        let mut failed: Option<io::Error> = None;
        loop {
            if self.conn.buffered().is_empty() {
                self.conn.fill().await?;
            }
            let buf = self.conn.buffered();
            let done = dec.feed(buf, &mut out);
            let used = done.unwrap_or(buf.len());
            self.conn.consume(used);
            if failed.is_none() {
                if let Err(e) = spool.write(&out).await {
                    failed = Some(e);
                }
            }
            out.clear();
            if done.is_some() {
                return match failed {
                    Some(e) => Err(ClientError::Spool(e)),
                    None => Ok(()),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status(b"+OK 2 320").unwrap(),
            Status::Ok("2 320".into())
        );
        assert_eq!(parse_status(b"+OK").unwrap(), Status::Ok("".into()));
        assert_eq!(
            parse_status(b"-ERR [IN-USE] locked").unwrap(),
            Status::Err("[IN-USE] locked".into())
        );
        assert_eq!(parse_status(b"+ ").unwrap(), Status::Continue);
        assert!(matches!(
            parse_status(b"* OK IMAP"),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            parse_status(b"+OKAY"),
            Err(ClientError::Protocol(_))
        ));
    }

    #[test]
    fn numbers_and_uids() {
        assert_eq!(two_numbers("2 320").unwrap(), (2, 320));
        assert_eq!(two_numbers("1 120 extra").unwrap(), (1, 120));
        assert!(two_numbers("x 1").is_err());
        assert!(two_numbers("1").is_err());
        assert_eq!(
            number_and_uid("1 abc-DEF").unwrap(),
            (1, "abc-DEF".to_string())
        );
        assert!(number_and_uid("1").is_err());
        assert!(number_and_uid(&format!("1 {}", "x".repeat(71))).is_err());
    }

    #[test]
    fn response_codes() {
        assert_eq!(resp_code("[SYS/TEMP] try later"), Some("SYS/TEMP"));
        assert_eq!(resp_code("[IN-USE] locked"), Some("IN-USE"));
        assert_eq!(resp_code("invalid login"), None);
        assert_eq!(resp_code("[not a code] x"), None);
        assert_eq!(
            ClientError::Rejected("[AUTH] no".into()).resp_code(),
            Some("AUTH")
        );
    }

    /// A scripted server on loopback: reads a line, answers from the script.
    async fn scripted(
        script: Vec<(&'static str, &'static [u8])>,
    ) -> (Conn, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (r, mut w) = tcp.into_split();
            let mut r = BufReader::new(r);
            let mut seen = Vec::new();
            for (expect, answer) in script {
                if !expect.is_empty() {
                    let mut line = String::new();
                    r.read_line(&mut line).await.unwrap();
                    assert_eq!(line.trim_end(), expect);
                    seen.push(line);
                }
                // answer in small pieces to cross chunk boundaries
                for c in answer.chunks(7) {
                    w.write_all(c).await.unwrap();
                    w.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
            seen
        });
        let conn = Conn::connect(&addr.to_string(), Duration::from_secs(5))
            .await
            .unwrap();
        (conn, server)
    }

    #[tokio::test]
    async fn transaction_commands_against_a_scripted_server() {
        let (conn, server) = scripted(vec![
            ("STAT", b"+OK 2 40\r\n"),
            ("LIST", b"+OK 2 messages\r\n1 15\r\n2 25\r\n.\r\n"),
            ("UIDL 2", b"+OK 2 uid-two\r\n"),
            ("RETR 1", b"+OK 15 octets\r\nA: b\r\n\r\n..x\r\n.\r\n"),
            ("RETR 9", b"-ERR no such message\r\n"),
            ("TOP 2 0", b"+OK\r\nC: d\r\n\r\n.\r\n"),
            ("DELE 1", b"+OK\r\n"),
            ("QUIT", b"+OK bye\r\n"),
        ])
        .await;
        let mut c = Pop3Client {
            conn,
            server: Server {
                host: "127.0.0.1".into(),
                port: 1,
            },
            capabilities: Vec::new(),
        };
        let settings = crate::spool::SpoolSettings {
            dir: std::env::temp_dir(),
            memory_limit: 1 << 20,
        };
        assert_eq!(c.stat().await.unwrap(), (2, 40));
        assert_eq!(c.list(None).await.unwrap(), vec![(1, 15), (2, 25)]);
        assert_eq!(
            c.uidl(Some(2)).await.unwrap(),
            vec![(2, "uid-two".to_string())]
        );
        let mut s = Spool::new(&settings);
        c.retr_into(1, &mut s).await.unwrap();
        assert_eq!(s.to_vec().await.unwrap(), b"A: b\r\n\r\n.x\r\n");
        let mut s = Spool::new(&settings);
        assert!(
            matches!(c.retr_into(9, &mut s).await, Err(ClientError::Rejected(t)) if t == "no such message")
        );
        c.top_into(2, 0, &mut s).await.unwrap();
        assert_eq!(s.to_vec().await.unwrap(), b"C: d\r\n\r\n");
        c.dele(1).await.unwrap();
        c.quit().await.unwrap();
        assert_eq!(server.await.unwrap().len(), 8);
    }

    #[tokio::test]
    async fn never_logs_in_without_tls() {
        let (conn, _server) = scripted(vec![]).await;
        let mut c = Pop3Client {
            conn,
            server: Server {
                host: "127.0.0.1".into(),
                port: 1,
            },
            capabilities: Vec::new(),
        };
        assert!(matches!(
            c.login("a@b.de", "pw").await,
            Err(ClientError::Protocol(_))
        ));
    }
}
