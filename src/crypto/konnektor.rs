//! The send and receive pipelines' cryptography through the Konnektor
//! (KOM-LE-A_2177): SignDocument with the SMC-B's RSA key, EncryptDocument for
//! every certificate, DecryptDocument with the card whose encryption certificate
//! the mail names, VerifyDocument for the verdict.
//!
//! Which card: for signing the SMC-B the Konnektor shows in the sender's context
//! (KOM-LE-A_2052) whose encryption certificate the directory lists for the
//! sender, so a Konnektor shared by two practices never signs with the other's. For decryption the card whose C.ENC
//! certificate has a RecipientInfo in the mail (KOM-LE-A_2059, A_2060), both SMC-B
//! and HBA, with the key of that certificate: its RSA or its ECC key (3.8.4,
//! C.ENC_RSA or C.ENC_ECC). Both choices are cached (KOM-LE-A_2061), so a mail costs one
//! SignDocument and one EncryptDocument to send, one DecryptDocument and one
//! VerifyDocument to open; a fault on a cached card drops it and asks again once.
//!
//! The card's AUT key signs the Account Manager's JWT ([`aut`], A_19457-02).
//!
//! The pipelines call providers on blocking threads; the SOAP calls are async, so
//! each runs on the runtime through [`tokio::runtime::Handle::block_on`].

use std::collections::HashMap;
use std::sync::Arc;

use openssl::x509::store::X509Store;
use openssl::x509::X509;

mod aut;
mod card_cache;

use self::card_cache::{CardCache, TTL_EMAIL_ICCSN};
use super::crypt::Crypt;
use super::sealer::attribute;
use crate::cms;
use crate::kim::login::CallContext;
use crate::kim::receive::{DecryptError, Opener, SignatureCheck, Verification};
use crate::kim::seal::{CertFor, Sealer};
use crate::konnektor::ops::{Card, HighLevel};
use crate::konnektor::{Konnektor, KonnektorError};

/// Card types that hold encryption keys for KIM (SMC-B for the practice, HBA for
/// a physician).
const DECRYPTING_CARDS: [&str; 2] = ["SMC-B", "HBA"];
/// The Konnektor's key for KIM signatures is always RSA (KOM-LE-A_2020).
const RSA: &str = "RSA";
/// 3.8.4: both encryption certificates of a card are read, RSA first.
const ENCRYPTION_KEYS: [Crypt; 2] = [Crypt::Rsa, Crypt::Ecc];

/// A card that may decrypt: its handle, one of its encryption certificates, and
/// which of its keys that is.
#[derive(Clone)]
struct DecryptingKey {
    handle: String,
    cert: X509,
    crypt: Crypt,
}

/// One Konnektor as crypto provider, with its card caches.
pub struct KonnektorCrypto {
    pub konnektor: Arc<Konnektor>,
    /// Sender address (lower case) and context: the SMC-B's handle.
    signing_cards: CardCache<String>,
    /// Recipient address (lower case) and context: the decrypting cards with their
    /// encryption certificates.
    decrypting_cards: CardCache<Vec<DecryptingKey>>,
    /// Address (lower case) and context: the signing card's handle and its AUT
    /// certificate (C.AUT, A_19457-02).
    aut_certs: CardCache<(String, X509)>,
}

fn key(address: &str, ctx: &CallContext) -> String {
    format!(
        "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
        address.to_ascii_lowercase(),
        ctx.mandant_id,
        ctx.client_system_id,
        ctx.workplace_id,
        ctx.user_id.as_deref().unwrap_or("")
    )
}

impl KonnektorCrypto {
    pub fn new(konnektor: Arc<Konnektor>) -> KonnektorCrypto {
        KonnektorCrypto {
            konnektor,
            signing_cards: CardCache::new(TTL_EMAIL_ICCSN),
            decrypting_cards: CardCache::new(TTL_EMAIL_ICCSN),
            aut_certs: CardCache::new(TTL_EMAIL_ICCSN),
        }
    }

