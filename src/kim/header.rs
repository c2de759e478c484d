//! A mail's header as bytes: fields found, read and added without touching anything
//! else, because the outer KIM mail must carry the inner header fields byte for byte
//! (KOM-LE-A_2098-03) and the signed mail must stay exactly as the client sent it.

/// Most header fields a mail may have before it is refused as malformed.
pub const MAX_HEADER_FIELDS: usize = 1000;

/// One header field with its raw bytes (name, colon, value, folded lines, CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// The value, unfolded and trimmed (lossy for non-UTF-8 bytes).
    pub fn value(&self) -> String {
        let text = String::from_utf8_lossy(self.raw);
        let v = text.split_once(':').map(|(_, v)| v).unwrap_or("");
        v.replace("\r\n", "").replace('\n', "").trim().to_string()
    }
}

/// Splits a mail into header (with its final line end) and body (after the empty
/// line). A mail without an empty line is all header.
pub fn split(mail: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 0;
    while i < mail.len() {
        // an empty line: CRLF or LF right at a line start
        if mail[i..].starts_with(b"\r\n") {
            return (&mail[..i], &mail[i + 2..]);
        }
        if mail[i] == b'\n' {
            return (&mail[..i], &mail[i + 1..]);
        }
        match memchr::memchr(b'\n', &mail[i..]) {
            Some(p) => i += p + 1,
            None => return (mail, &[]),
        }
    }
    (mail, &[])
}

/// The fields of a header, in order. Stops at the first line that is neither a field
/// nor a continuation (such a header is malformed; what came before is kept).
pub fn fields(header: &[u8]) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < header.len() && out.len() < MAX_HEADER_FIELDS {
        let start = i;
        // the first line
        let line_end = memchr::memchr(b'\n', &header[i..])
            .map(|p| i + p + 1)
            .unwrap_or(header.len());
        let line = &header[i..line_end];
        let Some(colon) = memchr::memchr(b':', line) else {
            break;
        };
        let name = &line[..colon];
        if name.is_empty() || name.iter().any(|b| !(33..=126).contains(b)) {
            break;
        }
        i = line_end;
        // continuation lines start with space or tab
        while i < header.len() && (header[i] == b' ' || header[i] == b'\t') {
            i = memchr::memchr(b'\n', &header[i..])
                .map(|p| i + p + 1)
                .unwrap_or(header.len());
        }
        out.push(Field {
            name: std::str::from_utf8(name).unwrap_or(""),
            raw: &header[start..i],
        });
    }
    out
}

/// The first field called `name` (case-insensitive).
pub fn find<'a>(header: &'a [u8], name: &str) -> Option<Field<'a>> {
    fields(header)
        .into_iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
}

/// The unfolded value of the first field called `name`.
pub fn value(header: &[u8], name: &str) -> Option<String> {
    find(header, name).map(|f| f.value())
}

/// Appends to `out`, byte for byte, every field of `header` called one of `names`,
/// in the order of `names` (each ending in a line end).
pub fn append_fields(out: &mut Vec<u8>, header: &[u8], names: &[&str]) {
    let all = fields(header);
    for name in names {
        for f in all.iter().filter(|f| f.name.eq_ignore_ascii_case(name)) {
            out.extend_from_slice(f.raw);
            if !f.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// Turns every line end of `text` into CRLF (bare LF and bare CR alike).
pub fn to_crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\r' if text.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIL: &[u8] =
        b"From: A <a@x.de>\r\nTo: b@x.de,\r\n  c@x.de\r\nSubject: hi\r\n\r\nbody\r\n";

    #[test]
    fn split_and_fields() {
        let (h, b) = split(MAIL);
        assert_eq!(b, b"body\r\n");
        let f = fields(h);
        assert_eq!(
            f.iter().map(|f| f.name).collect::<Vec<_>>(),
            ["From", "To", "Subject"]
        );
        assert_eq!(f[1].raw, b"To: b@x.de,\r\n  c@x.de\r\n");
        assert_eq!(value(h, "to").unwrap(), "b@x.de,  c@x.de");
        assert_eq!(value(h, "cc"), None);
    }

    #[test]
    fn odd_mails() {
        assert_eq!(split(b"Subject: x\r\n"), (&b"Subject: x\r\n"[..], &b""[..]));
        assert_eq!(split(b"\r\nbody"), (&b""[..], &b"body"[..]));
        assert_eq!(split(b"A: 1\nB: 2\n\nbody").1, b"body");
        // a broken line ends the header fields; nothing panics
        assert_eq!(fields(b"A: 1\r\nnot a field\r\nB: 2\r\n").len(), 1);
        assert_eq!(fields(b": empty name\r\n").len(), 0);
        assert_eq!(to_crlf(b"a\nb\rc\r\nd"), b"a\r\nb\r\nc\r\nd");
    }
}
