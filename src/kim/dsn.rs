//! The delivery status notifications a Clientmodul sends its own user: when a mail
//! could not be encrypted for every recipient (KOM-LE-A_2024-01, 4004), when its
//! mail data could not be stored on the KAS (A_19363-03, 4002), when recipients of
//! a large mail were removed for their KIM version (A_19356-06, 4001), when a
//! recipient's encryption certificates name different Telematik-IDs
//! (KOM-LE-A_2192-01, 4005), and when the directory names a newer Clientmodul
//! version than this one (A_21387-01, 4017). Unsigned and unencrypted, an RFC 3464 `multipart/report` with `X-KIM-Fehlermeldung`
//! (A_20650-05), sent through the Fachdienst like any mail (gemSpec_CM_KOMLE
//! 3.3.4: "über eine im Clientmodul generierte und an den MTA übermittelte E-Mail").
//!
//! It carries no `X-KOM-LE-Version`, so the receiving Clientmodul passes it through
//! as it is (A_21390). The original mail's content is not in it, only its header.

use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

use super::header;

/// A_20650-05: "Nachricht nicht für alle Empfänger verschlüsselbar".
pub const NOT_ENCRYPTABLE_FOR_ALL: &str = "4004";
/// The subject of the notification.
pub const SUBJECT: &str = "Nachricht nicht für alle Empfänger verschlüsselbar";
/// RFC 3463 X.7.5: cryptographic failure.
const STATUS: &str = "5.7.5";
/// A_20650-05: "Verschlüsselte E-Mail-Daten konnten nicht zum
/// KOM-LE-Attachment-Service übertragen werden".
pub const KAS_UPLOAD_FAILED: &str = "4002";
/// The subject of the upload failure notification.
pub const SUBJECT_KAS: &str =
    "Verschlüsselte E-Mail-Daten konnten nicht zum KOM-LE-Attachment-Service übertragen werden";

/// A_20650-05: "Empfänger entfernt, wegen falscher KIM-Version".
pub const RECIPIENT_REMOVED_VERSION: &str = "4001";
/// The subject of the 4001 notification.
pub const SUBJECT_VERSION: &str = "Empfänger entfernt, wegen falscher KIM-Version";
/// A_20650-05: "Für einen Empfänger existieren mehrere Verschlüsselungszertifikate
/// mit unterschiedlichen Telematik-IDs".
pub const TELEMATIK_ID_CONFLICT: &str = "4005";
/// The subject of the 4005 notification.
pub const SUBJECT_TELEMATIK_ID: &str =
    "Für einen Empfänger existieren mehrere Verschlüsselungszertifikate mit unterschiedlichen Telematik-IDs";
/// A_20650-05: "KOM-LE-Version des Clientmoduls kleiner als im VZD".
pub const CM_OUTDATED: &str = "4017";
/// The subject of the 4017 notification (A_21387-01: it says the Clientmodul is
/// outdated).
pub const SUBJECT_OUTDATED: &str = "Die verwendete Clientmodul-Version ist veraltet";

/// Header fields of the original that the report repeats (RFC 3462
/// `text/rfc822-headers`): enough to find the mail, nothing of its content.
const ORIGINAL_FIELDS: [&str; 6] = ["Date", "From", "To", "Cc", "Subject", "Message-ID"];

/// The report for `sender` that `unreachable` did not get the mail whose header is
/// `original_head`. `reporting` names this Clientmodul (`Reporting-MTA`).
pub fn not_encryptable(
    sender: &str,
    unreachable: &[String],
    original_head: &[u8],
    reporting: &str,
    now: OffsetDateTime,
) -> Vec<u8> {
    let list: String = unreachable.iter().map(|r| format!("  {r}\r\n")).collect();
    let text = format!(
        "Ihre Nachricht konnte nicht für alle Empfänger verschlüsselt werden und wurde an die\r\n\
folgenden Empfänger nicht versendet, weil für sie kein gültiges Verschlüsselungszertifikat\r\n\
im Verzeichnisdienst gefunden wurde:\r\n\r\n{list}\r\n\
Alle übrigen Empfänger haben die Nachricht erhalten.\r\n\
Your message could not be encrypted for the recipients above and was not sent to them.\r\n"
    );
    let report = Report {
        code: NOT_ENCRYPTABLE_FOR_ALL,
        subject: SUBJECT,
        text: &text,
        status: STATUS,
        action: "failed",
        diagnostic: "550 5.7.5 no valid encryption certificate in the directory",
    };
    report.build(sender, unreachable, original_head, reporting, now)
}

