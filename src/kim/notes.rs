//! The notes a Clientmodul appends to the text of an opened mail: "Die Nachricht wurde
//! entschlüsselt." (KOM-LE-A_2179-01) and "Die Signatur wurde erfolgreich geprüft."
//! (KOM-LE-A_2050-05, Tab_Verm_Sig_Prüf), after a separator line as in the spec's
//! example, in the format of the first text part (plain or HTML) and in its transfer
//! encoding and charset. Nothing else of the mail changes.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use mail_parser::{Encoding, MessageParser, MimeHeaders, PartType};

/// KOM-LE-A_2179-01.
pub const DECRYPTED: &str = "Die Nachricht wurde entschlüsselt.";
/// KOM-LE-A_2050-05, result 01 (and 07, INCONCLUSIVE, which counts as positive).
pub const SIGNATURE_OK: &str = "Die Signatur wurde erfolgreich geprüft.";
/// The separator line of the spec's example (Tab_Verm_Sig_Prüf).
pub const SEPARATOR: &str = "---------------------------------------------";

/// Appends `notes` to the first text part of `mail` (not an attachment). A mail
/// without a text part is returned unchanged.
pub fn append(mail: &[u8], notes: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mail.len() + 256);
    append_to(&mut out, mail, notes);
    out
}

/// [`append`], writing the result at the end of `out`: the mail is copied once.
pub fn append_to(out: &mut Vec<u8>, mail: &[u8], notes: &[&str]) {
    append_within(out, mail, false, notes);
}

/// [`append_to`] for the first bytes of a mail too large to hold (a mail restored
/// from the KAS): `prefix` is its start, `truncated` says whether more follows.
/// The notes go in only when the first text part ends within `prefix`; the rest of
/// the mail follows `out` unchanged. False when they could not go in.
pub fn append_to_prefix(out: &mut Vec<u8>, prefix: &[u8], truncated: bool, notes: &[&str]) -> bool {
    append_within(out, prefix, truncated, notes)
}

fn append_within(out: &mut Vec<u8>, mail: &[u8], truncated: bool, notes: &[&str]) -> bool {
    out.reserve(mail.len() + 256);
    let Some(msg) = MessageParser::default().parse(mail) else {
        out.extend_from_slice(mail);
        return false;
    };
    let Some(part) = msg.parts.iter().find(|p| {
        matches!(p.body, PartType::Text(_) | PartType::Html(_))
            && !p
                .content_disposition()
                .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"))
    }) else {
        out.extend_from_slice(mail);
        return false;
    };
    // a part that runs to the end of a truncated prefix may go on beyond it
    if truncated && part.offset_end as usize >= mail.len() {
        out.extend_from_slice(mail);
        return false;
    }
    let html = matches!(part.body, PartType::Html(_));
    let latin1 = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .is_some_and(|c| {
            let c = c.to_ascii_lowercase();
            c == "iso-8859-1" || c == "latin1" || c == "windows-1252" || c == "iso-8859-15"
        });
    let (start, end) = (part.offset_body as usize, part.offset_end as usize);
    let encoding = part.encoding;
    drop(msg);
    if start > end || end > mail.len() {
        out.extend_from_slice(mail);
        return false;
    }
    let body = &mail[start..end];
    let note_text = if html {
        let escaped: Vec<String> = notes.iter().map(|n| n.to_string()).collect();
        format!(
            "<br>\r\n{SEPARATOR}<br>\r\n{}<br>",
            escaped.join("<br>\r\n")
        )
    } else {
        format!("{SEPARATOR}\r\n{}", notes.join("\r\n"))
    };
    let note_bytes = if latin1 {
        to_latin1(&note_text)
    } else {
        note_text.into_bytes()
    };

    match encoding {
        Encoding::Base64 => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            let Ok(mut text) = B64.decode(compact) else {
                out.extend_from_slice(mail);
                return false;
            };
            if !text.ends_with(b"\n") {
                text.extend_from_slice(b"\r\n");
            }
            text.extend_from_slice(&note_bytes);
            text.extend_from_slice(b"\r\n");
            out.extend_from_slice(&mail[..start]);
            super::wrap::append_base64_lines(out, &text);
            if !body.ends_with(b"\n") {
                out.truncate(out.len().saturating_sub(2));
            }
        }
        enc => {
            let encoded = if enc == Encoding::QuotedPrintable {
                quoted_printable(&note_bytes)
            } else {
                note_bytes
            };
            let (content, trailing) = match body.strip_suffix(b"\r\n") {
                Some(c) => (c, &b"\r\n"[..]),
                None => (body, &b""[..]),
            };
            out.extend_from_slice(&mail[..start]);
            out.extend_from_slice(content);
            if !content.is_empty() {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(&encoded);
            out.extend_from_slice(trailing);
        }
    }
    out.extend_from_slice(&mail[end..]);
    true
}

