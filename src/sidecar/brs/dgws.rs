//! Den Gode Webservice 1.0.1: the SOAP 1.1 envelope every NSP call carries,
//! the `medcom:FaultCode` of a refusal, and the POST that sends it.
//!
//! The header, in the order the schemas fix (medcom.xsd's sequence):
//! `wsse:Security` with `wsu:Timestamp/wsu:Created` (UTC, `Z`, no fraction,
//! DGWS 1.0.1) and the STS-signed ID card embedded byte for byte; then
//! `medcom:Header` with `SecurityLevel` 3 (the card's level; BRS requires
//! it), `Linking/MessageID` (a fresh UUID per request: NSP refuses repeats),
//! `FlowStatus` and `RequireNonRepudiationReceipt` (`no`). DGWS 1.0.1 has no
//! message signature: the card is the whole proof.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use time::OffsetDateTime;

use super::c14n::El;
use crate::http::client::{request_with_limit, HttpError, HttpSettings};
use crate::http::url::HttpsUrl;
use crate::sidecar::clock::Clock;

pub const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
pub const WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
pub const MEDCOM: &str = "http://www.medcom.dk/dgws/2006/04/dgws-1.0.xsd";
/// The security level of a VOCES/FOCES system card, which BRS requires.
pub const SECURITY_LEVEL: &str = "3";
/// `medcom:FlowStatus` of a request (the spelling of the schema).
pub const FLOW_STATUS: &str = "flow_running";
/// Tries of one request in all (connection failures and 502/503/504).
pub const ATTEMPTS: u32 = 3;
/// The pause after the first failed try; doubled after each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// How much of a fault's text is quoted.
const MAX_QUOTED: usize = 300;

/// `soapenv:Envelope` with `header` and `body`.
pub fn envelope(header: Vec<El>, body: El) -> String {
    let mut h = El::new("soapenv", SOAP, "Header");
    for e in header {
        h.push(e);
    }
    El::new("soapenv", SOAP, "Envelope")
        .attr("id", "Envelope")
        .child(h)
        .child(El::new("soapenv", SOAP, "Body").child(body))
        .canonical()
}

/// `wsse:Security` with the timestamp and, for service calls, the card.
pub fn security(now: OffsetDateTime, card: Option<&str>) -> El {
    let mut s = El::new("wsse", WSSE, "Security").child(
        El::new("wsu", WSU, "Timestamp")
            .child(El::new("wsu", WSU, "Created").text(&super::utc_text(now))),
    );
    if let Some(c) = card {
        s.children.push(super::c14n::Child::Raw(c.to_string()));
    }
    s
}

/// `medcom:Header` of a request with `message_id`.
pub fn medcom_header(message_id: &str) -> El {
    let m = |n: &str| El::new("medcom", MEDCOM, n);
    m("Header")
        .child(m("SecurityLevel").text(SECURITY_LEVEL))
        .child(m("Linking").child(m("MessageID").text(message_id)))
        .child(m("FlowStatus").text(FLOW_STATUS))
        .child(m("RequireNonRepudiationReceipt").text("no"))
}

/// A DGWS request: the envelope with the card and a fresh MessageID; the
/// envelope and the MessageID.
pub fn request(card: &str, body: El, now: OffsetDateTime) -> (String, String) {
    let id = super::new_uuid();
    (
        envelope(vec![security(now, Some(card)), medcom_header(&id)], body),
        id,
    )
}

/// A SOAP fault, with DGWS's `medcom:FaultCode` when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: Option<String>,
    pub faultcode: String,
    pub text: String,
}

impl Fault {
    /// The fault in `body`, if it is one (whatever the HTTP status: the STS
    /// answers faults with 200 too).
    pub fn parse(body: &str) -> Option<Fault> {
        let doc = roxmltree::Document::parse(body).ok()?;
        let fault = doc
            .descendants()
            .find(|n| n.tag_name().name() == "Fault" && n.tag_name().namespace() == Some(SOAP))?;
        let text_of = |name: &str| {
            fault
                .descendants()
                .find(|n| n.tag_name().name() == name)
                .and_then(|n| n.text())
                .map(|t| t.trim().chars().take(MAX_QUOTED).collect::<String>())
        };
        Some(Fault {
            code: text_of("FaultCode"),
            faultcode: text_of("faultcode").unwrap_or_default(),
            text: text_of("faultstring").unwrap_or_default(),
        })
    }

    /// `code: text`, for messages.
    pub fn describe(&self) -> String {
        let code = self.code.as_deref().unwrap_or(&self.faultcode);
        match (code.is_empty(), self.text.is_empty()) {
            (true, true) => "a SOAP fault without text".into(),
            (false, true) => code.to_string(),
            (true, false) => self.text.clone(),
            (false, false) => format!("{code}: {}", self.text),
        }
    }
}

