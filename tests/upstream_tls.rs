//! TLS towards the Fachdienst, against `openssl s_server` as an independent peer:
//! the brainpool groups the TI uses, TLS 1.2 and 1.3, verification that cannot be
//! skipped, and the client certificate from PKCS#12 files (modern and legacy).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kim_cm::net::{tls, Conn};

struct SServer(Child);

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `openssl s_server` on a free port with the given extra options.
fn s_server(dir: &Path, extra: &[&str]) -> (SServer, u16) {
    let port = free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(dir.join("server.pem"))
        .arg("-key")
        .arg(dir.join("server.key"))
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (SServer(child), port)
}

async fn handshake(
    port: u16,
    connector: &openssl::ssl::SslConnector,
    host: &str,
) -> std::io::Result<()> {
    let mut c = Conn::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(5)).await?;
    c.connect_tls(connector, host).await
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn brainpool_only_server_is_reached_with_tls12() {
    let dir = tempfile::tempdir().unwrap();
    let files = kim_cm::testbed::ca::make_tls_ca(dir.path(), &[]).unwrap();
    let (_s, port) = s_server(dir.path(), &["-tls1_2", "-groups", "brainpoolP256r1"]);
    let conn = tls::connector(&files.ca_cert, None).unwrap();
    handshake(port, &conn, "localhost")
        .await
        .expect("brainpoolP256r1 handshake");

    // control: a client without brainpool cannot talk to this server
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    b.set_ca_file(&files.ca_cert).unwrap();
    b.set_groups_list("P-256").unwrap();
    assert!(handshake(port, &b.build(), "localhost").await.is_err());
}

#[tokio::test]
async fn brainpool384_and_tls13() {
    let dir = tempfile::tempdir().unwrap();
    let files = kim_cm::testbed::ca::make_tls_ca(dir.path(), &[]).unwrap();
    let conn = tls::connector(&files.ca_cert, None).unwrap();
    let (_s, port) = s_server(dir.path(), &["-tls1_2", "-groups", "brainpoolP384r1"]);
    handshake(port, &conn, "localhost")
        .await
        .expect("brainpoolP384r1 handshake");
    let (_s, port) = s_server(dir.path(), &["-tls1_3"]);
    handshake(port, &conn, "localhost")
        .await
        .expect("TLS 1.3 handshake");
}

#[tokio::test]
async fn server_certificate_is_always_verified() {
    let dir = tempfile::tempdir().unwrap();
    let files = kim_cm::testbed::ca::make_tls_ca(dir.path(), &[]).unwrap();
    let (_s, port) = s_server(dir.path(), &[]);
    let conn = tls::connector(&files.ca_cert, None).unwrap();
    // wrong host name
    let e = handshake(port, &conn, "mta.other.kim.test")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("TLS handshake failed"), "{e}");
    // a CA that did not sign the server
    let other = tempfile::tempdir().unwrap();
    let other_files = kim_cm::testbed::ca::make_tls_ca(other.path(), &[]).unwrap();
    let conn = tls::connector(&other_files.ca_cert, None).unwrap();
    assert!(handshake(port, &conn, "localhost").await.is_err());
}

#[tokio::test]
async fn client_certificate_from_pkcs12_modern_and_legacy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = kim_cm::testbed::ca::make_tls_ca(d, &[]).unwrap();
    // a client CA and a client certificate, as createCert would issue it (CN = ...#CM)
    run(Command::new("openssl").current_dir(d).args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "cca.key",
        "-out",
        "cca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test client CA",
    ]));
    run(Command::new("openssl").current_dir(d).args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "cm.key",
        "-out",
        "cm.csr",
        "-subj",
        "/CN=praxis#CM",
    ]));
    run(Command::new("openssl").current_dir(d).args([
        "x509",
        "-req",
        "-in",
        "cm.csr",
        "-CA",
        "cca.pem",
        "-CAkey",
        "cca.key",
        "-CAcreateserial",
        "-out",
        "cm.pem",
        "-days",
        "2",
    ]));
    run(Command::new("openssl").current_dir(d).args([
        "pkcs12",
        "-export",
        "-inkey",
        "cm.key",
        "-in",
        "cm.pem",
        "-out",
        "modern.p12",
        "-passout",
        "pass:geheim",
    ]));
    run(Command::new("openssl").current_dir(d).args([
        "pkcs12",
        "-export",
        "-legacy",
        "-inkey",
        "cm.key",
        "-in",
        "cm.pem",
        "-out",
        "legacy.p12",
        "-passout",
        "pass:geheim",
    ]));
    let (_s, port) = s_server(
        d,
        &[
            "-Verify",
            "1",
            "-verify_return_error",
            "-CAfile",
            d.join("cca.pem").to_str().unwrap(),
        ],
    );

    // without a client certificate the server refuses
    let conn = tls::connector(&files.ca_cert, None).unwrap();
    let refused = async {
        let mut c = Conn::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(5)).await?;
        c.connect_tls(&conn, "localhost").await?;
        // TLS 1.3 reports the missing certificate on the first read
        c.send(b"ping\n").await?;
        c.read_line(100)
            .await
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    assert!(refused.await.is_err());

    for p12 in ["modern.p12", "legacy.p12"] {
        let id = tls::ClientIdentity {
            pkcs12: &d.join(p12),
            password: "geheim",
        };
        let conn =
            tls::connector(&files.ca_cert, Some(id)).unwrap_or_else(|e| panic!("{p12}: {e}"));
        let mut c = Conn::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(5))
            .await
            .unwrap();
        c.connect_tls(&conn, "localhost")
            .await
            .unwrap_or_else(|e| panic!("{p12}: {e}"));
        // s_server echoes nothing back in -quiet mode, but the connection stays open
        c.send(b"ping\n").await.unwrap();
    }

    // a wrong password names the file
    let id = tls::ClientIdentity {
        pkcs12: &d.join("modern.p12"),
        password: "wrong",
    };
    let e = tls::connector(&files.ca_cert, Some(id))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("modern.p12") && e.contains("wrong password"),
        "{e}"
    );
}

#[test]
fn gematik_sample_pkcs12_with_rc2_is_readable() {
    // gematik's TEST-ONLY sample: certificates under pbeWithSHA1And40BitRC2-CBC, which
    // OpenSSL 3 reads only with the legacy provider
    let p12 = Path::new("../shared/kim-api/samples/smime-profil/A/hci-enc-2-kim-bsp.p12");
    if !p12.exists() {
        panic!("gematik sample missing at {}", p12.display());
    }
    let dir = tempfile::tempdir().unwrap();
    let files = kim_cm::testbed::ca::make_tls_ca(dir.path(), &[]).unwrap();
    let id = tls::ClientIdentity {
        pkcs12: p12,
        password: "00",
    };
    tls::connector(&files.ca_cert, Some(id)).expect("legacy PKCS#12 readable");
}
