//! SMTP on both sides of kim-cm: the server session the mail client talks to, and
//! the client that talks to the Fachdienst's MTA. Neither knows anything of KIM.

pub mod auth;
pub mod client;
pub mod data;
pub mod reply;
pub mod server;

pub use reply::Reply;
