//! The SMTP proxy: the backend behind kim-cm's SMTP listeners.
//!
//! On AUTH it parses the user name, connects to the MTA named there (or configured
//! for the account) and logs in with the address and the client's password, so the
//! client's AUTH succeeds exactly when the Fachdienst's does (Tab_SMTP_Verbindung).
//! MAIL FROM and RCPT TO are collected, DATA is spooled, the send pipeline runs over
//! the whole mail, and only then is the upstream transaction opened (A_23554). The
//! client hears 250 only when the MTA said 250.
//!
//! The password is held in memory for the life of the session, and only to log in
//! again when the MTA has dropped an idle connection while a long DATA came in; it is
//! wiped when the session ends and is never written anywhere.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::activity::Activity;
use crate::config::Config;
use crate::kim::login::{LoginName, Protocol, Server};
use crate::kim::send::{
    Outgoing, SendPipeline, Submission, DEFAULT_DATA_TIME_TO_LIVE_DAYS, KAS_THRESHOLD,
};
use crate::limits::Limits;
use crate::smtp::auth::Credentials;
use crate::smtp::client::{ClientError, ClientSettings, SmtpClient, UpstreamEnvelope};
use crate::smtp::server::{Backend, ClientInfo, Envelope};
use crate::smtp::Reply;
use crate::spool::Spool;

/// The SMTP side of kim-cm.
pub struct SmtpProxy {
    config: Arc<Config>,
    client: ClientSettings,
    pipeline: SendPipeline,
    /// getLimits (A_22416); none when no AccountLimit service is configured.
    limits: Option<Arc<Limits>>,
    /// Where each client's reply is counted (the admin page).
    activity: Arc<Activity>,
}

/// One authenticated client session.
pub struct ProxySession {
    login: LoginName,
    server: Server,
    password: Zeroizing<String>,
    upstream: Option<SmtpClient>,
}

impl SmtpProxy {
    pub fn new(
        config: Arc<Config>,
        client: ClientSettings,
        pipeline: SendPipeline,
        limits: Option<Arc<Limits>>,
        activity: Arc<Activity>,
    ) -> SmtpProxy {
        SmtpProxy {
            config,
            client,
            pipeline,
            limits,
            activity,
        }
    }

    /// Which MTA a login goes to; an incomplete or unusable name gets `501 5.5.4`
    /// (Tab_SMTP_Verbindung).
    fn resolve(&self, user: &str) -> Result<(LoginName, Server), Reply> {
        super::resolve(&self.config, user, Protocol::Smtp)
            .map_err(|why| Reply::new(501, format!("5.5.4 Invalid user name: {why}")))
    }

    async fn connect(
        &self,
        server: &Server,
        address: &str,
        password: &str,
    ) -> Result<SmtpClient, Reply> {
        let mut c = SmtpClient::connect(server, &self.client)
            .await
            .map_err(|e| {
                tracing::warn!(%server, "cannot reach the MTA: {e}");
                connect_reply(&e)
            })?;
        match c.login(address, password).await {
            Ok(()) => Ok(c),
            Err(ClientError::Rejected(r)) if !r.is_transient() => {
                c.quit().await;
                Err(Reply::new(535, "5.7.8 Authentication credentials invalid"))
            }
            Err(e) => {
                tracing::warn!(%server, "login at the MTA failed: {e}");
                // a server that went silent or away hears no QUIT: waiting
                // for its answer would only hold the client longer
                if !matches!(e, ClientError::Timeout(_) | ClientError::Closed) {
                    c.quit().await;
                }
                Err(connect_reply(&e))
            }
        }
    }

