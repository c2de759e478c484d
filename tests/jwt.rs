//! The Account Manager's JWT (gemSpec_CM_KOMLE A_19457-02) from `kim-cm account
//! jwt`: once from the SMC-B's AUT key through the simulated Konnektor's
//! ExternalAuthenticate, once from a software AUT key (PKCS#12). Each token is
//! checked independently with the `openssl` command (RSASSA-PSS, SHA-256, salt 32
//! over the signing input, with the key of the x5c certificate), its header and
//! nbf read, and the Konnektor's request log validated against gematik's schemas.
//! The faults: a pulled card, a Konnektor without AuthSignatureService.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::kimcm::bin;
use common::konnektor_schema::validate_all;
use kim_cm::testbed::konnektor::{start, RunningSim, SimConfig, SimContext};
use kim_cm::testbed::pki::TestPki;

const ALICE: &str = "alice@praxis-a.kim.test";
const BOB: &str = "bob@praxis-b.kim.test";

/// A test PKI, a simulated Konnektor with both practices' SMC-Bs, and a config in
/// which alice's AUT key is on her card and bob's in a PKCS#12 file; fields drop
/// in order (the simulator before its runtime).
struct Setup {
    sim: RunningSim,
    _rt: tokio::runtime::Runtime,
    pki: TestPki,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(adjust: impl FnOnce(&mut SimConfig)) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki = kim_cm::testbed::pki::make(&dir.path().join("pki"), &[ALICE, BOB]).unwrap();
        let password = std::fs::read_to_string(&pki.password_file).unwrap();
        let context = SimContext {
            mandant: "1".into(),
            client_system: "KOM_LE".into(),
            workplace: "7".into(),
        };
        let mut sim_config = SimConfig::from_pki(&pki, password.trim(), context);
        adjust(&mut sim_config);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sim = rt
            .block_on(start(&dir.path().join("konnektor"), sim_config))
            .unwrap();
        // bob has a Konnektor too: his software AUT key wins
        let text = format!(
            r#"[log]
level = "debug"
[upstream]
ca_file = "{ca}"
[[smtp_listener]]
address = "127.0.0.1:0"
tls = "plain"
[directory]
folder = "{directory}"
[[konnektor]]
id = "praxis"
sds_url = "{sds}"
ca_file = "{tls_ca}"
[[account]]
address = "{ALICE}"
smtp_server = "127.0.0.1:465"
pop3_server = "127.0.0.1:995"
mandant_id = "1"
client_system_id = "KOM_LE"
workplace_id = "7"
konnektor = "praxis"
[[account]]
address = "{BOB}"
smtp_server = "127.0.0.1:465"
pop3_server = "127.0.0.1:995"
mandant_id = "1"
client_system_id = "KOM_LE"
workplace_id = "7"
konnektor = "praxis"
aut_pkcs12 = "{bob_aut}"
pkcs12_password_file = "{password_file}"
"#,
            ca = pki.ca_cert.display(),
            directory = pki.directory.display(),
            sds = sim.sds_url,
            tls_ca = sim.tls_ca.display(),
            bob_aut = pki.accounts[1].aut_pkcs12.display(),
            password_file = pki.password_file.display(),
        );
        let config = dir.path().join("kim-cm.toml");
        std::fs::write(&config, text).unwrap();
        Setup {
            sim,
            _rt: rt,
            pki,
            config,
            dir,
        }
    }

    /// `kim-cm account jwt` for `account`: (exit code, stdout, stderr).
    fn jwt(&self, account: &str) -> (i32, String, String) {
        let out = Command::new(bin())
            .args(["account", "jwt", "--config"])
            .arg(&self.config)
            .arg(account)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The AUT certificate (DER) of account `i` from its PKCS#12 file.
    fn aut_cert_der(&self, i: usize) -> Vec<u8> {
        let password = std::fs::read_to_string(&self.pki.password_file).unwrap();
        kim_cm::crypto::software::read_pkcs12(&self.pki.accounts[i].aut_pkcs12, password.trim())
            .unwrap()
            .cert
            .to_der()
            .unwrap()
    }

    /// The operations the Konnektor was asked for, in order.
    fn calls(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.sim.requests_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".xml") && !n.ends_with("-response.xml"))
            .collect();
        names.sort();
        names
            .iter()
            .filter_map(|n| n.trim_end_matches(".xml").split_once('-'))
            .map(|(_, op)| op.to_string())
            .collect()
    }
}

fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Checks `token` without kim-cm's code: its parts, its header and body, and its
/// signature with `openssl dgst` and the key of the x5c certificate. Returns the
/// certificate's DER.
fn check_with_openssl(token: &str, dir: &Path) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    for p in &parts {
        assert!(
            p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "base64url without padding: {p}"
        );
    }
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "PS256", "{header}");
    assert_eq!(header["typ"], "JWT", "{header}");
    let x5c = header["x5c"].as_array().unwrap();
    assert_eq!(x5c.len(), 1, "{header}");
    assert_eq!(header.as_object().unwrap().len(), 3, "{header}");
    // standard base64, not base64url
    let der = STANDARD.decode(x5c[0].as_str().unwrap()).unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1, "only nbf: {body}");
    let nbf = body["nbf"].as_i64().expect("nbf is a number");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - nbf).abs() <= 60,
        "nbf {nbf} within a minute of {now}"
    );

    std::fs::write(dir.join("input"), format!("{}.{}", parts[0], parts[1])).unwrap();
    std::fs::write(
        dir.join("sig.bin"),
        URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("cert.der"), &der).unwrap();
    let (ok, out) = openssl(
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            "cert.der",
            "-pubkey",
            "-noout",
            "-out",
            "pubkey.pem",
        ],
        dir,
    );
    assert!(ok, "{out}");
    let verify = [
        "dgst",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        "-sigopt",
        "rsa_mgf1_md:sha256",
        "-verify",
        "pubkey.pem",
        "-signature",
        "sig.bin",
        "input",
    ];
    let (ok, out) = openssl(&verify, dir);
    assert!(ok && out.contains("Verified OK"), "{out}");
    // the check can fail: one byte of the input changed
    let mut tampered = std::fs::read(dir.join("input")).unwrap();
    tampered[0] ^= 1;
    std::fs::write(dir.join("input"), tampered).unwrap();
    let (ok, out) = openssl(&verify, dir);
    assert!(!ok, "a changed input does not verify: {out}");
    der
}

#[test]
fn a_jwt_from_the_konnektor_and_from_a_software_key_verify_with_openssl() {
    let s = Setup::new(|_| {});

    // alice: the SMC-B's AUT key through ExternalAuthenticate
    let (code, out, err) = s.jwt(ALICE);
    assert_eq!(code, 0, "{err}");
    let token = out.strip_suffix('\n').expect("one line");
    assert!(!token.contains('\n'), "nothing but the token: {out}");
    let der = check_with_openssl(token, &s.dir.path().join("alice"));
    assert_eq!(der, s.aut_cert_der(0), "x5c is alice's C.AUT");
    let verified = kim_cm::crypto::jwt::verify(token).unwrap();
    assert_eq!(verified.cert.to_der().unwrap(), der);
    // the card was picked by alice's encryption certificate, then its C.AUT read
    // and the hash signed
    let calls = s.calls();
    assert_eq!(
        calls,
        [
            "GetCards",
            "ReadCardCertificate",
            "ReadCardCertificate",
            "ExternalAuthenticate"
        ],
        "{calls:?}"
    );
    assert!(
        !err.contains(token) && !err.contains(token.rsplit('.').next().unwrap()),
        "the token is not logged: {err}"
    );

    // bob: his software AUT key, though his account has the Konnektor too
    let (code, out, err) = s.jwt(BOB);
    assert_eq!(code, 0, "{err}");
    let token = out.strip_suffix('\n').expect("one line");
    let der = check_with_openssl(token, &s.dir.path().join("bob"));
    assert_eq!(der, s.aut_cert_der(1), "x5c is bob's AUT certificate");
    assert_eq!(s.calls().len(), calls.len(), "the Konnektor was not asked");
    let password = std::fs::read_to_string(&s.pki.password_file).unwrap();
    assert!(!err.contains(token), "the token is not logged: {err}");
    assert!(
        !err.contains(password.trim()),
        "the PKCS#12 password is not logged: {err}"
    );
    assert!(err.contains("software"), "the log says which key: {err}");

    // every request and answer, ExternalAuthenticate's included, is schema-valid
    let n = validate_all(&s.sim.requests_dir()).unwrap();
    assert_eq!(n, 2 * calls.len());
}

#[test]
fn a_pulled_card_or_a_konnektor_without_the_service_fails_with_a_clear_error() {
    let s = Setup::new(|_| {});
    s.sim
        .set_faults(&serde_json::json!({"removed_cards": ["SMC-B-1"]}))
        .unwrap();
    let (code, out, err) = s.jwt(ALICE);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "no token: {out}");
    assert!(
        err.contains(&format!("could not sign the JWT for {ALICE}"))
            && err.contains("SMC-B")
            && err.contains("insert the practice's card"),
        "{err}"
    );
    assert!(!s.calls().contains(&"ExternalAuthenticate".to_string()));
    // put back: the token comes
    s.sim.set_faults(&serde_json::json!({})).unwrap();
    let (code, _, err) = s.jwt(ALICE);
    assert_eq!(code, 0, "{err}");

    // an account nobody gave an AUT key, and one not in the config
    let (code, _, err) = s.jwt("carol@praxis-c.kim.test");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no [[account]]"), "{err}");

    // a Konnektor whose service directory lists no AuthSignatureService
    let without = Setup::new(|c| c.offer_auth_signature = false);
    let (code, out, err) = without.jwt(ALICE);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("AuthSignatureService 7.4.x") && err.contains("aut_pkcs12"),
        "{err}"
    );
    // the mail operations still work with such a Konnektor: the directory was read
    assert!(without.calls().contains(&"ReadCardCertificate".to_string()));
}
