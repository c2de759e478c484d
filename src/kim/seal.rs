//! The send rules: how a client's mail becomes a KIM mail (gemSpec_CM_KOMLE
//! 3.3.4.1.1, KOM-LE-A_2299-01), given each recipient's encryption certificates.
//!
//! Who is encryptable decides who gets the mail: a recipient without an encryption
//! certificate is dropped from To/Cc (KOM-LE-A_2028) and reported back so the sender
//! gets a DSN (KOM-LE-A_2024-01, X-KIM-Fehlermeldung 4004); with nobody left the
//! client gets 451 (KOM-LE-A_2025); a sender without one gets 553 (spec FAQ). Every
//! encryption certificate of every recipient and of the sender gets a RecipientInfo
//! (KOM-LE-A_2022, KOM-LE-A_2111-01), Bcc recipients included, though they stay out
//! of the outer header. The cryptography is behind [`Sealer`].

use mail_parser::{Address, MessageParser};
use openssl::x509::X509;

use super::{header, wrap};

/// One entry of recipient-emails: a certificate and the KIM address it belongs to
/// (KOM-LE-A_2115-02, KOM-LE-A_2116).
pub type CertFor = (X509, String);

/// The cryptography the send pipeline needs.
pub trait Sealer {
    /// SignedData over `content` with the sender's key and the recipient-emails
    /// attribute of `entries` as a signed attribute (KOM-LE-A_2190).
    /// `content` is given in parts, signed as their concatenation.
    fn sign(&self, sender: &str, content: &[&[u8]], entries: &[CertFor])
        -> Result<Vec<u8>, String>;
    /// AuthEnvelopedData of `content` (the concatenation of its parts) for every
    /// certificate in `entries`, with the same attribute as unprotected attribute
    /// (KOM-LE-A_2191).
    fn encrypt(&self, content: &[&[u8]], entries: &[CertFor]) -> Result<Vec<u8>, String>;
}

/// Why a mail is not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealRefusal {
    /// FAQ: the sender has no encryption certificate: 553.
    #[error("the sender {0} has no encryption certificate in the directory")]
    SenderNotEncryptable(String),
    /// KOM-LE-A_2025: no recipient is encryptable: 451.
    #[error("no recipient has an encryption certificate: {}", .0.join(", "))]
    NoRecipientEncryptable(Vec<String>),
    /// Signing or encryption failed: 451.
    #[error("sealing failed: {0}")]
    Crypto(String),
}

/// A sealed mail and who could not get it.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub mail: Vec<u8>,
    /// Envelope recipients that do get the mail.
    pub recipients: Vec<String>,
    /// Recipients without an encryption certificate (for the 4004 DSN).
    pub unreachable: Vec<String>,
}

/// Seals `mail` from `sender` for `recipients` (the envelope's RCPT TO addresses).
/// `certs` gives each address's encryption certificates (the sender's among them).
pub fn seal(
    mail: Vec<u8>,
    sender: &str,
    recipients: &[String],
    certs: &dyn Fn(&str) -> Vec<X509>,
    sealer: &impl Sealer,
    fields: &wrap::OuterFields<'_>,
) -> Result<Sealed, SealRefusal> {
    let Parties {
        entries,
        reachable,
        unreachable,
    } = parties(sender, recipients, certs)?;

    // A_19488-02, then KOM-LE-A_2028 and A_23174: the inner mail as it will be signed
    let mut inner = wrap::with_dienstkennung(&mail);
    drop(mail);
    if let Some(cleaned) = keeping_only(&inner, &reachable) {
        inner = cleaned;
    }
    let inner_head = header::split(&inner).0.to_vec();
    // each layer is dropped as soon as the next exists: a 15 MiB mail stays near
    // two copies in memory
    let signed = sealer
        .sign(sender, &[wrap::RFC822_WRAP, &inner], &entries)
        .map_err(SealRefusal::Crypto)?;
    drop(inner);
    let enveloped = sealer
        .encrypt(&[wrap::SIGNED_WRAP_HEADER, &signed], &entries)
        .map_err(SealRefusal::Crypto)?;
    drop(signed);
    Ok(Sealed {
        mail: wrap::outer_mail(&inner_head, &enveloped, fields),
        recipients: reachable,
        unreachable,
    })
}

/// Who gets a mail, decided by who has encryption certificates.
pub struct Parties {
    /// One entry per certificate of every reachable recipient and of the sender.
    pub entries: Vec<CertFor>,
    /// Envelope recipients that get the mail.
    pub reachable: Vec<String>,
    /// Recipients without an encryption certificate (for the 4004 DSN).
    pub unreachable: Vec<String>,
}

