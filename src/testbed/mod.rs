//! Simulators of the remote parties, so the whole system runs on one machine.
//! Each follows the published interface of the party it stands in for.

pub mod account_manager;
pub mod ca;
pub mod careflex;
pub mod fachdienst;
pub mod helsenorge;
pub mod https;
pub mod kas;
pub mod konnektor;
pub mod limits;
pub mod mailstore;
pub mod nsp;
pub mod pki;
pub mod pop3;
pub mod slapd;
pub mod smtp;
pub mod users;
pub mod zsr;
