//! The sidecars: clients for the health-service interfaces kim-cm carries beside
//! KIM (issue 7 and 8). Each lives in its own folder; what they share is here:
//! a clock that tests can drive ([`clock`]), HTTP calls with retry and backoff
//! ([`http`]), OAuth token caching with single-flight refresh ([`oauth`]), a
//! per-minute request limiter with pauses ([`ratelimit`]), durable cursors in the
//! embedded store ([`cursor`]) and progress on a terminal ([`progress`]).
//!
//! A sidecar command runs on its own (`kim-cm zsr sync`, ...) with the same
//! config file as `kim-cm serve`; its state is in the same `state.sqlite`.

pub mod clock;
pub mod cursor;
pub mod helsenorge;
pub mod http;
pub mod oauth;
pub mod progress;
pub mod ratelimit;
