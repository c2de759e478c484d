//! The send pipeline: what happens to a client's mail between its DATA and the
//! upstream transaction (gemSpec_CM_KOMLE 3.3.4, PROCESS state).
//!
//! The whole mail is received and spooled first; only then does the pipeline run,
//! and only after it does the upstream transaction start (A_23554: MAIL FROM and
//! RCPT TO go to the MTA after the processing, SIZE set to the processed size).
//! The pipeline looks up every party's encryption certificates in the directory,
//! then seals the mail ([`super::seal`]) on a blocking thread: RSA and AES over a
//! 15 MiB mail must not stall the sessions sharing the runtime.

use std::collections::HashMap;
use std::sync::Arc;

use openssl::asn1::Asn1Time;
use openssl::x509::X509;
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

use super::seal::{self, SealRefusal};
use super::{dsn, forward, header, kas, wrap};
use crate::crypto::sealer::SoftwareSealer;
use crate::crypto::software::SoftwareKeys;
use crate::directory::folder::FolderDirectory;
use crate::directory::{Directory, DirectoryError};
use crate::spool::Spool;

/// A_21388-01: X-KIM-CMVersion, `<VendorID>_<product version>`.
pub const CM_VERSION: &str = concat!("KIMCM_", env!("CARGO_PKG_VERSION"));
/// A_21388-01: X-KIM-PTVersion, the product type version this module implements
/// (gemSpec_CM_KOMLE 1.16.0, KIM 1.5.2-3).
pub const PT_VERSION: &str = "1.5.2-3";
/// dataTimeToLive until the account's limits are known (AccountLimit.yaml default).
pub const DEFAULT_DATA_TIME_TO_LIVE_DAYS: i64 = 90;
/// A_19357-02: larger mails go to the KIM Attachment Service. Until kim-cm has a KAS
/// client, they are refused rather than sealed whole.
pub const KAS_THRESHOLD: u64 = 15 * 1024 * 1024;

/// The mail as it will go upstream.
pub struct Outgoing {
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub mail: Spool,
    /// Mails for the sender that go upstream after this one, each its own
    /// transaction from and to the sender (the 4004 DSN, KOM-LE-A_2024-01).
    pub notices: Vec<Vec<u8>>,
    /// Recipients removed because they have no encryption certificate.
    pub unreachable: Vec<String>,
}

/// Why the pipeline refused a mail: the SMTP reply the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {status} {text}")]
pub struct Refusal {
    pub code: u16,
    /// The enhanced status code (RFC 3463).
    pub status: &'static str,
    pub text: String,
}

impl Refusal {
    fn new(code: u16, status: &'static str, text: impl Into<String>) -> Refusal {
        Refusal {
            code,
            status,
            text: text.into(),
        }
    }
}

/// Keys and certificates for sealing in software.
pub struct SoftwareSealing {
    pub keys: Arc<SoftwareKeys>,
    pub directory: FolderDirectory,
}

/// How mails are sealed.
#[derive(Clone)]
pub enum Sealing {
    /// Mails go upstream as the client sent them. Only for tests of the transport
    /// (`allow_unsealed_for_testing`); never in the TI.
    Unsealed,
    Software(Arc<SoftwareSealing>),
}

/// The send pipeline of one Clientmodul.
#[derive(Clone)]
pub struct SendPipeline {
    sealing: Sealing,
    /// This Clientmodul's name in DSNs (`Reporting-MTA`).
    reporting_name: String,
}

impl SendPipeline {
    pub fn new(sealing: Sealing, reporting_name: &str) -> SendPipeline {
        SendPipeline {
            sealing,
            reporting_name: reporting_name.to_string(),
        }
    }

