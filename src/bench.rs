//! `kim-cm bench`: measurements that print figures (results in docs/performance.md).
//!
//! Each benchmark starts a simulated Fachdienst in this process and the proxy as a
//! separate `kim-cm serve` process, so that the proxy's figures (peak RSS above all)
//! are its own, and then drives both the proxy and the Fachdienst directly in one
//! run, so the two rates are comparable.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::Subcommand;

mod konnektor;
mod zsr;
use tokio::io::{AsyncRead, ReadBuf};

use crate::kim::login::Server;
use crate::net::{tls, TlsMode};
use crate::smtp::client::{ClientSettings, SmtpClient, UpstreamEnvelope};
use crate::testbed::fachdienst::{self, Fachdienst};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Rounds of the relay benchmark (each: direct, then through the proxy).
const RELAY_ROUNDS: usize = 3;

/// How long the proxy process may take to start.
const PROXY_START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand, Debug, Clone)]
pub enum Bench {
    /// Mails per second through the proxy vs. straight to the simulated Fachdienst.
    Relay {
        /// Concurrent SMTP clients, each with its own session.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Mail size in bytes.
        #[arg(long, default_value_t = 10240)]
        size: usize,
        /// Seconds per phase; three rounds of direct, then through the proxy.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// The proxy seals every mail (test PKI); without it, the transport alone.
        #[arg(long)]
        sealed: bool,
    },
    /// One large mail through the proxy vs. direct: time, throughput, proxy peak RSS.
    Large {
        /// Mail size in MiB (with --sealed, over 15 MiB goes through the simulated
        /// KIM Attachment Service).
        #[arg(long, default_value_t = 200)]
        mib: u64,
        /// The proxy seals the mail and opens it again on a POP3 RETR through it;
        /// the direct run fetches its copy straight from the Fachdienst.
        #[arg(long)]
        sealed: bool,
    },
    /// Seals and opens per second through the simulated Konnektor, and its round
    /// trips per mail.
    Konnektor {
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Mail size in bytes.
        #[arg(long, default_value_t = 10240)]
        size: usize,
        /// Seconds per phase (sealing, then opening).
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// A full ZSR sync against the simulator: wall time, requests, peak RSS.
    Zsr {
        /// Numbers in the simulated register.
        #[arg(long, default_value_t = 100_000)]
        numbers: usize,
        /// `limit` of one number-list page.
        #[arg(long, default_value_t = 1000)]
        page_size: u32,
    },
    /// The KAS blob path on one core, in memory: AES-256-GCM + SHA-256 of the
    /// plaintext, sealing and opening.
    KasCrypto {
        /// Data size in MiB.
        #[arg(long, default_value_t = 512)]
        mib: usize,
    },
}

/// The machine's ceiling for AES-256-GCM and SHA-256 over the same bytes on one
/// core (reference/crypto-and-crates.md: 2.8 GB/s and 1.33 GB/s, about 0.9 GB/s).
const KAS_CEILING_GBPS: f64 = 0.9;
/// Plaintext per step of the KAS crypto benchmark, as the upload reads it.
const KAS_CHUNK: usize = 256 * 1024;

/// `bench kas-crypto`: GB/s of sealing and opening `mib` MiB.
fn kas_crypto(mib: usize) -> BenchResult<()> {
    use crate::crypto::kas_blob::{BlobOpener, BlobSealer};
    let chunk: Vec<u8> = (0..KAS_CHUNK).map(|i| (i * 7 + 3) as u8).collect();
    let steps = mib * 1024 * 1024 / KAS_CHUNK;
    let bytes = (steps * KAS_CHUNK) as f64;
    let mut sealer = BlobSealer::new()?;
    let mut out = Vec::with_capacity(KAS_CHUNK + 64);
    let mut sealed_chunks: Vec<Vec<u8>> = Vec::new();
    let start = Instant::now();
    for i in 0..steps {
        out.clear();
        sealer.update(&chunk, &mut out)?;
        // keep a few chunks to open below (the rest are dropped, like an upload)
        if i < 2 {
            sealed_chunks.push(out.clone());
        }
    }
    out.clear();
    let blob = sealer.finish(&mut out)?;
    let seal_secs = start.elapsed().as_secs_f64();
    let gbps = bytes / seal_secs / 1e9;
    println!(
        "kas-crypto: {mib} MiB in {} KiB chunks, one core",
        KAS_CHUNK / 1024
    );
    println!(
        "  seal (AES-256-GCM + SHA-256)  {gbps:>6.2} GB/s  ({:.0} % of the {KAS_CEILING_GBPS} GB/s ceiling)",
        gbps / KAS_CEILING_GBPS * 100.0
    );
    // opening: a blob of the same size, sealed first (not timed)
    let mut sealer = BlobSealer::new()?;
    let mut whole = Vec::with_capacity(steps * KAS_CHUNK + 64);
    for _ in 0..steps {
        sealer.update(&chunk, &mut whole)?;
    }
    let blob2 = sealer.finish(&mut whole)?;
    let mut opener = BlobOpener::new(&blob2.k)?;
    let mut plain = Vec::with_capacity(KAS_CHUNK + 64);
    let start = Instant::now();
    for c in whole.chunks(KAS_CHUNK) {
        plain.clear();
        opener.update(c, &mut plain)?;
    }
    opener.finish(&blob2.hash)?;
    let open_secs = start.elapsed().as_secs_f64();
    let gbps = bytes / open_secs / 1e9;
    println!(
        "  open (AES-256-GCM + SHA-256)  {gbps:>6.2} GB/s  ({:.0} % of the ceiling)",
        gbps / KAS_CEILING_GBPS * 100.0
    );
    drop((blob, sealed_chunks));
    Ok(())
}

pub async fn run(what: Bench) -> BenchResult<()> {
    if let Bench::KasCrypto { mib } = what {
        return tokio::task::spawn_blocking(move || kas_crypto(mib)).await?;
    }
    if let Bench::Zsr { numbers, page_size } = what {
        return zsr::run(numbers, page_size).await;
    }
    if let Bench::Konnektor {
        clients,
        size,
        seconds,
    } = what
    {
        return konnektor::run(clients, size, seconds).await;
    }
    let dir = tempfile::tempdir()?;
    let fd = fachdienst::start(
        &dir.path().join("fd"),
        0,
        0,
        &["alice@praxis-a.kim.test", "bob@praxis-b.kim.test"],
    )
    .await?;
    let sealed = match what {
        Bench::Relay { sealed, .. } | Bench::Large { sealed, .. } => sealed,
        Bench::KasCrypto { .. } | Bench::Konnektor { .. } | Bench::Zsr { .. } => false,
    };
    let proxy = ProxyProcess::start(dir.path(), &fd, sealed)?;
    match what {
        Bench::Relay {
            clients,
            size,
            seconds,
            ..
        } => relay(&fd, &proxy, clients, size, Duration::from_secs(seconds)).await,
        Bench::Large { mib, .. } => large(&fd, &proxy, mib * 1024 * 1024).await,
        Bench::KasCrypto { .. } | Bench::Konnektor { .. } | Bench::Zsr { .. } => Ok(()),
    }
}

/// `kim-cm serve` as a child process, killed on drop.
struct ProxyProcess {
    child: Child,
    smtp: SocketAddr,
    /// The POP3S listener of a sealing proxy.
    pop3: Option<SocketAddr>,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProxyProcess {
    fn start(dir: &Path, fd: &Fachdienst, sealed: bool) -> BenchResult<ProxyProcess> {
        let cfg = dir.join("proxy.toml");
        let mut text = format!(
            "[proxy]\ndata_dir = \"{}\"\nallow_unsealed_for_testing = {}\n\
             [log]\nlevel = \"warn,kim_cm::serve=info\"\n\
             [[smtp_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"plain\"\n\
             [upstream]\nca_file = \"{}\"\n",
            dir.join("proxy").display(),
            !sealed,
            fd.tls.ca_cert.display()
        );
        if sealed {
            text.push_str(&format!(
                "kas_url = \"{}\"\n",
                crate::testbed::kas::base_url(fd.kas)
            ));
            let addresses: Vec<&str> = fd.accounts.iter().map(|a| a.address.as_str()).collect();
            let pki = crate::testbed::pki::make(&dir.join("pki"), &addresses)?;
            text.push_str(&format!(
                "[[pop3_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"implicit\"\n\
                 cert = \"{}\"\nkey = \"{}\"\n\
                 [directory]\nfolder = \"{}\"\n[trust]\nca_file = \"{}\"\n",
                fd.tls.server_cert.display(),
                fd.tls.server_key.display(),
                pki.directory.display(),
                pki.ca_cert.display()
            ));
            for a in &pki.accounts {
                text.push_str(&format!(
                    "[[account]]\naddress = \"{}\"\nsmtp_server = \"localhost:{}\"\n\
                     pop3_server = \"localhost:{}\"\nsigning_pkcs12 = \"{}\"\n\
                     encryption_pkcs12 = \"{}\"\npkcs12_password_file = \"{}\"\n",
                    a.address,
                    fd.smtps.port(),
                    fd.pop3s.port(),
                    a.signing_pkcs12.display(),
                    a.encryption_pkcs12.display(),
                    pki.password_file.display()
                ));
            }
        }
        std::fs::write(&cfg, text)?;
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("addr=") {
                    if let Some(a) = line[i + 5..]
                        .split_whitespace()
                        .next()
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                    {
                        let _ = tx.send((line.contains("POP3"), a));
                    }
                }
            }
        });
        let (mut smtp, mut pop3) = (None, None);
        let wanted = if sealed { 2 } else { 1 };
        for _ in 0..wanted {
            match rx.recv_timeout(PROXY_START_TIMEOUT) {
                Ok((true, a)) => pop3 = Some(a),
                Ok((false, a)) => smtp = Some(a),
                Err(_) => return Err("the proxy did not start".into()),
            }
        }
        Ok(ProxyProcess {
            child,
            smtp: smtp.ok_or("the proxy did not start its SMTP listener")?,
            pop3,
        })
    }

    /// Peak resident set size (VmHWM) of the proxy process, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.child.id())
    }
}

