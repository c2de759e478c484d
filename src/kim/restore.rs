//! The receive side of the KIM Attachment Service (gemSpec_CM_KOMLE 3.2.2): what a
//! client gets for a KIM mail whose decrypted body is a KIM-Attachment structure.
//!
//! Either the original client mail, restored from the downloaded mail data with the
//! result fields on top and the notes in its first text part (A_19374-03), or one
//! of the spec's error mails: large mails not enabled (A_23512, 4018), download
//! failed (A_19370-04, 4006) or refused as too frequent (A_22412-01, 4013), the data
//! do not decrypt (A_19371-04, 4007) or do not match their hash (A_19372-03, 4012),
//! and more than one structure (A_19369-02). Pure byte work; the download is the
//! POP3 proxy's.

use super::kas::KimAttachment;
use super::{error_mail, header, notes};

/// A_19370-04, A_22412-01: the subject of the download error mails.
pub const SUBJECT_NOT_DOWNLOADED: &str = "Die E-Mail-Daten konnten nicht abgerufen werden";
/// A_23512: the subject of the mail for an account without large-mail reception.
pub const SUBJECT_NOT_ENABLED: &str =
    "Die KIM-Nachricht kann nicht empfangen werden, weil der Empfang großer Nachrichten nicht aktiviert wurde";
/// A_19369-02.
pub const AMBIGUOUS: &str =
    "Nachricht konnte aufgrund uneindeutiger Informationen nicht abgerufen werden";
/// A_19371-04.
pub const NOT_DECRYPTED: &str = "Abgerufene E-Mail-Daten konnten nicht entschlüsselt werden";
/// A_19372-03, without the optional vendor text.
pub const HASH_MISMATCH: &str = "Beim Empfang dieser KIM-Nachricht wurde eine Sicherheitsverletzung erkannt. \
Dies kann eine technisches Ursache haben oder auf eine missbräuchliche Nutzung des KIM-Dienstes hinweisen. \
Zu Ihrem Schutz wurde der Inhalt dieser Nachricht durch diesen Text ausgetauscht. \
Bitte antworten Sie nicht auf diese Nachricht. Sie können diese Nachricht löschen.";
/// Tab_Fehlercodes_KOMLE-Clientmodule, 4013.
pub const TOO_MANY_DOWNLOADS: &str =
    "Verschlüsselte E-Mail-Daten konnten nicht heruntergeladen werden, \
da durch zu häufigen Zugriff der KOM-LE-Attachment-Service den Abruf verweigert.";

/// Error codes of Tab_Fehlercodes_KOMLE-Clientmodule used here.
pub mod code {
    pub const DOWNLOAD_FAILED: &str = "4006";
    pub const NOT_DECRYPTED: &str = "4007";
    pub const HASH_MISMATCH: &str = "4012";
    pub const TOO_MANY_DOWNLOADS: &str = "4013";
    pub const NOT_ENABLED: &str = "4018";
}

/// Header fields of the KIM mail that describe its x-kas body: not taken over when
/// the body is replaced.
const KAS_BODY_FIELDS: [&str; 4] = [
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "MIME-Version",
];

/// A KIM mail that opened well and whose body is one KIM-Attachment structure: what
/// the restore needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KasPending {
    pub attachment: KimAttachment,
    /// The outer trace fields and the result fields (the top of the mail the client
    /// gets).
    pub top: Vec<u8>,
    /// The decrypted KIM mail's header (the processed client mail's, with
    /// X-KIM-KAS-Size).
    pub inner_head: Vec<u8>,
    /// The received (encrypted) mail, attached to the download error mails.
    pub received: Vec<u8>,
}

impl KasPending {
    /// X-KIM-KAS-Size (A_23467): the size of the mail data, when given.
    pub fn kas_size(&self) -> Option<u64> {
        header::value(&self.inner_head, "X-KIM-KAS-Size").and_then(|v| v.parse().ok())
    }
}

