//! `[careflex]` in kim-cm's config file: where CareFlex's two endpoints are
//! (EP1 the token, EP2 the SOAP service: the vendor names neither, so both are
//! configured), the service user, the API token of the managing company, and
//! the CareFlex IDs of the companies it reports for. Every key is described in
//! docs/careflex.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::http::url::HttpsUrl;

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one request may take by default (100 incidents are a few KiB).
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// The longest `timeout_secs` accepted.
pub const MAX_TIMEOUT_SECS: u64 = 3600;
/// The sex values accepted unless the config names others: the seed shows
/// `m`; the others are the German civil register's (männlich, weiblich,
/// divers, ohne Angabe), an assumption until the vendor's list is known.
pub const DEFAULT_SEX_VALUES: [&str; 4] = ["m", "w", "d", "x"];
/// The longest CareFlex ID accepted (the examples have 16 hex digits).
pub const MAX_CAREFLEX_ID: usize = 64;

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

fn default_sex_values() -> Vec<String> {
    DEFAULT_SEX_VALUES.iter().map(|s| s.to_string()).collect()
}

/// The `[careflex]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CareflexConfig {
    /// EP1: where the access token is asked for (JSON password grant).
    pub token_url: String,
    /// EP2: the SOAP incident service.
    pub service_url: String,
    /// The service user's ID (portal: "Data import settings").
    pub username: String,
    /// First line: the service user's secret.
    pub password_file: PathBuf,
    /// First line: the managing company's API token (`apitoken` in every body).
    pub apitoken_file: PathBuf,
    /// The managing company's own CareFlex ID: the default for reports and
    /// `none` without one.
    pub careflex_id: String,
    /// Further CareFlex IDs the managing company reports for; a report or
    /// `none` for any other ID is refused before anything is sent.
    #[serde(default)]
    pub companies: Vec<String>,
    /// CA certificates (PEM) for the service's TLS; the system's when absent.
    pub ca_file: Option<PathBuf>,
    /// Seconds one request may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The `sex` values accepted in master data.
    #[serde(default = "default_sex_values")]
    pub sex_values: Vec<String>,
}

/// Whether `id` looks like a CareFlex ID: letters, digits and `-` (the
/// examples have 16 hex digits; the format is not published).
pub fn careflex_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CAREFLEX_ID
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl CareflexConfig {
    /// Makes relative file paths relative to `base` (the config's folder).
    pub fn resolve(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut self.password_file);
        abs(&mut self.apitoken_file);
        self.ca_file.as_mut().map(abs);
    }

    /// What is wrong with the values, in a sentence.
    pub fn check(&self) -> Result<(), String> {
        HttpsUrl::parse(&self.token_url).map_err(|e| format!("[careflex] token_url: {e}"))?;
        HttpsUrl::parse(&self.service_url).map_err(|e| format!("[careflex] service_url: {e}"))?;
        if self.username.trim().is_empty() {
            return Err("[careflex] username is empty: set the service user's ID from the CareFlex portal (Data import settings)".into());
        }
        for id in std::iter::once(&self.careflex_id).chain(&self.companies) {
            if !careflex_id_ok(id) {
                return Err(format!(
                    "[careflex] '{id}' is not a CareFlex ID (letters and digits, as the portal shows it, e.g. 09ce3580d84bf090)"
                ));
            }
        }
        if self.timeout_secs == 0 || self.timeout_secs > MAX_TIMEOUT_SECS {
            return Err(format!(
                "[careflex] timeout_secs must be 1 to {MAX_TIMEOUT_SECS}"
            ));
        }
        if self.sex_values.is_empty() || self.sex_values.iter().any(|s| s.trim().is_empty()) {
            return Err("[careflex] sex_values must list at least one non-empty value".into());
        }
        Ok(())
    }

    /// Whether the managing company reports for `id`.
    pub fn handles(&self, id: &str) -> bool {
        self.careflex_id == id || self.companies.iter().any(|c| c == id)
    }

    /// Every CareFlex ID handled, the managing company's first.
    pub fn all_ids(&self) -> Vec<&str> {
        std::iter::once(self.careflex_id.as_str())
            .chain(self.companies.iter().map(String::as_str))
            .collect()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// The first line of the secret file `[careflex] key` names.
pub fn read_secret(path: &Path, key: &str) -> Result<Zeroizing<String>, String> {
    crate::sidecar::read_secret(path, &format!("[careflex] {key}"))
}
