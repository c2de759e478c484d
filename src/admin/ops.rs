//! The administration operations for one configured account, between the Account
//! Manager client and any front end (`kim-cm account`, the admin web page): each
//! gets the account's JWT from its provider (A_19457-02: software AUT key or the
//! Konnektor's ExternalAuthenticate), calls the client, and returns an
//! [`outcome`](super::outcome) that renders as a table and as JSON.
//!
//! Nothing here touches a terminal: inputs are plain structs and passwords
//! `Zeroizing<String>`s, so the web page calls the same functions with what its
//! forms posted. Passwords go only into the client's base64 headers and bodies;
//! no error or outcome carries one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::account_manager::AccountManagerClient;
use super::errors::AccountManagerError;
use super::outcome::{
    AccountView, CertStored, Done, LimitsView, OtpIssued, OutOfOfficeView, ServiceInfoView,
};
use super::schemas::{AccountChanges, OutOfOffice, Registration};
use crate::config::Config;
use crate::crypto::jwt::{JwtError, JwtProviders, JwtSource};
use crate::http::client::HttpSettings;
use crate::net::tls;

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The configuration lacks what the operation needs (exit code 2).
    #[error("{0}")]
    Config(String),
    /// The operation's input is not what the interface takes (exit code 2);
    /// nothing was sent.
    #[error("{0}")]
    Input(String),
    /// The JWT could not be made.
    #[error("{0}")]
    Jwt(#[from] JwtError),
    /// The Account Manager refused or could not be reached.
    #[error("{0}")]
    AccountManager(#[from] AccountManagerError),
    /// The AccountLimit service did not answer with limits.
    #[error("{0}")]
    Limits(String),
    /// A file could not be written.
    #[error("{0}")]
    Storage(String),
}

impl OpsError {
    /// The process exit code: 2 for configuration, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            OpsError::Config(_) | OpsError::Input(_) => 2,
            _ => 1,
        }
    }
}

/// registerAccount's input.
pub struct RegisterInput {
    pub account: String,
    /// From the provider's letter; required when the service says so.
    pub reference_id: Option<String>,
    pub ini_password: Zeroizing<String>,
    pub password: Zeroizing<String>,
    pub kim_version: Option<String>,
    pub data_time_to_live: Option<u32>,
    pub no_vzd_mail_entry: Option<bool>,
}

/// setAccount's input.
pub struct SetInput {
    pub account: String,
    pub password: Zeroizing<String>,
    pub new_password: Option<Zeroizing<String>>,
    pub changes: AccountChanges,
}

/// createCert's input.
pub struct CertInput {
    pub account: String,
    pub password: Zeroizing<String>,
    /// The certificate's CN before "#CM"; the account's address when `None`.
    pub common_name: Option<String>,
    /// A_19468-03: the PKCS#12 password is optional.
    pub cert_password: Option<Zeroizing<String>>,
}

/// The operations over one configuration.
pub struct AdminOps {
    cfg: Arc<Config>,
    client: Option<AccountManagerClient>,
    http: HttpSettings,
    jwt: JwtProviders,
}

impl AdminOps {
    /// Reads what the operations need from `cfg`: the TLS trust, the JWT
    /// providers, the Account Manager's URL (checked when an operation needs it).
    pub fn new(cfg: Arc<Config>) -> Result<AdminOps, OpsError> {
        let connector = Arc::new(connector(&cfg)?);
        let jwt = crate::serve::jwt_providers(&cfg).map_err(|e| OpsError::Config(e.to_string()))?;
        let client = cfg.upstream.account_manager_url.clone().map(|url| {
            AccountManagerClient::new(url, AccountManagerClient::settings(connector.clone()))
        });
        let http = HttpSettings {
            connector,
            connect_timeout: cfg.proxy.connect_timeout(),
            timeout: cfg.proxy.upstream_timeout(),
        };
        Ok(AdminOps {
            cfg,
            client,
            http,
            jwt,
        })
    }

    fn client(&self) -> Result<&AccountManagerClient, OpsError> {
        self.client.as_ref().ok_or_else(|| {
            OpsError::Config(
                "[upstream] account_manager_url is not set: add your KIM provider's Account Manager URL (https://host:port) to the config file".into(),
            )
        })
    }

    /// The configured account's address as the config spells it, and its JWT.
    async fn token(&self, account: &str) -> Result<(String, Zeroizing<String>), OpsError> {
        let address = self
            .cfg
            .account(account)
            .map(|a| a.address.clone())
            .ok_or_else(|| {
                OpsError::Config(format!(
                    "no [[account]] with address {account} in the config file: add it, or check the spelling"
                ))
            })?;
        let token = Zeroizing::new(self.jwt.jwt_for(&address).await?);
        Ok((address, token))
    }

    /// getServiceInformation.
    pub async fn service_info(&self) -> Result<ServiceInfoView, OpsError> {
        Ok(ServiceInfoView(self.client()?.service_information().await?))
    }

