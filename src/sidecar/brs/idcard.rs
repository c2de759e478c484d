//! The SOSI system ID card (DGWS 1.0.1, SOSI ID card 1.0.1): built and signed
//! with the organisation's VOCES/FOCES key, exchanged at the SOSI STS for a
//! card the STS signed, and cached until shortly before it expires.
//!
//! The card is a `saml:Assertion id="IDCard"` with the CVR in `NameID`
//! (`Format="medcom:cvrnumber"`), holder-of-key confirmation naming the
//! signature, `Conditions` back-dated five minutes against clock skew as Seal
//! does, the `IDCardData` attributes (type `system`, authentication level 3
//! for VOCES/FOCES, the SHA-1 of the certificate as `OCESCertHash`) and the
//! `SystemLog` attributes (IT system, CareProviderID as CVR, CareProviderName).
//! The attribute names are literal strings, not QNames (SOSI).
//!
//! The STS's answer is kept as the very bytes the STS sent: the card's
//! signature covers them, and any re-serialisation could break it. It is
//! checked to stand on its own (every namespace declared inside it), so that
//! it can be embedded byte for byte.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::hash::{hash, MessageDigest};
use time::OffsetDateTime;

use super::c14n::El;
use super::dgws::{self, Fault, SoapHttp};
use super::dsig::{self, SigningKey};
use crate::http::url::HttpsUrl;
use crate::sidecar::clock::Clock;
use crate::store::{Store, StoreError};
use rusqlite::OptionalExtension;

pub const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const WST: &str = "http://schemas.xmlsoap.org/ws/2005/02/trust";
pub const WSA: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
/// The card's id, which its signature refers to.
pub const CARD_ID: &str = "IDCard";
pub const SIGNATURE_ID: &str = "OCESSignature";
/// Seal back-dates a card's start against clock skew by this much.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// The life kim-cm asks for (the STS decides; at most 24 hours).
pub const REQUESTED_LIFE: Duration = Duration::from_secs(24 * 3600);
/// The STS's SOAPAction (trifork/unsealed `WSHelper`).
pub const STS_ACTION: &str = "Issue";
/// What the card's `Issuer` says before the STS replaces it.
pub const ISSUER: &str = "kim-cm";

/// Who the system card is for.
#[derive(Debug, Clone)]
pub struct Organisation {
    pub cvr: String,
    pub name: String,
    pub it_system: String,
}

fn saml(name: &str) -> El {
    El::new("saml", SAML, name)
}

fn attribute(name: &str, value: &str) -> El {
    saml("Attribute")
        .attr("Name", name)
        .child(saml("AttributeValue").text(value))
}

/// What a system card says.
#[derive(Debug, Clone)]
pub struct CardFields {
    pub org: Organisation,
    pub card_id: String,
    pub issuer: String,
    pub issued: OffsetDateTime,
    pub not_before: OffsetDateTime,
    pub not_on_or_after: OffsetDateTime,
    /// Base64 SHA-1 of the organisation's certificate (`sosi:OCESCertHash`).
    pub cert_hash: String,
}

/// Base64 SHA-1 of a certificate, as `sosi:OCESCertHash` has it.
pub fn cert_hash(der: &[u8]) -> String {
    hash(MessageDigest::sha1(), der)
        .map(|h| B64.encode(h))
        .unwrap_or_default()
}

/// The organisation's own card for the STS, signed with its key, in
/// canonical form.
pub fn build_system_card(
    org: &Organisation,
    key: &SigningKey,
    now: OffsetDateTime,
    card_id: &str,
) -> Result<String, String> {
    let fields = CardFields {
        org: org.clone(),
        card_id: card_id.to_string(),
        issuer: ISSUER.to_string(),
        issued: now,
        not_before: now - BACKDATE,
        not_on_or_after: now + REQUESTED_LIFE,
        cert_hash: cert_hash(&key.cert_der()),
    };
    sign_card(&fields, key)
}

