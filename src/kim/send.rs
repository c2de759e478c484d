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
use crate::crypto::admission;
use crate::crypto::crypt::{self, Crypt};
use crate::crypto::konnektor::{KonnektorAccounts, KonnektorSealer};
use crate::crypto::sealer::SoftwareSealer;
use crate::crypto::software::SoftwareKeys;
use crate::directory::{Directory, DirectoryError, KimVersion, Source};
use crate::http::client::HttpSettings;
use crate::http::kas::{add_mail_data, delete_mail_data, KasError, MailData, UploadForm};
use crate::http::url::HttpsUrl;
use crate::kim::login::CallContext;
use crate::spool::Spool;
use tokio::io::AsyncReadExt;

/// A_21388-01: X-KIM-CMVersion, `<VendorID>_<product version>`.
pub const CM_VERSION: &str = concat!("KIMCM_", env!("CARGO_PKG_VERSION"));
/// A_21388-01: X-KIM-PTVersion, the product type version this module implements
/// (gemSpec_CM_KOMLE 1.16.0, KIM 1.5.2-3).
pub const PT_VERSION: &str = "1.5.2-3";
/// dataTimeToLive until the account's limits are known (AccountLimit.yaml default).
pub const DEFAULT_DATA_TIME_TO_LIVE_DAYS: i64 = 90;
/// A_19357-02: larger client mails go to the KIM Attachment Service (15 MiB; a
/// `kasMailSizeThreshold` from getLimits takes precedence).
pub const KAS_THRESHOLD: u64 = 15 * 1024 * 1024;
/// The longest client mail header kim-cm reads for a mail that goes to the KAS.
pub const MAX_HEAD_BYTES: usize = 1024 * 1024;
/// A mail to oneself up to this size is checked for a forwarded KIM mail
/// (KOM-LE-A_2029) in memory; a sealed mail of 15 MiB is about 21 MiB.
const MAX_FORWARD_CHECK: u64 = 32 * 1024 * 1024;
/// Spool bytes read per step of the A_22341 scan.
const SCAN_CHUNK: usize = 256 * 1024;

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
    /// The KAS link of the mail data uploaded for this mail: to be deleted when the
    /// mail does not reach the MTA (1.5.3-3, deleteMailData).
    pub kas_link: Option<String>,
}

/// One client mail to send: who sends it to whom, and the account's limits.
pub struct Submission<'a> {
    /// The logged-in KIM account.
    pub account: &'a str,
    /// Its mail password, for the KAS (KIMBasicAuth); never stored.
    pub password: &'a str,
    pub mail_from: &'a str,
    pub recipients: &'a [String],
    /// dataTimeToLive (A_22417, A_19385-02).
    pub data_time_to_live_days: i64,
    /// Client mails larger than this go to the KAS (A_19357-02).
    pub kas_threshold: u64,
    /// The Konnektor call context and KonnektorId from the login name, if it
    /// carries them (gemSpec_CM_KOMLE 3.2.2.2).
    pub context: Option<&'a CallContext>,
    pub konnektor_id: Option<&'a str>,
}

/// Where the KIM Attachment Service is, and how it is reached.
pub struct KasService {
    /// `https://host:port/attachments/v2.4`
    pub base: HttpsUrl,
    pub http: HttpSettings,
}

/// Why the pipeline refused a mail: the SMTP reply the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {status} {text}")]
pub struct Refusal {
    pub code: u16,
    /// The enhanced status code (RFC 3463).
    pub status: &'static str,
    pub text: String,
    /// Mails for the sender that go upstream although the mail did not (the 4002
    /// DSN, A_19363-03, and the notices of the directory's rules).
    pub notices: Vec<Vec<u8>>,
}

impl Refusal {
    fn new(code: u16, status: &'static str, text: impl Into<String>) -> Refusal {
        Refusal {
            code,
            status,
            text: text.into(),
            notices: Vec::new(),
        }
    }

    /// The refusal with the notices of earlier steps in front of its own: a
    /// notice once decided (4017, 4005, 4001) goes out whatever fails later.
    fn preceded_by(mut self, mut earlier: Vec<Vec<u8>>) -> Refusal {
        earlier.append(&mut self.notices);
        self.notices = earlier;
        self
    }

    fn local(what: &str) -> Refusal {
        Refusal::new(
            451,
            "4.3.0",
            format!("Local error {what}; nothing was sent, try again"),
        )
    }
}

