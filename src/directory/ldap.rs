//! The VZD over LDAP: encryption certificates (`userCertificate;binary`) and the
//! KIM version (`komLeData`) of a mail address (KOM-LE-A_2023, A_19356-06).
//!
//! In the TI the VZD is reached through the Konnektor's LDAP proxy, always over TLS,
//! with or without a client certificate as configured (A_21223-01); so only
//! `ldaps://` URLs are taken and the server's certificate is always verified against
//! the configured CA file. One connection serves all parties of one mail.
//!
//! A VZD holder entry carries `mail` and `komLeData` (`<version>,<address>`, one
//! value per address); its certificates sit on the entry itself or on child
//! entries that carry the same `mail`. A subtree search for `(mail=<address>)`
//! finds both.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};
use openssl::x509::X509;

use super::{Directory, DirectoryError, Entry, KimVersion};

/// The VZD's search base (gemSpec_VZD).
pub const DEFAULT_BASE: &str = "dc=data,dc=vzd";
/// The attribute with the encryption certificates, asked for in binary transfer.
pub const CERT_ATTRIBUTE: &str = "userCertificate;binary";
/// The attribute with the KIM version per address.
pub const VERSION_ATTRIBUTE: &str = "komLeData";
/// KONNEKTOR_TIMEOUT (Tab_Konf_Param, 1 minute): the LDAP proxy is the Konnektor's.
pub const LDAP_TIMEOUT: Duration = Duration::from_secs(60);
/// More entries than this for one address is not a VZD answer: refused.
pub const MAX_ENTRIES_PER_ADDRESS: i32 = 64;

/// Where the VZD is and how it is reached.
pub struct LdapDirectory {
    url: String,
    base: String,
    tls: native_tls::TlsConnector,
    connect_timeout: Duration,
    timeout: Duration,
}

impl LdapDirectory {
    /// `url` must be `ldaps://host:port`.
    pub fn new(
        url: &str,
        base: &str,
        tls: native_tls::TlsConnector,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<LdapDirectory, String> {
        check_url(url)?;
        Ok(LdapDirectory {
            url: url.to_string(),
            base: base.to_string(),
            tls,
            connect_timeout,
            timeout,
        })
    }

    async fn search_all(
        &self,
        addresses: &[String],
    ) -> Result<HashMap<String, Entry>, DirectoryError> {
        let unavailable =
            |e: ldap3::LdapError| DirectoryError::Unavailable(format!("{}: {e}", self.url));
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.connect_timeout)
            .set_connector(self.tls.clone());
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(unavailable)?;
        ldap3::drive!(conn);
        let mut out = HashMap::new();
        for address in addresses {
            let key = address.to_ascii_lowercase();
            if out.contains_key(&key) {
                continue;
            }
            let filter = format!("(mail={})", ldap3::ldap_escape(address.as_str()));
            let found = ldap
                .with_search_options(SearchOptions::new().sizelimit(MAX_ENTRIES_PER_ADDRESS))
                .search(
                    &self.base,
                    Scope::Subtree,
                    &filter,
                    vec![CERT_ATTRIBUTE, VERSION_ATTRIBUTE],
                )
                .await
                .map_err(unavailable)?;
            let (entries, _) = found.success().map_err(|e| match e {
                ldap3::LdapError::LdapResult { result } if result.rc == 4 => {
                    DirectoryError::BadEntry {
                        address: address.clone(),
                        reason: format!("more than {MAX_ENTRIES_PER_ADDRESS} entries"),
                    }
                }
                e => unavailable(e),
            })?;
            let mut parsed = Vec::with_capacity(entries.len());
            for raw in entries {
                // ldap3 panics on an entry it cannot take apart; that is the
                // directory's fault, not a reason to end the session
                let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    SearchEntry::construct(raw)
                }))
                .map_err(|_| DirectoryError::BadEntry {
                    address: address.clone(),
                    reason: "malformed search result entry".into(),
                })?;
                parsed.push(e);
            }
            out.insert(key, entry_of(address, &parsed));
        }
        let _ = ldap.unbind().await;
        Ok(out)
    }
}

impl Directory for LdapDirectory {
    async fn lookup(&self, address: &str) -> Result<Entry, DirectoryError> {
        let one = [address.to_string()];
        let mut all = self.lookup_all(&one).await?;
        Ok(all
            .remove(&address.to_ascii_lowercase())
            .unwrap_or_default())
    }

    async fn lookup_all(
        &self,
        addresses: &[String],
    ) -> Result<HashMap<String, Entry>, DirectoryError> {
        // one bound for connecting, TLS, and every search of this mail
        let bound = self.connect_timeout + self.timeout;
        tokio::time::timeout(bound, self.search_all(addresses))
            .await
            .map_err(|_| {
                DirectoryError::Unavailable(format!(
                    "{}: no answer within {} s",
                    self.url,
                    bound.as_secs()
                ))
            })?
    }
}

