//! ECC encryption certificates (C.ENC_ECC) beside the RSA ones, while the TI
//! migrates: through a Konnektor with ECC support a mail is encrypted for every
//! certificate, RSA and ECC, of every party (KOM-LE-A_2022, A_17464), and a card
//! that offers only its ECC key opens it with DecryptDocument Crypt ECC (3.8.4);
//! through a Konnektor without ECC support (A_17472) and with software keys only
//! the RSA ones are used, and a recipient with nothing but ECC certificates counts
//! as one without a certificate. Each time recipient-emails names exactly the
//! certificates the mail is encrypted for.
//!
//! The sandbox with `--konnektor` provides the Fachdienst, the accounts and the
//! test PKI; the Konnektor is a second simulator started here, whose card for bob
//! holds an ECC key, and a second kim-cm uses it.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine;
use common::kimcm::{write_file, KimCm, Sandbox};
use common::konnektor_schema::validate_all;
use common::mail::{fetch_as, header_value, second_kimcm, send_as};
use kim_cm::cms::{self, oid};
use kim_cm::testbed::konnektor::{start, RunningSim, SimConfig, SimContext};
use kim_cm::testbed::pki;
use openssl::x509::X509;

/// bob's card in a simulator made from the sandbox's PKI (alice's is SMC-B-1).
const BOB_CARD: &str = "SMC-B-2";

fn pki_dir(sb: &Sandbox) -> PathBuf {
    sb.dir.path().join("sb").join("pki")
}

