//! The Account Manager client (src/admin/account_manager.rs) against the simulated
//! Account Manager (src/testbed/account_manager/): every operation of
//! AccountManager.yaml 2.4.0 and getServiceInformation, every documented error
//! status as its sentence, and the simulator's state file afterwards. The Bearer
//! JWTs (A_19457-02: PS256, x5c, nbf) are made here with the test PKI's card keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkcs12::Pkcs12;
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Signer};
use openssl::x509::X509;

use kim_cm::admin::account_manager::AccountManagerClient;
use kim_cm::admin::errors::AccountManagerError as E;
use kim_cm::admin::schemas::{AccountChanges, OutOfOffice, RegStat, Registration};
use kim_cm::http::client::HttpSettings;
use kim_cm::http::url::HttpsUrl;
use kim_cm::testbed::account_manager::state::DEFAULT_PASSWORD_DISPLAY;
use kim_cm::testbed::account_manager::Registration as SimReg;
use kim_cm::testbed::account_manager::{
    self as am, AmConfig, Issuer, RunningAccountManager, SimAccount, State,
};
use kim_cm::testbed::pki;

const ALICE: &str = "alice@praxis-a.kim.test";
const PASSWORD: &str = "Sommer-2024!praxis";
const NEW_PASSWORD: &str = "Winter-2025?praxis";
const INI_A: &str = "ini-A-7f3a";
const INI_B: &str = "ini-B-91c2";

/// A card of the test PKI: its signing key stands in for the AUT key.
struct Card {
    p12: PathBuf,
    password: String,
    telematik_id: String,
}

impl Card {
    /// A Bearer JWT as A_19457-02 shapes it, valid from `nbf`.
    fn token_at(&self, nbf: i64) -> String {
        let der = std::fs::read(&self.p12).unwrap();
        let parsed = Pkcs12::from_der(&der)
            .unwrap()
            .parse2(&self.password)
            .unwrap();
        let (key, cert) = (parsed.pkey.unwrap(), parsed.cert.unwrap());
        let b64url = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.to_der().unwrap());
        let input = format!(
            "{}.{}",
            b64url(serde_json::json!({"alg": "PS256", "typ": "JWT", "x5c": [x5c]})),
            b64url(serde_json::json!({ "nbf": nbf }))
        );
        let mut signer = Signer::new(MessageDigest::sha256(), &key).unwrap();
        signer.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
        signer
            .set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
            .unwrap();
        signer.set_rsa_mgf1_md(MessageDigest::sha256()).unwrap();
        let signature = signer.sign_oneshot_to_vec(input.as_bytes()).unwrap();
        format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        )
    }

    fn token(&self) -> String {
        self.token_at(now() - 1)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Bed {
    _dir: tempfile::TempDir,
    am: RunningAccountManager,
    client: AccountManagerClient,
    /// The practice's card, and the new card the address moves to.
    card_a: Card,
    card_b: Card,
    pki_dir: PathBuf,
}

impl Bed {
    async fn start() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        let p = pki::make(&pki_dir, &[ALICE, "neu@praxis-b.kim.test"]).unwrap();
        let password = std::fs::read_to_string(&p.password_file)
            .unwrap()
            .trim()
            .to_string();
        let card = |i: usize| Card {
            p12: p.accounts[i].signing_pkcs12.clone(),
            password: password.clone(),
            telematik_id: p.accounts[i].telematik_id.clone(),
        };
        let initial = State {
            accounts: vec![
                SimAccount::provisioned("REF-A", INI_A),
                SimAccount::provisioned("REF-B", INI_B),
            ],
            ..State::default()
        };
        let config = AmConfig {
            tls: None,
            issuer: Some(Issuer {
                ca_cert: p.ca_cert.clone(),
                ca_key: pki_dir.join(pki::CA_KEY_FILE),
            }),
            token_ca: Some(p.ca_cert.clone()),
            initial,
        };
        let am = am::start(&dir.path().join("am"), 0, config).await.unwrap();
        let client = client_for(&am, Duration::from_secs(10));
        Bed {
            card_a: card(0),
            card_b: card(1),
            _dir: dir,
            am,
            client,
            pki_dir,
        }
    }

    fn state(&self) -> State {
        self.am.state().unwrap()
    }

    async fn register_alice(&self) {
        self.client
            .register_account(&self.card_a.token(), &alice("REF-A"), INI_A, PASSWORD)
            .await
            .unwrap();
    }
}

