//! The POP3 proxy: the backend behind kim-cm's POP3 listeners.
//!
//! On login it parses the user name (gemSpec_CM_KOMLE 3.4.2.2), connects to the
//! Fachdienst's POP3 server named there (or configured for the account) and logs in
//! with the KIM address and the client's password (KOM-LE-A_2034), so the client's
//! login succeeds exactly when the Fachdienst's does. After that every command goes
//! upstream as it comes; RETR runs the receive pipeline over the spooled mail.
//!
//! Sizes: LIST and STAT report what the client will receive (the opened mail, not
//! the encrypted one). A message seen for the first time is fetched and opened to
//! learn its size; the outcome (size and result codes) is kept per account and UIDL
//! in the store, and the opened bytes are kept for this session up to
//! [`SESSION_CACHE_BYTES`], so the RETR that usually follows costs no second download.
//! Opening is deterministic, so a later RETR yields the same bytes without any
//! plaintext written to disk. A mail restored from the KAS (up to 700 MiB) is the
//! exception: it is decrypted into an unnamed spool file (gone when dropped, a
//! crash included), and the last one LIST opened is kept until the RETR or the end
//! of the session ([`super::restore`] keeps only the encrypted download).
//!
//! Nothing is deleted upstream unless the client deleted it and said QUIT: a client
//! that vanishes gets its upstream connection closed without QUIT, and a POP3 server
//! does not delete anything for a session that did not reach the UPDATE state.

use std::collections::HashMap;
use std::sync::Arc;

use openssl::x509::store::X509Store;

use crate::activity::Activity;
use crate::config::Config;
use crate::crypto::konnektor::{KonnektorAccounts, KonnektorOpener};
use crate::crypto::opener::SoftwareOpener;
use crate::crypto::software::SoftwareKeys;
use crate::directory::{Directory, Source};
use crate::kim::login::{LoginName, Protocol, Server};
use crate::kim::receive;
use crate::kim::restore::KasPending;
use crate::kim::send::KAS_THRESHOLD;
use crate::pop3::client::{resp_code, ClientError, ClientSettings, Pop3Client};
use crate::pop3::server::{Backend, ClientInfo, LoginRefused, Mailbox, MailboxError};
use crate::proxy::restore::KasFetcher;
use crate::spool::{Spool, SpoolSettings};
use crate::store::{OpenResult, Store};

/// Opened mails kept in memory per session between LIST/STAT and RETR.
pub const SESSION_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// The largest KIM mail opened in memory: a sealed mail of 15 MiB (the KAS threshold)
/// is about 21 MiB; a larger one is not a mail of the profile and is passed on as it
/// came (still encrypted), with a warning.
const MAX_SEALED_SIZE: u64 = 32 * 1024 * 1024;
/// How much of a received mail is read to tell a KIM mail from another: the header.
/// A mail that is no KIM mail passes through from its spool without being loaded.
const HEADER_PEEK_BYTES: usize = 256 * 1024;

/// How received mails are opened.
#[derive(Clone)]
pub enum Opening {
    /// Passed through as they come. Only for tests of the transport
    /// (`allow_unsealed_for_testing`); never in the TI.
    Unopened,
    /// With the accounts' software keys, signatures checked against `trust`, results
    /// kept in `store`.
    Software {
        keys: Arc<SoftwareKeys>,
        /// The accounts whose cards are in a Konnektor (KOM-LE-A_2177).
        konnektors: Arc<KonnektorAccounts>,
        trust: Arc<X509Store>,
        store: Arc<Store>,
        /// Mails with a KIM-Attachment structure are restored through it.
        kas: Arc<KasFetcher>,
        /// Whose KIM version (komLeData) allows large mails (A_23512).
        directory: Arc<Source>,
    },
}

