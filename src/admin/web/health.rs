//! Is every upstream there? One probe per party kim-cm depends on: the Fachdienst's
//! SMTP and POP3 servers (TLS and greeting), the AccountLimit service, the KAS and
//! the Account Manager (an HTTP answer over verified TLS, whatever its status),
//! each Konnektor (its service directory). Probes run side by side, each within PROBE_TIMEOUT, and the
//! answers are kept for HEALTH_CACHE so a reloading page does not hammer the TI.
//!
//! A probe never logs in: no password is sent anywhere for it.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use time::OffsetDateTime;

use crate::config::Config;
use crate::http::client::HttpSettings;
use crate::http::url::HttpsUrl;
use crate::kim::login::Server;
use crate::konnektor::Konnektor;
use crate::{pop3, smtp};

/// Bound on one probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long answers are shown before the next page view probes again.
pub const HEALTH_CACHE: Duration = Duration::from_secs(30);

/// One upstream's state.
#[derive(Debug, Clone)]
pub struct Health {
    /// What it is, e.g. "Fachdienst SMTP".
    pub name: String,
    /// Where it is.
    pub target: String,
    pub ok: bool,
    /// What the probe saw, in a sentence.
    pub detail: String,
}

/// What the probes need: the upstream TLS settings and the Konnektor clients.
pub struct Probes {
    smtp: smtp::client::ClientSettings,
    pop3: pop3::client::ClientSettings,
    http: HttpSettings,
    smtp_servers: Vec<Server>,
    pop3_servers: Vec<Server>,
    https: Vec<(&'static str, HttpsUrl)>,
    konnektors: Vec<(String, Arc<Konnektor>)>,
    last: tokio::sync::Mutex<Option<(Instant, OffsetDateTime, Vec<Health>)>>,
}

type Probe = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

impl Probes {
    pub fn new(
        cfg: &Config,
        smtp: smtp::client::ClientSettings,
        pop3: pop3::client::ClientSettings,
        http: HttpSettings,
        konnektors: Vec<(String, Arc<Konnektor>)>,
    ) -> Probes {
        let mut https = Vec::new();
        if let Some(u) = &cfg.upstream.account_limit_url {
            https.push(("AccountLimit service", u.clone()));
        }
        if let Some(u) = &cfg.upstream.kas_url {
            https.push(("KIM Attachment Service", u.clone()));
        }
        if let Some(u) = &cfg.upstream.account_manager_url {
            // getServiceInformation needs no token
            let info = crate::admin::account_manager::SERVICE_INFO_PATH;
            https.push(("Account Manager", u.join(&format!("{info}/serviceinfo"))));
        }
        Probes {
            smtp_servers: distinct(cfg.account.iter().map(|a| &a.smtp_server)),
            pop3_servers: distinct(cfg.account.iter().map(|a| &a.pop3_server)),
            smtp,
            pop3,
            http,
            https,
            konnektors,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The state of every upstream and when it was probed: from the cache when
    /// younger than HEALTH_CACHE and `fresh` is false.
    pub async fn check(&self, fresh: bool) -> (OffsetDateTime, Vec<Health>) {
        let mut last = self.last.lock().await;
        if let Some((at, wall, h)) = last.as_ref() {
            if !fresh && at.elapsed() < HEALTH_CACHE {
                return (*wall, h.clone());
            }
        }
        let mut probes: Vec<(&'static str, String, Probe)> = Vec::new();
        for s in &self.smtp_servers {
            let (server, settings) = (s.clone(), self.smtp.clone());
            let p: Probe = Box::pin(async move {
                let c = smtp::client::SmtpClient::connect(&server, &settings)
                    .await
                    .map_err(|e| e.to_string())?;
                c.quit().await;
                Ok("greets over TLS".to_string())
            });
            probes.push(("Fachdienst SMTP", s.to_string(), p));
        }
        for s in &self.pop3_servers {
            let (server, settings) = (s.clone(), self.pop3.clone());
            let p: Probe = Box::pin(async move {
                let c = pop3::client::Pop3Client::connect(&server, &settings)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = c.quit().await;
                Ok("greets over TLS".to_string())
            });
            probes.push(("Fachdienst POP3", s.to_string(), p));
        }
        for (name, url) in &self.https {
            let (u, http) = (url.clone(), self.http.clone());
            let p: Probe = Box::pin(async move { http_answer(&u, &http).await });
            probes.push((name, url.to_string(), p));
        }
        for (id, k) in &self.konnektors {
            let k2 = k.clone();
            let p: Probe = Box::pin(async move {
                let e = k2.probe().await.map_err(|e| e.to_string())?;
                Ok(format!(
                    "service directory read{}",
                    if e.ecc { ", ECC supported" } else { "" }
                ))
            });
            probes.push(("Konnektor", format!("{id} ({})", k.sds_host()), p));
        }
        let bounded = probes.into_iter().map(|(name, target, p)| async move {
            let r = tokio::time::timeout(PROBE_TIMEOUT, p)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())));
            let (ok, detail) = match r {
                Ok(d) => (true, d),
                Err(e) => (false, e),
            };
            Health {
                name: name.into(),
                target,
                ok,
                detail,
            }
        });
        let results = futures_util::future::join_all(bounded).await;
        let wall = OffsetDateTime::now_utc();
        *last = Some((Instant::now(), wall, results.clone()));
        (wall, results)
    }
}

/// Each server once, in the order of the accounts.
fn distinct<'a>(servers: impl Iterator<Item = &'a Server>) -> Vec<Server> {
    let mut seen = BTreeSet::new();
    servers
        .filter(|s| seen.insert(s.to_string()))
        .cloned()
        .collect()
}

/// Any HTTP answer to `GET url` over verified TLS means the service is there.
async fn http_answer(url: &HttpsUrl, http: &HttpSettings) -> Result<String, String> {
    let (mut sender, driver) = crate::http::client::connect::<Empty<Bytes>>(url, http).await?;
    let path = if url.path.is_empty() {
        "/"
    } else {
        url.path.as_str()
    };
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, url.authority())
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let r = sender.send_request(req).await.map_err(|e| e.to_string());
    driver.abort();
    Ok(format!("answers over TLS (HTTP {})", r?.status().as_u16()))
}
