//! The operations, as gematik's schemas shape them (docs/konnektor.md): each
//! request written, each answer read. kim-cm calls GetCards, ReadCardCertificate,
//! GetPinStatus, SignDocument, VerifyDocument, EncryptDocument and DecryptDocument.

use openssl::x509::X509;

use super::client::Konnektor;
use super::sds::Service;
use super::soap;
use super::xml::{
    self, b64, escape, CARD, CARDCMN, CCTX, CERT, CERTCMN, CONN, CRYPT, DSS, EVT, SIG,
};
use super::KonnektorError;
use crate::kim::login::CallContext;

/// The CMS signature and encryption type (RFC 5652).
const CMS: &str = "urn:ietf:rfc:5652";
/// KOM-LE-A_2190, A_2191: the property that carries recipient-emails.
const RECIPIENT_EMAILS: &str = "RecipientEmailsAttribute";
/// KOM-LE-A_2299-01: the document to sign is handed over as this MIME type.
const SIGN_MIME_TYPE: &str = "text/plain; charset=utf-8";

/// A card the Konnektor sees in the caller's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub handle: String,
    /// `SMC-B`, `HBA`, ...
    pub card_type: String,
    pub iccsn: String,
    pub holder: String,
}

/// VerifyDocument's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HighLevel {
    Valid,
    Inconclusive,
    Invalid,
}

/// The verdict and the gematik code that says why (Tab_Verm_Sig_Prüf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub result: HighLevel,
    pub code: Option<u32>,
}

/// `CCTX:Context` for `ctx`.
pub fn context(ctx: &CallContext) -> String {
    let user = ctx
        .user_id
        .as_deref()
        .map(|u| format!("<CONN:UserId>{}</CONN:UserId>", escape(u)))
        .unwrap_or_default();
    format!(
        "<CCTX:Context><CONN:MandantId>{}</CONN:MandantId><CONN:ClientSystemId>{}</CONN:ClientSystemId><CONN:WorkplaceId>{}</CONN:WorkplaceId>{user}</CCTX:Context>",
        escape(&ctx.mandant_id),
        escape(&ctx.client_system_id),
        escape(&ctx.workplace_id)
    )
}

fn ns(prefixes: &[(&str, &str)]) -> String {
    prefixes
        .iter()
        .map(|(p, u)| format!(" xmlns:{p}=\"{u}\""))
        .collect()
}

/// The `CONN:Status` of an answer must be there; a Warning is read by the caller.
fn status<'a, 'i>(body: &roxmltree::Node<'a, 'i>) -> Result<roxmltree::Node<'a, 'i>, String> {
    xml::child(body, CONN, "Status").ok_or_else(|| "no Status".to_string())
}

fn expect(body: &roxmltree::Node<'_, '_>, ns: &str, name: &str) -> Result<(), String> {
    if xml::is(body, ns, name) {
        Ok(())
    } else {
        Err(format!("got {} instead of {name}", body.tag_name().name()))
    }
}

fn base64_of(n: Option<roxmltree::Node<'_, '_>>, what: &str) -> Result<Vec<u8>, String> {
    let n = n.ok_or_else(|| format!("no {what}"))?;
    xml::unb64(n.text().unwrap_or("")).ok_or_else(|| format!("{what} is not base64"))
}

/// GetCards request.
pub fn get_cards_request(ctx: &CallContext, card_type: Option<&str>) -> String {
    let t = card_type
        .map(|t| format!("<CARDCMN:CardType>{}</CARDCMN:CardType>", escape(t)))
        .unwrap_or_default();
    format!(
        "<EVT:GetCards{}>{}{t}</EVT:GetCards>",
        ns(&[
            ("EVT", EVT),
            ("CCTX", CCTX),
            ("CONN", CONN),
            ("CARDCMN", CARDCMN)
        ]),
        context(ctx)
    )
}

pub fn read_cards(body: roxmltree::Node<'_, '_>) -> Result<Vec<Card>, String> {
    expect(&body, EVT, "GetCardsResponse")?;
    status(&body)?;
    let cards = xml::child(&body, CARD, "Cards").ok_or("no Cards")?;
    Ok(xml::children(&cards, CARD, "Card")
        .map(|c| Card {
            handle: xml::child_text(&c, CONN, "CardHandle").unwrap_or_default(),
            card_type: xml::child_text(&c, CARDCMN, "CardType").unwrap_or_default(),
            iccsn: xml::child_text(&c, CARDCMN, "Iccsn").unwrap_or_default(),
            holder: xml::child_text(&c, CARD, "CardHolderName").unwrap_or_default(),
        })
        .filter(|c| !c.handle.is_empty())
        .collect())
}

