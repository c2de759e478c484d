//! Helsenorge DigitaltAktivStatusEndringer (Norway, NHN): which citizens'
//! "digitalt aktiv" status may have changed since a given offset, so that a
//! practice re-checks only those of its patients instead of all of them
//! (docs/helsenorge.md).
//!
//! The parts: the `[helsenorge]` config ([`config`]), identity numbers
//! ([`nin`]), the server's offset and its three-month window ([`offset`]), the
//! token with a signed client assertion ([`assertion`], [`auth`]), one call of
//! the feed with its one retry on a refused token ([`client`]), a run that
//! intersects the answer with the local patients and stores the offset
//! ([`changes`]), and the command line ([`cli`]).

pub mod assertion;
pub mod auth;
pub mod changes;
pub mod cli;
pub mod client;
pub mod config;
pub mod nin;
pub mod offset;

use std::sync::Arc;

use assertion::ClientKey;
use client::ChangesClient;
use config::HelsenorgeConfig;

use super::clock::Clock;
use super::http::SidecarHttp;
use super::oauth::TokenCache;
use crate::http::client::HttpSettings;

/// The feed's client as `cfg` (resolved) describes it, on `clock`.
pub fn changes_client(
    cfg: &HelsenorgeConfig,
    clock: Arc<dyn Clock>,
) -> Result<ChangesClient, String> {
    crate::keyfiles::check(&cfg.key_file, "[helsenorge] key_file")?;
    let key = ClientKey::load(&cfg.key_file, &cfg.key_id)
        .map_err(|e| format!("[helsenorge] key_file: {e}"))?;
    let connector = crate::net::tls::connector(&cfg.ca_file, None)
        .map_err(|e| format!("[helsenorge] ca_file: {e}"))?;
    let http = SidecarHttp {
        settings: HttpSettings {
            connector: Arc::new(connector),
            connect_timeout: config::CONNECT_TIMEOUT,
            timeout: std::time::Duration::from_secs(cfg.timeout_secs),
        },
        max_body: cfg.max_answer(),
        clock: clock.clone(),
    };
    let source = auth::AssertionSource::new(cfg, key, http.clone());
    Ok(ChangesClient {
        http,
        tokens: Arc::new(TokenCache::new(Box::new(source), clock, auth::TOKEN_MARGIN)),
        url: cfg.changes_url(),
    })
}