    /// registerAccount (gemSpec_CM_KOMLE 2.1: reference id and initial password
    /// from the provider, the practice's own password from now on).
    pub async fn register(&self, input: &RegisterInput) -> Result<Done, OpsError> {
        let client = self.client()?;
        let (address, token) = self.token(&input.account).await?;
        let registration = Registration {
            reference_id: input.reference_id.clone(),
            username: address.clone(),
            kim_version: input.kim_version.clone(),
            data_time_to_live: input.data_time_to_live,
            no_vzd_mail_entry: input.no_vzd_mail_entry,
        };
        client
            .register_account(&token, &registration, &input.ini_password, &input.password)
            .await?;
        Ok(Done::new(&address, "registered"))
    }

    /// getAccount.
    pub async fn get(&self, account: &str, password: &str) -> Result<AccountView, OpsError> {
        let client = self.client()?;
        let (address, token) = self.token(account).await?;
        Ok(AccountView(
            client.get_account(&token, &address, password).await?,
        ))
    }

    /// setAccount.
    pub async fn set(&self, input: &SetInput) -> Result<Done, OpsError> {
        let client = self.client()?;
        let (address, token) = self.token(&input.account).await?;
        client
            .set_account(
                &token,
                &address,
                &input.password,
                &input.changes,
                input.new_password.as_ref().map(|p| p.as_str()),
            )
            .await?;
        Ok(Done::new(
            &address,
            if input.new_password.is_some() {
                "changed (with the new password)"
            } else {
                "changed"
            },
        ))
    }

    /// deregisterAccount.
    pub async fn deregister(&self, account: &str, password: &str) -> Result<Done, OpsError> {
        let client = self.client()?;
        let (address, token) = self.token(account).await?;
        client
            .deregister_account(&token, &address, password)
            .await?;
        Ok(Done::new(
            &address,
            "deregistered (until the deregistration date it still works and can be revoked)",
        ))
    }

    /// revokeDeregistration.
    pub async fn revoke_deregistration(
        &self,
        account: &str,
        password: &str,
    ) -> Result<Done, OpsError> {
        let client = self.client()?;
        let (address, token) = self.token(account).await?;
        client
            .revoke_deregistration(&token, &address, password)
            .await?;
        Ok(Done::new(&address, "deregistration revoked"))
    }

    /// getOTP, with the card the address is on now.
    pub async fn otp(&self, account: &str, password: &str) -> Result<OtpIssued, OpsError> {
        let client = self.client()?;
        let (address, token) = self.token(account).await?;
        let otp = client.get_otp(&token, &address, password).await?;
        Ok(OtpIssued {
            account: address,
            otp,
        })
    }

    /// setTID, with the new card (the account's configured key must be the new
    /// card's by now).
    pub async fn set_tid(
        &self,
        account: &str,
        password: &str,
        otp: &str,
    ) -> Result<Done, OpsError> {
        let client = self.client()?;
        let (address, token) = self.token(account).await?;
        client
            .set_telematik_id(&token, &address, password, otp)
            .await?;
        Ok(Done::new(&address, "moved to the new card"))
    }

    /// createCert, stored where `[upstream] client_pkcs12` points (owner-only)
    /// with its password in `client_pkcs12_password_file`, so that `kim-cm serve`
    /// uses it for mutual TLS to the Fachdienst (KOM-LE-A_2182-01).
    pub async fn cert(&self, input: &CertInput) -> Result<CertStored, OpsError> {
        let client = self.client()?;
        let up = &self.cfg.upstream;
        let target = up.client_pkcs12.clone().ok_or_else(|| {
            OpsError::Config(
                "[upstream] client_pkcs12 is not set: name the file the TLS client certificate is to be stored in (and client_pkcs12_password_file)".into(),
            )
        })?;
        let password_file = up.client_pkcs12_password_file.clone();
        if input.cert_password.is_some() && password_file.is_none() {
            return Err(OpsError::Config(
                "[upstream] client_pkcs12_password_file is not set: name the file the certificate's password is to be kept in, or create the certificate without a password".into(),
            ));
        }
        let (address, token) = self.token(&input.account).await?;
        let common_name = input.common_name.clone().unwrap_or_else(|| address.clone());
        let cert_password = input.cert_password.as_ref().map(|p| p.as_str());
        let der = client
            .create_cert(
                &token,
                &address,
                &input.password,
                &common_name,
                cert_password,
            )
            .await?;
        // checked before anything is replaced: a container that does not open
        // would leave the proxy without mutual TLS
        let (subject, not_after) = inspect(&der, cert_password.unwrap_or(""))?;
        write_owner_only(&target, &der)?;
        if let Some(p) = &password_file {
            let text = Zeroizing::new(format!("{}\n", cert_password.unwrap_or("")));
            write_owner_only(p, text.as_bytes())?;
        }
        tracing::info!(account = %address, file = %target.display(), "TLS client certificate stored");
        Ok(CertStored {
            account: address,
            pkcs12: target,
            password_file,
            subject,
            not_after,
        })
    }

