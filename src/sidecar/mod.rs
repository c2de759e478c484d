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
