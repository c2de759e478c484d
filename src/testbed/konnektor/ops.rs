//! The operations of the simulated Konnektor: each reads its request element
//! (the shapes of docs/konnektor.md, each its schema's element), checks the call
//! context and the card, does the cryptography with the crate's own CMS code and
//! writes the response body. No I/O here.

use openssl::x509::{X509NameRef, X509Ref, X509};
use roxmltree::Node;
use time::OffsetDateTime;

use super::soap::{self, *};
use super::{ecies, Faults, KonnektorSim, LoadedCard};
use crate::cms::{self, KeyTransport, SealError, SignatureStatus};
use crate::crypto::crypt::Crypt;
use crate::crypto::software::KeyPair;

/// gemSpec_Kon: the call context names an unknown MandantId.
pub const UNKNOWN_MANDANT: u32 = 4004;
/// gemSpec_Kon: unknown ClientSystemId (for that Mandant).
pub const UNKNOWN_CLIENT_SYSTEM: u32 = 4005;
/// gemSpec_Kon: unknown WorkplaceId (for that Mandant and client system).
pub const UNKNOWN_WORKPLACE: u32 = 4006;
/// gemSpec_Kon "Karte nicht als gesteckt identifiziert": the card was pulled
/// (`removed_cards` in faults.json).
pub const CARD_NOT_INSERTED: u32 = 4008;
/// gemSpec_Kon "Kartenhandle ungültig": no card with this handle, or one of
/// another Mandant (a card is only visible to its own Mandant).
pub const INVALID_CARD_HANDLE: u32 = 4101;
/// The card's PIN is not verified (`pin_not_verified` in faults.json). Not
/// confirmed against gemSpec_Kon's table; kim-cm treats every card fault alike
/// (docs/konnektor.md, "Faults").
pub const PIN_NOT_VERIFIED: u32 = 4085;
/// gemSpec_Kon "Syntaxfehler": a request the simulator does not understand.
pub const SYNTAX_ERROR: u32 = 4000;
/// The document could not be decrypted with the card's key (not addressed to it,
/// or corrupted). Not confirmed against gemSpec_Kon's table.
pub const DECRYPTION_FAILED: u32 = 4155;
/// gemSpec_CM_KOMLE Tab_Verm_Sig_Prüf: integrity violated.
pub const SIG_INTEGRITY_VIOLATED: u32 = 4115;
/// Tab_Verm_Sig_Prüf: no signature.
pub const SIG_NONE: u32 = 4253;
/// Tab_Verm_Sig_Prüf: wrong format.
pub const SIG_WRONG_FORMAT: u32 = 4112;
/// Tab_Verm_Sig_Prüf: certificate path invalid.
pub const SIG_CERT_PATH_INVALID: u32 = 4206;

/// A refused call: the fault's GERROR code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u32,
    pub text: String,
}

fn refuse(code: u32, text: impl Into<String>) -> Refusal {
    Refusal {
        code,
        text: text.into(),
    }
}

fn syntax(text: impl Into<String>) -> Refusal {
    refuse(SYNTAX_ERROR, text)
}

/// What an answered call reports for the log line.
pub struct Answer {
    pub body: String,
    pub card: Option<String>,
    /// The GERROR code carried in a Warning status (VerifyDocument), if any.
    pub code: Option<u32>,
}

fn required<'a, 'i>(n: Node<'a, 'i>, ns: &str, name: &str) -> Result<Node<'a, 'i>, Refusal> {
    child(n, ns, name).ok_or_else(|| syntax(format!("{name} is missing")))
}

fn required_b64(n: Node<'_, '_>, ns: &str, name: &str) -> Result<Vec<u8>, Refusal> {
    unb64(&text(required(n, ns, name)?)).ok_or_else(|| syntax(format!("{name} is not base64")))
}

