//! Opening an AuthEnvelopedData (RFC 5083) of the KIM profile with one key:
//! the KeyTransRecipientInfo for the key's certificate (IssuerAndSerialNumber,
//! KOM-LE-A_2108/2109), RSAES-OAEP with SHA-256 and MGF1-SHA-256 for the content key
//! (nothing else is accepted for RSA), AES-256-GCM with the tag checked before any
//! plaintext is returned. RecipientInfos for other keys (the TI's ECIES for ECC
//! certificates among them) are passed over; the key unwrap is a parameter of
//! [`decrypt_in_place_with`] for the testbed's Konnektor simulator, which unwraps
//! ECIES as a card would.

use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::pkey::{PKeyRef, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};
use openssl::x509::X509Ref;

use super::ber::{self, BerError, Tlv};
use super::oid;
use super::recipient_emails::{names_cert, RecipientEmails};

/// AES-GCM nonce length of the profile (12 bytes) and tag length (16 bytes).
pub const GCM_NONCE_LEN: usize = 12;
pub const GCM_TAG_LEN: usize = 16;

/// Why a structure could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the mail is not encrypted for this key")]
    NotForThisKey,
    #[error("not an AuthEnvelopedData of the KIM profile: {0}")]
    WrongFormat(String),
    #[error("the encrypted content or its key was altered")]
    Corrupted,
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl From<BerError> for OpenError {
    fn from(e: BerError) -> Self {
        OpenError::WrongFormat(e.to_string())
    }
}

/// The plaintext and the unprotected recipient-emails attribute.
#[derive(Debug, Clone)]
pub struct Decrypted {
    pub content: Vec<u8>,
    pub recipient_emails: Option<RecipientEmails>,
}

fn wrong(what: &str) -> OpenError {
    OpenError::WrongFormat(what.to_string())
}

/// The parts of an AuthEnvelopedData.
struct Parts<'a> {
    recipient_infos: Vec<Tlv<'a>>,
    content_alg: Tlv<'a>,
    encrypted: Option<Tlv<'a>>,
    auth_attrs: Option<Tlv<'a>>,
    mac: Tlv<'a>,
    unauth_attrs: Option<Tlv<'a>>,
}

fn parts(der: &[u8]) -> Result<Parts<'_>, OpenError> {
    let (ci, _) = ber::read(der)?;
    let ci = ber::expect(&ci, 0x30, "ContentInfo is not a SEQUENCE")?;
    match (ci.first(), ci.get(1)) {
        (Some(o), Some(_)) if o.tag == 0x06 && o.content == oid::AUTH_ENVELOPED_DATA => {}
        _ => return Err(wrong("content type is not id-ct-authEnvelopedData")),
    }
    let explicit = ber::expect(&ci[1], 0xa0, "content is not [0]")?;
    let aed = explicit.first().ok_or_else(|| wrong("empty content"))?;
    let f = ber::expect(aed, 0x30, "AuthEnvelopedData is not a SEQUENCE")?;
    let mut it = f.into_iter().peekable();
    let version = it.next().ok_or_else(|| wrong("no version"))?;
    if version.tag != 0x02 || version.content != [0] {
        return Err(wrong("AuthEnvelopedData version is not 0"));
    }
    // KOM-LE-A_2106: no originatorInfo; tolerated when reading
    if it.peek().is_some_and(|t| t.tag == 0xa0) {
        it.next();
    }
    let ris = it.next().ok_or_else(|| wrong("no recipientInfos"))?;
    let recipient_infos = ber::expect(&ris, 0x31, "recipientInfos is not a SET")?;
    let eci = it
        .next()
        .ok_or_else(|| wrong("no authEncryptedContentInfo"))?;
    let eci = ber::expect(&eci, 0x30, "authEncryptedContentInfo is not a SEQUENCE")?;
    let content_alg = *eci
        .get(1)
        .ok_or_else(|| wrong("no contentEncryptionAlgorithm"))?;
    let encrypted = eci.get(2).copied().filter(|t| t.tag & 0xdf == 0x80);
    let mut auth_attrs = None;
    if it.peek().is_some_and(|t| t.tag == 0xa1) {
        auth_attrs = it.next();
    }
    let mac = it.next().ok_or_else(|| wrong("no mac"))?;
    if mac.tag & 0xdf != 0x04 {
        return Err(wrong("mac is not an OCTET STRING"));
    }
    let unauth_attrs = it.next().filter(|t| t.tag == 0xa2);
    Ok(Parts {
        recipient_infos,
        content_alg,
        encrypted,
        auth_attrs,
        mac,
        unauth_attrs,
    })
}

