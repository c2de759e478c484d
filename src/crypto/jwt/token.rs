//! The token itself (gemSpec_CM_KOMLE A_19457-02): a JWS in compact form whose
//! header names PS256 and carries the AUT certificate (`x5c`), whose body is only
//! `nbf`, and whose signature is RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32 bytes)
//! over the SHA-256 hash of the signing input (gemSpec_Krypt A_19644).
//!
//! Building is split the way the card forces it: kim-cm makes the signing input
//! and its hash, whoever holds the key signs the hash ([`sign_hash`] for a
//! software key, ExternalAuthenticate for a card), and [`assemble`] appends the
//! signature. [`verify`] is the Account Manager's side of it.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::pkey::{Id, PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Verifier};
use openssl::x509::X509;
use serde::{Deserialize, Serialize};

/// A_19457-02: the token's `alg`.
pub const ALG: &str = "PS256";
/// A_19457-02: the token's `typ`.
pub const TYP: &str = "JWT";
/// RSASSA-PSS salt length of PS256 (RFC 7518 3.5: the size of the SHA-256 hash).
pub const PSS_SALT_LEN: i32 = 32;
/// The longest token [`verify`] reads: a header with a certificate chain of a few
/// KiB, base64 twice over, fits many times.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// The JOSE header, fields in the spec's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub alg: String,
    pub typ: String,
    /// The AUT certificate (DER) in standard base64 (RFC 7515 4.1.6), first in
    /// the list.
    pub x5c: Vec<String>,
}

#[derive(Serialize)]
struct Body {
    nbf: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the JWT is malformed: {0}")]
    Malformed(String),
    #[error("the JWT's alg is {0:?}, not PS256 (A_19457-02)")]
    Algorithm(String),
    #[error("the JWT's signature does not verify with the key of its x5c certificate")]
    Signature,
}

fn malformed(why: impl Into<String>) -> VerifyError {
    VerifyError::Malformed(why.into())
}

/// Seconds since the Unix epoch, the JWT's NumericDate.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// base64url(header) "." base64url(body), both without padding, for the AUT
/// certificate `aut_cert_der` and the start of validity `nbf`.
pub fn signing_input(aut_cert_der: &[u8], nbf: i64) -> String {
    let header = Header {
        alg: ALG.into(),
        typ: TYP.into(),
        x5c: vec![STANDARD.encode(aut_cert_der)],
    };
    // serializing these two plain structs cannot fail
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let body = serde_json::to_vec(&Body { nbf }).unwrap_or_default();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(body)
    )
}

/// gemSpec_Krypt A_19644: the hash the card signs, SHA-256 of the signing input.
pub fn hash(signing_input: &str) -> [u8; 32] {
    openssl::sha::sha256(signing_input.as_bytes())
}

/// The token: the signing input, ".", base64url(signature).
pub fn assemble(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32) with `key` over an already computed
/// SHA-256 `hash`, as a card does it for ExternalAuthenticate.
pub fn sign_hash(key: &PKey<Private>, hash: &[u8]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let mut ctx = PkeyCtx::new(key)?;
    ctx.sign_init()?;
    ctx.set_rsa_padding(Padding::PKCS1_PSS)?;
    ctx.set_signature_md(Md::sha256())?;
    ctx.set_rsa_mgf1_md(Md::sha256())?;
    ctx.set_rsa_pss_saltlen(RsaPssSaltlen::custom(PSS_SALT_LEN))?;
    let mut sig = Vec::new();
    ctx.sign_to_vec(hash, &mut sig)?;
    Ok(sig)
}

/// A whole token from a software AUT key and its certificate, valid from `nbf`.
pub fn build_with_key(
    cert: &X509,
    key: &PKey<Private>,
    nbf: i64,
) -> Result<String, openssl::error::ErrorStack> {
    let input = signing_input(&cert.to_der()?, nbf);
    let sig = sign_hash(key, &hash(&input))?;
    Ok(assemble(&input, &sig))
}

/// What a verified token says.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: Header,
    /// The first `x5c` certificate, whose key made the signature. Whether it is a
    /// valid AUT certificate of the TI is the caller's question.
    pub cert: X509,
    pub nbf: i64,
    /// The whole body.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

fn part(text: &str, what: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| malformed(format!("the {what} is not base64url without padding: {e}")))
}