/// A_23512: the account's own directory entry allows large mails (KIM version with
/// `+`). A directory that keeps no versions (a folder) leaves it to the config; one
/// that cannot be reached too, logged: the mail stays on the Fachdienst either way.
async fn vzd_allows_large(directory: &Source, address: &str) -> bool {
    match directory.lookup(address).await {
        Ok(entry) => entry.kim_version.is_none_or(|v| v.large_mails),
        Err(e) => {
            tracing::warn!(user = %address, "cannot read the account's KIM version from the directory, large-mail reception follows the config: {e}");
            true
        }
    }
}

/// The POP3 side of kim-cm.
pub struct Pop3Proxy {
    config: Arc<Config>,
    client: ClientSettings,
    spool: SpoolSettings,
    opening: Opening,
    /// Where each opened mail is counted (the admin page).
    activity: Arc<Activity>,
}

/// One logged-in client: its upstream connection to the Fachdienst's mailbox.
pub struct ProxyMailbox {
    login: LoginName,
    server: Server,
    upstream: Pop3Client,
    spool: SpoolSettings,
    opening: Opening,
    /// Message number to UIDL, read once per session.
    uidls: Option<HashMap<usize, String>>,
    /// Opened mails not yet retrieved, within [`SESSION_CACHE_BYTES`].
    opened: HashMap<usize, Vec<u8>>,
    /// A_23512: whether the account takes large mails.
    large_mails: bool,
    /// KAS blobs cached for messages of this session, removed when the client
    /// deletes the message and says QUIT.
    kas_cached: HashMap<usize, std::path::PathBuf>,
    deleted: std::collections::HashSet<usize>,
    /// The last mail opened for LIST that was too large for [`SESSION_CACHE_BYTES`]
    /// (a mail restored from the KAS, in an unnamed spool file): kept for the RETR
    /// that usually follows, so 700 MiB are not decrypted twice.
    large_opened: Option<(usize, Spool)>,
    activity: Arc<Activity>,
}

impl Pop3Proxy {
    pub fn new(
        config: Arc<Config>,
        client: ClientSettings,
        opening: Opening,
        activity: Arc<Activity>,
    ) -> Pop3Proxy {
        let spool = SpoolSettings {
            dir: config.proxy.data_dir.join("spool"),
            memory_limit: config.proxy.spool_memory_limit,
        };
        Pop3Proxy {
            config,
            client,
            spool,
            opening,
            activity,
        }
    }

    /// Which POP3 server a login goes to; an incomplete or unusable name gets
    /// `-ERR` (gemSpec_CM_KOMLE 3.4.2.2).
    fn resolve(&self, user: &str) -> Result<(LoginName, Server), LoginRefused> {
        super::resolve(&self.config, user, Protocol::Pop3)
            .map_err(|why| LoginRefused::new(format!("[AUTH] Invalid POP3 user name: {why}")))
    }
}

/// The client's answer when the Fachdienst cannot be reached or used.
fn connect_refusal(server: &Server, e: &ClientError) -> LoginRefused {
    LoginRefused::new(match e {
        ClientError::Connect { .. } => {
            format!("[SYS/TEMP] cannot reach the Fachdienst POP3 server {server}")
        }
        ClientError::Tls { .. } => {
            format!("[SYS/TEMP] TLS with the Fachdienst POP3 server {server} failed")
        }
        ClientError::Timeout(_) => {
            format!("[SYS/TEMP] the Fachdienst POP3 server {server} did not answer in time")
        }
        ClientError::Rejected(text) => {
            format!("[SYS/TEMP] the Fachdienst POP3 server {server} refused: {text}")
        }
        ClientError::TooLarge(_) => {
            format!(
                "[SYS/TEMP] the Fachdienst POP3 server {server} sent an answer too large to read"
            )
        }
        _ => format!("[SYS/TEMP] lost the connection to the Fachdienst POP3 server {server}"),
    })
}

/// The client's answer when the Fachdienst refused the login. A refusal with a code
/// the client can act on (mailbox in use, try later) is passed on as it came.
fn login_refusal(text: &str) -> LoginRefused {
    match resp_code(text) {
        Some("IN-USE" | "LOGIN-DELAY" | "SYS/TEMP" | "SYS/PERM") => LoginRefused::new(text),
        _ => LoginRefused::new(
            "[AUTH] the Fachdienst refused the login: invalid user name or password",
        ),
    }
}

