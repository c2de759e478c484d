//! The KIM Attachment Service lost in the middle of a transfer (issue 9, the KAS
//! cells of the fault matrix): the connection closed or stalled during the
//! upload, the KAS's answer to a complete upload lost, the connection closed or
//! stalled during the download. Each time the client hears what happened, every
//! mail reaches the Fachdienst once or the client was told it did not, nothing
//! half-written is kept, and no plaintext of the mail stays on disk.
//!
//! A kim-cm on the sandbox's config reaches the sandbox's KAS through a relay
//! (`common::cutter`) that breaks the next connection as a test arms it and lets
//! later ones pass, so that a retry can succeed. The KAS names its links after
//! the address it was reached by, so downloads go through the relay as well.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cutter::{Cut, Cutter};
use common::kimcm::{url_with_login, KimCm, Sandbox};
use common::mail::{big_mail, config_text, curl, header_value, rand_id, second_kimcm, send_via};

const MIB: u64 = 1024 * 1024;
/// The mail's size: over the 15 MiB that send it through the KAS.
const MAIL_SIZE: usize = 16 * MIB as usize;
/// Where the relay breaks a transfer: well inside the mail data, past TLS.
const CUT_AT: u64 = MIB;
/// kim-cm's `upstream_timeout_secs` here: how long a silent KAS is waited for.
const KAS_TIMEOUT_SECS: u64 = 5;
/// How long the simulated KAS may take to drop the file of a broken upload.
const KAS_CLEANUP: Duration = Duration::from_secs(10);

/// A sandbox, a relay in front of its KAS, a kim-cm that uses the relay, and a
/// 16 MiB mail from alice to bob with a marker in its text.
struct Rig {
    sb: Sandbox,
    cutter: Cutter,
    k: KimCm,
    mail: PathBuf,
    marker: String,
}

impl Rig {
    fn new() -> Rig {
        let sb = Sandbox::start();
        let url = kas_url(&sb);
        let port: u16 = url
            .trim_start_matches("https://localhost:")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let cutter = Cutter::start(([127, 0, 0, 1], port).into(), Cut::Pass, 0);
        let relayed = format!("https://localhost:{}/attachments/v2.4", cutter.addr.port());
        let k = second_kimcm(&sb, |t| {
            t.replace(&url, &relayed).replace(
                "[proxy]\n",
                &format!("[proxy]\nupstream_timeout_secs = {KAS_TIMEOUT_SECS}\n"),
            )
        });
        let (alice, ..) = sb.account(0);
        let (bob, ..) = sb.account(1);
        let marker = format!("Befund-Marker-{}", rand_id());
        let part = format!("--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{marker}\r\n");
        let mail = big_mail(sb.dir.path(), &alice, &bob, MAIL_SIZE, &part);
        Rig {
            sb,
            cutter,
            k,
            mail,
            marker,
        }
    }

    fn alice(&self) -> String {
        self.sb.account(0).0
    }

    fn bob(&self) -> String {
        self.sb.account(1).0
    }

    /// Sends the mail through kim-cm: curl's exit code and dialogue.
    fn send(&self) -> (i32, String) {
        send_via(
            &self.sb,
            &self.k.smtp.unwrap().to_string(),
            &self.mail,
            &self.bob(),
        )
    }

    /// Bob's first mail, fetched through kim-cm.
    fn fetch(&self) -> Vec<u8> {
        let (_, pw, _, user) = self.sb.account(1);
        let pop3 = self.k.pop3.unwrap().to_string();
        let url = url_with_login("pop3", &pop3, &user, &pw, "/1");
        let (code, got, err) = curl(&["--url", &url]);
        assert_eq!(code, 0, "curl pop3: {err}\n{}", self.k.log());
        got
    }

