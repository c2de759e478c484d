//! `kim-cm message open`: what an admin uses to find out why a mail cannot be read.
//! It opens one KIM mail with a key file exactly as the POP3 side would deliver it.

use std::io::Read;
use std::path::Path;

use crate::cms;
use crate::crypto::opener::SoftwareOpener;
use crate::crypto::software::read_pkcs12;
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
