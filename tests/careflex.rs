//! The CareFlex sidecar (src/sidecar/careflex/) against the simulated incident
//! interface (src/testbed/careflex.rs): `kim-cm careflex report | none |
//! imports` as a user runs them (the real binary, the wall clock), and
//! in-process where the token's 12 hours matter (a hand-driven clock, so
//! nothing waits).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kim_cm::sidecar::careflex::client::{CareflexClient, CareflexError};
use kim_cm::sidecar::careflex::config::CareflexConfig;
use kim_cm::sidecar::careflex::input::{self, Incident, Rules};
use kim_cm::sidecar::careflex::soap;
use kim_cm::sidecar::clock::{self, Clock, ManualClock};
use kim_cm::testbed::ca;
use kim_cm::testbed::careflex::{CareflexSim, Credentials, Faults, INVALID_TYPE};
use time::macros::datetime;

const PASSWORD: &str = "cf-Service-Secret-4711";
const APITOKEN: &str = "maL0HMDszA2b9PKiqCAZRGh0ZDpVjmvc";
/// The managing company.
const MAIN: &str = "09ce3580d84bf087";
/// A company it manages.
const OTHER: &str = "09ce3580d84bf090";

fn creds() -> Credentials {
    Credentials {
        username: "svc-4711".into(),
        password: PASSWORD.into(),
        apitoken: APITOKEN.into(),
    }
}

struct Env {
    dir: tempfile::TempDir,
    sim: CareflexSim,
    config: PathBuf,
}

