//! `[helsenorge]` in kim-cm's config file: where the change feed is, how kim-cm
//! gets its token (HelseID or the Helsenorge STS v2, both with a signed client
//! assertion), and which identity numbers count as valid. Every key is
//! described in docs/helsenorge.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::http::url::HttpsUrl;

/// The feed's path under `base_url` (the API page's pattern for v1).
pub const DEFAULT_CHANGES_PATH: &str = "/DigitaltAktiv/api/v1/DigitaltAktivStatusEndringer";
/// The STS v2 token endpoint's path under `base_url`.
pub const STS_V2_PATH: &str = "/sts/v2/token";
/// Where Debian and Ubuntu keep the public CAs, for services on the internet.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The largest answer read by default: the feed is not paged, and three months
/// of changes of all of Norway can be large.
pub const DEFAULT_MAX_ANSWER_MIB: usize = 64;
/// The largest `max_answer_mib` accepted.
pub const MAX_ANSWER_MIB_LIMIT: usize = 1024;
/// How long one request may take by default (a large answer over a slow line).
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// HelseID client credentials; the token endpoint is found by OIDC
    /// discovery under `helseid_authority` unless `token_endpoint` is set.
    #[default]
    Helseid,
    /// The Helsenorge STS v2 at `{base_url}/sts/v2/token` unless
    /// `token_endpoint` is set.
    Sts,
}

/// The `[helsenorge]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelsenorgeConfig {
    /// `https://eksternapi.helsenorge.no` (test: `https://eksternapi.hn.test.nhn.no`).
    #[serde(deserialize_with = "de_https")]
    pub base_url: HttpsUrl,
    /// The feed's path under `base_url`.
    #[serde(default = "default_changes_path", deserialize_with = "de_path")]
    pub changes_path: String,
    /// CA certificates (PEM) the servers' certificates must chain to.
    #[serde(default = "default_ca_file")]
    pub ca_file: PathBuf,
    #[serde(default)]
    pub auth: AuthMode,
    /// The client's id at HelseID or the STS.
    pub client_id: String,
    /// The client's RSA private key (PEM, unencrypted, readable by kim-cm only).
    pub key_file: PathBuf,
    /// The `kid` under which the public key is registered.
    pub key_id: String,
    /// The scope asked for (HelseID: required).
    pub scope: Option<String>,
    /// HelseID's authority, e.g. `https://helseid-sts.nhn.no`.
    #[serde(default, deserialize_with = "de_https_opt")]
    pub helseid_authority: Option<HttpsUrl>,
    /// The token endpoint itself, without discovery.
    #[serde(default, deserialize_with = "de_https_opt")]
    pub token_endpoint: Option<HttpsUrl>,
    /// Accept synthetic test numbers (Tenor, SyntPop): test environments only.
    #[serde(default)]
    pub synthetic: bool,
    /// Accept check digits of the rule of 2032 (K1 remainder 0-3).
    #[serde(default = "yes")]
    pub rule_2032: bool,
    /// The largest answer read, in MiB.
    #[serde(default = "default_max_answer", deserialize_with = "de_max_answer")]
    pub max_answer_mib: usize,
    /// Seconds one request may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn yes() -> bool {
    true
}
fn default_changes_path() -> String {
    DEFAULT_CHANGES_PATH.into()
}
fn default_ca_file() -> PathBuf {
    PathBuf::from(SYSTEM_CA_FILE)
}
fn default_max_answer() -> usize {
    DEFAULT_MAX_ANSWER_MIB
}
fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

fn de_https<'de, D: serde::Deserializer<'de>>(d: D) -> Result<HttpsUrl, D::Error> {
    let text = String::deserialize(d)?;
    HttpsUrl::parse(&text).map_err(serde::de::Error::custom)
}

fn de_https_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<HttpsUrl>, D::Error> {
    de_https(d).map(Some)
}

fn de_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let p = String::deserialize(d)?;
    if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
        return Err(serde::de::Error::custom(format!(
            "changes_path {p:?} must start with / and have no query"
        )));
    }
    Ok(p.trim_end_matches('/').to_string())
}

