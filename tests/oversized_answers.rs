//! Oversized answers from every remote party (issue 9 item 5): a flood server
//! answers with an endless line, endless continuation lines, an endless listing
//! or a huge HTTP body, and kim-cm stops reading at its named bound, tells its
//! own client (SMTP 4xx, POP3 `-ERR`, a CLI's exit code and sentence), says in
//! one log line that the answer was too large, stays up for the next session,
//! and hangs up after reading about as much as the bound allows.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::flood::{Flood, Shape};
use common::kimcm::{write_file, KimCm, Sandbox};
use common::ldap::{p, pem_certs, with_ldap, Slapd, SlapdTls, VzdEntry};
use common::mail::{big_mail, config_text, second_kimcm, send_as};
use common::raw::{plain, Raw};

/// The sandbox's TLS files: the flood servers use its certificate, so every
/// `ca_file` of the sandbox's config trusts them as it trusts the simulators.
fn flood_for(sb: &Sandbox, shape: Shape) -> Flood {
    let tls = sb.dir.path().join("sb").join("fachdienst").join("tls");
    Flood::start_with(
        shape,
        &tls.join("ca.pem"),
        &tls.join("server.pem"),
        &tls.join("server.key"),
    )
}

fn small_mail(sb: &Sandbox, subject: &str) -> PathBuf {
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let text = format!(
        "From: <{alice}>\r\nTo: <{bob}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@praxis-a.kim.test>\r\n\r\nBefund anbei.\r\n"
    );
    write_file(sb.dir.path(), &format!("{subject}.eml"), text.as_bytes())
}

/// The next session works: a mail from alice to bob through the proxy at `smtp`.
fn next_mail_goes_through(sb: &Sandbox, smtp: &str, subject: &str) {
    let (bob, ..) = sb.account(1);
    let before = sb.stored_mails(&bob).len();
    let (code, err) = send_as(sb, 0, smtp, &small_mail(sb, subject), &[&bob]);
    assert_eq!(code, 0, "the next session fails: {err}\n{}", sb.log());
    assert_eq!(sb.stored_mails(&bob).len(), before + 1);
}

/// The log lines that contain `needle`; exactly one expected.
fn one_line(log: &str, needle: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "one log line with '{needle}':\n{log}");
    lines[0].to_string()
}

/// alice's SMTP or POP3 login name with `flood` as the Fachdienst server.
fn user_at(sb: &Sandbox, flood: &Flood) -> (String, String) {
    let (alice, pw, ..) = sb.account(0);
    (format!("{alice}#{}#1#KOM_LE#7", flood.addr), pw)
}

// ---------------------------------------------------------------- Fachdienst SMTP

fn smtp_flood(shape: Shape, bound: u64, says: &str) {
    let sb = Sandbox::start();
    let flood = flood_for(&sb, shape);
    let (user, pw) = user_at(&sb, &flood);
    let mut c = Raw::connect(sb.addr("proxy_smtp").parse().unwrap());
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO client");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain(&user, &pw)));
    // Tab_SMTP_Verbindung: the MTA cannot be used, 454 4.7.0; the session goes on
    assert!(r.starts_with("454 4.7.0"), "{r}");
    assert!(c.cmd("NOOP").starts_with("250"));
    c.cmd("QUIT");
    flood.assert_stopped_near(bound);
    let log = sb.log();
    let line = one_line(&log, "cannot reach the MTA");
    assert!(line.contains(says), "{line}");
    next_mail_goes_through(&sb, &sb.addr("proxy_smtp"), "after-smtp-flood");
}

#[test]
fn an_endless_smtp_greeting_line_is_cut_at_4096_bytes_and_gives_454() {
    smtp_flood(
        Shape::SmtpEndlessGreeting,
        kim_cm::smtp::client::MAX_REPLY_LINE as u64,
        "answer is too large: a line over 4096 bytes",
    );
}

#[test]
fn endless_ehlo_continuation_lines_stop_at_100_lines_and_give_454() {
    smtp_flood(
        Shape::SmtpEndlessEhlo,
        (kim_cm::smtp::client::MAX_REPLY_LINES * "250-flood\r\n".len()) as u64,
        "answer is too large: more than 100 lines",
    );
}

