//! The DATA phase as bytes: un-stuffing what a client sends, stuffing what goes upstream.
//!
//! The smuggling rule kim-cm keeps (see docs/smtp-smuggling.md): only `CRLF . CRLF`
//! ends DATA. A bare LF or a bare CR inside the data is a line end and is written to
//! the spool as CRLF, and a line `.` that is not framed by CRLF on both sides is kept
//! as content. So whatever a client sends, the spool holds CRLF-only lines, and the
//! upstream gets them dot-stuffed again: no byte sequence the client sends can end
//! the upstream DATA early or start a second, hidden transaction there.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::net::Conn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line; `after_crlf` when the previous line ended in CRLF.
    LineStart { after_crlf: bool },
    /// Inside a line.
    Mid,
    /// Inside a line, just after a CR.
    Cr,
    /// A line that began with '.'.
    Dot { after_crlf: bool },
    /// A line that is '.' followed by CR.
    DotCr { after_crlf: bool },
}

/// Sans-IO decoder for the DATA stream of RFC 5321 4.5.2, with kim-cm's bare-CR/LF rule.
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
}

impl Default for DataDecoder {
    fn default() -> Self {
        DataDecoder {
            state: State::LineStart { after_crlf: true },
        }
    }
}

impl DataDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `input`, appending the mail's bytes to `out`. Returns `Some(n)` when
    /// the end of data was found after consuming `n` bytes of `input` (the rest is
    /// the client's next command), `None` when all of `input` was consumed.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::LineStart { after_crlf } => {
                    if b == b'.' {
                        self.state = State::Dot { after_crlf };
                        i += 1;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Mid => {
                    let rest = &input[i..];
                    match memchr::memchr2(b'\r', b'\n', rest) {
                        None => {
                            out.extend_from_slice(rest);
                            i = input.len();
                        }
                        Some(p) => {
                            out.extend_from_slice(&rest[..p]);
                            i += p + 1;
                            if rest[p] == b'\n' {
                                out.extend_from_slice(b"\r\n");
                                self.state = State::LineStart { after_crlf: false };
                            } else {
                                self.state = State::Cr;
                            }
                        }
                    }
                }
                State::Cr => {
                    out.extend_from_slice(b"\r\n");
                    if b == b'\n' {
                        i += 1;
                        self.state = State::LineStart { after_crlf: true };
                    } else {
                        self.state = State::LineStart { after_crlf: false };
                    }
                }
                State::Dot { after_crlf } => match b {
                    b'\r' => {
                        self.state = State::DotCr { after_crlf };
                        i += 1;
                    }
                    b'\n' => {
                        out.extend_from_slice(b".\r\n");
                        self.state = State::LineStart { after_crlf: false };
                        i += 1;
                    }
                    _ => {
                        // a stuffed dot: removed, the rest of the line is content
                        self.state = State::Mid;
                    }
                },
                State::DotCr { after_crlf } => {
                    if b == b'\n' {
                        i += 1;
                        if after_crlf {
                            self.state = State::LineStart { after_crlf: true };
                            return Some(i);
                        }
                        out.extend_from_slice(b".\r\n");
                        self.state = State::LineStart { after_crlf: true };
                    } else {
                        out.extend_from_slice(b".\r\n");
                        self.state = State::LineStart { after_crlf: false };
                    }
                }
            }
        }
        None
    }
}

/// Why the DATA stream could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum StuffError {
    #[error("reading the spooled mail failed: {0}")]
    Spool(std::io::Error),
    #[error("writing to the server failed: {0}")]
    Peer(std::io::Error),
}

/// Sends a mail (CRLF lines) from `mail` to `conn` dot-stuffed, followed by `CRLF.CRLF`.
/// Returns the number of mail bytes sent.
pub async fn send_stuffed(
    conn: &mut Conn,
    mut mail: impl AsyncRead + Unpin,
) -> Result<u64, StuffError> {
    const CHUNK: usize = 256 * 1024;
    let mut inbuf = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(CHUNK + CHUNK / 8);
    let mut at_line_start = true;
    let mut last = [b'\r', b'\n'];
    let mut total = 0u64;
    loop {
        let n = mail.read(&mut inbuf).await.map_err(StuffError::Spool)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        let chunk = &inbuf[..n];
        stuff_into(chunk, &mut at_line_start, &mut out);
        if n >= 2 {
            last = [chunk[n - 2], chunk[n - 1]];
        } else {
            last = [last[1], chunk[0]];
        }
        conn.write_all(&out).await.map_err(StuffError::Peer)?;
        out.clear();
    }
    if total > 0 && last != [b'\r', b'\n'] {
        conn.write_all(b"\r\n").await.map_err(StuffError::Peer)?;
    }
    conn.write_all(b".\r\n").await.map_err(StuffError::Peer)?;
    conn.flush().await.map_err(StuffError::Peer)?;
    Ok(total)
}

