//! The configuration file as an admin meets it: the example parses, mistakes are
//! named with file, line and key, and `check-config` exits 0 or 2.

mod common;

use std::process::Command;

use common::kimcm::bin;

#[test]
fn example_config_parses_with_every_key() {
    let text = std::fs::read_to_string("config/kim-cm.example.toml").unwrap();
    let cfg = kim_cm::config::Config::parse(&text, std::path::Path::new("/etc/kim-cm"))
        .expect("example parses");
    assert_eq!(cfg.smtp_listener.len(), 2);
    assert_eq!(cfg.pop3_listener.len(), 2);
    assert_eq!(cfg.account.len(), 1);
    assert_eq!(
        cfg.upstream.ca_file,
        std::path::PathBuf::from("/etc/kim-cm/tls/ti-ca.pem")
    );
}

#[test]
fn check_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[upstream]\nca_file = \"ca.pem\"\n[[smtp_listener]]\naddress = \"127.0.0.1:2525\"\ntls = \"plain\"\nfoo = 1\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 6") && err.contains("foo"),
        "{err}"
    );
}

#[test]
fn check_config_reports_missing_files_and_accepts_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kim-cm.toml");
    let body = "[upstream]\nca_file = \"ca.pem\"\n[[smtp_listener]]\naddress = \"127.0.0.1:2525\"\ntls = \"plain\"\n";
    std::fs::write(&path, body).unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ca.pem"), "{err}");

    kim_cm::testbed::ca::make_tls_ca(dir.path(), &[]).unwrap();
    // without a directory of encryption certificates nothing can be sealed
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[directory] has neither folder nor ldap_url"),
        "{err}"
    );

    std::fs::create_dir(dir.path().join("certs")).unwrap();
    std::fs::write(&path, format!("{body}[directory]\nfolder = \"certs\"\n")).unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}