fn client_for(am: &RunningAccountManager, timeout: Duration) -> AccountManagerClient {
    let connector = kim_cm::net::tls::connector(&am.tls_ca, None).unwrap();
    AccountManagerClient::new(
        HttpsUrl::parse(&am.base_url).unwrap(),
        HttpSettings {
            connector: Arc::new(connector),
            connect_timeout: Duration::from_secs(2),
            timeout,
        },
    )
}

fn alice(reference_id: &str) -> Registration {
    Registration {
        reference_id: Some(reference_id.into()),
        username: ALICE.into(),
        kim_version: Some("1.5+".into()),
        ..Registration::default()
    }
}

fn status(r: Result<impl std::fmt::Debug, E>) -> (u16, String) {
    let e = r.unwrap_err();
    (e.status().unwrap_or(0), e.to_string())
}

#[tokio::test]
async fn service_information_is_read_without_a_token() {
    let bed = Bed::start().await;
    let info = bed.client.service_information().await.unwrap();
    assert_eq!(info.jwt_expiration, Some(300));
    assert_eq!(info.reference_id_required, Some(true));
    assert_eq!(
        info.password_policy_display.as_deref(),
        Some(DEFAULT_PASSWORD_DISPLAY)
    );
    assert!(info
        .password_policy_reg_ex
        .unwrap()
        .starts_with("^(?=.*[0-9])"));
}

#[tokio::test]
async fn register_get_set_and_out_of_office() {
    let bed = Bed::start().await;
    bed.register_alice().await;
    let s = bed.state();
    let a = &s.accounts[0];
    assert_eq!(a.registration, SimReg::Registered);
    assert_eq!(a.username.as_deref(), Some(ALICE));
    assert_eq!(a.password.as_deref(), Some(PASSWORD));
    assert_eq!(a.kim_version.as_deref(), Some("1.5+"));
    assert_eq!(
        a.telematik_id.as_deref(),
        Some(bed.card_a.telematik_id.as_str())
    );
    assert_eq!(s.accounts[1].registration, SimReg::NotRegistered);

    let token = bed.card_a.token();
    let account = bed
        .client
        .get_account(&token, ALICE, PASSWORD)
        .await
        .unwrap();
    assert_eq!(account.reference_id.as_deref(), Some("REF-A"));
    assert_eq!(account.reg_stat, Some(RegStat::Registered));
    assert_eq!(account.max_mail_size, Some(734_003_200));
    assert_eq!(account.data_time_to_live, Some(90));

    let changes = AccountChanges {
        kim_version: Some("1.5".into()),
        data_time_to_live: Some(30),
        no_vzd_mail_entry: None,
    };
    bed.client
        .set_account(&token, ALICE, PASSWORD, &changes, Some(NEW_PASSWORD))
        .await
        .unwrap();
    let a = bed.state().accounts[0].clone();
    assert_eq!(a.password.as_deref(), Some(NEW_PASSWORD));
    assert_eq!(
        (a.kim_version.as_deref(), a.data_time_to_live),
        (Some("1.5"), 30)
    );
    // the old password is gone
    let (code, text) = status(bed.client.get_account(&token, ALICE, PASSWORD).await);
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("check the account's password"), "{text}");

    let note = OutOfOffice {
        start_date: Some("2026-07-20T08:00:00Z".into()),
        end_date: Some("2026-07-28T17:00:00Z".into()),
        message: Some("Praxis geschlossen – Vertretung: Dr. B".into()),
        active: Some(true),
    };
    bed.client
        .update_out_of_office(&token, ALICE, NEW_PASSWORD, &note)
        .await
        .unwrap();
    let stored = bed.state().accounts[0].out_of_office.clone();
    assert_eq!(stored.active, Some(true));
    assert_eq!(stored.message, note.message);
    let read = bed
        .client
        .get_out_of_office(&token, ALICE, NEW_PASSWORD)
        .await
        .unwrap();
    assert_eq!(read, note);
}

