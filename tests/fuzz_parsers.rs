//! Mutation fuzzing of every parser that takes outside bytes (issue 9, item 6),
//! on the stable toolchain: `cargo fuzz` needs a nightly compiler, which this
//! project's machines cannot fetch. Each target starts from real inputs
//! (gematik's sample mail, SMTP and POP3 dialogue, login names, an x-kas part,
//! Konnektor and CareFlex SOAP answers, sidecar values) and runs seeded
//! mutations of them (bit flips, random and "interesting" bytes, cuts, splices,
//! repeated slices, huge BER lengths) through the parser, which must return,
//! never panic. A failing input is written to `target/fuzz-crashes/` and named
//! in the failure, to become a regression test.
//!
//! Each target runs `KIM_FUZZ_ITERATIONS` inputs (default 20,000, about a second
//! in all), and at most `FUZZ_TIME_BOUND` of wall time. Longer runs and their
//! counts are in docs/reliability.md.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Default inputs per target in CI.
const DEFAULT_ITERATIONS: u64 = 20_000;
/// No target runs longer than this in one test run.
const FUZZ_TIME_BOUND: Duration = Duration::from_secs(20);

/// xorshift64*: deterministic, so a failure repeats with the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes parsers tend to trip over.
const INTERESTING: &[&[u8]] = &[
    b"\x00",
    b"\xff",
    b"\x80",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n.\r\n",
    b"..",
    b"\x30\x80",
    b"\x84\xff\xff\xff\xff",
    b"\x88\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\xc3\x28",
    b"=?utf-8?B?",
    b"--",
    b"<![CDATA[",
    b"&#0;",
    b"{\"",
    b"#",
];

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                let bytes = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, bytes.iter().copied());
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                v.drain(at..at + n);
            }
            4 => v.truncate(rng.below(len + 1)),
            5 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(256));
                let slice: Vec<u8> = v[at..at + n].to_vec();
                let to = rng.below(len + 1);
                v.splice(to..to, slice);
            }
            _ => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let random: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, random);
            }
        }
    }
    v
}

fn iterations() -> u64 {
    std::env::var("KIM_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS)
}

/// Runs `target` on mutations of `seeds`; panics naming the saved input when
/// the target panicked. Prints the count run.
fn fuzz(name: &str, seeds: &[Vec<u8>], target: impl Fn(&[u8])) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let start = Instant::now();
    let wanted = iterations();
    let mut ran = 0;
    // the seeds themselves first
    for s in seeds {
        target(s);
    }
    while ran < wanted && start.elapsed() < FUZZ_TIME_BOUND {
        let input = mutate(&seeds[rng.below(seeds.len())], &mut rng);
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .unwrap()
                .join("fuzz-crashes");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{name}-{ran}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!("{name}: the parser panicked on {}", path.display());
        }
        ran += 1;
    }
    eprintln!(
        "fuzz {name}: {ran} inputs in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(ran > 0);
}

const SAMPLES: &str = "../shared/kim-api/samples";

