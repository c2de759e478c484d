//! One connection, plain or TLS, with its own read buffer.
//!
//! Every protocol session in kim-cm (client-facing SMTP and POP3, the upstream
//! clients, the testbed servers) reads through this type, so that three rules hold
//! everywhere: every line has a timeout, no line is longer than the caller's bound,
//! and a STARTTLS/STLS upgrade refuses to start while plaintext bytes sent before
//! the upgrade are still buffered (they would otherwise be read as if they had come
//! over TLS: the classic STARTTLS command injection).
//!
//! The timeout holds for a whole line, not for each read (as Postfix's
//! `smtpd_per_record_deadline`): a peer dribbling one byte at a time cannot hold a
//! session open past it (slowloris). A session may also set a hard deadline
//! ([`Conn::set_deadline`], the login deadline) that no read waits past.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use openssl::ssl::{Ssl, SslAcceptor, SslConnector};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

/// How many bytes one read from the socket asks for.
const READ_CHUNK: usize = 64 * 1024;

/// A socket that is either plain TCP or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("no complete line from the peer within {0:?}")]
    Timeout(Duration),
    #[error("line longer than {0} bytes")]
    TooLong(usize),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Why an upstream connection could not be opened.
#[derive(Debug)]
pub enum UpstreamError {
    /// TCP: refused, unreachable, timed out.
    Connect(io::Error),
    /// The TLS handshake or the certificate check failed.
    Tls(io::Error),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "connection failed: {e}"),
            UpstreamError::Tls(e) => write!(f, "TLS failed: {e}"),
        }
    }
}

/// A connection with a read buffer, a timeout for every read and write, and TLS upgrade.
pub struct Conn {
    stream: Option<Stream>,
    buf: Vec<u8>,
    pos: usize,
    timeout: Duration,
    /// No read waits past this instant (see [`Conn::set_deadline`]).
    deadline: Option<Instant>,
    peer: SocketAddr,
}

impl Conn {
    pub fn new(stream: Stream, peer: SocketAddr, timeout: Duration) -> Conn {
        Conn {
            stream: Some(stream),
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            timeout,
            deadline: None,
            peer,
        }
    }

