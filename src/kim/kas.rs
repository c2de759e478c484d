//! The KIM Attachment Service's part in a mail: a body part `Content-Type:
//! text/plain; charset=utf-8` with `Content-Disposition: x-kas` holding the
//! KIM-Attachment structure (A_19359-07). Only a Clientmodul writes it; a client's
//! mail that already carries one is refused (A_22341).
//!
//! Here: the structure and the mail that carries it (pure byte work). The upload and
//! the restore on receipt follow (issue 4).

use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};

use super::header;

/// The KIM-Attachment structure (`Attachment_schema.json`): where the encrypted
/// mail data lie, their AES-256-GCM key and SHA-256 hash (both base64, as gematik's
/// sample shows them), and the size of the plaintext mail data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KimAttachment {
    pub link: String,
    pub k: String,
    pub hash: String,
    pub size: u64,
}

/// Header fields of the processed client mail that describe its body: replaced by
/// the x-kas part's own (A_19359-07).
const BODY_FIELDS: [&str; 3] = [
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
];

/// A_19359-07, A_23467: the processed client mail with its body replaced by the one
/// x-kas part holding `attachment`, and `X-KIM-KAS-Size` in the header (copied to
/// the outer mail like every X-KIM field).
pub fn kas_mail(processed_head: &[u8], attachment: &KimAttachment) -> Vec<u8> {
    let mut out = Vec::with_capacity(processed_head.len() + 512);
    for f in header::fields(processed_head) {
        if BODY_FIELDS.iter().any(|b| f.name.eq_ignore_ascii_case(b))
            || f.name.eq_ignore_ascii_case("X-KIM-KAS-Size")
        {
            continue;
        }
        out.extend_from_slice(f.raw);
        if !f.raw.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(
        format!(
            "X-KIM-KAS-Size: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: x-kas\r\n\r\n",
            attachment.size
        )
        .as_bytes(),
    );
    out.extend_from_slice(
        serde_json::to_string(attachment)
            .unwrap_or_default()
            .as_bytes(),
    );
    out
}

/// What a decrypted mail says about the KAS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KasContent {
    /// No x-kas part: an ordinary mail.
    None,
    /// Exactly one readable KIM-Attachment structure.
    One(KimAttachment),
    /// A_19369-02: more than one, or one that does not parse: not processed.
    Ambiguous,
}

/// The KIM-Attachment structure of a decrypted inner mail.
pub fn kas_content(mail: &[u8]) -> KasContent {
    if !carries_kas_part(mail) {
        return KasContent::None;
    }
    let Some(parsed) = MessageParser::default().parse(mail) else {
        return KasContent::Ambiguous;
    };
    let structures: Vec<Option<KimAttachment>> = parsed
        .parts
        .iter()
        .filter(|p| {
            p.content_disposition()
                .is_some_and(|d| d.ctype().eq_ignore_ascii_case("x-kas"))
        })
        .map(|p| match &p.body {
            PartType::Text(t) => serde_json::from_str(t.trim()).ok(),
            _ => None,
        })
        .collect();
    match structures.as_slice() {
        [Some(a)] => KasContent::One(a.clone()),
        _ => KasContent::Ambiguous,
    }
}

/// A_22341: true when `mail` has a part with `Content-Disposition: x-kas` and
/// `Content-Type: text/plain; charset=utf-8`.
pub fn carries_kas_part(mail: &[u8]) -> bool {
    let mut scan = KasPartScanner::default();
    scan.feed(mail);
    scan.finish()
}

/// The longest line start the scanner keeps: boundary lines and header lines are
/// short; the rest of a long line (binary data) is never needed.
const SCAN_LINE_BYTES: usize = 1000;
/// The most header bytes of one part the scanner keeps.
const SCAN_HEADER_BYTES: usize = 64 * 1024;
/// The most multipart boundaries the scanner tracks.
const SCAN_BOUNDARIES: usize = 64;

/// A_22341 over a mail fed in chunks of any size: reads only the header of the mail
/// and of each MIME part (found by the boundaries their multipart parents declare),
/// so a 700 MiB mail is checked in a few KiB of memory. Parts inside an attached
/// `message/rfc822` are not parts of this mail and are not looked at.
#[derive(Default)]
pub struct KasPartScanner {
    line: Vec<u8>,
    line_len: usize,
    /// In a header (of the mail, or of a part after its boundary).
    in_body: bool,
    header: Vec<u8>,
    boundaries: Vec<Vec<u8>>,
    found: bool,
}