// ---------------------------------------------------------------- Fachdienst POP3

/// USER and PASS through the proxy at the flooding Fachdienst; the PASS reply.
fn pop3_login(sb: &Sandbox, flood: &Flood) -> (Raw, String) {
    let (user, pw) = user_at(sb, flood);
    let mut c = Raw::connect(sb.addr("proxy_pop3").parse().unwrap());
    assert!(c.line().starts_with("+OK"));
    c.send(format!("USER {user}\r\n").as_bytes());
    assert!(c.line().starts_with("+OK"));
    c.send(format!("PASS {pw}\r\n").as_bytes());
    let r = c.line();
    (c, r)
}

/// The next POP3 session against the sandbox's Fachdienst works.
fn next_pop3_session_works(sb: &Sandbox) {
    next_pop3_session_works_at(sb, &sb.addr("proxy_pop3"));
}

/// A POP3 session of bob through the proxy at `pop3` works.
fn next_pop3_session_works_at(sb: &Sandbox, pop3: &str) {
    let (_, pw, _, user) = sb.account(1);
    let mut c = Raw::connect(pop3.parse().unwrap());
    assert!(c.line().starts_with("+OK"));
    c.send(format!("USER {user}\r\n").as_bytes());
    assert!(c.line().starts_with("+OK"));
    c.send(format!("PASS {pw}\r\n").as_bytes());
    let r = c.line();
    assert!(r.starts_with("+OK"), "{r}\n{}", sb.log());
    c.send(b"STAT\r\n");
    assert!(c.line().starts_with("+OK"));
    c.send(b"QUIT\r\n");
    assert!(c.line().starts_with("+OK"));
}

fn pop3_login_flood(shape: Shape, bound: u64, says: &str) {
    let sb = Sandbox::start();
    let flood = flood_for(&sb, shape);
    let (_c, r) = pop3_login(&sb, &flood);
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    assert!(r.contains("an answer too large to read"), "{r}");
    flood.assert_stopped_near(bound);
    let line = one_line(&sb.log(), "cannot reach the Fachdienst POP3 server");
    assert!(line.contains(says), "{line}");
    next_pop3_session_works(&sb);
}

#[test]
fn an_endless_pop3_greeting_line_is_cut_at_4096_bytes_and_gives_err() {
    pop3_login_flood(
        Shape::Pop3EndlessGreeting,
        kim_cm::pop3::client::MAX_RESPONSE_LINE as u64,
        "answer is too large: a line over 4096 bytes",
    );
}

#[test]
fn an_endless_capa_answer_stops_at_100_lines_and_gives_err() {
    pop3_login_flood(
        Shape::Pop3EndlessCapa,
        (kim_cm::pop3::client::MAX_CAPA_LINES * "X-FLOOD\r\n".len()) as u64,
        "answer is too large: more than 100 lines in a CAPA answer",
    );
}

#[test]
fn an_endless_uidl_listing_stops_at_its_bound_and_list_gives_err() {
    let sb = Sandbox::start();
    let flood = flood_for(&sb, Shape::Pop3EndlessListing);
    let (mut c, r) = pop3_login(&sb, &flood);
    assert!(r.starts_with("+OK"), "{r}\n{}", sb.log());
    c.send(b"LIST\r\n");
    let r = c.line();
    assert!(r.starts_with("-ERR"), "{r}");
    c.send(b"QUIT\r\n");
    // listing lines `N N` of up to 16 bytes
    let bound = (kim_cm::pop3::client::MAX_LISTING_LINES * 16) as u64;
    flood.assert_stopped_near(bound);
    let log = sb.log();
    assert!(
        log.contains(&format!(
            "answer is too large: more than {} lines in a listing",
            kim_cm::pop3::client::MAX_LISTING_LINES
        )),
        "{log}"
    );
    next_pop3_session_works(&sb);
}

// ---------------------------------------------------------------- HTTPS services