    /// A_17464: whether the Konnektor supports ECC, from its service directory. A
    /// directory that cannot be read counts as no (A_17472); the call that needs
    /// the Konnektor then says why.
    pub async fn ecc(&self) -> bool {
        match self.konnektor.endpoints().await {
            Ok(e) => e.ecc,
            Err(e) => {
                tracing::debug!(
                    "the Konnektor's ECC support is unknown, ECC certificates are not used: {e}"
                );
                false
            }
        }
    }

    /// KOM-LE-A_2052, A_2057: the SMC-B that signs for `sender`; `own` are the
    /// sender's encryption certificates from the directory.
    async fn signing_card(
        &self,
        ctx: &CallContext,
        sender: &str,
        own: &[&X509],
    ) -> Result<String, String> {
        let k = &self.konnektor;
        let cards = k
            .get_cards(ctx, Some("SMC-B"))
            .await
            .map_err(|e| e.to_string())?;
        let mut smcb: Vec<Card> = cards
            .into_iter()
            .filter(|c| c.card_type == "SMC-B")
            .collect();
        if smcb.is_empty() {
            return Err("no SMC-B is inserted in the Konnektor for this context (KOM-LE-A_2057); insert the practice's card".into());
        }
        // without the sender's certificates there is nothing to match: one card only
        if own.is_empty() && smcb.len() == 1 {
            return Ok(smcb.remove(0).handle);
        }
        let own_der: Vec<Vec<u8>> = own.iter().filter_map(|c| c.to_der().ok()).collect();
        for c in &smcb {
            let certs = k
                .read_card_certificates(ctx, &c.handle, "C.ENC", RSA)
                .await
                .map_err(|e| e.to_string())?;
            if certs
                .iter()
                .any(|x| x.to_der().is_ok_and(|d| own_der.contains(&d)))
            {
                return Ok(c.handle.clone());
            }
        }
        Err(format!("no inserted SMC-B holds a certificate of {sender} from the directory (KOM-LE-A_2057); insert the practice's card"))
    }

