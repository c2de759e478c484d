//! The CMS layer of gematik's KIM S/MIME profile (gemSMIME_KOMLE, spec reference
//! 1.4/1.5), on byte buffers: no I/O.
//!
//! This increment opens AuthEnvelopedData (decryption with the fetching user's key,
//! recipient-emails). Signing, encryption and verification follow.

pub mod ber;
pub mod decrypt;
pub mod oid;
pub mod recipient_emails;
pub mod verify;

pub use decrypt::{decrypt, recipient_emails_of, Decrypted, OpenError};
pub use recipient_emails::{RecipientEmail, RecipientEmails};
pub use verify::{verify, SignatureStatus, Verified};
