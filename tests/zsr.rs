//! The ZSR register mirror (issue 7, items 1-5 and 10) against the simulated
//! SASIS ZSR-Webservice (`src/testbed/zsr.rs`). Where time matters (the rate
//! rules, the 503 pause, the batch window, token expiry) the client and the
//! simulator share a hand-driven clock, so nothing sleeps; the command line is
//! driven as the admin would, including a crash in the middle of a sync.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kim_cm::sidecar::clock::{Clock, ManualClock};
use kim_cm::sidecar::zsr::api::ZsrApi;
use kim_cm::sidecar::zsr::config::{OutsideWindow, ZsrConfig};
use kim_cm::sidecar::zsr::mirror;
use kim_cm::sidecar::zsr::number::RemainderZero;
use kim_cm::sidecar::zsr::sync::{sync, Summary, SyncOptions};
use kim_cm::store::Store;
use kim_cm::testbed::zsr::{generate, Credentials, Entry, Faults, ZsrSim};
use time::macros::datetime;
use time::OffsetDateTime;

const CLIENT_SECRET: &str = "zsr-client-Secret-81";
const PASSWORD: &str = "zsr-user-Passw0rd-17";

/// 23:00 in Zurich (winter): inside the batch window.
const IN_WINDOW: OffsetDateTime = datetime!(2026-12-02 22:00 UTC);
/// 11:00 in Zurich: outside it.
const OUTSIDE: OffsetDateTime = datetime!(2026-12-02 10:00 UTC);

fn creds() -> Credentials {
    Credentials {
        client_id: "kim-cm-praxis".into(),
        client_secret: CLIENT_SECRET.into(),
        username: "praxis@example.ch".into(),
        password: PASSWORD.into(),
    }
}

struct Bed {
    dir: tempfile::TempDir,
    sim: ZsrSim,
    ca: PathBuf,
}

impl Bed {
    /// A simulator with `n` numbers on `clock`, inside the current runtime.
    fn start(n: usize, clock: Arc<dyn Clock>) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let tls = kim_cm::testbed::ca::make_tls_ca(&dir.path().join("tls"), &[]).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let sim = ZsrSim::start(listener, &tls, clock, creds(), generate(n)).unwrap();
        // owner-only, as kim-cm demands of secret files
        kim_cm::testbed::ca::write_private(
            &dir.path().join("secret"),
            format!("{CLIENT_SECRET}\n").as_bytes(),
        )
        .unwrap();
        kim_cm::testbed::ca::write_private(
            &dir.path().join("password"),
            format!("{PASSWORD}\n").as_bytes(),
        )
        .unwrap();
        Bed {
            ca: tls.ca_cert.clone(),
            dir,
            sim,
        }
    }

    /// The `[zsr]` section, with `extra` lines.
    fn section(&self, extra: &str) -> String {
        format!(
            "[zsr]\nauthority_url = \"{}\"\nbase_url = \"{}\"\nclient_id = \"kim-cm-praxis\"\n\
             client_secret_file = \"{}\"\nusername = \"praxis@example.ch\"\npassword_file = \"{}\"\n\
             ca_file = \"{}\"\n{extra}",
            self.sim.authority_url(),
            self.sim.base_url(),
            self.dir.path().join("secret").display(),
            self.dir.path().join("password").display(),
            self.ca.display()
        )
    }

    fn config(&self, extra: &str) -> ZsrConfig {
        let v: toml::Value = toml::from_str(&self.section(extra)).unwrap();
        v["zsr"].clone().try_into().unwrap()
    }

    /// A whole kim-cm config file with `[zsr]`.
    fn config_file(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("kim-cm.toml");
        std::fs::write(
            &path,
            format!(
                "[proxy]\ndata_dir = \"{}\"\n[upstream]\nca_file = \"{}\"\n{}",
                self.dir.path().join("data").display(),
                self.ca.display(),
                self.section(extra)
            ),
        )
        .unwrap();
        path
    }

    fn store(&self) -> Store {
        Store::open(&self.dir.path().join("state.sqlite")).unwrap()
    }
}

/// Runs one sync in-process; the sentences it said, and its summary.
async fn run(
    api: &ZsrApi,
    store: &Store,
    full: bool,
    outside: OutsideWindow,
) -> (Vec<String>, Result<Summary, String>) {
    let said = Mutex::new(Vec::new());
    let say = |s: &str| said.lock().unwrap().push(s.to_string());
    let opts = SyncOptions {
        full,
        outside,
        progress: false,
    };
    let r = sync(api, store, opts, RemainderZero::Z, &say)
        .await
        .map_err(|e| e.to_string());
    (said.into_inner().unwrap(), r)
}