    /// Turns the client's mail, sent by the logged-in `account`, into the mail for
    /// the MTA.
    pub async fn run(
        &self,
        account: &str,
        mail_from: &str,
        recipients: &[String],
        mut mail: Spool,
        data_time_to_live_days: i64,
    ) -> Result<Outgoing, Refusal> {
        let setup = match &self.sealing {
            Sealing::Unsealed => {
                return Ok(Outgoing {
                    mail_from: mail_from.to_string(),
                    recipients: recipients.to_vec(),
                    mail,
                    notices: Vec::new(),
                    unreachable: Vec::new(),
                })
            }
            Sealing::Software(s) => s.clone(),
        };
        if mail.len() > KAS_THRESHOLD {
            return Err(Refusal::new(
                552,
                "5.3.4",
                format!(
                    "Mails over {} MiB go through the KIM Attachment Service, which this kim-cm version does not support yet; send the attachments in smaller mails",
                    KAS_THRESHOLD >> 20
                ),
            ));
        }
        let bytes = mail.to_vec().await.map_err(|e| {
            tracing::error!("cannot read the spooled mail: {e}");
            Refusal::new(
                451,
                "4.3.0",
                "Local error reading the spooled mail; nothing was sent, try again",
            )
        })?;
        // A_22341: the KAS part is the Clientmodul's to write
        if kas::carries_kas_part(&bytes) {
            return Err(Refusal::new(
                451,
                "4.6.0",
                "The mail carries a KIM attachment part (Content-Disposition: x-kas), which only the Clientmodul writes; remove it and send again",
            ));
        }
        // KOM-LE-A_2029: a KIM mail forwarded to oneself goes upstream as it is
        let to_self =
            !recipients.is_empty() && recipients.iter().all(|r| r.eq_ignore_ascii_case(account));
        if to_self {
            if let Some(inner) = forward::forwarded_kim_mail(&bytes) {
                tracing::info!(%account, "forwarded KIM mail re-delivered as it is (KOM-LE-A_2029)");
                return Ok(Outgoing {
                    mail_from: mail_from.to_string(),
                    recipients: recipients.to_vec(),
                    mail: mail.with_bytes(inner),
                    notices: Vec::new(),
                    unreachable: Vec::new(),
                });
            }
        }
        if setup.keys.account(account).is_none() {
            return Err(Refusal::new(
                451,
                "4.7.0",
                format!("No keys are configured for {account} (signing_pkcs12 and encryption_pkcs12 in its [[account]]); ask the administrator"),
            ));
        }
        let certs = lookup(&setup.directory, account, recipients).await?;
        let (account_owned, rcpt) = (account.to_string(), recipients.to_vec());
        let reporting = self.reporting_name.clone();
        let sealed = tokio::task::spawn_blocking(move || {
            let ttl = data_time_to_live_days;
            seal_blocking(
                &setup,
                bytes,
                &account_owned,
                &rcpt,
                &certs,
                &reporting,
                ttl,
            )
        })
        .await
        .map_err(|e| {
            tracing::error!("sealing task failed: {e}");
            Refusal::new(451, "4.3.0", "Local error while sealing; nothing was sent")
        })??;
        let (sealed, notices) = sealed;
        Ok(Outgoing {
            mail_from: mail_from.to_string(),
            recipients: sealed.recipients,
            mail: mail.with_bytes(sealed.mail),
            notices,
            unreachable: sealed.unreachable,
        })
    }
}

/// The usable encryption certificates of the account and every recipient.
async fn lookup(
    directory: &FolderDirectory,
    account: &str,
    recipients: &[String],
) -> Result<HashMap<String, Vec<X509>>, Refusal> {
    let mut certs = HashMap::new();
    for address in std::iter::once(&account.to_string()).chain(recipients) {
        let key = address.to_ascii_lowercase();
        if certs.contains_key(&key) {
            continue;
        }
        let found = directory.encryption_certs(address).await.map_err(|e| {
            tracing::warn!(%address, "directory lookup failed: {e}");
            match e {
                DirectoryError::Unavailable(_) => Refusal::new(
                    451,
                    "4.4.3",
                    "The directory service is unavailable; nothing was sent, try again later",
                ),
                DirectoryError::BadEntry { .. } => Refusal::new(
                    451,
                    "4.7.5",
                    format!("The directory entry of {address} is unreadable; nothing was sent, ask the administrator"),
                ),
            }
        })?;
        certs.insert(key, usable(found));
    }
    Ok(certs)
}

