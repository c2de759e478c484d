//! AuthEnvelopedData of the KIM profile (gemSMIME_KOMLE, spec reference 1.4), written
//! by kim-cm: AES-256-GCM with a fresh key and a random 12-byte nonce, one
//! KeyTransRecipientInfo per certificate with RSAES-OAEP (SHA-256, MGF1-SHA-256) and
//! rid IssuerAndSerialNumber (KOM-LE-A_2108/2109), no originatorInfo (KOM-LE-A_2106),
//! and recipient-emails as unprotected attribute (KOM-LE-A_2107). OpenSSL has no
//! API for unauthAttrs, so the structure is built here around OpenSSL's primitives.

use openssl::md::Md;
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::symm::{encrypt_aead, Cipher};
use openssl::x509::X509Ref;

use super::decrypt::{GCM_NONCE_LEN, GCM_TAG_LEN};
use super::der;
use super::oid;

/// Why a structure could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("certificate {0} cannot be used for RSA-OAEP key transport")]
    UnusableCertificate(String),
    #[error("no recipient certificate")]
    NoRecipient,
    #[error("cryptography failed: {0}")]
    Crypto(String),
}

fn crypto(e: openssl::error::ErrorStack) -> SealError {
    SealError::Crypto(e.to_string())
}

/// AlgorithmIdentifier sha256 with NULL parameters, as in gematik's sample.
fn sha256_alg() -> Vec<u8> {
    der::seq(&[&der::oid(oid::SHA256), &[0x05, 0x00]])
}

/// RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 4055).
fn oaep_alg() -> Vec<u8> {
    let hash = der::tlv(0xa0, &sha256_alg());
    let mgf = der::tlv(0xa1, &der::seq(&[&der::oid(oid::MGF1), &sha256_alg()]));
    der::seq(&[&der::oid(oid::RSAES_OAEP), &der::seq(&[&hash, &mgf])])
}

/// IssuerAndSerialNumber of `cert`.
pub fn issuer_and_serial(cert: &X509Ref) -> Result<Vec<u8>, SealError> {
    let issuer = cert.issuer_name().to_der().map_err(crypto)?;
    let serial = cert.serial_number().to_bn().map_err(crypto)?.to_vec();
    Ok(der::seq(&[&issuer, &der::uint(&serial)]))
}

fn wrap_key(cek: &[u8], cert: &X509Ref) -> Result<Vec<u8>, SealError> {
    let name = || format!("{:?}", cert.subject_name());
    let pkey = cert
        .public_key()
        .map_err(|_| SealError::UnusableCertificate(name()))?;
    if pkey.rsa().is_err() {
        return Err(SealError::UnusableCertificate(name()));
    }
    let mut ctx = PkeyCtx::new(&pkey).map_err(crypto)?;
    ctx.encrypt_init().map_err(crypto)?;
    ctx.set_rsa_padding(Padding::PKCS1_OAEP).map_err(crypto)?;
    ctx.set_rsa_oaep_md(Md::sha256()).map_err(crypto)?;
    ctx.set_rsa_mgf1_md(Md::sha256()).map_err(crypto)?;
    let mut out = Vec::new();
    ctx.encrypt_to_vec(cek, &mut out).map_err(crypto)?;
    Ok(out)
}

/// Encrypts `content` for every certificate in `recipients`; `recipient_emails_attr`
/// is the DER of the recipient-emails Attribute (the same bytes as the signed one).
pub fn encrypt(
    content: &[u8],
    recipients: &[&X509Ref],
    recipient_emails_attr: &[u8],
) -> Result<Vec<u8>, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipient);
    }
    let cek = zeroize::Zeroizing::new(rand::random::<[u8; 32]>().to_vec());
    let nonce: [u8; GCM_NONCE_LEN] = rand::random();
    let mut tag = [0u8; GCM_TAG_LEN];
    let ciphertext = encrypt_aead(
        Cipher::aes_256_gcm(),
        &cek,
        Some(&nonce),
        &[],
        content,
        &mut tag,
    )
    .map_err(crypto)?;

    let mut infos = Vec::with_capacity(recipients.len());
    for cert in recipients {
        let ek = wrap_key(&cek, cert)?;
        infos.push(der::seq(&[
            &der::uint(&[0]),
            &issuer_and_serial(cert)?,
            &oaep_alg(),
            &der::octets(&ek),
        ]));
    }
    let gcm_params = der::seq(&[&der::octets(&nonce), &der::uint(&[GCM_TAG_LEN as u8])]);
    let content_alg = der::seq(&[&der::oid(oid::AES256_GCM), &gcm_params]);
    let eci = der::seq(&[
        &der::oid(oid::DATA),
        &content_alg,
        &der::tlv(0x80, &ciphertext),
    ]);
    let unauth = der::tlv(0xa2, recipient_emails_attr);
    let aed = der::seq(&[
        &der::uint(&[0]),
        &der::set_of(&infos),
        &eci,
        &der::octets(&tag),
        &unauth,
    ]);
    Ok(der::seq(&[
        &der::oid(oid::AUTH_ENVELOPED_DATA),
        &der::tlv(0xa0, &aed),
    ]))
}
