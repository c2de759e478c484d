//! The Helsenorge sidecar (src/sidecar/helsenorge/) against the simulated
//! DigitaltAktivStatusEndringer and token issuer (src/testbed/helsenorge.rs):
//! `kim-cm helsenorge changes` as a user runs it (the real binary, with the
//! wall clock), and in-process where the clock matters (a manual clock, so
//! nothing waits for real time).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use time::OffsetDateTime;

use kim_cm::http::client::HttpSettings;
use kim_cm::http::url::HttpsUrl;
use kim_cm::sidecar::clock::{Clock, ManualClock};
use kim_cm::sidecar::cursor;
use kim_cm::sidecar::helsenorge::changes::{self, All, Patients, OFFSET_CURSOR, SERVICE};
use kim_cm::sidecar::helsenorge::config::HelsenorgeConfig;
use kim_cm::sidecar::helsenorge::nin::{self, Kind, NinError, Rules, Synthetic};
use kim_cm::sidecar::helsenorge::{assertion, changes_client, offset};
use kim_cm::store::Store;
use kim_cm::testbed::ca;
use kim_cm::testbed::helsenorge::{self as sim, RunningHelsenorge, SimClient, SimSettings};

/// A valid number from nine digits (the first individual number from `ind`
/// whose check digits exist).
fn fnr(prefix6: &str, ind: u32) -> String {
    (ind..ind + 100)
        .find_map(|i| nin::complete(&format!("{prefix6}{i:03}")))
        .unwrap()
}

/// A simulator, a config for it, a patients file.
struct Env {
    dir: tempfile::TempDir,
    hn: RunningHelsenorge,
    config: PathBuf,
    patients: PathBuf,
}

impl Env {
    async fn start(patients: &[&str]) -> Env {
        Self::start_with(patients, |s| s).await
    }

