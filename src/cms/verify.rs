//! Verifying a SignedData of the KIM profile: the content digest against the signed
//! messageDigest, the signature over the signed attributes (RSASSA-PSS as the
//! profile writes it; PKCS#1 v1.5 and ECDSA as older and newer senders do), then the
//! certificate path against the trust anchors, and the signed recipient-emails
//! attribute for the comparison with the unprotected copy (KOM-LE-A_2048-01).
//!
//! kim-cm reads the structure with its own BER reader and hands OpenSSL only the
//! primitives (digest, signature check, path check). OpenSSL's CMS_verify keeps
//! several copies of the content in memory at once: for a 15 MiB mail that alone
//! broke the memory budget. Here the content is hashed in place and copied once.

use std::borrow::Cow;

use openssl::hash::{Hasher, MessageDigest};
use openssl::md::{Md, MdRef};
use openssl::pkey::{PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::sign::RsaPssSaltlen;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreRef;
use openssl::x509::{X509StoreContext, X509};

use super::ber::{self, Tlv};
use super::oid;
use super::recipient_emails::{names_cert, RecipientEmails};

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
pub struct Verified<'a> {
    pub status: SignatureStatus,
    /// The signed content, when the signature is mathematically right: borrowed
    /// from the DER unless the sender split it into pieces.
    pub content: Option<Cow<'a, [u8]>>,
    pub signer: Option<X509>,
    pub recipient_emails: Option<RecipientEmails>,
}

impl Verified<'_> {
    fn wrong_format() -> Verified<'static> {
        Verified {
            status: SignatureStatus::WrongFormat,
            content: None,
            signer: None,
            recipient_emails: None,
        }
    }
}

/// rsaEncryption 1.2.840.113549.1.1.1 and sha256WithRSAEncryption ..1.11 (PKCS#1 v1.5).
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
/// ecdsa-with-SHA256 1.2.840.10045.4.3.2.
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// id-sha384 and id-sha512.
const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
/// RFC 4055: the PSS salt length when the parameters leave it out.
const PSS_DEFAULT_SALT: i32 = 20;

fn digest_of(alg: &Tlv<'_>) -> Option<(MessageDigest, &'static MdRef)> {
    let o = alg.children().ok()?;
    let o = o.first()?;
    match o.content {
        x if x == oid::SHA256 => Some((MessageDigest::sha256(), Md::sha256())),
        x if x == SHA384 => Some((MessageDigest::sha384(), Md::sha384())),
        x if x == SHA512 => Some((MessageDigest::sha512(), Md::sha512())),
        _ => None,
    }
}

/// How the signature is to be checked.
enum Scheme {
    Pss {
        md: &'static MdRef,
        mgf: &'static MdRef,
        salt: i32,
    },
    Pkcs1,
    Ecdsa,
}

fn scheme(alg: &Tlv<'_>) -> Option<Scheme> {
    let f = alg.children().ok()?;
    let o = f.first()?;
    if o.content == oid::RSASSA_PSS {
        let mut s = (Md::sha1(), Md::sha1(), PSS_DEFAULT_SALT);
        if let Some(params) = f.get(1).filter(|p| p.tag == 0x30) {
            for p in params.children().ok()? {
                let inner = p.children().ok()?;
                let first = inner.first()?;
                match p.tag {
                    0xa0 => s.0 = digest_of(first)?.1,
                    0xa1 => {
                        let mgf = first.children().ok()?;
                        if mgf.first()?.content != oid::MGF1 {
                            return None;
                        }
                        s.1 = digest_of(mgf.get(1)?)?.1;
                    }
                    0xa2 => {
                        let v = first.content;
                        if first.tag != 0x02 || v.is_empty() || v.len() > 3 {
                            return None;
                        }
                        s.2 = v.iter().fold(0i32, |a, b| (a << 8) | i32::from(*b));
                    }
                    _ => {}
                }
            }
        }
        return Some(Scheme::Pss {
            md: s.0,
            mgf: s.1,
            salt: s.2,
        });
    }
    match o.content {
        x if x == RSA_ENCRYPTION || x == SHA256_WITH_RSA => Some(Scheme::Pkcs1),
        x if x == ECDSA_SHA256 => Some(Scheme::Ecdsa),
        _ => None,
    }
}