#[tokio::test]
async fn registration_refusals_are_sentences() {
    let bed = Bed::start().await;
    let token = bed.card_a.token();
    let c = &bed.client;

    // 401: no usable token, an expired one, a wrong initial password
    let (code, text) = status(
        c.register_account("", &alice("REF-A"), INI_A, PASSWORD)
            .await,
    );
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("Bearer"), "{text}");
    let old = bed.card_a.token_at(now() - 3600);
    let (code, text) = status(
        c.register_account(&old, &alice("REF-A"), INI_A, PASSWORD)
            .await,
    );
    assert_eq!(code, 401);
    assert!(text.contains("expired"), "{text}");
    let (code, text) = status(
        c.register_account(&token, &alice("REF-A"), "wrong", PASSWORD)
            .await,
    );
    assert_eq!(code, 401);
    assert!(text.contains("reference id and initial password"), "{text}");

    // 420 with the provider's rules in words, from serviceinfo
    let (code, text) = status(
        c.register_account(&token, &alice("REF-A"), INI_A, "kurz")
            .await,
    );
    assert_eq!(code, 420);
    assert!(text.contains("does not comply"), "{text}");
    assert!(
        text.contains("Minimum length 12 characters") || text.contains("minimum length 12"),
        "{text}"
    );
    let mut no_address = alice("REF-A");
    no_address.username = "alice.praxis-a.kim.test".into();
    let (code, _) = status(
        c.register_account(&token, &no_address, INI_A, PASSWORD)
            .await,
    );
    assert_eq!(code, 420);

    // 422: a KIM version the provider does not support
    let mut future = alice("REF-A");
    future.kim_version = Some("9.9".into());
    let (code, text) = status(c.register_account(&token, &future, INI_A, PASSWORD).await);
    assert_eq!(code, 422);
    assert!(text.contains("KIM version 9.9 is not supported"), "{text}");

    // 423: the directory entry is locked; 502: the directory cannot be reached
    bed.am
        .update(|s| s.accounts[0].directory_locked = true)
        .unwrap();
    let (code, text) = status(
        c.register_account(&token, &alice("REF-A"), INI_A, PASSWORD)
            .await,
    );
    assert_eq!(code, 423);
    assert!(text.contains("locked"), "{text}");
    bed.am
        .update(|s| s.accounts[0].directory_locked = false)
        .unwrap();
    bed.am
        .set_faults(&serde_json::json!({"directory_unreachable": true}))
        .unwrap();
    let (code, text) = status(
        c.register_account(&token, &alice("REF-A"), INI_A, PASSWORD)
            .await,
    );
    assert_eq!(code, 502);
    assert!(
        text.contains("directory service (VZD)") && text.contains("try again later"),
        "{text}"
    );
    bed.am.set_faults(&serde_json::json!({})).unwrap();
    assert_eq!(bed.state().accounts[0].registration, SimReg::NotRegistered);

    // 409: the reference id is registered; the address is taken
    bed.register_alice().await;
    let (code, _) = status(
        c.register_account(&token, &alice("REF-A"), INI_A, PASSWORD)
            .await,
    );
    assert_eq!(code, 409);
    let (code, text) = status(
        c.register_account(&bed.card_b.token(), &alice("REF-B"), INI_B, PASSWORD)
            .await,
    );
    assert_eq!(code, 409);
    assert!(
        text.contains(&format!("{ALICE} is already taken")),
        "{text}"
    );
    let s = bed.state();
    assert_eq!(s.accounts[1].registration, SimReg::NotRegistered);
    assert_eq!(s.accounts[1].username, None);
}

