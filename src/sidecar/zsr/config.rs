//! `[zsr]`: where the SASIS ZSR-Webservice is, the credentials SASIS gave, and
//! the rate rules (SASIS FAQ: at most 50 requests a minute outside the batch
//! window 22:00-04:00, never more than 1000, five minutes' pause after a 503).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::number::RemainderZero;

/// The scopes SASIS's sample asks for, all of them.
pub const SCOPE: &str = "openid profile email offline_access roles c1s_profile cpr";
/// SASIS's limit outside the batch window.
pub const MAX_SLOW_RATE: u32 = 50;
/// SASIS's limit at any time (more is refused with 503).
pub const MAX_RATE: u32 = 1000;

/// How the list of numbers is put into a detail request's query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListEncoding {
    /// `clearingnumbers=A&clearingnumbers=B` (ASP.NET's binding).
    #[default]
    Repeat,
    /// `clearingnumbers=A,B`.
    Comma,
}

/// What a long sync does when started outside the batch window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutsideWindow {
    /// Run at most 50 requests a minute.
    #[default]
    Slow,
    /// Wait until the window opens.
    Wait,
}

fn default_search_options() -> String {
    "Okp".into()
}
fn default_page_size() -> u32 {
    1000
}
fn default_window() -> String {
    "22:00-04:00".into()
}
fn default_timezone() -> String {
    "Europe/Zurich".into()
}
fn default_slow_rate() -> u32 {
    MAX_SLOW_RATE
}
fn default_batch_rate() -> u32 {
    900
}
fn default_pause() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZsrConfig {
    /// The OpenID Connect authority (its `/.well-known/openid-configuration`
    /// names the token endpoint).
    pub authority_url: String,
    /// The API's base, with the gateway path: `https://host/ApiGateway`.
    pub base_url: String,
    pub client_id: String,
    /// First line: the client secret.
    pub client_secret_file: PathBuf,
    pub username: String,
    /// First line: the user's password.
    pub password_file: PathBuf,
    /// CA certificates for the service's TLS; the system's when absent.
    pub ca_file: Option<PathBuf>,
    /// `searchOptions` of `/numbers` (the subscribed module).
    #[serde(default = "default_search_options")]
    pub search_options: String,
    /// `limit` of one `/numbers` page.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    #[serde(default)]
    pub list_encoding: ListEncoding,
    /// `HH:MM-HH:MM` in `timezone`.
    #[serde(default = "default_window")]
    pub batch_window: String,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default)]
    pub outside_window: OutsideWindow,
    /// Requests a minute outside the window (at most 50).
    #[serde(default = "default_slow_rate")]
    pub slow_rate_per_minute: u32,
    /// Requests a minute in the window (at most 1000).
    #[serde(default = "default_batch_rate")]
    pub batch_rate_per_minute: u32,
    /// The pause after a 503, in seconds.
    #[serde(default = "default_pause")]
    pub pause_after_503_seconds: u64,
    #[serde(default)]
    pub remainder_zero: RemainderZero,
    /// No rate limit at all: for the simulator and the benchmark only.
    #[serde(default)]
    pub unlimited_rate_for_testing: bool,
}

impl ZsrConfig {
    /// What is wrong with the values, in a sentence.
    pub fn check(&self) -> Result<(), String> {
        if self.slow_rate_per_minute == 0 || self.slow_rate_per_minute > MAX_SLOW_RATE {
            return Err(format!(
                "[zsr] slow_rate_per_minute must be 1 to {MAX_SLOW_RATE} (SASIS counts more as batch traffic)"
            ));
        }
        if self.batch_rate_per_minute == 0 || self.batch_rate_per_minute > MAX_RATE {
            return Err(format!(
                "[zsr] batch_rate_per_minute must be 1 to {MAX_RATE} (SASIS refuses more with 503)"
            ));
        }
        if self.page_size == 0 {
            return Err("[zsr] page_size must be at least 1".into());
        }
        if self.pause_after_503_seconds < default_pause() {
            return Err(
                "[zsr] pause_after_503_seconds must be at least 300 (SASIS asks for 5 minutes)"
                    .into(),
            );
        }
        super::window::Window::parse(&self.batch_window, &self.timezone)?;
        crate::http::url::HttpsUrl::parse(&self.authority_url)
            .map_err(|e| format!("[zsr] authority_url: {e}"))?;
        crate::http::url::HttpsUrl::parse(&self.base_url)
            .map_err(|e| format!("[zsr] base_url: {e}"))?;
        Ok(())
    }

    pub fn pause_after_503(&self) -> Duration {
        Duration::from_secs(self.pause_after_503_seconds)
    }
}
