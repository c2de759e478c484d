//! The receive pipeline: what happens to a mail between the Fachdienst's RETR and the
//! client's (gemSpec_CM_KOMLE 3.4.4, the POP3 PROCESS state).
//!
//! [`open`] decides, for one received mail and the user who fetches it: pass it on
//! unchanged (not a KIM mail, A_21390), the unsupported-version mail (A_21391-02),
//! the decryption error mail (KOM-LE-A_2046), the security-violation mail (A_23165),
//! or the opened mail with its result fields and notes. The cryptography is behind
//! [`Opener`], so these rules are the same whichever provider holds the keys.

use super::kas::{self, KasContent};
use super::restore::{self, KasPending};
use super::{error_mail, header, notes, wrap};

/// KIM versions this Clientmodul opens (X-KOM-LE-Version).
pub const SUPPORTED_VERSIONS: [&str; 2] = ["1.0", "1.5"];

/// Header fields compared between the outer and the signed inner mail
/// (KOM-LE-A_2048-01).
pub const COMPARED_FIELDS: [&str; 5] = ["From", "Sender", "Reply-To", "To", "Cc"];

/// Why decryption failed, as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecryptError {
    /// No key of this user fits (or the user is not among the recipients).
    KeyUnavailable,
    /// Not an AuthEnvelopedData of the profile, or it does not parse.
    WrongFormat,
    /// The ciphertext or its tag was altered: treated as wrong format, no plaintext.
    Corrupted,
    /// The provider (Konnektor) did not answer.
    ProviderUnavailable,
}

/// The signature check's verdict (Tab_Verm_Sig_Prüf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// 01
    Valid,
    /// 02: signature or digest does not match.
    IntegrityViolated,
    /// 03: no signature.
    NoSignature,
    /// 04: not a SignedData of the profile.
    WrongFormat,
    /// 05: the math is right, the certificate path is not valid.
    CertPathInvalid,
}

impl SignatureCheck {
    pub fn code(self) -> &'static str {
        match self {
            SignatureCheck::Valid => "01",
            SignatureCheck::IntegrityViolated => "02",
            SignatureCheck::NoSignature => "03",
            SignatureCheck::WrongFormat => "04",
            SignatureCheck::CertPathInvalid => "05",
        }
    }
}

/// A verified SignedData.
#[derive(Debug, Clone)]
pub struct Verification<'a> {
    pub check: SignatureCheck,
    /// The signed content (eContent), when it could be read; borrowed from the
    /// SignedData where possible.
    pub content: Option<std::borrow::Cow<'a, [u8]>>,
    /// The signed recipient-emails attribute (DER), when present.
    pub recipient_emails: Option<Vec<u8>>,
}

/// The cryptography the receive pipeline needs, for one fetching user.
pub trait Opener {
    /// The addresses in the unprotected recipient-emails attribute (for KOM-LE-A_2043)
    /// and the attribute's DER (to compare with the signed one).
    fn recipient_emails(
        &self,
        enveloped_der: &[u8],
    ) -> Result<(Vec<String>, Vec<u8>), DecryptError>;
    /// Decrypts with the key of `address` only (KOM-LE-A_2045). Takes the DER by
    /// value, so a provider can decrypt in place.
    fn decrypt(&self, address: &str, enveloped_der: Vec<u8>) -> Result<Vec<u8>, DecryptError>;
    /// Verifies a SignedData.
    fn verify<'a>(&self, signed_der: &'a [u8]) -> Verification<'a>;
}

/// What [`open`] made of a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub mail: Vec<u8>,
    /// X-KIM-DecryptionResult; empty for a mail that was not a KIM mail.
    pub decryption: String,
    /// X-KIM-IntegrityCheckResult codes, comma-separated; empty when not checked.
    pub integrity: String,
    /// The body is a KIM-Attachment structure: the mail data are still to be
    /// downloaded and restored ([`super::restore`]); `mail` is the opened KIM mail.
    pub kas: Option<Box<KasPending>>,
}

fn normalized(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// KOM-LE-A_2048-01: the outer fields that differ from the signed inner ones.
pub fn header_mismatch(outer_head: &[u8], inner_head: &[u8]) -> Vec<&'static str> {
    COMPARED_FIELDS
        .iter()
        .copied()
        .filter(|f| {
            header::value(outer_head, f).map(|v| normalized(&v))
                != header::value(inner_head, f).map(|v| normalized(&v))
        })
        .collect()
}

