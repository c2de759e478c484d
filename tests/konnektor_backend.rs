//! kim-cm with the practices' keys on smart cards behind a Konnektor
//! (KOM-LE-A_2177): the sandbox with `--konnektor` runs the simulated Konnektor,
//! and kim-cm signs, encrypts, decrypts and verifies through its SOAP operations.
//! Shown: a mail round trip with the fewest calls once the cards are known, every
//! request and answer valid against gematik's schemas (xmllint), and the faults:
//! a pulled card, a PIN not verified, a Konnektor down or too slow, a call
//! context the Konnektor does not know; and the Konnektor's client authentication
//! by Basic auth or certificate (KOM-LE-A_2071, A_2072).

mod common;

use std::path::PathBuf;

use common::kimcm::{curl, url_with_login, write_file, KimCm, Sandbox};
use common::konnektor_schema::validate_all;
use common::mail::{big_mail, fetch_as, header_value, second_kimcm, send_as};

fn konnektor_dir(sb: &Sandbox) -> PathBuf {
    PathBuf::from(sb.info["konnektor_dir"].as_str().expect("a Konnektor runs"))
}

fn set_faults(sb: &Sandbox, faults: serde_json::Value) {
    std::fs::write(konnektor_dir(sb).join("faults.json"), faults.to_string()).unwrap();
}

