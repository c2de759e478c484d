//! SASL PLAIN and LOGIN, the only mechanisms a Clientmodul offers (KOM-LE-A_2009):
//! the proxy must see the password to log in upstream on the user's behalf, which
//! challenge-response mechanisms would not allow.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zeroize::Zeroizing;

/// The credentials a client sent.
pub struct Credentials {
    pub user: String,
    pub password: Zeroizing<String>,
}

/// Why a SASL response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("the response is not valid base64")]
    Base64,
    #[error("the response is not valid UTF-8")]
    Utf8,
    #[error("the PLAIN response is not authzid NUL authcid NUL password")]
    PlainFormat,
}

/// Decodes one base64 SASL response line.
pub fn decode_b64(line: &[u8]) -> Result<Zeroizing<Vec<u8>>, SaslError> {
    let trimmed: Vec<u8> = line
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    B64.decode(&trimmed)
        .map(Zeroizing::new)
        .map_err(|_| SaslError::Base64)
}

fn utf8(bytes: &[u8]) -> Result<String, SaslError> {
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|_| SaslError::Utf8)
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`. The authcid is the login user name.
pub fn decode_plain(line: &[u8]) -> Result<Credentials, SaslError> {
    let raw = decode_b64(line)?;
    let mut parts = raw.split(|b| *b == 0);
    let (Some(_authz), Some(authc), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::PlainFormat);
    };
    if authc.is_empty() {
        return Err(SaslError::PlainFormat);
    }
    Ok(Credentials {
        user: utf8(authc)?,
        password: Zeroizing::new(utf8(pass)?),
    })
}

/// Encodes credentials for AUTH PLAIN towards the upstream server.
pub fn encode_plain(user: &str, password: &str) -> Zeroizing<String> {
    let mut raw = Zeroizing::new(Vec::with_capacity(user.len() + password.len() + 2));
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.as_bytes());
    Zeroizing::new(B64.encode(&*raw))
}

pub fn encode(text: &str) -> String {
    B64.encode(text.as_bytes())
}

/// Decodes a LOGIN response (user name or password).
pub fn decode_login_field(line: &[u8]) -> Result<Zeroizing<String>, SaslError> {
    let raw = decode_b64(line)?;
    Ok(Zeroizing::new(utf8(&raw)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_round_trip() {
        let enc = encode_plain("a@b.de#mta:465#1#CS#7", "geheim");
        let c = decode_plain(enc.as_bytes()).unwrap();
        assert_eq!(c.user, "a@b.de#mta:465#1#CS#7");
        assert_eq!(&*c.password, "geheim");
    }

    #[test]
    fn broken_responses() {
        assert_eq!(decode_plain(b"!!!notbase64").err(), Some(SaslError::Base64));
        assert_eq!(
            decode_plain(encode("no nul bytes").as_bytes()).err(),
            Some(SaslError::PlainFormat)
        );
        assert_eq!(
            decode_plain(encode("\0\0pw").as_bytes()).err(),
            Some(SaslError::PlainFormat)
        );
        assert_eq!(decode_login_field(b"//79").err(), Some(SaslError::Utf8));
    }
}
