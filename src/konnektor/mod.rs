//! The Konnektor client: the SOAP operations kim-cm needs of the practice's
//! Konnektor (gemSpec_CM_KOMLE 3.8, KOM-LE-A_2177), over verified TLS, found
//! through the Konnektor's service directory (`connector.sds`).
//!
//! In the TI the keys that sign and decrypt KIM mails live on the practice's smart
//! cards (SMC-B, HBA); only the Konnektor can use them. This module speaks the
//! wire format (docs/konnektor.md); which card to use for which mail is the
//! crypto provider's business ([`crate::crypto::konnektor`]), and no KIM rule
//! lives here.

pub mod auth;
pub mod client;
pub mod ops;
pub mod sds;
pub mod soap;
pub mod xml;

pub use client::{Konnektor, KonnektorSettings, KONNEKTOR_TIMEOUT};

/// Why a Konnektor call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KonnektorError {
    /// No answer: connection refused, TLS failed, timeout (KONNEKTOR_TIMEOUT).
    #[error("the Konnektor cannot be reached: {0}")]
    Unavailable(String),
    /// A SOAP fault with the gematik error code (GERROR:Code) when it has one.
    #[error("the Konnektor refused {operation}: {}{text}", code.map(|c| format!("error {c}: ")).unwrap_or_default())]
    Fault {
        operation: &'static str,
        code: Option<u32>,
        text: String,
    },
    /// The service directory lists no endpoint of an optional service (only the
    /// required ones are checked when it is read).
    #[error(
        "the Konnektor offers no {service} {version}.x in its service directory (connector.sds)"
    )]
    NotOffered {
        service: &'static str,
        version: &'static str,
    },
    /// An answer that is not the operation's response.
    #[error("the Konnektor's answer to {operation} is not understood: {why}")]
    Protocol {
        operation: &'static str,
        why: String,
    },
}

/// gemSpec_Kon: 4004 unknown MandantId, 4005 unknown ClientSystemId, 4006 unknown
/// WorkplaceId (the call context from the login name is wrong).
pub const CONTEXT_ERRORS: std::ops::RangeInclusive<u32> = 4004..=4006;

impl KonnektorError {
    /// The call context was refused (the client gets 501 / -ERR,
    /// Tab_SMTP_Verbindung, Tab_POP3_Verbindung).
    pub fn is_context_error(&self) -> bool {
        matches!(self, KonnektorError::Fault { code: Some(c), .. } if CONTEXT_ERRORS.contains(c))
    }
}
