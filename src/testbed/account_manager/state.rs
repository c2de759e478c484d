//! The simulated Account Manager's state: one JSON file in its folder,
//! [`STATE_FILE`], read before and written after every request, so that a test can
//! both inspect what an operation did and set up what the next one meets (a locked
//! directory entry, an expired OTP) by editing the file.
//!
//! An account starts as the provider sets it up (a reference id and an initial
//! password handed to the practice, gemSpec_CM_KOMLE 2.1) and goes through the
//! states of [`Registration`]. Passwords are kept in plain text: this is a
//! simulator, and the file is readable by its owner only.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::testbed::ca::write_private;

/// The state file in the simulator's folder.
pub const STATE_FILE: &str = "state.json";
/// The password policy of ServiceInformation.yaml's example: a digit, a lower and
/// an upper case letter, a special character, 12 to 256 characters.
pub const DEFAULT_PASSWORD_REGEX: &str =
    r"^(?=.*[0-9])(?=.*[a-z])(?=.*[A-Z])(?=.*[*.!@#$%^&(){}\[\]:;'<>,?/~_+\-=|\\]).{12,256}$";
/// The same policy in words, as the service shows it.
pub const DEFAULT_PASSWORD_DISPLAY: &str = "At least one number [0-9], at least one lowercase \
letter [a-z], at least one capital letter [A-Z], at least one special character \
[*.!@#$%^&(){}[]:;'<>,?/~_+-=|\\], minimum length 12 characters, maximum length 256 characters.";
/// JWTs are accepted for this many seconds after their `nbf` (the yaml's minimum).
pub const DEFAULT_JWT_EXPIRATION: u64 = 300;
/// How long an OTP from getOTP can be used for setTID.
pub const DEFAULT_OTP_VALIDITY_SECONDS: i64 = 600;
/// How long after deregisterAccount the account stays usable (POP3 until
/// `deregDate`) and the deregistration can be revoked.
pub const DEFAULT_DEREGISTRATION_PERIOD_SECONDS: i64 = 30 * 24 * 3600;

/// Where an account is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Set up by the provider, not yet registered by the practice.
    NotRegistered,
    Registered,
    /// deregisterAccount was called; usable and revocable until `deregDate`.
    /// The yaml's `regStat` says `deregistered` (its enum has only two values).
    DeregistrationPending,
    /// `deregDate` has passed: the account is gone (404) and its address free.
    Deregistered,
}

/// The ServiceInformation object (ServiceInformation.yaml 1.0.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    pub kim_service_version: String,
    pub password_policy_reg_ex: String,
    pub password_policy_display: String,
    pub jwt_expiration: u64,
    pub reference_id_required: bool,
    pub initial_password_required: bool,
}

impl Default for ServiceInfo {
    fn default() -> ServiceInfo {
        ServiceInfo {
            kim_service_version: "1.5.5".into(),
            password_policy_reg_ex: DEFAULT_PASSWORD_REGEX.into(),
            password_policy_display: DEFAULT_PASSWORD_DISPLAY.into(),
            jwt_expiration: DEFAULT_JWT_EXPIRATION,
            reference_id_required: true,
            initial_password_required: true,
        }
    }
}

/// How the simulated service behaves; tests may change it in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    pub service_info: ServiceInfo,
    /// `kimVersion` values accepted; others get 422.
    pub supported_kim_versions: Vec<String>,
    pub otp_validity_seconds: i64,
    pub deregistration_period_seconds: i64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            service_info: ServiceInfo::default(),
            supported_kim_versions: vec!["1.0".into(), "1.5".into(), "1.5+".into()],
            otp_validity_seconds: DEFAULT_OTP_VALIDITY_SECONDS,
            deregistration_period_seconds: DEFAULT_DEREGISTRATION_PERIOD_SECONDS,
        }
    }
}

/// A one-time password for porting the address to another card.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Otp {
    pub value: String,
    /// Unix seconds; from then on setTID answers 408.
    pub expires: i64,
}

/// An out-of-office note (OutOfOfficeNotification), as last set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OutOfOffice {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// A certificate issued by createCert.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCert {
    /// The certificate's CN: commonName + "#CM".
    pub subject_cn: String,
    /// Hex.
    pub serial: String,
    /// Whether the PKCS#12 was protected with a certPassword.
    pub encrypted: bool,
}

/// One KIM account of the simulated provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimAccount {
    /// What the provider handed the practice.
    pub reference_id: String,
    pub initial_password: String,
    /// When set, only a card with this Telematik-ID may register the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_telematik_id: Option<String>,
    pub registration: Registration,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub kim_version: Option<String>,
    /// The card the address belongs to (from the registering token's certificate,
    /// changed by setTID).
    #[serde(default)]
    pub telematik_id: Option<String>,
    /// Unix seconds, while a deregistration is pending or after it.
    #[serde(default)]
    pub dereg_date: Option<i64>,
    #[serde(default = "default_ttl")]
    pub data_time_to_live: u32,
    #[serde(default)]
    pub no_vzd_mail_entry: bool,
    #[serde(default)]
    pub out_of_office: OutOfOffice,
    #[serde(default)]
    pub otp: Option<Otp>,
    /// The VZD entry is inactive: operations that change it answer 423.
    #[serde(default)]
    pub directory_locked: bool,
    #[serde(default)]
    pub certificates: Vec<IssuedCert>,
}

fn default_ttl() -> u32 {
    90
}

impl SimAccount {
    /// An account as the provider sets it up.
    pub fn provisioned(reference_id: &str, initial_password: &str) -> SimAccount {
        SimAccount {
            reference_id: reference_id.into(),
            initial_password: initial_password.into(),
            expected_telematik_id: None,
            registration: Registration::NotRegistered,
            username: None,
            password: None,
            kim_version: None,
            telematik_id: None,
            dereg_date: None,
            data_time_to_live: default_ttl(),
            no_vzd_mail_entry: false,
            out_of_office: OutOfOffice::default(),
            otp: None,
            directory_locked: false,
            certificates: Vec::new(),
        }
    }

    /// Registered, or deregistered with `deregDate` still ahead: the account exists.
    pub fn is_live(&self) -> bool {
        matches!(
            self.registration,
            Registration::Registered | Registration::DeregistrationPending
        )
    }
}

/// Everything in [`STATE_FILE`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct State {
    pub settings: Settings,
    pub accounts: Vec<SimAccount>,
}

impl State {
    /// The state in `dir`; a missing or unreadable file is an error, since the
    /// simulator writes it at start.
    pub fn load(dir: &Path) -> Result<State, String> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes the state to `dir` (owner-only).
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let path = dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        write_private(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Moves pending deregistrations whose date has passed to `Deregistered`.
    pub fn advance(&mut self, now: i64) {
        for a in &mut self.accounts {
            if a.registration == Registration::DeregistrationPending
                && a.dereg_date.is_some_and(|d| d <= now)
            {
                a.registration = Registration::Deregistered;
            }
        }
    }

    /// The live account with `username` (case-insensitive).
    pub fn live_mut(&mut self, username: &str) -> Option<&mut SimAccount> {
        self.accounts.iter_mut().find(|a| {
            a.is_live()
                && a.username
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(username))
        })
    }
}