fn to_latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| if (c as u32) < 256 { c as u8 } else { b'?' })
        .collect()
}

/// Quoted-printable (RFC 2045 6.7) for a short text with CRLF line ends.
fn quoted_printable(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        match b {
            b'\r' | b'\n' => out.push(b),
            b'=' => out.extend_from_slice(b"=3D"),
            33..=126 | b' ' => out.push(b),
            _ => out.extend_from_slice(format!("={b:02X}").as_bytes()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTES: [&str; 2] = [DECRYPTED, SIGNATURE_OK];

    #[test]
    fn plain_text_single_part() {
        let m = b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo\r\n";
        let out = String::from_utf8(append(m, &NOTES)).unwrap();
        assert!(
            out.ends_with(&format!(
                "Hallo\r\n{SEPARATOR}\r\n{DECRYPTED}\r\n{SIGNATURE_OK}\r\n"
            )),
            "{out}"
        );
    }

    #[test]
    fn first_text_part_of_a_multipart_and_the_attachment_untouched() {
        let m = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe\r\n--b\r\nContent-Type: application/pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n";
        let out = append(m, &NOTES);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Gr=FC=DFe\r\n---------------------------------------------\r\nDie Nachricht wurde entschl=FCsselt.\r\n"), "{text}");
        assert!(
            text.contains("erfolgreich gepr=FCft.\r\n--b\r\nContent-Type: application/pdf"),
            "{text}"
        );
        assert!(text.ends_with("JVBERg==\r\n--b--\r\n"));
        // the result parses and reads right
        let msg = MessageParser::default().parse(&out[..]).unwrap();
        assert!(msg
            .body_text(0)
            .unwrap()
            .contains("Die Nachricht wurde entschlüsselt."));
    }

    #[test]
    fn base64_and_html_parts() {
        let body = B64.encode("Hallo Welt\r\n");
        let m = format!("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}\r\n");
        let out = append(m.as_bytes(), &NOTES);
        let msg = MessageParser::default().parse(&out[..]).unwrap();
        let html = msg.body_html(0).unwrap();
        assert!(
            html.starts_with("Hallo Welt") && html.contains("<br>") && html.contains(SIGNATURE_OK),
            "{html}"
        );
    }

    #[test]
    fn a_prefix_gets_the_notes_only_when_the_text_part_ends_in_it() {
        let mail = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
Hallo\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERiAgICAgICAgICAgICAgICAgIA==\r\n--b--\r\n";
        let whole = append(mail, &NOTES);
        // the second part's header line is the first sure sign the text part ended
        let sure = 1 + mail
            .windows(25)
            .position(|w| w == b"Content-Type: application")
            .unwrap();
        for cut in 1..mail.len() {
            let mut out = Vec::new();
            let done = append_to_prefix(&mut out, &mail[..cut], true, &NOTES);
            out.extend_from_slice(&mail[cut..]);
            if done {
                assert_eq!(out, whole, "cut at {cut}");
            } else {
                assert_eq!(out, mail, "cut at {cut}");
            }
            // once the text part and its boundary are in, the notes go in
            if cut >= sure {
                assert!(done, "cut at {cut}");
            }
        }
    }

    #[test]
    fn mail_without_text_is_unchanged() {
        let m = b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n";
        assert_eq!(append(m, &NOTES), m);
    }
}
