//! The account's limits (AccountLimit.yaml 1.1.4, `getLimits`): consulted for every
//! send (A_22416), kept in the store so they survive a restart.
//!
//! A cached answer younger than [`REFRESH_AFTER`] is used as it is; an older one is
//! refreshed, and while the service fails, used until it is [`CACHE_VALID`] old (the
//! 24 hours A_22416 allows). Without a usable answer the client gets `451`: sending
//! without knowing maxMailSize and dataTimeToLive is not allowed.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::client::{get_basic, HttpSettings};
use crate::http::url::HttpsUrl;
use crate::store::Store;

/// A_22416: limits may be cached for 24 hours.
pub const CACHE_VALID: Duration = Duration::from_secs(24 * 3600);
/// A cached answer older than this is refreshed before use.
pub const REFRESH_AFTER: Duration = Duration::from_secs(3600);
/// AccountLimit.yaml: dataTimeToLive 10..365 days, default 90.
pub const TTL_DAYS: std::ops::RangeInclusive<i64> = 10..=365;
pub const DEFAULT_TTL_DAYS: i64 = 90;

/// The getLimits answer (unknown fields are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountLimit {
    #[serde(default = "default_ttl")]
    pub data_time_to_live: i64,
    pub max_mail_size: u64,
    #[serde(default = "unlimited")]
    pub quota: i64,
    #[serde(default = "unlimited")]
    pub remain_quota: i64,
    /// Sent by AccountLimit 1.1.2 servers only; 15 MiB otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kas_mail_size_threshold: Option<u64>,
}

fn default_ttl() -> i64 {
    DEFAULT_TTL_DAYS
}
fn unlimited() -> i64 {
    -1
}

impl AccountLimit {
    /// dataTimeToLive within the yaml's range.
    pub fn ttl_days(&self) -> i64 {
        self.data_time_to_live
            .clamp(*TTL_DAYS.start(), *TTL_DAYS.end())
    }
}

/// Why no limits are known; the client gets a temporary error.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("the account limits of {account} are unavailable ({why}); try again later")]
    Unavailable { account: String, why: String },
}

/// The getLimits client with its cache.
pub struct Limits {
    pub url: HttpsUrl,
    pub http: HttpSettings,
    pub store: Arc<Store>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Limits {
    /// The cached limits of `account`, however old (for EHLO's SIZE).
    pub fn cached(&self, account: &str) -> Option<AccountLimit> {
        let (json, _) = self.store.account_limit(account).ok()??;
        serde_json::from_str(&json).ok()
    }

    /// The limits for a send by `account`, logged in with `password`.
    pub async fn get(&self, account: &str, password: &str) -> Result<AccountLimit, LimitsError> {
        let cached = self
            .store
            .account_limit(account)
            .ok()
            .flatten()
            .and_then(|(json, at)| {
                Some((
                    serde_json::from_str::<AccountLimit>(&json).ok()?,
                    now() - at,
                ))
            });
        if let Some((l, age)) = &cached {
            if *age >= 0 && (*age as u64) < REFRESH_AFTER.as_secs() {
                crate::metrics::inc(
                    "kimcm_cache_lookups_total",
                    &[("cache", "limits"), ("result", "hit")],
                );
                return Ok(l.clone());
            }
        }
        crate::metrics::inc(
            "kimcm_cache_lookups_total",
            &[("cache", "limits"), ("result", "miss")],
        );
        match self.fetch(account, password).await {
            Ok(l) => Ok(l),
            Err(why) => match cached {
                Some((l, age)) if age >= 0 && (age as u64) < CACHE_VALID.as_secs() => {
                    crate::metrics::inc(
                        "kimcm_cache_lookups_total",
                        &[("cache", "limits"), ("result", "stale")],
                    );
                    tracing::warn!(%account, "getLimits failed, using the cached limits ({age} s old): {why}");
                    Ok(l)
                }
                _ => {
                    tracing::warn!(%account, "getLimits failed and no valid cached limits: {why}");
                    Err(LimitsError::Unavailable {
                        account: account.to_string(),
                        why,
                    })
                }
            },
        }
    }

    async fn fetch(&self, account: &str, password: &str) -> Result<AccountLimit, String> {
        let limit = fetch(&self.url, account, password, &self.http).await?;
        if let Ok(json) = serde_json::to_string(&limit) {
            if let Err(e) = self.store.put_account_limit(account, &json, now()) {
                tracing::error!("{e}");
            }
        }
        tracing::info!(%account, ttl = limit.data_time_to_live, max = limit.max_mail_size, "account limits fetched");
        Ok(limit)
    }
}

/// One getLimits call, uncached (for `kim-cm limits`): the limits of `account`,
/// logged in with its KIM `password`, from the service at `base`.
pub async fn fetch(
    base: &HttpsUrl,
    account: &str,
    password: &str,
    http: &HttpSettings,
) -> Result<AccountLimit, String> {
    let url = base.join("/limit");
    let (status, body) = get_basic(&url, account, password, http)
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let text: String = text.chars().take(200).collect();
        return Err(format!("{url} answered {status}: {text}"));
    }
    serde_json::from_slice(&body)
        .map_err(|e| format!("{url} answered with an unreadable AccountLimit: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_with_defaults_and_unknown_fields() {
        let l: AccountLimit = serde_json::from_str(
            r#"{"dataTimeToLive":30,"maxMailSize":734003200,"quota":-1,"remainQuota":5,"new":1}"#,
        )
        .unwrap();
        assert_eq!(
            (l.ttl_days(), l.max_mail_size, l.remain_quota),
            (30, 734003200, 5)
        );
        let l: AccountLimit =
            serde_json::from_str(r#"{"maxMailSize":734003200,"dataTimeToLive":999}"#).unwrap();
        assert_eq!(l.ttl_days(), 365);
        assert!(serde_json::from_str::<AccountLimit>(r#"{"dataTimeToLive":30}"#).is_err());
    }
}
