//! The simulator's check of the `Authorization: Bearer <JWT>` header
//! (CommonSchemas.yaml `KIMBearerAuth`, JWT in compact serialization, RFC 7515
//! 3.1). The token the Clientmodul makes is fixed by A_19457-02: header
//! `{"alg": "PS256", "typ": "JWT", "x5c": [<AUT certificate>]}`, payload `{"nbf":
//! ...}`, signed with the card's AUT key (RSASSA-PSS).
//!
//! The signature itself is checked in one place, [`verify_signature`], which
//! waits for the project's JWT verifier (`crate::crypto::jwt::verify`); until it
//! is plugged in there, everything else about the token is checked here.

use base64::Engine;
use openssl::stack::Stack;
use openssl::x509::store::X509Store;
use openssl::x509::{X509StoreContext, X509};

/// A token whose `nbf` lies up to this far ahead is still taken (clock skew).
pub const CLOCK_SKEW_SECONDS: i64 = 5;
/// Tokens longer than this are refused unread.
pub const MAX_TOKEN_LEN: usize = 32 * 1024;

/// What a valid token says.
#[derive(Debug, Clone)]
pub struct Bearer {
    /// The AUT certificate from `x5c`.
    pub cert: X509,
    /// The Telematik-ID in the certificate's Admission extension, if any.
    pub telematik_id: Option<String>,
}

/// The check, with the service's settings.
pub struct BearerCheck<'a> {
    /// ServiceInformation `jwtExpiration`: seconds a token is valid after `nbf`.
    pub jwt_expiration: u64,
    /// When set, the `x5c` certificate must chain to these CAs.
    pub trust: Option<&'a X509Store>,
}

fn b64url(part: &str, what: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| format!("the JWT's {what} is not base64url"))
}

fn json(part: &str, what: &str) -> Result<serde_json::Value, String> {
    serde_json::from_slice(&b64url(part, what)?)
        .map_err(|_| format!("the JWT's {what} is not a JSON object"))
}

impl BearerCheck<'_> {
    /// The token of `authorization` (the header's value) at time `now` (Unix
    /// seconds); `Err` says why it is refused (the service answers 401).
    pub fn check(&self, authorization: Option<&str>, now: i64) -> Result<Bearer, String> {
        let value = authorization.ok_or("no Authorization header (Bearer JWT required)")?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or("the Authorization header is not a Bearer token")?
            .trim();
        if token.len() > MAX_TOKEN_LEN {
            return Err("the JWT is too long".into());
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("the JWT is not in compact serialization (three parts)".into());
        };
        let header = json(h, "header")?;
        if header.get("alg").and_then(|v| v.as_str()) != Some("PS256") {
            return Err("the JWT's alg is not PS256 (A_19457-02)".into());
        }
        if header.get("typ").and_then(|v| v.as_str()) != Some("JWT") {
            return Err("the JWT's typ is not JWT".into());
        }
        let first = header
            .get("x5c")
            .and_then(|v| v.as_array())
            .and_then(|a| a.first())
            .and_then(|c| c.as_str())
            .ok_or("the JWT header has no x5c certificate")?;
        // RFC 7515 4.1.6: x5c entries are base64 (not base64url) DER
        let der = base64::engine::general_purpose::STANDARD
            .decode(first)
            .map_err(|_| "the x5c certificate is not base64")?;
        let cert = X509::from_der(&der).map_err(|_| "the x5c certificate is not X.509 DER")?;
        let payload = json(p, "payload")?;
        let nbf = payload
            .get("nbf")
            .and_then(|v| v.as_i64())
            .ok_or("the JWT has no numeric nbf")?;
        if nbf > now + CLOCK_SKEW_SECONDS {
            return Err("the JWT is not valid yet (nbf in the future)".into());
        }
        if now > nbf.saturating_add(self.jwt_expiration as i64) {
            return Err(format!(
                "the JWT has expired (older than jwtExpiration, {} s)",
                self.jwt_expiration
            ));
        }
        let signature = b64url(s, "signature")?;
        if let Some(trust) = self.trust {
            chains_to(&cert, trust)?;
        }
        if signature.is_empty() {
            return Err("the JWT has no signature".into());
        }
        // the PS256 signature with the x5c key (A_19457-02)
        crate::crypto::jwt::verify(token).map_err(|e| format!("the JWT is refused: {e}"))?;
        Ok(Bearer {
            telematik_id: crate::crypto::admission::telematik_id(&cert),
            cert,
        })
    }
}

fn chains_to(cert: &X509, trust: &X509Store) -> Result<(), String> {
    let ok = X509StoreContext::new()
        .and_then(|mut ctx| {
            let chain = Stack::new()?;
            ctx.init(trust, cert, &chain, |c| c.verify_cert())
        })
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err("the x5c certificate is not from a trusted CA".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    use crate::crypto::jwt::token;

    /// `Bearer header.body.signature`, signed with `key` (PS256) whatever the
    /// header says.
    fn signed(
        key: &openssl::pkey::PKey<openssl::pkey::Private>,
        header: serde_json::Value,
        nbf: i64,
    ) -> String {
        let input = format!(
            "{}.{}",
            b64(&header),
            b64(&serde_json::json!({ "nbf": nbf }))
        );
        let sig = token::sign_hash(key, &token::hash(&input)).unwrap();
        format!("Bearer {}", token::assemble(&input, &sig))
    }

    #[test]
    fn checks_header_and_times() {
        let check = BearerCheck {
            jwt_expiration: 300,
            trust: None,
        };
        let (key, cert) = token::tests::key_and_cert();
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.to_der().unwrap());
        let good = serde_json::json!({"alg": "PS256", "typ": "JWT", "x5c": [x5c]});
        let token = |h: serde_json::Value, nbf: i64| signed(&key, h, nbf);
        let now = 1_700_000_000;
        assert!(check
            .check(Some(&token(good.clone(), now - 10)), now)
            .is_ok());
        let refused = |t: &str| check.check(Some(t), now).unwrap_err();
        assert!(refused(&token(good.clone(), now + 60)).contains("not valid yet"));
        assert!(refused(&token(good.clone(), now - 301)).contains("expired"));
        let rs = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
        assert!(refused(&token(rs, now)).contains("PS256"));
        let no_cert = serde_json::json!({"alg": "PS256", "typ": "JWT"});
        assert!(refused(&token(no_cert, now)).contains("x5c"));
        // a signature by another key is refused
        let (other, _) = token::tests::key_and_cert();
        assert!(refused(&signed(&other, good.clone(), now)).contains("refused"));
        assert!(refused("Basic abc").contains("Bearer"));
        assert!(refused("Bearer a.b").contains("three parts"));
        assert!(check
            .check(None, now)
            .unwrap_err()
            .contains("no Authorization"));
    }
}