/// A system card with `fields`, signed with `key` (the organisation's, or
/// the STS's when it issues one), in canonical form.
pub fn sign_card(fields: &CardFields, key: &SigningKey) -> Result<String, String> {
    let org = &fields.org;
    let mut card = saml("Assertion")
        .attr("IssueInstant", &super::utc_text(fields.issued))
        .attr("Version", "2.0")
        .attr("id", CARD_ID)
        .child(saml("Issuer").text(&fields.issuer))
        .child(
            saml("Subject")
                .child(
                    saml("NameID")
                        .attr("Format", "medcom:cvrnumber")
                        .text(&org.cvr),
                )
                .child(
                    saml("SubjectConfirmation")
                        .child(
                            saml("ConfirmationMethod")
                                .text("urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"),
                        )
                        .child(
                            saml("SubjectConfirmationData").child(
                                El::new("ds", dsig::DS, "KeyInfo")
                                    .child(El::new("ds", dsig::DS, "KeyName").text(SIGNATURE_ID)),
                            ),
                        ),
                ),
        )
        .child(
            saml("Conditions")
                .attr("NotBefore", &super::utc_text(fields.not_before))
                .attr("NotOnOrAfter", &super::utc_text(fields.not_on_or_after)),
        )
        .child(
            saml("AttributeStatement")
                .attr("id", "IDCardData")
                .child(attribute("sosi:IDCardID", &fields.card_id))
                .child(attribute("sosi:IDCardVersion", "1.0.1"))
                .child(attribute("sosi:IDCardType", "system"))
                .child(attribute("sosi:AuthenticationLevel", "3"))
                .child(attribute("sosi:OCESCertHash", &fields.cert_hash)),
        )
        .child(
            saml("AttributeStatement")
                .attr("id", "SystemLog")
                .child(attribute("medcom:ITSystemName", &org.it_system))
                .child(
                    saml("Attribute")
                        .attr("Name", "medcom:CareProviderID")
                        .attr("NameFormat", "medcom:cvrnumber")
                        .child(saml("AttributeValue").text(&org.cvr)),
                )
                .child(attribute("medcom:CareProviderName", &org.name)),
        );
    dsig::sign_enveloped(&mut card, CARD_ID, SIGNATURE_ID, key)?;
    Ok(card.canonical())
}

/// What a card says, read from its XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardInfo {
    pub cvr: String,
    pub card_type: String,
    pub level: String,
    pub not_before: OffsetDateTime,
    pub not_on_or_after: OffsetDateTime,
    pub cert_hash: String,
    pub issuer: String,
    pub care_provider: String,
    pub care_provider_name: String,
    pub it_system: String,
}

/// The value of the card attribute `name` (a literal string in SOSI).
pub fn card_attribute(card: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    card.descendants()
        .find(|n| n.tag_name().name() == "Attribute" && n.attribute("Name") == Some(name))
        .and_then(|a| {
            a.children()
                .find(|c| c.tag_name().name() == "AttributeValue")
        })
        .and_then(|v| v.text())
        .map(|t| t.trim().to_string())
}

impl CardInfo {
    /// Reads the `Assertion` element `card`.
    pub fn read(card: roxmltree::Node<'_, '_>) -> Result<CardInfo, String> {
        let find = |name: &str| {
            card.descendants()
                .find(|n| n.tag_name().name() == name && n.tag_name().namespace() == Some(SAML))
        };
        let conditions = find("Conditions").ok_or("the card has no Conditions")?;
        let time = |a: &str| {
            conditions
                .attribute(a)
                .and_then(super::parse_time)
                .ok_or_else(|| format!("the card's Conditions/@{a} is not a time"))
        };
        Ok(CardInfo {
            cvr: find("NameID")
                .and_then(|n| n.text())
                .map(|t| t.trim().to_string())
                .ok_or("the card has no NameID")?,
            card_type: card_attribute(card, "sosi:IDCardType").unwrap_or_default(),
            level: card_attribute(card, "sosi:AuthenticationLevel").unwrap_or_default(),
            not_before: time("NotBefore")?,
            not_on_or_after: time("NotOnOrAfter")?,
            cert_hash: card_attribute(card, "sosi:OCESCertHash").unwrap_or_default(),
            issuer: find("Issuer")
                .and_then(|n| n.text())
                .map(|t| t.trim().to_string())
                .unwrap_or_default(),
            care_provider: card_attribute(card, "medcom:CareProviderID").unwrap_or_default(),
            care_provider_name: card_attribute(card, "medcom:CareProviderName").unwrap_or_default(),
            it_system: card_attribute(card, "medcom:ITSystemName").unwrap_or_default(),
        })
    }
}

/// A card the STS issued: its bytes and what it says.
#[derive(Debug, Clone)]
pub struct IssuedCard {
    pub xml: Arc<str>,
    pub info: CardInfo,
}

