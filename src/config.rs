//! The one configuration file (TOML), read and validated once at start.
//!
//! Unknown keys are refused and every error names the file, the line and the key
//! (the `toml` crate reports the position; semantic checks run inside
//! deserialization through `try_from`, so they get a position too). Relative paths
//! are taken relative to the file's own folder, so a config folder can be moved as a
//! whole. Every key is shown and explained in `config/kim-cm.example.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::kim::login::{self, Server};
use crate::net::TlsMode;

/// The smallest SIZE kim-cm advertises: 700 MiB, the largest KIM mail (KIM 1.5).
pub const MIN_MAX_MESSAGE_SIZE: u64 = 734_003_200;
/// SMTP/POP3_TIMEOUT_CLIENT and _SERVER default (Tab_Konf_Param): 5 minutes.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// How long a client session may take to log in before it is closed (the way
/// Postfix bounds a session that never gets anywhere): 2 minutes.
pub const DEFAULT_LOGIN_TIMEOUT_SECS: u64 = 120;
/// DATA up to this size stays in memory; beyond it, it goes to a spool file.
pub const DEFAULT_SPOOL_MEMORY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub proxy: Proxy,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub smtp_listener: Vec<Listener>,
    #[serde(default)]
    pub pop3_listener: Vec<Listener>,
    pub upstream: Upstream,
    #[serde(default)]
    pub account: Vec<Account>,
    #[serde(default)]
    pub directory: DirectoryConfig,
    #[serde(default)]
    pub trust: Trust,
    /// The practice's Konnektoren, for accounts whose keys are on smart cards.
    #[serde(default)]
    pub konnektor: Vec<KonnektorConfig>,
    /// The local admin page (issue 6); off when absent.
    pub admin: Option<AdminConfig>,
    /// The SASIS ZSR register mirror (`kim-cm zsr`); off when absent.
    pub zsr: Option<crate::sidecar::zsr::config::ZsrConfig>,
    /// The Helsenorge DigitaltAktiv change feed (`kim-cm helsenorge`); off when absent.
    #[serde(default)]
    pub helsenorge: Option<crate::sidecar::helsenorge::config::HelsenorgeConfig>,
    /// CareFlex incident reporting (`kim-cm careflex`); off when absent.
    pub careflex: Option<crate::sidecar::careflex::config::CareflexConfig>,
    /// NSP BRS and notifications (`kim-cm brs`); off when absent.
    #[serde(default)]
    pub brs: Option<crate::sidecar::brs::config::BrsConfig>,
}

/// Why `kim-cm serve` cannot run a config without listeners.
pub const NO_LISTENER: &str =
    "no listener: add at least one [[smtp_listener]] or [[pop3_listener]]";

/// The admin web page: on loopback only, with its own login.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `127.0.0.1:port` or `[::1]:port`; other addresses are refused.
    pub address: SocketAddr,
    /// The admin's login name.
    #[serde(default = "default_admin_user")]
    pub user: String,
    /// The Argon2 hash of the admin password (`kim-cm admin-password` writes it).
    pub password_hash_file: PathBuf,
}

fn default_admin_user() -> String {
    "admin".into()
}

/// One Konnektor (gemSpec_CM_KOMLE 3.8; docs/konnektor.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KonnektorConfig {
    /// The name accounts and login names (KonnektorId, A_21457) use for it.
    pub id: String,
    /// `https://host[:port]/connector.sds` (KOM-LE-A_2076).
    #[serde(deserialize_with = "de_https")]
    pub sds_url: crate::http::url::HttpsUrl,
    /// CA certificates (PEM) the Konnektor's server certificate must chain to
    /// (KOM-LE-A_2070: always TLS, always verified).
    pub ca_file: PathBuf,
    /// Client certificate (PKCS#12) when the Konnektor demands one (KOM-LE-A_2071).
    pub client_pkcs12: Option<PathBuf>,
    pub client_pkcs12_password_file: Option<PathBuf>,
    /// Basic auth instead (KOM-LE-A_2072): the user, and the file with the password.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Seconds one call may take (default KONNEKTOR_TIMEOUT, 60).
    pub timeout_secs: Option<u64>,
}

