//! POP3 on both sides of kim-cm: the server session the mail client talks to, and
//! the client that fetches from the Fachdienst's mailbox. Neither knows anything of
//! KIM; the proxy (`crate::proxy::pop3`) joins them.
//!
//! The parsing is sans-IO and lives apart from the sockets: [`command`] turns a
//! client's line into a [`command::Command`], [`multiline`] un-stuffs a server's
//! multi-line answer, so both are tested byte by byte without a connection.

pub mod client;
pub mod command;
pub mod multiline;
pub mod server;
