//! Which card serves an address, remembered for TTL_EMAIL_ICCSN (gemSpec_CM_KOMLE
//! 5, "Time to Live für gecachte Zuordnungen von E-Mail-Adressen ... zu ICCSNs",
//! 30 days). The Konnektor names cards by handle, which changes when a card is
//! put in again; the callers then ask for the cards afresh (one retry), so an
//! entry is dropped early as well as at its age.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// TTL_EMAIL_ICCSN: 30 days.
pub const TTL_EMAIL_ICCSN: Duration = Duration::from_secs(30 * 24 * 3600);

/// Values by key, each valid for the cache's time to live.
pub struct CardCache<V> {
    ttl: Duration,
    map: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> CardCache<V> {
    pub fn new(ttl: Duration) -> CardCache<V> {
        CardCache {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, V)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value, unless it is older than the time to live (then it is dropped).
    pub fn get(&self, key: &str) -> Option<V> {
        let mut map = self.lock();
        match map.get(key) {
            Some((at, v)) if at.elapsed() < self.ttl => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn insert(&self, key: String, value: V) {
        self.lock().insert(key, (Instant::now(), value));
    }

    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_end_at_their_age() {
        let c = CardCache::new(Duration::from_millis(40));
        c.insert("a".into(), 1);
        assert_eq!(c.get("a"), Some(1));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.get("a"), None, "older than the time to live");
        c.insert("b".into(), 2);
        c.remove("b");
        assert!(!c.contains("b"));
        let long = CardCache::new(TTL_EMAIL_ICCSN);
        long.insert("c".into(), 3);
        assert!(long.contains("c"));
    }
}