/// Checks `signature` over `signed` (the DER of the signed attributes as a SET).
fn signature_ok(
    key: &PKey<Public>,
    scheme: &Scheme,
    md: (MessageDigest, &'static MdRef),
    signed: &[&[u8]],
    signature: &[u8],
) -> bool {
    let run = || -> Result<bool, openssl::error::ErrorStack> {
        let sign_md = match scheme {
            Scheme::Pss { md, .. } => *md,
            _ => md.1,
        };
        let mut h = Hasher::new(
            MessageDigest::from_nid(sign_md.type_()).unwrap_or(MessageDigest::sha256()),
        )?;
        for s in signed {
            h.update(s)?;
        }
        let digest = h.finish()?;
        let mut ctx = PkeyCtx::new(key)?;
        ctx.verify_init()?;
        match scheme {
            Scheme::Pss { md, mgf, salt } => {
                ctx.set_rsa_padding(Padding::PKCS1_PSS)?;
                ctx.set_signature_md(md)?;
                ctx.set_rsa_mgf1_md(mgf)?;
                ctx.set_rsa_pss_saltlen(RsaPssSaltlen::custom(*salt))?;
            }
            Scheme::Pkcs1 => {
                ctx.set_rsa_padding(Padding::PKCS1)?;
                ctx.set_signature_md(sign_md)?;
            }
            Scheme::Ecdsa => ctx.set_signature_md(sign_md)?,
        }
        ctx.verify(&digest, signature)
    };
    run().unwrap_or(false)
}

/// The SignerInfo's sid names `cert` (IssuerAndSerialNumber or [0] subjectKeyIdentifier).
fn names(sid: &Tlv<'_>, cert: &X509) -> bool {
    match sid.tag {
        0x30 => sid
            .children()
            .ok()
            .is_some_and(|f| match (f.first(), f.get(1)) {
                (Some(i), Some(s)) => names_cert(i.raw, s.content, cert),
                _ => false,
            }),
        0x80 => cert
            .subject_key_id()
            .is_some_and(|k| k.as_slice() == sid.content),
        _ => false,
    }
}

/// The pieces of the SignedData that verification needs.
struct Parts<'a> {
    econtent_type: &'a [u8],
    econtent: Vec<&'a [u8]>,
    certs: Vec<X509>,
    signer_info: Vec<Tlv<'a>>,
}

fn pieces<'a>(t: &Tlv<'a>, out: &mut Vec<&'a [u8]>, depth: usize) -> Option<()> {
    if depth > 8 {
        return None;
    }
    if !t.constructed() {
        out.push(t.content);
        return Some(());
    }
    for c in t.children().ok()? {
        pieces(&c, out, depth + 1)?;
    }
    Some(())
}

fn parts(der: &[u8]) -> Option<Parts<'_>> {
    let (ci, _) = ber::read(der).ok()?;
    let ci = ci.children().ok()?;
    if !ci
        .first()
        .is_some_and(|o| o.tag == 0x06 && o.content == oid::SIGNED_DATA)
    {
        return None;
    }
    let sd = ci.get(1)?.children().ok()?.first()?.children().ok()?;
    // version, digestAlgorithms, encapContentInfo, [0] certificates, [1] crls, signerInfos
    let eci = sd.get(2)?.children().ok()?;
    let econtent_type = eci.first().filter(|o| o.tag == 0x06)?.content;
    let mut econtent = Vec::new();
    if let Some(explicit) = eci.get(1).filter(|t| t.tag == 0xa0) {
        pieces(explicit.children().ok()?.first()?, &mut econtent, 0)?;
    }
    let certs = sd
        .iter()
        .find(|t| t.tag == 0xa0)
        .map(|c| c.children().ok())
        .unwrap_or(Some(Vec::new()))?
        .iter()
        .filter_map(|c| X509::from_der(c.raw).ok())
        .collect();
    let signer_infos = sd.last().filter(|t| t.tag == 0x31)?.children().ok()?;
    let signer_info = signer_infos.first()?.children().ok()?;
    Some(Parts {
        econtent_type,
        econtent,
        certs,
        signer_info,
    })
}

