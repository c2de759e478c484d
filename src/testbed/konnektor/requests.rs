//! Request envelopes as docs/konnektor.md shapes them, for the simulator's own
//! tests and for tests that drive it directly. Not kim-cm's Konnektor client: that
//! one is written separately against the same page.

use super::soap::{b64, escape, CMS_TYPE, RECIPIENT_EMAILS_PROPERTY, RSA_SIGNATURE_TYPE};
use super::SimContext;

const XMLNS: &str = concat!(
    r#"xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/""#,
    r#" xmlns:CONN="http://ws.gematik.de/conn/ConnectorCommon/v5.0""#,
    r#" xmlns:CCTX="http://ws.gematik.de/conn/ConnectorContext/v2.0""#,
    r#" xmlns:SIG="http://ws.gematik.de/conn/SignatureService/v7.5""#,
    r#" xmlns:ASIG="http://ws.gematik.de/conn/SignatureService/v7.4""#,
    r#" xmlns:CRYPT="http://ws.gematik.de/conn/EncryptionService/v6.1""#,
    r#" xmlns:CERT="http://ws.gematik.de/conn/CertificateService/v6.0""#,
    r#" xmlns:EVT="http://ws.gematik.de/conn/EventService/v7.2""#,
    r#" xmlns:CARD="http://ws.gematik.de/conn/CardService/v8.1""#,
    r#" xmlns:CARDCMN="http://ws.gematik.de/conn/CardServiceCommon/v2.0""#,
    r#" xmlns:dss="urn:oasis:names:tc:dss:1.0:core:schema""#,
);

fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope {XMLNS}><soap:Body>{body}</soap:Body></soap:Envelope>\n"
    )
}

/// `CCTX:Context`.
pub fn context(c: &SimContext) -> String {
    format!(
        "<CCTX:Context><CONN:MandantId>{}</CONN:MandantId><CONN:ClientSystemId>{}</CONN:ClientSystemId><CONN:WorkplaceId>{}</CONN:WorkplaceId></CCTX:Context>",
        escape(&c.mandant),
        escape(&c.client_system),
        escape(&c.workplace)
    )
}

fn property(attr_der: &[u8]) -> String {
    format!(
        "<dss:Property><dss:Identifier>{RECIPIENT_EMAILS_PROPERTY}</dss:Identifier><dss:Value><CMSAttribute>{}</CMSAttribute></dss:Value></dss:Property>",
        b64(attr_der)
    )
}

pub fn get_cards(c: &SimContext, card_type: Option<&str>) -> String {
    let t = card_type
        .map(|t| format!("<CARDCMN:CardType>{}</CARDCMN:CardType>", escape(t)))
        .unwrap_or_default();
    envelope(&format!("<EVT:GetCards>{}{t}</EVT:GetCards>", context(c)))
}

pub fn read_card_certificate(c: &SimContext, handle: &str, refs: &[&str], crypt: &str) -> String {
    let refs: String = refs
        .iter()
        .map(|r| format!("<CERT:CertRef>{}</CERT:CertRef>", escape(r)))
        .collect();
    envelope(&format!(
        "<CERT:ReadCardCertificate><CONN:CardHandle>{}</CONN:CardHandle>{}<CERT:CertRefList>{refs}</CERT:CertRefList><CERT:Crypt>{}</CERT:Crypt></CERT:ReadCardCertificate>",
        escape(handle),
        context(c),
        escape(crypt)
    ))
}

