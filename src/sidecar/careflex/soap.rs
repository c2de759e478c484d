//! CareFlex's SOAP messages, written and read without a SOAP stack: the two
//! requests as the seed shows them (only the wrapper element is qualified, in
//! `http://n4.de/careflex` for `NoIncidentRequest` and in
//! `http://n4.de/careflex/2.0` for `NewIncidentRequest`; its children are
//! unqualified), every value escaped; the answers read by namespace and local
//! name, never by prefix (the service answers with `SOAP-ENV` and `ns3`), with
//! text trimmed (the seed's `incidentId`s are wrapped in newlines).

use roxmltree::{Document, Node};
use time::Date;
use zeroize::Zeroizing;

use super::input::{Employee, Incident};
use crate::konnektor::xml::escape;

pub const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// `NoIncidentRequest`'s namespace (v1).
pub const NS_V1: &str = "http://n4.de/careflex";
/// `NewIncidentRequest`'s namespace (v2).
pub const NS_V2: &str = "http://n4.de/careflex/2.0";
/// The longest fault text or row message kept.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// `YYYY-MM-DD` (xs:date).
pub fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn envelope(prefix: &str, ns: &str, body: &str) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV}\" xmlns:{prefix}=\"{ns}\">\
<soapenv:Header/><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    ))
}

fn el(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(value));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn opt(out: &mut String, name: &str, value: &Option<String>) {
    if let Some(v) = value {
        el(out, name, v);
    }
}

/// `NoIncidentRequest` (the empty report of a month).
pub fn no_incident_request(
    careflex_id: &str,
    apitoken: &str,
    created_at: Date,
) -> Zeroizing<String> {
    let mut b = Zeroizing::new(String::from("<car:NoIncidentRequest>"));
    el(&mut b, "careflexId", careflex_id);
    el(&mut b, "apitoken", apitoken);
    el(&mut b, "createdAt", &date_text(created_at));
    b.push_str("</car:NoIncidentRequest>");
    envelope("car", NS_V1, &b)
}

fn employee(out: &mut String, e: &Employee) {
    out.push_str("<employee>");
    opt(out, "title", &e.title);
    el(out, "firstName", &e.first_name);
    el(out, "lastName", &e.last_name);
    el(out, "birthday", &date_text(e.birthday));
    el(out, "sex", &e.sex);
    out.push_str("<address>");
    el(out, "street", &e.address.street);
    el(out, "houseNumber", &e.address.house_number);
    opt(out, "addressSuffix", &e.address.address_suffix);
    el(out, "zipCode", &e.address.zip_code);
    el(out, "city", &e.address.city);
    el(out, "country", &e.address.country);
    out.push_str("</address><job>");
    el(out, "employmentSite", &e.job.employment_site);
    el(out, "employmentStatus", &e.job.employment_status);
    el(
        out,
        "startOfEmployment",
        &date_text(e.job.start_of_employment),
    );
    el(out, "personnelNumber", &e.job.personnel_number);
    el(
        out,
        "management",
        if e.job.management { "true" } else { "false" },
    );
    out.push_str("</job>");
    let c = &e.contact;
    if c.email_business.is_some() || c.mobile_business.is_some() || c.landline_business.is_some() {
        out.push_str("<contact>");
        opt(out, "emailBusiness", &c.email_business);
        opt(out, "mobileBusiness", &c.mobile_business);
        opt(out, "landlineBusiness", &c.landline_business);
        out.push_str("</contact>");
    }
    out.push_str("</employee>");
}

/// `NewIncidentRequest` with `incidents` in order (row `i` of the answer is
/// `incidents[i]`): `plainIncident` without master data, `newIncident` with.
pub fn new_incident_request(
    careflex_id: &str,
    apitoken: &str,
    incidents: &[&Incident],
) -> Zeroizing<String> {
    let mut b = Zeroizing::new(String::from("<ns:NewIncidentRequest>"));
    el(&mut b, "careflexId", careflex_id);
    el(&mut b, "apitoken", apitoken);
    b.push_str("<incidentList>");
    for i in incidents {
        let tag = if i.employee.is_some() {
            "newIncident"
        } else {
            "plainIncident"
        };
        b.push('<');
        b.push_str(tag);
        b.push('>');
        opt(&mut b, "externalId", &i.external_id);
        el(&mut b, "employeeId", &i.employee_id);
        el(&mut b, "validFrom", &date_text(i.valid_from));
        el(&mut b, "createdAt", &date_text(i.created_at));
        el(&mut b, "type", i.kind.code());
        if let Some(e) = &i.employee {
            employee(&mut b, e);
        }
        b.push_str("</");
        b.push_str(tag);
        b.push('>');
    }
    b.push_str("</incidentList></ns:NewIncidentRequest>");
    envelope("ns", NS_V2, &b)
}

