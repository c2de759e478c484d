//! `kim-cm message open`, as an admin runs it on a mail that will not open.

use std::io::Write;
use std::process::{Command, Stdio};

const DIR: &str = "../shared/kim-api/samples/smime-profil";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kim-cm")
}

#[test]
fn open_reports_the_sample_and_reads_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "00\n").unwrap();
    let mail = std::fs::read(format!("{DIR}/inputEmail.txt.05.encryptedwrap")).unwrap();
    let mut child = Command::new(bin())
        .args([
            "message",
            "open",
            "--key",
            &format!("{DIR}/B/hci-enc-3-kim-bsp.p12"),
            "--password-file",
        ])
        .arg(&pw)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&mail).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // decrypted, but the sample's SignedData is damaged: wrong format (04)
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 04"),
        "{stdout}"
    );
    assert!(stdout.contains("From: Karl Mustersender <mustersender@komle.de>"));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("04"));

    // a wrong password: one sentence naming the file
    std::fs::write(&pw, "wrong\n").unwrap();
    let out = Command::new(bin())
        .args([
            "message",
            "open",
            "--key",
            &format!("{DIR}/B/hci-enc-3-kim-bsp.p12"),
            "--password-file",
        ])
        .arg(&pw)
        .arg(format!("{DIR}/inputEmail.txt.05.encryptedwrap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hci-enc-3-kim-bsp.p12") && stderr.contains("wrong password"),
        "{stderr}"
    );
}

/// `message seal` then `message open`, as an admin checks a setup with key files.
#[test]
fn seal_then_open_with_the_recipients_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = kim_cm::testbed::pki::make(dir.path(), &["a@x.de", "b@x.de"]).unwrap();
    let mail = dir.path().join("mail.eml");
    // LF line ends, as a file written by hand has them
    std::fs::write(
        &mail,
        "From: a@x.de\nTo: b@x.de\nCc: nocert@x.de\nSubject: Befund\n\nseal-cli-marker\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["message", "seal", "--key"])
        .arg(&pki.accounts[0].signing_pkcs12)
        .arg("--password-file")
        .arg(&pki.password_file)
        .arg("--cert-dir")
        .arg(&pki.directory)
        .arg(&mail)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "kim-cm: left out (no valid encryption certificate): nocert@x.de"
    );
    let sealed = out.stdout;
    let text = String::from_utf8_lossy(&sealed);
    assert!(text.contains("Subject: KOM-LE-Nachricht\r\n"), "{text}");
    assert!(!text.contains("seal-cli-marker") && !text.contains("nocert@x.de"));

    let mut child = Command::new(bin())
        .args(["message", "open", "--key"])
        .arg(&pki.accounts[1].encryption_pkcs12)
        .arg("--password-file")
        .arg(&pki.password_file)
        .arg("--trust")
        .arg(&pki.ca_cert)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&sealed).unwrap();
    let out = child.wait_with_output().unwrap();
    let opened = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{opened}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        opened.contains("X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\n"),
        "{opened}"
    );
    assert!(opened.contains("\r\nseal-cli-marker\r\n"));
    // KOM-LE-A_2028: the recipient without a certificate left the inner header too
    assert!(!opened.contains("nocert@x.de"), "{opened}");
}

#[test]
fn seal_refuses_in_one_sentence_when_nobody_can_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = kim_cm::testbed::pki::make(dir.path(), &["a@x.de"]).unwrap();
    let mail = dir.path().join("mail.eml");
    std::fs::write(&mail, "From: a@x.de\r\nTo: z@x.de\r\n\r\nx\r\n").unwrap();
    let out = Command::new(bin())
        .args(["message", "seal", "--key"])
        .arg(&pki.accounts[0].signing_pkcs12)
        .arg("--password-file")
        .arg(&pki.password_file)
        .arg("--cert-dir")
        .arg(&pki.directory)
        .arg(&mail)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no recipient has a valid encryption certificate")
            && stderr.contains("z@x.de"),
        "{stderr}"
    );
}