#[tokio::test]
async fn deregistration_and_its_revocation() {
    let bed = Bed::start().await;
    bed.register_alice().await;
    let token = bed.card_a.token();
    let c = &bed.client;

    // 403: nothing to revoke
    let (code, text) = status(c.revoke_deregistration(&token, ALICE, PASSWORD).await);
    assert_eq!(code, 403);
    assert!(text.contains("no deregistration to revoke"), "{text}");

    c.deregister_account(&token, ALICE, PASSWORD).await.unwrap();
    let a = bed.state().accounts[0].clone();
    assert_eq!(a.registration, SimReg::DeregistrationPending);
    assert!(a.dereg_date.unwrap() > now());
    let account = c.get_account(&token, ALICE, PASSWORD).await.unwrap();
    assert_eq!(account.reg_stat, Some(RegStat::Deregistered));
    assert_eq!(account.dereg_date, a.dereg_date);

    // 423 while the directory entry is locked, then revoked
    bed.am
        .update(|s| s.accounts[0].directory_locked = true)
        .unwrap();
    let (code, _) = status(c.revoke_deregistration(&token, ALICE, PASSWORD).await);
    assert_eq!(code, 423);
    bed.am
        .update(|s| s.accounts[0].directory_locked = false)
        .unwrap();
    c.revoke_deregistration(&token, ALICE, PASSWORD)
        .await
        .unwrap();
    let a = bed.state().accounts[0].clone();
    assert_eq!((a.registration, a.dereg_date), (SimReg::Registered, None));

    // with no period left the account is gone at once: 404 from then on
    bed.am
        .update(|s| s.settings.deregistration_period_seconds = 0)
        .unwrap();
    c.deregister_account(&token, ALICE, PASSWORD).await.unwrap();
    assert_eq!(bed.state().accounts[0].registration, SimReg::Deregistered);
    let (code, text) = status(c.get_account(&token, ALICE, PASSWORD).await);
    assert_eq!(code, 404);
    assert!(text.contains(&format!("no KIM account {ALICE}")), "{text}");
    let (code, _) = status(c.deregister_account(&token, ALICE, PASSWORD).await);
    assert_eq!(code, 404);
}

#[tokio::test]
async fn the_address_moves_to_a_new_card_with_an_otp() {
    let bed = Bed::start().await;
    bed.register_alice().await;
    let (old_card, new_card) = (bed.card_a.token(), bed.card_b.token());
    let c = &bed.client;

    // getOTP needs the previous card
    let (code, _) = status(c.get_otp(&new_card, ALICE, PASSWORD).await);
    assert_eq!(code, 401);
    let otp = c.get_otp(&old_card, ALICE, PASSWORD).await.unwrap();
    let stored = bed.state().accounts[0].otp.clone().unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(otp.as_bytes())
        .unwrap();
    assert_eq!(decoded, stored.value.as_bytes());

    // 403 for a wrong OTP, 408 for an expired one, 423 for a locked entry
    let wrong = base64::engine::general_purpose::STANDARD.encode("123456");
    let (code, text) = status(c.set_telematik_id(&new_card, ALICE, PASSWORD, &wrong).await);
    assert_eq!(code, 403);
    assert!(text.contains("is not valid"), "{text}");
    bed.am
        .update(|s| s.accounts[0].otp.as_mut().unwrap().expires = now() - 1)
        .unwrap();
    let (code, text) = status(c.set_telematik_id(&new_card, ALICE, PASSWORD, &otp).await);
    assert_eq!(code, 408);
    assert!(text.contains("has expired"), "{text}");
    let otp = c.get_otp(&old_card, ALICE, PASSWORD).await.unwrap();
    bed.am
        .update(|s| s.accounts[0].directory_locked = true)
        .unwrap();
    let (code, _) = status(c.set_telematik_id(&new_card, ALICE, PASSWORD, &otp).await);
    assert_eq!(code, 423);
    bed.am
        .update(|s| s.accounts[0].directory_locked = false)
        .unwrap();
    assert_eq!(
        bed.state().accounts[0].telematik_id.as_deref(),
        Some(bed.card_a.telematik_id.as_str())
    );

    c.set_telematik_id(&new_card, ALICE, PASSWORD, &otp)
        .await
        .unwrap();
    let a = bed.state().accounts[0].clone();
    assert_eq!(
        a.telematik_id.as_deref(),
        Some(bed.card_b.telematik_id.as_str())
    );
    assert!(a.otp.is_none(), "an OTP is used once");
    // the account now belongs to the new card
    assert!(c.get_account(&new_card, ALICE, PASSWORD).await.is_ok());
    let (code, _) = status(c.get_account(&old_card, ALICE, PASSWORD).await);
    assert_eq!(code, 401);
}