/// The mirror's active records are exactly what the service delivers.
fn assert_mirrors(store: &Store, sim: &ZsrSim) {
    let mine: BTreeMap<String, serde_json::Value> =
        mirror::active_records(store).unwrap().into_iter().collect();
    let theirs = sim.delivered();
    assert_eq!(mine.len(), theirs.len());
    for (n, r) in &theirs {
        assert_eq!(mine.get(n), Some(r), "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_of_20000_numbers_and_a_delta_after_mutations_mirror_the_service_exactly() {
    let clock = ManualClock::new(IN_WINDOW);
    let bed = Bed::start(20_000, clock.clone());
    let api = ZsrApi::new(&bed.config(""), clock.clone()).unwrap();
    let store = bed.store();

    let (said, s) = run(&api, &store, false, OutsideWindow::Slow).await;
    let s = s.unwrap();
    assert!(s.full, "the first sync is full");
    assert!(said[0].contains("in the batch window"), "{said:?}");
    assert_eq!((s.listed, s.applied.new, s.ended), (20_000, 20_000, 0));
    // the minimum: 20 list pages of 1000, and the numbers of each kind in
    // requests of 500
    let k = bed
        .sim
        .delivered()
        .keys()
        .filter(|n| n.ends_with('K'))
        .count() as u64;
    let minimum = k.div_ceil(500) + (20_000 - k).div_ceil(500);
    assert_eq!((s.list_pages, s.detail_requests), (20, minimum));
    assert_mirrors(&store, &bed.sim);

    // a day later: 30 new numbers, 10 changed, 3 with an element cancelled,
    // 5 suspended for over 10 years
    clock.advance(Duration::from_secs(24 * 3600));
    let today = bed.sim.today();
    let numbers: Vec<String> = bed.sim.delivered().keys().cloned().collect();
    bed.sim.mutate(|data| {
        let fresh: Vec<(String, Entry)> = generate(20_030)
            .into_iter()
            .filter(|(k, _)| !data.contains_key(k))
            .collect();
        for (k, e) in fresh {
            data.insert(
                k,
                Entry {
                    modified: today,
                    ..e
                },
            );
        }
        for n in numbers.iter().filter(|n| !n.ends_with('K')).take(10) {
            let e = data.get_mut(n).unwrap();
            e.record["correspondenceParty"]["name"] = "Praxis am See".into();
            e.record["newlyAddedField"] = serde_json::json!({"v": 2});
            e.modified = today;
        }
        for n in numbers
            .iter()
            .filter(|n| !n.ends_with('K'))
            .skip(10)
            .take(3)
        {
            let e = data.get_mut(n).unwrap();
            e.record["validityPeriods"]
                .as_array_mut()
                .unwrap()
                .remove(0);
            e.modified = today;
        }
        for n in numbers.iter().skip(100).take(5) {
            data.get_mut(n).unwrap().gone = true;
        }
    });
    let (_, s) = run(&api, &store, false, OutsideWindow::Slow).await;
    let s = s.unwrap();
    assert!(!s.full);
    assert_eq!(s.applied.new, 30);
    assert_eq!(s.applied.changed, 13);
    assert_eq!(s.applied.deleted, 3, "three cancelled validity periods");
    assert_eq!(s.ended, 5);
    assert!(
        s.detail_requests <= 4,
        "a delta fetches only what changed: {s:?}"
    );
    assert_mirrors(&store, &bed.sim);
    let ended = mirror::get(&store, &numbers[100]).unwrap().unwrap();
    assert!(!ended.active && ended.ended_at.is_some());
    let summary = s.to_string();
    for line in [
        "new                30",
        "changed            13",
        "ended              5",
        "deleted elements   3",
    ] {
        assert!(summary.contains(line), "{summary}");
    }
}

/// The seconds of each API request the simulator saw.
fn request_times(sim: &ZsrSim) -> Vec<OffsetDateTime> {
    sim.stats().requests.iter().map(|r| r.at).collect()
}

/// The most requests within any 60 seconds.
fn busiest_minute(times: &[OffsetDateTime]) -> usize {
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t < times[i] + Duration::from_secs(60))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_at_most_50_a_minute_and_after_a_503_five_minutes_of_pause() {
    let clock = ManualClock::new(OUTSIDE);
    let bed = Bed::start(6_000, clock.clone());
    // the 11th API request is refused with 503
    bed.sim.set_faults(Faults {
        status_at: [(10, 503)].into(),
        ..Faults::default()
    });
    let api = ZsrApi::new(&bed.config("page_size = 100\n"), clock.clone()).unwrap();
    let store = bed.store();
    let (said, s) = run(&api, &store, false, OutsideWindow::Slow).await;
    let s = s.unwrap();
    assert!(
        said[0].contains(
            "outside the batch window 22:00-04:00 Europe/Zurich: at most 50 requests a minute"
        ),
        "{said:?}"
    );
    // 60 list pages and the numbers of each kind in requests of 500, plus the
    // one refused
    let k = bed
        .sim
        .delivered()
        .keys()
        .filter(|n| n.ends_with('K'))
        .count() as u64;
    let details = k.div_ceil(500) + (6_000 - k).div_ceil(500);
    assert_eq!(
        (s.list_pages, s.detail_requests, s.busy_pauses),
        (60, details, 1)
    );
    let times = request_times(&bed.sim);
    assert_eq!(times.len() as u64, 60 + details + 1);
    assert!(busiest_minute(&times) <= 50, "{}", busiest_minute(&times));
    let sleeps = clock.sleeps();
    assert!(sleeps.contains(&Duration::from_secs(300)), "{sleeps:?}");
    assert!(
        times[11] - times[10] >= Duration::from_secs(300),
        "the request after the 503 came {} later",
        times[11] - times[10]
    );
    assert_mirrors(&store, &bed.sim);
    // nothing in the window: the whole run is slow, about a minute and a half plus the pause
    assert!(clock.now() - OUTSIDE >= Duration::from_secs(300 + 60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_outside_the_window_waits_for_it_when_told_to() {
    let clock = ManualClock::new(OUTSIDE);
    let bed = Bed::start(1_000, clock.clone());
    let api = ZsrApi::new(&bed.config("outside_window = \"wait\"\n"), clock.clone()).unwrap();
    let store = bed.store();
    let (said, s) = run(&api, &store, false, OutsideWindow::Wait).await;
    s.unwrap();
    assert_eq!(
        said[0],
        "outside the batch window 22:00-04:00 Europe/Zurich: waiting 660 minutes until it opens"
    );
    assert!(said[1].contains("in the batch window"), "{said:?}");
    // 22:00 in Zurich is 21:00 UTC in December
    assert_eq!(clock.sleeps()[0], Duration::from_secs(11 * 3600));
    assert!(request_times(&bed.sim)[0] >= datetime!(2026-12-02 21:00 UTC));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_and_rotate_in_the_middle_of_a_sync_and_a_refused_one_is_renewed_once() {
    let clock = ManualClock::new(OUTSIDE);
    let bed = Bed::start(6_000, clock.clone());
    // tokens of two minutes; the 30th request is refused as unauthorised
    bed.sim.set_faults(Faults {
        token_lifetime: Some(Duration::from_secs(120)),
        status_at: [(30, 401)].into(),
        ..Faults::default()
    });
    let api = ZsrApi::new(&bed.config("page_size = 100\n"), clock.clone()).unwrap();
    let store = bed.store();
    let (_, s) = run(&api, &store, false, OutsideWindow::Slow).await;
    s.unwrap();
    let st = bed.sim.stats();
    assert!(st.refresh_grants >= 1, "refreshed while syncing: {st:?}");
    assert_eq!(st.refresh_reused, 0, "a refresh token was used twice");
    assert_eq!(
        st.password_grants, 2,
        "the first login and one after the 401"
    );
    let refused: Vec<u16> = st
        .requests
        .iter()
        .map(|r| r.status)
        .filter(|s| *s != 200)
        .collect();
    assert_eq!(
        refused,
        vec![401],
        "only the injected refusal, no expired token sent"
    );
    assert_mirrors(&store, &bed.sim);

    // refused twice in a row: a sentence, and the sync is not recorded as done
    bed.sim.set_faults(Faults {
        status_at: [(st.requests.len(), 401), (st.requests.len() + 1, 401)].into(),
        ..Faults::default()
    });
    let before = kim_cm::sidecar::cursor::get(&store, "zsr", "last_sync").unwrap();
    clock.advance(Duration::from_secs(24 * 3600));
    let (_, s) = run(&api, &store, false, OutsideWindow::Slow).await;
    let e = s.unwrap_err();
    assert!(e.contains("refused the token twice (401)"), "{e}");
    assert_eq!(
        kim_cm::sidecar::cursor::get(&store, "zsr", "last_sync").unwrap(),
        before
    );
}

/// Runs `kim-cm ARGS`: (exit code, stdout, stderr); trace logging on.
fn kim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::kimcm::bin())
        .args(args)
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    for secret in [CLIENT_SECRET, PASSWORD] {
        assert!(
            !o.contains(secret) && !e.contains(secret),
            "a secret in the output"
        );
    }
    (out.status.code().unwrap_or(-1), o, e)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn validate_and_show_from_the_command_line_and_refusals_as_sentences() {
    // offline: the seed's examples, a typing error, a K number, remainder 0
    let (code, out, _) = kim(&[
        "zsr", "validate", "L248519", "Y274589", "l2485.19", "123456K",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches(": valid").count(), 4, "{out}");
    let (code, out, err) = kim(&["zsr", "validate", "L248518"]);
    assert_eq!(code, 2);
    assert!(
        out.contains("has the check letter L, but its digits give K"),
        "{out}"
    );
    assert!(err.contains("1 of 1 numbers are invalid"), "{err}");
    let (code, out, _) = kim(&["zsr", "validate", "Z400010"]);
    assert_eq!(code, 0);
    assert!(out.contains("kim-cm takes Z"), "{out}");
    let (code, _, _) = kim(&["zsr", "validate", "--refuse-remainder-zero", "Z400010"]);
    assert_eq!(code, 2);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let bed = rt.block_on(async { Bed::start(2_000, kim_cm::sidecar::clock::system()) });
    let config = bed.config_file("unlimited_rate_for_testing = true\n");
    let known = bed
        .sim
        .delivered()
        .keys()
        .find(|n| !n.ends_with('K'))
        .unwrap()
        .clone();

    // before any sync: not in the mirror
    let (code, _, err) = kim(&["zsr", "show", "--config", s(&config), &known]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is not in the local mirror: run `kim-cm zsr sync`"),
        "{err}"
    );
    let (code, out, err) = kim(&["zsr", "sync", "--config", s(&config)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("new                2000"), "{out}");
    assert!(err.contains("without a rate limit"), "{err}");
    let (code, out, _) = kim(&["zsr", "show", "--config", s(&config), &known]);
    assert_eq!(code, 0);
    assert!(out.contains("state    active"), "{out}");
    assert!(
        out.contains("open .. 2010-12-31") && out.contains("2012-01-01 .. open"),
        "{out}"
    );
    let (code, out, _) = kim(&["zsr", "show", "--json", "--config", s(&config), &known]);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        shown,
        bed.sim.delivered()[&known],
        "the record as delivered, unknown fields kept"
    );

    // an invalid number is refused before any request
    let before = bed.sim.stats().requests.len();
    let (code, _, err) = kim(&["zsr", "show", "--config", s(&config), "L248518"]);
    assert_eq!(code, 2);
    assert!(err.contains("check the number for a typing error"), "{err}");
    assert_eq!(bed.sim.stats().requests.len(), before);

    // the service refuses: 403 and 400 with their field errors, 401 for the login
    bed.sim.set_faults(Faults {
        status_at: [(before, 403)].into(),
        ..Faults::default()
    });
    let (code, _, err) = kim(&["zsr", "sync", "--config", s(&config)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("refused the number list (403: searchOptions: The customer has no subscription for this option.)"),
        "{err}"
    );
    bed.sim.set_faults(Faults::default());
    let big_pages = bed.config_file("unlimited_rate_for_testing = true\npage_size = 6000\n");
    let (code, _, err) = kim(&["zsr", "sync", "--config", s(&big_pages)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("refused the number list as invalid (400: limit: The limit must be between 1 and 5000.)"),
        "{err}"
    );
    kim_cm::testbed::ca::write_private(&bed.dir.path().join("secret"), b"not-the-secret\n")
        .unwrap();
    let (code, _, err) = kim(&["zsr", "sync", "--config", s(&config)]);
    assert_eq!(code, 1);
    assert!(err.contains("refused the login (invalid_client"), "{err}");
    drop(rt);
}

#[test]
fn a_crash_in_the_middle_of_a_sync_leaves_whole_batches_and_a_rerun_completes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bed = rt.block_on(async { Bed::start(5_000, kim_cm::sidecar::clock::system()) });
    bed.sim.set_faults(Faults {
        detail_delay: Duration::from_millis(400),
        ..Faults::default()
    });
    let config = bed.config_file("unlimited_rate_for_testing = true\n");
    let state = bed.dir.path().join("data").join("state.sqlite");
    let mut child = Command::new(common::kimcm::bin())
        .args(["zsr", "sync", "--no-progress", "--config", s(&config)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let count = || {
        Store::open(&state)
            .ok()
            .and_then(|st| mirror::init(&st).ok().map(|_| st))
            .map(|st| mirror::numbers(&st).unwrap().len())
            .unwrap_or(0)
    };
    // killed once at least two batches are in, while the next one is on its way
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count() < 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let after_crash = count();
    assert!(after_crash < 5000, "killed before the end");
    assert_eq!(
        after_crash % 500,
        0,
        "only whole batches of 500: {after_crash}"
    );
    let store = Store::open(&state).unwrap();
    assert_eq!(
        kim_cm::sidecar::cursor::get(&store, "zsr", "last_sync").unwrap(),
        None,
        "the crashed sync is not recorded as done"
    );

    bed.sim.set_faults(Faults::default());
    let (code, out, err) = kim(&["zsr", "sync", "--config", s(&config)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ZSR sync (full)"), "{out}");
    assert!(
        out.contains(&format!("new                {}", 5000 - after_crash)),
        "{out}"
    );
    assert_mirrors(&store, &bed.sim);
    drop(rt);
}
