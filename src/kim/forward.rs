//! KOM-LE-A_2029: a user who got a KIM mail that could not be decrypted (the error
//! mail carries it as a `message/rfc822` part) forwards it to their own address;
//! the Clientmodul extracts the embedded KIM mail and hands it to the MTA as it is,
//! so the next fetch opens it again.
//!
//! Only a real KIM mail is passed on unsealed: the embedded message must say
//! `X-KOM-LE-Version`, be `application/pkcs7-mime` and its body must be a CMS
//! (Auth)EnvelopedData. Anything else is sealed like every other mail, so this path
//! cannot carry plaintext past the sealing. And only to the sender's own address, the
//! re-delivery the requirement is for; a forward to others is sealed as usual.

use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::{header, wrap};
use crate::cms::{ber, oid};

/// id-envelopedData 1.2.840.113549.1.7.3 (KIM 1.0 senders).
const ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];

/// The KIM mail a client forwarded inside `mail`, when there is exactly one.
pub fn forwarded_kim_mail(mail: &[u8]) -> Option<Vec<u8>> {
    let parsed = MessageParser::default().parse(mail)?;
    let mut found = parsed.parts.iter().filter_map(|p| match &p.body {
        PartType::Message(m)
            if p.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("message")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("rfc822"))
            }) =>
        {
            // a nested message's offsets point into its raw buffer (the outer mail,
            // or the decoded part when the part was base64)
            let root = m.root_part();
            let (start, end) = (root.offset_header as usize, root.offset_end as usize);
            m.raw_message.get(start..end).map(header::to_crlf)
        }
        _ => None,
    });
    let inner = found.next()?;
    if found.next().is_some() {
        return None;
    }
    is_kim_mail(&inner).then_some(inner)
}

/// True for an outer KIM mail: the version field, the S/MIME type and a body that is
/// an (Auth)EnvelopedData.
fn is_kim_mail(mail: &[u8]) -> bool {
    let (head, body) = header::split(mail);
    if header::value(head, "X-KOM-LE-Version").is_none() {
        return false;
    }
    let ct = header::value(head, "Content-Type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !ct.starts_with("application/pkcs7-mime") && !ct.starts_with("application/x-pkcs7-mime") {
        return false;
    }
    let Some(der) = wrap::decode_base64_lines(body) else {
        return false;
    };
    let Ok((ci, _)) = ber::read(&der) else {
        return false;
    };
    let Ok(parts) = ci.children() else {
        return false;
    };
    parts.first().is_some_and(|o| {
        o.tag == 0x06 && (o.content == oid::AUTH_ENVELOPED_DATA || o.content == ENVELOPED_DATA)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kim_mail() -> Vec<u8> {
        // an AuthEnvelopedData ContentInfo shape is enough for the check
        let der = crate::cms::der::seq(&[
            &crate::cms::der::oid(oid::AUTH_ENVELOPED_DATA),
            &crate::cms::der::tlv(0xa0, &crate::cms::der::seq(&[])),
        ]);
        let mut m =
            b"From: a@x.de\r\nTo: b@x.de\r\nSubject: KOM-LE-Nachricht\r\nX-KOM-LE-Version: 1.0\r\n\
Content-Type: application/pkcs7-mime; smime-type=authenticated-enveloped-data; name=smime.p7m\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
                .to_vec();
        wrap::append_base64_lines(&mut m, &der);
        m
    }

    fn forward(inner: &[u8]) -> Vec<u8> {
        let mut m = b"From: b@x.de\r\nTo: b@x.de\r\nSubject: WG: x\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
Bitte erneut entschluesseln\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\n"
            .to_vec();
        m.extend_from_slice(inner);
        m.extend_from_slice(b"\r\n--b1--\r\n");
        m
    }

    #[test]
    fn the_embedded_kim_mail_is_extracted_as_it_is() {
        let inner = kim_mail();
        let got = forwarded_kim_mail(&forward(&inner)).unwrap();
        // the CRLF before the closing boundary belongs to the boundary (RFC 2046)
        assert_eq!(got, inner);
    }

    #[test]
    fn plaintext_posing_as_a_kim_mail_is_not_extracted() {
        let fake =
            b"From: a@x.de\r\nX-KOM-LE-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nsecret\r\n";
        assert_eq!(forwarded_kim_mail(&forward(fake)), None);
        let fake = b"From: a@x.de\r\nX-KOM-LE-Version: 1.0\r\n\
Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\nc2VjcmV0\r\n";
        assert_eq!(forwarded_kim_mail(&forward(fake)), None);
        assert_eq!(forwarded_kim_mail(b"Subject: x\r\n\r\nbody\r\n"), None);
    }
}
