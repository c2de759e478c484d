//! Verifying a SignedData of the KIM profile: the signature (RSASSA-PSS, detected by
//! OpenSSL from the SignerInfo), then the certificate path against the trust anchors,
//! and the signed recipient-emails attribute (read with kim-cm's own BER reader, to
//! compare with the unprotected copy, KOM-LE-A_2048-01).

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::x509::store::{X509StoreBuilder, X509StoreRef};
use openssl::x509::X509;

use super::ber::{self, Tlv};
use super::oid;
use super::recipient_emails::RecipientEmails;

/// The verdict, in the terms of Tab_Verm_Sig_Prüf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureStatus {
    /// 01: signature and certificate path valid.
    Valid,
    /// 02: the signature or digest does not match the content.
    IntegrityViolated,
    /// 04: not a SignedData, or it does not parse.
    WrongFormat,
    /// 05: the signature is right, the certificate path is not valid.
    CertPathInvalid,
}

/// What verification found.
#[derive(Debug, Clone)]
pub struct Verified {
    pub status: SignatureStatus,
    /// The signed content, when the signature is mathematically right.
    pub content: Option<Vec<u8>>,
    pub signer: Option<X509>,
    pub recipient_emails: Option<RecipientEmails>,
}

impl Verified {
    fn wrong_format() -> Verified {
        Verified {
            status: SignatureStatus::WrongFormat,
            content: None,
            signer: None,
            recipient_emails: None,
        }
    }
}

/// The first certificate and the signed recipient-emails attribute of a SignedData.
fn profile_parts(der: &[u8]) -> Option<(Option<X509>, Option<RecipientEmails>)> {
    let (ci, _) = ber::read(der).ok()?;
    let ci = ci.children().ok()?;
    if !ci
        .first()
        .is_some_and(|o| o.tag == 0x06 && o.content == oid::SIGNED_DATA)
    {
        return None;
    }
    let sd = ci.get(1)?.children().ok()?.first()?.children().ok()?;
    let signer = sd
        .iter()
        .find(|t| t.tag == 0xa0)
        .and_then(|certs| certs.children().ok())
        .and_then(|c| c.first().and_then(|c| X509::from_der(c.raw).ok()));
    let signer_infos = sd.iter().rev().find(|t| t.tag == 0x31)?.children().ok()?;
    let si = signer_infos.first()?.children().ok()?;
    let attrs: Option<&Tlv<'_>> = si.iter().find(|t| t.tag == 0xa0);
    let mut re = None;
    for a in attrs
        .map(|a| a.children())
        .transpose()
        .ok()?
        .unwrap_or_default()
    {
        let f = a.children().ok()?;
        if f.first()
            .is_some_and(|o| o.tag == 0x06 && o.content == oid::RECIPIENT_EMAILS)
        {
            re = RecipientEmails::from_attribute(&a).ok();
        }
    }
    Some((signer, re))
}

/// Verifies `der` against `trust`.
pub fn verify(der: &[u8], trust: &X509StoreRef) -> Verified {
    let Some((signer, recipient_emails)) = profile_parts(der) else {
        return Verified::wrong_format();
    };
    let Ok(mut cms) = CmsContentInfo::from_der(der) else {
        return Verified::wrong_format();
    };
    let Ok(empty) = X509StoreBuilder::new().map(|b| b.build()) else {
        return Verified::wrong_format();
    };
    // first the mathematics alone, then the path
    let mut content = Vec::new();
    let math = cms.verify(
        None,
        Some(&empty),
        None,
        Some(&mut content),
        CMSOptions::NOVERIFY | CMSOptions::BINARY,
    );
    if math.is_err() {
        return Verified {
            status: SignatureStatus::IntegrityViolated,
            content: None,
            signer,
            recipient_emails,
        };
    }
    let path = cms.verify(None, Some(trust), None, None, CMSOptions::BINARY);
    Verified {
        status: if path.is_ok() {
            SignatureStatus::Valid
        } else {
            SignatureStatus::CertPathInvalid
        },
        content: Some(content),
        signer,
        recipient_emails,
    }
}