impl Env {
    /// A simulator on `clock` and a config file for it.
    async fn start(clock: Arc<dyn Clock>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let tls = ca::make_tls_ca(&dir.path().join("tls"), &[]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = CareflexSim::start(listener, &tls, clock, creds()).unwrap();
        let section = sim
            .config_section(&dir.path().join("secrets"), MAIN, &[OTHER])
            .unwrap();
        let config = dir.path().join("kim-cm.toml");
        std::fs::write(
            &config,
            format!(
                "[proxy]\ndata_dir = \"data\"\n[log]\nlevel = \"info\"\n[upstream]\nca_file = {:?}\n{section}",
                tls.ca_cert.display().to_string()
            ),
        )
        .unwrap();
        Env { dir, sim, config }
    }

    fn cfg(&self) -> CareflexConfig {
        let cfg = kim_cm::config::Config::load(&self.config).unwrap();
        cfg.careflex.unwrap()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `kim-cm careflex ARGS --config FILE`: exit code, stdout, stderr.
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = Command::new(common::kimcm::bin());
        cmd.arg("careflex")
            .args(&args[..1])
            .arg("--config")
            .arg(&self.config)
            .args(&args[1..])
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

const HEADER: &str = "careflexId,externalId,employeeId,validFrom,createdAt,type,title,firstName,lastName,birthday,sex,street,houseNumber,addressSuffix,zipCode,city,country,employmentSite,employmentStatus,startOfEmployment,personnelNumber,management,emailBusiness,mobileBusiness,landlineBusiness";

/// A CSV row: every fifth with master data (NEW), the others plain (RST).
fn row(i: usize, careflex_id: &str, kind: Option<&str>) -> String {
    if i % 5 == 0 {
        format!(
            "{careflex_id},,E{i},2026-11-01,2026-11-02,{},Prof. Dr.,Thomas,\"Muster, Mann\",1979-01-15,m,Musterstraße,9,c/o Max,01234,Musterstadt,DE,Branch 1,T,2026-11-01,{i},true,thomas{i}@musterfirma.de,0123 12345678,030 12345678",
            kind.unwrap_or("NEW")
        )
    } else {
        format!(
            "{careflex_id},Ext-{i},E{i},2026-11-01,2026-11-02,{},,,,,,,,,,,,,,,,,,,",
            kind.unwrap_or("RST")
        )
    }
}

fn csv(rows: impl IntoIterator<Item = String>) -> String {
    let mut s = format!("{HEADER}\n");
    for r in rows {
        s.push_str(&r);
        s.push('\n');
    }
    s
}

fn count(s: &str, what: &str) -> usize {
    s.lines().filter(|l| l.contains(what)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_250_incidents_goes_in_three_requests_with_one_import_id_each() {
    let env = Env::start(clock::system()).await;
    let input = env.write("incidents.csv", &csv((0..250).map(|i| row(i, "", None))));
    let (code, out, err) = env.run(&["report", input.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let stats = env.sim.stats();
    assert_eq!(stats.batch_sizes, vec![100, 100, 50]);
    assert_eq!(stats.tokens_issued, 1);
    // one importId per request (the answer carries one per NewIncidentRequest)
    assert_eq!(count(&out, "importId"), 3, "{out}");
    for (n, imp) in stats.imports.iter().enumerate() {
        assert_eq!(imp.careflex_id, MAIN);
        assert_eq!(imp.apitoken, APITOKEN);
        assert!(out.contains(&format!(
            "request {} of 3 for careflexId {MAIN} (lines {}-{}): importId {}",
            n + 1,
            n * 100 + 2,
            (n * 100 + 101).min(251),
            imp.import_id
        )));
    }
    assert_eq!(count(&out, ": incident "), 250);
    assert!(out.contains("line 2 employee E0: incident "), "{out}");
    assert!(out.contains("line 3 employee E1 (Ext-1): incident "));
    assert!(out.contains("250 incidents in 3 requests: 250 imported, 0 refused"));
    // master data arrived as newIncident, the rest as plainIncident
    let first = &stats.imports[0].incidents;
    assert_eq!(first[0].element, "newIncident");
    assert_eq!(first[0].employee["lastName"], "Muster, Mann");
    assert_eq!(first[0].employee["street"], "Musterstraße");
    assert_eq!(first[1].element, "plainIncident");
    assert_eq!(first[1].external_id.as_deref(), Some("Ext-1"));

    // the importIds are kept for the feedback check
    let (code, listed, _) = env.run(&["imports"], &[]).await;
    assert_eq!(code, 0);
    for imp in &stats.imports {
        assert!(listed.contains(&imp.import_id), "{listed}");
    }
    assert_eq!(count(&listed, "100 incidents, 0 refused"), 2, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_refused_by_the_service_are_printed_with_code_and_message_and_the_exit_is_not_zero() {
    let env = Env::start(clock::system()).await;
    env.sim.set_faults(Faults {
        row_errors: [(
            "E7".to_string(),
            (
                "409".to_string(),
                "The employee is already registered".to_string(),
            ),
        )]
        .into(),
        ..Faults::default()
    });
    // NEU passes kim-cm's checks (the type list is open) but not CareFlex's
    let mut rows: Vec<String> = (0..10).map(|i| row(i, "", None)).collect();
    rows[3] = row(3, "", Some("NEU"));
    let input = env.write("incidents.csv", &csv(rows));
    let (code, out, err) = env.run(&["report", input.to_str().unwrap()], &[]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "line 5 employee E3 (Ext-3): error 422: {INVALID_TYPE}"
        )),
        "{out}"
    );
    assert!(
        out.contains("line 9 employee E7 (Ext-7): error 409: The employee is already registered")
    );
    assert_eq!(count(&out, ": incident "), 8);
    assert!(out.contains("10 incidents in 1 request: 8 imported, 2 refused"));
    assert!(
        err.contains("kim-cm: 2 of 10 incidents were refused by CareFlex"),
        "{err}"
    );
    let (_, listed, _) = env.run(&["imports", "--rows"], &[]).await;
    assert!(listed.contains("10 incidents, 2 refused"), "{listed}");
    assert!(listed.contains("line 9 employee E7: error 409"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_report_for_a_month_and_months_that_cannot_have_one() {
    let env = Env::start(clock::system()).await;
    let (code, out, err) = env
        .run(&["none", "--careflex-id", OTHER, "--month", "2025-11"], &[])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!(
        "empty report of 2025-11 for careflexId {OTHER} sent (createdAt 2025-11-30)"
    )));
    let stats = env.sim.stats();
    assert_eq!(stats.nones.len(), 1);
    assert_eq!(stats.nones[0].careflex_id, OTHER);
    assert_eq!(stats.nones[0].apitoken, APITOKEN);
    assert_eq!(stats.nones[0].created_at, "2025-11-30");
    assert_eq!(stats.calls, vec![("NoIncidentRequest".to_string(), 200)]);
    // the managing company by default
    let (code, _, _) = env.run(&["none", "--month", "2025-12"], &[]).await;
    assert_eq!(code, 0);
    assert_eq!(env.sim.stats().nones[1].careflex_id, MAIN);
    let (_, listed, _) = env.run(&["imports"], &[]).await;
    assert!(
        listed.contains(&format!(
            "careflexId {OTHER}  empty report of 2025-11 (createdAt 2025-11-30)"
        )),
        "{listed}"
    );

    // refused before anything is sent
    for (args, says) in [
        (vec!["none", "--month", "2099-01"], "has not begun"),
        (
            vec!["none", "--month", "2025-13"],
            "write the month as YYYY-MM",
        ),
        (
            vec![
                "none",
                "--month",
                "2025-11",
                "--careflex-id",
                "0000000000000000",
            ],
            "is not one of the companies in [careflex]",
        ),
    ] {
        let (code, _, err) = env.run(&args, &[]).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    }
    assert_eq!(env.sim.stats().nones.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_errors_are_named_with_their_lines_and_nothing_is_sent() {
    let env = Env::start(clock::system()).await;
    let mut rows: Vec<String> = (0..8).map(|i| row(i, "", None)).collect();
    rows[1] = rows[1].replace("2026-11-01", "2026-02-30"); // line 3
    rows[0] = rows[0].replace(",m,", ",q,"); // line 2
    rows[5] = rows[5].replace(",DE,", ",XY,"); // line 7
    rows[3] = rows[3].replace(",E3,", ",,"); // line 5
    rows[6] = format!("{MAIN},,E6,2026-11-01,,NEW,,,,,,,,,,,,,,,,,,,"); // line 8: NEW without master data
    rows[7] = rows[7].replace(",RST,", ",R-ST,"); // line 9
    let csv_file = env.write("bad.csv", &csv(rows));
    let json_file = env.write(
        "bad.json",
        r#"[
  {"employeeId": "1", "validFrom": "2026-11-01", "type": "RST"},
  {"employeeId": "2", "validFrom": "01.11.2026", "type": "RST",
   "careflexId": "ffffffffffffffff"}
]"#,
    );
    let (code, out, err) = env
        .run(
            &[
                "report",
                csv_file.to_str().unwrap(),
                json_file.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(code, 2, "{out}\n{err}");
    for says in [
        "line 2: sex 'q' is not one of m, w, d, x",
        "line 3: validFrom '2026-02-30' is not a date of the form YYYY-MM-DD",
        "line 5: employeeId is missing",
        "line 7: country 'XY' is not an ISO 3166-1 alpha-2 code",
        "line 8: type NEW needs the employee's master data",
        "line 9: type 'R-ST' is not an incident code",
        "line 3: validFrom '01.11.2026'",
    ] {
        assert!(err.contains(says), "{says}:\n{err}");
    }
    assert!(
        err.contains("bad.csv: 6 problems found, nothing was sent"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
    // a company the managing company does not handle, at its line
    let other = env.write(
        "other.json",
        "[\n{\"employeeId\": \"2\", \"validFrom\": \"2026-11-01\", \"type\": \"RST\",\n \"careflexId\": \"ffffffffffffffff\"}\n]",
    );
    let (code, _, err) = env.run(&["report", other.to_str().unwrap()], &[]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("line 2: careflexId ffffffffffffffff is not one of the companies"),
        "{err}"
    );
    let stats = env.sim.stats();
    assert_eq!(
        (stats.tokens_issued, stats.calls.len()),
        (0, 0),
        "nothing sent"
    );
    // --check reads and plans only
    let good = env.write("good.csv", &csv((0..150).map(|i| row(i, "", None))));
    let (code, out, _) = env
        .run(&["report", "--check", good.to_str().unwrap()], &[])
        .await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "150 incidents for careflexId {MAIN} in 2 requests"
        )),
        "{out}"
    );
    assert_eq!(env.sim.stats().tokens_issued, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_for_every_company_and_one_careflex_id_per_request() {
    let env = Env::start(clock::system()).await;
    // 120 for the managing company and 30 for the other, interleaved, in JSON
    let items: Vec<serde_json::Value> = (0..150)
        .map(|i| {
            let mut v = serde_json::json!({
                "employeeId": format!("E{i}"), "validFrom": "2026-11-01", "type": "RST"
            });
            if i % 5 == 1 {
                v["careflexId"] = OTHER.into();
            }
            v
        })
        .collect();
    let input = env.write(
        "incidents.json",
        &serde_json::to_string_pretty(&items).unwrap(),
    );
    let (code, out, err) = env.run(&["report", input.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let stats = env.sim.stats();
    assert_eq!(stats.tokens_issued, 1, "one token for both companies");
    let ids: Vec<(&str, usize)> = stats
        .imports
        .iter()
        .map(|i| (i.careflex_id.as_str(), i.incidents.len()))
        .collect();
    assert_eq!(ids, vec![(MAIN, 100), (MAIN, 20), (OTHER, 30)]);
    assert!(
        out.contains(&format!("request 3 of 3 for careflexId {OTHER}")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soap_fault_stops_the_run_in_one_sentence_naming_what_was_imported() {
    let env = Env::start(clock::system()).await;
    env.sim.set_faults(Faults {
        fault_next: Some((
            "Server".into(),
            "Internal error: the import queue is full".into(),
        )),
        fault_skip: 1,
        ..Faults::default()
    });
    let input = env.write("incidents.csv", &csv((0..250).map(|i| row(i, "", None))));
    let (code, out, err) = env.run(&["report", input.to_str().unwrap()], &[]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    let said: Vec<&str> = err.lines().filter(|l| l.starts_with("kim-cm:")).collect();
    assert_eq!(said.len(), 1, "one sentence: {err}");
    assert_eq!(
        said[0],
        format!(
            "kim-cm: CareFlex refused the report of 100 incidents for {MAIN} with a SOAP fault (SOAP-ENV:Server): Internal error: the import queue is full. {}: requests 1 to 1 were imported (importIds above) and must not be sent again; lines 102-251 were not imported: send them again once the cause is fixed",
            input.display()
        )
    );
    assert_eq!(count(&out, "importId"), 1);
    assert_eq!(count(&out, ": incident "), 100);
    // the third request was not sent; the fault was not tried again
    assert_eq!(env.sim.stats().batch_sizes, vec![100, 100]);
    let (_, listed, _) = env.run(&["imports"], &[]).await;
    assert_eq!(count(&listed, "importId"), 1, "{listed}");
}

/// In-process: the incidents of a CSV text.
fn incidents(n: usize) -> Vec<Incident> {
    let sex = vec!["m".to_string()];
    input::parse(
        &csv((0..n).map(|i| row(i, "", None))),
        &Rules {
            sex_values: &sex,
            today: time::macros::date!(2026 - 12 - 02),
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_used_for_its_12_hours_and_renewed_after_without_waiting() {
    let clock = ManualClock::new(datetime!(2026-12-02 08:00 UTC));
    let env = Env::start(clock.clone()).await;
    let client = CareflexClient::new(&env.cfg(), clock.clone()).unwrap();
    let list = incidents(3);
    let refs: Vec<&Incident> = list.iter().collect();
    // several reports, for both companies, over almost 12 hours: one token
    for (hours, id) in [(0, MAIN), (1, OTHER), (6, MAIN), (4, OTHER)] {
        clock.advance(Duration::from_secs(hours * 3600));
        let imp = client.new_incidents(id, &refs).await.unwrap();
        assert_eq!(imp.failed(), 0);
    }
    client
        .no_incident(OTHER, time::macros::date!(2026 - 11 - 30))
        .await
        .unwrap();
    assert_eq!(env.sim.stats().tokens_issued, 1);
    assert_eq!(client.token_requests(), 1);
    // 12 hours after the first: a new one, before the service would refuse the old
    clock.advance(Duration::from_secs(3600));
    client.new_incidents(MAIN, &refs).await.unwrap();
    let stats = env.sim.stats();
    assert_eq!((stats.tokens_issued, stats.bearer_refusals), (2, 0));
    assert!(clock.sleeps().is_empty(), "nothing waited");

    // a token the service forgot: 401, a new token, the same request once more
    env.sim.revoke_tokens();
    client.new_incidents(MAIN, &refs).await.unwrap();
    let stats = env.sim.stats();
    assert_eq!((stats.tokens_issued, stats.bearer_refusals), (3, 1));
    assert_eq!(stats.imports.len(), 6);

    // tokens the service refuses at once: one renewal, then a sentence
    env.sim.set_faults(Faults {
        token_lifetime: Some(Duration::ZERO),
        ..Faults::default()
    });
    env.sim.revoke_tokens();
    let e = client.new_incidents(MAIN, &refs).await.unwrap_err();
    assert!(matches!(e, CareflexError::Unauthorized), "{e}");
    assert!(e
        .to_string()
        .contains("refused a fresh access token as well (HTTP 401)"));
    let stats = env.sim.stats();
    assert_eq!((stats.tokens_issued, stats.bearer_refusals), (4, 3));
    assert_eq!(stats.imports.len(), 6, "nothing imported twice or more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_100_incidents_in_one_request_is_a_soap_fault_of_the_simulator() {
    let env = Env::start(clock::system()).await;
    let list = incidents(101);
    let refs: Vec<&Incident> = list.iter().collect();
    // a token as the client gets it, then a request kim-cm never sends
    let client = CareflexClient::new(&env.cfg(), clock::system()).unwrap();
    client.new_incidents(MAIN, &refs[..1]).await.unwrap();
    let token = env.sim.issued_tokens().pop().unwrap();
    let body = soap::new_incident_request(MAIN, APITOKEN, &refs);
    let connector = kim_cm::net::tls::connector(&env.sim.tls_ca, None).unwrap();
    let settings = kim_cm::http::client::HttpSettings {
        connector: Arc::new(connector),
        connect_timeout: Duration::from_secs(10),
        timeout: Duration::from_secs(10),
    };
    let mut auth =
        hyper::header::HeaderValue::from_bytes(format!("Bearer {token}").as_bytes()).unwrap();
    auth.set_sensitive(true);
    let (status, answer) = kim_cm::http::client::request(
        hyper::Method::POST,
        &kim_cm::http::url::HttpsUrl::parse(&env.sim.service_url()).unwrap(),
        vec![
            ("authorization", auth),
            (
                "content-type",
                hyper::header::HeaderValue::from_static("text/xml;charset=UTF-8"),
            ),
        ],
        Some(bytes::Bytes::from(body.as_bytes().to_vec())),
        &settings,
    )
    .await
    .unwrap();
    assert_eq!(status.as_u16(), 500);
    let f = soap::fault(&answer).unwrap();
    assert_eq!(f.code, "SOAP-ENV:Client");
    assert!(
        f.string.contains("101 incidents; at most 100"),
        "{}",
        f.string
    );
    assert_eq!(env.sim.stats().imports.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_output_or_logs_even_at_trace_level() {
    let env = Env::start(clock::system()).await;
    let mut rows: Vec<String> = (0..120).map(|i| row(i, "", None)).collect();
    rows[2] = row(2, "", Some("NEU"));
    let input = env.write("incidents.csv", &csv(rows));
    let trace = [("RUST_LOG", "trace")];
    let mut all = String::new();
    let (code, out, err) = env.run(&["report", input.to_str().unwrap()], &trace).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("TRACE") || err.contains("DEBUG"),
        "trace logging is on"
    );
    all.push_str(&out);
    all.push_str(&err);
    let (code, out, err) = env.run(&["none", "--month", "2025-10"], &trace).await;
    assert_eq!(code, 0, "{err}");
    all.push_str(&out);
    all.push_str(&err);
    // a wrong secret: the refusal as a sentence, the secret nowhere
    let pw = env.dir.path().join("secrets/careflex-password");
    std::fs::write(&pw, "wrong-Secret-99\n").unwrap();
    let (code, out, err) = env.run(&["none", "--month", "2025-09"], &trace).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("CareFlex refused the login (invalid_grant: invalid service user or secret)"),
        "{err}"
    );
    all.push_str(&out);
    all.push_str(&err);
    let tokens = env.sim.issued_tokens();
    assert_eq!(tokens.len(), 2);
    for secret in [PASSWORD, APITOKEN, "wrong-Secret-99"]
        .into_iter()
        .chain(tokens.iter().map(String::as_str))
    {
        assert!(!all.contains(secret), "a secret leaked");
    }
    // the token's halves alone either
    for t in &tokens {
        let (a, b) = t.split_once("%§").unwrap();
        assert!(
            !all.contains(a) && !all.contains(b),
            "part of a token leaked"
        );
    }
}

/// A measurement, not a check of behaviour: `cargo test --release --test
/// careflex -- --ignored --nocapture` prints the wall time of a report of
/// 10 000 incidents (a fifth with master data) through the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_a_report_of_10000_incidents() {
    let env = Env::start(clock::system()).await;
    let input = env.write("big.csv", &csv((0..10_000).map(|i| row(i, "", None))));
    let started = std::time::Instant::now();
    let (code, out, err) = env.run(&["report", input.to_str().unwrap()], &[]).await;
    let took = started.elapsed();
    assert_eq!(code, 0, "{err}");
    let stats = env.sim.stats();
    assert_eq!(stats.batch_sizes.len(), 100);
    assert!(stats.batch_sizes.iter().all(|n| *n == 100));
    println!(
        "10000 incidents ({} KiB of CSV): {} requests, {} token, {:.2} s wall, {} lines of output",
        std::fs::metadata(&input).unwrap().len() / 1024,
        stats.batch_sizes.len(),
        stats.tokens_issued,
        took.as_secs_f64(),
        out.lines().count()
    );
}