    async fn sign(
        &self,
        ctx: &CallContext,
        sender: &str,
        content: &[u8],
        entries: &[CertFor],
    ) -> Result<Vec<u8>, String> {
        let attr = attribute(entries)?;
        let own: Vec<&X509> = entries
            .iter()
            .filter(|(_, a)| a.eq_ignore_ascii_case(sender))
            .map(|(c, _)| c)
            .collect();
        let k = key(sender, ctx);
        let cached = self.signing_cards.get(&k);
        if let Some(handle) = cached {
            match self.konnektor.sign(ctx, &handle, content, &attr).await {
                Ok(der) => return Ok(der),
                Err(KonnektorError::Fault { .. }) => {
                    // the card may have been pulled and put back: a new handle
                    tracing::info!(%sender, "the cached signing card was refused; asking the Konnektor for the cards again");
                    self.signing_cards.remove(&k);
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        let handle = self.signing_card(ctx, sender, &own).await?;
        let der = self
            .konnektor
            .sign(ctx, &handle, content, &attr)
            .await
            .map_err(|e| e.to_string())?;
        self.signing_cards.insert(k, handle);
        Ok(der)
    }

    /// The cards (and their encryption certificates) that may decrypt for
    /// `address`, from the cache or the Konnektor (KOM-LE-A_2060).
    async fn decrypting_cards(
        &self,
        ctx: &CallContext,
        address: &str,
        fresh: bool,
    ) -> Result<Vec<DecryptingKey>, KonnektorError> {
        let k = key(address, ctx);
        if !fresh {
            if let Some(c) = self.decrypting_cards.get(&k) {
                return Ok(c.clone());
            }
        }
        let mut found = Vec::new();
        for card in self.konnektor.get_cards(ctx, None).await? {
            if !DECRYPTING_CARDS.contains(&card.card_type.as_str()) {
                continue;
            }
            // 3.8.4: both the RSA and the ECC encryption certificate count; a card
            // (or a Konnektor) without ECC faults or answers without one
            for crypt in ENCRYPTION_KEYS {
                match self
                    .konnektor
                    .read_card_certificates(ctx, &card.handle, "C.ENC", crypt.konnektor_name())
                    .await
                {
                    Ok(certs) => found.extend(certs.into_iter().map(|cert| DecryptingKey {
                        handle: card.handle.clone(),
                        cert,
                        crypt,
                    })),
                    Err(KonnektorError::Fault { code, text, .. }) => {
                        tracing::debug!(handle = %card.handle, crypt = crypt.konnektor_name(), ?code, "no encryption certificate read from this card: {text}")
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.decrypting_cards.insert(k, found.clone());
        Ok(found)
    }

    async fn decrypt(
        &self,
        ctx: &CallContext,
        address: &str,
        der: &[u8],
    ) -> Result<Vec<u8>, DecryptError> {
        // KOM-LE-A_2059: the card whose certificate recipient-emails names for this
        // address and the mail has a RecipientInfo for. A card of the sender in the
        // same Konnektor also has one, and must not be used (KOM-LE-A_2045).
        let named = match cms::recipient_emails_of(der) {
            Ok(Some(re)) => re,
            Ok(None) | Err(_) => return Err(DecryptError::WrongFormat),
        };
        let fits = |c: &X509| {
            named
                .for_cert(c)
                .iter()
                .any(|e| e.email.eq_ignore_ascii_case(address))
                && cms::addressed_to(der, c)
        };
        for fresh in [false, true] {
            let cards = self
                .decrypting_cards(ctx, address, fresh)
                .await
                .map_err(decrypt_error)?;
            let Some(key) = cards.iter().find(|k| fits(&k.cert)) else {
                if fresh {
                    return Err(match cms::decrypt::parts_ok(der) {
                        Ok(()) => DecryptError::KeyUnavailable,
                        Err(_) => DecryptError::WrongFormat,
                    });
                }
                continue;
            };
            // 3.8.4: the key of the certificate found, C.ENC_RSA or C.ENC_ECC
            let crypt = key.crypt.konnektor_name();
            match self.konnektor.decrypt(ctx, &key.handle, crypt, der).await {
                Ok(plain) => return Ok(plain),
                Err(KonnektorError::Fault { code, text, .. }) if !fresh => {
                    tracing::info!(%address, ?code, "the cached decrypting card was refused ({text}); asking the Konnektor for the cards again");
                }
                Err(e) => return Err(decrypt_error(e)),
            }
        }
        Err(DecryptError::KeyUnavailable)
    }
}

fn decrypt_error(e: KonnektorError) -> DecryptError {
    match e {
        KonnektorError::Unavailable(why) => {
            tracing::warn!("the Konnektor is unavailable for decryption: {why}");
            DecryptError::ProviderUnavailable
        }
        other => {
            tracing::warn!("the Konnektor did not decrypt: {other}");
            DecryptError::KeyUnavailable
        }
    }
}

/// Seals for one sender in its Konnektor context.
pub struct KonnektorSealer<'a> {
    pub crypto: &'a KonnektorCrypto,
    pub context: &'a CallContext,
    pub runtime: tokio::runtime::Handle,
}

impl Sealer for KonnektorSealer<'_> {
    fn sign(
        &self,
        sender: &str,
        content: &[&[u8]],
        entries: &[CertFor],
    ) -> Result<Vec<u8>, String> {
        let content = content.concat();
        self.runtime
            .block_on(self.crypto.sign(self.context, sender, &content, entries))
    }

    fn encrypt(&self, content: &[&[u8]], entries: &[CertFor]) -> Result<Vec<u8>, String> {
        let attr = attribute(entries)?;
        let certs: Vec<&X509> = entries.iter().map(|(c, _)| c).collect();
        let content = content.concat();
        self.runtime
            .block_on(
                self.crypto
                    .konnektor
                    .encrypt(self.context, &certs, &content, &attr),
            )
            .map_err(|e| e.to_string())
    }
}

/// Opens mails for one user in its Konnektor context.
pub struct KonnektorOpener<'a> {
    pub crypto: &'a KonnektorCrypto,
    pub context: &'a CallContext,
    /// For reading the signed content locally, and the verdict when the Konnektor
    /// cannot be asked.
    pub trust: &'a X509Store,
    pub runtime: tokio::runtime::Handle,
}

impl Opener for KonnektorOpener<'_> {
    fn recipient_emails(&self, der: &[u8]) -> Result<(Vec<String>, Vec<u8>), DecryptError> {
        match cms::recipient_emails_of(der) {
            Ok(Some(re)) => Ok((re.emails(), re.attribute_der)),
            // KOM-LE-A_2107: unauthAttrs are mandatory
            Ok(None) | Err(_) => Err(DecryptError::WrongFormat),
        }
    }

    fn decrypt(&self, address: &str, der: Vec<u8>) -> Result<Vec<u8>, DecryptError> {
        self.runtime
            .block_on(self.crypto.decrypt(self.context, address, &der))
    }

    fn verify<'a>(&self, signed_der: &'a [u8]) -> Verification<'a> {
        // the content and the signed attribute are read here; the verdict is the
        // Konnektor's (3.8.2)
        let local = cms::verify(signed_der, self.trust);
        let local_check = match local.status {
            cms::SignatureStatus::Valid => SignatureCheck::Valid,
            cms::SignatureStatus::IntegrityViolated => SignatureCheck::IntegrityViolated,
            cms::SignatureStatus::WrongFormat => SignatureCheck::WrongFormat,
            cms::SignatureStatus::CertPathInvalid => SignatureCheck::CertPathInvalid,
        };
        let verdict = self
            .runtime
            .block_on(self.crypto.konnektor.verify(self.context, signed_der));
        let check = match verdict {
            // Tab_Verm_Sig_Prüf 07: INCONCLUSIVE (4264) counts as checked
            Ok(v) if v.result != HighLevel::Invalid => SignatureCheck::Valid,
            Ok(v) => match v.code {
                Some(4253) => SignatureCheck::NoSignature,
                Some(4112) => SignatureCheck::WrongFormat,
                Some(4206) => SignatureCheck::CertPathInvalid,
                _ => SignatureCheck::IntegrityViolated,
            },
            Err(e) => {
                tracing::warn!(
                    "the Konnektor did not verify the signature, kim-cm's own check stands: {e}"
                );
                local_check
            }
        };
        // what the Konnektor calls valid must also be what kim-cm read
        let check =
            if check == SignatureCheck::Valid && local_check == SignatureCheck::IntegrityViolated {
                local_check
            } else {
                check
            };
        Verification {
            check,
            content: local.content,
            recipient_emails: local.recipient_emails.map(|r| r.attribute_der),
        }
    }
}

/// Which accounts use which Konnektor, and their default call contexts.
#[derive(Default)]
pub struct KonnektorAccounts {
    by_id: HashMap<String, Arc<KonnektorCrypto>>,
    /// Lower-case address: the Konnektor id and the context from the config.
    accounts: HashMap<String, (String, Option<CallContext>)>,
}

impl KonnektorAccounts {
    pub fn new() -> KonnektorAccounts {
        KonnektorAccounts::default()
    }