/// Checks `CCTX:Context` against the configured contexts: 4004, 4005, 4006.
fn context(sim: &KonnektorSim, req: Node<'_, '_>) -> Result<String, Refusal> {
    let ctx = required(req, NS_CCTX, "Context")?;
    let m = child_text(ctx, NS_CONN, "MandantId").ok_or_else(|| syntax("MandantId is missing"))?;
    let c = child_text(ctx, NS_CONN, "ClientSystemId")
        .ok_or_else(|| syntax("ClientSystemId is missing"))?;
    let w =
        child_text(ctx, NS_CONN, "WorkplaceId").ok_or_else(|| syntax("WorkplaceId is missing"))?;
    let contexts = &sim.config.contexts;
    let of_mandant: Vec<_> = contexts.iter().filter(|x| x.mandant == m).collect();
    if of_mandant.is_empty() {
        return Err(refuse(UNKNOWN_MANDANT, "Ungültige Mandanten-ID"));
    }
    let of_client: Vec<_> = of_mandant
        .into_iter()
        .filter(|x| x.client_system == c)
        .collect();
    if of_client.is_empty() {
        return Err(refuse(UNKNOWN_CLIENT_SYSTEM, "Ungültige Clientsystem-ID"));
    }
    if !of_client.iter().any(|x| x.workplace == w) {
        return Err(refuse(UNKNOWN_WORKPLACE, "Ungültige Arbeitsplatz-ID"));
    }
    Ok(m)
}

/// The card with `handle` for `mandant`, inserted; with `pin`, its PIN verified.
fn card<'s>(
    sim: &'s KonnektorSim,
    faults: &Faults,
    mandant: &str,
    handle: &str,
    pin: bool,
) -> Result<&'s LoadedCard, Refusal> {
    let c = sim
        .cards
        .iter()
        .find(|c| c.card.handle == handle && c.card.mandant == mandant)
        .ok_or_else(|| refuse(INVALID_CARD_HANDLE, "Kartenhandle ungültig"))?;
    if faults.removed_cards.iter().any(|h| h == handle) {
        return Err(refuse(
            CARD_NOT_INSERTED,
            "Karte nicht als gesteckt identifiziert",
        ));
    }
    if pin && faults.pin_not_verified.iter().any(|h| h == handle) {
        return Err(refuse(PIN_NOT_VERIFIED, "PIN nicht verifiziert"));
    }
    Ok(c)
}

fn card_handle(n: Node<'_, '_>) -> Result<String, Refusal> {
    Ok(text(required(n, NS_CONN, "CardHandle")?))
}

/// The CMSAttribute of the `RecipientEmailsAttribute` property among `props`
/// (`dss:Property` elements): the DER of one Attribute.
fn recipient_emails_attribute(props: &[Node<'_, '_>]) -> Result<Vec<u8>, Refusal> {
    let value = props
        .iter()
        .filter(|p| {
            child_text(**p, NS_DSS, "Identifier").as_deref() == Some(RECIPIENT_EMAILS_PROPERTY)
        })
        .find_map(|p| child(*p, NS_DSS, "Value"))
        .ok_or_else(|| syntax("the RecipientEmailsAttribute property is missing"))?;
    // dss:Value is xs:any: the CMSAttribute element is matched by its local name
    let attr = value
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "CMSAttribute")
        .ok_or_else(|| syntax("the property has no CMSAttribute"))?;
    let der = unb64(&text(attr)).ok_or_else(|| syntax("CMSAttribute is not base64"))?;
    // one DER SEQUENCE, nothing after it
    match cms::ber::read(&der) {
        Ok((tlv, rest)) if tlv.tag == 0x30 && rest.is_empty() => Ok(der),
        _ => Err(syntax("CMSAttribute is not the DER of an Attribute")),
    }
}

/// The issuer or subject as an RFC 2253 string.
fn rfc2253(name: &X509NameRef) -> String {
    let mut parts: Vec<String> = name
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?").to_string();
            let value = String::from_utf8_lossy(e.data().as_slice()).into_owned();
            let mut v = String::new();
            for (i, ch) in value.chars().enumerate() {
                if matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
                    || (i == 0 && (ch == '#' || ch == ' '))
                {
                    v.push('\\');
                }
                v.push(ch);
            }
            format!("{key}={v}")
        })
        .collect();
    parts.reverse();
    parts.join(",")
}

