//! The yaml's JSON objects as the client reads and writes them. Read objects take
//! every field as optional (the yaml requires none) and ignore unknown ones;
//! written objects leave out what the caller did not set. Passwords are not part
//! of these types: the client base64-encodes them into the request itself, so
//! that no `Debug` of a value here can show one.

use serde::{Deserialize, Serialize};

/// ServiceInformation (ServiceInformation.yaml 1.0.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInformation {
    /// One or more versions, separated by `;`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kim_service_version: Option<String>,
    /// A Java-style regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_policy_reg_ex: Option<String>,
    /// The same rules in words, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_policy_display: Option<String>,
    /// Seconds a JWT is accepted (300..21600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_expiration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_id_required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_password_required: Option<bool>,
}

/// `Account.regStat` (AccountManager.yaml: `registered` or `deregistered`; a
/// pending deregistration is `deregistered` with `deregDate` ahead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegStat {
    Registered,
    Deregistered,
}

/// The Account object of getAccount (`password` is write-only and never sent
/// back).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    #[serde(
        rename = "referenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reference_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kim_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_stat: Option<RegStat>,
    /// Unix seconds: until then POP3 still works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dereg_date: Option<i64>,
    /// Days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_time_to_live: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mail_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_vzd_mail_entry: Option<bool>,
}

/// What registerAccount sends besides the password (and the iniPassword header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// Required when the service's `referenceIdRequired` says so.
    pub reference_id: Option<String>,
    pub username: String,
    pub kim_version: Option<String>,
    pub data_time_to_live: Option<u32>,
    pub no_vzd_mail_entry: Option<bool>,
}

/// What setAccount changes; `None` leaves a value as it is. A new password is a
/// separate argument of [`super::account_manager::AccountManagerClient::set_account`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChanges {
    pub kim_version: Option<String>,
    pub data_time_to_live: Option<u32>,
    pub no_vzd_mail_entry: Option<bool>,
}

/// OutOfOfficeNotification; dates are RFC 3339 date-times.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutOfOffice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A JSON boolean (KIM_API.adoc's example has the string "true").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}
