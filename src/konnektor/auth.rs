//! AuthSignatureService `ExternalAuthenticate`: the card's authentication key (the
//! AUT key of an SMC-B or HBA) signs a hash kim-cm made. gemSpec_CM_KOMLE
//! A_19457-02 uses it for the Account Manager's JWT: kim-cm hashes the token's
//! signing input (gemSpec_Krypt A_19644, SHA-256) and the Konnektor returns the
//! RSASSA-PSS signature over it, which becomes the token's signature part.
//!
//! The service is AuthSignatureService 7.4 (`AuthSignatureService_v7_4_1.wsdl`),
//! whose elements are SignatureService 7.4's (`SignatureService_V7_4_4.xsd`), not
//! the 7.5 namespace SignDocument uses.

use super::client::Konnektor;
use super::ops::context;
use super::sds::Service;
use super::soap;
use super::xml::{self, b64, escape, CCTX, CONN, DSS, SIG_AUTH};
use super::KonnektorError;
use crate::kim::login::CallContext;

/// `dss:SignatureType` for RSA signatures of ExternalAuthenticate (PKCS #1, RFC 3447).
pub const RSA_SIGNATURE_TYPE: &str = "urn:ietf:rfc:3447";
/// `SIG:SignatureSchemes`: A_19457-02 asks for RSASSA-PSS.
pub const RSASSA_PSS: &str = "RSASSA-PSS";
/// The hash handed to the card is SHA-256 (gemSpec_Krypt A_19644): 32 bytes.
pub const HASH_LEN: usize = 32;
/// As the WSDL gives it.
const ACTION: &str = "http://ws.gematik.de/conn/SignatureService/v7.4#ExternalAuthenticate";
const OPERATION: &str = "ExternalAuthenticate";

/// ExternalAuthenticate request: `hash` (SHA-256) to be signed with RSASSA-PSS by
/// the AUT key of the card `handle`.
pub fn external_authenticate_request(ctx: &CallContext, handle: &str, hash: &[u8]) -> String {
    format!(
        "<SIG:ExternalAuthenticate xmlns:SIG=\"{SIG_AUTH}\" xmlns:CCTX=\"{CCTX}\" xmlns:CONN=\"{CONN}\" xmlns:dss=\"{DSS}\">\
<CONN:CardHandle>{}</CONN:CardHandle>{}\
<SIG:OptionalInputs><dss:SignatureType>{RSA_SIGNATURE_TYPE}</dss:SignatureType><SIG:SignatureSchemes>{RSASSA_PSS}</SIG:SignatureSchemes></SIG:OptionalInputs>\
<SIG:BinaryString><dss:Base64Data MimeType=\"application/octet-stream\">{}</dss:Base64Data></SIG:BinaryString></SIG:ExternalAuthenticate>",
        escape(handle),
        context(ctx),
        b64(hash)
    )
}

/// The signature of an ExternalAuthenticateResponse; without one, the status's
/// gematik code (a Warning that carries the refusal).
pub fn read_auth_signature(
    body: roxmltree::Node<'_, '_>,
) -> Result<Result<Vec<u8>, Option<u32>>, String> {
    if !xml::is(&body, SIG_AUTH, "ExternalAuthenticateResponse") {
        return Err(format!(
            "got {} instead of ExternalAuthenticateResponse",
            body.tag_name().name()
        ));
    }
    let status = xml::child(&body, CONN, "Status").ok_or("no Status")?;
    let sig = xml::child(&body, DSS, "SignatureObject")
        .and_then(|o| xml::child(&o, DSS, "Base64Signature"));
    match sig {
        Some(s) => xml::unb64(s.text().unwrap_or(""))
            .filter(|d| !d.is_empty())
            .map(Ok)
            .ok_or_else(|| "Base64Signature is not base64".to_string()),
        None => Ok(Err(soap::status_code(&status))),
    }
}