fn x509_data_info(cert_ref: &str, cert: Option<&X509>) -> Result<String, Refusal> {
    let Some(cert) = cert else {
        // X509Data is optional: the card has no such certificate
        return Ok(format!(
            "<CERTCMN:X509DataInfo><CERTCMN:CertRef>{}</CERTCMN:CertRef></CERTCMN:X509DataInfo>",
            escape(cert_ref)
        ));
    };
    let der = cert
        .to_der()
        .map_err(|e| refuse(SYNTAX_ERROR, e.to_string()))?;
    let serial = cert
        .serial_number()
        .to_bn()
        .and_then(|b| b.to_dec_str().map(|s| s.to_string()))
        .unwrap_or_default();
    Ok(format!(
        "<CERTCMN:X509DataInfo><CERTCMN:CertRef>{}</CERTCMN:CertRef><CERTCMN:X509Data>\
         <CERTCMN:X509IssuerSerial><CERTCMN:X509IssuerName>{}</CERTCMN:X509IssuerName>\
         <CERTCMN:X509SerialNumber>{serial}</CERTCMN:X509SerialNumber></CERTCMN:X509IssuerSerial>\
         <CERTCMN:X509SubjectName>{}</CERTCMN:X509SubjectName>\
         <CERTCMN:X509Certificate>{}</CERTCMN:X509Certificate></CERTCMN:X509Data></CERTCMN:X509DataInfo>",
        escape(cert_ref),
        escape(&rfc2253(cert.issuer_name())),
        escape(&rfc2253(cert.subject_name())),
        b64(&der)
    ))
}

fn get_cards(sim: &KonnektorSim, faults: &Faults, req: Node<'_, '_>) -> Result<Answer, Refusal> {
    let mandant = context(sim, req)?;
    let wanted = child_text(req, NS_CARDCMN, "CardType");
    let mut cards = String::new();
    for (slot, c) in sim.cards.iter().enumerate() {
        let c = &c.card;
        if c.mandant != mandant
            || faults.removed_cards.contains(&c.handle)
            || wanted.as_deref().is_some_and(|t| t != c.card_type)
        {
            continue;
        }
        cards.push_str(&format!(
            "<CARD:Card><CONN:CardHandle>{}</CONN:CardHandle><CARDCMN:CardType>{}</CARDCMN:CardType>\
             <CARDCMN:Iccsn>{}</CARDCMN:Iccsn><CARDCMN:CtId>{}</CARDCMN:CtId><CARDCMN:SlotId>{}</CARDCMN:SlotId>\
             <CARD:InsertTime>{}</CARD:InsertTime><CARD:CardHolderName>{}</CARD:CardHolderName></CARD:Card>",
            escape(&c.handle),
            escape(&c.card_type),
            escape(&c.iccsn),
            super::CARD_TERMINAL_ID,
            slot + 1,
            sim.started,
            escape(&c.holder)
        ));
    }
    Ok(Answer {
        body: format!(
            "<EVT:GetCardsResponse>{}<CARD:Cards>{cards}</CARD:Cards></EVT:GetCardsResponse>",
            status_ok()
        ),
        card: None,
        code: None,
    })
}

fn read_card_certificate(
    sim: &KonnektorSim,
    faults: &Faults,
    req: Node<'_, '_>,
) -> Result<Answer, Refusal> {
    let handle = card_handle(req)?;
    let mandant = context(sim, req)?;
    let c = card(sim, faults, &mandant, &handle, false)?;
    let refs = children(required(req, NS_CERT, "CertRefList")?, NS_CERT, "CertRef");
    if refs.is_empty() {
        return Err(syntax("CertRefList is empty"));
    }
    let crypt = child_text(req, NS_CERT, "Crypt").unwrap_or_else(|| "RSA".into());
    if crypt != "RSA" && crypt != "ECC" {
        return Err(syntax("Crypt must be RSA or ECC"));
    }
    let rsa_encryption = !faults.rsa_encryption_unavailable.contains(&handle);
    let mut infos = String::new();
    for r in refs {
        let r = text(r);
        // the simulated cards sign with RSA only and may hold an ECC encryption
        // key; what a card does not hold is answered without X509Data
        let cert = match (crypt.as_str(), r.as_str()) {
            ("RSA", "C.ENC") => rsa_encryption.then_some(&c.encryption.cert),
            ("ECC", "C.ENC") => c.ecc_encryption.as_ref().map(|k| &k.cert),
            ("RSA", "C.SIG") => Some(&c.signing.cert),
            ("RSA", "C.AUT") => c.aut.as_ref().map(|k| &k.cert),
            (_, "C.ENC" | "C.SIG" | "C.AUT" | "C.QES") => None,
            _ => return Err(syntax("unknown CertRef")),
        };
        infos.push_str(&x509_data_info(&r, cert)?);
    }
    Ok(Answer {
        body: format!(
            "<CERT:ReadCardCertificateResponse>{}<CERTCMN:X509DataInfoList>{infos}</CERTCMN:X509DataInfoList></CERT:ReadCardCertificateResponse>",
            status_ok()
        ),
        card: Some(handle),
        code: None,
    })
}