fn cn(cert: &X509) -> String {
    cert.subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .unwrap()
        .data()
        .to_string()
        .unwrap()
}

#[tokio::test]
async fn create_cert_issues_a_pkcs12_from_the_testbed_ca() {
    let bed = Bed::start().await;
    bed.register_alice().await;
    let token = bed.card_a.token();
    let c = &bed.client;
    let ca = X509::from_pem(&std::fs::read(bed.pki_dir.join(pki::CA_CERT_FILE)).unwrap()).unwrap();

    let p12 = c
        .create_cert(&token, ALICE, PASSWORD, "Praxis A", Some("p12-geheim"))
        .await
        .unwrap();
    let parsed = Pkcs12::from_der(&p12).unwrap();
    assert!(
        parsed.parse2("wrong").is_err(),
        "protected with certPassword"
    );
    let parsed = parsed.parse2("p12-geheim").unwrap();
    let cert = parsed.cert.unwrap();
    assert_eq!(cn(&cert), "Praxis A#CM");
    assert!(cert.verify(&ca.public_key().unwrap()).unwrap());
    assert!(parsed.pkey.is_some());
    // it is a usable client identity for mutual TLS (KOM-LE-A_2182-01)
    let file = bed.pki_dir.join("cm-tls.p12");
    std::fs::write(&file, &*p12).unwrap();
    kim_cm::net::tls::connector(
        &bed.am.tls_ca,
        Some(kim_cm::net::tls::ClientIdentity {
            pkcs12: &file,
            password: "p12-geheim",
        }),
    )
    .unwrap();

    // without a certPassword the container is not encrypted
    let open = c
        .create_cert(&token, ALICE, PASSWORD, "Praxis A", None)
        .await
        .unwrap();
    let parsed = Pkcs12::from_der(&open).unwrap().parse2("").unwrap();
    assert_eq!(cn(&parsed.cert.unwrap()), "Praxis A#CM");
    let issued = bed.state().accounts[0].certificates.clone();
    assert_eq!(issued.len(), 2);
    assert!(issued.iter().all(|i| i.subject_cn == "Praxis A#CM"));
    assert_eq!((issued[0].encrypted, issued[1].encrypted), (true, false));

    // 502: the certificate service cannot be reached
    bed.am
        .set_faults(&serde_json::json!({"directory_unreachable": true}))
        .unwrap();
    let (code, text) = status(
        c.create_cert(&token, ALICE, PASSWORD, "Praxis A", None)
            .await,
    );
    assert_eq!(code, 502);
    assert!(text.contains("certificate service (CMP)"), "{text}");
    assert_eq!(bed.state().accounts[0].certificates.len(), 2);
}

