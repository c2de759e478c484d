//! The server side of an SMTP session: greeting, EHLO, STARTTLS, AUTH, the envelope
//! and DATA, as gemSpec_CM_KOMLE's CONNECT and PROXY states describe them
//! (Tab_SMTP_Ant_Init, KOM-LE-A_2007/A_2008).
//!
//! The session knows SMTP and nothing of KIM: what happens on AUTH and after DATA is
//! the [`Backend`]'s business. kim-cm's proxy is one backend; the testbed's simulated
//! Fachdienst is another, so both speak exactly the same SMTP.

use std::future::Future;
use std::sync::Arc;

use smtp_proto::Request;

use super::auth::{self, Credentials, SaslError};
use super::data::DataDecoder;
use super::reply::Reply;
use crate::net::{Conn, ReadError, TlsMode};
use crate::spool::Spool;

/// Longest command line (RFC 5321 4.5.3.1.4 allows 512; AUTH lines need more).
pub const MAX_COMMAND_LINE: usize = 4096;
/// Longest SASL response line (a `#` user name and a long password, base64).
pub const MAX_AUTH_LINE: usize = 12 * 1024;
/// Recipients per mail.
pub const MAX_RECIPIENTS: usize = 1000;
/// Failed logins before the connection is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;
/// Commands that are not understood before the connection is closed.
pub const MAX_BAD_COMMANDS: u32 = 20;

/// What the session hands to the backend after DATA.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    pub mail_from: String,
    /// `BODY=8BITMIME` was given.
    pub body_8bit: bool,
    /// `SIZE=` as declared by the client (0 when not given).
    pub declared_size: u64,
    /// DSN `RET=FULL` / `RET=HDRS`.
    pub dsn_ret: Option<&'static str>,
    /// DSN `ENVID=` (xtext as the client sent it).
    pub dsn_envid: Option<String>,
    pub rcpt: Vec<Recipient>,
}

#[derive(Debug, Clone, Default)]
pub struct Recipient {
    pub address: String,
    /// DSN `NOTIFY=` as on the wire (`SUCCESS,FAILURE`), if given.
    pub notify: Option<String>,
    /// DSN `ORCPT=` as on the wire, if given.
    pub orcpt: Option<String>,
}

/// What a backend does with a session.
pub trait Backend: Send + Sync + 'static {
    /// State of an authenticated session (for the proxy: the upstream connection).
    type Session: Send;

    /// SIZE to advertise and enforce; `session` is set once the user is known.
    fn max_message_size(&self, session: Option<&Self::Session>) -> u64;

    /// Checks the credentials. `Err` carries the reply for the client.
    fn authenticate(
        &self,
        creds: &Credentials,
        client: &ClientInfo,
    ) -> impl Future<Output = Result<Self::Session, Reply>> + Send;

    /// Takes the complete mail. The reply goes to the client as the answer to the
    /// final dot; a 421 closes the session.
    fn deliver(
        &self,
        session: &mut Self::Session,
        envelope: &Envelope,
        mail: Spool,
    ) -> impl Future<Output = Reply> + Send;

    /// MAIL FROM, as soon as the client sends it. The proxy says yes to everything
    /// here and decides after DATA (A_23554); a real server checks now.
    fn check_sender(&self, _session: &Self::Session, _address: &str) -> Result<(), Reply> {
        Ok(())
    }

    /// RCPT TO, as soon as the client sends it (see `check_sender`).
    fn check_recipient(&self, _session: &Self::Session, _address: &str) -> Result<(), Reply> {
        Ok(())
    }

    /// The client is gone or said QUIT.
    fn close(&self, session: Self::Session) -> impl Future<Output = ()> + Send;

    /// The user name to log for this session (never the password).
    fn describe(&self, session: &Self::Session) -> String;
}

/// About the connected client, for the backend's decisions and logs.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub peer: std::net::SocketAddr,
    pub tls: bool,
}

/// A listener's settings (shared with POP3).
pub type Settings = crate::listener::ListenerSettings;