/// The parties of a mail from `sender` to `recipients`.
pub fn parties(
    sender: &str,
    recipients: &[String],
    certs: &dyn Fn(&str) -> Vec<X509>,
) -> Result<Parties, SealRefusal> {
    let sender_certs = certs(sender);
    if sender_certs.is_empty() {
        return Err(SealRefusal::SenderNotEncryptable(sender.to_string()));
    }
    let mut entries: Vec<CertFor> = Vec::new();
    let mut reachable = Vec::new();
    let mut unreachable = Vec::new();
    for r in recipients {
        let c = certs(r);
        if c.is_empty() {
            unreachable.push(r.clone());
        } else {
            reachable.push(r.clone());
            entries.extend(c.into_iter().map(|x| (x, r.clone())));
        }
    }
    if reachable.is_empty() {
        return Err(SealRefusal::NoRecipientEncryptable(unreachable));
    }
    // KOM-LE-A_2111-01: the sender can read what it sent
    if !reachable.iter().any(|r| r.eq_ignore_ascii_case(sender)) {
        entries.extend(sender_certs.into_iter().map(|x| (x, sender.to_string())));
    }
    Ok(Parties {
        entries,
        reachable,
        unreachable,
    })
}

/// A_19488-02, KOM-LE-A_2028 and A_23174 on a header alone (with its final line
/// end): the header of the processed client mail, for a mail whose body stays in
/// the spool (A_19363-03: all header processing before the KAS upload).
pub fn processed_head(head: &[u8], reachable: &[String]) -> Vec<u8> {
    let mut mail = head.to_vec();
    mail.extend_from_slice(b"\r\n");
    let mut mail = wrap::with_dienstkennung(&mail);
    if let Some(cleaned) = keeping_only(&mail, reachable) {
        mail = cleaned;
    }
    mail.truncate(mail.len() - 2);
    mail
}

/// The mail with only `keep` left in its To and Cc fields (KOM-LE-A_2028: who
/// cannot decrypt is removed; A_23174: only addresses checked in RCPT TO remain) and
/// without Bcc fields (Bcc recipients get their RecipientInfo but stay hidden). A
/// field that loses all its addresses goes; untouched fields keep their bytes.
/// `None` when nothing changes.
pub fn keeping_only(mail: &[u8], keep: &[String]) -> Option<Vec<u8>> {
    let (head, body) = header::split(mail);
    let kept = |a: &str| keep.iter().any(|k| k.eq_ignore_ascii_case(a));
    let mut changed = false;
    let mut out = Vec::with_capacity(mail.len());
    for f in header::fields(head) {
        let name = f.name.to_ascii_lowercase();
        if name == "bcc" {
            changed = true;
            continue;
        }
        if name != "to" && name != "cc" {
            out.extend_from_slice(f.raw);
            continue;
        }
        let all = addresses(f.raw, name == "to");
        if all.iter().all(|(_, a)| kept(a)) {
            out.extend_from_slice(f.raw);
            continue;
        }
        changed = true;
        let left: Vec<String> = all
            .iter()
            .filter(|(_, a)| kept(a))
            .map(|(n, a)| match n {
                Some(n) if !n.is_empty() => format!("\"{}\" <{a}>", n.replace('"', "")),
                _ => format!("<{a}>"),
            })
            .collect();
        if !left.is_empty() {
            out.extend_from_slice(format!("{}: {}\r\n", f.name, left.join(", ")).as_bytes());
        }
    }
    if !changed {
        return None;
    }
    out.extend_from_slice(&mail[head.len()..mail.len() - body.len()]);
    out.extend_from_slice(body);
    Some(out)
}