    /// The uploads the KAS holds, once it has dropped those of broken
    /// connections.
    fn kas_ids_settled(&self, want: usize) -> Vec<String> {
        let end = Instant::now() + KAS_CLEANUP;
        loop {
            let ids = self.sb.kas_ids();
            if ids.len() == want || Instant::now() > end {
                return ids;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client was told 451 and alice got the 4002 report; nothing went to bob.
    /// The one log line that says why.
    fn assert_upload_refused(&self, code: i32, err: &str) -> String {
        assert_ne!(code, 0, "{err}");
        // A_19363-03: 451, the mail was not sent
        assert!(err.contains("< 451 4.4.0"), "{err}\n{}", self.k.log());
        assert!(
            self.sb.stored_mails(&self.bob()).is_empty(),
            "nothing to bob"
        );
        // the 4002 report (Tab_Fehlercodes_KOMLE-Clientmodule) to the sender
        let reports = self.sb.stored_mails(&self.alice());
        assert_eq!(reports.len(), 1, "{}", self.k.log());
        assert_eq!(
            header_value(&reports[0], "X-KIM-Fehlermeldung").as_deref(),
            Some("4002")
        );
        let log = self.k.log();
        let failed: Vec<_> = log
            .lines()
            .filter(|l| l.contains("KAS upload failed"))
            .collect();
        assert_eq!(failed.len(), 1, "one line says what happened: {log}");
        assert!(
            !log.contains(&self.sb.account(0).1),
            "no password in the log"
        );
        failed[0].to_string()
    }

    /// The retry goes through; bob has the mail exactly once, and it restores
    /// whole.
    fn assert_retry_arrives_once(&self) {
        let (code, err) = self.send();
        assert_eq!(code, 0, "{err}\n{}", self.k.log());
        assert_eq!(self.sb.stored_mails(&self.bob()).len(), 1, "exactly once");
        self.assert_restores_whole(&self.fetch());
    }

    /// `got` is the mail alice sent: the marker text and the attachment byte for
    /// byte, opened and checked.
    fn assert_restores_whole(&self, got: &[u8]) {
        assert_eq!(
            header_value(got, "X-KIM-DecryptionResult").as_deref(),
            Some("00"),
            "{}",
            String::from_utf8_lossy(&got[..2000.min(got.len())])
        );
        assert_eq!(header_value(got, "X-KIM-Fehlermeldung"), None);
        let sent = std::fs::read(&self.mail).unwrap();
        let attachment = find(&sent, b"Content-Type: application/octet-stream").unwrap();
        assert!(got.ends_with(&sent[attachment..]), "the attachment whole");
        assert!(find(got, self.marker.as_bytes()).is_some());
    }

    /// No spool file left, and no plaintext of the mail anywhere in kim-cm's data.
    fn assert_nothing_left(&self) {
        let data = self.k.dir.path().join("data");
        let spooled: Vec<_> = std::fs::read_dir(self.k.spool_dir()).unwrap().collect();
        assert!(spooled.is_empty(), "{spooled:?}");
        let attachment_line = [b'Q'; 76];
        for file in files_under(&data) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                find(&bytes, self.marker.as_bytes()).is_none()
                    && find(&bytes, &attachment_line).is_none(),
                "plaintext of the mail in {}",
                file.display()
            );
        }
    }
}

fn kas_url(sb: &Sandbox) -> String {
    let text = config_text(sb);
    let line = text.lines().find(|l| l.starts_with("kas_url")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn an_upload_cut_mid_body_gets_451_and_the_retry_arrives_once() {
    let rig = Rig::new();
    rig.cutter.arm(Cut::CloseUp(CUT_AT), 1);
    let (code, err) = rig.send();
    rig.assert_upload_refused(code, &err);
    let t = rig.cutter.traffic();
    assert_eq!(t.len(), 1, "one upload, no retry of its own: {t:?}");
    assert!(t[0].cut && t[0].up == CUT_AT, "cut mid-body: {t:?}");
    assert!(
        rig.kas_ids_settled(0).is_empty(),
        "the KAS dropped the part"
    );
    rig.assert_nothing_left();

    rig.assert_retry_arrives_once();
    let t = rig.cutter.traffic();
    assert!(!t[1].cut && t[1].up > MAIL_SIZE as u64, "{t:?}");
    assert_eq!(rig.kas_ids_settled(1).len(), 1);
    rig.assert_nothing_left();
}

#[test]
fn an_upload_stalled_mid_body_gets_451_and_the_retry_arrives_once() {
    let rig = Rig::new();
    rig.cutter.arm(Cut::StallUp(CUT_AT), 1);
    let (code, err) = rig.send();
    let why = rig.assert_upload_refused(code, &err);
    assert!(
        why.contains(&format!("silent for {KAS_TIMEOUT_SECS} s")),
        "{why}"
    );
    let t = rig.cutter.traffic();
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].cut && t[0].up == CUT_AT, "stalled mid-body: {t:?}");
    // the KAS sees the stalled connection end and drops the part
    rig.cutter.close_stalled();
    assert!(rig.kas_ids_settled(0).is_empty());
    rig.assert_nothing_left();

    rig.assert_retry_arrives_once();
    assert_eq!(rig.kas_ids_settled(1).len(), 1);
    rig.assert_nothing_left();
}

#[test]
fn a_lost_answer_to_a_complete_upload_gets_451_and_the_retry_arrives_once() {
    let rig = Rig::new();
    // the KAS takes the whole upload; its 201 never reaches kim-cm
    rig.cutter.arm(Cut::CloseAnswerAfterUp(MAIL_SIZE as u64), 1);
    let (code, err) = rig.send();
    rig.assert_upload_refused(code, &err);
    let t = rig.cutter.traffic();
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].cut && t[0].up > MAIL_SIZE as u64, "all sent: {t:?}");
    // kim-cm never learnt the link: the data stay on the KAS until they expire
    assert_eq!(rig.kas_ids_settled(1).len(), 1, "the orphan");
    rig.assert_nothing_left();

    rig.assert_retry_arrives_once();
    assert_eq!(rig.kas_ids_settled(2).len(), 2);
    rig.assert_nothing_left();
}