/// A simulated Konnektor with the sandbox's context and cards, bob's card with
/// the ECC key `bob_ecc`; fields drop in order (the simulator before its runtime).
struct EccKonnektor {
    sim: RunningSim,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl EccKonnektor {
    fn start(sb: &Sandbox, bob_ecc: &Path, ecc_support: bool) -> EccKonnektor {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let pki = sb.pki();
        let password = std::fs::read_to_string(&pki.password_file).unwrap();
        let context = SimContext {
            mandant: "1".into(),
            client_system: "KOM_LE".into(),
            workplace: "7".into(),
        };
        let mut config = SimConfig::from_pki(&pki, password.trim(), context);
        assert_eq!(config.cards[1].handle, BOB_CARD);
        config.cards[1].ecc_encryption_pkcs12 = Some(bob_ecc.to_path_buf());
        config.ecc = ecc_support;
        let dir = tempfile::tempdir().unwrap();
        let sim = rt.block_on(start(&dir.path().join("k"), config)).unwrap();
        EccKonnektor {
            sim,
            _rt: rt,
            _dir: dir,
        }
    }

    /// A kim-cm on the sandbox's config pointed at this Konnektor, logging at
    /// debug level.
    fn kimcm(&self, sb: &Sandbox) -> KimCm {
        second_kimcm(sb, |text| {
            let mut out = String::new();
            for line in text.lines() {
                if line.starts_with("sds_url = ") {
                    out.push_str(&format!("sds_url = \"{}\"\n", self.sim.sds_url));
                } else if line.starts_with("ca_file = ") && out.contains("[[konnektor]]") {
                    out.push_str(&format!("ca_file = \"{}\"\n", self.sim.tls_ca.display()));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out + "\n[log]\nlevel = \"debug\"\n"
        })
    }

    /// The DecryptDocument requests kim-cm sent, as text.
    fn decrypt_requests(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.sim.requests_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with("-DecryptDocument.xml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

/// The encryption certificates of `address` in the PKI's directory folder.
fn listed_certs(sb: &Sandbox, address: &str) -> Vec<X509> {
    let pem = std::fs::read(pki_dir(sb).join("directory").join(format!("{address}.pem")));
    X509::stack_from_pem(&pem.unwrap()).unwrap()
}

/// The ECC certificate in the PKCS#12 file `p12` of the sandbox's PKI.
fn cert_of(sb: &Sandbox, p12: &Path) -> X509 {
    let password = std::fs::read_to_string(pki_dir(sb).join(pki::PASSWORD_FILE)).unwrap();
    kim_cm::crypto::software::read_pkcs12(p12, password.trim())
        .unwrap()
        .cert
}

/// The AuthEnvelopedData of a stored KIM mail.
fn enveloped(mail: &[u8]) -> Vec<u8> {
    let (head, body) = kim_cm::kim::header::split(mail);
    assert!(
        header_value(head, "X-KOM-LE-Version").is_some(),
        "not a KIM mail:\n{}",
        String::from_utf8_lossy(mail)
    );
    let text: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// Per certificate, the key transport OID of its RecipientInfo, if it has one.
fn algorithm_for(der: &[u8], cert: &X509) -> Option<Vec<u8>> {
    cms::key_trans_infos(der)
        .unwrap()
        .into_iter()
        .find(|i| i.is_for(cert))
        .map(|i| i.algorithm)
}

/// The addresses recipient-emails names, sorted.
fn named(der: &[u8]) -> Vec<String> {
    let mut e = cms::recipient_emails_of(der).unwrap().unwrap().emails();
    e.sort();
    e
}

fn mail(sb: &Sandbox, subject: &str) -> PathBuf {
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let text = format!(
        "From: <{alice}>\r\nTo: <{bob}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@praxis-a.kim.test>\r\n\r\nBefund fuer RSA und ECC.\r\n"
    );
    write_file(sb.dir.path(), &format!("{subject}.eml"), text.as_bytes())
}

#[test]
fn with_ecc_support_the_mail_is_encrypted_for_rsa_and_ecc_and_an_ecc_only_card_opens_it() {
    let sb = Sandbox::start_konnektor();
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let bob_ecc = pki::ecc_encryption(&pki_dir(&sb), &bob, true).unwrap();
    let [bob_rsa, bob_ecc_cert] = <[X509; 2]>::try_from(listed_certs(&sb, &bob)).unwrap();
    assert_eq!(
        bob_ecc_cert.to_der().unwrap(),
        cert_of(&sb, &bob_ecc).to_der().unwrap()
    );
    let k = EccKonnektor::start(&sb, &bob_ecc, true);
    let kimcm = k.kimcm(&sb);

    let (code, err) = send_as(
        &sb,
        0,
        &kimcm.smtp.unwrap().to_string(),
        &mail(&sb, "ecc-1"),
        &[&bob],
    );
    assert_eq!(code, 0, "{err}\n{}", kimcm.log());
    // KOM-LE-A_2022: bob's RSA and ECC certificates and alice's RSA one, the ECC
    // one with the TI's ECIES
    let stored = sb.stored_mails(&bob);
    let der = enveloped(&stored[0]);
    assert_eq!(cms::key_trans_infos(&der).unwrap().len(), 3);
    assert_eq!(
        algorithm_for(&der, &bob_ecc_cert).as_deref(),
        Some(oid::TI_ECIES)
    );
    assert_eq!(
        algorithm_for(&der, &bob_rsa).as_deref(),
        Some(oid::RSAES_OAEP)
    );
    let alice_rsa = &listed_certs(&sb, &alice)[0];
    assert_eq!(
        algorithm_for(&der, alice_rsa).as_deref(),
        Some(oid::RSAES_OAEP)
    );
    assert_eq!(named(&der), vec![alice.clone(), bob.clone(), bob.clone()]);

    // bob's card offers only its ECC key: kim-cm finds it by the ECC certificate
    // and decrypts with Crypt ECC (3.8.4, C.ENC_ECC)
    k.sim
        .set_faults(&serde_json::json!({"rsa_encryption_unavailable": [BOB_CARD]}))
        .unwrap();
    let got = fetch_as(&sb, 1, &kimcm.pop3.unwrap().to_string(), 1);
    let text = String::from_utf8_lossy(&got);
    assert_eq!(
        header_value(&got, "X-KIM-DecryptionResult").as_deref(),
        Some("00"),
        "{text}\n{}",
        kimcm.log()
    );
    assert!(text.contains("Befund fuer RSA und ECC."), "{text}");
    let decrypts = k.decrypt_requests();
    assert_eq!(decrypts.len(), 1, "one DecryptDocument");
    assert!(
        decrypts[0].contains("Crypt>ECC</") && decrypts[0].contains(BOB_CARD),
        "{}",
        decrypts[0]
    );
    // every request and answer, ReadCardCertificate with Crypt ECC among them,
    // valid against gematik's schemas
    let n = validate_all(&k.sim.requests_dir()).unwrap();
    assert!(n > 0);
}

#[test]
fn without_ecc_support_only_rsa_certificates_are_used() {
    let sb = Sandbox::start_konnektor();
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let bob_ecc = pki::ecc_encryption(&pki_dir(&sb), &bob, true).unwrap();
    let bob_ecc_cert = cert_of(&sb, &bob_ecc);
    let k = EccKonnektor::start(&sb, &bob_ecc, false);
    let kimcm = k.kimcm(&sb);

    let (code, err) = send_as(
        &sb,
        0,
        &kimcm.smtp.unwrap().to_string(),
        &mail(&sb, "rsa-only"),
        &[&bob],
    );
    assert_eq!(code, 0, "{err}\n{}", kimcm.log());
    // A_17472: bob's ECC certificate is left out, and recipient-emails does not
    // name it
    let der = enveloped(&sb.stored_mails(&bob)[0]);
    let infos = cms::key_trans_infos(&der).unwrap();
    assert_eq!(infos.len(), 2);
    assert!(infos.iter().all(|i| i.algorithm == oid::RSAES_OAEP));
    assert_eq!(algorithm_for(&der, &bob_ecc_cert), None);
    assert_eq!(named(&der), vec![alice, bob]);
    let re = cms::recipient_emails_of(&der).unwrap().unwrap();
    assert!(re.for_cert(&bob_ecc_cert).is_empty());
    assert!(
        kimcm.log().contains("left_out=1"),
        "the debug log counts what was left out:\n{}",
        kimcm.log()
    );
    // bob opens it with his RSA key
    let got = fetch_as(&sb, 1, &kimcm.pop3.unwrap().to_string(), 1);
    assert_eq!(
        header_value(&got, "X-KIM-DecryptionResult").as_deref(),
        Some("00"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let decrypts = k.decrypt_requests();
    assert!(
        decrypts.len() == 1 && decrypts[0].contains("Crypt>RSA</"),
        "{decrypts:?}"
    );
    validate_all(&k.sim.requests_dir()).unwrap();
}

#[test]
fn software_keys_use_the_rsa_certificates_and_a_recipient_with_ecc_only_is_unreachable() {
    let sb = Sandbox::start();
    let (alice, ..) = sb.account(0);
    let (bob, ..) = sb.account(1);
    let bob_ecc = pki::ecc_encryption(&pki_dir(&sb), &bob, true).unwrap();
    let bob_ecc_cert = cert_of(&sb, &bob_ecc);
    let smtp = sb.addr("proxy_smtp");

    let (code, err) = send_as(&sb, 0, &smtp, &mail(&sb, "software"), &[&bob]);
    assert_eq!(code, 0, "{err}\n{}", sb.log());
    let der = enveloped(&sb.stored_mails(&bob)[0]);
    let infos = cms::key_trans_infos(&der).unwrap();
    assert_eq!(infos.len(), 2, "bob's and alice's RSA certificates");
    assert_eq!(algorithm_for(&der, &bob_ecc_cert), None);
    assert_eq!(named(&der), vec![alice, bob.clone()]);
    let got = fetch_as(&sb, 1, &sb.addr("proxy_pop3"), 1);
    assert_eq!(
        header_value(&got, "X-KIM-DecryptionResult").as_deref(),
        Some("00"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // bob's directory entry with the ECC certificate only: nobody left to
    // encrypt for, the mail is not sent (KOM-LE-A_2025), as without a certificate
    let only_ecc = bob_ecc_cert.to_pem().unwrap();
    std::fs::write(
        pki_dir(&sb).join("directory").join(format!("{bob}.pem")),
        only_ecc,
    )
    .unwrap();
    let (code, err) = send_as(&sb, 0, &smtp, &mail(&sb, "ecc-only"), &[&bob]);
    assert_ne!(code, 0);
    assert!(
        err.contains("451") && err.contains("No recipient has a valid encryption certificate"),
        "{err}"
    );
    assert_eq!(sb.stored_mails(&bob).len(), 1);
}
