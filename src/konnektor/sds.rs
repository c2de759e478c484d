//! The Konnektor's service directory (`connector.sds`, ServiceDirectory v3.1): which
//! services in which versions at which TLS endpoints. kim-cm reads it at the first
//! call and again after a transport error (gemSpec_CM_KOMLE 3.9: the directory is
//! not static), and checks the versions it needs. AuthSignatureService is optional:
//! only the Account Manager's JWT needs it (A_19457-02), so a Konnektor without it
//! still signs and encrypts mail.

use std::collections::HashMap;

use super::xml::{self, SDS, SI};
use crate::http::url::HttpsUrl;

/// A service kim-cm calls, by its name in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Event,
    Certificate,
    Signature,
    Encryption,
    Card,
    /// ExternalAuthenticate (A_19457-02); optional.
    AuthSignature,
}

impl Service {
    /// The `Name` in the directory.
    pub fn name(self) -> &'static str {
        match self {
            Service::Event => "EventService",
            Service::Certificate => "CertificateService",
            Service::Signature => "SignatureService",
            Service::Encryption => "EncryptionService",
            Service::Card => "CardService",
            Service::AuthSignature => "AuthSignatureService",
        }
    }

    /// The major.minor of the interface kim-cm speaks (docs/konnektor.md); the
    /// directory must offer a version starting with it.
    pub fn version(self) -> &'static str {
        match self {
            Service::Event => "7.2",
            Service::Certificate => "6.0",
            Service::Signature => "7.5",
            Service::Encryption => "6.1",
            Service::Card => "8.1",
            Service::AuthSignature => "7.4",
        }
    }

    /// The services every mail needs: without one of them the Konnektor cannot be
    /// used at all.
    const REQUIRED: [Service; 5] = [
        Service::Event,
        Service::Certificate,
        Service::Signature,
        Service::Encryption,
        Service::Card,
    ];

    /// Every service kim-cm reads from the directory.
    const ALL: [Service; 6] = [
        Service::Event,
        Service::Certificate,
        Service::Signature,
        Service::Encryption,
        Service::Card,
        Service::AuthSignature,
    ];
}

/// Where each service is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub urls: HashMap<Service, HttpsUrl>,
    /// A_17464: ECC needs SignatureService >= 7.4.1 and EncryptionService >= 6.1.1.
    pub ecc: bool,
}

/// Parses `connector.sds`. Every required service must be listed in its version
/// with an `https` endpoint, or the Konnektor cannot be used: the error names it.
/// An optional service that is missing is simply absent from `urls`.
pub fn parse(text: &str) -> Result<Endpoints, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("not XML: {e}"))?;
    let root = doc.root_element();
    if !xml::is(&root, SDS, "ConnectorServices") {
        return Err("not a ConnectorServices document".into());
    }
    let info = xml::child(&root, SI, "ServiceInformation")
        .ok_or("no ServiceInformation in the service directory")?;
    let mut urls = HashMap::new();
    let mut versions: HashMap<Service, Vec<String>> = HashMap::new();
    for service in xml::children(&info, SI, "Service") {
        let Some(which) = Service::ALL
            .into_iter()
            .find(|s| service.attribute("Name") == Some(s.name()))
        else {
            continue;
        };
        let Some(list) = xml::child(&service, SI, "Versions") else {
            continue;
        };
        for v in xml::children(&list, SI, "Version") {
            let number = v.attribute("Version").unwrap_or("").to_string();
            if !(number == which.version() || number.starts_with(&format!("{}.", which.version())))
            {
                continue;
            }
            let Some(location) =
                xml::child(&v, SI, "EndpointTLS").and_then(|e| e.attribute("Location"))
            else {
                continue;
            };
            let url =
                HttpsUrl::parse(location).map_err(|e| format!("{} {number}: {e}", which.name()))?;
            urls.insert(which, url);
            versions.entry(which).or_default().push(number);
        }
    }
    if let Some(missing) = Service::REQUIRED
        .into_iter()
        .find(|s| !urls.contains_key(s))
    {
        return Err(format!(
            "the Konnektor offers no {} {}.x over TLS; kim-cm needs it (docs/konnektor.md)",
            missing.name(),
            missing.version()
        ));
    }
    let at_least = |s: Service, min: [u32; 3]| {
        versions
            .get(&s)
            .is_some_and(|vs| vs.iter().any(|v| parts(v) >= min))
    };
    let ecc = at_least(Service::Signature, [7, 4, 1]) && at_least(Service::Encryption, [6, 1, 1]);
    Ok(Endpoints { urls, ecc })
}

fn parts(v: &str) -> [u32; 3] {
    let mut out = [0; 3];
    for (i, p) in v.split('.').take(3).enumerate() {
        out[i] = p.parse().unwrap_or(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sds(services: &[(&str, &str)]) -> String {
        let list: String = services
            .iter()
            .map(|(name, version)| {
                format!(
                    "<si:Service Name=\"{name}\"><si:Abstract>x</si:Abstract><si:Versions>\
<si:Version TargetNamespace=\"urn:x\" Version=\"{version}\"><si:Abstract>x</si:Abstract>\
<si:EndpointTLS Location=\"https://konnektor.praxis:443/ws/{name}\"/></si:Version></si:Versions></si:Service>"
                )
            })
            .collect();
        format!(
            "<sds:ConnectorServices xmlns:sds=\"{SDS}\" xmlns:si=\"{SI}\"><sds:TLSMandatory>true</sds:TLSMandatory>\
<si:ServiceInformation>{list}</si:ServiceInformation></sds:ConnectorServices>"
        )
    }

    const FULL: [(&str, &str); 5] = [
        ("EventService", "7.2.0"),
        ("CertificateService", "6.0.1"),
        ("SignatureService", "7.5.5"),
        ("EncryptionService", "6.1.1"),
        ("CardService", "8.1.2"),
    ];

    #[test]
    fn every_needed_service_is_found_with_its_endpoint() {
        let e = parse(&sds(&FULL)).unwrap();
        assert_eq!(e.urls[&Service::Signature].path, "/ws/SignatureService");
        assert_eq!(e.urls[&Service::Event].host, "konnektor.praxis");
        assert!(e.ecc);
        // AuthSignatureService is optional
        assert!(!e.urls.contains_key(&Service::AuthSignature));
        let mut with_auth = FULL.to_vec();
        with_auth.push(("AuthSignatureService", "7.4.1"));
        let e = parse(&sds(&with_auth)).unwrap();
        assert_eq!(
            e.urls[&Service::AuthSignature].path,
            "/ws/AuthSignatureService"
        );
    }

    #[test]
    fn a_missing_or_too_old_service_is_named() {
        let mut old = FULL;
        old[3] = ("EncryptionService", "6.0.0");
        let err = parse(&sds(&old)).unwrap_err();
        assert!(err.contains("EncryptionService 6.1.x"), "{err}");
        let err = parse(&sds(&FULL[..4])).unwrap_err();
        assert!(err.contains("CardService"), "{err}");
        assert!(parse("<x/>").is_err());
    }
}
