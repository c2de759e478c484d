//! The client side of SMTP: kim-cm talking to the Fachdienst's MTA as a mail user
//! agent would (KOM-LE-A_2011..A_2013), always over TLS (KOM-LE-A_2074), implicit
//! TLS by default or STARTTLS where configured.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::SslConnector;
use tokio::io::AsyncRead;

use super::auth;
use super::data::{send_stuffed, StuffError};
use super::reply::Reply;
use crate::kim::login::Server;
use crate::net::{Conn, ReadError, TlsMode, UpstreamError};

/// Longest reply line accepted from a server.
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply.
pub const MAX_REPLY_LINES: usize = 100;

/// How to reach and talk to an upstream MTA.
#[derive(Clone)]
pub struct ClientSettings {
    pub tls: TlsMode,
    pub connector: Arc<SslConnector>,
    pub connect_timeout: Duration,
    /// SMTP_TIMEOUT_SERVER: how long to wait for any answer.
    pub timeout: Duration,
    /// The name kim-cm gives in EHLO.
    pub helo_name: String,
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
    /// Closed after the mail's final dot, before the reply: the server may have
    /// queued the mail before it went away (RFC 1047), so its fate is unknown.
    #[error("the server closed the connection after the mail's final dot, before its reply")]
    ClosedAfterData,
    #[error("the server's answer is not SMTP: {0}")]
    Protocol(String),
    /// Over [`MAX_REPLY_LINE`] or [`MAX_REPLY_LINES`]: kim-cm stopped reading.
    #[error("the server's answer is too large: {0}")]
    TooLarge(String),
    #[error("the server refused: {0}")]
    Rejected(Reply),
    #[error("reading the mail from the spool failed: {0}")]
    Spool(io::Error),
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

/// An authenticated (or about to be) SMTP connection to the MTA.
pub struct SmtpClient {
    conn: Conn,
    extensions: Vec<String>,
    server: Server,
}

/// The upstream envelope: what goes into MAIL FROM and RCPT TO.
#[derive(Debug, Clone)]
pub struct UpstreamEnvelope {
    pub mail_from: String,
    /// Parameters for MAIL FROM after `SIZE=` (e.g. `BODY=8BITMIME`, `RET=HDRS`).
    pub mail_params: Vec<String>,
    pub rcpt: Vec<(String, Vec<String>)>,
}

impl SmtpClient {
    /// Connects, reads the greeting, does TLS and EHLO.
    pub async fn connect(server: &Server, s: &ClientSettings) -> Result<SmtpClient, ClientError> {
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
        let mut c = SmtpClient {
            conn,
            extensions: Vec::new(),
            server: server.clone(),
        };
        let greeting = c.read_reply().await?;
        if greeting.code != 220 {
            return Err(ClientError::Rejected(greeting));
        }
        c.ehlo(&s.helo_name).await?;
        if s.tls == TlsMode::Starttls {
            if !c.has_extension("STARTTLS") {
                return Err(ClientError::Tls {
                    server: addr.clone(),
                    source: io::Error::other("the server does not offer STARTTLS"),
                });
            }
            let r = c.command("STARTTLS").await?;
            if r.code != 220 {
                return Err(ClientError::Rejected(r));
            }
            c.conn
                .connect_tls(&s.connector, &server.host)
                .await
                .map_err(tls_err)?;
            c.ehlo(&s.helo_name).await?;
        }
        Ok(c)
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), ClientError> {
        let r = self.command(&format!("EHLO {name}")).await?;
        if r.code != 250 {
            return Err(ClientError::Rejected(r));
        }
        self.extensions = r
            .lines
            .iter()
            .skip(1)
            .map(|l| l.to_ascii_uppercase())
            .collect();
        Ok(())
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    /// True when EHLO listed `name` (as the first word of a line).
    pub fn has_extension(&self, name: &str) -> bool {
        self.extensions
            .iter()
            .any(|l| l.split_whitespace().next() == Some(name))
    }

    /// AUTH PLAIN, or LOGIN where the server offers only that (KOM-LE-A_2013).
    /// The server must be on TLS by now, or on this machine: credentials never cross
    /// a network in plain text.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        if !self.conn.is_tls() && !self.conn.peer_is_loopback() {
            return Err(ClientError::Protocol(
                "refusing to send credentials without TLS".into(),
            ));
        }
        let auth_line = self
            .extensions
            .iter()
            .find(|l| l.starts_with("AUTH ") || l.starts_with("AUTH="))
            .cloned()
            .unwrap_or_default();
        let offers = |m: &str| auth_line.split([' ', '=']).any(|w| w == m);
        let r = if offers("PLAIN") || !offers("LOGIN") {
            let resp = auth::encode_plain(user, password);
            self.command_secret(&format!("AUTH PLAIN {}", &*resp))
                .await?
        } else {
            let r = self.command("AUTH LOGIN").await?;
            if r.code != 334 {
                return Err(ClientError::Rejected(r));
            }
            let r = self.command_secret(&auth::encode(user)).await?;
            if r.code != 334 {
                return Err(ClientError::Rejected(r));
            }
            self.command_secret(&auth::encode(password)).await?
        };
        if r.code == 235 {
            Ok(())
        } else {
            Err(ClientError::Rejected(r))
        }
    }

