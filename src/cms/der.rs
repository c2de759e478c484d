//! A minimal DER writer: definite lengths, the few element kinds the KIM profile
//! needs. Every structure kim-cm writes is DER, so a signed attribute and its
//! unprotected copy are identical bytes.

/// The identifier and length octets of an element with `tag` and `len` content
/// bytes; for writing large contents in place after it.
pub fn header(tag: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out
}

/// An element with `tag` and `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = header(tag, content.len());
    out.reserve(content.len());
    out.extend_from_slice(content);
    out
}

/// SEQUENCE of already encoded elements.
pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// SET OF already encoded elements, sorted as DER requires (X.690 11.6).
pub fn set_of(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut sorted: Vec<&Vec<u8>> = parts.iter().collect();
    sorted.sort();
    let joined: Vec<u8> = sorted.into_iter().flatten().copied().collect();
    tlv(0x31, &joined)
}

pub fn oid(content: &[u8]) -> Vec<u8> {
    tlv(0x06, content)
}

pub fn octets(content: &[u8]) -> Vec<u8> {
    tlv(0x04, content)
}

/// INTEGER from unsigned big-endian bytes (a leading zero added where needed).
pub fn uint(be: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = {
        let skip = be
            .iter()
            .take_while(|b| **b == 0)
            .count()
            .min(be.len().saturating_sub(1));
        &be[skip..]
    };
    if trimmed.is_empty() {
        return tlv(0x02, &[0]);
    }
    if trimmed[0] & 0x80 != 0 {
        let mut v = vec![0];
        v.extend_from_slice(trimmed);
        tlv(0x02, &v)
    } else {
        tlv(0x02, trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_integers() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        assert_eq!(&tlv(0x04, &[0; 200])[..3], &[0x04, 0x81, 200]);
        assert_eq!(&tlv(0x04, &[0; 300])[..4], &[0x04, 0x82, 1, 44]);
        assert_eq!(uint(&[0x00, 0x80]), vec![0x02, 2, 0x00, 0x80]);
        assert_eq!(uint(&[0x00, 0x00, 0x10]), vec![0x02, 1, 0x10]);
        assert_eq!(uint(&[]), vec![0x02, 1, 0]);
        assert_eq!(
            set_of(&[vec![0x02, 1, 2], vec![0x02, 1, 1]]),
            vec![0x31, 6, 0x02, 1, 1, 0x02, 1, 2]
        );
    }
}
