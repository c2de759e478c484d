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
