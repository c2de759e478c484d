//! The POP3 proxy end to end, in one process: the testbed's Fachdienst POP3 server
//! (POP3S with a test CA made here), kim-cm's POP3 proxy in front of it on plain
//! loopback, and real clients driving the proxy: Python's poplib and curl.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kim_cm::config::Config;
use kim_cm::net::{tls, TlsMode};
use kim_cm::pop3::{client::ClientSettings, server};
use kim_cm::proxy::pop3::Pop3Proxy;
use kim_cm::spool::SpoolSettings;
use kim_cm::testbed::ca::make_tls_ca;
use kim_cm::testbed::mailstore::MailStore;
use kim_cm::testbed::pop3::TestbedPop3;
use kim_cm::testbed::users::Users;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const ALICE: &str = "alice@kim.test";
const ALICE_PW: &str = "geheim 1";
/// Configured in kim-cm as an [[account]], so it may log in with the plain address.
const BOB: &str = "bob@kim.test";
const BOB_PW: &str = "bobs-pw";
const CONTEXT: &str = "1#KOM_LE#7";

/// A mail with lines that need dot-stuffing, CRLF throughout.
const MAIL_DOTS: &[u8] = b"From: bob@kim.test\r\nTo: alice@kim.test\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n...\r\nmiddle\r\n. space\r\nend\r\n";

/// A larger mail: spans many socket reads and moves the proxy's spool to a file.
fn big_mail() -> Vec<u8> {
    let mut m = b"From: bob@kim.test\r\nTo: alice@kim.test\r\nSubject: big\r\n\r\n".to_vec();
    for i in 0..4000 {
        if i % 7 == 0 {
            m.extend_from_slice(b".");
        }
        m.extend_from_slice(
            format!("line {i:05} of a larger mail, with some text to fill it up a bit\r\n")
                .as_bytes(),
        );
    }
    m
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<MailStore>,
    testbed: Arc<TestbedPop3>,
    fachdienst: SocketAddr,
    proxy: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let tls_files = make_tls_ca(&dir.path().join("tls"), &[]).unwrap();

        // the simulated Fachdienst: POP3S
        let store = Arc::new(MailStore::new(dir.path().join("fd/mail")).unwrap());
        let mut users = Users::new();
        users.add(ALICE, ALICE_PW);
        users.add(BOB, BOB_PW);
        let spool = SpoolSettings {
            dir: dir.path().join("fd/spool"),
            memory_limit: 4096,
        };
        let testbed =
            Arc::new(TestbedPop3::new(store.clone(), Arc::new(users)).with_spool(spool.clone()));
        let fd_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fachdienst = fd_listener.local_addr().unwrap();
        let fd_settings = Arc::new(server::Settings {
            name: "pop.fachdienst.kim.test".into(),
            tls: TlsMode::Implicit,
            acceptor: Some(Arc::new(
                tls::acceptor(&tls_files.server_cert, &tls_files.server_key).unwrap(),
            )),
            timeout: Duration::from_secs(30),
            login_timeout: Duration::from_secs(60),
            login_throttle: None,
            spool,
        });
        let fd_task = tokio::spawn(server::serve_pop3(
            fd_listener,
            fd_settings,
            testbed.clone(),
        ));

        // kim-cm's POP3 proxy, from a config as a user would write it
        let config_text = format!(
            "[proxy]\nname = \"kim-cm-test\"\ndata_dir = \"{data}\"\nallow_unsealed_for_testing = true\nspool_memory_limit = 4096\n\
             client_timeout_secs = 30\nupstream_timeout_secs = 30\nconnect_timeout_secs = 5\n\
             [[pop3_listener]]\naddress = \"127.0.0.1:2110\"\ntls = \"plain\"\n\
             [upstream]\nca_file = \"{ca}\"\npop3_tls = \"implicit\"\n\
             [[account]]\naddress = \"{BOB}\"\nsmtp_server = \"127.0.0.1:1\"\npop3_server = \"{fachdienst}\"\n",
            data = dir.path().join("proxy").display(),
            ca = tls_files.ca_cert.display(),
        );
        let config = Arc::new(Config::parse(&config_text, Path::new("/")).unwrap());
        let connector = Arc::new(tls::connector(&config.upstream.ca_file, None).unwrap());
        let backend = Arc::new(Pop3Proxy::new(
            config.clone(),
            ClientSettings {
                tls: config.upstream.pop3_tls,
                connector,
                connect_timeout: config.proxy.connect_timeout(),
                timeout: config.proxy.upstream_timeout(),
            },
            kim_cm::proxy::pop3::Opening::Unopened,
            Arc::new(kim_cm::activity::Activity::new()),
        ));
        let proxy_settings = Arc::new(server::Settings {
            name: config.proxy.name.clone(),
            tls: TlsMode::Plain,
            acceptor: None,
            timeout: config.proxy.client_timeout(),
            login_timeout: config.proxy.login_timeout(),
            login_throttle: None,
            spool: SpoolSettings {
                dir: config.proxy.data_dir.join("spool"),
                memory_limit: config.proxy.spool_memory_limit,
            },
        });
        let proxy_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = proxy_listener.local_addr().unwrap();
        let proxy_task = tokio::spawn(server::serve_pop3(proxy_listener, proxy_settings, backend));

        Fixture {
            _dir: dir,
            store,
            testbed,
            fachdienst,
            proxy,
            tasks: vec![fd_task, proxy_task],
        }
    }

    /// Alice's KIM login name for POP3: address#host:port#MandantId#ClientSystemId#WorkplaceId.
    fn alice(&self) -> String {
        format!("{ALICE}#{}#{CONTEXT}", self.fachdienst)
    }

    fn deliver(&self, to: &str, mail: &[u8]) {
        self.store.deliver(&[to.to_string()], mail).unwrap();
    }

    /// Waits until the Fachdienst has closed `address`'s session (its maildrop lock).
    async fn wait_unlocked(&self, address: &str) {
        for _ in 0..200 {
            if !self.testbed.in_use(address) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the Fachdienst session of {address} did not end");
    }
}

