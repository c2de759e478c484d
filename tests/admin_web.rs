//! The local admin page of `kim-cm serve`, driven with curl against the sandbox
//! (which configures `[admin]` with a password of its own): its login and its
//! defences (wrong password, bounded failed logins, CSRF token, Host check), the
//! accounts with their cached limits and counts after a real send and fetch, and
//! the health of every upstream, including a Konnektor that goes down.

mod common;

use std::path::Path;

use common::kimcm::{curl_within, write_file, Backend, Sandbox};
use common::mail::{fetch_as, send_as};

/// Bound on one page request.
const PAGE_SECS: u64 = 30;

/// A curl session with its own cookie jar.
struct Browser<'a> {
    sb: &'a Sandbox,
    jar: String,
}

impl<'a> Browser<'a> {
    fn new(sb: &'a Sandbox, name: &str) -> Browser<'a> {
        let jar = sb.dir.path().join(format!("{name}.cookies"));
        Browser {
            sb,
            jar: jar.display().to_string(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.sb.addr("admin_url").trim_end_matches('/'),
            path
        )
    }

    /// (HTTP status, body) of a request with the jar; `extra` are more curl args.
    fn request(&self, path: &str, extra: &[&str]) -> (u16, String) {
        let url = self.url(path);
        let mut args = vec![
            "-s",
            "-b",
            &self.jar,
            "-c",
            &self.jar,
            "-w",
            "\n%{http_code}",
            "--url",
            &url,
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = curl_within(PAGE_SECS, &args);
        assert_eq!(code, 0, "curl {path}: {err}");
        let text = String::from_utf8_lossy(&out).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.parse().unwrap(), body.to_string())
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.request(path, &[])
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let mut args: Vec<String> = Vec::new();
        for (k, v) in form {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.request(path, &refs)
    }

    fn login(&self) {
        let (status, _) = self.post(
            "/login",
            &[
                ("user", &self.sb.addr("admin_user")),
                ("password", &self.sb.addr("admin_password")),
            ],
        );
        assert_eq!(status, 303, "a right login goes to the overview");
    }
}

/// The session's CSRF token, from a form on the page.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

/// The text of the table row that mentions `needle`.
fn row<'p>(page: &'p str, needle: &str) -> &'p str {
    let at = page
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} in {page}"));
    let start = page[..at].rfind("<tr>").unwrap();
    let end = at + page[at..].find("</tr>").unwrap();
    &page[start..end]
}

fn mail(dir: &Path, from: &str, to: &str) -> std::path::PathBuf {
    write_file(
        dir,
        "admin-mail.eml",
        format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: admin page\r\n\r\nBefund.\r\n")
            .as_bytes(),
    )
}

