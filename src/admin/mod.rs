//! The administration module (gemSpec_CM_KOMLE 2.1 and 3.7): what a practice's
//! admin does with the KIM account through the Clientmodul rather than through
//! the mail flow: register it, change its password and settings, deregister or
//! revoke that, move the address to a new card (OTP and setTID), fetch the TLS
//! client certificate, read and set the out-of-office note; and `web`, the local
//! admin page that `kim-cm serve` offers on a loopback port.
//!
//! The remote party is the provider's Account Manager (AccountManager.yaml 2.4.0
//! and ServiceInformation.yaml 1.0.3); where KIM_API.adoc says otherwise the yaml
//! wins (docs/kim-interfaces.md). The CLI and the admin web page build on
//! [`ops`] (over [`account_manager::AccountManagerClient`]), so both show the
//! same sentences ([`errors`]) and the same results ([`outcome`]).

pub mod account_manager;
pub mod cli;
pub mod errors;
pub mod ops;
pub mod outcome;
pub mod schemas;
pub mod secrets;
pub mod web;