impl Backend for Pop3Proxy {
    type Mailbox = ProxyMailbox;

    fn check_user(&self, user: &str) -> Result<(), LoginRefused> {
        self.resolve(user).map(drop)
    }

    async fn login(
        &self,
        user: &str,
        password: &str,
        _client: &ClientInfo,
    ) -> Result<ProxyMailbox, LoginRefused> {
        let (login, server) = self.resolve(user)?;
        if let Opening::Software { konnektors, .. } = &self.opening {
            konnektors
                .check_login(
                    &login.address,
                    login.context.as_ref(),
                    login.konnektor_id.as_deref(),
                )
                .await
                .map_err(|why| LoginRefused::new(format!("[AUTH] {why}")))?;
        }
        let mut upstream = Pop3Client::connect(&server, &self.client)
            .await
            .map_err(|e| {
                tracing::warn!(%server, "cannot reach the Fachdienst POP3 server: {e}");
                connect_refusal(&server, &e)
            })?;
        let large_mails = self
            .config
            .account(&login.address)
            .is_none_or(|a| a.receive_large_mails);
        // KOM-LE-A_2034: upstream the login is the KIM address alone
        match upstream.login(&login.address, password).await {
            Ok(()) => {
                tracing::info!(user = %login.address, %server, "pop3 login accepted by the Fachdienst");
                Ok(ProxyMailbox {
                    login,
                    server,
                    upstream,
                    spool: self.spool.clone(),
                    opening: self.opening.clone(),
                    uidls: None,
                    opened: HashMap::new(),
                    large_mails,
                    kas_cached: HashMap::new(),
                    deleted: Default::default(),
                    large_opened: None,
                    activity: self.activity.clone(),
                })
            }
            Err(ClientError::Rejected(text)) => {
                tracing::info!(user = %login.address, %server, "pop3 login refused by the Fachdienst: {text}");
                // still in the AUTHORIZATION state: QUIT deletes nothing
                let _ = upstream.quit().await;
                Err(login_refusal(&text))
            }
            Err(e) => {
                tracing::warn!(user = %login.address, %server, "pop3 login at the Fachdienst failed: {e}");
                upstream.abandon().await;
                Err(connect_refusal(&server, &e))
            }
        }
    }

    fn describe(&self, m: &ProxyMailbox) -> String {
        m.login.address.clone()
    }
}

impl ProxyMailbox {
    /// What the client hears when an upstream command failed.
    fn error(&self, e: ClientError) -> MailboxError {
        match e {
            // the Fachdienst's own -ERR: passed on, the session goes on
            ClientError::Rejected(text) => MailboxError::Refused(text),
            ClientError::Spool(e) => {
                tracing::error!(user = %self.login.address, "cannot spool a message: {e}");
                MailboxError::Refused("[SYS/TEMP] local storage error, try again later".into())
            }
            e => {
                tracing::warn!(user = %self.login.address, server = %self.server, "Fachdienst POP3 connection lost: {e}");
                MailboxError::Lost(format!(
                    "[SYS/TEMP] lost the connection to the Fachdienst POP3 server {}",
                    self.server
                ))
            }
        }
    }
}

impl ProxyMailbox {
    /// The UIDL of message `n`, when the Fachdienst offers UIDL.
    async fn uidl_of(&mut self, n: usize) -> Option<String> {
        if self.uidls.is_none() {
            let all = match self.upstream.uidl(None).await {
                Ok(v) => v.into_iter().collect(),
                Err(e) => {
                    tracing::warn!(user = %self.login.address, "UIDL at the Fachdienst failed, results are not kept: {e}");
                    HashMap::new()
                }
            };
            self.uidls = Some(all);
        }
        self.uidls.as_ref().and_then(|m| m.get(&n).cloned())
    }

