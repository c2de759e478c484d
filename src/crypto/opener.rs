//! The receive pipeline's cryptography with software keys: kim-cm's own CMS reader
//! for decryption, OpenSSL for signature verification.

use openssl::x509::store::X509Store;

use super::software::KeyPair;
use crate::cms::{self, OpenError, SignatureStatus};
use crate::kim::receive::{DecryptError, Opener, SignatureCheck, Verification};

/// Opens mails for one account with its encryption keys.
pub struct SoftwareOpener<'a> {
    /// The fetching user's encryption keys (KOM-LE-A_2045: no one else's).
    pub keys: &'a [KeyPair],
    pub trust: &'a X509Store,
}

fn decrypt_error(e: OpenError) -> DecryptError {
    match e {
        OpenError::NotForThisKey => DecryptError::KeyUnavailable,
        OpenError::WrongFormat(_) | OpenError::Unsupported(_) => DecryptError::WrongFormat,
        OpenError::Corrupted => DecryptError::Corrupted,
    }
}

impl Opener for SoftwareOpener<'_> {
    fn recipient_emails(&self, der: &[u8]) -> Result<(Vec<String>, Vec<u8>), DecryptError> {
        match cms::recipient_emails_of(der).map_err(decrypt_error)? {
            Some(re) => Ok((re.emails(), re.attribute_der)),
            // KOM-LE-A_2107: unauthAttrs are mandatory
            None => Err(DecryptError::WrongFormat),
        }
    }

    fn decrypt(&self, _address: &str, der: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let mut last = DecryptError::KeyUnavailable;
        for k in self.keys {
            match cms::decrypt(der, &k.cert, &k.key) {
                Ok(d) => return Ok(d.content),
                Err(OpenError::NotForThisKey) => {}
                Err(e) => last = decrypt_error(e),
            }
        }
        Err(last)
    }

    fn verify(&self, signed_der: &[u8]) -> Verification {
        let v = cms::verify(signed_der, self.trust);
        Verification {
            check: match v.status {
                SignatureStatus::Valid => SignatureCheck::Valid,
                SignatureStatus::IntegrityViolated => SignatureCheck::IntegrityViolated,
                SignatureStatus::WrongFormat => SignatureCheck::WrongFormat,
                SignatureStatus::CertPathInvalid => SignatureCheck::CertPathInvalid,
            },
            content: v.content,
            recipient_emails: v.recipient_emails.map(|r| r.attribute_der),
        }
    }
}
