//! HTTP towards the TI's web services (AccountLimit now; KAS and the Account Manager
//! next): hyper's HTTP/1.1 over kim-cm's own TLS connection, so these services get
//! the same verified TLS (TI curves, client certificate) as the mail upstream.

pub mod client;
pub mod kas;
pub mod url;