/// How kim-cm posts SOAP to NSP.
#[derive(Clone)]
pub struct SoapHttp {
    pub settings: HttpSettings,
    pub max_body: usize,
    pub clock: Arc<dyn Clock>,
}

impl SoapHttp {
    /// POSTs `envelope` with `SOAPAction: "{action}"`; tried again after a
    /// pause when the connection fails or the answer is 502, 503 or 504, or
    /// 500 without a SOAP fault (a fault is an answer: it is never repeated).
    pub async fn post(
        &self,
        url: &HttpsUrl,
        action: &str,
        envelope: String,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let action = HeaderValue::from_str(&format!("\"{action}\""))
            .unwrap_or(HeaderValue::from_static("\"\""));
        let headers = vec![
            (
                "content-type",
                HeaderValue::from_static("text/xml; charset=utf-8"),
            ),
            ("soapaction", action),
        ];
        let body = Bytes::from(envelope);
        // sizes only: the envelope carries the ID card, a bearer token
        tracing::trace!(url = %url, bytes = body.len(), "SOAP POST");
        let mut pause = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let result = request_with_limit(
                Method::POST,
                url,
                headers.clone(),
                Some(body.clone()),
                self.max_body,
                &self.settings,
            )
            .await;
            if let Ok((s, b)) = &result {
                tracing::trace!(url = %url, status = s.as_u16(), bytes = b.len(), "SOAP answer");
            }
            let again = match &result {
                Ok((s, b)) => {
                    matches!(s.as_u16(), 502..=504)
                        || (*s == StatusCode::INTERNAL_SERVER_ERROR
                            && Fault::parse(&String::from_utf8_lossy(b)).is_none())
                }
                Err(HttpError::Connect { .. } | HttpError::Timeout { .. }) => true,
                Err(HttpError::Protocol { .. }) => false,
            };
            if !again || attempt >= ATTEMPTS {
                return result;
            }
            let what = match &result {
                Ok((s, _)) => format!("HTTP {s}"),
                Err(e) => e.to_string(),
            };
            tracing::warn!(url = %url, attempt, "{what}; trying again in {} s", pause.as_secs());
            self.clock.sleep(pause).await;
            pause *= 2;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_in_the_schemas_order_and_the_card_is_embedded_unchanged() {
        let card = "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\"   id=\"IDCard\"/>";
        let now = time::macros::datetime!(2026-12-02 10:00:00 UTC);
        let (env, id) = request(card, El::new("", "urn:x", "Body"), now);
        assert!(env.contains(card));
        let doc = roxmltree::Document::parse(&env).unwrap();
        let names = |parent: &str| -> Vec<String> {
            doc.descendants()
                .find(|n| n.tag_name().name() == parent)
                .unwrap()
                .children()
                .filter(|c| c.is_element())
                .map(|c| c.tag_name().name().to_string())
                .collect()
        };
        assert_eq!(names("Security"), ["Timestamp", "Assertion"]);
        assert_eq!(
            names("Header")[..2],
            ["Security".to_string(), "Header".to_string()]
        );
        let medcom = doc
            .descendants()
            .find(|n| n.tag_name().name() == "Header" && n.tag_name().namespace() == Some(MEDCOM))
            .unwrap();
        let order: Vec<&str> = medcom
            .children()
            .filter(|c| c.is_element())
            .map(|c| c.tag_name().name())
            .collect();
        assert_eq!(
            order,
            [
                "SecurityLevel",
                "Linking",
                "FlowStatus",
                "RequireNonRepudiationReceipt"
            ]
        );
        assert!(env.contains(&format!("<medcom:MessageID>{id}</medcom:MessageID>")));
        assert!(env.contains("<wsu:Created>2026-12-02T10:00:00Z</wsu:Created>"));
    }

    #[test]
    fn faults_with_and_without_a_medcom_code() {
        let f = Fault::parse(&format!(
            "<soapenv:Envelope xmlns:soapenv=\"{SOAP}\"><soapenv:Body><soapenv:Fault><faultcode>Server</faultcode>\
             <faultstring>Id-kortet er udløbet</faultstring><detail><medcom:FaultCode xmlns:medcom=\"{MEDCOM}\">expired_idcard</medcom:FaultCode>\
             </detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
        ))
        .unwrap();
        assert_eq!(f.code.as_deref(), Some("expired_idcard"));
        assert_eq!(f.describe(), "expired_idcard: Id-kortet er udløbet");
        assert!(Fault::parse("<a/>").is_none());
    }
}