/// A SOAP 1.1 Fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: String,
    pub string: String,
}

/// One row of `incidentResponseList`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowResult {
    /// 0-based, in the order of the request.
    pub row_number: usize,
    pub incident_id: Option<String>,
    pub employee_id: Option<String>,
    pub external_id: Option<String>,
    /// As echoed (may differ from what was sent).
    pub kind: Option<String>,
    /// `incidentError{code, message}`.
    pub error: Option<(String, String)>,
}

/// `NewIncidentResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncidentResponse {
    pub import_id: String,
    pub rows: Vec<RowResult>,
}

fn short(s: &str) -> String {
    let t = s.split_whitespace().collect::<Vec<_>>().join(" ");
    t.chars().take(MAX_MESSAGE_CHARS).collect()
}

fn text(n: &Node<'_, '_>) -> String {
    n.text().unwrap_or("").trim().to_string()
}

/// The child element named `name` (any namespace: children are unqualified,
/// but a qualified one is read as well).
fn child<'a, 'i>(n: &Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn child_text(n: &Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name).map(|c| text(&c)).filter(|t| !t.is_empty())
}

/// The first element in the SOAP Body, or why there is none.
fn body_element<'a, 'i>(doc: &'a Document<'i>) -> Result<Node<'a, 'i>, String> {
    let env = doc.root_element();
    if env.tag_name().name() != "Envelope" || env.tag_name().namespace() != Some(SOAP_ENV) {
        return Err("the answer is not a SOAP 1.1 envelope".into());
    }
    let body = env
        .children()
        .find(|c| {
            c.is_element()
                && c.tag_name().name() == "Body"
                && c.tag_name().namespace() == Some(SOAP_ENV)
        })
        .ok_or("the SOAP envelope has no Body")?;
    body.children()
        .find(Node::is_element)
        .ok_or_else(|| "the SOAP Body is empty".to_string())
}

/// The Fault in `body`, if the answer is one.
pub fn fault(body: &[u8]) -> Option<Fault> {
    let text = std::str::from_utf8(body).ok()?;
    let doc = Document::parse(text).ok()?;
    let f = body_element(&doc).ok()?;
    if f.tag_name().name() != "Fault" || f.tag_name().namespace() != Some(SOAP_ENV) {
        return None;
    }
    Some(Fault {
        code: short(&child_text(&f, "faultcode").unwrap_or_default()),
        string: short(&child_text(&f, "faultstring").unwrap_or_default()),
    })
}

/// The answer element `ns`:`name`, a Fault, or why the answer is neither.
fn answer<'a, 'i>(
    doc: &'a Document<'i>,
    ns: &str,
    name: &str,
) -> Result<Result<Node<'a, 'i>, Fault>, String> {
    let n = body_element(doc)?;
    if n.tag_name().name() == "Fault" && n.tag_name().namespace() == Some(SOAP_ENV) {
        return Ok(Err(Fault {
            code: short(&child_text(&n, "faultcode").unwrap_or_default()),
            string: short(&child_text(&n, "faultstring").unwrap_or_default()),
        }));
    }
    if n.tag_name().name() != name || n.tag_name().namespace() != Some(ns) {
        return Err(format!(
            "expected {name} in {ns}, got {} in {}",
            n.tag_name().name(),
            n.tag_name().namespace().unwrap_or("no namespace")
        ));
    }
    Ok(Ok(n))
}

fn parse(body: &[u8]) -> Result<Document<'_>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_string())?;
    Document::parse(text).map_err(|e| format!("the answer is not XML: {e}"))
}

