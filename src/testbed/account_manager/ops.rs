//! The operations of AccountManager.yaml 2.4.0 and ServiceInformation.yaml 1.0.3,
//! on the simulator's [`State`]. Each returns the status the yaml documents for
//! the case:
//!
//! - 400 for input that is not what the schema says ([`super::input`]);
//! - 401 for a wrong `password`/`iniPassword`, an unknown referenceID, or a token
//!   from a card other than the account's (getOTP: the previous card, setTID: the
//!   new one, whose Telematik-ID the address then moves to);
//! - 404 for an address with no live account;
//! - 409 address (or reference id) already registered, 420 a password outside
//!   `passwordPolicyRegEx` or a user name that is no address, 422 an unsupported
//!   kimVersion, 423 the account's directory entry locked, 403 revoking a
//!   deregistration that was not asked for / an invalid OTP, 408 an expired OTP,
//!   502 the directory (createCert: the CMP service) unreachable.

use base64::Engine;
use hyper::{HeaderMap, StatusCode};

use super::bearer::Bearer;
use super::cert::{self, Issuer};
use super::input::{self, AccountInput};
use super::reply::{status, Outcome, Reply};
use super::routes::Operation;
use super::state::{IssuedCert, Otp, Registration, Settings, SimAccount, State};

/// Random bytes in an OTP (hex-encoded, then base64 on the wire).
const OTP_BYTES: usize = 16;

/// One request, routed and with its token checked.
pub struct Call<'a> {
    pub op: Operation,
    pub username: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// The checked token (every operation but getServiceInformation has one).
    pub bearer: Option<&'a Bearer>,
    /// faults.json `directory_unreachable`: operations that document 502 answer it.
    pub directory_unreachable: bool,
    pub now: i64,
}

/// What the operations need besides the state.
pub struct Services<'a> {
    /// The CA createCert issues from; without one createCert answers 500.
    pub issuer: Option<&'a Issuer>,
}

fn refuse(code: u16, message: impl Into<String>) -> Reply {
    Reply::error(status(code), message)
}

/// Answers `call`; `state` is saved by the caller afterwards.
pub fn answer(state: &mut State, services: &Services<'_>, call: &Call<'_>) -> Reply {
    state.advance(call.now);
    let outcome = match call.op {
        Operation::GetServiceInformation => service_information(state),
        Operation::RegisterAccount => register(state, call),
        op => on_account(state, services, call, op),
    };
    outcome.unwrap_or_else(|r| r)
}

fn service_information(state: &State) -> Outcome {
    serde_json::to_value(&state.settings.service_info)
        .map(Reply::ok)
        .map_err(|e| refuse(500, e.to_string()))
}

fn reach_directory(call: &Call<'_>) -> Result<(), Reply> {
    if call.directory_unreachable && call.op.may_answer_502() {
        let what = if call.op == Operation::CreateCert {
            "the CMP service cannot be reached"
        } else {
            "the directory service (VZD) cannot be reached"
        };
        return Err(refuse(502, what));
    }
    Ok(())
}

fn unlocked(account: &SimAccount) -> Result<(), Reply> {
    if account.directory_locked {
        return Err(refuse(
            423,
            "the VZD entry is locked (attribute active is inactive)",
        ));
    }
    Ok(())
}

fn policy_allows(settings: &Settings, password: &str) -> Result<(), Reply> {
    let info = &settings.service_info;
    let regex = fancy_regex::Regex::new(&info.password_policy_reg_ex).map_err(|e| {
        refuse(
            500,
            format!("the configured password policy is broken: {e}"),
        )
    })?;
    match regex.is_match(password) {
        Ok(true) => Ok(()),
        _ => Err(refuse(
            420,
            format!(
                "the password does not comply with the rules: {}",
                info.password_policy_display
            ),
        )),
    }
}