    /// With the `[helsenorge]` section changed by `edit`.
    async fn start_with(patients: &[&str], edit: impl Fn(String) -> String) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let tls = ca::make_tls_ca(&dir.path().join("tls"), &[]).unwrap();
        let hn = sim::start(&dir.path().join("hn-sim"), &tls, 0)
            .await
            .unwrap();
        let section = edit(hn.config_toml());
        let config = dir.path().join("kim-cm.toml");
        std::fs::write(
            &config,
            format!(
                "[proxy]\ndata_dir = \"data\"\n[log]\nlevel = \"info\"\n[upstream]\nca_file = {:?}\n[[smtp_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n{section}",
                tls.ca_cert.display().to_string()
            ),
        )
        .unwrap();
        let patients_file = dir.path().join("patients.txt");
        std::fs::write(&patients_file, patients.join("\n") + "\n").unwrap();
        Env {
            dir,
            hn,
            config,
            patients: patients_file,
        }
    }

    fn store(&self) -> Store {
        std::fs::create_dir_all(self.dir.path().join("data")).unwrap();
        Store::open(&self.dir.path().join("data/state.sqlite")).unwrap()
    }

    fn stored_offset(&self) -> Option<String> {
        cursor::get(&self.store(), SERVICE, OFFSET_CURSOR)
            .unwrap()
            .map(|c| c.value)
    }

    /// `kim-cm helsenorge changes` with `extra` arguments and `env`: exit code,
    /// stdout, stderr.
    async fn run(&self, extra: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = Command::new(common::kimcm::bin());
        cmd.args(["helsenorge", "changes", "--config"])
            .arg(&self.config)
            .arg("--patients")
            .arg(&self.patients)
            .args(extra)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_without_offset_then_only_new_changes_of_local_patients() {
    let (p1, p2, p3, p4) = (
        fnr("010180", 0),
        fnr("410185", 100),
        fnr("311299", 567),
        fnr("150545", 900),
    );
    let stranger = fnr("020202", 0);
    let env = Env::start(&[&p1, &p2, &p3, &p4]).await;
    let now = OffsetDateTime::now_utc();
    env.hn
        .add_change_at(now - Duration::from_secs(10 * 86400), &p2);
    env.hn
        .add_change_at(now - Duration::from_secs(9 * 86400), &stranger);
    env.hn
        .add_change_at(now - Duration::from_secs(8 * 86400), &p1);
    // older than three months: the service no longer has it
    env.hn
        .add_change_at(now - Duration::from_secs(120 * 86400), &p3);

    let (code, out, err) = env.run(&[], &[]).await;
    assert_eq!(code, 0, "{err}");
    // in the patients file's order
    assert_eq!(lines(&out), vec![p1.as_str(), p2.as_str()], "{err}");
    let stats = env.hn.stats();
    assert_eq!(stats.offsets_received, vec![None], "first run: no offset");
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(env.stored_offset(), Some(stats.offsets_sent[0].clone()));
    assert!(!err.contains("older than"), "{err}");

    env.hn.add_change(&p3);
    env.hn.add_change(&fnr("030303", 0));
    let (code, out, err) = env.run(&[], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&out), vec![p3.as_str()], "only the new change");
    let stats = env.hn.stats();
    assert_eq!(
        stats.offsets_received[1].as_deref(),
        Some(stats.offsets_sent[0].as_str())
    );
    assert_eq!(env.stored_offset(), Some(stats.offsets_sent[1].clone()));

    // nothing new: nothing printed, the offset still moves on
    let (code, out, _) = env.run(&[], &[]).await;
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(
        env.stored_offset(),
        Some(env.hn.stats().offsets_sent[2].clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_offset_is_stored_and_sent_back_verbatim() {
    let p1 = fnr("010180", 0);
    let env = Env::start(&[&p1]).await;
    // an offset of the server's own shape, which reformatting would change
    let t = OffsetDateTime::now_utc() - Duration::from_secs(86400);
    let odd = offset::format(t).replace('Z', "+00:00");
    env.hn.set_next_offset(&odd);
    let (code, _, err) = env.run(&[], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(env.stored_offset().as_deref(), Some(odd.as_str()));
    let (code, _, err) = env.run(&[], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        env.hn.stats().offsets_received[1].as_deref(),
        Some(odd.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_older_than_three_months_warns_and_prints_every_patient() {
    let (p1, p2, p3) = (fnr("010180", 0), fnr("410185", 100), fnr("311299", 567));
    let env = Env::start(&[&p1, &p2, &p3]).await;
    let then = OffsetDateTime::now_utc() - Duration::from_secs(100 * 86400);
    cursor::set(
        &env.store(),
        SERVICE,
        OFFSET_CURSOR,
        &offset::format(then),
        then,
    )
    .unwrap();
    env.hn.add_change(&p2);
    let (code, out, err) = env.run(&[], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&out), vec![p1.as_str(), p2.as_str(), p3.as_str()]);
    assert!(
        err.contains("older than the 3 months") && err.contains("all 3 are printed"),
        "{err}"
    );
    let stats = env.hn.stats();
    assert_eq!(stats.offsets_received, vec![Some(offset::format(then))]);
    // the new offset is stored: the next run is an ordinary one
    assert_eq!(env.stored_offset(), Some(stats.offsets_sent[0].clone()));
    let (code, out, err) = env.run(&[], &[]).await;
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(!err.contains("older than"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_gets_one_fresh_token_and_one_retry() {
    let p1 = fnr("010180", 0);
    let env = Env::start(&[&p1]).await;
    env.hn.add_change(&p1);
    env.hn.refuse_next(1);
    let (code, out, err) = env.run(&[], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&out), vec![p1.as_str()]);
    let stats = env.hn.stats();
    assert_eq!(stats.feed_statuses, vec![403, 200]);
    assert_eq!(stats.tokens_issued, 2, "exactly one fresh token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_refusal_is_one_sentence_and_exit_code_1() {
    let p1 = fnr("010180", 0);
    let env = Env::start(&[&p1]).await;
    env.hn.add_change(&p1);
    env.hn.refuse_next(5);
    let (code, out, err) = env.run(&[], &[]).await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "", "nothing printed");
    assert!(
        err.contains("kim-cm: Helsenorge refused the access token twice (HTTP 403, SEC-110000: Token is expired or invalid)"),
        "{err}"
    );
    let stats = env.hn.stats();
    assert_eq!(stats.feed_statuses, vec![403, 403], "no third try");
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(env.stored_offset(), None, "no offset stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_patient_numbers_are_named_by_line_and_skipped() {
    let p1 = fnr("010180", 0);
    let mut bad_k1 = p1.clone().into_bytes();
    // remainder 5 or 6: wrong under both rules
    bad_k1[9] = b'0' + (bad_k1[9] - b'0' + 5) % 10;
    let bad_k1 = String::from_utf8(bad_k1).unwrap();
    let env = Env::start(&[
        "# patients of Legekontoret",
        &p1,
        "12345",
        &bad_k1,
        "",
        "3112995671x",
        "31129956715",
    ])
    .await;
    env.hn.add_change("31129956715");
    env.hn.add_change(&p1);
    let (code, out, err) = env.run(&[], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&out), vec![p1.as_str(), "31129956715"]);
    let file = env.patients.display().to_string();
    for (line, says) in [
        (3, "11 digits"),
        (4, "first check digit"),
        (6, "other than digits"),
    ] {
        let want = format!("kim-cm: patients file {file} line {line}: skipped, ");
        let at = err
            .find(&want)
            .unwrap_or_else(|| panic!("line {line}: {err}"));
        assert!(err[at..].lines().next().unwrap().contains(says), "{err}");
    }
    assert_eq!(err.matches("skipped").count(), 3, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_numbers_only_with_the_flag_and_server_numbers_never_refused() {
    let tenor = fnr("018180", 0);
    let env = Env::start_with(&[&tenor], |s| s.replace("synthetic = true\n", "")).await;
    env.hn.add_change(&tenor);
    // the server's numbers are not checked against the patients' rules
    env.hn.add_change("00000000000");
    let (code, out, err) = env.run(&[], &[]).await;
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(
        err.contains("line 1: skipped") && err.contains("--synthetic"),
        "{err}"
    );
    assert!(err.contains("no valid identity number"), "{err}");
    let (code, out, err) = env.run(&["--synthetic", "--reset-offset"], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&out), vec![tenor.as_str()]);
    assert!(!err.contains("skipped"), "{err}");
    assert!(err.contains("the offset was reset"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_output_or_logs_even_at_trace_level() {
    let p1 = fnr("010180", 0);
    let env = Env::start(&[&p1]).await;
    env.hn.add_change(&p1);
    env.hn.refuse_next(1);
    let (code, out, err) = env.run(&[], &[("RUST_LOG", "trace")]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("DEBUG"), "trace logging is on: {err}");
    let all = format!("{out}{err}");
    let tokens = env.hn.issued_tokens();
    assert_eq!(tokens.len(), 2);
    for t in &tokens {
        assert!(!all.contains(t.as_str()), "a token is in the output");
        assert!(!all.contains(&t[8..24]), "part of a token is in the output");
    }
    // a JWT (the client assertion) starts with base64url of `{"`
    assert!(!all.contains("eyJ"), "a JWT is in the output");
    assert!(
        !all.contains("client_assertion="),
        "the token request is in the output"
    );
    let key = std::fs::read_to_string(env.hn.client_key.as_ref().unwrap()).unwrap();
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!all.contains(line), "a line of the key is in the output");
    }
}

/// The config for the simulator, resolved, as `cli` would make it.
fn config_for(hn: &RunningHelsenorge, edit: impl Fn(String) -> String) -> HelsenorgeConfig {
    let text = edit(hn.config_toml()).replace("[helsenorge]\n", "");
    let mut cfg: HelsenorgeConfig = toml::from_str(&text).unwrap();
    cfg.resolve(Path::new("/")).unwrap();
    cfg
}

/// The simulator on a manual clock that the client shares.
async fn manual(dir: &Path, lifetime: Duration) -> (RunningHelsenorge, Arc<ManualClock>) {
    let tls = ca::make_tls_ca(&dir.join("tls"), &[]).unwrap();
    // the wall clock's today, so that the assertions' times are plausible
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let defaults = sim::start(&dir.join("keys"), &tls, 0).await.unwrap();
    let key_file = defaults.client_key.clone().unwrap();
    let key =
        openssl::pkey::PKey::private_key_from_pem(&std::fs::read(&key_file).unwrap()).unwrap();
    let settings = SimSettings {
        client: SimClient {
            client_id: sim::DEFAULT_CLIENT_ID.into(),
            kid: sim::DEFAULT_KID.into(),
            public_key: openssl::pkey::PKey::public_key_from_pem(&key.public_key_to_pem().unwrap())
                .unwrap(),
            scope: Some(sim::DEFAULT_SCOPE.into()),
        },
        token_lifetime: lifetime,
        changes: Vec::new(),
    };
    let mut hn = sim::start_with(&dir.join("hn-sim"), &tls, 0, settings, clock.clone())
        .await
        .unwrap();
    hn.client_key = Some(key_file);
    (hn, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_cached_until_expiry_and_an_expired_one_mid_run_is_replaced_once() {
    let dir = tempfile::tempdir().unwrap();
    let (hn, clock) = manual(dir.path(), Duration::from_secs(300)).await;
    let cfg = config_for(&hn, |s| s);
    let client = changes_client(&cfg, clock.clone()).unwrap();
    let first = client.changes(None).await.unwrap();
    let again = client.changes(Some(&first.offset)).await.unwrap();
    assert_eq!(hn.stats().tokens_issued, 1, "the token is cached");
    // the service finds the token expired between two calls of one run
    hn.expire_tokens();
    hn.add_change("31129956715");
    let third = client.changes(Some(&again.offset)).await.unwrap();
    assert_eq!(third.fnr, vec!["31129956715"]);
    let s = hn.stats();
    assert_eq!(s.tokens_issued, 2);
    assert_eq!(s.feed_statuses, vec![200, 200, 403, 200]);
    // a revoked token: 401, the same one retry
    hn.revoke_tokens();
    client.changes(Some(&third.offset)).await.unwrap();
    let s = hn.stats();
    assert_eq!(s.tokens_issued, 3);
    assert_eq!(&s.feed_statuses[4..], &[401, 200]);
    // near its expiry the client replaces the token on its own: no refusal
    clock.advance(Duration::from_secs(280));
    client.changes(None).await.unwrap();
    let s = hn.stats();
    assert_eq!(s.tokens_issued, 4);
    assert_eq!(&s.feed_statuses[6..], &[200]);
    assert!(clock.sleeps().is_empty(), "no waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_month_window_on_a_manual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (hn, clock) = manual(dir.path(), Duration::from_secs(3600)).await;
    let cfg = config_for(&hn, |s| s);
    let client = changes_client(&cfg, clock.clone()).unwrap();
    let store = Store::open(&dir.path().join("state.sqlite")).unwrap();
    let (p1, p2) = (fnr("010180", 0), fnr("410185", 100));
    let patients = Patients::parse(&format!("{p1}\n{p2}\n"), Rules::default());
    let c: Arc<dyn Clock> = clock.clone();
    let mut out = Vec::new();
    hn.add_change_at(clock.now() - Duration::from_secs(95 * 86400), &p1);
    hn.add_change(&p2);
    let o = changes::run(
        &client,
        &store,
        &patients,
        Rules::default(),
        &c,
        false,
        &mut out,
    )
    .await
    .unwrap();
    assert!(o.first_run && o.all.is_none());
    assert_eq!(
        o.recheck,
        vec![p2.clone()],
        "the change of 95 days ago is gone"
    );
    // 80 days later: still inside the window (three months are 89 to 92 days)
    clock.advance(Duration::from_secs(80 * 86400));
    let o = changes::run(
        &client,
        &store,
        &patients,
        Rules::default(),
        &c,
        false,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!((o.all, o.recheck.len()), (None, 0));
    // 93 more days: outside it, every patient is to be checked
    clock.advance(Duration::from_secs(93 * 86400));
    let stored = cursor::get(&store, SERVICE, OFFSET_CURSOR)
        .unwrap()
        .unwrap();
    let o = changes::run(
        &client,
        &store,
        &patients,
        Rules::default(),
        &c,
        false,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(
        o.all,
        Some(All::Lapsed {
            stored: stored.value
        })
    );
    assert_eq!(o.recheck, vec![p1.clone(), p2.clone()]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{p2}\n{p1}\n{p2}\n")
    );
    assert!(clock.sleeps().is_empty());
}

/// One request to the simulator.
async fn call(
    hn: &RunningHelsenorge,
    method: Method,
    path: &str,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Option<String>,
) -> (StatusCode, serde_json::Value) {
    let settings = HttpSettings {
        connector: Arc::new(kim_cm::net::tls::connector(&hn.tls_ca, None).unwrap()),
        connect_timeout: Duration::from_secs(10),
        timeout: Duration::from_secs(30),
    };
    let url = HttpsUrl::parse(&format!("{}{path}", hn.base_url)).unwrap();
    let (status, body) =
        kim_cm::http::client::request(method, &url, headers, body.map(Bytes::from), &settings)
            .await
            .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_checks_client_assertions_tokens_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (hn, clock) = manual(dir.path(), Duration::from_secs(60)).await;
    let (_, disco) = call(&hn, Method::GET, sim::DISCOVERY_PATH, vec![], None).await;
    let endpoint = disco["token_endpoint"].as_str().unwrap().to_string();
    assert_eq!(endpoint, format!("{}/connect/token", hn.base_url));
    let pem = std::fs::read(hn.client_key.as_ref().unwrap()).unwrap();
    let key = assertion::ClientKey::new(
        openssl::pkey::PKey::private_key_from_pem(&pem).unwrap(),
        sim::DEFAULT_KID,
    )
    .unwrap();
    let ct = || {
        vec![(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )]
    };
    let ask = |a: &str| {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", assertion::ASSERTION_TYPE),
            ("client_assertion", a),
            ("scope", sim::DEFAULT_SCOPE),
        ])
    };
    let good = assertion::build(&key, sim::DEFAULT_CLIENT_ID, &endpoint, clock.now()).unwrap();
    let (s, t) = call(&hn, Method::POST, "/connect/token", ct(), Some(ask(&good))).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let token = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(t["expires_in"], 60);
    // the same assertion again: its jti was used
    let (s, e) = call(&hn, Method::POST, "/connect/token", ct(), Some(ask(&good))).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_client"))
    );
    assert!(
        e["error_description"].as_str().unwrap().contains("jti"),
        "{e}"
    );
    // another key, another audience, another client, an old one
    let other = assertion::ClientKey::new(
        openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap(),
        sim::DEFAULT_KID,
    )
    .unwrap();
    for (a, says) in [
        (
            assertion::build(&other, sim::DEFAULT_CLIENT_ID, &endpoint, clock.now()).unwrap(),
            "signature",
        ),
        (
            assertion::build(
                &key,
                sim::DEFAULT_CLIENT_ID,
                "https://elsewhere/connect/token",
                clock.now(),
            )
            .unwrap(),
            "aud",
        ),
        (
            assertion::build(&key, "someone-else", &endpoint, clock.now()).unwrap(),
            "iss",
        ),
        (
            assertion::build(
                &key,
                sim::DEFAULT_CLIENT_ID,
                &endpoint,
                clock.now() - Duration::from_secs(120),
            )
            .unwrap(),
            "expired",
        ),
    ] {
        let (s, e) = call(&hn, Method::POST, "/connect/token", ct(), Some(ask(&a))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(
            e["error_description"].as_str().unwrap().contains(says),
            "{says}: {e}"
        );
    }
    // the STS v2 endpoint takes the same, with its own audience
    let sts = format!("{}/sts/v2/token", hn.base_url);
    let a = assertion::build(&key, sim::DEFAULT_CLIENT_ID, &sts, clock.now()).unwrap();
    let (s, _) = call(&hn, Method::POST, "/sts/v2/token", ct(), Some(ask(&a))).await;
    assert_eq!(s, StatusCode::OK);

    let path = kim_cm::sidecar::helsenorge::config::DEFAULT_CHANGES_PATH;
    let bearer = |t: &str| {
        vec![(
            "authorization",
            HeaderValue::from_str(&format!("bearer {t}")).unwrap(),
        )]
    };
    let (s, e) = call(&hn, Method::GET, path, vec![], None).await;
    assert_eq!(
        (s, e["Code"].as_str().unwrap().starts_with("SEC-")),
        (StatusCode::UNAUTHORIZED, true)
    );
    let (s, e) = call(
        &hn,
        Method::GET,
        &format!("{path}?offset=yesterday"),
        bearer(&token),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, ok) = call(&hn, Method::GET, path, bearer(&token), None).await;
    assert_eq!(s, StatusCode::OK);
    let o = ok["offset"].as_str().unwrap();
    assert_eq!(o.len(), "2026-12-02T10:00:00.00000Z".len(), "{o}");
    assert!(offset::parse(o).is_some());
    clock.advance(Duration::from_secs(61));
    let (s, e) = call(&hn, Method::GET, path, bearer(&token), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        e,
        serde_json::json!({"Code": "SEC-110000", "Message": "Token is expired or invalid"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_v2_mode_gets_its_token_at_the_sts() {
    let dir = tempfile::tempdir().unwrap();
    let (hn, clock) = manual(dir.path(), Duration::from_secs(300)).await;
    let cfg = config_for(&hn, |s| {
        s.replace("auth = \"helseid\"", "auth = \"sts\"")
            .lines()
            .filter(|l| !l.starts_with("helseid_authority"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    assert_eq!(cfg.sts_endpoint().path, "/sts/v2/token");
    let client = changes_client(&cfg, clock.clone()).unwrap();
    client.changes(None).await.unwrap();
    assert_eq!(hn.stats().tokens_issued, 1);
}

/// Changes in one answer for [`a_large_answer_is_read_whole`]; the feed is not
/// paged, and three months of all of Norway can be many.
const LARGE_CHANGES: usize = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (hn, clock) = manual(dir.path(), Duration::from_secs(3600)).await;
    let cfg = config_for(&hn, |s| s);
    assert_eq!(cfg.max_answer(), 64 << 20);
    let client = changes_client(&cfg, clock.clone()).unwrap();
    let at = clock.now() - Duration::from_secs(86400);
    // 200 000 distinct valid numbers: D-numbers over ten years of days
    let numbers: Vec<String> = (0..)
        .filter_map(|i: u32| {
            let day = 41 + i % 28;
            let month = 1 + (i / 28) % 12;
            let year = 80 + (i / 336) % 10;
            nin::complete(&format!(
                "{day:02}{month:02}{year:02}{:03}",
                (i / 3360) % 500
            ))
        })
        .take(LARGE_CHANGES)
        .collect();
    hn.add_changes(
        numbers
            .iter()
            .map(|n| sim::Change { at, fnr: n.clone() })
            .collect(),
    );
    let local: Vec<&str> = numbers.iter().step_by(1000).map(String::as_str).collect();
    let patients = Patients::parse(&(local.join("\n") + "\n"), Rules::default());
    assert_eq!(patients.numbers.len(), LARGE_CHANGES / 1000);
    let store = Store::open(&dir.path().join("state.sqlite")).unwrap();
    let c: Arc<dyn Clock> = clock.clone();
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    let o = changes::run(
        &client,
        &store,
        &patients,
        Rules::default(),
        &c,
        false,
        &mut out,
    )
    .await
    .unwrap();
    // a measurement, not a condition
    eprintln!(
        "{} changes ({} bytes of JSON at least) read and intersected in {:?}",
        o.changed,
        o.changed * 14,
        started.elapsed()
    );
    assert_eq!(o.changed, LARGE_CHANGES);
    assert_eq!(o.recheck.len(), LARGE_CHANGES / 1000);
    assert_eq!(o.invalid_from_server, 0);
}

#[test]
fn identity_numbers_of_every_kind() {
    let strict = Rules {
        synthetic: false,
        rule_2032: false,
    };
    let kind = |n: &str, r: Rules| nin::validate(n, r).map(|v| (v.kind, v.synthetic));
    assert_eq!(kind("31129956715", strict), Ok((Kind::Fodselsnummer, None)));
    assert_eq!(
        kind("31129956715", Rules::default()),
        Ok((Kind::Fodselsnummer, None))
    );
    assert_eq!(kind(&fnr("410180", 0), strict), Ok((Kind::DNumber, None)));
    assert_eq!(kind(&fnr("014180", 0), strict), Ok((Kind::HNumber, None)));
    assert_eq!(kind(&fnr("812345", 0), strict), Ok((Kind::FhNumber, None)));
    let tenor = fnr("018180", 0);
    let syntpop = fnr("016680", 0);
    assert!(matches!(
        kind(&tenor, Rules::default()),
        Err(NinError::SyntheticRefused(_))
    ));
    assert!(matches!(
        kind(&syntpop, Rules::default()),
        Err(NinError::SyntheticRefused(_))
    ));
    let test_env = Rules {
        synthetic: true,
        ..Rules::default()
    };
    assert_eq!(
        kind(&tenor, test_env),
        Ok((Kind::Fodselsnummer, Some(Synthetic::Tenor)))
    );
    assert_eq!(
        kind(&syntpop, test_env),
        Ok((Kind::Fodselsnummer, Some(Synthetic::SyntPop)))
    );
    // the rule of 2032: K1 may leave remainder 1, 2 or 3
    let new = (500..600)
        .find_map(|i| nin::complete_with_remainder(&format!("010132{i:03}"), 2))
        .unwrap();
    assert_eq!(kind(&new, strict), Err(NinError::CheckDigit1));
    assert_eq!(
        kind(&new, Rules::default()),
        Ok((Kind::Fodselsnummer, None))
    );
    assert_eq!(
        kind("31129956716", Rules::default()),
        Err(NinError::CheckDigit2)
    );
}
