//! The KIM domain, without sockets: login user names, the send and receive
//! pipelines, the layers of a KIM mail, result headers, error mails and DSNs.

pub mod dsn;
pub mod error_mail;
pub mod forward;
pub mod header;
pub mod kas;
pub mod login;
pub mod notes;
pub mod receive;
pub mod restore;
pub mod seal;
pub mod send;
pub mod wrap;