/// Opens `received` for the fetching user `address` (the POP3 user name without the
/// `#` part, KOM-LE-A_2044).
///
/// It takes the received mail by value: an opened mail is built after the received
/// one is freed, so the peak memory of a large mail stays near two copies.
pub fn open(received: impl Into<Vec<u8>>, address: &str, opener: &impl Opener) -> Opened {
    let received: Vec<u8> = received.into();
    let (outer_head, outer_body) = header::split(&received);
    // A_21390: only a mail with X-KOM-LE-Version is a KIM mail
    let Some(version) = header::value(outer_head, "X-KOM-LE-Version") else {
        return Opened {
            mail: received,
            decryption: String::new(),
            integrity: String::new(),
            kas: None,
        };
    };
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return Opened {
            mail: error_mail::unsupported_version(&received, &version, &SUPPORTED_VERSIONS),
            decryption: String::new(),
            integrity: String::new(),
            kas: None,
        };
    }
    let failed = |f: error_mail::DecryptionFailure| Opened {
        mail: error_mail::not_decrypted(&received, &f, address),
        decryption: f.code().to_string(),
        integrity: String::new(),
        kas: None,
    };
    let to_failure = |e: DecryptError| match e {
        DecryptError::KeyUnavailable => error_mail::DecryptionFailure::KeyUnavailable,
        DecryptError::WrongFormat | DecryptError::Corrupted => {
            error_mail::DecryptionFailure::WrongFormat
        }
        DecryptError::ProviderUnavailable => error_mail::DecryptionFailure::KonnektorUnavailable,
    };
    // Each layer is dropped once the next exists, so a 15 MiB mail costs about three
    // copies at the peak (the received mail, one layer, the result).
    let (decrypted, unprotected_attr) = {
        let Some(enveloped) = wrap::decode_base64_lines(outer_body) else {
            return failed(error_mail::DecryptionFailure::WrongFormat);
        };
        // KOM-LE-A_2043..2045: only with the fetching user's key, found through
        // recipient-emails
        let (listed, unprotected_attr) = match opener.recipient_emails(&enveloped) {
            Ok(x) => x,
            Err(e) => return failed(to_failure(e)),
        };
        if !listed.iter().any(|a| a.eq_ignore_ascii_case(address)) {
            return failed(error_mail::DecryptionFailure::KeyUnavailable);
        }
        match opener.decrypt(address, enveloped) {
            Ok(d) => (d, unprotected_attr),
            Err(e) => return failed(to_failure(e)),
        }
    };

    // integrity: the signature, its path, the outer header, recipient-emails; the
    // content stays where it is in the decrypted buffer
    let mut codes: Vec<&'static str> = Vec::new();
    let signed = wrap::signed_unwrap(&decrypted);
    let verification = match &signed {
        Some(signed) => opener.verify(signed),
        None => Verification {
            check: SignatureCheck::NoSignature,
            content: None,
            recipient_emails: None,
        },
    };
    if verification.check != SignatureCheck::Valid {
        codes.push(verification.check.code());
    }
    let inner = verification
        .content
        .as_deref()
        .and_then(wrap::rfc822_unwrap);
    let Some(inner) = inner else {
        if codes.is_empty() {
            codes.push(SignatureCheck::WrongFormat.code());
        }
        return security_violation(&received, &decrypted, &codes);
    };
    let (inner_head, _) = header::split(inner);
    if !header_mismatch(outer_head, inner_head).is_empty() {
        codes.push("08");
    }
    if verification.recipient_emails.as_deref() != Some(unprotected_attr.as_slice()) {
        codes.push("09");
    }
    if !codes.is_empty() {
        return security_violation(&received, inner, &codes);
    }
    let top = error_mail::opened_head(&received, "01");
    match kas::kas_content(inner) {
        KasContent::None => {}
        // A_19369-02
        KasContent::Ambiguous => {
            return Opened {
                mail: restore::replaced_body(&top, inner_head, restore::AMBIGUOUS, None),
                decryption: "00".into(),
                integrity: "01".into(),
                kas: None,
            }
        }
        KasContent::One(attachment) => {
            let pending = KasPending {
                attachment,
                top: top.clone(),
                inner_head: inner_head.to_vec(),
                received: received.clone(),
            };
            let mut mail = top;
            mail.extend_from_slice(inner);
            return Opened {
                mail,
                decryption: "00".into(),
                integrity: "01".into(),
                kas: Some(Box::new(pending)),
            };
        }
    }
    let mut mail = top;
    drop(received);
    notes::append_to(&mut mail, inner, &[notes::DECRYPTED, notes::SIGNATURE_OK]);
    Opened {
        mail,
        decryption: "00".into(),
        integrity: "01".into(),
        kas: None,
    }
}