/// The WS-Trust request for `card` (WS-Trust 2005/02 as the SOSI STS takes it).
pub fn sts_request(card: &str, now: OffsetDateTime) -> String {
    let body = El::new("wst", WST, "RequestSecurityToken")
        .attr("Context", "www.sosi.dk")
        .child(El::new("wst", WST, "TokenType").text("urn:oasis:names:tc:SAML:2.0:assertion:"))
        .child(
            El::new("wst", WST, "RequestType")
                .text("http://schemas.xmlsoap.org/ws/2005/02/trust/Issue"),
        )
        .child(El::new("wst", WST, "Claims").raw(card))
        .child(El::new("wst", WST, "Issuer").child(El::new("wsa", WSA, "Address").text(ISSUER)));
    dgws::envelope(vec![dgws::security(now, None)], body)
}

/// Why no card came from the STS.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("the ID card could not be signed: {0}")]
    Sign(String),
    #[error("the SOSI STS refused the ID card ({0}): check that [brs] certificate_file is a VOCES/FOCES certificate of the federation sts_url belongs to (test or production), that key_file is its key, and that cvr matches it")]
    Refused(String),
    #[error("the SOSI STS at {url} answered HTTP {status} without a SOAP fault: check sts_url")]
    Status { url: String, status: u16 },
    #[error("the SOSI STS's answer holds no usable ID card ({0}); nothing was sent to NSP")]
    Answer(String),
    #[error("the SOSI STS could not be asked: {0}")]
    Http(#[from] crate::http::client::HttpError),
}

/// Takes the STS-signed card out of an STS answer, byte for byte.
pub fn card_from_sts_answer(body: &str) -> Result<IssuedCard, String> {
    let doc = roxmltree::Document::parse(body).map_err(|e| format!("not XML: {e}"))?;
    let card = doc
        .descendants()
        .find(|n| {
            n.tag_name().name() == "Assertion"
                && n.tag_name().namespace() == Some(SAML)
                && n.attribute("id") == Some(CARD_ID)
        })
        .ok_or("no saml:Assertion with id=\"IDCard\"")?;
    let xml = &body[card.range()];
    // embedded byte for byte, so it must declare every namespace it uses
    let alone = roxmltree::Document::parse(xml).map_err(|_| {
        "the card uses namespaces declared outside it, so it cannot be embedded unchanged"
            .to_string()
    })?;
    let info = CardInfo::read(alone.root_element())?;
    Ok(IssuedCard {
        xml: Arc::from(xml),
        info,
    })
}

/// Where cards come from: the organisation's key and the STS.
pub struct CardSource {
    pub http: SoapHttp,
    pub sts_url: HttpsUrl,
    pub key: SigningKey,
    pub org: Organisation,
    /// When set, a card must carry a valid signature by this certificate.
    pub sts_certificate: Option<openssl::x509::X509>,
}

/// Checks that `card` is signed by `sts` and unchanged since.
pub fn check_sts_signature(card: &IssuedCard, sts: &openssl::x509::X509) -> Result<(), String> {
    let doc = roxmltree::Document::parse(&card.xml).map_err(|e| e.to_string())?;
    let signer = dsig::verify_enveloped(&doc, CARD_ID)
        .map_err(|e| format!("its signature does not hold: {e}"))?;
    if signer.to_der().ok() != sts.to_der().ok() {
        return Err(format!(
            "it is signed by {}, not by the certificate in sts_certificate_file",
            dsig::subject_text(&signer)
        ));
    }
    Ok(())
}

impl CardSource {
    /// A fresh card from the STS.
    pub async fn issue(&self, now: OffsetDateTime) -> Result<IssuedCard, CardError> {
        let own = build_system_card(&self.org, &self.key, now, &super::new_uuid())
            .map_err(CardError::Sign)?;
        let request = sts_request(&own, now);
        tracing::debug!(url = %self.sts_url, cvr = %self.org.cvr, "asking the SOSI STS for an ID card");
        let (status, body) = self.http.post(&self.sts_url, STS_ACTION, request).await?;
        let text = String::from_utf8_lossy(&body);
        if let Some(f) = Fault::parse(&text) {
            return Err(CardError::Refused(f.describe()));
        }
        if !status.is_success() {
            return Err(CardError::Status {
                url: self.sts_url.to_string(),
                status: status.as_u16(),
            });
        }
        let card = card_from_sts_answer(&text).map_err(CardError::Answer)?;
        if let Some(sts) = &self.sts_certificate {
            check_sts_signature(&card, sts).map_err(CardError::Answer)?;
        }
        if card.info.cvr != self.org.cvr {
            return Err(CardError::Answer(format!(
                "it is for CVR {}, not {}",
                card.info.cvr, self.org.cvr
            )));
        }
        tracing::info!(
            issuer = %card.info.issuer,
            not_on_or_after = %super::utc_text(card.info.not_on_or_after),
            "the SOSI STS issued an ID card"
        );
        Ok(card)
    }
}