    /// Opens the upstream transaction (MAIL, RCPT, DATA) for `out`. A connection the
    /// MTA dropped while the client was busy (idle timeout during a long DATA) is
    /// noticed here, before any mail byte went out, and replaced by a fresh login.
    async fn begin<'s>(
        &self,
        s: &'s mut ProxySession,
        env: &Envelope,
        mail_from: &str,
        recipients: &[String],
        size: u64,
    ) -> Result<&'s mut SmtpClient, Reply> {
        for attempt in 0..2 {
            let fresh = s.upstream.is_none();
            if fresh {
                s.upstream = Some(
                    self.connect(&s.server, &s.login.address, &s.password)
                        .await?,
                );
            }
            let Some(client) = s.upstream.as_mut() else {
                break;
            };
            let uenv = upstream_envelope(env, mail_from, recipients, client.has_extension("DSN"));
            match client.begin(&uenv, size).await {
                Ok(Ok(())) => {
                    return s
                        .upstream
                        .as_mut()
                        .ok_or_else(|| Reply::new(454, "4.7.0 Temporary failure"));
                }
                Ok(Err(r)) => {
                    tracing::info!(user = %s.login.address, code = r.code, "mail refused by the MTA: {}", r.text());
                    return Err(r);
                }
                Err(ClientError::Closed) if !fresh && attempt == 0 => {
                    tracing::debug!(server = %s.server, "the MTA closed the idle connection; logging in again");
                    s.upstream = None;
                }
                Err(e) => {
                    tracing::warn!(user = %s.login.address, server = %s.server, "MTA connection failed before the data: {e}");
                    s.upstream = None;
                    return Err(match e {
                        ClientError::Timeout(_) => Reply::new(421, "4.4.2 The Fachdienst MTA did not answer in time; the mail was not sent"),
                        _ => Reply::new(421, "4.4.2 Connection to the Fachdienst MTA lost; the mail was not sent, send it again"),
                    });
                }
            }
        }
        Err(Reply::new(
            421,
            "4.4.2 Connection to the Fachdienst MTA lost; the mail was not sent, send it again",
        ))
    }
}

/// Sends a notice for the sender (KOM-LE-A_2024-01) as its own transaction from and
/// to the sender. The client's mail is already accepted, so a failure here is logged
/// and does not change the client's reply.
async fn send_notice(client: &mut SmtpClient, user: &str, notice: &[u8]) {
    let env = UpstreamEnvelope {
        mail_from: user.to_string(),
        mail_params: Vec::new(),
        rcpt: vec![(user.to_string(), Vec::new())],
    };
    match client.send_mail(&env, notice.len() as u64, notice).await {
        Ok(Ok(_)) => tracing::info!(%user, "delivery status notification sent to the sender"),
        Ok(Err(r)) => {
            tracing::warn!(%user, code = r.code, "the MTA refused the delivery status notification: {}", r.text())
        }
        Err(e) => tracing::warn!(%user, "cannot send the delivery status notification: {e}"),
    }
}

/// Tab_SMTP_Verbindung: MTA unreachable 454 4.7.0; MTA timeout 421 (KOM-LE-A_2016).
fn connect_reply(e: &ClientError) -> Reply {
    match e {
        ClientError::Timeout(_) => {
            Reply::new(421, "4.4.2 The Fachdienst MTA did not answer in time")
        }
        _ => Reply::new(
            454,
            "4.7.0 Temporary authentication failure: cannot reach the Fachdienst MTA",
        ),
    }
}

/// The envelope parameters that go upstream with the mail.
fn upstream_envelope(
    env: &Envelope,
    mail_from: &str,
    recipients: &[String],
    dsn: bool,
) -> UpstreamEnvelope {
    let mut mail_params = Vec::new();
    if env.body_8bit {
        mail_params.push("BODY=8BITMIME".to_string());
    }
    if dsn {
        if let Some(ret) = env.dsn_ret {
            mail_params.push(format!("RET={ret}"));
        }
        if let Some(id) = &env.dsn_envid {
            mail_params.push(format!("ENVID={id}"));
        }
    }
    let rcpt = recipients
        .iter()
        .map(|r| {
            let mut params = Vec::new();
            if dsn {
                if let Some(orig) = env.rcpt.iter().find(|o| o.address.eq_ignore_ascii_case(r)) {
                    if let Some(n) = &orig.notify {
                        params.push(format!("NOTIFY={n}"));
                    }
                    if let Some(o) = &orig.orcpt {
                        params.push(format!("ORCPT={o}"));
                    }
                }
            }
            (r.clone(), params)
        })
        .collect();
    UpstreamEnvelope {
        mail_from: mail_from.to_string(),
        mail_params,
        rcpt,
    }
}

