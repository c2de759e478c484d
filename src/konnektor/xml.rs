//! The little XML kim-cm needs for SOAP: escaping for the requests it writes, and
//! namespace-aware lookups in the answers it reads (roxmltree). Elements are
//! matched by namespace URI and local name, never by prefix.

use base64::Engine;
use roxmltree::Node;

pub const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const CONN: &str = "http://ws.gematik.de/conn/ConnectorCommon/v5.0";
pub const CCTX: &str = "http://ws.gematik.de/conn/ConnectorContext/v2.0";
pub const SIG: &str = "http://ws.gematik.de/conn/SignatureService/v7.5";
/// AuthSignatureService 7.4 (ExternalAuthenticate) speaks SignatureService 7.4's
/// schema, a namespace of its own.
pub const SIG_AUTH: &str = "http://ws.gematik.de/conn/SignatureService/v7.4";
pub const CRYPT: &str = "http://ws.gematik.de/conn/EncryptionService/v6.1";
pub const CERT: &str = "http://ws.gematik.de/conn/CertificateService/v6.0";
pub const CERTCMN: &str = "http://ws.gematik.de/conn/CertificateServiceCommon/v2.0";
pub const EVT: &str = "http://ws.gematik.de/conn/EventService/v7.2";
pub const CARD: &str = "http://ws.gematik.de/conn/CardService/v8.1";
pub const CARDCMN: &str = "http://ws.gematik.de/conn/CardServiceCommon/v2.0";
pub const SDS: &str = "http://ws.gematik.de/conn/ServiceDirectory/v3.1";
pub const SI: &str = "http://ws.gematik.de/conn/ServiceInformation/v2.0";
pub const DSS: &str = "urn:oasis:names:tc:dss:1.0:core:schema";
pub const GERROR: &str = "http://ws.gematik.de/tel/error/v2.0";

/// `text` escaped for element content and attribute values; control characters
/// XML 1.0 cannot carry become U+FFFD, so a document is always well-formed.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // characters XML 1.0 cannot carry at all
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `bytes` in base64 (the schemas' base64Binary).
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes of a base64Binary element's text (whitespace allowed, as XML Schema
/// allows it).
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

/// Whether `n` is the element `ns`:`name`.
pub fn is(n: &Node<'_, '_>, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(ns)
}

/// The first child element `ns`:`name` of `n`.
pub fn child<'a, 'i>(n: &Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| is(c, ns, name))
}

/// Every child element `ns`:`name` of `n`.
pub fn children<'a, 'i: 'a>(
    n: &Node<'a, 'i>,
    ns: &'a str,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children().filter(move |c| is(c, ns, name))
}

/// The first element `ns`:`name` at or below `n`.
pub fn find<'a, 'i>(n: &Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    n.descendants().find(|c| is(c, ns, name))
}

/// The trimmed text of the child `ns`:`name`.
pub fn child_text(n: &Node<'_, '_>, ns: &str, name: &str) -> Option<String> {
    child(n, ns, name).map(|c| c.text().unwrap_or("").trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_base64_round_trips_with_line_breaks() {
        assert_eq!(escape("a<b&\"c'>"), "a&lt;b&amp;&quot;c&apos;&gt;");
        let data = vec![0u8, 1, 2, 250, 251, 252, 253];
        let text = b64(&data);
        let broken = format!("{}\n  {}", &text[..4], &text[4..]);
        assert_eq!(unb64(&broken).unwrap(), data);
        assert!(unb64("not base64!").is_none());
    }

    #[test]
    fn elements_match_by_namespace_not_prefix() {
        let text =
            format!("<a:x xmlns:a=\"{CONN}\" xmlns:b=\"{CCTX}\"><b:y>1</b:y><a:y> 2 </a:y></a:x>");
        let doc = roxmltree::Document::parse(&text).unwrap();
        let root = doc.root_element();
        assert_eq!(child_text(&root, CONN, "y").as_deref(), Some("2"));
        assert_eq!(child_text(&root, CCTX, "y").as_deref(), Some("1"));
        assert!(child(&root, SIG, "y").is_none());
    }
}