/// A_19363-03, A_20650-05: the mail to `recipients` was not sent because its mail
/// data could not be stored on the KAS (the client got 451; it may send again).
pub fn kas_upload_failed(
    sender: &str,
    recipients: &[String],
    original_head: &[u8],
    reporting: &str,
    now: OffsetDateTime,
) -> Vec<u8> {
    let text =
        "Ihre Nachricht wurde nicht versendet: die verschlüsselten E-Mail-Daten konnten nicht\r\n\
zum KOM-LE-Attachment-Service (KAS) übertragen werden. Bitte senden Sie die Nachricht\r\n\
später erneut.\r\n\
Your message was not sent: its encrypted mail data could not be stored on the KIM\r\n\
Attachment Service. Please send it again later.\r\n";
    let report = Report {
        code: KAS_UPLOAD_FAILED,
        subject: SUBJECT_KAS,
        text,
        status: "4.4.0",
        action: "failed",
        diagnostic: "451 4.4.0 the mail data could not be stored on the KIM Attachment Service",
    };
    report.build(sender, recipients, original_head, reporting, now)
}

/// A_19356-06: `removed` did not get the large mail, because their Clientmodul
/// (KIM version in the directory without `+`) cannot receive large mails.
pub fn version_removed(
    sender: &str,
    removed: &[String],
    original_head: &[u8],
    reporting: &str,
    now: OffsetDateTime,
) -> Vec<u8> {
    let list: String = removed.iter().map(|r| format!("  {r}\r\n")).collect();
    let text = format!(
        "Ihre Nachricht ist größer als 15 MiB und wurde an die folgenden Empfänger nicht\r\n\
versendet, weil deren KIM-Version laut Verzeichnisdienst keine großen Nachrichten\r\n\
empfangen kann (KOM-LE-Version ohne \"+\"):\r\n\r\n{list}\r\n\
Senden Sie diesen Empfängern eine kleinere Nachricht (bis 15 MiB).\r\n\
Your message is larger than 15 MiB; the recipients above cannot receive large KIM\r\n\
mails and did not get it.\r\n"
    );
    let report = Report {
        code: RECIPIENT_REMOVED_VERSION,
        subject: SUBJECT_VERSION,
        text: &text,
        status: "5.3.4",
        action: "failed",
        diagnostic: "552 5.3.4 the recipient's KIM version does not receive large mails",
    };
    report.build(sender, removed, original_head, reporting, now)
}

/// KOM-LE-A_2178, KOM-LE-A_2192-01: `removed` did not get the mail, because the
/// directory holds encryption certificates of different Telematik-IDs for each of
/// them, so which practice would read it is unclear.
pub fn telematik_conflict(
    sender: &str,
    removed: &[String],
    original_head: &[u8],
    reporting: &str,
    now: OffsetDateTime,
) -> Vec<u8> {
    let list: String = removed.iter().map(|r| format!("  {r}\r\n")).collect();
    let text = format!(
        "Ihre Nachricht wurde an die folgenden Empfänger nicht versendet, weil für sie im\r\n\
Verzeichnisdienst mehrere Verschlüsselungszertifikate mit unterschiedlichen\r\n\
Telematik-IDs stehen:\r\n\r\n{list}\r\n\
Bitte klären Sie die Adresse mit dem Empfänger.\r\n\
Your message was not sent to the recipients above: the directory holds encryption\r\n\
certificates of different Telematik-IDs for them.\r\n"
    );
    let report = Report {
        code: TELEMATIK_ID_CONFLICT,
        subject: SUBJECT_TELEMATIK_ID,
        text: &text,
        status: STATUS,
        action: "failed",
        diagnostic: "550 5.7.5 encryption certificates of different Telematik-IDs",
    };
    report.build(sender, removed, original_head, reporting, now)
}

/// A_21387-01: the directory names `directory_version` for the sender, newer than
/// this Clientmodul's `own`; the mail itself went out.
pub fn cm_outdated(
    sender: &str,
    recipients: &[String],
    own: &str,
    directory_version: &str,
    original_head: &[u8],
    reporting: &str,
    now: OffsetDateTime,
) -> Vec<u8> {
    let text = format!(
        "Die verwendete Clientmodul-Version ist veraltet: dieses Clientmodul unterstützt\r\n\
KIM {own}, der Verzeichnisdienst nennt für {sender} die Version {directory_version}.\r\n\
Ihre Nachricht wurde versendet. Bitte lassen Sie das Clientmodul aktualisieren.\r\n\
The Clientmodul in use is outdated (KIM {own}; the directory names {directory_version}).\r\n\
Your message was sent; please have the Clientmodul updated.\r\n"
    );
    let report = Report {
        code: CM_OUTDATED,
        subject: SUBJECT_OUTDATED,
        text: &text,
        status: "2.0.0",
        action: "relayed",
        diagnostic: "250 2.0.0 sent by an outdated Clientmodul",
    };
    report.build(sender, recipients, original_head, reporting, now)
}

