//! SignedData of the KIM profile (gemSMIME_KOMLE, spec reference 1.4), written by
//! kim-cm: RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt; the signed
//! attributes contentType, signingTime, messageDigest, CMSAlgorithmProtection,
//! signingCertificateV2 and recipient-emails (KOM-LE-A_2190); the signer's
//! certificate only; no unsigned attributes, no CRLs. The layout follows gematik's
//! sample `.02.signedcms` element for element.
//!
//! The content is given in parts and copied once, straight into the output: a
//! 15 MiB mail costs 15 MiB here, not a multiple of it.

use openssl::hash::{hash, MessageDigest};
use openssl::md::Md;
use openssl::pkey::{PKeyRef, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::sha::Sha256;
use openssl::sign::RsaPssSaltlen;
use openssl::x509::X509Ref;
use time::OffsetDateTime;

use super::encrypt::{issuer_and_serial, SealError};
use super::{alg, der, oid};

fn crypto(e: openssl::error::ErrorStack) -> SealError {
    SealError::Crypto(e.to_string())
}

fn attribute(type_oid: &[u8], value: &[u8]) -> Vec<u8> {
    der::seq(&[&der::oid(type_oid), &der::set_of(&[value.to_vec()])])
}

/// signingTime as UTCTime up to 2049 and GeneralizedTime after (RFC 5652 11.3).
fn signing_time(at: OffsetDateTime) -> Vec<u8> {
    let at = at.to_offset(time::UtcOffset::UTC);
    let (y, mo, d, h, mi, s) = (
        at.year(),
        at.month() as u8,
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
    );
    if (1950..2050).contains(&y) {
        let text = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        der::tlv(0x17, text.as_bytes())
    } else {
        let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
        der::tlv(0x18, text.as_bytes())
    }
}

/// SigningCertificateV2 { certs SEQUENCE OF ESSCertIDv2 } with the default hash
/// (SHA-256) left out and IssuerSerial naming the certificate (RFC 5035).
fn signing_certificate_v2(cert: &X509Ref) -> Result<Vec<u8>, SealError> {
    let cert_der = cert.to_der().map_err(crypto)?;
    let cert_hash = hash(MessageDigest::sha256(), &cert_der).map_err(crypto)?;
    let issuer = cert.issuer_name().to_der().map_err(crypto)?;
    let serial = cert.serial_number().to_bn().map_err(crypto)?.to_vec();
    let issuer_serial = der::seq(&[&der::seq(&[&der::tlv(0xa4, &issuer)]), &der::uint(&serial)]);
    let ess_cert_id = der::seq(&[&der::octets(&cert_hash), &issuer_serial]);
    Ok(der::seq(&[&der::seq(&[&ess_cert_id])]))
}

/// CMSAlgorithmProtection { digestAlgorithm, [1] signatureAlgorithm } (RFC 6211).
fn algorithm_protection() -> Vec<u8> {
    let pss = alg::rsassa_pss();
    // [1] IMPLICIT AlgorithmIdentifier: the SEQUENCE's content under tag A1
    let (inner, _) = super::ber::read(&pss).expect("own DER");
    der::seq(&[&alg::sha256(), &der::tlv(0xa1, inner.content)])
}

/// RSASSA-PSS signature over the SHA-256 `digest`.
fn pss_sign(key: &PKeyRef<Private>, digest: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut ctx = PkeyCtx::new(key).map_err(crypto)?;
    ctx.sign_init().map_err(crypto)?;
    ctx.set_rsa_padding(Padding::PKCS1_PSS).map_err(crypto)?;
    ctx.set_signature_md(Md::sha256()).map_err(crypto)?;
    ctx.set_rsa_mgf1_md(Md::sha256()).map_err(crypto)?;
    ctx.set_rsa_pss_saltlen(RsaPssSaltlen::custom(alg::PSS_SALT_LEN.into()))
        .map_err(crypto)?;
    let mut sig = Vec::new();
    ctx.sign_to_vec(digest, &mut sig).map_err(crypto)?;
    Ok(sig)
}

/// Signs the concatenation of `content` with `key`, whose certificate is `cert`;
/// `recipient_emails_attr` is the DER of the recipient-emails Attribute
/// (see [`super::recipient_emails::attribute`]).
pub fn sign(
    content: &[&[u8]],
    cert: &X509Ref,
    key: &PKeyRef<Private>,
    recipient_emails_attr: &[u8],
    at: OffsetDateTime,
) -> Result<Vec<u8>, SealError> {
    if key.rsa().is_err() || !cert.public_key().is_ok_and(|p| p.public_eq(key)) {
        return Err(SealError::UnusableCertificate(format!(
            "{:?} (the signing key must be the RSA key of this certificate)",
            cert.subject_name()
        )));
    }
    let mut sha = Sha256::new();
    content.iter().for_each(|p| sha.update(p));
    let message_digest = sha.finish();

    let signed_attrs = der::set_of(&[
        attribute(oid::CONTENT_TYPE, &der::oid(oid::DATA)),
        attribute(oid::SIGNING_TIME, &signing_time(at)),
        attribute(oid::MESSAGE_DIGEST, &der::octets(&message_digest)),
        attribute(oid::CMS_ALGORITHM_PROTECTION, &algorithm_protection()),
        attribute(oid::SIGNING_CERTIFICATE_V2, &signing_certificate_v2(cert)?),
        recipient_emails_attr.to_vec(),
    ]);
    // RFC 5652 5.4: the signature covers the attributes' DER as a SET OF
    let attrs_digest = hash(MessageDigest::sha256(), &signed_attrs).map_err(crypto)?;
    let signature = pss_sign(key, &attrs_digest)?;
    let mut implicit_attrs = signed_attrs;
    implicit_attrs[0] = 0xa0;

    let signer_info = der::seq(&[
        &der::uint(&[1]),
        &issuer_and_serial(cert)?,
        &alg::sha256(),
        &implicit_attrs,
        &alg::rsassa_pss(),
        &der::octets(&signature),
    ]);
    let certificates = der::tlv(0xa0, &cert.to_der().map_err(crypto)?);
    let version = der::uint(&[1]);
    let digest_algs = der::set_of(&[alg::sha256()]);
    let signer_infos = der::set_of(&[signer_info]);

    // the nested headers around the content, innermost first
    let n: usize = content.iter().map(|p| p.len()).sum();
    let octets = der::header(0x04, n);
    let explicit = der::header(0xa0, octets.len() + n);
    let data_oid = der::oid(oid::DATA);
    let eci_len = data_oid.len() + explicit.len() + octets.len() + n;
    let eci = der::header(0x30, eci_len);
    let sd_len = version.len()
        + digest_algs.len()
        + eci.len()
        + eci_len
        + certificates.len()
        + signer_infos.len();
    let sd = der::header(0x30, sd_len);
    let outer_explicit = der::header(0xa0, sd.len() + sd_len);
    let sd_oid = der::oid(oid::SIGNED_DATA);
    let ci_len = sd_oid.len() + outer_explicit.len() + sd.len() + sd_len;
    let ci = der::header(0x30, ci_len);

    let mut out = Vec::with_capacity(ci.len() + ci_len);
    for part in [
        &ci,
        &sd_oid,
        &outer_explicit,
        &sd,
        &version,
        &digest_algs,
        &eci,
        &data_oid,
        &explicit,
        &octets,
    ] {
        out.extend_from_slice(part);
    }
    content.iter().for_each(|p| out.extend_from_slice(p));
    out.extend_from_slice(&certificates);
    out.extend_from_slice(&signer_infos);
    debug_assert_eq!(out.len(), ci.len() + ci_len);
    Ok(out)
}