fn sign_document(
    sim: &KonnektorSim,
    faults: &Faults,
    req: Node<'_, '_>,
) -> Result<Answer, Refusal> {
    let handle = card_handle(req)?;
    let mandant = context(sim, req)?;
    // KOM-LE-A_2020: the RSA key; the simulated cards have no other
    if let Some(crypt) = child_text(req, NS_SIG, "Crypt") {
        if crypt != "RSA" && crypt != "RSA_ECC" {
            return Err(syntax("the simulated cards sign with RSA only"));
        }
    }
    let c = card(sim, faults, &mandant, &handle, true)?;
    let requests = children(req, NS_SIG, "SignRequest");
    if requests.is_empty() {
        return Err(syntax("SignRequest is missing"));
    }
    let mut responses = String::new();
    for r in requests {
        let id = r
            .attribute("RequestID")
            .ok_or_else(|| syntax("SignRequest has no RequestID"))?;
        let inputs = required(r, NS_SIG, "OptionalInputs")?;
        if let Some(t) = child_text(inputs, NS_DSS, "SignatureType") {
            if t != CMS_TYPE {
                return Err(syntax(format!("SignatureType {t} is not supported")));
            }
        }
        if child_text(inputs, NS_SIG, "IncludeEContent").as_deref() != Some("true") {
            return Err(syntax("the simulator signs with IncludeEContent true only"));
        }
        let props = child(inputs, NS_DSS, "Properties")
            .and_then(|p| child(p, NS_DSS, "SignedProperties"))
            .map(|p| children(p, NS_DSS, "Property"))
            .unwrap_or_default();
        let attr = recipient_emails_attribute(&props)?;
        let content = required_b64(required(r, NS_SIG, "Document")?, NS_DSS, "Base64Data")?;
        let signed = cms::sign(
            &[&content],
            &c.signing.cert,
            &c.signing.key,
            &attr,
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| refuse(SYNTAX_ERROR, format!("signing failed: {e}")))?;
        responses.push_str(&format!(
            "<SIG:SignResponse RequestID=\"{}\">{}<dss:SignatureObject><dss:Base64Signature Type=\"{CMS_TYPE}\">{}</dss:Base64Signature></dss:SignatureObject></SIG:SignResponse>",
            escape(id),
            status_ok(),
            b64(&signed)
        ));
    }
    Ok(Answer {
        body: format!("<SIG:SignDocumentResponse>{responses}</SIG:SignDocumentResponse>"),
        card: Some(handle),
        code: None,
    })
}

/// VerifyDocument's verdict: HighLevelResult and, unless VALID, the reason's code.
pub fn verdict(status: Option<SignatureStatus>) -> (&'static str, Option<(u32, &'static str)>) {
    match status {
        Some(SignatureStatus::Valid) => ("VALID", None),
        Some(SignatureStatus::IntegrityViolated) => (
            "INVALID",
            Some((SIG_INTEGRITY_VIOLATED, "Integrität der Signatur verletzt")),
        ),
        Some(SignatureStatus::WrongFormat) => (
            "INVALID",
            Some((SIG_WRONG_FORMAT, "Signatur hat falsches Format")),
        ),
        Some(SignatureStatus::CertPathInvalid) => (
            "INVALID",
            Some((SIG_CERT_PATH_INVALID, "Zertifikatspfad ungültig")),
        ),
        None => ("INVALID", Some((SIG_NONE, "keine Signatur"))),
    }
}

