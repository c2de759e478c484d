//! The local admin page in a real browser (issue 6 item 8): headless Chromium,
//! driven through chromedriver's W3C WebDriver, against `kim-cm sandbox`. A wrong
//! login shows its sentence on the rendered page; the right one shows both sandbox
//! accounts and a reachable Fachdienst; "Check now" and "Log out" work by click.
//! On an account's page it registers the account, sets an out-of-office note and
//! shows a refused operation's sentence. Every step leaves a screenshot in
//! `target/browser-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them); without
//! them the test fails and says so.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::kimcm::Sandbox;
use common::webdriver::{Browser, PNG_SIGNATURE};

/// `target/browser-screenshots/` (beside `target/tmp`, so CARGO_TARGET_DIR counts).
fn screenshot_dir() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves the viewport as `NN-step.png` and checks that it is a PNG.
fn shot(b: &Browser, n: u32, step: &str) {
    let path = screenshot_dir().join(format!("{n:02}-{step}.png"));
    let _ = std::fs::remove_file(&path);
    b.screenshot(&path);
    let png = std::fs::read(&path).unwrap();
    assert!(
        png.len() > PNG_SIGNATURE.len() && png.starts_with(PNG_SIGNATURE),
        "{} is not a PNG ({} bytes)",
        path.display(),
        png.len()
    );
}

/// A little over the resolution of the times the page shows.
const CLOCK_TICK: Duration = Duration::from_millis(1100);

/// The page's "checked …" line (when the upstreams were last asked).
fn checked_at(b: &Browser) -> String {
    let body = b.text(&b.find("body"));
    body.lines()
        .find(|l| l.starts_with("checked "))
        .unwrap_or_else(|| panic!("a \"checked …\" line on the page:\n{body}"))
        .to_string()
}

/// The red, green and blue of a computed colour, `rgb(r, g, b)` or `rgba(r, g, b, a)`.
fn rgb(css: &str) -> [u8; 3] {
    let inner = css
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')');
    let n: Vec<u8> = inner
        .split(',')
        .take(3)
        .map(|c| c.trim().parse().unwrap_or_else(|_| panic!("colour {css}")))
        .collect();
    [n[0], n[1], n[2]]
}

/// Fills the login form and submits it with a click.
fn log_in(b: &Browser, user: &str, password: &str) {
    for (id, value) in [("#user", user), ("#password", password)] {
        let input = b.find(id);
        b.clear(&input);
        b.send_keys(&input, value);
    }
    b.click(&b.find("#login"));
}

#[test]
fn the_admin_page_in_headless_chromium_logs_in_shows_accounts_and_health_and_logs_out() {
    // first the browser: without Chromium the test fails at once, saying what to install
    let b = Browser::start();
    let sb = Sandbox::start();
    let admin_url = sb.addr("admin_url");
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);

    // without a session the page sends the browser to its login form
    b.goto(&admin_url);
    b.find("#user");
    assert!(b.url().ends_with("/login"), "{}", b.url());
    assert!(b.title().contains("kim-cm"), "{}", b.title());
    shot(&b, 1, "login-form");

    // a wrong password: the sentence is on the rendered page, visibly
    log_in(&b, &sb.addr("admin_user"), "not-the-password");
    let error = b.find("p.error");
    assert!(b.displayed(&error), "the error is displayed");
    assert_eq!(b.text(&error), "Wrong user name or password.");
    // styled as an error by the page's own style sheet (no external asset)
    assert_eq!(rgb(&b.css(&error, "border-top-color")), [164, 0, 0]);
    assert!(
        b.try_find("#accounts").is_none(),
        "no overview without login"
    );
    shot(&b, 2, "wrong-password");

    // the right password: the overview
    log_in(&b, &sb.addr("admin_user"), &sb.addr("admin_password"));
    let accounts = b.find("#accounts");
    assert!(
        b.try_find("p.error").is_none(),
        "no error after a right login"
    );
    let text = b.text(&accounts);
    assert!(
        text.contains(&alice) && text.contains(&bob),
        "both sandbox accounts ({alice}, {bob}) in the accounts table:\n{text}"
    );
    let health = b.text(&b.find("#health"));
    for service in ["Fachdienst SMTP", "Fachdienst POP3"] {
        let line = health
            .lines()
            .find(|l| l.starts_with(service))
            .unwrap_or_else(|| panic!("{service} in the health table:\n{health}"));
        assert!(
            line.contains("reachable") && !line.contains("unreachable"),
            "{line}"
        );
    }
    let ok = b.find("#health .ok");
    assert!(b.displayed(&ok));
    assert_eq!(
        rgb(&b.css(&ok, "color")),
        [23, 111, 44],
        "reachable in green"
    );
    shot(&b, 3, "overview");

    // "Check now" asks every upstream again (the page shows times to the second,
    // so a second later the time it shows is another) and shows the page at /health
    let checked_before = checked_at(&b);
    std::thread::sleep(CLOCK_TICK);
    b.click(&b.find("#check"));
    b.wait_until("the page after Check now", |b| {
        b.url().ends_with("/health") && b.try_find("#health").is_some()
    });
    let checked_after = checked_at(&b);
    assert_ne!(checked_before, checked_after, "Check now checked anew");
    let health = b.text(&b.find("#health"));
    assert!(
        health
            .lines()
            .any(|l| l.starts_with("Fachdienst SMTP") && l.contains("reachable")),
        "{health}"
    );
    shot(&b, 4, "checked-now");

    // log out: back at the login form, and the overview is gone
    b.click(&b.find("#logout"));
    b.wait_until("the login form after Log out", |b| {
        b.try_find("#user").is_some() && b.try_find("#accounts").is_none()
    });
    shot(&b, 5, "logged-out");
    b.goto(&admin_url);
    b.find("#user");
    assert!(
        b.try_find("#accounts").is_none(),
        "no overview after logout"
    );
    b.quit();
}

