//! The KIM Attachment Service's part in a mail: a body part `Content-Type:
//! text/plain; charset=utf-8` with `Content-Disposition: x-kas` holding the
//! KIM-Attachment structure (A_19359-07). Only a Clientmodul writes it; a client's
//! mail that already carries one is refused (A_22341).
//!
//! The upload, the structure and the restore on receipt follow (issue 4).

use mail_parser::{MessageParser, MimeHeaders};

/// A_22341: true when `mail` has a part with `Content-Disposition: x-kas` and
/// `Content-Type: text/plain; charset=utf-8`.
pub fn carries_kas_part(mail: &[u8]) -> bool {
    // a cheap scan first: most mails do not contain the word at all
    let needle = b"x-kas";
    let found = mail
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle));
    if !found {
        return false;
    }
    let Some(parsed) = MessageParser::default().parse(mail) else {
        return false;
    };
    parsed.parts.iter().any(|p| {
        let disposition = p
            .content_disposition()
            .is_some_and(|d| d.ctype().eq_ignore_ascii_case("x-kas"));
        let text_utf8 = p.content_type().is_none_or(|ct| {
            ct.ctype().eq_ignore_ascii_case("text")
                && ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain"))
                && ct
                    .attribute("charset")
                    .is_none_or(|c| c.eq_ignore_ascii_case("utf-8"))
        });
        disposition && text_utf8
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