fn sample(path: &str) -> Vec<u8> {
    std::fs::read(format!("{SAMPLES}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn fuzz_the_receive_path_with_gematiks_sample_mail() {
    use kim_cm::crypto::opener::SoftwareOpener;
    use kim_cm::crypto::software::read_pkcs12;
    use kim_cm::kim::receive;
    let keys = vec![read_pkcs12(
        std::path::Path::new(&format!("{SAMPLES}/smime-profil/B/hci-enc-3-kim-bsp.p12")),
        "00",
    )
    .unwrap()];
    let trust = openssl::x509::store::X509StoreBuilder::new()
        .unwrap()
        .build();
    let opener = SoftwareOpener {
        keys: &keys,
        trust: &trust,
    };
    let seeds = vec![
        sample("smime-profil/inputEmail.txt.05.encryptedwrap"),
        sample("KAS/2_1_KOM-LE-Mail_empfangen.txt"),
    ];
    fuzz("receive", &seeds, |m| {
        // a KIM mail opens or becomes an error mail; anything else passes
        // through (A_21390): an answer either way
        let o = receive::open(m, "musterempfaenger@komle.de", &opener);
        assert!(!o.mail.is_empty() || m.is_empty());
    });
}

#[test]
fn fuzz_the_cms_walkers() {
    let seeds = vec![
        sample("smime-profil/inputEmail.txt.04.encryptedcms"),
        sample("smime-profil/inputEmail.txt.02.signedcms"),
    ];
    fuzz("cms", &seeds, |der| {
        let mut rest = der;
        while let Ok((_, r)) = kim_cm::cms::ber::read(rest) {
            if r.len() == rest.len() {
                break;
            }
            rest = r;
        }
        let _ = kim_cm::cms::decrypt::key_trans_infos(der);
        let _ = kim_cm::cms::decrypt::recipient_emails_of(der);
        let _ = kim_cm::cms::decrypt::parts_ok(der);
    });
}

#[test]
fn fuzz_smtp_and_pop3_commands_and_the_data_decoders() {
    let smtp: Vec<Vec<u8>> = [
        "EHLO client.example",
        "MAIL FROM:<alice@praxis-a.kim.test> SIZE=1000 BODY=8BITMIME",
        "RCPT TO:<bob@praxis-b.kim.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@praxis-b.kim.test",
        "AUTH PLAIN AGFsaWNlQHByYXhpcy1hLmtpbS50ZXN0AHB3",
        "DATA",
        "BDAT 100 LAST",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("smtp-command", &smtp, |line| {
        let _ = smtp_proto::Request::parse(&mut line.iter());
        let _ = kim_cm::smtp::auth::decode_plain(line);
        let _ = kim_cm::smtp::auth::decode_login_field(line);
    });
    let pop3: Vec<Vec<u8>> = [
        "USER bob",
        "PASS x",
        "RETR 1",
        "TOP 1 10",
        "UIDL",
        "AUTH PLAIN",
        "DELE 99999999999999999999",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("pop3-command", &pop3, |line| {
        let _ = kim_cm::pop3::command::parse(line);
        let _ = kim_cm::pop3::command::is_auth(line);
    });
    let data = vec![
        b"Subject: x\r\n\r\nline\r\n..dot\r\n.\r\nQUIT\r\n".to_vec(),
        b"a\n.\nb\r.\r\n.\r\n".to_vec(),
    ];
    fuzz("data-decoders", &data, |input| {
        let mut out = Vec::new();
        let mut d = kim_cm::smtp::data::DataDecoder::new();
        if let Some(n) = d.feed(input, &mut out) {
            assert!(n <= input.len());
        }
        let mut out = Vec::new();
        let mut m = kim_cm::pop3::multiline::MultilineDecoder::new();
        if let Some(n) = m.feed(input, &mut out) {
            assert!(n <= input.len());
        }
    });
}

#[test]
fn fuzz_login_names_and_the_kas_structure() {
    use kim_cm::kim::login::{parse, Protocol};
    let names: Vec<Vec<u8>> = [
        "alice@praxis-a.kim.test",
        "alice@praxis-a.kim.test#mail.kim.test:465#1#KOM_LE#7",
        "bob@praxis-b.kim.test#[::1]:995#1#KOM_LE#7#user#konn",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("login", &names, |raw| {
        let text = String::from_utf8_lossy(raw);
        let _ = parse(&text, Protocol::Smtp);
        let _ = parse(&text, Protocol::Pop3);
    });
    let kas = vec![
        sample("KAS/2_3_Client-Mail_heruntergeladen.txt"),
        sample("KAS/1_3_Client-Mail_hochgeladen.txt"),
    ];
    fuzz("x-kas", &kas, |mail| {
        let _ = kim_cm::kim::kas::kas_content(mail);
    });
}

#[test]
fn fuzz_soap_answers_and_sidecar_values() {
    let soap = vec![
        br#"<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:DecryptDocumentResponse xmlns:m="urn"><m:Status><m:Result>OK</m:Result></m:Status></m:DecryptDocumentResponse></soap:Body></soap:Envelope>"#.to_vec(),
        br#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>x</faultstring><detail><Error xmlns="http://ws.gematik.de/tel/error/v2.0"><Trace><Code>4004</Code></Trace></Error></detail></soap:Fault></soap:Body></soap:Envelope>"#.to_vec(),
    ];
    fuzz("konnektor-soap", &soap, |body| {
        let _ = kim_cm::konnektor::soap::answer(hyper::StatusCode::OK, body, "fuzz", |n| {
            Ok(n.children().count())
        });
        let _ = kim_cm::sidecar::careflex::soap::fault(body);
    });
    let values: Vec<Vec<u8>> = [
        "31129956715",
        "L248519",
        "123456K",
        "2026-12-02T10:00:00.00000Z",
        "{\"number\":\"L248519\",\"x\":[{\"id\":1}]}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("sidecar-values", &values, |raw| {
        let text = String::from_utf8_lossy(raw);
        let _ = kim_cm::sidecar::helsenorge::nin::validate(&text, Default::default());
        let _ = kim_cm::sidecar::helsenorge::offset::parse(&text);
        let _ = kim_cm::sidecar::zsr::number::parse(&text, Default::default());
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(raw) {
            let _ = kim_cm::sidecar::zsr::api::record_number(&v);
        }
    });
}

/// The answers of the NSP services (BRS, notifications, STS, DGWS faults, the
/// XML signature and canonicalisation they go through) and of the Helsenorge feed.
#[test]
fn fuzz_the_sidecar_services_answers() {
    use kim_cm::sidecar::brs::{c14n, client, dgws, dsig, idcard};
    let seeds: Vec<Vec<u8>> = [
        r#"<?xml version='1.0' encoding='UTF-8'?><ns6:treatmentRelationResponseBody xmlns:ns6="http://nsi.dk/fmki20110601/brs"><ns6:SufficientRelation>false</ns6:SufficientRelation><ns6:ActualRelations><ns6:Relation>C</ns6:Relation></ns6:ActualRelations><ns6:FollowupOrdered>true</ns6:FollowupOrdered><ns6:UniqueReferenceId>0044ba5a</ns6:UniqueReferenceId><ns6:ExternalReferenceId>e4a4ab3f</ns6:ExternalReferenceId></ns6:treatmentRelationResponseBody>"#,
        r#"<ns5:NotificationQueryResponseBody xmlns:ns5="http://nsi.dk/fmki20110601/notification"><ns5:Notifications><ns5:Type>BRS</ns5:Type><ns5:SerialNumber>1027</ns5:SerialNumber><ns5:ExternalReferenceId>e4</ns5:ExternalReferenceId><ns5:QueryableCvr>31908574</ns5:QueryableCvr><T:TreatmentRelationAlarmType xmlns:T="http://nsi.dk/fmki20110601/brs"><T:TreatmentRelationFollowup><T:TreatmentRelationRelayerData><T:OrganisationIdentifier><T:DoctorOrganisationIdentifier>132435</T:DoctorOrganisationIdentifier></T:OrganisationIdentifier><T:PatientCpr>0101601951</T:PatientCpr></T:TreatmentRelationRelayerData><T:TimeLimit>2013-09-30T11:04:37+02:00</T:TimeLimit></T:TreatmentRelationFollowup></T:TreatmentRelationAlarmType></ns5:Notifications></ns5:NotificationQueryResponseBody>"#,
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>medcom:invalid_idcard</faultcode><faultstring>card expired</faultstring></soap:Fault></soap:Body></soap:Envelope>"#,
        r##"<wst:RequestSecurityTokenResponse xmlns:wst="http://schemas.xmlsoap.org/ws/2005/02/trust"><saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" id="IDCard"><saml:Conditions NotBefore="2026-12-06T00:00:00Z" NotOnOrAfter="2026-12-07T00:00:00Z"/><ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#IDCard"><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>AAAA</ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>MIIB</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature></saml:Assertion></wst:RequestSecurityTokenResponse>"##,
        r#"{"Offset":"2026-12-02T10:00:00.00000Z","Fnr":["31129956715"]}"#,
        r#"{"code":"invalid_token","message":"expired"}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("sidecar-answers", &seeds, |raw| {
        let text = String::from_utf8_lossy(raw);
        let _ = client::RelationAnswer::parse(&text);
        let _ = client::Notification::parse_page(&text);
        let _ = dgws::Fault::parse(&text);
        let _ = idcard::card_from_sts_answer(&text);
        if let Ok(doc) = roxmltree::Document::parse(&text) {
            let _ = c14n::exclusive(doc.root_element(), None);
            let _ = dsig::verify_enveloped(&doc, idcard::CARD_ID);
        }
        let _ = serde_json::from_slice::<kim_cm::sidecar::helsenorge::client::Changes>(raw);
        let _ = kim_cm::sidecar::helsenorge::client::ServiceError::parse(raw);
    });
}
