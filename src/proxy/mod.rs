//! Where the protocols meet the KIM rules: the backends that the client-facing SMTP
//! and POP3 sessions run against. Each one parses the login user name (kim::login),
//! logs in upstream on the user's behalf, and runs the KIM pipeline over a mail
//! between the two sides.

pub mod pop3;
pub mod restore;
pub mod smtp;

use crate::config::Config;
use crate::kim::login::{self, LoginName, Protocol, Server};

/// Which Fachdienst server a login goes to: the one in the user name (KOM-LE-A_2011,
/// KOM-LE-A_2031), else the one configured for the account. A plain address is
/// accepted only for a configured account. `Err` says what is wrong with the name.
pub fn resolve(
    config: &Config,
    user: &str,
    proto: Protocol,
) -> Result<(LoginName, Server), String> {
    let name = login::parse(user, proto).map_err(|e| e.to_string())?;
    let account = config.account(&name.address);
    if name.context.is_none() && account.is_none() {
        return Err(format!(
            "'{}' is not configured in kim-cm; use address#host:port#MandantId#ClientSystemId#WorkplaceId",
            name.address
        ));
    }
    let server = match (&name.server, account) {
        (Some(s), _) => s.clone(),
        (None, Some(a)) => match proto {
            Protocol::Smtp => a.smtp_server.clone(),
            Protocol::Pop3 => a.pop3_server.clone(),
        },
        (None, None) => {
            return Err(format!(
                "no server host:port given and none configured for {}",
                name.address
            ));
        }
    };
    Ok((name, server))
}
