//! The Telematik-ID of a TI certificate.
//!
//! gemSpec_CM_KOMLE KOM-LE-A_2178 / KOM-LE-A_2192-01: when one recipient's
//! encryption certificates carry different Telematik-IDs, the mail must not go to
//! that recipient (error 4005), so the sender has to read the ID out of each
//! certificate. In the TI's certificates (C.HCI.ENC, C.HP.ENC, gemSpec_PKI) it is
//! the `registrationNumber` of the Admission extension, OID 1.3.36.8.3.3 (Common
//! PKI / ISIS-MTT AdmissionSyntax):
//!
//! ```text
//! AdmissionSyntax ::= SEQUENCE { admissionAuthority GeneralName OPTIONAL,
//!                                contentsOfAdmissions SEQUENCE OF Admissions }
//! Admissions ::= SEQUENCE { admissionAuthority [0] EXPLICIT GeneralName OPTIONAL,
//!                           namingAuthority [1] EXPLICIT NamingAuthority OPTIONAL,
//!                           professionInfos SEQUENCE OF ProfessionInfo }
//! ProfessionInfo ::= SEQUENCE { namingAuthority [0] EXPLICIT NamingAuthority OPTIONAL,
//!                               professionItems SEQUENCE OF DirectoryString,
//!                               professionOIDs SEQUENCE OF OBJECT IDENTIFIER OPTIONAL,
//!                               registrationNumber PrintableString OPTIONAL,
//!                               addProfessionInfo OCTET STRING OPTIONAL }
//! ```
//!
//! The openssl crate has no accessor for arbitrary extensions, so the extension is
//! found by walking the certificate's DER with the CMS layer's BER reader, which
//! never panics and never trusts a length beyond its input. The writer is for the
//! test PKI, whose certificates carry an ID like the TI's do.

use openssl::x509::X509;

use crate::cms::ber::{self, Tlv};
use crate::cms::der;

/// id-isismtt-at-admission 1.3.36.8.3.3, DER content bytes.
pub const ADMISSION: &[u8] = &[0x2b, 0x24, 0x08, 0x03, 0x03];

/// The constructed bit of a tag byte (a BER OCTET STRING may be in pieces).
const CONSTRUCTED: u8 = 0x20;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_SEQUENCE: u8 = 0x30;
/// `[0]` constructed: Admissions.admissionAuthority, ProfessionInfo.namingAuthority.
const TAG_CONTEXT_0: u8 = 0xa0;
/// `[1]` constructed: Admissions.namingAuthority.
const TAG_CONTEXT_1: u8 = 0xa1;
/// `[3]` constructed: TBSCertificate.extensions.
const TAG_EXTENSIONS: u8 = 0xa3;

/// The Telematik-ID in `cert`: the registrationNumber of the first ProfessionInfo
/// that has one. None without an Admission extension, or when it (or the
/// certificate around it) is malformed.
pub fn telematik_id(cert: &X509) -> Option<String> {
    let der = cert.to_der().ok()?;
    from_extension(&extension_value(&der, ADMISSION)?)
}

/// The extnValue (the OCTET STRING's content) of the extension `oid` in the DER
/// certificate `cert`.
fn extension_value(cert: &[u8], oid: &[u8]) -> Option<Vec<u8>> {
    let (certificate, _) = ber::read(cert).ok()?;
    let certificate = ber::expect(&certificate, TAG_SEQUENCE, "Certificate").ok()?;
    let tbs = ber::expect(certificate.first()?, TAG_SEQUENCE, "TBSCertificate").ok()?;
    let extensions = tbs
        .iter()
        .find(|t| t.tag == TAG_EXTENSIONS)?
        .children()
        .ok()?;
    let extensions = ber::expect(extensions.first()?, TAG_SEQUENCE, "Extensions").ok()?;
    for extension in &extensions {
        let fields = ber::expect(extension, TAG_SEQUENCE, "Extension").ok()?;
        let (id, rest) = fields.split_first()?;
        if id.tag != TAG_OID || id.content != oid {
            continue;
        }
        let value = match rest {
            [critical, value] if critical.tag == TAG_BOOLEAN => value,
            [value] => value,
            _ => return None,
        };
        if value.tag & !CONSTRUCTED != TAG_OCTET_STRING {
            return None;
        }
        return value.octets().ok();
    }
    None
}