fn kim_version_supported(settings: &Settings, version: Option<&str>) -> Result<(), Reply> {
    match version {
        Some(v) if !settings.supported_kim_versions.iter().any(|s| s == v) => Err(refuse(
            422,
            format!(
                "kimVersion {v:?} is not supported (supported: {})",
                settings.supported_kim_versions.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

fn token_telematik_id(call: &Call<'_>) -> Result<String, Reply> {
    call.bearer
        .and_then(|b| b.telematik_id.clone())
        .ok_or_else(|| refuse(401, "the token's certificate carries no Telematik-ID"))
}

fn register(state: &mut State, call: &Call<'_>) -> Outcome {
    let body = input::json_object(call.headers, call.body)?
        .ok_or_else(|| refuse(400, "the Account object is required"))?;
    let a: AccountInput = input::account(&body)?;
    let ini_password = input::secret_header(call.headers, "iniPassword")?;
    let username = a
        .username
        .clone()
        .ok_or_else(|| refuse(400, "username is required"))?;
    let password = a
        .password
        .clone()
        .ok_or_else(|| refuse(400, "password is required"))?;
    // who asks: the provider's reference id and initial password, and the card
    let telematik_id = token_telematik_id(call)?;
    let required = state.settings.service_info.reference_id_required;
    let slot = match &a.reference_id {
        Some(r) => state.accounts.iter().position(|s| &s.reference_id == r),
        None if required => return Err(refuse(401, "referenceID is required")),
        None => state.accounts.iter().position(|s| {
            s.registration == Registration::NotRegistered && s.initial_password == ini_password
        }),
    }
    .ok_or_else(|| refuse(401, "unknown referenceID or wrong iniPassword"))?;
    if state.accounts[slot].initial_password != ini_password {
        return Err(refuse(401, "unknown referenceID or wrong iniPassword"));
    }
    if state.accounts[slot]
        .expected_telematik_id
        .as_ref()
        .is_some_and(|t| *t != telematik_id)
    {
        return Err(refuse(
            401,
            "the referenceID does not match the token's AUT certificate",
        ));
    }
    // what is asked for
    if !input::is_email(&username) {
        return Err(refuse(420, "the username is not an e-mail address"));
    }
    policy_allows(&state.settings, &password)?;
    kim_version_supported(&state.settings, a.kim_version.as_deref())?;
    if state.accounts[slot].is_live() {
        return Err(refuse(409, "this referenceID is already registered"));
    }
    let taken = state.accounts.iter().any(|s| {
        s.is_live()
            && s.username
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(&username))
    });
    if taken {
        return Err(refuse(409, "the e-mail address is already taken"));
    }
    let s = &mut state.accounts[slot];
    reach_directory(call)?;
    unlocked(s)?;
    s.registration = Registration::Registered;
    s.username = Some(username);
    s.password = Some(password);
    s.kim_version = a.kim_version.or(s.kim_version.take());
    s.telematik_id = Some(telematik_id);
    s.dereg_date = None;
    s.data_time_to_live = a.data_time_to_live.unwrap_or(s.data_time_to_live);
    s.no_vzd_mail_entry = a.no_vzd_mail_entry.unwrap_or(false);
    Ok(Reply::no_content())
}

/// The operations on `/account/{username}...`: the account must be live, the
/// `password` header right, and the token's card the account's (setTID excepted).
fn on_account(
    state: &mut State,
    services: &Services<'_>,
    call: &Call<'_>,
    op: Operation,
) -> Outcome {
    let username = call.username.unwrap_or_default();
    let settings = state.settings.clone();
    let account = state
        .live_mut(username)
        .ok_or_else(|| refuse(404, format!("no e-mail account {username}")))?;
    let password = input::secret_header(call.headers, "password")?;
    if account.password.as_deref() != Some(password.as_str()) {
        return Err(refuse(401, "wrong password for the account"));
    }
    if op != Operation::SetTid {
        let tid = token_telematik_id(call)?;
        if account.telematik_id.as_deref() != Some(tid.as_str()) {
            return Err(refuse(
                401,
                "the token's card is not the one the account belongs to",
            ));
        }
    }
    match op {
        Operation::SetAccount => set_account(&settings, account, call),
        Operation::DeregisterAccount => {
            reach_directory(call)?;
            if account.registration == Registration::Registered {
                account.registration = Registration::DeregistrationPending;
                account.dereg_date = Some(call.now + settings.deregistration_period_seconds);
            }
            state.advance(call.now);
            Ok(Reply::no_content())
        }
        Operation::GetAccount => {
            reach_directory(call)?;
            Ok(Reply::ok(account_json(account)))
        }
        Operation::RevokeDeregistration => {
            if account.registration != Registration::DeregistrationPending {
                return Err(refuse(403, "the e-mail account has not been deregistered"));
            }
            reach_directory(call)?;
            unlocked(account)?;
            account.registration = Registration::Registered;
            account.dereg_date = None;
            Ok(Reply::no_content())
        }
        Operation::GetOtp => {
            let value = hex::encode(rand::random::<[u8; OTP_BYTES]>());
            let encoded = base64::engine::general_purpose::STANDARD.encode(&value);
            account.otp = Some(Otp {
                value,
                expires: call.now + settings.otp_validity_seconds,
            });
            Ok(Reply::ok(serde_json::json!({ "otp": encoded })))
        }
        Operation::SetTid => set_tid(account, call),
        Operation::CreateCert => create_cert(account, services, call),
        Operation::GetOutOfOffice => serde_json::to_value(&account.out_of_office)
            .map(Reply::ok)
            .map_err(|e| refuse(500, e.to_string())),
        Operation::UpdateOutOfOffice => {
            let body = input::json_object(call.headers, call.body)?
                .ok_or_else(|| refuse(400, "the OutOfOfficeNotification object is required"))?;
            account.out_of_office = input::out_of_office(&body)?;
            Ok(Reply::no_content())
        }
        Operation::GetServiceInformation | Operation::RegisterAccount => {
            Err(refuse(500, "not an account operation"))
        }
    }
}

fn set_account(settings: &Settings, account: &mut SimAccount, call: &Call<'_>) -> Outcome {
    let a = match input::json_object(call.headers, call.body)? {
        Some(body) => input::account(&body)?,
        None => AccountInput::default(),
    };
    if a.reference_id
        .as_ref()
        .is_some_and(|r| *r != account.reference_id)
    {
        return Err(refuse(400, "referenceID cannot be changed"));
    }
    if a.username.as_ref().is_some_and(|u| {
        !account
            .username
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case(u))
    }) {
        return Err(refuse(400, "username cannot be changed"));
    }
    if let Some(p) = &a.password {
        policy_allows(settings, p)?;
    }
    kim_version_supported(settings, a.kim_version.as_deref())?;
    reach_directory(call)?;
    unlocked(account)?;
    if let Some(p) = a.password {
        account.password = Some(p);
    }
    if let Some(v) = a.kim_version {
        account.kim_version = Some(v);
    }
    if let Some(d) = a.data_time_to_live {
        account.data_time_to_live = d;
    }
    if let Some(n) = a.no_vzd_mail_entry {
        account.no_vzd_mail_entry = n;
    }
    Ok(Reply::no_content())
}

/// The `Account` object of getAccount (password is write-only).
fn account_json(a: &SimAccount) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("referenceID".into(), a.reference_id.clone().into());
    if let Some(u) = &a.username {
        m.insert("username".into(), u.clone().into());
    }
    if let Some(v) = &a.kim_version {
        m.insert("kimVersion".into(), v.clone().into());
    }
    let reg_stat = match a.registration {
        Registration::Registered => "registered",
        _ => "deregistered",
    };
    m.insert("regStat".into(), reg_stat.into());
    if let Some(d) = a.dereg_date {
        m.insert("deregDate".into(), d.into());
    }
    m.insert("dataTimeToLive".into(), a.data_time_to_live.into());
    m.insert("maxMailSize".into(), input::MAX_MAIL_SIZE.into());
    m.insert("noVzdMailEntry".into(), a.no_vzd_mail_entry.into());
    serde_json::Value::Object(m)
}

fn set_tid(account: &mut SimAccount, call: &Call<'_>) -> Outcome {
    let otp = input::secret_header(call.headers, "otp")?;
    let new_tid = token_telematik_id(call)?;
    let issued = account
        .otp
        .as_ref()
        .ok_or_else(|| refuse(403, "invalid OTP: none was issued for this account"))?;
    if issued.value != otp {
        return Err(refuse(403, "invalid OTP"));
    }
    if call.now >= issued.expires {
        return Err(refuse(408, "the OTP has expired"));
    }
    reach_directory(call)?;
    unlocked(account)?;
    account.telematik_id = Some(new_tid);
    account.otp = None;
    Ok(Reply::no_content())
}

fn create_cert(account: &mut SimAccount, services: &Services<'_>, call: &Call<'_>) -> Outcome {
    let body = input::json_object(call.headers, call.body)?
        .ok_or_else(|| refuse(400, "commonName is required"))?;
    let (common_name, password) = input::certificate_parameters(&body)?;
    reach_directory(call)?;
    let issuer = services
        .issuer
        .ok_or_else(|| refuse(500, "this simulator has no CA to issue certificates"))?;
    let issued = cert::issue(issuer, &common_name, password.as_deref())
        .map_err(|e| Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    account.certificates.push(IssuedCert {
        subject_cn: issued.subject_cn,
        serial: issued.serial_hex,
        encrypted: password.is_some(),
    });
    let file = base64::engine::general_purpose::STANDARD.encode(&issued.pkcs12_der);
    Ok(Reply::ok(serde_json::json!({ "file": file })))
}