/// Verifies `der` against `trust`.
pub fn verify<'a>(der: &'a [u8], trust: &X509StoreRef) -> Verified<'a> {
    let Some(p) = parts(der) else {
        return Verified::wrong_format();
    };
    // SignerInfo: version, sid, digestAlgorithm, [0] signedAttrs, signatureAlgorithm,
    // signature, [1] unsignedAttrs
    let si = &p.signer_info;
    let (Some(sid), Some(digest_alg)) = (si.get(1), si.get(2)) else {
        return Verified::wrong_format();
    };
    let attrs = si.get(3).filter(|t| t.tag == 0xa0);
    let rest = if attrs.is_some() { &si[4..] } else { &si[3..] };
    let (Some(sig_alg), Some(signature)) = (rest.first(), rest.get(1)) else {
        return Verified::wrong_format();
    };
    let (Some(md), Some(scheme)) = (digest_of(digest_alg), scheme(sig_alg)) else {
        return Verified::wrong_format();
    };
    let Some(signer) = p.certs.iter().find(|c| names(sid, c)).cloned() else {
        return Verified::wrong_format();
    };
    let Ok(key) = signer.public_key() else {
        return Verified::wrong_format();
    };

    // the content digest
    let content_digest = Hasher::new(md.0).and_then(|mut h| {
        for piece in &p.econtent {
            h.update(piece)?;
        }
        h.finish()
    });
    let Ok(content_digest) = content_digest else {
        return Verified::wrong_format();
    };

    let mut recipient_emails = None;
    let math = match attrs {
        Some(a) => {
            let Ok(list) = a.children() else {
                return Verified::wrong_format();
            };
            let mut message_digest = None;
            let mut content_type_ok = false;
            for attr in &list {
                let Ok(f) = attr.children() else {
                    return Verified::wrong_format();
                };
                let (Some(t), Some(values)) = (f.first(), f.get(1)) else {
                    return Verified::wrong_format();
                };
                let first = values.children().ok().and_then(|v| v.into_iter().next());
                match t.content {
                    x if x == oid::MESSAGE_DIGEST => message_digest = first.map(|v| v.content),
                    x if x == oid::CONTENT_TYPE => {
                        content_type_ok = first.is_some_and(|v| v.content == p.econtent_type)
                    }
                    x if x == oid::RECIPIENT_EMAILS => {
                        recipient_emails = RecipientEmails::from_attribute(attr).ok()
                    }
                    _ => {}
                }
            }
            // RFC 5652 5.4: the signature covers the attributes as a SET OF
            let header_len = a.raw.len() - a.content.len();
            let mut set_header = a.raw[..header_len].to_vec();
            set_header[0] = 0x31;
            content_type_ok
                && message_digest == Some(&content_digest[..])
                && signature_ok(
                    &key,
                    &scheme,
                    md,
                    &[&set_header, a.content],
                    signature.content,
                )
        }
        None => signature_ok(&key, &scheme, md, &p.econtent, signature.content),
    };
    if !math {
        return Verified {
            status: SignatureStatus::IntegrityViolated,
            content: None,
            signer: Some(signer),
            recipient_emails,
        };
    }

    // the path, with the other certificates of the SignedData as untrusted chain
    let path_ok = (|| -> Result<bool, openssl::error::ErrorStack> {
        let mut chain = Stack::new()?;
        for c in p.certs.iter().filter(|c| !names(sid, c)) {
            chain.push(c.clone())?;
        }
        let mut ctx = X509StoreContext::new()?;
        ctx.init(trust, &signer, &chain, |c| c.verify_cert())
    })()
    .unwrap_or(false);
    Verified {
        status: if path_ok {
            SignatureStatus::Valid
        } else {
            SignatureStatus::CertPathInvalid
        },
        content: Some(match p.econtent.as_slice() {
            [one] => Cow::Borrowed(*one),
            pieces => Cow::Owned(pieces.concat()),
        }),
        signer: Some(signer),
        recipient_emails,
    }
}
