//! `[brs]` in kim-cm's config file: where the SOSI STS, BRS and the
//! notification service are, the organisation's VOCES/FOCES certificate and
//! key that sign the system ID card, and the defaults of a `treatmentRelation`
//! request. Every key is described in docs/brs.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::dsig::Algorithm;
use crate::http::url::HttpsUrl;

/// Where Debian and Ubuntu keep the public CAs.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// How long one request may take by default.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A card is renewed this long before its `NotOnOrAfter` by default.
pub const DEFAULT_RENEW_BEFORE_SECS: u64 = 300;
/// A follow-up's time limit, days after the request, by default.
pub const DEFAULT_TIME_LIMIT_DAYS: u32 = 30;
/// SOSI: an ID card lives at most 24 hours.
pub const MAX_CARD_LIFE: Duration = Duration::from_secs(24 * 3600);

fn default_ca_file() -> PathBuf {
    PathBuf::from(SYSTEM_CA_FILE)
}
fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}
fn default_renew() -> u64 {
    DEFAULT_RENEW_BEFORE_SECS
}
fn default_time_limit() -> u32 {
    DEFAULT_TIME_LIMIT_DAYS
}
fn default_timezone() -> String {
    "Europe/Copenhagen".into()
}
fn default_system() -> String {
    "kim-cm".into()
}
fn default_acceptable() -> Vec<String> {
    vec!["A".into(), "B".into()]
}
fn default_followup() -> Vec<String> {
    vec!["ALL".into()]
}
fn default_version() -> String {
    env!("CARGO_PKG_VERSION").into()
}

fn de_https<'de, D: serde::Deserializer<'de>>(d: D) -> Result<HttpsUrl, D::Error> {
    let text = String::deserialize(d)?;
    HttpsUrl::parse(&text).map_err(serde::de::Error::custom)
}

/// The `[brs]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrsConfig {
    /// The SOSI STS: `https://…/sts/services/NewSecurityTokenService`.
    #[serde(deserialize_with = "de_https")]
    pub sts_url: HttpsUrl,
    /// BRS: `https://…/brs-nsp/service/brs`.
    #[serde(deserialize_with = "de_https")]
    pub brs_url: HttpsUrl,
    /// The notification service: `https://…/gos/service/notification`.
    #[serde(deserialize_with = "de_https")]
    pub notification_url: HttpsUrl,
    /// CA certificates (PEM) the services' TLS certificates must chain to.
    #[serde(default = "default_ca_file")]
    pub ca_file: PathBuf,
    /// The organisation's VOCES/FOCES certificate (PEM).
    pub certificate_file: PathBuf,
    /// Its private key (PEM, unencrypted, readable by kim-cm only).
    pub key_file: PathBuf,
    /// The STS's signing certificate (PEM): when set, a card the STS issues
    /// must carry its valid signature, or it is not used.
    pub sts_certificate_file: Option<PathBuf>,
    /// The organisation's CVR number; taken from the certificate's subject
    /// (`CVR:<number>`) when absent, and must match it when both are there.
    pub cvr: Option<String>,
    /// The organisation's name (the card's `medcom:CareProviderName`).
    pub organisation_name: String,
    /// The card's `medcom:ITSystemName`.
    #[serde(default = "default_system")]
    pub it_system_name: String,
    /// `rsa-sha1` (SOSI, default) or `rsa-sha256`.
    #[serde(default)]
    pub signature_algorithm: Algorithm,
    /// Renew the ID card this many seconds before it expires.
    #[serde(default = "default_renew")]
    pub renew_card_before_secs: u64,
    /// The zone of the `+hh:mm` timestamps sent.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// A follow-up's time limit: this many days after the request unless
    /// `--time-limit` says otherwise.
    #[serde(default = "default_time_limit")]
    pub time_limit_days: u32,
    /// `AcceptableRelations` unless `--acceptable` says otherwise.
    #[serde(default = "default_acceptable")]
    pub acceptable_relations: Vec<String>,
    /// `FollowupRelations` (`["ALL"]`, or categories) unless `--followup`
    /// says otherwise.
    #[serde(default = "default_followup")]
    pub followup_relations: Vec<String>,
    /// `ServiceProvider` (for NSP's logs).
    #[serde(default = "default_system")]
    pub service_provider_name: String,
    #[serde(default = "default_version")]
    pub service_provider_version: String,
    #[serde(default = "default_system")]
    pub service_provider_vendor: String,
    /// Seconds one request may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// The CVR in a certificate subject's `O=<org> // CVR:<cvr>` or
