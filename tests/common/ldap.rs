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