fn recipient_emails(unauth: Option<&Tlv<'_>>) -> Result<Option<RecipientEmails>, OpenError> {
    let Some(attrs) = unauth else { return Ok(None) };
    for a in attrs.children()? {
        let f = a.children()?;
        if f.first()
            .is_some_and(|o| o.tag == 0x06 && o.content == oid::RECIPIENT_EMAILS)
        {
            return Ok(Some(RecipientEmails::from_attribute(&a)?));
        }
    }
    Ok(None)
}

/// The unprotected recipient-emails attribute, without decrypting (to choose the key,
/// KOM-LE-A_2043).
pub fn recipient_emails_of(der: &[u8]) -> Result<Option<RecipientEmails>, OpenError> {
    let p = parts(der)?;
    recipient_emails(p.unauth_attrs.as_ref())
}

/// Checks that an RSAES-OAEP AlgorithmIdentifier has the profile's parameters.
fn check_oaep(alg: &Tlv<'_>) -> Result<(), OpenError> {
    let f = ber::expect(alg, 0x30, "keyEncryptionAlgorithm is not a SEQUENCE")?;
    let oid_ok = f
        .first()
        .is_some_and(|o| o.tag == 0x06 && o.content == oid::RSAES_OAEP);
    if !oid_ok {
        return Err(OpenError::Unsupported(
            "key transport other than RSAES-OAEP".into(),
        ));
    }
    let params = f
        .get(1)
        .ok_or_else(|| OpenError::Unsupported("RSAES-OAEP without parameters (SHA-1)".into()))?;
    let mut hash_sha256 = false;
    let mut mgf_sha256 = false;
    for p in ber::expect(params, 0x30, "OAEP parameters are not a SEQUENCE")? {
        let inner = p.children()?;
        let alg = inner
            .first()
            .map(|a| a.children())
            .transpose()?
            .unwrap_or_default();
        match p.tag {
            0xa0 => hash_sha256 = alg.first().is_some_and(|o| o.content == oid::SHA256),
            0xa1 => {
                let is_mgf1 = alg.first().is_some_and(|o| o.content == oid::MGF1);
                let mgf_hash = alg
                    .get(1)
                    .map(|h| h.children())
                    .transpose()?
                    .unwrap_or_default();
                mgf_sha256 = is_mgf1 && mgf_hash.first().is_some_and(|o| o.content == oid::SHA256);
            }
            0xa2 => return Err(OpenError::Unsupported("OAEP with a label".into())),
            _ => {}
        }
    }
    if hash_sha256 && mgf_sha256 {
        Ok(())
    } else {
        Err(OpenError::Unsupported(
            "OAEP parameters other than SHA-256/MGF1-SHA-256".into(),
        ))
    }
}

fn unwrap_key(encrypted_key: &[u8], key: &PKeyRef<Private>) -> Result<Vec<u8>, OpenError> {
    let run = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut ctx = PkeyCtx::new(key)?;
        ctx.decrypt_init()?;
        ctx.set_rsa_padding(Padding::PKCS1_OAEP)?;
        ctx.set_rsa_oaep_md(Md::sha256())?;
        ctx.set_rsa_mgf1_md(Md::sha256())?;
        let mut out = Vec::new();
        ctx.decrypt_to_vec(encrypted_key, &mut out)?;
        Ok(out)
    };
    // any failure is "corrupted", never told apart by its text
    run().map_err(|_| OpenError::Corrupted)
}

/// Unwraps the content key of the KeyTransRecipientInfo for the certificate:
/// given its keyEncryptionAlgorithm and encryptedKey. A wrong key or altered data
/// is [`OpenError::Corrupted`].
pub type UnwrapKey<'a> =
    &'a dyn Fn(&Tlv<'_>, &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, OpenError>;