    pub fn add_konnektor(&mut self, id: &str, crypto: Arc<KonnektorCrypto>) {
        self.by_id.insert(id.to_string(), crypto);
    }

    pub fn add_account(&mut self, address: &str, konnektor_id: &str, context: Option<CallContext>) {
        self.accounts.insert(
            address.to_ascii_lowercase(),
            (konnektor_id.to_string(), context),
        );
    }

    /// Whether `address` keeps its keys on a Konnektor's cards.
    /// Every configured Konnektor, by id.
    pub fn konnektors(&self) -> impl Iterator<Item = (&str, &Arc<Konnektor>)> {
        self.by_id.iter().map(|(id, c)| (id.as_str(), &c.konnektor))
    }

    pub fn has(&self, address: &str) -> bool {
        self.accounts.contains_key(&address.to_ascii_lowercase())
    }

    /// The Konnektor and call context for `address`: the login name's context and
    /// KonnektorId when it carries them (gemSpec_CM_KOMLE 3.2.2.2, A_21457), the
    /// config's otherwise. None for an account with software keys; an error that
    /// tells the user what is missing.
    pub fn for_account(
        &self,
        address: &str,
        login_context: Option<&CallContext>,
        login_konnektor: Option<&str>,
    ) -> Option<Result<(Arc<KonnektorCrypto>, CallContext), String>> {
        let (id, configured) = self.accounts.get(&address.to_ascii_lowercase())?;
        let id = login_konnektor.unwrap_or(id);
        let Some(crypto) = self.by_id.get(id) else {
            return Some(Err(format!(
                "the login names Konnektor '{id}', which is not configured ([[konnektor]] id)"
            )));
        };
        let Some(ctx) = login_context.or(configured.as_ref()) else {
            return Some(Err(format!("no Konnektor context for {address}: log in as address#server#MandantId#ClientSystemId#WorkplaceId or set them in its [[account]]")));
        };
        Some(Ok((crypto.clone(), ctx.clone())))
    }
}

impl KonnektorAccounts {
    /// Tab_SMTP_Verbindung, Tab_POP3_Verbindung: when the Konnektor refuses the
    /// login's call context (4004-4006), the client's login fails (`501`, `-ERR`).
    /// The error says what to fix. A Konnektor that cannot be reached does not stop
    /// the login: the mails that need it get their own errors.
    pub async fn check_login(
        &self,
        address: &str,
        login_context: Option<&CallContext>,
        login_konnektor: Option<&str>,
    ) -> Result<(), String> {
        let Some(found) = self.for_account(address, login_context, login_konnektor) else {
            return Ok(());
        };
        let (crypto, ctx) = found?;
        match crypto.konnektor.get_cards(&ctx, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_context_error() => {
                tracing::warn!(%address, mandant = %ctx.mandant_id, client_system = %ctx.client_system_id, workplace = %ctx.workplace_id, "login refused: the Konnektor does not know this call context: {e}");
                Err(format!("the Konnektor refuses the call context MandantId/ClientSystemId/WorkplaceId ({e}); fix the user name or the Konnektor's Infomodell"))
            }
            Err(e) => {
                tracing::warn!(%address, "the Konnektor could not check the login's context: {e}");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::client::HttpSettings;
    use crate::http::url::HttpsUrl;
    use crate::konnektor::KonnektorSettings;

    fn crypto(host: &str) -> Arc<KonnektorCrypto> {
        let connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())
            .unwrap()
            .build();
        let settings = KonnektorSettings {
            sds_url: HttpsUrl::parse(&format!("https://{host}/connector.sds")).unwrap(),
            http: HttpSettings {
                connector: Arc::new(connector),
                connect_timeout: std::time::Duration::from_secs(1),
                timeout: std::time::Duration::from_secs(1),
            },
            basic: None,
        };
        Arc::new(KonnektorCrypto::new(Arc::new(Konnektor::new(settings))))
    }

    fn ctx(mandant: &str) -> CallContext {
        CallContext {
            mandant_id: mandant.into(),
            client_system_id: "KOM_LE".into(),
            workplace_id: "7".into(),
            user_id: None,
        }
    }

    fn host(found: &(Arc<KonnektorCrypto>, CallContext)) -> String {
        found.0.konnektor.sds_host()
    }

    #[test]
    fn the_login_picks_the_konnektor_and_context_and_the_config_fills_in() {
        let mut k = KonnektorAccounts::new();
        k.add_konnektor("k1", crypto("k1.praxis"));
        k.add_konnektor("k2", crypto("k2.praxis"));
        k.add_account("A@x.de", "k1", Some(ctx("1")));
        k.add_account("b@x.de", "k2", None);
        assert!(k.has("a@x.de") && !k.has("c@x.de"));
        assert!(
            k.for_account("c@x.de", None, None).is_none(),
            "software keys"
        );
        // the config's Konnektor and context
        let found = k.for_account("a@x.de", None, None).unwrap().unwrap();
        assert_eq!(
            (host(&found).as_str(), found.1.mandant_id.as_str()),
            ("k1.praxis", "1")
        );
        // A_21457: the login's KonnektorId and context win
        let login = ctx("9");
        let found = k
            .for_account("a@x.de", Some(&login), Some("k2"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (host(&found).as_str(), found.1.mandant_id.as_str()),
            ("k2.praxis", "9")
        );
        // errors that say what is missing
        let Some(Err(e)) = k.for_account("a@x.de", None, Some("k9")) else {
            panic!("an unknown KonnektorId is an error")
        };
        assert!(e.contains("'k9'"), "{e}");
        let Some(Err(e)) = k.for_account("b@x.de", None, None) else {
            panic!("no context is an error")
        };
        assert!(e.contains("MandantId"), "{e}");
    }
}
