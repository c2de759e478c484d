//! The few URLs kim-cm calls: `https://host[:port]/base/path`.

use std::fmt;

/// An https URL split into what a connection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl {
    pub host: String,
    pub port: u16,
    /// The path, starting with `/`, without a trailing `/`.
    pub path: String,
}

impl HttpsUrl {
    /// Parses `https://host[:port][/path]`; only https is accepted.
    pub fn parse(text: &str) -> Result<HttpsUrl, String> {
        let rest = text
            .strip_prefix("https://")
            .ok_or_else(|| format!("{text}: only https:// URLs are allowed"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{text}: the port is not a number"))?,
            ),
            _ => (authority, 443),
        };
        if host.is_empty() {
            return Err(format!("{text}: no host"));
        }
        Ok(HttpsUrl {
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }

    /// `host:port` for connecting.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// This URL with `tail` appended to its path.
    pub fn join(&self, tail: &str) -> HttpsUrl {
        HttpsUrl {
            path: format!("{}{tail}", self.path),
            ..self.clone()
        }
    }
}

impl fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}{}", self.authority(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HttpsUrl::parse("https://am.kim.test:8443/AccountLimit/v1.1/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("am.kim.test", 8443, "/AccountLimit/v1.1")
        );
        assert_eq!(
            u.join("/limit").to_string(),
            "https://am.kim.test:8443/AccountLimit/v1.1/limit"
        );
        assert_eq!(HttpsUrl::parse("https://x.de").unwrap().port, 443);
        assert!(HttpsUrl::parse("http://x.de/")
            .unwrap_err()
            .contains("only https"));
        assert!(HttpsUrl::parse("https://x.de:abc/").is_err());
    }
}