struct State<S> {
    helo: bool,
    auth: Option<S>,
    envelope: Option<Envelope>,
    auth_failures: u32,
    bad_commands: u32,
    mails_accepted: u32,
    mails_refused: u32,
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

/// Runs one client session to its end. `conn` is the freshly accepted connection.
pub async fn run<B: Backend>(mut conn: Conn, settings: Arc<Settings>, backend: Arc<B>) {
    let peer = conn.peer();
    let mut st = State {
        helo: false,
        auth: None,
        envelope: None,
        auth_failures: 0,
        bad_commands: 0,
        mails_accepted: 0,
        mails_refused: 0,
    };
    let end = session(&mut conn, &settings, &*backend, &mut st).await;
    let user = st.auth.as_ref().map(|s| backend.describe(s));
    let outcome = match &end {
        End::Quit => "quit",
        End::ClientGone => "client disconnected",
        End::Timeout => "client timed out",
        End::LoginTimeout => "no login within login_timeout_secs",
        End::Closed(why) => why,
    };
    tracing::info!(
        %peer,
        user = user.as_deref().unwrap_or("-"),
        accepted = st.mails_accepted,
        refused = st.mails_refused,
        outcome,
        "smtp session ended"
    );
    if let Some(s) = st.auth.take() {
        backend.close(s).await;
    }
    conn.shutdown().await;
}

async fn reply(conn: &mut Conn, r: &Reply) -> std::io::Result<()> {
    conn.write_all(&r.to_wire()).await?;
    // PIPELINING: answers to a batch of commands go out together
    if conn.buffered().is_empty() {
        conn.flush().await?;
    }
    Ok(())
}

macro_rules! say {
    ($conn:expr, $code:expr, $text:expr) => {
        if reply($conn, &Reply::new($code, $text)).await.is_err() {
            return End::ClientGone;
        }
    };
}

async fn session<B: Backend>(
    conn: &mut Conn,
    settings: &Settings,
    backend: &B,
    st: &mut State<B::Session>,
) -> End {
    // a session that never logs in is closed at the login deadline, however
    // busy it keeps the line
    conn.set_deadline(Some(std::time::Instant::now() + settings.login_timeout));
    if let Err(why) = crate::listener::implicit_tls(conn, settings).await {
        return End::Closed(why);
    }
    say!(conn, 220, format!("{} ESMTP", settings.name));
    loop {
        // between commands a shutdown ends the session (a mail in DATA is
        // finished first: it is read elsewhere)
        let read = tokio::select! {
            biased;
            _ = crate::shutdown::requested() => {
                let _ = reply(
                    conn,
                    &Reply::new(421, format!("4.3.2 {} Service shutting down, try again later", settings.name)),
                )
                .await;
                return End::Closed("shutdown");
            }
            r = conn.read_line(MAX_COMMAND_LINE) => r,
        };
        let line = match read {
            Ok(l) => l,
            Err(ReadError::TooLong(_)) => {
                st.bad_commands += 1;
                say!(conn, 500, "5.5.2 Line too long");
                continue;
            }
            Err(ReadError::Timeout(_)) => {
                return timed_out(conn, settings, st.auth.is_some()).await
            }
            Err(_) => return End::ClientGone,
        };
        if st.bad_commands >= MAX_BAD_COMMANDS {
            let _ = reply(
                conn,
                &Reply::new(421, "4.7.0 Too many errors, closing connection"),
            )
            .await;
            return End::Closed("too many bad commands");
        }
        match command(conn, settings, backend, st, line).await {
            Flow::Continue => {}
            Flow::End(e) => return e,
        }
    }
}

enum Flow {
    Continue,
    End(End),
}

/// A read ran out of time: the line did not come within the client timeout, or
/// the session has not logged in by the login deadline. Says which, and ends.
async fn timed_out(conn: &mut Conn, settings: &Settings, logged_in: bool) -> End {
    if !logged_in && conn.deadline_passed() {
        let text = format!(
            "4.4.2 {} No login within {} seconds, closing connection",
            settings.name,
            settings.login_timeout.as_secs()
        );
        let _ = reply(conn, &Reply::new(421, text)).await;
        return End::LoginTimeout;
    }
    let text = format!("4.4.2 {} Timeout, closing connection", settings.name);
    let _ = reply(conn, &Reply::new(421, text)).await;
    End::Timeout
}

macro_rules! answer {
    ($conn:expr, $code:expr, $text:expr) => {{
        if reply($conn, &Reply::new($code, $text)).await.is_err() {
            return Flow::End(End::ClientGone);
        }
        return Flow::Continue;
    }};
}

async fn command<B: Backend>(
    conn: &mut Conn,
    settings: &Settings,
    backend: &B,
    st: &mut State<B::Session>,
    mut line: Vec<u8>,
) -> Flow {
    // AUTH is handled here, not by the generic parser, so that every mechanism other
    // than PLAIN and LOGIN gets 504 5.7.4 (Tab_SMTP_Verbindung).
    if line.len() >= 4
        && line[..4].eq_ignore_ascii_case(b"AUTH")
        && (line.len() == 4 || line[4] == b' ')
    {
        return auth_command(conn, settings, backend, st, &line).await;
    }
    line.extend_from_slice(b"\r\n");
    let req = match Request::parse(&mut line.iter()) {
        Ok(r) => r,
        Err(e) => {
            st.bad_commands += 1;
            use smtp_proto::Error as E;
            match e {
                E::UnknownCommand | E::NeedsMoreData { .. } => {
                    answer!(conn, 502, "5.5.1 Invalid command")
                }
                E::InvalidSenderAddress => answer!(conn, 501, "5.1.7 Bad sender address syntax"),
                E::InvalidRecipientAddress => {
                    answer!(conn, 501, "5.1.3 Bad recipient address syntax")
                }
                E::SyntaxError { syntax } => answer!(conn, 501, format!("5.5.2 Syntax: {syntax}")),
                E::InvalidParameter { param } => {
                    answer!(conn, 501, format!("5.5.4 Invalid parameter {param}"))
                }
                E::UnsupportedParameter { param } => {
                    answer!(conn, 555, format!("5.5.4 Unsupported parameter {param}"))
                }
                _ => answer!(conn, 500, "5.5.2 Syntax error"),
            }
        }
    };
    match req {
        Request::Ehlo { host: _ } => {
            st.helo = true;
            st.envelope = None;
            let mut lines = vec![settings.name.clone()];
            lines.push(format!(
                "SIZE {}",
                backend.max_message_size(st.auth.as_ref())
            ));
            if auth_allowed(conn) {
                lines.push("AUTH PLAIN LOGIN".into());
            }
            lines
                .extend(["8BITMIME", "ENHANCEDSTATUSCODES", "PIPELINING", "DSN"].map(String::from));
            if settings.tls == TlsMode::Starttls && !conn.is_tls() {
                lines.push("STARTTLS".into());
            }
            if reply(conn, &Reply { code: 250, lines }).await.is_err() {
                return Flow::End(End::ClientGone);
            }
            Flow::Continue
        }
        Request::Helo { .. } => {
            st.helo = true;
            st.envelope = None;
            answer!(conn, 250, settings.name.clone())
        }
        Request::StartTls => {
            if conn.is_tls() {
                answer!(conn, 503, "5.5.1 TLS already active");
            }
            let Some(acc) = settings
                .acceptor
                .as_ref()
                .filter(|_| settings.tls == TlsMode::Starttls)
            else {
                answer!(conn, 502, "5.5.1 STARTTLS not offered on this port");
            };
            if !conn.buffered().is_empty() {
                // RFC 3207 5: nothing may follow STARTTLS before the handshake
                let _ = reply(conn, &Reply::new(554, "5.5.1 Data after STARTTLS refused")).await;
                return Flow::End(End::Closed("plaintext after STARTTLS"));
            }
            if reply(conn, &Reply::new(220, "2.0.0 Ready to start TLS"))
                .await
                .is_err()
            {
                return Flow::End(End::ClientGone);
            }
            if let Err(e) = conn.accept_tls(acc).await {
                tracing::debug!(peer = %conn.peer(), "STARTTLS handshake failed: {e}");
                return Flow::End(End::Closed("TLS handshake failed"));
            }
            // RFC 3207 4.2: forget everything learnt before TLS
            st.helo = false;
            st.envelope = None;
            Flow::Continue
        }
        Request::Mail { from } => {
            if st.auth.is_none() {
                answer!(conn, 530, "5.7.0 Authentication required");
            }
            if st.envelope.is_some() {
                answer!(conn, 503, "5.5.1 Sender already given");
            }
            let max = backend.max_message_size(st.auth.as_ref());
            if from.size as u64 > max {
                st.mails_refused += 1;
                answer!(
                    conn,
                    552,
                    format!("5.3.4 Message size exceeds fixed limit of {max} bytes")
                );
            }
            if let Some(Err(r)) = st
                .auth
                .as_ref()
                .map(|s| backend.check_sender(s, &from.address))
            {
                if reply(conn, &r).await.is_err() {
                    return Flow::End(End::ClientGone);
                }
                return Flow::Continue;
            }
            let ret = if from.flags & smtp_proto::MAIL_RET_FULL != 0 {
                Some("FULL")
            } else if from.flags & smtp_proto::MAIL_RET_HDRS != 0 {
                Some("HDRS")
            } else {
                None
            };
            st.envelope = Some(Envelope {
                mail_from: from.address.to_string(),
                body_8bit: from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
                declared_size: from.size as u64,
                dsn_ret: ret,
                dsn_envid: from.env_id.map(|e| e.to_string()),
                rcpt: Vec::new(),
            });
            answer!(conn, 250, "2.1.0 Sender ok")
        }
        Request::Rcpt { to } => {
            if st.auth.is_none() {
                answer!(conn, 530, "5.7.0 Authentication required");
            }
            let Some(env) = st.envelope.as_ref() else {
                answer!(conn, 503, "5.5.1 Need MAIL before RCPT");
            };
            if env.rcpt.len() >= MAX_RECIPIENTS {
                answer!(conn, 452, "4.5.3 Too many recipients");
            }
            if to.address.is_empty() {
                answer!(conn, 501, "5.1.3 Bad recipient address syntax");
            }
            if let Some(Err(r)) = st
                .auth
                .as_ref()
                .map(|s| backend.check_recipient(s, &to.address))
            {
                if reply(conn, &r).await.is_err() {
                    return Flow::End(End::ClientGone);
                }
                return Flow::Continue;
            }
            let Some(env) = st.envelope.as_mut() else {
                answer!(conn, 503, "5.5.1 Need MAIL before RCPT");
            };
            env.rcpt.push(Recipient {
                address: to.address.to_string(),
                notify: notify_param(to.flags),
                orcpt: to.orcpt.map(|o| o.to_string()),
            });
            answer!(conn, 250, "2.1.5 Recipient ok")
        }
        Request::Data => data_command(conn, settings, backend, st).await,
        Request::Rset => {
            st.envelope = None;
            answer!(conn, 250, "2.0.0 Ok")
        }
        Request::Noop { .. } => answer!(conn, 250, "2.0.0 Ok"),
        Request::Quit => {
            let _ = reply(conn, &Reply::new(221, "2.0.0 Bye")).await;
            Flow::End(End::Quit)
        }
        _ => {
            st.bad_commands += 1;
            answer!(conn, 502, "5.5.1 Invalid command")
        }
    }
}

fn notify_param(flags: u64) -> Option<String> {
    use smtp_proto::{
        RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS,
    };
    if flags & RCPT_NOTIFY_NEVER != 0 {
        return Some("NEVER".into());
    }
    let parts: Vec<&str> = [
        (RCPT_NOTIFY_SUCCESS, "SUCCESS"),
        (RCPT_NOTIFY_FAILURE, "FAILURE"),
        (RCPT_NOTIFY_DELAY, "DELAY"),
    ]
    .iter()
    .filter(|(f, _)| flags & f != 0)
    .map(|(_, n)| *n)
    .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Credentials may cross only TLS or loopback.
fn auth_allowed(conn: &Conn) -> bool {
    conn.is_tls() || conn.peer_is_loopback()
}

async fn auth_command<B: Backend>(
    conn: &mut Conn,
    settings: &Settings,
    backend: &B,
    st: &mut State<B::Session>,
    line: &[u8],
) -> Flow {
    if st.auth.is_some() {
        answer!(conn, 503, "5.5.1 Already authenticated");
    }
    if !auth_allowed(conn) {
        answer!(conn, 530, "5.7.0 Must issue a STARTTLS command first");
    }
    let throttle = settings.login_throttle.as_deref();
    if let Some(Err(t)) = throttle.map(|t| t.check(conn.peer().ip())) {
        // refused here: the Fachdienst is not asked
        tracing::debug!(peer = %conn.peer(), "smtp login refused: too many failed logins from this address");
        answer!(
            conn,
            454,
            format!(
                "4.7.0 Too many failed logins from your address; try again in {} minutes",
                t.minutes()
            )
        );
    }
    let text = String::from_utf8_lossy(&line[4.min(line.len())..])
        .trim()
        .to_string();
    let mut words = text.split_whitespace();
    let mech = words.next().unwrap_or("").to_ascii_uppercase();
    let initial = words.next().map(str::to_string);
    if mech.is_empty() {
        answer!(conn, 501, "5.5.4 Syntax: AUTH mechanism [initial-response]");
    }
    let creds = match mech.as_str() {
        "PLAIN" => {
            let resp = match initial {
                Some(r) if r != "=" => r.into_bytes(),
                _ => match challenge(conn, settings, "").await {
                    Ok(Some(r)) => r,
                    Ok(None) => answer!(conn, 501, "5.7.0 Authentication cancelled"),
                    Err(f) => return f,
                },
            };
            auth::decode_plain(&resp)
        }
        "LOGIN" => {
            let user = match initial {
                Some(r) => r.into_bytes(),
                None => match challenge(conn, settings, &auth::encode("Username:")).await {
                    Ok(Some(r)) => r,
                    Ok(None) => answer!(conn, 501, "5.7.0 Authentication cancelled"),
                    Err(f) => return f,
                },
            };
            let user = match auth::decode_login_field(&user) {
                Ok(u) => u,
                Err(e) => return sasl_error(conn, st, e).await,
            };
            let pass = match challenge(conn, settings, &auth::encode("Password:")).await {
                Ok(Some(r)) => r,
                Ok(None) => answer!(conn, 501, "5.7.0 Authentication cancelled"),
                Err(f) => return f,
            };
            auth::decode_login_field(&pass).map(|password| Credentials {
                user: user.to_string(),
                password,
            })
        }
        _ => answer!(
            conn,
            504,
            "5.7.4 Security features not supported: use AUTH PLAIN or LOGIN"
        ),
    };
    let creds = match creds {
        Ok(c) => c,
        Err(e) => return sasl_error(conn, st, e).await,
    };
    let client = ClientInfo {
        peer: conn.peer(),
        tls: conn.is_tls(),
    };
    match backend.authenticate(&creds, &client).await {
        Ok(s) => {
            st.auth = Some(s);
            conn.set_deadline(None);
            answer!(conn, 235, "2.7.0 Authentication successful")
        }
        Err(r) => {
            st.auth_failures += 1;
            // credentials refused (not a Fachdienst that is down or slow)
            if r.code == 535 {
                if let Some(t) = throttle {
                    t.failed(conn.peer().ip());
                }
            }
            tracing::info!(peer = %conn.peer(), code = r.code, "smtp login refused: {}", r.text());
            let close = r.code == 421 || st.auth_failures >= MAX_AUTH_FAILURES;
            if reply(conn, &r).await.is_err() {
                return Flow::End(End::ClientGone);
            }
            if close {
                if r.code != 421 {
                    let _ = reply(
                        conn,
                        &Reply::new(421, "4.7.0 Too many failed logins, closing connection"),
                    )
                    .await;
                }
                return Flow::End(End::Closed(if r.code == 421 {
                    "upstream timeout"
                } else {
                    "too many failed logins"
                }));
            }
            Flow::Continue
        }
    }
}

async fn sasl_error<S>(conn: &mut Conn, st: &mut State<S>, e: SaslError) -> Flow {
    st.auth_failures += 1;
    let text = match e {
        SaslError::Base64 => "5.5.2 Cannot decode the AUTH response: not base64",
        SaslError::Utf8 => "5.5.2 Cannot decode the AUTH response: not UTF-8",
        SaslError::PlainFormat => "5.5.2 Cannot decode the AUTH PLAIN response",
    };
    answer!(conn, 501, text)
}

/// Sends a 334 challenge and reads the response line; `None` when the client cancels.
async fn challenge(
    conn: &mut Conn,
    settings: &Settings,
    text: &str,
) -> Result<Option<Vec<u8>>, Flow> {
    let wire = format!("334 {text}\r\n");
    if conn.send(wire.as_bytes()).await.is_err() {
        return Err(Flow::End(End::ClientGone));
    }
    match conn.read_line(MAX_AUTH_LINE).await {
        Ok(l) if l == b"*" => Ok(None),
        Ok(l) => Ok(Some(l)),
        Err(ReadError::TooLong(_)) => {
            let _ = reply(conn, &Reply::new(500, "5.5.2 Line too long")).await;
            Err(Flow::Continue)
        }
        Err(ReadError::Timeout(_)) => Err(Flow::End(timed_out(conn, settings, false).await)),
        Err(_) => Err(Flow::End(End::ClientGone)),
    }
}

async fn data_command<B: Backend>(
    conn: &mut Conn,
    settings: &Settings,
    backend: &B,
    st: &mut State<B::Session>,
) -> Flow {
    let Some(session) = st.auth.as_mut() else {
        answer!(conn, 530, "5.7.0 Authentication required");
    };
    let Some(env) = st.envelope.as_ref() else {
        answer!(conn, 503, "5.5.1 Need MAIL before DATA");
    };
    if env.rcpt.is_empty() {
        answer!(conn, 554, "5.5.1 No valid recipients");
    }
    if reply(conn, &Reply::new(354, "End data with <CR><LF>.<CR><LF>"))
        .await
        .is_err()
    {
        return Flow::End(End::ClientGone);
    }
    let max = backend.max_message_size(Some(session));
    let mut spool = Spool::new(&settings.spool);
    match receive_data(conn, &mut spool, max).await {
        Ok(Received::Complete) => {}
        Ok(Received::TooBig) => {
            st.envelope = None;
            st.mails_refused += 1;
            answer!(
                conn,
                552,
                format!("5.3.4 Message size exceeds fixed limit of {max} bytes")
            );
        }
        Ok(Received::SpoolFailed(e)) => {
            tracing::error!("cannot spool a mail: {e}");
            st.envelope = None;
            st.mails_refused += 1;
            answer!(
                conn,
                452,
                "4.3.1 Insufficient system storage, try again later"
            );
        }
        // the client went away in the middle of DATA: nothing is sent anywhere
        Err(ReadError::Timeout(_)) => return Flow::End(timed_out(conn, settings, true).await),
        Err(_) => return Flow::End(End::Closed("client disconnected in DATA; nothing was sent")),
    }
    let env = st.envelope.take().unwrap_or_default();
    let r = backend.deliver(session, &env, spool).await;
    if r.is_positive() {
        st.mails_accepted += 1;
    } else {
        st.mails_refused += 1;
    }
    if reply(conn, &r).await.is_err() {
        return Flow::End(End::ClientGone);
    }
    if r.code == 421 {
        return Flow::End(End::Closed("upstream lost"));
    }
    Flow::Continue
}

enum Received {
    Complete,
    TooBig,
    SpoolFailed(std::io::Error),
}

/// Reads DATA to its end into `spool`. Past `max` bytes (or a spool failure) the rest
/// is read and discarded, so the client gets its answer at the end of its data.
/// Each line must come within the client timeout, as a command line must: the
/// whole mail may take as long as it needs, a dribbled line may not.
async fn receive_data(conn: &mut Conn, spool: &mut Spool, max: u64) -> Result<Received, ReadError> {
    let mut dec = DataDecoder::new();
    let mut out = Vec::with_capacity(128 * 1024);
    let mut too_big = false;
    let mut failed: Option<std::io::Error> = None;
    let mut line_until = conn.read_deadline();
    loop {
        if conn.buffered().is_empty() {
            conn.fill_until(line_until).await?;
        }
        if memchr::memchr(b'\n', conn.buffered()).is_some() {
            // a line ended in what just came: the next one has its own time
            line_until = conn.read_deadline();
        }
        let buf = conn.buffered();
        let done = dec.feed(buf, &mut out);
        let used = done.unwrap_or(buf.len());
        conn.consume(used);
        if !too_big && failed.is_none() {
            if spool.len() + out.len() as u64 > max {
                too_big = true;
            } else if let Err(e) = spool.write(&out).await {
                failed = Some(e);
            }
        }
        out.clear();
        if done.is_some() {
            return Ok(match (too_big, failed) {
                (true, _) => Received::TooBig,
                (_, Some(e)) => Received::SpoolFailed(e),
                _ => Received::Complete,
            });
        }
    }
}

/// Accepts connections on `listener` and runs a session for each, until the task is
/// dropped.
pub async fn serve<B: Backend>(
    listener: tokio::net::TcpListener,
    settings: Arc<Settings>,
    backend: Arc<B>,
) {
    let timeout = settings.timeout;
    let refusal = (settings.tls != TlsMode::Implicit)
        .then_some(&b"421 4.7.0 Too many connections from your address, try again later\r\n"[..]);
    crate::listener::accept_loop(listener, timeout, refusal, move |conn| {
        run(conn, settings.clone(), backend.clone())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolSettings;
    use crate::testbed::mailstore::MailStore;
    use crate::testbed::smtp::TestbedSmtp;
    use crate::testbed::users::Users;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// A session of the testbed MTA over a real socket; `peer` is what the session
    /// believes the client's address is.
    async fn start(
        peer: &str,
        max_size: u64,
    ) -> (tokio::net::TcpStream, Arc<MailStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MailStore::new(dir.path().join("mail")).unwrap());
        let mut users = Users::new();
        users.add("a@x.de", "pw");
        let backend = Arc::new(TestbedSmtp {
            store: store.clone(),
            users: Arc::new(users),
            max_size,
            name: "t".into(),
        });
        let settings = Arc::new(Settings {
            name: "t".into(),
            tls: TlsMode::Plain,
            acceptor: None,
            timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(60),
            login_throttle: None,
            spool: SpoolSettings {
                dir: dir.path().join("spool"),
                memory_limit: 64,
            },
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            run(
                Conn::new(crate::net::Stream::Plain(tcp), peer, settings.timeout),
                settings,
                backend,
            )
            .await;
        });
        (
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            store,
            dir,
        )
    }

    async fn talk(s: &mut BufReader<tokio::net::TcpStream>, line: &str) -> String {
        s.get_mut().write_all(line.as_bytes()).await.unwrap();
        last_reply(s).await
    }

    async fn last_reply(s: &mut BufReader<tokio::net::TcpStream>) -> String {
        loop {
            let mut l = String::new();
            s.read_line(&mut l).await.unwrap();
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return l.trim_end().to_string();
            }
        }
    }

    #[tokio::test]
    async fn no_plaintext_login_from_another_machine() {
        let (tcp, _store, _d) = start("192.0.2.7:40000", 1000).await;
        let mut s = BufReader::new(tcp);
        last_reply(&mut s).await;
        s.get_mut().write_all(b"EHLO x\r\n").await.unwrap();
        let mut ehlo = Vec::new();
        loop {
            let mut l = String::new();
            s.read_line(&mut l).await.unwrap();
            let last = l.as_bytes()[3] == b' ';
            ehlo.push(l);
            if last {
                break;
            }
        }
        assert!(
            !ehlo.iter().any(|l| l.contains("AUTH")),
            "AUTH offered without TLS: {ehlo:?}"
        );
        let r = talk(
            &mut s,
            &format!("AUTH PLAIN {}\r\n", &*auth::encode_plain("a@x.de", "pw")),
        )
        .await;
        assert!(r.starts_with("530 5.7.0"), "{r}");
    }

    #[tokio::test]
    async fn data_over_the_size_limit_gets_552_and_nothing_is_stored() {
        let (tcp, store, _d) = start("127.0.0.1:40000", 1000).await;
        let mut s = BufReader::new(tcp);
        last_reply(&mut s).await;
        talk(&mut s, "EHLO x\r\n").await;
        assert!(talk(
            &mut s,
            &format!("AUTH PLAIN {}\r\n", &*auth::encode_plain("a@x.de", "pw"))
        )
        .await
        .starts_with("235"));
        assert!(talk(&mut s, "MAIL FROM:<a@x.de>\r\n")
            .await
            .starts_with("250"));
        assert!(talk(&mut s, "RCPT TO:<a@x.de>\r\n")
            .await
            .starts_with("250"));
        assert!(talk(&mut s, "DATA\r\n").await.starts_with("354"));
        let body = "y".repeat(98) + "\r\n";
        for _ in 0..20 {
            s.get_mut().write_all(body.as_bytes()).await.unwrap();
        }
        let r = talk(&mut s, ".\r\n").await;
        assert!(r.starts_with("552 5.3.4"), "{r}");
        assert!(store.list("a@x.de").unwrap().is_empty());
        // the session goes on and a mail within the limit goes through
        assert!(talk(&mut s, "MAIL FROM:<a@x.de>\r\n")
            .await
            .starts_with("250"));
        assert!(talk(&mut s, "RCPT TO:<a@x.de>\r\n")
            .await
            .starts_with("250"));
        assert!(talk(&mut s, "DATA\r\n").await.starts_with("354"));
        assert!(talk(&mut s, "Subject: small\r\n\r\nok\r\n.\r\n")
            .await
            .starts_with("250"));
        assert_eq!(store.list("a@x.de").unwrap().len(), 1);
    }
}