/// The (display name, address) pairs of one To or Cc field.
fn addresses(raw: &[u8], is_to: bool) -> Vec<(Option<String>, String)> {
    let parsed = MessageParser::default().parse(raw);
    let list = parsed
        .as_ref()
        .and_then(|m| if is_to { m.to() } else { m.cc() });
    let pair =
        |a: &mail_parser::Addr<'_>| Some((a.name().map(str::to_string), a.address()?.to_string()));
    match list {
        Some(Address::List(v)) => v.iter().filter_map(pair).collect(),
        Some(Address::Group(groups)) => groups
            .iter()
            .flat_map(|g| g.addresses.iter())
            .filter_map(pair)
            .collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records what it was asked to sign and encrypt; "signs" and "encrypts" by tagging.
    #[derive(Default)]
    struct Recorder {
        signed: RefCell<Vec<u8>>,
        entries: RefCell<Vec<String>>,
    }

    impl Sealer for Recorder {
        fn sign(&self, _: &str, content: &[&[u8]], entries: &[CertFor]) -> Result<Vec<u8>, String> {
            *self.signed.borrow_mut() = content.concat();
            *self.entries.borrow_mut() = entries.iter().map(|(_, a)| a.clone()).collect();
            Ok(b"SIGNED".to_vec())
        }
        fn encrypt(&self, content: &[&[u8]], _: &[CertFor]) -> Result<Vec<u8>, String> {
            assert!(content.concat().ends_with(b"SIGNED"));
            Ok(b"ENVELOPED".to_vec())
        }
    }

    fn cert() -> X509 {
        let key =
            openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap();
        let mut b = X509::builder().unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        b.build()
    }

    const MAIL: &[u8] =
        b"From: A <a@x.de>\r\nTo: \"Bee\" <b@x.de>, c@x.de\r\nSubject: s\r\n\r\nbody\r\n";
    const FIELDS: wrap::OuterFields<'static> = wrap::OuterFields {
        kom_le_version: "1.0",
        cm_version: "KIMCM_0.1.0",
        pt_version: "1.5.2",
        expires: None,
    };

    #[test]
    fn everyone_encryptable() {
        let c = cert();
        let certs = |_: &str| vec![c.clone()];
        let r = Recorder::default();
        let sealed = seal(
            MAIL.to_vec(),
            "a@x.de",
            &["b@x.de".into(), "c@x.de".into(), "bcc@x.de".into()],
            &certs,
            &r,
            &FIELDS,
        )
        .unwrap();
        assert!(sealed.unreachable.is_empty());
        // Bcc and the sender get their RecipientInfo
        assert_eq!(
            *r.entries.borrow(),
            vec!["b@x.de", "c@x.de", "bcc@x.de", "a@x.de"]
        );
        // what was signed: the rfc822 wrap of the mail with the Dienstkennung
        assert_eq!(
            *r.signed.borrow(),
            wrap::rfc822_wrap(&wrap::with_dienstkennung(MAIL))
        );
        let (h, _) = header::split(&sealed.mail);
        assert_eq!(header::value(h, "Subject").unwrap(), "KOM-LE-Nachricht");
    }

    #[test]
    fn a_recipient_without_certificate_is_dropped_and_reported() {
        let c = cert();
        let certs = |a: &str| {
            if a == "c@x.de" {
                vec![]
            } else {
                vec![c.clone()]
            }
        };
        let r = Recorder::default();
        let sealed = seal(
            MAIL.to_vec(),
            "a@x.de",
            &["b@x.de".into(), "c@x.de".into()],
            &certs,
            &r,
            &FIELDS,
        )
        .unwrap();
        assert_eq!(sealed.unreachable, vec!["c@x.de"]);
        assert_eq!(sealed.recipients, vec!["b@x.de"]);
        let signed = r.signed.borrow().clone();
        let inner = wrap::rfc822_unwrap(&signed).unwrap();
        let (h, _) = header::split(inner);
        assert_eq!(header::value(h, "To").unwrap(), "\"Bee\" <b@x.de>");
        let (oh, _) = header::split(&sealed.mail);
        assert_eq!(header::value(oh, "To").unwrap(), "\"Bee\" <b@x.de>");
    }

    #[test]
    fn refusals() {
        let c = cert();
        let r = Recorder::default();
        let none = |_: &str| Vec::<X509>::new();
        assert_eq!(
            seal(
                MAIL.to_vec(),
                "a@x.de",
                &["b@x.de".into()],
                &none,
                &r,
                &FIELDS
            )
            .unwrap_err(),
            SealRefusal::SenderNotEncryptable("a@x.de".into())
        );
        let only_sender = |a: &str| {
            if a == "a@x.de" {
                vec![c.clone()]
            } else {
                vec![]
            }
        };
        assert_eq!(
            seal(
                MAIL.to_vec(),
                "a@x.de",
                &["b@x.de".into()],
                &only_sender,
                &r,
                &FIELDS
            )
            .unwrap_err(),
            SealRefusal::NoRecipientEncryptable(vec!["b@x.de".into()])
        );
    }

    #[test]
    fn untouched_fields_keep_their_bytes() {
        let m = b"To: b@x.de,\r\n c@x.de\r\nCc: d@x.de\r\n\r\nx";
        let all = ["b@x.de".into(), "c@x.de".into(), "d@x.de".into()];
        assert_eq!(keeping_only(m, &all), None);
        assert_eq!(
            keeping_only(m, &all[..2]).unwrap(),
            b"To: b@x.de,\r\n c@x.de\r\n\r\nx"
        );
        // A_23174: an address not checked in RCPT TO goes too; Bcc always goes
        let m = b"To: b@x.de, \"Zed\" <z@x.de>\r\nBcc: d@x.de\r\nSubject: s\r\n\r\nx";
        assert_eq!(
            keeping_only(m, &all).unwrap(),
            b"To: <b@x.de>\r\nSubject: s\r\n\r\nx"
        );
    }
}
