//! POP3 multi-line answers as bytes (RFC 1939 3): lines end in CRLF, a line that
//! starts with '.' gets another '.', and a line holding only '.' ends the answer.
//!
//! [`MultilineDecoder`] reads such an answer from a server in whatever chunks the
//! socket delivers and writes the un-stuffed content; message bodies are never read
//! as lines, so their length is not bounded by a line limit. [`listing`] builds a
//! short answer (CAPA, LIST, UIDL) for the server side; message bodies are stuffed
//! while they stream (`crate::smtp::data::send_stuffed`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// A line that began with '.'.
    Dot,
    /// A line that is '.' followed by CR.
    DotCr,
    /// Inside a line.
    Mid,
}

/// Sans-IO decoder for a multi-line answer after its status line.
///
/// The output has CRLF line ends: a bare LF from the server becomes CRLF, a bare CR
/// inside a line is kept as content. A server that ends with `.` LF instead of
/// `.` CRLF is understood too.
#[derive(Debug)]
pub struct MultilineDecoder {
    state: State,
    /// The last byte written in the current line was CR.
    prev_cr: bool,
}

impl Default for MultilineDecoder {
    fn default() -> Self {
        MultilineDecoder {
            state: State::LineStart,
            prev_cr: false,
        }
    }
}

impl MultilineDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `input`, appending content to `out`. Returns `Some(n)` when the
    /// terminating line ended after `n` bytes of `input` (the rest belongs to the next
    /// answer), `None` when all of `input` was consumed and the answer goes on.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::LineStart => {
                    self.prev_cr = false;
                    if b == b'.' {
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Dot => match b {
                    b'\r' => {
                        self.state = State::DotCr;
                        i += 1;
                    }
                    b'\n' => {
                        self.state = State::LineStart;
                        return Some(i + 1);
                    }
                    // RFC 1939 3: the first '.' of a longer line is stripped
                    _ => self.state = State::Mid,
                },
                State::DotCr => {
                    if b == b'\n' {
                        self.state = State::LineStart;
                        return Some(i + 1);
                    }
                    // '.' CR and more: the dot is stripped, the CR is content
                    out.push(b'\r');
                    self.prev_cr = true;
                    self.state = State::Mid;
                }
                State::Mid => {
                    let rest = &input[i..];
                    match memchr::memchr(b'\n', rest) {
                        None => {
                            out.extend_from_slice(rest);
                            if let Some(&last) = rest.last() {
                                self.prev_cr = last == b'\r';
                            }
                            i = input.len();
                        }
                        Some(p) => {
                            out.extend_from_slice(&rest[..p]);
                            let cr_before = if p > 0 {
                                rest[p - 1] == b'\r'
                            } else {
                                self.prev_cr
                            };
                            if !cr_before {
                                out.push(b'\r');
                            }
                            out.push(b'\n');
                            i += p + 1;
                            self.state = State::LineStart;
                        }
                    }
                }
            }
        }
        None
    }
}