/// Where recipients' encryption certificates come from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// A folder of `<address>.pem` files with encryption certificates.
    pub folder: Option<PathBuf>,
    /// The VZD over LDAP, `ldaps://host:port` (the Konnektor's LDAP proxy; always
    /// TLS, A_21223-01). Takes the place of `folder`.
    pub ldap_url: Option<String>,
    /// The search base (the VZD's: `dc=data,dc=vzd`).
    pub ldap_base: Option<String>,
    /// CA certificates (PEM) the directory's server certificate must chain to.
    pub ldap_ca_file: Option<PathBuf>,
    /// Client certificate (PKCS#12) for the directory's TLS, when it asks for one
    /// (A_21223-01: configurable).
    pub ldap_client_pkcs12: Option<PathBuf>,
    pub ldap_client_pkcs12_password_file: Option<PathBuf>,
    /// Seconds cached certificates and KIM versions are used (TTL_ENC_CERT, 12 h).
    pub cache_seconds: Option<u64>,
}

/// What signatures and certificate paths are checked against.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// CA certificates (PEM) of the TI's component PKI that signers' certificates
    /// must chain to.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy {
    pub name: String,
    pub data_dir: PathBuf,
    #[serde(deserialize_with = "de_max_size")]
    pub max_message_size: u64,
    pub spool_memory_limit: usize,
    pub client_timeout_secs: u64,
    /// Seconds from connect to a successful login; then the session is closed.
    pub login_timeout_secs: u64,
    pub upstream_timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// Accounts without keys send and receive mail unsealed. For tests of the
    /// transport only: never in the TI.
    pub allow_unsealed_for_testing: bool,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy {
            name: "kim-cm".into(),
            data_dir: PathBuf::from("/var/lib/kim-cm"),
            max_message_size: MIN_MAX_MESSAGE_SIZE,
            spool_memory_limit: DEFAULT_SPOOL_MEMORY_LIMIT,
            client_timeout_secs: DEFAULT_TIMEOUT_SECS,
            login_timeout_secs: DEFAULT_LOGIN_TIMEOUT_SECS,
            upstream_timeout_secs: DEFAULT_TIMEOUT_SECS,
            connect_timeout_secs: 30,
            allow_unsealed_for_testing: false,
        }
    }
}

impl Proxy {
    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.client_timeout_secs)
    }
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_timeout_secs)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
}

fn de_max_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v < MIN_MAX_MESSAGE_SIZE {
        return Err(serde::de::Error::custom(format!(
            "max_message_size must be at least {MIN_MAX_MESSAGE_SIZE} (700 MiB, the KIM maximum)"
        )));
    }
    Ok(v)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// A client-facing listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawListener")]
pub struct Listener {
    pub address: SocketAddr,
    pub tls: TlsMode,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: SocketAddr,
    tls: TlsMode,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl TryFrom<RawListener> for Listener {
    type Error = String;
    fn try_from(r: RawListener) -> Result<Self, String> {
        match r.tls {
            TlsMode::Plain => {
                if !r.address.ip().is_loopback() {
                    return Err(format!(
                        "listener {} has tls = \"plain\" but is not on loopback: use \"implicit\" or \"starttls\" with cert and key",
                        r.address
                    ));
                }
            }
            TlsMode::Implicit | TlsMode::Starttls => {
                if r.cert.is_none() || r.key.is_none() {
                    return Err(format!(
                        "listener {} uses TLS and needs both `cert` and `key`",
                        r.address
                    ));
                }
            }
        }
        Ok(Listener {
            address: r.address,
            tls: r.tls,
            cert: r.cert,
            key: r.key,
        })
    }
}

/// How kim-cm talks to the Fachdienst.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// CA certificates (PEM) that the Fachdienst's server certificates must chain to.
    pub ca_file: PathBuf,
    /// C.CM.TLS-CS client certificate (PKCS#12) for mutual TLS, as `createCert` issues it.
    pub client_pkcs12: Option<PathBuf>,
    pub client_pkcs12_password_file: Option<PathBuf>,
    #[serde(default = "implicit", deserialize_with = "de_upstream_tls")]
    pub smtp_tls: TlsMode,
    #[serde(default = "implicit", deserialize_with = "de_upstream_tls")]
    pub pop3_tls: TlsMode,
    /// The AccountLimit service's base URL (`https://host:port/AccountLimit/v1.1`).
    #[serde(default, deserialize_with = "de_https_url")]
    pub account_limit_url: Option<crate::http::url::HttpsUrl>,
    /// The KIM Attachment Service's base URL (`https://host:port/attachments/v2.4`),
    /// for client mails over 15 MiB (A_19357-02).
    #[serde(default, deserialize_with = "de_https_url")]
    pub kas_url: Option<crate::http::url::HttpsUrl>,
    /// The Account Manager's root URL (`https://host:port`; the client adds
    /// `/AccountMgmt/v2.4` and `/ServiceInformation/v1.0`), for `kim-cm account`
    /// and the admin page (gemSpec_CM_KOMLE 3.7).
    #[serde(default, deserialize_with = "de_https_url")]
    pub account_manager_url: Option<crate::http::url::HttpsUrl>,
}

