//! Logins to the admin page: random session tokens in an HttpOnly, SameSite=Strict
//! cookie, a CSRF token per session for every form, sessions that end when idle,
//! and a bound on failed logins so the password cannot be guessed at speed.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

/// The session cookie's name.
pub const COOKIE: &str = "kimcm_admin";
/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// At most this many sessions at once; the least recently used one goes first.
pub const MAX_SESSIONS: usize = 32;
/// At most this many failed logins within LOGIN_WINDOW; then logins wait.
pub const MAX_LOGIN_FAILURES: usize = 5;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

struct Session {
    csrf: String,
    last_used: Instant,
}

/// The live sessions and the recent failed logins.
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<VecDeque<Instant>>,
}

fn token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions::default()
    }

    /// A new session; its cookie token.
    pub fn open(&self) -> String {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.last_used) < SESSION_IDLE);
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        let t = token();
        map.insert(
            t.clone(),
            Session {
                csrf: token(),
                last_used: now,
            },
        );
        t
    }

    /// The CSRF token of a live session (and it counts as used), or None.
    pub fn check(&self, cookie_token: &str) -> Option<String> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let key = map.keys().find(|k| same(k, cookie_token))?.clone();
        let s = map.get_mut(&key)?;
        if now.duration_since(s.last_used) >= SESSION_IDLE {
            map.remove(&key);
            return None;
        }
        s.last_used = now;
        Some(s.csrf.clone())
    }

    /// Whether a form's CSRF token is the session's.
    pub fn csrf_ok(&self, cookie_token: &str, form_token: &str) -> bool {
        self.check(cookie_token)
            .is_some_and(|csrf| same(&csrf, form_token))
    }

    pub fn close(&self, cookie_token: &str) {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|k, _| !same(k, cookie_token));
    }

    /// Whether another login may be tried now (fewer than MAX_LOGIN_FAILURES in
    /// the last LOGIN_WINDOW).
    pub fn login_allowed(&self) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while f
            .front()
            .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
        {
            f.pop_front();
        }
        f.len() < MAX_LOGIN_FAILURES
    }

    pub fn login_failed(&self) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.push_back(Instant::now());
        while f.len() > MAX_LOGIN_FAILURES {
            f.pop_front();
        }
    }
}

/// The session token in a Cookie header, if any.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_until_closed_and_its_csrf_token_is_checked() {
        let s = Sessions::new();
        let t = s.open();
        let csrf = s.check(&t).expect("live");
        assert!(s.csrf_ok(&t, &csrf));
        assert!(!s.csrf_ok(&t, "forged"));
        assert!(s.check("not-a-session").is_none());
        s.close(&t);
        assert!(s.check(&t).is_none());
        assert_eq!(
            from_cookie_header(&format!("a=b; {COOKIE}={t}; c=d")),
            Some(t.as_str())
        );
    }

    #[test]
    fn failed_logins_are_bounded_and_sessions_too() {
        let s = Sessions::new();
        for _ in 0..MAX_LOGIN_FAILURES {
            assert!(s.login_allowed());
            s.login_failed();
        }
        assert!(!s.login_allowed());
        let first = s.open();
        for _ in 0..MAX_SESSIONS {
            s.open();
        }
        assert!(s.check(&first).is_none(), "the oldest session made room");
    }
}
