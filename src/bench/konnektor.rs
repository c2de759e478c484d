//! `kim-cm bench konnektor`: seals and opens per second through the simulated
//! Konnektor with concurrent clients, and Konnektor round trips per mail.
//!
//! Everything runs in this process: the test PKI, the simulator on loopback, and
//! kim-cm's Konnektor provider driving the same send and receive rules the proxy
//! runs ([`crate::kim::seal`], [`crate::kim::receive`]). The simulator does the
//! cryptography with software keys, so the figures measure kim-cm's SOAP client,
//! card handling and TLS against a fast Konnektor; a real one is slower (its
//! cards sign at a few per second).

use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::x509::X509;

use super::BenchResult;
use crate::crypto::konnektor::{KonnektorCrypto, KonnektorOpener, KonnektorSealer};
use crate::http::client::HttpSettings;
use crate::http::url::HttpsUrl;
use crate::kim::login::CallContext;
use crate::kim::send::{outer_fields, Version};
use crate::kim::{receive, seal};
use crate::konnektor::{Konnektor, KonnektorSettings, KONNEKTOR_TIMEOUT};
use crate::testbed::konnektor::{self, SimConfig, SimContext};
use crate::testbed::pki;

const ALICE: &str = "alice@praxis-a.kim.test";
const BOB: &str = "bob@praxis-b.kim.test";
/// The connect timeout of the benchmark's client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn mail(size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <{ALICE}>\r\nTo: <{BOB}>\r\nSubject: Bench\r\nMessage-ID: <bench@praxis-a.kim.test>\r\n\r\n"
    )
    .into_bytes();
    while m.len() < size {
        m.extend_from_slice(&[b'x'; 76]);
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// Runs `clients` tasks that each repeat `step` for `dur`; steps per second.
async fn rate<F>(clients: usize, dur: Duration, step: F) -> BenchResult<f64>
where
    F: Fn() -> BenchResult<()> + Send + Sync + 'static,
{
    let step = Arc::new(step);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let step = step.clone();
        tasks.push(tokio::task::spawn_blocking(move || -> BenchResult<u64> {
            let mut n = 0;
            while start.elapsed() < dur {
                step()?;
                n += 1;
            }
            Ok(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

pub async fn run(clients: usize, size: usize, seconds: u64) -> BenchResult<()> {
    let dir = tempfile::tempdir()?;
    let made = pki::make(&dir.path().join("pki"), &[ALICE, BOB])?;
    let password = std::fs::read_to_string(&made.password_file)?;
    let context = SimContext {
        mandant: "1".into(),
        client_system: "KOM_LE".into(),
        workplace: "7".into(),
    };
    let mut config = SimConfig::from_pki(&made, password.trim(), context);
    config.log_requests = false;
    let sim = konnektor::start(&dir.path().join("konnektor"), config).await?;
    let settings = KonnektorSettings {
        sds_url: HttpsUrl::parse(&sim.sds_url)?,
        http: HttpSettings {
            connector: Arc::new(crate::net::tls::connector(&sim.tls_ca, None)?),
            connect_timeout: CONNECT_TIMEOUT,
            timeout: KONNEKTOR_TIMEOUT,
        },
        basic: None,
    };
    let konnektor = Arc::new(Konnektor::new(settings));
    let crypto = Arc::new(KonnektorCrypto::new(konnektor.clone()));
    let ctx = CallContext {
        mandant_id: "1".into(),
        client_system_id: "KOM_LE".into(),
        workplace_id: "7".into(),
        user_id: None,
    };
    let certs = |a: &str| -> Vec<X509> {
        std::fs::read(made.directory.join(format!("{a}.pem")))
            .ok()
            .and_then(|p| X509::stack_from_pem(&p).ok())
            .unwrap_or_default()
    };
    let directory: Arc<Vec<(String, Vec<X509>)>> =
        Arc::new(vec![(ALICE.into(), certs(ALICE)), (BOB.into(), certs(BOB))]);
    let trust = Arc::new(crate::crypto::trust::load(Some(&made.ca_cert))?);
    let body = Arc::new(mail(size));
    let runtime = tokio::runtime::Handle::current();
    let dur = Duration::from_secs(seconds);

    let seal_one = {
        let (crypto, ctx, directory, body, runtime) = (
            crypto.clone(),
            ctx.clone(),
            directory.clone(),
            body.clone(),
            runtime.clone(),
        );
        move || -> BenchResult<Vec<u8>> {
            let sealer = KonnektorSealer {
                crypto: &crypto,
                context: &ctx,
                runtime: runtime.clone(),
            };
            let lookup = |a: &str| {
                directory
                    .iter()
                    .find(|(d, _)| d.eq_ignore_ascii_case(a))
                    .map(|(_, c)| c.clone())
                    .unwrap_or_default()
            };
            let fields = outer_fields(None, Version::Small);
            let sealed = seal::seal(
                body.to_vec(),
                ALICE,
                &[BOB.to_string()],
                &lookup,
                &sealer,
                &fields,
            )?;
            Ok(sealed.mail)
        }
    };
    // the first mail finds the cards; it is the one opened below
    let first_calls = konnektor.calls();
    let seal_first = seal_one.clone();
    let sealed = tokio::task::spawn_blocking(seal_first).await??;
    let first_send = konnektor.calls() - first_calls;
    let before = konnektor.calls();
    let seal_again = seal_one.clone();
    tokio::task::spawn_blocking(move || seal_again().map(drop)).await??;
    let cached_send = konnektor.calls() - before;

    let open_one = {
        let (crypto, ctx, trust, runtime) =
            (crypto.clone(), ctx.clone(), trust.clone(), runtime.clone());
        let sealed = Arc::new(sealed);
        move || -> BenchResult<()> {
            let opener = KonnektorOpener {
                crypto: &crypto,
                context: &ctx,
                trust: &trust,
                runtime: runtime.clone(),
            };
            let o = receive::open(sealed.to_vec(), BOB, &opener);
            if o.decryption != "00" || o.integrity != "01" {
                return Err(format!("opened with {} / {}", o.decryption, o.integrity).into());
            }
            Ok(())
        }
    };
    let open_first = open_one.clone();
    let before = konnektor.calls();
    tokio::task::spawn_blocking(open_first).await??;
    let first_receive = konnektor.calls() - before;
    let before = konnektor.calls();
    let open_again = open_one.clone();
    tokio::task::spawn_blocking(open_again).await??;
    let cached_receive = konnektor.calls() - before;

    println!("Konnektor calls per mail ({size} bytes):");
    println!("  send:    first {first_send}, then {cached_send} (SignDocument + EncryptDocument)");
    println!("  receive: first {first_receive}, then {cached_receive} (DecryptDocument + VerifyDocument)");
    let seals = rate(clients, dur, move || seal_one().map(drop)).await?;
    let opens = rate(clients, dur, open_one).await?;
    println!("Through the simulated Konnektor, {clients} concurrent clients, {seconds} s each:");
    println!("  seals per second: {seals:.1}");
    println!("  opens per second: {opens:.1}");
    drop(sim);
    Ok(())
}
