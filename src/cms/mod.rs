//! The CMS layer of gematik's KIM S/MIME profile (gemSMIME_KOMLE, spec reference
//! 1.4/1.5), on byte buffers: no I/O.
//!
//! kim-cm writes SignedData and AuthEnvelopedData itself (OpenSSL's CMS API cannot
//! write the profile's unprotected attributes, nor read them in OpenSSL 3.0), and
//! reads them with its own BER reader; OpenSSL supplies the primitives (RSA-PSS,
//! RSA-OAEP, AES-GCM) and the signature and path check on verification.

pub mod alg;
pub mod ber;
pub mod decrypt;
pub mod der;
pub mod encrypt;
pub mod oid;
pub mod recipient_emails;
pub mod sign;
pub mod verify;

pub use decrypt::{
    addressed_to, decrypt, decrypt_in_place, decrypt_in_place_with, key_trans_infos,
    recipient_emails_of, Decrypted, KeyTransInfo, OpenError,
};
pub use encrypt::{encrypt, encrypt_with, KeyTransport, SealError};
pub use recipient_emails::{RecipientEmail, RecipientEmails};
pub use sign::sign;
pub use verify::{verify, SignatureStatus, Verified};
