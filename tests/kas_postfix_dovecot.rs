//! Large mails through the KIM Attachment Service in front of a real mail system:
//! kim-cm seals for Postfix (submission) and Dovecot (POP3S), the simulated KAS runs
//! in this test on loopback. curl sends 20 MiB, 100 MiB and 700 MiB through kim-cm
//! and fetches them back through it; the restored mail is compared byte for byte
//! with what was sent, and what Dovecot holds is the small sealed KIM 1.5 mail.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::kimcm::{strip_trace_headers, url_with_login, KimCm};
use common::peers::{PeerUser, RealFachdienst};

const ALICE: (&str, &str) = ("alice@praxis.kim.test", "alice-Secret-1");
const BOB: (&str, &str) = ("bob@praxis.kim.test", "bob-Secret-2");
const MIB: usize = 1024 * 1024;

/// The simulated KAS on a thread of its own, with the peers' users.
struct KasSim {
    url: String,
    dir: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

fn start_kas(work: &Path) -> (KasSim, PathBuf) {
    let tls = kim_cm::testbed::ca::make_tls_ca(&work.join("kas-tls"), &[]).unwrap();
    let dir = work.join("kas");
    std::fs::create_dir_all(&dir).unwrap();
    let mut users = kim_cm::testbed::users::Users::new();
    users.add(ALICE.0, ALICE.1);
    users.add(BOB.0, BOB.1);
    let kas = Arc::new(kim_cm::testbed::kas::Kas::new(
        &dir,
        Arc::new(users),
        &HashMap::new(),
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let acceptor = Arc::new(kim_cm::net::tls::acceptor(&tls.server_cert, &tls.server_key).unwrap());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(kim_cm::testbed::kas::serve(listener, acceptor, kas));
    (
        KasSim {
            url: kim_cm::testbed::kas::base_url(addr),
            dir,
            _runtime: runtime,
        },
        tls.ca_cert,
    )
}

/// A client mail of about `size` bytes: a text part and a base64 attachment.
fn big_mail(path: &Path, size: usize) -> String {
    let head = format!(
        "From: <{a}>\r\nTo: <{b}>\r\nSubject: Serie {size}\r\nMessage-ID: <kas-pd-{size}@praxis.kim.test>\r\n\
Date: Tue, 24 Nov 2026 08:00:00 +0100\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"pd-boundary\"\r\n",
        a = ALICE.0,
        b = BOB.0
    );
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(head.as_bytes()).unwrap();
    f.write_all(b"\r\n--pd-boundary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAnbei die Serie.\r\n\
--pd-boundary\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
        .unwrap();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ size as u64;
    let mut line = [0u8; 78];
    line[76] = b'\r';
    line[77] = b'\n';
    let mut written = head.len() + 200;
    while written < size {
        for c in line.iter_mut().take(76) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *c = alphabet[(x & 63) as usize];
        }
        f.write_all(&line).unwrap();
        written += 78;
    }
    f.write_all(b"--pd-boundary--\r\n").unwrap();
    f.flush().unwrap();
    head
}

fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "600"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn user(addr: &str, server: std::net::SocketAddr) -> String {
    format!("{addr}#{server}#1#KOM_LE#7")
}

fn round_trip(size: usize) {
    let rf = RealFachdienst::start(&[PeerUser::new(ALICE.0, ALICE.1), PeerUser::new(BOB.0, BOB.1)])
        .expect("Postfix and Dovecot (installed by .ci/run)");
    let work = tempfile::tempdir().unwrap();
    let (kas, kas_ca) = start_kas(work.path());
    // kim-cm verifies every upstream against one CA file: Dovecot's and the KAS's
    let cas = work.path().join("upstream-ca.pem");
    let mut both = std::fs::read(rf.ca_pem_path()).unwrap();
    both.extend_from_slice(&std::fs::read(&kas_ca).unwrap());
    std::fs::write(&cas, both).unwrap();
    let pki = kim_cm::testbed::pki::make(&work.path().join("pki"), &[ALICE.0, BOB.0]).unwrap();
    let mut accounts = String::new();
    for a in &pki.accounts {
        accounts.push_str(&format!(
            "[[account]]\naddress = \"{}\"\nsmtp_server = \"{}\"\npop3_server = \"{}\"\n\
             signing_pkcs12 = \"{}\"\nencryption_pkcs12 = \"{}\"\npkcs12_password_file = \"{}\"\n",
            a.address,
            rf.smtps_addr(),
            rf.pop3s_addr(),
            a.signing_pkcs12.display(),
            a.encryption_pkcs12.display(),
            pki.password_file.display()
        ));
    }
    let k = KimCm::serve(&format!(
        "[proxy]\ndata_dir = \"{{dir}}/data\"\n\
         [[smtp_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
         [[pop3_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
         [upstream]\nca_file = \"{}\"\nsmtp_tls = \"implicit\"\npop3_tls = \"implicit\"\n\
         kas_url = \"{}\"\n\
         [directory]\nfolder = \"{}\"\n[trust]\nca_file = \"{}\"\n{accounts}",
        cas.display(),
        kas.url,
        pki.directory.display(),
        pki.ca_cert.display(),
    ));

    let mail = work.path().join("big.eml");
    let head = big_mail(&mail, size);
    let url = url_with_login(
        "smtp",
        &k.smtp.unwrap().to_string(),
        &user(ALICE.0, rf.smtps_addr()),
        ALICE.1,
        "",
    );
    let (code, err) = curl(&[
        "--url",
        &url,
        "--mail-from",
        ALICE.0,
        "--mail-rcpt",
        BOB.0,
        "--upload-file",
        mail.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "curl smtp: {err}\n{}", k.log());
    rf.wait_for_messages(BOB.0, 1, Duration::from_secs(60));

    // Dovecot holds the small sealed KIM 1.5 mail; the KAS the data
    let at_dovecot = work.path().join("at-dovecot.eml");
    let direct = url_with_login("pop3s", &rf.pop3s_addr().to_string(), BOB.0, BOB.1, "/1");
    let (code, err) = curl(&[
        "--cacert",
        rf.ca_pem_path().to_str().unwrap(),
        "--url",
        &direct,
        "--output",
        at_dovecot.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "curl pop3s: {err}");
    let stored = std::fs::read(&at_dovecot).unwrap();
    let text = String::from_utf8_lossy(&stored);
    assert!(stored.len() < 64 * 1024, "{}", stored.len());
    assert!(text.contains("\r\nX-KOM-LE-Version: 1.5\r\n"), "{text}");
    assert!(text.contains("\r\nX-KIM-KAS-Size: "), "{text}");
    assert!(
        !text.contains("Serie "),
        "no plaintext subject at the Fachdienst"
    );
    let blobs = std::fs::read_dir(&kas.dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "bin")
        })
        .count();
    assert_eq!(blobs, 1);

    // through kim-cm: restored byte for byte
    let got_path = work.path().join("got.eml");
    let via = url_with_login(
        "pop3",
        &k.pop3.unwrap().to_string(),
        &user(BOB.0, rf.pop3s_addr()),
        BOB.1,
        "/1",
    );
    let (code, err) = curl(&["--url", &via, "--output", got_path.to_str().unwrap()]);
    assert_eq!(code, 0, "curl pop3: {err}\n{}", k.log());
    let got = std::fs::read(&got_path).unwrap();
    let opened = strip_trace_headers(&got);
    let sent = std::fs::read(&mail).unwrap();
    let want_head = format!(
        "X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\n{head}X-KIM-Dienstkennung: KIM-Mail;Default;V1.0\r\n\r\n"
    );
    assert!(
        opened.starts_with(want_head.as_bytes()),
        "{}",
        String::from_utf8_lossy(&opened[..2000.min(opened.len())])
    );
    let text_end = b"Anbei die Serie.\r\n";
    let at = sent
        .windows(text_end.len())
        .position(|w| w == text_end)
        .unwrap()
        + text_end.len();
    let sent_body = head.len() + 2;
    let body_at = want_head.len();
    let text_len = at - sent_body;
    assert_eq!(&opened[body_at..body_at + text_len], &sent[sent_body..at]);
    let notes = "---------------------------------------------\r\nDie Nachricht wurde entschlüsselt.\r\nDie Signatur wurde erfolgreich geprüft.\r\n";
    let after = body_at + text_len + notes.len();
    assert_eq!(
        String::from_utf8_lossy(&opened[body_at + text_len..after]),
        notes
    );
    assert!(opened[after..] == sent[at..], "the rest is unchanged");
    drop((opened, sent));

    // a second RETR: the same bytes, from kim-cm's cache
    let again = work.path().join("again.eml");
    let (code, err) = curl(&["--url", &via, "--output", again.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(&again).unwrap() == got);
    assert_eq!(
        k.log().matches("mail data downloaded from the KAS").count(),
        1,
        "{}",
        k.log()
    );
}

#[test]
fn a_20_mib_mail_through_postfix_dovecot_and_the_kas() {
    round_trip(20 * MIB);
}

#[test]
fn a_100_mib_mail_through_postfix_dovecot_and_the_kas() {
    round_trip(100 * MIB);
}

/// Slow (well under a minute here), run by CI all the same.
#[test]
fn slow_a_700_mib_mail_through_postfix_dovecot_and_the_kas() {
    round_trip(699 * MIB);
}