fn verify_document(sim: &KonnektorSim, req: Node<'_, '_>) -> Result<Answer, Refusal> {
    context(sim, req)?;
    let signature = match child(req, NS_DSS, "SignatureObject")
        .and_then(|s| child(s, NS_DSS, "Base64Signature"))
    {
        Some(s) => Some(unb64(&text(s)).ok_or_else(|| syntax("Base64Signature is not base64"))?),
        None => None,
    };
    let status = signature
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(|d| cms::verify(d, &sim.trust).status);
    let (result, reason) = verdict(status);
    let status_xml = match reason {
        None => status_ok(),
        Some((code, text)) => status_warning(code, text),
    };
    Ok(Answer {
        body: format!(
            "<SIG:VerifyDocumentResponse>{status_xml}<SIG:VerificationResult><SIG:HighLevelResult>{result}</SIG:HighLevelResult>\
             <SIG:TimestampType>SYSTEM_TIMESTAMP</SIG:TimestampType><SIG:Timestamp>{}</SIG:Timestamp></SIG:VerificationResult></SIG:VerifyDocumentResponse>",
            soap::now_rfc3339()
        ),
        card: None,
        code: reason.map(|r| r.0),
    })
}

fn encrypt_document(
    sim: &KonnektorSim,
    faults: &Faults,
    req: Node<'_, '_>,
) -> Result<Answer, Refusal> {
    let mandant = context(sim, req)?;
    let keys = required(req, NS_CRYPT, "RecipientKeys")?;
    let mut certs = Vec::new();
    let mut handle = None;
    if let Some(on_card) = child(keys, NS_CRYPT, "CertificateOnCard") {
        let h = card_handle(on_card)?;
        certs.push(
            card(sim, faults, &mandant, &h, false)?
                .encryption
                .cert
                .clone(),
        );
        handle = Some(h);
    }
    for c in children(keys, NS_CRYPT, "Certificate") {
        let der = unb64(&text(c)).ok_or_else(|| syntax("Certificate is not base64"))?;
        certs.push(X509::from_der(&der).map_err(|_| syntax("Certificate is not an X.509 DER"))?);
    }
    if certs.is_empty() {
        return Err(syntax("RecipientKeys names no certificate"));
    }
    let content = required_b64(required(req, NS_CONN, "Document")?, NS_DSS, "Base64Data")?;
    let inputs = required(req, NS_CRYPT, "OptionalInputs")?;
    if let Some(t) = child_text(inputs, NS_CRYPT, "EncryptionType") {
        if t != CMS_TYPE {
            return Err(syntax(format!("EncryptionType {t} is not supported")));
        }
    }
    let props = child(inputs, NS_CRYPT, "UnprotectedProperties")
        .map(|p| children(p, NS_DSS, "Property"))
        .unwrap_or_default();
    let attr = recipient_emails_attribute(&props)?;
    let refs: Vec<_> = certs.iter().map(|c| c.as_ref()).collect();
    let ecc = sim.config.ecc;
    // RSA-OAEP for RSA certificates, the card's ECIES for ECC ones (A_17464: only
    // a Konnektor with ECC support takes them)
    let wrap = |cek: &[u8], cert: &X509Ref| -> Result<KeyTransport, SealError> {
        match Crypt::of(cert) {
            Some(Crypt::Ecc) if ecc => ecies::wrap(cek, cert),
            Some(Crypt::Ecc) => Err(SealError::UnusableCertificate(format!(
                "{:?}: an ECC certificate, and this Konnektor does not support ECC",
                cert.subject_name()
            ))),
            _ => cms::encrypt::rsa_oaep(cek, cert),
        }
    };
    let enveloped = cms::encrypt_with(&[&content], &refs, &attr, &wrap)
        .map_err(|e| syntax(format!("encryption failed: {e}")))?;
    Ok(Answer {
        body: format!(
            "<CRYPT:EncryptDocumentResponse>{}<CONN:Document><dss:Base64Data MimeType=\"application/pkcs7-mime\">{}</dss:Base64Data></CONN:Document></CRYPT:EncryptDocumentResponse>",
            status_ok(),
            b64(&enveloped)
        ),
        card: handle,
        code: None,
    })
}