#[test]
fn the_admin_page_shows_accounts_limits_counts_and_upstreams_behind_its_login() {
    let sb = Sandbox::start();
    let b = Browser::new(&sb, "admin");
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);

    // without a session: the login form
    let (status, _) = b.get("/");
    assert_eq!(status, 303);
    let (status, page) = b.get("/login");
    assert_eq!(status, 200);
    assert!(page.contains("<form method=\"post\" action=\"/login\">"));
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "no external asset"
    );

    // a wrong password: told so, no session
    let (status, page) = b.post(
        "/login",
        &[("user", "admin"), ("password", "not-the-password")],
    );
    assert_eq!(status, 401);
    assert!(page.contains("Wrong user name or password."), "{page}");
    assert_eq!(b.get("/").0, 303);

    // a real send and fetch, so there is something to count
    let smtp = sb.addr("proxy_smtp");
    let (code, err) = send_as(&sb, 0, &smtp, &mail(sb.dir.path(), &alice, &bob), &[&bob]);
    assert_eq!(code, 0, "{err}");
    let got = fetch_as(&sb, 1, &sb.addr("proxy_pop3"), 1);
    assert!(String::from_utf8_lossy(&got).contains("X-KIM-DecryptionResult: 00"));
    // and a refused one: nobody has a certificate
    let nobody = "nobody@praxis-c.kim.test";
    let (code, _) = send_as(
        &sb,
        0,
        &smtp,
        &mail(sb.dir.path(), &alice, nobody),
        &[nobody],
    );
    assert_ne!(code, 0);

    b.login();
    let (status, page) = b.get("/");
    assert_eq!(status, 200, "{page}");
    let a = row(&page, &format!("<td>{alice}<br>"));
    assert!(a.contains("sent 1 ") && a.contains("refused 1"), "{a}");
    assert!(a.contains("kept 30 days"), "alice's cached limits: {a}");
    assert!(a.contains("send refused: 451"), "the last problem: {a}");
    assert!(a.contains("PKCS#12 files"), "{a}");
    let bb = row(&page, &format!("<td>{bob}<br>"));
    assert!(bb.contains("opened 1, with problems 0"), "{bb}");
    assert!(!page.contains("Befund"), "no mail content on the page");
    for service in [
        "Fachdienst SMTP",
        "Fachdienst POP3",
        "KIM Attachment Service",
        "AccountLimit service",
        "Account Manager",
    ] {
        let r = row(&page, &format!("<td>{service}</td>"));
        assert!(r.contains("reachable") && !r.contains("unreachable"), "{r}");
    }

    // a form without the session's CSRF token is refused; with it, it works
    let (status, _) = b.post("/health", &[("csrf", "forged")]);
    assert_eq!(status, 403);
    let (status, page) = b.post("/health", &[("csrf", &csrf(&page))]);
    assert_eq!(status, 200, "{page}");

    // another Host (DNS rebinding) is refused
    let (status, _) = b.request("/login", &["-H", "Host: kim-cm.attacker.example"]);
    assert_eq!(status, 421);

    // log out: the session is gone
    let (status, _) = b.post("/logout", &[("csrf", &csrf(&page))]);
    assert_eq!(status, 303);
    assert_eq!(b.get("/").0, 303);

    // failed logins are bounded: after five (one above, four here) the next try
    // waits, even with the right password
    let other = Browser::new(&sb, "guesser");
    for _ in 0..4 {
        assert_eq!(
            other
                .post("/login", &[("user", "admin"), ("password", "guess")])
                .0,
            401
        );
    }
    let (status, page) = other.post(
        "/login",
        &[("user", "admin"), ("password", &sb.addr("admin_password"))],
    );
    assert_eq!(status, 429);
    assert!(page.contains("Too many failed logins"), "{page}");
    let log = sb.log();
    assert!(
        !log.contains(&sb.addr("admin_password")),
        "no admin password in the log"
    );
    assert!(log.contains("admin page: failed login"), "{log}");
}

#[test]
fn a_konnektor_that_goes_down_shows_as_unreachable() {
    let sb = Sandbox::start_on(Backend::Konnektor);
    let b = Browser::new(&sb, "admin");
    b.login();
    let (_, page) = b.get("/");
    let k = row(&page, "<td>Konnektor</td>");
    assert!(k.contains("reachable") && !k.contains("unreachable"), "{k}");
    assert!(page.contains("smart card in Konnektor"), "{page}");

    let dir = sb.info["konnektor_dir"].as_str().unwrap();
    std::fs::write(Path::new(dir).join("faults.json"), r#"{"down": true}"#).unwrap();
    // the page keeps answers for a while; "Check now" asks again
    let (status, page) = b.post("/health", &[("csrf", &csrf(&page))]);
    assert_eq!(status, 200);
    let k = row(&page, "<td>Konnektor</td>");
    assert!(k.contains("unreachable"), "{k}");
    let fd = row(&page, "<td>Fachdienst SMTP</td>");
    assert!(
        !fd.contains("unreachable"),
        "only the Konnektor is down: {fd}"
    );
}

/// `kim-cm admin-password` reads the password from standard input (never from
/// the command line) and writes only its Argon2id hash, readable by the owner.
#[test]
fn admin_password_writes_an_owner_only_argon2_hash() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = |password: &str, out: &Path| {
        let mut child = std::process::Command::new(common::kimcm::bin())
            .args(["admin-password", "--out"])
            .arg(out)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = dir.path().join("admin.hash");
    let r = run("correct horse battery", &out);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let hash = std::fs::read_to_string(&out).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse battery"));
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // too short: refused, nothing written
    let short = dir.path().join("short.hash");
    let r = run("short", &short);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("at least 12 characters"));
    assert!(!short.exists());
}

/// The page's text of an escaped value.
fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// What the page shows between `start` (e.g. `<pre>`) and `end`, unescaped.
fn between(page: &str, start: &str, end: &str) -> String {
    let at = page
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {page}"))
        + start.len();
    unescape(&page[at..at + page[at..].find(end).unwrap()])
}

