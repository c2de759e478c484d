//! The recipient-emails attribute (1.2.276.0.76.4.173, KOM-LE-A_2114-01): which KIM
//! address each RecipientInfo's certificate belongs to.
//!
//! ```asn1
//! RecipientEmails ::= SET SIZE (1..MAX) OF RecipientEmail
//! RecipientEmail  ::= SEQUENCE { emailAddress IA5String, rid IssuerAndSerialNumber }
//! ```

use openssl::bn::BigNum;
use openssl::x509::X509Ref;

use super::ber::{self, BerError, Tlv};
use super::der;
use super::encrypt::SealError;
use super::oid;

/// One entry: an address and the certificate (issuer, serial) it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientEmail {
    pub email: String,
    /// The certificate's issuer Name, DER, as in the certificate.
    pub issuer_der: Vec<u8>,
    /// The serial number's INTEGER content bytes.
    pub serial: Vec<u8>,
}

/// A parsed attribute, with its DER to compare signed and unprotected copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientEmails {
    pub entries: Vec<RecipientEmail>,
    /// The whole Attribute (SEQUENCE { OID, SET }) as it was encoded.
    pub attribute_der: Vec<u8>,
}

/// True when `issuer_der`/`serial` name `cert` (IssuerAndSerialNumber).
pub fn names_cert(issuer_der: &[u8], serial: &[u8], cert: &X509Ref) -> bool {
    let Ok(issuer) = cert.issuer_name().to_der() else {
        return false;
    };
    let ours = cert.serial_number().to_bn().ok();
    let theirs = BigNum::from_slice(serial).ok();
    issuer == issuer_der && matches!((ours, theirs), (Some(a), Some(b)) if a == b)
}

impl RecipientEmails {
    /// Parses an Attribute element whose type is recipient-emails.
    pub fn from_attribute(attr: &Tlv<'_>) -> Result<RecipientEmails, BerError> {
        let bad = |what| BerError { offset: 0, what };
        let parts = ber::expect(attr, 0x30, "attribute is not a SEQUENCE")?;
        let (Some(oid_t), Some(values)) = (parts.first(), parts.get(1)) else {
            return Err(bad("attribute without values"));
        };
        if oid_t.tag != 0x06 || oid_t.content != oid::RECIPIENT_EMAILS {
            return Err(bad("not the recipient-emails attribute"));
        }
        let mut entries = Vec::new();
        for v in ber::expect(values, 0x31, "attribute values are not a SET")? {
            // tolerate both SET OF RecipientEmail and SET { SET OF RecipientEmail }
            let list = if v.tag == 0x31 {
                v.children()?
            } else {
                vec![v]
            };
            for e in list {
                let f = ber::expect(&e, 0x30, "RecipientEmail is not a SEQUENCE")?;
                let (Some(mail), Some(rid)) = (f.first(), f.get(1)) else {
                    return Err(bad("RecipientEmail incomplete"));
                };
                if mail.tag != 0x16 {
                    return Err(bad("emailAddress is not an IA5String"));
                }
                let r = ber::expect(rid, 0x30, "rid is not IssuerAndSerialNumber")?;
                let (Some(issuer), Some(serial)) = (r.first(), r.get(1)) else {
                    return Err(bad("IssuerAndSerialNumber incomplete"));
                };
                if serial.tag != 0x02 {
                    return Err(bad("serial is not an INTEGER"));
                }
                entries.push(RecipientEmail {
                    email: String::from_utf8_lossy(mail.content).into_owned(),
                    issuer_der: issuer.raw.to_vec(),
                    serial: serial.content.to_vec(),
                });
            }
        }
        Ok(RecipientEmails {
            entries,
            attribute_der: attr.raw.to_vec(),
        })
    }

    /// The addresses, in order.
    pub fn emails(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.email.clone()).collect()
    }

    /// The entries of `cert`.
    pub fn for_cert(&self, cert: &X509Ref) -> Vec<&RecipientEmail> {
        self.entries
            .iter()
            .filter(|e| names_cert(&e.issuer_der, &e.serial, cert))
            .collect()
    }
}

/// The recipient-emails Attribute (DER) for `entries`: one RecipientEmail per
/// certificate with the address it belongs to (KOM-LE-A_2115-02). The same bytes go
/// into the signed attributes and the unprotected ones (KOM-LE-A_2116).
pub fn attribute(entries: &[(&X509Ref, &str)]) -> Result<Vec<u8>, SealError> {
    let crypto = |e: openssl::error::ErrorStack| SealError::Crypto(e.to_string());
    let mut values = Vec::with_capacity(entries.len());
    for (cert, email) in entries {
        // emailAddress is an IA5String: KIM addresses are ASCII
        if !email.is_ascii() {
            return Err(SealError::NotAscii(email.to_string()));
        }
        let issuer = cert.issuer_name().to_der().map_err(crypto)?;
        let serial = cert.serial_number().to_bn().map_err(crypto)?.to_vec();
        let rid = der::seq(&[&issuer, &der::uint(&serial)]);
        values.push(der::seq(&[&der::tlv(0x16, email.as_bytes()), &rid]));
    }
    Ok(der::seq(&[
        &der::oid(oid::RECIPIENT_EMAILS),
        &der::set_of(&values),
    ]))
}
