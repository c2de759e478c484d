//! Time for the sidecars: the wall clock in production, a hand-driven one in
//! tests, so that rules like "at most 50 requests a minute" and "wait 5 minutes
//! after a 503" are shown without waiting (issue 7, item 10).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

/// What a sleep returns.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Now, and waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
    fn sleep(&self, d: Duration) -> Sleep<'_>;
}

/// The system clock and tokio's timer.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
    fn sleep(&self, d: Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The wall clock as a shared [`Clock`].
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to or when someone sleeps on it: a sleep
/// moves it forward at once and is recorded, so a test sees every wait.
pub struct ManualClock {
    state: Mutex<(OffsetDateTime, Vec<Duration>)>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            state: Mutex::new((start, Vec::new())),
        })
    }

    /// Moves the clock forward by `d` without anyone sleeping.
    pub fn advance(&self, d: Duration) {
        self.lock().0 += d;
    }

    /// Every sleep so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().1.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (OffsetDateTime, Vec<Duration>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.lock().0
    }
    fn sleep(&self, d: Duration) -> Sleep<'_> {
        {
            let mut s = self.lock();
            s.0 += d;
            s.1.push(d);
        }
        Box::pin(tokio::task::yield_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_by_what_is_slept_and_remembers_it() {
        let start = time::macros::datetime!(2026-12-02 10:00 UTC);
        let c = ManualClock::new(start);
        c.sleep(Duration::from_secs(300)).await;
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now(), start + Duration::from_secs(305));
        assert_eq!(c.sleeps(), vec![Duration::from_secs(300)]);
    }
}