/// VmHWM of a process from /proc, in KiB (0 if unknown).
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Where a benchmark client sends: the Fachdienst (TLS) or the proxy (loopback).
struct Target {
    server: Server,
    settings: ClientSettings,
    user: String,
    password: String,
}

fn targets(fd: &Fachdienst, proxy: &ProxyProcess) -> BenchResult<(Target, Target)> {
    let connector = Arc::new(tls::connector(&fd.tls.ca_cert, None)?);
    let settings = |tls| ClientSettings {
        tls,
        connector: connector.clone(),
        connect_timeout: Duration::from_secs(10),
        timeout: Duration::from_secs(120),
        helo_name: "bench".into(),
    };
    let alice = &fd.accounts[0];
    let direct = Target {
        server: Server {
            host: "localhost".into(),
            port: fd.smtps.port(),
        },
        settings: settings(TlsMode::Implicit),
        user: alice.address.clone(),
        password: alice.password.clone(),
    };
    let via = Target {
        server: Server {
            host: proxy.smtp.ip().to_string(),
            port: proxy.smtp.port(),
        },
        settings: settings(TlsMode::Plain),
        user: format!("{}#localhost:{}#1#KOM_LE#7", alice.address, fd.smtps.port()),
        password: alice.password.clone(),
    };
    Ok((direct, via))
}

