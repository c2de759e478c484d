//! What can go wrong with an Account Manager operation, each as a sentence an
//! admin can act on. Every status the yaml documents for an operation has its
//! variant; anything else is [`AccountManagerError::Undocumented`] with the status
//! and the start of the body, never swallowed. The service's own message and
//! `traceId` (CommonSchemas.yaml `Error`) are kept, so the provider's support can
//! find the call.

use std::fmt;

use hyper::StatusCode;

use crate::http::client::HttpError;

/// How much of an unexpected body an error shows.
pub const MAX_SHOWN_BODY: usize = 300;

/// What the service said with a refusal: the Error object, or the start of
/// whatever body it sent instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSays {
    pub message: String,
    pub trace_id: Option<String>,
}

impl ServerSays {
    /// Reads an Error object from `body`; a body that is none is shown, cut to
    /// [`MAX_SHOWN_BODY`] characters with control characters replaced.
    pub fn from_body(body: &[u8]) -> ServerSays {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Error {
            message: Option<String>,
            trace_id: Option<String>,
        }
        match serde_json::from_slice::<Error>(body) {
            Ok(e) => ServerSays {
                message: shown(e.message.as_deref().unwrap_or("")),
                trace_id: e.trace_id.map(|t| shown(&t)),
            },
            Err(_) => ServerSays {
                message: shown(&String::from_utf8_lossy(body)),
                trace_id: None,
            },
        }
    }
}

/// `text` cut to [`MAX_SHOWN_BODY`] characters, control characters as `�`.
pub fn shown(text: &str) -> String {
    let mut out: String = text
        .trim()
        .chars()
        .take(MAX_SHOWN_BODY)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if text.trim().chars().count() > MAX_SHOWN_BODY {
        out.push('…');
    }
    out
}

impl fmt::Display for ServerSays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.message.is_empty(), &self.trace_id) {
            (true, None) => f.write_str("no message"),
            (true, Some(t)) => write!(f, "trace id {t}"),
            (false, None) => write!(f, "\"{}\"", self.message),
            (false, Some(t)) => write!(f, "\"{}\", trace id {t}", self.message),
        }
    }
}

/// Why an Account Manager operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountManagerError {
    #[error("the Account Manager could not be asked to {operation}: {source}; check account_manager_url and the network, then try again")]
    Transport {
        operation: &'static str,
        #[source]
        source: HttpError,
    },
    #[error("the Account Manager refused the {operation} request as malformed ({says}); this is a fault of kim-cm or of its input, please report it")]
    BadRequest {
        operation: &'static str,
        says: ServerSays,
    },
    #[error("the Account Manager refused the authentication for {operation} ({says}): check the account's password (when registering: the reference id and initial password from your KIM provider) and that the card used is the account's, with a valid certificate")]
    AuthenticationRefused {
        operation: &'static str,
        says: ServerSays,
    },
    #[error("the KIM account {account} has no deregistration to revoke ({says})")]
    NotDeregistered { account: String, says: ServerSays },
    #[error("the one-time password for {account} is not valid ({says}): request a new one with the previous card (account otp) and enter it exactly as shown")]
    InvalidOtp { account: String, says: ServerSays },
    #[error("the one-time password for {account} has expired ({says}): request a new one with the previous card (account otp) and use it right away")]
    OtpExpired { account: String, says: ServerSays },
    #[error("the Account Manager has no KIM account {account} ({says}): check the address, or register the account first")]
    UnknownAccount { account: String, says: ServerSays },
    #[error("the address {account} is already taken, or the reference id is already registered ({says}): choose another address, or ask your KIM provider")]
    AddressTaken { account: String, says: ServerSays },
    #[error("{} ({says})", password_rules(policy.as_deref()))]
    PasswordRules {
        /// ServiceInformation `passwordPolicyDisplay`, when it could be read.
        policy: Option<String>,
        says: ServerSays,
    },
    #[error("the KIM version {} is not supported by your KIM provider ({says}): choose a version the provider supports", version.as_deref().unwrap_or("sent"))]
    KimVersion {
        version: Option<String>,
        says: ServerSays,
    },
    #[error("the directory entry (VZD) of {account} is locked, it is marked inactive ({says}): nothing was changed; ask your KIM provider or the card's issuer to activate the entry")]
    DirectoryLocked { account: String, says: ServerSays },
    #[error("the Account Manager cannot reach the {} ({says}): nothing was changed; try again later", if *certificates { "certificate service (CMP)" } else { "directory service (VZD)" })]
    DirectoryUnreachable {
        /// createCert's 502 is about the CMP service.
        certificates: bool,
        says: ServerSays,
    },
    #[error("the Account Manager failed internally at {operation} ({says}); try again later, and give your KIM provider the trace id if it persists")]
    ServerError {
        operation: &'static str,
        says: ServerSays,
    },
    #[error("the Account Manager answered {operation} with {status}, which its interface does not document ({says}); try again later, or give your KIM provider this message")]
    Undocumented {
        operation: &'static str,
        status: StatusCode,
        says: ServerSays,
    },
    #[error("the Account Manager's answer to {operation} cannot be read ({why}); give your KIM provider this message")]
    BadAnswer {
        operation: &'static str,
        why: String,
    },
    #[error("{what} cannot be sent: {why}")]
    BadInput { what: &'static str, why: String },
}

fn password_rules(policy: Option<&str>) -> String {
    match policy {
        Some(p) if !p.trim().is_empty() => format!(
            "the password (or user name) does not comply with your KIM provider's rules; choose one that does: {}",
            p.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
        _ => "the password (or user name) does not comply with your KIM provider's rules; choose another one (the rules could not be read from the service information)".into(),
    }
}

impl AccountManagerError {
    /// The HTTP status the service answered, when it answered.
    pub fn status(&self) -> Option<u16> {
        use AccountManagerError::*;
        Some(match self {
            BadRequest { .. } => 400,
            AuthenticationRefused { .. } => 401,
            NotDeregistered { .. } | InvalidOtp { .. } => 403,
            UnknownAccount { .. } => 404,
            OtpExpired { .. } => 408,
            AddressTaken { .. } => 409,
            PasswordRules { .. } => 420,
            KimVersion { .. } => 422,
            DirectoryLocked { .. } => 423,
            ServerError { .. } => 500,
            DirectoryUnreachable { .. } => 502,
            Undocumented { status, .. } => status.as_u16(),
            Transport { .. } | BadAnswer { .. } | BadInput { .. } => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_carry_what_the_service_said() {
        let says = ServerSays::from_body(br#"{"message":"taken","traceId":"19aaf69260f63694"}"#);
        let e = AccountManagerError::AddressTaken {
            account: "a@x.de".into(),
            says,
        };
        let text = e.to_string();
        assert!(text.contains("a@x.de is already taken"), "{text}");
        assert!(
            text.contains("\"taken\", trace id 19aaf69260f63694"),
            "{text}"
        );
        let long = "x\n".repeat(1000);
        let says = ServerSays::from_body(long.as_bytes());
        assert!(says.message.chars().count() <= MAX_SHOWN_BODY + 1);
        assert!(!says.message.contains('\n'));
        let e = AccountManagerError::PasswordRules {
            policy: Some("At least\n  12 characters".into()),
            says: ServerSays::default(),
        };
        assert!(e
            .to_string()
            .contains("choose one that does: At least 12 characters"));
    }
}
