//! The mails a Clientmodul hands to the client instead of the one it received, when
//! it cannot or must not deliver that one as it is (gemSpec_CM_KOMLE 3.4.4.2):
//! an unsupported KIM version (A_21391-02), a mail that cannot be decrypted
//! (KOM-LE-A_2046, A_2047-02, Tab_Fehlertext_Entschl), and a mail whose integrity
//! check failed (A_23165, with the decrypted original embedded as the FAQ asks).
//! Also the result header fields of a mail that opened well.

use super::header;

/// A_23165: the text that replaces the body of a mail whose integrity check failed.
pub const SECURITY_VIOLATION: &str = "Beim Empfang dieser KIM-Nachricht wurde eine Sicherheitsverletzung erkannt. \
Dies kann eine technisches Ursache haben oder auf eine missbräuchliche Nutzung des KIM-Dienstes hinweisen. \
Zu Ihrem Schutz wurde der Inhalt dieser Nachricht durch diesen Text ausgetauscht. \
Bitte kontaktieren Sie den Absender und/oder Ihren Administrator.";

/// KOM-LE-A_2046: the subject of the decryption error mail.
pub const SUBJECT_NOT_DECRYPTED: &str = "Die Nachricht konnte nicht entschlüsselt werden";
/// A_21391-02: the subject of the unsupported-version mail.
pub const SUBJECT_UNSUPPORTED_VERSION: &str =
    "Die KIM-Version der empfangenen Nachricht wird nicht unterstützt";

/// Fields the error mails take over from the received mail (KOM-LE-A_2046,
/// A_21391-02: orig-date, from, sender, reply-to, to, cc; Message-ID too, so that
/// a client fetching the same mail twice sees one mail).
const TAKEN_OVER: [&str; 7] = [
    "Date",
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Message-ID",
];

/// Why a mail could not be decrypted (Tab_Fehlertext_Entschl).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecryptionFailure {
    /// 01: no key of the fetching user fits.
    KeyUnavailable,
    /// 02: marked as KIM mail, but not in the KIM S/MIME format.
    WrongFormat,
    /// 03: the Konnektor did not answer.
    KonnektorUnavailable,
    /// A vendor code, starting with "X" (A_2047-02).
    Vendor(&'static str, &'static str),
}

impl DecryptionFailure {
    /// The X-KIM-DecryptionResult code.
    pub fn code(&self) -> &'static str {
        match self {
            DecryptionFailure::KeyUnavailable => "01",
            DecryptionFailure::WrongFormat => "02",
            DecryptionFailure::KonnektorUnavailable => "03",
            DecryptionFailure::Vendor(code, _) => code,
        }
    }

    /// The error text of Tab_Fehlertext_Entschl for the user `address`.
    pub fn text(&self, address: &str) -> String {
        match self {
            DecryptionFailure::KeyUnavailable => format!(
                "Der für die Entschlüsselung der Nachricht benötigte Schlüssel wurde nicht gefunden. Überprüfen Sie ob die \
entsprechende Karte gesteckt ist und leiten Sie diese Nachricht an Ihre eigene E-Mail-Adresse ({address}) weiter. \
Beim nächsten Abholen wird der Entschlüsselungsvorgang wiederholt."
            ),
            DecryptionFailure::WrongFormat => "Die Nachricht wurde als eine verschlüsselte KIM-Nachricht gekennzeichnet, konnte \
aber auf Grund des falschen Formats nicht entschlüsselt werden. Die Verschlüsselte Nachricht befindet sich im Anhang. \
Bitte kontaktieren Sie den Absender der Nachricht."
                .to_string(),
            DecryptionFailure::KonnektorUnavailable => format!(
                "Die Entschlüsselung konnte nicht erfolgen, weil der Konnektor nicht antwortet. Stellen Sie sicher, dass der \
Konnektor wieder zur Verfügung steht und leiten Sie diese Nachricht an Ihre eigene E-Mail-Adresse ({address}) weiter. \
Beim nächsten Abholen wird der Entschlüsselungsvorgang wiederholt."
            ),
            DecryptionFailure::Vendor(_, text) => text.to_string(),
        }
    }
}

