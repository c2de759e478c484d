//! The NSP sidecar (issue 8, items 1-5 and 9-11) against the simulated NSP
//! (`src/testbed/nsp.rs`: SOSI STS, BRS, notification service). Where time
//! matters (card expiry and renewal, follow-up time limits) the client and
//! the simulator share a hand-driven clock, so nothing sleeps; the command
//! line is driven as an operator would, including a crash inside the
//! transaction that stores a page of notifications. `xmlsec1` checks the
//! signatures kim-cm makes as an independent implementation.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use kim_cm::sidecar::brs::client::{NspClient, RelationRequest};
use kim_cm::sidecar::brs::config::{BrsConfig, Followup};
use kim_cm::sidecar::brs::dsig::{Algorithm, SigningKey};
use kim_cm::sidecar::brs::idcard::{self, Organisation};
use kim_cm::sidecar::brs::ids::{OrgId, OrgKind};
use kim_cm::sidecar::brs::notifications::{self, ABORT_HOOK};
use kim_cm::sidecar::brs::{nsp_client, parse_time};
use kim_cm::sidecar::clock::{self, Clock, ManualClock};
use kim_cm::store::Store;
use kim_cm::testbed::nsp::{
    self, make_org_certificate, NspSettings, OrgFiles, RunningNsp, BRS_PATH, DEFAULT_CVR,
    NOTIFICATION_PATH,
};
use time::macros::datetime;
use time::OffsetDateTime;

const PATIENT: &str = "0101601951";
const PROFESSIONAL: &str = "0101601803";
const START: OffsetDateTime = datetime!(2026-12-02 10:00 UTC);

struct Bed {
    dir: tempfile::TempDir,
    sim: RunningNsp,
    org: OrgFiles,
    tls_ca: PathBuf,
}

impl Bed {
    async fn start(clock: Arc<dyn Clock>) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let tls = kim_cm::testbed::ca::make_tls_ca(&dir.path().join("tls"), &[]).unwrap();
        let org =
            make_org_certificate(&dir.path().join("org"), DEFAULT_CVR, "Lægehuset Testby").unwrap();
        let sim = nsp::start_with(&tls, 0, &org, DEFAULT_CVR, NspSettings::default(), clock)
            .await
            .unwrap();
        sim.set_relations(PATIENT, PROFESSIONAL, &["C"]);
        Bed {
            dir,
            sim,
            org,
            tls_ca: tls.ca_cert,
        }
    }

    fn section(&self, extra: &str) -> String {
        format!("{}{extra}", self.sim.config_toml())
    }

    fn config(&self, extra: &str) -> BrsConfig {
        let v: toml::Value = toml::from_str(&self.section(extra)).unwrap();
        let c: BrsConfig = v["brs"].clone().try_into().unwrap();
        c.check().unwrap();
        c
    }

    fn client(&self, clock: Arc<dyn Clock>, extra: &str) -> NspClient {
        nsp_client(&self.config(extra), clock).unwrap()
    }

    fn config_file(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("kim-cm.toml");
        std::fs::write(
            &path,
            format!(
                "[proxy]\ndata_dir = \"{}\"\n[upstream]\nca_file = \"{}\"\n[log]\nlevel = \"info\"\n{}",
                self.dir.path().join("data").display(),
                self.tls_ca.display(),
                self.section(extra)
            ),
        )
        .unwrap();
        path
    }

    fn store(&self) -> Store {
        Store::open(&self.dir.path().join("state.sqlite")).unwrap()
    }

    fn data_store(&self) -> Store {
        Store::open(&self.dir.path().join("data").join("state.sqlite")).unwrap()
    }
}

fn request(time_limit: OffsetDateTime) -> RelationRequest {
    RelationRequest {
        organisation: OrgId {
            kind: OrgKind::Ydernummer,
            value: "132435".into(),
        },
        patient_cpr: PATIENT.into(),
        professional_cpr: PROFESSIONAL.into(),
        lookup: None,
        time_limit,
        external_reference_id: "my-ref-1".into(),
        queryable_cvr: DEFAULT_CVR.into(),
        acceptable: vec!["A".into(), "B".into()],
        followup: Followup::All,
        authorisation_id: "DM712".into(),
        provider_name: "kim-cm".into(),
        provider_version: "0.1".into(),
        provider_vendor: "kim-cm".into(),
    }
}

