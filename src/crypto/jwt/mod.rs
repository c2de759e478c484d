//! The JSON Web Token kim-cm shows the Account Manager of its Fachdienst at
//! registration (gemSpec_CM_KOMLE A_19457-02): `{"alg":"PS256","typ":"JWT","x5c":
//! [AUT certificate]}` and `{"nbf": now}`, signed RSASSA-PSS with the AUT key of
//! the practice's SMC-B (or the physician's HBA).
//!
//! In the TI that key is on the card, and the Konnektor signs the token's hash
//! through ExternalAuthenticate ([`crate::konnektor::auth`]); for the sandbox and
//! setups without a Konnektor the key is a PKCS#12 file (`aut_pkcs12`). The admin
//! module asks one question, [`JwtSource::jwt_for`], and never sees which.
//! [`token`] builds and checks the token itself.

pub mod provider;
pub mod token;

pub use provider::{JwtProviders, JwtSource};
pub use token::{verify, Verified, VerifyError};

/// Why no token could be made for an account; the text says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// The account has neither `aut_pkcs12` nor `konnektor`.
    #[error("{address} has no AUT key for the Account Manager's JWT: set aut_pkcs12 (with pkcs12_password_file) or konnektor = \"<id>\" in its [[account]]")]
    NoKey { address: String },
    /// The Konnektor (or the account's link to it) could not make the token.
    #[error("the Konnektor could not sign the JWT for {address}: {why}")]
    Konnektor { address: String, why: String },
    /// A software key that does not sign.
    #[error("the AUT key of {address} could not sign the JWT: {why}")]
    Software { address: String, why: String },
}
