//! The KIM domain, without I/O: login user names, the send pipeline and, later, the
//! receive pipeline, headers and error mails. Nothing in here opens a socket.

pub mod error_mail;
pub mod header;
pub mod login;
pub mod notes;
pub mod receive;
pub mod seal;
pub mod send;
pub mod wrap;