/// `text` (a config file) with `key` of the section headed `header` set to
/// `value` (a TOML value); the key is added when the section has none.
fn set_key(text: &str, header: &str, key: &str, value: &str) -> String {
    let mut out = String::new();
    let (mut inside, mut done) = (false, false);
    for line in text.lines() {
        if line.starts_with('[') {
            if inside && !done {
                out.push_str(&format!("{key} = {value}\n"));
                done = true;
            }
            inside = line == header;
        }
        if inside && line.starts_with(&format!("{key} = ")) {
            out.push_str(&format!("{key} = {value}\n"));
            done = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if inside && !done {
        out.push_str(&format!("{key} = {value}\n"));
    }
    assert!(done || inside, "no section {header}");
    out
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// The sandbox's config, changed by `edit`, with a data folder of its own, as a
/// file for the command-line tools.
fn cli_config(sb: &Sandbox, edit: impl Fn(String) -> String) -> PathBuf {
    let data = sb.dir.path().join("cli-data");
    let text = set_key(&config_text(sb), "[proxy]", "data_dir", &quoted(&p(&data)));
    write_file(sb.dir.path(), "cli.toml", edit(text).as_bytes())
}

/// `kim-cm ARGS` with `stdin`: exit code, stdout, stderr.
fn kim(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(common::kimcm::bin())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A run of a command-line tool against a flood: it failed with exit code 1 in
/// one sentence naming the bound, and the flood stopped near it.
fn refused_as_too_large(run: &(i32, String, String), flood: &Flood, bound: usize) {
    let (code, out, err) = run;
    assert_eq!(*code, 1, "{out}\n{err}");
    let says = format!("too large: over {bound} bytes");
    assert_eq!(
        err.lines().filter(|l| l.contains(&says)).count(),
        1,
        "one sentence with '{says}':\n{err}"
    );
    flood.assert_stopped_near(bound as u64);
}

/// No spooled mail or temporary file is left in `k`'s spool.
fn spool_is_empty(k: &KimCm) {
    let left: Vec<_> = std::fs::read_dir(k.spool_dir())
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the spool: {left:?}");
}

/// A second SMTP session at `k` logs in at the sandbox's Fachdienst: kim-cm is up.
fn still_serves(sb: &Sandbox, k: &KimCm) {
    let (_, pw, user, _) = sb.account(0);
    let mut c = Raw::connect(k.smtp.unwrap());
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO client");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain(&user, &pw)));
    assert!(r.starts_with("235"), "{r}\n{}", k.log());
    assert!(c.cmd("QUIT").starts_with("221"));
}

#[test]
fn a_huge_getlimits_answer_is_cut_at_256_kib_and_the_send_gets_451() {
    let sb = Sandbox::start();
    let flood = flood_for(&sb, Shape::HttpHugeBody);
    let url = quoted(&format!("{}/AccountLimit/v1.1", flood.url()));
    let k = second_kimcm(&sb, |t| {
        set_key(&t, "[upstream]", "account_limit_url", &url)
    });
    let (bob, ..) = sb.account(1);
    let smtp = k.smtp.unwrap().to_string();
    let (code, err) = send_as(&sb, 0, &smtp, &small_mail(&sb, "limits"), &[&bob]);
    assert_ne!(code, 0);
    assert!(err.contains("< 451 4.4.3"), "{err}");
    assert!(sb.stored_mails(&bob).is_empty(), "nothing sent");
    flood.assert_stopped_near(kim_cm::http::client::MAX_JSON_BODY as u64);
    let line = one_line(&k.log(), "getLimits failed");
    assert!(line.contains("too large: over 262144 bytes"), "{line}");
    spool_is_empty(&k);
    still_serves(&sb, &k);
}

#[test]
fn an_endless_chunked_kas_answer_is_cut_at_256_kib_and_the_large_mail_gets_451() {
    let sb = Sandbox::start();
    let flood = flood_for(&sb, Shape::HttpEndlessChunks);
    let url = quoted(&format!("{}/attachments/v2.4", flood.url()));
    let k = second_kimcm(&sb, |t| set_key(&t, "[upstream]", "kas_url", &url));
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let smtp = k.smtp.unwrap().to_string();
    let large = big_mail(sb.dir.path(), &alice, &bob, 16 * 1024 * 1024, "");
    let (code, err) = send_as(&sb, 0, &smtp, &large, &[&bob]);
    assert_ne!(code, 0);
    assert!(err.contains("< 451"), "{err}");
    assert!(sb.stored_mails(&bob).is_empty(), "nothing sent");
    flood.assert_stopped_near(kim_cm::http::client::MAX_JSON_BODY as u64);
    let line = one_line(&k.log(), "KAS upload failed");
    assert!(line.contains("too large: over 262144 bytes"), "{line}");
    spool_is_empty(&k);
    // the next mail, small, goes out through the same kim-cm
    next_mail_goes_through(&sb, &smtp, "after-kas-flood");
}

#[test]
fn an_endless_header_from_the_account_manager_stops_the_cli_with_exit_1() {
    let sb = Sandbox::start();
    let flood = flood_for(&sb, Shape::HttpEndlessHeader);
    let (alice, pw, ..) = sb.account(0);
    let config = cli_config(&sb, |t| {
        set_key(
            &t,
            "[upstream]",
            "account_manager_url",
            &quoted(&flood.url()),
        )
    });
    let run = kim(
        &["account", "get", "--config", &p(&config), &alice],
        &format!("{pw}\n"),
    );
    refused_as_too_large(&run, &flood, kim_cm::http::client::MAX_ANSWER_HEAD);
    assert!(!run.2.contains(&pw), "no password in the output");
    // the same command against the real Account Manager gets its real answer
    // (alice is not registered there)
    let config = cli_config(&sb, |t| t);
    let (code, out, err) = kim(
        &["account", "get", "--config", &p(&config), &alice],
        &format!("{pw}\n"),
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("has no KIM account"), "{err}");
}

// ---------------------------------------------------------------- Konnektor

/// A flood server with the simulated Konnektor's certificate.
fn konnektor_flood(sb: &Sandbox, shape: Shape) -> Flood {
    let tls = sb.dir.path().join("sb").join("konnektor").join("tls");
    Flood::start_with(
        shape,
        &tls.join("ca.pem"),
        &tls.join("server.pem"),
        &tls.join("server.key"),
    )
}

/// The sandbox's `sds_url`.
fn sds_url(sb: &Sandbox) -> String {
    let text = config_text(sb);
    let line = text
        .lines()
        .find(|l| l.starts_with("sds_url = "))
        .expect("a [[konnektor]] section");
    line["sds_url = ".len()..].trim_matches('"').to_string()
}

/// A send through a kim-cm whose Konnektor floods: 451, nothing sent, one log
/// line on the answer that was too large, the flood stopped near the bound.
fn konnektor_flood_gives_451(sb: &Sandbox, flood: &Flood, subject: &str) {
    let url = quoted(&format!("{}/connector.sds", flood.url()));
    let k = second_kimcm(sb, |t| set_key(&t, "[[konnektor]]", "sds_url", &url));
    let (bob, ..) = sb.account(1);
    let smtp = k.smtp.unwrap().to_string();
    let (code, err) = send_as(sb, 0, &smtp, &small_mail(sb, subject), &[&bob]);
    assert_ne!(code, 0);
    assert!(err.contains("< 451"), "{err}\n{}", k.log());
    assert!(sb.stored_mails(&bob).is_empty(), "nothing sent");
    flood.assert_stopped_near(kim_cm::konnektor::soap::MAX_SOAP_RESPONSE as u64);
    let log = k.log();
    let says = "too large: over 67108864 bytes";
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(says)).collect();
    // said where it happened (the login check, the sealing) and in the refusal
    assert!(!lines.is_empty(), "a log line says '{says}':\n{log}");
    one_line(&log, "mail refused: Sealing failed");
    spool_is_empty(&k);
    still_serves(sb, &k);
}

#[test]
fn a_huge_connector_sds_is_cut_at_64_mib_and_the_send_gets_451() {
    let sb = Sandbox::start_konnektor();
    let flood = konnektor_flood(&sb, Shape::HttpHugeBody);
    konnektor_flood_gives_451(&sb, &flood, "sds-flood");
}

#[test]
fn a_huge_answer_to_a_konnektor_operation_is_cut_at_64_mib_and_the_send_gets_451() {
    let sb = Sandbox::start_konnektor();
    let flood = konnektor_flood(&sb, Shape::HttpEndlessChunks);
    // the real service directory, its endpoints moved to the flood
    let real = sds_url(&sb);
    let ca = p(&sb
        .dir
        .path()
        .join("sb")
        .join("konnektor")
        .join("tls")
        .join("ca.pem"));
    let (code, sds, err) = common::kimcm::curl(&["--cacert", &ca, &real]);
    assert_eq!(code, 0, "{err}");
    let real_authority = real
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let sds = String::from_utf8(sds)
        .unwrap()
        .replace(&real_authority, &format!("localhost:{}", flood.addr.port()));
    assert!(sds.contains("EndpointTLS"), "{sds}");
    flood.answer("/connector.sds", sds.as_bytes());
    konnektor_flood_gives_451(&sb, &flood, "operation-flood");
}

// ---------------------------------------------------------------- sidecars

#[test]
fn a_huge_zsr_answer_is_cut_at_64_mib_and_the_sync_fails_in_one_sentence() {
    let sb = Sandbox::start();
    let flood = flood_for(&sb, Shape::HttpHugeBody);
    let base = quoted(&format!("{}/ApiGateway", flood.url()));
    let config = cli_config(&sb, |t| {
        let t = set_key(&t, "[zsr]", "base_url", &base);
        set_key(&t, "[zsr]", "unlimited_rate_for_testing", "true")
    });
    let run = kim(
        &["zsr", "sync", "--no-progress", "--config", &p(&config)],
        "",
    );
    refused_as_too_large(&run, &flood, kim_cm::sidecar::zsr::api::MAX_ANSWER);
}

#[test]
fn a_huge_oauth_token_answer_is_cut_at_256_kib_and_the_sync_fails_in_one_sentence() {
    let sb = Sandbox::start();
    let flood = flood_for(&sb, Shape::HttpEndlessChunks);
    // the discovery document is read; the token endpoint it names floods
    let discovery = serde_json::json!({ "token_endpoint": format!("{}/token", flood.url()) });
    flood.answer(
        "/auth/.well-known/openid-configuration",
        discovery.to_string().as_bytes(),
    );
    let authority = quoted(&format!("{}/auth", flood.url()));
    let config = cli_config(&sb, |t| {
        let t = set_key(&t, "[zsr]", "authority_url", &authority);
        set_key(&t, "[zsr]", "unlimited_rate_for_testing", "true")
    });
    let run = kim(
        &["zsr", "sync", "--no-progress", "--config", &p(&config)],
        "",
    );
    refused_as_too_large(&run, &flood, kim_cm::sidecar::oauth::MAX_TOKEN_ANSWER);
    assert_eq!(flood.connections(), 2, "discovery and one token request");
}

#[test]
fn a_huge_careflex_answer_is_cut_at_4_mib_and_the_report_fails_in_one_sentence() {
    let sb = Sandbox::start();
    let flood = flood_for(&sb, Shape::HttpHugeBody);
    let url = quoted(&format!("{}/careflex/soap", flood.url()));
    let config = cli_config(&sb, |t| set_key(&t, "[careflex]", "service_url", &url));
    let input = write_file(
        sb.dir.path(),
        "incidents.csv",
        b"careflexId,externalId,employeeId,validFrom,createdAt,type,title,firstName,lastName,birthday,sex,street,houseNumber,addressSuffix,zipCode,city,country,employmentSite,employmentStatus,startOfEmployment,personnelNumber,management,emailBusiness,mobileBusiness,landlineBusiness\n\
          ,Ext-1,E1,2026-11-01,2026-11-02,RST,,,,,,,,,,,,,,,,,,,\n",
    );
    let run = kim(
        &["careflex", "report", "--config", &p(&config), &p(&input)],
        "",
    );
    refused_as_too_large(&run, &flood, kim_cm::sidecar::careflex::client::MAX_ANSWER);
}

#[test]
fn a_huge_brs_answer_is_cut_at_4_mib_and_the_relation_call_fails_in_one_sentence() {
    let sb = Sandbox::start();
    let flood = flood_for(&sb, Shape::HttpEndlessChunks);
    let url = quoted(&format!("{}/brs-nsp/service/brs", flood.url()));
    let config = cli_config(&sb, |t| set_key(&t, "[brs]", "brs_url", &url));
    let run = kim(
        &[
            "brs",
            "relation",
            "--config",
            &p(&config),
            "--patient",
            "0101601951",
            "--professional",
            "010160-1803",
            "--org",
            "ydernummer:132435",
            "--authorisation",
            "DM712",
            "--time-limit",
            "30d",
        ],
        "",
    );
    refused_as_too_large(&run, &flood, kim_cm::sidecar::brs::MAX_ANSWER);
}

#[test]
fn a_helsenorge_answer_over_max_answer_mib_is_cut_there_and_the_run_fails_in_one_sentence() {
    let sb = Sandbox::start();
    let flood = flood_for(&sb, Shape::HttpHugeBody);
    let url = quoted(&flood.url());
    let config = cli_config(&sb, |t| {
        let t = set_key(&t, "[helsenorge]", "base_url", &url);
        set_key(&t, "[helsenorge]", "max_answer_mib", "1")
    });
    let run = kim(
        &[
            "helsenorge",
            "changes",
            "--config",
            &p(&config),
            "--patients",
            &sb.addr("patients_file"),
        ],
        "",
    );
    refused_as_too_large(&run, &flood, 1024 * 1024);
}

// ---------------------------------------------------------------- directory (slapd)

#[test]
fn sixty_five_directory_entries_for_one_address_are_refused_and_the_send_gets_451() {
    let sb = Sandbox::start();
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let pki = sb.dir.path().join("sb").join("pki").join("directory");
    let certs_of = |a: &str| pem_certs(&pki.join(format!("{a}.pem")));
    // bob: his entry and 65 child entries, each with his certificate
    let mut b = VzdEntry::new(&bob, Some("1.5+"), Vec::new());
    let bound = kim_cm::directory::ldap::MAX_ENTRIES_PER_ADDRESS as usize;
    b.child_certs = std::iter::repeat_n(certs_of(&bob)[0].clone(), bound + 1).collect();
    let entries = vec![VzdEntry::new(&alice, Some("1.5+"), certs_of(&alice)), b];
    let dir = tempfile::tempdir().unwrap();
    let t = kim_cm::testbed::ca::make_tls_ca(dir.path(), &[]).unwrap();
    let stls = SlapdTls {
        cert: &t.server_cert,
        key: &t.server_key,
        client_ca: None,
    };
    let slapd = Slapd::start(&entries, &stls).unwrap();
    let k = second_kimcm(&sb, |text| with_ldap(text, &slapd, &t.ca_cert, None));
    let smtp = k.smtp.unwrap().to_string();
    let (code, err) = send_as(&sb, 0, &smtp, &small_mail(&sb, "many-entries"), &[&bob]);
    assert_ne!(code, 0);
    assert!(err.contains("< 451"), "{err}\n{}", k.log());
    assert!(sb.stored_mails(&bob).is_empty(), "nothing sent");
    let log = k.log();
    assert!(log.contains(&format!("more than {bound} entries")), "{log}");
    // the next mail, to alice, goes out through the same kim-cm
    let before = sb.stored_mails(&alice).len();
    let mail = write_file(
        sb.dir.path(),
        "to-alice.eml",
        format!("From: <{alice}>\r\nTo: <{alice}>\r\nSubject: a\r\n\r\nok\r\n").as_bytes(),
    );
    let (code, err) = send_as(&sb, 0, &smtp, &mail, &[&alice]);
    assert_eq!(code, 0, "{err}\n{}", k.log());
    assert_eq!(sb.stored_mails(&alice).len(), before + 1);
}
