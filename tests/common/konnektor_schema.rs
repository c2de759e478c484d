//! Validates the Konnektor simulator's request log against gematik's published
//! schemas (`../shared/konnektor-api`) with the real `xmllint`: every request
//! envelope strictly, each body element against its service's schema, and the
//! answers and the service directory alike.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The SOAP 1.1 envelope, minimal and our own: Header and Body children are
/// validated strictly against the imported schemas; the Fault's detail too.
const ENVELOPE_XSD: &str = r###"<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
           xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
           targetNamespace="http://schemas.xmlsoap.org/soap/envelope/"
           elementFormDefault="unqualified" attributeFormDefault="unqualified">
  <xs:element name="Envelope">
    <xs:complexType>
      <xs:sequence>
        <xs:element ref="soap:Header" minOccurs="0"/>
        <xs:element ref="soap:Body"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="Header">
    <xs:complexType>
      <xs:sequence>
        <xs:any namespace="##other" processContents="strict" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="Body">
    <xs:complexType>
      <xs:choice>
        <xs:element ref="soap:Fault"/>
        <xs:any namespace="##other" processContents="strict" maxOccurs="unbounded"/>
      </xs:choice>
    </xs:complexType>
  </xs:element>
  <xs:element name="Fault">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="faultcode" type="xs:QName"/>
        <xs:element name="faultstring" type="xs:string"/>
        <xs:element name="faultactor" type="xs:anyURI" minOccurs="0"/>
        <xs:element name="detail" minOccurs="0">
          <xs:complexType>
            <xs:sequence>
              <xs:any namespace="##other" processContents="strict" minOccurs="0" maxOccurs="unbounded"/>
            </xs:sequence>
          </xs:complexType>
        </xs:element>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
</xs:schema>
"###;

/// Imports the envelope, the six services of docs/konnektor.md (AuthSignatureService
/// 7.4 with SignatureService 7.4's schema), the service directory and the error
/// schema. CardService 8.1.3 comes before EventService,
/// whose own import of the same namespace (CardService.xsd) is then skipped.
const WRAPPER_XSD: &str = r###"<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:kim-cm:test:konnektor-wrapper">
  <xs:import namespace="http://schemas.xmlsoap.org/soap/envelope/" schemaLocation="soap-envelope.xsd"/>
  <xs:import namespace="http://ws.gematik.de/conn/CardService/v8.1" schemaLocation="conn/CardService_v8_1_3.xsd"/>
  <xs:import namespace="http://ws.gematik.de/conn/EventService/v7.2" schemaLocation="conn/EventService.xsd"/>
  <xs:import namespace="http://ws.gematik.de/conn/CertificateService/v6.0" schemaLocation="conn/CertificateService_v6_0_2.xsd"/>
  <xs:import namespace="http://ws.gematik.de/conn/SignatureService/v7.5" schemaLocation="conn/SignatureService_V7_5_6.xsd"/>
  <xs:import namespace="http://ws.gematik.de/conn/SignatureService/v7.4" schemaLocation="conn/SignatureService_V7_4_4.xsd"/>
  <xs:import namespace="http://ws.gematik.de/conn/EncryptionService/v6.1" schemaLocation="conn/EncryptionService_v6_1_2.xsd"/>
  <xs:import namespace="http://ws.gematik.de/conn/ServiceDirectory/v3.1" schemaLocation="conn/ServiceDirectory.xsd"/>
  <xs:import namespace="http://ws.gematik.de/tel/error/v2.0" schemaLocation="tel/error/TelematikError.xsd"/>
</xs:schema>
"###;

/// A stand-in for ETSI TS 102 231's `tsl.xsd`, which api-telematik does not ship:
/// only the verification-report profile (`oasis-dssx-1.0-profiles-vr-cd1.xsd`)
/// refers to it, for trust-status-list elements no KIM call carries.
const TSL_STUB_XSD: &str = r###"<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="http://uri.etsi.org/02231/v2#" elementFormDefault="qualified">
  <xs:element name="SchemeInformation" type="xs:anyType"/>
  <xs:element name="TrustServiceProviderList" type="xs:anyType"/>
  <xs:simpleType name="TSLTagType">
    <xs:restriction base="xs:anyURI"/>
  </xs:simpleType>
</xs:schema>
"###;

/// `../shared/konnektor-api`, found by walking up from the crate.
pub fn api_dir() -> PathBuf {
    let mut d = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    loop {
        let c = d.join("shared").join("konnektor-api");
        if c.join("conn").is_dir() {
            return c;
        }
        if !d.pop() {
            panic!(
                "no shared/konnektor-api above {}",
                env!("CARGO_MANIFEST_DIR")
            );
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

/// The schemas set up in a temporary folder; `wrapper` is what xmllint gets.
pub struct Schemas {
    _dir: tempfile::TempDir,
    pub wrapper: PathBuf,
}

pub fn schemas() -> Schemas {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&api_dir(), dir.path()).unwrap();
    std::fs::write(dir.path().join("ext").join("tsl.xsd"), TSL_STUB_XSD).unwrap();
    std::fs::write(dir.path().join("soap-envelope.xsd"), ENVELOPE_XSD).unwrap();
    let wrapper = dir.path().join("wrapper.xsd");
    std::fs::write(&wrapper, WRAPPER_XSD).unwrap();
    Schemas { _dir: dir, wrapper }
}

/// Validates one file: Ok, or xmllint's complaint.
pub fn validate(schemas: &Schemas, file: &Path) -> Result<(), String> {
    let out = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(&schemas.wrapper)
        .arg(file)
        .output()
        .map_err(|e| format!("cannot run xmllint (libxml2-utils): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Validates every `.xml` file in `requests_dir`; how many, or every complaint.
pub fn validate_all(requests_dir: &Path) -> Result<usize, String> {
    let schemas = schemas();
    let mut files: Vec<PathBuf> = std::fs::read_dir(requests_dir)
        .map_err(|e| format!("{}: {e}", requests_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    let errors: Vec<String> = files
        .iter()
        .filter_map(|f| validate(&schemas, f).err())
        .collect();
    if errors.is_empty() {
        Ok(files.len())
    } else {
        Err(errors.join("\n"))
    }
}
