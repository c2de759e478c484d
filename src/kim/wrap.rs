//! The byte layouts of a KIM mail, layer by layer (gemSMIME_KOMLE, KOM-LE-A_2299-01),
//! as gematik's sample `SMIME-Profil` shows them:
//!
//! 1. the client's mail, with the default Dienstkennung added (A_19488-02);
//! 2. `Content-Type: message/rfc822` CRLF CRLF + mail: what is signed (KOM-LE-A_2097);
//! 3. the SignedData as `application/pkcs7-mime; smime-type=signed-data`,
//!    `Content-Transfer-Encoding: binary`: what is encrypted;
//! 4. the outer mail: header fields of the inner mail, `Subject: KOM-LE-Nachricht`,
//!    the AuthEnvelopedData base64 in 76-character lines.
//!
//! Every function here is pure: bytes in, bytes out.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::header;

/// A_19488-02: the Dienstkennung a mail gets when the client set none.
pub const DEFAULT_DIENSTKENNUNG: &str = "KIM-Mail;Default;V1.0";
/// KOM-LE-A_2102: the outer subject.
pub const OUTER_SUBJECT: &str = "KOM-LE-Nachricht";
/// Line length of the outer base64 body (RFC 2045).
pub const BASE64_LINE: usize = 76;

pub const RFC822_WRAP: &[u8] = b"Content-Type: message/rfc822\r\n\r\n";
pub const SIGNED_WRAP_HEADER: &[u8] = b"MIME-Version: 1.0\r\n\
Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n\
Content-Transfer-Encoding: binary\r\n\
Content-Disposition: attachment; filename=smime.p7m\r\n\r\n";

/// Header fields the outer mail carries over from the inner one, byte for byte
/// (KOM-LE-A_2098-03, KOM-LE-A_2101-01). Bcc is left out: Bcc recipients get
/// their RecipientInfo but stay hidden.
pub const COPIED_FIELDS: [&str; 7] = [
    "Date",
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Message-ID",
];

/// A_19488-02: adds `X-KIM-Dienstkennung: KIM-Mail;Default;V1.0` at the end of the
/// header when the mail has none; a value the client set is kept as it is.
pub fn with_dienstkennung(mail: &[u8]) -> Vec<u8> {
    let (head, _) = header::split(mail);
    if header::find(head, "X-KIM-Dienstkennung").is_some() {
        return mail.to_vec();
    }
    let mut out = Vec::with_capacity(mail.len() + 64);
    out.extend_from_slice(head);
    if !head.is_empty() && !head.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("X-KIM-Dienstkennung: {DEFAULT_DIENSTKENNUNG}\r\n").as_bytes());
    out.extend_from_slice(&mail[head.len()..]);
    out
}

/// What is signed: `Content-Type: message/rfc822` CRLF CRLF + the mail.
pub fn rfc822_wrap(mail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RFC822_WRAP.len() + mail.len());
    out.extend_from_slice(RFC822_WRAP);
    out.extend_from_slice(mail);
    out
}

/// The mail inside an rfc822 wrap, if `signed_content` is one.
pub fn rfc822_unwrap(signed_content: &[u8]) -> Option<&[u8]> {
    let (head, body) = header::split(signed_content);
    let ct = header::value(head, "Content-Type")?;
    ct.to_ascii_lowercase()
        .starts_with("message/rfc822")
        .then_some(body)
}

/// What is encrypted: the SignedData as a binary `signed-data` MIME entity.
pub fn signed_wrap(signed_der: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNED_WRAP_HEADER.len() + signed_der.len());
    out.extend_from_slice(SIGNED_WRAP_HEADER);
    out.extend_from_slice(signed_der);
    out
}