/// The entry of `address` from what the search found.
fn entry_of(address: &str, found: &[SearchEntry]) -> Entry {
    if found.is_empty() {
        return Entry::default();
    }
    let mut certs = Vec::new();
    let mut versions = Vec::new();
    for e in found {
        for (name, values) in &e.bin_attrs {
            if is_cert_attribute(name) {
                for der in values {
                    push_cert(&mut certs, der, address, &e.dn);
                }
            }
        }
        for (name, values) in &e.attrs {
            if is_cert_attribute(name) {
                for v in values {
                    push_cert(&mut certs, v.as_bytes(), address, &e.dn);
                }
            } else if name.eq_ignore_ascii_case(VERSION_ATTRIBUTE) {
                versions.extend(values.iter().map(String::as_str));
            }
        }
    }
    Entry {
        certs,
        // A_19356-06: no komLeData for the address means a 1.0 Clientmodul
        kim_version: Some(
            KimVersion::from_kom_le_data(versions, address).unwrap_or(KimVersion::UNDEFINED),
        ),
    }
}

fn is_cert_attribute(name: &str) -> bool {
    let base = name.split(';').next().unwrap_or(name);
    base.eq_ignore_ascii_case("userCertificate")
}

/// One unreadable certificate does not hide the others (KOM-LE-A_2176-01: robust
/// against what the directory holds); it is logged.
fn push_cert(certs: &mut Vec<X509>, der: &[u8], address: &str, dn: &str) {
    match X509::from_der(der) {
        Ok(c) => certs.push(c),
        Err(e) => {
            tracing::warn!(%address, %dn, "unreadable certificate in the directory skipped: {e}")
        }
    }
}

/// Only `ldaps://host[:port]` (A_21223-01: always TLS).
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("ldaps://").ok_or_else(|| {
        format!(
            "'{url}': the directory is reached over TLS only (A_21223-01); use ldaps://host:port"
        )
    })?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains('@') || host.contains('?') {
        return Err(format!("'{url}': expected ldaps://host:port"));
    }
    Ok(())
}

/// The TLS settings towards the directory: its server certificate must chain to
/// `ca_file`; the client certificate from `client` when one is configured.
pub fn tls_connector(
    ca_file: &Path,
    client: Option<(&Path, &str)>,
) -> Result<native_tls::TlsConnector, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    let cas = X509::stack_from_pem(&pem).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    if cas.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            ca_file.display()
        ));
    }
    let mut b = native_tls::TlsConnector::builder();
    b.disable_built_in_roots(true)
        .min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    for ca in cas {
        let der = ca.to_der().map_err(|e| e.to_string())?;
        let cert = native_tls::Certificate::from_der(&der)
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
        b.add_root_certificate(cert);
    }
    if let Some((p12, password)) = client {
        crate::net::tls::load_legacy_provider();
        let der = std::fs::read(p12).map_err(|e| format!("{}: {e}", p12.display()))?;
        let id = native_tls::Identity::from_pkcs12(&der, password).map_err(|e| {
            format!(
                "{}: not a readable PKCS#12 file (wrong password?): {e}",
                p12.display()
            )
        })?;
        b.identity(id);
    }
    b.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ldaps_urls() {
        assert!(check_url("ldaps://127.0.0.1:636").is_ok());
        assert!(check_url("ldaps://konnektor.praxis.local/").is_ok());
        for bad in [
            "ldap://127.0.0.1:389",
            "ldapi:///run/slapd",
            "ldaps://",
            "ldaps://h/dc=x",
            "https://h",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn certificates_and_version_from_several_entries() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::testbed::pki::make(dir.path(), &["a@x.de"]).unwrap();
        let pem = std::fs::read(pki.directory.join("a@x.de.pem")).unwrap();
        let der = X509::from_pem(&pem).unwrap().to_der().unwrap();
        let holder = SearchEntry {
            dn: "uid=1,dc=data,dc=vzd".into(),
            attrs: HashMap::from([(
                "komLeData".to_string(),
                vec!["1.0,other@x.de".to_string(), "1.5+,A@x.de".to_string()],
            )]),
            bin_attrs: HashMap::new(),
        };
        let cert_entry = SearchEntry {
            dn: "cn=c1,uid=1,dc=data,dc=vzd".into(),
            attrs: HashMap::new(),
            bin_attrs: HashMap::from([(
                "userCertificate;binary".to_string(),
                vec![der.clone(), b"not a certificate".to_vec()],
            )]),
        };
        let e = entry_of("a@x.de", &[holder, cert_entry]);
        assert_eq!(e.certs.len(), 1);
        assert_eq!(e.kim_version.unwrap().to_string(), "1.5+");
        // found, but no komLeData: a 1.0 Clientmodul (A_19356-06)
        let bare = SearchEntry {
            dn: "uid=2".into(),
            attrs: HashMap::new(),
            bin_attrs: HashMap::from([("userCertificate;binary".to_string(), vec![der])]),
        };
        assert_eq!(
            entry_of("b@x.de", &[bare]).kim_version,
            Some(KimVersion::UNDEFINED)
        );
        // not found: nothing, and no version
        let none = entry_of("c@x.de", &[]);
        assert!(none.certs.is_empty() && none.kim_version.is_none());
    }
}