/// Who signs and encrypts: PKCS#12 keys in software, or for the accounts listed
/// in `konnektors` the Konnektor (KOM-LE-A_2177); and where certificates come from.
pub struct SoftwareSealing {
    pub keys: Arc<SoftwareKeys>,
    pub konnektors: Arc<KonnektorAccounts>,
    pub directory: Arc<Source>,
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
    kas: Option<Arc<KasService>>,
}

impl SendPipeline {
    pub fn new(sealing: Sealing, reporting_name: &str, kas: Option<KasService>) -> SendPipeline {
        SendPipeline {
            sealing,
            reporting_name: reporting_name.to_string(),
            kas: kas.map(Arc::new),
        }
    }

    /// The accounts whose keys are in a Konnektor, if mails are sealed at all.
    pub fn konnektors(&self) -> Option<&KonnektorAccounts> {
        match &self.sealing {
            Sealing::Software(s) => Some(&s.konnektors),
            Sealing::Unsealed => None,
        }
    }

    /// Turns the client's mail into the mail for the MTA.
    pub async fn run(&self, sub: &Submission<'_>, mut mail: Spool) -> Result<Outgoing, Refusal> {
        let (account, mail_from, recipients) = (sub.account, sub.mail_from, sub.recipients);
        let setup = match &self.sealing {
            Sealing::Unsealed => {
                return Ok(Outgoing {
                    mail_from: mail_from.to_string(),
                    recipients: recipients.to_vec(),
                    mail,
                    notices: Vec::new(),
                    unreachable: Vec::new(),
                    kas_link: None,
                })
            }
            Sealing::Software(s) => s.clone(),
        };
        let to_self =
            !recipients.is_empty() && recipients.iter().all(|r| r.eq_ignore_ascii_case(account));
        let in_memory =
            mail.len() <= sub.kas_threshold || (to_self && mail.len() <= MAX_FORWARD_CHECK);
        if !in_memory {
            return self.run_kas(sub, &setup, mail).await;
        }
        let bytes = mail.to_vec().await.map_err(|e| {
            tracing::error!("cannot read the spooled mail: {e}");
            Refusal::local("reading the spooled mail")
        })?;
        // A_22341: the KAS part is the Clientmodul's to write
        if kas::carries_kas_part(&bytes) {
            return Err(kas_part_refusal());
        }
        // KOM-LE-A_2029: a KIM mail forwarded to oneself goes upstream as it is
        if to_self {
            if let Some(inner) = forward::forwarded_kim_mail(&bytes) {
                tracing::info!(%account, "forwarded KIM mail re-delivered as it is (KOM-LE-A_2029)");
                return Ok(Outgoing {
                    mail_from: mail_from.to_string(),
                    recipients: recipients.to_vec(),
                    mail: mail.with_bytes(inner),
                    notices: Vec::new(),
                    unreachable: Vec::new(),
                    kas_link: None,
                });
            }
        }
        if mail.len() > sub.kas_threshold {
            drop(bytes);
            return self.run_kas(sub, &setup, mail).await;
        }
        has_keys(&setup, account)?;
        let mut found = lookup(&setup.directory, account, recipients).await?;
        keep_encryptable(&setup, sub, &mut found).await;
        let (kept, mut notices) = self.screen(sub, &found, header::split(&bytes).0, false)?;
        let kept_sub = Submission {
            recipients: &kept,
            ..*sub
        };
        let sealed = self
            .seal(&setup, &kept_sub, bytes, found.certs, Version::Small)
            .await;
        let (sealed, sealing_notices) = match sealed {
            Ok(s) => s,
            Err(r) => return Err(r.preceded_by(notices)),
        };
        notices.extend(sealing_notices);
        Ok(Outgoing {
            mail_from: mail_from.to_string(),
            recipients: sealed.recipients,
            mail: mail.with_bytes(sealed.mail),
            notices,
            unreachable: sealed.unreachable,
            kas_link: None,
        })
    }

