//! The SOAP 1.1 framing of the simulated Konnektor, with no I/O: namespaces, the
//! table of operations (docs/konnektor.md), reading a request envelope with
//! roxmltree (by namespace URI and local name, never by prefix) and writing answers
//! and faults as escaped XML text.

use roxmltree::{Document, Node};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

// the namespaces kim-cm's client uses; the simulator answers in the same ones
pub use crate::konnektor::xml::{
    b64, escape, unb64, CARD as NS_CARD, CARDCMN as NS_CARDCMN, CCTX as NS_CCTX, CERT as NS_CERT,
    CERTCMN as NS_CERTCMN, CONN as NS_CONN, CRYPT as NS_CRYPT, DSS as NS_DSS, EVT as NS_EVT,
    GERROR as NS_GERROR, SDS as NS_SDS, SI as NS_SI, SIG as NS_SIG, SIG_AUTH as NS_SIG_AUTH,
    SOAP_ENV as NS_SOAP,
};
/// ProductInformation (the service directory's product block; kim-cm does not read it).
pub const NS_PI: &str = "http://ws.gematik.de/int/version/ProductInformation/v1.1";

/// The CMS signature and encryption type (RFC 5652).
pub const CMS_TYPE: &str = "urn:ietf:rfc:5652";
/// ExternalAuthenticate's signature type for RSA (PKCS #1, RFC 3447).
pub const RSA_SIGNATURE_TYPE: &str = "urn:ietf:rfc:3447";
/// The optional service of the directory (A_19457-02 needs it, mail does not).
pub const AUTH_SIGNATURE_SERVICE: &str = "AuthSignatureService";
/// The dss:Property identifier of the recipient-emails attribute (KOM-LE-A_2190).
pub const RECIPIENT_EMAILS_PROPERTY: &str = "RecipientEmailsAttribute";

/// One operation of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    GetCards,
    ReadCardCertificate,
    SignDocument,
    VerifyDocument,
    EncryptDocument,
    DecryptDocument,
    GetPinStatus,
    ExternalAuthenticate,
}

/// Service (SDS name), operation, SOAPAction, namespace of the request element:
/// docs/konnektor.md, "Operations".
const OPERATIONS: &[(&str, Operation, &str, &str)] = &[
    (
        "EventService",
        Operation::GetCards,
        "http://ws.gematik.de/conn/EventService/v7.2#GetCards",
        NS_EVT,
    ),
    (
        "CertificateService",
        Operation::ReadCardCertificate,
        "http://ws.gematik.de/conn/CertificateService/v6.0#ReadCardCertificate",
        NS_CERT,
    ),
    (
        "SignatureService",
        Operation::SignDocument,
        "http://ws.gematik.de/conn/SignatureService/v7.5#SignDocument",
        NS_SIG,
    ),
    (
        "SignatureService",
        Operation::VerifyDocument,
        "http://ws.gematik.de/conn/SignatureService/v7.5#VerifyDocument",
        NS_SIG,
    ),
    (
        "EncryptionService",
        Operation::EncryptDocument,
        "http://ws.gematik.de/conn/EncryptionService/v6.1#EncryptDocument",
        NS_CRYPT,
    ),
    (
        "EncryptionService",
        Operation::DecryptDocument,
        // sic, as in EncryptionService_v6_1_1.wsdl
        "http://ws.gematik.de/conn/crypt/EncryptionService/v6.1#DecryptDocument",
        NS_CRYPT,
    ),
    (
        "CardService",
        Operation::GetPinStatus,
        "http://ws.gematik.de/conn/CardService/v8.1#GetPinStatus",
        NS_CARD,
    ),
    (
        AUTH_SIGNATURE_SERVICE,
        Operation::ExternalAuthenticate,
        // AuthSignatureService_v7_4_1.wsdl: SignatureService 7.4's namespace
        "http://ws.gematik.de/conn/SignatureService/v7.4#ExternalAuthenticate",
        NS_SIG_AUTH,
    ),
];