/// Checks a token as the Account Manager would: three base64url parts, a JSON
/// header with alg PS256 (anything else is refused), typ JWT when given, and an
/// `x5c` RSA certificate whose key verifies the RSASSA-PSS signature; a JSON body
/// with a numeric `nbf`. The time itself is not judged here.
pub fn verify(token: &str) -> Result<Verified, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed(format!("longer than {MAX_TOKEN_LEN} bytes")));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, b, s] = parts[..] else {
        return Err(malformed(format!(
            "{} parts instead of three (header.body.signature)",
            parts.len()
        )));
    };
    let header: serde_json::Value = serde_json::from_slice(&part(h, "header")?)
        .map_err(|e| malformed(format!("the header is not JSON: {e}")))?;
    // the algorithm first: a token that names another one is refused as such
    match header.get("alg").and_then(|a| a.as_str()) {
        Some(ALG) => {}
        Some(other) => return Err(VerifyError::Algorithm(other.into())),
        None => return Err(malformed("the header has no alg")),
    }
    let header: Header = serde_json::from_value(header)
        .map_err(|e| malformed(format!("the header lacks typ or x5c: {e}")))?;
    if header.typ != TYP {
        return Err(malformed(format!("typ is {:?}, not JWT", header.typ)));
    }
    let first = header
        .x5c
        .first()
        .ok_or_else(|| malformed("x5c is empty"))?;
    let der = STANDARD
        .decode(first)
        .map_err(|e| malformed(format!("x5c[0] is not base64: {e}")))?;
    let cert =
        X509::from_der(&der).map_err(|e| malformed(format!("x5c[0] is not a certificate: {e}")))?;
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&part(b, "body")?)
            .map_err(|e| malformed(format!("the body is not a JSON object: {e}")))?;
    let nbf = claims
        .get("nbf")
        .and_then(|n| n.as_i64())
        .ok_or_else(|| malformed("the body has no numeric nbf"))?;
    let signature = part(s, "signature")?;
    let key = cert
        .public_key()
        .map_err(|e| malformed(format!("the certificate's key is unreadable: {e}")))?;
    if key.id() != Id::RSA {
        return Err(malformed(
            "the certificate's key is not RSA, as PS256 needs",
        ));
    }
    let ok = (|| -> Result<bool, openssl::error::ErrorStack> {
        let mut v = Verifier::new(MessageDigest::sha256(), &key)?;
        v.set_rsa_padding(Padding::PKCS1_PSS)?;
        v.set_rsa_mgf1_md(MessageDigest::sha256())?;
        v.set_rsa_pss_saltlen(RsaPssSaltlen::custom(PSS_SALT_LEN))?;
        v.update(format!("{h}.{b}").as_bytes())?;
        v.verify(&signature)
    })()
    .unwrap_or(false);
    if !ok {
        return Err(VerifyError::Signature);
    }
    Ok(Verified {
        header,
        cert,
        nbf,
        claims,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use openssl::rsa::Rsa;
    use openssl::x509::X509NameBuilder;

    /// A self-signed RSA key and certificate to sign test tokens with.
    pub(crate) fn key_and_cert() -> (PKey<Private>, X509) {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "AUT test").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (key, b.build())
    }

    fn b64url_json(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn a_built_token_has_the_spec_header_and_verifies() {
        let (key, cert) = key_and_cert();
        let token = build_with_key(&cert, &key, 1_700_000_000).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(!token.contains('=') && !token.contains('+') && !token.contains('/'));
        let header = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let der = STANDARD.encode(cert.to_der().unwrap());
        assert_eq!(
            header,
            format!("{{\"alg\":\"PS256\",\"typ\":\"JWT\",\"x5c\":[\"{der}\"]}}")
        );
        let body = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        assert_eq!(body, b"{\"nbf\":1700000000}");
        let v = verify(&token).unwrap();
        assert_eq!(v.nbf, 1_700_000_000);
        assert_eq!(v.cert.to_der().unwrap(), cert.to_der().unwrap());
        assert_eq!(v.header.alg, "PS256");
        // PSS is randomized: two tokens differ, both verify
        let again = build_with_key(&cert, &key, 1_700_000_000).unwrap();
        assert_ne!(again, token);
        assert!(verify(&again).is_ok());
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let (key, cert) = key_and_cert();
        let token = build_with_key(&cert, &key, 1).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        // one bit of the signature flipped
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[10] ^= 1;
        let bad = assemble(input, &raw);
        assert_eq!(verify(&bad).unwrap_err(), VerifyError::Signature);
        // another body under the same signature
        let (h, _) = input.split_once('.').unwrap();
        let other = format!("{h}.{}.{sig}", b64url_json(&serde_json::json!({"nbf": 2})));
        assert_eq!(verify(&other).unwrap_err(), VerifyError::Signature);
        // signed by another key than the certificate's
        let (other_key, _) = key_and_cert();
        let forged = assemble(input, &sign_hash(&other_key, &hash(input)).unwrap());
        assert_eq!(verify(&forged).unwrap_err(), VerifyError::Signature);
        // PKCS#1 v1.5 instead of PSS over the same input
        let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), &key).unwrap();
        s.update(input.as_bytes()).unwrap();
        let v15 = assemble(input, &s.sign_to_vec().unwrap());
        assert_eq!(verify(&v15).unwrap_err(), VerifyError::Signature);
    }

    #[test]
    fn another_alg_is_refused() {
        let (key, cert) = key_and_cert();
        let der = STANDARD.encode(cert.to_der().unwrap());
        for alg in ["RS256", "none", "HS256", "ps256"] {
            let h = b64url_json(&serde_json::json!({"alg": alg, "typ": "JWT", "x5c": [der]}));
            let input = format!("{h}.{}", b64url_json(&serde_json::json!({"nbf": 1})));
            let token = assemble(&input, &sign_hash(&key, &hash(&input)).unwrap());
            assert_eq!(
                verify(&token).unwrap_err(),
                VerifyError::Algorithm(alg.into()),
                "{alg}"
            );
        }
        // alg none with an empty signature
        let h = b64url_json(&serde_json::json!({"alg": "none", "typ": "JWT", "x5c": [der]}));
        let token = format!("{h}.{}.", b64url_json(&serde_json::json!({"nbf": 1})));
        assert!(matches!(verify(&token), Err(VerifyError::Algorithm(_))));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let (key, cert) = key_and_cert();
        let der = STANDARD.encode(cert.to_der().unwrap());
        let good_header =
            b64url_json(&serde_json::json!({"alg": "PS256", "typ": "JWT", "x5c": [der]}));
        let signed = |h: &str, b: &str| {
            let input = format!("{h}.{b}");
            assemble(&input, &sign_hash(&key, &hash(&input)).unwrap())
        };
        let nbf = b64url_json(&serde_json::json!({"nbf": 1}));
        let cases = [
            ("two parts".to_string(), "parts"),
            ("a.b.c.d".to_string(), "parts"),
            (signed("!!!", &nbf), "base64url"),
            (
                signed(&URL_SAFE_NO_PAD.encode(b"{\"alg\":\"PS256\""), &nbf),
                "not JSON",
            ),
            (
                signed(&good_header, &URL_SAFE_NO_PAD.encode(b"nbf=1")),
                "body",
            ),
            (
                signed(
                    &good_header,
                    &b64url_json(&serde_json::json!({"nbf": "soon"})),
                ),
                "nbf",
            ),
            (
                signed(&good_header, &b64url_json(&serde_json::json!([1]))),
                "body",
            ),
            (
                signed(
                    &b64url_json(&serde_json::json!({"alg": "PS256", "typ": "JWT", "x5c": []})),
                    &nbf,
                ),
                "x5c is empty",
            ),
            (
                signed(
                    &b64url_json(
                        &serde_json::json!({"alg": "PS256", "typ": "JWT", "x5c": ["AAAA"]}),
                    ),
                    &nbf,
                ),
                "not a certificate",
            ),
            (
                signed(
                    &b64url_json(&serde_json::json!({"alg": "PS256", "typ": "JWT", "x5c": ["#"]})),
                    &nbf,
                ),
                "not base64",
            ),
            (
                signed(
                    &b64url_json(&serde_json::json!({"alg": "PS256", "typ": "JOSE", "x5c": [der]})),
                    &nbf,
                ),
                "typ",
            ),
            (
                signed(&b64url_json(&serde_json::json!({"typ": "JWT"})), &nbf),
                "no alg",
            ),
            // padding is not base64url of a JWS
            (format!("{}=", signed(&good_header, &nbf)), "signature"),
        ];
        for (token, says) in cases {
            match verify(&token) {
                Err(VerifyError::Malformed(why)) => assert!(why.contains(says), "{token}: {why}"),
                other => panic!("{token}: {other:?}"),
            }
        }
        assert!(verify(&"a".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }
}