/// Reads the answer to `NewIncidentRequest`.
pub fn read_new_incident_response(
    body: &[u8],
) -> Result<Result<NewIncidentResponse, Fault>, String> {
    let doc = parse(body)?;
    let n = match answer(&doc, NS_V2, "NewIncidentResponse")? {
        Ok(n) => n,
        Err(f) => return Ok(Err(f)),
    };
    let import_id = child_text(&n, "importId").ok_or("the answer has no importId")?;
    let mut rows = Vec::new();
    if let Some(list) = child(&n, "incidentResponseList") {
        for i in list
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == "incident")
        {
            let row_number = child_text(&i, "rowNumber")
                .and_then(|r| r.parse().ok())
                .ok_or("an incident of the answer has no rowNumber")?;
            let error = child(&i, "incidentError").map(|e| {
                (
                    short(&child_text(&e, "code").unwrap_or_default()),
                    short(&child_text(&e, "message").unwrap_or_default()),
                )
            });
            rows.push(RowResult {
                row_number,
                incident_id: child_text(&i, "incidentId"),
                employee_id: child_text(&i, "employeeId"),
                external_id: child_text(&i, "externalId"),
                kind: child_text(&i, "type"),
                error,
            });
        }
    }
    Ok(Ok(NewIncidentResponse {
        import_id: short(&import_id),
        rows,
    }))
}

/// Reads the answer to `NoIncidentRequest` (an empty `NoIncidentResponse`).
pub fn read_no_incident_response(body: &[u8]) -> Result<Result<(), Fault>, String> {
    let doc = parse(body)?;
    Ok(answer(&doc, NS_V1, "NoIncidentResponse")?.map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's answer, verbatim.
    const SEED_ANSWER: &str = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
<SOAP-ENV:Header/>
<SOAP-ENV:Body>
<ns3:NewIncidentResponse xmlns:ns3="http://n4.de/careflex/2.0">
<importId>550a80b5-de70-4078-860e-c03d75b1dc49</importId>
<incidentResponseList>
<incident>
<rowNumber>0</rowNumber>
<incidentId>
3b2d4888-a25c-4c8b-9818-aa6b428bd2de
</incidentId>
<employeeId>4711</employeeId>
<type>RSTxxx</type>
</incident>
<incident>
<rowNumber>1</rowNumber>
<incidentId>
3615b6af-e2f2-4dcf-a945-d9ad8546228b
</incidentId>
<employeeId>4811</employeeId>
<type>NEU</type>
<incidentError>
<code>422</code>
<message>The validation failed: The content of the field 'type' is invalid with the reason: invalid value</message>
</incidentError>
</incident>
</incidentResponseList>
</ns3:NewIncidentResponse>
</SOAP-ENV:Body>
</SOAP-ENV:Envelope>"#;

    #[test]
    fn the_seeds_answer_is_read_trimmed_and_by_namespace() {
        let r = read_new_incident_response(SEED_ANSWER.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(r.import_id, "550a80b5-de70-4078-860e-c03d75b1dc49");
        assert_eq!(r.rows.len(), 2);
        assert_eq!(
            r.rows[0].incident_id.as_deref(),
            Some("3b2d4888-a25c-4c8b-9818-aa6b428bd2de")
        );
        assert_eq!(r.rows[0].kind.as_deref(), Some("RSTxxx"));
        let (code, msg) = r.rows[1].error.clone().unwrap();
        assert_eq!(code, "422");
        assert!(msg.contains("field 'type' is invalid"));
        // the same in the v1 namespace is not this answer
        let wrong = SEED_ANSWER.replace("careflex/2.0", "careflex");
        assert!(read_new_incident_response(wrong.as_bytes()).is_err());
        let none = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Header/><SOAP-ENV:Body><ns3:NoIncidentResponse xmlns:ns3="http://n4.de/careflex"/></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;
        assert_eq!(read_no_incident_response(none.as_bytes()).unwrap(), Ok(()));
        let f = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>too
            many</faultstring></s:Fault></s:Body></s:Envelope>"#;
        assert_eq!(
            read_no_incident_response(f.as_bytes()).unwrap(),
            Err(Fault {
                code: "s:Client".into(),
                string: "too many".into()
            })
        );
    }

    #[test]
    fn requests_qualify_only_the_wrapper_and_escape_values() {
        let x = no_incident_request("09ce<3580", "tok&en", time::macros::date!(2020 - 08 - 24));
        let doc = Document::parse(&x).unwrap();
        let n = body_element(&doc).unwrap();
        assert_eq!(n.tag_name().namespace(), Some(NS_V1));
        let id = child(&n, "careflexId").unwrap();
        assert_eq!(id.tag_name().namespace(), None);
        assert_eq!(text(&id), "09ce<3580");
        assert_eq!(child_text(&n, "apitoken").as_deref(), Some("tok&en"));
        assert_eq!(child_text(&n, "createdAt").as_deref(), Some("2020-08-24"));
    }
}
