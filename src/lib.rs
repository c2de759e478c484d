//! kim-cm: a KIM Clientmodul. See docs/architecture.md for the map.

pub mod activity;
pub mod admin;
pub mod bench;
pub mod cms;
pub mod config;
pub mod crypto;
pub mod directory;
pub mod http;
pub mod kim;
pub mod konnektor;
pub mod limits;
pub mod listener;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod net;
pub mod pop3;
pub mod proxy;
pub mod sandbox;
pub mod serve;
pub mod shutdown;
pub mod sidecar;
pub mod smtp;
pub mod spool;
pub mod store;
pub mod testbed;