/// A_23512: the account does not take large mails.
pub fn not_enabled(received: &[u8], address: &str) -> Vec<u8> {
    let text = format!(
        "Sie haben eine KIM-Nachricht erhalten, die aufgrund ihrer Größe gemäß der Einstellung Ihres KIM-Kontos \
(KOM-LE-Version ohne \"+\") nicht verarbeitet werden darf. Die verschlüsselte Nachricht befindet sich im Anhang.\r\n\
Um große Nachrichten zu empfangen, aktivieren Sie den Empfang großer Nachrichten über den Account-Manager Ihres \
KIM-Anbieters (KOM-LE-Version mit \"+\", z. B. 1.5+) und setzen Sie in der Konfiguration des Clientmoduls \
receive_large_mails = true für {address}. Leiten Sie danach diese Nachricht an Ihre eigene E-Mail-Adresse \
({address}) weiter; beim nächsten Abholen wird sie erneut verarbeitet."
    );
    attached(received, SUBJECT_NOT_ENABLED, code::NOT_ENABLED, &text)
}

/// A_19370-04 (4006) and A_22412-01 (4013): the mail data could not be downloaded.
pub fn not_downloaded(received: &[u8], address: &str, too_many: bool) -> Vec<u8> {
    if too_many {
        return attached(
            received,
            SUBJECT_NOT_DOWNLOADED,
            code::TOO_MANY_DOWNLOADS,
            TOO_MANY_DOWNLOADS,
        );
    }
    // Tab_Fehlertext_Download
    let text = format!(
        "Die E-Mail-Daten dieser Nachricht konnten nicht heruntergeladen werden. Bitte leiten Sie diese Nachricht \
nach einer angemessenen Zeit an Ihre eigene E-Mail-Adresse ({address}) weiter. Beim nächsten Abholen wird der \
Download wiederholt."
    );
    attached(
        received,
        SUBJECT_NOT_DOWNLOADED,
        code::DOWNLOAD_FAILED,
        &text,
    )
}

/// A multipart/mixed error mail with the received mail attached as message/rfc822.
fn attached(received: &[u8], subject: &str, code: &str, text: &str) -> Vec<u8> {
    let (head, _) = header::split(received);
    error_mail::multipart(
        head,
        subject,
        &[("X-KIM-Fehlermeldung", code)],
        text,
        received,
    )
}

