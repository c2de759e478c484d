//! Sealing and opening speed on one core, and peak memory for the largest mail that
//! does not go to the KAS (issue 3, "Measured"). Run with
//! `cargo bench --bench seal_open`; results in docs/performance.md.
//!
//! Single-threaded on purpose: the figure is per core. Each size runs for
//! `SECONDS_PER_CASE` seconds of sealing, then as long of opening.
//! `-- --largest` measures the peak memory of one 15 MiB mail instead (with
//! `PROBE=1`, the peak after each step of opening as well).

use std::time::{Duration, Instant};

use kim_cm::crypto::opener::SoftwareOpener;
use kim_cm::crypto::sealer::SoftwareSealer;
use kim_cm::crypto::software::SoftwareKeys;
use kim_cm::kim::{receive, seal, send};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

const SECONDS_PER_CASE: u64 = 3;
/// The largest mail sealed whole: just under the KAS threshold (15 MiB).
const LARGEST: usize = 15 * 1024 * 1024 - 4096;

fn mail(size: usize) -> Vec<u8> {
    let mut m = b"From: <a@x.de>\r\nTo: <b@x.de>\r\nSubject: bench\r\n\r\n".to_vec();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    m
}

fn vm(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_string())
        .unwrap_or_default()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let pki = kim_cm::testbed::pki::make(dir.path(), &["a@x.de", "b@x.de"]).unwrap();
    let mut keys = SoftwareKeys::default();
    for (i, a) in ["a@x.de", "b@x.de"].iter().enumerate() {
        let acc = &pki.accounts[i];
        keys.insert(
            a,
            SoftwareKeys::read_account(
                &acc.signing_pkcs12,
                &acc.encryption_pkcs12,
                Some(&pki.password_file),
            )
            .unwrap(),
        );
    }
    let mut store = X509StoreBuilder::new().unwrap();
    store
        .add_cert(X509::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap())
        .unwrap();
    let trust = store.build();
    let certs = |a: &str| match keys.account(a) {
        Some(k) => vec![k.encryption[0].cert.clone()],
        None => Vec::new(),
    };
    let sealer = SoftwareSealer { keys: &keys };
    let opener = SoftwareOpener {
        keys: &keys.account("b@x.de").unwrap().encryption,
        trust: &trust,
    };
    let rcpt = vec!["b@x.de".to_string()];
    let fields = send::outer_fields(None, send::Version::Small);
    let seal_one = |m: Vec<u8>| {
        seal::seal(m, "a@x.de", &rcpt, &certs, &sealer, &fields)
            .unwrap()
            .mail
    };

    kim_cm::memory::return_large_buffers();
    if std::env::args().any(|a| a == "--largest") {
        // peak memory only: one mail of the largest size, sealed and opened
        let before = vm("VmHWM:");
        let input = mail(LARGEST);
        let n = input.len();
        let sealed = seal_one(input);
        let after_seal = vm("VmHWM:");
        // the peak of opening alone: reset the high-water mark (Linux clear_refs 5)
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let base = vm("VmRSS:");
        if std::env::var("PROBE").is_ok() {
            let step = |what: &str| {
                println!("  {what}: peak {}", vm("VmHWM:"));
                let _ = std::fs::write("/proc/self/clear_refs", "5");
            };
            let (_, body) = kim_cm::kim::header::split(&sealed);
            let env = kim_cm::kim::wrap::decode_base64_lines(body).unwrap();
            step("base64 decoded");
            let k = &keys.account("b@x.de").unwrap().encryption[0];
            let d = kim_cm::cms::decrypt(&env, &k.cert, &k.key).unwrap();
            step("decrypted");
            drop(env);
            let signed = kim_cm::kim::wrap::signed_unwrap(&d.content).unwrap();
            let v = kim_cm::cms::verify(&signed, &trust);
            step("verified");
            drop(v);
        }
        let sealed_mib = sealed.len() as f64 / 1048576.0;
        // handed over as the POP3 side does: the received mail is the opener's
        let opened = receive::open(sealed, "b@x.de", &opener);
        assert_eq!(opened.integrity, "01");
        println!(
            "largest mail {:.1} MiB (sealed {sealed_mib:.1} MiB): peak RSS before {before}, sealing {after_seal}; opening: from {base} to peak {}",
            n as f64 / 1048576.0,
            vm("VmHWM:")
        );
        return;
    }

    println!("one core, RSA-2048, {SECONDS_PER_CASE} s per case");
    for size in [10 * 1024, 1024 * 1024] {
        let m = mail(size);
        let sealed = seal_one(m.clone());
        let budget = Duration::from_secs(SECONDS_PER_CASE);
        let (mut n, t) = (0u64, Instant::now());
        while t.elapsed() < budget {
            std::hint::black_box(seal_one(m.clone()));
            n += 1;
        }
        let seal_rate = n as f64 / t.elapsed().as_secs_f64();
        let (mut k, t) = (0u64, Instant::now());
        while t.elapsed() < budget {
            let o = receive::open(&sealed[..], "b@x.de", &opener);
            assert_eq!(o.integrity, "01");
            k += 1;
        }
        let open_rate = k as f64 / t.elapsed().as_secs_f64();
        let mb = size as f64 / 1e6;
        println!(
            "{:>8} bytes: sealed {seal_rate:>7.1}/s ({:>6.1} MB/s), opened {open_rate:>7.1}/s ({:>6.1} MB/s)",
            size,
            seal_rate * mb,
            open_rate * mb
        );
    }
}