/// KOM-LE-A_2024-01: only valid certificates count (within their validity period).
/// Only RSA keys: ECC encryption certificates need the Konnektor's ECIES, and
/// without ECC support they must not be used (A_17472).
pub fn usable(certs: Vec<X509>) -> Vec<X509> {
    let Ok(now) = Asn1Time::days_from_now(0) else {
        return Vec::new();
    };
    certs
        .into_iter()
        .filter(|c| {
            c.not_before() <= now
                && c.not_after() >= now
                && c.public_key().is_ok_and(|k| k.rsa().is_ok())
        })
        .collect()
}

type SealedWithNotices = (seal::Sealed, Vec<Vec<u8>>);

/// A_22417: the outer `Expires`, send time + dataTimeToLive.
pub fn expires(now: OffsetDateTime, data_time_to_live_days: i64) -> Option<String> {
    (now + time::Duration::days(data_time_to_live_days))
        .format(&Rfc2822)
        .ok()
}

/// The fields kim-cm writes into every outer mail besides the copied ones.
pub fn outer_fields(expires: Option<&str>) -> wrap::OuterFields<'_> {
    wrap::OuterFields {
        kom_le_version: "1.0",
        cm_version: CM_VERSION,
        pt_version: PT_VERSION,
        expires,
    }
}

fn seal_blocking(
    setup: &SoftwareSealing,
    mail: Vec<u8>,
    account: &str,
    recipients: &[String],
    certs: &HashMap<String, Vec<X509>>,
    reporting: &str,
    data_time_to_live_days: i64,
) -> Result<SealedWithNotices, Refusal> {
    let now = OffsetDateTime::now_utc();
    let expires = expires(now, data_time_to_live_days);
    let fields = outer_fields(expires.as_deref());
    let original_head = header::split(&mail).0.to_vec();
    let lookup = |a: &str| {
        certs
            .get(&a.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    };
    let sealer = SoftwareSealer { keys: &setup.keys };
    let sealed =
        seal::seal(mail, account, recipients, &lookup, &sealer, &fields).map_err(|e| match e {
            // spec FAQ: 553 when the sender has no encryption certificate
            SealRefusal::SenderNotEncryptable(a) => Refusal::new(
                553,
                "5.7.5",
                format!("The sender {a} has no valid encryption certificate in the directory; the mail was not sent"),
            ),
            // KOM-LE-A_2025
            SealRefusal::NoRecipientEncryptable(list) => Refusal::new(
                451,
                "4.7.5",
                format!(
                    "No recipient has a valid encryption certificate ({}); the mail was not sent",
                    list.join(", ")
                ),
            ),
            SealRefusal::Crypto(why) => {
                tracing::error!(%account, "sealing failed: {why}");
                Refusal::new(451, "4.7.5", format!("Sealing failed: {why}; the mail was not sent"))
            }
        })?;
    let mut notices = Vec::new();
    if !sealed.unreachable.is_empty() {
        notices.push(dsn::not_encryptable(
            account,
            &sealed.unreachable,
            &original_head,
            reporting,
            now,
        ));
    }
    Ok((sealed, notices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};

    fn cert(key: &PKey<Private>, from_days: i64, to_days: i64) -> X509 {
        let day = |d: i64| {
            let secs = time::OffsetDateTime::now_utc().unix_timestamp() + d * 86400;
            Asn1Time::from_unix(secs).unwrap()
        };
        let mut b = X509::builder().unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&day(from_days)).unwrap();
        b.set_not_after(&day(to_days)).unwrap();
        b.sign(key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    #[test]
    fn only_valid_rsa_certificates_are_used() {
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let group = EcGroup::from_curve_name(Nid::BRAINPOOL_P256R1).unwrap();
        let ec = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let valid = cert(&rsa, -1, 30);
        let expired = cert(&rsa, -30, -1);
        let not_yet = cert(&rsa, 1, 30);
        // A_17472: without the Konnektor's ECC support, ECC certificates are skipped
        let brainpool = cert(&ec, -1, 30);
        let kept = usable(vec![expired, brainpool, valid.clone(), not_yet]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].to_der().unwrap(), valid.to_der().unwrap());
    }
}
