//! `kim-cm serve`: opens the listeners of a configuration and runs the proxy.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::{SslAcceptor, SslConnector};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::activity::Activity;
use crate::admin::web::health::Probes;
use crate::admin::web::password::AdminPassword;
use crate::admin::web::session::Sessions;
use crate::admin::web::AdminState;
use crate::config::{Config, Listener};
use crate::crypto::jwt::JwtProviders;
use crate::crypto::konnektor::{KonnektorAccounts, KonnektorCrypto};
use crate::crypto::software::{KeyError, SoftwareKeys};
use crate::directory::cache::{Cached, TTL_ENC_CERT};
use crate::directory::folder::FolderDirectory;
use crate::directory::{ldap, Source};
use crate::kim::login::CallContext;
use crate::kim::send::{KasService, Sealing, SendPipeline, SoftwareSealing};
use crate::konnektor::{Konnektor, KonnektorSettings, KONNEKTOR_TIMEOUT};
use crate::listener::ListenerSettings;
use crate::net::{tls, TlsMode};
use crate::proxy::pop3::{Opening, Pop3Proxy};
use crate::proxy::restore::KasFetcher;
use crate::proxy::smtp::SmtpProxy;
use crate::spool::SpoolSettings;
use crate::store::{Store, StoreError};
use crate::throttle::LoginThrottle;
use crate::{pop3, smtp};

/// The embedded state database in the data directory.
pub const STATE_FILE: &str = "state.sqlite";
/// The folder under the data directory where downloaded KAS blobs wait, encrypted.
pub const KAS_CACHE_DIR: &str = "kas-cache";