/// Runs the binary (blocking, off the runtime's workers).
async fn kimcm(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut c = Command::new(common::kimcm::bin());
        c.args(&args).env("NO_COLOR", "1").env_remove("RUST_LOG");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    })
    .await
    .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_is_exchanged_at_the_sts_embedded_byte_for_byte_cached_and_renewed_before_it_expires(
) {
    let clock = ManualClock::new(START);
    let bed = Bed::start(clock.clone()).await;
    bed.sim.set_card_lifetime(Duration::from_secs(3600));
    let client = bed.client(clock.clone(), "renew_card_before_secs = 300\n");
    let limit = START + Duration::from_secs(30 * 86400);
    client.relation(&request(limit)).await.unwrap();
    let stats = bed.sim.stats();
    assert_eq!(stats.cards_issued, 1);
    // the STS's card, as the STS sent it, is in the service request
    assert!(stats.last_envelope.contains(&stats.issued_cards[0]));
    // reused while it has more than five minutes left
    clock.advance(Duration::from_secs(3600 - 301));
    client.relation(&request(limit)).await.unwrap();
    assert_eq!(bed.sim.stats().cards_issued, 1);
    // renewed when it has less
    clock.advance(Duration::from_secs(2));
    client.relation(&request(limit)).await.unwrap();
    let stats = bed.sim.stats();
    assert_eq!(stats.cards_issued, 2);
    assert!(stats.last_envelope.contains(&stats.issued_cards[1]));
    assert_eq!(client.cards.issued(), 2);
    assert!(stats.sts_refusals.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_outlives_the_process_until_it_is_refused_or_about_to_expire() {
    let clock = ManualClock::new(START);
    let bed = Bed::start(clock.clone()).await;
    let store = Arc::new(bed.store());
    let client = || {
        let mut c = bed.client(clock.clone(), "");
        c.cards = c.cards.with_store(store.clone()).unwrap();
        c
    };
    let limit = START + Duration::from_secs(86400);
    client().relation(&request(limit)).await.unwrap();
    // another process: the stored card
    let second = client();
    second.relation(&request(limit)).await.unwrap();
    assert_eq!(
        (bed.sim.stats().cards_issued, second.cards.issued()),
        (1, 0)
    );
    // refused: replaced, and the replacement is what is stored
    bed.sim.fail_next(BRS_PATH, "expired_idcard", 1);
    second.relation(&request(limit)).await.unwrap();
    assert_eq!(bed.sim.stats().cards_issued, 2);
    client().relation(&request(limit)).await.unwrap();
    assert_eq!(bed.sim.stats().cards_issued, 2);
    let stats = bed.sim.stats();
    assert!(stats.last_envelope.contains(&stats.issued_cards[1]));
    // about to expire: a new one
    clock.advance(Duration::from_secs(24 * 3600 - 200));
    client().relation(&request(limit)).await.unwrap();
    assert_eq!(bed.sim.stats().cards_issued, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relation_request_carries_every_field_and_the_answer_and_its_follow_up_are_read() {
    let clock = ManualClock::new(START);
    let bed = Bed::start(clock.clone()).await;
    let client = bed.client(clock.clone(), "");
    let limit = START + Duration::from_secs(3 * 86400);
    let mut req = request(limit);
    req.lookup = Some((START - Duration::from_secs(86400), START));
    let a = client.relation(&req).await.unwrap();
    assert!(!a.sufficient && a.followup_ordered);
    assert_eq!(a.actual, ["C"]);
    assert_eq!(a.external_reference_id, "my-ref-1");
    assert_eq!(a.unique_reference_id.len(), 36);
    let env = bed.sim.stats().last_envelope;
    for part in [
        "<OrganisationIdentifier><DoctorOrganisationIdentifier>132435</DoctorOrganisationIdentifier></OrganisationIdentifier>",
        "<PatientCpr>0101601951</PatientCpr><HealthProfessionalCpr>0101601803</HealthProfessionalCpr>",
        // Copenhagen in winter: +01:00, the guide's format
        "<RelationLookupTimeInterval><start>2026-12-01T11:00:00+01:00</start><end>2026-12-02T11:00:00+01:00</end></RelationLookupTimeInterval>",
        "<TimeLimit>2026-12-05T11:00:00+01:00</TimeLimit><ExternalReferenceId>my-ref-1</ExternalReferenceId>",
        "<QueryableCvr>31908574</QueryableCvr><AcceptableRelations><Relation>A</Relation><Relation>B</Relation></AcceptableRelations>",
        "<FollowupRelations><All>All</All></FollowupRelations><AuthorisationIdentifier>DM712</AuthorisationIdentifier>",
        "<ServiceProvider><Name>kim-cm</Name><Version>0.1</Version><Vendor>kim-cm</Vendor></ServiceProvider>",
        "<medcom:SecurityLevel>3</medcom:SecurityLevel>",
        "<medcom:FlowStatus>flow_running</medcom:FlowStatus><medcom:RequireNonRepudiationReceipt>no</medcom:RequireNonRepudiationReceipt>",
        "<wsu:Created>2026-12-02T10:00:00Z</wsu:Created>",
    ] {
        assert!(env.contains(part), "{part} not in {env}");
    }
    // a relation that suffices: no follow-up
    bed.sim.set_relations(PATIENT, PROFESSIONAL, &["A"]);
    let a = client.relation(&request(limit)).await.unwrap();
    assert!(a.sufficient && !a.followup_ordered);
    // the first follow-up becomes a notification after its time limit
    let store = bed.store();
    let polled = notifications::poll(&client, &store, &mut |_| {})
        .await
        .unwrap();
    assert!(polled.new.is_empty());
    clock.advance(Duration::from_secs(3 * 86400));
    let polled = notifications::poll(&client, &store, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(polled.new.len(), 1);
    let n = &polled.new[0];
    assert_eq!(n.external_reference_id, "my-ref-1");
    assert_eq!(n.organisation, "ydernummer 132435");
    assert_eq!(
        (n.patient_cpr.as_str(), n.actual_relations.clone()),
        (PATIENT, vec!["C".to_string()])
    );
    assert_eq!(n.time_limit, "2026-12-05T11:00:00+01:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_card_costs_one_fresh_card_and_one_retry_and_never_more() {
    let clock = ManualClock::new(START);
    let bed = Bed::start(clock.clone()).await;
    let client = bed.client(clock.clone(), "");
    let limit = START + Duration::from_secs(86400);
    // once: a fresh card, the call again, success
    bed.sim.fail_next(BRS_PATH, "expired_idcard", 1);
    client.relation(&request(limit)).await.unwrap();
    assert_eq!(bed.sim.stats().cards_issued, 2);
    assert_eq!(bed.sim.stats().faults, ["expired_idcard"]);
    // twice: the second refusal is reported, no third card
    bed.sim.fail_next(NOTIFICATION_PATH, "expired_idcard", 2);
    let e = client.notifications(0).await.unwrap_err().to_string();
    assert!(
        e.contains("also a freshly issued one") && e.contains("clock"),
        "{e}"
    );
    assert_eq!(bed.sim.stats().cards_issued, 3);
    // the STS's clock is off: every card it issues is expired already
    clock.advance(Duration::from_secs(24 * 3600));
    bed.sim.issue_expired_cards(true);
    let e = client
        .relation(&request(limit))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("[expired_idcard]"), "{e}");
    assert_eq!(bed.sim.stats().cards_issued, 5);
    // a card that ran out on the client's clock is never sent
    bed.sim.issue_expired_cards(false);
    client.relation(&request(limit)).await.unwrap();
    let before = bed.sim.stats().faults.len();
    clock.advance(Duration::from_secs(24 * 3600));
    client.relation(&request(limit)).await.unwrap();
    assert_eq!(bed.sim.stats().faults.len(), before);
    assert_eq!(bed.sim.stats().cards_issued, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_becomes_a_sentence_an_operator_can_act_on() {
    let clock = ManualClock::new(START);
    let bed = Bed::start(clock.clone()).await;
    let client = bed.client(clock.clone(), "");
    let limit = START + Duration::from_secs(86400);
    for (code, times, says) in [
        (
            "processing_problem",
            1,
            "retrying the same request will not help",
        ),
        ("missing_required_header", 1, "strips SOAP headers"),
        ("security_level_failed", 1, "level-3 system cards"),
        ("invalid_idcard", 2, "also a freshly issued one"),
        ("not_authorized", 1, "ask the NSP operator to whitelist it"),
    ] {
        bed.sim.fail_next(BRS_PATH, code, times);
        let e = client
            .relation(&request(limit))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("[{code}]")) && e.contains(says),
            "{code}: {e}"
        );
        assert!(e.starts_with("BRS "), "{e}");
    }
    // not whitelisted for real
    bed.sim.whitelist(DEFAULT_CVR, false);
    let e = client.notifications(0).await.unwrap_err().to_string();
    assert!(
        e.contains("refused CVR 31908574") && e.contains("[not_authorized]"),
        "{e}"
    );
    bed.sim.whitelist(DEFAULT_CVR, true);
    // the STS refuses a card signed by a key it does not trust
    let other = make_org_certificate(&bed.dir.path().join("other"), DEFAULT_CVR, "Andet").unwrap();
    let extra = format!(
        "certificate_file = {:?}\nkey_file = {:?}\n",
        other.cert.display().to_string(),
        other.key.display().to_string()
    );
    let section = bed
        .section("")
        .lines()
        .filter(|l| !l.starts_with("certificate_file") && !l.starts_with("key_file"))
        .collect::<Vec<_>>()
        .join("\n");
    let v: toml::Value = toml::from_str(&format!("{section}\n{extra}")).unwrap();
    let cfg: BrsConfig = v["brs"].clone().try_into().unwrap();
    let untrusted = nsp_client(&cfg, clock.clone()).unwrap();
    let e = untrusted
        .relation(&request(limit))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SOSI STS refused the ID card") && e.contains("trusted OCES CA"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_page_by_100_are_stored_once_and_the_cursor_follows_the_pages() {
    let clock = ManualClock::new(START);
    let bed = Bed::start(clock.clone()).await;
    let client = bed.client(clock.clone(), "");
    let store = bed.store();
    let mine = bed.sim.add_notifications(250, DEFAULT_CVR);
    bed.sim.add_notifications(3, "25520041"); // someone else's
    let mut seen = Vec::new();
    let p = notifications::poll(&client, &store, &mut |n| seen.push(n.serial))
        .await
        .unwrap();
    assert_eq!(p.pages, 3);
    assert_eq!(seen, mine);
    assert_eq!(bed.sim.stats().notification_queries, [0, 1100, 1200]);
    assert_eq!(p.next_serial, 1250);
    assert_eq!(notifications::stored_serials(&store).unwrap(), mine);
    // nothing new: one query from the cursor, nothing stored
    let p = notifications::poll(&client, &store, &mut |_| panic!("nothing is new"))
        .await
        .unwrap();
    assert_eq!((p.pages, p.new.len()), (1, 0));
    // exactly 100 more: a full page, then an empty one
    let more = bed.sim.add_notifications(100, DEFAULT_CVR);
    let p = notifications::poll(&client, &store, &mut |_| {})
        .await
        .unwrap();
    assert_eq!((p.pages, p.new.len()), (2, 100));
    assert_eq!(p.next_serial, more[99] + 1);
    // a cursor set back (a restored backup): the same pages again, nothing twice
    kim_cm::sidecar::cursor::set(
        &store,
        notifications::CURSOR_SERVICE,
        notifications::CURSOR_SERIAL,
        "0",
        START,
    )
    .unwrap();
    let p = notifications::poll(&client, &store, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(p.new.len(), 0);
    assert_eq!(notifications::stored_serials(&store).unwrap().len(), 350);
}

/// `xmlsec1 --verify` of `xml` with the element `Assertion`'s `id` as its id.
fn xmlsec1_verify(dir: &Path, name: &str, xml: &str, trusted: &Path) -> (bool, String) {
    let file = dir.join(name);
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("xmlsec1")
        .args([
            "--verify",
            "--id-attr:id",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        ])
        .arg("--trusted-pem")
        .arg(trusted)
        .arg(&file)
        .output()
        .expect("xmlsec1 (Debian package xmlsec1) is installed");
    (out.status.success(), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmlsec1_verifies_the_cards_kim_cm_signs_and_refuses_one_altered_after_signing() {
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let bed = Bed::start(clock.clone()).await;
    let org = Organisation {
        cvr: DEFAULT_CVR.into(),
        name: "Lægehuset <Testby> & Co \"ApS\"".into(),
        it_system: "kim-cm".into(),
    };
    for alg in [Algorithm::RsaSha1, Algorithm::RsaSha256] {
        let key = SigningKey::load(&bed.org.cert, &bed.org.key, alg).unwrap();
        let card = idcard::build_system_card(&org, &key, clock.now(), "card-1").unwrap();
        let (ok, why) = xmlsec1_verify(bed.dir.path(), "card.xml", &card, &bed.org.ca_cert);
        assert!(ok, "{alg:?}: {why}\n{card}");
        let altered = card.replace(">31908574<", ">25520041<");
        assert_ne!(altered, card);
        let (ok, _) = xmlsec1_verify(bed.dir.path(), "altered.xml", &altered, &bed.org.ca_cert);
        assert!(
            !ok,
            "{alg:?}: xmlsec1 accepted a card altered after signing"
        );
        // the same inside an envelope, as it travels to the STS
        let envelope = idcard::sts_request(&card, clock.now());
        let (ok, why) = xmlsec1_verify(
            bed.dir.path(),
            "sts-request.xml",
            &envelope,
            &bed.org.ca_cert,
        );
        assert!(ok, "{alg:?} in the envelope: {why}");
    }
    // the card the simulated STS signs, which a service request carries
    let client = bed.client(clock.clone(), "");
    client
        .relation(&request(clock.now() + Duration::from_secs(86400)))
        .await
        .unwrap();
    let sts_pem = bed.dir.path().join("sts.pem");
    std::fs::write(&sts_pem, bed.sim.sts_certificate().to_pem().unwrap()).unwrap();
    let env = bed.sim.stats().last_envelope;
    let (ok, why) = xmlsec1_verify(bed.dir.path(), "service-request.xml", &env, &sts_pem);
    assert!(ok, "{why}");
}

const RELATION_ARGS: [&str; 10] = [
    "--patient",
    PATIENT,
    "--professional",
    "010160-1803",
    "--org",
    "ydernummer:132435",
    "--authorisation",
    "DM712",
    "--time-limit",
    "30d",
];

fn args(first: &[&str], config: &Path, rest: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = first.iter().map(|s| s.to_string()).collect();
    v.push("--config".into());
    v.push(config.display().to_string());
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brs_relation_from_the_command_line_with_no_secret_in_the_trace_log() {
    let bed = Bed::start(clock::system()).await;
    let config = bed.config_file("");
    let out = kimcm(
        args(&["brs", "relation"], &config, &RELATION_ARGS),
        vec![("RUST_LOG", "trace".into())],
    )
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("sufficient relation:   no"), "{stdout}");
    assert!(stdout.contains("actual relations:      C"), "{stdout}");
    assert!(stdout.contains("follow-up ordered:     yes"), "{stdout}");
    assert!(
        stdout.contains("unique reference id:   ") && stdout.contains("external reference id: ")
    );
    assert!(
        stderr.contains("TRACE") && stderr.contains("SOAP POST"),
        "a trace log was written: {stderr}"
    );
    // not one line of the private key, at trace level
    let key = std::fs::read_to_string(&bed.org.key).unwrap();
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !stderr.contains(line) && !stdout.contains(line),
            "key material in the output"
        );
    }
    assert!(!stderr.contains("PRIVATE KEY"));
    // nor the ID card, a bearer token for up to 24 hours
    let card = bed.sim.stats().issued_cards[0].clone();
    let signature = card
        .split("SignatureValue>")
        .nth(1)
        .unwrap()
        .trim_end_matches("</ds:");
    assert!(!stderr.contains(signature) && !stdout.contains(signature));
    // the timestamps the binary sent
    let env = bed.sim.stats().last_envelope;
    let limit = env
        .split("<TimeLimit>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    assert_eq!(limit.len(), 25, "{limit}");
    assert!(parse_time(limit).is_some());

    // invalid identifiers: nothing is sent, exit 2
    let calls = bed.sim.stats().brs_calls;
    for (flag, bad, says) in [
        ("--patient", "3102601951", "does not start with a date"),
        ("--org", "sor:952581000016001", "check digit"),
        ("--org", "1234", "say which kind"),
        ("--authorisation", "dm7", "five characters"),
    ] {
        let mut rest: Vec<&str> = RELATION_ARGS.to_vec();
        let i = rest.iter().position(|a| *a == flag).unwrap();
        rest[i + 1] = bad;
        let out = kimcm(args(&["brs", "relation"], &config, &rest), vec![]).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {bad}: {err}");
        assert!(
            err.contains(says) && err.contains("nothing was sent"),
            "{err}"
        );
    }
    let out = kimcm(
        args(
            &["brs", "relation"],
            &config,
            &[&RELATION_ARGS[..], &["--queryable-cvr", "31908575"]].concat(),
        ),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(bed.sim.stats().brs_calls, calls);

    // a refusal: exit 1 and a sentence
    bed.sim.whitelist(DEFAULT_CVR, false);
    let out = kimcm(args(&["brs", "relation"], &config, &RELATION_ARGS), vec![]).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not whitelisted")
            && err.lines().filter(|l| l.starts_with("kim-cm:")).count() == 1,
        "{err}"
    );

    // no [brs]: exit 2
    let plain = bed.dir.path().join("plain.toml");
    let zsr = "[zsr]\nauthority_url = \"https://localhost/auth\"\nbase_url = \"https://localhost/ApiGateway\"\nclient_id = \"c\"\nclient_secret_file = \"s\"\nusername = \"u\"\npassword_file = \"p\"\n";
    std::fs::write(
        &plain,
        format!(
            "[proxy]\ndata_dir = \"/tmp\"\n[upstream]\nca_file = \"{}\"\n{zsr}",
            bed.tls_ca.display()
        ),
    )
    .unwrap();
    let out = kimcm(args(&["brs", "notifications"], &plain, &[]), vec![]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

fn printed_serials(stdout: &str) -> Vec<i64> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("notification "))
        .filter_map(|l| l.split(':').next()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_inside_the_page_transaction_loses_and_doubles_no_notification() {
    let bed = Bed::start(clock::system()).await;
    let config = bed.config_file("");
    let all = bed.sim.add_notifications(250, DEFAULT_CVR);
    // the process aborts in page 2's transaction: its notifications were
    // written, its cursor not yet
    let out = kimcm(
        args(&["brs", "notifications"], &config, &[]),
        vec![(ABORT_HOOK, "2".into())],
    )
    .await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("aborting inside the transaction of page 2"));
    let first = printed_serials(&text(&out.stdout));
    assert_eq!(first, all[..100]);
    {
        let store = bed.data_store();
        assert_eq!(notifications::stored_serials(&store).unwrap(), all[..100]);
        assert_eq!(notifications::next_serial(&store).unwrap(), all[100]);
    }
    // the next run goes on from page 2
    let out = kimcm(args(&["brs", "notifications"], &config, &[]), vec![]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("150 new notifications in 2 pages"),
        "{stderr}"
    );
    let second = printed_serials(&stdout);
    let mut union: Vec<i64> = first.iter().chain(&second).copied().collect();
    assert_eq!(union.len(), 250, "nothing printed twice");
    union.sort();
    assert_eq!(union, all);
    assert_eq!(
        notifications::stored_serials(&bed.data_store()).unwrap(),
        all,
        "every notification stored once"
    );
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .contains("patient 0101601951, professional 0101601803, ydernummer 132435"),
        "{stdout}"
    );
    // and again: nothing new
    let out = kimcm(args(&["brs", "notifications"], &config, &[]), vec![]).await;
    assert!(text(&out.stdout).is_empty());
    assert!(text(&out.stderr).contains("0 new notifications in 1 page;"));
    assert_eq!(
        bed.sim.stats().cards_issued,
        1,
        "one card for the three runs"
    );
    let distinct: HashSet<i64> = bed.sim.stats().notification_queries.into_iter().collect();
    assert!(distinct.contains(&all[100]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kim_cms_verifier_accepts_a_pretty_printed_card_signed_by_xmlsec1_and_refuses_it_altered() {
    // the other direction: xmlsec1 signs, kim-cm's exclusive C14N (on XML
    // that is not canonical: declaration, indentation, an unused and a
    // hoisted namespace, self-closing tags) must come to the same bytes
    let clock = ManualClock::new(START);
    let bed = Bed::start(clock).await;
    let template = r##"<?xml version="1.0" encoding="UTF-8"?>
<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:unused="urn:unused" Version="2.0" id="IDCard">
  <saml:Issuer>another implementation &amp; co</saml:Issuer>
  <saml:Subject>
    <saml:NameID Format='medcom:cvrnumber'>31908574</saml:NameID>
  </saml:Subject>
  <saml:Conditions NotOnOrAfter="2026-12-03T10:00:00Z" NotBefore="2026-12-02T09:55:00Z"/>
  <ds:Signature id="OCESSignature">
    <ds:SignedInfo>
      <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
      <ds:SignatureMethod Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"/>
      <ds:Reference URI="#IDCard">
        <ds:Transforms>
          <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
          <ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
        </ds:Transforms>
        <ds:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/>
        <ds:DigestValue></ds:DigestValue>
      </ds:Reference>
    </ds:SignedInfo>
    <ds:SignatureValue/>
    <ds:KeyInfo><ds:X509Data/></ds:KeyInfo>
  </ds:Signature>
</saml:Assertion>
"##;
    let dir = bed.dir.path();
    std::fs::write(dir.join("template.xml"), template).unwrap();
    let out = Command::new("xmlsec1")
        .args([
            "--sign",
            "--id-attr:id",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        ])
        .arg("--privkey-pem")
        .arg(format!(
            "{},{}",
            bed.org.key.display(),
            bed.org.cert.display()
        ))
        .arg("--output")
        .arg(dir.join("signed.xml"))
        .arg(dir.join("template.xml"))
        .output()
        .expect("xmlsec1 (Debian package xmlsec1) is installed");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let signed = std::fs::read_to_string(dir.join("signed.xml")).unwrap();
    let doc = roxmltree::Document::parse(&signed).unwrap();
    let signer = kim_cm::sidecar::brs::dsig::verify_enveloped(&doc, "IDCard").unwrap();
    let org = openssl::x509::X509::from_pem(&std::fs::read(&bed.org.cert).unwrap()).unwrap();
    assert_eq!(signer.to_der().unwrap(), org.to_der().unwrap());
    let altered = signed.replace("&amp; co", "&amp; cie");
    let doc = roxmltree::Document::parse(&altered).unwrap();
    let e = kim_cm::sidecar::brs::dsig::verify_enveloped(&doc, "IDCard").unwrap_err();
    assert!(e.0.contains("changed after signing"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_starts_the_simulator_and_its_config_section_works_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let tls = kim_cm::testbed::ca::make_tls_ca(&dir.path().join("tls"), &[]).unwrap();
    let sim = nsp::start(&dir.path().join("nsp"), &tls, 0).await.unwrap();
    let config = dir.path().join("kim-cm.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\ndata_dir = \"{}\"\n[upstream]\nca_file = \"{}\"\n{}",
            dir.path().join("data").display(),
            tls.ca_cert.display(),
            sim.config_toml()
        ),
    )
    .unwrap();
    let cfg = kim_cm::config::Config::load(&config).unwrap();
    assert!(cfg.has_sidecar() && cfg.brs.is_some());
    let out = kimcm(args(&["brs", "relation"], &config, &RELATION_ARGS), vec![]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("actual relations:      C"));
    let out = kimcm(args(&["brs", "notifications"], &config, &[]), vec![]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("0 new notifications"));
    // a second start in the same folder keeps the organisation's certificate
    let cert = std::fs::read(&sim.org.cert).unwrap();
    drop(sim);
    let again = nsp::start(&dir.path().join("nsp"), &tls, 0).await.unwrap();
    assert_eq!(std::fs::read(&again.org.cert).unwrap(), cert);
}
