//! A complete test PKI for KIM, made on the fly: a CA standing in for the TI's
//! SMC-B CA, and per account a signing certificate (like C.HCI.OSIG), an
//! encryption certificate (like C.HCI.ENC) and an authentication certificate (like
//! C.HCI.AUT, for the Account Manager's JWT, A_19457-02), RSA-2048, each with its
//! key in a PKCS#12 file, plus the directory folder of encryption certificates that the
//! proxy looks recipients up in. For the sandbox and the tests only.
//!
//! Like the TI's certificates, each carries a Telematik-ID in an Admission
//! extension (KOM-LE-A_2178 / KOM-LE-A_2192-01 compare them per recipient, see
//! [`crate::crypto::admission`]); the CA key is kept as `ca.key` so that tests can
//! issue further certificates for an address ([`extra_encryption_cert`]), and give
//! a practice an ECC encryption key beside its RSA one ([`ecc_encryption`]).

use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Extension, X509NameBuilder, X509};

use super::ca::write_private;
use crate::crypto::admission;

type PkiResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// RSA key size of the test certificates (the SMC-B's RSA keys are 2048 bits).
pub const TEST_RSA_BITS: u32 = 2048;
/// Days the test certificates are valid.
pub const TEST_VALIDITY_DAYS: u32 = 3650;
/// The CA certificate (PEM) in the PKI's folder.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key (PEM, PKCS#8, owner-only) in the PKI's folder.
pub const CA_KEY_FILE: &str = "ca.key";
/// The file with the PKCS#12 password (one line) in the PKI's folder.
pub const PASSWORD_FILE: &str = "pkcs12.pass";
/// The ECC encryption key and certificate (PKCS#12) in an account's folder.
pub const ECC_ENCRYPTION_FILE: &str = "encryption-ecc.p12";
/// The Admission extension, id-isismtt-at-admission.
const ADMISSION_OID: &str = "1.3.36.8.3.3";
/// The professionItem of the test certificates, as in an SMC-B of a practice.
const PROFESSION_ITEM: &str = "Betriebsstätte Arzt";
/// oid_praxis_arzt, the professionOID of that role (gemSpec_OID).
const PROFESSION_OID: &str = "1.2.276.0.76.4.50";
/// Telematik-IDs of the test certificates start with this, as those of physicians
/// and their practices do...
const TELEMATIK_ID_PREFIX: &str = "1-";
/// ...followed by this many hex digits of the SHA-256 of the address.
const TELEMATIK_ID_HEX_DIGITS: usize = 10;
/// The role (in the subject) of the authentication certificate.
const AUT_ROLE: &str = "AUT";

