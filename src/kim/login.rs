//! The login user names of gemSpec_CM_KOMLE: the mail client tells the Clientmodul in
//! its user name which KIM address to use, which Fachdienst server to talk to and the
//! Konnektor call context.
//!
//! SMTP (3.3.2.2, KOM-LE-A_2010, A_21457, A_21519-02):
//!   `address#host:port#MandantId#ClientSystemId#WorkplaceId[#KonnektorId]`
//! POP3 (3.4.2.2, KOM-LE-A_2031, A_21518-02):
//!   `address#host:port#MandantId#ClientSystemId#WorkplaceId[#UserId][#KonnektorId]`
//! A skipped optional position followed by a later one is written `*`.
//!
//! kim-cm also accepts a plain KIM address where the account is listed in the
//! configuration (for clients that cannot send `#` in a user name); the server and
//! the context then come from the configuration.

use std::fmt;

/// Which protocol's user-name layout applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Pop3,
}

/// A Fachdienst server named in the user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
}

impl Server {
    /// `host:port` for connecting; IPv6 literals get their brackets back.
    pub fn socket_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.socket_addr())
    }
}

/// The Konnektor call context (gemSpec_Kon): who is calling from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    pub mandant_id: String,
    pub client_system_id: String,
    pub workplace_id: String,
    /// POP3 only: the HBA holder's UserId.
    pub user_id: Option<String>,
}

/// A parsed login user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginName {
    /// The KIM address: the upstream login (KOM-LE-A_2012, KOM-LE-A_2034).
    pub address: String,
    /// The server from the name; `None` for a plain address or a `*` in position 1.
    pub server: Option<Server>,
    /// `None` only for a plain address.
    pub context: Option<CallContext>,
    pub konnektor_id: Option<String>,
}

/// Why a user name was refused: SMTP answers `501 5.5.4`, POP3 `-ERR` (Tab_SMTP_Verbindung).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("the user name is empty")]
    Empty,
    #[error("'{0}' is not a mail address")]
    BadAddress(String),
    #[error("the user name has {found} '#'-separated parts; it needs address#host:port#MandantId#ClientSystemId#WorkplaceId")]
    Incomplete { found: usize },
    #[error("the user name has {found} '#'-separated parts; at most {max} are defined")]
    TooManyParts { found: usize, max: usize },
    #[error("'{0}' is not host:port")]
    BadServer(String),
    #[error("the {0} in the user name is empty")]
    MissingPart(&'static str),
}

/// Parses a login user name as the spec defines it for `proto`.
pub fn parse(raw: &str, proto: Protocol) -> Result<LoginName, LoginError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(LoginError::Empty);
    }
    let parts: Vec<&str> = raw.split('#').collect();
    let address = check_address(parts[0])?;
    if parts.len() == 1 {
        return Ok(LoginName {
            address,
            server: None,
            context: None,
            konnektor_id: None,
        });
    }
    if parts.len() < 5 {
        return Err(LoginError::Incomplete { found: parts.len() });
    }
    let max = match proto {
        Protocol::Smtp => 6,
        Protocol::Pop3 => 7,
    };
    if parts.len() > max {
        return Err(LoginError::TooManyParts {
            found: parts.len(),
            max,
        });
    }
    let server = match parts[1].trim() {
        "" | "*" => None, // KIM 1.5.4: the server is optional; the configured one is used
        s => Some(parse_server(s)?),
    };
    let required = |i: usize, what: &'static str| -> Result<String, LoginError> {
        match parts[i].trim() {
            "" | "*" => Err(LoginError::MissingPart(what)),
            v => Ok(v.to_string()),
        }
    };
    let optional = |i: usize| -> Option<String> {
        parts
            .get(i)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty() && *v != "*")
            .map(str::to_string)
    };
    let mandant_id = required(2, "MandantId")?;
    let client_system_id = required(3, "ClientSystemId")?;
    let workplace_id = required(4, "WorkplaceId")?;
    let (user_id, konnektor_id) = match proto {
        Protocol::Smtp => (None, optional(5)),
        Protocol::Pop3 => (optional(5), optional(6)),
    };
    Ok(LoginName {
        address,
        server,
        context: Some(CallContext {
            mandant_id,
            client_system_id,
            workplace_id,
            user_id,
        }),
        konnektor_id,
    })
}

fn check_address(a: &str) -> Result<String, LoginError> {
    let a = a.trim();
    let ok = match a.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !a
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        }
        None => false,
    };
    if ok {
        Ok(a.to_string())
    } else {
        Err(LoginError::BadAddress(a.to_string()))
    }
}

