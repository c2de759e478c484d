//! Which operation a request is: the paths of AccountManager.yaml 2.4.0 under its
//! server URL `/AccountMgmt/v2.4/`, and ServiceInformation.yaml 1.0.3's
//! `/ServiceInformation/v1.0/serviceinfo`. The user name in a path is
//! percent-decoded.

use hyper::{Method, StatusCode};
use percent_encoding::percent_decode_str;

/// AccountManager.yaml `servers`, without the trailing `/`.
pub const ACCOUNT_MGMT_BASE: &str = "/AccountMgmt/v2.4";
/// ServiceInformation.yaml `servers`, without the trailing `/`.
pub const SERVICE_INFO_BASE: &str = "/ServiceInformation/v1.0";

/// The operations, by the yaml's operationId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    GetServiceInformation,
    RegisterAccount,
    SetAccount,
    DeregisterAccount,
    GetAccount,
    RevokeDeregistration,
    GetOtp,
    SetTid,
    CreateCert,
    GetOutOfOffice,
    UpdateOutOfOffice,
}

impl Operation {
    /// The yaml's operationId.
    pub fn name(self) -> &'static str {
        match self {
            Operation::GetServiceInformation => "getServiceInformation",
            Operation::RegisterAccount => "registerAccount",
            Operation::SetAccount => "setAccount",
            Operation::DeregisterAccount => "deregisterAccount",
            Operation::GetAccount => "getAccount",
            Operation::RevokeDeregistration => "revokeDeregistration",
            Operation::GetOtp => "getOTP",
            Operation::SetTid => "setTID",
            Operation::CreateCert => "createCert",
            Operation::GetOutOfOffice => "getOutOfOffice",
            Operation::UpdateOutOfOffice => "updateOutOfOffice",
        }
    }

    /// Whether the operation needs `KIMBearerAuth` (the AccountManager.yaml's
    /// global `security`; ServiceInformation.yaml declares none).
    pub fn needs_bearer(self) -> bool {
        self != Operation::GetServiceInformation
    }

    /// Whether the yaml lists 502 (VZD, or for createCert the CMP service, cannot
    /// be reached) for the operation.
    pub fn may_answer_502(self) -> bool {
        !matches!(
            self,
            Operation::GetServiceInformation
                | Operation::GetOtp
                | Operation::GetOutOfOffice
                | Operation::UpdateOutOfOffice
        )
    }
}

/// A request that is no operation: the status (404 or 405) and why.
pub type NoRoute = (StatusCode, &'static str);

/// The operation of `method` on `path`, and the user name in the path if any.
pub fn route(method: &Method, path: &str) -> Result<(Operation, Option<String>), NoRoute> {
    const NOT_FOUND: NoRoute = (StatusCode::NOT_FOUND, "no such resource");
    const NOT_ALLOWED: NoRoute = (StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    if path == format!("{SERVICE_INFO_BASE}/serviceinfo") {
        return match *method {
            Method::GET => Ok((Operation::GetServiceInformation, None)),
            _ => Err(NOT_ALLOWED),
        };
    }
    let rest = path
        .strip_prefix(ACCOUNT_MGMT_BASE)
        .and_then(|r| r.strip_prefix("/account"))
        .ok_or(NOT_FOUND)?;
    if rest.is_empty() {
        return match *method {
            Method::POST => Ok((Operation::RegisterAccount, None)),
            _ => Err(NOT_ALLOWED),
        };
    }
    let rest = rest.strip_prefix('/').ok_or(NOT_FOUND)?;
    let (user, tail) = match rest.split_once('/') {
        Some((u, t)) => (u, Some(t)),
        None => (rest, None),
    };
    let user = percent_decode_str(user)
        .decode_utf8()
        .map_err(|_| NOT_FOUND)?
        .into_owned();
    if user.is_empty() {
        return Err(NOT_FOUND);
    }
    let op = match (tail, method.clone()) {
        (None, Method::PUT) => Operation::SetAccount,
        (None, Method::DELETE) => Operation::DeregisterAccount,
        (None, Method::GET) => Operation::GetAccount,
        (Some("revokeDeregistration"), Method::PUT) => Operation::RevokeDeregistration,
        (Some("OTP"), Method::GET) => Operation::GetOtp,
        (Some("telematikID"), Method::PUT) => Operation::SetTid,
        (Some("cert"), Method::POST) => Operation::CreateCert,
        (Some("outofoffice"), Method::GET) => Operation::GetOutOfOffice,
        (Some("outofoffice"), Method::PUT) => Operation::UpdateOutOfOffice,
        (
            None | Some("revokeDeregistration" | "OTP" | "telematikID" | "cert" | "outofoffice"),
            _,
        ) => return Err(NOT_ALLOWED),
        _ => return Err(NOT_FOUND),
    };
    Ok((op, Some(user)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_the_yaml() {
        let r = |m: Method, p: &str| route(&m, p);
        assert_eq!(
            r(Method::GET, "/ServiceInformation/v1.0/serviceinfo")
                .unwrap()
                .0,
            Operation::GetServiceInformation
        );
        assert_eq!(
            r(Method::POST, "/AccountMgmt/v2.4/account").unwrap().0,
            Operation::RegisterAccount
        );
        assert_eq!(
            r(Method::GET, "/AccountMgmt/v2.4/account/a%2Bb%40x.de/OTP").unwrap(),
            (Operation::GetOtp, Some("a+b@x.de".to_string()))
        );
        assert_eq!(
            r(
                Method::PUT,
                "/AccountMgmt/v2.4/account/a@x.de/revokeDeregistration"
            )
            .unwrap()
            .0,
            Operation::RevokeDeregistration
        );
        assert_eq!(
            r(Method::POST, "/AccountMgmt/v2.4/account/a@x.de")
                .unwrap_err()
                .0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            r(Method::GET, "/AccountMgmt/v2.3/account/a@x.de")
                .unwrap_err()
                .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            r(Method::GET, "/AccountMgmt/v2.4/account/a@x.de/otp")
                .unwrap_err()
                .0,
            StatusCode::NOT_FOUND
        );
    }
}