/// What [`make`] wrote for one account.
#[derive(Debug, Clone)]
pub struct AccountKeys {
    pub address: String,
    /// Signing key and certificate (PKCS#12).
    pub signing_pkcs12: PathBuf,
    /// Encryption key and certificate (PKCS#12).
    pub encryption_pkcs12: PathBuf,
    /// Authentication key and certificate (PKCS#12): digitalSignature, extended
    /// key usage clientAuth, as the SMC-B's C.HCI.AUT.
    pub aut_pkcs12: PathBuf,
    /// The Telematik-ID in every certificates' Admission extension:
    /// [`TELEMATIK_ID_PREFIX`] and the first [`TELEMATIK_ID_HEX_DIGITS`] hex digits
    /// of the SHA-256 of the address, so the same address always gets the same ID.
    pub telematik_id: String,
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

/// The Telematik-ID of `address` in the test PKI (see [`AccountKeys::telematik_id`]).
fn telematik_id_of(address: &str) -> String {
    let digest = hex::encode(openssl::sha::sha256(address.as_bytes()));
    format!(
        "{TELEMATIK_ID_PREFIX}{}",
        &digest[..TELEMATIK_ID_HEX_DIGITS]
    )
}

/// The key usage of a signing certificate (C.HCI.OSIG).
fn signing_usage() -> KeyUsage {
    let mut usage = KeyUsage::new();
    usage.digital_signature().non_repudiation();
    usage
}

/// The key usage of an encryption certificate (C.HCI.ENC).
fn encryption_usage() -> KeyUsage {
    let mut usage = KeyUsage::new();
    usage.key_encipherment().data_encipherment();
    usage
}

/// The key usage of an authentication certificate (C.HCI.AUT).
fn authentication_usage() -> KeyUsage {
    let mut usage = KeyUsage::new();
    usage.digital_signature();
    usage
}

/// A new key and an end-entity certificate for it from `ca`, for `address` in
/// `role` (the subject says which), with `usage` and `telematik_id` in an
/// Admission extension; the AUT role also gets extended key usage clientAuth.
fn issue(
    ca: &X509,
    ca_key: &PKey<Private>,
    address: &str,
    role: &str,
    usage: KeyUsage,
    telematik_id: &str,
) -> PkiResult<(PKey<Private>, X509)> {
    let key = rsa_key()?;
    let cert = certify(ca, ca_key, &key, address, role, usage, telematik_id)?;
    Ok((key, cert))
}

/// The end-entity certificate of [`issue`] for an existing `key`.
fn certify(
    ca: &X509,
    ca_key: &PKey<Private>,
    key: &PKey<Private>,
    address: &str,
    role: &str,
    mut usage: KeyUsage,
    telematik_id: &str,
) -> PkiResult<X509> {
    let mut b = builder(&format!("{address} ({role})"), Some(ca), key)?;
    b.append_extension(usage.critical().build()?)?;
    if role == AUT_ROLE {
        b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
    }
    b.append_extension(BasicConstraints::new().build()?)?;
    let value = admission::admission_extension_der(telematik_id, PROFESSION_ITEM, PROFESSION_OID);
    let oid = Asn1Object::from_str(ADMISSION_OID)?;
    let value = Asn1OctetString::new_from_bytes(&value)?;
    b.append_extension(X509Extension::new_from_der(&oid, false, &value)?)?;
    b.sign(ca_key, MessageDigest::sha256())?;
    Ok(b.build())
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
    let ca_cert = dir.join(CA_CERT_FILE);
    std::fs::write(&ca_cert, ca.to_pem()?)?;
    write_private(&dir.join(CA_KEY_FILE), &ca_key.private_key_to_pem_pkcs8()?)?;

    let password = hex::encode(rand::random::<[u8; 8]>());
    let password_file = dir.join(PASSWORD_FILE);
    write_private(&password_file, format!("{password}\n").as_bytes())?;
    let directory = dir.join("directory");
    std::fs::create_dir_all(&directory)?;

    let mut accounts = Vec::new();
    for address in addresses {
        let telematik_id = telematik_id_of(address);
        let (sig_key, sig_cert) = issue(
            &ca,
            &ca_key,
            address,
            "OSIG",
            signing_usage(),
            &telematik_id,
        )?;
        let (enc_key, enc_cert) = issue(
            &ca,
            &ca_key,
            address,
            "ENC",
            encryption_usage(),
            &telematik_id,
        )?;
        let (aut_key, aut_cert) = issue(
            &ca,
            &ca_key,
            address,
            AUT_ROLE,
            authentication_usage(),
            &telematik_id,
        )?;
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
        let aut_pkcs12 = folder.join("aut.p12");
        write_private(&aut_pkcs12, &p12(&aut_key, &aut_cert, "C.HCI.AUT")?)?;
        std::fs::write(directory.join(format!("{address}.pem")), enc_cert.to_pem()?)?;
        accounts.push(AccountKeys {
            address: address.to_string(),
            signing_pkcs12,
            encryption_pkcs12,
            aut_pkcs12,
            telematik_id,
        });
    }
    Ok(TestPki {
        ca_cert,
        password_file,
        directory,
        accounts,
    })
}

/// One more valid RSA encryption certificate for `address` with `telematik_id`,
/// from the CA of the PKI [`make`] wrote in `pki_dir`: for tests of a recipient
/// with several encryption certificates (KOM-LE-A_2192-01). The directory folder is
/// left alone, and the key is not kept.
pub fn extra_encryption_cert(pki_dir: &Path, address: &str, telematik_id: &str) -> PkiResult<X509> {
    let ca = X509::from_pem(&std::fs::read(pki_dir.join(CA_CERT_FILE))?)?;
    let ca_key = PKey::private_key_from_pem(&std::fs::read(pki_dir.join(CA_KEY_FILE))?)?;
    let (_, cert) = issue(
        &ca,
        &ca_key,
        address,
        "ENC",
        encryption_usage(),
        telematik_id,
    )?;
    Ok(cert)
}

/// Gives `address` of the PKI [`make`] wrote in `pki_dir` an ECC encryption key
/// and certificate (brainpoolP256r1, like the C.HCI.ENC ECC of a newer SMC-B):
/// same subject, Admission and Telematik-ID as its RSA one, from the same CA,
/// kept as [`ECC_ENCRYPTION_FILE`] in the account's folder with the PKI's
/// password. With `into_directory` the certificate is appended to the directory
/// folder's `<address>.pem`, beside the RSA one. Returns the PKCS#12 path.
pub fn ecc_encryption(pki_dir: &Path, address: &str, into_directory: bool) -> PkiResult<PathBuf> {
    let ca = X509::from_pem(&std::fs::read(pki_dir.join(CA_CERT_FILE))?)?;
    let ca_key = PKey::private_key_from_pem(&std::fs::read(pki_dir.join(CA_KEY_FILE))?)?;
    let password = std::fs::read_to_string(pki_dir.join(PASSWORD_FILE))?;
    let group = openssl::ec::EcGroup::from_curve_name(crate::crypto::crypt::ECC_CURVE)?;
    let key = PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)?;
    // an ECC key agrees on keys rather than enciphering them (gemSpec_PKI: keyAgreement)
    let mut usage = KeyUsage::new();
    usage.key_agreement();
    let cert = certify(
        &ca,
        &ca_key,
        &key,
        address,
        "ENC",
        usage,
        &telematik_id_of(address),
    )?;
    let p12 = Pkcs12::builder()
        .name("C.HCI.ENC ECC")
        .pkey(&key)
        .cert(&cert)
        .build2(password.trim())?
        .to_der()?;
    let folder = pki_dir.join(address);
    std::fs::create_dir_all(&folder)?;
    let path = folder.join(ECC_ENCRYPTION_FILE);
    write_private(&path, &p12)?;
    if into_directory {
        use std::io::Write;
        let pem = pki_dir.join("directory").join(format!("{address}.pem"));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(pem)?;
        f.write_all(&cert.to_pem()?)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::pkcs12::Pkcs12;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::X509StoreContext;

    const ADDRESSES: [&str; 2] = ["a@x.de", "b@x.de"];

    fn verifies(cert: &X509, ca: &X509) -> bool {
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(ca.clone()).unwrap();
        let store = store.build();
        let mut ctx = X509StoreContext::new().unwrap();
        ctx.init(&store, cert, &Stack::new().unwrap(), |c| c.verify_cert())
            .unwrap()
    }

    #[test]
    fn certificates_carry_the_telematik_id() {
        let dir = tempfile::tempdir().unwrap();
        let pki = make(dir.path(), &ADDRESSES).unwrap();
        let ca = X509::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap();
        let password = std::fs::read_to_string(&pki.password_file).unwrap();
        assert_ne!(pki.accounts[0].telematik_id, pki.accounts[1].telematik_id);
        for account in &pki.accounts {
            assert_eq!(account.telematik_id, telematik_id_of(&account.address));
            assert_eq!(
                account.telematik_id.len(),
                TELEMATIK_ID_PREFIX.len() + TELEMATIK_ID_HEX_DIGITS
            );
            let pem = std::fs::read(pki.directory.join(format!("{}.pem", account.address)));
            let enc = X509::from_pem(&pem.unwrap()).unwrap();
            assert_eq!(
                admission::telematik_id(&enc).as_deref(),
                Some(account.telematik_id.as_str())
            );
            let p12 = std::fs::read(&account.signing_pkcs12).unwrap();
            let sig = Pkcs12::from_der(&p12)
                .unwrap()
                .parse2(password.trim())
                .unwrap()
                .cert
                .unwrap();
            assert_eq!(
                admission::telematik_id(&sig).as_deref(),
                Some(account.telematik_id.as_str())
            );
            // the AUT certificate: same Telematik-ID, from the CA, for client
            // authentication and signatures
            let p12 = std::fs::read(&account.aut_pkcs12).unwrap();
            let aut = Pkcs12::from_der(&p12)
                .unwrap()
                .parse2(password.trim())
                .unwrap()
                .cert
                .unwrap();
            assert_eq!(
                admission::telematik_id(&aut).as_deref(),
                Some(account.telematik_id.as_str())
            );
            assert!(verifies(&aut, &ca));
            let text = String::from_utf8(aut.to_text().unwrap()).unwrap();
            assert!(text.contains("TLS Web Client Authentication"), "{text}");
            assert!(text.contains("Digital Signature"), "{text}");
            assert!(!text.contains("Key Encipherment"), "{text}");
        }

        let address = ADDRESSES[1];
        let before = std::fs::read(pki.directory.join(format!("{address}.pem"))).unwrap();
        let extra = extra_encryption_cert(dir.path(), address, "1-other").unwrap();
        assert_eq!(admission::telematik_id(&extra).as_deref(), Some("1-other"));
        assert!(extra.verify(&ca.public_key().unwrap()).unwrap());
        assert!(verifies(&extra, &ca));
        let cn = extra
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .unwrap();
        assert_eq!(cn.data().to_string().unwrap(), format!("{address} (ENC)"));
        // the directory folder is untouched
        let after = std::fs::read(pki.directory.join(format!("{address}.pem"))).unwrap();
        assert_eq!(before, after);
        assert_eq!(
            std::fs::read_dir(&pki.directory).unwrap().count(),
            ADDRESSES.len()
        );
    }

    #[test]
    fn an_ecc_encryption_certificate_beside_the_rsa_one() {
        let dir = tempfile::tempdir().unwrap();
        let pki = make(dir.path(), &ADDRESSES).unwrap();
        let address = ADDRESSES[0];
        let p12 = ecc_encryption(dir.path(), address, true).unwrap();
        let password = std::fs::read_to_string(&pki.password_file).unwrap();
        let kp = crate::crypto::software::read_pkcs12(&p12, password.trim()).unwrap();
        assert_eq!(
            crate::crypto::crypt::Crypt::of(&kp.cert),
            Some(crate::crypto::crypt::Crypt::Ecc)
        );
        assert!(kp.cert.public_key().unwrap().public_eq(&kp.key));
        let ca = X509::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap();
        assert!(verifies(&kp.cert, &ca));
        let pem = std::fs::read(pki.directory.join(format!("{address}.pem"))).unwrap();
        let listed = X509::stack_from_pem(&pem).unwrap();
        assert_eq!(listed.len(), 2, "RSA first, then ECC");
        assert_eq!(listed[1].to_der().unwrap(), kp.cert.to_der().unwrap());
        // same subject and Telematik-ID as the RSA one
        assert_eq!(
            listed[0].subject_name().to_der().unwrap(),
            kp.cert.subject_name().to_der().unwrap()
        );
        assert_eq!(
            admission::telematik_id(&kp.cert).as_deref(),
            Some(pki.accounts[0].telematik_id.as_str())
        );
        // without into_directory the folder stays as it is
        ecc_encryption(dir.path(), ADDRESSES[1], false).unwrap();
        let pem = std::fs::read(pki.directory.join(format!("{}.pem", ADDRESSES[1]))).unwrap();
        assert_eq!(X509::stack_from_pem(&pem).unwrap().len(), 1);
    }
}
