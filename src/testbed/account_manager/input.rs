//! Reading a request the way the yaml defines it, strictly, so that a client that
//! strays from the yaml hears about it: the base64 secret headers (`password`,
//! `iniPassword`, `otp`, CommonSchemas.yaml `Password`: ≤ 256 characters, `format:
//! byte`), and the JSON bodies `Account`, `CertificateParameters` and
//! `OutOfOfficeNotification` with their field names and types. A field the schema
//! does not have is refused with 400.

use base64::Engine;
use hyper::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::reply::Reply;

/// CommonSchemas.yaml `Password.maxLength`, and `iniPassword`'s.
pub const MAX_SECRET_LEN: usize = 256;
/// AccountManager.yaml `Account.username` / CommonSchemas `Username` maxLength.
pub const MAX_USERNAME_LEN: usize = 256;
/// `Account.referenceID` maxLength.
pub const MAX_REFERENCE_ID_LEN: usize = 256;
/// `Account.kimVersion` maxLength.
pub const MAX_KIM_VERSION_LEN: usize = 4;
/// `OutOfOfficeNotification.message` maxLength.
pub const MAX_OOO_MESSAGE_LEN: usize = 2048;
/// `Account.dataTimeToLive` minimum and maximum (days).
pub const TTL_RANGE: std::ops::RangeInclusive<i64> = 10..=365;
/// `Account.maxMailSize` (minimum = maximum, read-only).
pub const MAX_MAIL_SIZE: i64 = 734_003_200;

fn bad(message: impl Into<String>) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, message)
}

/// Decodes a base64 `format: byte` value to text.
pub fn decode_secret(value: &str, what: &str) -> Result<String, Reply> {
    if value.len() > MAX_SECRET_LEN {
        return Err(bad(format!(
            "{what} is longer than {MAX_SECRET_LEN} characters"
        )));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| bad(format!("{what} is not base64 encoded")))?;
    String::from_utf8(raw).map_err(|_| bad(format!("{what} is not UTF-8 once decoded")))
}

/// The decoded secret header `name`; 400 when it is missing or not base64.
pub fn secret_header(headers: &HeaderMap, name: &str) -> Result<String, Reply> {
    let value = headers
        .get(name)
        .ok_or_else(|| bad(format!("the {name} header is required")))?
        .to_str()
        .map_err(|_| bad(format!("the {name} header is not text")))?;
    decode_secret(value, &format!("the {name} header"))
}

/// The body as a JSON object; `None` for an empty body. 400 for anything else.
pub fn json_object(headers: &HeaderMap, body: &[u8]) -> Result<Option<Map<String, Value>>, Reply> {
    if body.is_empty() {
        return Ok(None);
    }
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().starts_with("application/json"));
    if !json_type {
        return Err(bad("the body must be application/json; charset=utf-8"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        _ => Err(bad("the body is not a JSON object")),
    }
}

fn only_fields(m: &Map<String, Value>, allowed: &[&str], schema: &str) -> Result<(), Reply> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(format!("{schema} has no field {k:?}"))),
        None => Ok(()),
    }
}

fn string(m: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, Reply> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(bad(format!("{key} is longer than {max} characters"))),
        Some(_) => Err(bad(format!("{key} must be a string"))),
    }
}

fn boolean(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, Reply> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!(
            "{key} must be a boolean (true or false, not a string)"
        ))),
    }
}

fn integer(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, Reply> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad(format!("{key} must be an integer"))),
    }
}

/// The `Account` schema's writable content.
#[derive(Debug, Default)]
pub struct AccountInput {
    pub reference_id: Option<String>,
    pub username: Option<String>,
    /// Decoded.
    pub password: Option<String>,
    pub kim_version: Option<String>,
    pub data_time_to_live: Option<u32>,
    pub no_vzd_mail_entry: Option<bool>,
}

