//! The AlgorithmIdentifiers of the KIM profile, DER, exactly as gematik's sample
//! writes them (hash parameters as explicit NULL).

use super::der;
use super::oid;

/// RSASSA-PSS salt length of the profile (gemSpec_Krypt: 32 bytes for SHA-256).
pub const PSS_SALT_LEN: u8 = 32;

/// sha256 with NULL parameters.
pub fn sha256() -> Vec<u8> {
    der::seq(&[&der::oid(oid::SHA256), &[0x05, 0x00]])
}

/// MGF1 with SHA-256.
fn mgf1_sha256() -> Vec<u8> {
    der::seq(&[&der::oid(oid::MGF1), &sha256()])
}

/// RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 4055).
pub fn rsaes_oaep() -> Vec<u8> {
    let hash = der::tlv(0xa0, &sha256());
    let mgf = der::tlv(0xa1, &mgf1_sha256());
    der::seq(&[&der::oid(oid::RSAES_OAEP), &der::seq(&[&hash, &mgf])])
}

/// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (RFC 4055).
pub fn rsassa_pss() -> Vec<u8> {
    let hash = der::tlv(0xa0, &sha256());
    let mgf = der::tlv(0xa1, &mgf1_sha256());
    let salt = der::tlv(0xa2, &der::uint(&[PSS_SALT_LEN]));
    der::seq(&[&der::oid(oid::RSASSA_PSS), &der::seq(&[&hash, &mgf, &salt])])
}

/// The TI's ECIES key transport, without parameters (see [`oid::TI_ECIES`]).
pub fn ti_ecies() -> Vec<u8> {
    der::seq(&[&der::oid(oid::TI_ECIES)])
}
