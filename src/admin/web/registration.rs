//! The registration state of each account as the admin page last saw it. The
//! Account Manager tells it only to someone who knows the account's KIM
//! password (getAccount), and kim-cm never stores that password, so the page
//! remembers what the last operation on it answered (register, show,
//! deregister, revoke) and says when that was; it forgets at a restart.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

/// The state of one account and when the page learned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub state: String,
    pub at: OffsetDateTime,
}

/// The states seen since the start, by address (lower case).
#[derive(Default)]
pub struct Registrations {
    seen: Mutex<HashMap<String, Seen>>,
}

impl Registrations {
    pub fn new() -> Registrations {
        Registrations::default()
    }

    /// Remembers `state` for `address` as of now.
    pub fn saw(&self, address: &str, state: impl Into<String>) {
        let seen = Seen {
            state: state.into(),
            at: OffsetDateTime::now_utc(),
        };
        self.lock().insert(address.to_ascii_lowercase(), seen);
    }

    /// What was last seen of `address`.
    pub fn of(&self, address: &str) -> Option<Seen> {
        self.lock().get(&address.to_ascii_lowercase()).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        // a panic while holding the lock cannot leave the map half-changed
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_state_seen_counts_whatever_the_case_of_the_address() {
        let r = Registrations::new();
        assert_eq!(r.of("a@x.de"), None);
        r.saw("A@x.de", "registered");
        r.saw("a@X.de", "deregistered");
        assert_eq!(r.of("a@x.de").unwrap().state, "deregistered");
        assert_eq!(r.of("b@x.de"), None);
    }
}
