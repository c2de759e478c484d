//! `kim-cm message open` and `message seal`: what an admin uses to find out why a
//! mail cannot be read or sent. `open` opens one KIM mail with a key file exactly as
//! the POP3 side would deliver it; `seal` seals one mail as the SMTP side would send
//! it, for the recipients in its header, with certificates from a folder.

use std::io::Read;
use std::path::Path;

use mail_parser::{Address, MessageParser};

use crate::cms;
use crate::crypto::crypt;
use crate::crypto::opener::SoftwareOpener;
use crate::crypto::sealer::SoftwareSealer;
use crate::crypto::software::{read_pkcs12, AccountKeys, SoftwareKeys};
use crate::directory::folder::FolderDirectory;
use crate::directory::Directory;
use crate::kim::seal::{self, Sealed};
use crate::kim::send::{self, DEFAULT_DATA_TIME_TO_LIVE_DAYS};
use crate::kim::{header, receive, wrap};

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    let mut data = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut data)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
    } else {
        data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    }
    Ok(header::to_crlf(&data))
}

/// Opens `mail` with the encryption key in `key_file`; the fetching user is the
/// address that recipient-emails gives for the key's certificate.
pub fn open(
    mail: &[u8],
    key_file: &Path,
    password: &str,
    trust_file: Option<&Path>,
) -> Result<receive::Opened, String> {
    let key = read_pkcs12(key_file, password).map_err(|e| e.to_string())?;
    let trust = crate::crypto::trust::load(trust_file)?;
    let (_, body) = header::split(mail);
    let address = wrap::decode_base64_lines(body)
        .and_then(|der| cms::recipient_emails_of(&der).ok().flatten())
        .and_then(|re| re.for_cert(&key.cert).first().map(|e| e.email.clone()))
        .unwrap_or_default();
    let keys = vec![key];
    let opener = SoftwareOpener {
        keys: &keys,
        trust: &trust,
    };
    Ok(receive::open(mail, &address, &opener))
}

/// The addresses of one header field of `mail` (To, Cc, Bcc, From, Sender).
fn addresses(mail: &[u8], field: &str) -> Vec<String> {
    let Some(parsed) = MessageParser::default().parse_headers(mail) else {
        return Vec::new();
    };
    let list = match field {
        "To" => parsed.to(),
        "Cc" => parsed.cc(),
        "Bcc" => parsed.bcc(),
        "From" => parsed.from(),
        _ => parsed.sender(),
    };
    match list {
        Some(Address::List(v)) => v
            .iter()
            .filter_map(|a| a.address().map(str::to_string))
            .collect(),
        Some(Address::Group(g)) => g
            .iter()
            .flat_map(|g| g.addresses.iter())
            .filter_map(|a| a.address().map(str::to_string))
            .collect(),
        None => Vec::new(),
    }
}

/// Seals `mail` with the signing key in `key_file` for the To/Cc/Bcc recipients in
/// its header; the sender is its Sender, else its From (KOM-LE-A_2022). Every
/// party's encryption certificates come from `cert_dir` (`<address>.pem`).
pub async fn seal(
    mail: Vec<u8>,
    key_file: &Path,
    password: &str,
    cert_dir: &Path,
) -> Result<Sealed, String> {
    let signing = read_pkcs12(key_file, password).map_err(|e| e.to_string())?;
    let sender = addresses(&mail, "Sender")
        .into_iter()
        .chain(addresses(&mail, "From"))
        .next()
        .ok_or("the mail has no From address: nobody to sign for")?;
    let mut recipients: Vec<String> = Vec::new();
    for f in ["To", "Cc", "Bcc"] {
        for a in addresses(&mail, f) {
            if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&a)) {
                recipients.push(a);
            }
        }
    }
    if recipients.is_empty() {
        return Err("the mail has no To, Cc or Bcc address: nobody to encrypt for".into());
    }
    if !cert_dir.is_dir() {
        return Err(format!("{} is not a folder", cert_dir.display()));
    }
    let directory = FolderDirectory::new(cert_dir);
    let mut certs = std::collections::HashMap::new();
    for a in std::iter::once(&sender).chain(&recipients) {
        let found = directory.lookup(a).await.map_err(|e| e.to_string())?;
        // software keys: RSA certificates only (no ECIES in kim-cm, A_17472)
        let (usable, _) = crypt::encryptable(send::usable(found.certs), false);
        certs.insert(a.to_ascii_lowercase(), usable);
    }
    let mut keys = SoftwareKeys::default();
    keys.insert(
        &sender,
        AccountKeys {
            signing,
            encryption: Vec::new(),
        },
    );
    let expires = send::expires(
        time::OffsetDateTime::now_utc(),
        DEFAULT_DATA_TIME_TO_LIVE_DAYS,
    );
    let lookup = |a: &str| {
        certs
            .get(&a.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    };
    seal::seal(
        mail,
        &sender,
        &recipients,
        &lookup,
        &SoftwareSealer { keys: &keys },
        &send::outer_fields(expires.as_deref(), send::Version::Small),
    )
    .map_err(|e| match e {
        seal::SealRefusal::SenderNotEncryptable(a) => format!(
            "the sender {a} has no valid encryption certificate in {}",
            cert_dir.display()
        ),
        seal::SealRefusal::NoRecipientEncryptable(list) => format!(
            "no recipient has a valid encryption certificate in {}: {}",
            cert_dir.display(),
            list.join(", ")
        ),
        seal::SealRefusal::Crypto(why) => format!("sealing failed: {why}"),
    })
}