    /// Seals `mail` on a blocking thread.
    async fn seal(
        &self,
        setup: &Arc<SoftwareSealing>,
        sub: &Submission<'_>,
        mail: Vec<u8>,
        certs: HashMap<String, Vec<X509>>,
        version: Version,
    ) -> Result<SealedWithNotices, Refusal> {
        let (account, rcpt) = (sub.account.to_string(), sub.recipients.to_vec());
        let (setup, reporting) = (setup.clone(), self.reporting_name.clone());
        let ttl = sub.data_time_to_live_days;
        let provider =
            match setup
                .konnektors
                .for_account(sub.account, sub.context, sub.konnektor_id)
            {
                None => None,
                Some(Ok(k)) => Some(k),
                Some(Err(why)) => {
                    tracing::warn!(account = %sub.account, "cannot use the Konnektor: {why}");
                    return Err(Refusal::new(
                        501,
                        "5.5.4",
                        format!("{why}; the mail was not sent"),
                    ));
                }
            };
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let konnektor = provider.as_ref().map(|(crypto, context)| KonnektorSealer {
                crypto,
                context,
                runtime,
            });
            seal_blocking(
                &setup,
                konnektor.as_ref(),
                mail,
                &account,
                &rcpt,
                &certs,
                &reporting,
                ttl,
                version,
            )
        })
        .await
        .map_err(|e| {
            tracing::error!("sealing task failed: {e}");
            Refusal::local("while sealing")
        })?
    }

    /// A_19357-02 and on: a client mail over the threshold goes to the KAS, and the
    /// KIM mail carries only its KIM-Attachment structure. The body is never loaded:
    /// it streams from the spool through AES-GCM into the upload.
    async fn run_kas(
        &self,
        sub: &Submission<'_>,
        setup: &Arc<SoftwareSealing>,
        mut mail: Spool,
    ) -> Result<Outgoing, Refusal> {
        let account = sub.account;
        let Some(kas) = self.kas.clone() else {
            return Err(Refusal::new(
                552,
                "5.3.4",
                format!(
                    "Mails over {} MiB go through the KIM Attachment Service, and none is configured ([upstream] kas_url); ask the administrator",
                    sub.kas_threshold >> 20
                ),
            ));
        };
        let prefix = mail.read_prefix(MAX_HEAD_BYTES).await.map_err(|e| {
            tracing::error!("cannot read the spooled mail: {e}");
            Refusal::local("reading the spooled mail")
        })?;
        let (head, body) = header::split(&prefix);
        if body.is_empty() && head.len() == prefix.len() {
            return Err(Refusal::new(
                554,
                "5.6.0",
                format!(
                    "The mail's header has no end within {} KiB; the mail was not sent",
                    MAX_HEAD_BYTES >> 10
                ),
            ));
        }
        let body_offset = (prefix.len() - body.len()) as u64;
        let blank = prefix[head.len()..body_offset as usize].to_vec();
        let head = head.to_vec();
        drop(prefix);
        // A_22341: the KAS part is the Clientmodul's to write
        if scan_for_kas_part(&mut mail).await.map_err(|e| {
            tracing::error!("cannot read the spooled mail: {e}");
            Refusal::local("reading the spooled mail")
        })? {
            return Err(kas_part_refusal());
        }
        has_keys(setup, account)?;
        let mut found = lookup(&setup.directory, account, sub.recipients).await?;
        keep_encryptable(setup, sub, &mut found).await;
        let (kept, mut notices) = self.screen(sub, &found, &head, true)?;
        let kept_sub = Submission {
            recipients: &kept,
            ..*sub
        };
        let sub = &kept_sub;
        let certs = found.certs;
        let lookup_certs = |a: &str| {
            certs
                .get(&a.to_ascii_lowercase())
                .cloned()
                .unwrap_or_default()
        };
        let parties = seal::parties(account, sub.recipients, &lookup_certs)
            .map_err(|e| seal_refusal(e, account))?;

        // A_19363-03: every header change before the upload
        let processed = seal::processed_head(&head, &parties.reachable);
        let body_len = mail.len() - body_offset;
        let size = processed.len() as u64 + blank.len() as u64 + body_len;
        let mut start = processed.clone();
        start.extend_from_slice(&blank);
        let template = mail.with_bytes(Vec::new());
        let body_reader = mail.into_reader_from(body_offset).await.map_err(|e| {
            tracing::error!("cannot read the spooled mail: {e}");
            Refusal::local("reading the spooled mail")
        })?;
        let data = MailData {
            reader: Box::pin(std::io::Cursor::new(start).chain(body_reader)),
            size,
        };
        let now = OffsetDateTime::now_utc();
        let expires = expires(now, sub.data_time_to_live_days).unwrap_or_default();
        let message_id = header::value(&processed, "Message-ID")
            .map(|m| m.trim_matches(|c| c == '<' || c == '>').to_string())
            .unwrap_or_else(|| format!("kim-cm-{}", hex::encode(rand::random::<[u8; 12]>())));
        // who may download: the recipients that get the mail, and the sender
        let mut allowed = parties.reachable.clone();
        if !allowed.iter().any(|r| r.eq_ignore_ascii_case(account)) {
            allowed.push(account.to_string());
        }
        let form = UploadForm {
            base: &kas.base,
            user: account,
            password: sub.password,
            message_id: &message_id,
            recipients: &allowed,
            expires: &expires,
        };
        let uploaded = add_mail_data(&form, data, &kas.http).await;
        crate::metrics::inc(
            "kimcm_kas_uploads_total",
            &[("result", if uploaded.is_ok() { "ok" } else { "error" })],
        );
        let uploaded = uploaded.map_err(|e| {
            tracing::warn!(%account, size, "KAS upload failed: {e}");
            match e {
                // A_22419-01
                KasError::Full => Refusal::new(
                    521,
                    "5.2.2",
                    "The KIM Attachment Service storage of this account is full; delete old mails or ask the provider, then send again",
                ),
                KasError::TooLarge => Refusal::new(
                    552,
                    "5.3.4",
                    "The KIM Attachment Service does not take mail data this large; the mail was not sent",
                ),
                // A_19363-03: 451, and the 4002 report to the sender
                KasError::Failed(_) => {
                    let mut r = Refusal::new(
                        451,
                        "4.4.0",
                        "The mail data could not be stored on the KIM Attachment Service; nothing was sent, try again later",
                    );
                    r.notices.push(dsn::kas_upload_failed(
                        account,
                        sub.recipients,
                        &head,
                        &self.reporting_name,
                        now,
                    ));
                    r
                }
            }
        })?;
        tracing::info!(%account, size, link = %uploaded.link, "mail data stored on the KAS");
        crate::metrics::add(
            "kimcm_kas_upload_bytes_total",
            &[],
            crate::crypto::kas_blob::sealed_len(uploaded.size) as f64,
        );
        let attachment = kas::KimAttachment {
            link: uploaded.link.clone(),
            k: uploaded.blob.k.clone(),
            hash: uploaded.blob.hash.clone(),
            size: uploaded.size,
        };
        // A_19359-07, A_19365-02: the KIM mail with the structure, sealed as usual
        let kas_mail = kas::kas_mail(&processed, &attachment);
        let sealed = self.seal(setup, sub, kas_mail, certs, Version::Kas).await;
        let (sealed, sealing_notices) = match sealed {
            Ok(s) => s,
            Err(r) => {
                self.withdraw(&uploaded.link, account, sub.password).await;
                return Err(r.preceded_by(notices));
            }
        };
        notices.extend(sealing_notices);
        Ok(Outgoing {
            mail_from: sub.mail_from.to_string(),
            recipients: sealed.recipients,
            mail: template.with_bytes(sealed.mail),
            notices,
            unreachable: sealed.unreachable,
            kas_link: Some(uploaded.link),
        })
    }

    /// The directory's rules on who gets the mail: A_21387-01 (the 4017 notice),
    /// KOM-LE-A_2178 (recipients with certificates of different Telematik-IDs are
    /// removed, 4005) and, for a `large` mail, A_19356-06 (recipients whose KIM
    /// version has no `+` are removed, 4001). Returns the recipients that keep the
    /// mail and the notices for the sender; with none left the client gets 451 and
    /// the notices still go out.
    fn screen(
        &self,
        sub: &Submission<'_>,
        found: &Found,
        head: &[u8],
        large: bool,
    ) -> Result<(Vec<String>, Vec<Vec<u8>>), Refusal> {
        let account = sub.account;
        let now = OffsetDateTime::now_utc();
        let mut notices = self.outdated_notice(sub, found, head);
        let mut why_not = Vec::new();
        let (mut kept, conflicting) = telematik_conflicts(sub.recipients, &found.certs);
        if !conflicting.is_empty() {
            let list = conflicting.join(", ");
            tracing::warn!(%account, removed = %list, "recipients removed: their encryption certificates name different Telematik-IDs (KOM-LE-A_2178, 4005)");
            notices.push(dsn::telematik_conflict(
                account,
                &conflicting,
                head,
                &self.reporting_name,
                now,
            ));
            why_not.push(format!(
                "{list}: encryption certificates of different Telematik-IDs in the directory"
            ));
        }
        if large {
            let (large_ok, removed) = large_mail_recipients(&kept, &found.versions);
            if !removed.is_empty() {
                let list = removed.join(", ");
                tracing::warn!(%account, removed = %list, "recipients removed: their KIM version receives no large mails (A_19356-06, 4001)");
                notices.push(dsn::version_removed(
                    account,
                    &removed,
                    head,
                    &self.reporting_name,
                    now,
                ));
                why_not.push(format!(
                    "{list}: KIM version without '+' in the directory, so no large mails"
                ));
            }
            kept = large_ok;
        }
        if kept.is_empty() && !why_not.is_empty() {
            let mut r = Refusal::new(
                451,
                "4.3.4",
                format!(
                    "No recipient can receive this mail ({}); the mail was not sent",
                    why_not.join("; ")
                ),
            );
            r.notices = notices;
            return Err(r);
        }
        Ok((kept, notices))
    }

    /// A_21387-01: the 4017 notice when the directory names a newer KIM version for
    /// the sender than this Clientmodul's. The mail still goes out.
    fn outdated_notice(&self, sub: &Submission<'_>, found: &Found, head: &[u8]) -> Vec<Vec<u8>> {
        let account = sub.account;
        let Some(listed) = found.versions.get(&account.to_ascii_lowercase()) else {
            return Vec::new();
        };
        match listed.cmp_number(&KimVersion::OWN) {
            std::cmp::Ordering::Greater => {
                tracing::warn!(%account, directory = %listed, own = %KimVersion::OWN, "the directory names a newer KIM version than this Clientmodul's: update kim-cm (A_21387-01, 4017)");
                vec![dsn::cm_outdated(
                    account,
                    sub.recipients,
                    &KimVersion::OWN.to_string(),
                    &listed.to_string(),
                    head,
                    &self.reporting_name,
                    OffsetDateTime::now_utc(),
                )]
            }
            // A_21387-01 also asks to raise an older komLeData; the VZD is read-only
            // over LDAP: the provider sets it through the Account Manager (kimVersion)
            std::cmp::Ordering::Less => {
                tracing::debug!(%account, directory = %listed, "the directory names an older KIM version than this Clientmodul's");
                Vec::new()
            }
            std::cmp::Ordering::Equal => Vec::new(),
        }
    }

    /// 1.5.3-3: deletes the mail data of a mail that did not reach the MTA. A
    /// failure is logged; the KAS deletes the data at `expires` anyway.
    pub async fn withdraw(&self, link: &str, account: &str, password: &str) {
        let Some(kas) = &self.kas else { return };
        match delete_mail_data(link, account, password, &kas.http).await {
            Ok(()) => {
                tracing::info!(%account, %link, "mail data deleted from the KAS: the mail was not sent")
            }
            Err(e) => {
                tracing::warn!(%account, %link, "cannot delete the mail data of an unsent mail from the KAS (it expires there): {e}")
            }
        }
    }
}

