//! `kim-cm account ...`, `kim-cm limits` and `kim-cm service-info`: the
//! arguments, where each password comes from ([`super::secrets`]), and the
//! printing of an [`super::outcome`] as a table or, with `--json`, as JSON. The
//! work itself is in [`super::ops`], which the admin web page shares.
//!
//! Exit codes: 0 done, 1 refused or failed (the sentence on stderr), 2 usage or
//! configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::ops::{AdminOps, CertInput, OpsError, RegisterInput, SetInput};
use super::schemas::{AccountChanges, OutOfOffice};
use super::secrets;
use crate::config::Config;

/// What every command takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The kim-cm configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// An account and its KIM password.
#[derive(Args, Debug, Clone)]
pub struct Login {
    #[command(flatten)]
    pub common: Common,
    /// File whose first line is the account's KIM password (else: prompt, or
    /// standard input).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// The account's KIM address, as in its [[account]].
    pub account: String,
}

/// The Account Manager operations (AccountManager.yaml 2.4.0).
#[derive(Subcommand, Debug)]
pub enum AccountOp {
    /// registerAccount: register ACCOUNT with the reference id and initial password
    /// from your KIM provider, and choose its KIM password.
    Register {
        #[command(flatten)]
        common: Common,
        /// The reference id from your KIM provider.
        #[arg(long)]
        reference_id: Option<String>,
        /// File with the initial password (else asked first).
        #[arg(long)]
        ini_password_file: Option<PathBuf>,
        /// File with the new KIM password (else asked second).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// The KIM version, e.g. 1.5+.
        #[arg(long)]
        kim_version: Option<String>,
        /// Days mails are kept on the Fachdienst.
        #[arg(long)]
        data_time_to_live: Option<u32>,
        /// Leave the address out of the directory (VZD).
        #[arg(long)]
        no_vzd_mail_entry: bool,
        account: String,
    },
    /// getAccount: the account's registration and settings.
    Get(Login),
    /// setAccount: change the KIM version, the data time to live, the directory
    /// entry, or the password.
    Set {
        #[command(flatten)]
        login: Login,
        /// Change the password too: the new one is asked (or read from standard
        /// input after the current one).
        #[arg(long)]
        new_password: bool,
        /// File with the new password (implies --new-password).
        #[arg(long)]
        new_password_file: Option<PathBuf>,
        #[arg(long)]
        kim_version: Option<String>,
        #[arg(long)]
        data_time_to_live: Option<u32>,
        /// true: leave the address out of the directory (VZD); false: list it.
        #[arg(long)]
        no_vzd_mail_entry: Option<bool>,
    },
    /// deregisterAccount: end the account at the provider's deregistration date.
    Deregister(Login),
    /// revokeDeregistration: keep a deregistered account before its date.
    RevokeDeregistration(Login),
    /// getOTP: a one-time password for moving the address to a new card (with the
    /// current card).
    Otp(Login),
    /// setTID: move the address to the new card (configure it first), with the
    /// one-time password of `account otp`.
    SetTid {
        #[command(flatten)]
        login: Login,
        /// File with the one-time password (else asked after the KIM password).
        #[arg(long)]
        otp_file: Option<PathBuf>,
    },
    /// createCert: the TLS client certificate for the Fachdienst, stored where
    /// [upstream] client_pkcs12 points (KOM-LE-A_2182-01).
    Cert {
        #[command(flatten)]
        login: Login,
        /// The certificate's common name before "#CM" (default: the address).
        #[arg(long)]
        common_name: Option<String>,
        /// Protect the PKCS#12 with a password (asked after the KIM password); it
        /// is kept in [upstream] client_pkcs12_password_file.
        #[arg(long)]
        cert_password: bool,
        /// File with the certificate password (implies --cert-password).
        #[arg(long)]
        cert_password_file: Option<PathBuf>,
    },
    /// The out-of-office note: `get` or `set`.
    OutOfOffice {
        #[command(subcommand)]
        what: OutOfOfficeCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum OutOfOfficeCmd {
    /// getOutOfOffice.
    Get(Login),
    /// updateOutOfOffice: --active true|false, dates as RFC 3339
    /// (2025-08-01T00:00:00Z).
    Set {
        #[command(flatten)]
        login: Login,
        #[arg(long)]
        active: bool,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        message: Option<String>,
    },
}

/// How a command ended, for the exit code.
pub struct Failed {
    pub code: u8,
    pub sentence: String,
}

impl From<OpsError> for Failed {
    fn from(e: OpsError) -> Failed {
        Failed {
            code: e.exit_code(),
            sentence: e.to_string(),
        }
    }
}

/// A problem with the command's input (exit code 2).
fn usage(sentence: String) -> Failed {
    Failed { code: 2, sentence }
}

fn ask(prompt: &str, file: Option<&Path>) -> Result<zeroize::Zeroizing<String>, Failed> {
    secrets::read(prompt, file).map_err(usage)
}

/// The config and the operations over it.
pub fn load(config: &Path) -> Result<(Arc<Config>, AdminOps), Failed> {
    let cfg = Arc::new(Config::load(config).map_err(|e| usage(e.to_string()))?);
    let ops = AdminOps::new(cfg.clone()).map_err(|e| Failed {
        code: e.exit_code(),
        sentence: format!("config file {}: {e}", config.display()),
    })?;
    Ok((cfg, ops))
}

fn print<T: std::fmt::Display + Serialize>(value: &T, json: bool) -> Result<(), Failed> {
    if json {
        let text = serde_json::to_string_pretty(value).map_err(|e| Failed {
            code: 1,
            sentence: e.to_string(),
        })?;
        println!("{text}");
    } else {
        print!("{value}");
    }
    Ok(())
}

const KIM_PASSWORD: &str = "KIM password";

/// Runs one `kim-cm account` operation (the config is loaded by the caller,
/// which also sets up logging from it).
pub async fn run_account(op: AccountOp, ops: &AdminOps) -> Result<(), Failed> {
    match op {
        AccountOp::Register {
            common,
            reference_id,
            ini_password_file,
            password_file,
            kim_version,
            data_time_to_live,
            no_vzd_mail_entry,
            account,
        } => {
            let ini_password = ask("initial password", ini_password_file.as_deref())?;
            let password =
                secrets::read_new("new KIM password", password_file.as_deref()).map_err(usage)?;
            let input = RegisterInput {
                account,
                reference_id,
                ini_password,
                password,
                kim_version,
                data_time_to_live,
                no_vzd_mail_entry: no_vzd_mail_entry.then_some(true),
            };
            print(&ops.register(&input).await?, common.json)
        }
        AccountOp::Get(l) => {
            let p = ask(KIM_PASSWORD, l.password_file.as_deref())?;
            print(&ops.get(&l.account, &p).await?, l.common.json)
        }
        AccountOp::Set {
            login,
            new_password,
            new_password_file,
            kim_version,
            data_time_to_live,
            no_vzd_mail_entry,
        } => {
            let password = ask(KIM_PASSWORD, login.password_file.as_deref())?;
            let new_password = if new_password || new_password_file.is_some() {
                Some(
                    secrets::read_new("new KIM password", new_password_file.as_deref())
                        .map_err(usage)?,
                )
            } else {
                None
            };
            let input = SetInput {
                account: login.account,
                password,
                new_password,
                changes: AccountChanges {
                    kim_version,
                    data_time_to_live,
                    no_vzd_mail_entry,
                },
            };
            print(&ops.set(&input).await?, login.common.json)
        }
        AccountOp::Deregister(l) => {
            let p = ask(KIM_PASSWORD, l.password_file.as_deref())?;
            print(&ops.deregister(&l.account, &p).await?, l.common.json)
        }
        AccountOp::RevokeDeregistration(l) => {
            let p = ask(KIM_PASSWORD, l.password_file.as_deref())?;
            print(
                &ops.revoke_deregistration(&l.account, &p).await?,
                l.common.json,
            )
        }
        AccountOp::Otp(l) => {
            let p = ask(KIM_PASSWORD, l.password_file.as_deref())?;
            print(&ops.otp(&l.account, &p).await?, l.common.json)
        }
        AccountOp::SetTid { login, otp_file } => {
            let p = ask(KIM_PASSWORD, login.password_file.as_deref())?;
            let otp = ask("one-time password", otp_file.as_deref())?;
            print(
                &ops.set_tid(&login.account, &p, otp.trim()).await?,
                login.common.json,
            )
        }
        AccountOp::Cert {
            login,
            common_name,
            cert_password,
            cert_password_file,
        } => {
            let password = ask(KIM_PASSWORD, login.password_file.as_deref())?;
            let cert_password = if cert_password || cert_password_file.is_some() {
                Some(
                    secrets::read_new("certificate password", cert_password_file.as_deref())
                        .map_err(usage)?,
                )
            } else {
                None
            };
            let input = CertInput {
                account: login.account,
                password,
                common_name,
                cert_password,
            };
            print(&ops.cert(&input).await?, login.common.json)
        }
        AccountOp::OutOfOffice {
            what: OutOfOfficeCmd::Get(l),
        } => {
            let p = ask(KIM_PASSWORD, l.password_file.as_deref())?;
            print(&ops.out_of_office(&l.account, &p).await?, l.common.json)
        }
        AccountOp::OutOfOffice {
            what:
                OutOfOfficeCmd::Set {
                    login,
                    active,
                    start,
                    end,
                    message,
                },
        } => {
            let p = ask(KIM_PASSWORD, login.password_file.as_deref())?;
            let note = OutOfOffice {
                start_date: start,
                end_date: end,
                message,
                active: Some(active),
            };
            print(
                &ops.set_out_of_office(&login.account, &p, &note).await?,
                login.common.json,
            )
        }
    }
}

impl AccountOp {
    /// The config file the operation names.
    pub fn config(&self) -> &Path {
        match self {
            AccountOp::Register { common, .. } => &common.config,
            AccountOp::Get(l)
            | AccountOp::Deregister(l)
            | AccountOp::RevokeDeregistration(l)
            | AccountOp::Otp(l)
            | AccountOp::Set { login: l, .. }
            | AccountOp::SetTid { login: l, .. }
            | AccountOp::Cert { login: l, .. }
            | AccountOp::OutOfOffice {
                what: OutOfOfficeCmd::Get(l) | OutOfOfficeCmd::Set { login: l, .. },
            } => &l.common.config,
        }
    }
}

/// `kim-cm limits ACCOUNT`.
pub async fn run_limits(l: Login, ops: &AdminOps) -> Result<(), Failed> {
    let p = ask(KIM_PASSWORD, l.password_file.as_deref())?;
    print(&ops.limits(&l.account, &p).await?, l.common.json)
}

/// `kim-cm service-info`.
pub async fn run_service_info(c: Common, ops: &AdminOps) -> Result<(), Failed> {
    print(&ops.service_info().await?, c.json)
}
