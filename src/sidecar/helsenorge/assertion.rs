//! The client assertion (RFC 7523, "private_key_jwt") with which kim-cm proves
//! to HelseID or the Helsenorge STS v2 that it holds the client's RSA key: an
//! RS256 JWT with `kid` in the header and `iss` = `sub` = client id, `aud` = the
//! token endpoint, a fresh `jti`, `iat`, `nbf` and an `exp` at most 60 seconds
//! later (HelseID's rule). An assertion is used once; it is `Zeroizing` and
//! never logged.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private};
use openssl::sign::Signer;
use serde::Serialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// How long an assertion is valid (HelseID: `exp` at most 60 s after `iat`).
pub const LIFETIME_SECS: i64 = 60;
/// The smallest RSA key accepted (HelseID asks for 2048 bits or more).
pub const MIN_RSA_BITS: u32 = 2048;
/// Random bytes in a `jti`.
const JTI_BYTES: usize = 16;
/// RFC 7523 2.2.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The client's signing key and the id the service knows its public half by.
pub struct ClientKey {
    key: PKey<Private>,
    pub kid: String,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// Reads an unencrypted RSA private key (PEM, PKCS#8 or PKCS#1) from `path`.
    pub fn load(path: &Path, kid: &str) -> Result<ClientKey, String> {
        let pem = Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| format!("cannot read the client key {}: {e}", path.display()))?,
        );
        let key = PKey::private_key_from_pem(&pem).map_err(|_| {
            format!(
                "{} is not an unencrypted PEM private key (PKCS#8 or PKCS#1)",
                path.display()
            )
        })?;
        Self::new(key, kid).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A key in memory (RSA, at least [`MIN_RSA_BITS`]).
    pub fn new(key: PKey<Private>, kid: &str) -> Result<ClientKey, String> {
        if key.id() != Id::RSA {
            return Err("the client key must be an RSA key (RS256)".into());
        }
        if key.bits() < MIN_RSA_BITS {
            return Err(format!(
                "the client key has {} bits; HelseID needs at least {MIN_RSA_BITS}",
                key.bits()
            ));
        }
        Ok(ClientKey {
            key,
            kid: kid.to_string(),
        })
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// A fresh `jti`: 128 random bits in hex.
pub fn new_jti() -> String {
    hex::encode(rand::random::<[u8; JTI_BYTES]>())
}

/// The signed assertion of `client_id` for the token endpoint `audience`,
/// issued at `now`.
pub fn build(
    key: &ClientKey,
    client_id: &str,
    audience: &str,
    now: OffsetDateTime,
) -> Result<Zeroizing<String>, String> {
    let iat = now.unix_timestamp();
    let jti = new_jti();
    let header = serde_json::to_vec(&Header {
        alg: "RS256",
        typ: "JWT",
        kid: &key.kid,
    })
    .map_err(|e| e.to_string())?;
    let claims = serde_json::to_vec(&Claims {
        iss: client_id,
        sub: client_id,
        aud: audience,
        jti: &jti,
        iat,
        nbf: iat,
        exp: iat + LIFETIME_SECS,
    })
    .map_err(|e| e.to_string())?;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = (|| {
        let mut s = Signer::new(MessageDigest::sha256(), &key.key)?;
        s.update(input.as_bytes())?;
        s.sign_to_vec()
    })()
    .map_err(|e| format!("cannot sign the client assertion: {e}"))?;
    Ok(Zeroizing::new(format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;
    use openssl::sign::Verifier;

    #[test]
    fn an_rs256_assertion_with_kid_and_a_short_life() {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let ck = ClientKey::new(key.clone(), "key-1").unwrap();
        let now = time::macros::datetime!(2026-12-02 10:00 UTC);
        let a = build(&ck, "client-7", "https://helseid.test/connect/token", now).unwrap();
        let b = build(&ck, "client-7", "https://helseid.test/connect/token", now).unwrap();
        let parts: Vec<&str> = a.split('.').collect();
        assert_eq!(parts.len(), 3);
        let dec = |p: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
        };
        let (h, c) = (dec(parts[0]), dec(parts[1]));
        assert_eq!(h["alg"], "RS256");
        assert_eq!(h["kid"], "key-1");
        assert_eq!(c["iss"], "client-7");
        assert_eq!(c["sub"], "client-7");
        assert_eq!(c["aud"], "https://helseid.test/connect/token");
        assert_eq!(c["iat"], now.unix_timestamp());
        assert_eq!(c["nbf"], now.unix_timestamp());
        assert_eq!(c["exp"], now.unix_timestamp() + 60);
        let jti_b = dec(b.split('.').nth(1).unwrap())["jti"].clone();
        assert_ne!(c["jti"], jti_b, "a new jti every time");
        let mut v = Verifier::new(MessageDigest::sha256(), &key).unwrap();
        v.update(format!("{}.{}", parts[0], parts[1]).as_bytes())
            .unwrap();
        assert!(v
            .verify(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .unwrap());
    }

    #[test]
    fn small_and_non_rsa_keys_are_refused() {
        let small = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        assert!(ClientKey::new(small, "k").unwrap_err().contains("2048"));
        let ec = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap();
        let ec = PKey::from_ec_key(ec).unwrap();
        assert!(ClientKey::new(ec, "k").unwrap_err().contains("RSA"));
    }
}
