//! Helpers around the real directory of the tests, OpenLDAP `slapd`, which
//! `kim_cm::testbed::slapd` starts (Debian package `slapd`).

use std::path::{Path, PathBuf};

#[allow(unused_imports)] // not every test crate uses all of them
pub use kim_cm::testbed::slapd::{Slapd, SlapdTls, VzdEntry, BASE};

/// The DER certificates in a PEM file.
pub fn pem_certs(path: &Path) -> Vec<Vec<u8>> {
    let pem = std::fs::read(path).unwrap();
    openssl::x509::X509::stack_from_pem(&pem)
        .unwrap()
        .iter()
        .map(|c| c.to_der().unwrap())
        .collect()
}

/// `path` as a string for configs.
pub fn p(path: &Path) -> String {
    PathBuf::from(path).display().to_string()
}

/// A sandbox's config with the directory in `slapd` instead of the folder; with
/// `client`, the PKCS#12 and its password file kim-cm shows the directory.
pub fn with_ldap(text: String, slapd: &Slapd, ca: &Path, client: Option<(&Path, &Path)>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("folder = ") {
            out.push_str(&format!(
                "ldap_url = \"{}\"\nldap_base = \"{BASE}\"\nldap_ca_file = \"{}\"\n",
                slapd.url(),
                p(ca)
            ));
            if let Some((p12, pw)) = client {
                out.push_str(&format!(
                    "ldap_client_pkcs12 = \"{}\"\nldap_client_pkcs12_password_file = \"{}\"\n",
                    p(p12),
                    p(pw)
                ));
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
