//! What the administration operations return: each renders as a small
//! two-column table for people (`Display`) and as JSON for scripts (`serde`).
//! None of them holds a password; the one-time password of `account otp` is
//! shown because the admin has to carry it to the new card.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use zeroize::Zeroizing;

use super::schemas::{Account, OutOfOffice, RegStat, ServiceInformation};
use crate::limits::AccountLimit;

/// Writes `rows` as `name  value` lines with the values aligned.
fn table(f: &mut fmt::Formatter<'_>, rows: &[(&str, String)]) -> fmt::Result {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        writeln!(f, "{k:<width$}  {v}")?;
    }
    Ok(())
}

fn opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".into(), |v| v.to_string())
}

/// Unix seconds as UTC `YYYY-MM-DD HH:MM:SS`.
fn date(secs: i64) -> String {
    openssl::asn1::Asn1Time::from_unix(secs)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| secs.to_string())
}

/// An operation that answers nothing but success.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub account: String,
    pub result: String,
}

impl Done {
    pub fn new(account: &str, result: &str) -> Done {
        Done {
            account: account.into(),
            result: result.into(),
        }
    }
}

impl fmt::Display for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        table(
            f,
            &[
                ("account", self.account.clone()),
                ("result", self.result.clone()),
            ],
        )
    }
}

/// getAccount's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct AccountView(pub Account);

impl AccountView {
    /// The registration state in words, with the end of a deregistered account.
    pub fn state(&self) -> String {
        match (self.0.reg_stat, self.0.dereg_date) {
            (Some(RegStat::Registered), _) => "registered".to_string(),
            (Some(RegStat::Deregistered), Some(d)) => {
                format!("deregistered (usable until {})", date(d))
            }
            (Some(RegStat::Deregistered), None) => "deregistered".into(),
            (None, _) => "-".into(),
        }
    }
}

impl fmt::Display for AccountView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.0;
        let state = self.state();
        table(
            f,
            &[
                ("account", opt(&a.username)),
                ("state", state),
                ("reference id", opt(&a.reference_id)),
                ("KIM version", opt(&a.kim_version)),
                (
                    "data time to live",
                    a.data_time_to_live
                        .map_or("-".into(), |d| format!("{d} days")),
                ),
                (
                    "max mail size",
                    a.max_mail_size.map_or("-".into(), |s| format!("{s} bytes")),
                ),
                (
                    "directory entry",
                    match a.no_vzd_mail_entry {
                        Some(true) => "not in the directory (VZD)".into(),
                        Some(false) => "in the directory (VZD)".into(),
                        None => "-".into(),
                    },
                ),
            ],
        )
    }
}

/// getOTP's one-time password.
#[derive(Debug, Clone, Serialize)]
pub struct OtpIssued {
    pub account: String,
    #[serde(serialize_with = "plain")]
    pub otp: Zeroizing<String>,
}

fn plain<S: serde::Serializer>(v: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

impl fmt::Display for OtpIssued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        table(
            f,
            &[
                ("account", self.account.clone()),
                ("one-time password", self.otp.to_string()),
                (
                    "next",
                    "with the new card configured, enter it in `kim-cm account set-tid` (or \"Move to the new card\" on the admin page)"
                        .into(),
                ),
            ],
        )
    }
}

/// createCert's certificate, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct CertStored {
    pub account: String,
    pub pkcs12: PathBuf,
    pub password_file: Option<PathBuf>,
    pub subject: String,
    pub not_after: String,
}

impl fmt::Display for CertStored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        table(
            f,
            &[
                ("account", self.account.clone()),
                ("certificate", self.subject.clone()),
                ("valid until", self.not_after.clone()),
                ("stored in", self.pkcs12.display().to_string()),
                (
                    "password in",
                    opt(&self.password_file.as_ref().map(|p| p.display())),
                ),
                ("next", "restart `kim-cm serve` to use it".into()),
            ],
        )
    }
}

/// getOutOfOffice's note.
#[derive(Debug, Clone, Serialize)]
pub struct OutOfOfficeView {
    pub account: String,
    pub note: OutOfOffice,
}

impl fmt::Display for OutOfOfficeView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.note;
        table(
            f,
            &[
                ("account", self.account.clone()),
                (
                    "active",
                    n.active
                        .map_or("-".into(), |a| if a { "yes" } else { "no" }.into()),
                ),
                ("from", opt(&n.start_date)),
                ("until", opt(&n.end_date)),
                ("message", opt(&n.message)),
            ],
        )
    }
}

/// getLimits' answer.
#[derive(Debug, Clone, Serialize)]
pub struct LimitsView {
    pub account: String,
    #[serde(flatten)]
    pub limits: AccountLimit,
}

impl fmt::Display for LimitsView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.limits;
        let quota = |q: i64| {
            if q < 0 {
                "unlimited".to_string()
            } else {
                format!("{q} bytes")
            }
        };
        table(
            f,
            &[
                ("account", self.account.clone()),
                ("data time to live", format!("{} days", l.ttl_days())),
                ("max mail size", format!("{} bytes", l.max_mail_size)),
                ("quota", quota(l.quota)),
                ("remaining quota", quota(l.remain_quota)),
                (
                    "KAS threshold",
                    l.kas_mail_size_threshold
                        .map_or("-".into(), |t| format!("{t} bytes")),
                ),
            ],
        )
    }
}

/// getServiceInformation's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct ServiceInfoView(pub ServiceInformation);

impl fmt::Display for ServiceInfoView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        table(
            f,
            &[
                ("KIM service versions", opt(&s.kim_service_version)),
                ("password rules", opt(&s.password_policy_display)),
                ("password pattern", opt(&s.password_policy_reg_ex)),
                (
                    "token lifetime",
                    s.jwt_expiration.map_or("-".into(), |j| format!("{j} s")),
                ),
                ("reference id required", opt(&s.reference_id_required)),
                (
                    "initial password required",
                    opt(&s.initial_password_required),
                ),
            ],
        )
    }
}
