//! The KAS client (AttachmentService.yaml 2.4.0): `addMailData` streams the mail data
//! from the spool, encrypted on the way (A_19358-01, A_19360-02), as the
//! `attachment` part of a multipart/form-data body whose parts and total length are
//! known before the first byte goes out (A_22427-01: `Content-Length`).

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::client::{
    body_error, connect_watched, send_error, with_cause, Driver, HttpSettings, MAX_JSON_BODY,
};
use super::url::HttpsUrl;
use crate::crypto::kas_blob::{sealed_len, BlobSealer, SealedBlob};
use crate::spool::Spool;

/// Plaintext read from the spool per encrypted chunk.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// Why an upload failed; the send pipeline maps each to the spec's reply.
#[derive(Debug, thiserror::Error)]
pub enum KasError {
    /// 413: the KAS takes no data this large.
    #[error("the KAS refused the mail data as too large (413)")]
    TooLarge,
    /// 507 (A_22419-01): the account's KAS storage is full.
    #[error("the KAS storage of the account is full (507)")]
    Full,
    /// Why the upload failed (callers say it was the upload).
    #[error("{0}")]
    Failed(String),
}

/// A finished upload: where, and what the KIM-Attachment structure needs.
pub struct Uploaded {
    pub link: String,
    pub blob: SealedBlob,
    /// Size of the plaintext mail data.
    pub size: u64,
}

/// The form fields of an upload, and who uploads.
pub struct UploadForm<'a> {
    /// The KAS base URL (`https://host:port/attachments/v2.4`).
    pub base: &'a HttpsUrl,
    /// The sender's mail account (Basic auth, `KIMBasicAuth`).
    pub user: &'a str,
    pub password: &'a str,
    pub message_id: &'a str,
    /// Who may download (A_22410-01), one form part each.
    pub recipients: &'a [String],
    /// A_19385-02: when the KAS deletes the data (RFC 5322 date-time).
    pub expires: &'a str,
}

/// The mail data of an upload: a reader over exactly `size` plaintext bytes.
pub struct MailData {
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
    pub size: u64,
}

impl MailData {
    /// A whole spool as mail data.
    pub async fn from_spool(spool: Spool) -> std::io::Result<MailData> {
        let size = spool.len();
        Ok(MailData {
            reader: spool.into_reader().await?,
            size,
        })
    }
}

