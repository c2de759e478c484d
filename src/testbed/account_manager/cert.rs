//! createCert: the TLS client certificate C.CM.TLS-CS (KOM-LE-A_2182-01) with CN
//! `<commonName>#CM` (AccountManager.yaml `CertificateParameters`), issued by the
//! testbed CA the simulator was given, in a PKCS#12 container that is protected
//! with `certPassword` when one was sent and not encrypted otherwise.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
use openssl::x509::{X509NameBuilder, X509};

/// What createCert appends to the commonName (AccountManager.yaml).
pub const CN_SUFFIX: &str = "#CM";
/// Days an issued certificate is valid.
pub const VALIDITY_DAYS: u32 = 825;
/// The friendly name of the key and certificate in the container.
pub const PKCS12_NAME: &str = "C.CM.TLS-CS";
/// OpenSSL's PKCS12_create takes -1 as "no encryption" for the key and the
/// certificates.
const NO_ENCRYPTION: i32 = -1;

/// The CA that issues the certificates: PEM certificate and PEM private key.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
}

/// A certificate issued, with its container.
pub struct Issued {
    pub pkcs12_der: Vec<u8>,
    pub subject_cn: String,
    pub serial_hex: String,
}

fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// A new P-256 key and a client certificate for `common_name` + [`CN_SUFFIX`] from
/// `issuer`, in a PKCS#12 container protected with `password` (unencrypted, with
/// an empty MAC password, when `None`).
pub fn issue(issuer: &Issuer, common_name: &str, password: Option<&str>) -> Result<Issued, String> {
    let ca_pem =
        std::fs::read(&issuer.ca_cert).map_err(|e| err("cannot read", &issuer.ca_cert, e))?;
    let ca =
        X509::from_pem(&ca_pem).map_err(|e| err("not a PEM certificate:", &issuer.ca_cert, e))?;
    let key_pem =
        std::fs::read(&issuer.ca_key).map_err(|e| err("cannot read", &issuer.ca_key, e))?;
    let ca_key = PKey::private_key_from_pem(&key_pem)
        .map_err(|e| err("not a PEM private key:", &issuer.ca_key, e))?;
    build(&ca, &ca_key, common_name, password).map_err(|e| format!("issuing the certificate: {e}"))
}

fn build(
    ca: &X509,
    ca_key: &PKey<Private>,
    common_name: &str,
    password: Option<&str>,
) -> Result<Issued, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let subject_cn = format!("{common_name}{CN_SUFFIX}");
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, &subject_cn)?;
    let name = name.build();
    let mut serial = BigNum::new()?;
    serial.rand(64, MsbOption::ONE, false)?;
    let serial_hex = serial.to_hex_str()?.to_string();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    b.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(ca.subject_name())?;
    b.set_pubkey(&key)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(VALIDITY_DAYS)?.as_ref())?;
    b.append_extension(BasicConstraints::new().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
    b.sign(ca_key, MessageDigest::sha256())?;
    let cert = b.build();
    let mut chain = Stack::new()?;
    chain.push(ca.clone())?;
    let mut p12 = Pkcs12::builder();
    p12.name(PKCS12_NAME).pkey(&key).cert(&cert).ca(chain);
    if password.is_none() {
        p12.key_algorithm(Nid::from_raw(NO_ENCRYPTION))
            .cert_algorithm(Nid::from_raw(NO_ENCRYPTION));
    }
    let pkcs12_der = p12.build2(password.unwrap_or(""))?.to_der()?;
    Ok(Issued {
        pkcs12_der,
        subject_cn,
        serial_hex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_with_and_without_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::testbed::pki::make(dir.path(), &[]).unwrap();
        let issuer = Issuer {
            ca_cert: pki.ca_cert.clone(),
            ca_key: dir.path().join(crate::testbed::pki::CA_KEY_FILE),
        };
        let ca = X509::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap();
        for password in [Some("geheim"), None] {
            let issued = issue(&issuer, "Praxis A", password).unwrap();
            let parsed = Pkcs12::from_der(&issued.pkcs12_der)
                .unwrap()
                .parse2(password.unwrap_or(""))
                .unwrap();
            let cert = parsed.cert.unwrap();
            let cn = cert
                .subject_name()
                .entries_by_nid(Nid::COMMONNAME)
                .next()
                .unwrap()
                .data()
                .to_string()
                .unwrap();
            assert_eq!(cn, "Praxis A#CM");
            assert!(cert.verify(&ca.public_key().unwrap()).unwrap());
            assert!(parsed.pkey.is_some());
        }
        let locked = issue(&issuer, "x", Some("geheim")).unwrap();
        assert!(Pkcs12::from_der(&locked.pkcs12_der)
            .unwrap()
            .parse2("wrong")
            .is_err());
    }
}