fn envelope(fd: &Fachdienst) -> UpstreamEnvelope {
    UpstreamEnvelope {
        mail_from: fd.accounts[0].address.clone(),
        mail_params: vec![],
        rcpt: vec![(fd.accounts[1].address.clone(), vec![])],
    }
}

/// A mail of exactly `size` bytes: headers, then 76-character lines.
fn small_mail(fd: &Fachdienst, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <{}>\r\nTo: <{}>\r\nSubject: bench\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n",
        fd.accounts[0].address, fd.accounts[1].address
    )
    .into_bytes();
    let line = [b'a'; 76];
    while m.len() + 78 <= size {
        m.extend_from_slice(&line);
        m.extend_from_slice(b"\r\n");
    }
    while m.len() + 2 < size {
        m.push(b'b');
    }
    m.extend_from_slice(b"\r\n");
    m
}

/// Sends mails on `clients` sessions for `dur`; returns mails per second.
async fn rate(
    t: &Target,
    env: &UpstreamEnvelope,
    mail: &Arc<Vec<u8>>,
    clients: usize,
    dur: Duration,
) -> BenchResult<(f64, u64)> {
    let deadline = Instant::now() + dur;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (server, settings, user, password) = (
            t.server.clone(),
            t.settings.clone(),
            t.user.clone(),
            t.password.clone(),
        );
        let (env, mail) = (env.clone(), mail.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = SmtpClient::connect(&server, &settings)
                .await
                .map_err(|e| e.to_string())?;
            c.login(&user, &password).await.map_err(|e| e.to_string())?;
            let mut n = 0u64;
            while Instant::now() < deadline {
                match c.send_mail(&env, mail.len() as u64, &mail[..]).await {
                    Ok(Ok(_)) => n += 1,
                    Ok(Err(r)) => return Err(format!("refused: {r}")),
                    Err(e) => return Err(e.to_string()),
                }
            }
            c.quit().await;
            Ok::<u64, String>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total as f64 / start.elapsed().as_secs_f64(), total))
}