/// The SignedData inside a decrypted `signed-data` entity, if it is one. The body is
/// binary and taken as it is; a base64 body (which some senders use) is decoded.
pub fn signed_unwrap(entity: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let (head, body) = header::split(entity);
    let ct = header::value(head, "Content-Type")?.to_ascii_lowercase();
    if !ct.starts_with("application/pkcs7-mime") && !ct.starts_with("application/x-pkcs7-mime") {
        return None;
    }
    let cte = header::value(head, "Content-Transfer-Encoding").unwrap_or_default();
    if cte.eq_ignore_ascii_case("base64") {
        decode_base64_lines(body).map(std::borrow::Cow::Owned)
    } else {
        Some(std::borrow::Cow::Borrowed(body))
    }
}

/// What kim-cm writes into the outer mail besides the copied fields.
#[derive(Debug, Clone)]
pub struct OuterFields<'a> {
    /// `X-KOM-LE-Version`: "1.0", or "1.5" for a mail whose content went to the KAS
    /// (KOM-LE-A_2100-02).
    pub kom_le_version: &'a str,
    /// `X-KIM-CMVersion` and `X-KIM-PTVersion` (A_21388-01).
    pub cm_version: &'a str,
    pub pt_version: &'a str,
    /// `Expires` (A_22417-01), an RFC 5322 date-time, when known.
    pub expires: Option<&'a str>,
}

/// Builds the outer KIM mail around the AuthEnvelopedData `enveloped_der`.
/// `inner_header` is the header of the client's mail (after the Dienstkennung).
pub fn outer_mail(inner_header: &[u8], enveloped_der: &[u8], f: &OuterFields<'_>) -> Vec<u8> {
    let b64_len = enveloped_der.len().div_ceil(3) * 4;
    let mut out = Vec::with_capacity(2048 + b64_len + b64_len / BASE64_LINE * 2);
    header::append_fields(&mut out, inner_header, &COPIED_FIELDS);
    let inner = header::fields(inner_header);
    out.extend_from_slice(format!("Subject: {OUTER_SUBJECT}\r\n").as_bytes());
    // every inner X-KIM-* field (KOM-LE-A_2098-03)
    for field in inner
        .iter()
        .filter(|x| x.name.len() > 6 && x.name[..6].eq_ignore_ascii_case("X-KIM-"))
    {
        out.extend_from_slice(field.raw);
        if !field.raw.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("X-KOM-LE-Version: {}\r\n", f.kom_le_version).as_bytes());
    out.extend_from_slice(format!("X-KIM-CMVersion: {}\r\n", f.cm_version).as_bytes());
    out.extend_from_slice(format!("X-KIM-PTVersion: {}\r\n", f.pt_version).as_bytes());
    if let Some(e) = f.expires {
        out.extend_from_slice(format!("Expires: {e}\r\n").as_bytes());
    }
    out.extend_from_slice(
        b"MIME-Version: 1.0\r\n\
Content-Type: application/pkcs7-mime; smime-type=authenticated-enveloped-data; name=smime.p7m\r\n\
Content-Disposition: attachment; filename=smime.p7m\r\n\
Content-Transfer-Encoding: base64\r\n\r\n",
    );
    append_base64_lines(&mut out, enveloped_der);
    out
}

/// Appends `data` base64-encoded in lines of [`BASE64_LINE`] characters, each ending CRLF.
pub fn append_base64_lines(out: &mut Vec<u8>, data: &[u8]) {
    // 57 input bytes make one 76-character line
    for chunk in data.chunks(BASE64_LINE / 4 * 3) {
        let start = out.len();
        out.resize(start + BASE64_LINE, 0);
        let n = B64.encode_slice(chunk, &mut out[start..]).unwrap_or(0);
        out.truncate(start + n);
        out.extend_from_slice(b"\r\n");
    }
}