    /// Connects to an upstream server: TCP within `connect_timeout`, then, for
    /// implicit TLS, the handshake with the certificate verified for `host`.
    /// Reads and writes afterwards wait at most `timeout`.
    pub async fn connect_upstream(
        addr: &str,
        host: &str,
        implicit_tls: bool,
        connector: &SslConnector,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Conn, UpstreamError> {
        let mut conn = Conn::connect(addr, connect_timeout)
            .await
            .map_err(UpstreamError::Connect)?;
        conn.set_timeout(timeout);
        if implicit_tls {
            conn.connect_tls(connector, host)
                .await
                .map_err(UpstreamError::Tls)?;
        }
        Ok(conn)
    }

    /// The connection's stream, for a protocol that brings its own framing (HTTP).
    /// Bytes already read into the line buffer would be lost, so there must be none.
    pub fn into_stream(mut self) -> Option<Stream> {
        if self.pos < self.buf.len() {
            return None;
        }
        self.stream.take()
    }

    /// Connects over TCP, with `timeout` for the connect itself.
    pub async fn connect(addr: &str, timeout: Duration) -> io::Result<Conn> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        let peer = tcp.peer_addr()?;
        Ok(Conn::new(Stream::Plain(tcp), peer, timeout))
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sets (or with `None` lifts) a hard deadline: no read waits past it, however
    /// fresh the line is. A read cut by it fails with `Timeout`; see
    /// [`Conn::deadline_passed`].
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// True when a hard deadline is set and has passed.
    pub fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The instant a read started now must end: the timeout from now, or the hard
    /// deadline if that comes first.
    pub fn read_deadline(&self) -> Instant {
        let by = Instant::now() + self.timeout;
        match self.deadline {
            Some(d) if d < by => d,
            _ => by,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Some(Stream::Tls(_)))
    }

    /// True when the peer is on this machine: only then may credentials cross
    /// a connection without TLS.
    pub fn peer_is_loopback(&self) -> bool {
        self.peer.ip().is_loopback()
    }

    fn stream(&mut self) -> io::Result<&mut Stream> {
        self.stream.as_mut().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "connection lost in a TLS upgrade",
            )
        })
    }

    /// The bytes read but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Marks `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more bytes from the socket into the buffer, waiting at most the
    /// timeout (or to the hard deadline). Returns how many arrived.
    pub async fn fill(&mut self) -> Result<usize, ReadError> {
        let until = self.read_deadline();
        self.fill_until(until).await
    }

    /// Reads more bytes from the socket into the buffer, waiting until `until` at
    /// most (bytes already waiting in the socket are taken even when `until` has
    /// passed). Returns how many arrived.
    pub async fn fill_until(&mut self, until: Instant) -> Result<usize, ReadError> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > READ_CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let timeout = self.timeout;
        let stream = match self.stream.as_mut() {
            Some(s) => s,
            None => {
                self.buf.truncate(start);
                return Err(ReadError::Closed);
            }
        };
        let until = tokio::time::Instant::from_std(until);
        let res = tokio::time::timeout_at(until, stream.read(&mut self.buf[start..])).await;
        match res {
            Err(_) => {
                self.buf.truncate(start);
                Err(ReadError::Timeout(timeout))
            }
            Ok(Err(e)) => {
                self.buf.truncate(start);
                Err(ReadError::Io(e))
            }
            Ok(Ok(0)) => {
                self.buf.truncate(start);
                Err(ReadError::Closed)
            }
            Ok(Ok(n)) => {
                self.buf.truncate(start + n);
                Ok(n)
            }
        }
    }

    /// Reads one line ending in LF and returns it without CR/LF. The whole line must
    /// arrive within the timeout. A line longer than `max` is read to its end and
    /// discarded, and `TooLong` is returned, so the session can answer and go on
    /// reading commands.
    pub async fn read_line(&mut self, max: usize) -> Result<Vec<u8>, ReadError> {
        let until = self.read_deadline();
        let mut too_long = false;
        loop {
            let avail = &self.buf[self.pos..];
            if let Some(i) = memchr::memchr(b'\n', avail) {
                let line_len = i + 1;
                if too_long || i > max {
                    self.consume(line_len);
                    return Err(ReadError::TooLong(max));
                }
                let mut line = avail[..i].to_vec();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.consume(line_len);
                return Ok(line);
            }
            if avail.len() > max {
                too_long = true;
                let n = avail.len();
                self.consume(n);
            }
            self.fill_until(until).await?;
        }
    }

    /// As [`read_line`](Self::read_line), but a line longer than `max` is
    /// `TooLong` as soon as `max` bytes came without an end: for answers of a
    /// server, where an endless line is a reason to hang up, not to read on.
    pub async fn read_line_within(&mut self, max: usize) -> Result<Vec<u8>, ReadError> {
        let until = self.read_deadline();
        loop {
            let avail = &self.buf[self.pos..];
            if let Some(i) = memchr::memchr(b'\n', avail) {
                if i > max {
                    return Err(ReadError::TooLong(max));
                }
                let mut line = avail[..i].to_vec();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.consume(i + 1);
                return Ok(line);
            }
            if avail.len() > max {
                return Err(ReadError::TooLong(max));
            }
            self.fill_until(until).await?;
        }
    }

    /// Writes all of `data`, within the timeout.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let timeout = self.timeout;
        let stream = self.stream()?;
        tokio::time::timeout(timeout, stream.write_all(data))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        let timeout = self.timeout;
        let stream = self.stream()?;
        tokio::time::timeout(timeout, stream.flush())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "flush timed out"))?
    }

    /// Writes `data` and flushes.
    pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_all(data).await?;
        self.flush().await
    }

    pub async fn shutdown(&mut self) {
        if let Some(s) = self.stream.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.shutdown()).await;
        }
    }

    fn take_plain(&mut self) -> io::Result<TcpStream> {
        if !self.buffered().is_empty() {
            // Bytes sent after STARTTLS/STLS but before the handshake: refuse them.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "plaintext data after the TLS upgrade command",
            ));
        }
        match self.stream.take() {
            Some(Stream::Plain(tcp)) => Ok(tcp),
            Some(tls) => {
                self.stream = Some(tls);
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "connection is already TLS",
                ))
            }
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "connection lost",
            )),
        }
    }

    /// Server side of a TLS handshake on this connection (implicit TLS or STARTTLS).
    pub async fn accept_tls(&mut self, acceptor: &SslAcceptor) -> io::Result<()> {
        let tcp = self.take_plain()?;
        let ssl = Ssl::new(acceptor.context()).map_err(io::Error::other)?;
        let mut tls = SslStream::new(ssl, tcp).map_err(io::Error::other)?;
        tokio::time::timeout(self.timeout, Pin::new(&mut tls).accept())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TLS handshake failed: {e}"),
                )
            })?;
        self.stream = Some(Stream::Tls(Box::new(tls)));
        Ok(())
    }

    /// Client side of a TLS handshake: the server certificate is verified against the
    /// connector's trust anchors and `host` (never skipped).
    pub async fn connect_tls(&mut self, connector: &SslConnector, host: &str) -> io::Result<()> {
        let tcp = self.take_plain()?;
        let ssl = connector
            .configure()
            .and_then(|c| c.into_ssl(host))
            .map_err(io::Error::other)?;
        let mut tls = SslStream::new(ssl, tcp).map_err(io::Error::other)?;
        tokio::time::timeout(self.timeout, Pin::new(&mut tls).connect())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TLS handshake failed: {e}"),
                )
            })?;
        self.stream = Some(Stream::Tls(Box::new(tls)));
        Ok(())
    }
}