/// A_22341.
fn kas_part_refusal() -> Refusal {
    Refusal::new(
        451,
        "4.6.0",
        "The mail carries a KIM attachment part (Content-Disposition: x-kas), which only the Clientmodul writes; remove it and send again",
    )
}

fn has_keys(setup: &SoftwareSealing, account: &str) -> Result<(), Refusal> {
    if setup.keys.account(account).is_none() && !setup.konnektors.has(account) {
        return Err(Refusal::new(
            451,
            "4.7.0",
            format!("No keys are configured for {account} (konnektor, or signing_pkcs12 and encryption_pkcs12, in its [[account]]); ask the administrator"),
        ));
    }
    Ok(())
}

/// A_22341 over a spooled mail, read in chunks.
async fn scan_for_kas_part(mail: &mut Spool) -> std::io::Result<bool> {
    let mut reader = mail.reader().await?;
    let mut scan = kas::KasPartScanner::default();
    let mut buf = vec![0u8; SCAN_CHUNK];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(scan.finish());
        }
        scan.feed(&buf[..n]);
    }
}

/// What the directory said about the parties of one mail (keys in lower case).
struct Found {
    /// The usable encryption certificates.
    certs: HashMap<String, Vec<X509>>,
    /// The KIM versions, where the directory keeps them.
    versions: HashMap<String, KimVersion>,
}