/// ReadCardCertificate request: `cert_ref` `C.ENC` or `C.SIG`, `crypt` `RSA` or `ECC`.
pub fn read_certificate_request(
    ctx: &CallContext,
    handle: &str,
    cert_ref: &str,
    crypt: &str,
) -> String {
    format!(
        "<CERT:ReadCardCertificate{}><CONN:CardHandle>{}</CONN:CardHandle>{}<CERT:CertRefList><CERT:CertRef>{}</CERT:CertRef></CERT:CertRefList><CERT:Crypt>{}</CERT:Crypt></CERT:ReadCardCertificate>",
        ns(&[("CERT", CERT), ("CCTX", CCTX), ("CONN", CONN)]),
        escape(handle),
        context(ctx),
        escape(cert_ref),
        escape(crypt)
    )
}

pub fn read_certificates(body: roxmltree::Node<'_, '_>) -> Result<Vec<X509>, String> {
    expect(&body, CERT, "ReadCardCertificateResponse")?;
    status(&body)?;
    let list = xml::child(&body, CERTCMN, "X509DataInfoList").ok_or("no X509DataInfoList")?;
    let mut out = Vec::new();
    for info in xml::children(&list, CERTCMN, "X509DataInfo") {
        let Some(data) = xml::child(&info, CERTCMN, "X509Data") else {
            continue;
        };
        let der = base64_of(
            xml::child(&data, CERTCMN, "X509Certificate"),
            "X509Certificate",
        )?;
        out.push(
            X509::from_der(&der).map_err(|e| format!("a card certificate does not parse: {e}"))?,
        );
    }
    Ok(out)
}

/// SignDocument request (KOM-LE-A_2190, A_2299-01, A_2020: RSA, content included).
pub fn sign_request(
    ctx: &CallContext,
    handle: &str,
    request_id: &str,
    content: &[u8],
    attribute: &[u8],
) -> String {
    format!(
        "<SIG:SignDocument{}><CONN:CardHandle>{}</CONN:CardHandle><SIG:Crypt>RSA</SIG:Crypt>{}<SIG:TvMode>NONE</SIG:TvMode>\
<SIG:SignRequest RequestID=\"{}\"><SIG:OptionalInputs><dss:SignatureType>{CMS}</dss:SignatureType>\
<dss:Properties><dss:SignedProperties><dss:Property><dss:Identifier>{RECIPIENT_EMAILS}</dss:Identifier>\
<dss:Value><CMSAttribute>{}</CMSAttribute></dss:Value></dss:Property></dss:SignedProperties></dss:Properties>\
<SIG:IncludeEContent>true</SIG:IncludeEContent></SIG:OptionalInputs>\
<SIG:Document ShortText=\"KIM-Nachricht\"><dss:Base64Data MimeType=\"{SIGN_MIME_TYPE}\">{}</dss:Base64Data></SIG:Document>\
<SIG:IncludeRevocationInfo>false</SIG:IncludeRevocationInfo></SIG:SignRequest></SIG:SignDocument>",
        ns(&[("SIG", SIG), ("CCTX", CCTX), ("CONN", CONN), ("dss", DSS)]),
        escape(handle),
        context(ctx),
        escape(request_id),
        b64(attribute),
        b64(content)
    )
}

pub fn read_signature(
    body: roxmltree::Node<'_, '_>,
) -> Result<Result<Vec<u8>, Option<u32>>, String> {
    expect(&body, SIG, "SignDocumentResponse")?;
    let resp = xml::child(&body, SIG, "SignResponse").ok_or("no SignResponse")?;
    let st = status(&resp)?;
    let sig = xml::child(&resp, DSS, "SignatureObject")
        .and_then(|o| xml::child(&o, DSS, "Base64Signature"));
    match sig {
        Some(s) => Ok(Ok(base64_of(Some(s), "Base64Signature")?)),
        // a Warning without a signature: this request failed
        None => Ok(Err(soap::status_code(&st))),
    }
}