fn security_violation(received: &[u8], original: &[u8], codes: &[&str]) -> Opened {
    Opened {
        mail: error_mail::integrity_failed(received, original, codes),
        decryption: "00".into(),
        integrity: codes.join(","),
        kas: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An opener over fixed answers, to test the rules alone.
    struct Fixed {
        listed: Vec<String>,
        attr: Vec<u8>,
        decrypted: Result<Vec<u8>, DecryptError>,
        verification: Verification<'static>,
    }

    impl Opener for Fixed {
        fn recipient_emails(&self, _: &[u8]) -> Result<(Vec<String>, Vec<u8>), DecryptError> {
            Ok((self.listed.clone(), self.attr.clone()))
        }
        fn decrypt(&self, _: &str, _: Vec<u8>) -> Result<Vec<u8>, DecryptError> {
            self.decrypted.clone()
        }
        fn verify<'a>(&self, _: &'a [u8]) -> Verification<'a> {
            self.verification.clone()
        }
    }

    const INNER: &[u8] = b"From: A <a@x.de>\r\nTo: b@x.de\r\nSubject: Befund\r\nContent-Type: text/plain\r\n\r\nHallo\r\n";

    fn outer(from: &str) -> Vec<u8> {
        let mut m = format!(
            "Return-Path: <a@x.de>\r\nFrom: {from}\r\nTo: b@x.de\r\nSubject: KOM-LE-Nachricht\r\nX-KOM-LE-Version: 1.0\r\n\r\n"
        )
        .into_bytes();
        wrap::append_base64_lines(&mut m, b"enveloped");
        m
    }

    fn good() -> Fixed {
        Fixed {
            listed: vec!["b@x.de".into()],
            attr: b"ATTR".to_vec(),
            decrypted: Ok(wrap::signed_wrap(b"SIGNED")),
            verification: Verification {
                check: SignatureCheck::Valid,
                content: Some(wrap::rfc822_wrap(INNER).into()),
                recipient_emails: Some(b"ATTR".to_vec()),
            },
        }
    }

    #[test]
    fn a_good_mail_opens_with_results_and_notes() {
        let o = open(outer("A <a@x.de>"), "B@x.de", &good());
        assert_eq!((o.decryption.as_str(), o.integrity.as_str()), ("00", "01"));
        let text = String::from_utf8(o.mail).unwrap();
        assert!(text.starts_with("Return-Path: <a@x.de>\r\nX-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\nFrom: A <a@x.de>"), "{text}");
        assert!(text.ends_with("Hallo\r\n---------------------------------------------\r\nDie Nachricht wurde entschlüsselt.\r\nDie Signatur wurde erfolgreich geprüft.\r\n"), "{text}");
    }

    #[test]
    fn not_a_kim_mail_passes_unchanged_and_unknown_version_gets_4008() {
        let plain = b"From: a@x.de\r\n\r\nhi\r\n";
        assert_eq!(open(plain, "b@x.de", &good()).mail, plain);
        let v2 = String::from_utf8(outer("a@x.de"))
            .unwrap()
            .replace("X-KOM-LE-Version: 1.0", "X-KOM-LE-Version: 2.0");
        let o = open(v2.as_bytes(), "b@x.de", &good());
        assert!(String::from_utf8_lossy(&o.mail).contains("X-KIM-Fehlermeldung: 4008"));
    }

    #[test]
    fn only_the_fetching_users_key() {
        let mut f = good();
        f.listed = vec!["c@x.de".into()];
        let o = open(outer("A <a@x.de>"), "b@x.de", &f);
        assert_eq!(o.decryption, "01");
        assert!(String::from_utf8_lossy(&o.mail).contains("X-KIM-DecryptionResult: 01\r\n"));
    }

    #[test]
    fn decryption_failures_get_their_codes() {
        for (e, code) in [
            (DecryptError::KeyUnavailable, "01"),
            (DecryptError::WrongFormat, "02"),
            (DecryptError::Corrupted, "02"),
            (DecryptError::ProviderUnavailable, "03"),
        ] {
            let mut f = good();
            f.decrypted = Err(e);
            let o = open(outer("A <a@x.de>"), "b@x.de", &f);
            assert_eq!(o.decryption, code);
            assert!(
                !String::from_utf8_lossy(&o.mail).contains("Hallo"),
                "no plaintext in an error mail"
            );
        }
        let broken = b"From: a@x.de\r\nX-KOM-LE-Version: 1.0\r\n\r\n!!!not base64!!!\r\n";
        assert_eq!(open(broken, "b@x.de", &good()).decryption, "02");
    }

    #[test]
    fn integrity_failures_get_their_codes_and_the_security_text() {
        let o = open(outer("Mallory <m@evil.de>"), "b@x.de", &good());
        assert_eq!(o.integrity, "08");
        let text = String::from_utf8_lossy(&o.mail).into_owned();
        assert!(text.contains("Sicherheitsverletzung"));

        let mut f = good();
        f.verification.recipient_emails = Some(b"OTHER".to_vec());
        assert_eq!(open(outer("A <a@x.de>"), "b@x.de", &f).integrity, "09");

        let mut f = good();
        f.verification.check = SignatureCheck::IntegrityViolated;
        assert_eq!(open(outer("A <a@x.de>"), "b@x.de", &f).integrity, "02");

        let mut f = good();
        f.verification = Verification {
            check: SignatureCheck::WrongFormat,
            content: None,
            recipient_emails: None,
        };
        let o = open(outer("A <a@x.de>"), "b@x.de", &f);
        assert_eq!((o.decryption.as_str(), o.integrity.as_str()), ("00", "04"));

        let mut f = good();
        f.decrypted = Ok(b"Content-Type: text/plain\r\n\r\nnot signed".to_vec());
        assert_eq!(open(outer("A <a@x.de>"), "b@x.de", &f).integrity, "03");
    }

    #[test]
    fn a_kas_mail_waits_for_its_download_and_two_structures_are_refused() {
        let kas_inner = |parts: &str| {
            format!("From: A <a@x.de>\r\nTo: b@x.de\r\nSubject: Befund\r\nX-KIM-KAS-Size: 20000000\r\n{parts}")
        };
        let one = r#"{"link":"https://kas/a","k":"a2V5","hash":"aGFzaA==","size":20000000}"#;
        let single = kas_inner(&format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: x-kas\r\n\r\n{one}"
        ));
        let mut f = good();
        f.verification.content = Some(wrap::rfc822_wrap(single.as_bytes()).into());
        let o = open(outer("A <a@x.de>"), "b@x.de", &f);
        let pending = o.kas.expect("a KAS mail");
        assert_eq!(pending.attachment.link, "https://kas/a");
        assert_eq!(pending.kas_size(), Some(20_000_000));
        assert!(pending.top.ends_with(b"X-KIM-IntegrityCheckResult: 01\r\n"));

        let part = format!("--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: x-kas\r\n\r\n{one}\r\n");
        let two = kas_inner(&format!(
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n{part}{part}--b--\r\n"
        ));
        let mut f = good();
        f.verification.content = Some(wrap::rfc822_wrap(two.as_bytes()).into());
        let o = open(outer("A <a@x.de>"), "b@x.de", &f);
        assert!(o.kas.is_none());
        let text = String::from_utf8(o.mail).unwrap();
        assert!(
            text.contains("Subject: Befund\r\n")
                && text.ends_with(&format!("\r\n\r\n{}\r\n", restore::AMBIGUOUS)),
            "{text}"
        );
        assert!(!text.contains("https://kas/a"), "the structures are gone");
    }

    #[test]
    fn folded_and_spaced_fields_compare_equal() {
        let outer_head = b"To: b@x.de,\r\n  c@x.de\r\n";
        let inner_head = b"To: b@x.de, c@x.de\r\n";
        assert!(header_mismatch(outer_head, inner_head).is_empty());
        assert_eq!(header_mismatch(b"Cc: x@y\r\n", b""), vec!["Cc"]);
    }
}