async fn relay(
    fd: &Fachdienst,
    proxy: &ProxyProcess,
    clients: usize,
    size: usize,
    dur: Duration,
) -> BenchResult<()> {
    let (direct, via) = targets(fd, proxy)?;
    let env = envelope(fd);
    let mail = Arc::new(small_mail(fd, size));
    println!(
        "relay: {clients} clients, {size}-byte mails, {}s per phase",
        dur.as_secs()
    );
    // a short warm-up of both paths, then alternating rounds, so that drifts of the
    // machine (the simulated Fachdienst fsyncs every mail) hit both paths alike
    rate(&direct, &env, &mail, clients, Duration::from_millis(500)).await?;
    rate(&via, &env, &mail, clients, Duration::from_millis(500)).await?;
    let (mut dsum, mut psum) = (0.0, 0.0);
    for round in 1..=RELAY_ROUNDS {
        let (d, dn) = rate(&direct, &env, &mail, clients, dur).await?;
        let (p, pn) = rate(&via, &env, &mail, clients, dur).await?;
        println!(
            "  round {round}: direct {d:>7.0} mails/s ({dn}), through kim-cm {p:>7.0} mails/s ({pn}): {:.0} %",
            100.0 * p / d
        );
        dsum += d;
        psum += p;
    }
    let (d, p) = (dsum / RELAY_ROUNDS as f64, psum / RELAY_ROUNDS as f64);
    println!("  mean: direct {d:.0} mails/s, through kim-cm {p:.0} mails/s");
    if let Some(pop3) = proxy.pop3 {
        println!(
            "  sealing: kim-cm signs and encrypts {p:.0} mails/s ({:.0} % of the unsealed direct rate)",
            100.0 * p / d
        );
        // the way back: one POP3 session (a maildrop is locked to one session), RETR
        // of the first mails, through kim-cm (opened) and direct (as stored)
        let direct_pop3 = SocketAddr::new(fd.pop3s.ip(), fd.pop3s.port());
        let (dr, n) = retr_rate(fd, direct_pop3, None, FETCH_COUNT).await?;
        let (pr, _) = retr_rate(fd, pop3, Some(fd.pop3s.port()), FETCH_COUNT).await?;
        println!(
            "  fetching {n} mails in one POP3 session: direct {dr:.0} mails/s, through kim-cm (opened) {pr:.0} mails/s"
        );
    } else {
        println!(
            "  kim-cm keeps {:.0} % of the direct rate (goal: at least 80 %)",
            100.0 * p / d
        );
    }
    println!(
        "  kim-cm peak RSS: {:.1} MiB",
        proxy.peak_rss_kib() as f64 / 1024.0
    );
    Ok(())
}