    /// Fetches message `n` and opens it for the logged-in user.
    async fn fetch_opened(&mut self, n: usize) -> Result<Spool, MailboxError> {
        let mut spool = Spool::new(&self.spool);
        let r = self.upstream.retr_into(n, &mut spool).await;
        r.map_err(|e| self.error(e))?;
        let Opening::Software {
            keys,
            konnektors,
            trust,
            store,
            kas,
            directory,
        } = self.opening.clone()
        else {
            return Ok(spool);
        };
        // A_21390: only a mail with X-KOM-LE-Version is opened; others pass unchanged
        if !self.is_kim_mail(&mut spool).await? {
            let plain = OpenResult {
                size: spool.len(),
                decryption: String::new(),
                integrity: String::new(),
            };
            self.remember(&store, n, &plain).await;
            return Ok(spool);
        }
        if spool.len() > MAX_SEALED_SIZE {
            tracing::warn!(user = %self.login.address, n, size = spool.len(), "a KIM mail too large to be one of the profile: passed on unopened");
            return Ok(spool);
        }
        let received = spool
            .to_vec()
            .await
            .map_err(|e| self.error(ClientError::Spool(e)))?;
        drop(spool);
        let address = self.login.address.clone();
        let provider = match konnektors.for_account(
            &address,
            self.login.context.as_ref(),
            self.login.konnektor_id.as_deref(),
        ) {
            None => None,
            Some(Ok(k)) => Some(k),
            Some(Err(why)) => {
                tracing::warn!(user = %address, "cannot use the Konnektor: {why}");
                return Err(MailboxError::Refused(why));
            }
        };
        let runtime = tokio::runtime::Handle::current();
        let opened = tokio::task::spawn_blocking(move || {
            if let Some((crypto, context)) = &provider {
                let opener = KonnektorOpener {
                    crypto,
                    context,
                    trust: &trust,
                    runtime,
                };
                return receive::open(received, &address, &opener);
            }
            let none = Vec::new();
            let account_keys = keys.account(&address).map(|k| &k.encryption);
            if account_keys.is_none() {
                tracing::warn!(user = %address, "no keys are configured for this account; its KIM mails cannot be decrypted");
            }
            let opener = SoftwareOpener {
                keys: account_keys.unwrap_or(&none),
                trust: &trust,
            };
            receive::open(received, &address, &opener)
        })
        .await
        .map_err(|e| {
            tracing::error!("opening task failed: {e}");
            MailboxError::Refused("[SYS/TEMP] local error while opening the message, try again".into())
        })?;
        if let Some(pending) = opened.kas {
            return Ok(self.restore(n, &store, &kas, &directory, &pending).await);
        }
        if !opened.decryption.is_empty() {
            tracing::info!(
                user = %self.login.address,
                n,
                decryption = %opened.decryption,
                integrity = %opened.integrity,
                "KIM mail opened"
            );
            let fine = opened.decryption == "00" && opened.integrity == "01";
            self.activity.opened(
                &self.login.address,
                (!fine).then(|| {
                    format!(
                        "opened with X-KIM-DecryptionResult {} and X-KIM-IntegrityCheckResult {}",
                        opened.decryption, opened.integrity
                    )
                }),
            );
        }
        let result = OpenResult {
            size: opened.mail.len() as u64,
            decryption: opened.decryption,
            integrity: opened.integrity,
        };
        self.remember(&store, n, &result).await;
        Ok(Spool::from_bytes(opened.mail, &self.spool))
    }

