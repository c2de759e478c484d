//! AuthEnvelopedData of the KIM profile (gemSMIME_KOMLE, spec reference 1.4), written
//! by kim-cm: AES-256-GCM with a fresh key and a random 12-byte nonce, one
//! KeyTransRecipientInfo per certificate with RSAES-OAEP (SHA-256, MGF1-SHA-256) and
//! rid IssuerAndSerialNumber (KOM-LE-A_2108/2109), no originatorInfo (KOM-LE-A_2106),
//! and recipient-emails as unprotected attribute (KOM-LE-A_2107). OpenSSL has no
//! API for unauthAttrs, so the structure is built here around OpenSSL's primitives.
//!
//! kim-cm wraps content keys with RSA only: an ECC encryption certificate (C.ENC_ECC)
//! needs the TI's ECIES, which the Konnektor does on its side; the send pipeline
//! leaves such certificates out before it gets here (A_17472). The key transport is
//! a parameter of [`encrypt_with`], so that the testbed's Konnektor simulator can
//! write the ECIES RecipientInfos with the same structure.

use openssl::md::Md;
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};
use openssl::x509::X509Ref;

use super::decrypt::{GCM_NONCE_LEN, GCM_TAG_LEN};
use super::{alg, der, oid};

/// Why a structure could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("certificate {0} cannot be used for RSA-OAEP key transport (an ECC certificate is for the Konnektor's ECIES only)")]
    UnusableCertificate(String),
    #[error("the address {0} is not ASCII and cannot be written into recipient-emails")]
    NotAscii(String),
    #[error("no recipient certificate")]
    NoRecipient,
    #[error("cryptography failed: {0}")]
    Crypto(String),
}

fn crypto(e: openssl::error::ErrorStack) -> SealError {
    SealError::Crypto(e.to_string())
}

/// IssuerAndSerialNumber of `cert`.
pub fn issuer_and_serial(cert: &X509Ref) -> Result<Vec<u8>, SealError> {
    let issuer = cert.issuer_name().to_der().map_err(crypto)?;
    let serial = cert.serial_number().to_bn().map_err(crypto)?.to_vec();
    Ok(der::seq(&[&issuer, &der::uint(&serial)]))
}

/// One KeyTransRecipientInfo's algorithm and encrypted content key.
pub struct KeyTransport {
    /// The keyEncryptionAlgorithm, DER of the AlgorithmIdentifier.
    pub algorithm: Vec<u8>,
    pub encrypted_key: Vec<u8>,
}

/// Wraps the content key for one certificate.
pub type WrapKey<'a> = &'a dyn Fn(&[u8], &X509Ref) -> Result<KeyTransport, SealError>;

/// RSAES-OAEP (SHA-256, MGF1-SHA-256) of the content key `cek` for `cert`'s RSA key
/// (KOM-LE-A_2108/2109); any other key is [`SealError::UnusableCertificate`].
pub fn rsa_oaep(cek: &[u8], cert: &X509Ref) -> Result<KeyTransport, SealError> {
    Ok(KeyTransport {
        algorithm: alg::rsaes_oaep(),
        encrypted_key: wrap_key(cek, cert)?,
    })
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

/// Encrypts the concatenation of `content` for every certificate in `recipients`;
/// `recipient_emails_attr` is the DER of the recipient-emails Attribute (the same
/// bytes as the signed one). The ciphertext is written straight into the output.
/// RSA certificates only ([`rsa_oaep`]).
pub fn encrypt(
    content: &[&[u8]],
    recipients: &[&X509Ref],
    recipient_emails_attr: &[u8],
) -> Result<Vec<u8>, SealError> {
    encrypt_with(content, recipients, recipient_emails_attr, &rsa_oaep)
}

/// [`encrypt`] with the content key wrapped for each certificate by `wrap`.
pub fn encrypt_with(
    content: &[&[u8]],
    recipients: &[&X509Ref],
    recipient_emails_attr: &[u8],
    wrap: WrapKey<'_>,
) -> Result<Vec<u8>, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipient);
    }
    let cek = zeroize::Zeroizing::new(rand::random::<[u8; 32]>());
    let nonce: [u8; GCM_NONCE_LEN] = rand::random();

    let mut infos = Vec::with_capacity(recipients.len());
    for cert in recipients {
        let kt = wrap(cek.as_slice(), cert)?;
        infos.push(der::seq(&[
            &der::uint(&[0]),
            &issuer_and_serial(cert)?,
            &kt.algorithm,
            &der::octets(&kt.encrypted_key),
        ]));
    }
    let version = der::uint(&[0]);
    let recipient_infos = der::set_of(&infos);
    let gcm_params = der::seq(&[&der::octets(&nonce), &der::uint(&[GCM_TAG_LEN as u8])]);
    let content_alg = der::seq(&[&der::oid(oid::AES256_GCM), &gcm_params]);
    let data_oid = der::oid(oid::DATA);
    let unauth = der::tlv(0xa2, recipient_emails_attr);
    let mac_len = 2 + GCM_TAG_LEN;

    // GCM: ciphertext as long as the plaintext
    let n: usize = content.iter().map(|p| p.len()).sum();
    let encrypted = der::header(0x80, n);
    let eci_len = data_oid.len() + content_alg.len() + encrypted.len() + n;
    let eci = der::header(0x30, eci_len);
    let aed_len =
        version.len() + recipient_infos.len() + eci.len() + eci_len + mac_len + unauth.len();
    let aed = der::header(0x30, aed_len);
    let explicit = der::header(0xa0, aed.len() + aed_len);
    let aed_oid = der::oid(oid::AUTH_ENVELOPED_DATA);
    let ci_len = aed_oid.len() + explicit.len() + aed.len() + aed_len;
    let ci = der::header(0x30, ci_len);

    let total = ci.len() + ci_len;
    let mut out = Vec::with_capacity(total);
    for part in [
        &ci,
        &aed_oid,
        &explicit,
        &aed,
        &version,
        &recipient_infos,
        &eci,
        &data_oid,
        &content_alg,
        &encrypted,
    ] {
        out.extend_from_slice(part);
    }
    let mut crypter = Crypter::new(
        Cipher::aes_256_gcm(),
        Mode::Encrypt,
        cek.as_slice(),
        Some(&nonce),
    )
    .map_err(crypto)?;
    let block = Cipher::aes_256_gcm().block_size();
    for part in content {
        let at = out.len();
        out.resize(at + part.len() + block, 0);
        let written = crypter.update(part, &mut out[at..]).map_err(crypto)?;
        out.truncate(at + written);
    }
    let at = out.len();
    out.resize(at + block, 0);
    let written = crypter.finalize(&mut out[at..]).map_err(crypto)?;
    out.truncate(at + written);
    let mut tag = [0u8; GCM_TAG_LEN];
    crypter.get_tag(&mut tag).map_err(crypto)?;
    out.extend_from_slice(&der::octets(&tag));
    out.extend_from_slice(&unauth);
    if out.len() != total {
        return Err(SealError::Crypto(
            "ciphertext length differs from plaintext".into(),
        ));
    }
    Ok(out)
}