    /// getOutOfOffice.
    pub async fn out_of_office(
        &self,
        account: &str,
        password: &str,
    ) -> Result<OutOfOfficeView, OpsError> {
        let client = self.client()?;
        let (address, token) = self.token(account).await?;
        let note = client.get_out_of_office(&token, &address, password).await?;
        Ok(OutOfOfficeView {
            account: address,
            note,
        })
    }

    /// updateOutOfOffice.
    pub async fn set_out_of_office(
        &self,
        account: &str,
        password: &str,
        note: &OutOfOffice,
    ) -> Result<Done, OpsError> {
        check_dates(note)?;
        let client = self.client()?;
        let (address, token) = self.token(account).await?;
        client
            .update_out_of_office(&token, &address, password, note)
            .await?;
        Ok(Done::new(&address, "out-of-office note set"))
    }

    /// getLimits of the AccountLimit service (A_22416), asked now, with the
    /// account's KIM password (HTTP Basic, as the mail flow asks).
    pub async fn limits(&self, account: &str, password: &str) -> Result<LimitsView, OpsError> {
        let url = self.cfg.upstream.account_limit_url.clone().ok_or_else(|| {
            OpsError::Config(
                "[upstream] account_limit_url is not set: add your KIM provider's AccountLimit URL to the config file".into(),
            )
        })?;
        let address = self
            .cfg
            .account(account)
            .map(|a| a.address.clone())
            .ok_or_else(|| {
                OpsError::Config(format!(
                    "no [[account]] with address {account} in the config file: add it, or check the spelling"
                ))
            })?;
        let limits = crate::limits::fetch(&url, &address, password, &self.http)
            .await
            .map_err(|why| {
                OpsError::Limits(format!(
                    "the account limits of {address} could not be read ({why}); check the KIM password and account_limit_url, then try again"
                ))
            })?;
        Ok(LimitsView {
            account: address,
            limits,
        })
    }
}

/// The note's dates are RFC 3339 date-times (AccountManager.yaml
/// `OutOfOfficeNotification`, `format: date-time`), the end not before the start.
fn check_dates(note: &OutOfOffice) -> Result<(), OpsError> {
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;
    let parse = |what: &str, v: &Option<String>| -> Result<Option<OffsetDateTime>, OpsError> {
        let Some(v) = v else { return Ok(None) };
        OffsetDateTime::parse(v.trim(), &Rfc3339).map(Some).map_err(|_| {
            OpsError::Input(format!(
                "the {what} date \"{v}\" is not a date and time like 2026-12-24T08:00:00+01:00 (RFC 3339); nothing was changed"
            ))
        })
    };
    let start = parse("start", &note.start_date)?;
    let end = parse("end", &note.end_date)?;
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(OpsError::Input(
                "the end date is before the start date; nothing was changed".into(),
            ));
        }
    }
    Ok(())
}

/// The TLS connector for the Account Manager and AccountLimit: the server
/// verified against `[upstream] ca_file`; the client certificate when its file is
/// there already (`account cert` runs before there is one).
fn connector(cfg: &Config) -> Result<openssl::ssl::SslConnector, OpsError> {
    let up = &cfg.upstream;
    let existing = up.client_pkcs12.as_deref().filter(|p| p.exists());
    if existing.is_some() {
        return crate::serve::upstream_connector(cfg).map_err(|e| OpsError::Config(e.to_string()));
    }
    tls::connector(&up.ca_file, None).map_err(|e| OpsError::Config(e.to_string()))
}

/// The certificate's subject CN and end of validity, from the container.
fn inspect(der: &[u8], password: &str) -> Result<(String, String), OpsError> {
    let bad = |e: String| {
        OpsError::AccountManager(AccountManagerError::BadAnswer {
            operation: "create the TLS client certificate",
            why: format!("the PKCS#12 file does not open: {e}"),
        })
    };
    let parsed = openssl::pkcs12::Pkcs12::from_der(der)
        .and_then(|p| p.parse2(password))
        .map_err(|e| bad(e.to_string()))?;
    let cert = parsed
        .cert
        .ok_or_else(|| bad("it has no certificate".into()))?;
    if parsed.pkey.is_none() {
        return Err(bad("it has no private key".into()));
    }
    let cn = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
        .unwrap_or_default();
    Ok((cn, cert.not_after().to_string()))
}

/// Writes `bytes` to `path` readable by the owner only (0600), through a
/// temporary file beside it so that a failure leaves the old file.
pub fn write_owner_only(path: &Path, bytes: &[u8]) -> Result<(), OpsError> {
    use std::io::Write;
    let fail = |e: std::io::Error| {
        OpsError::Storage(format!(
            "cannot write {}: {e}; check that its folder exists and is writable by this user",
            path.display()
        ))
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(fail)?;
    }
    let mut tmp = PathBuf::from(path);
    tmp.set_extension("tmp-kim-cm");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp).map_err(fail)?;
    #[cfg(unix)]
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(fail)?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