/// Looks up the account and every recipient, on one directory connection.
async fn lookup(
    directory: &Source,
    account: &str,
    recipients: &[String],
) -> Result<Found, Refusal> {
    let parties: Vec<String> = std::iter::once(account.to_string())
        .chain(recipients.iter().cloned())
        .collect();
    let entries = directory.lookup_all(&parties).await.map_err(|e| {
        tracing::warn!(%account, "directory lookup failed: {e}");
        match e {
            DirectoryError::Unavailable(_) => Refusal::new(
                451,
                "4.4.3",
                "The directory service is unavailable; nothing was sent, try again later",
            ),
            DirectoryError::BadEntry { address, .. } => Refusal::new(
                451,
                "4.7.5",
                format!("The directory entry of {address} is unreadable; nothing was sent, ask the administrator"),
            ),
        }
    })?;
    let mut found = Found {
        certs: HashMap::new(),
        versions: HashMap::new(),
    };
    for (key, entry) in entries {
        if let Some(v) = entry.kim_version {
            found.versions.insert(key.clone(), v);
        }
        found.certs.insert(key, usable(entry.certs));
    }
    Ok(found)
}

/// KOM-LE-A_2178: the recipients that keep the mail, and those removed because
/// their usable encryption certificates name more than one Telematik-ID. A
/// certificate without an Admission extension names none and does not count.
fn telematik_conflicts(
    recipients: &[String],
    certs: &HashMap<String, Vec<X509>>,
) -> (Vec<String>, Vec<String>) {
    recipients.iter().cloned().partition(|r| {
        let ids: std::collections::BTreeSet<String> = certs
            .get(&r.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .filter_map(admission::telematik_id)
            .collect();
        ids.len() <= 1
    })
}

/// A_19356-06: the recipients that keep a large mail, and those removed because
/// their KIM version in the directory has no `+`. Where the directory keeps no
/// versions (a folder), every recipient keeps it.
fn large_mail_recipients(
    recipients: &[String],
    versions: &HashMap<String, KimVersion>,
) -> (Vec<String>, Vec<String>) {
    recipients.iter().cloned().partition(|r| {
        versions
            .get(&r.to_ascii_lowercase())
            .is_none_or(|v| v.large_mails)
    })
}

/// KOM-LE-A_2024-01: only valid certificates count (within their validity period),
/// with an RSA or a TI ECC key. Whether the ECC ones may be used depends on the
/// backend: [`keep_encryptable`].
pub fn usable(certs: Vec<X509>) -> Vec<X509> {
    let Ok(now) = Asn1Time::days_from_now(0) else {
        return Vec::new();
    };
    certs
        .into_iter()
        .filter(|c| c.not_before() <= now && c.not_after() >= now && Crypt::of(c).is_some())
        .collect()
}

/// KOM-LE-A_2022, A_17472: keeps of every party's certificates those the mail can
/// be encrypted for with `account`'s backend: RSA and ECC through a Konnektor that
/// supports ECC (A_17464, read from its service directory), RSA only through one
/// that does not, and with software keys (kim-cm has no ECIES). A party left with
/// none counts as without a certificate (4004 DSN, 553, 451), as before the
/// sealing: recipient-emails then names exactly the certificates used.
async fn keep_encryptable(setup: &SoftwareSealing, sub: &Submission<'_>, found: &mut Found) {
    let konnektor = setup
        .konnektors
        .for_account(sub.account, sub.context, sub.konnektor_id);
    let ecc = match konnektor {
        Some(Ok((crypto, _))) => crypto.ecc().await,
        // software keys; a Konnektor that cannot be used fails the sealing anyway
        _ => false,
    };
    let mut left_out = 0;
    for certs in found.certs.values_mut() {
        let (kept, n) = crypt::encryptable(std::mem::take(certs), ecc);
        *certs = kept;
        left_out += n;
    }
    if left_out > 0 {
        tracing::debug!(account = %sub.account, left_out, ecc, "encryption certificates left out: ECC ones need a Konnektor with ECC support (A_17472)");
    }
}

type SealedWithNotices = (seal::Sealed, Vec<Vec<u8>>);

/// A_22417: the outer `Expires`, send time + dataTimeToLive.
pub fn expires(now: OffsetDateTime, data_time_to_live_days: i64) -> Option<String> {
    (now + time::Duration::days(data_time_to_live_days))
        .format(&Rfc2822)
        .ok()
}

/// Which X-KOM-LE-Version a mail goes out with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// A mail sealed whole.
    Small,
    /// A mail with a KIM-Attachment structure (A_19365-02: 1.5).
    Kas,
}

