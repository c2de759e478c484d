//! The Danish NSP Behandlingsrelationsservice (BRS) and its notification
//! service, over Den Gode Webservice 1.0.1 with a SOSI system ID card (issue
//! 8; docs/brs.md).
//!
//! The parts: the `[brs]` config ([`config`]); Danish identifiers checked
//! before sending ([`ids`]); canonical XML ([`c14n`]) and XML-DSig
//! ([`dsig`]) for the ID card; the card, the STS exchange and its cache
//! ([`idcard`]); the DGWS envelope and faults ([`dgws`]); the two operations
//! with their one retry on a refused card ([`client`]); polling notifications
//! into the store ([`notifications`]); the command line ([`cli`]).

pub mod c14n;
pub mod cli;
pub mod client;
pub mod config;
pub mod dgws;
pub mod dsig;
pub mod idcard;
pub mod ids;
pub mod notifications;

use std::sync::Arc;

use time::OffsetDateTime;

use super::clock::Clock;
use crate::http::client::HttpSettings;

/// The largest answer read: a page of 100 notifications, each with the whole
/// original request, is some 300 KiB.
pub const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// `2026-12-02T10:00:00Z`: SAML and WS-Security times (UTC, no fraction).
pub fn utc_text(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `2026-12-02T11:00:00+01:00`: the guide's format for BRS's timestamps,
/// `YYYY-MM-DD'T'HH:MM:SS'+'offset`, in `tz`.
pub fn local_text(t: OffsetDateTime, tz: &jiff::tz::TimeZone) -> String {
    let ts =
        jiff::Timestamp::from_second(t.unix_timestamp()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.to_zoned(tz.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// Reads `…Z` or `…+hh:mm` (RFC 3339, fraction allowed).
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()
}

/// A random UUID (version 4) in its text form.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The organisation's signing key and who it is, from `[brs]`: the CVR from
/// the config or the certificate, and they must agree.
pub fn organisation(
    cfg: &config::BrsConfig,
) -> Result<(dsig::SigningKey, idcard::Organisation), String> {
    let key = dsig::SigningKey::load(
        &cfg.certificate_file,
        &cfg.key_file,
        cfg.signature_algorithm,
    )
    .map_err(|e| format!("[brs] certificate_file/key_file: {e}"))?;
    let in_cert = config::cvr_of_certificate(&key.cert);
    let cvr = match (&cfg.cvr, in_cert) {
        (Some(c), Some(d)) if *c != d => {
            return Err(format!(
                "[brs] cvr {c} differs from the CVR {d} in the certificate {}: the STS issues cards only for the certificate's CVR",
                cfg.certificate_file.display()
            ))
        }
        (Some(c), _) => c.clone(),
        (None, Some(d)) => d,
        (None, None) => {
            return Err(format!(
                "[brs] cvr is not set and the certificate {} names none (CVR:<number> in its subject): set cvr",
                cfg.certificate_file.display()
            ))
        }
    };
    ids::cvr(&cvr).map_err(|e| format!("[brs] cvr: {e}"))?;
    Ok((
        key,
        idcard::Organisation {
            cvr,
            name: cfg.organisation_name.clone(),
            it_system: cfg.it_system_name.clone(),
        },
    ))
}

/// The client `cfg` (checked, paths absolute) describes, on `clock`.
pub fn nsp_client(
    cfg: &config::BrsConfig,
    clock: Arc<dyn Clock>,
) -> Result<client::NspClient, String> {
    let (key, org) = organisation(cfg)?;
    let sts_certificate = match &cfg.sts_certificate_file {
        None => None,
        Some(p) => Some(
            std::fs::read(p)
                .ok()
                .and_then(|b| openssl::x509::X509::from_pem(&b).ok())
                .ok_or_else(|| {
                    format!(
                        "[brs] sts_certificate_file: {} is not a readable PEM certificate",
                        p.display()
                    )
                })?,
        ),
    };
    let connector = crate::net::tls::connector(&cfg.ca_file, None)
        .map_err(|e| format!("[brs] ca_file: {e}"))?;
    let http = dgws::SoapHttp {
        settings: HttpSettings {
            connector: Arc::new(connector),
            connect_timeout: config::CONNECT_TIMEOUT,
            timeout: cfg.timeout(),
        },
        max_body: MAX_ANSWER,
        clock: clock.clone(),
    };
    let source = idcard::CardSource {
        http: http.clone(),
        sts_url: cfg.sts_url.clone(),
        key,
        org,
        sts_certificate,
    };
    let tz = jiff::tz::TimeZone::get(&cfg.timezone)
        .map_err(|_| format!("[brs] timezone {:?} is not a known time zone", cfg.timezone))?;
    Ok(client::NspClient {
        cards: idcard::CardCache::new(source, clock, cfg.renew_before()),
        http,
        brs_url: cfg.brs_url.clone(),
        notification_url: cfg.notification_url.clone(),
        tz,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_as_the_guide_and_saml_want_them() {
        let t = time::macros::datetime!(2013-01-31 20:59:40 UTC);
        let cph = jiff::tz::TimeZone::get("Europe/Copenhagen").unwrap();
        assert_eq!(local_text(t, &cph), "2013-01-31T21:59:40+01:00");
        let summer = time::macros::datetime!(2013-09-30 09:04:37 UTC);
        assert_eq!(local_text(summer, &cph), "2013-09-30T11:04:37+02:00");
        assert_eq!(utc_text(summer), "2013-09-30T09:04:37Z");
        assert_eq!(parse_time("2013-09-30T11:04:37+02:00"), Some(summer));
        let u = new_uuid();
        assert_eq!((u.len(), &u[14..15]), (36, "4"));
    }
}