/// The RSAES-OAEP unwrap with `key`, the profile's parameters checked.
fn rsa_oaep_unwrap(
    key: &PKeyRef<Private>,
) -> impl Fn(&Tlv<'_>, &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, OpenError> + '_ {
    move |alg, encrypted_key| {
        check_oaep(alg)?;
        Ok(zeroize::Zeroizing::new(unwrap_key(encrypted_key, key)?))
    }
}

/// Decrypts `der` with `key`, whose certificate is `cert`.
pub fn decrypt(der: &[u8], cert: &X509Ref, key: &PKeyRef<Private>) -> Result<Decrypted, OpenError> {
    decrypt_in_place(der.to_vec(), cert, key)
}

/// [`decrypt`], with the plaintext written over the DER it came from: a 15 MiB mail
/// needs no second 15 MiB buffer. On any failure the buffer is wiped.
pub fn decrypt_in_place(
    der: Vec<u8>,
    cert: &X509Ref,
    key: &PKeyRef<Private>,
) -> Result<Decrypted, OpenError> {
    decrypt_in_place_with(der, cert, &rsa_oaep_unwrap(key))
}

/// [`decrypt_in_place`] with the content key unwrapped by `unwrap`.
pub fn decrypt_in_place_with(
    mut der: Vec<u8>,
    cert: &X509Ref,
    unwrap: UnwrapKey<'_>,
) -> Result<Decrypted, OpenError> {
    let p = prepare(&der, cert, unwrap)?;
    match gcm_in_place(&mut der, &p) {
        Ok(n) => {
            der.truncate(n);
            Ok(Decrypted {
                content: der,
                recipient_emails: p.recipient_emails,
            })
        }
        Err(e) => {
            der.fill(0);
            Err(e)
        }
    }
}

/// Whether `der` parses as an AuthEnvelopedData of the profile.
pub fn parts_ok(der: &[u8]) -> Result<(), OpenError> {
    parts(der).map(drop)
}

/// One KeyTransRecipientInfo as read: whose certificate, and how its key is wrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTransInfo {
    /// The issuer Name (DER) and serial (INTEGER content) of the rid.
    pub issuer_der: Vec<u8>,
    pub serial: Vec<u8>,
    /// The keyEncryptionAlgorithm's OID, content bytes (e.g. [`oid::TI_ECIES`]).
    pub algorithm: Vec<u8>,
}

impl KeyTransInfo {
    /// Whether this RecipientInfo is for `cert`.
    pub fn is_for(&self, cert: &X509Ref) -> bool {
        names_cert(&self.issuer_der, &self.serial, cert)
    }
}

/// The KeyTransRecipientInfos with an IssuerAndSerialNumber rid in `der`, in order.
pub fn key_trans_infos(der: &[u8]) -> Result<Vec<KeyTransInfo>, OpenError> {
    let p = parts(der)?;
    let mut out = Vec::new();
    for ri in p.recipient_infos.iter().filter(|ri| ri.tag == 0x30) {
        let f = ri.children()?;
        let (Some(rid), Some(alg)) = (f.get(1).filter(|r| r.tag == 0x30), f.get(2)) else {
            continue;
        };
        let r = rid.children()?;
        let a = alg.children()?;
        if let (Some(issuer), Some(serial), Some(o)) = (r.first(), r.get(1), a.first()) {
            out.push(KeyTransInfo {
                issuer_der: issuer.raw.to_vec(),
                serial: serial.content.to_vec(),
                algorithm: o.content.to_vec(),
            });
        }
    }
    Ok(out)
}

/// True when `der` has a KeyTransRecipientInfo for `cert` (IssuerAndSerialNumber).
pub fn addressed_to(der: &[u8], cert: &X509Ref) -> bool {
    let Ok(p) = parts(der) else {
        return false;
    };
    p.recipient_infos.iter().any(|ri| {
        let Ok(f) = ri.children() else {
            return false;
        };
        let Some(rid) = f.get(1).filter(|r| r.tag == 0x30) else {
            return false;
        };
        rid.children()
            .ok()
            .is_some_and(|r| match (r.first(), r.get(1)) {
                (Some(i), Some(s)) => names_cert(i.raw, s.content, cert),
                _ => false,
            })
    })
}

/// Everything decryption needs, read from the DER: the content key, GCM parameters,
/// and where the ciphertext pieces lie in the DER.
struct Prepared {
    cek: zeroize::Zeroizing<Vec<u8>>,
    nonce: Vec<u8>,
    aad: Vec<u8>,
    tag: Vec<u8>,
    ranges: Vec<(usize, usize)>,
    recipient_emails: Option<RecipientEmails>,
}

