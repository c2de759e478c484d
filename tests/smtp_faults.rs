//! The SMTP proxy when things go wrong upstream or at the client: each case shows the
//! reply the client gets and that no mail was lost or sent twice.

mod common;

use common::fake_mta::{FakeMta, Fault};
use common::kimcm::KimCm;
use common::raw::{plain, Raw};

fn proxy_for(ca_file: &std::path::Path, extra_proxy: &str) -> KimCm {
    KimCm::serve(&format!(
        "[proxy]\ndata_dir = \"{{dir}}/data\"\nallow_unsealed_for_testing = true\n{extra_proxy}\n\
         [[smtp_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
         [upstream]\nca_file = \"{}\"\n",
        ca_file.display()
    ))
}

fn user_for(addr: std::net::SocketAddr) -> String {
    format!("alice@praxis-a.kim.test#{addr}#1#KOM_LE#7")
}

/// Logs in and gives the envelope; returns the session ready for DATA.
fn ready_for_data(k: &KimCm, upstream: std::net::SocketAddr) -> Raw {
    let mut c = Raw::connect(k.smtp.unwrap());
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO client");
    assert!(c
        .cmd(&format!("AUTH PLAIN {}", plain(&user_for(upstream), "pw")))
        .starts_with("235"));
    assert!(c
        .cmd("MAIL FROM:<alice@praxis-a.kim.test>")
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@praxis-b.kim.test>").starts_with("250"));
    c
}

const MAIL: &str =
    "From: alice@praxis-a.kim.test\r\nTo: bob@praxis-b.kim.test\r\nSubject: t\r\n\r\nhello\r\n";

#[test]
fn upstream_down_gives_454_at_auth() {
    // a port nobody listens on
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap();
    drop(l);
    let mta = FakeMta::start(Fault::None);
    let k = proxy_for(&mta.ca_file, "");
    let mut c = Raw::connect(k.smtp.unwrap());
    c.reply();
    c.cmd("EHLO client");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain(&user_for(dead), "pw")));
    assert!(r.starts_with("454 4.7.0"), "{r}");
    // the session goes on: the client may try again
    assert!(c.cmd("NOOP").starts_with("250"));
    assert!(k
        .wait_log("cannot reach the MTA")
        .contains("cannot reach the MTA"));
}

#[test]
fn upstream_auth_failure_gives_535() {
    let mta = FakeMta::start(Fault::RejectAuth);
    let k = proxy_for(&mta.ca_file, "");
    let mut c = Raw::connect(k.smtp.unwrap());
    c.reply();
    let r = c.cmd(&format!(
        "AUTH PLAIN {}",
        plain(&user_for(mta.addr), "wrong")
    ));
    assert!(r.starts_with("535 5.7.8"), "{r}");
}

#[test]
fn upstream_rejects_recipient_nothing_is_sent() {
    let mta = FakeMta::start(Fault::RejectRcpt);
    let k = proxy_for(&mta.ca_file, "");
    let mut c = ready_for_data(&k, mta.addr);
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("{MAIL}.\r\n").as_bytes());
    let r = c.reply();
    // the MTA's refusal with its enhanced code, passed through
    assert!(r.starts_with("550 5.1.1"), "{r}");
    assert!(mta.delivered.lock().unwrap().is_empty());
    let cmds = mta.commands.lock().unwrap().clone();
    assert!(
        !cmds.iter().any(|c| c.eq_ignore_ascii_case("DATA")),
        "{cmds:?}"
    );
}

#[test]
fn upstream_closes_in_data_then_retry_delivers_once() {
    let mta = FakeMta::start(Fault::CloseInData);
    let k = proxy_for(&mta.ca_file, "");
    let mut c = ready_for_data(&k, mta.addr);
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("{MAIL}.\r\n").as_bytes());
    let r = c.reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    // A_2016: the proxy closes the client connection after the MTA's went away
    assert!(c.closed());
    assert!(mta.delivered.lock().unwrap().is_empty());

    // the client sends again to a working MTA: exactly one copy arrives
    let good = FakeMta::start(Fault::None);
    let k2 = proxy_for(&good.ca_file, "");
    let mut c = ready_for_data(&k2, good.addr);
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("{MAIL}.\r\n").as_bytes());
    assert!(c.reply().starts_with("250"));
    assert_eq!(good.delivered.lock().unwrap().len(), 1);
    assert_eq!(good.delivered.lock().unwrap()[0], MAIL.as_bytes());
}

#[test]
fn upstream_silent_after_data_gives_421() {
    let mta = FakeMta::start(Fault::SilentAfterData);
    let k = proxy_for(&mta.ca_file, "upstream_timeout_secs = 2");
    let mut c = ready_for_data(&k, mta.addr);
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("{MAIL}.\r\n").as_bytes());
    let r = c.reply();
    assert!(r.starts_with("421"), "{r}");
    assert!(c.closed());
}

#[test]
fn client_disconnects_in_data_nothing_reaches_upstream() {
    let mta = FakeMta::start(Fault::None);
    let k = proxy_for(&mta.ca_file, "spool_memory_limit = 65536");
    let mut c = ready_for_data(&k, mta.addr);
    assert!(c.cmd("DATA").starts_with("354"));
    // a large part, so the spool has moved to disk
    let big = "x".repeat(1000) + "\r\n";
    for _ in 0..3000 {
        c.send(big.as_bytes());
    }
    c.shutdown();
    let log = k.wait_log("client disconnected in DATA");
    assert!(log.contains("client disconnected in DATA"), "{log}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(mta.delivered.lock().unwrap().is_empty());
    let cmds = mta.commands.lock().unwrap().clone();
    assert!(!cmds.iter().any(|c| c.starts_with("MAIL")), "{cmds:?}");
    // the unnamed spool file is gone with the session
    assert_eq!(std::fs::read_dir(k.spool_dir()).unwrap().count(), 0);
}

#[test]
fn dot_stuffing_and_smuggling_reach_upstream_safely() {
    let mta = FakeMta::start(Fault::None);
    let k = proxy_for(&mta.ca_file, "");
    let mut c = ready_for_data(&k, mta.addr);
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: s\r\n\r\n..leading dot\r\nsmuggle\n.\nMAIL FROM:<evil@x>\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    let got = mta.delivered.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "exactly one transaction upstream");
    // upstream sees the leading dot stuffed again, and the bare-LF dot line stuffed too
    assert_eq!(
        got[0],
        b"Subject: s\r\n\r\n..leading dot\r\nsmuggle\r\n..\r\nMAIL FROM:<evil@x>\r\n"
    );
    let cmds = mta.commands.lock().unwrap().clone();
    assert_eq!(
        cmds.iter().filter(|c| c.starts_with("MAIL")).count(),
        1,
        "{cmds:?}"
    );
}

#[test]
fn mta_dropped_idle_connection_is_replaced_before_the_data() {
    let mta = FakeMta::start(Fault::DropFirstAfterAuth);
    let k = proxy_for(&mta.ca_file, "");
    let mut c = ready_for_data(&k, mta.addr);
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("{MAIL}.\r\n").as_bytes());
    let r = c.reply();
    assert!(r.starts_with("250"), "{r}\n{}", k.log());
    // one copy, sent on the second connection after a fresh login
    assert_eq!(mta.delivered.lock().unwrap().len(), 1);
    let cmds = mta.commands.lock().unwrap().clone();
    assert_eq!(
        cmds.iter().filter(|c| c.starts_with("AUTH")).count(),
        2,
        "{cmds:?}"
    );
    assert!(
        cmds.iter().any(|c| c.starts_with("(dropped) MAIL")),
        "{cmds:?}"
    );
}