/// `addMailData`: one upload of `data` with the fields of `form`.
pub async fn add_mail_data(
    form: &UploadForm<'_>,
    data: MailData,
    s: &HttpSettings,
) -> Result<Uploaded, KasError> {
    let UploadForm {
        base,
        user,
        password,
        message_id,
        recipients,
        expires,
    } = *form;
    let url = base.join("/attachment/");
    let fail = |why: String| KasError::Failed(format!("{url}: {why}"));
    let size = data.size;
    let boundary = format!("kim-cm-{}", hex::encode(rand::random::<[u8; 12]>()));
    let mut head = String::new();
    let mut field = |name: &str, value: &str| {
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    };
    field("messageID", message_id);
    for r in recipients {
        field("recipients", r);
    }
    field("expires", expires);
    let blob_len = sealed_len(size);
    head.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"attachment.enc\"\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {blob_len}\r\n\r\n"
    ));
    let tail = format!("\r\n--{boundary}--\r\n");
    let total = head.len() as u64 + blob_len + tail.len() as u64;

    // the body: the form head, the blob encrypted chunk by chunk, the form tail
    // never more than the declared size goes out, whatever the reader holds
    let reader = data.reader.take(size);
    let sealer = BlobSealer::new().map_err(|e| fail(e.to_string()))?;
    let result: Arc<Mutex<Option<SealedBlob>>> = Arc::new(Mutex::new(None));
    let out = result.clone();
    let head = Bytes::from(head);
    let tail = Bytes::from(tail);
    let chunks = stream::unfold(
        (Some(head), Some((reader, sealer)), Some(tail)),
        move |(mut head, mut body, mut tail)| {
            let out = out.clone();
            async move {
                if let Some(h) = head.take() {
                    return Some((Ok(Frame::data(h)), (None, body, tail)));
                }
                if let Some((mut reader, mut sealer)) = body.take() {
                    let mut plain = vec![0u8; UPLOAD_CHUNK];
                    let n = match reader.read(&mut plain).await {
                        Ok(n) => n,
                        Err(e) => return Some((Err(e), (None, None, None))),
                    };
                    let mut enc = Vec::with_capacity(n + 64);
                    if n > 0 {
                        if let Err(e) = sealer.update(&plain[..n], &mut enc) {
                            return Some((Err(std::io::Error::other(e)), (None, None, None)));
                        }
                        return Some((
                            Ok(Frame::data(Bytes::from(enc))),
                            (None, Some((reader, sealer)), tail),
                        ));
                    }
                    match sealer.finish(&mut enc) {
                        Ok(sealed) => {
                            if let Ok(mut o) = out.lock() {
                                *o = Some(sealed);
                            }
                            return Some((Ok(Frame::data(Bytes::from(enc))), (None, None, tail)));
                        }
                        Err(e) => return Some((Err(std::io::Error::other(e)), (None, None, None))),
                    }
                }
                tail.take()
                    .map(|t| (Ok(Frame::data(t)), (None, None, None)))
            }
        },
    );
    let body = StreamBody::new(chunks);

    let (mut sender, driver) = connect_watched(&url, s).await.map_err(fail)?;
    let _driver = super::client::AbortOnDrop(driver);
    let credentials = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
    );
    let mut auth = HeaderValue::from_str(&format!("Basic {}", &*credentials))
        .map_err(|_| fail("the user name cannot be sent in a header".into()))?;
    auth.set_sensitive(true);
    let req = Request::builder()
        .method(Method::POST)
        .uri(&url.path)
        .header(HOST, url.authority())
        .header(AUTHORIZATION, auth)
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header(CONTENT_LENGTH, total)
        .body(body)
        .map_err(|e| fail(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| fail(send_error(&e)))?;
    let status = resp.status();
    let answer = Limited::new(resp.into_body(), MAX_JSON_BODY)
        .collect()
        .await
        .map_err(|e| fail(body_error(&*e, MAX_JSON_BODY)))?
        .to_bytes();
    match status {
        StatusCode::CREATED => {}
        StatusCode::PAYLOAD_TOO_LARGE => return Err(KasError::TooLarge),
        StatusCode::INSUFFICIENT_STORAGE => return Err(KasError::Full),
        other => {
            let text: String = String::from_utf8_lossy(&answer).chars().take(200).collect();
            return Err(fail(format!("answered {other}: {text}")));
        }
    }
    let v: serde_json::Value =
        serde_json::from_slice(&answer).map_err(|e| fail(format!("unreadable answer: {e}")))?;
    let link = v["sharedLink"]
        .as_str()
        .ok_or_else(|| fail("the answer has no sharedLink".into()))?
        .to_string();
    let blob = result
        .lock()
        .ok()
        .and_then(|mut r| r.take())
        .ok_or_else(|| fail("the upload ended before all data were sent".into()))?;
    Ok(Uploaded { link, blob, size })
}

/// `deleteMailData` (1.5.3-3): removes an upload whose mail was not sent. A link
/// already gone (404) counts as deleted.
pub async fn delete_mail_data(
    link: &str,
    user: &str,
    password: &str,
    s: &HttpSettings,
) -> Result<(), KasError> {
    let url = HttpsUrl::parse(link).map_err(KasError::Failed)?;
    let (status, _) = super::client::request_basic(Method::DELETE, &url, user, password, s)
        .await
        .map_err(|e| KasError::Failed(e.to_string()))?;
    match status {
        StatusCode::OK | StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => Ok(()),
        other => Err(KasError::Failed(format!("{url}: DELETE answered {other}"))),
    }
}

/// Why a download failed; the receive pipeline maps each to the spec's error mail.
#[derive(Debug, thiserror::Error)]
pub enum KasReadError {
    /// 429 (A_22412-01, X-KIM-Fehlermeldung 4013).
    #[error("the KAS refused the download: downloaded too many times (429)")]
    TooMany,
    /// 403, 404, 400, a dead KAS (A_19370-04, 4006).
    #[error("the KAS data could not be downloaded: {0}")]
    Unavailable(String),
    /// A_19371-04 (4007) or A_19372-03 (4012).
    #[error("{0}")]
    Blob(#[from] crate::crypto::kas_blob::BlobError),
    /// A local file could not be written or read.
    #[error("local storage: {0}")]
    Local(String),
}

/// `readMailData`: downloads `link` for `recipient` and decrypts it chunk by chunk
/// into a spool, checking the tag and the plaintext's hash. The spool is returned
/// only when both hold; otherwise it is dropped (an unnamed file, gone at once).
pub async fn read_mail_data(
    link: &str,
    recipient: &str,
    k: &str,
    hash: &str,
    s: &HttpSettings,
    spool: &crate::spool::SpoolSettings,
) -> Result<Spool, KasReadError> {
    let mut opener = crate::crypto::kas_blob::BlobOpener::new(k)?;
    let (mut body, driver, url) = get_link(link, recipient, s).await?;
    let mut out = Spool::new(spool);
    let mut plain = Vec::with_capacity(256 * 1024);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            KasReadError::Unavailable(format!("{url}: reading the data: {}", with_cause(&e)))
        })?;
        if let Ok(data) = frame.into_data() {
            plain.clear();
            opener.update(&data, &mut plain)?;
            out.write(&plain)
                .await
                .map_err(|e| KasReadError::Unavailable(format!("spooling: {e}")))?;
        }
    }
    driver.abort();
    opener.finish(hash)?;
    Ok(out)
}