/// Types `value` into the field with id `id`.
fn fill(b: &Browser, id: &str, value: &str) {
    let input = b.find(&format!("#{id}"));
    b.clear(&input);
    b.send_keys(&input, value);
}

/// Submits the form of `op` and waits for the page with its answer.
fn submit(b: &Browser, op: &str) -> (bool, String) {
    b.click(&b.find(&format!("#{op}-submit")));
    b.wait_until(&format!("the answer to {op}"), |b| {
        b.url().ends_with(&format!("/account/{op}")) && b.try_find("#result").is_some()
    });
    let result = b.find("#result");
    let done = b.try_find("#result.done").is_some();
    (done, b.text(&result))
}

/// Item 8: registering the account, setting an out-of-office note and a
/// refused operation, by typing and clicking on the account's page; the
/// refusal shows the Account Manager's status as the sentence the command line
/// prints.
#[test]
fn the_admin_page_in_headless_chromium_registers_sets_out_of_office_and_shows_a_refusal() {
    const PASSWORD: &str = "Sommer-2024!praxis";
    const NOTE: &str = "Die Praxis ist vom 24.12. bis 2.1. geschlossen.";
    let b = Browser::start();
    let sb = Sandbox::start();
    let (alice, ..) = sb.account(0);
    let a = &sb.info["accounts"][0];
    let reference = a["reference_id"].as_str().unwrap().to_string();
    let ini = a["initial_password"].as_str().unwrap().to_string();
    let state_file = std::path::Path::new(&sb.addr("account_manager_dir")).join("state.json");

    b.goto(&sb.addr("admin_url"));
    log_in(&b, &sb.addr("admin_user"), &sb.addr("admin_password"));
    // alice's row links to her page
    let link = b.find("#accounts a");
    assert_eq!(b.text(&link), "manage");
    b.click(&link);
    b.wait_until("alice's page", |b| b.try_find("#register").is_some());
    assert!(b.text(&b.find("h1")).contains(&alice));
    assert!(b
        .text(&b.find("#registration"))
        .contains("not asked since kim-cm started"));
    shot(&b, 11, "account-page");

    // register with the provider's letter and a password of the practice's own
    fill(&b, "register-reference_id", &reference);
    fill(&b, "register-ini_password", &ini);
    fill(&b, "register-password", PASSWORD);
    fill(&b, "register-password_again", PASSWORD);
    fill(&b, "register-kim_version", "1.5+");
    let (done, text) = submit(&b, "register");
    assert!(done, "{text}");
    assert!(text.contains("registered"), "{text}");
    assert!(b.text(&b.find("#registration")).starts_with("registered"));
    let state = std::fs::read_to_string(&state_file).unwrap();
    assert!(
        state.contains(&alice) && state.contains("\"registered\""),
        "{state}"
    );
    shot(&b, 12, "registered");

    // the out-of-office note: set, then read back from the Account Manager
    fill(&b, "out-of-office-set-password", PASSWORD);
    b.click(&b.find("#out-of-office-set-active"));
    fill(&b, "out-of-office-set-start", "2026-12-24T00:00:00+01:00");
    fill(&b, "out-of-office-set-end", "2027-01-02T00:00:00+01:00");
    fill(&b, "out-of-office-set-message", NOTE);
    let (done, text) = submit(&b, "out-of-office-set");
    assert!(done, "{text}");
    assert!(text.contains("out-of-office note set"), "{text}");
    shot(&b, 13, "out-of-office-set");
    fill(&b, "out-of-office-show-password", PASSWORD);
    let (done, text) = submit(&b, "out-of-office-show");
    assert!(done, "{text}");
    assert!(text.contains(NOTE) && text.contains("yes"), "{text}");
    assert!(std::fs::read_to_string(&state_file).unwrap().contains(NOTE));
    shot(&b, 14, "out-of-office-shown");

    // registering again: the Account Manager answers 409, the page says what it means
    fill(&b, "register-reference_id", &reference);
    fill(&b, "register-ini_password", &ini);
    fill(&b, "register-password", PASSWORD);
    fill(&b, "register-password_again", PASSWORD);
    let (done, text) = submit(&b, "register");
    assert!(!done, "{text}");
    let sentence = b.text(&b.find("#sentence"));
    assert!(
        sentence.contains(&format!("the address {alice} is already taken")),
        "{sentence}"
    );
    let error = b.find("#result");
    assert!(b.displayed(&error));
    assert_eq!(rgb(&b.css(&error, "border-top-color")), [164, 0, 0]);
    shot(&b, 15, "refused");

    // back on the overview, alice is registered
    b.click(&b.find("#overview"));
    b.wait_until("the overview", |b| b.try_find("#accounts").is_some());
    let row = b.text(&b.find("#accounts"));
    assert!(
        row.lines().any(|l| l.contains(&alice)) && row.contains("registered"),
        "{row}"
    );
    shot(&b, 16, "overview-registered");
    b.quit();
}