fn decrypt_document(
    sim: &KonnektorSim,
    faults: &Faults,
    req: Node<'_, '_>,
) -> Result<Answer, Refusal> {
    let mandant = context(sim, req)?;
    let key = required(req, NS_CRYPT, "PrivateKeyOnCard")?;
    let handle = card_handle(key)?;
    if let Some(r) = child_text(key, NS_CRYPT, "KeyReference") {
        if r != "C.ENC" {
            return Err(syntax(format!("KeyReference {r} is not C.ENC")));
        }
    }
    // absent: RSA, as before ECC; RSA_ECC: whichever key the document is for
    let crypt = child_text(key, NS_CRYPT, "Crypt").unwrap_or_else(|| "RSA".into());
    let wanted: &[Crypt] = match crypt.as_str() {
        "RSA" => &[Crypt::Rsa],
        "ECC" => &[Crypt::Ecc],
        "RSA_ECC" => &[Crypt::Rsa, Crypt::Ecc],
        _ => return Err(syntax("Crypt must be RSA, ECC or RSA_ECC")),
    };
    if wanted.contains(&Crypt::Ecc) && !sim.config.ecc {
        return Err(syntax("this Konnektor does not support ECC"));
    }
    let c = card(sim, faults, &mandant, &handle, true)?;
    let der = required_b64(required(req, NS_CONN, "Document")?, NS_DSS, "Base64Data")?;
    let rsa_offered = !faults.rsa_encryption_unavailable.contains(&handle);
    let key_of = |crypt: &Crypt| -> Option<(&KeyPair, Crypt)> {
        match crypt {
            Crypt::Rsa => rsa_offered.then_some((&c.encryption, Crypt::Rsa)),
            Crypt::Ecc => c.ecc_encryption.as_ref().map(|k| (k, Crypt::Ecc)),
        }
    };
    // the named key must be the one the document has a RecipientInfo for
    let Some((pair, kind)) = wanted
        .iter()
        .filter_map(key_of)
        .find(|(k, _)| cms::addressed_to(&der, &k.cert))
    else {
        return Err(refuse(
            DECRYPTION_FAILED,
            format!("das Dokument ist nicht für den {crypt}-Schlüssel der Karte verschlüsselt"),
        ));
    };
    let plain = match kind {
        Crypt::Rsa => cms::decrypt_in_place(der, &pair.cert, &pair.key),
        Crypt::Ecc => cms::decrypt_in_place_with(der, &pair.cert, &|alg, ek| {
            ecies::unwrap(alg, ek, &pair.key)
        }),
    }
    .map_err(|_| refuse(DECRYPTION_FAILED, "Entschlüsselung fehlgeschlagen"))?;
    Ok(Answer {
        body: format!(
            "<CRYPT:DecryptDocumentResponse>{}<CONN:Document><dss:Base64Data>{}</dss:Base64Data></CONN:Document></CRYPT:DecryptDocumentResponse>",
            status_ok(),
            b64(&plain.content)
        ),
        card: Some(handle),
        code: None,
    })
}

fn get_pin_status(
    sim: &KonnektorSim,
    faults: &Faults,
    req: Node<'_, '_>,
) -> Result<Answer, Refusal> {
    let mandant = context(sim, req)?;
    let handle = card_handle(req)?;
    let pin = child_text(req, NS_CARDCMN, "PinTyp").ok_or_else(|| syntax("PinTyp is missing"))?;
    if pin != "PIN.SMC" && pin != "PIN.CH" && pin != "PIN.QES" {
        return Err(syntax(format!("PinTyp {pin} is not known")));
    }
    card(sim, faults, &mandant, &handle, false)?;
    let body = if faults.pin_not_verified.contains(&handle) {
        "<CARD:PinStatus>VERIFIABLE</CARD:PinStatus><CARD:LeftTries>3</CARD:LeftTries>"
    } else {
        "<CARD:PinStatus>VERIFIED</CARD:PinStatus>"
    };
    Ok(Answer {
        body: format!(
            "<CARD:GetPinStatusResponse>{}{body}</CARD:GetPinStatusResponse>",
            status_ok()
        ),
        card: Some(handle),
        code: None,
    })
}

