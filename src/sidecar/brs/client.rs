//! The two NSP operations over DGWS: `treatmentRelation` (BRS) and
//! `notificationQuery` (the notification service), each with the cached ID
//! card, and the refusals as sentences an operator can act on.
//!
//! A service that refuses the card (`expired_idcard`, `invalid_idcard`) costs
//! it: a fresh one is fetched from the STS and the call is made once more
//! (seed-services §4.5/§4.10). Every other fault is final: `not_authorized`
//! and `security_level_failed` are configuration, `processing_problem` is the
//! request, `missing_required_header` is a defect; repeating would not help.

use time::OffsetDateTime;

use super::c14n::El;
use super::config::Followup;
use super::dgws::{self, Fault, SoapHttp};
use super::idcard::{CardCache, CardError, IssuedCard};
use super::ids::{OrgId, OrgKind};
use crate::http::url::HttpsUrl;

pub const BRS_NS: &str = "http://nsi.dk/fmki20110601/brs";
pub const NOTIFICATION_NS: &str = "http://nsi.dk/fmki20110601/notification";
/// SOAPActions: not published; NSP's CXF services dispatch on the body
/// element, and an empty action is what generic DGWS clients send.
pub const BRS_ACTION: &str = "";
pub const NOTIFICATION_ACTION: &str = "";
/// The notification service returns at most this many a call.
pub const PAGE_SIZE: usize = 100;

