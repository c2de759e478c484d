//! The CMS layer of gematik's KIM S/MIME profile (gemSMIME_KOMLE, spec reference
//! 1.4/1.5), on byte buffers: no I/O.
//!
//! Built so far: AuthEnvelopedData both ways, SignedData verification, the
//! recipient-emails attribute. Signing follows.

pub mod ber;
pub mod decrypt;
pub mod der;
pub mod encrypt;
pub mod oid;
pub mod recipient_emails;
pub mod verify;

pub use decrypt::{decrypt, recipient_emails_of, Decrypted, OpenError};
pub use encrypt::{encrypt, SealError};
pub use recipient_emails::{RecipientEmail, RecipientEmails};
pub use verify::{verify, SignatureStatus, Verified};
