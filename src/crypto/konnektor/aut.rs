//! The card side of the Account Manager's JWT (gemSpec_CM_KOMLE A_19457-02): the
//! AUT certificate of the SMC-B that signs the account's mails (the same card,
//! KOM-LE-A_2052), read once with ReadCardCertificate `C.AUT` and cached with its
//! handle, and the token's hash signed there by ExternalAuthenticate. As with
//! signing, a fault on a cached card drops it and the cards are asked for again
//! once.

use openssl::x509::X509;

use super::{key, KonnektorCrypto, RSA};
use crate::crypto::jwt::token;
use crate::kim::login::CallContext;
use crate::konnektor::KonnektorError;

/// The card's authentication certificate (gemSpec_Kon CertRef).
const C_AUT: &str = "C.AUT";

/// Why one attempt failed: a Konnektor answer (a fault may mean a stale handle),
/// or a finding that asking again will not change.
enum Failure {
    Konnektor(KonnektorError),
    Final(String),
}

impl From<KonnektorError> for Failure {
    fn from(e: KonnektorError) -> Failure {
        Failure::Konnektor(e)
    }
}

/// The error text, with advice where the Konnektor lacks the service.
fn explain(e: KonnektorError) -> String {
    match e {
        KonnektorError::NotOffered { .. } => format!(
            "{e}; the Account Manager's JWT needs ExternalAuthenticate (A_19457-02): update the Konnektor, or give the account a software AUT key (aut_pkcs12)"
        ),
        other => other.to_string(),
    }
}

impl KonnektorCrypto {
    /// The card handle and its AUT certificate for `address`, from the cache or
    /// the Konnektor; `own` are the address's encryption certificates from the
    /// directory, which pick the card as for signing.
    async fn aut_card(
        &self,
        ctx: &CallContext,
        address: &str,
        own: &[&X509],
    ) -> Result<(String, X509), Failure> {
        let k = key(address, ctx);
        if let Some(found) = self.aut_certs.get(&k) {
            return Ok(found);
        }
        let cached = self.signing_cards.get(&k);
        let handle = match cached {
            Some(h) => h,
            None => {
                let h = self
                    .signing_card(ctx, address, own)
                    .await
                    .map_err(Failure::Final)?;
                self.signing_cards.insert(k.clone(), h.clone());
                h
            }
        };
        let cert = self
            .konnektor
            .read_card_certificates(ctx, &handle, C_AUT, RSA)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Failure::Final(format!(
                    "the SMC-B {handle} holds no RSA authentication certificate (C.AUT)"
                ))
            })?;
        self.aut_certs.insert(k, (handle.clone(), cert.clone()));
        Ok((handle, cert))
    }

    async fn try_jwt(
        &self,
        ctx: &CallContext,
        address: &str,
        own: &[&X509],
        nbf: i64,
    ) -> Result<String, Failure> {
        let (handle, cert) = self.aut_card(ctx, address, own).await?;
        let der = cert
            .to_der()
            .map_err(|e| Failure::Final(format!("the C.AUT certificate: {e}")))?;
        let input = token::signing_input(&der, nbf);
        let signature = self
            .konnektor
            .external_authenticate(ctx, &handle, &token::hash(&input))
            .await?;
        Ok(token::assemble(&input, &signature))
    }

    /// A_19457-02: the Account Manager's JWT for `address`, valid from `nbf`,
    /// signed by the AUT key of its SMC-B. The error says what to do.
    pub async fn jwt(
        &self,
        ctx: &CallContext,
        address: &str,
        own: &[&X509],
        nbf: i64,
    ) -> Result<String, String> {
        let k = key(address, ctx);
        let was_cached = self.aut_certs.contains(&k) || self.signing_cards.contains(&k);
        match self.try_jwt(ctx, address, own, nbf).await {
            Ok(t) => return Ok(t),
            Err(Failure::Konnektor(KonnektorError::Fault { code, text, .. })) if was_cached => {
                // the card may have been pulled and put back: a new handle
                tracing::info!(%address, ?code, "the cached card was refused for the JWT ({text}); asking the Konnektor for the cards again");
                self.aut_certs.remove(&k);
                self.signing_cards.remove(&k);
            }
            Err(Failure::Konnektor(e)) => return Err(explain(e)),
            Err(Failure::Final(why)) => return Err(why),
        }
        match self.try_jwt(ctx, address, own, nbf).await {
            Ok(t) => Ok(t),
            Err(Failure::Konnektor(e)) => Err(explain(e)),
            Err(Failure::Final(why)) => Err(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::http::client::HttpSettings;
    use crate::http::url::HttpsUrl;
    use crate::konnektor::{Konnektor, KonnektorSettings};
    use crate::testbed::konnektor::{start, SimConfig, SimContext};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_card_is_cached_and_asked_for_again_after_it_was_pulled() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::testbed::pki::make(&dir.path().join("pki"), &["a@x.de"]).unwrap();
        let password = std::fs::read_to_string(&pki.password_file).unwrap();
        let sim_ctx = SimContext {
            mandant: "1".into(),
            client_system: "KOM_LE".into(),
            workplace: "7".into(),
        };
        let config = SimConfig::from_pki(&pki, password.trim(), sim_ctx);
        let sim = start(&dir.path().join("k"), config).await.unwrap();
        let connector = crate::net::tls::connector(&sim.tls_ca, None).unwrap();
        let crypto = KonnektorCrypto::new(Arc::new(Konnektor::new(KonnektorSettings {
            sds_url: HttpsUrl::parse(&sim.sds_url).unwrap(),
            http: HttpSettings {
                connector: Arc::new(connector),
                connect_timeout: Duration::from_secs(5),
                timeout: Duration::from_secs(30),
            },
            basic: None,
        })));
        let ctx = CallContext {
            mandant_id: "1".into(),
            client_system_id: "KOM_LE".into(),
            workplace_id: "7".into(),
            user_id: None,
        };
        let jwt = |nbf| crypto.jwt(&ctx, "a@x.de", &[], nbf);
        let t = jwt(1).await.unwrap();
        assert_eq!(token::verify(&t).unwrap().nbf, 1);
        let calls = crypto.konnektor.calls();
        // cached: one ExternalAuthenticate per token
        jwt(2).await.unwrap();
        assert_eq!(crypto.konnektor.calls(), calls + 1);
        // pulled: the cached card is refused, the cards are asked for again, none
        sim.set_faults(&serde_json::json!({"removed_cards": ["SMC-B-1"]}))
            .unwrap();
        let e = jwt(3).await.unwrap_err();
        assert!(e.contains("insert the practice's card"), "{e}");
        // put back: read again and signed
        sim.set_faults(&serde_json::json!({})).unwrap();
        let t = jwt(4).await.unwrap();
        assert_eq!(token::verify(&t).unwrap().nbf, 4);
    }
}
