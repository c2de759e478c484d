//! The client's POP3 commands as bytes (RFC 1939, RFC 2449 CAPA, RFC 5034 AUTH,
//! RFC 2595 STLS): a sans-IO parser, so the session only deals with typed commands.
//!
//! Keywords are case-insensitive. `PASS` takes the rest of the line as it is (RFC 1939
//! 7: a password may contain spaces); every other argument is a space-separated word.

use std::fmt;

use zeroize::Zeroizing;

/// One client command.
#[derive(PartialEq, Eq)]
pub enum Command {
    Capa,
    User(String),
    Pass(Zeroizing<String>),
    /// `AUTH` alone lists the mechanisms; `initial` is the base64 initial response.
    Auth {
        mechanism: Option<String>,
        initial: Option<Vec<u8>>,
    },
    Stls,
    Stat,
    List(Option<usize>),
    Uidl(Option<usize>),
    Retr(usize),
    Top {
        msg: usize,
        lines: usize,
    },
    Dele(usize),
    Rset,
    Noop,
    Quit,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // never print a password, nor a PLAIN response (it holds the password)
            Command::Pass(_) => f.write_str("Pass(<redacted>)"),
            Command::Auth { mechanism, initial } => f
                .debug_struct("Auth")
                .field("mechanism", mechanism)
                .field("initial", &initial.as_ref().map(|_| "<redacted>"))
                .finish(),
            Command::Capa => f.write_str("Capa"),
            Command::User(u) => f.debug_tuple("User").field(u).finish(),
            Command::Stls => f.write_str("Stls"),
            Command::Stat => f.write_str("Stat"),
            Command::List(n) => f.debug_tuple("List").field(n).finish(),
            Command::Uidl(n) => f.debug_tuple("Uidl").field(n).finish(),
            Command::Retr(n) => f.debug_tuple("Retr").field(n).finish(),
            Command::Top { msg, lines } => f
                .debug_struct("Top")
                .field("msg", msg)
                .field("lines", lines)
                .finish(),
            Command::Dele(n) => f.debug_tuple("Dele").field(n).finish(),
            Command::Rset => f.write_str("Rset"),
            Command::Noop => f.write_str("Noop"),
            Command::Quit => f.write_str("Quit"),
        }
    }
}

/// Why a line is not a command; the text goes to the client after `-ERR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command")]
    Unknown,
    #[error("{0}")]
    Syntax(&'static str),
}

/// Longest message number or line count accepted (digits).
const MAX_NUMBER_DIGITS: usize = 10;

/// True when `line` is an AUTH command: it may be longer than other commands,
/// because it can carry the initial SASL response.
pub fn is_auth(line: &[u8]) -> bool {
    line.len() >= 4
        && line[..4].eq_ignore_ascii_case(b"AUTH")
        && (line.len() == 4 || line[4] == b' ')
}

/// Parses one command line (without its CRLF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let (keyword, rest) = match memchr::memchr(b' ', line) {
        Some(p) => (&line[..p], &line[p + 1..]),
        None => (line, &b""[..]),
    };
    if keyword.len() > 4 || keyword.is_empty() || !keyword.iter().all(u8::is_ascii_alphabetic) {
        return Err(ParseError::Unknown);
    }
    let keyword = keyword.to_ascii_uppercase();
    if keyword == b"PASS" {
        // RFC 1939 7: the whole rest of the line is the password, spaces included
        let pass = std::str::from_utf8(rest)
            .map_err(|_| ParseError::Syntax("the password is not UTF-8"))?;
        if pass.is_empty() {
            return Err(ParseError::Syntax("PASS needs a password"));
        }
        return Ok(Command::Pass(Zeroizing::new(pass.to_string())));
    }
    let rest =
        std::str::from_utf8(rest).map_err(|_| ParseError::Syntax("the command is not UTF-8"))?;
    let args: Vec<&str> = rest.split_ascii_whitespace().collect();
    let none = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(ParseError::Syntax("this command takes no arguments"))
        }
    };
    match &keyword[..] {
        b"CAPA" => none(Command::Capa),
        b"STLS" => none(Command::Stls),
        b"STAT" => none(Command::Stat),
        b"RSET" => none(Command::Rset),
        b"NOOP" => none(Command::Noop),
        b"QUIT" => none(Command::Quit),
        b"USER" => match args.as_slice() {
            [name] => Ok(Command::User(name.to_string())),
            [] => Err(ParseError::Syntax("USER needs a user name")),
            _ => Err(ParseError::Syntax("a user name cannot contain spaces")),
        },
        b"AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [mech] => Ok(Command::Auth {
                mechanism: Some(mech.to_ascii_uppercase()),
                initial: None,
            }),
            [mech, ir] => Ok(Command::Auth {
                mechanism: Some(mech.to_ascii_uppercase()),
                initial: Some(ir.as_bytes().to_vec()),
            }),
            _ => Err(ParseError::Syntax(
                "Syntax: AUTH mechanism [initial-response]",
            )),
        },
        b"LIST" | b"UIDL" => {
            let n = match args.as_slice() {
                [] => None,
                [n] => Some(msg_number(n)?),
                _ => return Err(ParseError::Syntax("Syntax: LIST [msg] or UIDL [msg]")),
            };
            Ok(if keyword == b"LIST" {
                Command::List(n)
            } else {
                Command::Uidl(n)
            })
        }
        b"RETR" | b"DELE" => {
            let [n] = args.as_slice() else {
                return Err(ParseError::Syntax("Syntax: RETR msg or DELE msg"));
            };
            let n = msg_number(n)?;
            Ok(if keyword == b"RETR" {
                Command::Retr(n)
            } else {
                Command::Dele(n)
            })
        }
        b"TOP" => {
            let [n, lines] = args.as_slice() else {
                return Err(ParseError::Syntax("Syntax: TOP msg lines"));
            };
            Ok(Command::Top {
                msg: msg_number(n)?,
                lines: number(lines).ok_or(ParseError::Syntax("the line count is not a number"))?,
            })
        }
        _ => Err(ParseError::Unknown),
    }
}

