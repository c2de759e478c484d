//! SMTP replies: what the proxy says itself, and what it passes back from the MTA.

use std::fmt;

/// One SMTP reply, possibly multi-line. Each text line holds the enhanced status
/// code where there is one (`"2.1.0 Ok"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The reply as it goes on the wire, CRLF-terminated.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 < n { '-' } else { ' ' };
            // never let a line break inside a text end the reply early
            let text: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            out.extend_from_slice(format!("{}{}{}\r\n", self.code, sep, text).as_bytes());
        }
        out
    }

    /// The first line of text, for logs.
    pub fn text(&self) -> &str {
        self.lines.first().map(String::as_str).unwrap_or("")
    }

    /// The enhanced status code (`x.y.z`) at the start of the first line, if any.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.text().split(' ').next()?;
        let parts: Vec<&str> = first.split('.').collect();
        let ok = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(first)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let r = Reply {
            code: 250,
            lines: vec!["mx".into(), "SIZE 10".into()],
        };
        assert_eq!(r.to_wire(), b"250-mx\r\n250 SIZE 10\r\n");
        assert_eq!(
            Reply::new(550, "5.1.1 no\r\n250 ok").to_wire(),
            b"550 5.1.1 no250 ok\r\n"
        );
        assert_eq!(
            Reply::new(550, "5.1.1 no such user").enhanced(),
            Some("5.1.1")
        );
        assert_eq!(Reply::new(421, "timeout").enhanced(), None);
    }
}