impl Backend for SmtpProxy {
    type Session = ProxySession;

    fn max_message_size(&self, session: Option<&ProxySession>) -> u64 {
        // EHLO's SIZE: the account's maxMailSize once known (A_19355-01)
        let known = session.and_then(|s| {
            let l = self.limits.as_ref()?.cached(&s.login.address)?;
            Some(l.max_mail_size)
        });
        known.unwrap_or(self.config.proxy.max_message_size)
    }

    async fn authenticate(
        &self,
        creds: &Credentials,
        _client: &ClientInfo,
    ) -> Result<ProxySession, Reply> {
        let (login, server) = self.resolve(&creds.user)?;
        if let Some(k) = self.pipeline.konnektors() {
            k.check_login(
                &login.address,
                login.context.as_ref(),
                login.konnektor_id.as_deref(),
            )
            .await
            .map_err(|why| Reply::new(501, format!("5.5.4 {why}")))?;
        }
        let upstream = self
            .connect(&server, &login.address, &creds.password)
            .await?;
        tracing::info!(user = %login.address, %server, "smtp login accepted by the MTA");
        Ok(ProxySession {
            login,
            server,
            password: creds.password.clone(),
            upstream: Some(upstream),
        })
    }

    async fn deliver(&self, s: &mut ProxySession, env: &Envelope, mail: Spool) -> Reply {
        let size_in = mail.len();
        let reply = self.deliver_mail(s, env, mail).await;
        self.activity
            .send_outcome(&s.login.address, reply.code, reply.text(), size_in);
        reply
    }

    async fn close(&self, s: ProxySession) {
        if let Some(c) = s.upstream {
            c.quit().await;
        }
    }

    fn describe(&self, s: &ProxySession) -> String {
        s.login.address.clone()
    }
}

impl SmtpProxy {
    /// Limits, the send pipeline and the relay for one mail; the client's reply.
    async fn deliver_mail(&self, s: &mut ProxySession, env: &Envelope, mail: Spool) -> Reply {
        let recipients: Vec<String> = env.rcpt.iter().map(|r| r.address.clone()).collect();
        let size_in = mail.len();
        // A_22416: the account's limits for every send; A_19355-01: too large, 552
        let mut ttl_days = DEFAULT_DATA_TIME_TO_LIVE_DAYS;
        let mut kas_threshold = KAS_THRESHOLD;
        if let Some(limits) = &self.limits {
            match limits.get(&s.login.address, &s.password).await {
                Ok(l) => {
                    if size_in > l.max_mail_size {
                        tracing::warn!(user = %s.login.address, size_in, max = l.max_mail_size, "mail refused: larger than the account's maxMailSize");
                        return Reply::new(
                            552,
                            format!(
                                "5.3.4 The mail ({size_in} bytes) is larger than this account allows ({} bytes)",
                                l.max_mail_size
                            ),
                        );
                    }
                    ttl_days = l.ttl_days();
                    // AccountLimit 1.1.2 (readOnly, at most 15 MiB): the server's
                    // threshold takes precedence
                    if let Some(t) = l.kas_mail_size_threshold {
                        kas_threshold = t.min(KAS_THRESHOLD);
                    }
                }
                Err(e) => {
                    tracing::warn!(user = %s.login.address, "mail refused for now: {e}");
                    return Reply::new(451, format!("4.4.3 {e}"));
                }
            }
        }
        let submission = Submission {
            account: &s.login.address,
            password: &s.password,
            mail_from: &env.mail_from,
            recipients: &recipients,
            data_time_to_live_days: ttl_days,
            kas_threshold,
            context: s.login.context.as_ref(),
            konnektor_id: s.login.konnektor_id.as_deref(),
        };
        let out = match self.pipeline.run(&submission, mail).await {
            Ok(o) => o,
            Err(r) => {
                tracing::warn!(user = %s.login.address, code = r.code, "mail refused: {}", r.text);
                if !r.notices.is_empty() {
                    self.send_notices(s, &r.notices).await;
                }
                return Reply::new(r.code, format!("{} {}", r.status, r.text));
            }
        };
        let kas_link = out.kas_link.clone();
        let reply = self.relay(s, env, out, size_in).await;
        // 1.5.3-3: mail data of a mail the MTA did not take are deleted from the KAS
        if let (Some(link), false) = (kas_link, reply.code == 250) {
            self.pipeline
                .withdraw(&link, &s.login.address, &s.password)
                .await;
        }
        reply
    }

