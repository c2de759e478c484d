//! Restoring a KIM mail's mail data from the KIM Attachment Service on RETR
//! (gemSpec_CM_KOMLE 3.2.2): the download, a cache of what was downloaded, the
//! decryption into a spool and the restored mail, spliced so that 700 MiB are never
//! in memory. The rules (which error mail when) are in [`crate::kim::restore`].
//!
//! The KAS limits downloads (429 after a few), and a client asks for a mail more
//! than once (LIST to learn its size, then RETR, then perhaps again in the next
//! session). So the downloaded blob is kept per account and link in
//! `<data_dir>/kas-cache`, still encrypted: the key is only in the KIM mail, which
//! stays encrypted on the Fachdienst. A cached blob goes when the client deleted
//! its mail (DELE and QUIT), when it does not decrypt, and after
//! [`CACHE_MAX_AGE`]. The plaintext lives only in an unnamed spool file for the
//! length of one RETR.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::crypto::kas_blob::BlobError;
use crate::http::client::HttpSettings;
use crate::http::kas::{download_mail_data, open_mail_data, KasReadError};
use crate::kim::restore::{self, code, KasPending};
use crate::kim::send::KAS_THRESHOLD;
use crate::spool::{Spool, SpoolSettings};

/// A cached blob older than this is removed (dataTimeToLive is at most 365 days).
pub const CACHE_MAX_AGE: Duration = Duration::from_secs(366 * 24 * 3600);
/// The most mail data kim-cm downloads for one mail, whatever the structure says
/// (maxMailSize is at least 700 MiB; no provider offers more than 1 GiB).
pub const MAX_MAIL_DATA: u64 = 2 * 1024 * 1024 * 1024;
/// How much of the restored mail is read to put the notes into its first text part.
const NOTE_WINDOW: usize = 4 * 1024 * 1024;

/// What the client gets for a KAS mail.
pub struct Restored {
    pub mail: Spool,
    /// The error code of an error mail (4006, 4007, 4012, 4013, 4018, A_19369-02
    /// has none), none for the restored mail.
    pub error: Option<&'static str>,
    /// A download that may succeed later (4006, 4013): the outcome is not kept.
    pub transient: bool,
    /// The cached blob, to remove when the client deletes the mail.
    pub cached: Option<PathBuf>,
}

/// Downloads, caches and restores.
pub struct KasFetcher {
    pub http: HttpSettings,
    pub cache: PathBuf,
    pub spool: SpoolSettings,
}

impl KasFetcher {
    /// A fetcher with its cache folder (created private), swept of partial and old
    /// files.
    pub fn new(
        http: HttpSettings,
        cache: PathBuf,
        spool: SpoolSettings,
    ) -> std::io::Result<KasFetcher> {
        std::fs::create_dir_all(&cache)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700))?;
        }
        sweep(&cache);
        Ok(KasFetcher { http, cache, spool })
    }

    /// The cache file of `link` for `address`: named by a hash, so neither shows.
    pub fn cache_path(&self, address: &str, link: &str) -> PathBuf {
        let mut h = openssl::sha::Sha256::new();
        h.update(address.to_ascii_lowercase().as_bytes());
        h.update(b"\0");
        h.update(link.as_bytes());
        self.cache.join(format!("{}.blob", hex::encode(h.finish())))
    }

    /// The mail the client gets for `pending`, fetched by `address`.
    pub async fn restore(&self, p: &KasPending, address: &str, large_mails: bool) -> Restored {
        let error_mail = |mail: Vec<u8>, code: Option<&'static str>, transient: bool| Restored {
            mail: Spool::from_bytes(mail, &self.spool),
            error: code,
            transient,
            cached: None,
        };
        // A_23512
        if !large_mails && p.kas_size().is_some_and(|s| s > KAS_THRESHOLD) {
            tracing::warn!(user = %address, "a large KIM mail for an account without large-mail reception: not downloaded (4018)");
            return error_mail(
                restore::not_enabled(&p.received, address),
                Some(code::NOT_ENABLED),
                false,
            );
        }
        let a = &p.attachment;
        let path = self.cache_path(address, &a.link);
        if !path.exists() {
            // A_19370-04, A_22412-01
            let max = crate::crypto::kas_blob::sealed_len(a.size.min(MAX_MAIL_DATA));
            match download_mail_data(&a.link, address, &self.http, &path, max).await {
                Ok(n) => {
                    crate::metrics::inc("kimcm_kas_downloads_total", &[("result", "ok")]);
                    tracing::info!(user = %address, bytes = n, "mail data downloaded from the KAS")
                }
                Err(e) => {
                    crate::metrics::inc("kimcm_kas_downloads_total", &[("result", "error")]);
                    let too_many = matches!(e, KasReadError::TooMany);
                    tracing::warn!(user = %address, "KAS download failed: {e}");
                    let code = if too_many {
                        code::TOO_MANY_DOWNLOADS
                    } else {
                        code::DOWNLOAD_FAILED
                    };
                    return error_mail(
                        restore::not_downloaded(&p.received, address, too_many),
                        Some(code),
                        true,
                    );
                }
            }
        }
        let plain = match open_mail_data(&path, &a.k, &a.hash, &self.spool).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(user = %address, "the KAS mail data do not open: {e}");
                let _ = std::fs::remove_file(&path);
                let (text, code) = match e {
                    // A_19372-03
                    KasReadError::Blob(BlobError::HashMismatch) => {
                        (restore::HASH_MISMATCH, code::HASH_MISMATCH)
                    }
                    // a local read error is no fault of the data: try again later
                    KasReadError::Local(_) => {
                        return error_mail(
                            restore::not_downloaded(&p.received, address, false),
                            Some(code::DOWNLOAD_FAILED),
                            true,
                        );
                    }
                    // A_19371-04
                    _ => (restore::NOT_DECRYPTED, code::NOT_DECRYPTED),
                };
                return error_mail(
                    restore::replaced_body(&p.top, &p.inner_head, text, Some(code)),
                    Some(code),
                    false,
                );
            }
        };
        match splice(plain, &p.top).await {
            Ok(mail) => Restored {
                mail,
                error: None,
                transient: false,
                cached: Some(path),
            },
            Err(e) => {
                tracing::error!(user = %address, "cannot read the restored mail data: {e}");
                error_mail(
                    restore::not_downloaded(&p.received, address, false),
                    Some(code::DOWNLOAD_FAILED),
                    true,
                )
            }
        }
    }
}

/// A_19374-03: the restored mail as `top`, the mail data with the notes, without a
/// second copy of the data.
async fn splice(mut plain: Spool, top: &[u8]) -> std::io::Result<Spool> {
    let prefix = plain.read_prefix(NOTE_WINDOW).await?;
    let truncated = plain.len() > prefix.len() as u64;
    let (start, noted) = restore::restored_start(top, &prefix, truncated);
    if !noted {
        tracing::info!("the restored mail has no text part within its first {} MiB: the results are in its header only", NOTE_WINDOW >> 20);
    }
    Ok(plain.spliced(start, prefix.len() as u64))
}

/// Removes partial downloads and blobs older than [`CACHE_MAX_AGE`].
fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let path = e.path();
        let partial = path
            .extension()
            .is_some_and(|x| x.to_string_lossy().starts_with("part"));
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > CACHE_MAX_AGE);
        if partial || old {
            let _ = std::fs::remove_file(&path);
        }
    }
}
