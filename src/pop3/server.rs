//! The server side of a POP3 session (RFC 1939, CAPA RFC 2449, AUTH RFC 5034, STLS
//! RFC 2595): greeting, the AUTHORIZATION state, the TRANSACTION state, and QUIT as
//! the only way into the UPDATE state.
//!
//! The session knows POP3 and nothing of KIM: what a login means and where the
//! messages come from is the [`Backend`]'s business. kim-cm's proxy is one backend,
//! the testbed's simulated Fachdienst mailbox another, so both speak the same POP3.
//! Deletions happen only on QUIT ([`Mailbox::quit`]); a client that vanishes gets
//! [`Mailbox::abort`], which deletes nothing.

use std::future::Future;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::command::{self, Command, ParseError};
use super::multiline::listing;
use crate::net::{Conn, ReadError, TlsMode};
use crate::smtp::auth::{self, SaslError};
use crate::smtp::data::{send_stuffed, StuffError};
use crate::spool::Spool;

/// Longest command line. RFC 2449 4 allows 255 octets; KIM user names and passwords
/// can be longer, so kim-cm takes 512.
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest SASL line (AUTH with its initial response, or a `+ ` continuation answer).
pub const MAX_AUTH_LINE: usize = 12 * 1024;
/// Failed logins before the connection is closed.
pub const MAX_LOGIN_FAILURES: u32 = 3;
/// Commands that are not understood before the connection is closed.
pub const MAX_BAD_COMMANDS: u32 = 20;

/// About the connected client, for the backend's decisions and logs.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub peer: std::net::SocketAddr,
    pub tls: bool,
}

/// A refused login. `text` follows `-ERR ` and should start with an RFC 2449/3206
/// response code (`[AUTH]`, `[SYS/TEMP]`, `[IN-USE]`); `close` ends the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRefused {
    pub text: String,
    pub close: bool,
}

impl LoginRefused {
    /// A refusal after which the client may try again.
    pub fn new(text: impl Into<String>) -> LoginRefused {
        LoginRefused {
            text: text.into(),
            close: false,
        }
    }
}

/// Why a mailbox command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxError {
    #[error("no such message")]
    NoSuchMessage,
    #[error("message is deleted")]
    Deleted,
    /// `-ERR` with this text; the session goes on.
    #[error("{0}")]
    Refused(String),
    /// The mailbox is gone (the upstream connection was lost): `-ERR` with this text,
    /// then the session ends.
    #[error("{0}")]
    Lost(String),
}

/// What a backend does with a session.
pub trait Backend: Send + Sync + 'static {
    type Mailbox: Mailbox;

    /// Checks the name from `USER` before `PASS` comes (a name that cannot be right
    /// gets `-ERR` at once). The default takes every name.
    fn check_user(&self, _user: &str) -> Result<(), LoginRefused> {
        Ok(())
    }

    /// Logs in and opens the maildrop.
    fn login(
        &self,
        user: &str,
        password: &str,
        client: &ClientInfo,
    ) -> impl Future<Output = Result<Self::Mailbox, LoginRefused>> + Send;

    /// The user to log for this session (the address, never the password).
    fn describe(&self, m: &Self::Mailbox) -> String;
}

/// An open maildrop. Numbers are 1-based as the client sees them; messages marked as
/// deleted are hidden from STAT, LIST and UIDL.
pub trait Mailbox: Send {
    /// Number of messages and their total size in octets.
    fn stat(&mut self) -> impl Future<Output = Result<(usize, u64), MailboxError>> + Send;
    /// `(number, size)` of one message or of all.
    fn list(
        &mut self,
        n: Option<usize>,
    ) -> impl Future<Output = Result<Vec<(usize, u64)>, MailboxError>> + Send;
    /// `(number, unique id)` of one message or of all.
    fn uidl(
        &mut self,
        n: Option<usize>,
    ) -> impl Future<Output = Result<Vec<(usize, String)>, MailboxError>> + Send;
    /// The whole message, un-stuffed, CRLF lines.
    fn retr(&mut self, n: usize) -> impl Future<Output = Result<Spool, MailboxError>> + Send;
    /// The header, the empty line and up to `lines` lines of the body.
    fn top(
        &mut self,
        n: usize,
        lines: usize,
    ) -> impl Future<Output = Result<Spool, MailboxError>> + Send;
    /// Marks a message as deleted.
    fn dele(&mut self, n: usize) -> impl Future<Output = Result<(), MailboxError>> + Send;
    /// Unmarks all messages.
    fn rset(&mut self) -> impl Future<Output = Result<(), MailboxError>> + Send;
    fn noop(&mut self) -> impl Future<Output = Result<(), MailboxError>> + Send;
    /// QUIT: the marked messages are deleted now (UPDATE state).
    fn quit(self) -> impl Future<Output = Result<(), MailboxError>> + Send;
    /// The client vanished without QUIT: nothing is deleted.
    fn abort(self) -> impl Future<Output = ()> + Send;
}