/// Sends the mail through the relay unharmed, then fetches it with the download
/// broken as `cut`: the 4006 error mail, nothing cached; the next fetch is whole.
fn download_broken(cut: Cut) {
    let rig = Rig::new();
    let (code, err) = rig.send();
    assert_eq!(code, 0, "{err}\n{}", rig.k.log());
    assert_eq!(rig.sb.stored_mails(&rig.bob()).len(), 1);

    rig.cutter.arm(cut, 1);
    let got = rig.fetch();
    // A_19370-04: the KIM mail as message/rfc822 in a multipart/mixed with the
    // text of Tab_Fehlertext_Download
    assert_eq!(
        header_value(&got, "X-KIM-Fehlermeldung").as_deref(),
        Some("4006"),
        "{}",
        String::from_utf8_lossy(&got[..2000.min(got.len())])
    );
    assert_eq!(
        header_value(&got, "Subject").as_deref(),
        Some("Die E-Mail-Daten konnten nicht abgerufen werden")
    );
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("Content-Type: message/rfc822"));
    assert!(text.contains("Beim nächsten Abholen wird der Download wiederholt."));
    assert!(!text.contains(&rig.marker), "no part of the mail data");
    let t = rig.cutter.traffic();
    let download = t.last().unwrap();
    assert!(
        download.cut && download.down == CUT_AT,
        "broken mid-body: {t:?}"
    );
    let log = rig.k.log();
    let failed: Vec<_> = log
        .lines()
        .filter(|l| l.contains("KAS download failed"))
        .collect();
    assert_eq!(failed.len(), 1, "one line says what happened: {log}");
    if matches!(cut, Cut::StallDown(_)) {
        assert!(
            failed[0].contains(&format!("silent for {KAS_TIMEOUT_SECS} s")),
            "{}",
            failed[0]
        );
    }
    let cache = rig.k.dir.path().join("data").join("kas-cache");
    let cached: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert!(cached.is_empty(), "nothing half-written kept: {cached:?}");
    rig.cutter.close_stalled();
    rig.assert_nothing_left();

    // A_19370-04: the mail stayed on the server, the next fetch downloads again
    rig.assert_restores_whole(&rig.fetch());
    let t = rig.cutter.traffic();
    assert!(!t.last().unwrap().cut);
    assert_eq!(rig.sb.stored_mails(&rig.bob()).len(), 1);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    rig.assert_nothing_left();
}

#[test]
fn a_download_cut_mid_body_gives_4006_and_the_next_retr_the_whole_mail() {
    download_broken(Cut::CloseDown(CUT_AT));
}

#[test]
fn a_download_stalled_mid_body_gives_4006_and_the_next_retr_the_whole_mail() {
    download_broken(Cut::StallDown(CUT_AT));
}