/// A MIME boundary that cannot occur in base64 or in the texts here. It is derived
/// from the attached mail, so opening the same mail twice gives the same bytes.
fn boundary(attached: &[u8]) -> String {
    let digest = openssl::sha::sha256(attached);
    format!("=_kim-cm_{}", hex::encode(&digest[..12]))
}

/// A multipart/mixed mail: the taken-over fields of `from_header`, `subject`,
/// `extra` header fields, a text/plain part and `attached` as message/rfc822.
pub(crate) fn multipart(
    from_header: &[u8],
    subject: &str,
    extra: &[(&str, &str)],
    text: &str,
    attached: &[u8],
) -> Vec<u8> {
    let b = boundary(attached);
    let mut out = Vec::with_capacity(attached.len() + 2048);
    header::append_fields(&mut out, from_header, &TAKEN_OVER);
    out.extend_from_slice(format!("Subject: {}\r\n", encode_word(subject)).as_bytes());
    for (k, v) in extra {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n\
This is a multi-part message in MIME format.\r\n--{b}\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n--{b}\r\n\
Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(attached);
    // the CRLF before the closing delimiter belongs to the delimiter (RFC 2046 5.1.1),
    // so the attached mail keeps its own last line end
    out.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    out
}

/// RFC 2047 encoded word for a header value that is not ASCII.
fn encode_word(text: &str) -> String {
    use base64::Engine;
    if text.is_ascii() {
        text.to_string()
    } else {
        format!(
            "=?utf-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    }
}

/// A_21391-02: the received mail names a KIM version this Clientmodul does not support.
pub fn unsupported_version(received: &[u8], version: &str, supported: &[&str]) -> Vec<u8> {
    let (head, _) = header::split(received);
    let text = format!(
        "Das verwendete Clientmodul unterstützt die in der empfangenen Nachricht angegebene KIM-Version [{version}] nicht.\r\n\
Das verwendete Clientmodul unterstützt nur Nachrichten der KIM-Versionen [{}].\r\n\
Es wird empfohlen, das verwendete Clientmodul zu aktualisieren!\r\n\
Leiten Sie diese Mail an Ihre eigene KIM-E-Mail-Adresse weiter, um die Nachrichtenverarbeitung beim nächsten Abruf der Nachricht zu wiederholen.",
        supported.join(", ")
    );
    multipart(
        head,
        SUBJECT_UNSUPPORTED_VERSION,
        &[("X-KIM-Fehlermeldung", "4008")],
        &text,
        received,
    )
}

/// KOM-LE-A_2046, A_2047-02: the received (encrypted) mail could not be decrypted for
/// the user `address`.
pub fn not_decrypted(received: &[u8], failure: &DecryptionFailure, address: &str) -> Vec<u8> {
    let (head, _) = header::split(received);
    let text = format!("{} ({})", failure.text(address), failure.code());
    multipart(
        head,
        SUBJECT_NOT_DECRYPTED,
        &[("X-KIM-DecryptionResult", failure.code())],
        &text,
        received,
    )
}

/// A_23165: the decrypted mail failed the integrity check with `codes`
/// (Tab_Verm_Sig_Prüf). Its header is kept, its body is replaced by the security
/// violation text, and the decrypted original is attached.
pub fn integrity_failed(outer: &[u8], decrypted: &[u8], codes: &[&str]) -> Vec<u8> {
    let (inner_head, _) = header::split(decrypted);
    // when what was decrypted is no mail (a damaged SignedData), the fields come from
    // the outer mail
    let (outer_head, _) = header::split(outer);
    let inner_head = if header::find(inner_head, "From").is_some() {
        inner_head
    } else {
        outer_head
    };
    let mut extra: Vec<(&str, &str)> = vec![("X-KIM-DecryptionResult", "00")];
    extra.extend(codes.iter().map(|c| ("X-KIM-IntegrityCheckResult", *c)));
    let subject = header::value(inner_head, "Subject").unwrap_or_default();
    let mut out = trace_fields(outer);
    out.extend_from_slice(&multipart(
        inner_head,
        &subject,
        &extra,
        SECURITY_VIOLATION,
        decrypted,
    ));
    out
}

/// Return-Path and Received of the outer mail (A_21236, A_20628), for the top of the
/// mail the client gets.
pub fn trace_fields(outer: &[u8]) -> Vec<u8> {
    let (head, _) = header::split(outer);
    let mut out = Vec::new();
    header::append_fields(&mut out, head, &["Return-Path", "Received"]);
    out
}

/// A mail that opened well: the outer trace fields, the result fields, then the
/// decrypted inner mail (with its notes already appended).
pub fn opened(outer: &[u8], inner: &[u8], integrity_code: &str) -> Vec<u8> {
    let mut out = opened_head(outer, integrity_code);
    out.extend_from_slice(inner);
    out
}

/// What goes above the inner mail of an opened mail: the outer trace fields and the
/// result fields. The inner mail is appended by the caller.
pub fn opened_head(outer: &[u8], integrity_code: &str) -> Vec<u8> {
    let mut out = trace_fields(outer);
    out.extend_from_slice(
        format!("X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: {integrity_code}\r\n")
            .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    const OUTER: &[u8] = b"Return-Path: <a@x.de>\r\nReceived: from mta by fd; Mon, 23 Nov 2026 10:00:00 +0100\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nFrom: A <a@x.de>\r\nTo: b@x.de\r\nSubject: KOM-LE-Nachricht\r\n\
Message-ID: <1@x.de>\r\nX-KOM-LE-Version: 1.0\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\r\n";

    #[test]
    fn not_decrypted_mail_has_the_spec_shape() {
        let out = not_decrypted(OUTER, &DecryptionFailure::KeyUnavailable, "b@x.de");
        let msg = MessageParser::default().parse(&out[..]).unwrap();
        assert_eq!(msg.subject(), Some(SUBJECT_NOT_DECRYPTED));
        assert_eq!(
            msg.header_raw("X-KIM-DecryptionResult").map(str::trim),
            Some("01")
        );
        assert_eq!(msg.header_raw("From").map(str::trim), Some("A <a@x.de>"));
        assert!(msg.body_text(0).unwrap().contains("(b@x.de) weiter"));
        // the received mail is attached unchanged
        let attached = msg.attachment(0).unwrap().message().unwrap();
        assert_eq!(attached.raw_message(), OUTER);
    }

    #[test]
    fn unsupported_version_mail() {
        let out = unsupported_version(OUTER, "2.0", &["1.0", "1.5"]);
        let msg = MessageParser::default().parse(&out[..]).unwrap();
        assert_eq!(msg.subject(), Some(SUBJECT_UNSUPPORTED_VERSION));
        assert_eq!(
            msg.header_raw("X-KIM-Fehlermeldung").map(str::trim),
            Some("4008")
        );
        assert!(msg
            .body_text(0)
            .unwrap()
            .contains("KIM-Version [2.0] nicht"));
    }

    #[test]
    fn integrity_failure_replaces_the_body_and_embeds_the_original() {
        let inner = b"From: A <a@x.de>\r\nTo: b@x.de\r\nSubject: Befund\r\n\r\ngeheimer Inhalt\r\n";
        let out = integrity_failed(OUTER, inner, &["08"]);
        let msg = MessageParser::default().parse(&out[..]).unwrap();
        assert_eq!(msg.subject(), Some("Befund"));
        assert_eq!(
            msg.header_raw("X-KIM-IntegrityCheckResult").map(str::trim),
            Some("08")
        );
        assert_eq!(
            msg.header_raw("Return-Path").map(str::trim),
            Some("<a@x.de>")
        );
        assert_eq!(msg.body_text(0).unwrap().trim(), SECURITY_VIOLATION);
        assert_eq!(
            msg.attachment(0).unwrap().message().unwrap().raw_message(),
            inner
        );
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let f = DecryptionFailure::WrongFormat;
        assert_eq!(
            not_decrypted(OUTER, &f, "b@x.de"),
            not_decrypted(OUTER, &f, "b@x.de")
        );
    }

    #[test]
    fn opened_mail_gets_trace_and_result_fields_on_top() {
        let inner = b"From: a@x.de\r\n\r\nbody\r\n";
        let out = opened(OUTER, inner, "01");
        assert!(out.starts_with(b"Return-Path: <a@x.de>\r\nReceived: from mta by fd;"));
        assert!(out.ends_with(b"X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\nFrom: a@x.de\r\n\r\nbody\r\n"));
    }
}