/// The operations the Konnektor was asked for, in order.
fn calls(sb: &Sandbox) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(konnektor_dir(sb).join("requests"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".xml") && !n.ends_with("-response.xml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .filter_map(|n| n.trim_end_matches(".xml").split_once('-'))
        .map(|(_, op)| op.to_string())
        .collect()
}

fn count(ops: &[String], op: &str) -> usize {
    ops.iter().filter(|o| *o == op).count()
}

fn mail(sb: &Sandbox, subject: &str) -> PathBuf {
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let text = format!(
        "From: <{alice}>\r\nTo: <{bob}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@praxis-a.kim.test>\r\n\r\nBefund per Karte signiert.\r\n"
    );
    write_file(sb.dir.path(), &format!("{subject}.eml"), text.as_bytes())
}

fn send(sb: &Sandbox, smtp: &str, subject: &str) -> (i32, String) {
    let (bob, ..) = sb.account(1);
    send_as(sb, 0, smtp, &mail(sb, subject), &[&bob])
}

#[test]
fn mails_go_through_the_konnektor_with_one_call_per_step_once_the_cards_are_known() {
    let sb = Sandbox::start_konnektor();
    let (bob, ..) = sb.account(1);
    let smtp = sb.addr("proxy_smtp");
    let pop3 = sb.addr("proxy_pop3");
    let (code, err) = send(&sb, &smtp, "k1");
    assert_eq!(code, 0, "{err}\n{}", sb.log());
    let got = fetch_as(&sb, 1, &pop3, 1);
    let text = String::from_utf8_lossy(&got);
    assert_eq!(
        header_value(&got, "X-KIM-DecryptionResult").as_deref(),
        Some("00"),
        "{text}"
    );
    assert_eq!(
        header_value(&got, "X-KIM-IntegrityCheckResult").as_deref(),
        Some("01"),
        "{text}"
    );
    assert!(text.contains("Befund per Karte signiert."));
    let first = calls(&sb);
    for op in [
        "SignDocument",
        "EncryptDocument",
        "DecryptDocument",
        "VerifyDocument",
    ] {
        assert_eq!(count(&first, op), 1, "{op} once: {first:?}");
    }

    // the cards are known now: a send costs one SignDocument and one
    // EncryptDocument, a receive one DecryptDocument and one VerifyDocument (plus
    // the login's context check, GetCards)
    let (code, err) = send(&sb, &smtp, "k2");
    assert_eq!(code, 0, "{err}");
    let after_send = calls(&sb);
    let sent: Vec<String> = after_send[first.len()..].to_vec();
    assert_eq!(
        sent,
        ["GetCards", "SignDocument", "EncryptDocument"],
        "{sent:?}"
    );
    let got = fetch_as(&sb, 1, &pop3, 2);
    assert_eq!(
        header_value(&got, "X-KIM-DecryptionResult").as_deref(),
        Some("00")
    );
    let received: Vec<String> = calls(&sb)[after_send.len()..].to_vec();
    assert_eq!(
        received,
        ["GetCards", "DecryptDocument", "VerifyDocument"],
        "{received:?}"
    );
    assert_eq!(sb.stored_mails(&bob).len(), 2);

    // every request kim-cm sent and every answer, valid against the schemas
    let n = validate_all(&konnektor_dir(&sb).join("requests")).unwrap();
    assert!(n >= 2 * calls(&sb).len(), "{n} documents validated");
}

#[test]
fn a_large_mail_goes_through_the_kas_and_the_konnektor_and_comes_back_byte_for_byte() {
    let sb = Sandbox::start_konnektor();
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let big = big_mail(sb.dir.path(), &alice, &bob, 16 * 1024 * 1024, "");
    let (code, err) = send_as(&sb, 0, &sb.addr("proxy_smtp"), &big, &[&bob]);
    assert_eq!(code, 0, "{err}\n{}", sb.log());
    // the Konnektor sealed only the small KIM mail with the KAS structure
    let ops = calls(&sb);
    assert_eq!(count(&ops, "EncryptDocument"), 1, "{ops:?}");
    let got = fetch_as(&sb, 1, &sb.addr("proxy_pop3"), 1);
    assert_eq!(
        header_value(&got, "X-KIM-DecryptionResult").as_deref(),
        Some("00")
    );
    let sent = std::fs::read(&big).unwrap();
    // the notes go into the text part; the attachment part comes back byte for byte
    let part = b"--b1\r\nContent-Type: application/octet-stream";
    let at = memchr::memmem::find(&sent, part).unwrap();
    assert!(sent.len() - at > 16 * 1024 * 1024 - 1024);
    assert!(
        got.ends_with(&sent[at..]),
        "the 16 MiB attachment came back unchanged"
    );
    assert!(String::from_utf8_lossy(&got).contains("Die Signatur wurde erfolgreich geprüft."));
}

#[test]
fn a_pulled_card_or_a_pin_not_verified_stops_the_send_with_451() {
    let sb = Sandbox::start_konnektor();
    let (bob, ..) = sb.account(1);
    let smtp = sb.addr("proxy_smtp");
    // alice's SMC-B (the first card) is pulled: bob's card must not sign for her
    set_faults(&sb, serde_json::json!({"removed_cards": ["SMC-B-1"]}));
    let (code, err) = send(&sb, &smtp, "pulled");
    assert_ne!(code, 0);
    assert!(err.contains("451"), "{err}");
    assert!(err.contains("SMC-B"), "the client hears which card: {err}");
    assert!(sb.stored_mails(&bob).is_empty());
    // put back: the mail goes
    set_faults(&sb, serde_json::json!({}));
    let (code, err) = send(&sb, &smtp, "back");
    assert_eq!(code, 0, "{err}\n{}", sb.log());
    // the PIN of the card is not verified: signing fails, the cached card is asked
    // for again once, then the client gets 451 (KOM-LE-A_2058)
    set_faults(&sb, serde_json::json!({"pin_not_verified": ["SMC-B-1"]}));
    let (code, err) = send(&sb, &smtp, "pin");
    assert_ne!(code, 0);
    assert!(err.contains("451"), "{err}");
    assert_eq!(
        sb.stored_mails(&bob).len(),
        1,
        "only the mail sent with the card in"
    );
    assert!(sb.log().contains("SignDocument"), "{}", sb.log());
}

#[test]
fn a_konnektor_that_is_down_gives_451_to_send_and_03_to_receive() {
    let sb = Sandbox::start_konnektor();
    let smtp = sb.addr("proxy_smtp");
    let pop3 = sb.addr("proxy_pop3");
    let (code, err) = send(&sb, &smtp, "before");
    assert_eq!(code, 0, "{err}");
    set_faults(&sb, serde_json::json!({"down": true}));
    let (code, err) = send(&sb, &smtp, "while-down");
    assert_ne!(code, 0);
    assert!(err.contains("451"), "{err}");
    // the mail that arrived before cannot be decrypted now: the error mail with 03
    // (4011), and the mail stays on the Fachdienst for the next fetch
    let got = fetch_as(&sb, 1, &pop3, 1);
    assert_eq!(
        header_value(&got, "X-KIM-DecryptionResult").as_deref(),
        Some("03"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    set_faults(&sb, serde_json::json!({}));
    let got = fetch_as(&sb, 1, &pop3, 1);
    assert_eq!(
        header_value(&got, "X-KIM-DecryptionResult").as_deref(),
        Some("00")
    );
}

#[test]
fn a_konnektor_slower_than_the_timeout_gives_451() {
    let sb = Sandbox::start_konnektor();
    let k: KimCm = second_kimcm(&sb, |text| format!("{text}timeout_secs = 1\n"));
    set_faults(&sb, serde_json::json!({"delay_ms": 3000}));
    let (code, err) = send(&sb, &k.smtp.unwrap().to_string(), "slow");
    assert_ne!(code, 0);
    assert!(err.contains("451"), "{err}\n{}", k.log());
    assert!(k.log().contains("within 1 s"), "{}", k.log());
}

#[test]
fn a_call_context_the_konnektor_does_not_know_refuses_the_login() {
    let sb = Sandbox::start_konnektor();
    let (alice, pw, user, _) = sb.account(0);
    // the SMTP user name with MandantId 9 instead of 1
    let wrong = user.replacen("#1#KOM_LE#", "#9#KOM_LE#", 1);
    assert_ne!(wrong, user);
    let url = url_with_login("smtp", &sb.addr("proxy_smtp"), &wrong, &pw, "");
    let m = mail(&sb, "ctx");
    let (code, _, err) = curl(&[
        "-v",
        "--url",
        &url,
        "--mail-from",
        &alice,
        "--mail-rcpt",
        &alice,
        "--upload-file",
        m.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("< 501 5.5.4"), "{err}");
    assert!(err.contains("call context"), "{err}");
    // POP3 the same: -ERR at login
    let (_, pw, _, pop_user) = sb.account(1);
    let wrong = pop_user.replacen("#1#KOM_LE#", "#9#KOM_LE#", 1);
    let url = url_with_login("pop3", &sb.addr("proxy_pop3"), &wrong, &pw, "");
    let (code, _, err) = curl(&["-v", "--url", &url]);
    assert_ne!(code, 0);
    assert!(
        err.contains("-ERR") && err.contains("call context"),
        "{err}"
    );
    assert!(
        sb.log().contains("does not know this call context"),
        "{}",
        sb.log()
    );
}

/// A second simulated Konnektor with the sandbox's cards, started in the test;
/// fields drop in order (the simulator before its runtime).
struct OtherKonnektor {
    sim: kim_cm::testbed::konnektor::RunningSim,
    _rt: tokio::runtime::Runtime,
    pki: kim_cm::testbed::pki::TestPki,
    dir: tempfile::TempDir,
}

impl OtherKonnektor {
    /// Starts it with the sandbox's context and cards, `demand` setting how it
    /// authenticates its clients.
    fn start(
        sb: &Sandbox,
        demand: impl FnOnce(&mut kim_cm::testbed::konnektor::SimConfig, &kim_cm::testbed::pki::TestPki),
    ) -> OtherKonnektor {
        use kim_cm::testbed::konnektor::{start, SimConfig, SimContext};
        let rt = tokio::runtime::Runtime::new().unwrap();
        let pki = sb.pki();
        let password = std::fs::read_to_string(&pki.password_file).unwrap();
        let context = SimContext {
            mandant: "1".into(),
            client_system: "KOM_LE".into(),
            workplace: "7".into(),
        };
        let mut config = SimConfig::from_pki(&pki, password.trim(), context);
        demand(&mut config, &pki);
        let dir = tempfile::tempdir().unwrap();
        let sim = rt.block_on(start(&dir.path().join("k"), config)).unwrap();
        OtherKonnektor {
            sim,
            _rt: rt,
            pki,
            dir,
        }
    }

    /// The sandbox's config `text` pointed at this Konnektor, with `auth` (TOML
    /// lines) added to its [[konnektor]] section.
    fn point_at(&self, text: String, auth: &str) -> String {
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with("sds_url = ") {
                out.push_str(&format!("sds_url = \"{}\"\n", self.sim.sds_url));
            } else if line.starts_with("ca_file = ") && out.contains("[[konnektor]]") {
                out.push_str(&format!(
                    "ca_file = \"{}\"\n{auth}",
                    self.sim.tls_ca.display()
                ));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

#[test]
fn a_konnektor_that_demands_basic_auth_gets_it_and_the_password_stays_out_of_the_log() {
    let sb = Sandbox::start_konnektor();
    let (bob, ..) = sb.account(1);
    // a Konnektor that demands Basic auth (KOM-LE-A_2072)
    let secret = "Konnektor-Geheimnis-4711";
    let k = OtherKonnektor::start(&sb, |c, _| {
        c.basic_auth = Some(("kim-cm".into(), secret.into()))
    });
    let pw_file = write_file(
        k.dir.path(),
        "konnektor.pass",
        format!("{secret}\n").as_bytes(),
    );
    // owner-only, as kim-cm demands of secret files
    std::fs::set_permissions(
        &pw_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let user = format!(
        "user = \"kim-cm\"\npassword_file = \"{}\"\n",
        pw_file.display()
    );
    // debug logging: the password must stay out of even that
    let debug = "\n[log]\nlevel = \"debug\"\n";
    // without the credentials: refused, nothing sent
    let without = second_kimcm(&sb, |t| k.point_at(t, "") + debug);
    let (code, err) = send(&sb, &without.smtp.unwrap().to_string(), "no-auth");
    assert_ne!(code, 0);
    assert!(err.contains("451"), "{err}");
    assert!(
        without
            .log()
            .contains("does not accept kim-cm's credentials"),
        "{}",
        without.log()
    );
    // with them: the mail goes, and the password is nowhere in the log
    let with = second_kimcm(&sb, |t| k.point_at(t, &user) + debug);
    let (code, err) = send(&sb, &with.smtp.unwrap().to_string(), "auth");
    assert_eq!(code, 0, "{err}\n{}", with.log());
    assert_eq!(sb.stored_mails(&bob).len(), 1);
    let log = with.log();
    assert!(
        !log.contains(secret),
        "the Konnektor password is not logged"
    );
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("kim-cm:{secret}"),
    );
    assert!(!log.contains(&encoded));
}

#[test]
fn a_konnektor_that_demands_a_client_certificate_gets_the_configured_one() {
    let sb = Sandbox::start_konnektor();
    let (bob, ..) = sb.account(1);
    // a Konnektor that authenticates its clients by certificate (KOM-LE-A_2071):
    // they must chain to the sandbox's PKI CA
    let k = OtherKonnektor::start(&sb, |c, pki| c.client_ca = Some(pki.ca_cert.clone()));
    let cert = format!(
        "client_pkcs12 = \"{}\"\nclient_pkcs12_password_file = \"{}\"\n",
        k.pki.accounts[0].signing_pkcs12.display(),
        k.pki.password_file.display()
    );
    let without = second_kimcm(&sb, |t| k.point_at(t, ""));
    let (code, err) = send(&sb, &without.smtp.unwrap().to_string(), "no-cert");
    assert_ne!(code, 0, "no client certificate, no Konnektor");
    assert!(err.contains("451"), "{err}");
    assert!(sb.stored_mails(&bob).is_empty());
    let with = second_kimcm(&sb, |t| k.point_at(t, &cert));
    let (code, err) = send(&sb, &with.smtp.unwrap().to_string(), "cert");
    assert_eq!(code, 0, "{err}\n{}", with.log());
    assert_eq!(sb.stored_mails(&bob).len(), 1);
}