    /// Message `n` opened to a KIM-Attachment structure: the restored mail or the
    /// error mail.
    async fn restore(
        &mut self,
        n: usize,
        store: &Store,
        kas: &KasFetcher,
        directory: &Source,
        pending: &KasPending,
    ) -> Spool {
        let address = self.login.address.clone();
        let large = pending.kas_size().is_some_and(|s| s > KAS_THRESHOLD);
        let large_mails =
            self.large_mails && (!large || vzd_allows_large(directory, &address).await);
        let r = kas.restore(pending, &address, large_mails).await;
        tracing::info!(
            user = %address,
            n,
            size = r.mail.len(),
            error = r.error.unwrap_or("none"),
            "KIM mail with KAS data opened"
        );
        self.activity.opened(
            &address,
            r.error
                .map(|code| format!("KAS mail data not restored, error mail {code}")),
        );
        if let Some(path) = r.cached {
            self.kas_cached.insert(n, path);
        }
        // a download that may work later is tried again at the next LIST or RETR
        if !r.transient {
            let result = OpenResult {
                size: r.mail.len(),
                decryption: "00".into(),
                integrity: match r.error {
                    Some(code) => format!("01 {code}"),
                    None => "01".into(),
                },
            };
            self.remember(store, n, &result).await;
        }
        r.mail
    }

    /// What RETR answers: a mail opened by LIST's size check, or one fetched now.
    async fn retr_spool(&mut self, n: usize) -> Result<Spool, MailboxError> {
        if let Some(bytes) = self.opened.remove(&n) {
            return Ok(Spool::from_bytes(bytes, &self.spool));
        }
        if self.large_opened.as_ref().is_some_and(|(i, _)| *i == n) {
            if let Some((_, spool)) = self.large_opened.take() {
                return Ok(spool);
            }
        }
        self.fetch_opened(n).await
    }