/// EncryptDocument request (KOM-LE-A_2191): one Certificate per encryption
/// certificate, recipient-emails as unprotected property.
pub fn encrypt_request(
    ctx: &CallContext,
    certs: &[&X509],
    content: &[u8],
    attribute: &[u8],
) -> Result<String, String> {
    let mut keys = String::new();
    for c in certs {
        let der = c.to_der().map_err(|e| e.to_string())?;
        keys.push_str(&format!(
            "<CRYPT:Certificate>{}</CRYPT:Certificate>",
            b64(&der)
        ));
    }
    Ok(format!(
        "<CRYPT:EncryptDocument{}>{}<CRYPT:RecipientKeys>{keys}</CRYPT:RecipientKeys>\
<CONN:Document><dss:Base64Data>{}</dss:Base64Data></CONN:Document>\
<CRYPT:OptionalInputs><CRYPT:EncryptionType>{CMS}</CRYPT:EncryptionType><CRYPT:UnprotectedProperties>\
<dss:Property><dss:Identifier>{RECIPIENT_EMAILS}</dss:Identifier><dss:Value><CMSAttribute>{}</CMSAttribute></dss:Value></dss:Property>\
</CRYPT:UnprotectedProperties></CRYPT:OptionalInputs></CRYPT:EncryptDocument>",
        ns(&[("CRYPT", CRYPT), ("CCTX", CCTX), ("CONN", CONN), ("dss", DSS)]),
        context(ctx),
        b64(content),
        b64(attribute)
    ))
}

/// The document of an Encrypt- or DecryptDocumentResponse.
pub fn read_document(body: roxmltree::Node<'_, '_>, response: &str) -> Result<Vec<u8>, String> {
    expect(&body, CRYPT, response)?;
    status(&body)?;
    let doc = xml::child(&body, CONN, "Document").ok_or("no Document")?;
    base64_of(xml::child(&doc, DSS, "Base64Data"), "Base64Data")
}

/// DecryptDocument request with the card's encryption key (`crypt` RSA or ECC:
/// the spec's C.ENC_RSA, C.ENC_ECC).
pub fn decrypt_request(ctx: &CallContext, handle: &str, crypt: &str, der: &[u8]) -> String {
    format!(
        "<CRYPT:DecryptDocument{}>{}<CRYPT:PrivateKeyOnCard><CONN:CardHandle>{}</CONN:CardHandle><CRYPT:KeyReference>C.ENC</CRYPT:KeyReference><CRYPT:Crypt>{}</CRYPT:Crypt></CRYPT:PrivateKeyOnCard>\
<CONN:Document><dss:Base64Data>{}</dss:Base64Data></CONN:Document></CRYPT:DecryptDocument>",
        ns(&[("CRYPT", CRYPT), ("CCTX", CCTX), ("CONN", CONN), ("dss", DSS)]),
        context(ctx),
        escape(handle),
        escape(crypt),
        b64(der)
    )
}

/// VerifyDocument request for a SignedData with its content.
pub fn verify_request(ctx: &CallContext, signed: &[u8]) -> String {
    format!(
        "<SIG:VerifyDocument{}>{}<SIG:TvMode>NONE</SIG:TvMode><dss:SignatureObject><dss:Base64Signature Type=\"{CMS}\">{}</dss:Base64Signature></dss:SignatureObject><SIG:IncludeRevocationInfo>false</SIG:IncludeRevocationInfo></SIG:VerifyDocument>",
        ns(&[("SIG", SIG), ("CCTX", CCTX), ("CONN", CONN), ("dss", DSS)]),
        context(ctx),
        b64(signed)
    )
}

pub fn read_verdict(body: roxmltree::Node<'_, '_>) -> Result<Verdict, String> {
    expect(&body, SIG, "VerifyDocumentResponse")?;
    let st = status(&body)?;
    let result = xml::child(&body, SIG, "VerificationResult").ok_or("no VerificationResult")?;
    let high = xml::child_text(&result, SIG, "HighLevelResult").ok_or("no HighLevelResult")?;
    let result = match high.as_str() {
        "VALID" => HighLevel::Valid,
        "INCONCLUSIVE" => HighLevel::Inconclusive,
        "INVALID" => HighLevel::Invalid,
        other => return Err(format!("HighLevelResult {other}")),
    };
    Ok(Verdict {
        result,
        code: soap::status_code(&st),
    })
}