#[tokio::test]
async fn faults_unknown_accounts_and_undocumented_answers() {
    let bed = Bed::start().await;
    bed.register_alice().await;
    let token = bed.card_a.token();
    let c = &bed.client;

    let (code, _) = status(
        c.get_out_of_office(&token, "bob@praxis-a.kim.test", PASSWORD)
            .await,
    );
    assert_eq!(code, 404);
    let (code, _) = status(c.get_account(&token, ALICE, "Falsch-Passwort-1").await);
    assert_eq!(code, 401);
    // a setAccount refusal: 420 and 422
    let (code, _) = status(
        c.set_account(
            &token,
            ALICE,
            PASSWORD,
            &AccountChanges::default(),
            Some("schwach"),
        )
        .await,
    );
    assert_eq!(code, 420);
    let changes = AccountChanges {
        kim_version: Some("0.9".into()),
        ..AccountChanges::default()
    };
    let (code, _) = status(c.set_account(&token, ALICE, PASSWORD, &changes, None).await);
    assert_eq!(code, 422);
    assert_eq!(bed.state().accounts[0].password.as_deref(), Some(PASSWORD));

    // getOTP documents no 502: an unreachable directory does not concern it
    bed.am
        .set_faults(&serde_json::json!({"directory_unreachable": true}))
        .unwrap();
    assert!(c.get_otp(&token, ALICE, PASSWORD).await.is_ok());
    let (code, _) = status(c.get_account(&token, ALICE, PASSWORD).await);
    assert_eq!(code, 502);

    bed.am
        .set_faults(&serde_json::json!({"status": 500}))
        .unwrap();
    let (code, text) = status(c.get_account(&token, ALICE, PASSWORD).await);
    assert_eq!(code, 500);
    assert!(text.contains("trace id"), "{text}");
    bed.am
        .set_faults(&serde_json::json!({"status": 503}))
        .unwrap();
    let e = c.get_account(&token, ALICE, PASSWORD).await.unwrap_err();
    assert!(matches!(e, E::Undocumented { .. }), "{e}");
    assert!(e.to_string().contains("503 Service Unavailable"), "{e}");
    assert!(e.to_string().contains("fault injected"), "{e}");
    // 409 is no status of getAccount: reported as undocumented, not as "taken"
    bed.am
        .set_faults(&serde_json::json!({"status": 409}))
        .unwrap();
    let e = c.get_account(&token, ALICE, PASSWORD).await.unwrap_err();
    assert!(matches!(e, E::Undocumented { .. }), "{e}");

    // a slow service: the client's timeout ends the call
    // (the whole call may take connect + answer time: 2.2 s, the answer comes after 5)
    bed.am
        .set_faults(&serde_json::json!({"delay_ms": 5000}))
        .unwrap();
    let impatient = client_for(&bed.am, Duration::from_millis(200));
    let e = impatient.service_information().await.unwrap_err();
    assert!(e.to_string().contains("did not answer in time"), "{e}");
}

#[tokio::test]
async fn the_simulator_keeps_its_state_across_restarts() {
    let bed = Bed::start().await;
    bed.register_alice().await;
    let dir: &Path = &bed.am.dir;
    let again = am::start(dir, 0, AmConfig::default()).await.unwrap();
    let s = again.state().unwrap();
    assert_eq!(s.accounts[0].registration, SimReg::Registered);
}

/// A log sink for one test.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_the_log_at_any_level() {
    let log = Captured::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    // global, not scoped: a scoped subscriber misses events whose callsites other
    // tests' threads cached as uninteresting. The other tests' lines come here too,
    // and must not carry secrets either.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let bed = Bed::start().await;
    bed.register_alice().await;
    let token = bed.card_a.token();
    let c = &bed.client;
    c.set_account(
        &token,
        ALICE,
        PASSWORD,
        &AccountChanges::default(),
        Some(NEW_PASSWORD),
    )
    .await
    .unwrap();
    let otp = c.get_otp(&token, ALICE, NEW_PASSWORD).await.unwrap();
    c.set_telematik_id(&bed.card_b.token(), ALICE, NEW_PASSWORD, &otp)
        .await
        .unwrap();
    c.create_cert(
        &bed.card_b.token(),
        ALICE,
        NEW_PASSWORD,
        "P",
        Some("p12-geheim"),
    )
    .await
    .unwrap();
    let _ = c.get_account(&token, ALICE, "Falsch-Passwort-1").await;

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("account manager call"), "{text}");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for secret in [
        PASSWORD,
        NEW_PASSWORD,
        INI_A,
        "p12-geheim",
        "Falsch-Passwort-1",
    ] {
        assert!(!text.contains(secret), "{secret} in the log:\n{text}");
        assert!(!text.contains(&b64(secret)), "{secret} (base64) in the log");
    }
    assert!(!text.contains(otp.as_str()), "the OTP in the log");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!text.contains(signature), "the token in the log");
}