pub fn sign_document(c: &SimContext, handle: &str, content: &[u8], attr_der: &[u8]) -> String {
    envelope(&format!(
        "<SIG:SignDocument><CONN:CardHandle>{}</CONN:CardHandle><SIG:Crypt>RSA</SIG:Crypt>{}<SIG:TvMode>NONE</SIG:TvMode>\
         <SIG:SignRequest RequestID=\"r1\"><SIG:OptionalInputs><dss:SignatureType>{CMS_TYPE}</dss:SignatureType>\
         <dss:Properties><dss:SignedProperties>{}</dss:SignedProperties></dss:Properties><SIG:IncludeEContent>true</SIG:IncludeEContent>\
         </SIG:OptionalInputs><SIG:Document ShortText=\"KIM-Nachricht\"><dss:Base64Data MimeType=\"text/plain; charset=utf-8\">{}</dss:Base64Data></SIG:Document>\
         <SIG:IncludeRevocationInfo>false</SIG:IncludeRevocationInfo></SIG:SignRequest></SIG:SignDocument>",
        escape(handle),
        context(c),
        property(attr_der),
        b64(content)
    ))
}

pub fn verify_document(c: &SimContext, signed_der: &[u8]) -> String {
    envelope(&format!(
        "<SIG:VerifyDocument>{}<SIG:TvMode>NONE</SIG:TvMode><dss:SignatureObject><dss:Base64Signature Type=\"{CMS_TYPE}\">{}</dss:Base64Signature></dss:SignatureObject>\
         <SIG:IncludeRevocationInfo>false</SIG:IncludeRevocationInfo></SIG:VerifyDocument>",
        context(c),
        b64(signed_der)
    ))
}

pub fn encrypt_document(
    c: &SimContext,
    certs_der: &[Vec<u8>],
    content: &[u8],
    attr_der: &[u8],
) -> String {
    let certs: String = certs_der
        .iter()
        .map(|d| format!("<CRYPT:Certificate>{}</CRYPT:Certificate>", b64(d)))
        .collect();
    envelope(&format!(
        "<CRYPT:EncryptDocument>{}<CRYPT:RecipientKeys>{certs}</CRYPT:RecipientKeys><CONN:Document><dss:Base64Data>{}</dss:Base64Data></CONN:Document>\
         <CRYPT:OptionalInputs><CRYPT:EncryptionType>{CMS_TYPE}</CRYPT:EncryptionType><CRYPT:UnprotectedProperties>{}</CRYPT:UnprotectedProperties></CRYPT:OptionalInputs></CRYPT:EncryptDocument>",
        context(c),
        b64(content),
        property(attr_der)
    ))
}

pub fn decrypt_document(c: &SimContext, handle: &str, der: &[u8]) -> String {
    envelope(&format!(
        "<CRYPT:DecryptDocument>{}<CRYPT:PrivateKeyOnCard><CONN:CardHandle>{}</CONN:CardHandle><CRYPT:KeyReference>C.ENC</CRYPT:KeyReference><CRYPT:Crypt>RSA</CRYPT:Crypt></CRYPT:PrivateKeyOnCard>\
         <CONN:Document><dss:Base64Data>{}</dss:Base64Data></CONN:Document></CRYPT:DecryptDocument>",
        context(c),
        escape(handle),
        b64(der)
    ))
}

pub fn get_pin_status(c: &SimContext, handle: &str, pin: &str) -> String {
    envelope(&format!(
        "<CARD:GetPinStatus>{}<CONN:CardHandle>{}</CONN:CardHandle><CARDCMN:PinTyp>{}</CARDCMN:PinTyp></CARD:GetPinStatus>",
        context(c),
        escape(handle),
        escape(pin)
    ))
}

/// ExternalAuthenticate of `hash` with the card's AUT key, RSASSA-PSS.
pub fn external_authenticate(c: &SimContext, handle: &str, hash: &[u8]) -> String {
    envelope(&format!(
        "<ASIG:ExternalAuthenticate><CONN:CardHandle>{}</CONN:CardHandle>{}<ASIG:OptionalInputs><dss:SignatureType>{RSA_SIGNATURE_TYPE}</dss:SignatureType>\
         <ASIG:SignatureSchemes>RSASSA-PSS</ASIG:SignatureSchemes></ASIG:OptionalInputs><ASIG:BinaryString><dss:Base64Data>{}</dss:Base64Data></ASIG:BinaryString></ASIG:ExternalAuthenticate>",
        escape(handle),
        context(c),
        b64(hash)
    ))
}
