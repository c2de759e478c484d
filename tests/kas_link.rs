//! Hostile input (issue 9 item 5): a KIM mail whose x-kas link points somewhere
//! other than a KAS of the TI. The link comes from the sender's structure, and
//! the sender's KAS may be any KIM provider's (A_19370-04: "am KAS des
//! Fachdienstes"), so kim-cm cannot pin one host; what keeps a link from making
//! the recipient's kim-cm fetch from an arbitrary server is that it is HTTPS
//! only and the server must prove itself with a certificate of the TI's CA
//! (A_19368, the upstream `ca_file`). These tests show both: a foreign server is
//! never sent a request (so it never learns the recipient), and a plain `http`
//! link is not even connected to. The proxy turns either failure into the 4006
//! error mail (kas_cut shows that path for a cut download).

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kim_cm::http::client::HttpSettings;
use kim_cm::http::kas::{download_mail_data, KasReadError};
use kim_cm::testbed::ca::make_tls_ca;

/// A TLS server with a certificate of its own CA; counts the connections it got
/// and the request bytes that reached it after a completed handshake.
struct Foreign {
    port: u16,
    connections: Arc<AtomicUsize>,
    request_bytes: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

fn foreign_server() -> Foreign {
    let dir = tempfile::tempdir().unwrap();
    let tls = make_tls_ca(dir.path(), &[]).unwrap();
    let acceptor = kim_cm::net::tls::acceptor(&tls.server_cert, &tls.server_key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let request_bytes = Arc::new(AtomicUsize::new(0));
    let (c, r) = (connections.clone(), request_bytes.clone());
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            if let Ok(mut s) = acceptor.accept(tcp) {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    r.fetch_add(n, Ordering::SeqCst);
                }
            }
        }
    });
    Foreign {
        port,
        connections,
        request_bytes,
        _dir: dir,
    }
}

/// kim-cm's KAS settings, trusting only the TI's CA (here: a CA of its own).
fn ti_settings(dir: &std::path::Path) -> HttpSettings {
    let ti = make_tls_ca(&dir.join("ti"), &[]).unwrap();
    HttpSettings {
        connector: Arc::new(kim_cm::net::tls::connector(&ti.ca_cert, None).unwrap()),
        connect_timeout: Duration::from_secs(10),
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn a_link_to_a_server_outside_the_ti_gets_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = ti_settings(dir.path());
    let foreign = foreign_server();
    let dest = dir.path().join("blob");
    let link = format!(
        "https://localhost:{}/attachments/v2.2/attachment/abc",
        foreign.port
    );
    let r = download_mail_data(&link, "bob@praxis-b.kim.test", &s, &dest, 1 << 20).await;
    let Err(KasReadError::Unavailable(why)) = r else {
        panic!("a foreign server must not serve mail data: {r:?}");
    };
    assert!(why.contains("certificate"), "{why}");
    assert_eq!(
        foreign.connections.load(Ordering::SeqCst),
        1,
        "it was tried once"
    );
    assert_eq!(
        foreign.request_bytes.load(Ordering::SeqCst),
        0,
        "no request (and so no recipient header) reached the foreign server"
    );
    assert!(!dest.exists(), "nothing written");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no partial file left"
    );
}

#[tokio::test]
async fn a_plain_http_link_is_not_connected_to() {
    let dir = tempfile::tempdir().unwrap();
    let s = ti_settings(dir.path());
    let foreign = foreign_server();
    let dest = dir.path().join("blob");
    for link in [
        format!("http://localhost:{}/attachment/abc", foreign.port),
        format!("ftp://localhost:{}/abc", foreign.port),
        "https:///no-host".to_string(),
        "javascript:alert(1)".to_string(),
    ] {
        let r = download_mail_data(&link, "bob@praxis-b.kim.test", &s, &dest, 1 << 20).await;
        assert!(
            matches!(r, Err(KasReadError::Unavailable(_))),
            "{link}: {r:?}"
        );
    }
    assert_eq!(
        foreign.connections.load(Ordering::SeqCst),
        0,
        "no connection for a link that is not https"
    );
    assert!(!dest.exists());
}