/// One kind of report: its code, subject, text and per-recipient status.
struct Report<'a> {
    code: &'a str,
    subject: &'a str,
    text: &'a str,
    status: &'a str,
    /// RFC 3464 `Action`: `failed`, or `relayed` for a mail that went out.
    action: &'a str,
    diagnostic: &'a str,
}

impl Report<'_> {
    fn build(
        &self,
        sender: &str,
        recipients: &[String],
        original_head: &[u8],
        reporting: &str,
        now: OffsetDateTime,
    ) -> Vec<u8> {
        let date = now.format(&Rfc2822).unwrap_or_default();
        let boundary = format!("kim-cm-dsn-{:016x}", rand::random::<u64>());
        let (text, code) = (self.text, self.code);
        let mut status = format!("Reporting-MTA: dns; {reporting}\r\nArrival-Date: {date}\r\n");
        for r in recipients {
            status.push_str(&format!(
                "\r\nFinal-Recipient: rfc822; {r}\r\nAction: {}\r\nStatus: {}\r\n\
Diagnostic-Code: smtp; {}\r\n",
                self.action, self.status, self.diagnostic
            ));
        }
        let mut original = Vec::new();
        header::append_fields(&mut original, original_head, &ORIGINAL_FIELDS);
        let message_id = format!(
            "<kim-cm-dsn.{:016x}@{}>",
            rand::random::<u64>(),
            sender.rsplit('@').next().unwrap_or("localhost")
        );
        let mut out = format!(
            "From: KIM-Clientmodul <{sender}>\r\nTo: <{sender}>\r\nDate: {date}\r\n\
Message-ID: {message_id}\r\nSubject: =?utf-8?B?{subject}?=\r\n\
X-KIM-Fehlermeldung: {code}\r\nAuto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n\
--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
{text}\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n{status}\r\n\
--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n",
            subject = base64_utf8(self.subject),
        )
        .into_bytes();
        out.extend_from_slice(&original);
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        out
    }
}

fn base64_utf8(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_every_unreachable_recipient_and_no_content() {
        let head =
            b"From: a@x.de\r\nTo: b@x.de, c@x.de\r\nSubject: Befund\r\nMessage-ID: <1@x>\r\n\r\n";
        let dsn = not_encryptable(
            "a@x.de",
            &["c@x.de".into(), "d@x.de".into()],
            head,
            "kim-cm",
            OffsetDateTime::UNIX_EPOCH,
        );
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("X-KIM-Fehlermeldung: 4004\r\n"));
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains("Final-Recipient: rfc822; c@x.de\r\nAction: failed"));
        assert!(text.contains("Final-Recipient: rfc822; d@x.de\r\n"));
        assert!(text.contains("Message-ID: <1@x>\r\n"));
        assert!(!text.contains("X-KOM-LE-Version"));
        let parsed = mail_parser::MessageParser::default()
            .parse(text.as_bytes())
            .unwrap();
        assert_eq!(parsed.subject(), Some(SUBJECT));
        assert_eq!(parsed.parts.len(), 4, "multipart with three parts");
    }

    #[test]
    fn version_reports_name_the_removed_and_the_versions() {
        let head = b"From: a@x.de\r\nTo: b@x.de\r\nSubject: MRT\r\n\r\n";
        let removed = String::from_utf8(version_removed(
            "a@x.de",
            &["b@x.de".into()],
            head,
            "kim-cm",
            OffsetDateTime::UNIX_EPOCH,
        ))
        .unwrap();
        assert!(removed.contains("X-KIM-Fehlermeldung: 4001\r\n"));
        assert!(removed.contains("Final-Recipient: rfc822; b@x.de\r\nAction: failed"));
        let outdated = String::from_utf8(cm_outdated(
            "a@x.de",
            &["b@x.de".into()],
            "1.5+",
            "1.6",
            head,
            "kim-cm",
            OffsetDateTime::UNIX_EPOCH,
        ))
        .unwrap();
        assert!(outdated.contains("X-KIM-Fehlermeldung: 4017\r\n"));
        assert!(outdated.contains("Action: relayed"));
        assert!(outdated.contains("KIM 1.5+") && outdated.contains("1.6"));
        let parsed = mail_parser::MessageParser::default()
            .parse(outdated.as_bytes())
            .unwrap();
        assert_eq!(parsed.subject(), Some(SUBJECT_OUTDATED));
    }
}