/// The services of the service directory: SDS name, version, response namespace.
pub const SERVICES: &[(&str, &str, &str)] = &[
    ("EventService", "7.2.0", NS_EVT),
    ("CertificateService", "6.0.1", NS_CERT),
    ("SignatureService", "7.5.5", NS_SIG),
    ("EncryptionService", "6.1.1", NS_CRYPT),
    ("CardService", "8.1.2", NS_CARD),
    (AUTH_SIGNATURE_SERVICE, "7.4.1", NS_SIG_AUTH),
];

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::GetCards => "GetCards",
            Operation::ReadCardCertificate => "ReadCardCertificate",
            Operation::SignDocument => "SignDocument",
            Operation::VerifyDocument => "VerifyDocument",
            Operation::EncryptDocument => "EncryptDocument",
            Operation::DecryptDocument => "DecryptDocument",
            Operation::GetPinStatus => "GetPinStatus",
            Operation::ExternalAuthenticate => "ExternalAuthenticate",
        }
    }

    fn row(self) -> &'static (&'static str, Operation, &'static str, &'static str) {
        OPERATIONS
            .iter()
            .find(|r| r.1 == self)
            .expect("every operation has a row")
    }

    /// The SDS name of the operation's service.
    pub fn service(self) -> &'static str {
        self.row().0
    }

    /// The SOAPAction of the operation, unquoted.
    pub fn soap_action(self) -> &'static str {
        self.row().2
    }

    /// The namespace of the request and response elements.
    pub fn namespace(self) -> &'static str {
        self.row().3
    }

    /// The operation of a SOAPAction header value (quoted or not).
    pub fn from_soap_action(action: &str) -> Option<Operation> {
        let a = action.trim();
        let a = a
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .unwrap_or(a);
        OPERATIONS.iter().find(|r| r.2 == a).map(|r| r.1)
    }
}

/// Now as xs:dateTime.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// The namespace declarations every envelope the simulator writes carries.
const XMLNS: &str = concat!(
    r#"xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/""#,
    r#" xmlns:CONN="http://ws.gematik.de/conn/ConnectorCommon/v5.0""#,
    r#" xmlns:SIG="http://ws.gematik.de/conn/SignatureService/v7.5""#,
    r#" xmlns:ASIG="http://ws.gematik.de/conn/SignatureService/v7.4""#,
    r#" xmlns:CRYPT="http://ws.gematik.de/conn/EncryptionService/v6.1""#,
    r#" xmlns:CERT="http://ws.gematik.de/conn/CertificateService/v6.0""#,
    r#" xmlns:CERTCMN="http://ws.gematik.de/conn/CertificateServiceCommon/v2.0""#,
    r#" xmlns:EVT="http://ws.gematik.de/conn/EventService/v7.2""#,
    r#" xmlns:CARD="http://ws.gematik.de/conn/CardService/v8.1""#,
    r#" xmlns:CARDCMN="http://ws.gematik.de/conn/CardServiceCommon/v2.0""#,
    r#" xmlns:dss="urn:oasis:names:tc:dss:1.0:core:schema""#,
    r#" xmlns:GERROR="http://ws.gematik.de/tel/error/v2.0""#,
);

/// A SOAP envelope around `body` (XML text using the prefixes of [`XMLNS`]).
pub fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope {XMLNS}><soap:Body>{body}</soap:Body></soap:Envelope>\n"
    )
}

/// A `CONN:Status` with `Result` OK.
pub fn status_ok() -> String {
    "<CONN:Status><CONN:Result>OK</CONN:Result></CONN:Status>".into()
}

/// A `CONN:Status` with `Result` Warning and the error (VerifyDocument's reasons).
pub fn status_warning(code: u32, text: &str) -> String {
    format!(
        "<CONN:Status><CONN:Result>Warning</CONN:Result>{}</CONN:Status>",
        gerror(code, "Warning", text)
    )
}

/// One `GERROR:Error` (TelematikError.xsd).
pub fn gerror(code: u32, severity: &str, text: &str) -> String {
    let id = hex::encode(rand::random::<[u8; 8]>());
    format!(
        "<GERROR:Error><GERROR:MessageID>{id}</GERROR:MessageID><GERROR:Timestamp>{}</GERROR:Timestamp>\
         <GERROR:Trace><GERROR:EventID>{id}</GERROR:EventID><GERROR:Instance>kim-cm-konnektor-sim</GERROR:Instance>\
         <GERROR:LogReference></GERROR:LogReference><GERROR:CompType>KON</GERROR:CompType>\
         <GERROR:Code>{code}</GERROR:Code><GERROR:Severity>{}</GERROR:Severity>\
         <GERROR:ErrorType>Technical</GERROR:ErrorType><GERROR:ErrorText>{}</GERROR:ErrorText>\
         </GERROR:Trace></GERROR:Error>",
        now_rfc3339(),
        escape(severity),
        escape(text)
    )
}

/// A refused call (docs/konnektor.md, "Faults"): `soap:Server` with the error.
pub fn fault(code: u32, text: &str) -> String {
    fault_with("soap:Server", code, text)
}

