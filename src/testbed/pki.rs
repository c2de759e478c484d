//! A complete test PKI for KIM, made on the fly: a CA standing in for the TI's
//! SMC-B CA, and per account a signing certificate (like C.HCI.OSIG) and an
//! encryption certificate (like C.HCI.ENC), RSA-2048, each with its key in a
//! PKCS#12 file, plus the directory folder of encryption certificates that the
//! proxy looks recipients up in. For the sandbox and the tests only.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

use super::ca::write_private;

type PkiResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// RSA key size of the test certificates (the SMC-B's RSA keys are 2048 bits).
pub const TEST_RSA_BITS: u32 = 2048;
/// Days the test certificates are valid.
pub const TEST_VALIDITY_DAYS: u32 = 3650;

/// What [`make`] wrote for one account.
#[derive(Debug, Clone)]
pub struct AccountKeys {
    pub address: String,
    /// Signing key and certificate (PKCS#12).
    pub signing_pkcs12: PathBuf,
    /// Encryption key and certificate (PKCS#12).
    pub encryption_pkcs12: PathBuf,
}

/// What [`make`] wrote.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca_cert: PathBuf,
    /// File holding the PKCS#12 password (one line).
    pub password_file: PathBuf,
    /// Folder of encryption certificates, `<address>.pem`.
    pub directory: PathBuf,
    pub accounts: Vec<AccountKeys>,
}

fn rsa_key() -> PkiResult<PKey<Private>> {
    Ok(PKey::from_rsa(Rsa::generate(TEST_RSA_BITS)?)?)
}

fn builder(subject_cn: &str, issuer: Option<&X509>, key: &PKey<Private>) -> PkiResult<X509Builder> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COUNTRYNAME, "DE")?;
    name.append_entry_by_nid(
        Nid::ORGANIZATIONNAME,
        "kim-cm test PKI (not for production)",
    )?;
    name.append_entry_by_nid(Nid::COMMONNAME, subject_cn)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(64, MsbOption::ONE, false)?;
    b.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(issuer.map(|i| i.subject_name()).unwrap_or(&name))?;
    b.set_pubkey(key)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(TEST_VALIDITY_DAYS)?.as_ref())?;
    let ski =
        SubjectKeyIdentifier::new().build(&b.x509v3_context(issuer.map(|i| i.as_ref()), None))?;
    b.append_extension(ski)?;
    Ok(b)
}

/// Makes the CA, and for each address a signing and an encryption certificate with
/// their PKCS#12 files, in `dir`.
pub fn make(dir: &Path, addresses: &[&str]) -> PkiResult<TestPki> {
    std::fs::create_dir_all(dir)?;
    let ca_key = rsa_key()?;
    let mut b = builder("kim-cm test SMC-B CA", None, &ca_key)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    b.sign(&ca_key, MessageDigest::sha256())?;
    let ca = b.build();
    let ca_cert = dir.join("ca.pem");
    std::fs::write(&ca_cert, ca.to_pem()?)?;

    let password = hex::encode(rand::random::<[u8; 8]>());
    let password_file = dir.join("pkcs12.pass");
    write_private(&password_file, format!("{password}\n").as_bytes())?;
    let directory = dir.join("directory");
    std::fs::create_dir_all(&directory)?;

    let mut accounts = Vec::new();
    for address in addresses {
        let issue = |role: &str, usage: KeyUsage| -> PkiResult<(PKey<Private>, X509)> {
            let key = rsa_key()?;
            let mut b = builder(&format!("{address} ({role})"), Some(&ca), &key)?;
            let mut usage = usage;
            b.append_extension(usage.critical().build()?)?;
            b.append_extension(BasicConstraints::new().build()?)?;
            b.sign(&ca_key, MessageDigest::sha256())?;
            Ok((key, b.build()))
        };
        let mut sig_usage = KeyUsage::new();
        sig_usage.digital_signature().non_repudiation();
        let mut enc_usage = KeyUsage::new();
        enc_usage.key_encipherment().data_encipherment();
        let (sig_key, sig_cert) = issue("OSIG", sig_usage)?;
        let (enc_key, enc_cert) = issue("ENC", enc_usage)?;
        let p12 = |key: &PKey<Private>, cert: &X509, name: &str| -> PkiResult<Vec<u8>> {
            Ok(Pkcs12::builder()
                .name(name)
                .pkey(key)
                .cert(cert)
                .build2(&password)?
                .to_der()?)
        };
        let folder = dir.join(address);
        std::fs::create_dir_all(&folder)?;
        let signing_pkcs12 = folder.join("signing.p12");
        let encryption_pkcs12 = folder.join("encryption.p12");
        write_private(&signing_pkcs12, &p12(&sig_key, &sig_cert, "C.HCI.OSIG")?)?;
        write_private(&encryption_pkcs12, &p12(&enc_key, &enc_cert, "C.HCI.ENC")?)?;
        std::fs::write(directory.join(format!("{address}.pem")), enc_cert.to_pem()?)?;
        accounts.push(AccountKeys {
            address: address.to_string(),
            signing_pkcs12,
            encryption_pkcs12,
        });
    }
    Ok(TestPki {
        ca_cert,
        password_file,
        directory,
        accounts,
    })
}
