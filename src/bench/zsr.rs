//! `kim-cm bench zsr`: a full ZSR sync of N numbers against the simulator in
//! this process, the sync itself a separate `kim-cm zsr sync` so that its peak
//! RSS is its own (goal: under 128 MiB at 100,000 numbers), at unlimited rate;
//! wall time and the requests made against their minimum (the list pages and
//! one detail request per 500 numbers of a kind).

use std::process::{Command, Stdio};
use std::time::Instant;

use super::BenchResult;
use crate::sidecar::clock;
use crate::testbed::zsr::{generate, Credentials, ZsrSim};

/// The peak RSS goal of issue 7, in MiB.
const RSS_GOAL_MIB: f64 = 128.0;

/// How often the sync's peak RSS is read while it runs.
const RSS_POLL: std::time::Duration = std::time::Duration::from_millis(20);

pub async fn run(numbers: usize, page_size: u32) -> BenchResult<()> {
    let dir = tempfile::tempdir()?;
    let tls = crate::testbed::ca::make_tls_ca(&dir.path().join("tls"), &[])?;
    let creds = Credentials {
        client_id: "bench".into(),
        client_secret: "bench-secret".into(),
        username: "bench-user".into(),
        password: "bench-password".into(),
    };
    let data = generate(numbers);
    let k = data.keys().filter(|n| n.ends_with('K')).count();
    let minimum_details = k.div_ceil(500) + (numbers - k).div_ceil(500);
    let minimum_pages = numbers.div_ceil(page_size as usize);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = ZsrSim::start(listener, &tls, clock::system(), creds, data)?;
    crate::testbed::ca::write_private(&dir.path().join("secret"), b"bench-secret\n")?;
    crate::testbed::ca::write_private(&dir.path().join("password"), b"bench-password\n")?;
    let config = dir.path().join("kim-cm.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\ndata_dir = \"{d}/data\"\n[upstream]\nca_file = \"{ca}\"\n[log]\nlevel = \"warn\"\n\
             [zsr]\nauthority_url = \"{a}\"\nbase_url = \"{b}\"\nclient_id = \"bench\"\n\
             client_secret_file = \"{d}/secret\"\nusername = \"bench-user\"\npassword_file = \"{d}/password\"\n\
             ca_file = \"{ca}\"\npage_size = {page_size}\nunlimited_rate_for_testing = true\n",
            d = dir.path().display(),
            ca = tls.ca_cert.display(),
            a = sim.authority_url(),
            b = sim.base_url(),
        ),
    )?;
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    // VmHWM read while it runs (a zombie has none left; and the children's
    // rusage counts the pages a fork shares with this process, which holds the
    // simulated register)
    let (out, peak_kib) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let child = Command::new(exe)
            .args(["zsr", "sync", "--no-progress", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(super::peak_rss_kib(pid));
                    std::thread::sleep(RSS_POLL);
                }
                peak
            })
        };
        let out = child.wait_with_output()?;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok((out, watcher.join().unwrap_or(0)))
    })
    .await??;
    let secs = start.elapsed().as_secs_f64();
    let rss_mib = peak_kib as f64 / 1024.0;
    if !out.status.success() {
        return Err(format!("the sync failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let stats = sim.stats();
    let details = stats
        .requests
        .iter()
        .filter(|r| r.path != "/numbers")
        .count();
    let pages = stats.requests.len() - details;
    println!("zsr: full sync of {numbers} numbers ({k} K numbers), simulator in this process, unlimited rate");
    println!(
        "  wall time        {secs:>8.2} s ({:.0} numbers/s)",
        numbers as f64 / secs
    );
    println!(
        "  requests         {:>8} ({pages} list pages of {page_size}, minimum {minimum_pages}; {details} detail requests, minimum {minimum_details}; {} token requests)",
        stats.requests.len(),
        stats.password_grants + stats.refresh_grants
    );
    println!("  peak RSS         {rss_mib:>8.1} MiB (goal under {RSS_GOAL_MIB} MiB)");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}