fn number(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > MAX_NUMBER_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A message number: RFC 1939 numbers start at 1.
fn msg_number(s: &str) -> Result<usize, ParseError> {
    match number(s) {
        Some(0) => Err(ParseError::Syntax("no such message: numbers start at 1")),
        Some(n) => Ok(n),
        None => Err(ParseError::Syntax("the message number is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        parse(s.as_bytes())
    }

    #[test]
    fn simple_commands_in_any_case() {
        assert_eq!(p("CAPA"), Ok(Command::Capa));
        assert_eq!(p("stat"), Ok(Command::Stat));
        assert_eq!(p("Quit"), Ok(Command::Quit));
        assert_eq!(p("NOOP"), Ok(Command::Noop));
        assert_eq!(p("rset"), Ok(Command::Rset));
        assert_eq!(p("STLS"), Ok(Command::Stls));
        assert_eq!(
            p("STAT 1"),
            Err(ParseError::Syntax("this command takes no arguments"))
        );
    }

    #[test]
    fn message_numbers() {
        assert_eq!(p("LIST"), Ok(Command::List(None)));
        assert_eq!(p("LIST 3"), Ok(Command::List(Some(3))));
        assert_eq!(p("uidl 12"), Ok(Command::Uidl(Some(12))));
        assert_eq!(p("RETR 1"), Ok(Command::Retr(1)));
        assert_eq!(p("DELE 2"), Ok(Command::Dele(2)));
        assert_eq!(p("TOP 1 0"), Ok(Command::Top { msg: 1, lines: 0 }));
        assert_eq!(p("TOP 1 25"), Ok(Command::Top { msg: 1, lines: 25 }));
        for bad in [
            "RETR",
            "RETR x",
            "RETR 0",
            "RETR -1",
            "RETR 1 2",
            "TOP 1",
            "TOP 1 x",
            "LIST 1 2",
            "RETR 99999999999",
        ] {
            assert!(matches!(p(bad), Err(ParseError::Syntax(_))), "{bad}");
        }
    }

    #[test]
    fn user_and_pass() {
        assert_eq!(
            p("USER a@b.de#pop:995#1#CS#7"),
            Ok(Command::User("a@b.de#pop:995#1#CS#7".into()))
        );
        assert!(matches!(p("USER"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("USER a b"), Err(ParseError::Syntax(_))));
        // the password is the rest of the line, spaces and all
        assert_eq!(
            p("PASS  geheim mit Leer "),
            Ok(Command::Pass(Zeroizing::new(" geheim mit Leer ".into())))
        );
        assert!(matches!(p("PASS"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"PASS \xff"), Err(ParseError::Syntax(_))));
        // and is never printed
        let dbg = format!("{:?}", p("PASS secret").unwrap());
        assert!(!dbg.contains("secret"), "{dbg}");
    }

    #[test]
    fn auth() {
        assert_eq!(
            p("AUTH"),
            Ok(Command::Auth {
                mechanism: None,
                initial: None
            })
        );
        assert_eq!(
            p("auth plain"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: None
            })
        );
        assert_eq!(
            p("AUTH PLAIN AGFAYgBj"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some(b"AGFAYgBj".to_vec())
            })
        );
        assert!(!format!("{:?}", p("AUTH PLAIN AGFAYgBj").unwrap()).contains("AGFAYgBj"));
        assert!(matches!(p("AUTH PLAIN a b"), Err(ParseError::Syntax(_))));
        assert!(
            is_auth(b"AUTH PLAIN x") && is_auth(b"auth") && !is_auth(b"AUTHX") && !is_auth(b"USER")
        );
    }

    #[test]
    fn unknown_commands() {
        for bad in [
            "", "XYZZY", "APOP a b", "HELO x", "RE TR 1", " STAT", "ST@T",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
        assert_eq!(p("XTND"), Err(ParseError::Unknown));
        assert_eq!(p("APOP a b"), Err(ParseError::Unknown));
    }
}