/// A complete multi-line answer: `+OK first`, the lines dot-stuffed, then `.`.
/// Line breaks inside `first` or a line are dropped, so no text can end the answer early.
pub fn listing<S: AsRef<str>>(first: &str, lines: &[S]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + lines.len() * 24);
    out.extend_from_slice(b"+OK");
    if !first.is_empty() {
        out.push(b' ');
        push_clean(&mut out, first);
    }
    out.extend_from_slice(b"\r\n");
    for l in lines {
        let l = l.as_ref();
        if l.starts_with('.') {
            out.push(b'.');
        }
        push_clean(&mut out, l);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn push_clean(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut d = MultilineDecoder::new();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            if let Some(n) = d.feed(c, &mut out) {
                // what follows the answer: the rest of this chunk and all later ones
                let rest = std::iter::once(&c[n..])
                    .chain(chunks[i + 1..].iter().copied())
                    .flatten();
                return (out, Some(rest.copied().collect()));
            }
        }
        (out, None)
    }

    #[test]
    fn unstuffs_and_finds_the_end() {
        let (out, rest) =
            decode(&[b"Subject: x\r\n\r\n..dot line\r\n...\r\n..\r\nend\r\n.\r\n+OK next"]);
        assert_eq!(out, b"Subject: x\r\n\r\n.dot line\r\n..\r\n.\r\nend\r\n");
        assert_eq!(rest.unwrap(), b"+OK next");
    }

    #[test]
    fn every_chunk_boundary() {
        let wire: &[u8] = b"a\r\n..b\r\n...\r\n..\r\nc\rd\r\n\r\n.\r\n+OK";
        let want: &[u8] = b"a\r\n.b\r\n..\r\n.\r\nc\rd\r\n\r\n";
        for cut in 0..=wire.len() {
            let (out, rest) = decode(&[&wire[..cut], &wire[cut..]]);
            assert_eq!(out, want, "cut at {cut}");
            assert_eq!(rest.as_deref(), Some(&b"+OK"[..]), "cut at {cut}");
        }
        for cut1 in 0..wire.len() {
            for cut2 in cut1..wire.len() {
                let (out, rest) = decode(&[&wire[..cut1], &wire[cut1..cut2], &wire[cut2..]]);
                assert_eq!(out, want, "cuts at {cut1}, {cut2}");
                assert_eq!(rest.as_deref(), Some(&b"+OK"[..]), "cuts at {cut1}, {cut2}");
            }
        }
        // one byte at a time
        let mut d = MultilineDecoder::new();
        let mut out = Vec::new();
        let mut end = None;
        for (i, b) in wire.iter().enumerate() {
            if d.feed(std::slice::from_ref(b), &mut out).is_some() {
                end = Some(i + 1);
                break;
            }
        }
        assert_eq!(out, want);
        assert_eq!(end, Some(wire.len() - 3));
    }

    #[test]
    fn empty_answer_and_lenient_line_ends() {
        let (out, rest) = decode(&[b".\r\n"]);
        assert!(out.is_empty());
        assert_eq!(rest.unwrap(), b"");
        // bare LF lines become CRLF; a bare-LF terminator is understood
        let (out, rest) = decode(&[b"a\nb\r\n.\n"]);
        assert_eq!(out, b"a\r\nb\r\n");
        assert!(rest.is_some());
        // CR at a chunk end followed by LF is one CRLF, not CR CR LF
        let (out, _) = decode(&[b"abc\r", b"\n.\r\n"]);
        assert_eq!(out, b"abc\r\n");
        // a dot line that is not the terminator
        let (out, rest) = decode(&[b".\rx\r\n.\r\n"]);
        assert_eq!(out, b"\rx\r\n");
        assert!(rest.is_some());
    }

    #[test]
    fn no_end_yet() {
        let (out, rest) = decode(&[b"a\r\n", b".", b"."]);
        assert_eq!(out, b"a\r\n.");
        assert!(rest.is_none());
    }

    #[test]
    fn listing_is_stuffed_and_framed() {
        let wire = listing("2 messages", &["1 120", ".odd", "x\r\n.\r\ny"]);
        assert_eq!(wire, b"+OK 2 messages\r\n1 120\r\n..odd\r\nx.y\r\n.\r\n");
        let (out, rest) = decode(&[&wire[b"+OK 2 messages\r\n".len()..]]);
        assert_eq!(out, b"1 120\r\n.odd\r\nx.y\r\n");
        assert_eq!(rest.unwrap(), b"");
        assert_eq!(listing::<&str>("", &[]), b"+OK\r\n.\r\n");
    }

    #[test]
    fn round_trip_with_the_smtp_stuffer() {
        let mail: &[u8] = b"From: a\r\n\r\n.\r\n..\r\n.x\r\nlast";
        let mut wire = Vec::new();
        let mut sol = true;
        for c in mail.chunks(2) {
            crate::smtp::data::stuff_into(c, &mut sol, &mut wire);
        }
        wire.extend_from_slice(b"\r\n.\r\n");
        let (out, rest) = decode(&[&wire]);
        assert_eq!(out, b"From: a\r\n\r\n.\r\n..\r\n.x\r\nlast\r\n");
        assert_eq!(rest.unwrap(), b"");
    }
}