/// `readMailData` into the file `dest`, still encrypted: written under a temporary
/// name and renamed when complete, so `dest` is whole or absent. More than `max`
/// bytes are refused (the size the KIM-Attachment structure announced). Returns
/// the size.
pub async fn download_mail_data(
    link: &str,
    recipient: &str,
    s: &HttpSettings,
    dest: &Path,
    max: u64,
) -> Result<u64, KasReadError> {
    let (mut body, driver, url) = get_link(link, recipient, s).await?;
    let local = |e: std::io::Error| KasReadError::Local(format!("{}: {e}", dest.display()));
    // a name of its own: two sessions may fetch the same mail at once
    let partial = dest.with_extension(format!("part-{:016x}", rand::random::<u64>()));
    let mut file = tokio::fs::File::create(&partial).await.map_err(local)?;
    let mut n = 0u64;
    let copied = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                KasReadError::Unavailable(format!("{url}: reading the data: {}", with_cause(&e)))
            })?;
            if let Ok(data) = frame.into_data() {
                n += data.len() as u64;
                if n > max {
                    return Err(KasReadError::Unavailable(format!(
                        "{url}: the KAS sent more than the announced {max} bytes"
                    )));
                }
                file.write_all(&data).await.map_err(local)?;
            }
        }
        file.flush().await.map_err(local)?;
        file.sync_all().await.map_err(local)?;
        Ok::<(), KasReadError>(())
    };
    let r = copied.await;
    driver.abort();
    if let Err(e) = r {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, dest).await.map_err(local)?;
    Ok(n)
}

/// Decrypts a downloaded blob file into a spool, checking the tag and the
/// plaintext's hash (A_19371-04, A_19372-03); the spool only when both hold.
pub async fn open_mail_data(
    blob: &Path,
    k: &str,
    hash: &str,
    spool: &crate::spool::SpoolSettings,
) -> Result<Spool, KasReadError> {
    let local = |e: std::io::Error| KasReadError::Local(format!("{}: {e}", blob.display()));
    let mut opener = crate::crypto::kas_blob::BlobOpener::new(k)?;
    let mut file = tokio::fs::File::open(blob).await.map_err(local)?;
    let mut out = Spool::new(spool);
    let mut enc = vec![0u8; 256 * 1024];
    let mut plain = Vec::with_capacity(256 * 1024 + 16);
    loop {
        let n = file.read(&mut enc).await.map_err(local)?;
        if n == 0 {
            break;
        }
        plain.clear();
        opener.update(&enc[..n], &mut plain)?;
        out.write(&plain).await.map_err(local)?;
    }
    opener.finish(hash)?;
    Ok(out)
}

/// `GET link` with the `recipient` header: the body of a 200, or why not.
async fn get_link(
    link: &str,
    recipient: &str,
    s: &HttpSettings,
) -> Result<(hyper::body::Incoming, Driver, HttpsUrl), KasReadError> {
    let url = HttpsUrl::parse(link).map_err(KasReadError::Unavailable)?;
    let fail = |why: String| KasReadError::Unavailable(format!("{url}: {why}"));
    let (mut sender, driver) = connect_watched(&url, s).await.map_err(fail)?;
    let req = Request::builder()
        .method(Method::GET)
        .uri(&url.path)
        .header(HOST, url.authority())
        .header("recipient", recipient)
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| fail(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| fail(send_error(&e)))?;
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::TOO_MANY_REQUESTS => {
            driver.abort();
            return Err(KasReadError::TooMany);
        }
        other => {
            driver.abort();
            return Err(fail(format!("answered {other}")));
        }
    }
    Ok((resp.into_body(), driver, url))
}