impl Konnektor {
    /// The RSASSA-PSS signature of the AUT key of card `handle` over `hash`
    /// (SHA-256, [`HASH_LEN`] bytes). A Konnektor whose directory has no
    /// AuthSignatureService gives [`KonnektorError::NotOffered`].
    pub async fn external_authenticate(
        &self,
        ctx: &CallContext,
        handle: &str,
        hash: &[u8],
    ) -> Result<Vec<u8>, KonnektorError> {
        if hash.len() != HASH_LEN {
            return Err(KonnektorError::Protocol {
                operation: OPERATION,
                why: format!("a SHA-256 hash has {HASH_LEN} bytes, not {}", hash.len()),
            });
        }
        let body = external_authenticate_request(ctx, handle, hash);
        match self
            .call(
                Service::AuthSignature,
                OPERATION,
                ACTION,
                body,
                read_auth_signature,
            )
            .await?
        {
            Ok(sig) => Ok(sig),
            Err(code) => Err(KonnektorError::Fault {
                operation: OPERATION,
                code,
                text: "no signature in the answer".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CallContext {
        CallContext {
            mandant_id: "1".into(),
            client_system_id: "KOM_LE".into(),
            workplace_id: "7".into(),
            user_id: None,
        }
    }

    #[test]
    fn the_request_carries_the_hash_and_asks_for_rsassa_pss() {
        let r = external_authenticate_request(&ctx(), "SMC-B-<1>", &[7u8; 32]);
        let doc = roxmltree::Document::parse(&r).unwrap();
        let root = doc.root_element();
        assert!(xml::is(&root, SIG_AUTH, "ExternalAuthenticate"));
        assert_eq!(
            xml::child_text(&root, CONN, "CardHandle").as_deref(),
            Some("SMC-B-<1>")
        );
        let inputs = xml::child(&root, SIG_AUTH, "OptionalInputs").unwrap();
        assert_eq!(
            xml::child_text(&inputs, DSS, "SignatureType").as_deref(),
            Some(RSA_SIGNATURE_TYPE)
        );
        let data = xml::find(&root, DSS, "Base64Data").unwrap();
        assert_eq!(xml::unb64(data.text().unwrap()).unwrap(), vec![7u8; 32]);
    }

    #[test]
    fn the_answer_gives_the_signature_or_the_code() {
        let ok = format!(
            "<s:ExternalAuthenticateResponse xmlns:s=\"{SIG_AUTH}\" xmlns:c=\"{CONN}\" xmlns:d=\"{DSS}\">\
<c:Status><c:Result>OK</c:Result></c:Status><d:SignatureObject><d:Base64Signature Type=\"{RSA_SIGNATURE_TYPE}\">AQID</d:Base64Signature></d:SignatureObject></s:ExternalAuthenticateResponse>"
        );
        let doc = roxmltree::Document::parse(&ok).unwrap();
        assert_eq!(
            read_auth_signature(doc.root_element()).unwrap(),
            Ok(vec![1, 2, 3])
        );
        let warning = format!(
            "<s:ExternalAuthenticateResponse xmlns:s=\"{SIG_AUTH}\" xmlns:c=\"{CONN}\" xmlns:g=\"{}\">\
<c:Status><c:Result>Warning</c:Result><g:Error><g:Trace><g:Code>4085</g:Code></g:Trace></g:Error></c:Status></s:ExternalAuthenticateResponse>",
            xml::GERROR
        );
        let doc = roxmltree::Document::parse(&warning).unwrap();
        assert_eq!(
            read_auth_signature(doc.root_element()).unwrap(),
            Err(Some(4085))
        );
        // the 7.5 namespace is not this operation's
        let wrong = ok.replace(SIG_AUTH, xml::SIG);
        let doc = roxmltree::Document::parse(&wrong).unwrap();
        assert!(read_auth_signature(doc.root_element()).is_err());
    }
}