/// `text` with the Account Manager's trace id (one per answer) left out.
fn without_trace_id(text: &str) -> String {
    match text.find("trace id ") {
        Some(at) => {
            let rest = &text[at + 9..];
            let end = rest
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(rest.len());
            format!("{}trace id …{}", &text[..at], &rest[end..])
        }
        None => text.to_string(),
    }
}

/// `kim-cm account ARGS... ACCOUNT` with `stdin`: (exit code, stdout, stderr).
fn cli(args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(common::kimcm::bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Item 5: the account operations from the page, answered with the command
/// line's own sentences and tables; a form without the session's CSRF token
/// changes nothing; no password typed into a form reaches the log.
#[test]
fn account_forms_answer_with_the_command_lines_words() {
    const PASSWORD: &str = "Sommer-2024!praxis";
    let sb = Sandbox::start();
    let b = Browser::new(&sb, "forms");
    let (alice, ..) = sb.account(0);
    let a = &sb.info["accounts"][0];
    let reference = a["reference_id"].as_str().unwrap().to_string();
    let ini = a["initial_password"].as_str().unwrap().to_string();
    let config = sb.addr("config_file");
    let state_file = Path::new(&sb.addr("account_manager_dir")).join("state.json");
    let registered = || {
        std::fs::read_to_string(&state_file)
            .map(|s| s.contains(&format!("\"{alice}\"")) && s.contains("\"registered\""))
            .unwrap_or(false)
    };
    b.login();

    // the account's page: a form for every operation; unknown accounts have none
    let (status, page) = b.get(&format!("/account?address={alice}"));
    assert_eq!(status, 200);
    assert_eq!(
        page.matches("<form method=\"post\" action=\"/account/")
            .count(),
        11
    );
    assert!(page.contains("not asked since kim-cm started"), "{page}");
    let token = csrf(&page);
    let (status, _) = b.get("/account?address=nobody%40praxis.kim.test");
    assert_eq!(status, 404);

    let register = |csrf: &str, ini: &str| {
        b.post(
            "/account/register",
            &[
                ("csrf", csrf),
                ("account", &alice),
                ("reference_id", &reference),
                ("ini_password", ini),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
            ],
        )
    };
    // without the session's CSRF token: refused, nothing sent
    let (status, body) = register("forged", &ini);
    assert_eq!(status, 403, "{body}");
    assert!(!registered(), "a forged form registered the account");

    // a wrong initial password: the CLI's sentence, word for word
    let (status, page) = register(&token, "Falsch-Initial-1");
    assert_eq!(status, 200);
    let said = between(&page, "<p id=\"sentence\">", "</p>");
    let (code, _, stderr) = cli(
        &[
            "account",
            "register",
            "--config",
            &config,
            "--reference-id",
            &reference,
            &alice,
        ],
        &format!("Falsch-Initial-1\n{PASSWORD}\n"),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(said.contains("refused the authentication"), "{said}");
    let sentence = stderr
        .lines()
        .find_map(|l| l.strip_prefix("kim-cm: "))
        .unwrap_or_else(|| panic!("the CLI's sentence in {stderr}"));
    assert_eq!(
        without_trace_id(sentence),
        without_trace_id(&said),
        "the page's sentence is the command line's (each answer has its own trace id)"
    );
    assert!(!registered());

    // the right one: registered, and the page says so
    let (_, page) = register(&token, &ini);
    assert!(page.contains("class=\"done\" id=\"result\""), "{page}");
    assert!(registered(), "the simulator has alice registered");
    let (_, page) = b.post(
        "/account/show",
        &[
            ("csrf", &token),
            ("account", &alice),
            ("password", PASSWORD),
        ],
    );
    let table = between(&page, "<pre>", "</pre>");
    let (code, stdout, stderr) = cli(
        &["account", "get", "--config", &config, &alice],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(table, stdout, "the page's table is the command line's");
    assert!(between(&page, "<span id=\"registration\">", "<span").starts_with("registered"));
    // the overview shows the state too
    let (_, overview) = b.get("/");
    assert!(
        row(&overview, &format!("<td>{alice}<br>")).contains("registered"),
        "{overview}"
    );

    // input the interface does not take is refused before anything is sent
    let (_, page) = b.post(
        "/account/out-of-office-set",
        &[
            ("csrf", &token),
            ("account", &alice),
            ("password", PASSWORD),
            ("active", "yes"),
            ("start", "24.12.2026"),
        ],
    );
    assert!(
        between(&page, "<p id=\"sentence\">", "</p>")
            .contains("\"24.12.2026\" is not a date and time"),
        "{page}"
    );

    let log = sb.log();
    for secret in [PASSWORD, ini.as_str(), "Falsch-Initial-1"] {
        assert!(!log.contains(secret), "a password in the log");
    }
    assert!(log.contains("admin page: not done"), "{log}");
}

/// The value of the metric line `name{labels}` in a scrape, if present.
fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// Issue 9 item 1: Prometheus metrics and health endpoints on the admin port,
/// read without a login: mails sent, refused with their reply code and opened
/// per account, bytes, Konnektor calls with their times, the cache, upstream
/// health and a sidecar's last sync; no content and no secret in them.
#[test]
fn metrics_and_health_on_the_admin_port() {
    let sb = Sandbox::start_on(Backend::Konnektor);
    let b = Browser::new(&sb, "metrics");
    let (alice, alice_pw, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let smtp = sb.addr("proxy_smtp");
    let (code, err) = send_as(&sb, 0, &smtp, &mail(sb.dir.path(), &alice, &bob), &[&bob]);
    assert_eq!(code, 0, "{err}");
    let got = fetch_as(&sb, 1, &sb.addr("proxy_pop3"), 1);
    assert!(String::from_utf8_lossy(&got).contains("X-KIM-DecryptionResult: 00"));
    let nobody = "nobody@praxis-c.kim.test";
    let (code, _) = send_as(
        &sb,
        0,
        &smtp,
        &mail(sb.dir.path(), &alice, nobody),
        &[nobody],
    );
    assert_ne!(code, 0);
    let out = std::process::Command::new(common::kimcm::bin())
        .args(["zsr", "sync", "--config", &sb.addr("config_file")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (status, text) = b.get("/metrics");
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("# TYPE kimcm_mails_sent_total counter"),
        "{text}"
    );
    let a = format!("account=\"{alice}\"");
    assert_eq!(
        metric(&text, &format!("kimcm_mails_sent_total{{{a}}}")),
        Some(1.0),
        "{text}"
    );
    assert!(metric(&text, &format!("kimcm_mail_bytes_sent_total{{{a}}}")).unwrap() > 50.0);
    assert_eq!(
        metric(
            &text,
            &format!("kimcm_mails_refused_total{{{a},reason=\"451 4.7.5\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("kimcm_mails_opened_total{{account=\"{bob}\",result=\"ok\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    let b_ = format!("account=\"{bob}\"");
    assert_eq!(
        metric(&text, &format!("kimcm_mails_fetched_total{{{b_}}}")),
        Some(1.0),
        "{text}"
    );
    // the bytes the client got: the opened mail, as fetch_as received it
    assert_eq!(
        metric(&text, &format!("kimcm_mail_bytes_fetched_total{{{b_}}}")),
        Some(got.len() as f64),
        "{text}"
    );
    // the card signed and decrypted through the Konnektor, each call timed
    assert!(
        text.contains("kimcm_konnektor_calls_total{operation="),
        "{text}"
    );
    assert!(text
        .lines()
        .any(|l| l.starts_with("kimcm_konnektor_call_seconds_count{") && !l.ends_with(" 0")));
    // the directory is slapd behind the certificate cache; the limits are cached
    assert!(
        text.contains("kimcm_cache_lookups_total{cache=\"certificates\",result=\"miss\"}"),
        "{text}"
    );
    assert!(
        text.contains("kimcm_cache_lookups_total{cache=\"limits\",result="),
        "{text}"
    );
    assert!(
        text.contains("kimcm_upstream_up{service=\"Fachdienst SMTP\""),
        "{text}"
    );
    assert!(
        text.contains(
            "kimcm_sidecar_last_success_timestamp_seconds{sidecar=\"zsr\",cursor=\"last_sync\"}"
        ),
        "{text}"
    );
    for secret in [alice_pw.as_str(), "Befund"] {
        assert!(
            !text.contains(secret),
            "a password or content in the metrics"
        );
    }

    let (status, text) = b.get("/healthz");
    assert_eq!((status, text.as_str()), (200, "ok\n"));
    let (status, text) = b.get("/readyz");
    assert_eq!(status, 200, "{text}");
    assert!(text.lines().all(|l| l.starts_with("up ")), "{text}");
    // a name that is not the loopback address: refused as everywhere on the port
    let url = b.url("/metrics");
    let (_, out, _) = curl_within(
        PAGE_SECS,
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: evil.example",
            &url,
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out), "421");
}