/// The Telematik-ID in an AdmissionSyntax (the extension's extnValue).
fn from_extension(value: &[u8]) -> Option<String> {
    let (syntax, rest) = ber::read(value).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let fields = ber::expect(&syntax, TAG_SEQUENCE, "AdmissionSyntax").ok()?;
    // A leading admissionAuthority is a GeneralName, a context-tagged choice: the
    // first SEQUENCE is contentsOfAdmissions.
    let contents = match fields.as_slice() {
        [contents] => contents,
        [authority, contents] if authority.tag != TAG_SEQUENCE => contents,
        _ => return None,
    };
    for admissions in ber::expect(contents, TAG_SEQUENCE, "contentsOfAdmissions").ok()? {
        let fields = ber::expect(&admissions, TAG_SEQUENCE, "Admissions").ok()?;
        let infos = skip_optional(&fields, &[TAG_CONTEXT_0, TAG_CONTEXT_1]);
        let [infos] = infos else {
            return None;
        };
        for info in ber::expect(infos, TAG_SEQUENCE, "professionInfos").ok()? {
            if let Some(id) = registration_number(&info)? {
                return Some(id);
            }
        }
    }
    None
}

/// The registrationNumber of one ProfessionInfo: Some(None) if it has none, None if
/// it is malformed.
fn registration_number(info: &Tlv<'_>) -> Option<Option<String>> {
    let fields = ber::expect(info, TAG_SEQUENCE, "ProfessionInfo").ok()?;
    let fields = skip_optional(&fields, &[TAG_CONTEXT_0]);
    let (items, rest) = fields.split_first()?;
    if items.tag != TAG_SEQUENCE {
        return None;
    }
    // professionOIDs, registrationNumber and addProfessionInfo, each optional, in order
    let rest = skip_optional(rest, &[TAG_SEQUENCE]);
    match rest {
        [] => Some(None),
        [number, ..] if number.tag == TAG_PRINTABLE_STRING => {
            match rest.get(1..)? {
                [] => {}
                [add] if add.tag == TAG_OCTET_STRING => {}
                _ => return None,
            }
            let id = std::str::from_utf8(number.content).ok()?;
            Some(Some(id.to_string()))
        }
        [add] if add.tag == TAG_OCTET_STRING => Some(None),
        _ => None,
    }
}

/// `fields` after the leading elements tagged, in order, with the optional `tags`.
fn skip_optional<'s, 'a>(mut fields: &'s [Tlv<'a>], tags: &[u8]) -> &'s [Tlv<'a>] {
    for tag in tags {
        if let Some((first, rest)) = fields.split_first() {
            if first.tag == *tag {
                fields = rest;
            }
        }
    }
    fields
}

/// The DER of an AdmissionSyntax (the extnValue content of an Admission extension)
/// with one ProfessionInfo: `profession_item` (e.g. "Betriebsstätte Arzt"),
/// `profession_oid` dotted (e.g. "1.2.276.0.76.4.50") and `telematik_id` as its
/// registrationNumber, as in gematik's certificates. For the test PKI: the caller
/// passes a Telematik-ID of PrintableString characters; a `profession_oid` that is
/// not a dotted object identifier is left out (professionOIDs is optional).
pub fn admission_extension_der(
    telematik_id: &str,
    profession_item: &str,
    profession_oid: &str,
) -> Vec<u8> {
    let items = der::seq(&[&der::tlv(TAG_UTF8_STRING, profession_item.as_bytes())]);
    let oids = dotted_oid(profession_oid).map(|o| der::seq(&[&der::oid(&o)]));
    let number = der::tlv(TAG_PRINTABLE_STRING, telematik_id.as_bytes());
    let info = match &oids {
        Some(oids) => der::seq(&[&items, oids, &number]),
        None => der::seq(&[&items, &number]),
    };
    let admissions = der::seq(&[&der::seq(&[&info])]);
    der::seq(&[&der::seq(&[&admissions])])
}