/// A_19369-02, A_19371-04, A_19372-03: the decrypted KIM mail with its body
/// replaced by `text` as text/plain, and `code` in X-KIM-Fehlermeldung.
pub fn replaced_body(top: &[u8], inner_head: &[u8], text: &str, code: Option<&str>) -> Vec<u8> {
    let mut out = top.to_vec();
    for f in header::fields(inner_head) {
        if KAS_BODY_FIELDS
            .iter()
            .any(|b| f.name.eq_ignore_ascii_case(b))
        {
            continue;
        }
        out.extend_from_slice(f.raw);
        if !f.raw.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    if let Some(c) = code {
        out.extend_from_slice(format!("X-KIM-Fehlermeldung: {c}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n")
            .as_bytes(),
    );
    out
}

/// A_19374-03: the start of the restored mail, given the first bytes of the mail
/// data (`truncated` when more follow): the result fields on top, then the data
/// with the notes in the first text part when it ends within `prefix`. The caller
/// appends the data after `prefix` unchanged.
pub fn restored_start(top: &[u8], prefix: &[u8], truncated: bool) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(top.len() + prefix.len() + 256);
    out.extend_from_slice(top);
    let noted = notes::append_to_prefix(
        &mut out,
        prefix,
        truncated,
        &[notes::DECRYPTED, notes::SIGNATURE_OK],
    );
    (out, noted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    const SAMPLES: &str = "../shared/kim-api/samples/KAS";
    const TOP: &[u8] = b"Return-Path: <a@x.de>\r\nX-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\n";

    #[test]
    fn gematiks_downloaded_mail_is_restored_with_results_and_notes() {
        // 2_3 is what the KAS gave; 2_4 what the client gets (header order aside:
        // kim-cm puts the result fields on top, as for every opened mail)
        let downloaded = header::to_crlf(
            &std::fs::read(format!("{SAMPLES}/2_3_Client-Mail_heruntergeladen.txt")).unwrap(),
        );
        let final_ = header::to_crlf(
            &std::fs::read(format!("{SAMPLES}/2_4_Client-Mail_finalisiert.txt")).unwrap(),
        );
        let (start, noted) = restored_start(TOP, &downloaded, false);
        assert!(noted);
        let got = MessageParser::default().parse(&start[..]).unwrap();
        assert_eq!(
            got.header_raw("X-KIM-DecryptionResult").map(str::trim),
            Some("00")
        );
        // the notes as for every opened mail (the sample spells them with two more
        // empty lines and in double-encoded UTF-8, which kim-cm does not copy)
        assert_eq!(
            got.body_text(0).unwrap(),
            format!(
                "Text der Testnachricht\r\n{}\r\n{}\r\n{}\r\n",
                notes::SEPARATOR,
                notes::DECRYPTED,
                notes::SIGNATURE_OK
            )
        );
        // from the second part on, byte for byte as downloaded (2_4 has one empty
        // line less there than 2_3: the samples were edited by hand)
        let from_second = |m: &[u8]| {
            let t = String::from_utf8_lossy(m).into_owned();
            let at = t
                .match_indices("--------------v0Sp8vvZ1qGfAWh1MYiwrJ0W\r\n")
                .nth(1)
                .unwrap()
                .0;
            t[at..].trim_end().to_string()
        };
        assert_eq!(from_second(&start), from_second(&downloaded));
        assert_ne!(from_second(&final_), "");
        assert_eq!(got.attachment_count(), 1);
    }

    #[test]
    fn error_mails_carry_their_codes_and_texts() {
        let received = b"From: a@x.de\r\nTo: b@x.de\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nX-KOM-LE-Version: 1.5\r\n\r\nMIAG\r\n";
        for (mail, code, subject) in [
            (
                not_downloaded(received, "b@x.de", false),
                code::DOWNLOAD_FAILED,
                SUBJECT_NOT_DOWNLOADED,
            ),
            (
                not_downloaded(received, "b@x.de", true),
                code::TOO_MANY_DOWNLOADS,
                SUBJECT_NOT_DOWNLOADED,
            ),
            (
                not_enabled(received, "b@x.de"),
                code::NOT_ENABLED,
                SUBJECT_NOT_ENABLED,
            ),
        ] {
            let m = MessageParser::default().parse(&mail[..]).unwrap();
            assert_eq!(m.subject(), Some(subject));
            assert_eq!(
                m.header_raw("X-KIM-Fehlermeldung").map(str::trim),
                Some(code)
            );
            assert_eq!(m.header_raw("From").map(str::trim), Some("a@x.de"));
            // the received mail, still encrypted, is attached for a later retry
            assert_eq!(m.attachment_count(), 1);
            let text = m.body_text(0).unwrap();
            assert!(
                code != code::DOWNLOAD_FAILED || text.contains("(b@x.de) weiter"),
                "{text}"
            );
        }
        let inner = b"From: a@x.de\r\nSubject: Befund\r\nX-KIM-KAS-Size: 20000000\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: x-kas\r\n";
        let m = replaced_body(TOP, inner, HASH_MISMATCH, Some(code::HASH_MISMATCH));
        let p = MessageParser::default().parse(&m[..]).unwrap();
        assert_eq!(p.subject(), Some("Befund"));
        assert!(p.content_disposition().is_none(), "no x-kas left");
        assert_eq!(
            p.header_raw("X-KIM-Fehlermeldung").map(str::trim),
            Some("4012")
        );
        assert_eq!(p.body_text(0).unwrap().trim(), HASH_MISMATCH);
    }
}
