//! The sidecars: clients for the health-service interfaces kim-cm carries beside
//! KIM (issue 7 and 8). Each lives in its own folder; what they share is here:
//! a clock that tests can drive ([`clock`]), HTTP calls with retry and backoff
//! ([`http`]), OAuth token caching with single-flight refresh ([`oauth`]), a
//! per-minute request limiter with pauses ([`ratelimit`]), durable cursors in the
//! embedded store ([`cursor`]) and progress on a terminal ([`progress`]).
//!
//! A sidecar command runs on its own (`kim-cm zsr sync`, ...) with the same
//! config file as `kim-cm serve`; its state is in the same `state.sqlite`.

pub mod brs;
pub mod careflex;
pub mod clock;
pub mod cursor;
pub mod helsenorge;
pub mod http;
pub mod oauth;
pub mod progress;
pub mod ratelimit;
pub mod zsr;

/// The first line of a sidecar's secret file (`what` names its key, e.g.
/// `[zsr] password_file`), after checking that only its owner may read it.
pub fn read_secret(
    path: &std::path::Path,
    what: &str,
) -> Result<zeroize::Zeroizing<String>, String> {
    crate::keyfiles::check(path, what)?;
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{what} {}: {e}; create the file with the value on its first line",
            path.display()
        )
    })?);
    let first = zeroize::Zeroizing::new(text.lines().next().unwrap_or("").trim_end().to_string());
    if first.is_empty() {
        return Err(format!(
            "{what} {}: the first line is empty; put the value there",
            path.display()
        ));
    }
    Ok(first)
}

/// `YYYY-MM-DD` of a UTC time.
pub fn day_text(t: time::OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// Logging for a sidecar command, as the config says (stderr).
pub fn init_logging(cfg: &crate::config::Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match cfg.log.format {
        crate::config::LogFormat::Text => builder.try_init(),
        crate::config::LogFormat::Json => builder.json().try_init(),
    };
}