/// Why a call gave no answer; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum NspError {
    #[error("{0}")]
    Card(#[from] CardError),
    #[error("{}", fault_sentence(.service, .fault, .cvr, *.after_fresh_card))]
    Fault {
        service: &'static str,
        fault: Fault,
        cvr: String,
        after_fresh_card: bool,
    },
    #[error("{service} answered HTTP {status} without a SOAP fault: check the URL in [brs] and try again later")]
    Status { service: &'static str, status: u16 },
    #[error("{service}'s answer is not the documented one ({why}); nothing was stored")]
    Answer { service: &'static str, why: String },
    #[error("{service} could not be asked: {source}")]
    Http {
        service: &'static str,
        source: crate::http::client::HttpError,
    },
}

/// The sentence for a DGWS fault.
fn fault_sentence(service: &str, f: &Fault, cvr: &str, after_fresh_card: bool) -> String {
    let said = if f.text.is_empty() {
        String::new()
    } else {
        format!(" ({})", f.text)
    };
    match f.code.as_deref() {
        Some("processing_problem") => format!(
            "{service} could not process the request{said} [processing_problem]: usually a value it does not accept; check the values given, retrying the same request will not help"
        ),
        Some("missing_required_header") => format!(
            "{service} says a security or medcom header is missing{said} [missing_required_header]: something between kim-cm and NSP strips SOAP headers, or this is a kim-cm defect; report it"
        ),
        Some("security_level_failed") => format!(
            "{service} requires a higher security level than the ID card's{said} [security_level_failed]: BRS takes only level-3 system cards from the SOSI STS; check that sts_url is the SOSI STS of this NSP environment"
        ),
        Some("invalid_idcard") => format!(
            "{service} refused the ID card as invalid{}{said} [invalid_idcard]: check that sts_url is the STS this NSP environment trusts (test and production cards are not interchangeable)",
            if after_fresh_card { ", also a freshly issued one" } else { "" }
        ),
        Some("expired_idcard") => format!(
            "{service} says the ID card has expired{}{said} [expired_idcard]: check this computer's clock (NSP compares the card's validity and the message timestamp with its own time)",
            if after_fresh_card { ", also a freshly issued one" } else { "" }
        ),
        Some("not_authorized") => format!(
            "{service} refused CVR {cvr}{said} [not_authorized]: the CVR is not whitelisted for this service; ask the NSP operator to whitelist it (retrying will not help)"
        ),
        Some(other) => format!("{service} refused the request [{other}]{said}"),
        None => format!("{service} answered with a SOAP fault: {}", f.describe()),
    }
}

/// A `treatmentRelation` request (the guide's table, in its order).
#[derive(Debug, Clone)]
pub struct RelationRequest {
    pub organisation: OrgId,
    pub patient_cpr: String,
    pub professional_cpr: String,
    /// None: the card's validity period (the guide's suggestion).
    pub lookup: Option<(OffsetDateTime, OffsetDateTime)>,
    pub time_limit: OffsetDateTime,
    pub external_reference_id: String,
    pub queryable_cvr: String,
    pub acceptable: Vec<String>,
    pub followup: Followup,
    pub authorisation_id: String,
    pub provider_name: String,
    pub provider_version: String,
    pub provider_vendor: String,
}

fn brs(name: &str) -> El {
    El::new("", BRS_NS, name)
}

impl RelationRequest {
    /// `treatmentRelationRequestBody`, timestamps `+hh:mm` in `tz`.
    pub fn body(&self, card: &IssuedCard, tz: &jiff::tz::TimeZone) -> El {
        let (start, end) = self
            .lookup
            .unwrap_or((card.info.not_before, card.info.not_on_or_after));
        let mut acceptable = brs("AcceptableRelations");
        for r in &self.acceptable {
            acceptable.push(brs("Relation").text(r));
        }
        let mut followup = brs("FollowupRelations");
        match &self.followup {
            Followup::All => followup.push(brs("All").text("All")),
            Followup::Relations(list) => {
                for r in list {
                    followup.push(brs("Relation").text(r));
                }
            }
        }
        brs("treatmentRelationRequestBody")
            .child(
                brs("OrganisationIdentifier")
                    .child(brs(self.organisation.kind.element()).text(&self.organisation.value)),
            )
            .child(brs("PatientCpr").text(&self.patient_cpr))
            .child(brs("HealthProfessionalCpr").text(&self.professional_cpr))
            .child(
                brs("RelationLookupTimeInterval")
                    .child(brs("start").text(&super::local_text(start, tz)))
                    .child(brs("end").text(&super::local_text(end, tz))),
            )
            .child(brs("TimeLimit").text(&super::local_text(self.time_limit, tz)))
            .child(brs("ExternalReferenceId").text(&self.external_reference_id))
            .child(brs("QueryableCvr").text(&self.queryable_cvr))
            .child(acceptable)
            .child(followup)
            .child(brs("AuthorisationIdentifier").text(&self.authorisation_id))
            .child(
                brs("ServiceProvider")
                    .child(brs("Name").text(&self.provider_name))
                    .child(brs("Version").text(&self.provider_version))
                    .child(brs("Vendor").text(&self.provider_vendor)),
            )
    }
}

/// BRS's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationAnswer {
    pub sufficient: bool,
    pub actual: Vec<String>,
    pub followup_ordered: bool,
    pub unique_reference_id: String,
    pub external_reference_id: String,
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn text_of(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
}

fn relations(n: Option<roxmltree::Node<'_, '_>>) -> Vec<String> {
    n.map(|a| {
        a.children()
            .filter(|c| c.tag_name().name() == "Relation")
            .filter_map(|c| c.text().map(|t| t.trim().to_string()))
            .collect()
    })
    .unwrap_or_default()
}

fn boolean(s: Option<String>) -> Option<bool> {
    match s.as_deref() {
        Some("true") | Some("1") => Some(true),
        Some("false") | Some("0") => Some(false),
        _ => None,
    }
}

impl RelationAnswer {
    /// Reads `treatmentRelationResponseBody` by local names (the guide's
    /// example binds its namespaces to arbitrary prefixes).
    pub fn parse(body: &str) -> Result<RelationAnswer, String> {
        let doc = roxmltree::Document::parse(body).map_err(|e| format!("not XML: {e}"))?;
        let r = doc
            .descendants()
            .find(|n| n.tag_name().name() == "treatmentRelationResponseBody")
            .ok_or("no treatmentRelationResponseBody")?;
        Ok(RelationAnswer {
            sufficient: boolean(text_of(r, "SufficientRelation"))
                .ok_or("SufficientRelation is not true or false")?,
            actual: relations(child(r, "ActualRelations")),
            followup_ordered: boolean(text_of(r, "FollowupOrdered"))
                .ok_or("FollowupOrdered is not true or false")?,
            unique_reference_id: text_of(r, "UniqueReferenceId").unwrap_or_default(),
            external_reference_id: text_of(r, "ExternalReferenceId").unwrap_or_default(),
        })
    }
}

/// One notification, with what an operator needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub serial: i64,
    pub kind: String,
    pub external_reference_id: String,
    pub queryable_cvr: String,
    pub unique_id: String,
    pub organisation: String,
    pub patient_cpr: String,
    pub professional_cpr: String,
    pub time_limit: String,
    pub actual_relations: Vec<String>,
    /// The `Notifications` element as the service sent it.
    pub xml: String,
}

impl Notification {
    /// Every `Notifications` of a `NotificationQueryResponseBody`.
    pub fn parse_page(body: &str) -> Result<Vec<Notification>, String> {
        let doc = roxmltree::Document::parse(body).map_err(|e| format!("not XML: {e}"))?;
        let r = doc
            .descendants()
            .find(|n| n.tag_name().name() == "NotificationQueryResponseBody")
            .ok_or("no NotificationQueryResponseBody")?;
        let mut out = Vec::new();
        for n in r
            .children()
            .filter(|c| c.tag_name().name() == "Notifications")
        {
            let serial = text_of(n, "SerialNumber")
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or("a notification without a numeric SerialNumber")?;
            let alarm = n.children().find(|c| {
                c.is_element() && c.tag_name().name().starts_with("TreatmentRelationAlarm")
            });
            let followup = alarm.and_then(|a| child(a, "TreatmentRelationFollowup"));
            let relayer = followup.and_then(|f| child(f, "TreatmentRelationRelayerData"));
            let organisation = relayer
                .and_then(|r| child(r, "OrganisationIdentifier"))
                .and_then(|o| o.children().find(|c| c.is_element()))
                .map(|o| {
                    let value = o.text().unwrap_or("").trim();
                    match OrgKind::by_element(o.tag_name().name()) {
                        Some(k) => format!("{} {value}", k.word()),
                        None => format!("{} {value}", o.tag_name().name()),
                    }
                })
                .unwrap_or_default();
            let get = |n: Option<roxmltree::Node<'_, '_>>, name: &str| {
                n.and_then(|n| text_of(n, name)).unwrap_or_default()
            };
            out.push(Notification {
                serial,
                kind: text_of(n, "Type").unwrap_or_default(),
                external_reference_id: text_of(n, "ExternalReferenceId").unwrap_or_default(),
                queryable_cvr: text_of(n, "QueryableCvr").unwrap_or_default(),
                unique_id: get(followup, "UniqueId"),
                organisation,
                patient_cpr: get(relayer, "PatientCpr"),
                professional_cpr: get(relayer, "HealthProfessionalCpr"),
                time_limit: get(followup, "TimeLimit"),
                actual_relations: relations(alarm.and_then(|a| child(a, "ActualRelations"))),
                xml: body[n.range()].to_string(),
            });
        }
        Ok(out)
    }
}

/// kim-cm's client of BRS and the notification service.
pub struct NspClient {
    pub http: SoapHttp,
    pub cards: CardCache,
    pub brs_url: HttpsUrl,
    pub notification_url: HttpsUrl,
    pub tz: jiff::tz::TimeZone,
}

impl NspClient {
    /// One DGWS call with the card, and once more with a fresh card if the
    /// service refused the card; the answer's body.
    async fn call(
        &self,
        service: &'static str,
        url: &HttpsUrl,
        action: &str,
        body: &dyn Fn(&IssuedCard) -> El,
    ) -> Result<String, NspError> {
        let mut fresh = false;
        loop {
            let card = self.cards.card().await?;
            let (envelope, message_id) =
                dgws::request(&card.xml, body(&card), self.http.clock.now());
            tracing::debug!(service, %url, message_id = %message_id, "DGWS request");
            let (status, answer) = self
                .http
                .post(url, action, envelope)
                .await
                .map_err(|source| NspError::Http { service, source })?;
            let text = String::from_utf8_lossy(&answer).into_owned();
            if let Some(fault) = Fault::parse(&text) {
                let card_refused = matches!(
                    fault.code.as_deref(),
                    Some("expired_idcard") | Some("invalid_idcard")
                );
                if card_refused && !fresh {
                    tracing::info!(
                        service,
                        fault = %fault.describe(),
                        "the ID card was refused; getting a fresh one from the STS and trying once more"
                    );
                    self.cards.invalidate(&card).await;
                    fresh = true;
                    continue;
                }
                return Err(NspError::Fault {
                    service,
                    fault,
                    cvr: self.cards.cvr().to_string(),
                    after_fresh_card: fresh,
                });
            }
            if !status.is_success() {
                return Err(NspError::Status {
                    service,
                    status: status.as_u16(),
                });
            }
            return Ok(text);
        }
    }

    /// `treatmentRelation`.
    pub async fn relation(&self, req: &RelationRequest) -> Result<RelationAnswer, NspError> {
        let tz = self.tz.clone();
        let text = self
            .call("BRS", &self.brs_url, BRS_ACTION, &|card| {
                req.body(card, &tz)
            })
            .await?;
        RelationAnswer::parse(&text).map_err(|why| NspError::Answer {
            service: "BRS",
            why,
        })
    }

    /// `notificationQuery` from `serial` on: at most [`PAGE_SIZE`], sorted.
    pub async fn notifications(&self, serial: i64) -> Result<Vec<Notification>, NspError> {
        let body = |_: &IssuedCard| {
            El::new("", NOTIFICATION_NS, "NotificationQueryRequestBody")
                .child(El::new("", NOTIFICATION_NS, "Type").text("BRS"))
                .child(El::new("", NOTIFICATION_NS, "SerialNumber").text(&serial.to_string()))
        };
        let text = self
            .call(
                "the notification service",
                &self.notification_url,
                NOTIFICATION_ACTION,
                &body,
            )
            .await?;
        Notification::parse_page(&text).map_err(|why| NspError::Answer {
            service: "the notification service",
            why,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_answers_are_read() {
        let a = RelationAnswer::parse(r#"<?xml version='1.0' encoding='UTF-8'?>
<ns6:treatmentRelationResponseBody xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd" xmlns:ns6="http://nsi.dk/fmki20110601/brs">
  <ns6:SufficientRelation>false</ns6:SufficientRelation>
  <ns6:ActualRelations>
    <ns6:Relation>C</ns6:Relation>
  </ns6:ActualRelations>
  <ns6:FollowupOrdered>true</ns6:FollowupOrdered>
  <ns6:UniqueReferenceId>0044ba5a-8378-4d33-b128-03522ed26e85</ns6:UniqueReferenceId>
  <ns6:ExternalReferenceId>e4a4ab3f-3f7f-4e5d-a311-5942c14856b8</ns6:ExternalReferenceId>
</ns6:treatmentRelationResponseBody>"#).unwrap();
        assert!(!a.sufficient && a.followup_ordered);
        assert_eq!(a.actual, ["C"]);
        assert_eq!(
            a.unique_reference_id,
            "0044ba5a-8378-4d33-b128-03522ed26e85"
        );
        let page = Notification::parse_page(r#"<ns5:NotificationQueryResponseBody xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:ns5="http://nsi.dk/fmki20110601/notification">
  <ns5:Notifications>
    <ns5:Type>BRS</ns5:Type>
    <ns5:SerialNumber>1027</ns5:SerialNumber>
    <ns5:ExternalReferenceId>e4a4ab3f-3f7f-4e5d-a311-5942c14856b8</ns5:ExternalReferenceId>
    <ns5:QueryableCvr>31908574</ns5:QueryableCvr>
    <TreatmentRelationAlarmType:TreatmentRelationAlarmType xmlns:TreatmentRelationAlarmType="http://nsi.dk/fmki20110601/brs" xmlns="http://nsi.dk/fmki20110601/brs">
      <TreatmentRelationFollowup>
        <TreatmentRelationRelayerData>
          <OrganisationIdentifier><DoctorOrganisationIdentifier>132435</DoctorOrganisationIdentifier></OrganisationIdentifier>
          <PatientCpr>0101601951</PatientCpr>
          <HealthProfessionalCpr>0101601803</HealthProfessionalCpr>
        </TreatmentRelationRelayerData>
        <TimeLimit>2013-09-30T11:04:37+02:00</TimeLimit>
        <RequestSource><TreatmentRelationRequestBody><PatientCpr>x</PatientCpr></TreatmentRelationRequestBody></RequestSource>
        <UniqueId>0044ba5a-8378-4d33-b128-03522ed26e85</UniqueId>
      </TreatmentRelationFollowup>
      <ActualRelations><Relation>C</Relation></ActualRelations>
    </TreatmentRelationAlarmType:TreatmentRelationAlarmType>
  </ns5:Notifications>
</ns5:NotificationQueryResponseBody>"#).unwrap();
        assert_eq!(page.len(), 1);
        let n = &page[0];
        assert_eq!((n.serial, n.kind.as_str()), (1027, "BRS"));
        assert_eq!(n.organisation, "ydernummer 132435");
        assert_eq!(n.patient_cpr, "0101601951");
        assert_eq!(n.actual_relations, ["C"]);
        assert_eq!(n.time_limit, "2013-09-30T11:04:37+02:00");
        assert!(n.xml.starts_with("<ns5:Notifications>"));
    }
}
