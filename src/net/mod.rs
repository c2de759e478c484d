//! Sockets, TLS and bounded, timed line I/O: everything that touches the network
//! lives here or in the protocol sessions that use it.

pub mod conn;
pub mod idle;
pub mod tls;

pub use conn::{Conn, ReadError, Stream, UpstreamError};

use serde::Deserialize;

/// How a listener or an upstream connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// No TLS: only for listeners on loopback.
    Plain,
    /// TLS from the first byte (SMTPS, POP3S).
    Implicit,
    /// Plain greeting, then STARTTLS (SMTP) or STLS (POP3).
    Starttls,
}