fn prepare(der: &[u8], cert: &X509Ref, unwrap: UnwrapKey<'_>) -> Result<Prepared, OpenError> {
    let p = parts(der)?;
    // KOM-LE-A_2108/2109: KeyTransRecipientInfo with IssuerAndSerialNumber
    let mut ours = None;
    for ri in &p.recipient_infos {
        if ri.tag != 0x30 {
            continue; // other RecipientInfo kinds are not for RSA keys
        }
        let f = ri.children()?;
        let (Some(rid), Some(alg), Some(ek)) = (f.get(1), f.get(2), f.get(3)) else {
            return Err(wrong("KeyTransRecipientInfo incomplete"));
        };
        if rid.tag != 0x30 {
            continue;
        }
        let r = rid.children()?;
        if let (Some(issuer), Some(serial)) = (r.first(), r.get(1)) {
            if names_cert(issuer.raw, serial.content, cert) {
                ours = Some((*alg, ek.octets()?));
                break;
            }
        }
    }
    let (alg, encrypted_key) = ours.ok_or(OpenError::NotForThisKey)?;
    let cek = unwrap(&alg, &encrypted_key)?;
    if cek.len() != 32 {
        return Err(OpenError::Corrupted);
    }

    let a = ber::expect(
        &p.content_alg,
        0x30,
        "contentEncryptionAlgorithm is not a SEQUENCE",
    )?;
    if a.first().is_none_or(|o| o.content != oid::AES256_GCM) {
        return Err(OpenError::Unsupported(
            "content encryption other than AES-256-GCM".into(),
        ));
    }
    let gcm = a
        .get(1)
        .ok_or_else(|| wrong("GCMParameters missing"))?
        .children()?;
    let nonce = gcm
        .first()
        .ok_or_else(|| wrong("GCM nonce missing"))?
        .octets()?;
    if nonce.len() != GCM_NONCE_LEN {
        return Err(OpenError::Unsupported(format!(
            "GCM nonce of {} bytes",
            nonce.len()
        )));
    }
    if let Some(icv) = gcm.get(1) {
        if icv.content != [GCM_TAG_LEN as u8] {
            return Err(OpenError::Unsupported(
                "GCM tag length other than 16".into(),
            ));
        }
    }
    let tag = p.mac.octets()?;
    if tag.len() != GCM_TAG_LEN {
        return Err(OpenError::Corrupted);
    }
    // the ciphertext in place: its pieces (one for a primitive OCTET STRING) are
    // decrypted straight into the output, never copied
    let mut pieces = Vec::new();
    if let Some(t) = &p.encrypted {
        collect_pieces(t, &mut pieces, 0)?;
    }
    // RFC 5083 2.1: the authenticated attributes, DER-encoded as a SET OF, are the AAD
    let aad = match &p.auth_attrs {
        Some(t) => {
            let mut v = t.raw.to_vec();
            v[0] = 0x31;
            v
        }
        None => Vec::new(),
    };
    let base = der.as_ptr() as usize;
    let ranges = pieces
        .iter()
        .map(|piece| (piece.as_ptr() as usize - base, piece.len()))
        .collect();
    Ok(Prepared {
        cek,
        nonce,
        aad,
        tag,
        ranges,
        recipient_emails: recipient_emails(p.unauth_attrs.as_ref())?,
    })
}

/// The primitive pieces of an OCTET STRING, in order.
fn collect_pieces<'a>(t: &Tlv<'a>, out: &mut Vec<&'a [u8]>, depth: usize) -> Result<(), OpenError> {
    if depth > 8 {
        return Err(wrong("encrypted content nested too deeply"));
    }
    if !t.constructed() {
        out.push(t.content);
        return Ok(());
    }
    for c in t.children()? {
        collect_pieces(&c, out, depth + 1)?;
    }
    Ok(())
}

/// AES-256-GCM over the ciphertext ranges of `der`, the plaintext written from the
/// start of `der` (never ahead of what is still to be read); returns its length. The
/// tag is checked before the caller sees any of it.
fn gcm_in_place(der: &mut [u8], p: &Prepared) -> Result<usize, OpenError> {
    const CHUNK: usize = 64 * 1024;
    let cipher = Cipher::aes_256_gcm();
    let fail = |_| OpenError::Corrupted;
    let mut c = Crypter::new(cipher, Mode::Decrypt, &p.cek, Some(&p.nonce)).map_err(fail)?;
    c.aad_update(&p.aad).map_err(fail)?;
    let mut tmp = zeroize::Zeroizing::new(vec![0u8; CHUNK + cipher.block_size()]);
    let mut cursor = 0;
    for &(start, len) in &p.ranges {
        let mut off = start;
        while off < start + len {
            let m = CHUNK.min(start + len - off);
            let k = c.update(&der[off..off + m], &mut tmp).map_err(fail)?;
            der[cursor..cursor + k].copy_from_slice(&tmp[..k]);
            cursor += k;
            off += m;
        }
    }
    c.set_tag(&p.tag).map_err(fail)?;
    let k = c.finalize(&mut tmp).map_err(fail)?;
    der[cursor..cursor + k].copy_from_slice(&tmp[..k]);
    Ok(cursor + k)
}

/// SHA-256 fingerprint of a certificate, for logs.
pub fn fingerprint(cert: &X509Ref) -> String {
    cert.digest(MessageDigest::sha256())
        .map(hex::encode)
        .unwrap_or_default()
}
