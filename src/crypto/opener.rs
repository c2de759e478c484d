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

    fn decrypt(&self, _address: &str, der: Vec<u8>) -> Result<Vec<u8>, DecryptError> {
        // the key whose certificate has a RecipientInfo, then one decryption in place
        let Some(k) = self.keys.iter().find(|k| cms::addressed_to(&der, &k.cert)) else {
            return Err(match cms::decrypt::parts_ok(&der) {
                Ok(()) => DecryptError::KeyUnavailable,
                Err(e) => decrypt_error(e),
            });
        };
        cms::decrypt_in_place(der, &k.cert, &k.key)
            .map(|d| d.content)
            .map_err(decrypt_error)
    }

    fn verify<'a>(&self, signed_der: &'a [u8]) -> Verification<'a> {
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