/// Reads an `Account` object; read-only fields are accepted and ignored.
pub fn account(m: &Map<String, Value>) -> Result<AccountInput, Reply> {
    only_fields(
        m,
        &[
            "referenceID",
            "username",
            "password",
            "kimVersion",
            "regStat",
            "deregDate",
            "dataTimeToLive",
            "maxMailSize",
            "noVzdMailEntry",
        ],
        "Account",
    )?;
    let password = match string(m, "password", MAX_SECRET_LEN)? {
        Some(p) => Some(decode_secret(&p, "password")?),
        None => None,
    };
    let data_time_to_live = match integer(m, "dataTimeToLive")? {
        Some(d) if TTL_RANGE.contains(&d) => Some(d as u32),
        Some(_) => return Err(bad("dataTimeToLive must be between 10 and 365 days")),
        None => None,
    };
    if let Some(s) = integer(m, "maxMailSize")? {
        if s != MAX_MAIL_SIZE {
            return Err(bad("maxMailSize is read-only (734003200)"));
        }
    }
    string(m, "regStat", 32)?;
    integer(m, "deregDate")?;
    Ok(AccountInput {
        reference_id: string(m, "referenceID", MAX_REFERENCE_ID_LEN)?,
        username: string(m, "username", usize::MAX)?,
        password,
        kim_version: string(m, "kimVersion", MAX_KIM_VERSION_LEN)?,
        data_time_to_live,
        no_vzd_mail_entry: boolean(m, "noVzdMailEntry")?,
    })
}

/// The `CertificateParameters` object: commonName (required) and the decoded
/// certPassword.
pub fn certificate_parameters(m: &Map<String, Value>) -> Result<(String, Option<String>), Reply> {
    only_fields(m, &["commonName", "certPassword"], "CertificateParameters")?;
    let common_name = string(m, "commonName", usize::MAX)?
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| bad("commonName is required"))?;
    let password = match string(m, "certPassword", MAX_SECRET_LEN)? {
        Some(p) => Some(decode_secret(&p, "certPassword")?),
        None => None,
    };
    Ok((common_name, password))
}

fn date_time(m: &Map<String, Value>, key: &str) -> Result<Option<String>, Reply> {
    let Some(s) = string(m, key, 64)? else {
        return Ok(None);
    };
    time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad(format!("{key} is not an RFC 3339 date-time")))?;
    Ok(Some(s))
}

/// The `OutOfOfficeNotification` object.
pub fn out_of_office(m: &Map<String, Value>) -> Result<super::state::OutOfOffice, Reply> {
    only_fields(
        m,
        &["startDate", "endDate", "message", "active"],
        "OutOfOfficeNotification",
    )?;
    Ok(super::state::OutOfOffice {
        start_date: date_time(m, "startDate")?,
        end_date: date_time(m, "endDate")?,
        message: string(m, "message", MAX_OOO_MESSAGE_LEN)?,
        active: boolean(m, "active")?,
    })
}

/// Whether `name` looks like an e-mail address (CommonSchemas `Username`, `format:
/// email`): one `@`, something on both sides, a dot in the domain, no spaces.
pub fn is_email(name: &str) -> bool {
    let Some((local, domain)) = name.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && name.len() <= MAX_USERNAME_LEN
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_the_schemas() {
        let obj = |v: Value| v.as_object().unwrap().clone();
        let a = account(&obj(serde_json::json!({
            "referenceID": "R1", "username": "a@x.de", "password": "cGFzcw==",
            "kimVersion": "1.5+", "dataTimeToLive": 30
        })))
        .unwrap();
        assert_eq!(a.password.as_deref(), Some("pass"));
        assert_eq!(a.data_time_to_live, Some(30));
        let refused = |v: Value| account(&obj(v)).unwrap_err().status;
        assert_eq!(refused(serde_json::json!({"referenceId": "R1"})), 400);
        assert_eq!(refused(serde_json::json!({"password": "not base64!"})), 400);
        assert_eq!(refused(serde_json::json!({"dataTimeToLive": 5})), 400);
        assert_eq!(refused(serde_json::json!({"kimVersion": "1.5.5"})), 400);
        // KIM_API.adoc's example sends "active": "true"; the yaml says boolean
        let o = out_of_office(&obj(serde_json::json!({"active": "true"})));
        assert_eq!(o.unwrap_err().status, 400);
        let o = out_of_office(&obj(serde_json::json!({
            "startDate": "2021-07-20T17:32:28Z", "active": true, "message": "weg"
        })))
        .unwrap();
        assert_eq!(o.active, Some(true));
        assert!(is_email("a.b+c@praxis.kim.test"));
        assert!(!is_email("praxis.kim.test"));
        assert!(!is_email("a b@x.de"));
    }
}