fn de_https_url<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<crate::http::url::HttpsUrl>, D::Error> {
    let text = String::deserialize(d)?;
    crate::http::url::HttpsUrl::parse(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn de_https<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<crate::http::url::HttpsUrl, D::Error> {
    let text = String::deserialize(d)?;
    crate::http::url::HttpsUrl::parse(&text).map_err(serde::de::Error::custom)
}

fn implicit() -> TlsMode {
    TlsMode::Implicit
}

fn de_upstream_tls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TlsMode, D::Error> {
    match TlsMode::deserialize(d)? {
        TlsMode::Plain => Err(serde::de::Error::custom(
            "the Fachdienst is always reached over TLS (KOM-LE-A_2074): use \"implicit\" or \"starttls\"",
        )),
        m => Ok(m),
    }
}

/// A KIM account known to this Clientmodul: lets the client log in with the plain
/// address and gives the server when the user name has none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub address: String,
    #[serde(deserialize_with = "de_server")]
    pub smtp_server: Server,
    #[serde(deserialize_with = "de_server")]
    pub pop3_server: Server,
    pub mandant_id: Option<String>,
    pub client_system_id: Option<String>,
    pub workplace_id: Option<String>,
    /// Software keys: the signing key and certificate (like C.HCI.OSIG), PKCS#12.
    pub signing_pkcs12: Option<PathBuf>,
    /// Software keys: the encryption key and certificate (like C.HCI.ENC), PKCS#12.
    pub encryption_pkcs12: Option<PathBuf>,
    /// File holding the PKCS#12 password (first line); none for files without one.
    pub pkcs12_password_file: Option<PathBuf>,
    /// Software keys: the authentication key and certificate (like the SMC-B's
    /// C.HCI.AUT), PKCS#12, for the Account Manager's JWT (A_19457-02). Without it
    /// an account with `konnektor` has the card's AUT key sign.
    pub aut_pkcs12: Option<PathBuf>,
    /// A_23512: whether this account takes KIM mails over 15 MiB (its directory
    /// entry's KIM version ends in `+`). Without it, such mails are not downloaded
    /// and the client gets the 4018 error mail.
    #[serde(default = "yes")]
    pub receive_large_mails: bool,
    /// The `id` of the [[konnektor]] that holds this account's cards: its mails are
    /// signed, encrypted, decrypted and verified there (KOM-LE-A_2177) instead of
    /// with the PKCS#12 files.
    pub konnektor: Option<String>,
}

fn yes() -> bool {
    true
}

fn de_server<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Server, D::Error> {
    let s = String::deserialize(d)?;
    login::parse_server(&s).map_err(serde::de::Error::custom)
}

impl Config {
    /// Reads, parses and checks the file; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Whether a sidecar (`kim-cm zsr`, ...) is configured.
    pub fn has_sidecar(&self) -> bool {
        self.zsr.is_some()
            || self.helsenorge.is_some()
            || self.careflex.is_some()
            || self.brs.is_some()
    }

    /// Parses TOML text; `base` is the folder relative paths are taken from.
    pub fn parse(text: &str, base: &Path) -> Result<Config, String> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut cfg.proxy.data_dir);
        abs(&mut cfg.upstream.ca_file);
        cfg.directory.folder.as_mut().map(abs);
        cfg.directory.ldap_ca_file.as_mut().map(abs);
        cfg.directory.ldap_client_pkcs12.as_mut().map(abs);
        cfg.directory
            .ldap_client_pkcs12_password_file
            .as_mut()
            .map(abs);
        for (key, secs) in [
            ("client_timeout_secs", cfg.proxy.client_timeout_secs),
            ("login_timeout_secs", cfg.proxy.login_timeout_secs),
            ("upstream_timeout_secs", cfg.proxy.upstream_timeout_secs),
            ("connect_timeout_secs", cfg.proxy.connect_timeout_secs),
        ] {
            if secs == 0 {
                return Err(format!(
                    "[proxy] {key} = 0 would end every session at once; give seconds (at least 1)"
                ));
            }
        }
        let d = &cfg.directory;
        if let Some(url) = &d.ldap_url {
            crate::directory::ldap::check_url(url)
                .map_err(|e| format!("[directory] ldap_url {e}"))?;
            if d.folder.is_some() {
                return Err(
                    "[directory] folder and ldap_url name two directories; keep one".into(),
                );
            }
            if d.ldap_ca_file.is_none() {
                return Err("[directory] ldap_url needs ldap_ca_file: the directory's server certificate is always verified".into());
            }
        } else if d.ldap_ca_file.is_some()
            || d.ldap_base.is_some()
            || d.ldap_client_pkcs12.is_some()
        {
            return Err("[directory] ldap_* keys are set but ldap_url is not".into());
        }
        if d.ldap_client_pkcs12.is_some() != d.ldap_client_pkcs12_password_file.is_some() {
            return Err(
                "[directory] ldap_client_pkcs12 and ldap_client_pkcs12_password_file go together"
                    .into(),
            );
        }
        cfg.trust.ca_file.as_mut().map(abs);
        if let Some(z) = cfg.zsr.as_mut() {
            abs(&mut z.client_secret_file);
            abs(&mut z.password_file);
            z.ca_file.as_mut().map(abs);
        }
        if let Some(c) = cfg.careflex.as_mut() {
            c.resolve(base);
        }
        if let Some(b) = cfg.brs.as_mut() {
            abs(&mut b.ca_file);
            abs(&mut b.certificate_file);
            abs(&mut b.key_file);
            b.sts_certificate_file.as_mut().map(abs);
        }
        if let Some(a) = cfg.admin.as_mut() {
            abs(&mut a.password_hash_file);
            if !a.address.ip().is_loopback() {
                return Err(format!(
                    "[admin] address {}: the admin page listens on loopback only (127.0.0.1 or ::1); reach it from elsewhere through an SSH tunnel",
                    a.address
                ));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for k in cfg.konnektor.iter_mut() {
            abs(&mut k.ca_file);
            k.client_pkcs12.as_mut().map(abs);
            k.client_pkcs12_password_file.as_mut().map(abs);
            k.password_file.as_mut().map(abs);
            if !ids.insert(k.id.clone()) {
                return Err(format!("[[konnektor]] id '{}' is listed twice", k.id));
            }
            if k.client_pkcs12.is_some() != k.client_pkcs12_password_file.is_some() {
                return Err(format!(
                    "[[konnektor]] '{}': client_pkcs12 and client_pkcs12_password_file go together",
                    k.id
                ));
            }
            if k.user.is_some() != k.password_file.is_some() {
                return Err(format!(
                    "[[konnektor]] '{}': user and password_file go together",
                    k.id
                ));
            }
        }
        for a in cfg.account.iter_mut() {
            a.signing_pkcs12.as_mut().map(abs);
            a.encryption_pkcs12.as_mut().map(abs);
            a.pkcs12_password_file.as_mut().map(abs);
            a.aut_pkcs12.as_mut().map(abs);
        }
        cfg.upstream.client_pkcs12.as_mut().map(abs);
        cfg.upstream.client_pkcs12_password_file.as_mut().map(abs);
        for l in cfg
            .smtp_listener
            .iter_mut()
            .chain(cfg.pop3_listener.iter_mut())
        {
            l.cert.as_mut().map(abs);
            l.key.as_mut().map(abs);
        }
        // a config for the sidecar commands alone needs no mail listener;
        // `kim-cm serve` checks for one (serve::check)
        if cfg.smtp_listener.is_empty() && cfg.pop3_listener.is_empty() && !cfg.has_sidecar() {
            return Err(NO_LISTENER.into());
        }
        let mut seen = std::collections::HashSet::new();
        for a in &cfg.account {
            login::parse(&a.address, login::Protocol::Smtp)
                .ok()
                .filter(|n| n.server.is_none() && n.context.is_none())
                .ok_or_else(|| {
                    format!("[[account]] address '{}' is not a mail address", a.address)
                })?;
            if !seen.insert(a.address.to_ascii_lowercase()) {
                return Err(format!(
                    "[[account]] address '{}' is listed twice",
                    a.address
                ));
            }
            if a.signing_pkcs12.is_some() != a.encryption_pkcs12.is_some() {
                return Err(format!(
                    "[[account]] '{}': signing_pkcs12 and encryption_pkcs12 go together; set both or none",
                    a.address
                ));
            }
            if let Some(k) = &a.konnektor {
                if !ids.contains(k) {
                    return Err(format!(
                        "[[account]] '{}': konnektor '{k}' is not a [[konnektor]] id",
                        a.address
                    ));
                }
                if a.signing_pkcs12.is_some() {
                    return Err(format!(
                        "[[account]] '{}': keys on the Konnektor's cards or in PKCS#12 files, not both; drop konnektor or the *_pkcs12 keys",
                        a.address
                    ));
                }
            }
            let ctx = [&a.mandant_id, &a.client_system_id, &a.workplace_id];
            if ctx.iter().any(|c| c.is_some()) && !ctx.iter().all(|c| c.is_some()) {
                return Err(format!(
                    "[[account]] '{}': mandant_id, client_system_id and workplace_id go together; set all three or none",
                    a.address
                ));
            }
        }
        Ok(cfg)
    }

    pub fn account(&self, address: &str) -> Option<&Account> {
        self.account
            .iter()
            .find(|a| a.address.eq_ignore_ascii_case(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[upstream]\nca_file = \"ca.pem\"\n[[smtp_listener]]\naddress = \"127.0.0.1:2525\"\ntls = \"plain\"\n";

    #[test]
    fn a_timeout_of_zero_is_refused() {
        for key in [
            "client_timeout_secs",
            "login_timeout_secs",
            "upstream_timeout_secs",
            "connect_timeout_secs",
        ] {
            let text = MIN.replace("[upstream]", &format!("[proxy]\n{key} = 0\n[upstream]"));
            let e = Config::parse(&text, Path::new("/etc/kim-cm")).unwrap_err();
            assert!(e.contains(key) && e.contains("at least 1"), "{e}");
        }
    }

    #[test]
    fn minimal_config_with_defaults_and_relative_paths() {
        let c = Config::parse(MIN, Path::new("/etc/kim-cm")).unwrap();
        assert_eq!(c.upstream.ca_file, PathBuf::from("/etc/kim-cm/ca.pem"));
        assert_eq!(c.upstream.smtp_tls, TlsMode::Implicit);
        assert_eq!(c.proxy.max_message_size, MIN_MAX_MESSAGE_SIZE);
        assert_eq!(c.proxy.client_timeout(), Duration::from_secs(300));
        assert_eq!(c.proxy.login_timeout(), Duration::from_secs(120));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = format!("{MIN}colour = \"blue\"\n");
        let e = Config::parse(&text, Path::new(".")).unwrap_err();
        assert!(e.contains("line 6") && e.contains("colour"), "{e}");
    }

    #[test]
    fn bad_values_are_named_with_their_line() {
        let e =
            Config::parse(&MIN.replace("\"plain\"", "\"sometimes\""), Path::new(".")).unwrap_err();
        assert!(e.contains("line 5") && e.contains("sometimes"), "{e}");
        let e = Config::parse(&MIN.replace("127.0.0.1", "0.0.0.0"), Path::new(".")).unwrap_err();
        assert!(e.contains("line 3") && e.contains("not on loopback"), "{e}");
        let text = format!("{MIN}[proxy]\nmax_message_size = 1000\n");
        let e = Config::parse(&text, Path::new(".")).unwrap_err();
        assert!(
            e.contains("line 7") && e.contains("max_message_size"),
            "{e}"
        );
        let text = MIN.replace("[upstream]\n", "[upstream]\nsmtp_tls = \"plain\"\n");
        let e = Config::parse(&text, Path::new(".")).unwrap_err();
        assert!(e.contains("line 2") && e.contains("KOM-LE-A_2074"), "{e}");
        let text = format!("{MIN}[[account]]\naddress = \"a@b.de\"\nsmtp_server = \"mta\"\npop3_server = \"pop:995\"\n");
        let e = Config::parse(&text, Path::new(".")).unwrap_err();
        assert!(e.contains("line 8") && e.contains("host:port"), "{e}");
    }

    #[test]
    fn accounts_are_checked() {
        let acc = "[[account]]\naddress = \"a@b.de\"\nsmtp_server = \"mta:465\"\npop3_server = \"pop:995\"\n";
        let c = Config::parse(&format!("{MIN}{acc}"), Path::new(".")).unwrap();
        assert_eq!(c.account("A@B.DE").unwrap().smtp_server.port, 465);
        let e = Config::parse(&format!("{MIN}{acc}{acc}"), Path::new(".")).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e =
            Config::parse(&format!("{MIN}{acc}mandant_id = \"1\"\n"), Path::new(".")).unwrap_err();
        assert!(e.contains("go together"), "{e}");
    }

    #[test]
    fn an_account_uses_a_configured_konnektor_or_its_pkcs12_files() {
        let k = "[[konnektor]]\nid = \"k1\"\nsds_url = \"https://konnektor:443/connector.sds\"\nca_file = \"k.pem\"\n";
        let acc = "[[account]]\naddress = \"a@b.de\"\nsmtp_server = \"mta:465\"\npop3_server = \"pop:995\"\n";
        let cfg = Config::parse(
            &format!("{MIN}{k}{acc}konnektor = \"k1\"\n"),
            Path::new("/etc/kim-cm"),
        )
        .unwrap();
        assert_eq!(cfg.account[0].konnektor.as_deref(), Some("k1"));
        assert_eq!(cfg.konnektor[0].ca_file, Path::new("/etc/kim-cm/k.pem"));
        // a software AUT key beside the Konnektor: for the JWT only (A_19457-02)
        let cfg = Config::parse(
            &format!("{MIN}{k}{acc}konnektor = \"k1\"\naut_pkcs12 = \"a/aut.p12\"\n"),
            Path::new("/etc/kim-cm"),
        )
        .unwrap();
        assert_eq!(
            cfg.account[0].aut_pkcs12.as_deref(),
            Some(Path::new("/etc/kim-cm/a/aut.p12"))
        );
        for (text, says) in [
            (format!("{MIN}{k}{acc}konnektor = \"k2\"\n"), "not a [[konnektor]] id"),
            (
                format!("{MIN}{k}{acc}konnektor = \"k1\"\nsigning_pkcs12 = \"s.p12\"\nencryption_pkcs12 = \"e.p12\"\n"),
                "not both",
            ),
            (format!("{MIN}{k}{k}"), "listed twice"),
            (format!("{MIN}{k}user = \"cm\"\n"), "user and password_file go together"),
            (
                format!("{MIN}[[konnektor]]\nid = \"k\"\nsds_url = \"http://k/connector.sds\"\nca_file = \"k.pem\"\n"),
                "only https",
            ),
        ] {
            let e = Config::parse(&text, Path::new("/")).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn the_directory_is_a_folder_or_the_vzd_over_ldaps() {
        let parse =
            |d: &str| Config::parse(&format!("{MIN}[directory]\n{d}"), Path::new("/etc/kim-cm"));
        let c =
            parse("ldap_url = \"ldaps://konnektor:636\"\nldap_ca_file = \"vzd-ca.pem\"\n").unwrap();
        assert_eq!(
            c.directory.ldap_ca_file.unwrap(),
            Path::new("/etc/kim-cm/vzd-ca.pem")
        );
        for (d, says) in [
            ("ldap_url = \"ldap://konnektor:389\"\nldap_ca_file = \"ca.pem\"\n", "TLS only"),
            ("ldap_url = \"ldaps://k:636\"\n", "needs ldap_ca_file"),
            ("folder = \"certs\"\nldap_url = \"ldaps://k:636\"\nldap_ca_file = \"ca.pem\"\n", "keep one"),
            ("ldap_ca_file = \"ca.pem\"\n", "ldap_url is not"),
            (
                "ldap_url = \"ldaps://k:636\"\nldap_ca_file = \"ca.pem\"\nldap_client_pkcs12 = \"c.p12\"\n",
                "go together",
            ),
        ] {
            let e = parse(d).unwrap_err();
            assert!(e.contains(says), "{d}: {e}");
        }
    }
}
