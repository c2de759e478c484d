//! The client of the provider's Account Manager: every operation of
//! AccountManager.yaml 2.4.0 and getServiceInformation of ServiceInformation.yaml
//! 1.0.3, exactly as the yaml shapes the requests:
//!
//! - URLs: the service's root (`https://<SRV host>:<SRV port><TXT base path>`,
//!   A_19361-01) + the yaml's server URL + the path; user names percent-encoded;
//! - `Authorization: Bearer <JWT>` on every Account Manager operation
//!   (`KIMBearerAuth`; the JWT of A_19457-02 is made per call by the caller);
//! - `password`, `iniPassword` and `otp` headers base64-encoded (`format: byte`),
//!   marked sensitive and never logged; JSON bodies with the schemas' names.
//!
//! Each call is one verified TLS connection ([`crate::http::client`]) with a
//! bounded answer and the settings' timeout ([`AM_TIMEOUT`] by default).

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use zeroize::Zeroizing;

use super::errors::{AccountManagerError, ServerSays};
use super::schemas::{Account, AccountChanges, OutOfOffice, Registration, ServiceInformation};
use crate::http::client::{request, HttpSettings};
use crate::http::url::HttpsUrl;

/// AccountManager.yaml `servers` (2.4.0), without the trailing `/`.
pub const ACCOUNT_MGMT_PATH: &str = "/AccountMgmt/v2.4";
/// ServiceInformation.yaml `servers` (1.0.3), without the trailing `/`.
pub const SERVICE_INFO_PATH: &str = "/ServiceInformation/v1.0";
/// How long one operation may take once connected (createCert has the provider
/// issue a certificate).
pub const AM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting (TCP and TLS) may take.
pub const AM_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// CommonSchemas.yaml `Password.maxLength` (of the base64 text).
pub const MAX_ENCODED_SECRET: usize = 256;
/// `Account.kimVersion` maxLength.
pub const MAX_KIM_VERSION_LEN: usize = 4;

/// Characters left as they are in a path segment (RFC 3986 unreserved, plus `@`,
/// which a segment may hold and every address has).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

const JSON: &str = "application/json; charset=utf-8";

/// The operations, with what the yaml documents for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    ServiceInformation,
    Register,
    Set,
    Deregister,
    Get,
    Revoke,
    Otp,
    SetTid,
    CreateCert,
    GetOutOfOffice,
    UpdateOutOfOffice,
}

impl Op {
    /// What the admin wanted, for the error sentences.
    fn what(self) -> &'static str {
        match self {
            Op::ServiceInformation => "read the service information",
            Op::Register => "register the account",
            Op::Set => "change the account",
            Op::Deregister => "deregister the account",
            Op::Get => "read the account",
            Op::Revoke => "revoke the deregistration",
            Op::Otp => "issue a one-time password",
            Op::SetTid => "move the address to the new card",
            Op::CreateCert => "create the TLS client certificate",
            Op::GetOutOfOffice => "read the out-of-office note",
            Op::UpdateOutOfOffice => "set the out-of-office note",
        }
    }

    /// The error statuses the yaml lists for the operation.
    fn documented(self) -> &'static [u16] {
        match self {
            Op::ServiceInformation => &[500],
            Op::Register => &[400, 401, 409, 420, 422, 423, 500, 502],
            Op::Set => &[400, 401, 404, 420, 422, 423, 500, 502],
            Op::Deregister | Op::Get => &[400, 401, 404, 500, 502],
            Op::Revoke => &[400, 401, 403, 404, 423, 500, 502],
            Op::Otp | Op::GetOutOfOffice | Op::UpdateOutOfOffice => &[400, 401, 404, 500],
            Op::SetTid => &[400, 401, 403, 404, 408, 423, 500, 502],
            Op::CreateCert => &[400, 401, 404, 500, 502],
        }
    }
}

/// Base64 of a secret for a header or a body field, checked against the yaml's
/// bound.
fn encode_secret(
    what: &'static str,
    secret: &str,
) -> Result<Zeroizing<String>, AccountManagerError> {
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(secret));
    if encoded.len() > MAX_ENCODED_SECRET {
        return Err(AccountManagerError::BadInput {
            what,
            why: format!("base64 encoded it is longer than the {MAX_ENCODED_SECRET} characters the interface allows"),
        });
    }
    Ok(encoded)
}

