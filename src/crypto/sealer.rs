//! The send pipeline's cryptography with software keys: kim-cm's own CMS writer
//! signs with the sender's signing key and encrypts for the given certificates.

use time::OffsetDateTime;

use super::software::SoftwareKeys;
use crate::cms::{self, recipient_emails};
use crate::kim::seal::{CertFor, Sealer};

/// Seals mails for the accounts whose keys are in `keys`.
pub struct SoftwareSealer<'a> {
    pub keys: &'a SoftwareKeys,
}

/// The recipient-emails attribute of `entries` (KOM-LE-A_2027, KOM-LE-A_2115-02).
pub(super) fn attribute(entries: &[CertFor]) -> Result<Vec<u8>, String> {
    let pairs: Vec<_> = entries
        .iter()
        .map(|(c, a)| (c.as_ref(), a.as_str()))
        .collect();
    recipient_emails::attribute(&pairs).map_err(|e| e.to_string())
}

impl Sealer for SoftwareSealer<'_> {
    fn sign(
        &self,
        sender: &str,
        content: &[&[u8]],
        entries: &[CertFor],
    ) -> Result<Vec<u8>, String> {
        let keys = self.keys.account(sender).ok_or_else(|| {
            format!("no signing key is configured for {sender} (signing_pkcs12 in its [[account]])")
        })?;
        let attr = attribute(entries)?;
        cms::sign(
            content,
            &keys.signing.cert,
            &keys.signing.key,
            &attr,
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| e.to_string())
    }

    fn encrypt(&self, content: &[&[u8]], entries: &[CertFor]) -> Result<Vec<u8>, String> {
        let attr = attribute(entries)?;
        let certs: Vec<_> = entries.iter().map(|(c, _)| c.as_ref()).collect();
        cms::encrypt(content, &certs, &attr).map_err(|e| e.to_string())
    }
}