    /// Sends notices for the sender of a mail that was refused (the 4002 DSN), over
    /// the session's upstream connection or a fresh one.
    async fn send_notices(&self, s: &mut ProxySession, notices: &[Vec<u8>]) {
        if s.upstream.is_none() {
            match self.connect(&s.server, &s.login.address, &s.password).await {
                Ok(c) => s.upstream = Some(c),
                Err(r) => {
                    tracing::warn!(user = %s.login.address, "cannot send the delivery status notification: {}", r.text());
                    return;
                }
            }
        }
        if let Some(client) = s.upstream.as_mut() {
            for notice in notices {
                send_notice(client, &s.login.address, notice).await;
            }
        }
    }

    /// The upstream transaction for a processed mail; the client's reply.
    async fn relay(
        &self,
        s: &mut ProxySession,
        env: &Envelope,
        mut out: Outgoing,
        size_in: u64,
    ) -> Reply {
        let size = out.mail.len();
        let (user, server) = (s.login.address.clone(), s.server.clone());
        let rcpt = out.recipients.len();
        let reader = match out.mail.reader().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read the spooled mail: {e}");
                return Reply::new(
                    451,
                    "4.3.0 Local error reading the spooled mail; nothing was sent, try again",
                );
            }
        };
        let client = match self
            .begin(s, env, &out.mail_from, &out.recipients, size)
            .await
        {
            Ok(c) => c,
            Err(r) => return r,
        };
        match client.transfer(reader).await {
            Ok(Ok(r)) => {
                tracing::info!(%user, rcpt, size_in, size, "mail accepted by the MTA");
                if !out.unreachable.is_empty() {
                    tracing::warn!(%user, unreachable = %out.unreachable.join(","), "recipients without encryption certificate were left out");
                }
                for notice in &out.notices {
                    send_notice(client, &user, notice).await;
                }
                r
            }
            Ok(Err(r)) => {
                tracing::info!(%user, code = r.code, "mail refused by the MTA: {}", r.text());
                r
            }
            Err(e) => {
                tracing::warn!(%user, %server, "MTA connection failed while sending: {e}");
                s.upstream = None;
                match e {
                    ClientError::Spool(_) => Reply::new(451, "4.3.0 Local error reading the spooled mail; nothing was sent, try again"),
                    ClientError::Timeout(_) => Reply::new(421, "4.4.2 The Fachdienst MTA did not answer in time; the mail may not have been sent"),
                    // RFC 1047: a 4xx, never a 250, for a mail the MTA did not confirm;
                    // a resend may then arrive twice, which beats a mail lost
                    ClientError::ClosedAfterData => Reply::new(421, "4.4.2 Connection to the Fachdienst MTA lost before it confirmed the mail; it may have arrived, a resend may arrive twice"),
                    _ => Reply::new(421, "4.4.2 Connection to the Fachdienst MTA lost; the mail was not accepted, send it again"),
                }
            }
        }
    }
}