    /// Sends one command line and reads the reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        tracing::trace!(server = %self.server, "C: {line}");
        self.command_secret(line).await
    }

    /// Like [`command`](Self::command), but the line is never logged.
    async fn command_secret(&mut self, line: &str) -> Result<Reply, ClientError> {
        let mut wire = zeroize::Zeroizing::new(Vec::with_capacity(line.len() + 2));
        wire.extend_from_slice(line.as_bytes());
        wire.extend_from_slice(b"\r\n");
        let t = self.conn.timeout();
        self.conn.send(&wire).await.map_err(|e| write_err(e, t))?;
        self.read_reply().await
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let mut lines = Vec::new();
        loop {
            let line = self.conn.read_line_within(MAX_REPLY_LINE).await?;
            let text = String::from_utf8_lossy(&line).into_owned();
            let code = text
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| ClientError::Protocol(text.chars().take(80).collect()))?;
            let sep = text.as_bytes().get(3).copied();
            lines.push(text.get(4..).unwrap_or("").to_string());
            match sep {
                None | Some(b' ') => return Ok(Reply { code, lines }),
                Some(b'-') if lines.len() < MAX_REPLY_LINES => {}
                Some(b'-') => {
                    return Err(ClientError::TooLarge(format!(
                        "more than {MAX_REPLY_LINES} lines"
                    )))
                }
                _ => return Err(ClientError::Protocol(text.chars().take(80).collect())),
            }
        }
    }

    /// One mail transaction: [`begin`](Self::begin), then [`transfer`](Self::transfer).
    pub async fn send_mail(
        &mut self,
        env: &UpstreamEnvelope,
        size: u64,
        mail: impl AsyncRead + Unpin,
    ) -> Result<Result<Reply, Reply>, ClientError> {
        if let Err(r) = self.begin(env, size).await? {
            return Ok(Err(r));
        }
        self.transfer(mail).await
    }

    /// MAIL FROM (with `SIZE=size`), every RCPT TO, and DATA, up to the server's 354.
    /// MAIL and RCPT go in one batch where the server offers PIPELINING (RFC 2920).
    ///
    /// All-or-nothing: if the server refuses any recipient, the transaction is reset
    /// and the refusal returned, so the client can correct the recipient and send
    /// again without anyone getting the mail twice. No mail byte has been sent when
    /// this returns, so after a connection error here the caller may safely retry on a
    /// new connection.
    pub async fn begin(
        &mut self,
        env: &UpstreamEnvelope,
        size: u64,
    ) -> Result<Result<(), Reply>, ClientError> {
        let mut lines = Vec::with_capacity(env.rcpt.len() + 1);
        let mut mail_cmd = format!("MAIL FROM:<{}>", env.mail_from);
        if self.has_extension("SIZE") {
            mail_cmd.push_str(&format!(" SIZE={size}"));
        }
        for p in &env.mail_params {
            mail_cmd.push(' ');
            mail_cmd.push_str(p);
        }
        lines.push(mail_cmd);
        for (rcpt, params) in &env.rcpt {
            let mut cmd = format!("RCPT TO:<{rcpt}>");
            for p in params {
                cmd.push(' ');
                cmd.push_str(p);
            }
            lines.push(cmd);
        }
        let mut replies = Vec::with_capacity(lines.len());
        if self.has_extension("PIPELINING") {
            let mut batch = String::new();
            for l in &lines {
                tracing::trace!(server = %self.server, "C: {l}");
                batch.push_str(l);
                batch.push_str("\r\n");
            }
            let t = self.conn.timeout();
            self.conn
                .send(batch.as_bytes())
                .await
                .map_err(|e| write_err(e, t))?;
            for _ in &lines {
                replies.push(self.read_reply().await?);
            }
        } else {
            for l in &lines {
                let r = self.command(l).await?;
                let failed = !matches!(r.code, 250 | 251);
                replies.push(r);
                if failed {
                    break;
                }
            }
        }
        if let Some(bad) = replies.iter().find(|r| !matches!(r.code, 250 | 251)) {
            let bad = bad.clone();
            if replies[0].code == 250 {
                self.reset().await?;
            }
            return Ok(Err(bad));
        }
        let r = self.command("DATA").await?;
        if r.code != 354 {
            self.reset().await?;
            return Ok(Err(r));
        }
        Ok(Ok(()))
    }

    /// The mail, dot-stuffed, and the final dot; returns the server's answer (250 or a
    /// refusal). After an `Err` here the outcome upstream is unknown.
    pub async fn transfer(
        &mut self,
        mail: impl AsyncRead + Unpin,
    ) -> Result<Result<Reply, Reply>, ClientError> {
        let t = self.conn.timeout();
        send_stuffed(&mut self.conn, mail)
            .await
            .map_err(|e| match e {
                StuffError::Spool(e) => ClientError::Spool(e),
                StuffError::Peer(e) => write_err(e, t),
            })?;
        let r = self.read_reply().await.map_err(|e| match e {
            ClientError::Closed => ClientError::ClosedAfterData,
            e => e,
        })?;
        Ok(if r.code == 250 { Ok(r) } else { Err(r) })
    }

    /// RSET; a server that does not answer 250 is treated as lost.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        let r = self.command("RSET").await?;
        if r.code == 250 {
            Ok(())
        } else {
            Err(ClientError::Rejected(r))
        }
    }

    /// NOOP, to find out whether the connection still works.
    pub async fn noop(&mut self) -> Result<(), ClientError> {
        let r = self.command("NOOP").await?;
        if r.code == 250 {
            Ok(())
        } else {
            Err(ClientError::Rejected(r))
        }
    }

    /// QUIT and close, without waiting long.
    pub async fn quit(mut self) {
        self.conn.set_timeout(Duration::from_secs(5));
        let _ = self.command("QUIT").await;
        self.conn.shutdown().await;
    }
}