/// The hash ExternalAuthenticate takes with RSASSA-PSS: SHA-256 (gemSpec_Krypt
/// A_19644), 32 bytes.
pub const AUTH_HASH_LEN: usize = 32;

/// ExternalAuthenticate: the card's AUT key signs the given hash, RSASSA-PSS
/// (SHA-256, MGF1-SHA-256, salt 32) by default or as `SIG:SignatureSchemes` asks,
/// RSASSA-PKCS1-v1_5. The PIN must be verified, as for signing.
fn external_authenticate(
    sim: &KonnektorSim,
    faults: &Faults,
    req: Node<'_, '_>,
) -> Result<Answer, Refusal> {
    let handle = card_handle(req)?;
    let mandant = context(sim, req)?;
    let mut scheme = "RSASSA-PSS".to_string();
    if let Some(inputs) = child(req, NS_SIG_AUTH, "OptionalInputs") {
        if let Some(t) = child_text(inputs, NS_DSS, "SignatureType") {
            if t != RSA_SIGNATURE_TYPE {
                return Err(syntax(format!(
                    "SignatureType {t}: the simulated cards sign with RSA only"
                )));
            }
        }
        if let Some(s) = child_text(inputs, NS_SIG_AUTH, "SignatureSchemes") {
            scheme = s;
        }
    }
    let c = card(sim, faults, &mandant, &handle, true)?;
    let hash = required_b64(
        required(req, NS_SIG_AUTH, "BinaryString")?,
        NS_DSS,
        "Base64Data",
    )?;
    let key = &c
        .aut
        .as_ref()
        .ok_or_else(|| syntax("the card holds no authentication key (C.AUT)"))?
        .key;
    let signature = match scheme.as_str() {
        "RSASSA-PSS" => {
            if hash.len() != AUTH_HASH_LEN {
                return Err(syntax(format!(
                    "BinaryString has {} bytes, not the {AUTH_HASH_LEN} of a SHA-256 hash",
                    hash.len()
                )));
            }
            crate::crypto::jwt::token::sign_hash(key, &hash)
        }
        "RSASSA-PKCS1-v1_5" => pkcs1_sign(key, &hash),
        other => return Err(syntax(format!("SignatureSchemes {other} is not known"))),
    }
    .map_err(|e| syntax(format!("signing failed: {e}")))?;
    Ok(Answer {
        body: format!(
            "<ASIG:ExternalAuthenticateResponse>{}<dss:SignatureObject><dss:Base64Signature Type=\"{RSA_SIGNATURE_TYPE}\">{}</dss:Base64Signature></dss:SignatureObject></ASIG:ExternalAuthenticateResponse>",
            status_ok(),
            b64(&signature)
        ),
        card: Some(handle),
        code: None,
    })
}

/// RSASSA-PKCS1-v1_5 over `data` as given (the caller's DigestInfo or hash).
fn pkcs1_sign(
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    data: &[u8],
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(key)?;
    ctx.sign_init()?;
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1)?;
    let mut sig = Vec::new();
    ctx.sign_to_vec(data, &mut sig)?;
    Ok(sig)
}

/// Answers `op` for the request element `req` (already checked to be `op`'s).
pub fn answer(
    sim: &KonnektorSim,
    faults: &Faults,
    op: Operation,
    req: Node<'_, '_>,
) -> Result<Answer, Refusal> {
    match op {
        Operation::GetCards => get_cards(sim, faults, req),
        Operation::ReadCardCertificate => read_card_certificate(sim, faults, req),
        Operation::SignDocument => sign_document(sim, faults, req),
        Operation::VerifyDocument => verify_document(sim, req),
        Operation::EncryptDocument => encrypt_document(sim, faults, req),
        Operation::DecryptDocument => decrypt_document(sim, faults, req),
        Operation::GetPinStatus => get_pin_status(sim, faults, req),
        Operation::ExternalAuthenticate => external_authenticate(sim, faults, req),
    }
}