/// A listener's settings (shared with SMTP).
pub type Settings = crate::listener::ListenerSettings;

struct State<M> {
    /// The name from USER, waiting for PASS.
    user: Option<String>,
    mailbox: Option<M>,
    /// `describe` of the logged-in mailbox, kept for the log line after QUIT.
    who: Option<String>,
    login_failures: u32,
    bad_commands: u32,
    retrieved: u32,
    /// DELEs since the login or the last RSET.
    marked: u32,
    /// Messages removed on QUIT.
    deleted: u32,
}

/// How a session ended, for its log line.
enum End {
    Quit,
    ClientGone,
    Timeout,
    /// No successful login within the listener's `login_timeout`.
    LoginTimeout,
    Closed(&'static str),
}

enum Flow {
    Continue,
    End(End),
}

/// Runs one client session to its end. `conn` is the freshly accepted connection.
pub async fn run<B: Backend>(mut conn: Conn, settings: Arc<Settings>, backend: Arc<B>) {
    let peer = conn.peer();
    let mut st = State {
        user: None,
        mailbox: None,
        who: None,
        login_failures: 0,
        bad_commands: 0,
        retrieved: 0,
        marked: 0,
        deleted: 0,
    };
    let end = session(&mut conn, &settings, &*backend, &mut st).await;
    if let Some(m) = st.mailbox.take() {
        // no QUIT, no UPDATE state: nothing is deleted (RFC 1939 6)
        m.abort().await;
    }
    let outcome = match &end {
        End::Quit => "quit",
        End::ClientGone => "client disconnected",
        End::Timeout => "client timed out",
        End::LoginTimeout => "no login within login_timeout_secs",
        End::Closed(why) => why,
    };
    tracing::info!(
        %peer,
        user = st.who.as_deref().unwrap_or("-"),
        retrieved = st.retrieved,
        deleted = st.deleted,
        outcome,
        "pop3 session ended"
    );
    conn.shutdown().await;
}

/// Accepts connections on `listener` and runs a session for each, until the task is
/// dropped.
pub async fn serve_pop3<B: Backend>(
    listener: tokio::net::TcpListener,
    settings: Arc<Settings>,
    backend: Arc<B>,
) {
    let timeout = settings.timeout;
    let refusal = (settings.tls != TlsMode::Implicit).then_some(
        &b"-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n"[..],
    );
    crate::listener::accept_loop(listener, timeout, refusal, move |conn| {
        run(conn, settings.clone(), backend.clone())
    })
    .await
}

/// Writes `wire`; flushes unless more pipelined commands are already waiting, so that
/// answers to a batch go out together (RFC 2449 PIPELINING).
async fn write(conn: &mut Conn, wire: &[u8]) -> std::io::Result<()> {
    conn.write_all(wire).await?;
    if conn.buffered().is_empty() {
        conn.flush().await?;
    }
    Ok(())
}

/// One status line: `+OK text` or `-ERR text`; line breaks in `text` are dropped.
fn status_line(ok: bool, text: &str) -> Vec<u8> {
    let mut wire = Vec::with_capacity(text.len() + 8);
    wire.extend_from_slice(if ok { b"+OK" } else { b"-ERR" });
    if !text.is_empty() {
        wire.push(b' ');
        wire.extend(text.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
    }
    wire.extend_from_slice(b"\r\n");
    wire
}

async fn respond(conn: &mut Conn, ok: bool, text: &str) -> std::io::Result<()> {
    write(conn, &status_line(ok, text)).await
}

/// Answers and goes on with the next command.
macro_rules! answer {
    ($conn:expr, $ok:expr, $text:expr) => {{
        if respond($conn, $ok, &$text).await.is_err() {
            return Flow::End(End::ClientGone);
        }
        return Flow::Continue;
    }};
}

/// Answers with `-ERR` and ends the session.
macro_rules! close {
    ($conn:expr, $text:expr, $why:expr) => {{
        let _ = respond($conn, false, &$text).await;
        return Flow::End(End::Closed($why));
    }};
}

async fn session<B: Backend>(
    conn: &mut Conn,
    settings: &Settings,
    backend: &B,
    st: &mut State<B::Mailbox>,
) -> End {
    // a session that never logs in is closed at the login deadline, however
    // busy it keeps the line
    conn.set_deadline(Some(std::time::Instant::now() + settings.login_timeout));
    if let Err(why) = crate::listener::implicit_tls(conn, settings).await {
        return End::Closed(why);
    }
    if respond(conn, true, &format!("{} POP3 ready", settings.name))
        .await
        .is_err()
    {
        return End::ClientGone;
    }
    loop {
        // between commands a shutdown ends the session without the UPDATE
        // state: nothing the client marked is deleted (RFC 1939 6)
        let read = tokio::select! {
            biased;
            _ = crate::shutdown::requested() => {
                let _ = respond(conn, false, "[SYS/TEMP] kim-cm is shutting down, try again later").await;
                return End::Closed("shutdown");
            }
            r = conn.read_line(MAX_AUTH_LINE) => r,
        };
        // read with the SASL bound, then hold every other command to the shorter one
        let flow = match read {
            Ok(line) if line.len() > MAX_COMMAND_LINE && !command::is_auth(&line) => {
                bad_command(conn, st, "line too long").await
            }
            Ok(line) => dispatch(conn, settings, backend, st, &line).await,
            Err(ReadError::TooLong(_)) => bad_command(conn, st, "line too long").await,
            Err(ReadError::Timeout(_)) => {
                return timed_out(conn, settings, st.mailbox.is_some()).await
            }
            Err(_) => return End::ClientGone,
        };
        if let Flow::End(e) = flow {
            return e;
        }
    }
}

/// A read ran out of time. The autologout timer (RFC 1939 3) closes without a
/// word; a session that has not logged in by the login deadline is told why.
async fn timed_out(conn: &mut Conn, settings: &Settings, logged_in: bool) -> End {
    if !logged_in && conn.deadline_passed() {
        let text = format!(
            "[SYS/TEMP] no login within {} seconds, closing connection",
            settings.login_timeout.as_secs()
        );
        let _ = respond(conn, false, &text).await;
        return End::LoginTimeout;
    }
    End::Timeout
}

async fn bad_command<M>(conn: &mut Conn, st: &mut State<M>, text: &str) -> Flow {
    st.bad_commands += 1;
    if st.bad_commands >= MAX_BAD_COMMANDS {
        close!(
            conn,
            format!("{text}; too many bad commands, closing connection"),
            "too many bad commands"
        );
    }
    answer!(conn, false, text)
}

/// Credentials may cross only TLS or loopback.
fn login_allowed(conn: &Conn) -> bool {
    conn.is_tls() || conn.peer_is_loopback()
}

const TLS_REQUIRED: &str = "[AUTH] TLS is required before logging in: use STLS or the POP3S port";

fn capabilities(conn: &Conn, settings: &Settings, authorized: bool) -> Vec<&'static str> {
    let mut caps = vec!["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
    if !authorized {
        if login_allowed(conn) {
            caps.extend(["USER", "SASL PLAIN"]);
        }
        if settings.tls == TlsMode::Starttls && settings.acceptor.is_some() && !conn.is_tls() {
            caps.push("STLS");
        }
    }
    caps
}

async fn dispatch<B: Backend>(
    conn: &mut Conn,
    settings: &Settings,
    backend: &B,
    st: &mut State<B::Mailbox>,
    line: &[u8],
) -> Flow {
    let cmd = match command::parse(line) {
        Ok(c) => c,
        Err(ParseError::Unknown) => return bad_command(conn, st, "unknown command").await,
        Err(ParseError::Syntax(why)) => return bad_command(conn, st, why).await,
    };
    let authorized = st.mailbox.is_some();
    match cmd {
        Command::Capa => {
            let caps = capabilities(conn, settings, authorized);
            if write(conn, &listing("Capability list follows", &caps))
                .await
                .is_err()
            {
                return Flow::End(End::ClientGone);
            }
            Flow::Continue
        }
        Command::Quit => quit(conn, settings, st).await,
        Command::Stls | Command::User(_) | Command::Pass(_) | Command::Auth { .. }
            if authorized =>
        {
            bad_command(conn, st, "already logged in").await
        }
        Command::Stls => stls(conn, settings, st).await,
        Command::User(name) => {
            if !login_allowed(conn) {
                answer!(conn, false, TLS_REQUIRED);
            }
            if let Err(r) = backend.check_user(&name) {
                st.user = None;
                return login_failed(conn, st, r).await;
            }
            st.user = Some(name);
            answer!(conn, true, "send PASS")
        }
        Command::Pass(password) => {
            if !login_allowed(conn) {
                answer!(conn, false, TLS_REQUIRED);
            }
            // RFC 1939 7: after PASS, successful or not, a new USER is needed
            let Some(user) = st.user.take() else {
                return bad_command(conn, st, "send USER first").await;
            };
            login(conn, settings, backend, st, user, password).await
        }
        Command::Auth { mechanism, initial } => {
            auth_command(conn, settings, backend, st, mechanism, initial).await
        }
        _ if !authorized => {
            bad_command(conn, st, "not logged in: use USER and PASS or AUTH first").await
        }
        transaction => transaction_command(conn, st, transaction).await,
    }
}

async fn stls<M>(conn: &mut Conn, settings: &Settings, st: &mut State<M>) -> Flow {
    if conn.is_tls() {
        answer!(conn, false, "TLS is already active");
    }
    let Some(acc) = settings
        .acceptor
        .as_ref()
        .filter(|_| settings.tls == TlsMode::Starttls)
    else {
        return bad_command(conn, st, "STLS is not offered on this port").await;
    };
    if !conn.buffered().is_empty() {
        // RFC 2595 4 / RFC 3207 5: nothing may follow STLS before the handshake
        close!(conn, "data after STLS refused", "plaintext after STLS");
    }
    if respond(conn, true, "Begin TLS negotiation").await.is_err() {
        return Flow::End(End::ClientGone);
    }
    if let Err(e) = conn.accept_tls(acc).await {
        tracing::debug!(peer = %conn.peer(), "STLS handshake failed: {e}");
        return Flow::End(End::Closed("TLS handshake failed"));
    }
    // forget everything learnt before TLS
    st.user = None;
    Flow::Continue
}

async fn auth_command<B: Backend>(
    conn: &mut Conn,
    settings: &Settings,
    backend: &B,
    st: &mut State<B::Mailbox>,
    mechanism: Option<String>,
    initial: Option<Vec<u8>>,
) -> Flow {
    if !login_allowed(conn) {
        answer!(conn, false, TLS_REQUIRED);
    }
    st.user = None;
    let Some(mechanism) = mechanism else {
        // AUTH without a mechanism lists them (what RFC 1734 clients expect)
        if write(conn, &listing("SASL mechanisms follow", &["PLAIN"]))
            .await
            .is_err()
        {
            return Flow::End(End::ClientGone);
        }
        return Flow::Continue;
    };
    if mechanism != "PLAIN" {
        answer!(
            conn,
            false,
            format!("[AUTH] mechanism {mechanism} is not supported: use PLAIN")
        );
    }
    let response = match initial {
        // RFC 5034 4: "=" is an empty initial response
        Some(r) if r == b"=" => Zeroizing::new(Vec::new()),
        Some(r) => Zeroizing::new(r),
        None => {
            if conn.send(b"+ \r\n").await.is_err() {
                return Flow::End(End::ClientGone);
            }
            match conn.read_line(MAX_AUTH_LINE).await {
                Ok(l) if l == b"*" => answer!(conn, false, "authentication cancelled"),
                Ok(l) => Zeroizing::new(l),
                Err(ReadError::TooLong(_)) => return bad_command(conn, st, "line too long").await,
                Err(ReadError::Timeout(_)) => {
                    return Flow::End(timed_out(conn, settings, false).await)
                }
                Err(_) => return Flow::End(End::ClientGone),
            }
        }
    };
    let creds = match auth::decode_plain(&response) {
        Ok(c) => c,
        Err(e) => {
            let text = match e {
                SaslError::Base64 => "cannot decode the AUTH response: not base64",
                SaslError::Utf8 => "cannot decode the AUTH response: not UTF-8",
                SaslError::PlainFormat => "cannot decode the AUTH PLAIN response",
            };
            return login_failed(conn, st, LoginRefused::new(text)).await;
        }
    };
    if let Err(r) = backend.check_user(&creds.user) {
        return login_failed(conn, st, r).await;
    }
    login(conn, settings, backend, st, creds.user, creds.password).await
}

/// The refusal for a client address with too many failed logins.
const THROTTLED: &str = "[AUTH] too many failed logins from your address";

async fn login<B: Backend>(
    conn: &mut Conn,
    settings: &Settings,
    backend: &B,
    st: &mut State<B::Mailbox>,
    user: String,
    password: Zeroizing<String>,
) -> Flow {
    let throttle = settings.login_throttle.as_deref();
    if let Some(Err(t)) = throttle.map(|t| t.check(conn.peer().ip())) {
        // refused here: the Fachdienst is not asked
        tracing::debug!(peer = %conn.peer(), "pop3 login refused: too many failed logins from this address");
        answer!(
            conn,
            false,
            format!("{THROTTLED}; try again in {} minutes", t.minutes())
        );
    }
    let client = ClientInfo {
        peer: conn.peer(),
        tls: conn.is_tls(),
    };
    match backend.login(&user, &password, &client).await {
        Ok(m) => {
            st.who = Some(backend.describe(&m));
            st.mailbox = Some(m);
            st.marked = 0;
            conn.set_deadline(None);
            answer!(conn, true, "logged in, maildrop ready")
        }
        Err(r) => {
            // credentials refused (not a Fachdienst that is down or busy)
            if r.text.starts_with("[AUTH]") {
                if let Some(t) = throttle {
                    t.failed(conn.peer().ip());
                }
            }
            login_failed(conn, st, r).await
        }
    }
}

async fn login_failed<M>(conn: &mut Conn, st: &mut State<M>, r: LoginRefused) -> Flow {
    st.login_failures += 1;
    tracing::info!(peer = %conn.peer(), "pop3 login refused: {}", r.text);
    if r.close {
        close!(conn, r.text, "login refused");
    }
    if st.login_failures >= MAX_LOGIN_FAILURES {
        close!(
            conn,
            format!("{} (too many failed logins, closing connection)", r.text),
            "too many failed logins"
        );
    }
    answer!(conn, false, r.text)
}

async fn quit<M: Mailbox>(conn: &mut Conn, settings: &Settings, st: &mut State<M>) -> Flow {
    let Some(m) = st.mailbox.take() else {
        let _ = respond(
            conn,
            true,
            &format!("{} POP3 server signing off", settings.name),
        )
        .await;
        return Flow::End(End::Quit);
    };
    // the UPDATE state: only now are the marked messages removed
    match m.quit().await {
        Ok(()) => {
            st.deleted = st.marked;
            let text = format!(
                "{} POP3 server signing off ({} messages deleted)",
                settings.name, st.marked
            );
            let _ = respond(conn, true, &text).await;
            Flow::End(End::Quit)
        }
        Err(e) => {
            let why = match e {
                MailboxError::Refused(t) | MailboxError::Lost(t) => t,
                e => e.to_string(),
            };
            // RFC 2449 8.1.2: the deletions were not (all) done
            let _ = respond(
                conn,
                false,
                &format!("[SYS/TEMP] some deleted messages not removed: {why}"),
            )
            .await;
            Flow::End(End::Closed("quit, but the deletions failed"))
        }
    }
}

async fn transaction_command<M: Mailbox>(conn: &mut Conn, st: &mut State<M>, cmd: Command) -> Flow {
    let Some(m) = st.mailbox.as_mut() else {
        return bad_command(conn, st, "not logged in").await;
    };
    match cmd {
        Command::Stat => match m.stat().await {
            Ok((count, size)) => answer!(conn, true, format!("{count} {size}")),
            Err(e) => mailbox_error(conn, e).await,
        },
        Command::List(n) => match m.list(n).await {
            Ok(v) => match n {
                Some(_) => match v.first() {
                    Some((n, size)) => answer!(conn, true, format!("{n} {size}")),
                    None => mailbox_error(conn, MailboxError::NoSuchMessage).await,
                },
                None => {
                    let total: u64 = v.iter().map(|(_, s)| s).sum();
                    let lines: Vec<String> = v.iter().map(|(n, s)| format!("{n} {s}")).collect();
                    send_listing(
                        conn,
                        &format!("{} messages ({total} octets)", v.len()),
                        &lines,
                    )
                    .await
                }
            },
            Err(e) => mailbox_error(conn, e).await,
        },
        Command::Uidl(n) => match m.uidl(n).await {
            Ok(v) => match n {
                Some(_) => match v.first() {
                    Some((n, uid)) => answer!(conn, true, format!("{n} {uid}")),
                    None => mailbox_error(conn, MailboxError::NoSuchMessage).await,
                },
                None => {
                    let lines: Vec<String> = v.iter().map(|(n, u)| format!("{n} {u}")).collect();
                    send_listing(conn, "unique-id listing follows", &lines).await
                }
            },
            Err(e) => mailbox_error(conn, e).await,
        },
        Command::Retr(n) => match m.retr(n).await {
            Ok(spool) => {
                let flow = send_message(conn, spool).await;
                if matches!(flow, Flow::Continue) {
                    st.retrieved += 1;
                }
                flow
            }
            Err(e) => mailbox_error(conn, e).await,
        },
        Command::Top { msg, lines } => match m.top(msg, lines).await {
            Ok(spool) => send_message(conn, spool).await,
            Err(e) => mailbox_error(conn, e).await,
        },
        Command::Dele(n) => match m.dele(n).await {
            Ok(()) => {
                st.marked += 1;
                answer!(conn, true, format!("message {n} deleted"))
            }
            Err(e) => mailbox_error(conn, e).await,
        },
        Command::Rset => match m.rset().await {
            Ok(()) => {
                st.marked = 0;
                answer!(conn, true, "deletion marks removed")
            }
            Err(e) => mailbox_error(conn, e).await,
        },
        Command::Noop => match m.noop().await {
            Ok(()) => answer!(conn, true, ""),
            Err(e) => mailbox_error(conn, e).await,
        },
        // the authorization commands and QUIT are handled before
        _ => bad_command(conn, st, "command not valid in this state").await,
    }
}

async fn send_listing(conn: &mut Conn, first: &str, lines: &[String]) -> Flow {
    if write(conn, &listing(first, lines)).await.is_err() {
        return Flow::End(End::ClientGone);
    }
    Flow::Continue
}

async fn mailbox_error(conn: &mut Conn, e: MailboxError) -> Flow {
    match e {
        MailboxError::NoSuchMessage => answer!(conn, false, "no such message"),
        MailboxError::Deleted => answer!(conn, false, "message is deleted"),
        MailboxError::Refused(text) => answer!(conn, false, text),
        MailboxError::Lost(text) => close!(conn, text, "mailbox lost"),
    }
}

/// `+OK`, then the message streamed from the spool, dot-stuffed, ending in `.`.
async fn send_message(conn: &mut Conn, mut spool: Spool) -> Flow {
    let size = spool.len();
    let reader = match spool.reader().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot read a spooled message: {e}");
            answer!(
                conn,
                false,
                "[SYS/TEMP] local error reading the message, try again"
            );
        }
    };
    if conn
        .write_all(&status_line(true, &format!("{size} octets")))
        .await
        .is_err()
    {
        return Flow::End(End::ClientGone);
    }
    match send_stuffed(conn, reader).await {
        Ok(_) => Flow::Continue,
        Err(StuffError::Peer(_)) => Flow::End(End::ClientGone),
        // half a message is out: the only honest thing left is to close
        Err(StuffError::Spool(e)) => {
            tracing::error!("reading a spooled message failed while sending it: {e}");
            Flow::End(End::Closed("local error while sending a message"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolSettings;
    use openssl::ssl::SslAcceptor;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A mailbox in memory: messages by number, a shared log of what happened.
    #[derive(Default)]
    struct MemBackend {
        messages: Vec<Vec<u8>>,
        log: Arc<Mutex<Vec<String>>>,
    }

    struct MemBox {
        messages: Vec<Vec<u8>>,
        deleted: BTreeMap<usize, bool>,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl MemBox {
        fn get(&self, n: usize) -> Result<&Vec<u8>, MailboxError> {
            let m = self
                .messages
                .get(n.wrapping_sub(1))
                .ok_or(MailboxError::NoSuchMessage)?;
            if self.deleted.get(&n).copied().unwrap_or(false) {
                return Err(MailboxError::Deleted);
            }
            Ok(m)
        }
        fn visible(&self) -> impl Iterator<Item = (usize, &Vec<u8>)> {
            self.messages
                .iter()
                .enumerate()
                .map(|(i, m)| (i + 1, m))
                .filter(|(n, _)| !self.deleted.contains_key(n))
        }
    }

    fn spool(data: &[u8]) -> Spool {
        let s = SpoolSettings {
            dir: std::env::temp_dir(),
            memory_limit: 1 << 20,
        };
        Spool::from_bytes(data.to_vec(), &s)
    }

    impl Backend for MemBackend {
        type Mailbox = MemBox;
        fn check_user(&self, user: &str) -> Result<(), LoginRefused> {
            if user.contains('@') {
                Ok(())
            } else {
                Err(LoginRefused::new("[AUTH] not an address"))
            }
        }
        async fn login(
            &self,
            user: &str,
            password: &str,
            _c: &ClientInfo,
        ) -> Result<MemBox, LoginRefused> {
            if user == "a@b.de" && password == "pw with space" {
                Ok(MemBox {
                    messages: self.messages.clone(),
                    deleted: BTreeMap::new(),
                    log: self.log.clone(),
                })
            } else {
                Err(LoginRefused::new("[AUTH] invalid login"))
            }
        }
        fn describe(&self, _m: &MemBox) -> String {
            "a@b.de".into()
        }
    }

    impl Mailbox for MemBox {
        async fn stat(&mut self) -> Result<(usize, u64), MailboxError> {
            Ok(self
                .visible()
                .fold((0, 0), |(c, s), (_, m)| (c + 1, s + m.len() as u64)))
        }
        async fn list(&mut self, n: Option<usize>) -> Result<Vec<(usize, u64)>, MailboxError> {
            match n {
                Some(n) => Ok(vec![(n, self.get(n)?.len() as u64)]),
                None => Ok(self.visible().map(|(n, m)| (n, m.len() as u64)).collect()),
            }
        }
        async fn uidl(&mut self, n: Option<usize>) -> Result<Vec<(usize, String)>, MailboxError> {
            match n {
                Some(n) => self.get(n).map(|_| vec![(n, format!("uid{n}"))]),
                None => Ok(self
                    .visible()
                    .map(|(n, _)| (n, format!("uid{n}")))
                    .collect()),
            }
        }
        async fn retr(&mut self, n: usize) -> Result<Spool, MailboxError> {
            self.get(n).map(|m| spool(m))
        }
        async fn top(&mut self, n: usize, _lines: usize) -> Result<Spool, MailboxError> {
            self.get(n).map(|m| spool(m))
        }
        async fn dele(&mut self, n: usize) -> Result<(), MailboxError> {
            self.get(n)?;
            self.deleted.insert(n, true);
            Ok(())
        }
        async fn rset(&mut self) -> Result<(), MailboxError> {
            self.deleted.clear();
            Ok(())
        }
        async fn noop(&mut self) -> Result<(), MailboxError> {
            Ok(())
        }
        async fn quit(self) -> Result<(), MailboxError> {
            self.log.lock().unwrap().push(format!(
                "quit {:?}",
                self.deleted.keys().collect::<Vec<_>>()
            ));
            Ok(())
        }
        async fn abort(self) {
            self.log.lock().unwrap().push("abort".into());
        }
    }

    /// Runs a session over a loopback socket, sends `input` at once (pipelined), and
    /// returns everything the server said until it closed.
    async fn talk(backend: MemBackend, input: &[u8]) -> (String, Vec<String>) {
        talk_as(backend, input, None).await
    }

    async fn talk_as(
        backend: MemBackend,
        input: &[u8],
        seen_peer: Option<std::net::SocketAddr>,
    ) -> (String, Vec<String>) {
        talk_with(backend, input, seen_peer, TlsMode::Plain, None).await
    }

    /// Like `talk`, with the session believing the client is at `seen_peer`, on a
    /// listener with `tls`.
    async fn talk_with(
        backend: MemBackend,
        input: &[u8],
        seen_peer: Option<std::net::SocketAddr>,
        tls: TlsMode,
        acceptor: Option<Arc<SslAcceptor>>,
    ) -> (String, Vec<String>) {
        let log = backend.log.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = Arc::new(Settings {
            name: "test".into(),
            tls,
            acceptor,
            timeout: Duration::from_secs(5),
            login_timeout: Duration::from_secs(60),
            login_throttle: None,
            spool: SpoolSettings {
                dir: std::env::temp_dir(),
                memory_limit: 1 << 20,
            },
        });
        let server = tokio::spawn(async move {
            let (tcp, peer) = listener.accept().await.unwrap();
            let peer = seen_peer.unwrap_or(peer);
            let conn = Conn::new(crate::net::Stream::Plain(tcp), peer, settings.timeout);
            run(conn, settings, Arc::new(backend)).await;
        });
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(input).await.unwrap();
        c.shutdown().await.unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        server.await.unwrap();
        let log = log.lock().unwrap().clone();
        (String::from_utf8(out).unwrap(), log)
    }

    fn backend() -> MemBackend {
        MemBackend {
            messages: vec![
                b"Subject: one\r\n\r\n.dot\r\n".to_vec(),
                b"Subject: two\r\n\r\nno final newline".to_vec(),
            ],
            log: Arc::default(),
        }
    }

    #[tokio::test]
    async fn a_whole_session_pipelined() {
        let (out, log) = talk(
            backend(),
            b"CAPA\r\nUSER a@b.de\r\nPASS pw with space\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nRETR 2\r\nDELE 1\r\nSTAT\r\nRETR 1\r\nLIST 1\r\nQUIT\r\n",
        )
        .await;
        let want = "+OK test POP3 ready\r\n\
             +OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\n.\r\n\
             +OK send PASS\r\n\
             +OK logged in, maildrop ready\r\n\
             +OK 2 54\r\n\
             +OK 2 messages (54 octets)\r\n1 22\r\n2 32\r\n.\r\n\
             +OK 2 uid2\r\n\
             +OK 22 octets\r\nSubject: one\r\n\r\n..dot\r\n.\r\n\
             +OK 32 octets\r\nSubject: two\r\n\r\nno final newline\r\n.\r\n\
             +OK message 1 deleted\r\n\
             +OK 1 32\r\n\
             -ERR message is deleted\r\n\
             -ERR message is deleted\r\n\
             +OK test POP3 server signing off (1 messages deleted)\r\n";
        assert_eq!(out, want);
        assert_eq!(log, vec!["quit [1]"]);
    }

    #[tokio::test]
    async fn wrong_state_and_unknown_commands() {
        let (out, log) = talk(
            backend(),
            b"STAT\r\nPASS x\r\nRETR 1\r\nFOO\r\nRETR 0\r\nUSER nobody\r\nUSER a@b.de\r\nPASS wrong\r\nPASS pw with space\r\nQUIT\r\n",
        )
        .await;
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(
            lines[1],
            "-ERR not logged in: use USER and PASS or AUTH first"
        );
        assert_eq!(lines[2], "-ERR send USER first");
        assert!(lines[3].starts_with("-ERR not logged in"));
        assert_eq!(lines[4], "-ERR unknown command");
        assert!(lines[5].starts_with("-ERR no such message"));
        assert_eq!(lines[6], "-ERR [AUTH] not an address");
        assert_eq!(lines[7], "+OK send PASS");
        assert_eq!(lines[8], "-ERR [AUTH] invalid login");
        // the failed PASS used up the USER
        assert_eq!(lines[9], "-ERR send USER first");
        assert!(lines[10].starts_with("+OK"));
        assert!(log.is_empty(), "{log:?}");
    }

    #[tokio::test]
    async fn three_failed_logins_close_the_connection() {
        let (out, _) = talk(
            backend(),
            b"USER a@b.de\r\nPASS 1\r\nUSER a@b.de\r\nPASS 2\r\nUSER a@b.de\r\nPASS 3\r\nUSER a@b.de\r\n",
        )
        .await;
        assert!(
            out.ends_with(
                "-ERR [AUTH] invalid login (too many failed logins, closing connection)\r\n"
            ),
            "{out}"
        );
    }

    #[tokio::test]
    async fn disconnect_without_quit_aborts() {
        let (out, log) = talk(
            backend(),
            b"USER a@b.de\r\nPASS pw with space\r\nDELE 1\r\n",
        )
        .await;
        assert!(out.ends_with("+OK message 1 deleted\r\n"), "{out}");
        assert_eq!(log, vec!["abort"]);
    }

    #[tokio::test]
    async fn auth_plain_with_and_without_initial_response() {
        let ir = auth::encode_plain("a@b.de", "pw with space");
        let (out, _) = talk(
            backend(),
            format!("AUTH PLAIN {}\r\nSTAT\r\nQUIT\r\n", &*ir).as_bytes(),
        )
        .await;
        assert!(
            out.contains("+OK logged in") && out.contains("+OK 2 54"),
            "{out}"
        );

        let (out, _) = talk(
            backend(),
            format!("AUTH PLAIN\r\n{}\r\nSTAT\r\n", &*ir).as_bytes(),
        )
        .await;
        assert!(
            out.contains("\r\n+ \r\n+OK logged in") && out.contains("+OK 2 54"),
            "{out}"
        );

        let (out, _) = talk(
            backend(),
            b"AUTH PLAIN\r\n*\r\nAUTH CRAM-MD5\r\nAUTH PLAIN !!!\r\nAUTH\r\n",
        )
        .await;
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(lines[1], "+ ");
        assert_eq!(lines[2], "-ERR authentication cancelled");
        assert_eq!(
            lines[3],
            "-ERR [AUTH] mechanism CRAM-MD5 is not supported: use PLAIN"
        );
        assert_eq!(lines[4], "-ERR cannot decode the AUTH response: not base64");
        assert_eq!(&lines[5..8], ["+OK SASL mechanisms follow", "PLAIN", "."]);
    }

    #[tokio::test]
    async fn long_lines_are_refused_but_auth_may_be_longer() {
        let long = format!("USER {}\r\n", "x".repeat(MAX_COMMAND_LINE));
        let (out, _) = talk(backend(), long.as_bytes()).await;
        assert!(out.ends_with("-ERR line too long\r\n"), "{out}");
        let huge = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(MAX_AUTH_LINE + 10));
        let (out, _) = talk(backend(), huge.as_bytes()).await;
        assert!(
            out.contains("-ERR line too long\r\n-ERR not logged in"),
            "{out}"
        );
        let ir = auth::encode_plain("a@b.de", &"p".repeat(600));
        let (out, _) = talk(backend(), format!("AUTH PLAIN {}\r\n", &*ir).as_bytes()).await;
        assert!(out.ends_with("-ERR [AUTH] invalid login\r\n"), "{out}");
    }

    #[tokio::test]
    async fn stls_not_offered_on_a_plain_listener() {
        let (out, _) = talk(backend(), b"STLS\r\nCAPA\r\n").await;
        assert!(
            out.contains("-ERR STLS is not offered on this port"),
            "{out}"
        );
        assert!(!out.contains("\r\nSTLS\r\n"), "{out}");
    }

    #[tokio::test]
    async fn no_login_without_tls_from_another_host() {
        let remote = "192.0.2.7:40000".parse().ok();
        let ir = auth::encode_plain("a@b.de", "pw with space");
        let input = format!(
            "CAPA\r\nUSER a@b.de\r\nPASS pw with space\r\nAUTH PLAIN {}\r\nSTAT\r\n",
            &*ir
        );
        let (out, _) = talk_as(backend(), input.as_bytes(), remote).await;
        assert!(
            !out.contains("\r\nUSER\r\n") && !out.contains("SASL"),
            "{out}"
        );
        assert_eq!(
            out.matches(&format!("-ERR {TLS_REQUIRED}\r\n")).count(),
            3,
            "{out}"
        );
        assert!(
            out.ends_with("-ERR not logged in: use USER and PASS or AUTH first\r\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn plaintext_pipelined_after_stls_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::testbed::ca::make_tls_ca(dir.path(), &[]).unwrap();
        let acceptor =
            Arc::new(crate::net::tls::acceptor(&files.server_cert, &files.server_key).unwrap());
        let (out, _) = talk_with(
            backend(),
            b"CAPA\r\nSTLS\r\nUSER a@b.de\r\n",
            None,
            TlsMode::Starttls,
            Some(acceptor),
        )
        .await;
        assert!(out.contains("\r\nSTLS\r\n"), "{out}");
        assert!(
            out.ends_with(".\r\n-ERR data after STLS refused\r\n"),
            "{out}"
        );
    }

    #[test]
    fn status_lines_cannot_be_split() {
        assert_eq!(status_line(false, "a\r\n+OK b"), b"-ERR a+OK b\r\n");
        assert_eq!(status_line(true, ""), b"+OK\r\n");
    }
}