/// GetPinStatus request (`pin` PIN.SMC or PIN.CH).
pub fn pin_status_request(ctx: &CallContext, handle: &str, pin: &str) -> String {
    format!(
        "<CARD:GetPinStatus{}>{}<CONN:CardHandle>{}</CONN:CardHandle><CARDCMN:PinTyp>{}</CARDCMN:PinTyp></CARD:GetPinStatus>",
        ns(&[("CARD", CARD), ("CCTX", CCTX), ("CONN", CONN), ("CARDCMN", CARDCMN)]),
        context(ctx),
        escape(handle),
        escape(pin)
    )
}

pub fn read_pin_status(body: roxmltree::Node<'_, '_>) -> Result<String, String> {
    expect(&body, CARD, "GetPinStatusResponse")?;
    status(&body)?;
    xml::child_text(&body, CARD, "PinStatus").ok_or_else(|| "no PinStatus".into())
}

const EVT_ACTION: &str = "http://ws.gematik.de/conn/EventService/v7.2#GetCards";
const CERT_ACTION: &str = "http://ws.gematik.de/conn/CertificateService/v6.0#ReadCardCertificate";
const SIGN_ACTION: &str = "http://ws.gematik.de/conn/SignatureService/v7.5#SignDocument";
const VERIFY_ACTION: &str = "http://ws.gematik.de/conn/SignatureService/v7.5#VerifyDocument";
const ENCRYPT_ACTION: &str = "http://ws.gematik.de/conn/EncryptionService/v6.1#EncryptDocument";
/// As the WSDL has it (with `crypt/`).
const DECRYPT_ACTION: &str =
    "http://ws.gematik.de/conn/crypt/EncryptionService/v6.1#DecryptDocument";
const PIN_ACTION: &str = "http://ws.gematik.de/conn/CardService/v8.1#GetPinStatus";

impl Konnektor {
    pub async fn get_cards(
        &self,
        ctx: &CallContext,
        card_type: Option<&str>,
    ) -> Result<Vec<Card>, KonnektorError> {
        self.call(
            Service::Event,
            "GetCards",
            EVT_ACTION,
            get_cards_request(ctx, card_type),
            read_cards,
        )
        .await
    }

    pub async fn read_card_certificates(
        &self,
        ctx: &CallContext,
        handle: &str,
        cert_ref: &str,
        crypt: &str,
    ) -> Result<Vec<X509>, KonnektorError> {
        let body = read_certificate_request(ctx, handle, cert_ref, crypt);
        self.call(
            Service::Certificate,
            "ReadCardCertificate",
            CERT_ACTION,
            body,
            read_certificates,
        )
        .await
    }

    pub async fn pin_status(
        &self,
        ctx: &CallContext,
        handle: &str,
        pin: &str,
    ) -> Result<String, KonnektorError> {
        let body = pin_status_request(ctx, handle, pin);
        self.call(
            Service::Card,
            "GetPinStatus",
            PIN_ACTION,
            body,
            read_pin_status,
        )
        .await
    }

    /// The CMS SignedData over `content` with `attribute` signed.
    pub async fn sign(
        &self,
        ctx: &CallContext,
        handle: &str,
        content: &[u8],
        attribute: &[u8],
    ) -> Result<Vec<u8>, KonnektorError> {
        let id = format!("kim-cm-{}", hex::encode(rand::random::<[u8; 8]>()));
        let body = sign_request(ctx, handle, &id, content, attribute);
        match self
            .call(
                Service::Signature,
                "SignDocument",
                SIGN_ACTION,
                body,
                read_signature,
            )
            .await?
        {
            Ok(der) => Ok(der),
            Err(code) => Err(KonnektorError::Fault {
                operation: "SignDocument",
                code,
                text: "no signature in the answer".into(),
            }),
        }
    }

    /// The CMS AuthEnvelopedData of `content` for `certs`.
    pub async fn encrypt(
        &self,
        ctx: &CallContext,
        certs: &[&X509],
        content: &[u8],
        attribute: &[u8],
    ) -> Result<Vec<u8>, KonnektorError> {
        let body = encrypt_request(ctx, certs, content, attribute).map_err(|why| {
            KonnektorError::Protocol {
                operation: "EncryptDocument",
                why,
            }
        })?;
        self.call(
            Service::Encryption,
            "EncryptDocument",
            ENCRYPT_ACTION,
            body,
            |b| read_document(b, "EncryptDocumentResponse"),
        )
        .await
    }

