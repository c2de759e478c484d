//! The VZD's answers kept for TTL_ENC_CERT (12 hours, Tab_Konf_Param), so a mail
//! costs no directory round trip for parties seen within that time, and a directory
//! that is down does not stop mail to them.
//!
//! Only answers that found something are kept: an address without an entry is
//! asked again next time, so a newly registered practice is reachable at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Directory, DirectoryError, Entry};

/// TTL_ENC_CERT (Tab_Konf_Param): cached encryption certificates live 12 hours.
pub const TTL_ENC_CERT: Duration = Duration::from_secs(12 * 3600);
/// At most this many addresses are kept; beyond it, expired ones go first, then all.
pub const MAX_CACHED_ADDRESSES: usize = 10_000;

/// A directory with a memory of its answers.
pub struct Cached<D> {
    inner: D,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Entry)>>,
}

impl<D: Directory> Cached<D> {
    pub fn new(inner: D, ttl: Duration) -> Cached<D> {
        Cached {
            inner,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, key: &str) -> Option<Entry> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let found = entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, e)| e.clone());
        crate::metrics::inc(
            "kimcm_cache_lookups_total",
            &[
                ("cache", "certificates"),
                ("result", if found.is_some() { "hit" } else { "miss" }),
            ],
        );
        found
    }

    fn keep(&self, key: String, entry: &Entry) {
        if entry.certs.is_empty() && entry.kim_version.is_none() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_CACHED_ADDRESSES {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= MAX_CACHED_ADDRESSES {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), entry.clone()));
    }
}

impl<D: Directory> Directory for Cached<D> {
    async fn lookup(&self, address: &str) -> Result<Entry, DirectoryError> {
        let key = address.to_ascii_lowercase();
        if let Some(e) = self.fresh(&key) {
            return Ok(e);
        }
        let e = self.inner.lookup(address).await?;
        self.keep(key, &e);
        Ok(e)
    }

    async fn lookup_all(
        &self,
        addresses: &[String],
    ) -> Result<HashMap<String, Entry>, DirectoryError> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        for a in addresses {
            let key = a.to_ascii_lowercase();
            match self.fresh(&key) {
                Some(e) => {
                    out.insert(key, e);
                }
                None if !missing.contains(&key) => missing.push(key),
                None => {}
            }
        }
        if !missing.is_empty() {
            for (key, e) in self.inner.lookup_all(&missing).await? {
                self.keep(key.clone(), &e);
                out.insert(key, e);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::KimVersion;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers from a table and counts the questions; `down` makes it fail.
    #[derive(Default)]
    struct Table {
        asked: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    impl Directory for Table {
        async fn lookup(&self, address: &str) -> Result<Entry, DirectoryError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(DirectoryError::Unavailable("down".into()));
            }
            Ok(Entry {
                certs: Vec::new(),
                kim_version: address.starts_with("known").then_some(KimVersion::OWN),
            })
        }
    }

    #[tokio::test]
    async fn found_entries_are_kept_until_the_ttl() {
        let c = Cached::new(Table::default(), Duration::from_millis(300));
        let all = vec!["known@x".to_string(), "Known@X".into(), "unknown@x".into()];
        let got = c.lookup_all(&all).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(c.inner.asked.load(Ordering::SeqCst), 2);
        // cached: the directory is not asked, even when it is down
        c.inner.down.store(true, Ordering::SeqCst);
        assert!(c.lookup("KNOWN@x").await.unwrap().kim_version.is_some());
        assert_eq!(c.inner.asked.load(Ordering::SeqCst), 2);
        // nothing found is not kept: asked again (and now it fails)
        assert!(c.lookup("unknown@x").await.is_err());
        assert_eq!(c.inner.asked.load(Ordering::SeqCst), 3);
        // after the TTL the entry is asked for again
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(c.lookup("known@x").await.is_err());
        assert_eq!(c.inner.asked.load(Ordering::SeqCst), 4);
    }
}
