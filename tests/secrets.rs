//! Issue 9 item 7: every capability at once, with trace logging, and then a
//! search of everything written (the sandbox's log with the proxy's, every
//! command's standard output and error) for every secret the run used and for
//! the mail's body: the mail clients' passwords, the admin password, the KIM
//! account's initial and own passwords, the PKCS#12 password, the ZSR client
//! secret and password, the CareFlex password and API token, the Helsenorge
//! client key, and the mail's text. None may appear.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::kimcm::{curl, url_with_login, write_file, Sandbox};

/// A word that is only in the mail's body.
const BODY_MARKER: &str = "Befund-7f3a9c-vertraulich";
const KIM_PASSWORD: &str = "Sommer-2024!praxis";

fn first_line(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string()
}

/// Runs kim-cm at trace level with `stdin`; everything it wrote.
fn kim(args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(common::kimcm::bin())
        .args(args)
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn no_secret_and_no_mail_body_in_any_output_at_trace_level() {
    let sb = Sandbox::start_with_env(&[("RUST_LOG", "trace")]);
    let root = sb.dir.path().join("sb");
    let config = sb.addr("config_file");
    let (alice, alice_pw, alice_smtp, _) = sb.account(0);
    let (bob, bob_pw, _, bob_pop3) = sb.account(1);
    let mut written = Vec::new();

    // mail: sealed through the proxy, opened on the way back
    let mail = write_file(
        sb.dir.path(),
        "m.eml",
        format!("From: <{alice}>\r\nTo: <{bob}>\r\nSubject: Laborwerte\r\n\r\n{BODY_MARKER}\r\n")
            .as_bytes(),
    );
    let smtp = url_with_login("smtp", &sb.addr("proxy_smtp"), &alice_smtp, &alice_pw, "");
    let (code, _, err) = curl(&[
        "--url",
        &smtp,
        "--mail-from",
        &alice,
        "--mail-rcpt",
        &bob,
        "--upload-file",
        mail.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let pop3 = url_with_login("pop3", &sb.addr("proxy_pop3"), &bob_pop3, &bob_pw, "/1");
    let (code, got, err) = curl(&["--url", &pop3]);
    assert_eq!(code, 0, "{err}");
    assert!(
        String::from_utf8_lossy(&got).contains(BODY_MARKER),
        "the mail came back opened"
    );

    // the admin page: a login
    let jar = sb.dir.path().join("jar");
    let (code, _, err) = curl(&[
        "-s",
        "-c",
        jar.to_str().unwrap(),
        "--data-urlencode",
        &format!("user={}", sb.addr("admin_user")),
        "--data-urlencode",
        &format!("password={}", sb.addr("admin_password")),
        "--url",
        &format!("{}login", sb.addr("admin_url")),
    ]);
    assert_eq!(code, 0, "{err}");

    // the Account Manager: register, then the JWT-authenticated reads
    let a = &sb.info["accounts"][0];
    let reference = a["reference_id"].as_str().unwrap();
    let ini = a["initial_password"].as_str().unwrap().to_string();
    let (ok, out) = kim(
        &[
            "account",
            "register",
            "--config",
            &config,
            "--reference-id",
            reference,
            &alice,
        ],
        &format!("{ini}\n{KIM_PASSWORD}\n"),
    );
    assert!(ok, "{out}");
    written.push(out);
    let (ok, out) = kim(
        &["account", "get", "--config", &config, &alice],
        &format!("{KIM_PASSWORD}\n"),
    );
    assert!(ok, "{out}");
    written.push(out);

    // the sidecars
    let (ok, out) = kim(&["zsr", "sync", "--no-progress", "--config", &config], "");
    assert!(ok, "{out}");
    written.push(out);
    let patients = sb.addr("patients_file");
    let (ok, out) = kim(
        &[
            "helsenorge",
            "changes",
            "--config",
            &config,
            "--patients",
            &patients,
        ],
        "",
    );
    assert!(ok, "{out}");
    written.push(out);
    let (ok, out) = kim(
        &[
            "careflex",
            "none",
            "--config",
            &config,
            "--careflex-id",
            "09ce3580d84bf087",
            "--month",
            "2026-10",
        ],
        "",
    );
    assert!(ok, "{out}");
    written.push(out);
    written.push(sb.log());
    let all = written.join("\n");
    assert!(
        all.contains("TRACE") || all.contains("trace"),
        "trace logging was on"
    );

    let key_pem = std::fs::read_to_string(root.join("helsenorge").join("client-key.pem")).unwrap();
    let key_line = key_pem
        .lines()
        .find(|l| l.len() > 40 && !l.starts_with("-----"))
        .unwrap()
        .to_string();
    let secrets = [
        ("alice's mail password", alice_pw.clone()),
        ("bob's mail password", bob_pw.clone()),
        ("the admin password", sb.addr("admin_password")),
        ("the initial password", ini.clone()),
        ("the KIM password", KIM_PASSWORD.to_string()),
        (
            "the PKCS#12 password",
            first_line(&root.join("pki").join("pkcs12.pass")),
        ),
        (
            "the ZSR client secret",
            first_line(&root.join("zsr").join("client-secret")),
        ),
        (
            "the ZSR password",
            first_line(&root.join("zsr").join("password")),
        ),
        (
            "the CareFlex password",
            first_line(&root.join("careflex").join("careflex-password")),
        ),
        (
            "the CareFlex API token",
            first_line(&root.join("careflex").join("careflex-apitoken")),
        ),
        ("the Helsenorge client key", key_line),
        ("the mail's body", BODY_MARKER.to_string()),
    ];
    for (what, secret) in secrets {
        assert!(secret.len() >= 8, "{what} is a real value");
        assert!(!all.contains(&secret), "{what} appears in the output");
    }
}
