//! A BER/DER reader over a byte slice, for the CMS structures of KIM mail.
//!
//! OpenSSL 3.0 cannot parse gematik's AuthEnvelopedData with its unauthAttrs (see
//! docs), so kim-cm reads it itself. Indefinite lengths and constructed OCTET
//! STRINGs (as in gematik's sample) are handled; lengths are never trusted beyond
//! the input, nesting is bounded, and nothing here panics on any input.

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// Why input is not valid BER.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed BER at byte {offset}: {what}")]
pub struct BerError {
    pub offset: usize,
    pub what: &'static str,
}

/// One element: its tag byte and its content (for an indefinite length, the children
/// up to the end-of-contents octets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    /// The whole element, header included.
    pub raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    pub fn constructed(&self) -> bool {
        self.tag & 0x20 != 0
    }

    /// The children of a constructed element.
    pub fn children(&self) -> Result<Vec<Tlv<'a>>, BerError> {
        children(self.content, 0)
    }

    /// The value of an OCTET STRING, primitive or constructed (its pieces joined).
    pub fn octets(&self) -> Result<Vec<u8>, BerError> {
        octets(self, 0)
    }
}

fn err(offset: usize, what: &'static str) -> BerError {
    BerError { offset, what }
}

fn octets(t: &Tlv<'_>, depth: usize) -> Result<Vec<u8>, BerError> {
    if depth > MAX_DEPTH {
        return Err(err(0, "nested too deeply"));
    }
    if !t.constructed() {
        return Ok(t.content.to_vec());
    }
    let mut out = Vec::with_capacity(t.content.len());
    for c in children(t.content, depth + 1)? {
        out.extend_from_slice(&octets(&c, depth + 1)?);
    }
    Ok(out)
}

/// Reads one element at the start of `input`; returns it and the rest.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), BerError> {
    read_at(input, 0)
}

fn read_at(input: &[u8], depth: usize) -> Result<(Tlv<'_>, &[u8]), BerError> {
    if depth > MAX_DEPTH {
        return Err(err(0, "nested too deeply"));
    }
    let tag = *input.first().ok_or(err(0, "no tag"))?;
    if tag & 0x1f == 0x1f {
        return Err(err(0, "multi-byte tags are not used in CMS"));
    }
    let first = *input.get(1).ok_or(err(1, "no length"))?;
    let (len, header) = if first < 0x80 {
        (Some(first as usize), 2)
    } else if first == 0x80 {
        (None, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n > 8 {
            return Err(err(1, "length of length over 8 bytes"));
        }
        let bytes = input
            .get(2..2 + n)
            .ok_or(err(2, "length runs past the input"))?;
        let mut v: u64 = 0;
        for b in bytes {
            v = (v << 8) | *b as u64;
        }
        (
            Some(usize::try_from(v).map_err(|_| err(2, "length too large"))?),
            2 + n,
        )
    };
    match len {
        Some(len) => {
            let end = header.checked_add(len).ok_or(err(1, "length too large"))?;
            let content = input
                .get(header..end)
                .ok_or(err(header, "length runs past the input"))?;
            Ok((
                Tlv {
                    tag,
                    content,
                    raw: &input[..end],
                },
                &input[end..],
            ))
        }
        None => {
            if tag & 0x20 == 0 {
                return Err(err(0, "indefinite length on a primitive element"));
            }
            // children up to the end-of-contents octets
            let mut rest = &input[header..];
            loop {
                if rest.starts_with(&[0, 0]) {
                    let content_len = input.len() - header - rest.len();
                    let end = header + content_len + 2;
                    return Ok((
                        Tlv {
                            tag,
                            content: &input[header..header + content_len],
                            raw: &input[..end],
                        },
                        &rest[2..],
                    ));
                }
                if rest.is_empty() {
                    return Err(err(input.len(), "missing end-of-contents"));
                }
                let (_, r) = read_at(rest, depth + 1)?;
                rest = r;
            }
        }
    }
}

fn children(mut content: &[u8], depth: usize) -> Result<Vec<Tlv<'_>>, BerError> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (t, rest) = read_at(content, depth + 1)?;
        out.push(t);
        content = rest;
    }
    Ok(out)
}

/// The children of `t` if it has tag `tag`.
pub fn expect<'a>(t: &Tlv<'a>, tag: u8, what: &'static str) -> Result<Vec<Tlv<'a>>, BerError> {
    if t.tag != tag {
        return Err(err(0, what));
    }
    t.children()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_and_indefinite() {
        let der = [0x30, 0x06, 0x02, 0x01, 0x05, 0x04, 0x01, 0xaa];
        let (t, rest) = read(&der).unwrap();
        assert!(rest.is_empty());
        let c = t.children().unwrap();
        assert_eq!((c[0].tag, c[0].content), (0x02, &[5u8][..]));
        let ber = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x01, 0x01, 0x04, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00,
            0xff,
        ];
        let (t, rest) = read(&ber).unwrap();
        assert_eq!(rest, [0xff]);
        assert_eq!(t.children().unwrap()[0].octets().unwrap(), vec![1, 2]);
    }

    #[test]
    fn hostile_input_never_panics() {
        let sample =
            std::fs::read("../shared/kim-api/samples/smime-profil/inputEmail.txt.04.encryptedcms")
                .unwrap();
        // every truncation and a flipped bit at many positions
        for cut in (0..sample.len()).step_by(7) {
            let _ = read(&sample[..cut]).map(|(t, _)| t.children());
        }
        for pos in (0..sample.len()).step_by(11) {
            let mut s = sample.clone();
            s[pos] ^= 0x80;
            if let Ok((t, _)) = read(&s) {
                if let Ok(c) = t.children() {
                    for x in &c {
                        let _ = x.octets();
                    }
                }
            }
        }
        assert!(read(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(read(&[0x30, 0x80, 0x30, 0x80]).is_err());
        let deep: Vec<u8> = std::iter::repeat_n([0x30u8, 0x80], 200).flatten().collect();
        assert!(read(&deep).is_err());
    }
}