/// Bob logged in over POP3S at `addr`: the proxy when `upstream_port` names the
/// Fachdienst behind it, else the Fachdienst itself.
async fn bob_pop3(
    fd: &Fachdienst,
    addr: SocketAddr,
    upstream_port: Option<u16>,
) -> BenchResult<crate::pop3::client::Pop3Client> {
    let settings = crate::pop3::client::ClientSettings {
        tls: TlsMode::Implicit,
        connector: Arc::new(tls::connector(&fd.tls.ca_cert, None)?),
        connect_timeout: Duration::from_secs(10),
        timeout: Duration::from_secs(300),
    };
    let bob = &fd.accounts[1];
    let server = Server {
        host: "localhost".into(),
        port: addr.port(),
    };
    let user = match upstream_port {
        Some(p) => format!("{}#localhost:{p}#1#KOM_LE#7", bob.address),
        None => bob.address.clone(),
    };
    let mut c = crate::pop3::client::Pop3Client::connect(&server, &settings).await?;
    c.login(&user, &bob.password).await?;
    Ok(c)
}

/// Mails fetched in the POP3 phase of the sealed relay benchmark.
const FETCH_COUNT: usize = 500;

/// Bob's RETR of his last `count` messages (the last phase sent them through the
/// sealing proxy) in one session at `addr` (the proxy when `upstream_port` names the
/// Fachdienst behind it); mails per second. UIDL gives the count: through kim-cm,
/// STAT and LIST would open every mail to report its size.
async fn retr_rate(
    fd: &Fachdienst,
    addr: SocketAddr,
    upstream_port: Option<u16>,
    count: usize,
) -> BenchResult<(f64, usize)> {
    let mut c = bob_pop3(fd, addr, upstream_port).await?;
    let spool_dir = tempfile::tempdir()?;
    let settings = crate::spool::SpoolSettings {
        dir: spool_dir.path().to_path_buf(),
        memory_limit: 1024 * 1024,
    };
    let total = c.uidl(None).await?.len();
    let start = Instant::now();
    let mut n = 0;
    for i in total.saturating_sub(count) + 1..=total {
        let mut spool = crate::spool::Spool::new(&settings);
        match c.retr_into(i, &mut spool).await {
            Ok(()) => n += 1,
            Err(_) => break,
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = c.quit().await;
    Ok((rate, n))
}

/// Bob fetches message `n` straight from the Fachdienst's POP3S: the size.
async fn fetch_direct(fd: &Fachdienst, n: usize) -> BenchResult<u64> {
    let mut c = bob_pop3(fd, fd.pop3s, None).await?;
    let spool_dir = tempfile::tempdir()?;
    let mut spool = crate::spool::Spool::new(&crate::spool::SpoolSettings {
        dir: spool_dir.path().to_path_buf(),
        memory_limit: 64 * 1024,
    });
    c.retr_into(n, &mut spool).await?;
    let _ = c.quit().await;
    Ok(spool.len())
}

/// Bob fetches message `n` through the proxy's POP3S listener: the size delivered and
/// its result fields.
async fn fetch_opened(fd: &Fachdienst, pop3: SocketAddr, n: usize) -> BenchResult<(u64, String)> {
    let mut c = bob_pop3(fd, pop3, Some(fd.pop3s.port())).await?;
    let spool_dir = tempfile::tempdir()?;
    let mut spool = crate::spool::Spool::new(&crate::spool::SpoolSettings {
        dir: spool_dir.path().to_path_buf(),
        memory_limit: 64 * 1024,
    });
    c.retr_into(n, &mut spool).await?;
    let _ = c.quit().await;
    let mut head = vec![0u8; 4096];
    let mut r = spool.reader().await?;
    let k = tokio::io::AsyncReadExt::read(&mut r, &mut head).await?;
    drop(r);
    let head = String::from_utf8_lossy(&head[..k]).into_owned();
    let result = head
        .lines()
        .filter(|l| l.starts_with("X-KIM-"))
        .take(2)
        .collect::<Vec<_>>()
        .join(", ");
    Ok((spool.len(), result))
}

/// A generated mail of `size` bytes, streamed without holding it in memory.
struct GenMail {
    header: Vec<u8>,
    pos: u64,
    size: u64,
}

impl AsyncRead for GenMail {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        const LINE: &[u8; 78] =
            b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n";
        let this = self.get_mut();
        while buf.remaining() > 0 && this.pos < this.size {
            let (p, h) = (this.pos as usize, this.header.len());
            let left = (this.size - this.pos) as usize;
            let chunk: &[u8] = if p < h {
                &this.header[p..]
            } else if left <= 2 {
                &b"\r\n"[2 - left..]
            } else {
                let off = (p - h) % 78;
                &LINE[off..off + (78 - off).min(left - 2)]
            };
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            this.pos += n as u64;
        }
        Poll::Ready(Ok(()))
    }
}

async fn large(fd: &Fachdienst, proxy: &ProxyProcess, size: u64) -> BenchResult<()> {
    let (direct, via) = targets(fd, proxy)?;
    let env = envelope(fd);
    let header = format!(
        "From: <{}>\r\nTo: <{}>\r\nSubject: large\r\n\r\n",
        fd.accounts[0].address, fd.accounts[1].address
    )
    .into_bytes();
    println!("large: one {} MiB mail", size / 1024 / 1024);
    let mut sends = Vec::new();
    for (name, t) in [
        ("direct to the simulated Fachdienst", &direct),
        ("through kim-cm", &via),
    ] {
        let mut c = SmtpClient::connect(&t.server, &t.settings).await?;
        c.login(&t.user, &t.password).await?;
        let mail = GenMail {
            header: header.clone(),
            pos: 0,
            size,
        };
        let start = Instant::now();
        match c.send_mail(&env, size, mail).await? {
            Ok(_) => {}
            Err(r) => return Err(format!("refused: {r}").into()),
        }
        let secs = start.elapsed().as_secs_f64();
        sends.push(secs);
        println!(
            "  send {name:<36} {secs:>6.2} s  {:>7.1} MB/s",
            size as f64 / secs / 1e6
        );
        c.quit().await;
    }
    println!(
        "  kim-cm peak RSS after sending: {:.1} MiB (goal: under 64 MiB)",
        proxy.peak_rss_kib() as f64 / 1024.0
    );
    if let Some(pop3) = proxy.pop3 {
        // the direct copy is message 1 of bob's mailbox, the sealed one message 2
        let start = Instant::now();
        let direct_bytes = fetch_direct(fd, 1).await?;
        let direct_fetch = start.elapsed().as_secs_f64();
        println!(
            "  RETR straight from the Fachdienst          {direct_fetch:>6.2} s  ({:.1} MiB)",
            direct_bytes as f64 / 1048576.0
        );
        let start = Instant::now();
        let got = fetch_opened(fd, pop3, 2).await?;
        let via_fetch = start.elapsed().as_secs_f64();
        println!(
            "  RETR through kim-cm (opened{})  {via_fetch:>6.2} s  ({:.1} MiB delivered, {})",
            if size > crate::kim::send::KAS_THRESHOLD {
                ", KAS download"
            } else {
                ""
            },
            got.0 as f64 / 1048576.0,
            got.1
        );
        let (d, v) = (sends[0] + direct_fetch, sends[1] + via_fetch);
        println!(
            "  round trip: direct {d:.2} s, through kim-cm {v:.2} s: {:.2}x (goal: within 2x)",
            v / d
        );
        println!(
            "  kim-cm peak RSS after opening: {:.1} MiB (goal: under 64 MiB)",
            proxy.peak_rss_kib() as f64 / 1024.0
        );
    }
    // the simulated Fachdienst's copies are not needed
    for a in &fd.accounts {
        for m in fd.store.list(&a.address)? {
            fd.store.delete(&a.address, &m.uid)?;
        }
    }
    Ok(())
}