/// The fields kim-cm writes into every outer mail besides the copied ones.
pub fn outer_fields(expires: Option<&str>, version: Version) -> wrap::OuterFields<'_> {
    wrap::OuterFields {
        kom_le_version: match version {
            Version::Small => "1.0",
            Version::Kas => "1.5",
        },
        cm_version: CM_VERSION,
        pt_version: PT_VERSION,
        expires,
    }
}

#[allow(clippy::too_many_arguments)] // moved whole into a blocking task
fn seal_blocking(
    setup: &SoftwareSealing,
    konnektor: Option<&KonnektorSealer<'_>>,
    mail: Vec<u8>,
    account: &str,
    recipients: &[String],
    certs: &HashMap<String, Vec<X509>>,
    reporting: &str,
    data_time_to_live_days: i64,
    version: Version,
) -> Result<SealedWithNotices, Refusal> {
    let now = OffsetDateTime::now_utc();
    let expires = expires(now, data_time_to_live_days);
    let fields = outer_fields(expires.as_deref(), version);
    let original_head = header::split(&mail).0.to_vec();
    let lookup = |a: &str| {
        certs
            .get(&a.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    };
    let sealed = match konnektor {
        Some(k) => seal::seal(mail, account, recipients, &lookup, k, &fields),
        None => {
            let sealer = SoftwareSealer { keys: &setup.keys };
            seal::seal(mail, account, recipients, &lookup, &sealer, &fields)
        }
    }
    .map_err(|e| seal_refusal(e, account))?;
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

/// The client's reply when a mail cannot be sealed.
fn seal_refusal(e: SealRefusal, account: &str) -> Refusal {
    match e {
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
    }
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
    fn only_valid_rsa_and_brainpool_certificates_are_used() {
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let ec = |nid| {
            let group = EcGroup::from_curve_name(nid).unwrap();
            PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
        };
        let valid = cert(&rsa, -1, 30);
        let expired = cert(&rsa, -30, -1);
        let not_yet = cert(&rsa, 1, 30);
        // whether ECC ones are used is the backend's question (A_17472)
        let brainpool = cert(&ec(Nid::BRAINPOOL_P256R1), -1, 30);
        let p256 = cert(&ec(Nid::X9_62_PRIME256V1), -1, 30);
        let kept = usable(vec![
            expired,
            brainpool.clone(),
            valid.clone(),
            not_yet,
            p256,
        ]);
        let der: Vec<Vec<u8>> = kept.iter().map(|c| c.to_der().unwrap()).collect();
        assert_eq!(
            der,
            vec![brainpool.to_der().unwrap(), valid.to_der().unwrap()]
        );
    }

    #[test]
    fn a_recipient_whose_certificates_name_two_telematik_ids_is_removed() {
        use crate::testbed::pki;
        let dir = tempfile::tempdir().unwrap();
        let made = pki::make(dir.path(), &["a@x.de", "b@x.de", "c@x.de"]).unwrap();
        let own = |a: &str| {
            let pem = std::fs::read(made.directory.join(format!("{a}.pem"))).unwrap();
            X509::stack_from_pem(&pem).unwrap()
        };
        let mut certs = HashMap::new();
        certs.insert("a@x.de".to_string(), own("a@x.de"));
        // b: its own certificate and a second one for another practice
        let mut b = own("b@x.de");
        b.push(pki::extra_encryption_cert(dir.path(), "b@x.de", "1-elsewhere").unwrap());
        certs.insert("b@x.de".to_string(), b);
        // c: two certificates of the same Telematik-ID (a card renewed) are fine
        let mut c = own("c@x.de");
        let c_id = made.accounts[2].telematik_id.clone();
        c.push(pki::extra_encryption_cert(dir.path(), "c@x.de", &c_id).unwrap());
        certs.insert("c@x.de".to_string(), c);
        let recipients: Vec<String> = ["a@x.de", "B@x.de", "c@x.de", "d@x.de"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (kept, removed) = telematik_conflicts(&recipients, &certs);
        assert_eq!(removed, vec!["B@x.de".to_string()]);
        // d has no certificate at all: that is the sealing's 4004, not 4005
        assert_eq!(kept, vec!["a@x.de", "c@x.de", "d@x.de"]);
    }
}