fn sensitive(what: &'static str, text: &str) -> Result<HeaderValue, AccountManagerError> {
    let mut v = HeaderValue::from_str(text).map_err(|_| AccountManagerError::BadInput {
        what,
        why: "it cannot be put in an HTTP header".into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn check_kim_version(v: Option<&str>) -> Result<(), AccountManagerError> {
    match v {
        Some(v) if v.is_empty() || v.chars().count() > MAX_KIM_VERSION_LEN => {
            Err(AccountManagerError::BadInput {
                what: "the KIM version",
                why: format!("{v:?} is not 1 to {MAX_KIM_VERSION_LEN} characters (e.g. 1.5+)"),
            })
        }
        _ => Ok(()),
    }
}

/// The request of one call, before it is sent.
struct Call<'a> {
    op: Op,
    account: Option<&'a str>,
    method: Method,
    url: HttpsUrl,
    token: Option<&'a str>,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Option<serde_json::Value>,
    /// The kimVersion sent, for a 422's sentence.
    kim_version: Option<String>,
}

/// A client for one Account Manager.
#[derive(Clone)]
pub struct AccountManagerClient {
    root: HttpsUrl,
    http: HttpSettings,
}

impl AccountManagerClient {
    /// A client for the service at `root` (scheme, host, port and the base path
    /// from service discovery; the yaml's server URLs are appended).
    pub fn new(root: HttpsUrl, http: HttpSettings) -> AccountManagerClient {
        AccountManagerClient { root, http }
    }

    /// HTTP settings with [`AM_CONNECT_TIMEOUT`] and [`AM_TIMEOUT`] over `connector`
    /// (built by [`crate::net::tls::connector`]: server verified against the
    /// configured CA, client certificate when configured).
    pub fn settings(connector: std::sync::Arc<openssl::ssl::SslConnector>) -> HttpSettings {
        HttpSettings {
            connector,
            connect_timeout: AM_CONNECT_TIMEOUT,
            timeout: AM_TIMEOUT,
        }
    }

    fn account_url(&self, username: &str, tail: &str) -> HttpsUrl {
        let user = utf8_percent_encode(username, PATH_SEGMENT);
        self.root
            .join(&format!("{ACCOUNT_MGMT_PATH}/account/{user}{tail}"))
    }

    fn call<'a>(
        &self,
        op: Op,
        account: Option<&'a str>,
        method: Method,
        url: HttpsUrl,
        token: Option<&'a str>,
    ) -> Call<'a> {
        Call {
            op,
            account,
            method,
            url,
            token,
            headers: Vec::new(),
            body: None,
            kim_version: None,
        }
    }

    /// Sends `call`; the body of a success, or the error its status means.
    async fn send(&self, mut call: Call<'_>) -> Result<Bytes, AccountManagerError> {
        let op = call.op;
        if let Some(token) = call.token {
            let bearer = Zeroizing::new(format!("Bearer {}", token.trim()));
            call.headers
                .push(("authorization", sensitive("the token", &bearer)?));
        }
        let body = match &call.body {
            Some(json) => {
                call.headers
                    .push(("content-type", HeaderValue::from_static(JSON)));
                Some(Bytes::from(json.to_string()))
            }
            None => None,
        };
        let (status, answer) = request(
            call.method.clone(),
            &call.url,
            call.headers,
            body,
            &self.http,
        )
        .await
        .map_err(|source| AccountManagerError::Transport {
            operation: op.what(),
            source,
        })?;
        tracing::info!(
            operation = op.what(),
            account = call.account.unwrap_or("-"),
            status = status.as_u16(),
            "account manager call"
        );
        if status.is_success() {
            return Ok(answer);
        }
        Err(self
            .refusal(op, call.account, call.kim_version, status, &answer)
            .await)
    }

    /// The error for a refusal with `status` and `body`.
    async fn refusal(
        &self,
        op: Op,
        account: Option<&str>,
        kim_version: Option<String>,
        status: StatusCode,
        body: &[u8],
    ) -> AccountManagerError {
        use AccountManagerError as E;
        let says = ServerSays::from_body(body);
        let code = status.as_u16();
        let account = account.unwrap_or("(unnamed)").to_string();
        if !op.documented().contains(&code) {
            return E::Undocumented {
                operation: op.what(),
                status,
                says,
            };
        }
        match code {
            400 => E::BadRequest {
                operation: op.what(),
                says,
            },
            401 => E::AuthenticationRefused {
                operation: op.what(),
                says,
            },
            403 if op == Op::Revoke => E::NotDeregistered { account, says },
            403 => E::InvalidOtp { account, says },
            404 => E::UnknownAccount { account, says },
            408 => E::OtpExpired { account, says },
            409 => E::AddressTaken { account, says },
            420 => E::PasswordRules {
                // the rules in words, from the service itself (best effort)
                policy: self
                    .service_information()
                    .await
                    .ok()
                    .and_then(|i| i.password_policy_display),
                says,
            },
            422 => E::KimVersion {
                version: kim_version,
                says,
            },
            423 => E::DirectoryLocked { account, says },
            502 => E::DirectoryUnreachable {
                certificates: op == Op::CreateCert,
                says,
            },
            _ => E::ServerError {
                operation: op.what(),
                says,
            },
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        op: Op,
        body: &[u8],
    ) -> Result<T, AccountManagerError> {
        serde_json::from_slice(body).map_err(|e| AccountManagerError::BadAnswer {
            operation: op.what(),
            why: format!("not the JSON the interface defines: {e}"),
        })
    }

    /// getServiceInformation: the provider's password rules, JWT lifetime and
    /// registration requirements (no authentication).
    pub async fn service_information(&self) -> Result<ServiceInformation, AccountManagerError> {
        let url = self.root.join(&format!("{SERVICE_INFO_PATH}/serviceinfo"));
        let call = self.call(Op::ServiceInformation, None, Method::GET, url, None);
        // not through send(): a 420's sentence calls this, and a failure here must
        // not ask for the service information again
        let (status, body) = request(call.method, &call.url, call.headers, None, &self.http)
            .await
            .map_err(|source| AccountManagerError::Transport {
                operation: Op::ServiceInformation.what(),
                source,
            })?;
        if !status.is_success() {
            let says = ServerSays::from_body(&body);
            let operation = Op::ServiceInformation.what();
            return Err(if status == StatusCode::INTERNAL_SERVER_ERROR {
                AccountManagerError::ServerError { operation, says }
            } else {
                AccountManagerError::Undocumented {
                    operation,
                    status,
                    says,
                }
            });
        }
        Self::parse(Op::ServiceInformation, &body)
    }

    /// registerAccount: registers `registration.username` with `password`,
    /// authenticated by the provider's `ini_password` (and reference id).
    pub async fn register_account(
        &self,
        token: &str,
        registration: &Registration,
        ini_password: &str,
        password: &str,
    ) -> Result<(), AccountManagerError> {
        check_kim_version(registration.kim_version.as_deref())?;
        let url = self.root.join(&format!("{ACCOUNT_MGMT_PATH}/account"));
        let mut call = self.call(
            Op::Register,
            Some(&registration.username),
            Method::POST,
            url,
            Some(token),
        );
        let ini = encode_secret("the initial password", ini_password)?;
        call.headers
            .push(("iniPassword", sensitive("the initial password", &ini)?));
        let mut body = serde_json::Map::new();
        if let Some(r) = &registration.reference_id {
            body.insert("referenceID".into(), r.clone().into());
        }
        body.insert("username".into(), registration.username.clone().into());
        body.insert(
            "password".into(),
            encode_secret("the password", password)?.as_str().into(),
        );
        if let Some(v) = &registration.kim_version {
            body.insert("kimVersion".into(), v.clone().into());
        }
        if let Some(d) = registration.data_time_to_live {
            body.insert("dataTimeToLive".into(), d.into());
        }
        if let Some(n) = registration.no_vzd_mail_entry {
            body.insert("noVzdMailEntry".into(), n.into());
        }
        call.body = Some(body.into());
        call.kim_version = registration.kim_version.clone();
        self.send(call).await.map(|_| ())
    }

    /// setAccount: applies `changes`, and a new password when one is given.
    pub async fn set_account(
        &self,
        token: &str,
        username: &str,
        password: &str,
        changes: &AccountChanges,
        new_password: Option<&str>,
    ) -> Result<(), AccountManagerError> {
        check_kim_version(changes.kim_version.as_deref())?;
        let mut call = self.with_password(Op::Set, token, username, password, Method::PUT, "")?;
        let mut body = serde_json::Map::new();
        if let Some(p) = new_password {
            body.insert(
                "password".into(),
                encode_secret("the new password", p)?.as_str().into(),
            );
        }
        if let Some(v) = &changes.kim_version {
            body.insert("kimVersion".into(), v.clone().into());
        }
        if let Some(d) = changes.data_time_to_live {
            body.insert("dataTimeToLive".into(), d.into());
        }
        if let Some(n) = changes.no_vzd_mail_entry {
            body.insert("noVzdMailEntry".into(), n.into());
        }
        call.body = Some(body.into());
        call.kim_version = changes.kim_version.clone();
        self.send(call).await.map(|_| ())
    }

    /// A call on `/account/{username}{tail}` with the `password` header.
    fn with_password<'a>(
        &self,
        op: Op,
        token: &'a str,
        username: &'a str,
        password: &str,
        method: Method,
        tail: &str,
    ) -> Result<Call<'a>, AccountManagerError> {
        let url = self.account_url(username, tail);
        let mut call = self.call(op, Some(username), method, url, Some(token));
        let encoded = encode_secret("the password", password)?;
        call.headers
            .push(("password", sensitive("the password", &encoded)?));
        Ok(call)
    }

    /// deregisterAccount: the account ends at the `deregDate` the provider
    /// confirms (see [`Self::get_account`]); until then it can be revoked.
    pub async fn deregister_account(
        &self,
        token: &str,
        username: &str,
        password: &str,
    ) -> Result<(), AccountManagerError> {
        let call = self.with_password(
            Op::Deregister,
            token,
            username,
            password,
            Method::DELETE,
            "",
        )?;
        self.send(call).await.map(|_| ())
    }

    /// getAccount.
    pub async fn get_account(
        &self,
        token: &str,
        username: &str,
        password: &str,
    ) -> Result<Account, AccountManagerError> {
        let call = self.with_password(Op::Get, token, username, password, Method::GET, "")?;
        Self::parse(Op::Get, &self.send(call).await?)
    }

    /// revokeDeregistration.
    pub async fn revoke_deregistration(
        &self,
        token: &str,
        username: &str,
        password: &str,
    ) -> Result<(), AccountManagerError> {
        let call = self.with_password(
            Op::Revoke,
            token,
            username,
            password,
            Method::PUT,
            "/revokeDeregistration",
        )?;
        self.send(call).await.map(|_| ())
    }

    /// getOTP, with a token of the card the address is on now: the one-time
    /// password, base64 as the service sent it, which is what setTID takes back.
    pub async fn get_otp(
        &self,
        token: &str,
        username: &str,
        password: &str,
    ) -> Result<Zeroizing<String>, AccountManagerError> {
        #[derive(serde::Deserialize)]
        struct OtpAnswer {
            otp: Option<String>,
        }
        let call = self.with_password(Op::Otp, token, username, password, Method::GET, "/OTP")?;
        let answer: OtpAnswer = Self::parse(Op::Otp, &self.send(call).await?)?;
        let otp = Zeroizing::new(answer.otp.unwrap_or_default());
        if otp.is_empty()
            || base64::engine::general_purpose::STANDARD
                .decode(otp.as_bytes())
                .is_err()
        {
            return Err(AccountManagerError::BadAnswer {
                operation: Op::Otp.what(),
                why: "the answer has no base64 otp".into(),
            });
        }
        Ok(otp)
    }

    /// setTID, with a token of the new card: moves the address to that card's
    /// Telematik-ID. `otp` is what [`Self::get_otp`] returned (base64).
    pub async fn set_telematik_id(
        &self,
        token: &str,
        username: &str,
        password: &str,
        otp: &str,
    ) -> Result<(), AccountManagerError> {
        let otp = otp.trim();
        if base64::engine::general_purpose::STANDARD
            .decode(otp)
            .is_err()
            || otp.len() > MAX_ENCODED_SECRET
        {
            return Err(AccountManagerError::BadInput {
                what: "the one-time password",
                why: "it is not the base64 text getOTP gave".into(),
            });
        }
        let mut call = self.with_password(
            Op::SetTid,
            token,
            username,
            password,
            Method::PUT,
            "/telematikID",
        )?;
        call.headers
            .push(("otp", sensitive("the one-time password", otp)?));
        self.send(call).await.map(|_| ())
    }

    /// createCert: a PKCS#12 (DER) with a new key and the TLS client certificate
    /// C.CM.TLS-CS (KOM-LE-A_2182-01, CN = `common_name` + "#CM"), protected with
    /// `cert_password` when given, not encrypted otherwise.
    pub async fn create_cert(
        &self,
        token: &str,
        username: &str,
        password: &str,
        common_name: &str,
        cert_password: Option<&str>,
    ) -> Result<Zeroizing<Vec<u8>>, AccountManagerError> {
        #[derive(serde::Deserialize)]
        struct CertAnswer {
            file: Option<String>,
        }
        if common_name.trim().is_empty() {
            return Err(AccountManagerError::BadInput {
                what: "the certificate's common name",
                why: "it is empty".into(),
            });
        }
        let mut call = self.with_password(
            Op::CreateCert,
            token,
            username,
            password,
            Method::POST,
            "/cert",
        )?;
        let mut body = serde_json::Map::new();
        body.insert("commonName".into(), common_name.into());
        if let Some(p) = cert_password {
            body.insert(
                "certPassword".into(),
                encode_secret("the certificate password", p)?
                    .as_str()
                    .into(),
            );
        }
        call.body = Some(body.into());
        let answer = Zeroizing::new(self.send(call).await?.to_vec());
        let parsed: CertAnswer = Self::parse(Op::CreateCert, &answer)?;
        let file = Zeroizing::new(parsed.file.unwrap_or_default());
        let der = base64::engine::general_purpose::STANDARD
            .decode(file.as_bytes())
            .ok()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| AccountManagerError::BadAnswer {
                operation: Op::CreateCert.what(),
                why: "the answer has no base64 PKCS#12 file".into(),
            })?;
        Ok(Zeroizing::new(der))
    }

    /// getOutOfOffice.
    pub async fn get_out_of_office(
        &self,
        token: &str,
        username: &str,
        password: &str,
    ) -> Result<OutOfOffice, AccountManagerError> {
        let call = self.with_password(
            Op::GetOutOfOffice,
            token,
            username,
            password,
            Method::GET,
            "/outofoffice",
        )?;
        Self::parse(Op::GetOutOfOffice, &self.send(call).await?)
    }

    /// updateOutOfOffice.
    pub async fn update_out_of_office(
        &self,
        token: &str,
        username: &str,
        password: &str,
        note: &OutOfOffice,
    ) -> Result<(), AccountManagerError> {
        let mut call = self.with_password(
            Op::UpdateOutOfOffice,
            token,
            username,
            password,
            Method::PUT,
            "/outofoffice",
        )?;
        call.body =
            Some(
                serde_json::to_value(note).map_err(|e| AccountManagerError::BadInput {
                    what: "the out-of-office note",
                    why: e.to_string(),
                })?,
            );
        self.send(call).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_percent_encoded_in_paths() {
        let connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())
            .unwrap()
            .build();
        let c = AccountManagerClient::new(
            HttpsUrl::parse("https://am.kim.test:8443/base/").unwrap(),
            AccountManagerClient::settings(std::sync::Arc::new(connector)),
        );
        assert_eq!(
            c.account_url("a+b/c d@x.de", "/OTP").to_string(),
            "https://am.kim.test:8443/base/AccountMgmt/v2.4/account/a%2Bb%2Fc%20d@x.de/OTP"
        );
    }

    #[test]
    fn secrets_are_base64_and_bounded() {
        assert_eq!(encode_secret("p", "geheim").unwrap().as_str(), "Z2VoZWlt");
        assert!(encode_secret("p", &"x".repeat(200)).is_err());
        assert!(check_kim_version(Some("1.5+")).is_ok());
        assert!(check_kim_version(Some("1.5.5")).is_err());
    }
}
