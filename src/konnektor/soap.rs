//! SOAP 1.1 over one HTTPS exchange: the envelope around a request body, the
//! answer's body element, and a fault's gematik error code (GERROR:Error, in the
//! fault's `detail`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};

use super::xml::{self, GERROR, SOAP_ENV};
use super::KonnektorError;
use crate::http::client::{body_error, connect, send_error, HttpSettings};
use crate::http::url::HttpsUrl;

/// The largest answer kim-cm reads from the Konnektor: a DecryptDocument answer
/// carries a whole KIM mail (at most 15 MiB before the KAS takes over, A_19357-02)
/// in base64, with room to spare.
pub const MAX_SOAP_RESPONSE: usize = 64 * 1024 * 1024;

/// The request `body` (one element with its namespace declarations) in an envelope.
pub fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"{SOAP_ENV}\"><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
}

/// Credentials for Basic auth (KOM-LE-A_2072); the password is never logged.
#[derive(Clone)]
pub struct Basic {
    pub user: String,
    pub password: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Basic({}, ***)", self.user)
    }
}

/// One HTTPS exchange: `POST` with `action` and `body`, or `GET` without both.
/// The status and the answer (at most [`MAX_SOAP_RESPONSE`]). Transport errors and
/// timeouts are [`KonnektorError::Unavailable`].
pub async fn exchange(
    url: &HttpsUrl,
    action: Option<&str>,
    body: Option<String>,
    basic: Option<&Basic>,
    s: &HttpSettings,
    operation: &'static str,
) -> Result<(StatusCode, Bytes), KonnektorError> {
    // the connection has its own connect timeout; the exchange gets `s.timeout`
    let (mut sender, driver) = connect(url, s)
        .await
        .map_err(|why| KonnektorError::Unavailable(format!("{url}: {why}")))?;
    let work = async {
        let protocol = |why: String| KonnektorError::Protocol { operation, why };
        let mut req = Request::builder()
            .uri(&url.path)
            .header(HOST, url.authority());
        req = match (&action, &body) {
            (Some(a), Some(_)) => req
                .method(Method::POST)
                .header(CONTENT_TYPE, "text/xml; charset=utf-8")
                .header("SOAPAction", format!("\"{a}\"")),
            _ => req.method(Method::GET),
        };
        if let Some(b) = basic {
            let credentials = zeroize::Zeroizing::new(xml::b64(
                format!("{}:{}", b.user, &*b.password).as_bytes(),
            ));
            let mut v = HeaderValue::from_str(&format!("Basic {}", &*credentials))
                .map_err(|_| protocol("the user name cannot be sent in a header".into()))?;
            v.set_sensitive(true);
            req = req.header(AUTHORIZATION, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| protocol(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| KonnektorError::Unavailable(format!("{url}: {}", send_error(&e))))?;
        let status = resp.status();
        let answer = Limited::new(resp.into_body(), MAX_SOAP_RESPONSE)
            .collect()
            .await
            .map_err(|e| {
                KonnektorError::Unavailable(format!(
                    "{url}: {}",
                    body_error(&*e, MAX_SOAP_RESPONSE)
                ))
            })?
            .to_bytes();
        Ok((status, answer))
    };
    let r = tokio::time::timeout(s.timeout, work).await;
    driver.abort();
    r.map_err(|_| {
        KonnektorError::Unavailable(format!(
            "{url}: no answer to {operation} within {} s",
            s.timeout.as_secs()
        ))
    })?
}

/// 401 and 403: the Konnektor wants other credentials (KOM-LE-A_2071, A_2072).
pub fn credentials_refused(status: StatusCode, operation: &'static str) -> Option<KonnektorError> {
    (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN).then(|| {
        KonnektorError::Fault {
            operation,
            code: None,
            text: format!("HTTP {status}: the Konnektor does not accept kim-cm's credentials ([[konnektor]] client certificate or user)"),
        }
    })
}

/// The body element of a SOAP answer, parsed, for `read`; a fault becomes
/// [`KonnektorError::Fault`].
pub fn answer<T>(
    status: StatusCode,
    text: &[u8],
    operation: &'static str,
    read: impl FnOnce(roxmltree::Node<'_, '_>) -> Result<T, String>,
) -> Result<T, KonnektorError> {
    let protocol = |why: String| KonnektorError::Protocol { operation, why };
    if let Some(e) = credentials_refused(status, operation) {
        return Err(e);
    }
    let text = std::str::from_utf8(text).map_err(|_| protocol("not UTF-8".into()))?;
    let doc = roxmltree::Document::parse(text).map_err(|e| {
        protocol(format!(
            "HTTP {status}, not XML ({e}): {}",
            text.chars().take(120).collect::<String>()
        ))
    })?;
    let body = xml::child(&doc.root_element(), SOAP_ENV, "Body")
        .ok_or_else(|| protocol(format!("HTTP {status}, no SOAP body")))?;
    let first = body
        .children()
        .find(|c| c.is_element())
        .ok_or_else(|| protocol("an empty SOAP body".into()))?;
    if xml::is(&first, SOAP_ENV, "Fault") {
        return Err(fault(&first, operation));
    }
    if !status.is_success() {
        return Err(protocol(format!("HTTP {status} without a SOAP fault")));
    }
    read(first).map_err(protocol)
}

/// A SOAP fault: the first GERROR Trace's code and text, or the faultstring.
fn fault(f: &roxmltree::Node<'_, '_>, operation: &'static str) -> KonnektorError {
    let faultstring = f
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "faultstring")
        .and_then(|c| c.text())
        .unwrap_or("")
        .trim()
        .to_string();
    let trace = xml::find(f, GERROR, "Trace");
    let code = trace
        .and_then(|t| xml::child_text(&t, GERROR, "Code"))
        .and_then(|c| c.parse::<u32>().ok());
    let text = trace
        .and_then(|t| xml::child_text(&t, GERROR, "ErrorText"))
        .filter(|t| !t.is_empty())
        .unwrap_or(faultstring);
    KonnektorError::Fault {
        operation,
        code,
        text,
    }
}

/// The gematik error of a `CONN:Status` with `Result` Warning, if any: its code.
pub fn status_code(status: &roxmltree::Node<'_, '_>) -> Option<u32> {
    let trace = xml::find(status, GERROR, "Trace")?;
    xml::child_text(&trace, GERROR, "Code")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault_doc(code: &str) -> String {
        format!(
            "<s:Envelope xmlns:s=\"{SOAP_ENV}\"><s:Body><s:Fault><faultcode>s:Server</faultcode>\
<faultstring>Fehler</faultstring><detail><e:Error xmlns:e=\"{GERROR}\"><e:MessageID>1</e:MessageID>\
<e:Timestamp>2026-01-01T00:00:00Z</e:Timestamp><e:Trace><e:EventID>1</e:EventID><e:Instance>x</e:Instance>\
<e:LogReference>y</e:LogReference><e:CompType>Konnektor</e:CompType><e:Code>{code}</e:Code>\
<e:Severity>Error</e:Severity><e:ErrorType>Technical</e:ErrorType><e:ErrorText>Ungültige Mandanten-ID</e:ErrorText>\
</e:Trace></e:Error></detail></s:Fault></s:Body></s:Envelope>"
        )
    }

    #[test]
    fn a_fault_gives_its_gematik_code_and_text() {
        let e = answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            fault_doc("4004").as_bytes(),
            "GetCards",
            |_| Ok(()),
        )
        .unwrap_err();
        assert_eq!(
            e,
            KonnektorError::Fault {
                operation: "GetCards",
                code: Some(4004),
                text: "Ungültige Mandanten-ID".into()
            }
        );
        assert!(e.is_context_error());
        let other = answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            fault_doc("4101").as_bytes(),
            "x",
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(!other.is_context_error());
    }

    #[test]
    fn a_body_is_handed_to_the_reader_and_garbage_is_a_protocol_error() {
        let ok = format!("<s:Envelope xmlns:s=\"{SOAP_ENV}\"><s:Body><x:R xmlns:x=\"urn:x\">v</x:R></s:Body></s:Envelope>");
        let v = answer(StatusCode::OK, ok.as_bytes(), "R", |n| {
            Ok(n.text().unwrap_or("").to_string())
        })
        .unwrap();
        assert_eq!(v, "v");
        for bad in ["", "<html>", "<s:Envelope xmlns:s=\"urn:other\"/>"] {
            assert!(matches!(
                answer(StatusCode::OK, bad.as_bytes(), "R", |_| Ok(())),
                Err(KonnektorError::Protocol { .. })
            ));
        }
        assert!(matches!(
            answer(StatusCode::UNAUTHORIZED, b"", "R", |_| Ok(())),
            Err(KonnektorError::Fault { code: None, .. })
        ));
    }
}