/// The DER content bytes of a dotted object identifier; None if it is not one.
fn dotted_oid(dotted: &str) -> Option<Vec<u8>> {
    let arcs = dotted
        .split('.')
        .map(|a| a.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    let (&first, rest) = arcs.split_first()?;
    let (&second, rest) = rest.split_first()?;
    if first > 2 || (first < 2 && second >= 40) {
        return None;
    }
    let mut out = Vec::new();
    for arc in
        std::iter::once(first.checked_mul(40)?.checked_add(second)?).chain(rest.iter().copied())
    {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut v = arc >> 7;
        while v > 0 {
            groups.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        out.extend(groups.iter().rev());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::{X509Extension, X509NameBuilder};

    const ID: &str = "1-2arvtst-ap000123";
    const ITEM: &str = "Betriebsstätte Arzt";
    const PROFESSION_OID: &str = "1.2.276.0.76.4.50";

    /// A self-signed certificate with `admission` as its Admission extension's value.
    fn cert(admission: Option<&[u8]>) -> X509 {
        let key = PKey::from_ec_key(
            EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
        )
        .unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "admission test")
            .unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(Asn1Time::days_from_now(0).unwrap().as_ref())
            .unwrap();
        b.set_not_after(Asn1Time::days_from_now(1).unwrap().as_ref())
            .unwrap();
        b.append_extension(
            openssl::x509::extension::BasicConstraints::new()
                .build()
                .unwrap(),
        )
        .unwrap();
        if let Some(value) = admission {
            b.append_extension(
                X509Extension::new_from_der(
                    &Asn1Object::from_str("1.3.36.8.3.3").unwrap(),
                    false,
                    &Asn1OctetString::new_from_bytes(value).unwrap(),
                )
                .unwrap(),
            )
            .unwrap();
        }
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    #[test]
    fn round_trip_through_a_certificate() {
        let value = admission_extension_der(ID, ITEM, PROFESSION_OID);
        assert_eq!(from_extension(&value).as_deref(), Some(ID));
        assert_eq!(telematik_id(&cert(Some(&value))).as_deref(), Some(ID));
        // the profession OID is written as OpenSSL would
        let oid = Asn1Object::from_str(PROFESSION_OID).unwrap();
        assert_eq!(dotted_oid(PROFESSION_OID).unwrap(), oid.as_slice());
        // without a usable profession OID the ID still round-trips
        let value = admission_extension_der(ID, ITEM, "not an oid");
        assert_eq!(from_extension(&value).as_deref(), Some(ID));
    }

    #[test]
    fn no_extension_is_none() {
        assert_eq!(telematik_id(&cert(None)), None);
        // an Admission without any registrationNumber
        let info = der::seq(&[&der::seq(&[&der::tlv(TAG_UTF8_STRING, ITEM.as_bytes())])]);
        let value = der::seq(&[&der::seq(&[&der::seq(&[&der::seq(&[&info])])])]);
        assert_eq!(from_extension(&value), None);
        assert_eq!(telematik_id(&cert(Some(&value))), None);
    }

    #[test]
    fn truncated_or_garbled_is_none() {
        let value = admission_extension_der(ID, ITEM, PROFESSION_OID);
        for cut in 0..value.len() {
            assert_eq!(from_extension(&value[..cut]), None, "cut at {cut}");
            assert_eq!(
                telematik_id(&cert(Some(&value[..cut]))),
                None,
                "cut at {cut}"
            );
        }
        let mut trailing = value.clone();
        trailing.push(0);
        assert_eq!(from_extension(&trailing), None);
        assert_eq!(telematik_id(&cert(Some(b"garbage"))), None);
        // flipped bits anywhere: no panic, whatever comes out
        for pos in 0..value.len() {
            for bit in 0..8 {
                let mut v = value.clone();
                v[pos] ^= 1 << bit;
                let _ = from_extension(&v);
            }
        }
        // and in the certificate around it
        let der = cert(Some(&value)).to_der().unwrap();
        for cut in 0..der.len() {
            assert_eq!(
                extension_value(&der[..cut], ADMISSION),
                None,
                "cut at {cut}"
            );
        }
        for pos in 0..der.len() {
            let mut d = der.clone();
            d[pos] ^= 0x80;
            let _ = extension_value(&d, ADMISSION).map(|v| from_extension(&v));
        }
    }

    #[test]
    fn leading_admission_authority_and_optional_fields() {
        // admissionAuthority: directoryName [4] { C=DE, O=gematik }
        let rdn = |oid: &[u8], v: &str| {
            der::set_of(&[der::seq(&[&der::oid(oid), &der::tlv(0x13, v.as_bytes())])])
        };
        let name = der::seq(&[
            &rdn(&[0x55, 0x04, 0x06], "DE"),
            &rdn(&[0x55, 0x04, 0x0a], "gematik"),
        ]);
        let authority = der::tlv(0xa4, &name);
        let naming = der::seq(&[&der::tlv(0x16, b"https://www.gematik.de")]);
        let items = der::seq(&[&der::tlv(TAG_UTF8_STRING, ITEM.as_bytes())]);
        let oids = der::seq(&[&der::oid(&dotted_oid(PROFESSION_OID).unwrap())]);
        // the first ProfessionInfo has no registrationNumber, the second one has
        let without = der::seq(&[&der::tlv(TAG_CONTEXT_0, &naming), &items, &oids]);
        let with = der::seq(&[
            &items,
            &der::tlv(TAG_PRINTABLE_STRING, ID.as_bytes()),
            &der::octets(b"extra"),
        ]);
        let admissions = der::seq(&[
            &der::tlv(TAG_CONTEXT_0, &authority),
            &der::tlv(TAG_CONTEXT_1, &naming),
            &der::seq(&[&without, &with]),
        ]);
        let value = der::seq(&[&authority, &der::seq(&[&admissions])]);
        assert_eq!(from_extension(&value).as_deref(), Some(ID));
        assert_eq!(telematik_id(&cert(Some(&value))).as_deref(), Some(ID));
        // two leading SEQUENCEs are not an AdmissionSyntax
        let bad = der::seq(&[&der::seq(&[]), &der::seq(&[&admissions])]);
        assert_eq!(from_extension(&bad), None);
    }
}
