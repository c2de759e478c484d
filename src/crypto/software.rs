//! Software keys: per account a signing and an encryption key with their
//! certificates, read from PKCS#12 files at start. Legacy (RC2/3DES) files, as TI
//! services issue them, are read too.

use std::collections::HashMap;
use std::path::Path;

use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use crate::config::Config;

/// Why keys could not be loaded; names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {reason}")]
    File { path: String, reason: String },
}

fn key_err(path: &Path, reason: impl ToString) -> KeyError {
    KeyError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A key with its certificate.
pub struct KeyPair {
    pub cert: X509,
    pub key: PKey<Private>,
}

/// The keys of one account.
pub struct AccountKeys {
    pub signing: KeyPair,
    pub encryption: Vec<KeyPair>,
}

/// Reads one PKCS#12 file.
pub fn read_pkcs12(path: &Path, password: &str) -> Result<KeyPair, KeyError> {
    crate::net::tls::load_legacy_provider();
    let der = std::fs::read(path).map_err(|e| key_err(path, e))?;
    let parsed = Pkcs12::from_der(&der)
        .and_then(|p| p.parse2(password))
        .map_err(|e| {
            key_err(
                path,
                format!("not a readable PKCS#12 file (wrong password?): {e}"),
            )
        })?;
    match (parsed.pkey, parsed.cert) {
        (Some(key), Some(cert)) => Ok(KeyPair { cert, key }),
        _ => Err(key_err(
            path,
            "the PKCS#12 file holds no key and certificate",
        )),
    }
}

fn read_password(path: Option<&Path>) -> Result<zeroize::Zeroizing<String>, KeyError> {
    match path {
        None => Ok(zeroize::Zeroizing::new(String::new())),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| key_err(p, e))?;
            Ok(zeroize::Zeroizing::new(
                text.lines().next().unwrap_or("").to_string(),
            ))
        }
    }
}

/// The software keys of every configured account that has them, by lower-case address.
#[derive(Default)]
pub struct SoftwareKeys {
    accounts: HashMap<String, AccountKeys>,
}

impl SoftwareKeys {
    pub fn from_config(cfg: &Config) -> Result<SoftwareKeys, KeyError> {
        let mut accounts = HashMap::new();
        for a in &cfg.account {
            let (Some(sig), Some(enc)) = (&a.signing_pkcs12, &a.encryption_pkcs12) else {
                continue;
            };
            let keys = Self::read_account(sig, enc, a.pkcs12_password_file.as_deref())?;
            accounts.insert(a.address.to_ascii_lowercase(), keys);
        }
        Ok(SoftwareKeys { accounts })
    }

    /// Adds (or replaces) the keys of `address`.
    pub fn insert(&mut self, address: &str, keys: AccountKeys) {
        self.accounts.insert(address.to_ascii_lowercase(), keys);
    }

    /// Reads one account's signing and encryption PKCS#12 files.
    pub fn read_account(
        signing: &Path,
        encryption: &Path,
        password_file: Option<&Path>,
    ) -> Result<AccountKeys, KeyError> {
        let password = read_password(password_file)?;
        Ok(AccountKeys {
            signing: read_pkcs12(signing, &password)?,
            encryption: vec![read_pkcs12(encryption, &password)?],
        })
    }

    /// The software AUT key of `account` (`aut_pkcs12`, A_19457-02), if it has one.
    pub fn read_aut(account: &crate::config::Account) -> Result<Option<KeyPair>, KeyError> {
        let Some(path) = &account.aut_pkcs12 else {
            return Ok(None);
        };
        let password = read_password(account.pkcs12_password_file.as_deref())?;
        read_pkcs12(path, &password).map(Some)
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    pub fn account(&self, address: &str) -> Option<&AccountKeys> {
        self.accounts.get(&address.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_the_test_pki_and_gematik_sample() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::testbed::pki::make(dir.path(), &["a@x.de"]).unwrap();
        let pw = std::fs::read_to_string(&pki.password_file).unwrap();
        let kp = read_pkcs12(&pki.accounts[0].signing_pkcs12, pw.trim()).unwrap();
        assert!(kp.cert.public_key().unwrap().public_eq(&kp.key));
        let e = read_pkcs12(&pki.accounts[0].signing_pkcs12, "wrong")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("signing.p12") && e.contains("wrong password"),
            "{e}"
        );
        // gematik's TEST-ONLY sample: RC2-encrypted certificates (legacy provider)
        let kp = read_pkcs12(
            Path::new("../shared/kim-api/samples/smime-profil/B/hci-enc-3-kim-bsp.p12"),
            "00",
        )
        .unwrap();
        assert!(kp.cert.public_key().unwrap().public_eq(&kp.key));
    }
}
