//! Where the protocols meet the KIM rules: the backends that the client-facing SMTP
//! and POP3 sessions run against. Each one parses the login user name (kim::login),
//! logs in upstream on the user's behalf, and runs the KIM pipeline over a mail
//! between the two sides.

pub mod pop3;
pub mod smtp;