fn de_max_answer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = usize::deserialize(d)?;
    if v == 0 || v > MAX_ANSWER_MIB_LIMIT {
        return Err(serde::de::Error::custom(format!(
            "max_answer_mib must be between 1 and {MAX_ANSWER_MIB_LIMIT}"
        )));
    }
    Ok(v)
}

impl HelsenorgeConfig {
    /// Makes relative paths relative to `base` (the config file's folder) and
    /// checks what serde cannot: the keys each auth mode needs.
    pub fn resolve(&mut self, base: &Path) -> Result<(), String> {
        for p in [&mut self.ca_file, &mut self.key_file] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if self.client_id.trim().is_empty() {
            return Err("[helsenorge] client_id is empty".into());
        }
        if self.key_id.trim().is_empty() {
            return Err(
                "[helsenorge] key_id is empty: set the kid the public key is registered under"
                    .into(),
            );
        }
        if self.auth == AuthMode::Helseid {
            if self.scope.is_none() {
                return Err("[helsenorge] auth = \"helseid\" needs scope: the Helsenorge API's scope at HelseID".into());
            }
            if self.helseid_authority.is_none() && self.token_endpoint.is_none() {
                return Err("[helsenorge] auth = \"helseid\" needs helseid_authority (e.g. https://helseid-sts.nhn.no) or token_endpoint".into());
            }
        }
        Ok(())
    }

    /// The feed's URL.
    pub fn changes_url(&self) -> HttpsUrl {
        self.base_url.join(&self.changes_path)
    }

    /// The STS v2 token endpoint (auth = "sts").
    pub fn sts_endpoint(&self) -> HttpsUrl {
        self.token_endpoint
            .clone()
            .unwrap_or_else(|| self.base_url.join(STS_V2_PATH))
    }

    /// The largest answer read, in bytes.
    pub fn max_answer(&self) -> usize {
        self.max_answer_mib * 1024 * 1024
    }

    /// The identity-number rules, with `--synthetic` from the command line.
    pub fn rules(&self, synthetic_flag: bool) -> super::nin::Rules {
        super::nin::Rules {
            synthetic: self.synthetic || synthetic_flag,
            rule_2032: self.rule_2032,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HelsenorgeConfig, String> {
        let mut c: HelsenorgeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.resolve(Path::new("/etc/kim-cm"))?;
        Ok(c)
    }

    const MIN: &str = "base_url = \"https://eksternapi.helsenorge.no\"\nclient_id = \"c\"\nkey_file = \"hn.key\"\nkey_id = \"k1\"\n";

    #[test]
    fn defaults_and_what_each_mode_needs() {
        let c = parse(&format!("{MIN}auth = \"sts\"\n")).unwrap();
        assert_eq!(
            c.changes_url().to_string(),
            "https://eksternapi.helsenorge.no:443/DigitaltAktiv/api/v1/DigitaltAktivStatusEndringer"
        );
        assert_eq!(c.key_file, Path::new("/etc/kim-cm/hn.key"));
        assert_eq!(c.max_answer(), 64 << 20);
        assert_eq!(c.sts_endpoint().path, "/sts/v2/token");
        assert!(c.rule_2032 && !c.synthetic);
        let e = parse(MIN).unwrap_err();
        assert!(e.contains("needs scope"), "{e}");
        let e = parse(&format!("{MIN}scope = \"s\"\n")).unwrap_err();
        assert!(e.contains("helseid_authority"), "{e}");
        assert!(parse(&format!(
            "{MIN}scope = \"s\"\nhelseid_authority = \"https://helseid-sts.nhn.no\"\n"
        ))
        .is_ok());
        for (extra, says) in [
            ("colour = 1\n", "colour"),
            ("auth = \"basic\"\n", "basic"),
            ("max_answer_mib = 0\n", "between"),
            ("changes_path = \"x\"\n", "must start with /"),
            ("helseid_authority = \"http://h\"\n", "only https"),
        ] {
            let e = parse(&format!("{MIN}{extra}")).unwrap_err();
            assert!(e.contains(says), "{extra}: {e}");
        }
    }
}