/// Where a card outlives the process: `state.sqlite`, keyed by CVR and STS,
/// so that a `kim-cm brs` run every few minutes does not ask the STS each
/// time. The card is a bearer token until it expires; it sits beside the
/// rest of kim-cm's state, no more exposed than the organisation's key.
const CARD_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS brs_card (
    cvr     TEXT NOT NULL,
    sts_url TEXT NOT NULL,
    xml     TEXT NOT NULL,
    stored  INTEGER NOT NULL,
    PRIMARY KEY (cvr, sts_url)
);";

/// The card in use: fetched when there is none or it is about to expire,
/// dropped when a service refuses it; kept in the store when there is one.
pub struct CardCache {
    source: CardSource,
    clock: Arc<dyn Clock>,
    renew_before: Duration,
    card: tokio::sync::Mutex<Option<IssuedCard>>,
    issued: std::sync::atomic::AtomicU32,
    store: Option<Arc<Store>>,
}

impl CardCache {
    pub fn new(source: CardSource, clock: Arc<dyn Clock>, renew_before: Duration) -> CardCache {
        CardCache {
            source,
            clock,
            renew_before,
            card: tokio::sync::Mutex::new(None),
            issued: std::sync::atomic::AtomicU32::new(0),
            store: None,
        }
    }

    /// Keeps the card in `store` too.
    pub fn with_store(mut self, store: Arc<Store>) -> Result<CardCache, StoreError> {
        store.transaction(|tx| tx.execute_batch(CARD_SCHEMA))?;
        self.store = Some(store);
        Ok(self)
    }

    fn usable(&self, c: &IssuedCard, now: OffsetDateTime) -> bool {
        c.info.not_on_or_after - self.renew_before > now
    }

    /// The stored card, if there is one.
    fn load(&self) -> Option<IssuedCard> {
        let store = self.store.as_ref()?;
        let xml: Option<String> = store
            .read(|c| {
                c.query_row(
                    "SELECT xml FROM brs_card WHERE cvr = ?1 AND sts_url = ?2",
                    rusqlite::params![self.source.org.cvr, self.source.sts_url.to_string()],
                    |r| r.get(0),
                )
                .optional()
            })
            .ok()
            .flatten();
        let xml = xml?;
        let doc = roxmltree::Document::parse(&xml).ok()?;
        let info = CardInfo::read(doc.root_element()).ok()?;
        Some(IssuedCard {
            xml: Arc::from(xml.as_str()),
            info,
        })
    }

    fn save(&self, card: Option<&IssuedCard>) {
        let Some(store) = &self.store else {
            return;
        };
        let (cvr, sts) = (self.source.org.cvr.clone(), self.source.sts_url.to_string());
        let now = self.clock.now().unix_timestamp();
        let done = store.transaction(|tx| match card {
            Some(c) => tx
                .execute(
                    "INSERT INTO brs_card (cvr, sts_url, xml, stored) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (cvr, sts_url) DO UPDATE SET xml = ?3, stored = ?4",
                    rusqlite::params![cvr, sts, &*c.xml, now],
                )
                .map(drop),
            None => tx
                .execute(
                    "DELETE FROM brs_card WHERE cvr = ?1 AND sts_url = ?2",
                    rusqlite::params![cvr, sts],
                )
                .map(drop),
        });
        if let Err(e) = done {
            // the card still works in this run; the next one asks the STS
            tracing::warn!("the ID card could not be kept: {e}");
        }
    }

    /// The cached card while it has more than `renew_before` left, else a new one.
    pub async fn card(&self) -> Result<IssuedCard, CardError> {
        let mut slot = self.card.lock().await;
        let now = self.clock.now();
        if slot.is_none() {
            *slot = self.load();
        }
        if let Some(c) = slot.as_ref() {
            if self.usable(c, now) {
                return Ok(c.clone());
            }
            tracing::debug!("the ID card expires soon; getting a new one");
        }
        let fresh = self.source.issue(now).await?;
        self.issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.save(Some(&fresh));
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets `used` (a service refused it), unless it was replaced already.
    pub async fn invalidate(&self, used: &IssuedCard) {
        let mut slot = self.card.lock().await;
        if slot
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.xml, &used.xml))
        {
            *slot = None;
            self.save(None);
        }
    }

    /// How many cards this cache got from the STS.
    pub fn issued(&self) -> u32 {
        self.issued.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn cvr(&self) -> &str {
        &self.source.org.cvr
    }
}