    pub async fn decrypt(
        &self,
        ctx: &CallContext,
        handle: &str,
        crypt: &str,
        der: &[u8],
    ) -> Result<Vec<u8>, KonnektorError> {
        let body = decrypt_request(ctx, handle, crypt, der);
        self.call(
            Service::Encryption,
            "DecryptDocument",
            DECRYPT_ACTION,
            body,
            |b| read_document(b, "DecryptDocumentResponse"),
        )
        .await
    }

    pub async fn verify(
        &self,
        ctx: &CallContext,
        signed: &[u8],
    ) -> Result<Verdict, KonnektorError> {
        let body = verify_request(ctx, signed);
        self.call(
            Service::Signature,
            "VerifyDocument",
            VERIFY_ACTION,
            body,
            read_verdict,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CallContext {
        CallContext {
            mandant_id: "Praxis <A>".into(),
            client_system_id: "PVS".into(),
            workplace_id: "1".into(),
            user_id: None,
        }
    }

    fn parse_body(xml_text: &str, f: impl FnOnce(roxmltree::Node<'_, '_>)) {
        let doc = roxmltree::Document::parse(xml_text).unwrap();
        f(doc.root_element());
    }

    #[test]
    fn requests_are_well_formed_and_carry_the_escaped_context() {
        let c = ctx();
        for r in [
            get_cards_request(&c, Some("SMC-B")),
            read_certificate_request(&c, "h1", "C.ENC", "RSA"),
            sign_request(&c, "h1", "r1", b"mail", b"\x30\x00"),
            decrypt_request(&c, "h1", "RSA", b"\x30\x00"),
            verify_request(&c, b"\x30\x00"),
            pin_status_request(&c, "h1", "PIN.SMC"),
        ] {
            parse_body(&r, |root| {
                let cx = xml::child(&root, CCTX, "Context").expect("a context");
                assert_eq!(
                    xml::child_text(&cx, CONN, "MandantId").as_deref(),
                    Some("Praxis <A>")
                );
            });
        }
        let sign = sign_request(&c, "h1", "r1", b"mail", b"\x30\x00");
        parse_body(&sign, |root| {
            let data = xml::find(&root, DSS, "Base64Data").unwrap();
            assert_eq!(data.attribute("MimeType"), Some(SIGN_MIME_TYPE));
            assert_eq!(xml::unb64(data.text().unwrap()).unwrap(), b"mail");
            let attr = root
                .descendants()
                .find(|n| n.tag_name().name() == "CMSAttribute")
                .unwrap();
            assert_eq!(xml::unb64(attr.text().unwrap()).unwrap(), b"\x30\x00");
        });
    }

    #[test]
    fn answers_are_read() {
        let cards = format!(
            "<e:GetCardsResponse xmlns:e=\"{EVT}\" xmlns:c=\"{CONN}\" xmlns:k=\"{CARD}\" xmlns:m=\"{CARDCMN}\">\
<c:Status><c:Result>OK</c:Result></c:Status><k:Cards><k:Card><c:CardHandle>h1</c:CardHandle>\
<m:CardType>SMC-B</m:CardType><m:Iccsn>80276001</m:Iccsn><k:CardHolderName>Praxis A</k:CardHolderName></k:Card></k:Cards></e:GetCardsResponse>"
        );
        parse_body(&cards, |b| {
            let c = read_cards(b).unwrap();
            assert_eq!(c.len(), 1);
            assert_eq!(
                (
                    c[0].handle.as_str(),
                    c[0].card_type.as_str(),
                    c[0].iccsn.as_str()
                ),
                ("h1", "SMC-B", "80276001")
            );
        });
        let verdict = format!(
            "<s:VerifyDocumentResponse xmlns:s=\"{SIG}\" xmlns:c=\"{CONN}\" xmlns:g=\"{}\"><c:Status><c:Result>Warning</c:Result>\
<g:Error><g:Trace><g:Code>4115</g:Code></g:Trace></g:Error></c:Status><s:VerificationResult><s:HighLevelResult>INVALID</s:HighLevelResult>\
<s:TimestampType>SYSTEM_TIMESTAMP</s:TimestampType><s:Timestamp>2026-01-01T00:00:00Z</s:Timestamp></s:VerificationResult></s:VerifyDocumentResponse>",
            xml::GERROR
        );
        parse_body(&verdict, |b| {
            assert_eq!(
                read_verdict(b).unwrap(),
                Verdict {
                    result: HighLevel::Invalid,
                    code: Some(4115)
                }
            );
        });
        parse_body(&cards, |b| {
            assert!(read_verdict(b).is_err(), "the wrong answer is refused")
        });
    }
}