/// Decodes a base64 body written in lines; `None` if it is not base64.
pub fn decode_base64_lines(body: &[u8]) -> Option<Vec<u8>> {
    // decoded in chunks of whole 4-character groups, so a 20 MiB body is never
    // copied whole before decoding
    const CHUNK: usize = 4096;
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let mut chunk = Vec::with_capacity(CHUNK);
    for b in body.iter().copied().filter(|b| !b.is_ascii_whitespace()) {
        chunk.push(b);
        if chunk.len() == CHUNK {
            B64.decode_vec(&chunk, &mut out).ok()?;
            chunk.clear();
        }
    }
    B64.decode_vec(&chunk, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = "../shared/kim-api/samples/smime-profil";

    fn sample(name: &str) -> Vec<u8> {
        std::fs::read(format!("{SAMPLES}/{name}"))
            .unwrap_or_else(|e| panic!("gematik sample {name}: {e}"))
    }

    #[test]
    fn gematik_sample_rfc822_wrap_is_reproduced_exactly() {
        // inputEmail.txt is stored with LF line ends; mail on the wire has CRLF
        let mail = header::to_crlf(&sample("inputEmail.txt"));
        assert_eq!(
            rfc822_wrap(&with_dienstkennung(&mail)),
            sample("inputEmail.txt.01.rfc822wrap")
        );
    }

    #[test]
    fn gematik_sample_signed_wrap_header_is_reproduced_exactly() {
        let signed = sample("inputEmail.txt.02.signedcms");
        let wrapped = signed_wrap(&signed);
        let want = sample("inputEmail.txt.03.signedwrap");
        let header_len = SIGNED_WRAP_HEADER.len();
        assert_eq!(wrapped[..header_len], want[..header_len]);
        assert_eq!(*signed_unwrap(&wrapped).unwrap(), signed[..]);
        assert_eq!(
            rfc822_unwrap(&sample("inputEmail.txt.01.rfc822wrap")).unwrap(),
            {
                let m = header::to_crlf(&sample("inputEmail.txt"));
                with_dienstkennung(&m)
            }
        );
    }

    #[test]
    fn dienstkennung_of_the_client_is_kept() {
        let m = b"Subject: x\r\nX-KIM-Dienstkennung: eAU;Lieferung;V1.0\r\n\r\nbody";
        assert_eq!(with_dienstkennung(m), m);
        let m = b"Subject: x\r\n\r\nbody";
        assert_eq!(
            with_dienstkennung(m),
            b"Subject: x\r\nX-KIM-Dienstkennung: KIM-Mail;Default;V1.0\r\n\r\nbody"
        );
    }

    #[test]
    fn outer_mail_copies_fields_and_encodes_76_columns() {
        let inner = b"From: A <a@x.de>\r\nTo: b@x.de,\r\n c@x.de\r\nBcc: secret@x.de\r\nSubject: Befund\r\n\
Message-ID: <1@x.de>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nX-KIM-Dienstkennung: KIM-Mail;Default;V1.0\r\n\
X-KIM-Sendersystem: PVS;1.0\r\n";
        let der = vec![0x30u8; 200];
        let out = outer_mail(
            inner,
            &der,
            &OuterFields {
                kom_le_version: "1.0",
                cm_version: "KIMCM_0.1.0",
                pt_version: "1.5.2",
                expires: Some("Tue, 22 Dec 2026 10:00:00 +0100"),
            },
        );
        let (h, body) = header::split(&out);
        assert_eq!(header::value(h, "Subject").unwrap(), "KOM-LE-Nachricht");
        assert_eq!(
            header::find(h, "To").unwrap().raw,
            b"To: b@x.de,\r\n c@x.de\r\n"
        );
        assert!(header::find(h, "Bcc").is_none(), "Bcc must stay hidden");
        assert_eq!(header::value(h, "X-KIM-Sendersystem").unwrap(), "PVS;1.0");
        assert_eq!(header::value(h, "X-KOM-LE-Version").unwrap(), "1.0");
        assert_eq!(header::value(h, "Message-ID").unwrap(), "<1@x.de>");
        assert!(!String::from_utf8_lossy(h).contains("Befund"));
        let lines: Vec<&[u8]> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert!(
            lines[..lines.len() - 1]
                .iter()
                .all(|l| l.len() == BASE64_LINE + 1),
            "76 characters + CR"
        );
        assert_eq!(decode_base64_lines(body).unwrap(), der);
    }
}