    /// Keeps the outcome of opening message `n` (point 10: the same RETR yields the
    /// same bytes; a different outcome than before is logged).
    async fn remember(&mut self, store: &Store, n: usize, result: &OpenResult) {
        let Some(uidl) = self.uidl_of(n).await else {
            return;
        };
        match store.open_result(&self.login.address, &uidl) {
            Ok(Some(before)) if before == *result => {}
            Ok(before) => {
                if let Some(b) = before {
                    tracing::warn!(user = %self.login.address, %uidl, "the message opens differently than when first fetched ({} {} now {} {}): keys or trust anchors changed", b.decryption, b.integrity, result.decryption, result.integrity);
                }
                if let Err(e) = store.put_open_result(&self.login.address, &uidl, result) {
                    tracing::error!("{e}");
                }
            }
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// True when the header of the spooled mail has `X-KOM-LE-Version`.
    async fn is_kim_mail(&self, spool: &mut Spool) -> Result<bool, MailboxError> {
        use tokio::io::AsyncReadExt;
        let mut head = Vec::with_capacity(8192);
        let read = async {
            let mut r = spool.reader().await?;
            (&mut r)
                .take(HEADER_PEEK_BYTES as u64)
                .read_to_end(&mut head)
                .await
        };
        if let Err(e) = read.await {
            tracing::error!(user = %self.login.address, "cannot read a spooled message: {e}");
            return Err(MailboxError::Refused(
                "[SYS/TEMP] local storage error, try again later".into(),
            ));
        }
        let (h, _) = crate::kim::header::split(&head);
        Ok(crate::kim::header::find(h, "X-KOM-LE-Version").is_some())
    }

    /// The size the client receives for message `n` (upstream size `raw`): the stored
    /// outcome, or the mail opened now (and kept for the RETR that follows).
    async fn client_size(&mut self, n: usize, raw: u64) -> Result<u64, MailboxError> {
        let Opening::Software { store, .. } = self.opening.clone() else {
            return Ok(raw);
        };
        if let Some(m) = self.opened.get(&n) {
            return Ok(m.len() as u64);
        }
        if let Some((_, spool)) = self.large_opened.as_ref().filter(|(i, _)| *i == n) {
            return Ok(spool.len());
        }
        if let Some(uidl) = self.uidl_of(n).await {
            if let Ok(Some(r)) = store.open_result(&self.login.address, &uidl) {
                return Ok(r.size);
            }
        }
        let mut spool = self.fetch_opened(n).await?;
        let size = spool.len();
        let cached: usize = self.opened.values().map(Vec::len).sum();
        if cached + size as usize <= SESSION_CACHE_BYTES {
            let bytes = spool
                .to_vec()
                .await
                .map_err(|e| self.error(ClientError::Spool(e)))?;
            self.opened.insert(n, bytes);
        } else if spool.on_disk() {
            self.large_opened = Some((n, spool));
        }
        Ok(size)
    }
}

impl Mailbox for ProxyMailbox {
    async fn stat(&mut self) -> Result<(usize, u64), MailboxError> {
        if matches!(self.opening, Opening::Unopened) {
            let r = self.upstream.stat().await;
            return r.map_err(|e| self.error(e));
        }
        let all = self.list(None).await?;
        Ok((all.len(), all.iter().map(|(_, s)| s).sum()))
    }

    async fn list(&mut self, n: Option<usize>) -> Result<Vec<(usize, u64)>, MailboxError> {
        let r = self.upstream.list(n).await;
        let raw = r.map_err(|e| self.error(e))?;
        let mut out = Vec::with_capacity(raw.len());
        for (i, size) in raw {
            out.push((i, self.client_size(i, size).await?));
        }
        Ok(out)
    }

    async fn uidl(&mut self, n: Option<usize>) -> Result<Vec<(usize, String)>, MailboxError> {
        let r = self.upstream.uidl(n).await;
        r.map_err(|e| self.error(e))
    }

    async fn retr(&mut self, n: usize) -> Result<Spool, MailboxError> {
        let spool = self.retr_spool(n).await?;
        let account = self.login.address.to_ascii_lowercase();
        crate::metrics::inc("kimcm_mails_fetched_total", &[("account", &account)]);
        crate::metrics::add(
            "kimcm_mail_bytes_fetched_total",
            &[("account", &account)],
            spool.len() as f64,
        );
        Ok(spool)
    }

    async fn top(&mut self, n: usize, _lines: usize) -> Result<Spool, MailboxError> {
        // KOM-LE-A_2041: the Clientmodul forces the line count to 0, whatever the
        // client asked for: the body of a KIM mail is the encrypted CMS structure,
        // and a part of it is of no use to anyone.
        let mut spool = Spool::new(&self.spool);
        let r = self.upstream.top_into(n, 0, &mut spool).await;
        r.map_err(|e| self.error(e))?;
        Ok(spool)
    }

    async fn dele(&mut self, n: usize) -> Result<(), MailboxError> {
        self.opened.remove(&n);
        if self.large_opened.as_ref().is_some_and(|(i, _)| *i == n) {
            self.large_opened = None;
        }
        let r = self.upstream.dele(n).await;
        r.map_err(|e| self.error(e))?;
        self.deleted.insert(n);
        Ok(())
    }

    async fn rset(&mut self) -> Result<(), MailboxError> {
        let r = self.upstream.rset().await;
        r.map_err(|e| self.error(e))?;
        self.deleted.clear();
        Ok(())
    }

    async fn noop(&mut self) -> Result<(), MailboxError> {
        let r = self.upstream.noop().await;
        r.map_err(|e| self.error(e))
    }

    async fn quit(self) -> Result<(), MailboxError> {
        // the client said QUIT: now the Fachdienst may delete what the client deleted
        let ProxyMailbox {
            login,
            server,
            upstream,
            kas_cached,
            deleted,
            ..
        } = self;
        let r = upstream.quit().await;
        if r.is_ok() {
            // the Fachdienst deleted them: their KAS data are of no more use here
            for path in deleted.iter().filter_map(|n| kas_cached.get(n)) {
                let _ = std::fs::remove_file(path);
            }
        }
        r.map_err(|e| match e {
            ClientError::Rejected(text) => MailboxError::Refused(text),
            e => {
                tracing::warn!(user = %login.address, %server, "QUIT at the Fachdienst failed: {e}");
                MailboxError::Lost(format!("[SYS/TEMP] the Fachdienst POP3 server {server} did not confirm QUIT"))
            }
        })
    }

    async fn abort(self) {
        // no QUIT: a QUIT would commit the client's DELEs upstream
        self.upstream.abandon().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    fn proxy(accounts: &str) -> Pop3Proxy {
        let text = format!(
            "[upstream]\nca_file = \"ca.pem\"\n[[pop3_listener]]\naddress = \"127.0.0.1:2110\"\ntls = \"plain\"\n{accounts}"
        );
        let config = Arc::new(Config::parse(&text, Path::new("/tmp")).unwrap());
        let connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())
            .unwrap()
            .build();
        Pop3Proxy::new(
            config,
            ClientSettings {
                tls: crate::net::TlsMode::Implicit,
                connector: Arc::new(connector),
                connect_timeout: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
            },
            Opening::Unopened,
            Arc::new(Activity::new()),
        )
    }

    const ACCOUNT: &str = "[[account]]\naddress = \"bob@kim.test\"\nsmtp_server = \"mta:465\"\npop3_server = \"pop.kim.test:995\"\n";

    #[test]
    fn user_names_and_servers() {
        let p = proxy(ACCOUNT);
        let (n, s) = p.resolve("alice@kim.test#pop.x.de:995#1#CS#7").unwrap();
        assert_eq!(
            (n.address.as_str(), s.to_string().as_str()),
            ("alice@kim.test", "pop.x.de:995")
        );
        // a plain address only when configured, then with the account's server
        let (_, s) = p.resolve("bob@kim.test").unwrap();
        assert_eq!(s.to_string(), "pop.kim.test:995");
        let e = p.resolve("alice@kim.test").unwrap_err();
        assert!(
            e.text.starts_with("[AUTH] Invalid POP3 user name")
                && e.text.contains("not configured"),
            "{e:?}"
        );
        // '*' for the server: the account's, else -ERR
        let (_, s) = p.resolve("bob@kim.test#*#1#CS#7").unwrap();
        assert_eq!(s.to_string(), "pop.kim.test:995");
        let e = p.resolve("alice@kim.test#*#1#CS#7").unwrap_err();
        assert!(e.text.contains("no server host:port given"), "{e:?}");
        // incomplete names say what is missing
        let e = p.resolve("alice@kim.test#pop.x.de:995#1").unwrap_err();
        assert!(
            e.text.contains("MandantId#ClientSystemId#WorkplaceId"),
            "{e:?}"
        );
        assert!(!e.close);
        assert!(p.check_user("alice@kim.test#pop.x.de:995#1#CS#7").is_ok());
        assert!(p.check_user("no-address#pop.x.de:995#1#CS#7").is_err());
    }

    #[test]
    fn refusals_keep_the_codes_a_client_can_act_on() {
        assert_eq!(
            login_refusal("[IN-USE] mailbox locked").text,
            "[IN-USE] mailbox locked"
        );
        assert_eq!(
            login_refusal("[SYS/TEMP] try later").text,
            "[SYS/TEMP] try later"
        );
        assert!(login_refusal("[AUTH] invalid login")
            .text
            .starts_with("[AUTH] "));
        assert!(login_refusal("no").text.starts_with("[AUTH] "));
        let server = Server {
            host: "pop.x.de".into(),
            port: 995,
        };
        let e = ClientError::Connect {
            server: "pop.x.de:995".into(),
            source: std::io::Error::other("refused"),
        };
        assert_eq!(
            connect_refusal(&server, &e).text,
            "[SYS/TEMP] cannot reach the Fachdienst POP3 server pop.x.de:995"
        );
    }

    #[tokio::test]
    async fn unreachable_server_is_a_temporary_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let p = proxy("");
        let client = ClientInfo {
            peer: "127.0.0.1:1".parse().unwrap(),
            tls: false,
        };
        let e = p
            .login(
                &format!("a@kim.test#127.0.0.1:{port}#1#CS#7"),
                "pw",
                &client,
            )
            .await
            .err()
            .unwrap();
        assert_eq!(
            e.text,
            format!("[SYS/TEMP] cannot reach the Fachdienst POP3 server 127.0.0.1:{port}")
        );
    }
}