/// `serialNumber=CVR:<cvr>-…` (OCES), if any.
pub fn cvr_of_certificate(cert: &openssl::x509::X509) -> Option<String> {
    for e in cert.subject_name().entries() {
        let Ok(text) = e.data().to_string() else {
            continue;
        };
        if let Some(i) = text.find("CVR:") {
            let digits: String = text[i + 4..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if digits.len() == 8 {
                return Some(digits);
            }
        }
    }
    None
}

impl BrsConfig {
    /// Makes relative paths relative to `base` (the config file's folder).
    pub fn make_absolute(&mut self, base: &Path) {
        for p in [
            &mut self.ca_file,
            &mut self.certificate_file,
            &mut self.key_file,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Checks what serde cannot, in a sentence naming the key.
    pub fn check(&self) -> Result<(), String> {
        if let Some(c) = &self.cvr {
            super::ids::cvr(c).map_err(|e| format!("[brs] cvr: {e}"))?;
        }
        if self.organisation_name.trim().is_empty() {
            return Err("[brs] organisation_name is empty".into());
        }
        if self.renew_card_before_secs >= MAX_CARD_LIFE.as_secs() {
            return Err("[brs] renew_card_before_secs must be less than 86400 (a card lives at most 24 hours)".into());
        }
        if self.time_limit_days == 0 {
            return Err("[brs] time_limit_days must be at least 1".into());
        }
        if self.timeout_secs == 0 {
            return Err("[brs] timeout_secs must be at least 1".into());
        }
        jiff::tz::TimeZone::get(&self.timezone).map_err(|_| {
            format!(
                "[brs] timezone {:?} is not a known time zone",
                self.timezone
            )
        })?;
        for r in &self.acceptable_relations {
            super::ids::relation(r).map_err(|e| format!("[brs] acceptable_relations: {e}"))?;
        }
        if self.acceptable_relations.is_empty() {
            return Err("[brs] acceptable_relations is empty".into());
        }
        followup(&self.followup_relations).map_err(|e| format!("[brs] followup_relations: {e}"))?;
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    pub fn renew_before(&self) -> Duration {
        Duration::from_secs(self.renew_card_before_secs)
    }
}

/// `FollowupRelations`: every category but the acceptable ones (`ALL`), or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followup {
    All,
    Relations(Vec<String>),
}

/// Reads a follow-up list: `["ALL"]` or categories.
pub fn followup(list: &[String]) -> Result<Followup, String> {
    if list.len() == 1 && list[0].eq_ignore_ascii_case("all") {
        return Ok(Followup::All);
    }
    if list.is_empty() {
        return Err("empty: give ALL or relation categories".into());
    }
    list.iter()
        .map(|r| super::ids::relation(r))
        .collect::<Result<Vec<_>, _>>()
        .map(Followup::Relations)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "sts_url = \"https://sts.example/sts/services/NewSecurityTokenService\"\n\
        brs_url = \"https://nsp.example/brs-nsp/service/brs\"\n\
        notification_url = \"https://nsp.example/gos/service/notification\"\n\
        certificate_file = \"org.pem\"\nkey_file = \"org.key\"\norganisation_name = \"Lægehuset\"\n";

    fn parse(text: &str) -> Result<BrsConfig, String> {
        let mut c: BrsConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.make_absolute(Path::new("/etc/kim-cm"));
        c.check()?;
        Ok(c)
    }

    #[test]
    fn defaults_and_refusals() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.key_file, Path::new("/etc/kim-cm/org.key"));
        assert_eq!(c.signature_algorithm, Algorithm::RsaSha1);
        assert_eq!(followup(&c.followup_relations).unwrap(), Followup::All);
        for (extra, says) in [
            ("colour = 1\n", "colour"),
            ("cvr = \"31908575\"\n", "check digit"),
            ("signature_algorithm = \"dsa\"\n", "dsa"),
            ("timezone = \"Mars/Olympus\"\n", "time zone"),
            ("followup_relations = [\"all\", \"B\"]\n", "relation"),
            ("renew_card_before_secs = 90000\n", "24 hours"),
        ] {
            let e = parse(&format!("{MIN}{extra}")).unwrap_err();
            assert!(e.contains(says), "{extra}: {e}");
        }
        let e = parse(&MIN.replace("https://sts", "http://sts")).unwrap_err();
        assert!(e.contains("only https"), "{e}");
    }
}
