//! Failed logins counted per client address, across every session and listener.
//!
//! Each session closes after a few failed logins, but a client may open new
//! sessions forever. Every login kim-cm takes is tried at the Fachdienst, so
//! without a bound across sessions kim-cm would be a password-guessing amplifier
//! against the Fachdienst and would get the practice's account locked there.
//! After [`MAX_FAILED_LOGINS_PER_ADDRESS`] refused logins within
//! [`FAILED_LOGIN_WINDOW`], further logins from that address are refused at once,
//! without asking the Fachdienst, until the oldest failure leaves the window.
//!
//! One [`LoginThrottle`] is shared by the SMTP and POP3 listeners; a successful
//! login resets nothing (one valid account must not buy guesses at others).
//! No sockets and no protocol here: the sessions ask and report.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refused logins from one address within [`FAILED_LOGIN_WINDOW`] before its
/// further logins are refused without asking the Fachdienst.
pub const MAX_FAILED_LOGINS_PER_ADDRESS: usize = 10;
/// How long a refused login counts against its address.
pub const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at once; beyond it the stalest are forgotten, so that a
/// client with many addresses cannot grow kim-cm's memory without bound.
const MAX_TRACKED_ADDRESSES: usize = 4096;

/// An address whose logins are refused for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Until the oldest counted failure leaves the window.
    pub retry_after: Duration,
}

impl Throttled {
    /// Whole minutes to wait, rounded up, at least 1 (for the client's reply).
    pub fn minutes(&self) -> u64 {
        self.retry_after.as_secs().div_ceil(60).max(1)
    }
}

/// Refused logins per client address.
pub struct LoginThrottle {
    max: usize,
    window: Duration,
    /// Times of the last `max` refused logins of each address, oldest first.
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::new(MAX_FAILED_LOGINS_PER_ADDRESS, FAILED_LOGIN_WINDOW)
    }
}

impl LoginThrottle {
    pub fn new(max: usize, window: Duration) -> LoginThrottle {
        LoginThrottle {
            max: max.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err` when logins from `ip` are refused for now.
    pub fn check(&self, ip: IpAddr) -> Result<(), Throttled> {
        self.check_at(ip, Instant::now())
    }

    /// Counts a login the Fachdienst (or kim-cm) refused for its credentials.
    /// Returns `Some` only for the failure that throttles the address, and logs
    /// that one line (a login already in flight in another session may still
    /// fail afterwards: it is counted, not logged again).
    pub fn failed(&self, ip: IpAddr) -> Option<Throttled> {
        let t = self.failed_at(ip, Instant::now());
        if let Some(t) = t {
            tracing::warn!(
                client = %ip,
                failed_logins = self.max,
                window_minutes = self.window.as_secs() / 60,
                "login throttled: {} failed logins from this address within {} min; its logins are refused for {} min without asking the Fachdienst",
                self.max,
                self.window.as_secs() / 60,
                t.minutes()
            );
        }
        t
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Throttled> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = map.get_mut(&ip) else {
            return Ok(());
        };
        self.forget_old(times, now);
        if times.is_empty() {
            map.remove(&ip);
            return Ok(());
        }
        match self.throttled(times, now) {
            Some(t) => Err(t),
            None => Ok(()),
        }
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) -> Option<Throttled> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&ip) && map.len() >= MAX_TRACKED_ADDRESSES {
            self.make_room(&mut map, now);
        }
        let times = map.entry(ip).or_default();
        self.forget_old(times, now);
        let was = self.throttled(times, now).is_some();
        times.push_back(now);
        while times.len() > self.max {
            times.pop_front();
        }
        match self.throttled(times, now) {
            Some(t) if !was => Some(t),
            _ => None,
        }
    }

    fn forget_old(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
    }

    fn throttled(&self, times: &VecDeque<Instant>, now: Instant) -> Option<Throttled> {
        if times.len() < self.max {
            return None;
        }
        let oldest = *times.front()?;
        Some(Throttled {
            retry_after: self
                .window
                .saturating_sub(now.saturating_duration_since(oldest)),
        })
    }

    /// Forgets addresses whose failures have all left the window, and if that is
    /// not enough, the one whose last failure is oldest.
    fn make_room(&self, map: &mut HashMap<IpAddr, VecDeque<Instant>>, now: Instant) {
        map.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.saturating_duration_since(*t) < self.window)
        });
        if map.len() >= MAX_TRACKED_ADDRESSES {
            let stalest = map
                .iter()
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(ip, _)| *ip);
            if let Some(ip) = stalest {
                map.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_tenth_failure_throttles_and_the_window_frees_again() {
        let t = LoginThrottle::default();
        let a = ip("127.0.0.1");
        let start = Instant::now();
        for i in 0..9 {
            let now = start + Duration::from_secs(i);
            assert_eq!(t.failed_at(a, now), None);
            assert_eq!(t.check_at(a, now), Ok(()));
        }
        let tenth = start + Duration::from_secs(9);
        let th = t.failed_at(a, tenth).expect("throttled at the tenth");
        assert_eq!(th.retry_after, FAILED_LOGIN_WINDOW - Duration::from_secs(9));
        assert_eq!(th.minutes(), 15);
        assert!(t.check_at(a, tenth).is_err());
        // another address is not affected
        assert_eq!(t.check_at(ip("127.0.0.2"), tenth), Ok(()));
        // once the first failure has left the window, one more try is allowed
        let later = start + FAILED_LOGIN_WINDOW;
        assert_eq!(t.check_at(a, later), Ok(()));
        let th = t.failed_at(a, later).expect("throttled again");
        assert_eq!(th.retry_after, Duration::from_secs(1));
        assert_eq!(th.minutes(), 1);
        // all gone after a whole window of quiet
        let quiet = later + FAILED_LOGIN_WINDOW;
        assert_eq!(t.check_at(a, quiet), Ok(()));
        assert!(t.failures.lock().unwrap().is_empty());
    }

    #[test]
    fn memory_stays_bounded_with_many_addresses() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 100) {
            t.failed_at(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(t.failures.lock().unwrap().len() <= MAX_TRACKED_ADDRESSES);
    }
}
