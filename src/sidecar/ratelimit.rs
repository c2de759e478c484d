//! At most N requests in any minute, and pauses ordered by the service (SASIS:
//! five minutes after a 503). Requests are counted in a sliding window of one
//! minute, so a burst at the end of one minute and the start of the next still
//! stays within the limit the service counts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::clock::Clock;

/// The window the limits count in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A per-minute limiter over a [`Clock`]; one per service and customer.
pub struct RateLimiter {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the requests of the last minute were let through.
    sent: VecDeque<OffsetDateTime>,
    /// No request before this.
    paused_until: Option<OffsetDateTime>,
    /// Requests let through in all.
    total: u64,
}

impl RateLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> RateLimiter {
        RateLimiter {
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until one more request keeps within `per_minute` (none: no limit)
    /// and after any pause, then counts it.
    pub async fn acquire(&self, per_minute: Option<u32>) {
        loop {
            let wait = {
                let now = self.clock.now();
                let mut s = self.lock();
                while s.sent.front().is_some_and(|t| *t + WINDOW <= now) {
                    s.sent.pop_front();
                }
                let paused = s.paused_until.filter(|t| *t > now).map(|t| t - now);
                let full = match per_minute {
                    Some(n) if s.sent.len() >= n.max(1) as usize => {
                        s.sent.front().map(|t| *t + WINDOW - now)
                    }
                    _ => None,
                };
                match paused.or(full) {
                    Some(w) => w,
                    None => {
                        s.sent.push_back(now);
                        s.total += 1;
                        return;
                    }
                }
            };
            let wait = Duration::try_from(wait).unwrap_or(Duration::from_millis(1));
            self.clock.sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// No request for `d` from now.
    pub fn pause(&self, d: Duration) {
        let until = self.clock.now() + d;
        let mut s = self.lock();
        s.paused_until = Some(s.paused_until.map_or(until, |t| t.max(until)));
    }

    /// Requests let through so far.
    pub fn total(&self) -> u64 {
        self.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::clock::ManualClock;

    #[tokio::test]
    async fn fifty_a_minute_then_the_fifty_first_waits_for_the_window() {
        let clock = ManualClock::new(time::macros::datetime!(2026-12-02 10:00 UTC));
        let l = RateLimiter::new(clock.clone());
        for _ in 0..50 {
            l.acquire(Some(50)).await;
        }
        assert!(clock.sleeps().is_empty(), "50 pass without waiting");
        l.acquire(Some(50)).await;
        assert_eq!(clock.sleeps(), vec![WINDOW]);
        // no limit: never waits
        for _ in 0..1000 {
            l.acquire(None).await;
        }
        assert_eq!(clock.sleeps().len(), 1);
        assert_eq!(l.total(), 1051);
    }

    #[tokio::test]
    async fn a_pause_holds_every_request_back() {
        let clock = ManualClock::new(time::macros::datetime!(2026-12-02 10:00 UTC));
        let l = RateLimiter::new(clock.clone());
        l.pause(Duration::from_secs(300));
        l.acquire(None).await;
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(300)]);
    }
}