impl KasPartScanner {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.found {
            match memchr::memchr(b'\n', data) {
                Some(p) => {
                    self.take(&data[..p]);
                    self.end_line();
                    data = &data[p + 1..];
                }
                None => {
                    self.take(data);
                    data = &[];
                }
            }
        }
    }

    /// True when an x-kas part was seen.
    pub fn finish(mut self) -> bool {
        if !self.found && self.line_len > 0 {
            self.end_line();
        }
        if !self.found && !self.in_body {
            self.end_header();
        }
        self.found
    }

    fn take(&mut self, bytes: &[u8]) {
        let room = SCAN_LINE_BYTES.saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.line_len += bytes.len();
    }

    fn end_line(&mut self) {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.line_len = 0;
        if !self.in_body {
            if line.is_empty() {
                self.end_header();
                self.in_body = true;
            } else if self.header.len() + line.len() < SCAN_HEADER_BYTES {
                self.header.extend_from_slice(&line);
                self.header.extend_from_slice(b"\r\n");
            }
        } else if line.starts_with(b"--") {
            let rest = line[2..].trim_ascii_end();
            if self.boundaries.iter().any(|b| rest == &b[..]) {
                self.in_body = false;
            }
        }
        self.line = line;
        self.line.clear();
    }

    /// A part's header is complete: note its boundary, look for x-kas.
    fn end_header(&mut self) {
        let head = std::mem::take(&mut self.header);
        let Some(parsed) = MessageParser::default().parse_headers(&head) else {
            return;
        };
        if let Some(ct) = parsed.content_type() {
            if ct.ctype().eq_ignore_ascii_case("multipart") {
                if let Some(b) = ct.attribute("boundary") {
                    if self.boundaries.len() < SCAN_BOUNDARIES {
                        self.boundaries.push(b.as_bytes().to_vec());
                    }
                }
            }
        }
        let disposition = parsed
            .content_disposition()
            .is_some_and(|d| d.ctype().eq_ignore_ascii_case("x-kas"));
        let text_utf8 = parsed.content_type().is_none_or(|ct| {
            ct.ctype().eq_ignore_ascii_case("text")
                && ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain"))
                && ct
                    .attribute("charset")
                    .is_none_or(|c| c.eq_ignore_ascii_case("utf-8"))
        });
        self.found |= disposition && text_utf8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = "../shared/kim-api/samples/KAS";

    #[test]
    fn gematiks_uploaded_client_mail_is_rebuilt_from_the_processed_one() {
        // 1_2 (processed) with the structure of 1_3 gives 1_3 byte for byte, apart
        // from X-KIM-KAS-Size, which the sample predates (A_23467 came later)
        let processed =
            std::fs::read(format!("{SAMPLES}/1_2_Client-Mail_prozessiert.txt")).unwrap();
        let uploaded = std::fs::read(format!("{SAMPLES}/1_3_Client-Mail_hochgeladen.txt")).unwrap();
        let KasContent::One(a) = kas_content(&header::to_crlf(&uploaded)) else {
            panic!("the sample's structure does not parse");
        };
        assert_eq!(a.size, 27_262_976);
        assert_eq!(a.k, "AZtUCtV3M5mTC/XzfDDl25mZ4FwoOADyaIi3Fn8wH6w=");
        let processed = header::to_crlf(&processed);
        let (head, _) = header::split(&processed);
        let built = kas_mail(head, &a);
        let without_size: Vec<u8> = String::from_utf8(built)
            .unwrap()
            .replace("X-KIM-KAS-Size: 27262976\r\n", "")
            .into_bytes();
        assert_eq!(without_size, header::to_crlf(&uploaded).trim_ascii_end());
    }

    #[test]
    fn two_structures_or_a_broken_one_are_ambiguous() {
        let one = |json: &str| {
            format!("--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: x-kas\r\n\r\n{json}\r\n")
        };
        let good = r#"{"link":"https://kas/a","k":"a2V5","hash":"aGFzaA==","size":1}"#;
        let mail = |parts: &str| {
            format!(
                "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n{parts}--b--\r\n"
            )
        };
        assert!(matches!(
            kas_content(mail(&one(good)).as_bytes()),
            KasContent::One(_)
        ));
        assert_eq!(
            kas_content(mail(&(one(good) + &one(good))).as_bytes()),
            KasContent::Ambiguous
        );
        assert_eq!(
            kas_content(mail(&one("{not json")).as_bytes()),
            KasContent::Ambiguous
        );
        assert_eq!(
            kas_content(b"Subject: x\r\n\r\nplain\r\n"),
            KasContent::None
        );
    }

    #[test]
    fn a_kas_part_is_recognised_and_the_word_alone_is_not() {
        let kas = b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Disposition: x-kas\r\n\r\n{\"link\":\"https://kas/x\",\"k\":\"a\",\"hash\":\"b\",\"size\":1}\r\n--b--\r\n";
        assert!(carries_kas_part(kas));
        let single = b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: X-KAS\r\n\r\n{}\r\n";
        assert!(carries_kas_part(single));
        assert!(!carries_kas_part(
            b"Subject: about x-kas\r\n\r\nthe x-kas part is written by the Clientmodul\r\n"
        ));
        assert!(!carries_kas_part(b"Subject: x\r\n\r\nplain\r\n"));
        // nested in an attached mail: not a part of this one
        let forwarded = b"Subject: Fwd\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\
Content-Type: message/rfc822\r\n\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Disposition: x-kas\r\n\r\n{}\r\n--o--\r\n";
        assert!(!carries_kas_part(forwarded));
        // a body line that looks like a header is not one
        assert!(!carries_kas_part(
            b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nContent-Disposition: x-kas\r\n--b--\r\n"
        ));
    }

    #[test]
    fn the_scanner_finds_the_part_whatever_the_chunks() {
        let kas = b"Subject: x\r\nContent-Type: multipart/mixed;\r\n boundary=\"bb\"\r\n\r\n\
--bb\r\nContent-Type: application/octet-stream\r\n\r\nAAAA\r\n--bb\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Disposition: x-kas\r\n\r\n{}\r\n--bb--\r\n";
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let mut s = KasPartScanner::default();
            for c in kas.chunks(chunk) {
                s.feed(c);
            }
            assert!(s.finish(), "chunk size {chunk}");
        }
        // a binary line far longer than the kept line start does not matter
        let mut long =
            b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n".to_vec();
        long.extend(std::iter::repeat_n(b'A', 100_000));
        long.extend_from_slice(b"\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: x-kas\r\n\r\n{}\r\n--b--\r\n");
        assert!(carries_kas_part(&long));
    }
}
