//! `kim-cm account ...`, `kim-cm limits` and `kim-cm service-info` against the
//! sandbox's simulated Account Manager (issue 6, items 1, 3, 4, 7 and 9): every
//! operation with its table and its `--json`, every documented error status as
//! its sentence with exit code 1, passwords from standard input and files and
//! never in the output or the logs (RUST_LOG=trace), the certificate of `account
//! cert` used for mutual TLS (at the TLS layer, and end to end through a real
//! Postfix and Dovecot that demand it), and the JWT through the Konnektor's
//! ExternalAuthenticate.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::kimcm::{bin, Backend, Sandbox};

const PASSWORD: &str = "Sommer-2024!praxis";
const NEW_PASSWORD: &str = "Winter-2025?praxis";
const CERT_PASSWORD: &str = "Zertifikat-2025!";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
    fn refused(&self, says: &str) -> &Run {
        assert_eq!(
            self.code, 1,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(says),
            "expected {says:?} in:\n{}",
            self.stderr
        );
        self
    }
}

/// Runs `kim-cm ARGS` with `stdin`, logging at trace level, and checks that no
/// secret of `secrets` is in what it wrote.
fn kim(args: &[&str], stdin: &str, secrets: &[&str]) -> Run {
    let mut child = Command::new(bin())
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
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for s in secrets {
        assert!(
            !run.stdout.contains(s) && !run.stderr.contains(s),
            "a password is in the output of {args:?}:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
    run
}

struct Bed {
    sb: Sandbox,
    config: String,
    alice: String,
    /// alice's KIM password for the mail flow (the AccountLimit service's).
    alice_mail_password: String,
    secrets: Vec<String>,
}

impl Bed {
    fn start(backend: Backend) -> Bed {
        let sb = Sandbox::start_on(backend);
        let config = sb.addr("config_file");
        let (alice, alice_mail_password, _, _) = sb.account(0);
        let a = &sb.info["accounts"][0];
        let secrets = vec![
            PASSWORD.to_string(),
            NEW_PASSWORD.to_string(),
            CERT_PASSWORD.to_string(),
            a["initial_password"].as_str().unwrap().to_string(),
            alice_mail_password.clone(),
        ];
        Bed {
            sb,
            config,
            alice,
            alice_mail_password,
            secrets,
        }
    }

    fn run(&self, args: &[&str], stdin: &str) -> Run {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        kim(args, stdin, &secrets)
    }

    /// `kim-cm account OP ... --config C ACCOUNT` (alice unless the args name one).
    fn account(&self, op: &[&str], extra: &[&str], stdin: &str) -> Run {
        let mut args = vec!["account"];
        args.extend_from_slice(op);
        args.extend_from_slice(&["--config", &self.config]);
        args.extend_from_slice(extra);
        args.push(&self.alice);
        self.run(&args, stdin)
    }

    fn ini(&self, i: usize) -> (String, String) {
        let a = &self.sb.info["accounts"][i];
        (
            a["reference_id"].as_str().unwrap().to_string(),
            a["initial_password"].as_str().unwrap().to_string(),
        )
    }

    fn register_alice(&self) {
        let (reference, ini) = self.ini(0);
        self.account(
            &["register"],
            &["--reference-id", &reference, "--kim-version", "1.5+"],
            &format!("{ini}\n{PASSWORD}\n"),
        )
        .ok();
    }

    fn am_dir(&self) -> PathBuf {
        PathBuf::from(self.sb.addr("account_manager_dir"))
    }

    /// Edits the simulator's state.json.
    fn edit_state(&self, change: impl FnOnce(&mut serde_json::Value)) {
        let path = self.am_dir().join("state.json");
        let mut state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        change(&mut state);
        std::fs::write(&path, state.to_string()).unwrap();
    }

    fn password_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.sb.dir.path().join(name);
        std::fs::write(&p, format!("{text}\n")).unwrap();
        p
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_operation_from_the_command_line() {
    let bed = Bed::start(Backend::Software);
    let info = bed.sb.info.clone();
    assert!(info["account_manager_url"]
        .as_str()
        .unwrap()
        .starts_with("https://"));

    // service-info: table and JSON
    let r = bed.run(&["service-info", "--config", &bed.config], "");
    assert!(r.ok().stdout.contains("password rules"), "{}", r.stdout);
    assert!(r.stdout.contains("At least one number"), "{}", r.stdout);
    let j = bed
        .run(&["service-info", "--config", &bed.config, "--json"], "")
        .json();
    assert_eq!(j["referenceIdRequired"], true);

    // register: initial password and new password from standard input
    let (reference, ini) = bed.ini(0);
    let r = bed.account(
        &["register"],
        &["--reference-id", &reference, "--kim-version", "1.5+"],
        &format!("{ini}\n{PASSWORD}\n"),
    );
    assert!(r.ok().stdout.contains("registered"), "{}", r.stdout);

    // get, from a password file
    let pw = bed.password_file("pw", PASSWORD);
    let r = bed.account(&["get"], &["--password-file", s(&pw)], "");
    assert!(r.ok().stdout.contains("state"), "{}", r.stdout);
    assert!(
        r.stdout.contains("registered") && r.stdout.contains("1.5+"),
        "{}",
        r.stdout
    );
    let j = bed
        .account(&["get"], &["--password-file", s(&pw), "--json"], "")
        .json();
    assert_eq!(j["username"], bed.alice.as_str());
    assert_eq!(j["regStat"], "registered");
    assert_eq!(j["referenceID"], reference.as_str());

    // set: settings, then a new password (current one, then the new, on stdin)
    bed.account(
        &["set"],
        &["--password-file", s(&pw), "--data-time-to-live", "30"],
        "",
    )
    .ok();
    let j = bed
        .account(&["get"], &["--password-file", s(&pw), "--json"], "")
        .json();
    assert_eq!(j["dataTimeToLive"], 30);
    let r = bed.account(
        &["set"],
        &["--new-password"],
        &format!("{PASSWORD}\n{NEW_PASSWORD}\n"),
    );
    assert!(r.ok().stdout.contains("new password"), "{}", r.stdout);
    let pw = bed.password_file("pw", NEW_PASSWORD);
    bed.account(&["get"], &["--password-file", s(&pw)], "").ok();

    // out of office
    bed.account(
        &["out-of-office", "set"],
        &[
            "--password-file",
            s(&pw),
            "--active",
            "--start",
            "2025-08-01T00:00:00Z",
            "--end",
            "2025-08-15T00:00:00Z",
            "--message",
            "Praxisurlaub bis 15.8.",
        ],
        "",
    )
    .ok();
    let r = bed.account(&["out-of-office", "get"], &["--password-file", s(&pw)], "");
    assert!(
        r.ok().stdout.contains("Praxisurlaub bis 15.8."),
        "{}",
        r.stdout
    );
    let j = bed
        .account(
            &["out-of-office", "get"],
            &["--password-file", s(&pw), "--json"],
            "",
        )
        .json();
    assert_eq!(j["note"]["active"], true);
    assert_eq!(j["note"]["endDate"], "2025-08-15T00:00:00Z");

    // otp and set-tid (the same card stands in for the new one)
    let j = bed
        .account(&["otp"], &["--password-file", s(&pw), "--json"], "")
        .json();
    let otp = j["otp"].as_str().unwrap().to_string();
    let otp_file = bed.password_file("otp", &otp);
    let r = bed.account(
        &["set-tid"],
        &["--password-file", s(&pw), "--otp-file", s(&otp_file)],
        "",
    );
    assert!(r.ok().stdout.contains("new card"), "{}", r.stdout);

    // deregister, read, revoke
    bed.account(&["deregister"], &["--password-file", s(&pw)], "")
        .ok();
    let r = bed.account(&["get"], &["--password-file", s(&pw)], "");
    assert!(
        r.ok().stdout.contains("deregistered (usable until"),
        "{}",
        r.stdout
    );
    let r = bed.account(&["revoke-deregistration"], &["--password-file", s(&pw)], "");
    assert!(r.ok().stdout.contains("revoked"), "{}", r.stdout);
    let j = bed
        .account(&["get"], &["--password-file", s(&pw), "--json"], "")
        .json();
    assert_eq!(j["regStat"], "registered");

    // limits: with the mail password, from stdin (sandbox: alice 30 days)
    let r = bed.run(
        &["limits", "--config", &bed.config, &bed.alice],
        &format!("{}\n", bed.alice_mail_password),
    );
    assert!(r.ok().stdout.contains("30 days"), "{}", r.stdout);
    let j = bed
        .run(
            &["limits", "--config", &bed.config, "--json", &bed.alice],
            &format!("{}\n", bed.alice_mail_password),
        )
        .json();
    assert_eq!(j["dataTimeToLive"], 30);
    assert_eq!(j["account"], bed.alice.as_str());

    // configuration and usage errors: exit code 2
    let r = bed.run(
        &[
            "account",
            "get",
            "--config",
            &bed.config,
            "nobody@x.kim.test",
        ],
        "x\n",
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r
        .stderr
        .contains("no [[account]] with address nobody@x.kim.test"));
    let r = bed.run(
        &["account", "get", "--config", "/nonexistent.toml", "a@b.de"],
        "",
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = bed.run(&["account", "get", "--config", &bed.config, &bed.alice], "");
    assert_eq!(
        r.code, 2,
        "an empty password is a usage error: {}",
        r.stderr
    );
}

#[test]
fn every_documented_refusal_is_a_sentence() {
    let bed = Bed::start(Backend::Software);
    let (ref_b, ini_b) = bed.ini(1);
    let (ref_a, ini_a) = bed.ini(0);

    // 420 with the provider's rules, 422 with the version
    bed.account(
        &["register"],
        &["--reference-id", &ref_a],
        &format!("{ini_a}\nweak\n"),
    )
    .refused(
        "does not comply with your KIM provider's rules; choose one that does: At least one number",
    );
    bed.account(
        &["register"],
        &["--reference-id", &ref_a, "--kim-version", "9.9"],
        &format!("{ini_a}\n{PASSWORD}\n"),
    )
    .refused("the KIM version 9.9 is not supported");
    bed.register_alice();
    // 409: the address is taken (alice again, with bob's reference id)
    bed.account(
        &["register"],
        &["--reference-id", &ref_b],
        &format!("{ini_b}\n{PASSWORD}\n"),
    )
    .refused("is already taken");

    let pw = bed.password_file("pw", PASSWORD);
    // 423: the directory entry is locked
    bed.edit_state(|s| s["accounts"][0]["directoryLocked"] = true.into());
    bed.account(
        &["set"],
        &["--password-file", s(&pw), "--data-time-to-live", "20"],
        "",
    )
    .refused("is locked");
    bed.edit_state(|s| s["accounts"][0]["directoryLocked"] = false.into());

    // 403: a wrong OTP; 408: an expired one
    let j = bed
        .account(&["otp"], &["--password-file", s(&pw), "--json"], "")
        .json();
    let otp = j["otp"].as_str().unwrap().to_string();
    let wrong = bed.password_file("wrong-otp", "d3Jvbmc=");
    bed.account(
        &["set-tid"],
        &["--password-file", s(&pw), "--otp-file", s(&wrong)],
        "",
    )
    .refused("one-time password for");
    bed.edit_state(|s| s["accounts"][0]["otp"]["expires"] = 1.into());
    bed.account(&["set-tid"], &[], &format!("{PASSWORD}\n{otp}\n"))
        .refused("has expired");

    // 502: the directory cannot be reached
    std::fs::write(
        bed.am_dir().join("faults.json"),
        r#"{"directory_unreachable": true}"#,
    )
    .unwrap();
    bed.account(&["get"], &["--password-file", s(&pw)], "")
        .refused("cannot reach the directory service (VZD)");
    std::fs::write(bed.am_dir().join("faults.json"), "{}").unwrap();

    // 401: a wrong password; an undocumented status keeps its number
    let bad = bed.password_file("bad", "Falsch-2024!praxis");
    bed.account(&["get"], &["--password-file", s(&bad)], "")
        .refused("refused the authentication");
    std::fs::write(bed.am_dir().join("faults.json"), r#"{"status": 418}"#).unwrap();
    bed.account(&["get"], &["--password-file", s(&pw)], "")
        .refused("418");
}

/// Item 9: the certificate `account cert` stores is the one the proxy presents
/// to a Fachdienst that demands client certificates chaining to the sandbox CA.
#[test]
fn the_certificate_from_account_cert_does_mutual_tls() {
    use openssl::ssl::{SslConnector, SslMethod};
    let bed = Bed::start(Backend::Software);
    bed.register_alice();
    // a config with the client certificate's place (not there yet)
    let dir = bed.sb.dir.path().join("mtls");
    std::fs::create_dir_all(&dir).unwrap();
    let p12 = dir.join("client.p12");
    let p12_pw = dir.join("client.pass");
    let text = std::fs::read_to_string(&bed.config).unwrap().replacen(
        "[upstream]\n",
        &format!(
            "[upstream]\nclient_pkcs12 = \"{}\"\nclient_pkcs12_password_file = \"{}\"\n",
            p12.display(),
            p12_pw.display()
        ),
        1,
    );
    let config = dir.join("kim-cm.toml");
    std::fs::write(&config, text).unwrap();
    let pw = bed.password_file("pw", PASSWORD);
    let cpw = bed.password_file("cpw", CERT_PASSWORD);
    let r = bed.run(
        &[
            "account",
            "cert",
            "--config",
            s(&config),
            "--password-file",
            s(&pw),
            "--cert-password-file",
            s(&cpw),
            "--common-name",
            "Praxis A",
            &bed.alice,
        ],
        "",
    );
    assert!(r.ok().stdout.contains("Praxis A#CM"), "{}", r.stdout);
    assert!(r.stdout.contains(s(&p12)), "{}", r.stdout);
    use std::os::unix::fs::PermissionsExt;
    for f in [&p12, &p12_pw] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    // the config is valid for `kim-cm serve` now
    let r = bed.run(&["check-config", s(&config)], "");
    r.ok();

    // a listener like the Fachdienst's, demanding a client certificate
    let tls_dir = PathBuf::from(bed.sb.addr("ca_file"))
        .parent()
        .unwrap()
        .to_path_buf();
    let pki_ca = bed.sb.dir.path().join("sb").join("pki").join("ca.pem");
    let acceptor = kim_cm::net::tls::acceptor_requiring_client(
        &tls_dir.join("server.pem"),
        &tls_dir.join("server.key"),
        &pki_ca,
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().unwrap();
            seen.push(acceptor.accept(tcp).ok().and_then(|s| {
                let cert = s.ssl().peer_certificate()?;
                let cn = cert
                    .subject_name()
                    .entries()
                    .next()?
                    .data()
                    .as_slice()
                    .to_vec();
                Some(String::from_utf8_lossy(&cn).into_owned())
            }));
        }
        seen
    });
    let connect = |c: SslConnector| {
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        c.connect("localhost", tcp).map(|mut s| {
            let _ = s.shutdown();
        })
    };
    // the proxy's connector from the config with the certificate: accepted
    let cfg = kim_cm::config::Config::load(&config).unwrap();
    let with_cert = kim_cm::serve::upstream_connector(&cfg).unwrap();
    connect(with_cert).expect("mutual TLS with the createCert certificate");
    // the sandbox's own config, without one: refused
    let cfg = kim_cm::config::Config::load(Path::new(&bed.config)).unwrap();
    let without = kim_cm::serve::upstream_connector(&cfg).unwrap();
    let _ = connect(without);
    let seen = server.join().unwrap();
    assert_eq!(seen[0].as_deref(), Some("Praxis A#CM"), "{seen:?}");
    assert_eq!(seen[1], None, "a client without certificate got in");
    let _ = SslMethod::tls_client();
}

/// Item 9 end to end: `kim-cm serve` with the certificate `account cert` stored
/// sends and fetches through a real Postfix and Dovecot that demand a client
/// certificate of the sandbox CA (KOM-LE-A_2182-01); the same proxy without the
/// certificate gets nothing through, and its mail client is told so.
#[test]
fn the_proxy_sends_and_fetches_through_a_fachdienst_demanding_the_certificate() {
    use common::kimcm::{curl, url_with_login, write_file, KimCm};
    use common::peers::{PeerUser, RealFachdienst};
    const FD_ALICE: &str = "alice-Fachdienst-1";
    const FD_BOB: &str = "bob-Fachdienst-2";

    let bed = Bed::start(Backend::Software);
    bed.register_alice();
    let (bob, ..) = bed.sb.account(1);
    let dir = bed.sb.dir.path().join("mtls-e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let p12 = dir.join("client.p12");
    let p12_pw = dir.join("client.pass");
    let client_lines = format!(
        "client_pkcs12 = \"{}\"\nclient_pkcs12_password_file = \"{}\"\n",
        p12.display(),
        p12_pw.display()
    );
    let config = dir.join("kim-cm.toml");
    let text = std::fs::read_to_string(&bed.config).unwrap().replacen(
        "[upstream]\n",
        &format!("[upstream]\n{client_lines}"),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let pw = bed.password_file("pw", PASSWORD);
    let cpw = bed.password_file("cpw", CERT_PASSWORD);
    bed.run(
        &[
            "account",
            "cert",
            "--config",
            s(&config),
            "--password-file",
            s(&pw),
            "--cert-password-file",
            s(&cpw),
            "--common-name",
            "Praxis A",
            &bed.alice,
        ],
        "",
    )
    .ok();

    let pki_ca = bed.sb.dir.path().join("sb").join("pki").join("ca.pem");
    let rf = RealFachdienst::start_demanding_client_certs(
        &[
            PeerUser::new(&bed.alice, FD_ALICE),
            PeerUser::new(&bob, FD_BOB),
        ],
        &pki_ca,
    )
    .expect("Postfix and Dovecot (installed by .ci/run)");
    let proxy = |client: &str| {
        KimCm::serve(&format!(
            "[proxy]\ndata_dir = \"{{dir}}/data\"\nallow_unsealed_for_testing = true\n\
             [[smtp_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
             [[pop3_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
             [upstream]\nca_file = \"{}\"\nsmtp_tls = \"implicit\"\npop3_tls = \"implicit\"\n{client}",
            rf.ca_pem_path().display()
        ))
    };
    let login = |addr: &str, server: std::net::SocketAddr| format!("{addr}#{server}#1#KOM_LE#7");
    let mail = format!(
        "From: <{a}>\r\nTo: <{bob}>\r\nSubject: mutual TLS\r\nMessage-ID: <mtls-1@praxis.kim.test>\r\n\r\nmit Zertifikat\r\n",
        a = bed.alice
    );
    let send = |k: &KimCm| {
        let file = write_file(k.dir.path(), "m.eml", mail.as_bytes());
        let url = url_with_login(
            "smtp",
            &k.smtp.unwrap().to_string(),
            &login(&bed.alice, rf.smtps_addr()),
            FD_ALICE,
            "",
        );
        curl(&[
            "-v",
            "--url",
            &url,
            "--mail-from",
            &bed.alice,
            "--mail-rcpt",
            &bob,
            "--upload-file",
            file.to_str().unwrap(),
        ])
    };
    let fetch = |k: &KimCm| {
        let url = url_with_login(
            "pop3",
            &k.pop3.unwrap().to_string(),
            &login(&bob, rf.pop3s_addr()),
            FD_BOB,
            "/1",
        );
        curl(&["-v", "--url", &url])
    };

    // with the certificate: the mail goes through and comes back
    let k = proxy(&client_lines);
    let (code, _, err) = send(&k);
    assert_eq!(code, 0, "{err}\n{}\n{}", k.log(), rf.log_text());
    let stored = rf.wait_for_messages(&bob, 1, std::time::Duration::from_secs(20));
    assert_eq!(stored.len(), 1, "{}", rf.log_text());
    let stored = String::from_utf8_lossy(&stored[0]);
    // Postfix's Received header names the verified client certificate
    assert!(
        stored.contains("Client CN \"Praxis A#CM\"") && stored.contains("(verified OK)"),
        "{stored}"
    );
    let (code, got, err) = fetch(&k);
    assert_eq!(code, 0, "{err}\n{}\n{}", k.log(), rf.log_text());
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.contains("Subject: mutual TLS") && got.contains("mit Zertifikat"),
        "{got}"
    );
    drop(k);

    // without it: Postfix ends the session and Dovecot refuses the login; the
    // client hears a refusal, and nothing more arrives
    let k = proxy("");
    let (code, _, err) = send(&k);
    assert_ne!(code, 0, "sent without a client certificate:\n{err}");
    let reply = err
        .lines()
        .rfind(|l| l.starts_with("< "))
        .unwrap_or_default()
        .to_string();
    assert!(
        reply.starts_with("< 4") || reply.starts_with("< 5"),
        "a refusal for the mail client: {reply}\n{err}\n{}",
        k.log()
    );
    let (code, _, err) = fetch(&k);
    assert_ne!(code, 0, "fetched without a client certificate:\n{err}");
    assert!(
        err.lines().any(|l| l.starts_with("< -ERR")),
        "a POP3 refusal for the mail client:\n{err}\n{}",
        k.log()
    );
    assert_eq!(rf.maildir_messages(&bob).len(), 1, "{}", rf.log_text());
}

/// The JWT made by the Konnektor's ExternalAuthenticate with the SMC-B's AUT key.
#[test]
fn account_operations_through_the_konnektor() {
    let bed = Bed::start(Backend::Konnektor);
    bed.register_alice();
    let pw = bed.password_file("pw", PASSWORD);
    let j = bed
        .account(&["get"], &["--password-file", s(&pw), "--json"], "")
        .json();
    assert_eq!(j["regStat"], "registered");
    assert_eq!(j["username"], bed.alice.as_str());
    let requests = PathBuf::from(bed.sb.addr("konnektor_dir")).join("requests");
    let sent: Vec<String> = std::fs::read_dir(&requests)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    assert!(
        sent.iter().any(|r| r.contains("ExternalAuthenticate")),
        "no ExternalAuthenticate among the Konnektor requests"
    );
}
