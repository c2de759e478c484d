//! One configured Konnektor: where its service directory is, how kim-cm
//! authenticates (client certificate in the TLS settings, or Basic auth,
//! KOM-LE-A_2071/A_2072), the endpoints once read, and a count of calls (the
//! benchmark reports round trips per mail).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::sds::{self, Endpoints, Service};
use super::soap::{self, Basic};
use super::KonnektorError;
use crate::http::client::HttpSettings;
use crate::http::url::HttpsUrl;

/// How long one Konnektor call may take. Signing waits for the card, and a card
/// without a verified PIN can hold a call while the user types the PIN at the
/// terminal; longer than that, the mail client gives up on its own.
pub const KONNEKTOR_TIMEOUT: Duration = Duration::from_secs(60);

/// What kim-cm needs to reach one Konnektor.
#[derive(Clone)]
pub struct KonnektorSettings {
    /// `https://host[:port]/connector.sds` (KOM-LE-A_2076: configurable).
    pub sds_url: HttpsUrl,
    /// Verified TLS, with the client certificate when one is configured.
    pub http: HttpSettings,
    pub basic: Option<Basic>,
}

/// A Konnektor and what kim-cm learned of it.
pub struct Konnektor {
    settings: KonnektorSettings,
    endpoints: tokio::sync::Mutex<Option<Endpoints>>,
    calls: AtomicU64,
}

impl Konnektor {
    pub fn new(settings: KonnektorSettings) -> Konnektor {
        Konnektor {
            settings,
            endpoints: tokio::sync::Mutex::new(None),
            calls: AtomicU64::new(0),
        }
    }

    /// The host of the service directory (which Konnektor this is, for logs).
    pub fn sds_host(&self) -> String {
        self.settings.sds_url.host.clone()
    }

    /// SOAP calls made so far (service directory reads not counted).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The endpoints, from the directory when not yet known.
    pub async fn endpoints(&self) -> Result<Endpoints, KonnektorError> {
        let mut known = self.endpoints.lock().await;
        if let Some(e) = known.as_ref() {
            return Ok(e.clone());
        }
        let e = self.read_directory().await?;
        tracing::info!(sds = %self.settings.sds_url, ecc = e.ecc, "Konnektor service directory read");
        *known = Some(e.clone());
        Ok(e)
    }

    /// Reads the service directory afresh without changing the endpoints in use
    /// (the admin page's health check).
    pub async fn probe(&self) -> Result<Endpoints, KonnektorError> {
        self.read_directory().await
    }

    /// `connector.sds`, fetched and parsed.
    async fn read_directory(&self) -> Result<Endpoints, KonnektorError> {
        let s = &self.settings;
        let (status, body) = soap::exchange(
            &s.sds_url,
            None,
            None,
            s.basic.as_ref(),
            &s.http,
            "connector.sds",
        )
        .await?;
        if let Some(e) = soap::credentials_refused(status, "connector.sds") {
            return Err(e);
        }
        if !status.is_success() {
            return Err(KonnektorError::Unavailable(format!(
                "{}: HTTP {status}",
                s.sds_url
            )));
        }
        let text = std::str::from_utf8(&body).map_err(|_| KonnektorError::Protocol {
            operation: "connector.sds",
            why: "not UTF-8".into(),
        })?;
        let e = sds::parse(text).map_err(|why| KonnektorError::Protocol {
            operation: "connector.sds",
            why,
        })?;
        Ok(e)
    }

    /// Calls `operation` of `service` with the request element `body`; the answer's
    /// body element goes to `read`. After a transport error the directory is read
    /// again at the next call.
    pub async fn call<T>(
        &self,
        service: Service,
        operation: &'static str,
        action: &str,
        body: String,
        read: impl FnOnce(roxmltree::Node<'_, '_>) -> Result<T, String>,
    ) -> Result<T, KonnektorError> {
        let url = self.endpoints().await?.urls.get(&service).cloned().ok_or(
            KonnektorError::NotOffered {
                service: service.name(),
                version: service.version(),
            },
        )?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let s = &self.settings;
        let started = std::time::Instant::now();
        let r = soap::exchange(
            &url,
            Some(action),
            Some(soap::envelope(&body)),
            s.basic.as_ref(),
            &s.http,
            operation,
        )
        .await;
        crate::metrics::observe(
            "kimcm_konnektor_call_seconds",
            &[("operation", operation)],
            started.elapsed(),
        );
        let (status, answer) = match r {
            Ok(a) => a,
            Err(e) => {
                crate::metrics::inc(
                    "kimcm_konnektor_calls_total",
                    &[("operation", operation), ("result", "unreachable")],
                );
                *self.endpoints.lock().await = None;
                return Err(e);
            }
        };
        let answered = soap::answer(status, &answer, operation, read);
        crate::metrics::inc(
            "kimcm_konnektor_calls_total",
            &[
                ("operation", operation),
                ("result", if answered.is_ok() { "ok" } else { "fault" }),
            ],
        );
        answered
    }
}
