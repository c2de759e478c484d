//! Who signs an account's JWT: its software AUT key (`aut_pkcs12`) when it has one,
//! else the AUT key of its SMC-B through its Konnektor. The admin module asks
//! [`JwtSource::jwt_for`] and gets the token or an error that says what to set up.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use openssl::x509::X509;

use super::{token, JwtError};
use crate::crypto::konnektor::KonnektorAccounts;
use crate::crypto::software::KeyPair;
use crate::directory::{Directory, Source};

/// The one question the admin module asks.
pub trait JwtSource: Send + Sync {
    /// A_19457-02: a fresh token for `address`, valid from now.
    fn jwt_for(&self, address: &str) -> impl Future<Output = Result<String, JwtError>> + Send;
}

/// Every account's way to a JWT.
pub struct JwtProviders {
    /// Lower-case address: the software AUT key.
    software: HashMap<String, KeyPair>,
    konnektors: Arc<KonnektorAccounts>,
    /// Picks the SMC-B by the account's encryption certificates when a Konnektor
    /// holds several (KOM-LE-A_2052, as for signing); without it, one card only.
    directory: Option<Arc<Source>>,
}

impl JwtProviders {
    pub fn new(konnektors: Arc<KonnektorAccounts>, directory: Option<Arc<Source>>) -> JwtProviders {
        JwtProviders {
            software: HashMap::new(),
            konnektors,
            directory,
        }
    }

    /// Gives `address` a software AUT key; it wins over a Konnektor.
    pub fn add_software(&mut self, address: &str, key: KeyPair) {
        self.software.insert(address.to_ascii_lowercase(), key);
    }

    /// The address's encryption certificates from the directory; none when there is
    /// no directory or it cannot answer (then the Konnektor must have one SMC-B).
    async fn own_certificates(&self, address: &str) -> Vec<X509> {
        let Some(d) = &self.directory else {
            return Vec::new();
        };
        match d.lookup(address).await {
            Ok(entry) => entry.certs,
            Err(e) => {
                tracing::warn!(%address, "the directory did not answer; the SMC-B for the JWT is picked without it: {e}");
                Vec::new()
            }
        }
    }
}

impl JwtSource for JwtProviders {
    async fn jwt_for(&self, address: &str) -> Result<String, JwtError> {
        let nbf = token::unix_now();
        if let Some(k) = self.software.get(&address.to_ascii_lowercase()) {
            let t =
                token::build_with_key(&k.cert, &k.key, nbf).map_err(|e| JwtError::Software {
                    address: address.to_string(),
                    why: e.to_string(),
                })?;
            tracing::info!(%address, key = "software", "JWT for the Account Manager made");
            return Ok(t);
        }
        let konnektor_error = |why: String| JwtError::Konnektor {
            address: address.to_string(),
            why,
        };
        let (crypto, ctx) = match self.konnektors.for_account(address, None, None) {
            None => {
                return Err(JwtError::NoKey {
                    address: address.to_string(),
                })
            }
            Some(found) => found.map_err(konnektor_error)?,
        };
        let own = self.own_certificates(address).await;
        let own: Vec<&X509> = own.iter().collect();
        let t = crypto
            .jwt(&ctx, address, &own, nbf)
            .await
            .map_err(konnektor_error)?;
        tracing::info!(%address, key = "konnektor", konnektor = %crypto.konnektor.sds_host(), "JWT for the Account Manager made");
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_software_key_signs_and_an_account_without_one_is_told_what_to_set() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::testbed::pki::make(dir.path(), &["a@x.de"]).unwrap();
        let pw = std::fs::read_to_string(&pki.password_file).unwrap();
        let aut =
            crate::crypto::software::read_pkcs12(&pki.accounts[0].aut_pkcs12, pw.trim()).unwrap();
        let der = aut.cert.to_der().unwrap();
        let mut p = JwtProviders::new(Arc::new(KonnektorAccounts::new()), None);
        p.add_software("A@x.de", aut);
        let t = p.jwt_for("a@X.de").await.unwrap();
        let v = token::verify(&t).unwrap();
        assert_eq!(v.cert.to_der().unwrap(), der);
        assert!((v.nbf - token::unix_now()).abs() < 60);
        let e = p.jwt_for("b@x.de").await.unwrap_err();
        assert!(matches!(e, JwtError::NoKey { .. }), "{e}");
        assert!(e.to_string().contains("aut_pkcs12"), "{e}");
    }
}
