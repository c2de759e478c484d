//! The configuration file as an admin meets it: the example parses, mistakes are
//! named with file, line and key, and `check-config` exits 0 or 2.

mod common;

use std::path::Path;
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

/// Issue 9 item 7: a secret file others may read stops check-config and serve
/// with the file and the fix named; owner-only, the same config is fine.
#[test]
fn a_key_file_readable_by_others_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tls = kim_cm::testbed::ca::make_tls_ca(dir.path(), &[]).unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    let path = dir.path().join("kim-cm.toml");
    std::fs::write(
        &path,
        format!(
            "[upstream]\nca_file = \"ca.pem\"\n[[smtp_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"implicit\"\n\
             cert = \"{}\"\nkey = \"{}\"\n[directory]\nfolder = \"certs\"\n",
            tls.server_cert.display(),
            tls.server_key.display()
        ),
    )
    .unwrap();
    let run = |cmd: &str| {
        let mut c = Command::new(bin());
        match cmd {
            "serve" => c.args(["serve", "--config"]),
            _ => c.arg("check-config"),
        };
        let out = c.arg(&path).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    std::fs::set_permissions(&tls.server_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    for cmd in ["check-config", "serve"] {
        let (code, err) = run(cmd);
        assert_ne!(code, Some(0), "{cmd}: {err}");
        assert!(
            err.contains(&format!(
                "the listener's TLS key {} may be read by other users (mode 644)",
                tls.server_key.display()
            )) && err.contains("chmod 600"),
            "{cmd}: {err}"
        );
    }
    std::fs::set_permissions(&tls.server_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, err) = run("check-config");
    assert_eq!(code, Some(0), "{err}");
}

/// Issue 9 item 3: the hardened config in docs/deploy parses (its files are the
/// practice's), and the service unit runs kim-cm confined.
#[test]
fn the_deployment_files_in_docs_hold_what_the_operations_guide_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("docs/deploy/kim-cm.hardened.toml")).unwrap();
    let cfg = kim_cm::config::Config::parse(&text, Path::new("/etc/kim-cm")).unwrap();
    assert!(!cfg.proxy.allow_unsealed_for_testing);
    assert!(cfg
        .smtp_listener
        .iter()
        .chain(&cfg.pop3_listener)
        .all(|l| l.tls != kim_cm::net::TlsMode::Plain));
    assert!(cfg.admin.as_ref().unwrap().address.ip().is_loopback());
    let unit = std::fs::read_to_string(root.join("docs/deploy/kim-cm.service")).unwrap();
    for line in [
        "User=kim-cm",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=strict",
        "UMask=0077",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/local/bin/kim-cm serve --config /etc/kim-cm/kim-cm.toml",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} in kim-cm.service");
    }
}