/// Why the proxy could not start; the message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Tls(#[from] tls::TlsSetupError),
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Keys(#[from] KeyError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running proxy: its listeners' addresses and tasks. Dropping it stops accepting.
pub struct Running {
    pub smtp: Vec<SocketAddr>,
    pub pop3: Vec<SocketAddr>,
    /// The admin page, when `[admin]` is configured.
    pub admin: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Running {
    /// Stops the listeners and the admin page and waits until their sockets
    /// are closed (so the same addresses can be bound again); sessions in
    /// flight go on.
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Runs the proxy of `cfg` (loaded from `path`) until SIGTERM or Ctrl-C, then
/// shuts down gracefully ([`crate::shutdown`]); SIGHUP reloads the config: a
/// config that does not load, check or start is refused with a log line and
/// the running one stays.
pub async fn run(path: &std::path::Path, cfg: Config) -> Result<(), StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut cfg = Arc::new(cfg);
    let mut running = start(cfg.clone()).await?;
    let (mut term, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(h)) => (t, h),
        _ => {
            return Err(StartError::Setup(
                "cannot listen for SIGTERM and SIGHUP".into(),
            ))
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => {
                let loaded = Config::load(path)
                    .map_err(|e| e.to_string())
                    .and_then(|c| check(&c).map(|_| c).map_err(|e| e.to_string()));
                let new = match loaded {
                    Ok(c) => Arc::new(c),
                    Err(e) => {
                        tracing::error!("SIGHUP: the config was not reloaded, the running one stays: {e}");
                        continue;
                    }
                };
                running.stop().await;
                running = match start(new.clone()).await {
                    Ok(r) => {
                        cfg = new;
                        tracing::info!(
                            in_flight = crate::shutdown::in_flight(),
                            "SIGHUP: config reloaded; sessions in flight go on with the previous settings"
                        );
                        r
                    }
                    Err(e) => {
                        tracing::error!("SIGHUP: the reloaded config does not start ({e}); going on with the previous one");
                        start(cfg.clone()).await?
                    }
                };
            }
        }
    }
    crate::shutdown::begin();
    tracing::info!(
        in_flight = crate::shutdown::in_flight(),
        "shutting down: no new sessions; sessions in flight get up to {} s",
        crate::shutdown::SHUTDOWN_GRACE.as_secs()
    );
    running.stop().await;
    let left = crate::shutdown::drain(crate::shutdown::SHUTDOWN_GRACE).await;
    if left > 0 {
        tracing::warn!("{left} sessions still running were cut at shutdown");
    }
    let cleared = crate::shutdown::clear_spool(&cfg.proxy.data_dir.join("spool"));
    tracing::info!(spool_files_removed = cleared, "stopped");
    Ok(())
}

/// The TLS connector towards the Fachdienst, from the `[upstream]` section.
pub fn upstream_connector(cfg: &Config) -> Result<SslConnector, StartError> {
    let password = match &cfg.upstream.client_pkcs12_password_file {
        Some(p) => read_password(p)?,
        None => zeroize::Zeroizing::new(String::new()),
    };
    let identity = cfg
        .upstream
        .client_pkcs12
        .as_deref()
        .map(|p| tls::ClientIdentity {
            pkcs12: p,
            password: &password,
        });
    Ok(tls::connector(&cfg.upstream.ca_file, identity)?)
}

fn acceptor(l: &Listener) -> Result<Option<Arc<SslAcceptor>>, StartError> {
    match (l.tls, &l.cert, &l.key) {
        (TlsMode::Plain, _, _) => Ok(None),
        (_, Some(c), Some(k)) => Ok(Some(Arc::new(tls::acceptor(c, k)?))),
        // the config check makes sure TLS listeners have both
        _ => Ok(None),
    }
}

/// The proxy's one count of failed logins per client address, shared by all its
/// listeners and kept across SIGHUP reloads (a reload forgives no one).
fn login_throttle() -> Arc<LoginThrottle> {
    static THROTTLE: std::sync::OnceLock<Arc<LoginThrottle>> = std::sync::OnceLock::new();
    THROTTLE.get_or_init(Default::default).clone()
}

/// Binds one configured listener; returns it with its settings and bound address.
async fn open(
    cfg: &Config,
    l: &Listener,
    spool: &SpoolSettings,
) -> Result<(TcpListener, Arc<ListenerSettings>, SocketAddr), StartError> {
    let settings = Arc::new(ListenerSettings {
        name: cfg.proxy.name.clone(),
        tls: l.tls,
        acceptor: acceptor(l)?,
        timeout: cfg.proxy.client_timeout(),
        login_timeout: cfg.proxy.login_timeout(),
        login_throttle: Some(login_throttle()),
        spool: spool.clone(),
    });
    let listener = TcpListener::bind(l.address)
        .await
        .map_err(|source| StartError::Bind {
            addr: l.address,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(l.address);
    Ok((listener, settings, addr))
}

/// Keys, directory and trust anchors, read once at start.
struct Crypto {
    keys: Arc<SoftwareKeys>,
    konnektors: Arc<KonnektorAccounts>,
    directory: Arc<Source>,
    trust: Arc<openssl::x509::store::X509Store>,
}

/// Reads what sealing and opening need; `None` when the config runs unsealed
/// (`allow_unsealed_for_testing` and no account with keys).
fn crypto(cfg: &Config) -> Result<Option<Crypto>, StartError> {
    let keys = SoftwareKeys::from_config(cfg)?;
    let konnektors = konnektors(cfg)?;
    if keys.is_empty() && cfg.konnektor.is_empty() && cfg.proxy.allow_unsealed_for_testing {
        return Ok(None);
    }
    let directory = directory(cfg)?;
    let trust = crate::crypto::trust::load(cfg.trust.ca_file.as_deref())
        .map_err(|e| StartError::Setup(format!("[trust] ca_file: {e}")))?;
    Ok(Some(Crypto {
        keys: Arc::new(keys),
        konnektors: Arc::new(konnektors),
        directory: Arc::new(directory),
        trust: Arc::new(trust),
    }))
}

/// Every `[[konnektor]]` with verified TLS (KOM-LE-A_2070..2072), and the accounts
/// that use one.
fn konnektors(cfg: &Config) -> Result<KonnektorAccounts, StartError> {
    let mut out = KonnektorAccounts::new();
    for k in &cfg.konnektor {
        let password = match &k.client_pkcs12_password_file {
            Some(p) => read_password(p)?,
            None => zeroize::Zeroizing::new(String::new()),
        };
        let identity = k.client_pkcs12.as_deref().map(|p| tls::ClientIdentity {
            pkcs12: p,
            password: &password,
        });
        let connector = tls::connector(&k.ca_file, identity)
            .map_err(|e| StartError::Setup(format!("[[konnektor]] '{}' TLS: {e}", k.id)))?;
        let basic = match (&k.user, &k.password_file) {
            (Some(user), Some(p)) => Some(crate::konnektor::soap::Basic {
                user: user.clone(),
                password: read_password(p)?,
            }),
            _ => None,
        };
        let settings = KonnektorSettings {
            sds_url: k.sds_url.clone(),
            http: crate::http::client::HttpSettings {
                connector: Arc::new(connector),
                connect_timeout: cfg.proxy.connect_timeout(),
                timeout: k
                    .timeout_secs
                    .map(Duration::from_secs)
                    .unwrap_or(KONNEKTOR_TIMEOUT),
            },
            basic,
        };
        let crypto = KonnektorCrypto::new(Arc::new(Konnektor::new(settings)));
        out.add_konnektor(&k.id, Arc::new(crypto));
    }
    for a in &cfg.account {
        if let Some(id) = &a.konnektor {
            let context = match (&a.mandant_id, &a.client_system_id, &a.workplace_id) {
                (Some(m), Some(c), Some(w)) => Some(CallContext {
                    mandant_id: m.clone(),
                    client_system_id: c.clone(),
                    workplace_id: w.clone(),
                    user_id: None,
                }),
                _ => None,
            };
            out.add_account(&a.address, id, context);
        }
    }
    Ok(out)
}

/// The directory of `[directory]`: a folder, or the VZD over LDAP with its cache.
fn directory(cfg: &Config) -> Result<Source, StartError> {
    let d = &cfg.directory;
    if let Some(url) = &d.ldap_url {
        let password = match &d.ldap_client_pkcs12_password_file {
            Some(p) => read_password(p)?,
            None => zeroize::Zeroizing::new(String::new()),
        };
        let client = d
            .ldap_client_pkcs12
            .as_deref()
            .map(|p| (p, password.as_str()));
        // the config check makes sure ldap_url comes with ldap_ca_file
        let ca = d.ldap_ca_file.as_deref().unwrap_or(Path::new(""));
        let tls = ldap::tls_connector(ca, client)
            .map_err(|e| StartError::Setup(format!("[directory] LDAP TLS: {e}")))?;
        let base = d.ldap_base.as_deref().unwrap_or(ldap::DEFAULT_BASE);
        let vzd = ldap::LdapDirectory::new(
            url,
            base,
            tls,
            cfg.proxy.connect_timeout(),
            ldap::LDAP_TIMEOUT,
        )
        .map_err(|e| StartError::Setup(format!("[directory] ldap_url {e}")))?;
        let ttl = d
            .cache_seconds
            .map(Duration::from_secs)
            .unwrap_or(TTL_ENC_CERT);
        return Ok(Source::Ldap(Cached::new(vzd, ttl)));
    }
    let Some(folder) = d.folder.clone() else {
        return Err(StartError::Setup(
            "[directory] has neither folder nor ldap_url: kim-cm needs the recipients' encryption certificates to seal mail"
                .into(),
        ));
    };
    if !folder.is_dir() {
        return Err(StartError::Setup(format!(
            "[directory] folder {} is not a folder",
            folder.display()
        )));
    }
    Ok(Source::Folder(FolderDirectory::new(folder)))
}

/// The first line of a password file, kept out of logs.
fn read_password(path: &Path) -> Result<zeroize::Zeroizing<String>, StartError> {
    Ok(zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|source| StartError::File {
                path: path.display().to_string(),
                source,
            })?
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
    ))
}

/// Every account's way to the Account Manager's JWT (A_19457-02): the software
/// AUT keys (`aut_pkcs12`) read now, the Konnektors, and the directory when one is
/// configured (it picks the SMC-B when a Konnektor holds several).
pub fn jwt_providers(cfg: &Config) -> Result<JwtProviders, StartError> {
    let d = &cfg.directory;
    let directory = if d.folder.is_some() || d.ldap_url.is_some() {
        Some(Arc::new(directory(cfg)?))
    } else {
        None
    };
    let mut providers = JwtProviders::new(Arc::new(konnektors(cfg)?), directory);
    for a in &cfg.account {
        if let Some(key) = SoftwareKeys::read_aut(a)? {
            providers.add_software(&a.address, key);
        }
    }
    Ok(providers)
}

/// Checks everything `start` would need, without opening listeners.
pub fn check(cfg: &Config) -> Result<(), StartError> {
    if cfg.smtp_listener.is_empty() && cfg.pop3_listener.is_empty() {
        return Err(StartError::Setup(crate::config::NO_LISTENER.into()));
    }
    crate::keyfiles::check_all(cfg).map_err(StartError::Setup)?;
    upstream_connector(cfg)?;
    for l in cfg.smtp_listener.iter().chain(cfg.pop3_listener.iter()) {
        acceptor(l)?;
    }
    crypto(cfg)?;
    Ok(())
}

/// Opens every listener of `cfg` and serves until the returned value is dropped.
pub async fn start(cfg: Arc<Config>) -> Result<Running, StartError> {
    if cfg.smtp_listener.is_empty() && cfg.pop3_listener.is_empty() {
        return Err(StartError::Setup(crate::config::NO_LISTENER.into()));
    }
    crate::keyfiles::check_all(&cfg).map_err(StartError::Setup)?;
    let connector = Arc::new(upstream_connector(&cfg)?);
    let spool = SpoolSettings {
        dir: cfg.proxy.data_dir.join("spool"),
        memory_limit: cfg.proxy.spool_memory_limit,
    };
    std::fs::create_dir_all(&spool.dir).map_err(|source| StartError::File {
        path: spool.dir.display().to_string(),
        source,
    })?;
    // every HTTPS service of the Fachdienst (AccountLimit, KAS): verified TLS, with
    // the client certificate when one is configured (A_19362, A_19368)
    let http = crate::http::client::HttpSettings {
        connector: connector.clone(),
        connect_timeout: cfg.proxy.connect_timeout(),
        timeout: cfg.proxy.upstream_timeout(),
    };
    let crypto = crypto(&cfg)?;
    let konnektor_clients: Vec<(String, Arc<Konnektor>)> = crypto
        .as_ref()
        .map(|c| {
            c.konnektors
                .konnektors()
                .map(|(id, k)| (id.to_string(), k.clone()))
                .collect()
        })
        .unwrap_or_default();
    let (sealing, opening) = match crypto {
        None => {
            tracing::warn!("allow_unsealed_for_testing: mails go to the Fachdienst unsigned and unencrypted; never use this in the TI");
            (Sealing::Unsealed, Opening::Unopened)
        }
        Some(c) => {
            let store = Arc::new(Store::open(&cfg.proxy.data_dir.join(STATE_FILE))?);
            let cache = cfg.proxy.data_dir.join(KAS_CACHE_DIR);
            let kas_fetcher =
                KasFetcher::new(http.clone(), cache.clone(), spool.clone()).map_err(|source| {
                    StartError::File {
                        path: cache.display().to_string(),
                        source,
                    }
                })?;
            for a in cfg
                .account
                .iter()
                .filter(|a| c.keys.account(&a.address).is_none() && !c.konnektors.has(&a.address))
            {
                tracing::warn!(account = %a.address, "no keys configured: this account can neither send nor read KIM mail");
            }
            (
                Sealing::Software(Arc::new(SoftwareSealing {
                    keys: c.keys.clone(),
                    konnektors: c.konnektors.clone(),
                    directory: c.directory.clone(),
                })),
                Opening::Software {
                    keys: c.keys,
                    konnektors: c.konnektors,
                    trust: c.trust,
                    store,
                    kas: Arc::new(kas_fetcher),
                    directory: c.directory,
                },
            )
        }
    };
    let mut running = Running {
        smtp: Vec::new(),
        pop3: Vec::new(),
        admin: None,
        tasks: Vec::new(),
    };

    let limits = match (&cfg.upstream.account_limit_url, &opening) {
        (Some(url), Opening::Software { store, .. }) => Some(Arc::new(crate::limits::Limits {
            url: url.clone(),
            http: http.clone(),
            store: store.clone(),
        })),
        (None, Opening::Software { .. }) => {
            tracing::warn!("[upstream] account_limit_url is not set: kim-cm sends without the account's limits (maxMailSize, dataTimeToLive 90 days)");
            None
        }
        _ => None,
    };
    let kas = cfg.upstream.kas_url.clone().map(|base| KasService {
        base,
        http: http.clone(),
    });
    if kas.is_none() && !matches!(opening, Opening::Unopened) {
        tracing::warn!("[upstream] kas_url is not set: client mails over 15 MiB are refused");
    }
    let activity = Arc::new(Activity::new());
    let store = match &opening {
        Opening::Software { store, .. } => Some(store.clone()),
        Opening::Unopened => None,
    };
    let smtp_backend = Arc::new(SmtpProxy::new(
        cfg.clone(),
        smtp::client::ClientSettings {
            tls: cfg.upstream.smtp_tls,
            connector: connector.clone(),
            connect_timeout: cfg.proxy.connect_timeout(),
            timeout: cfg.proxy.upstream_timeout(),
            helo_name: cfg.proxy.name.clone(),
        },
        SendPipeline::new(sealing, &cfg.proxy.name, kas),
        limits,
        activity.clone(),
    ));
    for l in &cfg.smtp_listener {
        let (listener, settings, addr) = open(&cfg, l, &spool).await?;
        tracing::info!(%addr, tls = ?l.tls, "SMTP listener ready");
        running.smtp.push(addr);
        let task = smtp::server::serve(listener, settings, smtp_backend.clone());
        running.tasks.push(tokio::spawn(task));
    }

    let pop3_backend = Arc::new(Pop3Proxy::new(
        cfg.clone(),
        pop3::client::ClientSettings {
            tls: cfg.upstream.pop3_tls,
            connector: connector.clone(),
            connect_timeout: cfg.proxy.connect_timeout(),
            timeout: cfg.proxy.upstream_timeout(),
        },
        opening,
        activity.clone(),
    ));
    for l in &cfg.pop3_listener {
        let (listener, settings, addr) = open(&cfg, l, &spool).await?;
        tracing::info!(%addr, tls = ?l.tls, "POP3 listener ready");
        running.pop3.push(addr);
        let task = pop3::server::serve_pop3(listener, settings, pop3_backend.clone());
        running.tasks.push(tokio::spawn(task));
    }

    if let Some(admin) = &cfg.admin {
        let password = std::fs::read_to_string(&admin.password_hash_file).map_err(|source| {
            StartError::File {
                path: admin.password_hash_file.display().to_string(),
                source,
            }
        })?;
        let password = AdminPassword::parse(&password).map_err(|e| {
            StartError::Setup(format!(
                "[admin] password_hash_file {}: {e}",
                admin.password_hash_file.display()
            ))
        })?;
        let listener =
            TcpListener::bind(admin.address)
                .await
                .map_err(|source| StartError::Bind {
                    addr: admin.address,
                    source,
                })?;
        let addr = listener.local_addr().unwrap_or(admin.address);
        let probes = Probes::new(
            &cfg,
            smtp::client::ClientSettings {
                tls: cfg.upstream.smtp_tls,
                connector: connector.clone(),
                connect_timeout: cfg.proxy.connect_timeout(),
                timeout: cfg.proxy.upstream_timeout(),
                helo_name: cfg.proxy.name.clone(),
            },
            pop3::client::ClientSettings {
                tls: cfg.upstream.pop3_tls,
                connector: connector.clone(),
                connect_timeout: cfg.proxy.connect_timeout(),
                timeout: cfg.proxy.upstream_timeout(),
            },
            http.clone(),
            konnektor_clients,
        );
        let state = Arc::new(AdminState {
            config: cfg.clone(),
            user: admin.user.clone(),
            password,
            sessions: Sessions::new(),
            activity,
            store,
            probes,
            ops: crate::admin::ops::AdminOps::new(cfg.clone()).map_err(|e| e.to_string()),
            registrations: crate::admin::web::registration::Registrations::new(),
            password_rules: tokio::sync::OnceCell::new(),
            addr,
        });
        tracing::info!(%addr, "admin page ready");
        running.admin = Some(addr);
        running
            .tasks
            .push(tokio::spawn(crate::admin::web::serve(listener, state)));
    }
    Ok(running)
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