/// Dot-stuffs `chunk` into `out`: a '.' at the start of a line is doubled.
pub fn stuff_into(chunk: &[u8], at_line_start: &mut bool, out: &mut Vec<u8>) {
    let mut rest = chunk;
    while !rest.is_empty() {
        if *at_line_start && rest[0] == b'.' {
            out.push(b'.');
        }
        match memchr::memchr(b'\n', rest) {
            Some(p) => {
                out.extend_from_slice(&rest[..=p]);
                rest = &rest[p + 1..];
                *at_line_start = true;
            }
            None => {
                out.extend_from_slice(rest);
                *at_line_start = false;
                rest = &[];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            if let Some(n) = d.feed(c, &mut out) {
                return (out, Some(c[n..].to_vec()));
            }
        }
        (out, None)
    }

    #[test]
    fn plain_mail_and_unstuffing() {
        let (out, rest) = decode(&[b"Subject: x\r\n\r\n..hidden dot\r\nline\r\n.\r\nQUIT\r\n"]);
        assert_eq!(out, b"Subject: x\r\n\r\n.hidden dot\r\nline\r\n");
        assert_eq!(rest.unwrap(), b"QUIT\r\n");
    }

    #[test]
    fn end_split_across_every_chunk_boundary() {
        let msg: &[u8] = b"a\r\n..b\r\nc\r\n.\r\nNEXT";
        for cut in 0..msg.len() {
            let (out, rest) = decode(&[&msg[..cut], &msg[cut..]]);
            assert_eq!(out, b"a\r\n.b\r\nc\r\n", "cut at {cut}");
            assert!(rest.is_some(), "cut at {cut}");
        }
    }

    #[test]
    fn empty_mail() {
        let (out, rest) = decode(&[b".\r\n"]);
        assert!(out.is_empty());
        assert_eq!(rest.unwrap(), b"");
    }

    #[test]
    fn smuggling_sequences_do_not_end_data() {
        for evil in [
            &b"x\n.\nMAIL FROM:<evil@x>\r\n"[..],
            b"x\r\n.\nMAIL FROM:<evil@x>\r\n",
            b"x\n.\r\nMAIL FROM:<evil@x>\r\n",
            b"x\r.\rMAIL FROM:<evil@x>\r\n",
            b"x\r.\r\nMAIL FROM:<evil@x>\r\n",
        ] {
            let mut input = evil.to_vec();
            input.extend_from_slice(b"\r\n.\r\n");
            let (out, rest) = decode(&[&input]);
            assert!(rest.is_some());
            // only CRLF line ends in the spool, and the lone dot line is kept as content
            assert!(
                !out.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
                "{out:?}"
            );
            assert!(
                out.windows(2).all(|w| !(w[0] == b'\r' && w[1] != b'\n')),
                "{out:?}"
            );
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(text.contains("\r\n.\r\nMAIL FROM:<evil@x>\r\n"), "{text:?}");
            // stuffed again for upstream, the dot line is doubled: no early end
            let mut stuffed = Vec::new();
            stuff_into(&out, &mut true, &mut stuffed);
            assert!(
                !stuffed.windows(5).any(|w| w == b"\r\n.\r\n"),
                "{stuffed:?}"
            );
        }
    }

    #[test]
    fn bare_lf_is_normalised() {
        let (out, _) = decode(&[b"a\nb\r\n\r\n.\r\n"]);
        assert_eq!(out, b"a\r\nb\r\n\r\n");
    }

    #[test]
    fn stuffing_round_trip() {
        let mail = b"a\r\n.b\r\n..c\r\n.\r\nd".to_vec();
        let mut stuffed = Vec::new();
        let mut sol = true;
        // feed in small pieces to cross boundaries
        for c in mail.chunks(3) {
            stuff_into(c, &mut sol, &mut stuffed);
        }
        stuffed.extend_from_slice(b"\r\n.\r\n");
        let (out, rest) = decode(&[&stuffed]);
        assert!(rest.is_some());
        assert_eq!(out, b"a\r\n.b\r\n..c\r\n.\r\nd\r\n");
    }
}