/// A fault with the given SOAP fault code (`soap:Client` for a malformed request).
pub fn fault_with(faultcode: &str, code: u32, text: &str) -> String {
    envelope(&format!(
        "<soap:Fault><faultcode>{faultcode}</faultcode><faultstring>{}</faultstring><detail>{}</detail></soap:Fault>",
        escape(text),
        gerror(code, "Error", text)
    ))
}

/// The first element child of `n` in namespace `ns` named `name`.
pub fn child<'a, 'i>(n: Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| is(c, ns, name))
}

/// Every element child of `n` in namespace `ns` named `name`.
pub fn children<'a, 'i>(n: Node<'a, 'i>, ns: &str, name: &str) -> Vec<Node<'a, 'i>> {
    n.children().filter(|c| is(c, ns, name)).collect()
}

pub fn is(n: &Node<'_, '_>, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(ns)
}

/// The text of an element (all its text children), trimmed.
pub fn text(n: Node<'_, '_>) -> String {
    let mut s = String::new();
    for c in n.children().filter(|c| c.is_text()) {
        s.push_str(c.text().unwrap_or(""));
    }
    s.trim().to_string()
}

/// The text of the child `ns:name`.
pub fn child_text(n: Node<'_, '_>, ns: &str, name: &str) -> Option<String> {
    child(n, ns, name).map(text)
}

/// Why a request was not understood.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

/// The request element of a SOAP 1.1 envelope: Envelope/Body's single element child.
pub fn request_element<'a, 'i>(doc: &'a Document<'i>) -> Result<Node<'a, 'i>, Malformed> {
    let root = doc.root_element();
    if !is(&root, NS_SOAP, "Envelope") {
        return Err(Malformed("not a SOAP 1.1 Envelope".into()));
    }
    let body = child(root, NS_SOAP, "Body").ok_or_else(|| Malformed("no soap:Body".into()))?;
    let mut elements = body.children().filter(|c| c.is_element());
    let first = elements
        .next()
        .ok_or_else(|| Malformed("an empty soap:Body".into()))?;
    if elements.next().is_some() {
        return Err(Malformed("more than one element in soap:Body".into()));
    }
    Ok(first)
}

/// Parses XML text the way the simulator does: no DTD (entity expansion is refused).
pub fn parse(text: &str) -> Result<Document<'_>, Malformed> {
    Document::parse(text).map_err(|e| Malformed(format!("not well-formed XML: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soap_actions_map_both_ways() {
        for r in OPERATIONS {
            assert_eq!(Operation::from_soap_action(r.2), Some(r.1));
            assert_eq!(
                Operation::from_soap_action(&format!("\"{}\"", r.2)),
                Some(r.1)
            );
            assert_eq!(r.1.soap_action(), r.2);
        }
        // the WSDL's odd DecryptDocument action, not the regular form
        assert_eq!(
            Operation::from_soap_action(
                "http://ws.gematik.de/conn/EncryptionService/v6.1#DecryptDocument"
            ),
            None
        );
        assert_eq!(Operation::from_soap_action(""), None);
    }

    #[test]
    fn escaping_covers_markup_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"c'\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{FFFD}"
        );
    }

    #[test]
    fn requests_are_read_by_namespace_not_prefix() {
        let text = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>
            <x:GetCards xmlns:x="http://ws.gematik.de/conn/EventService/v7.2"/></e:Body></e:Envelope>"#;
        let doc = parse(text).unwrap();
        let r = request_element(&doc).unwrap();
        assert!(is(&r, NS_EVT, "GetCards"));
        let wrong = r#"<Envelope xmlns="urn:other"><Body/></Envelope>"#;
        let doc = parse(wrong).unwrap();
        assert!(request_element(&doc).is_err());
        assert!(parse("<a><b></a>").is_err());
        // a DTD (and with it entity expansion) is refused
        assert!(parse("<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>").is_err());
    }

    #[test]
    fn faults_parse_and_carry_the_code() {
        let f = fault(4004, "Mandant <m> unbekannt");
        let doc = parse(&f).unwrap();
        let r = request_element(&doc).unwrap();
        assert!(is(&r, NS_SOAP, "Fault"));
        let code = r.descendants().find(|n| is(n, NS_GERROR, "Code")).map(text);
        assert_eq!(code.as_deref(), Some("4004"));
        assert_eq!(
            r.children()
                .find(|n| n.has_tag_name("faultstring"))
                .map(text)
                .as_deref(),
            Some("Mandant <m> unbekannt")
        );
    }
}