/// Runs a Python script with `args`; returns its stdout.
async fn python(script: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs curl with `args`; returns its stdout as bytes.
async fn curl(args: &[&str]) -> Vec<u8> {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Percent-encodes everything but unreserved characters, for a URL's userinfo.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const POPLIB_FETCH: &str = r#"
import json, poplib, sys
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
m = poplib.POP3(host, port, timeout=30)
out = {"welcome": m.getwelcome().decode(), "capa": sorted(m.capa().keys())}
m.user(user)
m.pass_(pw)
out["stat"] = list(m.stat())
out["list"] = [l.decode() for l in m.list()[1]]
out["uidl"] = [l.decode() for l in m.uidl()[1]]
out["retr"] = [(b"\r\n".join(m.retr(i)[1]) + b"\r\n").hex() for i in range(1, out["stat"][0] + 1)]
out["top"] = (b"\r\n".join(m.top(1, 5)[1]) + b"\r\n").hex()
out["quit"] = m.quit().decode()
print(json.dumps(out))
"#;

fn unhex(s: &serde_json::Value) -> Vec<u8> {
    hex::decode(s.as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poplib_and_curl_fetch_byte_identical_mails_through_the_proxy() {
    let f = Fixture::start().await;
    let big = big_mail();
    f.deliver(ALICE, MAIL_DOTS);
    f.deliver(ALICE, &big);
    let stored = f.store.list(ALICE).unwrap();

    let port = f.proxy.port().to_string();
    let out = python(POPLIB_FETCH, &["127.0.0.1", &port, &f.alice(), ALICE_PW]).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["welcome"], "+OK kim-cm-test POP3 ready");
    for cap in ["PIPELINING", "RESP-CODES", "SASL", "TOP", "UIDL", "USER"] {
        assert!(
            v["capa"].as_array().unwrap().iter().any(|c| c == cap),
            "{cap} missing: {}",
            v["capa"]
        );
    }
    let total = (MAIL_DOTS.len() + big.len()) as u64;
    assert_eq!(v["stat"], serde_json::json!([2, total]));
    assert_eq!(
        v["list"],
        serde_json::json!([format!("1 {}", MAIL_DOTS.len()), format!("2 {}", big.len())])
    );
    assert_eq!(
        v["uidl"],
        serde_json::json!([
            format!("1 {}", stored[0].uid),
            format!("2 {}", stored[1].uid)
        ])
    );
    assert_eq!(unhex(&v["retr"][0]), MAIL_DOTS);
    assert_eq!(unhex(&v["retr"][1]), big);
    // KOM-LE-A_2041: TOP 1 5 went upstream as TOP 1 0: the header and the empty line only
    let header_end = MAIL_DOTS.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(unhex(&v["top"]), &MAIL_DOTS[..header_end]);
    assert!(v["quit"].as_str().unwrap().starts_with("+OK"));

    // curl: AUTH PLAIN with a continuation, and with the initial response
    f.wait_unlocked(ALICE).await;
    let base = format!(
        "pop3://{}:{}@127.0.0.1:{port}",
        pct(&f.alice()),
        pct(ALICE_PW)
    );
    assert_eq!(curl(&[&format!("{base}/1")]).await, MAIL_DOTS);
    f.wait_unlocked(ALICE).await;
    assert_eq!(curl(&["--sasl-ir", &format!("{base}/2")]).await, big);
    f.wait_unlocked(ALICE).await;
    let listing = curl(&[&format!("{base}/")]).await;
    assert_eq!(
        String::from_utf8(listing).unwrap(),
        format!("1 {}\r\n2 {}\r\n", MAIL_DOTS.len(), big.len())
    );
    // reading deletes nothing
    f.wait_unlocked(ALICE).await;
    assert_eq!(f.store.list(ALICE).unwrap(), stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dele_and_quit_removes_upstream_but_a_vanished_client_removes_nothing() {
    let f = Fixture::start().await;
    f.deliver(ALICE, MAIL_DOTS);
    f.deliver(ALICE, b"Subject: second\r\n\r\nbody\r\n");
    let stored = f.store.list(ALICE).unwrap();
    let port = f.proxy.port().to_string();

    // DELE, then the client drops the connection without QUIT
    let vanish = r#"
import poplib, sys
m = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=30)
m.user(sys.argv[3]); m.pass_(sys.argv[4])
print(m.dele(1).decode())
m.sock.close()
"#;
    let out = python(vanish, &["127.0.0.1", &port, &f.alice(), ALICE_PW]).await;
    assert!(out.starts_with("+OK"), "{out}");
    f.wait_unlocked(ALICE).await;
    assert_eq!(
        f.store.list(ALICE).unwrap(),
        stored,
        "a client without QUIT must not delete anything"
    );

    // DELE and QUIT: gone upstream, the other mail keeps its UIDL
    let quit = r#"
import poplib, sys
m = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=30)
m.user(sys.argv[3]); m.pass_(sys.argv[4])
print(m.stat()[0], m.dele(1).decode(), m.stat()[0])
print(m.quit().decode())
"#;
    let out = python(quit, &["127.0.0.1", &port, &f.alice(), ALICE_PW]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("2 +OK") && lines[0].ends_with(" 1"),
        "{out}"
    );
    assert!(lines[1].starts_with("+OK"), "{out}");
    f.wait_unlocked(ALICE).await;
    let left = f.store.list(ALICE).unwrap();
    assert_eq!(left, vec![stored[1].clone()]);
}

const POPLIB_LOGIN: &str = r#"
import poplib, sys
m = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=30)
try:
    m.user(sys.argv[3])
    m.pass_(sys.argv[4])
    print("OK", m.stat()[0])
    m.quit()
except poplib.error_proto as e:
    print(e.args[0].decode())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_good_and_bad() {
    let f = Fixture::start().await;
    f.deliver(BOB, b"Subject: for bob\r\n\r\nhi\r\n");
    let port = f.proxy.port().to_string();
    let login = |user: String, pw: &'static str| {
        let port = port.clone();
        async move {
            python(POPLIB_LOGIN, &["127.0.0.1", &port, &user, pw])
                .await
                .trim()
                .to_string()
        }
    };

    // wrong password: the Fachdienst refused, the client hears [AUTH]
    let out = login(f.alice(), "wrong").await;
    assert!(out.starts_with("-ERR [AUTH] "), "{out}");
    // an incomplete user name is refused at USER, naming what is missing
    let out = login(format!("{ALICE}#{}#1", f.fachdienst), ALICE_PW).await;
    assert!(
        out.starts_with("-ERR [AUTH] Invalid POP3 user name") && out.contains("MandantId"),
        "{out}"
    );
    // a plain address that kim-cm does not know
    let out = login(ALICE.to_string(), ALICE_PW).await;
    assert!(
        out.starts_with("-ERR ") && out.contains("not configured"),
        "{out}"
    );
    // a configured account: plain address, and '*' for the server
    assert_eq!(login(BOB.to_string(), BOB_PW).await, "OK 1");
    f.wait_unlocked(BOB).await;
    assert_eq!(login(format!("{BOB}#*#{CONTEXT}"), BOB_PW).await, "OK 1");
    f.wait_unlocked(BOB).await;
    // the Fachdienst is down
    let down = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let out = login(format!("{ALICE}#{down}#{CONTEXT}"), ALICE_PW).await;
    assert_eq!(
        out,
        format!("-ERR [SYS/TEMP] cannot reach the Fachdienst POP3 server {down}")
    );
    // the mailbox is in use by another session
    let hold = r#"
import poplib, sys, time
m = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=30)
m.user(sys.argv[3]); m.pass_(sys.argv[4])
print("locked", flush=True)
time.sleep(3)
m.quit()
"#;
    let alice = f.alice();
    let holder = {
        let port = port.clone();
        tokio::spawn(async move { python(hold, &["127.0.0.1", &port, &alice, ALICE_PW]).await })
    };
    for _ in 0..200 {
        if f.testbed.in_use(ALICE) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = login(f.alice(), ALICE_PW).await;
    assert!(out.starts_with("-ERR [IN-USE]"), "{out}");
    holder.await.unwrap();
}

/// Sends each line and reads the one-line answer to it.
async fn raw_session(addr: SocketAddr, lines: &[&str]) -> Vec<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let mut answers = Vec::new();
    let mut greeting = String::new();
    r.read_line(&mut greeting).await.unwrap();
    assert!(greeting.starts_with("+OK"), "{greeting}");
    for l in lines {
        w.write_all(format!("{l}\r\n").as_bytes()).await.unwrap();
        let mut a = String::new();
        r.read_line(&mut a).await.unwrap();
        answers.push(a.trim_end().to_string());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_in_the_wrong_state_get_err() {
    let f = Fixture::start().await;
    f.deliver(ALICE, MAIL_DOTS);
    let alice = f.alice();
    let user = format!("USER {alice}");
    let pass = format!("PASS {ALICE_PW}");
    let a = raw_session(
        f.proxy,
        &[
            "STAT", "RETR 1", &pass, "FOO", &user, &pass, "USER x", "STAT", "RETR 2", "DELE 1",
            "DELE 1", "RSET", "NOOP", "QUIT",
        ],
    )
    .await;
    assert!(a[0].starts_with("-ERR not logged in"), "{a:?}");
    assert!(a[1].starts_with("-ERR not logged in"), "{a:?}");
    assert_eq!(a[2], "-ERR send USER first");
    assert_eq!(a[3], "-ERR unknown command");
    assert!(a[4].starts_with("+OK") && a[5].starts_with("+OK"), "{a:?}");
    assert_eq!(a[6], "-ERR already logged in");
    assert_eq!(a[7], format!("+OK 1 {}", MAIL_DOTS.len()));
    assert!(a[8].starts_with("-ERR "), "{a:?}");
    assert!(
        a[9].starts_with("+OK") && a[10].starts_with("-ERR "),
        "{a:?}"
    );
    assert!(
        a[11].starts_with("+OK") && a[12].starts_with("+OK") && a[13].starts_with("+OK"),
        "{a:?}"
    );
    f.wait_unlocked(ALICE).await;
    // RSET undid the DELE
    assert_eq!(f.store.list(ALICE).unwrap().len(), 1);
}

/// Starts another listener of the fixture's Fachdienst with `tls`.
async fn fachdienst_listener(
    f: &Fixture,
    tls_mode: TlsMode,
    acceptor: Option<Arc<openssl::ssl::SslAcceptor>>,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = Arc::new(server::Settings {
        name: "pop.fachdienst.kim.test".into(),
        tls: tls_mode,
        acceptor,
        timeout: Duration::from_secs(30),
        login_timeout: Duration::from_secs(60),
        login_throttle: None,
        spool: SpoolSettings {
            dir: f._dir.path().join("fd/spool"),
            memory_limit: 4096,
        },
    });
    (
        addr,
        tokio::spawn(server::serve_pop3(listener, settings, f.testbed.clone())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stls_on_both_sides() {
    use kim_cm::kim::login::Server;
    use kim_cm::pop3::client::{ClientError, Pop3Client};

    let f = Fixture::start().await;
    f.deliver(ALICE, MAIL_DOTS);
    let tls_dir = f._dir.path().join("tls");
    let acceptor =
        Arc::new(tls::acceptor(&tls_dir.join("server.pem"), &tls_dir.join("server.key")).unwrap());
    let (stls_addr, t1) = fachdienst_listener(&f, TlsMode::Starttls, Some(acceptor)).await;
    let (plain_addr, t2) = fachdienst_listener(&f, TlsMode::Plain, None).await;

    // Python's poplib upgrades with STLS and verifies the certificate
    let script = r#"
import poplib, ssl, sys
m = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=30)
before = sorted(m.capa().keys())
m.stls(ssl.create_default_context(cafile=sys.argv[2]))
after = sorted(m.capa().keys())
m.user(sys.argv[3]); m.pass_(sys.argv[4])
print(" ".join(before)); print(" ".join(after)); print(m.stat()[0])
m.quit()
"#;
    let ca = tls_dir.join("ca.pem");
    let out = python(
        script,
        &[
            &stls_addr.port().to_string(),
            ca.to_str().unwrap(),
            ALICE,
            ALICE_PW,
        ],
    )
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].split(' ').any(|c| c == "STLS"), "{out}");
    assert!(!lines[1].split(' ').any(|c| c == "STLS"), "{out}");
    assert_eq!(lines[2], "1");
    f.wait_unlocked(ALICE).await;

    // kim-cm's client with STLS: verified, logged in, the mail read
    let connector = Arc::new(tls::connector(&ca, None).unwrap());
    let settings = ClientSettings {
        tls: TlsMode::Starttls,
        connector,
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(30),
    };
    let server_of = |a: SocketAddr| Server {
        host: "127.0.0.1".into(),
        port: a.port(),
    };
    let mut c = Pop3Client::connect(&server_of(stls_addr), &settings)
        .await
        .unwrap();
    c.login(ALICE, ALICE_PW).await.unwrap();
    let mut spool = kim_cm::spool::Spool::new(&SpoolSettings {
        dir: f._dir.path().join("client-spool"),
        memory_limit: 16,
    });
    c.retr_into(1, &mut spool).await.unwrap();
    assert_eq!(spool.to_vec().await.unwrap(), MAIL_DOTS);
    c.quit().await.unwrap();

    // a server without STLS: kim-cm does not go on in plaintext
    let e = Pop3Client::connect(&server_of(plain_addr), &settings)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::Tls { .. }), "{e:?}");
    t1.abort();
    t2.abort();
}