pub fn parse_server(s: &str) -> Result<Server, LoginError> {
    let bad = || LoginError::BadServer(s.to_string());
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        (h, p)
    } else {
        s.rsplit_once(':').ok_or_else(bad)?
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(bad());
    }
    Ok(Server {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_example_from_the_spec() {
        let n = parse(
            "erik.mustermann@hrst_domain.kim.telematik#hrst_domain.kim.telematik:465#1#KOM_LE#7#Konn_1",
            Protocol::Smtp,
        )
        .unwrap();
        assert_eq!(n.address, "erik.mustermann@hrst_domain.kim.telematik");
        assert_eq!(
            n.server,
            Some(Server {
                host: "hrst_domain.kim.telematik".into(),
                port: 465
            })
        );
        let c = n.context.unwrap();
        assert_eq!(
            (
                c.mandant_id.as_str(),
                c.client_system_id.as_str(),
                c.workplace_id.as_str()
            ),
            ("1", "KOM_LE", "7")
        );
        assert_eq!(c.user_id, None);
        assert_eq!(n.konnektor_id.as_deref(), Some("Konn_1"));
    }

    #[test]
    fn smtp_without_optional_parts() {
        let n = parse("a@b.de#mta.b.de:465#1#CS#7", Protocol::Smtp).unwrap();
        assert_eq!(n.konnektor_id, None);
        assert!(n.context.is_some());
    }

    #[test]
    fn pop3_with_placeholder_for_user_id() {
        let n = parse("a@b.de#pop.b.de:995#1#KOM_LE#7#*#Konn_1", Protocol::Pop3).unwrap();
        let c = n.context.unwrap();
        assert_eq!(c.user_id, None);
        assert_eq!(n.konnektor_id.as_deref(), Some("Konn_1"));
        let n = parse("a@b.de#pop.b.de:995#1#KOM_LE#7#hba-9", Protocol::Pop3).unwrap();
        assert_eq!(n.context.unwrap().user_id.as_deref(), Some("hba-9"));
        assert_eq!(n.konnektor_id, None);
    }

    #[test]
    fn smtp_position_five_is_the_konnektor_not_a_user() {
        let n = parse("a@b.de#mta:465#1#CS#7#hba-9", Protocol::Smtp).unwrap();
        assert_eq!(n.konnektor_id.as_deref(), Some("hba-9"));
        assert_eq!(n.context.unwrap().user_id, None);
    }

    #[test]
    fn incomplete_names_are_refused() {
        for bad in [
            "a@b.de#mta:465",
            "a@b.de#mta:465#1#CS",
            "a@b.de#mta:465#1##7",
            "a@b.de#mta:465#*#CS#7",
        ] {
            assert!(parse(bad, Protocol::Smtp).is_err(), "{bad}");
            assert!(parse(bad, Protocol::Pop3).is_err(), "{bad}");
        }
        assert_eq!(parse("", Protocol::Smtp), Err(LoginError::Empty));
        assert!(matches!(
            parse("nobody#mta:465#1#CS#7", Protocol::Smtp),
            Err(LoginError::BadAddress(_))
        ));
        assert!(matches!(
            parse("a@b.de#mta#1#CS#7", Protocol::Smtp),
            Err(LoginError::BadServer(_))
        ));
        assert!(matches!(
            parse("a@b.de#mta:99999#1#CS#7", Protocol::Smtp),
            Err(LoginError::BadServer(_))
        ));
        assert!(matches!(
            parse("a@b.de#mta:465#1#CS#7#u#k", Protocol::Smtp),
            Err(LoginError::TooManyParts { found: 7, max: 6 })
        ));
        assert!(parse("a@b.de#mta:465#1#CS#7#u#k", Protocol::Pop3).is_ok());
    }

    #[test]
    fn plain_address_and_skipped_server() {
        let n = parse("a@b.de", Protocol::Pop3).unwrap();
        assert_eq!((n.server, n.context), (None, None));
        let n = parse("a@b.de#*#1#CS#7", Protocol::Smtp).unwrap();
        assert_eq!(n.server, None);
        assert!(n.context.is_some());
    }

    #[test]
    fn ipv6_server() {
        let n = parse("a@b.de#[::1]:2465#1#CS#7", Protocol::Smtp).unwrap();
        assert_eq!(n.server.unwrap().socket_addr(), "[::1]:2465");
    }
}
